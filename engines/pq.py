#!/usr/bin/env python3
"""Panoptic quality (PQ, SQ, RQ) over COCO-panoptic-format predictions and ground truth.

The algorithm is the COCO panoptic one (cocodataset/panopticapi, ``pq_compute``), per image:

* a predicted and a ground-truth segment of the same category match when their IoU > 0.5,
  where the union leaves out the predicted pixels that fall on ground-truth VOID (id 0);
* ground-truth segments with ``iscrowd == 1`` are never matched and never counted as
  false negatives; an unmatched prediction is not a false positive when more than half of
  it lies on VOID plus the crowd region of its own category;
* unmatched ground truth counts as FN, unmatched predictions as FP;
* per category PQ = sum(IoU of matches) / (TP + FP/2 + FN/2), SQ = sum(IoU) / TP,
  RQ = TP / (TP + FP/2 + FN/2); the all / things / stuff figures are unweighted means over
  the categories that occur (TP + FP + FN > 0).

Differences from panopticapi, none of which changes a figure on valid input: areas of ground
truth segments are taken from the PNG and checked against the JSON; inconsistent ground
truth (a segment listed but absent, a non-zero id in the PNG that is not listed, an area that
disagrees) is an error instead of being silently used; an empty group gives 0 with n = 0
instead of dividing by zero; images are processed in one process.

Command line::

    python engines/pq.py --gt GT_JSON --gt-dir DIR --pred PRED_JSON --pred-dir DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

OFFSET = 256 * 256 * 256
VOID = 0


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.uint32)
    if rgb.ndim == 2:
        return rgb
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def read_id_png(path: str) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        if im.mode != "RGB":
            im = im.convert("RGB")
        return rgb2id(np.asarray(im))


@dataclass
class PQStatCat:
    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


class PQStat:
    def __init__(self) -> None:
        self.per_cat: dict[int, PQStatCat] = defaultdict(PQStatCat)

    def __getitem__(self, cat: int) -> PQStatCat:
        return self.per_cat[cat]

    def __iadd__(self, other: "PQStat") -> "PQStat":
        for k, v in other.per_cat.items():
            s = self.per_cat[k]
            s.iou += v.iou
            s.tp += v.tp
            s.fp += v.fp
            s.fn += v.fn
        return self

    def average(self, categories: dict[int, dict], isthing: bool | None) -> tuple[dict, dict]:
        pq = sq = rq = 0.0
        n = 0
        per_class = {}
        for cat, info in categories.items():
            if isthing is not None and bool(info.get("isthing")) != isthing:
                continue
            s = self.per_cat.get(cat, PQStatCat())
            if s.tp + s.fp + s.fn == 0:
                per_class[cat] = {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 0}
                continue
            n += 1
            den = s.tp + 0.5 * s.fp + 0.5 * s.fn
            c = {"pq": s.iou / den, "sq": s.iou / s.tp if s.tp else 0.0, "rq": s.tp / den,
                 "tp": s.tp, "fp": s.fp, "fn": s.fn}
            per_class[cat] = c
            pq += c["pq"]
            sq += c["sq"]
            rq += c["rq"]
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def pq_image(gt_ids: np.ndarray, gt_segments: list[dict], pred_ids: np.ndarray, pred_segments: list[dict],
             categories: dict[int, dict], image_id=None) -> PQStat:
    """PQ statistics of one image from id maps and segments_info lists."""
    gt_ids = np.asarray(gt_ids)
    pred_ids = np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"image {image_id}: ground truth is {gt_ids.shape}, prediction {pred_ids.shape}")
    if gt_ids.size and (gt_ids.min() < 0 or pred_ids.min() < 0):
        raise ValueError(f"image {image_id}: negative segment ids")
    gt_segms = {int(el["id"]): dict(el) for el in gt_segments}
    pred_segms = {int(el["id"]): dict(el) for el in pred_segments}
    if len(gt_segms) != len(gt_segments) or len(pred_segms) != len(pred_segments):
        raise ValueError(f"image {image_id}: duplicate segment ids in segments_info")
    if VOID in gt_segms or VOID in pred_segms:
        raise ValueError(f"image {image_id}: segment id 0 is VOID and cannot be a segment")

    # ground-truth areas from the PNG, checked against the JSON
    labels, counts = np.unique(gt_ids, return_counts=True)
    gt_area = dict(zip(labels.tolist(), counts.tolist()))
    for gid, seg in gt_segms.items():
        if seg["category_id"] not in categories:
            raise KeyError(f"image {image_id}: ground-truth segment {gid} has unknown category_id {seg['category_id']}")
        if gid not in gt_area:
            raise KeyError(f"image {image_id}: ground-truth segment {gid} is in the JSON and not in the PNG")
        if "area" in seg and int(seg["area"]) != gt_area[gid]:
            raise ValueError(f"image {image_id}: ground-truth segment {gid} has area {seg['area']} in the JSON, "
                             f"{gt_area[gid]} in the PNG")
        seg["area"] = gt_area[gid]
    for gid in gt_area:
        if gid != VOID and gid not in gt_segms:
            raise KeyError(f"image {image_id}: ground-truth segment {gid} is in the PNG and not in the JSON")

    # predicted areas + sanity checks (as panopticapi)
    labels, counts = np.unique(pred_ids, return_counts=True)
    unseen = set(pred_segms)
    for label, cnt in zip(labels.tolist(), counts.tolist()):
        if label not in pred_segms:
            if label == VOID:
                continue
            raise KeyError(f"image {image_id}: segment {label} is in the PNG and not in the JSON")
        pred_segms[label]["area"] = cnt
        unseen.discard(label)
        if pred_segms[label]["category_id"] not in categories:
            raise KeyError(f"image {image_id}: segment {label} has unknown category_id "
                           f"{pred_segms[label]['category_id']}")
    if unseen:
        raise KeyError(f"image {image_id}: segments {sorted(unseen)} are in the JSON and not in the PNG")

    # confusion
    joint = gt_ids.astype(np.uint64) * OFFSET + pred_ids.astype(np.uint64)
    labels, counts = np.unique(joint, return_counts=True)
    gt_pred = {(int(l // OFFSET), int(l % OFFSET)): int(c) for l, c in zip(labels.tolist(), counts.tolist())}

    stat = PQStat()
    gt_matched, pred_matched = set(), set()
    for (g, p), inter in gt_pred.items():
        if g not in gt_segms or p not in pred_segms:
            continue
        gs, ps = gt_segms[g], pred_segms[p]
        if gs.get("iscrowd", 0) == 1:
            continue
        if gs["category_id"] != ps["category_id"]:
            continue
        union = ps["area"] + gs["area"] - inter - gt_pred.get((VOID, p), 0)
        iou = inter / union
        if iou > 0.5:
            s = stat[gs["category_id"]]
            s.tp += 1
            s.iou += iou
            gt_matched.add(g)
            pred_matched.add(p)

    crowd = {}
    for g, gs in gt_segms.items():
        if g in gt_matched:
            continue
        if gs.get("iscrowd", 0) == 1:
            crowd[gs["category_id"]] = g
            continue
        stat[gs["category_id"]].fn += 1

    for p, ps in pred_segms.items():
        if p in pred_matched:
            continue
        inter = gt_pred.get((VOID, p), 0)
        if ps["category_id"] in crowd:
            inter += gt_pred.get((crowd[ps["category_id"]], p), 0)
        if inter / ps["area"] > 0.5:
            continue
        stat[ps["category_id"]].fp += 1
    return stat


def summarize(stat: PQStat, categories: dict[int, dict]) -> dict:
    """{"all", "things", "stuff": {pq, sq, rq, n}, "per_class": {name: {id, isthing, pq, sq, rq, tp, fp, fn}}}"""
    out = {}
    for name, isthing in (("all", None), ("things", True), ("stuff", False)):
        out[name], per = stat.average(categories, isthing)
        if isthing is None:
            out["per_class"] = {
                str(categories[c].get("name", c)): {"id": c, "isthing": bool(categories[c].get("isthing")), **v}
                for c, v in per.items()
            }
    return out


def load_categories(gt_json: dict) -> dict[int, dict]:
    cats = gt_json.get("categories")
    if not cats:
        raise ValueError("ground-truth JSON has no categories")
    return {int(c["id"]): c for c in cats}


def pq_compute(gt_json: dict | str, pred_json: dict | str, gt_dir: str, pred_dir: str) -> dict:
    """PQ of a prediction set against ground truth, both in COCO panoptic format."""
    if isinstance(gt_json, str):
        with open(gt_json) as f:
            gt_json = json.load(f)
    if isinstance(pred_json, str):
        with open(pred_json) as f:
            pred_json = json.load(f)
    for d, what in ((gt_dir, "ground-truth"), (pred_dir, "prediction")):
        if not os.path.isdir(d):
            raise FileNotFoundError(f"{what} folder {d} does not exist")
    categories = load_categories(gt_json)
    preds = {a["image_id"]: a for a in pred_json.get("annotations", [])}
    stat = PQStat()
    n = 0
    for gt_ann in gt_json.get("annotations", []):
        iid = gt_ann["image_id"]
        if iid not in preds:
            raise KeyError(f"no prediction for the image with id {iid}")
        pr = preds[iid]
        gt_ids = read_id_png(os.path.join(gt_dir, gt_ann["file_name"]))
        pred_ids = read_id_png(os.path.join(pred_dir, pr["file_name"]))
        stat += pq_image(gt_ids, gt_ann["segments_info"], pred_ids, pr["segments_info"], categories, iid)
        n += 1
    res = summarize(stat, categories)
    res["images"] = n
    return res


def format_table(res: dict) -> str:
    lines = [f"{'':10s}| {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'N':>4s}", "-" * 38]
    for key, title in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
        r = res[key]
        lines.append(f"{title:10s}| {100 * r['pq']:6.2f} {100 * r['sq']:6.2f} {100 * r['rq']:6.2f} {r['n']:4d}")
    lines.append("")
    lines.append(f"{'class':10s} {'kind':5s}| {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'TP':>5s} {'FP':>5s} {'FN':>5s}")
    lines.append("-" * 55)
    for name, c in res["per_class"].items():
        kind = "thing" if c["isthing"] else "stuff"
        lines.append(f"{name[:10]:10s} {kind:5s}| {100 * c['pq']:6.2f} {100 * c['sq']:6.2f} {100 * c['rq']:6.2f} "
                     f"{c['tp']:5d} {c['fp']:5d} {c['fn']:5d}")
    if "images" in res:
        lines.append(f"\n{res['images']} images")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Panoptic quality of COCO-panoptic predictions against ground truth.")
    ap.add_argument("--gt", required=True, help="ground-truth JSON (COCO panoptic)")
    ap.add_argument("--gt-dir", required=True, help="folder of ground-truth PNGs")
    ap.add_argument("--pred", required=True, help="prediction JSON (COCO panoptic)")
    ap.add_argument("--pred-dir", required=True, help="folder of predicted PNGs")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    for path in (a.gt, a.pred):
        if not os.path.isfile(path):
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    try:
        res = pq_compute(a.gt, a.pred, a.gt_dir, a.pred_dir)
    except (KeyError, ValueError, FileNotFoundError, json.JSONDecodeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 1
    print(format_table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
