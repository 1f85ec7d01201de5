"""engines/export.py: ONNX Runtime vs PyTorch parity, the model card, error messages, the
TensorRT-plugin form, and the golden cases (engines/golden.py) reproducing.

Exports run as subprocesses, the way a user runs the exporter. Each export of a tiny
model takes ~30-60 s on 2 cores; every checkpoint is exported once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "engines" / "export.py"
GOLDEN = ROOT / "tests" / "golden"
TRT_OP = "MultiscaleDeformableAttnPlugin_TRT"

# spec -> input size (H, W): two configs, different Q/K/sizes, landscape and portrait
PARITY = {"swin-q12-k7": (96, 128), "swin-q20-k10": (128, 96)}


TRT_SPEC, TRT_SIZE = "swin-q12-k7", (64, 96)


def export_cmd(*args):
    return [sys.executable, str(EXPORT), *map(str, args), "--threads", "1"]


def run_export(*args, timeout=900):
    return subprocess.run(export_cmd(*args), capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("export: error")]


class Job:
    """An export running in the background; .wait() -> (returncode, stderr)."""

    def __init__(self, args, log: Path):
        self.log = log
        self._f = open(log, "w")
        self.proc = subprocess.Popen(export_cmd(*args), stdout=self._f, stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout=900):
        rc = self.proc.wait(timeout=timeout)
        self._f.close()
        return rc, self.log.read_text()


@pytest.fixture(scope="module")
def export_jobs(tiny_checkpoints, tmp_path_factory):
    """All exports of this file, started at once: they are single-threaded, so on a
    2-core machine running them side by side roughly halves the wall time."""
    out = tmp_path_factory.mktemp("models")
    jobs = {}
    for spec, (h, w) in PARITY.items():
        ckpt, labels = tiny_checkpoints[spec]
        args = (ckpt, "--size", f"{h}x{w}", "--out", out, "--name", spec, "--labels", labels)
        jobs[spec] = Job(args, out / f"{spec}.log")
    ckpt, labels = tiny_checkpoints[TRT_SPEC]
    h, w = TRT_SIZE
    args = (ckpt, "--size", f"{h}x{w}", "--out", out, "--name", "trt", "--labels", labels,
            "--deform-attn", "trt-plugin", "--batch", "1")  # fmt: skip
    jobs["trt"] = Job(args, out / "trt.log")
    yield out, jobs
    for j in jobs.values():
        if j.proc.poll() is None:
            j.proc.kill()
            j.proc.wait()


@pytest.fixture(scope="module")
def exported(export_jobs):
    out, jobs = export_jobs
    res = {}
    for spec in PARITY:
        rc, log = jobs[spec].wait()
        assert rc == 0, log[-3000:]
        res[spec] = (out / f"{spec}.onnx", out / f"{spec}.json")
    return res


def _torch_model(ckpt):
    from transformers import Mask2FormerForUniversalSegmentation

    m = Mask2FormerForUniversalSegmentation.from_pretrained(ckpt, attn_implementation="eager")
    return m.eval()


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("spec", list(PARITY))
def test_onnxruntime_matches_pytorch(spec, exported, tiny_checkpoints):
    import onnxruntime as ort

    onnx_path, _ = exported[spec]
    ckpt, _ = tiny_checkpoints[spec]
    h, w = PARITY[spec]
    assert not Path(str(onnx_path) + ".data").exists(), "weights must be inside the .onnx file"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["pixel_values"]
    assert [o.name for o in sess.get_outputs()] == ["class_queries_logits", "masks_queries_logits"]
    assert sess.get_inputs()[0].shape[1:] == [3, h, w]
    assert isinstance(sess.get_inputs()[0].shape[0], str), "batch dimension should be dynamic"

    model = _torch_model(ckpt)
    q, k = model.config.num_queries, model.config.num_labels
    rng = np.random.default_rng(1)
    for n in (1, 3):  # the dynamic batch, at sizes other than the traced one
        x = rng.standard_normal((n, 3, h, w), dtype=np.float32)
        cls, masks = sess.run(None, {"pixel_values": x})
        with torch.no_grad():
            o = model(pixel_values=torch.from_numpy(x))
        assert cls.shape == (n, q, k + 1)
        assert masks.shape == (n, q, h // 4, w // 4)
        e_cls = rel_err(cls, o.class_queries_logits.numpy())
        e_mask = rel_err(masks, o.masks_queries_logits.numpy())
        print(f"{spec} batch {n}: relative error class {e_cls:.2e}, masks {e_mask:.2e}")
        assert e_cls <= 1e-4 and e_mask <= 1e-4


@pytest.mark.parametrize("spec", list(PARITY))
def test_card(spec, exported, tiny_checkpoints):
    from engines.m2f_tiny import SPECS

    _, card_path = exported[spec]
    card = json.loads(card_path.read_text())
    s = SPECS[spec]
    h, w = PARITY[spec]
    assert card["format"] == "segstream.model/1"
    assert card["name"] == spec
    assert card["source"] == {"checkpoint": str(tiny_checkpoints[spec][0]), "revision": None}
    assert card["input"] == {
        "height": h,
        "width": w,
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "channel_order": "RGB",
    }
    assert card["num_queries"] == s.num_queries
    assert len(card["labels"]) == s.num_labels
    for i, (lab, (name, isthing)) in enumerate(zip(card["labels"], s.labels)):
        assert lab["id"] == i and lab["name"] == name and lab["isthing"] is isthing
        assert len(lab["color"]) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in lab["color"])
    assert card["defaults"] == {"task": "panoptic", "score_threshold": 0.8, "overlap_threshold": 0.8, "mask_threshold": 0.5}


def test_mean_std_from_preprocessor_config(tiny_checkpoints, tmp_path):
    """mean/std come from preprocessor_config.json (x 255) when the checkpoint has one."""
    import engines.export as E

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.25, 0.0], "image_std": [0.5, 1.0, 0.2]}))
    mean, std, src = E.mean_std(str(ckpt))
    assert (mean, std, src) == ([127.5, 63.75, 0.0], [127.5, 255.0, 51.0], "preprocessor config")
    assert E.mean_std(str(tiny_checkpoints["swin-q12-k7"][0]))[2] == "ImageNet defaults"


def test_labels_matched_by_name(repo_root):
    """Without --labels, isthing and colours come from the label set whose names match."""
    from transformers import Mask2FormerConfig

    import engines.export as E

    coco = json.loads((repo_root / "configs/labels/coco-panoptic.json").read_text())
    # names as transformers' COCO panoptic checkpoints spell them
    cfg = Mask2FormerConfig(num_labels=133, id2label={d["id"]: d["name"] for d in coco})
    labels, src = E.resolve_labels(cfg, None, None)
    assert "coco-panoptic" in src
    assert [l["isthing"] for l in labels] == [True] * 80 + [False] * 53
    assert labels[0]["color"] == [220, 20, 60]


def test_label_sets(repo_root):
    d = repo_root / "configs" / "labels"
    for name, k, things in (("coco-panoptic", 133, 80), ("ade20k", 150, 100), ("cityscapes", 19, 8)):
        items = json.loads((d / f"{name}.json").read_text())
        assert [x["id"] for x in items] == list(range(k)), name
        assert sum(x["isthing"] for x in items) == things, name
        assert all(set(x) == {"id", "name", "isthing", "color"} for x in items), name
        assert all(len(x["color"]) == 3 and all(0 <= c <= 255 for c in x["color"]) for x in items), name
        assert len({x["name"] for x in items}) == k, name
    coco = json.loads((d / "coco-panoptic.json").read_text())
    assert all(x["isthing"] for x in coco[:80]) and not any(x["isthing"] for x in coco[80:])
    assert (coco[0]["name"], coco[79]["name"], coco[80]["name"], coco[132]["name"]) == (
        "person", "toothbrush", "banner", "rug-merged")  # fmt: skip
    city = json.loads((d / "cityscapes.json").read_text())
    assert {x["name"] for x in city if x["isthing"]} == {
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}  # fmt: skip


# ---- errors: one line naming the problem, exit status != 0 ---------------------------


def test_error_not_mask2former(tmp_path):
    from transformers import SwinConfig

    d = tmp_path / "swin"
    SwinConfig().save_pretrained(d)
    r = run_export(d, "--size", "64x64", "--out", tmp_path / "o")
    assert r.returncode != 0
    errs = error_lines(r.stderr)
    assert len(errs) == 1, r.stderr
    assert "not a Mask2Former checkpoint" in errs[0] and "swin" in errs[0]
    assert not (tmp_path / "o").exists()


def test_error_missing_directory(tmp_path):
    r = run_export(tmp_path / "does-not-exist", "--size", "64x64", "--out", tmp_path / "o")
    assert r.returncode != 0
    errs = error_lines(r.stderr)
    assert len(errs) == 1, r.stderr
    assert "not found" in errs[0] and "does-not-exist" in errs[0]


def test_error_no_config(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_export(tmp_path / "empty", "--size", "64x64")
    assert r.returncode != 0
    errs = error_lines(r.stderr)
    assert len(errs) == 1 and "config.json" in errs[0], r.stderr


@pytest.mark.parametrize("size", ["100x128", "128x100", "0x64", "abc"])
def test_error_size(size, tiny_checkpoints, tmp_path):
    r = run_export(tiny_checkpoints["swin-q12-k7"][0], "--size", size, "--out", tmp_path / "o")
    assert r.returncode != 0
    errs = error_lines(r.stderr)
    assert len(errs) == 1, r.stderr
    assert ("divisible by 32" in errs[0]) if "x" in size else ("HxW" in errs[0])
    assert not (tmp_path / "o").exists()


def test_error_labels_count(tiny_checkpoints, tmp_path):
    r = run_export(tiny_checkpoints["swin-q12-k7"][0], "--size", "64x64", "--labels",
                   ROOT / "configs/labels/cityscapes.json", "--out", tmp_path / "o")  # fmt: skip
    assert r.returncode != 0
    errs = error_lines(r.stderr)
    assert len(errs) == 1 and "19 labels" in errs[0] and "7" in errs[0], r.stderr


# ---- TensorRT plugin form -------------------------------------------------------------


def _reference_plugin():
    """MultiscaleDeformableAttnPlugin_TRT for onnx's ReferenceEvaluator, written from
    TensorRT's definition of the plugin (value split by level_start_index/spatial_shapes,
    bilinear sampling at (x, y) in 0..1 with zero padding, weighted sum)."""
    from onnx.reference.op_run import OpRun

    class MultiscaleDeformableAttnPlugin_TRT(OpRun):
        op_domain = "trt.plugins"

        def _run(self, value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                 plugin_version=None, plugin_namespace=None):  # fmt: skip
            assert spatial_shapes.dtype == np.int32 and level_start_index.dtype == np.int32
            v = torch.from_numpy(value)
            sl = torch.from_numpy(sampling_locations)
            aw = torch.from_numpy(attention_weights)
            n, _, m, d = v.shape
            _, lq, _, levels, p, _ = sl.shape
            out = torch.zeros(n, m, d, lq)
            for lvl in range(levels):
                h, w = (int(t) for t in spatial_shapes[lvl])
                st = int(level_start_index[lvl])
                vl = v[:, st : st + h * w].permute(0, 2, 3, 1).reshape(n * m, d, h, w)
                grid = (2 * sl[:, :, :, lvl] - 1).permute(0, 2, 1, 3, 4).reshape(n * m, lq, p, 2)
                smp = torch.nn.functional.grid_sample(vl, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                wl = aw[:, :, :, lvl].permute(0, 2, 1, 3).reshape(n * m, 1, lq, p)
                out += (smp * wl).sum(-1).view(n, m, d, lq)
            return (out.permute(0, 3, 1, 2).contiguous().numpy(),)

    return MultiscaleDeformableAttnPlugin_TRT


def test_trt_plugin_export(export_jobs, tiny_checkpoints):
    import onnx
    from onnx.reference import ReferenceEvaluator

    out, jobs = export_jobs
    rc, log = jobs["trt"].wait()
    assert rc == 0, log[-3000:]
    assert "ONNX Runtime cannot run" in log  # says so while validating
    ckpt, _ = tiny_checkpoints[TRT_SPEC]
    h, w = TRT_SIZE
    path = out / "trt.onnx"
    assert (out / "trt.json").is_file() and not Path(str(path) + ".data").exists()
    m = onnx.load(str(path))
    model = _torch_model(ckpt)

    plugin = [n for n in m.graph.node if n.op_type == TRT_OP]
    assert len(plugin) == model.config.encoder_layers  # one per pixel-decoder encoder layer
    assert not [n for n in m.graph.node if n.op_type == "GridSample"]
    assert ("trt.plugins", 1) in [(o.domain, o.version) for o in m.opset_import]
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    levels = [(h // 32, w // 32), (h // 16, w // 16), (h // 8, w // 8)]
    starts = np.cumsum([0] + [a * b for a, b in levels[:-1]])
    for node in plugin:
        assert node.domain == "trt.plugins" and len(node.input) == 5 and len(node.output) == 1
        attrs = {a.name: a.s.decode() for a in node.attribute}
        assert attrs == {"plugin_version": "1", "plugin_namespace": ""}
        ss, lsi = consts[node.input[1]], consts[node.input[2]]
        assert ss.dtype == np.int32 and ss.tolist() == [list(x) for x in levels]
        assert lsi.dtype == np.int32 and lsi.tolist() == starts.tolist()
    # fixed batch: --batch 1
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, h, w]

    # ONNX Runtime cannot run it ...
    import onnxruntime as ort

    with pytest.raises(Exception):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # ... but the rest of the graph is intact: with a reference implementation of the
    # plugin, the whole graph computes what PyTorch computes
    ev = ReferenceEvaluator(m, new_ops=[_reference_plugin()])
    x = np.random.default_rng(2).standard_normal((1, 3, h, w), dtype=np.float32)
    cls, masks = ev.run(None, {"pixel_values": x})
    with torch.no_grad():
        o = model(pixel_values=torch.from_numpy(x))
    e_cls = rel_err(cls, o.class_queries_logits.numpy())
    e_mask = rel_err(masks, o.masks_queries_logits.numpy())
    print(f"trt-plugin graph (reference evaluator): relative error class {e_cls:.2e}, masks {e_mask:.2e}")
    assert e_cls <= 1e-4 and e_mask <= 1e-4


# ---- golden ---------------------------------------------------------------------------


def test_golden_case_regenerates(tmp_path):
    import transformers
    from PIL import Image

    import engines.golden as G

    case = "random-pad-bottom"
    meta = json.loads((GOLDEN / case / "meta.json").read_text())
    if meta["produced_by"]["transformers"] != transformers.__version__:
        pytest.skip(
            f"golden made with transformers {meta['produced_by']['transformers']}, "
            f"installed {transformers.__version__}: random weights and logits differ across versions"
        )
    G.generate_random(tmp_path, only=[case])
    new, old = tmp_path / case, GOLDEN / case
    for f in ("pixel_values.npy", "class_queries_logits.npy", "masks_queries_logits.npy"):
        a, b = np.load(new / f), np.load(old / f)
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32, f
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f)
    for f in ("panoptic.png", "instance.png", "semantic.png", "panoptic_cropped.png"):
        a = np.asarray(Image.open(new / f))
        b = np.asarray(Image.open(old / f))
        assert a.shape == b.shape and (a == b).mean() >= 0.999, f
    assert json.loads((new / "meta.json").read_text())["counts"] == meta["counts"]


def test_golden_cases_complete():
    """Every committed case has its files and the content the Rust tests rely on."""
    from PIL import Image

    cases = sorted(p for p in GOLDEN.iterdir() if p.is_dir())
    assert len(cases) >= 4
    # The random-model cases stay small; the ten sample-model cases (160x288 logits) add ~5 MB.
    total = sum(f.stat().st_size for c in cases if c.name.startswith("random-") for f in c.rglob("*") if f.is_file())
    assert total < 3_000_000, f"random-model golden cases hold {total} bytes"
    total = sum(f.stat().st_size for f in GOLDEN.rglob("*") if f.is_file())
    assert total < 20_000_000, f"tests/golden is {total} bytes"
    for c in cases:
        meta = json.loads((c / "meta.json").read_text())
        q, k = meta["num_queries"], meta["num_labels"]
        fh, fw = meta["frame"]["height"], meta["frame"]["width"]
        H, W = meta["input"]["height"], meta["input"]["width"]
        if (c / "pixel_values.npy").exists() or c.name.startswith("random-"):
            # kept for every random case and two sample frames (tests/golden/README.md)
            assert np.load(c / "pixel_values.npy").shape == (1, 3, H, W)
        assert np.load(c / "class_queries_logits.npy").shape == (q, k + 1)
        assert np.load(c / "masks_queries_logits.npy").shape == (q, H // 4, W // 4)
        assert np.asarray(Image.open(c / "frame.png")).shape == (fh, fw, 3)
        for f in ("panoptic.png", "panoptic_unique.png", "instance.png", "semantic.png"):
            img = Image.open(c / f)
            assert img.mode == "I;16" and img.size == (fw, fh), f
        pan = json.loads((c / "panoptic.json").read_text())["segments_info"]
        ids = np.unique(np.asarray(Image.open(c / "panoptic.png")))
        assert set(ids) - {0} == {s["id"] for s in pan}
        if not c.name.startswith("random-"):
            continue  # cases from a trained model: whatever the model sees in the frame
        stuff = set(meta["thresholds"]["label_ids_to_fuse"])
        assert any(s["label_id"] not in stuff for s in pan) and any(s["label_id"] in stuff for s in pan), c.name
        assert len(json.loads((c / "instance.json").read_text())["segments_info"]) >= 2, c.name


def test_sample_checkpoint_reproduces_golden_logits():
    """The committed sample checkpoint (samples/models/shapes-m2f/, the one the ONNX file and
    the shapes-f* golden cases were made from) gives the golden logits again from the golden
    pixel_values (tests/segmenter.rs checks the ONNX file against the same logits)."""
    from transformers import Mask2FormerForUniversalSegmentation

    ckpt = ROOT / "samples" / "models" / "shapes-m2f"
    model = Mask2FormerForUniversalSegmentation.from_pretrained(ckpt, attn_implementation="eager").eval()
    cases = sorted(c for c in GOLDEN.glob("shapes-f*") if (c / "pixel_values.npy").is_file())
    assert len(cases) >= 2
    for c in cases:
        meta = json.loads((c / "meta.json").read_text())
        assert meta["produced_by"]["checkpoint"].rstrip("/").endswith("samples/models/shapes-m2f"), meta["produced_by"]
        x = np.load(c / "pixel_values.npy")
        with torch.no_grad():
            o = model(pixel_values=torch.from_numpy(x))
        e_cls = rel_err(o.class_queries_logits.numpy()[0], np.load(c / "class_queries_logits.npy"))
        e_mask = rel_err(o.masks_queries_logits.numpy()[0], np.load(c / "masks_queries_logits.npy"))
        print(f"{c.name}: relative error class {e_cls:.2e}, masks {e_mask:.2e}")
        assert e_cls <= 1e-4 and e_mask <= 1e-4, c.name
