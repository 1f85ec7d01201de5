#!/usr/bin/env python3
"""The Python reference pipeline, timed the way `segstream bench` times segstream.

What a Python user would write with transformers: the same frames decoded, the same
network in PyTorch (transformers' ``Mask2FormerForUniversalSegmentation``) at the same
input size with the same thread count, transformers' own image processor and
``post_process_panoptic_segmentation``, a NumPy overlay, pycocotools RLE + ``json.dumps``
for the metadata, and x264 (GStreamer, ``speed-preset=veryfast`` as segstream) for the
video. Decode and encode run in ``gst-launch-1.0`` subprocesses connected by pipes (the
usual "ffmpeg pipe" pattern; OpenCV/PyAV are not among the project's dependencies).

**Weights.** The sample model's PyTorch checkpoint, ``samples/models/shapes-m2f/``
(``save_pretrained``), the one ``samples/models/shapes-m2f.onnx`` was exported from.
``check_weights`` runs the first frame through PyTorch and ONNX Runtime and reports the
largest logit difference (the run fails above 1e-3; expect ~1e-5): "same network" is checked,
not assumed.

Commands::

    python3 engines/peer_bench.py --frames 30 --threads 2 --json out/peer.json   # timing
    python3 engines/peer_bench.py --pq --json out/peer-pq.json                      # PQ on all frames
    python3 engines/peer_bench.py --checkpoint CKPT --onnx M.onnx --bf16 ...        # bf16 autocast

``--checkpoint``/``--onnx`` take any exported model (scripts/bench-openvino.sh: a real-size
Swin-T, 133 classes): labels and colours come from the model card beside ``--onnx``.
``--bf16`` runs the network under ``torch.autocast("cpu", torch.bfloat16)`` (the weights
check stays in f32) and post-processes the logits in f32.

``--pq`` runs every frame of the sample through the PyTorch model and scores two
post-processings against samples/gt with engines/pq.py: detectron2's
``panoptic_inference`` (tests/python/test_run_pq.py's transcription; segstream's
default semantics) and transformers' ``post_process_panoptic_segmentation``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

VIDEO = os.path.join(ROOT, "samples", "shapes.mp4")
ONNX = os.path.join(ROOT, "samples", "models", "shapes-m2f.onnx")
CHECKPOINT = os.path.join(ROOT, "samples", "models", "shapes-m2f")

STAGES = ["decode", "preprocess", "inference", "postprocess", "overlay", "encode", "json"]


# ---------------------------------------------------------------- the model

def build_model(checkpoint: str):
    """The sample's PyTorch checkpoint (``save_pretrained`` folder), eager attention as in
    training and export."""
    import torch
    from transformers import Mask2FormerForUniversalSegmentation

    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        raise SystemExit(f"error: {checkpoint} is not a checkpoint folder (no config.json)")
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation.from_pretrained(checkpoint, attn_implementation="eager").eval()
    return model, {"checkpoint": os.path.relpath(checkpoint, ROOT)}


def card_thresholds(onnx_path: str) -> dict:
    """The model card's default thresholds (``<model>.json`` beside the ONNX file): what
    ``segstream run`` uses unless told otherwise, so the reference uses them too."""
    with open(os.path.splitext(onnx_path)[0] + ".json") as f:
        d = json.load(f)["defaults"]
    return {"threshold": d["score_threshold"], "mask_threshold": d["mask_threshold"],
            "overlap_mask_area_threshold": d["overlap_threshold"]}


def card_labels(onnx_path: str) -> list:
    """The model card's labels (``<model>.json`` beside the ONNX file)."""
    with open(os.path.splitext(onnx_path)[0] + ".json") as f:
        return json.load(f)["labels"]


def check_weights(model, onnx_path: str, pixel_values: np.ndarray, threads: int) -> dict:
    """Largest absolute logit difference PyTorch vs ONNX Runtime on one input."""
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    c, mk = sess.run(["class_queries_logits", "masks_queries_logits"], {"pixel_values": pixel_values})
    with torch.inference_mode():
        out = model(pixel_values=torch.from_numpy(pixel_values))
    dc = float(np.abs(out.class_queries_logits.numpy() - c).max())
    dm = float(np.abs(out.masks_queries_logits.numpy() - mk).max())
    return {"max_abs_diff_class_logits": dc, "max_abs_diff_mask_logits": dm,
            "class_logit_range": float(np.abs(c).max()), "mask_logit_range": float(np.abs(mk).max())}


# ---------------------------------------------------------------- pipeline pieces

def video_size(video: str) -> tuple[int, int, str]:
    """(width, height, framerate) from the decoded caps (gst-launch -v on one buffer)."""
    out = subprocess.run(["gst-launch-1.0", "-v", "filesrc", f"location={video}", "!", "decodebin", "!",
                          "fakesink", "num-buffers=1"], capture_output=True, text=True, check=True).stdout
    caps = [l for l in out.splitlines() if "video/x-raw" in l and "width=" in l]
    if not caps:
        raise SystemExit(f"error: {video}: no video stream")
    c = caps[-1]
    w = int(re.search(r"width=\(int\)(\d+)", c).group(1))
    h = int(re.search(r"height=\(int\)(\d+)", c).group(1))
    fr = re.search(r"framerate=\(fraction\)(\d+)/(\d+)", c)
    return w, h, f"{fr.group(1)}/{fr.group(2)}" if fr else "15/1"


def start_decoder(video: str, w: int, h: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["gst-launch-1.0", "-q", "filesrc", f"location={video}", "!", "decodebin", "!", "videoconvert", "!",
         f"video/x-raw,format=RGB,width={w},height={h}", "!", "fdsink", "fd=1"],
        stdout=subprocess.PIPE, bufsize=0)


def read_frame(proc: subprocess.Popen, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = proc.stdout.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def start_encoder(path: str, w: int, h: int, fps: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["gst-launch-1.0", "-q", "fdsrc", "fd=0", "!", "rawvideoparse", f"width={w}", f"height={h}", "format=rgb",
         f"framerate={fps}", "!", "videoconvert", "!", "video/x-raw,format=I420", "!", "x264enc",
         "speed-preset=veryfast", "!", "mp4mux", "!", "filesink", f"location={path}"],
        stdin=subprocess.PIPE, bufsize=0)


def make_processor(checkpoint: str):
    """transformers' image processor as the checkpoint's preprocessor_config.json sets it up
    (what a transformers user loads with ``from_pretrained``)."""
    import transformers
    return transformers.Mask2FormerImageProcessor.from_pretrained(checkpoint)


def overlay(frame: np.ndarray, seg: np.ndarray, segments: list, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    lut = np.zeros((int(seg.max()) + 2, 3), np.float32)
    on = np.zeros(len(lut), bool)
    for s in segments:
        lut[int(s["id"])] = colors[int(s["label_id"])]
        on[int(s["id"])] = True
    idx = np.clip(seg.astype(np.int64), 0, len(lut) - 1)
    m = on[idx][..., None]
    out = frame.astype(np.float32)
    out = np.where(m, out * (1 - alpha) + lut[idx] * alpha, out)
    return out.astype(np.uint8)


def record_json(i: int, seg: np.ndarray, segments: list, labels: list, w: int, h: int) -> str:
    from pycocotools import mask as mask_utils
    segs = []
    for s in segments:
        m = np.asfortranarray((seg == s["id"]).astype(np.uint8))
        rle = mask_utils.encode(m)
        segs.append({"id": int(s["id"]), "label_id": int(s["label_id"]), "label": labels[int(s["label_id"])]["name"],
                     "score": float(s["score"]), "area": int(mask_utils.area(rle)),
                     "bbox": [int(v) for v in mask_utils.toBbox(rle)],
                     "mask": {"size": rle["size"], "counts": rle["counts"].decode()}})
    return json.dumps({"frame": i, "width": w, "height": h, "segments": segs})


def stats(name: str, v: list[float]) -> dict:
    a = np.asarray(v, np.float64)
    if a.size == 0:
        return {"name": name, "p50_ms": 0.0, "p95_ms": 0.0, "mean_ms": 0.0, "samples": 0}
    s = np.sort(a)
    pick = lambda q: float(s[max(0, min(len(s) - 1, int(np.ceil(q * len(s))) - 1))])  # nearest rank, as segstream
    return {"name": name, "p50_ms": pick(0.5), "p95_ms": pick(0.95), "mean_ms": float(a.mean()), "samples": int(a.size)}


# ---------------------------------------------------------------- the timed run

def bench(a) -> dict:
    import torch
    import transformers

    torch.set_num_threads(a.threads)
    started = time.time()
    load = os.getloadavg()
    model, routes = build_model(a.checkpoint)
    proc = make_processor(a.checkpoint)
    thr = card_thresholds(a.onnx)
    labels = card_labels(a.onnx)
    colors = np.asarray([l["color"] for l in labels], np.float32)
    stuff = {l["id"] for l in labels if not l["isthing"]}
    w, h, fps = video_size(a.video)
    n_bytes = w * h * 3

    dec = start_decoder(a.video, w, h)
    first = read_frame(dec, n_bytes)
    if first is None:
        raise SystemExit("error: no frame decoded")
    f0 = np.frombuffer(first, np.uint8).reshape(h, w, 3)
    pv0 = proc(images=f0, return_tensors="pt")["pixel_values"]
    check = check_weights(model, a.onnx, pv0.numpy(), a.threads)
    worst = max(check["max_abs_diff_class_logits"], check["max_abs_diff_mask_logits"])
    if worst > 1e-3:
        raise SystemExit(f"error: PyTorch and ONNX Runtime logits differ by {worst} (weights not reconstructed)")
    def forward(pixel_values):
        if not a.bf16:
            return model(pixel_values=pixel_values)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(pixel_values=pixel_values)
        return types.SimpleNamespace(class_queries_logits=out.class_queries_logits.float(),
                                     masks_queries_logits=out.masks_queries_logits.float())

    with torch.inference_mode():
        for _ in range(a.warmup):
            forward(pv0)

    out_video = a.out_video or os.path.join("/tmp", f"peer-bench-{os.getpid()}.mp4")
    enc = start_encoder(out_video, w, h, fps)
    t = {s: [] for s in STAGES}
    enc_writes = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    raw = first
    i = 0
    json_lines = []
    while i < a.frames and raw is not None:
        if i > 0:
            t0 = time.perf_counter()
            raw = read_frame(dec, n_bytes)
            if raw is None:
                break
            t["decode"].append((time.perf_counter() - t0) * 1e3)
        frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
        t0 = time.perf_counter()
        inputs = proc(images=frame, return_tensors="pt")
        t1 = time.perf_counter()
        with torch.inference_mode():
            outputs = forward(inputs["pixel_values"])
        t2 = time.perf_counter()
        res = proc.post_process_panoptic_segmentation(
            outputs, **thr, label_ids_to_fuse=stuff, target_sizes=[(h, w)])[0]
        seg = res["segmentation"].numpy()
        segments = res["segments_info"]
        t3 = time.perf_counter()
        over = overlay(frame, seg, segments, colors)
        t4 = time.perf_counter()
        enc.stdin.write(over.tobytes())
        t5 = time.perf_counter()
        json_lines.append(record_json(i, seg, segments, labels, w, h))
        t6 = time.perf_counter()
        t["preprocess"].append((t1 - t0) * 1e3)
        t["inference"].append((t2 - t1) * 1e3)
        t["postprocess"].append((t3 - t2) * 1e3)
        t["overlay"].append((t4 - t3) * 1e3)
        enc_writes.append((t5 - t4) * 1e3)
        t["json"].append((t6 - t5) * 1e3)
        i += 1
    t0 = time.perf_counter()
    enc.stdin.close()
    enc.wait()
    tail = (time.perf_counter() - t0) * 1e3
    wall = time.perf_counter() - wall0
    dec.kill()
    dec.wait()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    rc = resource.getrusage(resource.RUSAGE_CHILDREN)
    if a.json_lines:
        with open(a.json_lines, "w") as f:
            f.write("\n".join(json_lines) + "\n")
    if not a.out_video:
        os.unlink(out_video)
    # Encode: the pipe writes (they block while x264 is behind) plus the wait for the
    # encoder to finish, spread over the frames.
    t["encode"] = [x + tail / max(1, len(enc_writes)) for x in enc_writes]
    frames = i
    inf_mean = float(np.mean(t["inference"])) if t["inference"] else 0.0
    per_frame = wall * 1e3 / frames if frames else 0.0
    cpu_self = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    cpu_children = rc.ru_utime + rc.ru_stime
    return {
        "schema": "segstream.peer-bench/1",
        "name": "python transformers" + (" (bf16 autocast)" if a.bf16 else ""),
        "started_unix": int(started),
        "machine": {"cpus": os.cpu_count(), "load_avg": list(load)},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "input": a.video, "model": a.onnx, "threads": a.threads, "width": w, "height": h, "frames": frames,
        "weights": {"routes": routes, "check": check},
        "stages": [stats(s, t[s]) for s in STAGES],
        "end_to_end": {"frames": frames, "wall_s": wall, "fps": frames / wall if wall > 0 else 0.0,
                       "inference_mean_ms": inf_mean,
                       "overhead_pct": 100.0 * (1 - inf_mean / per_frame) if per_frame > 0 else 0.0,
                       "cpu_s": cpu_self + cpu_children, "cpu_self_s": cpu_self, "cpu_children_s": cpu_children,
                       "cpu_pct": 100.0 * (cpu_self + cpu_children) / wall if wall > 0 else 0.0},
        "peak_rss_mib": r1.ru_maxrss / 1024.0,
        "peak_rss_children_mib": rc.ru_maxrss / 1024.0,
    }


# ---------------------------------------------------------------- PQ of the PyTorch model

def pq_run(a) -> dict:
    import torch
    import eval_sample
    import pq
    import shapes
    sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
    from test_run_pq import detectron2_panoptic

    torch.set_num_threads(a.threads)
    model, routes = build_model(a.checkpoint)
    proc = make_processor(a.checkpoint)
    H, W = eval_sample.model_size(a.checkpoint, None)
    thr = card_thresholds(a.onnx)
    gt = json.load(open(os.path.join(ROOT, "samples", "gt", "panoptic.json")))
    cats = pq.load_categories(gt)
    anns = {x["image_id"]: x for x in gt["annotations"]}
    gt_dir = os.path.join(ROOT, "samples", "gt", "panoptic")
    things = {c for c, v in cats.items() if v.get("isthing")}
    w, h, _ = video_size(a.video)
    dec = start_decoder(a.video, w, h)
    d2, tf = pq.PQStat(), pq.PQStat()
    check = None
    i = 0
    while True:
        raw = read_frame(dec, w * h * 3)
        if raw is None or (a.max_frames and i >= a.max_frames):
            break
        frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
        # The input segstream feeds (fit, pad): this reference checks post-processing, so both
        # sides see the same network input.
        pv, (vh, vw) = shapes.model_input(frame, H, W)
        pv = pv[None]
        if check is None:
            check = check_weights(model, a.onnx, pv, a.threads)
        with torch.inference_mode():
            out = model(pixel_values=torch.from_numpy(pv))
        c, m = out.class_queries_logits, out.masks_queries_logits
        gt_ids = pq.read_id_png(os.path.join(gt_dir, anns[i]["file_name"]))
        ids, segs = detectron2_panoptic(c[0], m[0], (H, W), (vh, vw), (h, w), things, thr=thr["threshold"],
                                        mask_thr=thr["mask_threshold"], overlap=thr["overlap_mask_area_threshold"])
        # transformers' post-processing stretches whatever it gets over the frame: give it
        # the masks without the padding
        m = shapes.crop_mask_logits(m, (vh, vw), (H, W))
        d2 += pq.pq_image(gt_ids, anns[i]["segments_info"], ids, segs, cats)
        res = proc.post_process_panoptic_segmentation(
            types.SimpleNamespace(class_queries_logits=c, masks_queries_logits=m), **thr,
            label_ids_to_fuse=set(shapes.STUFF_IDS),
            target_sizes=[(h, w)])[0]
        ids = np.clip(np.rint(res["segmentation"].numpy()), 0, None).astype(np.uint32)
        present = set(np.unique(ids).tolist())
        segs = [{"id": int(s["id"]), "category_id": int(s["label_id"]), "iscrowd": 0}
                for s in res["segments_info"] if int(s["id"]) in present]
        tf += pq.pq_image(gt_ids, anns[i]["segments_info"], ids, segs, cats)
        i += 1
    dec.kill()
    dec.wait()
    return {"frames": i, "weights": {"routes": routes, "check": check},
            "pytorch_detectron2": pq.summarize(d2, cats), "pytorch_transformers": pq.summarize(tf, cats)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=VIDEO)
    ap.add_argument("--checkpoint", default=CHECKPOINT, help="the PyTorch checkpoint (save_pretrained folder)")
    ap.add_argument("--onnx", default=ONNX, help="its ONNX export (the weights check compares the two)")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--json-lines", help="also write the per-frame records")
    ap.add_argument("--out-video", help="keep the encoded video here")
    ap.add_argument("--pq", action="store_true", help="PQ of the PyTorch model on the sample instead of timing")
    ap.add_argument("--max-frames", type=int, default=0, help="with --pq: only the first N frames")
    ap.add_argument("--bf16", action="store_true", help="timing: the network under bf16 autocast")
    a = ap.parse_args(argv)
    rep = pq_run(a) if a.pq else bench(a)
    text = json.dumps(rep, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    if a.pq:
        for k in ("pytorch_detectron2", "pytorch_transformers"):
            r = rep[k]["all"]
            print(f"{k}: PQ {r['pq']:.4f} SQ {r['sq']:.4f} RQ {r['rq']:.4f} ({rep['frames']} frames)")
        print(f"weights check: {rep['weights']['check']}")
    else:
        for s in rep["stages"]:
            print(f"{s['name']:<14} {s['p50_ms']:9.2f} {s['p95_ms']:9.2f} {s['mean_ms']:9.2f}")
        e = rep["end_to_end"]
        print(f"end to end: {e['frames']} frames in {e['wall_s']:.2f} s = {e['fps']:.2f} frames/s, "
              f"overhead {e['overhead_pct']:.1f}%, CPU {e['cpu_s']:.1f} s")
        print(f"weights check: {rep['weights']['check']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
