"""The training loop: reproducibility, frozen layers, NaN stop, cancel, config checks, MNIST."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from engine.data import load_mnist
from engine.errors import TrainingError
from engine.graph import sequential
from engine.nn.network import Network
from engine.nn.train import TrainConfig, evaluate, train
from tests.engine.test_layers import LENET5


def tiny_graph(bn=True, classes=3):
    layers = [("Input", "input", {"channels": 1, "height": 6, "width": 6}),
              ("Conv2d", "conv1", {"out_channels": 4, "kernel_size": 3}),
              ("ReLU", "relu", {})]
    if bn:
        layers.append(("BatchNorm2d", "bn", {}))
    layers += [("MaxPool2d", "pool", {"kernel_size": 2}), ("Flatten", "flatten", {}),
               ("Dropout", "drop", {"p": 0.2}), ("Linear", "fc", {"out_features": classes})]
    return sequential(layers)


def toy_data(n=96, seed=0, classes=3):
    """Class k has a bright blob in row band k: learnable by the tiny net."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0, 0.3, (n, 1, 6, 6)).astype(np.float32)
    for i, k in enumerate(y):
        x[i, 0, 2 * k:2 * k + 2, :] += 2.0
    return x, y


def run(seed=0, train_seed=0, **cfg):
    net = Network.compile(tiny_graph(), np.random.default_rng(seed))
    x, y = toy_data()
    losses = []
    config = TrainConfig(**{"epochs": 2, "batch_size": 16, "seed": train_seed, **cfg})
    hist = train(net, x, y, config, on_batch=lambda r: losses.append(r.loss))
    return net, hist, losses


def test_same_seeds_reproduce_weights_and_losses():
    a, ha, la = run()
    b, hb, lb = run()
    assert la == lb and len(la) == 2 * math.ceil(86 / 16)  # 96 − round(9.6) held out
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k], err_msg=k)
    assert [e.val_loss for e in ha.epochs] == [e.val_loss for e in hb.epochs]
    _, _, lc = run(train_seed=1)  # another shuffle / split / dropout mask
    assert lc != la


def test_training_learns_the_toy_task_and_reports():
    epochs = []
    net = Network.compile(tiny_graph(), np.random.default_rng(0))
    x, y = toy_data(192)
    hist = train(net, x, y, TrainConfig(epochs=4, batch_size=16, lr=0.01),
                 on_epoch=epochs.append)
    assert hist.stopped is None and len(hist.epochs) == 4 and epochs == hist.epochs
    assert hist.epochs[-1].train_loss < hist.epochs[0].train_loss
    xt, yt = toy_data(200, seed=1)
    _, acc, pred = evaluate(net, xt, yt)
    assert acc > 0.9 and pred.shape == (200,)
    assert acc == pytest.approx((net.predict(xt).argmax(axis=1) == yt).mean())
    assert hist.to_json()["epochs"][0]["epoch"] == 1


def test_frozen_layers_stay_put_and_earlier_layers_still_learn():
    g = tiny_graph()
    g.nodes["bn"].trainable = False
    net = Network.compile(g, np.random.default_rng(0))
    before = net.state_dict()
    x, y = toy_data()
    train(net, x, y, TrainConfig(epochs=1, batch_size=16))
    after = net.state_dict()
    for k in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    for k in ("conv1.weight", "conv1.bias", "fc.weight"):  # conv1 sits before the frozen BN
        assert not np.array_equal(after[k], before[k]), k


def test_everything_frozen_is_refused():
    net = Network.compile(tiny_graph(bn=False), np.random.default_rng(0))
    net.set_frozen(["conv1", "fc"])
    with pytest.raises(TrainingError, match="frozen"):
        train(net, *toy_data(), TrainConfig(epochs=1))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow is the point here
@pytest.mark.parametrize("bn", [False, True])
def test_nan_learning_rate_stops_with_a_message_and_keeps_the_last_good_weights(bn):
    net = Network.compile(tiny_graph(bn=bn), np.random.default_rng(0))
    x, y = toy_data()
    x *= 50
    snapshots = []
    hist = train(net, x, y, TrainConfig(epochs=5, batch_size=8, optimizer="sgd", lr=1e6),
                 on_batch=lambda r: snapshots.append(net.state_dict()))
    assert hist.stopped is not None and hist.stopped != "cancelled"
    assert "learning rate" in hist.stopped and "1e+06" in hist.stopped
    assert "epoch" in hist.stopped and "batch" in hist.stopped
    final = net.state_dict()
    for k, v in final.items():
        assert np.isfinite(v).all(), k
    last_good = snapshots[-1] if snapshots else None
    if last_good is not None:
        for k, v in final.items():
            np.testing.assert_array_equal(v, last_good[k], err_msg=k)


def test_should_stop_cancels_within_one_batch():
    net = Network.compile(tiny_graph(), np.random.default_rng(0))
    x, y = toy_data()
    calls, batches, snaps = [], [], []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    def on_batch(r):
        batches.append(r.batch)
        snaps.append(net.state_dict())

    hist = train(net, x, y, TrainConfig(epochs=3, batch_size=16), on_batch=on_batch,
                 should_stop=should_stop)
    assert hist.stopped == "cancelled" and batches == [1, 2, 3] and not hist.epochs
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, snaps[-1][k], err_msg=k)


@pytest.mark.parametrize("cfg,word", [
    ({"epochs": 0}, "epochs"), ({"epochs": -3}, "epochs"), ({"batch_size": 0}, "batch"),
    ({"lr": 0.0}, "learning rate"), ({"lr": -1.0}, "learning rate"),
    ({"lr": float("nan")}, "learning rate"), ({"lr": float("inf")}, "learning rate"),
    ({"val_split": 1.0}, "validation"), ({"val_split": -0.1}, "validation"),
    ({"optimizer": "rmsprop"}, "rmsprop"), ({"momentum": -0.5}, "momentum"),
    ({"momentum": 1.5}, "momentum"), ({"weight_decay": -1.0}, "weight decay"),
    ({"epochs": 1.5}, "epochs"), ({"batch_size": 2.5}, "batch"),
])
def test_train_config_rejects_bad_values(cfg, word):
    net = Network.compile(tiny_graph(), np.random.default_rng(0))
    before = net.state_dict()
    with pytest.raises(ValueError, match=word):
        train(net, *toy_data(), TrainConfig(**cfg))
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_labels_beyond_the_output_name_the_output_layer():
    net = Network.compile(tiny_graph(classes=3), np.random.default_rng(0))
    x, y = toy_data()
    y[5] = 7
    with pytest.raises(TrainingError) as exc:
        train(net, x, y, TrainConfig(epochs=1))
    assert "'fc'" in str(exc.value) and "7" in str(exc.value) and "3" in str(exc.value)
    y[5] = -1
    with pytest.raises(TrainingError, match="-1"):
        train(net, x, y, TrainConfig(epochs=1))


def test_bad_validation_labels_and_lengths_are_refused_before_training():
    net = Network.compile(tiny_graph(classes=3), np.random.default_rng(0))
    before = net.state_dict()
    x, y = toy_data()
    xv, yv = toy_data(20, seed=2)
    yv[3] = 7
    with pytest.raises(TrainingError) as exc:
        train(net, x, y, TrainConfig(epochs=1), x_val=xv, y_val=yv)
    assert "validation labels" in str(exc.value) and "'fc'" in str(exc.value)
    with pytest.raises(TrainingError, match="'fc'"):
        evaluate(net, xv, yv)
    with pytest.raises(TrainingError, match="96 images but 95 labels"):
        train(net, x, y[:-1], TrainConfig(epochs=1))
    with pytest.raises(TrainingError, match="validation"):
        train(net, x, y, TrainConfig(epochs=1), x_val=xv)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_explicit_validation_data_and_no_split():
    net = Network.compile(tiny_graph(), np.random.default_rng(0))
    x, y = toy_data()
    xv, yv = toy_data(30, seed=3)
    seen = []
    hist = train(net, x, y, TrainConfig(epochs=1, batch_size=32), x_val=xv, y_val=yv,
                 on_batch=lambda r: seen.append(r.batches))
    assert seen == [3, 3, 3]  # all 96 training images, 3 batches
    loss, acc, _ = evaluate(net, xv, yv)
    assert hist.epochs[0].val_loss == pytest.approx(loss) and hist.epochs[0].val_accuracy == acc
    hist = train(net, x, y, TrainConfig(epochs=1, batch_size=32, val_split=0.0))
    assert hist.epochs[0].val_loss is None


def test_lenet5_learns_mnist_from_2000_images_in_one_epoch():
    train_set = load_mnist("train", limit=2000)
    test_set = load_mnist("test", limit=1000)
    net = Network.compile(sequential(LENET5), np.random.default_rng(0))
    hist = train(net, train_set.x, train_set.y,
                 TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=3e-3,
                             val_split=0.0))
    assert hist.stopped is None
    _, acc, _ = evaluate(net, test_set.x, test_set.y)
    assert acc > 0.8, acc


def test_cosine_schedule_anneals_from_the_base_rate_to_zero():
    from engine.nn.train import scheduled_lr

    total = 100
    lrs = [scheduled_lr(0.01, "cosine", s, total) for s in range(total)]
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[total // 2] == pytest.approx(0.005)
    assert all(a > b for a, b in itertools.pairwise(lrs))  # strictly decreasing
    assert 0 < lrs[-1] < 1e-5
    assert scheduled_lr(0.01, "constant", 70, total) == 0.01
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear").check()
