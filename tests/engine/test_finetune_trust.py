"""Fine-tuning a user would trust: seeded augmentation (random resized crop, flip), its conflict
with the feature cache (the frozen part then runs on every augmented batch; the same result as
the engine alone), early stopping on validation accuracy that keeps the best epoch, and the
finetune command's --augment / --no-augment / --patience."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from engine.errors import TrainingError
from engine.graph import sequential
from engine.nn.network import Network
from engine.nn.train import TrainConfig, train
from engine.transfer.augment import Augment
from engine.transfer.finetune import fine_tune, plan, split_graph
from tests.engine.test_finetune import DATA, images, prepared, write_image_folder

IDENTITY = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)  # square images: full crop

# ---- augmentation --------------------------------------------------------------------------


def test_augment_is_seeded_and_changes_images():
    x, _ = images(6, (3, 16, 12))
    aug = Augment()
    a = aug(x, np.random.default_rng(3))
    b = aug(x, np.random.default_rng(3))
    c = aug(x, np.random.default_rng(4))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, x)
    assert x.min() - 1e-6 <= a.min() and a.max() <= x.max() + 1e-6  # interpolation, no ringing


def test_flip_and_full_crop_are_exact():
    x, _ = images(3, (2, 8, 8))
    np.testing.assert_allclose(IDENTITY(x, np.random.default_rng(0)), x, atol=1e-6)
    flipped = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=1.0)(x, np.random.default_rng(0))
    np.testing.assert_allclose(flipped, x[..., ::-1], atol=1e-6)


def test_crop_boxes_stay_inside_with_the_asked_area_and_ratio():
    aug = Augment()
    rng = np.random.default_rng(0)
    for h, w in ((32, 32), (20, 50), (7, 5)):
        for _ in range(200):
            top, left, ch, cw = aug.crop_box(h, w, rng)
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch and cw
    # a crop of a constant image is that constant; of a ramp, a part of the ramp
    ramp = np.tile(np.arange(10, dtype=np.float32), (1, 1, 10, 1))
    out = Augment(flip=0.0)(ramp, np.random.default_rng(1))[0, 0]
    assert np.all(np.diff(out, axis=1) >= -1e-6) and np.allclose(out, out[0])


def test_crop_matches_torchvision_resized_crop():
    from tests.engine.test_templates_torchvision import torchvision_models

    torch, _ = torchvision_models()  # skips without torch / torchvision
    import torchvision.transforms.v2.functional as tf
    x, _ = images(1, (3, 20, 24))
    aug = Augment(flip=0.0)
    box = aug.crop_box(20, 24, np.random.default_rng(7))
    got = aug(x, np.random.default_rng(7))[0]
    want = tf.resized_crop(torch.from_numpy(x[0]), *box, [20, 24], antialias=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- early stopping ------------------------------------------------------------------------


def small_net():
    g = sequential([("Input", "in", {"channels": 3, "height": 4, "width": 4}),
                    ("Flatten", "f", {}), ("Linear", "fc", {"out_features": 3})])
    return Network.compile(g, np.random.default_rng(0))


def test_early_stopping_keeps_the_best_epochs_weights():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 60)  # random labels: validation accuracy wanders, then stalls
    xv = rng.standard_normal((40, 3, 4, 4)).astype(np.float32)
    yv = rng.integers(0, 3, 40)
    net = small_net()
    snaps = []
    h = train(net, x, y, TrainConfig(epochs=30, batch_size=8, lr=0.05, schedule="constant"),
              xv, yv, on_epoch=lambda r: snaps.append(net.state_dict()), patience=2)
    accs = [e.val_accuracy for e in h.epochs]
    assert h.stopped_early and len(accs) < 30
    assert h.best_epoch == int(np.argmax(accs)) + 1  # the first best
    assert len(accs) == h.best_epoch + 2  # two epochs without a better one, then stop
    for k, a in net.state_dict().items():  # the best epoch's weights, not the last
        np.testing.assert_array_equal(a, snaps[h.best_epoch - 1][k])
    assert not all(np.array_equal(a, snaps[-1][k]) for k, a in net.state_dict().items())
    assert h.to_json()["best_epoch"] == h.best_epoch


def test_early_stopping_needs_validation_images_and_a_sane_patience():
    x, y = images(10, (3, 4, 4))
    with pytest.raises(TrainingError, match="no validation images"):
        train(small_net(), x, y, TrainConfig(epochs=2, val_split=0.0), patience=2)
    with pytest.raises(ValueError, match="patience must be a whole number of epochs >= 1"):
        train(small_net(), x, y, TrainConfig(epochs=2), patience=0)


# ---- augmentation with a frozen part --------------------------------------------------------


def _data():
    x, y = images(40, seed=1)
    xv, yv = images(12, seed=2)
    return x, y, xv, yv


CONFIG = {"epochs": 2, "batch_size": 8, "seed": 3}


def test_augmented_fast_path_equals_the_engine_with_the_same_augmentation():
    """The frozen part in ONNX Runtime on every augmented batch gives the weights the engine
    gives training the whole net with the same crops and flips (same seed)."""
    g, w = prepared("relu2")
    x, y, xv, yv = _data()
    aug = Augment()
    fast, hf = fine_tune(g, w, x, y, TrainConfig(**CONFIG), xv, yv, fast=True, augment=aug)
    slow, hs = fine_tune(g, w, x, y, TrainConfig(**CONFIG), xv, yv, fast=False, augment=aug)
    plain, _ = fine_tune(g, w, x, y, TrainConfig(**CONFIG), xv, yv, fast=True)
    assert not hf.stopped and not hs.stopped
    for k in fast:
        np.testing.assert_allclose(fast[k], slow[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert not np.allclose(fast["fc2.weight"], plain["fc2.weight"], atol=1e-4)  # it augments
    assert np.array_equal(fast["conv1.weight"], w["conv1.weight"])  # frozen stays frozen


def test_identity_augmentation_gives_the_cached_result():
    g, w = prepared("relu2")
    x, y, xv, yv = _data()
    a, _ = fine_tune(g, w, x, y, TrainConfig(**CONFIG), xv, yv, fast=True, augment=IDENTITY)
    b, _ = fine_tune(g, w, x, y, TrainConfig(**CONFIG), xv, yv, fast=True)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_fine_tune_with_patience_returns_the_best_epoch():
    g, w = prepared("relu2")
    x, y, xv, yv = _data()
    config = TrainConfig(epochs=6, batch_size=8, seed=3, lr=0.05)
    seen = []
    new, h = fine_tune(g, w, x, y, config, xv, yv, augment=Augment(), patience=1,
                       on_epoch=seen.append)
    assert h.best_epoch is not None
    best = max(r.val_accuracy for r in seen)
    assert seen[h.best_epoch - 1].val_accuracy == best
    net = Network.compile(g)
    net.load_state_dict(new)
    from engine.nn.train import evaluate

    split = split_graph(g)
    assert split is not None
    assert evaluate(net, xv, yv)[1] == pytest.approx(best, abs=1e-9)


def test_plan_says_which_applies_and_why():
    g, _ = prepared("relu2")
    split = split_graph(g)
    assert "cannot be cached" in plan(split, Augment()) and "--no-augment" in plan(split, Augment())
    assert "computed once and cached" in plan(split, None)
    assert "nothing to cache" in plan(None, Augment())
    assert "--engine-only" in plan(split, None, engine_only=True)


# ---- command line --------------------------------------------------------------------------


@pytest.mark.parametrize("augment", [True, False])
def test_cli_says_whether_the_cache_applies(tmp_path, capsys, augment):
    from engine.cli.main import main
    from engine.project import load_project

    write_image_folder(tmp_path / "images", (3, 20, 20))
    out, onnx_out = tmp_path / "tuned.cnnd", tmp_path / "tuned.onnx"
    rc = main(["finetune", str(DATA / "torch_vgg_small.onnx"), "--data", str(tmp_path / "images"),
               "--freeze-up-to", "reshape", "--classes", "3", "--epochs", "3", "--batch-size",
               "8", "--patience", "1", "--out", str(out), "--onnx", str(onnx_out),
               "--augment" if augment else "--no-augment"])
    err = capsys.readouterr().err
    assert rc == 0, err
    if augment:
        assert "augmentation on (random resized crop" in err and "cannot be cached" in err
        assert "on every augmented batch in ONNX Runtime" in err
    else:
        assert "augmentation off" in err and "computed once and cached" in err
        assert "run once in ONNX Runtime" in err
    assert "validation accuracy" in err and "the best)" in err
    meta = load_project(out).meta
    assert (meta["augment"] is not None) == augment and meta["patience"] == 1
    assert meta["history"]["best_epoch"] >= 1
    onnx.checker.check_model(onnx.load(str(onnx_out)), full_check=True)
