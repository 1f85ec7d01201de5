#!/usr/bin/env python3
"""Train several sample-model variants side by side and compare them on the validation seed.

Each run is ``train_sample.py`` with the common flags plus its own; all start together (one
process each, its own data workers), then each checkpoint is scored by ``eval_sample.py`` on
the validation seed (never the held-out one) and one table is printed. Meant for a machine with
a GPU and many cores, to choose a recipe before the hour-long CPU run that makes the sample
model (engines/README.md, "Choosing the recipe"):

    python3 engines/sweep.py --out out/sweep --device cuda --workers 3 --time-budget-s 360 \\
        --run base: --run r224:--size=224x384 --run lr1e3:--lr=1e-3

A run is ``NAME:FLAGS`` with FLAGS comma-separated ``--flag=value`` items (``--depths`` values use
``/`` instead of commas: ``--depths=2/2/2/2``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_run(spec: str) -> tuple[str, list[str]]:
    name, _, flags = spec.partition(":")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"run name must be letters, digits, '-' or '_': {spec!r}")
    out = []
    for item in filter(None, flags.split(",")):
        if not item.startswith("--"):
            raise ValueError(f"run {name}: flags look like --flag=value, got {item!r}")
        out.append(item.replace("/", ","))
    return name, out


def data_key(flags: list[str]) -> tuple[tuple[int, tuple[int, int]], int]:
    """((seed, (H, W)), training items) of a run: what its data cache must hold."""
    o = dict(f[2:].split("=", 1) for f in flags if "=" in f)
    size = tuple(int(v) for v in o.get("size", "160x288").lower().split("x"))
    return (int(o.get("seed", 0)), size), int(o.get("steps", 3400)) * int(o.get("batch-size", 4))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="one sub-folder per run, plus sweep.json")
    ap.add_argument("--run", action="append", required=True, help="NAME:--flag=value,... (repeatable)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=3, help="data workers per run")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads per run and per evaluation (runs share the CPUs: torch's default of one "
                         "thread per core in every process oversubscribes them)")
    ap.add_argument("--time-budget-s", type=float, default=0.0, help="per run (train_sample's guard)")
    ap.add_argument("--cache", action="store_true",
                    help="generate each seed and size's training items once, with every CPU, and let the runs read them")
    ap.add_argument("--prepare-only", action="store_true", help="with --cache: generate the items, then stop")
    ap.add_argument("--eval-frames", type=int, default=100)
    ap.add_argument("--eval-seed", type=int, default=2, help="validation seed (the held-out seed is 1)")
    ap.add_argument("--threshold", type=float, default=0.5)
    a = ap.parse_args(argv)
    try:
        runs = [parse_run(r) for r in a.run]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len({n for n, _ in runs}) != len(runs):
        print("error: run names must differ", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    caches = {}
    if a.cache:
        sys.path.insert(0, HERE)
        import train_sample
        need = {}
        for name, flags in runs:
            key, items = data_key(flags)
            need[key] = max(need.get(key, 0), items)
        for (seed, size), items in need.items():
            d = os.path.join(a.out, f"cache-{seed}-{size[0]}x{size[1]}")
            caches[(seed, size)] = d
            try:
                with open(os.path.join(d, "meta.json")) as f:
                    if json.load(f)["items"] >= items:
                        print(f"[{time.time() - t0:5.0f}s] {d} already holds the items", flush=True)
                        continue
            except (OSError, ValueError, KeyError):
                pass
            train_sample.write_cache(d, seed, size, items)
            print(f"[{time.time() - t0:5.0f}s] generated {items} training items for seed {seed} at "
                  f"{size[0]}x{size[1]} into {d}", flush=True)
        if a.prepare_only:
            return 0
    procs = {}
    for name, flags in runs:
        d = os.path.join(a.out, name)
        cmd = [sys.executable, os.path.join(HERE, "train_sample.py"), "--out", d, "--device", a.device,
               "--workers", str(a.workers), "--log-every", "200", "--threads", str(a.threads)]
        key, _ = data_key(flags)
        if key in caches:
            cmd += ["--data-cache", caches[key]]
        if a.time_budget_s:
            cmd += ["--time-budget-s", str(a.time_budget_s)]
        cmd += flags
        os.makedirs(d, exist_ok=True)
        log = open(os.path.join(d, "train.log"), "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"[{time.time() - t0:5.0f}s] started {name}: {' '.join(flags) or '(defaults)'}", flush=True)
    for name, (p, log) in procs.items():
        p.wait()
        log.close()
        print(f"[{time.time() - t0:5.0f}s] {name} finished (exit {p.returncode})", flush=True)
    evals = {}
    for name, _ in runs:
        d = os.path.join(a.out, name)
        if not os.path.exists(os.path.join(d, "config.json")):
            continue
        cmd = [sys.executable, os.path.join(HERE, "eval_sample.py"), "--model", d, "--seed", str(a.eval_seed),
               "--frames", str(a.eval_frames), "--threshold", str(a.threshold), "--device", a.device,
               "--threads", str(a.threads), "--json", os.path.join(d, "pq.json")]
        evals[name] = subprocess.Popen(cmd, stdout=open(os.path.join(d, "eval.log"), "w"), stderr=subprocess.STDOUT)
    rows = []
    for name, flags in runs:
        d = os.path.join(a.out, name)
        row = {"run": name, "flags": flags}
        if name in evals:
            evals[name].wait()
        try:
            with open(os.path.join(d, "train_log.json")) as f:
                tl = json.load(f)
            row.update(steps=tl["steps_done"], train_s=tl["train_s"], stopped=tl["stopped"],
                       loss=tl["loss"][-1]["loss"] if tl["loss"] else None)
            with open(os.path.join(d, "pq.json")) as f:
                row["pq"] = json.load(f)
        except (OSError, ValueError, KeyError) as e:
            row["error"] = str(e)
        rows.append(row)
    with open(os.path.join(a.out, "sweep.json"), "w") as f:
        json.dump({"device": a.device, "eval_seed": a.eval_seed, "eval_frames": a.eval_frames,
                   "threshold": a.threshold, "runs": rows}, f, indent=2)
    print(f"{'run':<10} {'steps':>6} {'train s':>8} {'loss':>7} {'PQ':>6} {'stuff':>6} {'things':>6}  per class")
    for r in rows:
        if "pq" not in r:
            print(f"{r['run']:<10} failed: {r.get('error')}")
            continue
        pq = r["pq"]
        per = " ".join(f"{n[:4]} {100 * c['pq']:.1f}" for n, c in pq["per_class"].items())
        print(f"{r['run']:<10} {r['steps']:>6} {r['train_s']:>8.0f} {r['loss'] or 0:>7.3f} "
              f"{100 * pq['all']['pq']:>6.2f} {100 * pq['stuff']['pq']:>6.2f} {100 * pq['things']['pq']:>6.2f}  {per}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
