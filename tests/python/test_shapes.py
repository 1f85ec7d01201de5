"""engines/shapes.py (the synthetic panoptic generator) and the committed sample ground truth."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "engines"))

import shapes  # noqa: E402

GT_DIR = os.path.join(ROOT, "samples", "gt")
LABELS_JSON = os.path.join(ROOT, "configs", "labels", "shapes.json")


@pytest.fixture(scope="module")
def clip():
    return shapes.Clip(7)


def test_deterministic_for_a_seed_and_random_access(clip):
    other = shapes.Clip(7)
    # render in a different order: frame i must not depend on what was rendered before
    b = other.frame(40)
    a = clip.frame(40)
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.ids, b.ids)
    assert a.segments == b.segments
    assert a.objects == b.objects


def test_differs_across_seeds():
    a = shapes.Clip(7).frame(0)
    b = shapes.Clip(8).frame(0)
    assert not np.array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.ids, b.ids)
    t1 = shapes.Clip(shapes.train_seed(0, 0), num_frames=10).frame(0)
    t2 = shapes.Clip(shapes.train_seed(0, 1), num_frames=10).frame(0)
    assert not np.array_equal(t1.rgb, t2.rgb)


def test_seed_spaces_are_disjoint():
    train = {shapes.train_seed(s, k) for s in range(3) for k in range(50)}
    held = {c for c, _ in shapes.heldout_seeds()}
    assert len(held) == 10 and not (train & held)
    assert all(isinstance(c, tuple) for c in train | held)  # never the sample's integer seed
    assert shapes.SAMPLE_SEED not in train | held
    # a tuple seed and an integer seed give different clips even with the same numbers
    assert not np.array_equal(shapes.Clip(7, num_frames=5).frame(0).ids,
                              shapes.Clip((shapes.TRAIN_TAG, 7, 0), num_frames=5).frame(0).ids)


def _check_consistent(f):
    ids = f.ids
    assert ids.dtype == np.uint32 and f.rgb.dtype == np.uint8 and f.rgb.shape == ids.shape + (3,)
    listed = {s["id"] for s in f.segments}
    present = set(np.unique(ids).tolist()) - {shapes.VOID}
    assert listed == present
    assert len(listed) == len(f.segments)
    for s in f.segments:
        m = ids == s["id"]
        assert s["area"] == int(m.sum()) > 0
        ys, xs = np.nonzero(m)
        assert s["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        assert s["iscrowd"] == 0
        isthing = s["category_id"] in shapes.THING_IDS
        assert (s["track_id"] is not None) == isthing
        if isthing:
            assert s["id"] == shapes.THING_ID_BASE + s["track_id"]
            assert s["area"] >= 64
            obj = [o for o in f.objects if o["track_id"] == s["track_id"]]
            assert len(obj) == 1 and obj[0]["category_id"] == s["category_id"] and obj[0]["area"] == s["area"]
        else:
            assert s["id"] == s["category_id"] + 1
    # VOID only where a thing is too small to annotate
    void = ids == shapes.VOID
    if void.any():
        small = [o for o in f.objects if 0 < o["area"] < 64]
        assert small and int(void.sum()) == sum(o["area"] for o in small)


def test_gt_consistent_with_id_map(clip):
    for i in range(0, 180, 15):
        _check_consistent(clip.frame(i))


def test_scene_statistics():
    """2-6 things per frame, large enough, identities persist, objects enter and leave."""
    counts, radii = [], []
    entered = left = 0
    for seed in (7, 8, 9):
        c = shapes.Clip(seed)
        for t in c.things:
            radii.append(t.size)
            entered += t.birth > 0
            left += t.death < c.num_frames
        for i in range(c.num_frames):
            n = sum(t.alive(i) for t in c.things)
            assert 2 <= n <= 6, (seed, i, n)
        prev = None
        for i in range(0, 180, 12):
            f = c.frame(i)
            assert len(f.objects) == sum(t.alive(i) for t in c.things)
            counts.append(sum(s["track_id"] is not None for s in f.segments))
            cats = {o["track_id"]: o["category_id"] for o in f.objects}
            if prev:
                for tid in set(prev) & set(cats):
                    assert prev[tid] == cats[tid]  # identity keeps its class
            prev = cats
    counts = np.array(counts)
    assert counts.max() <= 6 and np.mean(counts >= 2) > 0.9 and counts.mean() > 3
    assert min(radii) >= 27 and entered > 3 and left > 3
    # the stuff classes all appear
    f = shapes.Clip(7).frame(0)
    assert {s["category_id"] for s in f.segments} >= set(shapes.STUFF_IDS)


def test_motion_is_smooth(clip):
    t = clip.things[0]
    path = np.array([t.pose(f)[:2] for f in range(t.birth, min(t.death, t.birth + 30))])
    step = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert step.max() < 10 and step.min() > 0.5


def test_bad_arguments():
    with pytest.raises(ValueError):
        shapes.Clip(-1)
    with pytest.raises(ValueError):
        shapes.Clip(1, width=10)
    with pytest.raises(ValueError):
        shapes.Clip(1, fps=0)
    with pytest.raises(IndexError):
        shapes.Clip(1, num_frames=5).frame(5)


def test_labels_json_matches_generator():
    with open(LABELS_JSON) as f:
        labels = json.load(f)
    assert labels == shapes.LABELS
    assert [l["id"] for l in labels] == list(range(len(labels)))
    assert [l["name"] for l in labels] == ["sky", "ground", "road", "circle", "square", "triangle"]
    assert all(set(l) == {"id", "name", "isthing", "color"} and len(l["color"]) == 3 for l in labels)


def test_training_example_shapes():
    pix, masks, classes = shapes.training_example(shapes.train_seed(0, 3), 288, 512)
    assert pix.shape == (3, 288, 512) and pix.dtype == np.float32
    assert masks.shape[1:] == (288, 512) and masks.shape[0] == classes.shape[0] >= 4
    assert set(np.unique(masks).tolist()) <= {0.0, 1.0}
    assert masks.sum(0).max() == 1  # masks do not overlap
    assert set(classes.tolist()) >= set(shapes.STUFF_IDS)
    # normalization: ImageNet mean/std on [0, 1] pixels
    assert -2.2 < pix.min() and pix.max() < 2.7


# --- committed sample --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gt_json():
    path = os.path.join(GT_DIR, "panoptic.json")
    if not os.path.exists(path):
        pytest.fail("samples/gt/panoptic.json is missing: run engines/make_sample.py")
    with open(path) as f:
        return json.load(f)


def test_sample_gt_categories(gt_json):
    cats = gt_json["categories"]
    assert [(c["id"], c["name"], bool(c["isthing"])) for c in cats] == \
        [(l["id"], l["name"], l["isthing"]) for l in shapes.LABELS]
    assert len(gt_json["images"]) == len(gt_json["annotations"]) == 180
    assert gt_json["info"]["seed"] == shapes.SAMPLE_SEED


@pytest.mark.parametrize("i", [0, 1, 77, 179])
def test_sample_gt_matches_regeneration(gt_json, clip, i):
    from PIL import Image

    ann = gt_json["annotations"][i]
    assert ann["image_id"] == i and ann["file_name"] == f"{i:05d}.png"
    with Image.open(os.path.join(GT_DIR, "panoptic", ann["file_name"])) as im:
        assert im.mode == "RGB" and im.size == (640, 360)
        ids = shapes.rgb2id(np.asarray(im))
    f = clip.frame(i)
    assert np.array_equal(ids, f.ids)
    assert ann["segments_info"] == f.segments


def test_sample_video_present_and_small():
    path = os.path.join(ROOT, "samples", "shapes.mp4")
    assert os.path.isfile(path)
    size = os.path.getsize(path)
    assert 100_000 < size < 5_000_000
    with open(path, "rb") as f:
        head = f.read(64)
    assert head[4:8] == b"ftyp"
    total = size + sum(os.path.getsize(os.path.join(GT_DIR, "panoptic", n))
                       for n in os.listdir(os.path.join(GT_DIR, "panoptic")))
    assert total < 30_000_000
