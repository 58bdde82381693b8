"""Fast fine-tuning (engine.transfer.finetune): frozen prefix features from ONNX Runtime, tail trained in
the engine; checked against training the whole net with frozen layers in the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from engine.cli.finetune import add_commands
from engine.data import load_image_folder
from engine.errors import TrainingError
from engine.graph import Graph, sequential
from engine.nn.network import Network
from engine.nn.train import TrainConfig
from engine.onnx.export import export_onnx
from engine.onnx.importer import import_onnx
from engine.onnx.runtime import OnnxModel
from engine.transfer.finetune import (
    compute_features,
    feature_bytes,
    fine_tune,
    frozen_prefix,
    prefix_model,
    split_graph,
    tail_network,
)
from engine.transfer.head import fine_tune as engine_fine_tune
from engine.transfer.head import freeze_up_to, replace_head
from engine.validate import validate

DATA = Path(__file__).resolve().parents[1] / "data"


def mini_vgg() -> Graph:
    return sequential([
        ("Input", "input", {"channels": 3, "height": 32, "width": 32}),
        ("Conv2d", "conv1", {"out_channels": 8, "kernel_size": 3, "padding": "same"}),
        ("BatchNorm2d", "bn1", {}),
        ("ReLU", "relu1", {}),
        ("MaxPool2d", "pool1", {"kernel_size": 2}),
        ("Conv2d", "conv2", {"out_channels": 16, "kernel_size": 3, "padding": "same"}),
        ("ReLU", "relu2", {}),
        ("MaxPool2d", "pool2", {"kernel_size": 2}),
        ("Conv2d", "conv3", {"out_channels": 8, "kernel_size": 3, "padding": "same"}),
        ("ReLU", "relu3", {}),
        ("MaxPool2d", "pool3", {"kernel_size": 2}),
        ("Flatten", "flat", {}),
        ("Linear", "fc1", {"out_features": 16}),
        ("ReLU", "relu4", {}),
        ("Linear", "fc2", {"out_features": 10}),
        ("Softmax", "softmax", {}),
    ], name="mini VGG")


def pretrained(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with non-trivial BatchNorm statistics (so inference mode matters)."""
    w = Network.compile(graph, np.random.default_rng(seed)).state_dict()
    rng = np.random.default_rng(seed + 1)
    for k in list(w):
        if k.endswith("running_mean"):
            w[k] = rng.normal(0, 0.3, w[k].shape).astype(np.float32)
        elif k.endswith("running_var"):
            w[k] = rng.uniform(0.5, 1.5, w[k].shape).astype(np.float32)
    return w


def images(n: int, shape=(3, 32, 32), classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.random((n, *shape), dtype=np.float32) * 0.5
    for i, c in enumerate(y):  # class = the brighter channel
        x[i, int(c) % shape[0]] += 0.5
    return x, y.astype(np.int64)


def prepared(freeze: str):
    g = freeze_up_to(mini_vgg(), freeze)
    return replace_head(g, pretrained(mini_vgg()), 3, np.random.default_rng(5))


# ---- splitting ----------------------------------------------------------------------------

def test_split_at_a_conv_cut():
    g, _ = prepared("relu2")
    split = split_graph(g)
    # weightless pool2 joins the frozen part; conv3 (trainable) starts the tail
    assert split.prefix == ["input", "conv1", "bn1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    assert split.cut == "pool2" and split.cut_shape == (16, 8, 8)
    assert split.tail[0] == "conv3" and split.tail[-1] == "softmax"
    assert set(split.prefix) | set(split.tail) == set(g.nodes)
    assert split.note is None and split.frozen_in_tail == ()


def test_weightless_layers_after_a_trainable_one_stay_in_the_tail():
    g = mini_vgg()  # nothing frozen: only the Input is "before" the trainable layers
    assert frozen_prefix(g) == ["input"]
    assert split_graph(g) is None


def test_everything_frozen_is_refused():
    g = freeze_up_to(mini_vgg(), "softmax")
    with pytest.raises(TrainingError, match="nothing to train"):
        split_graph(g)


def test_prefix_model_outputs_the_cut_and_tail_finishes_the_job():
    g, w = prepared("relu2")
    split = split_graph(g)
    model = prefix_model(g, w, split)
    onnx.checker.check_model(model, full_check=True)
    x, _ = images(10)
    feats = compute_features(model, x, batch_size=4)
    assert feats.shape == (10, 16, 8, 8)
    assert feature_bytes(split, 10) == feats.nbytes
    full = Network.compile(g)
    full.load_state_dict(w)
    ref = full.forward(x, keep=True)
    np.testing.assert_allclose(feats, ref["pool2"], rtol=1e-4, atol=1e-5)
    tail = tail_network(g, w, split)
    np.testing.assert_allclose(tail.forward(feats), ref["softmax"], rtol=1e-4, atol=1e-5)


# ---- fast path == engine path -------------------------------------------------------------

@pytest.mark.parametrize("freeze, cut", [("relu2", "pool2"), ("pool3", "flat"),
                                         ("fc1", "relu4")])
def test_fast_path_matches_engine_training(freeze, cut):
    g, w = prepared(freeze)
    assert split_graph(g).cut == cut
    x, y = images(80, seed=1)
    config = TrainConfig(epochs=2, batch_size=16, optimizer="adam", lr=0.01, val_split=0.25,
                         seed=3)
    seen = []
    fast, h_fast = fine_tune(g, w, x, y, config, on_features=lambda d, n: seen.append((d, n)))
    slow, h_slow = engine_fine_tune(g, w, x, y, config)
    assert seen[-1] == (80, 80) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert set(fast) == set(slow) == set(w)
    trainable = [nid for nid in g.nodes if g.nodes[nid].trainable]
    for k in w:
        nid = k.rpartition(".")[0]
        if nid in trainable:
            assert not np.array_equal(fast[k], w[k]), k  # it trained
            np.testing.assert_allclose(fast[k], slow[k], rtol=1e-3, atol=1e-4, err_msg=k)
        else:  # frozen: untouched, BatchNorm statistics included
            np.testing.assert_array_equal(fast[k], w[k], err_msg=k)
    assert len(h_fast.epochs) == len(h_slow.epochs) == 2
    for a, b in zip(h_fast.epochs, h_slow.epochs):  # same validation split, same numbers
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-4)
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)


def test_merged_weights_export_and_match_the_engine():
    g, w = prepared("relu2")
    x, y = images(48, seed=2)
    new, hist = fine_tune(g, w, x, y, TrainConfig(epochs=1, batch_size=16, val_split=0))
    assert hist.stopped is None
    model = export_onnx(g, new)
    onnx.checker.check_model(model, full_check=True)
    net = Network.compile(g)
    net.load_state_dict(new)
    np.testing.assert_allclose(OnnxModel(model).run(x[:8]), net.forward(x[:8]), rtol=1e-4,
                               atol=1e-5)


def test_explicit_validation_data_and_fallback():
    g, w = prepared("relu2")
    x, y = images(40, seed=3)
    xv, yv = images(12, seed=4)
    config = TrainConfig(epochs=1, batch_size=8, seed=1)
    fast, hf = fine_tune(g, w, x, y, config, xv, yv)
    slow, hs = fine_tune(g, w, x, y, config, xv, yv, fast=False)
    assert hf.epochs[0].val_loss == pytest.approx(hs.epochs[0].val_loss, rel=1e-4)
    np.testing.assert_allclose(fast["fc2.weight"], slow["fc2.weight"], rtol=1e-3, atol=1e-4)
    fresh, h = fine_tune(g, None, x, y, config)  # an untrained design starts from init weights
    assert h.stopped is None and set(fresh) == set(w)
    with pytest.raises(TrainingError, match="freeze"):
        fine_tune(mini_vgg(), pretrained(mini_vgg()), x, np.minimum(y, 9), config, fast=True)


def test_falls_back_to_the_engine_when_onnx_runtime_refuses(monkeypatch):
    import engine.transfer.finetune as ft
    from engine.errors import DataError

    def refuse(*a, **k):
        raise DataError("ONNX Runtime cannot load the model: test")

    monkeypatch.setattr(ft, "prefix_runner", refuse)
    g, w = prepared("fc1")
    x, y = images(32, seed=7)
    config = TrainConfig(epochs=1, batch_size=16, val_split=0)
    got, hist = fine_tune(g, w, x, y, config)
    want, _ = engine_fine_tune(g, w, x, y, config)
    assert hist.stopped is None
    for k in w:
        np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(DataError):
        fine_tune(g, w, x, y, config, fast=True)


def test_feature_cache_skips_onnx_runtime_on_a_second_run(monkeypatch):
    import engine.transfer.finetune as ft

    calls = []
    real = ft.compute_features
    monkeypatch.setattr(ft, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    g, w = prepared("pool3")
    x, y = images(40, seed=8)
    cache = ft.FeatureCache()
    config = TrainConfig(epochs=1, batch_size=8, val_split=0.2, lr=0.01)
    first, _ = fine_tune(g, w, x, y, config, cache=cache)
    assert len(calls) == 1
    seen = []
    again, _ = fine_tune(g, w, x, y, config, cache=cache,
                         on_features=lambda d, n: seen.append((d, n)))
    assert len(calls) == 1 and seen == [(40, 40)]  # reused, progress still reported
    for k in w:
        np.testing.assert_array_equal(first[k], again[k])
    plain, _ = fine_tune(g, w, x, y, config)  # the cache changes nothing in the result
    np.testing.assert_array_equal(first["fc2.weight"], plain["fc2.weight"])
    # other frozen weights or other images: computed afresh
    w2 = dict(w, **{"conv2.bias": w["conv2.bias"] + 0.5})
    fine_tune(g, w2, x, y, config, cache=cache)
    assert len(calls) == 3  # no cache (plain) + changed weights
    x2 = x.copy()
    x2[0, 0, 0, 0] += 0.1
    fine_tune(g, w2, x2, y, config, cache=cache)
    assert len(calls) == 4


def test_cancel_while_computing_features_keeps_the_weights():
    g, w = prepared("relu2")
    x, y = images(40)
    calls = []
    new, hist = fine_tune(g, w, x, y, TrainConfig(epochs=1), feature_batch_size=8,
                          on_features=lambda d, n: calls.append(d),
                          should_stop=lambda: len(calls) >= 2)
    assert hist.stopped == "cancelled" and hist.epochs == []
    assert calls == [8, 16]
    for k in w:
        np.testing.assert_array_equal(new[k], w[k])


def residual_net() -> Graph:
    g = Graph("res")
    g.add_node("Input", "input", {"channels": 3, "height": 16, "width": 16}, node_id="input")
    chain = [("stem", "Conv2d", {"out_channels": 8, "kernel_size": 3, "padding": "same"}),
             ("stem_relu", "ReLU", {}),
             ("b.conv1", "Conv2d", {"out_channels": 8, "kernel_size": 3, "padding": "same"}),
             ("b.relu1", "ReLU", {}),
             ("b.conv2", "Conv2d", {"out_channels": 8, "kernel_size": 3, "padding": "same"})]
    prev = "input"
    for nid, t, p in chain:
        g.add_node(t, nid, p, node_id=nid)
        g.add_edge(prev, nid)
        prev = nid
    for nid, t, p in [("b.add", "Add", {}), ("b.relu2", "ReLU", {}),
                      ("gap", "GlobalAvgPool2d", {}), ("flat", "Flatten", {}),
                      ("fc", "Linear", {"out_features": 3})]:
        g.add_node(t, nid, p, node_id=nid)
        g.add_edge(prev, nid)
        prev = nid
    g.add_edge("stem_relu", "b.add")
    return g


def test_several_cut_tensors_shorten_the_prefix():
    # frozen up to conv1 of the block: the tail reads b.relu1 and the shortcut stem_relu
    g = freeze_up_to(residual_net(), "b.relu1")
    w = pretrained(residual_net())
    split = split_graph(g)
    assert split.cut == "stem_relu"
    assert "2 tensors" in split.note and "'b.relu1'" in split.note
    assert set(split.frozen_in_tail) == {"b.conv1", "b.relu1"}
    x, y = images(48, shape=(3, 16, 16), seed=6)
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01, val_split=0, seed=2)
    fast, _ = fine_tune(g, w, x, y, config)
    slow, _ = engine_fine_tune(g, w, x, y, config)
    np.testing.assert_array_equal(fast["b.conv1.weight"], w["b.conv1.weight"])
    np.testing.assert_allclose(fast["fc.weight"], slow["fc.weight"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fast["b.conv2.weight"], slow["b.conv2.weight"], rtol=1e-3,
                               atol=1e-4)


def test_dead_end_branches_are_left_out():
    g = Graph("side branches")
    g.add_node("Input", "input", {"channels": 3, "height": 8, "width": 8}, node_id="input")
    for nid, t, p, src in [
            ("conv1", "Conv2d", {"out_channels": 4, "kernel_size": 3}, "input"),
            ("frozen_side", "Conv2d", {"out_channels": 2, "kernel_size": 1}, "conv1"),
            ("relu", "ReLU", {}, "conv1"),
            ("trainable_side", "Conv2d", {"out_channels": 2, "kernel_size": 1}, "relu"),
            ("flat", "Flatten", {}, "relu"),
            ("fc", "Linear", {"out_features": 3}, "flat")]:
        g.add_node(t, nid, p, node_id=nid)
        g.add_edge(src, nid)
    g = freeze_up_to(g, "frozen_side")  # conv1 and frozen_side
    assert validate(g).output_id == "fc"
    split = split_graph(g)
    assert split.cut == "flat" and "frozen_side" not in split.prefix
    assert split.tail == ["fc"]
    w = pretrained(g)
    x, y = images(32, shape=(3, 8, 8))
    config = TrainConfig(epochs=1, batch_size=8, val_split=0, lr=0.01)
    fast, _ = fine_tune(g, w, x, y, config)
    slow, _ = engine_fine_tune(g, w, x, y, config)
    np.testing.assert_allclose(fast["fc.weight"], slow["fc.weight"], rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(fast["trainable_side.weight"], w["trainable_side.weight"])


# ---- imported models, image folders -------------------------------------------------------

def write_image_folder(root: Path, shape, per_class: int = 8, classes: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    _, h, w = shape
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 100, (h, w, 3)).astype(np.uint8)
            a[..., c] += 150  # each class is brighter in one colour
            Image.fromarray(a, "RGB").save(d / f"{i}.png")


def transfer_round_trip(onnx_path: Path, freeze: str, tmp_path: Path) -> None:
    imp = import_onnx(onnx_path)
    shape = Network.compile(imp.graph).input_shape
    write_image_folder(tmp_path / "images", shape)
    data = load_image_folder(tmp_path / "images", shape)
    assert len(data) == 24 and data.classes == ["class0", "class1", "class2"]
    g = freeze_up_to(imp.graph, freeze)
    g, w = replace_head(g, imp.weights, 3, np.random.default_rng(0))
    split = split_graph(g)
    assert split is not None and len(split.prefix) > 3
    config = TrainConfig(epochs=3, batch_size=8, lr=0.01, val_split=0, seed=0)
    new, hist = fine_tune(g, w, data.x, data.y, config)
    assert hist.stopped is None and len(hist.epochs) == 3
    for k in w:
        if k.rpartition(".")[0] not in split.tail:
            np.testing.assert_array_equal(new[k], w[k], err_msg=k)
    out = tmp_path / "tuned.onnx"
    export_onnx(g, new, path=out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    net = Network.compile(g)
    net.load_state_dict(new)
    ort_out = OnnxModel(out).run(data.x)
    assert ort_out.shape == (24, 3)
    np.testing.assert_allclose(ort_out, net.forward(data.x), rtol=1e-4, atol=1e-5)


def test_committed_torch_onnx_fine_tunes_fast(tmp_path):
    transfer_round_trip(DATA / "torch_vgg_small.onnx", "reshape", tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy exporter
def test_fresh_torch_export_fine_tunes_fast(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    path = tmp_path / "torch.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 16, 16), str(path), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                      dynamo=False)
    imp = import_onnx(path)
    relus = [n.id for n in imp.graph.nodes.values() if n.type_name == "ReLU"]
    transfer_round_trip(path, relus[1], tmp_path)  # frozen through the second conv block


def test_replace_head_of_a_conv_classifier():
    from engine.transfer.finetune import replace_any_head
    from engine.validate import validate
    from engine.zoo.templates import build_template

    g = build_template("squeezenet1_1", 1000)  # classifier: 1×1 conv, ReLU, pooling, Flatten
    w = Network.compile(g, np.random.default_rng(0)).state_dict()
    g2, w2 = replace_any_head(freeze_up_to(g, "features.12.cat"), w, 5,
                              np.random.default_rng(1))
    v = validate(g2)
    assert v.nodes[v.output_id].out_shape == (5,)
    assert w2["classifier.1.weight"].shape == (5, 512, 1, 1) and g2.nodes["classifier.1"].trainable
    assert set(w2) == set(w)
    for k in w:
        if not k.startswith("classifier.1."):
            assert w2[k] is w[k]
    # a Linear head goes through engine.transfer.head.replace_head
    g3, w3 = replace_any_head(mini_vgg(), pretrained(mini_vgg()), 4)
    assert g3.nodes["fc2"].params["out_features"] == 4 and w3["fc2.weight"].shape == (4, 16)


# ---- command line -------------------------------------------------------------------------

@pytest.mark.parametrize("engine_only", [False, True])
def test_cli_finetune(tmp_path, capsys, engine_only):
    import argparse

    from engine.project import load_project

    write_image_folder(tmp_path / "images", (3, 20, 20))
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    out, onnx_out = tmp_path / "tuned.cnnd", tmp_path / "tuned.onnx"
    args = parser.parse_args(["finetune", str(DATA / "torch_vgg_small.onnx"), "--data",
                              str(tmp_path / "images"), "--freeze-up-to", "reshape",
                              "--classes", "3", "--epochs", "1", "--batch-size", "8",
                              "--out", str(out), "--onnx", str(onnx_out)]
                             + ["--engine-only"] * engine_only)
    assert args.func(args) in (None, 0)
    err = capsys.readouterr().err
    # augmentation is on by default: the frozen part runs on every augmented batch
    assert ("on every augmented batch in ONNX Runtime" in err) != engine_only
    project = load_project(out)
    assert project.graph.nodes["classifier.3"].params["out_features"] == 3
    assert not project.graph.nodes["features.0"].trainable
    assert project.meta["history"]["epochs"]
    onnx.checker.check_model(onnx.load(str(onnx_out)), full_check=True)


# ---- the finetune command's checks ----------------------------------------------------------

def _finetune_cli(tmp_path, model, freeze, capsys, data=None):
    from engine.cli.main import main

    argv = ["finetune", model, "--data", str(data or tmp_path / "none"), "--freeze-up-to",
            freeze, "--out", str(tmp_path / "ft.cnnd"), "--epochs", "1", "--batch-size", "8"]
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("freeze, where", [("fc3", "is the classifier head"),
                                           ("softmax", "comes after the classifier head 'fc3'")])
def test_freezing_the_replaced_head_is_an_error(tmp_path, capsys, freeze, where):
    rc, _, err = _finetune_cli(tmp_path, "lenet5", freeze, capsys)
    assert rc == 1
    assert where in err and "cannot be frozen" in err and "--freeze-up-to relu4" in err
    assert not (tmp_path / "ft.cnnd").exists()


def test_unknown_layer_suggests_real_names(tmp_path, capsys):
    rc, _, err = _finetune_cli(tmp_path, "lenet5", "fc", capsys)
    assert rc == 1 and "did you mean" in err and "'fc3'" in err
    rc, _, err = _finetune_cli(tmp_path, "resnet18", "layer3", capsys)
    assert rc == 1 and "use its last layer: --freeze-up-to layer3.1.relu2" in err


def test_cut_after_the_named_layer_is_explained_and_random_backbone_warned(tmp_path, capsys):
    write_image_folder(tmp_path / "imgs", (1, 28, 28), per_class=3)
    rc, _, err = _finetune_cli(tmp_path, "lenet5", "pool2", capsys, tmp_path / "imgs")
    assert rc == 0, err
    assert "ends at 'flatten', not 'pool2'" in err and "('flatten') has no weights" in err
    assert "freezing random weights" in err and "import pretrained weights" in err.lower()
    assert (tmp_path / "ft.cnnd").exists()
