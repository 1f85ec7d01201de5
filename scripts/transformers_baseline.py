"""Time transformers' Mask2Former post_process_panoptic_segmentation on the GPU for the
segstream GPU bench comparison (scripts/gpu-check.sh): 1080p target, Q=100, K=133,
masks 96x96 (input 384x384), same synthetic structure as segstream's bench (30 confident
queries). Prints median_ms=<value>."""
import statistics
import time
from types import SimpleNamespace

import torch
from transformers import Mask2FormerImageProcessor

Q, K, MH, MW, KEPT = 100, 133, 96, 96, 30
dev = torch.device("cuda")
g = torch.Generator().manual_seed(0)
cls = torch.rand(1, Q, K + 1, generator=g) * 2 - 1
for q in range(Q):
    cls[0, q, (q * 7) % K if q < KEPT else K] = 9.5
yy, xx = torch.meshgrid(torch.arange(MH).float(), torch.arange(MW).float(), indexing="ij")
masks = torch.full((1, Q, MH, MW), -6.0)
for q in range(Q):
    for _ in range(3):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([MH, MW])
        r = 2 + torch.rand(1, generator=g).item() * MH / 4
        a = 4 + 8 * torch.rand(1, generator=g).item()
        masks[0, q] += a * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
out = SimpleNamespace(class_queries_logits=cls.to(dev), masks_queries_logits=masks.to(dev))
proc = Mask2FormerImageProcessor()
sizes = [(1080, 1920)]
for _ in range(3):
    proc.post_process_panoptic_segmentation(out, target_sizes=sizes)
torch.cuda.synchronize()
v = []
for _ in range(20):
    t = time.perf_counter()
    r = proc.post_process_panoptic_segmentation(out, target_sizes=sizes)
    torch.cuda.synchronize()
    v.append((time.perf_counter() - t) * 1e3)
print(f"transformers {torch.__version__=} segments={len(r[0]['segments_info'])} median_ms={statistics.median(v):.3f}")
