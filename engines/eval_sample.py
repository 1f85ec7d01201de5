#!/usr/bin/env python3
"""Evaluate the sample model on held-out synthetic frames: PQ / SQ / RQ per class and
all / things / stuff.

    python engines/eval_sample.py --model out/shapes-m2f                 # PyTorch checkpoint
    python engines/eval_sample.py --onnx samples/models/shapes.onnx      # ONNX file
    python engines/eval_sample.py --model out/shapes-m2f --device cuda --json out/pq.json
    python engines/eval_sample.py --oracle        # ground-truth logits: the pipeline's ceiling

The held-out set is ``shapes.heldout_seeds(--seed, --frames)``: by default 200 frames, 20
evenly spaced frames from each of 10 clips seeded ``(shapes.HELDOUT_TAG, 1, k)`` -- a seed space
that neither training nor the sample video uses. Each 640x360 frame is fed as segstream feeds
it: resized to fit the model's input size (its preprocessor_config.json or ONNX input shape)
keeping the aspect ratio, normalized (ImageNet mean/std), zero-padded bottom/right; after the
model the padding is cropped off the mask logits, then post-processed with
transformers' ``post_process_panoptic_segmentation`` (threshold 0.8, mask threshold 0.5,
overlap 0.8, stuff labels fused, target size 360x640). Predictions and ground truth are
written in COCO panoptic format to a temporary folder (or ``--keep DIR``) and scored with
engines/pq.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import pq  # noqa: E402
import shapes  # noqa: E402

DEFAULT_SIZE = (288, 512)  # when neither --size nor the model says (the oracle)
INPUT_H, INPUT_W = DEFAULT_SIZE


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def post_processor():
    """transformers' Mask2Former image processor (the PIL flavour needs no torchvision)."""
    import transformers
    for name in ("Mask2FormerImageProcessorPil", "Mask2FormerImageProcessor", "Mask2FormerImageProcessorFast"):
        cls = getattr(transformers, name, None)
        if cls is None:
            continue
        try:
            return cls()
        except Exception:  # e.g. the torchvision flavour without torchvision
            continue
    die("no usable Mask2Former image processor in this transformers")


class TorchRunner:
    def __init__(self, path: str, device: str):
        import torch
        from transformers import Mask2FormerForUniversalSegmentation
        self.torch = torch
        self.device = torch.device(device)
        # eager attention everywhere (the backbone would otherwise load as sdpa), as in training and export
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(
            path, attn_implementation="eager").to(self.device).eval()
        self.num_labels = self.model.config.num_labels

    def __call__(self, pix: np.ndarray, frames=()):
        torch = self.torch
        with torch.no_grad():
            out = self.model(pixel_values=torch.from_numpy(pix).to(self.device))
        return out.class_queries_logits.float().cpu(), out.masks_queries_logits.float().cpu()


class OnnxRunner:
    def __init__(self, path: str, device: str):
        import onnxruntime as ort
        import torch
        self.torch = torch
        avail = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in avail:
                die("--device cuda but onnxruntime has no CUDAExecutionProvider")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.sess = ort.InferenceSession(path, providers=providers)
        inputs = [i.name for i in self.sess.get_inputs()]
        outputs = [o.name for o in self.sess.get_outputs()]
        if inputs != ["pixel_values"] or not {"class_queries_logits", "masks_queries_logits"} <= set(outputs):
            die(f"{path}: expected input pixel_values and outputs class_queries_logits, masks_queries_logits; "
                f"got {inputs} -> {outputs}")
        shape = self.sess.get_inputs()[0].shape
        if shape[2:] != [INPUT_H, INPUT_W] and all(isinstance(d, int) for d in shape[2:]):
            die(f"{path}: input is {shape[2]}x{shape[3]}, this evaluation feeds {INPUT_H}x{INPUT_W}")
        self.batch = shape[0] if isinstance(shape[0], int) else None
        self.num_labels = self.sess.get_outputs()[outputs.index("class_queries_logits")].shape[-1]
        self.num_labels = self.num_labels - 1 if isinstance(self.num_labels, int) else None

    def __call__(self, pix: np.ndarray, frames=()):
        torch = self.torch
        if self.batch is not None and self.batch != pix.shape[0]:
            outs = [self.sess.run(["class_queries_logits", "masks_queries_logits"], {"pixel_values": pix[i:i + 1]})
                    for i in range(pix.shape[0])]
            c = np.concatenate([o[0] for o in outs])
            m = np.concatenate([o[1] for o in outs])
        else:
            c, m = self.sess.run(["class_queries_logits", "masks_queries_logits"], {"pixel_values": pix})
        return torch.from_numpy(np.asarray(c, dtype=np.float32)), torch.from_numpy(np.asarray(m, dtype=np.float32))


class OracleRunner:
    """Logits made from the ground truth (one query per segment, masks at 1/4 of the input
    resolution like the network's): the ceiling that this resolution and post-processing allow."""

    num_labels = shapes.NUM_CLASSES

    def __init__(self, num_queries: int = 20):
        import torch
        self.torch = torch
        self.q = num_queries

    def __call__(self, pix: np.ndarray, frames=()):
        torch = self.torch
        n = len(frames)
        h, w = INPUT_H // 4, INPUT_W // 4
        cls = torch.zeros(n, self.q, shapes.NUM_CLASSES + 1)
        cls[:, :, -1] = 10.0
        masks = torch.full((n, self.q, h, w), -10.0)
        for b, f in enumerate(frames):
            small, _ = shapes.model_ids(f.ids, INPUT_H, INPUT_W)  # placed as the frame
            for k, s in enumerate(f.segments[: self.q]):
                m = torch.from_numpy((small == s["id"]).astype(np.float32))
                p = torch.nn.functional.avg_pool2d(m[None, None], 4)[0, 0].clamp(1e-4, 1 - 1e-4)
                masks[b, k] = torch.log(p / (1 - p))
                cls[b, k, -1] = 0.0
                cls[b, k, s["category_id"]] = 10.0
        return cls, masks


def to_coco(result: dict) -> tuple[np.ndarray, list[dict]]:
    """transformers' panoptic result -> (uint32 id map with 0 = unlabelled, segments_info)."""
    seg = result["segmentation"]
    ids = seg.cpu().numpy() if hasattr(seg, "cpu") else np.asarray(seg)
    ids = np.clip(np.rint(ids), 0, None).astype(np.uint32)  # -1 (nothing detected) -> 0
    present = set(np.unique(ids).tolist())
    segs = [{"id": int(s["id"]), "category_id": int(s["label_id"]), "iscrowd": 0, "score": float(s["score"])}
            for s in result["segments_info"] if int(s["id"]) in present]
    return ids, segs


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        die(f"--size must be HxW, e.g. 288x512, got {text!r}")
    if h < 32 or w < 32 or h % 32 or w % 32:
        die(f"--size {text}: height and width must be multiples of 32")
    return h, w


def model_size(model: str | None, onnx: str | None) -> tuple[int, int] | None:
    """The input size the model was made for: the checkpoint's preprocessor_config.json, or the
    ONNX file's fixed input shape; None when neither says."""
    if model:
        pp = os.path.join(model, "preprocessor_config.json")
        if os.path.isfile(pp):
            with open(pp) as f:
                size = json.load(f).get("size") or {}
            if "height" in size and "width" in size:
                return int(size["height"]), int(size["width"])
    if onnx:
        import onnx as onnx_lib
        m = onnx_lib.load(onnx, load_external_data=False)
        dims = m.graph.input[0].type.tensor_type.shape.dim
        if len(dims) == 4 and dims[2].dim_value and dims[3].dim_value:
            return dims[2].dim_value, dims[3].dim_value
    return None


AREA_BINS = (1500, 4000, 8000)  # a true thing's area in pixels of the 640x360 frame, for the by-size rows


def add_confusion(table: dict, gt_ids: np.ndarray, gt_segs: list, pred_ids: np.ndarray, pred_segs: list) -> None:
    """Counts (true class, predicted class or None) over the ground-truth things: a thing's
    prediction is the predicted segment, of any class, with IoU > 0.5 (unique when it exists).
    Also counts, per area bin (``AREA_BINS``), the things, those found and those found with
    the right class, under the key ``("area", bin)``."""
    pred_cat = {s["id"]: s["category_id"] for s in pred_segs}
    pred_area = {i: int((pred_ids == i).sum()) for i in pred_cat}
    for g in gt_segs:
        if g["category_id"] not in shapes.THING_IDS:
            continue
        m = gt_ids == g["id"]
        area = int(m.sum())
        got = None
        hits, counts = np.unique(pred_ids[m], return_counts=True)
        for i, inter in zip(hits.tolist(), counts.tolist()):
            if i in pred_cat and inter / (area + pred_area[i] - inter) > 0.5:
                got = pred_cat[i]
        key = (g["category_id"], got)
        table[key] = table.get(key, 0) + 1
        row = table.setdefault(("area", int(np.searchsorted(AREA_BINS, area, side="right"))), [0, 0, 0])
        row[0] += 1
        row[1] += got is not None
        row[2] += got == g["category_id"]


def format_confusion(table: dict) -> str:
    names = {l["id"]: l["name"] for l in shapes.LABELS}
    cols = list(shapes.THING_IDS) + sorted(set(p for g, p in table if g != "area" and p is not None
                                               and p not in shapes.THING_IDS)) + [None]
    head = "true \\ predicted (IoU > 0.5) | " + " | ".join(names.get(c, "none") if c is not None else "none" for c in cols)
    rows = [head]
    for g in shapes.THING_IDS:
        rows.append(f"{names[g]:<29} | " + " | ".join(f"{table.get((g, c), 0):>{len(names.get(c, 'none') if c is not None else 'none')}}"
                                                     for c in cols))
    rows.append("\ntrue thing's area (px, 640x360) | things | found (IoU > 0.5) | right class, of those found")
    edges = (0,) + AREA_BINS
    for b in range(len(edges)):
        n, found, right = table.get(("area", b), (0, 0, 0))
        span = f"{edges[b]}-{edges[b + 1] - 1}" if b + 1 < len(edges) else f">= {edges[b]}"
        rows.append(f"{span:<31} | {n:>6} | {found / max(n, 1):>17.2f} | {right / max(found, 1):>27.2f}")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="PQ of the sample model on held-out synthetic shapes frames.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint folder (save_pretrained)")
    src.add_argument("--onnx", help="ONNX model file (input pixel_values [N,3,H,W])")
    src.add_argument("--oracle", action="store_true",
                     help="no model: logits made from the ground truth at 1/4 input resolution (the ceiling)")
    ap.add_argument("--size", help="network input HxW (default: the checkpoint's preprocessor_config.json, the ONNX "
                                   "input shape, or 288x512)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--frames", type=int, default=200, help="held-out frames")
    ap.add_argument("--seed", type=int, default=shapes.HELDOUT_SEED, help="held-out seed")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--mask-threshold", type=float, default=0.5)
    ap.add_argument("--overlap", type=float, default=0.8, help="overlap_mask_area_threshold")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--confusion", action="store_true",
                    help="also print which class each ground-truth thing got: the predicted segment of any class "
                         "with IoU > 0.5 (or none)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    ap.add_argument("--keep", help="write ground truth and predictions here instead of a temporary folder")
    a = ap.parse_args(argv)
    if a.frames < 1 or a.batch_size < 1:
        die("--frames and --batch-size must be >= 1")
    if a.seed < 0:
        die(f"--seed must be >= 0, got {a.seed}")
    for n, v in (("--threshold", a.threshold), ("--mask-threshold", a.mask_threshold), ("--overlap", a.overlap)):
        if not 0.0 <= v <= 1.0:
            die(f"{n} must be in 0..1, got {v}")
    if not (a.device == "cpu" or a.device == "cuda" or a.device.startswith("cuda:")):
        die(f"--device must be cpu or cuda, got {a.device!r}")
    path = a.model or a.onnx or "oracle"
    if a.model and not os.path.isfile(os.path.join(a.model, "config.json")):
        die(f"{a.model} is not a checkpoint folder (no config.json)")
    if a.onnx and not os.path.isfile(a.onnx):
        die(f"{a.onnx} does not exist")

    global INPUT_H, INPUT_W  # set on every call: an earlier call in the same process may have changed it
    INPUT_H, INPUT_W = (parse_size(a.size) if a.size else model_size(a.model, a.onnx)) or DEFAULT_SIZE

    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device.startswith("cuda") and a.model and not torch.cuda.is_available():
        die("--device cuda but torch sees no CUDA device")
    if a.oracle:
        runner = OracleRunner()
    else:
        runner = TorchRunner(a.model, a.device) if a.model else OnnxRunner(a.onnx, a.device)
    if runner.num_labels is not None and runner.num_labels != shapes.NUM_CLASSES:
        die(f"{path} predicts {runner.num_labels} classes, the shapes label set has {shapes.NUM_CLASSES}")
    proc = post_processor()

    work = a.keep or tempfile.mkdtemp(prefix="segstream-eval-")
    gt_dir, pred_dir = os.path.join(work, "gt"), os.path.join(work, "pred")
    os.makedirs(gt_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)

    items = shapes.heldout_seeds(a.seed, a.frames)
    frame_iter = shapes.heldout_frames(items)
    gt_anns, pred_anns, images = [], [], []
    t_model = 0.0
    confusion: dict = {}
    t0 = time.time()
    for b0 in range(0, len(items), a.batch_size):
        batch = items[b0:b0 + a.batch_size]
        frames = [next(frame_iter) for _ in batch]
        inputs = [shapes.model_input(f.rgb, INPUT_H, INPUT_W) for f in frames]
        pix = np.stack([i[0] for i in inputs])
        t = time.time()
        cls_logits, mask_logits = runner(pix, frames)
        t_model += time.time() - t
        # Crop the padding off the masks (as segstream's post-processing does) before
        # transformers' post-processing, which would otherwise stretch the whole padded canvas
        # over the frame.
        mask_logits = shapes.crop_mask_logits(mask_logits, inputs[0][1], (INPUT_H, INPUT_W))
        outs = types.SimpleNamespace(class_queries_logits=cls_logits, masks_queries_logits=mask_logits)
        results = proc.post_process_panoptic_segmentation(
            outs, threshold=a.threshold, mask_threshold=a.mask_threshold,
            overlap_mask_area_threshold=a.overlap, label_ids_to_fuse=set(shapes.STUFF_IDS),
            target_sizes=[fr.rgb.shape[:2] for fr in frames])
        for k, (f, r) in enumerate(zip(frames, results)):
            iid = b0 + k
            name = f"{iid:05d}.png"
            Image.fromarray(f.panoptic_png()).save(os.path.join(gt_dir, name), compress_level=1)
            gt_anns.append(shapes.coco_annotation(f, iid, name))
            ids, segs = to_coco(r)
            if a.confusion:
                add_confusion(confusion, f.ids, f.segments, ids, segs)
            Image.fromarray(pq.id2rgb(ids)).save(os.path.join(pred_dir, name), compress_level=1)
            pred_anns.append({"image_id": iid, "file_name": name, "segments_info": segs})
            cseed, fi = batch[k]
            images.append({"id": iid, "file_name": name, "width": f.rgb.shape[1], "height": f.rgb.shape[0],
                           "clip_seed": list(cseed), "frame_index": fi})
        done = min(b0 + a.batch_size, len(items))
        if sys.stderr.isatty():
            print(f"\r{done}/{len(items)} frames", end="" if done < len(items) else "\n", file=sys.stderr, flush=True)
        elif done == len(items) or (b0 // a.batch_size) % 10 == 9:
            print(f"{done}/{len(items)} frames", file=sys.stderr, flush=True)
    cats = shapes.coco_categories()
    gt_json = {"images": images, "annotations": gt_anns, "categories": cats}
    pred_json = {"images": images, "annotations": pred_anns, "categories": cats}
    for name, js in (("gt.json", gt_json), ("pred.json", pred_json)):
        with open(os.path.join(work, name), "w") as f:
            json.dump(js, f)
    res = pq.pq_compute(os.path.join(work, "gt.json"), os.path.join(work, "pred.json"), gt_dir, pred_dir)
    wall = time.time() - t0
    print(pq.format_table(res))
    if a.confusion:
        print("\n" + format_confusion(confusion))
        res["confusion"] = {f"{g}->{p}": n for (g, p), n in sorted(confusion.items(), key=str) if g != "area"}
        res["confusion_by_area"] = {f"{b}": dict(zip(("things", "found", "right_class"), v))
                                    for (g, b), v in sorted(confusion.items(), key=str) if g == "area"}
    print(f"\nmodel {path} on {a.device}: {len(items)} held-out frames (seed {a.seed}), "
          f"model time {t_model:.1f} s ({len(items) / max(t_model, 1e-9):.1f} frames/s), total {wall:.1f} s")
    if a.json:
        res["meta"] = {"model": path, "kind": "pytorch" if a.model else "onnx" if a.onnx else "oracle", "device": a.device,
                       "frames": len(items), "heldout_seed": a.seed, "input": [INPUT_H, INPUT_W],
                       "threshold": a.threshold, "mask_threshold": a.mask_threshold, "overlap": a.overlap,
                       "label_ids_to_fuse": list(shapes.STUFF_IDS), "transformers": transformers.__version__,
                       "torch": torch.__version__, "model_s": round(t_model, 2), "wall_s": round(wall, 2)}
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    if not a.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
