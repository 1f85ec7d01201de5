#!/usr/bin/env python3
"""How fast can the sample model's backbone learn to tell the shapes apart, trained directly?

A diagnostic for the sample model (engines/README.md, "Sample model results"): the Mask2Former
finds the things but names them little better than chance. This trains the same ResNet
backbone (``train_sample.build_config``'s, from scratch) with a light per-pixel head -- each of
the four feature maps projected to ``--hidden`` channels, upsampled to stride 4 and summed, a
1x1 convolution to the six classes -- with a per-pixel cross-entropy (VOID ignored) on the same
generated training items, and reports every ``--eval-every`` steps how the *thing* pixels of
validation frames are classified (circle / square / triangle / stuff). If this learns the
shapes quickly, the backbone can carry shape and the Mask2Former's own losses are what is slow.

    python3 engines/pixel_probe.py --steps 2000 --threads 2 --workers 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import shapes  # noqa: E402
import train_sample  # noqa: E402


def build(widths, depths, hidden: int):
    import torch
    from transformers import ResNetBackbone

    cfg = train_sample.build_config(backbone="resnet", widths=widths, depths=depths)  # the sample model's backbone
    bb = ResNetBackbone(cfg.backbone_config)

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = bb
            self.proj = torch.nn.ModuleList(torch.nn.Conv2d(c, hidden, 1) for c in widths)
            self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(hidden, shapes.NUM_CLASSES, 1))

        def forward(self, x):
            maps = self.backbone(x).feature_maps
            size = maps[0].shape[-2:]
            f = sum(torch.nn.functional.interpolate(p(m), size=size, mode="bilinear", align_corners=False)
                    for p, m in zip(self.proj, maps))
            return torch.nn.functional.interpolate(self.head(f), size=x.shape[-2:], mode="bilinear",
                                                   align_corners=False)

    return Probe()


def validation(size, frames: int, seed: int = 2):
    """(pixel_values N x 3 x H x W, per-pixel class N x H x W with 255 = VOID) of validation frames."""
    h, w = size
    pix, lab = [], []
    for f in shapes.heldout_frames(shapes.heldout_seeds(seed, frames)):
        p, _ = shapes.model_input(f.rgb, h, w)
        small, _ = shapes.model_ids(f.ids, h, w)
        cls = np.full(small.shape, 255, np.int64)
        for s in f.segments:
            cls[small == s["id"]] = s["category_id"]
        pix.append(p)
        lab.append(cls)
    return np.stack(pix), np.stack(lab)


def thing_confusion(model, pix, lab) -> np.ndarray:
    """Rows: true circle / square / triangle pixels; columns: predicted circle / square /
    triangle / a stuff class; fractions of each row (NaN where the frames hold none of a class)."""
    import torch
    with torch.no_grad():
        pred = model(torch.from_numpy(pix)).argmax(1).numpy()
    out = np.full((3, 4), np.nan)  # a class with no pixels in the frames stays NaN
    for r, c in enumerate(shapes.THING_IDS):
        p = pred[lab == c]
        if p.size:
            out[r, :3] = [(p == t).mean() for t in shapes.THING_IDS]
            out[r, 3] = 1.0 - out[r, :3].sum()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--size", default="160x288")
    ap.add_argument("--widths", default="32,64,128,256")
    ap.add_argument("--depths", default="1,1,1,1")
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-frames", type=int, default=40)
    a = ap.parse_args(argv)
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    size = tuple(int(v) for v in a.size.split("x"))
    model = build([int(v) for v in a.widths.split(",")], [int(v) for v in a.depths.split(",")], a.hidden).train()
    opt = torch.optim.AdamW(model.parameters(), a.lr, weight_decay=0.05)
    valid = shapes.fit_size(shapes.REF_H, shapes.REF_W, *size)
    ds = train_sample.ShapesDataset(a.seed, a.steps * a.batch_size, size=size)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, num_workers=a.workers,
                                     collate_fn=train_sample.collate)
    vpix, vlab = validation(size, a.eval_frames)
    print(f"{'step':>6} {'loss':>7} {'s':>6}  thing pixels named circle/square/triangle/stuff, per true class",
          flush=True)
    t0, run = time.time(), 0.0
    for step, (rgb, index, classes) in enumerate(dl, 1):
        pix, _, _ = train_sample.to_model_inputs(rgb, index, classes, "cpu", valid)
        target = train_sample.SemanticHeads.targets(index, classes)
        lr = train_sample.lr_at(step / a.steps, a.lr, step, 100)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = torch.nn.functional.cross_entropy(model(pix), target, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run += loss.item()
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            conf = thing_confusion(model, vpix, vlab)
            model.train()
            n = a.eval_every if step % a.eval_every == 0 else step % a.eval_every
            rows = "  ".join(f"{shapes.LABELS[c]['name'][:4]} " + "/".join(f"{v:.2f}" for v in conf[r])
                             for r, c in enumerate(shapes.THING_IDS))
            acc = np.nanmean([conf[r, r] for r in range(3)])
            print(f"{step:6d} {run / n:7.4f} {time.time() - t0:6.0f}  {rows}  (mean right {acc:.2f})", flush=True)
            run = 0.0
        if step >= a.steps:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
