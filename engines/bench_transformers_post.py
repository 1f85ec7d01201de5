#!/usr/bin/env python3
"""Time transformers' Mask2Former post-processing on the logits of `benches/postprocess.rs`.

`cargo bench --bench postprocess` writes its synthetic logits (Q=100, K=133, masks 96x160)
to $TMPDIR/segstream-bench/ (`class_queries_logits.npy`, `masks_queries_logits.npy`,
`meta.json`). This script runs `Mask2FormerImageProcessor.post_process_{panoptic,instance,
semantic}_segmentation` on the same arrays, for the same frame sizes and thresholds, with
the same number of threads (2 by default, like the 2-core machine the Rust numbers come
from), and prints the median time per frame, so the two can be compared.

    python engines/bench_transformers_post.py [--dir DIR] [--threads 2] [--repeat 10] [--tasks panoptic,instance,semantic]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "segstream-bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--tasks", default="panoptic,instance,semantic")
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers
    from transformers import Mask2FormerImageProcessor

    torch.set_num_threads(args.threads)
    meta_path = os.path.join(args.dir, "meta.json")
    if not os.path.exists(meta_path):
        print(f"no logits in {args.dir}: run `cargo bench --bench postprocess` first", file=sys.stderr)
        return 2
    meta = json.load(open(meta_path))
    cls = torch.from_numpy(np.load(os.path.join(args.dir, "class_queries_logits.npy")))
    masks = torch.from_numpy(np.load(os.path.join(args.dir, "masks_queries_logits.npy")))
    outputs = SimpleNamespace(class_queries_logits=cls, masks_queries_logits=masks)
    proc = Mask2FormerImageProcessor()
    fuse = set(meta["label_ids_to_fuse"])
    print(
        f"transformers {transformers.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"logits {tuple(cls.shape)} {tuple(masks.shape)}"
    )

    def run(task: str, size: tuple[int, int]):
        if task == "panoptic":
            return proc.post_process_panoptic_segmentation(
                outputs,
                threshold=meta["threshold"],
                mask_threshold=meta["mask_threshold"],
                overlap_mask_area_threshold=meta["overlap_mask_area_threshold"],
                label_ids_to_fuse=fuse,
                target_sizes=[size],
            )[0]
        if task == "instance":
            return proc.post_process_instance_segmentation(outputs, threshold=meta["threshold"], target_sizes=[size])[0]
        return proc.post_process_semantic_segmentation(outputs, target_sizes=[size])[0]

    with torch.inference_mode():
        for h, w in meta["frames"]:
            for task in args.tasks.split(","):
                r = run(task, (h, w))  # warm-up
                n = len({s["id"] for s in r["segments_info"]}) if isinstance(r, dict) else len(torch.unique(r))
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    run(task, (h, w))
                    times.append((time.perf_counter() - t0) * 1e3)
                print(
                    f"{w}x{h} {task:9s} median {statistics.median(times):8.2f} ms  "
                    f"(min {min(times):.2f}, {args.repeat} runs, {n} segments)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
