"""engines/train_sample.py end to end on a tiny model: it trains, saves a checkpoint that
engines/eval_sample.py and engines/export.py's loader accept, is reproducible bit for bit for
a seed on CPU, and feeds the network as segstream does (fit, zero padding)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "engines"))

import shapes  # noqa: E402

TINY = ["--size", "64x128", "--steps", "3", "--batch-size", "2", "--warmup", "1", "--workers", "0",
        "--threads", "1", "--log-every", "1", "--hidden", "32", "--widths", "8,16,16,16",
        "--decoder-layers", "2", "--encoder-layers", "1", "--num-queries", "8", "--train-num-points", "64"]


def test_fit_size_matches_segstream():
    # src/preprocess.rs fit_size: the same cases as tests/preprocess.rs, and the sample's input
    assert shapes.fit_size(360, 640, 288, 512) == (288, 512)
    assert shapes.fit_size(1080, 1920, 288, 512) == (288, 512)
    assert shapes.fit_size(360, 640, 160, 288) == (160, 284)
    assert shapes.fit_size(200, 120, 128, 128) == (128, 77)


def test_model_input_pads_with_zeros():
    rgb = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    pix, valid = shapes.model_input(rgb, 160, 288)
    assert valid == (160, 284) and pix.shape == (3, 160, 288) and pix.dtype == np.float32
    assert np.all(pix[:, :, 284:] == 0.0)
    np.testing.assert_array_equal(pix[:, :, :284], shapes.normalize(shapes.resize_rgb(rgb, 160, 284)))


def test_training_arrays_fit_marks_padding_void():
    rgb, index, classes = shapes.training_arrays(shapes.train_seed(0, 1), 160, 288, fit=True)
    assert rgb.shape == (160, 288, 3) and index.shape == (160, 288)
    assert np.all(index[:, 284:] == 255) and np.all(rgb[:, 284:] == 0)
    assert len(classes) >= 4 and set(np.unique(index[:, :284])) - {255} == set(range(len(classes)))


def _train(out, *extra):
    import train_sample
    assert train_sample.main(["--out", str(out), *TINY, *extra]) == 0
    with open(out / "train_log.json") as f:
        return json.load(f)


def _aux_run(tmp_path, log_key, aux, base=()):
    """Train with the auxiliary-loss flags ``aux`` and without them (both with ``base``): the
    auxiliary run logs ``log_key``, the plain one does not, and the checkpoints have the same
    keys (the heads are not saved) but different weights (the loss did train the model)."""
    import torch
    from safetensors.torch import load_file
    log = _train(tmp_path / "aux", *aux, *base)
    plain = _train(tmp_path / "plain", *base)
    assert log_key in log["loss"][0] and log_key not in plain["loss"][0]
    wa, wp = load_file(tmp_path / "aux" / "model.safetensors"), load_file(tmp_path / "plain" / "model.safetensors")
    assert wa.keys() == wp.keys()
    assert any(not torch.equal(wa[k], wp[k]) for k in wa)
    return log


def test_train_tiny_resnet_reproducible_and_evaluable(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file

    log = _train(tmp_path / "a")
    assert log["steps_done"] == 3 and log["stopped"] == "steps" and len(log["loss"]) == 3
    assert all(np.isfinite(e["loss"]) for e in log["loss"])
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["backbone_config"]["model_type"] == "resnet" and cfg["num_queries"] == 8
    assert cfg["thing_ids"] == list(shapes.THING_IDS)
    pp = json.loads((tmp_path / "a" / "preprocessor_config.json").read_text())
    assert pp["size"] == {"height": 64, "width": 128}

    _train(tmp_path / "b")  # same seed: the same weights bit for bit
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    _train(tmp_path / "c", "--seed", "1")  # another seed: other weights
    wc = load_file(tmp_path / "c" / "model.safetensors")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)

    import eval_sample  # the checkpoint loads and evaluates at its own input size
    out = tmp_path / "pq.json"
    assert eval_sample.main(["--model", str(tmp_path / "a"), "--frames", "2", "--batch-size", "2",
                             "--threshold", "0.0", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["meta"]["input"] == [64, 128] and res["images"] == 2


def test_train_rejects_bad_size(tmp_path, capsys):
    import train_sample
    with pytest.raises(SystemExit) as e:
        train_sample.main(["--out", str(tmp_path / "x"), "--size", "100x128"])
    assert e.value.code == 2
    assert "multiples of 32" in capsys.readouterr().err


def test_data_cache_holds_the_generated_items_and_refuses_another_seed(tmp_path):
    """write_cache (engines/sweep.py --cache) stores exactly the items the dataset generates."""
    import train_sample

    folder = str(tmp_path / "cache")
    train_sample.write_cache(folder, 3, (64, 96), 5, procs=2)
    fresh = train_sample.ShapesDataset(3, 6, size=(64, 96))
    cached = train_sample.ShapesDataset(3, 6, size=(64, 96))
    cached.use_cache(folder)
    for k in range(6):  # item 5 is past the cache: generated
        for a, b in zip(fresh[k], cached[k]):
            assert np.array_equal(a.numpy(), b.numpy()), k
    with pytest.raises(ValueError, match="made for"):
        train_sample.ShapesDataset(4, 6, size=(64, 96)).use_cache(folder)
    with pytest.raises(ValueError, match="made for"):
        train_sample.ShapesDataset(3, 6, size=(96, 96)).use_cache(folder)


def test_semantic_loss_targets_and_training_only_heads(tmp_path):
    """--semantic-weight: per-pixel targets come from the index map and the class list (VOID
    stays VOID); the loss is logged apart and changes the weights, but the 1x1 heads are not
    saved (the checkpoint has the keys of a plain run). --encoder-layers 0 trains too."""
    pytest.importorskip("transformers")
    import torch
    import train_sample

    index = torch.tensor([[[0, 1, 255], [2, 2, 0]]], dtype=torch.uint8)
    t = train_sample.SemanticHeads.targets(index, [torch.tensor([4, 0, 5])])
    assert t.tolist() == [[[4, 0, 255], [5, 5, 4]]]

    log = _aux_run(tmp_path, "semantic_loss", ["--semantic-weight", "1"], ["--encoder-layers", "0"])
    assert all(np.isfinite(e["semantic_loss"]) and e["semantic_loss"] > 0 for e in log["loss"])
    cfg = json.loads((tmp_path / "aux" / "config.json").read_text())
    assert cfg["encoder_layers"] == 0


def test_thing_crops_and_backbone_pretraining(tmp_path):
    """--pretrain-steps: crops are centred on each thing's bounding box (zero outside the picture)
    and labelled with its shape; a run with pre-training logs it and saves a plain checkpoint."""
    pytest.importorskip("transformers")
    import torch
    import train_sample
    from safetensors.torch import load_file

    rgb = torch.zeros(1, 40, 50, 3, dtype=torch.uint8)
    index = torch.full((1, 40, 50), 255, dtype=torch.uint8)
    index[0, 10:20, 30:40] = 1  # a square-labelled thing, bbox centre (14, 34)
    index[0, 0:40, 0:5] = 0  # stuff: no crop
    index[0, 30, 0] = 2  # a thing of one pixel: too small
    rgb[0, 14, 34, 0] = 200
    crops, labels = train_sample.thing_crops(rgb, index, [torch.tensor([0, shapes.SQUARE, shapes.CIRCLE])])
    h = train_sample.CROP // 2
    assert crops.shape == (1, train_sample.CROP, train_sample.CROP, 3)
    assert labels.tolist() == [shapes.SQUARE - shapes.THING_IDS[0]]
    assert crops[0, h, h, 0] == 200 and int(crops.sum()) == 200
    assert train_sample.thing_crops(rgb, index, [torch.tensor([0, 1, 2])]) == (None, None)

    log = _train(tmp_path / "pre", "--pretrain-steps", "2", "--backbone-lr-mult", "0.5")
    assert [e["step"] for e in log["pretrain"]] == [1, 2] and log["steps_done"] == 3
    plain = load_file(tmp_path / "pre" / "model.safetensors")
    ref = _train(tmp_path / "ref")
    assert "pretrain" not in ref
    assert plain.keys() == load_file(tmp_path / "ref" / "model.safetensors").keys()


def test_pixel_probe_counts_thing_pixels_and_runs():
    """engines/pixel_probe.py: the confusion counts each true thing's pixels by predicted class
    (the rest as stuff), and a tiny run prints one row per evaluation."""
    pytest.importorskip("transformers")
    import torch
    import pixel_probe

    lab = np.array([[[shapes.CIRCLE, shapes.CIRCLE, shapes.SQUARE, 255]]])  # 1 x 1 x 4
    pred = np.array([shapes.CIRCLE, shapes.SKY, shapes.TRIANGLE, shapes.SQUARE])
    logits = torch.zeros(1, shapes.NUM_CLASSES, 1, 4)
    logits[0, pred, 0, np.arange(4)] = 1.0
    conf = pixel_probe.thing_confusion(lambda x: logits, np.zeros((1, 3, 1, 4), np.float32), lab)
    np.testing.assert_allclose(conf[0], [0.5, 0.0, 0.0, 0.5])  # circle: one named circle, one stuff
    np.testing.assert_allclose(conf[1], [0.0, 0.0, 1.0, 0.0])  # square: named triangle
    assert np.isnan(conf[2]).all()  # no triangle pixels: no figures

    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert pixel_probe.main(["--steps", "2", "--eval-every", "1", "--eval-frames", "2", "--workers", "0",
                                 "--threads", "1", "--size", "64x128", "--widths", "8,16,16,16", "--hidden", "16"]) == 0
    rows = [l for l in buf.getvalue().splitlines() if l.split() and l.split()[0].isdigit()]
    assert [r.split()[0] for r in rows] == ["1", "2"] and all("mean right" in r for r in rows)


def test_pooled_loss_averages_inside_each_mask_and_heads_are_training_only(tmp_path):
    """--pooled-weight: each feature map is averaged inside each ground-truth mask, weighted by
    the mask's share of each cell; a segment under half a cell of a map is left out there; the
    loss is logged apart, changes the weights, and the linear heads are not saved."""
    pytest.importorskip("transformers")
    import torch
    import train_sample

    feature = torch.tensor([[[1.0, 3.0], [5.0, 7.0]]])  # C=1, 2x2 cells of 2x2 pixels each
    masks = torch.zeros(3, 4, 4)
    masks[0, :2, :2] = 1            # all of cell (0,0)
    masks[1, :, 2:] = 1             # cells (0,1) and (1,1)
    masks[1, 3, 0] = 1              # and a quarter of cell (1,0)
    masks[2, 0, 0] = 1              # a quarter of a cell: left out
    means, keep = train_sample.PooledHeads.pooled(feature, masks)
    assert keep.tolist() == [True, True, False]
    assert means[0, 0].item() == pytest.approx(1.0)
    assert means[1, 0].item() == pytest.approx((3.0 + 7.0 + 0.25 * 5.0) / 2.25)

    log = _aux_run(tmp_path, "pooled_loss", ["--pooled-weight", "1"], ["--encoder-layers", "0"])
    assert all(np.isfinite(e["pooled_loss"]) and e["pooled_loss"] > 0 for e in log["loss"])


def test_jittered_crops_and_the_crop_loss(tmp_path):
    """--crop-weight: thing_crops(jitter=P) moves each crop's centre by at most P pixels per axis
    (reproducibly for the generator's seed); the auxiliary crop loss leaves the backbone's
    batch-norm running statistics and momenta as they were, trains the backbone, is logged
    apart, and its head is not saved."""
    pytest.importorskip("transformers")
    import torch
    import train_sample
    from transformers import ResNetBackbone

    rgb = torch.zeros(1, 40, 50, 3, dtype=torch.uint8)
    index = torch.full((1, 40, 50), 255, dtype=torch.uint8)
    index[0, 10:20, 30:40] = 0  # a thing, bbox centre (14, 34)
    rgb[0, 14, 34, 0] = 200
    h, seen = train_sample.CROP // 2, set()
    for seed in range(20):
        crops, labels = train_sample.thing_crops(rgb, index, [torch.tensor([shapes.TRIANGLE])], jitter=5,
                                                 rng=np.random.default_rng(seed))
        again, _ = train_sample.thing_crops(rgb, index, [torch.tensor([shapes.TRIANGLE])], jitter=5,
                                            rng=np.random.default_rng(seed))
        assert torch.equal(crops, again) and labels.tolist() == [shapes.TRIANGLE - shapes.THING_IDS[0]]
        (ys, xs) = torch.nonzero(crops[0, :, :, 0] == 200, as_tuple=True)
        assert len(ys) == 1 and int(crops.sum()) == 200  # the marked pixel is in the crop, once
        dy, dx = h - int(ys[0]), h - int(xs[0])  # the crop centre's offset from the thing's centre
        assert abs(dy) <= 5 and abs(dx) <= 5
        seen.add((dy, dx))
    assert len(seen) > 5  # the offsets do vary

    cfg = train_sample.build_config(backbone="resnet", widths=(8, 16, 16, 16), size=(64, 128))
    backbone = ResNetBackbone(cfg.backbone_config).train()
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in norms]
    head = train_sample.CropHead(16, jitter=8, copies=2, seed=0, device="cpu")
    big = torch.zeros(1, 64, 128, 3, dtype=torch.uint8)
    big[0, 20:40, 50:70] = 180
    idx = torch.full((1, 64, 128), 0, dtype=torch.uint8)
    idx[0, 20:40, 50:70] = 1
    loss, right, n = head.loss(backbone, big, idx, [torch.tensor([shapes.SKY, shapes.SQUARE])], "cpu")
    assert n == 2 and 0 <= right <= 2 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    for m, (mean, var, mom) in zip(norms, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var) and m.momentum == mom
    assert head.loss(backbone, big, idx, [torch.tensor([shapes.SKY, shapes.ROAD])], "cpu") == (None, 0, 0)

    log = _aux_run(tmp_path, "crop_loss", ["--crop-weight", "1", "--crop-jitter", "8"])
    assert all(np.isfinite(e["crop_loss"]) and 0 <= e["crop_accuracy"] <= 1 for e in log["loss"])


def test_crop_probe_runs(tmp_path):
    """engines/crop_probe.py: a tiny run prints one row per evaluation and writes its curve;
    the evaluation crops' seed is refused as a training seed."""
    pytest.importorskip("transformers")
    import contextlib
    import io
    import crop_probe

    buf = io.StringIO()
    out = tmp_path / "curve.json"
    with contextlib.redirect_stdout(buf):
        assert crop_probe.main(["--frames", "3", "--val-frames", "2", "--steps", "2", "--eval-every", "1",
                                "--batch-size", "4", "--jitter", "8", "--threads", "1",
                                "--widths", "8,16,16,16", "--json", str(out)]) == 0
    rows = [l for l in buf.getvalue().splitlines() if l.split() and l.split()[0].isdigit()]
    assert [r.split()[0] for r in rows] == ["1", "2"]
    curve = json.loads(out.read_text())
    assert [c["step"] for c in curve["curve"]] == [1, 2] and curve["train_crops"] > 0
    assert all(0 <= c["eval_accuracy"] <= 1 for c in curve["curve"])
    assert crop_probe.main(["--seed", str(crop_probe.VAL_SEED)]) == 2


def test_resume_continues_bit_for_bit(tmp_path):
    """A run cut in two (--stop-after, then --resume) ends with the same weights, bit for bit,
    as the same run in one go: the items, the schedule, the optimizer, the auxiliary crop
    head's offsets and torch's random state (the loss samples points) all carry over."""
    pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file
    args = ["--steps", "4", "--checkpoint-every", "2", "--crop-weight", "1", "--crop-jitter", "8"]
    whole = _train(tmp_path / "whole", *args)
    assert whole["steps_done"] == 4 and not (tmp_path / "whole" / "resume.pt").exists()
    assert (tmp_path / "whole" / "last" / "model.safetensors").exists()  # the step-2 checkpoint
    first = _train(tmp_path / "cut", *args, "--stop-after", "1")
    assert first["steps_done"] == 1 and first["stopped"] == "--stop-after 1"
    assert (tmp_path / "cut" / "resume.pt").exists()
    second = _train(tmp_path / "cut", *args, "--stop-after", "2", "--resume")  # steps 2 and 3
    assert second["steps_done"] == 3 and second["resumed_at"] == [1]
    rest = _train(tmp_path / "cut", *args, "--resume")
    assert rest["steps_done"] == 4 and rest["resumed_at"] == [1, 3] and rest["stopped"] == "steps"
    assert [e["step"] for e in rest["loss"]] == [1, 2, 3, 4]
    assert [e["loss"] for e in rest["loss"]] == [e["loss"] for e in whole["loss"]]
    wa, wb = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_init_backbone_from_the_crop_stage(tmp_path):
    """The staged recipe: crop_probe.py --save writes the backbone and classifier, and
    train_sample.py --init-backbone starts from them (at lr 1e-12 the saved model's backbone
    weights are the file's); a backbone of another size is refused."""
    pytest.importorskip("transformers")
    import contextlib
    import io
    import torch
    import crop_probe
    import train_sample
    from safetensors.torch import load_file
    stage1 = tmp_path / "stage1.pt"
    with contextlib.redirect_stdout(io.StringIO()):
        assert crop_probe.main(["--frames", "3", "--val-frames", "2", "--steps", "2", "--eval-every", "2",
                                "--batch-size", "4", "--jitter", "8", "--threads", "1",
                                "--widths", "8,16,16,16", "--save", str(stage1)]) == 0
    saved = torch.load(stage1)
    _train(tmp_path / "m", "--init-backbone", str(stage1), "--lr", "1e-12", "--crop-weight", "1")
    w = load_file(tmp_path / "m" / "model.safetensors")
    prefix = "model.pixel_level_module.encoder."
    weights = {k: v for k, v in saved["backbone"].items() if not k.endswith(("running_mean", "running_var",
                                                                               "num_batches_tracked"))}
    # (lr 1e-12 still moves a weight within 1e-12 of zero; a fresh initialization differs by ~0.1)
    assert len(weights) > 10 and all(torch.allclose(w[prefix + k], v, rtol=0, atol=1e-9) for k, v in weights.items())
    with pytest.raises(SystemExit):
        train_sample.main(["--out", str(tmp_path / "bad"), *TINY, "--widths", "8,16,16,32",
                           "--init-backbone", str(stage1)])
