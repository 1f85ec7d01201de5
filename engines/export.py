#!/usr/bin/env python3
"""Export a transformers Mask2Former checkpoint to segstream's ONNX model + model card.

    python engines/export.py CHECKPOINT --size 512x896 [--out out/models] [--name NAME]
        [--batch N] [--labels configs/labels/coco-panoptic.json]
        [--deform-attn portable|trt-plugin]

CHECKPOINT is a local `save_pretrained` directory, or a hub id (facebook/mask2former-...)
when this machine can reach the Hugging Face hub.

Writes <out>/<name>.onnx — one self-contained file: input `pixel_values` float32
[N,3,H,W] (H, W fixed, multiples of 32), outputs `class_queries_logits` [N,Q,K+1] and
`masks_queries_logits` [N,Q,H/4,W/4]; N dynamic unless --batch — and <out>/<name>.json,
the model card (format segstream.model/1). See docs/EXPORT.md.

--deform-attn portable (default) keeps the pixel decoder's multi-scale deformable
attention as plain ONNX ops (GridSample): every runtime runs it, ONNX Runtime included.
--deform-attn trt-plugin replaces each of those attentions by one node
`MultiscaleDeformableAttnPlugin_TRT` (domain trt.plugins), which TensorRT's ONNX parser
maps to its built-in plugin. ONNX Runtime cannot run such a model: use it only to build
TensorRT engines.

Errors are one line on stderr naming the problem, exit status 2. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LABEL_SETS_DIR = ROOT / "configs" / "labels"

CARD_FORMAT = "segstream.model/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRT_DOMAIN = "trt.plugins"
TRT_OP = "MultiscaleDeformableAttnPlugin_TRT"
INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("class_queries_logits", "masks_queries_logits")


class ExportError(Exception):
    """A problem the user can fix; printed as one line."""


def log(msg: str) -> None:
    print(f"export: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Arguments


def parse_size(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", s or "")
    if not m:
        raise ExportError(f"--size must be HxW (e.g. 512x896), got {s!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ExportError(f"--size {h}x{w} is not divisible by 32 (height and width must be positive multiples of 32)")
    return h, w


def _looks_like_hub_id(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not s.startswith((".", "/"))


# --------------------------------------------------------------------------------------
# Checkpoint


def load_config(checkpoint: str):
    """Config of a local directory or hub id; ExportError with one line otherwise."""
    p = Path(checkpoint)
    if p.exists():
        if not p.is_dir():
            raise ExportError(f"checkpoint {checkpoint} is a file, expected a save_pretrained directory")
        if not (p / "config.json").is_file():
            raise ExportError(f"checkpoint directory {checkpoint} has no config.json (not a transformers checkpoint)")
        try:
            raw = json.loads((p / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ExportError(f"cannot read {p / 'config.json'}: {_one_line(e)}")
        if raw.get("model_type") != "mask2former":  # checked before the slow transformers import
            archs = ",".join(raw.get("architectures") or []) or "?"
            raise ExportError(
                f"{checkpoint} is not a Mask2Former checkpoint (model_type {raw.get('model_type')!r}, architectures {archs})"
            )
    if p.exists():
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(p)
        except Exception as e:  # malformed config.json, unknown model_type, ...
            raise ExportError(f"cannot read {p / 'config.json'}: {_one_line(e)}")
    elif _looks_like_hub_id(checkpoint):
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(checkpoint)
        except Exception as e:
            raise ExportError(
                f"checkpoint {checkpoint} is not a local directory and could not be fetched from the hub: {_one_line(e)}"
            )
    else:
        raise ExportError(f"checkpoint directory not found: {checkpoint}")
    if getattr(cfg, "model_type", None) != "mask2former":
        archs = ",".join(getattr(cfg, "architectures", None) or []) or "?"
        raise ExportError(
            f"{checkpoint} is not a Mask2Former checkpoint (model_type {cfg.model_type!r}, architectures {archs})"
        )
    return cfg


def load_model(checkpoint: str):
    import torch
    from transformers import Mask2FormerForUniversalSegmentation

    # eager attention: the dynamo exporter fails inside Swin's SDPA attention
    try:
        model = Mask2FormerForUniversalSegmentation.from_pretrained(checkpoint, attn_implementation="eager")
    except Exception as e:
        raise ExportError(f"cannot load Mask2Former weights from {checkpoint}: {_one_line(e)}")
    model.eval()
    torch.set_grad_enabled(False)
    return model


def mean_std(checkpoint: str) -> tuple[list[float], list[float], str]:
    """Per-channel mean/std in 0..255 units, from the preprocessor config when there is one."""
    d = None
    p = Path(checkpoint)
    if p.is_dir():
        f = p / "preprocessor_config.json"
        if f.is_file():
            d = json.loads(f.read_text())
    elif _looks_like_hub_id(checkpoint):
        try:
            from transformers import AutoImageProcessor

            d = AutoImageProcessor.from_pretrained(checkpoint).to_dict()
        except Exception:
            d = None
    mean, std, src = IMAGENET_MEAN, IMAGENET_STD, "ImageNet defaults"
    if d and d.get("image_mean") and d.get("image_std"):
        mean, std, src = d["image_mean"], d["image_std"], "preprocessor config"
        if isinstance(mean, (int, float)):
            mean = [mean] * 3
        if isinstance(std, (int, float)):
            std = [std] * 3
    return [round(float(m) * 255, 6) for m in mean], [round(float(s) * 255, 6) for s in std], src


# --------------------------------------------------------------------------------------
# Labels


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", str(name).lower()).strip()


def _synonyms(name: str) -> set[str]:
    parts = {_norm(name)} | {_norm(p) for p in str(name).split(",")}
    parts |= {p.replace(" merged", "").replace(" other", "").replace(" stuff", "") for p in list(parts)}
    return {p for p in parts if p}


def load_label_set(path: Path) -> list[dict]:
    try:
        items = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ExportError(f"labels file not found: {path}")
    except json.JSONDecodeError as e:
        raise ExportError(f"labels file {path} is not valid JSON: {e}")
    if not isinstance(items, list) or not all(isinstance(d, dict) and "name" in d for d in items):
        raise ExportError(f"labels file {path} must be a JSON array of {{id, name, isthing, color}}")
    for i, d in enumerate(items):
        if d.get("id", i) != i:
            raise ExportError(f"labels file {path}: entry #{i} has id {d.get('id')}, ids must be 0..K-1 in order")
    return items


def palette(i: int) -> list[int]:
    """Deterministic, well-spread colour for label i (golden-ratio hue, fixed s/v)."""
    import colorsys

    h = (i * 0.618033988749895) % 1.0
    s = 0.65 + 0.35 * ((i * 7) % 3) / 2
    v = 0.95 - 0.25 * ((i * 5) % 2)
    r, g, b = colorsys.hsv_to_rgb(h, min(s, 1.0), v)
    return [int(round(r * 255)), int(round(g * 255)), int(round(b * 255))]


def _config_isthing(config) -> dict[int, bool] | None:
    """isthing carried by the checkpoint config, if any (not standard; some fine-tunes do)."""
    for key in ("isthing", "is_thing_map", "label_isthing"):
        v = getattr(config, key, None)
        if isinstance(v, dict):
            return {int(k): bool(b) for k, b in v.items()}
        if isinstance(v, (list, tuple)):
            return {i: bool(b) for i, b in enumerate(v)}
    for key in ("thing_ids", "thing_classes_ids"):
        v = getattr(config, key, None)
        if isinstance(v, (list, tuple)):
            things = {int(i) for i in v}
            return {i: i in things for i in range(config.num_labels)}
    return None


def resolve_labels(config, checkpoint_dir: Path | None, labels_file: str | None) -> tuple[list[dict], str]:
    """Labels for the card: names from config.id2label; isthing from --labels, the
    config, or a label set in configs/labels matched by name; colours from the label set
    used, else a deterministic palette. Returns (labels, description of the source)."""
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    k = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    names = [str(id2label.get(i, f"class_{i}")).strip() for i in range(k)]

    if labels_file:
        items = load_label_set(Path(labels_file))
        if len(items) != k:
            raise ExportError(f"labels file {labels_file} has {len(items)} labels, the checkpoint has {k}")
        mismatched = [i for i in range(k) if not (_synonyms(items[i]["name"]) & _synonyms(names[i]))]
        if mismatched:
            i = mismatched[0]
            log(
                f"warning: {len(mismatched)} label names differ from the checkpoint's "
                f"(e.g. #{i}: {items[i]['name']!r} vs {names[i]!r}); keeping the checkpoint's names"
            )
        labels = [
            {
                "id": i,
                "name": names[i],
                "isthing": bool(items[i].get("isthing", True)),
                "color": list(items[i].get("color") or palette(i)),
            }
            for i in range(k)
        ]
        return labels, f"labels file {labels_file}"

    cfg_things = _config_isthing(config)
    if cfg_things is not None and len(cfg_things) >= k:
        return [{"id": i, "name": names[i], "isthing": cfg_things[i], "color": palette(i)} for i in range(k)], "config"

    # a label set of the same size whose names match position by position (>= 80 %)
    best = None
    for f in sorted(LABEL_SETS_DIR.glob("*.json")):
        try:
            items = load_label_set(f)
        except ExportError:
            continue
        if len(items) != k:
            continue
        hits = sum(1 for i in range(k) if _synonyms(items[i]["name"]) & _synonyms(names[i]))
        if hits >= 0.8 * k and (best is None or hits > best[0]):
            best = (hits, f, items)
    if best is not None:
        _, f, items = best
        labels = [
            {"id": i, "name": names[i], "isthing": bool(items[i]["isthing"]), "color": list(items[i]["color"])}
            for i in range(k)
        ]
        return labels, f"label set {f.relative_to(ROOT)} (matched by name)"

    # label by label across all sets; unknown names default to isthing=true
    lookup: dict[str, dict] = {}
    for f in sorted(LABEL_SETS_DIR.glob("*.json")):
        try:
            for d in load_label_set(f):
                for s in _synonyms(d["name"]):
                    lookup.setdefault(s, d)
        except ExportError:
            continue
    labels, unknown = [], []
    for i in range(k):
        hit = next((lookup[s] for s in sorted(_synonyms(names[i])) if s in lookup), None)
        if hit is None:
            unknown.append(names[i])
        labels.append(
            {
                "id": i,
                "name": names[i],
                "isthing": bool(hit["isthing"]) if hit else True,
                "color": list(hit["color"]) if hit else palette(i),
            }
        )
    if unknown:
        log(
            f"warning: isthing unknown for {len(unknown)} of {k} labels (e.g. {unknown[0]!r}); set to true. "
            "Pass --labels configs/labels/<set>.json to give it."
        )
    return labels, "names matched against configs/labels" if len(unknown) < k else "defaults (all things)"


# --------------------------------------------------------------------------------------
# TensorRT plugin form of multi-scale deformable attention

_TRT_OP_REGISTERED = False


def _register_trt_op():
    """torch custom op segstream::ms_deform_attn with TensorRT's plugin signature:
    (value [N,S,M,D], spatial_shapes int32 [L,2], level_start_index int32 [L],
    sampling_locations [N,Lq,M,L,P,2], attention_weights [N,Lq,M,L,P]) -> [N,Lq,M,D].
    Its PyTorch implementation is transformers' grid-sample computation, so the model
    still runs in PyTorch; the ONNX translation emits the plugin node."""
    global _TRT_OP_REGISTERED
    if _TRT_OP_REGISTERED:
        return
    import torch
    from transformers.models.mask2former import modeling_mask2former as mm

    if not hasattr(mm, "_segstream_original_msda"):
        mm._segstream_original_msda = mm.multi_scale_deformable_attention

    # explicit schema: this module's `from __future__ import annotations` hides the types
    schema = (
        "(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
        "Tensor sampling_locations, Tensor attention_weights) -> Tensor"
    )

    @torch.library.custom_op("segstream::ms_deform_attn", mutates_args=(), schema=schema)
    def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        from transformers.models.mask2former import modeling_mask2former as mm

        n, _, m, d = value.shape
        lq = sampling_locations.shape[1]
        shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
        out = mm._segstream_original_msda(value, shapes, sampling_locations, attention_weights)
        return out.view(n, lq, m, d)

    @ms_deform_attn.register_fake
    def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        n, _, m, d = value.shape
        return value.new_empty((n, sampling_locations.shape[1], m, d))

    _TRT_OP_REGISTERED = True


def _register_trt_schema() -> None:
    """Declare the plugin op to ONNX (inputs, output, the two string attributes TensorRT's
    parser reads) so that onnxscript can emit it and onnx.checker accepts the model."""
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has(TRT_OP, TRT_DOMAIN):
        return
    f = OpSchema.FormalParameter
    onnx.defs.register_schema(
        OpSchema(
            TRT_OP,
            TRT_DOMAIN,
            1,
            inputs=[
                f("value", "T"),  # [N, S, M, D]
                f("spatial_shapes", "I"),  # [L, 2] (H, W) per level
                f("level_start_index", "I"),  # [L]
                f("sampling_locations", "T"),  # [N, Lq, M, L, P, 2], (x, y) in 0..1
                f("attention_weights", "T"),  # [N, Lq, M, L, P]
            ],
            outputs=[f("output", "T")],  # [N, Lq, M, D]
            type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("I", ["tensor(int32)"], "")],
            attributes=[
                OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version"),
                OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
            ],
        )
    )


def _trt_translation():
    import onnxscript

    _register_trt_schema()
    trt = onnxscript.values.Opset(TRT_DOMAIN, 1)

    def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        return trt.MultiscaleDeformableAttnPlugin_TRT(
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            attention_weights,
            plugin_version="1",
            plugin_namespace="",
        )

    return ms_deform_attn


class _patched_msda:
    """Context manager: route transformers' multi_scale_deformable_attention through the
    plugin-shaped custom op."""

    def __enter__(self):
        import torch
        from transformers.models.mask2former import modeling_mask2former as mm

        _register_trt_op()
        self._saved = mm.multi_scale_deformable_attention

        def msda(value, value_spatial_shapes, sampling_locations, attention_weights):
            n, _, m, d = value.shape
            shapes = [(int(h), int(w)) for h, w in value_spatial_shapes]
            starts, acc = [], 0
            for h, w in shapes:
                starts.append(acc)
                acc += h * w
            ss = torch.tensor(shapes, dtype=torch.int32, device=value.device)
            lsi = torch.tensor(starts, dtype=torch.int32, device=value.device)
            out = torch.ops.segstream.ms_deform_attn(value, ss, lsi, sampling_locations, attention_weights)
            return out.flatten(2)  # [N, Lq, M*D], what transformers' function returns

        mm.multi_scale_deformable_attention = msda
        return self

    def __exit__(self, *exc):
        from transformers.models.mask2former import modeling_mask2former as mm

        mm.multi_scale_deformable_attention = self._saved
        return False


# --------------------------------------------------------------------------------------
# Export


def _wrap(model):
    import torch

    class M2F(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            o = self.m(pixel_values=pixel_values)
            return o.class_queries_logits, o.masks_queries_logits

    return M2F(model).eval()


def export_onnx(model, path: Path, size: tuple[int, int], batch: int | None, deform_attn: str, opset: int) -> None:
    import contextlib

    import onnx
    import torch

    h, w = size
    # a dynamic batch is traced with 2 samples: torch.export specialises size-1 dims
    example = torch.zeros((batch or 2, 3, h, w), dtype=torch.float32)
    wrapper = _wrap(model)
    dynamic = None
    if batch is None:
        dynamic = {"pixel_values": {0: torch.export.Dim("batch", min=1, max=1024)}}
    kwargs = {}
    ctx = contextlib.nullcontext()
    if deform_attn == "trt-plugin":
        ctx = _patched_msda()
        _register_trt_op()
        kwargs["custom_translation_table"] = {torch.ops.segstream.ms_deform_attn.default: _trt_translation()}

    with tempfile.TemporaryDirectory(prefix="segstream-export-") as tmp:
        raw = Path(tmp) / "model.onnx"
        with ctx, _quiet():
            prog = torch.onnx.export(
                wrapper,
                (example,),
                str(raw),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic,
                opset_version=opset,
                external_data=True,
                optimize=True,
                verify=False,
                report=False,
                **kwargs,
            )
        del prog
        # the dynamo exporter keeps weights in a side file: load all and re-save as one file
        m = onnx.load(str(raw), load_external_data=True)
        if m.ByteSize() >= 2**31 - 1:
            raise ExportError("the model is over 2 GB; one self-contained ONNX file cannot hold it")
        _fix_batch_dim(m, batch)
        if deform_attn == "trt-plugin":
            _declare_domain(m)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = path.with_suffix(".onnx.partial")
        onnx.save_model(m, str(tmp_out), save_as_external_data=False)
        os.replace(tmp_out, path)
    stale = Path(str(path) + ".data")
    if stale.exists():
        stale.unlink()


def _quiet():
    """Silence the exporter's chatter on stdout (progress stays on stderr)."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr)


def _fix_batch_dim(m, batch: int | None) -> None:
    """Name the dynamic batch dimension 'N' on input and outputs (or pin it with --batch)."""
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if not dims:
            continue
        if batch is None:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
        else:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch


def _declare_domain(m) -> None:
    import onnx

    if not any(o.domain == TRT_DOMAIN for o in m.opset_import):
        m.opset_import.append(onnx.helper.make_opsetid(TRT_DOMAIN, 1))


def count_trt_nodes(m) -> int:
    n = sum(1 for node in m.graph.node if node.op_type == TRT_OP)
    for f in m.functions:
        n += sum(1 for node in f.node if node.op_type == TRT_OP)
    return n


def validate_onnx(path: Path, size: tuple[int, int], q: int, k: int, batch: int | None, deform_attn: str) -> dict:
    """Check the graph's interface; run ONNX Runtime once on a random input (portable)."""
    import numpy as np
    import onnx

    h, w = size
    m = onnx.load(str(path), load_external_data=False)
    ins = [i.name for i in m.graph.input]
    outs = [o.name for o in m.graph.output]
    if ins != [INPUT_NAME] or outs != list(OUTPUT_NAMES):
        raise ExportError(f"exported graph has inputs {ins} and outputs {outs}, expected [{INPUT_NAME}] and {list(OUTPUT_NAMES)}")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer):
        raise ExportError(f"{path} still refers to external data")
    info = {"trt_plugin_nodes": count_trt_nodes(m)}
    if deform_attn == "trt-plugin":
        if info["trt_plugin_nodes"] == 0:
            raise ExportError(f"no {TRT_OP} node in the exported graph")
        _register_trt_schema()
        onnx.checker.check_model(m)
        return info
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    # a dynamic batch is checked with 2 samples (a batch dim the exporter specialised to a
    # constant fails here) and against the same samples run one at a time
    n = batch or 2
    x = np.random.default_rng(0).standard_normal((n, 3, h, w), dtype=np.float32)
    try:
        cls, masks = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        if batch is None:
            c1, m1 = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x[1:2]})
    except Exception as e:
        raise ExportError(f"ONNX Runtime cannot run the exported model with batch {n}: {_one_line(e)}")
    if batch is None:
        err = max(float(np.abs(c1 - cls[1:2]).max()), float(np.abs(m1 - masks[1:2]).max()))
        scale = max(float(np.abs(cls).max()), float(np.abs(masks).max()), 1.0)
        if err > 1e-4 * scale:
            raise ExportError(f"batch of 2 and batch of 1 disagree by {err:.3g}: the batch dimension is not dynamic")
    want = {"class_queries_logits": (n, q, k + 1), "masks_queries_logits": (n, q, h // 4, w // 4)}
    got = {"class_queries_logits": cls.shape, "masks_queries_logits": masks.shape}
    for name in OUTPUT_NAMES:
        if tuple(got[name]) != want[name]:
            raise ExportError(f"ONNX Runtime gives {name} of shape {tuple(got[name])}, expected {want[name]}")
    if not (np.isfinite(cls).all() and np.isfinite(masks).all()):
        raise ExportError("ONNX Runtime output contains NaN or Inf")
    return info


def make_card(name: str, checkpoint: str, size, mean, std, q: int, labels: list[dict],
              score_threshold: float = 0.8) -> dict:
    return {
        "format": CARD_FORMAT,
        "name": name,
        "source": {"checkpoint": checkpoint, "revision": None},
        "input": {"height": size[0], "width": size[1], "mean": mean, "std": std, "channel_order": "RGB"},
        "num_queries": q,
        "labels": labels,
        "defaults": {"task": "panoptic", "score_threshold": score_threshold, "overlap_threshold": 0.8, "mask_threshold": 0.5},
    }


def write_card(path: Path, card: dict) -> None:
    head = {k: v for k, v in card.items() if k != "labels"}
    text = json.dumps(head, indent=2)
    labels = ",\n".join("    " + json.dumps(lab) for lab in card["labels"])
    # one label per line keeps 133-label cards readable
    text = text[:-2] + ',\n  "labels": [\n' + labels + "\n  ]\n}\n"
    json.loads(text)
    path.write_text(text)


def _precheck_labels(checkpoint: str, labels_file: str | None) -> None:
    """Label count of --labels against a local config.json, before the slow imports."""
    cfg = Path(checkpoint) / "config.json"
    if not labels_file or not cfg.is_file():
        return
    try:
        raw = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return  # load_config reports it
    k = raw.get("num_labels") or len(raw.get("id2label") or {})
    if raw.get("model_type") == "mask2former" and k:
        n = len(load_label_set(Path(labels_file)))
        if n != k:
            raise ExportError(f"labels file {labels_file} has {n} labels, the checkpoint has {k}")


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="engines/export.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("checkpoint", help="save_pretrained directory, or hub id (needs network)")
    ap.add_argument("--size", required=True, help="network input HxW, multiples of 32 (e.g. 512x896)")
    ap.add_argument("--out", default="out/models", help="output folder (default out/models)")
    ap.add_argument("--name", default=None, help="model name, file stem (default: from the checkpoint and size)")
    ap.add_argument("--batch", type=int, default=None, help="fixed batch size (default: dynamic batch dimension)")
    ap.add_argument("--labels", default=None, help="label set JSON giving isthing/colour (configs/labels/X.json)")
    ap.add_argument(
        "--deform-attn",
        choices=["portable", "trt-plugin"],
        default="portable",
        help="portable (default): GridSample ops, runs everywhere incl. ONNX Runtime; "
        f"trt-plugin: {TRT_OP} nodes for TensorRT engines only (ONNX Runtime cannot run them)",
    )
    ap.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-validate", action="store_true", help="skip the ONNX Runtime check")
    ap.add_argument("--score-threshold", type=float, default=0.8,
                    help="the card's default score threshold (default 0.8; pick it on validation data)")
    args = ap.parse_args(argv)

    t0 = time.time()
    try:
        size = parse_size(args.size)
        if args.batch is not None and args.batch < 1:
            raise ExportError(f"--batch must be >= 1, got {args.batch}")
        if not 0.0 <= args.score_threshold <= 1.0:
            raise ExportError(f"--score-threshold must be in 0..1, got {args.score_threshold}")
        if args.labels and not Path(args.labels).is_file():
            raise ExportError(f"labels file not found: {args.labels}")
        _precheck_labels(args.checkpoint, args.labels)
        log(f"reading {args.checkpoint}")
        cfg = load_config(args.checkpoint)
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        labels, label_src = resolve_labels(cfg, Path(args.checkpoint), args.labels)
        model = load_model(args.checkpoint)
        q = int(model.config.num_queries)
        k = int(model.config.num_labels)
        if len(labels) != k:
            raise ExportError(f"{len(labels)} labels for a model with {k} classes")
        mean, std, ms_src = mean_std(args.checkpoint)
        name = args.name or f"{Path(args.checkpoint.rstrip('/')).name}-{size[0]}x{size[1]}"
        if args.deform_attn == "trt-plugin" and not args.name:
            name += "-trt"
        out = Path(args.out)
        onnx_path = out / f"{name}.onnx"
        log(f"Mask2Former: {q} queries, {k} labels ({label_src}); mean/std from {ms_src}")
        log(f"exporting {size[0]}x{size[1]}, batch {args.batch or 'dynamic'}, deform-attn {args.deform_attn} -> {onnx_path}")
        try:
            export_onnx(model, onnx_path, size, args.batch, args.deform_attn, args.opset)
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"ONNX export failed: {_one_line(e)}")
        if not args.no_validate:
            log("validating" + (" (graph only: ONNX Runtime cannot run the TensorRT plugin)" if args.deform_attn == "trt-plugin" else " with ONNX Runtime"))
            info = validate_onnx(onnx_path, size, q, k, args.batch, args.deform_attn)
            if args.deform_attn == "trt-plugin":
                log(f"{info['trt_plugin_nodes']} {TRT_OP} nodes")
        card = make_card(name, args.checkpoint, size, mean, std, q, labels, args.score_threshold)
        card_path = out / f"{name}.json"
        write_card(card_path, card)
        mb = onnx_path.stat().st_size / 1e6
        log(f"wrote {onnx_path} ({mb:.1f} MB) and {card_path} in {time.time() - t0:.0f} s")
        return 0
    except ExportError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
