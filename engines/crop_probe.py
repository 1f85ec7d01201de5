#!/usr/bin/env python3
"""Can the sample model's backbone tell the shapes apart when a thing is not at a fixed place?

A diagnostic for the sample model (engines/README.md, "Sample model results"). It cuts a
64x64 crop around each thing of generated training frames (``train_sample.thing_crops``, the
crops that ``--pretrain-steps`` trains on), trains the sample model's ResNet backbone
(``train_sample.build_config``'s, from scratch) with a global average of its last map and one
linear layer as a circle / square / triangle classifier, and reports the accuracy on crops of
other frames every ``--eval-every`` steps. ``--jitter P`` moves each crop's centre by up to P
pixels per axis, so that the classifier can no longer match a template at the crop's centre:
in a frame, the Mask2Former meets the things wherever they are.

    python3 engines/crop_probe.py --jitter 0  --threads 2     # the thing centred in its crop
    python3 engines/crop_probe.py --jitter 16 --threads 2     # anywhere within +-16 px
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import train_sample  # noqa: E402

VAL_SEED = 99  # training-clip seed of the evaluation crops (never a training run's --seed here)


def crops(seed: int, frames: int, jitter: int):
    """(uint8 crops N x 64 x 64 x 3, labels N) from ``frames`` items of training seed ``seed``;
    the jitter offsets are drawn from a generator seeded by ``seed`` (reproducible)."""
    import torch
    ds = train_sample.ShapesDataset(seed, frames)
    rng = np.random.default_rng([seed, jitter])
    xs, ys = [], []
    for k in range(frames):
        rgb, index, classes = ds[k]
        x, y = train_sample.thing_crops(rgb[None], index[None], [classes], jitter=jitter, rng=rng)
        if x is not None:
            xs.append(x)
            ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def build(widths, depths):
    import torch
    from transformers import ResNetBackbone

    cfg = train_sample.build_config(backbone="resnet", widths=widths, depths=depths)  # the sample model's backbone
    backbone = ResNetBackbone(cfg.backbone_config)
    head = torch.nn.Linear(widths[-1], 3)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, x):
            return self.head(train_sample.crop_features(self.backbone, x))

    return Classifier()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jitter", type=int, default=0, help="max offset of a crop's centre, pixels per axis")
    ap.add_argument("--frames", type=int, default=1500, help="training frames to cut crops from")
    ap.add_argument("--val-frames", type=int, default=200, help="evaluation frames (training-clip seed 99)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (constant)")
    ap.add_argument("--widths", default="32,64,128,256")
    ap.add_argument("--depths", default="1,1,1,1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--json", help="write the accuracy curve to this file")
    ap.add_argument("--save", help="write the trained backbone and classifier (torch state dicts) to this file: "
                    "train_sample.py --init-backbone starts the Mask2Former from it")
    a = ap.parse_args(argv)
    if a.jitter < 0 or a.steps < 1 or a.frames < 1 or a.val_frames < 1 or a.eval_every < 1:
        print("error: need --jitter >= 0 and positive --steps, --frames, --val-frames, --eval-every",
              file=sys.stderr)
        return 2
    if a.seed == VAL_SEED:
        print(f"error: --seed {VAL_SEED} is the evaluation crops' seed", file=sys.stderr)
        return 2
    import torch
    import torch.nn.functional as F
    import transformers
    transformers.logging.set_verbosity_error()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    t0 = time.time()
    xtr, ytr = crops(a.seed, a.frames, a.jitter)
    xva, yva = crops(VAL_SEED, a.val_frames, a.jitter)
    xtr, xva = train_sample.normalize_batch(xtr, "cpu"), train_sample.normalize_batch(xva, "cpu")
    print(f"{len(xtr)} training crops, {len(xva)} evaluation crops, jitter {a.jitter} px "
          f"({time.time() - t0:.0f} s to make)", file=sys.stderr, flush=True)

    model = build([int(v) for v in a.widths.split(",")], [int(v) for v in a.depths.split(",")]).train()
    opt = torch.optim.AdamW(model.parameters(), a.lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(a.seed)
    curve, run, t1 = [], 0.0, time.time()
    print(f"{'step':>6} {'loss':>7} {'eval acc':>9} {'train acc':>10} {'s':>6}", flush=True)
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, len(xtr), (a.batch_size,), generator=gen)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run += loss.item()
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            with torch.no_grad():
                acc = float((model(xva).argmax(1) == yva).float().mean())
                tr = float((model(xtr[:1000]).argmax(1) == ytr[:1000]).float().mean())
            model.train()
            n = a.eval_every if step % a.eval_every == 0 else step % a.eval_every
            curve.append({"step": step, "loss": run / n, "eval_accuracy": acc, "train_accuracy": tr,
                          "s": round(time.time() - t1, 1)})
            print(f"{step:6d} {run / n:7.4f} {acc:9.3f} {tr:10.3f} {time.time() - t1:6.0f}", flush=True)
            run = 0.0
    if a.save:
        torch.save({"backbone": model.backbone.state_dict(), "head": model.head.state_dict(),
                    "widths": a.widths, "depths": a.depths, "jitter": a.jitter, "steps": a.steps,
                    "train_crops": len(xtr), "eval_accuracy": curve[-1]["eval_accuracy"]}, a.save)
        print(f"saved the backbone and classifier to {a.save}", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "train_crops": len(xtr), "eval_crops": len(xva), "curve": curve}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
