"""Small random Mask2Former models, shared by the parity tests and the golden generator.

Nothing here downloads anything: configs are built locally and weights are random with a
fixed seed, so the same spec + seed gives the same model on every machine with the same
torch/transformers versions.

    from engines.m2f_tiny import build_model, SPECS
    model = build_model(SPECS["swin-q12-k7"], seed=0)
    model.save_pretrained(tmpdir)

A spec names num_queries, the labels (name, isthing) and the sizes of the network. The
class head of a freshly initialised model gives near-uniform class probabilities, so
nothing passes a 0.8 score threshold; `sharpen` scales the class head (and the mask
embedding) so that several queries have confident classes and crisp masks. That makes the
golden post-processing outputs non-trivial; it does not change what the network computes.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch


@dataclasses.dataclass(frozen=True)
class TinySpec:
    name: str
    num_queries: int
    labels: tuple[tuple[str, bool], ...]  # (name, isthing) per contiguous label id
    embed_dim: int = 16  # Swin stage-1 channels
    depths: tuple[int, ...] = (1, 1, 1, 1)
    num_heads: tuple[int, ...] = (1, 1, 2, 2)
    window_size: int = 4
    hidden_dim: int = 32  # transformer decoder width (= feature_size = mask_feature_size)
    decoder_layers: int = 2  # >= 2: transformers uses decoder_layers - 1 masked-attention layers
    encoder_layers: int = 1
    num_attention_heads: int = 2
    dim_feedforward: int = 64

    @property
    def num_labels(self) -> int:
        return len(self.labels)


_THINGS = ["person", "car", "bicycle", "dog", "cat", "bus", "truck", "bird", "horse", "boat"]
_STUFF = ["sky", "road", "grass", "wall", "tree", "building", "water", "sand"]


def _labels(n_things: int, n_stuff: int) -> tuple[tuple[str, bool], ...]:
    return tuple([(n, True) for n in _THINGS[:n_things]] + [(n, False) for n in _STUFF[:n_stuff]])


SPECS: dict[str, TinySpec] = {
    s.name: s
    for s in [
        TinySpec("swin-q12-k7", num_queries=12, labels=_labels(4, 3)),
        TinySpec(
            "swin-q20-k10",
            num_queries=20,
            labels=_labels(6, 4),
            embed_dim=24,
            num_heads=(1, 2, 2, 4),
            window_size=5,
            hidden_dim=64,
            decoder_layers=3,
            num_attention_heads=4,
            dim_feedforward=128,
        ),
        TinySpec("swin-q16-k5", num_queries=16, labels=_labels(2, 3), hidden_dim=32, decoder_layers=2),
        TinySpec("swin-q24-k12", num_queries=24, labels=_labels(7, 5), embed_dim=16, hidden_dim=32),
    ]
}


def make_config(spec: TinySpec):
    from transformers import Mask2FormerConfig, SwinConfig

    backbone = SwinConfig(
        image_size=224,
        patch_size=4,
        num_channels=3,
        embed_dim=spec.embed_dim,
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
        window_size=spec.window_size,
        drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    id2label = {i: n for i, (n, _) in enumerate(spec.labels)}
    return Mask2FormerConfig(
        backbone_config=backbone,
        num_queries=spec.num_queries,
        num_labels=spec.num_labels,
        id2label=id2label,
        label2id={n: i for i, n in id2label.items()},
        feature_size=spec.hidden_dim,
        mask_feature_size=spec.hidden_dim,
        hidden_dim=spec.hidden_dim,
        encoder_feedforward_dim=spec.dim_feedforward,
        encoder_layers=spec.encoder_layers,
        decoder_layers=spec.decoder_layers,
        num_attention_heads=spec.num_attention_heads,
        dim_feedforward=spec.dim_feedforward,
    )


def build_model(spec: TinySpec, seed: int = 0, sharpen: float = 0.0, attn_implementation: str | None = None):
    """A random Mask2FormerForUniversalSegmentation in eval mode.

    sharpen > 0 multiplies the class head by `sharpen` and the mask embedder's last layer by
    `sharpen / 4`, so class probabilities and mask logits are far from uniform.
    """
    from transformers import Mask2FormerForUniversalSegmentation

    torch.manual_seed(seed)
    cfg = make_config(spec)
    if attn_implementation is not None:
        cfg._attn_implementation = attn_implementation
    model = Mask2FormerForUniversalSegmentation(cfg)
    model.eval()
    if sharpen > 0:
        _sharpen(model, spec, seed, sharpen)
    return model


def _sharpen(model, spec: TinySpec, seed: int, sharpen: float) -> None:
    """Make a random model's outputs look like a trained one's: confident, varied classes
    and mask logits of a few units. Deterministic for (spec, seed, sharpen)."""
    g = torch.Generator().manual_seed(seed + 1000)
    d = spec.hidden_dim
    with torch.no_grad():
        head = model.class_predictor
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * (sharpen / d**0.5))
        head.bias.zero_()
        head.bias[-1] = -sharpen * 0.25  # fewer no-object queries
        # Mask logits are e_q . f(x) (query embedding . per-pixel mask feature). Random e_q
        # are random half-spaces, so every pixel would be "in" half of the masks. Make
        # channel 0 of f a constant 1 and give every e_q the same negative component there,
        # so that each pixel is positive for about 1.5 queries on average: masks then
        # mostly exclude each other, as a trained model's do. The rest of f is centred and
        # the logits scaled to a standard deviation of about `sharpen`; all measured on
        # a fixed random input.
        # smooth random input (a low-frequency field looks more like an image than noise)
        x = torch.nn.functional.interpolate(
            torch.randn((1, 3, 8, 8), generator=g), size=(128, 128), mode="bicubic", align_corners=False
        )
        proj = model.model.pixel_level_module.decoder.mask_projection
        feats = {}
        hook = proj.register_forward_hook(lambda _m, _i, o: feats.__setitem__("f", o))
        model(pixel_values=x)
        hook.remove()
        proj.bias.sub_(feats["f"].mean(dim=(0, 2, 3)))
        proj.weight[0].zero_()
        proj.bias[0] = 1.0
        last = model.model.transformer_module.decoder.mask_predictor.mask_embedder.layers[-1].layers[0]
        last.weight[0].zero_()
        last.bias[0] = 0.0
        logits = model(pixel_values=x).masks_queries_logits
        k = sharpen / max(logits.std().item(), 1e-6)
        last.weight.mul_(k)
        last.bias.mul_(k)
        logits = logits * k
        q = 1.0 - min(0.5, 1.5 / spec.num_queries)
        last.bias[0] = -float(torch.quantile(logits.flatten()[:200000], q))


def label_entries(spec: TinySpec) -> list[dict]:
    return [{"id": i, "name": n, "isthing": t} for i, (n, t) in enumerate(spec.labels)]


def write_labels_file(spec: TinySpec, path) -> None:
    import json

    with open(path, "w") as f:
        json.dump(label_entries(spec), f, indent=1)


__all__: Sequence[str] = ["TinySpec", "SPECS", "make_config", "build_model", "label_entries", "write_labels_file"]
