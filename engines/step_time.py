#!/usr/bin/env python3
"""Seconds per training step of sample-model configurations (engines/README.md, "CPU seconds
per step"): forward + backward + loss + AdamW at a fixed batch of generated frames, median
after a warm-up step, and one image's inference.

    python3 engines/step_time.py --threads 2                 # the table's five configurations
    python3 engines/step_time.py --config resnet:160x288:1024
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import shapes  # noqa: E402
import train_sample  # noqa: E402

DEFAULT = ["swin:288x512:4096", "resnet:288x512:4096", "swin:160x288:4096", "resnet:160x288:4096",
           "resnet:160x288:1024"]


def time_config(spec: str, batch: int, repeats: int) -> dict:
    import torch
    from transformers import Mask2FormerForUniversalSegmentation

    backbone, size, points, *extra = spec.split(":")
    h, w = (int(v) for v in size.split("x"))
    kw = {"depths": (1, 1, 2, 1) if backbone == "swin" else (1, 1, 1, 1)}
    for e in extra:  # build_config keyword overrides, e.g. depths=2,2,2,2 or decoder_layers=7
        k, v = e.split("=")
        kw[k] = tuple(int(x) for x in v.split(",")) if k in ("depths", "widths") else \
            (float(v) if k == "class_weight" else int(v))
    cfg = train_sample.build_config(backbone=backbone, size=(h, w), train_num_points=int(points), **kw)
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    items = [shapes.training_arrays(shapes.train_seed(9, k), h, w, fit=True) for k in range(batch)]
    rgb = torch.stack([torch.from_numpy(i[0]) for i in items])
    index = torch.stack([torch.from_numpy(i[1]) for i in items])
    pix, masks, labels = train_sample.to_model_inputs(rgb, index, [torch.from_numpy(i[2]) for i in items], "cpu",
                                                      shapes.fit_size(shapes.REF_H, shapes.REF_W, h, w))
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        model(pixel_values=pix, mask_labels=masks, class_labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        t = time.perf_counter()
        model(pixel_values=pix[:1])
        infer = time.perf_counter() - t
    return {"config": spec, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "step_s": statistics.median(times[1:]), "infer_ms": infer * 1000}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", help="backbone:HxW:points[:key=value...] (repeatable; build_config overrides such as depths=2,2,2,2, decoder_layers=7, hidden=128; default: the table's five)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args(argv)
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"{'config':<24} {'params':>8} {'s/step':>8} {'infer ms':>9}  (batch {a.batch_size}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f})")
    for spec in a.config or DEFAULT:
        r = time_config(spec, a.batch_size, a.repeats)
        print(f"{r['config']:<24} {r['params_m']:7.2f}M {r['step_s']:8.2f} {r['infer_ms']:9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
