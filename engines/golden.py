#!/usr/bin/env python3
"""Golden outputs for segstream's preprocess and post-processing.

For each case, writes tests/golden/<case>/ with the frame, the exact network input, the
PyTorch model's raw outputs on it, and transformers' own post-processing of those outputs
(panoptic, instance, semantic). See tests/golden/README.md for the file formats and the
algorithm description.

Random-model cases (the committed ones):

    python engines/golden.py --checkpoint random --out tests/golden/

Cases from a real checkpoint and a video (frames decoded with gst-launch-1.0):

    python engines/golden.py --checkpoint samples/models/shapes-hf --size 288x512 \\
        --video samples/shapes.mp4 --frames 0,18,36 --prefix shapes --out tests/golden/

or from image files: --frames a.png,b.png (without --video).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNASSIGNED_U16 = 65535  # what a -1 in a transformers map is stored as


def log(msg: str) -> None:
    print(f"golden: {msg}", file=sys.stderr, flush=True)


class GoldenError(Exception):
    pass


# --------------------------------------------------------------------------------------
# Random-model cases. Seeds and thresholds are fixed; changing anything here changes the
# committed golden files (regenerate them and say so).


@dataclass(frozen=True)
class RandomCase:
    name: str
    spec: str  # key of engines.m2f_tiny.SPECS
    seed: int
    sharpen: float
    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    threshold: float = 0.8  # panoptic score threshold
    instance_threshold: float | None = None  # None: 0.8, stepped down until instances exist
    frame_seed: int = 0


RANDOM_CASES = [
    # frame 150x250 into 128x160: resized to 96x160, 32 rows of bottom padding
    RandomCase("random-pad-bottom", "swin-q12-k7", seed=2, sharpen=8.0, frame_hw=(150, 250), input_hw=(128, 160), frame_seed=11),
    # 1:1, upscaled 200x200 -> 160x160, no padding
    RandomCase("random-square", "swin-q16-k5", seed=4, sharpen=8.0, frame_hw=(200, 200), input_hw=(160, 160), frame_seed=12),
    # 4:3, downscaled 120x160 -> 96x128 exactly, no padding; the larger spec
    RandomCase("random-exact", "swin-q20-k10", seed=3, sharpen=8.0, frame_hw=(120, 160), input_hw=(96, 128), frame_seed=13),
    # portrait 200x120 into 128x128: width 120*0.64 = 76.8 rounds to 77, 51 columns of right padding
    RandomCase("random-pad-right", "swin-q24-k12", seed=7, sharpen=8.0, frame_hw=(200, 120), input_hw=(128, 128), frame_seed=14),
]


def synthetic_frame(h: int, w: int, seed: int) -> np.ndarray:
    """A deterministic RGB frame: gradient background plus a few filled shapes."""
    from PIL import Image, ImageDraw

    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack(
        [
            (40 + 120 * yy / max(h - 1, 1)),
            (90 + 60 * xx / max(w - 1, 1)),
            np.full((h, w), 150.0),
        ],
        axis=-1,
    ).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randint(0, w - 10), rng.randint(0, h - 10)
        x1, y1 = x0 + rng.randint(10, max(11, w // 2)), y0 + rng.randint(10, max(11, h // 2))
        color = tuple(int(c) for c in rng.randint(0, 256, 3))
        if rng.rand() < 0.5:
            d.ellipse([x0, y0, x1, y1], fill=color)
        else:
            d.rectangle([x0, y0, x1, y1], fill=color)
    return np.asarray(img, dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------
# Preprocessing (the contract the Rust preprocess implements)


def fit_size(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """Resized (valid) size: scale s = min(H/fh, W/fw) in float64, each side
    floor(side * s + 0.5), clamped to [1, H] / [1, W]."""
    fh, fw = frame_hw
    H, W = input_hw
    s = min(H / fh, W / fw)
    vh = min(H, max(1, int(math.floor(fh * s + 0.5))))
    vw = min(W, max(1, int(math.floor(fw * s + 0.5))))
    return vh, vw


def preprocess(frame: np.ndarray, input_hw, mean01, std01) -> tuple[np.ndarray, tuple[int, int]]:
    """frame uint8 [h,w,3] RGB -> float32 [1,3,H,W]: PIL bilinear resize to the fitted size,
    x/255, (x-mean)/std per channel, zero padding bottom/right (after normalisation)."""
    from PIL import Image

    H, W = input_hw
    vh, vw = fit_size(frame.shape[:2], input_hw)
    img = Image.fromarray(frame, "RGB")
    if (vh, vw) != frame.shape[:2]:
        img = img.resize((vw, vh), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    x = (x - np.asarray(mean01, dtype=np.float32)) / np.asarray(std01, dtype=np.float32)
    out = np.zeros((1, 3, H, W), dtype=np.float32)
    out[0, :, :vh, :vw] = x.transpose(2, 0, 1)
    return out, (vh, vw)


# --------------------------------------------------------------------------------------
# Frames from a video or image files


def decode_video_frames(video: Path, indices: list[int]) -> list[np.ndarray]:
    """Decode frames 0..max(indices) with gst-launch-1.0 to PNGs and return the chosen ones."""
    from PIL import Image

    if not video.is_file():
        raise GoldenError(f"video not found: {video}")
    gst = shutil.which("gst-launch-1.0")
    if gst is None:
        raise GoldenError("gst-launch-1.0 not found (needed to decode --video)")
    last = max(indices)
    # identity eos-after=N lets N-1 buffers through (GStreamer 1.22), hence last + 2
    with tempfile.TemporaryDirectory(prefix="golden-frames-") as tmp:
        pattern = os.path.join(tmp, "f%06d.png")
        cmd = [
            gst, "-q", "filesrc", f"location={video}", "!", "decodebin", "!", "videoconvert", "!",
            "video/x-raw,format=RGB", "!", "identity", f"eos-after={last + 2}", "!",
            "pngenc", "compression-level=1", "!", "multifilesink", f"location={pattern}",
        ]  # fmt: skip
        log(f"decoding frames 0..{last} of {video}")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise GoldenError(f"gst-launch-1.0 failed decoding {video}: {r.stderr.strip().splitlines()[-1:]}")
        frames = []
        for i in indices:
            p = Path(tmp) / f"f{i:06d}.png"
            if not p.exists():
                raise GoldenError(f"frame {i} not in {video} (decoded {len(os.listdir(tmp))} frames)")
            frames.append(np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8).copy())
    return frames


# --------------------------------------------------------------------------------------
# Model loading


def load_checkpoint(path: str):
    import torch
    from transformers import AutoConfig, Mask2FormerForUniversalSegmentation

    p = Path(path)
    if not p.is_dir():
        raise GoldenError(f"checkpoint directory not found: {path}")
    cfg = AutoConfig.from_pretrained(p)
    if cfg.model_type != "mask2former":
        raise GoldenError(f"{path} is a {cfg.model_type!r} checkpoint, not mask2former")
    model = Mask2FormerForUniversalSegmentation.from_pretrained(p, attn_implementation="eager")
    model.eval()
    torch.set_grad_enabled(False)
    return model


def mean_std_from_checkpoint(path: str):
    pp = Path(path) / "preprocessor_config.json"
    if pp.is_file():
        d = json.loads(pp.read_text())
        mean, std = d.get("image_mean"), d.get("image_std")
        if mean and std:
            return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return IMAGENET_MEAN, IMAGENET_STD


def labels_for_checkpoint(model, path: str, labels_file: str | None):
    """[(id, name, isthing)] using the same resolution as engines/export.py."""
    from engines.export import resolve_labels

    labels, _source = resolve_labels(model.config, Path(path), labels_file)
    return [(d["id"], d["name"], d["isthing"]) for d in labels]


# --------------------------------------------------------------------------------------
# Post-processing with transformers, and writing


def save_u16_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    a = np.asarray(arr)
    a = np.where(a < 0, UNASSIGNED_U16, a).astype(np.int64)
    if a.max(initial=0) > 65535:
        raise GoldenError(f"value {a.max()} does not fit a 16-bit PNG")
    Image.fromarray(a.astype(np.uint16)).save(path)  # mode I;16, 16-bit grayscale PNG


def load_u16_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path), dtype=np.int64).astype(np.uint16)


def _processor():
    """transformers.Mask2FormerImageProcessor resolves to the PIL backend class when
    torchvision is absent (as here); both backends share the same post_process_* code."""
    from transformers import Mask2FormerImageProcessor

    return Mask2FormerImageProcessor()


class _Out:
    def __init__(self, cls, masks):
        self.class_queries_logits = cls
        self.masks_queries_logits = masks


def instance_ranks(cls_t, masks_t, frame_hw, threshold):
    """Replicates post_process_instance_segmentation step by step (same tensor ops) to record,
    for each topk rank, its query, class, class score, mask score and whether it was kept.
    The rank order is torch's topk(sorted=False) order, which is what transformers iterates."""
    import torch

    mask_cls = cls_t[0]
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[1] - 1
    mask_pred = torch.nn.functional.interpolate(masks_t, size=(384, 384), mode="bilinear", align_corners=False)[0]
    scores = torch.nn.functional.softmax(mask_cls, dim=-1)[:, :-1]
    scores_per_image, topk_indices = scores.flatten(0, 1).topk(num_queries, sorted=False)
    queries = torch.div(topk_indices, num_classes, rounding_mode="floor")
    mp = mask_pred[queries]
    pred_masks = (mp > 0).float()
    mask_scores = (mp.sigmoid().flatten(1) * pred_masks.flatten(1)).sum(1) / (pred_masks.flatten(1).sum(1) + 1e-6)
    pred_scores = scores_per_image * mask_scores
    pm = torch.nn.functional.interpolate(pred_masks.unsqueeze(0), size=tuple(frame_hw), mode="nearest")[0]
    ranks = []
    for j in range(num_queries):
        kept = bool(not torch.all(pm[j] == 0) and pred_scores[j].item() >= threshold)
        ranks.append(
            {
                "rank": j,
                "query": int(queries[j]),
                "label_id": int(topk_indices[j]) % num_classes,
                "class_score": round(float(scores_per_image[j]), 6),
                "mask_score": round(float(mask_scores[j]), 6),
                "score": round(float(pred_scores[j]), 6),
                "kept": kept,
            }
        )
    return ranks


def panoptic_unique_ids(cls_t, masks_t, frame_hw, label_ids_to_fuse, threshold, mask_threshold=0.5, overlap=0.8):
    """transformers' panoptic algorithm with one change: segment ids never repeat.

    transformers' compute_segments sets its running id counter to the fused id when a
    fused (stuff) class is seen again, so the next new segment re-uses an id that is
    already taken (two segments, different labels, one id). Here new segments always get
    max-id + 1, and a fused class keeps one entry (the first query's, as detectron2 does)
    with the list of queries merged into it. Everything else (interpolations, score
    weighting, argmax, validity check, order) is transformers' own code path."""
    import torch
    from torch import nn
    from transformers.models.mask2former import image_processing_pil_mask2former as ip

    num_labels = cls_t.shape[-1] - 1
    masks = nn.functional.interpolate(masks_t, size=(384, 384), mode="bilinear", align_corners=False)
    mask_probs = masks.sigmoid()[0]
    pred_scores, pred_labels = nn.functional.softmax(cls_t, dim=-1).max(-1)
    queries = torch.arange(cls_t.shape[1])
    keep = pred_labels[0].ne(num_labels) & (pred_scores[0] > threshold)
    mp, ps, pl, qs = mask_probs[keep], pred_scores[0][keep], pred_labels[0][keep], queries[keep]
    h, w = frame_hw
    seg = torch.zeros((h, w), dtype=torch.int32)
    if mp.shape[0] == 0:
        return (seg - 1).numpy(), []
    mp = nn.functional.interpolate(mp.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0]
    mp *= ps.view(-1, 1, 1)
    mask_labels = mp.argmax(0)
    segments, by_id, fused = [], {}, {}
    next_id = 0
    for k in range(pl.shape[0]):
        c = pl[k].item()
        exists, mask_k = ip.check_segment_validity(mask_labels, mp, k, mask_threshold, overlap)
        if not exists:
            continue
        if c in fused:
            sid = fused[c]
            seg[mask_k] = sid
            by_id[sid]["queries"].append(int(qs[k]))
            continue
        next_id += 1
        sid = next_id
        seg[mask_k] = sid
        entry = {"id": sid, "label_id": c, "was_fused": c in label_ids_to_fuse, "score": round(ps[k].item(), 6),
                 "queries": [int(qs[k])]}  # fmt: skip
        segments.append(entry)
        by_id[sid] = entry
        if c in label_ids_to_fuse:
            fused[c] = sid
    return seg.numpy(), segments


def run_postprocess(cls_t, masks_t, frame_hw, label_ids_to_fuse, threshold, instance_threshold,
                    mask_threshold=0.5, overlap=0.8):  # fmt: skip
    """cls_t [1,Q,K+1], masks_t [1,Q,h,w] torch tensors -> dict of results."""
    proc = _processor()
    out = _Out(cls_t, masks_t)
    ts = [tuple(frame_hw)]
    pan = proc.post_process_panoptic_segmentation(
        out, threshold=threshold, mask_threshold=mask_threshold, overlap_mask_area_threshold=overlap,
        label_ids_to_fuse=set(label_ids_to_fuse), target_sizes=ts,
    )[0]  # fmt: skip
    inst = proc.post_process_instance_segmentation(
        out, threshold=instance_threshold, mask_threshold=mask_threshold, overlap_mask_area_threshold=overlap,
        target_sizes=ts,
    )[0]  # fmt: skip
    sem = proc.post_process_semantic_segmentation(out, target_sizes=ts)[0]
    ranks = instance_ranks(cls_t, masks_t, frame_hw, instance_threshold)
    kept = [r for r in ranks if r["kept"]]
    segs = inst["segments_info"]
    if len(kept) != len(segs) or any(
        k["label_id"] != s["label_id"] or abs(k["score"] - s["score"]) > 1e-6 for k, s in zip(kept, segs)
    ):
        raise GoldenError("instance replication does not match transformers (transformers changed?)")
    inst_segs = [{**s, "query": k["query"], "rank": k["rank"]} for k, s in zip(kept, segs)]
    uniq_map, uniq_segs = panoptic_unique_ids(cls_t, masks_t, frame_hw, set(label_ids_to_fuse), threshold,
                                              mask_threshold, overlap)  # fmt: skip
    tf_map = pan["segmentation"].numpy().astype(np.int64)
    # same pixel partition: every unique id maps onto exactly one transformers id
    pairs = np.unique(np.stack([uniq_map.astype(np.int64).ravel(), tf_map.ravel()]), axis=1)
    if len(np.unique(pairs[0])) != pairs.shape[1]:
        raise GoldenError("panoptic_unique_ids does not partition the frame like transformers")
    return {
        "panoptic_unique": (uniq_map, uniq_segs),
        "panoptic": (pan["segmentation"].numpy(), pan["segments_info"]),
        "instance": (inst["segmentation"].numpy(), inst_segs),
        "semantic": sem.numpy(),
        "ranks": ranks,
    }


def write_results(case_dir: Path, res: dict, suffix: str) -> None:
    pan_map, pan_segs = res["panoptic"]
    save_u16_png(case_dir / f"panoptic{suffix}.png", pan_map)
    (case_dir / f"panoptic{suffix}.json").write_text(json.dumps({"segments_info": pan_segs}, indent=1) + "\n")
    u_map, u_segs = res["panoptic_unique"]
    save_u16_png(case_dir / f"panoptic_unique{suffix}.png", u_map)
    (case_dir / f"panoptic_unique{suffix}.json").write_text(json.dumps({"segments_info": u_segs}, indent=1) + "\n")
    inst_map, inst_segs = res["instance"]
    save_u16_png(case_dir / f"instance{suffix}.png", inst_map)
    (case_dir / f"instance{suffix}.json").write_text(
        json.dumps({"segments_info": inst_segs, "topk": res["ranks"]}, indent=1) + "\n"
    )
    save_u16_png(case_dir / f"semantic{suffix}.png", res["semantic"])
    for kind in ("panoptic", "panoptic_unique", "instance", "semantic"):  # the PNG must read back to what was computed
        m = res[kind][0] if kind != "semantic" else res[kind]
        back = load_u16_png(case_dir / f"{kind}{suffix}.png").astype(np.int64)
        back[back == UNASSIGNED_U16] = -1
        if not np.array_equal(back, np.asarray(m).astype(np.int64)):
            raise GoldenError(f"{kind}{suffix}.png does not read back to the computed map")


def counts(res: dict, stuff_ids) -> dict:
    pan_segs = res["panoptic"][1]
    return {
        "panoptic_segments": len({s["id"] for s in pan_segs}),
        "panoptic_things": len({s["id"] for s in pan_segs if s["label_id"] not in stuff_ids}),
        "panoptic_stuff": len({s["id"] for s in pan_segs if s["label_id"] in stuff_ids}),
        "panoptic_fused_entries": sum(1 for s in pan_segs if s["was_fused"]),
        "panoptic_unique_segments": len(res["panoptic_unique"][1]),
        "instances": len(res["instance"][1]),
    }


def write_case(out_dir: Path, name: str, frame: np.ndarray, model, input_hw, mean01, std01, labels,
               threshold: float, instance_threshold: float | None, checkpoint: str, extra_meta: dict) -> dict:  # fmt: skip
    import torch
    import transformers
    from PIL import Image

    case_dir = out_dir / name
    case_dir.mkdir(parents=True, exist_ok=True)
    fh, fw = frame.shape[:2]
    pv, (vh, vw) = preprocess(frame, input_hw, mean01, std01)
    with torch.no_grad():
        o = model(pixel_values=torch.from_numpy(pv))
    cls_t = o.class_queries_logits.float().contiguous()
    masks_t = o.masks_queries_logits.float().contiguous()
    stuff_ids = [i for i, _n, t in labels if not t]

    # instance threshold: 0.8 unless that yields no instance, then step down (recorded)
    candidates = [instance_threshold] if instance_threshold is not None else [0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    for it in candidates:
        res = run_postprocess(cls_t, masks_t, (fh, fw), stuff_ids, threshold, it)
        if res["instance"][1]:
            break
    inst_thr = it

    Image.fromarray(frame, "RGB").save(case_dir / "frame.png")
    np.save(case_dir / "pixel_values.npy", pv)
    np.save(case_dir / "class_queries_logits.npy", cls_t[0].numpy().astype(np.float32))
    np.save(case_dir / "masks_queries_logits.npy", masks_t[0].numpy().astype(np.float32))
    write_results(case_dir, res, "")

    # Padded input: transformers does not crop the padding before resizing to the frame, so
    # its maps are the padded canvas stretched over the frame. The *_cropped files apply the
    # same transformers functions to mask logits cropped to the valid region the way
    # detectron2 does (bilinear to the padded input size H x W, keep [:vh, :vw]).
    cropped = None
    if (vh, vw) != tuple(input_hw):
        up = torch.nn.functional.interpolate(masks_t, size=tuple(input_hw), mode="bilinear", align_corners=False)
        masks_c = up[:, :, :vh, :vw].contiguous()
        cropped = run_postprocess(cls_t, masks_c, (fh, fw), stuff_ids, threshold, inst_thr)
        write_results(case_dir, cropped, "_cropped")

    meta = {
        "case": name,
        "frame": {"height": fh, "width": fw},
        "input": {"height": input_hw[0], "width": input_hw[1]},
        "valid": {"height": vh, "width": vw},
        "mean": [round(m * 255, 6) for m in mean01],
        "std": [round(s * 255, 6) for s in std01],
        "image_mean": list(mean01),
        "image_std": list(std01),
        "num_queries": int(cls_t.shape[1]),
        "num_labels": int(cls_t.shape[2] - 1),
        "mask_size": {"height": int(masks_t.shape[2]), "width": int(masks_t.shape[3])},
        "labels": [{"id": i, "name": n, "isthing": bool(t)} for i, n, t in labels],
        "thresholds": {
            "threshold": threshold,
            "instance_threshold": inst_thr,
            "mask_threshold": 0.5,
            "overlap_mask_area_threshold": 0.8,
            "label_ids_to_fuse": stuff_ids,
        },
        "encoding": {
            "panoptic.png": "uint16 segment id; 0 = unassigned; 65535 = transformers' -1 (no segment at all)",
            "panoptic_unique.png": "as panoptic.png, ids never repeat (see README)",
            "instance.png": "uint16 instance id (0-based, = segments_info id); 65535 = unassigned (-1)",
            "semantic.png": "uint16 label id (argmax, every pixel assigned)",
        },
        "produced_by": {
            "script": "engines/golden.py",
            "post_processor": f"{type(_processor()).__module__}.{type(_processor()).__name__}",
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "checkpoint": checkpoint,
            **extra_meta,
        },
        "counts": counts(res, stuff_ids),
        "cropped_files": cropped is not None,
    }
    if cropped is not None:
        meta["counts_cropped"] = counts(cropped, stuff_ids)
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"{name}: frame {fh}x{fw} -> valid {vh}x{vw} in {input_hw[0]}x{input_hw[1]}; {meta['counts']}")
    return meta


def parse_hw(s: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise GoldenError(f"size must be HxW, got {s!r}")
    return h, w


def random_case_model(case: RandomCase):
    from engines.m2f_tiny import SPECS, build_model

    spec = SPECS[case.spec]
    model = build_model(spec, seed=case.seed, sharpen=case.sharpen, attn_implementation="eager")
    labels = [(i, n, t) for i, (n, t) in enumerate(spec.labels)]
    return model, labels


def generate_random(out: Path, only: list[str] | None = None) -> list[dict]:
    import torch

    torch.manual_seed(0)
    metas = []
    for case in RANDOM_CASES:
        if only and case.name not in only:
            continue
        model, labels = random_case_model(case)
        frame = synthetic_frame(*case.frame_hw, seed=case.frame_seed)
        extra = {"spec": case.spec, "seed": case.seed, "sharpen": case.sharpen, "frame_seed": case.frame_seed}
        metas.append(
            write_case(out, case.name, frame, model, case.input_hw, IMAGENET_MEAN, IMAGENET_STD, labels,
                       case.threshold, case.instance_threshold, "random", extra)  # fmt: skip
        )
    return metas


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="'random' (built-in random cases) or a save_pretrained directory")
    ap.add_argument("--out", default=str(ROOT / "tests" / "golden"), help="output folder (default tests/golden)")
    ap.add_argument("--cases", default=None, help="random only: comma-separated case names to (re)generate")
    ap.add_argument("--size", default=None, help="checkpoint: network input HxW (e.g. 288x512)")
    ap.add_argument("--video", default=None, help="checkpoint: video file to take --frames from")
    ap.add_argument("--frames", default=None, help="frame indices of --video (0,18,...), or image files (a.png,b.png)")
    ap.add_argument("--prefix", default=None, help="case name prefix (default: video/checkpoint name)")
    ap.add_argument("--labels", default=None, help="checkpoint: label set JSON giving isthing (configs/labels/X.json)")
    ap.add_argument("--threshold", type=float, default=0.8, help="panoptic score threshold (default 0.8)")
    ap.add_argument("--instance-threshold", type=float, default=None,
                    help="instance score threshold (default: 0.8, stepped down if no instance passes)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        if args.checkpoint == "random":
            only = args.cases.split(",") if args.cases else None
            generate_random(out, only)
            return 0
        if not args.size:
            raise GoldenError("--size HxW is required with a checkpoint directory")
        input_hw = parse_hw(args.size)
        if input_hw[0] % 32 or input_hw[1] % 32:
            raise GoldenError(f"size {args.size} is not divisible by 32")
        if not args.frames:
            raise GoldenError("--frames is required with a checkpoint directory")
        model = load_checkpoint(args.checkpoint)
        mean01, std01 = mean_std_from_checkpoint(args.checkpoint)
        labels = labels_for_checkpoint(model, args.checkpoint, args.labels)
        items = [f.strip() for f in args.frames.split(",") if f.strip()]
        if args.video:
            idx = [int(i) for i in items]
            frames = decode_video_frames(Path(args.video), idx)
            prefix = args.prefix or Path(args.video).stem
            names = [f"{prefix}-f{i:04d}" for i in idx]
        else:
            from PIL import Image

            frames = [np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8).copy() for f in items]
            prefix = args.prefix or Path(args.checkpoint).name
            names = [f"{prefix}-{Path(f).stem}" for f in items]
        for name, frame in zip(names, frames):
            write_case(out, name, frame, model, input_hw, mean01, std01, labels, args.threshold,
                       args.instance_threshold, args.checkpoint, {"video": args.video})  # fmt: skip
        return 0
    except GoldenError as e:
        print(f"golden: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
