#!/usr/bin/env python3
"""How far f32 runtimes are from a float64 run of the same Mask2Former checkpoint.

Runs the checkpoint in PyTorch float64 (the reference), PyTorch f32, ONNX Runtime on its
exported ONNX (graph optimizations off and all on) and OpenVINO f32, on the input
tests/openvino.rs uses (a smooth field plus xorshift noise), and prints each one's error
relative to the largest reference logit. Default: the real-size Swin-T model that
scripts/bench-openvino.sh makes.

    python3 scripts/openvino-f64-check.py [CHECKPOINT_DIR MODEL.onnx] [--threads 2]
"""
import argparse
import math

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
from transformers import Mask2FormerForUniversalSegmentation

p = argparse.ArgumentParser()
p.add_argument("checkpoint", nargs="?", default="out/bench-openvino/swin-t-coco")
p.add_argument("onnx", nargs="?", default="out/bench-openvino/models/swin-t-coco-384x640.onnx")
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()

sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
_, _, h, w = sess.get_inputs()[0].shape

# tests/openvino.rs `input(1, (h, w))`: 2 sin(field) + noise in [-0.5, 0.5).
state, mask64 = 0x2545F4914F6CDD1D, (1 << 64) - 1
vals = []
for c in range(3):
    for y in range(h):
        for x in range(w):
            state ^= (state << 13) & mask64
            state ^= state >> 7
            state ^= (state << 17) & mask64
            noise = (state >> 40) / (1 << 24) - 0.5
            vals.append(2.0 * math.sin((x / w) * (3 + c) + (y / h) * 2.0) + noise)
x = np.array(vals, np.float32).reshape(1, 3, h, w)

torch.set_num_threads(a.threads)
model = Mask2FormerForUniversalSegmentation.from_pretrained(a.checkpoint, attn_implementation="eager").eval()
with torch.no_grad():
    r64 = model.double()(pixel_values=torch.from_numpy(x).double())
    ref = [r64.class_queries_logits.numpy(), r64.masks_queries_logits.numpy()]
    r32 = model.float()(pixel_values=torch.from_numpy(x))
    runs = {"PyTorch f32": [r32.class_queries_logits.numpy(), r32.masks_queries_logits.numpy()]}

for level, name in [(ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "ONNX Runtime, optimizations off"),
                    (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "ONNX Runtime, all optimizations")]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.graph_optimization_level = level
    runs[name] = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"]).run(None, {"pixel_values": x})

compiled = ov.Core().compile_model(a.onnx, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": a.threads})
out = compiled({"pixel_values": x})
runs["OpenVINO f32"] = [out[compiled.output(0)], out[compiled.output(1)]]


def rel(v, r):
    return float(np.abs(v - r).max() / np.abs(r).max())


print("| run | class logits | mask logits |  (max error / largest float64 logit)")
print("| --- | --- | --- |")
for name, (c, m) in runs.items():
    print(f"| {name} | {rel(c, ref[0]):.2e} | {rel(m, ref[1]):.2e} |")
