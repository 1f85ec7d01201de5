#!/usr/bin/env python3
"""Compare two segstream.frame/1 JSON Lines files frame by frame: the same segments (id,
label, thing/stuff) and the share of equal mask pixels (COCO RLE decoded with pycocotools).
Only the frames both files hold completely are compared (a .partial file may end mid-line).
Prints a Markdown table; exits 1 when they differ (segments, or < 99.9 % equal pixels).

    scripts/compare-records.py A.jsonl B.jsonl [--frames N]
"""
import argparse
import json
import sys

from pycocotools import mask as rle


def load(path, limit):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a cut last line
            if limit and len(out) >= limit:
                break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--frames", type=int, default=0, help="compare at most the first N frames")
    args = ap.parse_args()
    a, b = load(args.a, args.frames), load(args.b, args.frames)
    n = min(len(a), len(b))
    same = pix = eq = segs = 0
    worst = 1.0
    for ra, rb in zip(a[:n], b[:n]):
        key = lambda s: (s["id"], s["label_id"], s["is_thing"])
        sa, sb = ra["segments"], rb["segments"]
        segs += len(sa)
        same += [key(s) for s in sa] == [key(s) for s in sb]
        for x, y in zip(sa, sb):
            ma = rle.decode({"size": x["mask"]["size"], "counts": x["mask"]["counts"].encode()})
            mb = rle.decode({"size": y["mask"]["size"], "counts": y["mask"]["counts"].encode()})
            if ma.shape == mb.shape:
                e = int((ma == mb).sum())
                pix += ma.size
                eq += e
                worst = min(worst, e / ma.size)
    share = eq / pix if pix else 0.0
    ok = n > 0 and same == n and share >= 0.999
    print(f"| frames compared (of {len(a)} / {len(b)}) | {n} |")
    print(f"| frames with the same segments (id, label, thing) | {same} of {n} |")
    print(f"| segments | {segs} |")
    print(f"| mask pixels equal | {100 * share:.4f} % (worst segment {100 * worst:.3f} %) |")
    print(f"| verdict | {'same' if ok else 'DIFFERENT'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
