#!/usr/bin/env python3
"""Train the small sample Mask2Former on synthetic "shapes" frames generated on the fly.

    python engines/train_sample.py --out out/shapes-m2f            # CPU: 3400 steps, ~52 min on 2 idle cores
    python engines/train_sample.py --out out/shapes-m2f --device cuda --steps 6000 --batch-size 16 \\
        --workers 14 --log-every 50 --time-budget-s 390

The model is transformers' ``Mask2FormerForUniversalSegmentation`` (a small ResNet backbone
by default, or Swin; small widths; trained from scratch) with its built-in loss (Hungarian
matching, class + mask + dice losses, auxiliary losses per decoder layer). Input: the 640x360
frame fed as segstream feeds it -- resized to fit 160x288 keeping the aspect ratio (160x284),
rescaled by 1/255, normalized with the ImageNet mean/std, zero-padded on the right.

Sample k is a frame of training clip ``(shapes.TRAIN_TAG, --seed, k // 2)``, a seed space disjoint
from the sample video (seed 7) and from the held-out set ``(shapes.HELDOUT_TAG, ...)``; sample
k is the same whatever the number of data workers, so a CPU run is deterministic for a seed.
The learning rate follows a linear warm-up then a cosine decay over ``--steps``; with
``--time-budget-s`` the decay follows whichever is further along, the steps or the clock, so a
time-limited run still ends annealed. At the end (or when the budget runs out, or on Ctrl-C)
it writes the checkpoint (``save_pretrained``, with id2label/label2id and thing_ids), the
preprocessing in ``preprocessor_config.json`` (transformers' format), and ``train_log.json``
(loss every ``--log-every`` steps, wall time, settings).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import shapes  # noqa: E402

INPUT_H, INPUT_W = 160, 288


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def build_config(num_queries: int = 20, hidden: int = 96, embed_dim: int = 48,
                 depths=(1, 1, 2, 1), encoder_layers: int = 2, decoder_layers: int = 4,
                 train_num_points: int = 4096, backbone: str = "swin", widths=(32, 64, 128, 256),
                 size: tuple[int, int] | None = None, class_weight: float = 2.0):
    """The small Mask2Former config (long-standing transformers APIs only). ``backbone`` "swin"
    (window attention; ``embed_dim``, ``depths``) or "resnet" (basic residual blocks; ``widths``,
    ``depths``): Mask2Former reads any backbone's four feature maps (strides 4..32)."""
    from transformers import Mask2FormerConfig, ResNetConfig, SwinConfig

    h, w = size or (INPUT_H, INPUT_W)
    outs = ["stage1", "stage2", "stage3", "stage4"]
    if backbone == "swin":
        heads = [max(1, embed_dim * 2 ** i // 24) for i in range(4)]  # 24-dim heads
        bb = SwinConfig(image_size=[h, w], patch_size=4, embed_dim=embed_dim, depths=list(depths),
                        num_heads=heads, window_size=8, drop_path_rate=0.0, out_features=outs)
    elif backbone == "resnet":
        bb = ResNetConfig(embedding_size=widths[0], hidden_sizes=list(widths), depths=list(depths),
                          layer_type="basic", out_features=outs)
    else:
        raise ValueError(f"unknown backbone {backbone!r} (swin or resnet)")
    id2label = {l["id"]: l["name"] for l in shapes.LABELS}
    cfg = Mask2FormerConfig(
        backbone_config=bb,
        feature_size=hidden,
        mask_feature_size=hidden,
        hidden_dim=hidden,
        encoder_feedforward_dim=hidden * 4,
        dim_feedforward=hidden * 4,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        num_attention_heads=4,
        num_queries=num_queries,
        train_num_points=train_num_points,
        class_weight=class_weight,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        thing_ids=list(shapes.THING_IDS),  # isthing is not a standard config field; engines/export.py reads this
    )
    cfg._attn_implementation = "eager"
    return cfg


class ShapesDataset:
    """Map-style dataset. Item k is frame ``f_k`` of training clip ``(TRAIN_TAG, seed, k // per_clip)``,
    with ``f_k`` drawn from ``(TRAIN_TAG, seed, k)``: consecutive items share a clip (its
    background is built once per worker), and item k never depends on the worker count."""

    def __init__(self, seed: int, length: int, per_clip: int = 2, clip_frames: int = 90,
                 size: tuple[int, int] = (INPUT_H, INPUT_W)):
        self.seed = seed
        self.size = size
        self.length = length
        self.per_clip = per_clip
        self.clip_frames = clip_frames
        self._clip = None
        self.cache, self.cache_n, self._arrays = None, 0, None

    def use_cache(self, folder: str) -> None:
        """Read items from a folder written by :func:`write_cache` (same items, generated once;
        for several runs on one machine). Refused when it was made for another seed or size."""
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
        want = {"seed": self.seed, "size": list(self.size), "per_clip": self.per_clip,
                "clip_frames": self.clip_frames, "train_tag": shapes.TRAIN_TAG}
        got = {k: meta.get(k) for k in want}
        if got != want:
            raise ValueError(f"data cache {folder} was made for {got}, this run needs {want}")
        self.cache, self.cache_n = folder, int(meta["items"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int):
        """(rgb HxWx3 uint8, index map HxW uint8 with 255 = VOID, classes K int64): compact, so that
        batches move between processes cheaply; normalization and masks are made on the device."""
        import torch
        if self.cache is not None and k < self.cache_n:
            if self._arrays is None:  # opened lazily: once per worker process
                self._arrays = [np.load(os.path.join(self.cache, f), mmap_mode="r")
                                for f in ("rgb.npy", "index.npy", "classes.npy")]
            rgb, index, classes = (np.array(x[k]) for x in self._arrays)
            return torch.from_numpy(rgb), torch.from_numpy(index), torch.from_numpy(classes[classes >= 0])
        cseed = shapes.train_seed(self.seed, k // self.per_clip)
        if self._clip is None or tuple(self._clip.seed) != cseed:
            self._clip = shapes.Clip(cseed, num_frames=self.clip_frames)
        f = int(np.random.default_rng(list(shapes.train_seed(self.seed, k))).integers(0, self.clip_frames))
        rgb, index, classes = shapes.training_arrays(cseed, *self.size, frame=f, clip=self._clip, fit=True)
        return torch.from_numpy(rgb), torch.from_numpy(index), torch.from_numpy(classes)


_CACHE_DS: dict = {}


def _cache_item(args):
    seed, size, k = args
    ds = _CACHE_DS.setdefault((seed, size), ShapesDataset(seed, 0, size=size))  # one per process: keeps its clip
    rgb, index, classes = ds[k]
    return rgb.numpy(), index.numpy(), classes.numpy()


def write_cache(folder: str, seed: int, size: tuple[int, int], items: int, procs: int = 0) -> None:
    """Generate training items 0..items-1 of ``seed`` at ``size`` into ``folder`` (rgb.npy,
    index.npy, classes.npy padded with -1, meta.json), with ``procs`` processes (0: all CPUs)."""
    import multiprocessing as mp
    os.makedirs(folder, exist_ok=True)
    h, w = size
    rgb = np.lib.format.open_memmap(os.path.join(folder, "rgb.npy"), "w+", np.uint8, (items, h, w, 3))
    index = np.lib.format.open_memmap(os.path.join(folder, "index.npy"), "w+", np.uint8, (items, h, w))
    classes = np.full((items, 64), -1, np.int64)
    chunk = 2  # one clip per task: its background is built once
    with mp.get_context("fork").Pool(procs or os.cpu_count()) as pool:
        for k, (r, i, c) in enumerate(pool.imap(_cache_item, [(seed, size, k) for k in range(items)], chunk)):
            rgb[k], index[k], classes[k, :len(c)] = r, i, c
    rgb.flush()
    index.flush()
    np.save(os.path.join(folder, "classes.npy"), classes)
    with open(os.path.join(folder, "meta.json"), "w") as f:
        ds = ShapesDataset(seed, 0, size=size)  # the layout the items were drawn with (use_cache checks it)
        json.dump({"seed": seed, "size": list(size), "per_clip": ds.per_clip, "clip_frames": ds.clip_frames,
                   "train_tag": shapes.TRAIN_TAG, "items": items}, f)


def collate(items):
    import torch
    return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items]), [i[2] for i in items]


def normalize_batch(rgb, device):
    """uint8 N x H x W x 3 -> float N x 3 x H x W on ``device``: rescale 1/255, ImageNet mean/std."""
    import torch
    mean = torch.tensor(shapes.IMAGENET_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(shapes.IMAGENET_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return (rgb.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def to_model_inputs(rgb, index, classes, device, valid=None):
    """uint8 batch -> pixel_values (``normalize_batch``; zero outside the ``valid`` (h, w)
    top-left region, as segstream pads), mask_labels, class_labels."""
    import torch
    index = index.to(device, non_blocking=True)
    pix = normalize_batch(rgb, device)
    if valid is not None:
        pix[:, :, valid[0]:] = 0.0
        pix[:, :, :, valid[1]:] = 0.0
    masks, labels = [], []
    for b, c in enumerate(classes):
        k = torch.arange(len(c), device=device, dtype=torch.uint8)
        masks.append((index[b][None] == k[:, None, None]).float())
        labels.append(c.to(device, non_blocking=True))
    return pix.contiguous(), masks, labels


class SemanticHeads:
    """Training-only auxiliary loss: a 1x1 convolution per pixel-decoder feature map (strides 32, 16, 8 --
    what the decoder's queries attend to) predicts each pixel's class; cross-entropy against the
    ground truth at input resolution, VOID ignored, averaged over the maps. It asks those maps to
    say *what* a pixel belongs to, which the query classifier then reads; the heads are dropped at
    the end (``save_pretrained`` saves the Mask2Former only)."""

    def __init__(self, hidden: int, num_labels: int, levels: int, device):
        import torch
        self.heads = self.convs = torch.nn.ModuleList(torch.nn.Conv2d(hidden, num_labels, 1) for _ in range(levels)).to(device)

    def parameters(self):
        return self.convs.parameters()

    @staticmethod
    def targets(index, classes):
        """Per-pixel class (int64, 255 = VOID) from the index maps and each image's class list."""
        import torch
        out = []
        for b, c in enumerate(classes):
            lut = torch.full((256,), 255, dtype=torch.int64, device=index.device)
            lut[:len(c)] = c.to(index.device)
            out.append(lut[index[b].long()])
        return torch.stack(out)

    def loss(self, features, target):
        import torch.nn.functional as F
        h, w = target.shape[-2:]
        total = 0.0
        for conv, f in zip(self.convs, features):
            logits = F.interpolate(conv(f), size=(h, w), mode="bilinear", align_corners=False)
            total = total + F.cross_entropy(logits, target, ignore_index=255)
        return total / len(self.convs)


class PooledHeads:
    """Training-only auxiliary loss: each pixel-decoder feature map (strides 32, 16, 8 -- what the
    decoder's queries attend to) averaged inside each ground-truth segment's mask (the mask's area
    share of each cell as the weight), one linear layer per map, cross-entropy against the segment's
    class, averaged over the maps. Unlike ``SemanticHeads`` it does not ask every pixel to know its
    object's shape, only the mask's mean feature -- what masked attention gathers for a query --;
    the heads are dropped at the end (``save_pretrained`` saves the Mask2Former only)."""

    MIN_CELLS = 0.5  # a segment covering less than half a cell of a map is left out at that map

    def __init__(self, hidden: int, num_labels: int, levels: int, device):
        import torch
        self.heads = self.linears = torch.nn.ModuleList(torch.nn.Linear(hidden, num_labels) for _ in range(levels)).to(device)

    def parameters(self):
        return self.linears.parameters()

    @classmethod
    def pooled(cls, feature, masks):
        """(means S x C, kept S bool): ``feature`` C x h x w averaged inside each of ``masks``
        S x H x W (H, W multiples of h, w), weighted by the mask's share of each cell."""
        import torch
        import torch.nn.functional as F
        share = F.adaptive_avg_pool2d(masks[None], feature.shape[-2:])[0]  # S x h x w, in [0, 1]
        cells = share.sum((1, 2))
        means = torch.einsum("shw,chw->sc", share, feature) / cells.clamp_min(1e-6)[:, None]
        return means, cells >= cls.MIN_CELLS

    def loss(self, features, masks, classes):
        import torch
        import torch.nn.functional as F
        total, levels = features[0].sum() * 0.0, 0  # a tensor even when no segment is big enough
        for lin, f in zip(self.linears, features):
            means, labels = [], []
            for b, (m, c) in enumerate(zip(masks, classes)):
                if len(c) == 0:
                    continue
                x, keep = self.pooled(f[b], m)
                means.append(x[keep])
                labels.append(c[keep])
            if means and sum(len(l) for l in labels):
                total = total + F.cross_entropy(lin(torch.cat(means)), torch.cat(labels))
                levels += 1
        return total / max(levels, 1)


def lr_at(progress: float, base: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``base`` down to 2% of it at progress 1."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    p = min(1.0, max(0.0, progress))
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


def save_preprocessor(out: str, size: tuple[int, int] = (INPUT_H, INPUT_W)) -> None:
    """preprocessor_config.json: resize to ``size``, 1/255, ImageNet mean/std. transformers'
    processor has no fit-and-pad resize (its shortest/longest-edge mode rounds the result up to
    ``size_divisor``, i.e. stretches), so this says "exact resize": for 640x360 frames at
    160x288 that is a 1.4 % horizontal stretch against the letterbox the model was trained on."""
    import transformers
    kw = dict(do_resize=True, size={"height": size[0], "width": size[1]}, do_rescale=True, rescale_factor=1 / 255,
              do_normalize=True, image_mean=list(shapes.IMAGENET_MEAN), image_std=list(shapes.IMAGENET_STD),
              ignore_index=255, num_labels=shapes.NUM_CLASSES, do_pad=False)
    for name in ("Mask2FormerImageProcessorPil", "Mask2FormerImageProcessor"):
        cls = getattr(transformers, name, None)
        try:
            cls(**kw).save_pretrained(out)
            return
        except Exception:
            continue
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:  # same content, written by hand
        json.dump({"image_processor_type": "Mask2FormerImageProcessor", "resample": 2, "size_divisor": 32, **kw},
                  f, indent=2)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Train the small sample Mask2Former on synthetic shapes frames.")
    ap.add_argument("--out", required=True, help="output folder (checkpoint, train_log.json)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N)")
    ap.add_argument("--init", help="continue training from this checkpoint folder instead of a fresh model")
    ap.add_argument("--steps", type=int, default=3400,
                    help="optimizer steps (the default fits in about an hour on 2 idle CPU cores; see engines/README.md)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate")
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    ap.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: off)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (model init and training clips)")
    ap.add_argument("--workers", type=int, default=1,
                    help="data-generation worker processes (0: in the main process; the result does not depend on it)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--time-budget-s", type=float, default=0.0,
                    help="stop cleanly, saving the checkpoint, when this much wall time has passed (0: no limit)")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA (off by default)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--size", default=f"{INPUT_H}x{INPUT_W}", help="network input HxW (multiples of 32)")
    ap.add_argument("--backbone", default="resnet", choices=["swin", "resnet"],
                    help="resnet (basic residual blocks; learns these scenes much faster from scratch) or swin")
    ap.add_argument("--depths", help="backbone blocks per stage, e.g. 1,1,2,1 (swin default) or 1,1,1,1 (resnet default)")
    ap.add_argument("--widths", default="32,64,128,256", help="resnet channels per stage")
    ap.add_argument("--num-queries", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=96, help="hidden_dim = feature_size = mask_feature_size")
    ap.add_argument("--embed-dim", type=int, default=48, help="Swin embed_dim")
    ap.add_argument("--decoder-layers", type=int, default=4, help="Mask2Former decoder_layers (masked-attention layers + 1)")
    ap.add_argument("--encoder-layers", type=int, default=2, help="pixel-decoder deformable encoder layers")
    ap.add_argument("--train-num-points", type=int, default=1024, help="points sampled per mask in the loss")
    ap.add_argument("--class-weight", type=float, default=2.0, help="weight of the classification loss (and matching cost)")
    ap.add_argument("--pretrain-steps", type=int, default=0,
                    help="first train the backbone alone for this many steps as a shape classifier on crops "
                         "around the things of each batch (global average of its last map, a linear layer; "
                         "dropped afterwards), then the Mask2Former on the items that follow (0: off)")
    ap.add_argument("--backbone-lr-mult", type=float, default=1.0,
                    help="the backbone's learning rate as a fraction of --lr in the Mask2Former phase")
    ap.add_argument("--semantic-weight", type=float, default=0.0,
                    help="weight of the auxiliary per-pixel class loss on the pixel decoder's three feature maps "
                         "(training only: its 1x1 heads are not part of the saved model; 0: off)")
    ap.add_argument("--pooled-weight", type=float, default=0.0,
                    help="weight of the auxiliary class loss on the pixel decoder's three feature maps averaged "
                         "inside each ground-truth mask (training only: its linear heads are not part of the "
                         "saved model; 0: off)")
    ap.add_argument("--crop-weight", type=float, default=0.0,
                    help="weight of the auxiliary loss of the backbone as a shape classifier on crops around the "
                         "batch's things, moved by up to --crop-jitter pixels (training only; 0: off)")
    ap.add_argument("--crop-jitter", type=int, default=16, help="max offset of an auxiliary crop's centre, pixels per axis")
    ap.add_argument("--crop-copies", type=int, default=2, help="auxiliary crops per thing, each with its own offset")
    ap.add_argument("--init-backbone",
                    help="start the backbone (and the --crop-weight classifier) from this file, written by "
                         "crop_probe.py --save: the staged recipe's first stage")
    ap.add_argument("--checkpoint-every", type=int, default=0,
                    help="every N Mask2Former steps, write OUT/resume.pt (weights, optimizer, step, clock, "
                         "random state) and the checkpoint folder OUT/last (0: off)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT/resume.pt when it exists (same arguments): the run goes on with "
                         "the next items, the same schedule and the clock it had")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after N Mask2Former steps of this invocation, writing OUT/resume.pt, to be "
                         "continued with --resume (a long run split over several sittings; 0: off)")
    ap.add_argument("--data-cache", help="read training items from this folder (written by engines/sweep.py "
                    "with write_cache for the same seed and size) instead of generating them")
    a = ap.parse_args(argv)
    try:
        a.size = tuple(int(v) for v in a.size.lower().split("x"))
        a.widths = tuple(int(v) for v in a.widths.split(","))
        a.depths = tuple(int(v) for v in a.depths.split(",")) if a.depths else \
            ((1, 1, 2, 1) if a.backbone == "swin" else (1, 1, 1, 1))
    except ValueError:
        die(f"--size must be HxW and --widths/--depths comma-separated integers")
    if len(a.size) != 2 or min(a.size) < 32 or a.size[0] % 32 or a.size[1] % 32:
        die(f"--size must be HxW with multiples of 32, got {'x'.join(map(str, a.size))}")
    if len(a.depths) != 4 or len(a.widths) != 4 or min(a.depths + a.widths) < 1:
        die("--depths and --widths need 4 positive values (one per backbone stage)")
    if a.steps < 1:
        die(f"--steps must be >= 1, got {a.steps}")
    if a.batch_size < 1:
        die(f"--batch-size must be >= 1, got {a.batch_size}")
    if not (a.lr > 0):
        die(f"--lr must be positive, got {a.lr}")
    if a.seed < 0:
        die(f"--seed must be >= 0, got {a.seed}")
    if a.workers < 0:
        die(f"--workers must be >= 0, got {a.workers}")
    if a.time_budget_s < 0:
        die(f"--time-budget-s must be >= 0, got {a.time_budget_s}")
    if a.warmup < 0 or a.log_every < 1:
        die("--warmup must be >= 0 and --log-every >= 1")
    if not (a.device == "cpu" or a.device == "cuda" or a.device.startswith("cuda:")):
        die(f"--device must be cpu or cuda, got {a.device!r}")
    if a.hidden % 4 or a.hidden < 16:
        die(f"--hidden must be a multiple of 4 (4 attention heads) and >= 16, got {a.hidden}")
    if a.embed_dim % 24:
        die(f"--embed-dim must be a multiple of 24 (24-dim Swin heads), got {a.embed_dim}")
    if a.pretrain_steps < 0 or a.backbone_lr_mult < 0:
        die("need --pretrain-steps >= 0 and --backbone-lr-mult >= 0")
    if a.semantic_weight < 0 or a.pooled_weight < 0 or a.crop_weight < 0:
        die("need --semantic-weight, --pooled-weight and --crop-weight >= 0")
    if a.crop_jitter < 0 or a.crop_copies < 1:
        die("need --crop-jitter >= 0 and --crop-copies >= 1")
    if a.decoder_layers < 2 or a.encoder_layers < 0 or a.num_queries < 1 or a.train_num_points < 16:
        die("need --decoder-layers >= 2, --encoder-layers >= 0, --num-queries >= 1, --train-num-points >= 16")
    return a


CROP = 64  # side of the pre-training crops, in input pixels


def thing_crops(rgb, index, classes, min_pixels: int = 30, jitter: int = 0, rng=None):
    """(crops N x CROP x CROP x 3 uint8, labels N int64 = thing class - first thing id): a square
    around the bounding-box centre of each thing of each image with at least ``min_pixels``
    visible pixels (zero outside the picture), from the trainer's uint8 batch. ``jitter`` > 0
    moves each crop's centre by a uniform whole offset in [-jitter, jitter] per axis, drawn from
    ``rng`` (a numpy Generator), so that the thing is no longer at a fixed place in its crop."""
    import torch
    pad = CROP // 2 + jitter  # a crop around any pixel, moved by up to `jitter`, stays inside
    rgb = torch.nn.functional.pad(rgb.permute(0, 3, 1, 2), (pad,) * 4).permute(0, 2, 3, 1)
    out, labels = [], []
    for b, c in enumerate(classes):
        for k, cls in enumerate(c.tolist()):
            if cls not in shapes.THING_IDS:
                continue
            ys, xs = torch.nonzero(index[b] == k, as_tuple=True)
            if len(ys) < min_pixels:
                continue
            cy, cx = int(ys.min() + ys.max()) // 2, int(xs.min() + xs.max()) // 2
            cy, cx = cy + jitter, cx + jitter  # the crop's top-left corner in the padded image
            if jitter:
                cy += int(rng.integers(-jitter, jitter + 1))
                cx += int(rng.integers(-jitter, jitter + 1))
            out.append(rgb[b, cy:cy + CROP, cx:cx + CROP])
            labels.append(cls - shapes.THING_IDS[0])
    if not out:
        return None, None
    return torch.stack(out), torch.tensor(labels)


def crop_features(backbone, pix):
    """What every crop classifier here reads (``--pretrain-steps``, ``--crop-weight``,
    ``crop_probe.py``): the backbone's last feature map averaged over space, N x C."""
    return backbone(pix).feature_maps[-1].mean((2, 3))


class CropHead:
    """Training-only auxiliary loss (``--crop-weight``): the backbone as a circle / square /
    triangle classifier on crops around the batch's things (``thing_crops`` with ``jitter``,
    ``copies`` crops of each thing with their own offsets), global average of its last map, one
    linear layer, cross-entropy. The offsets matter: with the thing at the crop's centre the
    classifier can match a template there, which does not carry over to frames, where things
    are anywhere (``engines/crop_probe.py``). The crops do not touch the batch-norm running
    statistics (those stay the frames'); the head is dropped at the end."""

    def __init__(self, channels: int, jitter: int, copies: int, seed: int, device):
        import torch
        self.linear = torch.nn.Linear(channels, len(shapes.THING_IDS)).to(device)
        self.jitter, self.copies = jitter, copies
        self.rng = np.random.default_rng([seed, 0xC0])  # the offsets: deterministic for a seed

    def parameters(self):
        return self.linear.parameters()

    def loss(self, backbone, rgb, index, classes, device):
        """(loss or None when the batch has no thing, right count, crop count)."""
        import torch
        import torch.nn.functional as F
        xs, ys = [], []
        for _ in range(self.copies):
            x, y = thing_crops(rgb, index, classes, jitter=self.jitter, rng=self.rng)
            if x is not None:
                xs.append(x)
                ys.append(y)
        if not xs:
            return None, 0, 0
        norms = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 0.0  # normalize with the crops' statistics, leave the running ones alone
        try:
            logits = self.linear(crop_features(backbone, normalize_batch(torch.cat(xs), device)))
        finally:
            for m, mom in zip(norms, saved):
                m.momentum = mom
        labels = torch.cat(ys).to(device)
        return F.cross_entropy(logits, labels), int((logits.argmax(1) == labels).sum()), len(labels)


def pretrain_backbone(a, backbone, batches, device, t_start) -> list[dict]:
    """``--pretrain-steps``: the backbone alone as a shape classifier (circle / square / triangle)
    on crops around the things of the next batches -- global average of its last feature map, one
    linear layer, cross-entropy --, its own AdamW, warm-up and cosine; the classifier is dropped."""
    import torch
    import torch.nn.functional as F
    head = torch.nn.Linear(backbone.channels[-1], len(shapes.THING_IDS)).to(device)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    entries, window, right, seen, n, t_window = [], 0.0, 0, 0, 0, time.time()
    for step in range(1, a.pretrain_steps + 1):
        rgb, index, classes = next(batches)
        crops, labels = thing_crops(rgb, index, classes)
        for g in opt.param_groups:
            g["lr"] = lr_at((step - 1) / a.pretrain_steps, a.lr, step - 1, a.warmup)
        if crops is not None:
            logits = head(crop_features(backbone, normalize_batch(crops, device)))
            labels = labels.to(device)
            loss = F.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                die(f"pre-training loss is {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(params, a.clip_grad)
            opt.step()
            window += loss.item()
            right += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            n += 1
        if step % a.log_every == 0 or step == a.pretrain_steps:
            now = time.time()
            e = {"step": step, "loss": window / max(n, 1), "train_accuracy": right / max(seen, 1),
                 "wall_s": round(now - t_start, 2), "steps_per_s": round(a.log_every / (now - t_window), 4)}
            entries.append(e)
            print(f"pretrain {step:6d}/{a.pretrain_steps}  crop loss {e['loss']:.4f}  accuracy "
                  f"{e['train_accuracy']:.2f}  t={now - t_start:.0f}s", file=sys.stderr, flush=True)
            window, right, seen, n, t_window = 0.0, 0, 0, 0, now
    return entries


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start = time.time()

    import torch
    import transformers
    from transformers import Mask2FormerForUniversalSegmentation

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        die("--device cuda but torch sees no CUDA device")
    if a.amp and not a.device.startswith("cuda"):
        die("--amp needs --device cuda")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # costly and not needed
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed input size
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)

    os.makedirs(a.out, exist_ok=True)
    transformers.logging.set_verbosity_error()
    cfg = build_config(a.num_queries, a.hidden, a.embed_dim, depths=a.depths, encoder_layers=a.encoder_layers,
                       decoder_layers=a.decoder_layers, train_num_points=a.train_num_points,
                       backbone=a.backbone, widths=a.widths, size=a.size, class_weight=a.class_weight)
    if a.init:
        # Continue from an earlier checkpoint (its architecture wins over the size flags).
        model = Mask2FormerForUniversalSegmentation.from_pretrained(a.init, attn_implementation="eager").to(device)
    else:
        model = Mask2FormerForUniversalSegmentation(cfg).to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())

    sem = SemanticHeads(model.config.feature_size, len(shapes.LABELS), 3, device) if a.semantic_weight > 0 else None
    pooled = PooledHeads(model.config.feature_size, len(shapes.LABELS), 3, device) if a.pooled_weight > 0 else None
    backbone = model.model.pixel_level_module.encoder
    crop = CropHead(backbone.channels[-1], a.crop_jitter, a.crop_copies, a.seed, device) if a.crop_weight > 0 else None
    if a.init_backbone:
        stage1 = torch.load(a.init_backbone, map_location=device)
        try:
            backbone.load_state_dict(stage1["backbone"])
            if crop is not None:
                crop.linear.load_state_dict(stage1["head"])
        except (KeyError, RuntimeError) as e:
            die(f"--init-backbone {a.init_backbone}: not a backbone of this model ({e})")
        print(f"backbone from {a.init_backbone} (crop accuracy {stage1.get('eval_accuracy', float('nan')):.3f})",
              file=sys.stderr)
    decay, no_decay = [], []  # no weight decay on norms, biases, embeddings and tables
    no_decay_suffix = ("relative_position_bias_table", "level_embed", "level_embed.weight", "queries_embedder.weight",
                       "queries_features.weight", "position_embeddings")
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or n.endswith(no_decay_suffix) else decay).append(p)
    for heads in (sem, pooled, crop):
        if heads is not None:
            decay += [p for p in heads.parameters() if p.ndim > 1]
            no_decay += [p for p in heads.parameters() if p.ndim <= 1]
    in_backbone = {id(p) for p in backbone.parameters()}
    groups = []
    for params, wd in ((decay, a.weight_decay), (no_decay, 0.0)):
        for bb in (False, True):
            ps = [p for p in params if (id(p) in in_backbone) == bb]
            if ps:
                groups.append({"params": ps, "weight_decay": wd, "mult": a.backbone_lr_mult if bb else 1.0})
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999))

    workers = a.workers
    if workers and os.path.isdir("/dev/shm"):
        # worker batches travel through /dev/shm: keep the prefetched ones (2 per worker) well inside it
        import shutil
        batch_bytes = a.batch_size * a.size[0] * a.size[1] * 4 + 4096
        free = shutil.disk_usage("/dev/shm").free
        fit = int(free // (3 * 2 * batch_bytes))
        if fit < workers:
            print(f"warning: /dev/shm has {free / 1e6:.0f} MB free; using {max(fit, 0)} data workers "
                  f"instead of {workers}", file=sys.stderr)
            workers = max(fit, 0)
    valid = shapes.fit_size(shapes.REF_H, shapes.REF_W, *a.size)  # the frame's part of the padded input
    ds = ShapesDataset(a.seed, (a.pretrain_steps + a.steps) * a.batch_size, size=a.size)
    if a.data_cache:
        try:
            ds.use_cache(a.data_cache)
        except (OSError, ValueError, KeyError) as e:
            die(f"--data-cache: {e}")
    resume_path = os.path.join(a.out, "resume.pt")
    resumed = None
    if a.resume and os.path.exists(resume_path):
        resumed = torch.load(resume_path, map_location=device, weights_only=False)
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        for name, heads in (("semantic", sem), ("pooled", pooled)):
            if heads is not None:
                for m, st in zip(heads.heads, resumed[name]):
                    m.load_state_dict(st)
        if crop is not None:
            crop.linear.load_state_dict(resumed["crop"])
            crop.rng.bit_generator.state = resumed["crop_rng"]
        # the items already used are skipped: item k is the same whatever came before it
        first = (a.pretrain_steps + resumed["step"]) * a.batch_size
        ds_iter = torch.utils.data.Subset(ds, range(first, len(ds)))
        print(f"resuming {resume_path} at step {resumed['step']} ({resumed['main_s']:.0f} s of training done)",
              file=sys.stderr)
    else:
        ds_iter = ds
    dl = torch.utils.data.DataLoader(
        ds_iter, batch_size=a.batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
        persistent_workers=False, prefetch_factor=2 if workers else None,
        pin_memory=device.type == "cuda", drop_last=False)

    log = {"args": vars(a), "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
           "params": n_params, "input": list(a.size), "train_seeds": f"(TRAIN_TAG={shapes.TRAIN_TAG}, {a.seed}, k)",
           "workers": workers, "loss": [], "stopped": "steps"}
    print(f"model: {n_params / 1e6:.2f} M parameters, device {device}, batch {a.batch_size}, "
          f"steps {a.steps}, workers {workers}", file=sys.stderr)

    t_train = time.time()
    batches = iter(dl)  # (this draws a seed from torch's generator: restore the saved state after it)
    if resumed is not None:
        torch.set_rng_state(resumed["torch_rng"])
    if a.pretrain_steps and resumed is None:
        log["pretrain"] = pretrain_backbone(a, backbone, batches, device, t_start)
    t_main = time.time()
    main_budget = a.time_budget_s - (t_main - t_start)  # what the Mask2Former phase has left
    step = 0
    if resumed is not None:  # the clock and the log go on from where the run stopped
        t_start, t_main, t_train = t_main - resumed["wall_s"], t_main - resumed["main_s"], t_main - resumed["train_s"]
        main_budget = resumed["main_budget"]
        step = resumed["step"]
        log["loss"], log["resumed_at"] = resumed["log"]["loss"], resumed["log"].get("resumed_at", []) + [step]
        if "pretrain" in resumed["log"]:
            log["pretrain"] = resumed["log"]["pretrain"]

    def save_resume():
        """OUT/resume.pt (written to a temporary name, then renamed: a cut never leaves half a file)
        and OUT/last, the checkpoint of this step."""
        now = time.time()
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "wall_s": now - t_start, "main_s": now - t_main, "train_s": now - t_train,
                 "main_budget": main_budget, "torch_rng": torch.get_rng_state(), "log": log}
        for name, heads in (("semantic", sem), ("pooled", pooled)):
            if heads is not None:
                state[name] = [m.state_dict() for m in heads.heads]
        if crop is not None:
            state["crop"], state["crop_rng"] = crop.linear.state_dict(), crop.rng.bit_generator.state
        torch.save(state, resume_path + ".tmp")
        os.replace(resume_path + ".tmp", resume_path)
        last = os.path.join(a.out, "last")
        model.save_pretrained(last)
        save_preprocessor(last, a.size)
    window_loss, window_n, window_t, window_sem, window_pool = 0.0, 0, time.time(), 0.0, 0.0
    window_crop, crop_right, crop_seen = 0.0, 0, 0
    data_wait = 0.0
    try:
        t_fetch = time.time()
        for rgb, index, classes in batches:
            data_wait += time.time() - t_fetch
            elapsed = time.time() - t_start
            if a.time_budget_s and elapsed > a.time_budget_s:
                log["stopped"] = "time budget"
                break
            progress = step / a.steps
            if a.time_budget_s:
                progress = max(progress, (time.time() - t_main) / max(main_budget, 1e-9))
            lr = lr_at(progress, a.lr, step, a.warmup)
            for g in opt.param_groups:
                g["lr"] = lr * g["mult"]
            pix, masks, classes = to_model_inputs(rgb, index, classes, device, valid)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=a.amp):
                out = model(pixel_values=pix, mask_labels=masks, class_labels=classes,
                            output_hidden_states=sem is not None or pooled is not None)
                loss = out.loss
                if sem is not None:
                    sem_loss = sem.loss(out.pixel_decoder_hidden_states,
                                        SemanticHeads.targets(index.to(device), classes))
                    loss = loss + a.semantic_weight * sem_loss
                    window_sem += sem_loss.item()
                if pooled is not None:
                    pool_loss = pooled.loss(out.pixel_decoder_hidden_states, masks, classes)
                    loss = loss + a.pooled_weight * pool_loss
                    window_pool += pool_loss.item()
                if crop is not None:
                    crop_loss, right, seen = crop.loss(backbone, rgb, index, classes, device)
                    if crop_loss is not None:
                        loss = loss + a.crop_weight * crop_loss
                        window_crop += crop_loss.item()
                        crop_right, crop_seen = crop_right + right, crop_seen + seen
            if not torch.isfinite(loss):  # keep the last good weights
                log["stopped"] = f"non-finite loss at step {step}"
                print(f"error: loss is {loss.item()} at step {step}; saving the weights of step {step}",
                      file=sys.stderr)
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_grad)
            opt.step()
            step += 1
            window_loss += out.loss.item()  # the Mask2Former loss (the auxiliary terms are logged apart)
            window_n += 1
            if step % a.log_every == 0 or step == a.steps:
                now = time.time()
                rate = window_n / (now - window_t)
                entry = {"step": step, "loss": window_loss / window_n, "lr": lr, "wall_s": round(now - t_start, 2),
                         "steps_per_s": round(rate, 4), "data_wait_s": round(data_wait, 2)}
                if sem is not None:
                    entry["semantic_loss"] = window_sem / window_n
                if pooled is not None:
                    entry["pooled_loss"] = window_pool / window_n
                if crop is not None:
                    entry["crop_loss"] = window_crop / window_n
                    entry["crop_accuracy"] = crop_right / max(crop_seen, 1)
                log["loss"].append(entry)
                extra = f" (semantic {entry['semantic_loss']:.4f})" if sem is not None else ""
                extra += f" (pooled {entry['pooled_loss']:.4f})" if pooled is not None else ""
                extra += (f" (crops {entry['crop_loss']:.4f}, accuracy {entry['crop_accuracy']:.2f})"
                          if crop is not None else "")
                print(f"step {step:6d}/{a.steps}  loss {entry['loss']:.4f}{extra}  lr {lr:.2e}  {rate:.2f} steps/s  "
                      f"({1 / rate:.2f} s/step, waited {data_wait:.1f} s for data)  t={now - t_start:.0f}s",
                      file=sys.stderr, flush=True)
                window_loss, window_n, window_t, window_sem, window_pool = 0.0, 0, now, 0.0, 0.0
                window_crop, crop_right, crop_seen = 0.0, 0, 0
            if a.checkpoint_every and step % a.checkpoint_every == 0 and step < a.steps:
                save_resume()
            if step >= a.steps:
                break
            if a.stop_after and step - (resumed["step"] if resumed else 0) >= a.stop_after:
                log["stopped"] = f"--stop-after {a.stop_after}"
                save_resume()
                break
            t_fetch = time.time()
    except KeyboardInterrupt:
        log["stopped"] = "interrupted"
        print("interrupted: saving the checkpoint (and OUT/resume.pt: continue with --resume)", file=sys.stderr)
        save_resume()
    if log["stopped"] in ("steps", "time budget") and os.path.exists(resume_path):
        os.remove(resume_path)  # the run is complete: a later --resume starts nothing half-way

    log["steps_done"] = step
    log["train_s"] = round(time.time() - t_train, 2)
    log["wall_s"] = round(time.time() - t_start, 2)
    log["data_wait_s"] = round(data_wait, 2)
    model.eval()
    model.to("cpu")
    model.save_pretrained(a.out)
    save_preprocessor(a.out, a.size)
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=2)
    print(f"saved {a.out} after {step} steps ({log['stopped']}), {log['wall_s']:.0f} s", file=sys.stderr)
    return 1 if log["stopped"].startswith("non-finite") else 0


if __name__ == "__main__":
    sys.exit(main())
