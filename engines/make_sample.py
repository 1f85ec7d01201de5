#!/usr/bin/env python3
"""Write the sample video and its panoptic ground truth.

    python engines/make_sample.py            # samples/shapes.mp4, samples/gt/, configs/labels/shapes.json

The video is clip ``shapes.SAMPLE_SEED`` (7) of the synthetic shapes generator: 640x360,
15 fps, 180 frames (12 s), H.264 (x264, constant quality) in MP4, encoded by GStreamer from
PNG frames written to a temporary folder. The ground truth is COCO panoptic:
``samples/gt/panoptic/NNNNN.png`` (segment ids as R + 256 G + 256^2 B) and
``samples/gt/panoptic.json`` (images, annotations with segments_info, categories), each
segment with an extra ``track_id`` (the object's identity over the clip; null for stuff).
The ground truth describes the frames as rendered, before H.264 coding.

After encoding, the video is decoded back and checked: exactly as many frames as written,
and each decoded frame closest (PSNR) to the rendered frame of the same index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import shapes  # noqa: E402


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def run(cmd: list[str]) -> None:
    cp = subprocess.run(cmd, capture_output=True, text=True)
    if cp.returncode != 0:
        tail = (cp.stderr or cp.stdout).strip().splitlines()[-3:]
        die(f"{cmd[0]} failed ({cp.returncode}): {' | '.join(tail)}")


def encode(frames_dir: str, out: str, fps: int, quantizer: int) -> None:
    pattern = os.path.join(frames_dir, "%05d.png")
    run(["gst-launch-1.0", "-q",
         "multifilesrc", f"location={pattern}", "index=0", f"caps=image/png,framerate={fps}/1", "!",
         "pngdec", "!", "videoconvert", "!", "video/x-raw,format=I420", "!",
         "x264enc", "pass=qual", f"quantizer={quantizer}", "speed-preset=slow", f"key-int-max={2 * fps}", "!",
         "video/x-h264,profile=high", "!", "mp4mux", "!", "filesink", f"location={out}"])


def decode(video: str, raw: str, width: int, height: int) -> np.ndarray:
    run(["gst-launch-1.0", "-q", "filesrc", f"location={video}", "!", "qtdemux", "!", "h264parse", "!",
         "avdec_h264", "!", "videoconvert", "!", f"video/x-raw,format=RGB,width={width},height={height}", "!",
         "filesink", f"location={raw}"])
    data = np.fromfile(raw, dtype=np.uint8)
    fsize = width * height * 3
    if data.size % fsize:
        die(f"decoded stream is {data.size} bytes, not a whole number of {width}x{height} RGB frames")
    return data.reshape(-1, height, width, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def write_labels(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("[\n" + ",\n".join("  " + json.dumps(l) for l in shapes.LABELS) + "\n]\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write samples/shapes.mp4 and its COCO panoptic ground truth.")
    ap.add_argument("--video", default=os.path.join(ROOT, "samples", "shapes.mp4"))
    ap.add_argument("--gt", default=os.path.join(ROOT, "samples", "gt"), help="ground-truth folder")
    ap.add_argument("--labels", default=os.path.join(ROOT, "configs", "labels", "shapes.json"))
    ap.add_argument("--seed", type=int, default=shapes.SAMPLE_SEED)
    ap.add_argument("--frames", type=int, default=180)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--quantizer", type=int, default=23, help="x264 constant-quality value (lower = better)")
    a = ap.parse_args(argv)
    if a.frames < 1 or a.fps < 1:
        die("--frames and --fps must be >= 1")
    if a.width % 2 or a.height % 2 or a.width < 64 or a.height < 64:
        die("--width and --height must be even and >= 64")
    if not 0 <= a.quantizer <= 51:
        die(f"--quantizer must be in 0..51, got {a.quantizer}")
    if shutil.which("gst-launch-1.0") is None:
        die("gst-launch-1.0 not found (GStreamer 1.x tools are needed)")

    clip = shapes.Clip(a.seed, a.width, a.height, a.frames, a.fps)
    pan_dir = os.path.join(a.gt, "panoptic")
    if os.path.isdir(pan_dir):
        shutil.rmtree(pan_dir)
    os.makedirs(pan_dir)
    os.makedirs(os.path.dirname(os.path.abspath(a.video)), exist_ok=True)

    images, annotations = [], []
    with tempfile.TemporaryDirectory(prefix="segstream-sample-") as tmp:
        rendered = []
        for fr in clip:
            name = f"{fr.index:05d}.png"
            Image.fromarray(fr.rgb).save(os.path.join(tmp, name), compress_level=1)
            Image.fromarray(fr.panoptic_png()).save(os.path.join(pan_dir, name), optimize=True)
            images.append({"id": fr.index, "file_name": name, "width": a.width, "height": a.height,
                           "frame_index": fr.index, "video": os.path.basename(a.video)})
            annotations.append(shapes.coco_annotation(fr, fr.index, name))
            rendered.append(fr.rgb)
        tmp_video = os.path.join(tmp, "out.mp4")
        encode(tmp, tmp_video, a.fps, a.quantizer)
        decoded = decode(tmp_video, os.path.join(tmp, "raw.rgb"), a.width, a.height)
        if len(decoded) != a.frames:
            die(f"the encoded video has {len(decoded)} frames, expected {a.frames}")
        psnrs = []
        for i in sorted({0, a.frames // 2, a.frames - 1}):
            own = psnr(decoded[i], rendered[i])
            psnrs.append(own)
            for j in (i - 1, i + 1):
                if 0 <= j < a.frames and psnr(decoded[i], rendered[j]) >= own:
                    die(f"decoded frame {i} is closer to rendered frame {j}: frames are shifted")
        shutil.move(tmp_video, a.video)

    gt = {
        "info": {"description": "segstream synthetic shapes sample: panoptic ground truth",
                 "generator": "engines/shapes.py", "seed": a.seed, "fps": a.fps, "num_frames": a.frames,
                 "video": os.path.basename(a.video),
                 "note": "segments carry track_id (identity over the clip; null for stuff); "
                         "ground truth is for the rendered frames, before H.264 coding"},
        "images": images,
        "annotations": annotations,
        "categories": shapes.coco_categories(),
    }
    with open(os.path.join(a.gt, "panoptic.json"), "w") as f:
        json.dump(gt, f, separators=(",", ":"))
        f.write("\n")
    write_labels(a.labels)

    vsize = os.path.getsize(a.video)
    gsize = sum(os.path.getsize(os.path.join(pan_dir, n)) for n in os.listdir(pan_dir))
    print(f"{a.video}: {a.frames} frames {a.width}x{a.height} @ {a.fps} fps, {vsize / 1e6:.2f} MB, "
          f"PSNR vs rendered {min(psnrs):.1f}-{max(psnrs):.1f} dB")
    print(f"{a.gt}: {len(images)} panoptic PNGs ({gsize / 1e6:.2f} MB) + panoptic.json; labels {a.labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
