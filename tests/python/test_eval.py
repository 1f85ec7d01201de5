"""`segstream eval` against the project's references on the same files, and the COCO
outputs of `segstream run` read back with pycocotools.

- PQ / SQ / RQ (all, things, stuff, per class) of `segstream eval` (hotcoco's port of
  panopticapi) equal engines/pq.py's on the same prediction files to 1e-9;
- mask AP of `segstream eval` equals pycocotools' COCOeval (segm) on the same files;
- `--coco-panoptic` PNG ids match their JSON segments; `--coco-instances` masks decode
  with pycocotools and match the JSON Lines masks.

A few frames of the sample (`--max-frames 3`, `--only-predicted`). Needs the Rust binary
(`cargo build`); skipped without it or without the sample model.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "engines"))

import pq  # noqa: E402

VIDEO = os.path.join(ROOT, "samples", "shapes.mp4")
MODEL = os.path.join(ROOT, "samples", "models", "shapes-m2f.onnx")
GT = os.path.join(ROOT, "samples", "gt")
FRAMES = 3


def find_binary() -> str | None:
    for profile in ("debug", "release"):
        p = os.path.join(ROOT, "target", profile, "segstream")
        if os.access(p, os.X_OK):
            return p
    return None


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    binary = find_binary()
    if binary is None or not os.path.isfile(MODEL):
        pytest.skip("target/*/segstream not built or sample model missing")
    d = tmp_path_factory.mktemp("eval")
    # A lower score threshold so that thing segments (which the sample model scores low)
    # exist and mask AP has something to rank.
    proc = subprocess.run([binary, "run", VIDEO, "--model", MODEL, "--no-overlay", "--json", str(d / "s.jsonl"),
                           "--max-frames", str(FRAMES), "--score-threshold", "0.3", "--threads", "2",
                           "--coco-panoptic", str(d / "coco"), "--coco-instances", str(d / "inst.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return binary, d


def seg_eval(binary, *args):
    proc = subprocess.run([binary, "eval", *args, "--json", "-"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def restricted_gt(frames):
    gt = json.load(open(os.path.join(GT, "panoptic.json")))
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in frames]
    gt["images"] = [i for i in gt["images"] if i["id"] in frames]
    return gt


def test_coco_panoptic_output_is_consistent(run_out):
    _, d = run_out
    pred = json.load(open(d / "coco" / "panoptic.json"))
    assert [a["image_id"] for a in pred["annotations"]] == list(range(FRAMES))
    assert {c["id"] for c in pred["categories"]} == {0, 1, 2, 3, 4, 5}
    records = [json.loads(line) for line in open(d / "s.jsonl")]
    for a, r in zip(pred["annotations"], records):
        ids = pq.read_id_png(str(d / "coco" / "panoptic" / a["file_name"]))
        listed = {s["id"] for s in a["segments_info"]}
        present = set(np.unique(ids).tolist()) - {0}
        assert present == listed, (a["file_name"], present, listed)
        for s in a["segments_info"]:
            assert int((ids == s["id"]).sum()) == s["area"]
        assert len(a["segments_info"]) == len(r["segments"])


def test_coco_instances_decode_with_pycocotools(run_out):
    from pycocotools import mask as mask_utils
    _, d = run_out
    inst = json.load(open(d / "inst.json"))
    records = {r["frame"]: r for r in (json.loads(line) for line in open(d / "s.jsonl"))}
    n_things = sum(s["is_thing"] for r in records.values() for s in r["segments"])
    assert len(inst) == n_things
    for det in inst:
        m = mask_utils.decode({"size": det["segmentation"]["size"], "counts": det["segmentation"]["counts"].encode()})
        assert m.shape == (360, 640)
        assert int(m.sum()) == det["area"]
        assert 0.0 <= det["score"] <= 1.0


def test_pq_equals_engines_pq(run_out):
    binary, d = run_out
    ours = seg_eval(binary, "--gt", GT, "--pred", str(d / "coco"), "--only-predicted")["panoptic"]
    gt = restricted_gt(set(range(FRAMES)))
    ref = pq.pq_compute(gt, str(d / "coco" / "panoptic.json"), os.path.join(GT, "panoptic"), str(d / "coco" / "panoptic"))
    assert ours["images"] == ref["images"] == FRAMES
    for k in ("all", "things", "stuff"):
        for m in ("pq", "sq", "rq"):
            assert abs(ours[k][m] - ref[k][m]) <= 1e-9, (k, m, ours[k][m], ref[k][m])
        assert ours[k]["n"] == ref[k]["n"]
    per = {c["name"]: c for c in ours["per_class"]}
    for name, c in ref["per_class"].items():
        o = per[name]
        assert (o["tp"], o["fp"], o["fn"]) == (c["tp"], c["fp"], c["fn"]), name
        if c["tp"] + c["fp"] + c["fn"]:
            assert abs(o["pq"] - c["pq"]) <= 1e-9, name
    # The JSON Lines route paints the same label maps.
    lines = seg_eval(binary, "--gt", GT, "--pred", str(d / "s.jsonl"), "--only-predicted")["panoptic"]
    assert abs(lines["all"]["pq"] - ours["all"]["pq"]) <= 1e-9
    assert lines["miou"] == pytest.approx(ours["miou"], abs=1e-12)


def test_mask_ap_equals_pycocotools(run_out, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from pycocotools import mask as mask_utils
    binary, d = run_out
    ours = seg_eval(binary, "--gt", GT, "--pred", str(d / "s.jsonl"), "--only-predicted")["instances"]
    # Ground truth as instances: every thing segment of the panoptic PNGs.
    gt = restricted_gt(set(range(FRAMES)))
    things = {c["id"] for c in gt["categories"] if c["isthing"]}
    anns = []
    for a in gt["annotations"]:
        ids = pq.read_id_png(os.path.join(GT, "panoptic", a["file_name"]))
        for s in a["segments_info"]:
            if s["category_id"] not in things:
                continue
            rle = mask_utils.encode(np.asfortranarray((ids == s["id"]).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": len(anns) + 1, "image_id": a["image_id"], "category_id": s["category_id"],
                         "iscrowd": s.get("iscrowd", 0), "area": float(mask_utils.area(rle)),
                         "bbox": list(mask_utils.toBbox(rle)), "segmentation": rle})
    inst_gt = {"images": gt["images"], "annotations": anns,
               "categories": [c for c in gt["categories"] if c["isthing"]]}
    dets = json.load(open(d / "inst.json"))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = inst_gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets) if dets else COCO(), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    for name, v in zip(names, ev.stats):
        assert abs(ours["metrics"][name] - v) <= 1e-9, (name, ours["metrics"][name], v)


def test_eval_errors_are_one_line(run_out, tmp_path):
    binary, d = run_out
    cases = [
        (["--gt", str(tmp_path / "nope"), "--pred", str(d / "coco")], "not found"),
        (["--gt", GT, "--pred", str(d / "coco")], "no prediction for image id"),
    ]
    bad = json.load(open(d / "coco" / "panoptic.json"))
    bad["annotations"][0]["image_id"] = 9999
    (tmp_path / "bad").mkdir()
    os.symlink(d / "coco" / "panoptic", tmp_path / "bad" / "panoptic")
    json.dump(bad, open(tmp_path / "bad" / "panoptic.json", "w"))
    cases.append((["--gt", GT, "--pred", str(tmp_path / "bad"), "--only-predicted"], "mismatched image ids"))
    for args, needle in cases:
        proc = subprocess.run([binary, "eval", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0, args
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("segstream: error: "), proc.stderr
        assert needle in lines[0], (needle, lines[0])
