"""engines/pq.py: hand-computed cases, file round trip, CLI, and a cross-check against
torchmetrics' PanopticQuality (an independent implementation) on random and synthetic cases.

torchmetrics departs from the COCO algorithm in one place: pixels a *prediction* leaves
unlabelled (id 0) are void for it too (it removes them from the union and drops false
negatives that are mostly unlabelled). The cross-check therefore uses predictions that label
every pixel; ground truth may have VOID. Unlabelled-prediction handling is pinned by the
hand-computed cases instead.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "engines"))

import pq  # noqa: E402
import shapes  # noqa: E402

torch.set_num_threads(1)

THINGS = {1, 2, 7}
STUFF = {0, 3, 5}  # category 0 is a real category here, not VOID
CATS = {c: {"id": c, "name": f"c{c}", "isthing": int(c in THINGS)} for c in sorted(THINGS | STUFF)}


def seg(i, c, crowd=0):
    return {"id": i, "category_id": c, "iscrowd": crowd}


# --- hand-computed ------------------------------------------------------------------------------

def test_perfect_prediction():
    gt = np.zeros((10, 10), np.uint32)
    gt[:5] = 1
    gt[5:] = 2
    gt[2:4, 2:6] = 10
    segs = [seg(1, 0), seg(2, 3), seg(10, 1)]
    r = pq.summarize(pq.pq_image(gt, segs, gt.copy(), segs, CATS), CATS)
    assert r["all"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 3}
    assert r["things"]["n"] == 1 and r["stuff"]["n"] == 2


def test_hand_computed_iou_fp_fn():
    # thing GT 4x4=16 px; prediction 4x5=20 px overlapping 16: IoU = 16/20 = 0.8 (TP)
    # second GT thing (category 2) missed (FN); a spurious category-7 prediction (FP)
    gt = np.full((12, 12), 1, np.uint32)
    gt[0:4, 0:4] = 10
    gt[8:10, 8:10] = 11
    pr = np.full((12, 12), 5, np.uint32)
    pr[0:4, 0:5] = 20
    pr[6:8, 0:3] = 21
    gs = [seg(1, 0), seg(10, 1), seg(11, 2)]
    ps = [seg(5, 0), seg(20, 1), seg(21, 7)]
    st = pq.pq_image(gt, gs, pr, ps, CATS)
    assert st[1].tp == 1 and st[1].iou == pytest.approx(0.8)
    assert st[2].fn == 1 and st[7].fp == 1
    # stuff category 0: GT segment 1 against predicted segment 5
    inter = int(((gt == 1) & (pr == 5)).sum())
    union = int((gt == 1).sum() + (pr == 5).sum() - inter)
    assert st[0].tp == 1 and st[0].iou == pytest.approx(inter / union)
    r = pq.summarize(st, CATS)
    assert r["per_class"]["c1"]["pq"] == pytest.approx(0.8)
    assert r["per_class"]["c2"]["pq"] == 0.0 and r["per_class"]["c7"]["rq"] == 0.0
    assert r["things"]["n"] == 3 and r["stuff"]["n"] == 1
    assert r["things"]["pq"] == pytest.approx(0.8 / 3)


def test_iou_exactly_half_is_not_a_match():
    gt = np.zeros((4, 4), np.uint32)
    gt[:, :2] = 1
    gt[:, 2:] = 3
    pr = np.full((4, 4), 2, np.uint32)  # covers 16, GT 8, inter 8 -> IoU 0.5
    st = pq.pq_image(gt, [seg(1, 1), seg(3, 0)], pr, [seg(2, 1)], CATS)
    assert st[1].tp == 0 and st[1].fn == 1 and st[1].fp == 1


def test_void_handling():
    # GT: left half VOID, right half thing 1 (id 9). Prediction covers everything with one segment:
    # union excludes the VOID part -> IoU = 8 / (16 + 8 - 8 - 8) = 1
    gt = np.zeros((4, 4), np.uint32)
    gt[:, 2:] = 9
    pr = np.full((4, 4), 3, np.uint32)
    st = pq.pq_image(gt, [seg(9, 1)], pr, [seg(3, 1)], CATS)
    assert st[1].tp == 1 and st[1].iou == pytest.approx(1.0)
    # A prediction mostly on VOID is not a false positive; one mostly outside is.
    pr2 = np.zeros((4, 4), np.uint32)
    pr2[:, 0:2] = 4  # all on VOID
    pr2[0, 2] = 4
    st = pq.pq_image(gt, [seg(9, 1)], pr2, [seg(4, 2)], CATS)
    assert st[2].fp == 0 and st[1].fn == 1
    pr3 = np.zeros((4, 4), np.uint32)
    pr3[:, 1:4] = 4  # 4 of 12 on VOID
    st = pq.pq_image(gt, [seg(9, 1)], pr3, [seg(4, 2)], CATS)
    assert st[2].fp == 1
    # Unlabelled prediction pixels (COCO semantics): they stay in the union.
    pr4 = np.zeros((4, 4), np.uint32)
    pr4[:, 3] = 5  # covers 4 of the 8 GT pixels -> IoU 4/8 = 0.5, no match
    st = pq.pq_image(gt, [seg(9, 1)], pr4, [seg(5, 1)], CATS)
    assert st[1].tp == 0 and st[1].fn == 1 and st[1].fp == 1


def test_crowd_handling():
    gt = np.full((4, 8), 1, np.uint32)
    gt[:, 4:] = 2  # crowd region of category 1
    pr = np.full((4, 8), 6, np.uint32)
    pr[:, 3:] = 7  # prediction of category 1 lying 16/20 on crowd -> ignored
    gs = [seg(1, 0), seg(2, 1, crowd=1)]
    ps = [seg(6, 0), seg(7, 1)]
    st = pq.pq_image(gt, gs, pr, ps, CATS)
    assert st[1].tp == 0 and st[1].fn == 0 and st[1].fp == 0  # crowd neither FN nor matched
    assert st[0].tp == 1 and st[0].iou == pytest.approx(12 / 16)
    # same prediction with another category is an FP (crowd only shields its own category)
    st = pq.pq_image(gt, gs, pr, [seg(6, 0), seg(7, 2)], CATS)
    assert st[2].fp == 1


def test_inconsistent_input_is_rejected():
    gt = np.ones((4, 4), np.uint32)
    with pytest.raises(KeyError, match="in the PNG and not in the JSON"):
        pq.pq_image(gt, [seg(1, 0)], np.full((4, 4), 3, np.uint32), [seg(2, 0)], CATS)
    with pytest.raises(KeyError, match="in the JSON and not in the PNG"):
        pq.pq_image(gt, [seg(1, 0)], np.full((4, 4), 3, np.uint32), [seg(3, 0), seg(4, 0)], CATS)
    with pytest.raises(KeyError, match="unknown category_id"):
        pq.pq_image(gt, [seg(1, 0)], np.full((4, 4), 3, np.uint32), [seg(3, 99)], CATS)
    with pytest.raises(ValueError, match="area"):
        pq.pq_image(gt, [dict(seg(1, 0), area=3)], gt, [seg(1, 0)], CATS)
    with pytest.raises(ValueError, match="ground truth is"):
        pq.pq_image(gt, [seg(1, 0)], np.ones((4, 5), np.uint32), [seg(1, 0)], CATS)


def test_empty_group_is_zero_not_error():
    gt = np.ones((4, 4), np.uint32)
    r = pq.summarize(pq.pq_image(gt, [seg(1, 0)], gt, [seg(1, 0)], CATS), CATS)
    assert r["things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    assert r["stuff"]["pq"] == 1.0


# --- random cases, cross-checked with torchmetrics -----------------------------------------------

def _scene(rng, h, w, void):
    """A random panoptic image: stuff bands (one segment per stuff category), thing blobs, VOID."""
    ids = np.zeros((h, w), np.uint32)
    segs = []
    cats = rng.permutation(sorted(STUFF))[: rng.integers(1, 4)]
    cuts = np.sort(rng.integers(0, h, size=len(cats) - 1))
    yy, xx = np.mgrid[0:h, 0:w]
    row = yy + rng.uniform(-0.3, 0.3) * (xx - w / 2)
    band = np.searchsorted(cuts, row, side="right")  # 0..len(cats)-1
    for k, c in enumerate(cats):
        ids[band == k] = int(c) + 1
        if (band == k).any():
            segs.append(seg(int(c) + 1, int(c)))
    n = int(rng.integers(0, 6))
    for k in range(n):
        c = int(rng.choice(sorted(THINGS)))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(2, h / 3), rng.uniform(2, w / 3)
        if rng.random() < 0.5:
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            m = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        sid = 100 + k
        ids[m] = sid
        segs.append({"id": sid, "category_id": c, "iscrowd": 0, "_shape": (cy, cx, ry, rx)})
    if void and rng.random() < 0.7:
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        ids[y0:y0 + rng.integers(2, h // 2), x0:x0 + rng.integers(2, w // 2)] = 0
    present = set(np.unique(ids).tolist())
    segs = [{k: v for k, v in s.items() if k != "_shape"} for s in segs if s["id"] in present]
    return ids, segs


def _perturb(rng, gt_ids, gt_segs):
    """A prediction that labels every pixel: GT warped by a shift, with relabelled, dropped,
    merged and spurious segments."""
    h, w = gt_ids.shape
    dy, dx = rng.integers(-3, 4, size=2)
    ids = np.roll(gt_ids, (int(dy), int(dx)), axis=(0, 1)).copy()
    cat = {s["id"]: s["category_id"] for s in gt_segs}
    # fill VOID (GT void and rolled-in void) with a stuff segment
    stuff_ids = [s["id"] for s in gt_segs if s["category_id"] in STUFF]
    fill = stuff_ids[0] if stuff_ids else 50
    if fill == 50:
        cat[50] = int(rng.choice(sorted(STUFF)))
    ids[ids == 0] = fill
    # per-thing edits
    for s in gt_segs:
        if s["category_id"] not in THINGS:
            continue
        r = rng.random()
        if r < 0.15:  # dropped: becomes stuff
            ids[ids == s["id"]] = fill
        elif r < 0.3:  # wrong class
            cat[s["id"]] = int(rng.choice(sorted(THINGS - {s["category_id"]})))
        elif r < 0.4:  # eroded
            m = ids == s["id"]
            m2 = m & np.roll(m, 2, 0) & np.roll(m, 2, 1)
            ids[m & ~m2] = fill
    # spurious things
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(int(rng.integers(0, 3))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 8)
        ids[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200 + k
        cat[200 + k] = int(rng.choice(sorted(THINGS)))
    # occasionally swap a stuff category
    if rng.random() < 0.2 and stuff_ids:
        sid = int(rng.choice(stuff_ids))
        others = sorted(STUFF - {cat[sid]} - {cat[s] for s in stuff_ids})
        if others:
            cat[sid] = int(rng.choice(others))
    present = np.unique(ids).tolist()
    assert 0 not in present
    return ids, [seg(int(i), cat[int(i)]) for i in present]


def _to_torchmetrics(ids, segs, void_cat=255):
    cat = {s["id"]: s["category_id"] for s in segs}
    out = np.zeros(ids.shape + (2,), np.int64)
    flat = ids.ravel()
    c = np.array([cat.get(int(i), void_cat) for i in flat]).reshape(ids.shape)
    out[..., 0] = c
    out[..., 1] = ids
    return torch.from_numpy(out)


def _torchmetrics_reference(pairs):
    from torchmetrics.detection import PanopticQuality

    m = PanopticQuality(things=THINGS, stuffs=STUFF, return_per_class=True, return_sq_and_rq=True)
    for (g_ids, g_segs), (p_ids, p_segs) in pairs:
        m.update(_to_torchmetrics(p_ids, p_segs)[None], _to_torchmetrics(g_ids, g_segs)[None])
    per = m.compute().numpy()  # rows: continuous ids = things sorted, then stuff sorted
    order = sorted(THINGS) + sorted(STUFF)
    den = (m.true_positives + 0.5 * m.false_positives + 0.5 * m.false_negatives).numpy()
    ref = {"per_class": {}}
    for k, c in enumerate(order):
        ref["per_class"][c] = {"pq": per[k, 0], "sq": per[k, 1], "rq": per[k, 2], "present": den[k] > 0,
                               "tp": int(m.true_positives[k]), "fp": int(m.false_positives[k]),
                               "fn": int(m.false_negatives[k])}
    for name, group in (("all", order), ("things", sorted(THINGS)), ("stuff", sorted(STUFF))):
        vals = [ref["per_class"][c] for c in group if ref["per_class"][c]["present"]]
        ref[name] = {q: float(np.mean([v[q] for v in vals])) if vals else 0.0 for q in ("pq", "sq", "rq")}
        ref[name]["n"] = len(vals)
    return ref


def _compare(mine, ref):
    for name in ("all", "things", "stuff"):
        assert mine[name]["n"] == ref[name]["n"], name
        for q in ("pq", "sq", "rq"):
            assert abs(mine[name][q] - ref[name][q]) < 1e-6, (name, q, mine[name][q], ref[name][q])
    for c, r in ref["per_class"].items():
        m = mine["per_class"][f"c{c}"]
        assert (m["tp"], m["fp"], m["fn"]) == (r["tp"], r["fp"], r["fn"]), c
        for q in ("pq", "sq", "rq"):
            assert abs(m[q] - r[q]) < 1e-6, (c, q, m[q], r[q])


@pytest.mark.parametrize("case", range(12))
def test_random_cases_match_torchmetrics(case):
    pytest.importorskip("torchmetrics", reason="torchmetrics is the reference implementation (engines/requirements.txt)")
    rng = np.random.default_rng(1000 + case)
    pairs = []
    stat = pq.PQStat()
    for _ in range(int(rng.integers(1, 5))):
        h, w = int(rng.integers(16, 48)), int(rng.integers(16, 64))
        g = _scene(rng, h, w, void=True)
        p = _perturb(rng, *g)
        pairs.append((g, p))
        stat += pq.pq_image(g[0], g[1], p[0], p[1], CATS)
    mine = pq.summarize(stat, CATS)
    _compare(mine, _torchmetrics_reference(pairs))


def test_shapes_frames_match_torchmetrics():
    """Synthetic case: generator frames against a degraded copy (shifted, one class swapped)."""
    pytest.importorskip("torchmetrics")
    global THINGS, STUFF, CATS
    saved = THINGS, STUFF, CATS
    THINGS, STUFF = set(shapes.THING_IDS), set(shapes.STUFF_IDS)
    CATS = {l["id"]: {"id": l["id"], "name": f"c{l['id']}", "isthing": int(l["isthing"])} for l in shapes.LABELS}
    try:
        rng = np.random.default_rng(5)
        clip = shapes.Clip(11, width=160, height=90, num_frames=20)
        pairs, stat = [], pq.PQStat()
        for i in (0, 7, 14, 19):
            f = clip.frame(i)
            g = (f.ids, f.segments)
            p = _perturb(rng, *g)
            pairs.append((g, p))
            stat += pq.pq_image(g[0], g[1], p[0], p[1], CATS)
        _compare(pq.summarize(stat, CATS), _torchmetrics_reference(pairs))
    finally:
        THINGS, STUFF, CATS = saved


def test_random_case_is_not_trivial():
    """Guard against a cross-check that only ever compares perfect or empty results."""
    rng = np.random.default_rng(1003)
    stat = pq.PQStat()
    for _ in range(4):
        g = _scene(rng, 40, 60, void=True)
        p = _perturb(rng, *g)
        stat += pq.pq_image(g[0], g[1], p[0], p[1], CATS)
    r = pq.summarize(stat, CATS)
    assert 0.05 < r["all"]["pq"] < 0.99
    assert sum(v["fp"] + v["fn"] for v in r["per_class"].values()) > 0


# --- files and CLI -----------------------------------------------------------------------------

def _write_set(d, name, items, categories):
    from PIL import Image

    folder = os.path.join(d, name)
    os.makedirs(folder)
    anns = []
    for k, (ids, segs) in enumerate(items):
        fn = f"{k:05d}.png"
        Image.fromarray(pq.id2rgb(ids)).save(os.path.join(folder, fn))
        anns.append({"image_id": k, "file_name": fn, "segments_info": segs})
    js = {"images": [{"id": k, "file_name": f"{k:05d}.png"} for k in range(len(items))],
          "annotations": anns, "categories": list(categories.values())}
    path = os.path.join(d, name + ".json")
    with open(path, "w") as f:
        json.dump(js, f)
    return path, folder


def test_files_and_cli(tmp_path):
    rng = np.random.default_rng(77)
    gts, preds = [], []
    stat = pq.PQStat()
    for _ in range(3):
        g = _scene(rng, 30, 40, void=True)
        p = _perturb(rng, *g)
        # large ids exercise the 3-byte RGB encoding
        remap = {s["id"]: s["id"] * 70001 % (1 << 24) or 1 for s in p[1]}
        p_ids = np.vectorize(lambda i: remap[int(i)])(p[0]).astype(np.uint32)
        p_segs = [dict(s, id=remap[s["id"]]) for s in p[1]]
        gts.append(g)
        preds.append((p_ids, p_segs))
        stat += pq.pq_image(g[0], g[1], p_ids, p_segs, CATS)
    expect = pq.summarize(stat, CATS)
    gj, gd = _write_set(str(tmp_path), "gt", gts, CATS)
    pj, pd = _write_set(str(tmp_path), "pred", preds, CATS)
    res = pq.pq_compute(gj, pj, gd, pd)
    for k in ("all", "things", "stuff"):
        assert res[k] == pytest.approx(expect[k])
    out = tmp_path / "res.json"
    cp = subprocess.run([sys.executable, os.path.join(ROOT, "engines", "pq.py"), "--gt", gj, "--gt-dir", gd,
                         "--pred", pj, "--pred-dir", pd, "--json", str(out)],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert "Things" in cp.stdout and "c7" in cp.stdout
    assert json.loads(out.read_text())["all"]["pq"] == pytest.approx(expect["all"]["pq"])
    # a missing prediction is a one-line error
    with open(pj) as f:
        js = json.load(f)
    js["annotations"] = js["annotations"][:-1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(js))
    cp = subprocess.run([sys.executable, os.path.join(ROOT, "engines", "pq.py"), "--gt", gj, "--gt-dir", gd,
                         "--pred", str(bad), "--pred-dir", pd], capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0 and "no prediction for the image" in cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1


def test_eval_sample_oracle(tmp_path):
    """engines/eval_sample.py end to end without a trained model: ground-truth logits through
    transformers' post-processing, COCO files and pq.py; the ceiling must be near 1."""
    pytest.importorskip("transformers")
    import eval_sample

    out = tmp_path / "pq.json"
    assert eval_sample.main(["--oracle", "--frames", "6", "--batch-size", "3", "--json", str(out),
                             "--keep", str(tmp_path / "work"), "--confusion"]) == 0
    res = json.loads(out.read_text())
    # ground-truth logits: every true thing is found with its own class (or, when tiny, not at all)
    names = {str(c) for c in shapes.THING_IDS}
    assert sum(res["confusion"].values()) >= 6
    for key, n in res["confusion"].items():
        g, p = key.split("->")
        assert g in names and (p == g or p == "None"), (key, n)
    assert sum(n for k, n in res["confusion"].items() if not k.endswith("None")) >= 0.9 * sum(res["confusion"].values())
    # by area: the same things, each found one with its own class
    by_area = res["confusion_by_area"].values()
    assert sum(r["things"] for r in by_area) == sum(res["confusion"].values())
    assert sum(r["found"] for r in by_area) == sum(n for k, n in res["confusion"].items() if not k.endswith("None"))
    assert all(r["right_class"] == r["found"] <= r["things"] for r in by_area)
    assert res["images"] == 6 and res["meta"]["kind"] == "oracle"
    assert res["all"]["n"] >= 5
    assert res["things"]["pq"] > 0.9 and res["stuff"]["pq"] > 0.9
    assert all(c["fp"] == 0 for c in res["per_class"].values())
    with open(tmp_path / "work" / "pred.json") as f:
        pred = json.load(f)
    assert all(s["category_id"] in range(6) for a in pred["annotations"] for s in a["segments_info"])
