"""Transfer learning end to end, headless: pretrain -> ONNX -> import -> freeze -> new head ->
fine-tune -> ONNX again (checked, ONNX Runtime parity)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from engine.errors import GraphError
from engine.graph import sequential
from engine.nn.network import Network
from engine.nn.train import TrainConfig, evaluate, train
from engine.onnx.export import export_onnx
from engine.onnx.importer import import_onnx
from engine.onnx.runtime import CPU as CPU_PROVIDER
from engine.onnx.runtime import OnnxModel
from engine.transfer.head import fine_tune, freeze_up_to, last_linear, replace_head

CPU = [CPU_PROVIDER]  # float32 reference (an accelerator may use TF32)


def tiny_net():
    return sequential([
        ("Input", "input", {"channels": 1, "height": 8, "width": 8}),
        ("Conv2d", "conv1", {"out_channels": 4, "kernel_size": 3, "padding": "same"}),
        ("BatchNorm2d", "bn1", {}),
        ("ReLU", "relu1", {}),
        ("MaxPool2d", "pool1", {"kernel_size": 2}),
        ("Flatten", "flat", {}),
        ("Linear", "fc1", {"out_features": 16}),
        ("ReLU", "relu2", {}),
        ("Linear", "head", {"out_features": 4}),
        ("Softmax", "softmax", {}),
    ], name="tiny")


def blobs(n, classes, seed):
    """Images whose class is the quadrant holding a bright square (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0, 0.1, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, r * 4:r * 4 + 4, q * 4:q * 4 + 4] += 1.0
    return x, y.astype(np.int64)


def test_transfer_learning_end_to_end(tmp_path):
    # "pretrain" on 4 classes
    g = tiny_net()
    net = Network.compile(g, np.random.default_rng(0))
    x4, y4 = blobs(256, 4, 1)
    train(net, x4, y4, TrainConfig(epochs=2, batch_size=32, lr=0.01, val_split=0))
    path = tmp_path / "pretrained.onnx"
    export_onnx(g, net.state_dict(), path=path)

    imp = import_onnx(path)
    graph = freeze_up_to(imp.graph, "fc1")
    assert [n.trainable for n in graph.nodes.values()] == [False] * 7 + [True] * 3
    graph, weights = replace_head(graph, imp.weights, 3, np.random.default_rng(2))
    assert graph.nodes[last_linear(graph)].params["out_features"] == 3
    assert weights["head.weight"].shape == (3, 16)
    assert graph.nodes["softmax"].type_name == "Softmax"  # kept

    x3, y3 = blobs(192, 3, 3)
    before = {k: v.copy() for k, v in weights.items()}
    new, hist = fine_tune(graph, weights, x3, y3,
                          TrainConfig(epochs=3, batch_size=32, lr=0.01, val_split=0))
    assert hist.stopped is None and len(hist.epochs) == 3
    for k, old in before.items():  # frozen: unchanged, BatchNorm statistics too; the head learned
        if k.startswith("head."):
            assert not np.array_equal(new[k], old), k
        else:
            np.testing.assert_array_equal(new[k], old, err_msg=k)
    tuned = Network.compile(graph)
    tuned.load_state_dict(new)
    _, acc, _ = evaluate(tuned, *blobs(96, 3, 4))
    assert acc > 0.6  # chance is 1/3

    out = tmp_path / "finetuned.onnx"
    model = export_onnx(graph, new, path=out)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
    xt, _ = blobs(8, 3, 5)
    np.testing.assert_allclose(OnnxModel(str(out), providers=CPU).run(xt), tuned.forward(xt),
                               atol=1e-5, rtol=1e-4)


def test_freeze_and_head_errors():
    g = tiny_net()
    with pytest.raises(GraphError):
        freeze_up_to(g, "nope")
    g2 = freeze_up_to(g, "conv1")
    assert not g2.nodes["conv1"].trainable and g.nodes["conv1"].trainable  # a copy
    no_linear = sequential([("Input", "input", {"channels": 1, "height": 4, "width": 4}),
                            ("ReLU", "r", {})])
    with pytest.raises(GraphError, match="no Linear"):
        replace_head(no_linear, {}, 3)
    with pytest.raises(ValueError, match="at least 1"):
        replace_head(g, Network.compile(g).state_dict(), 0)
