"""Compiled networks: compile checks, seeds, forward options, state, frozen layers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import GraphError, ProjectError
from engine.graph import Graph, sequential
from engine.nn.network import Network
from engine.nn.optim import make_optimizer


def small_net_graph(final_softmax=True, bn=True) -> Graph:
    layers = [
        ("Input", "input", {"channels": 1, "height": 8, "width": 8}),
        ("Conv2d", "conv1", {"out_channels": 3, "kernel_size": 3, "padding": 1}),
        ("ReLU", "relu1", {}),
        ("Conv2d", "conv2", {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}),
    ]
    if bn:
        layers.append(("BatchNorm2d", "bn", {}))
    layers += [("Tanh", "tanh", {}), ("Flatten", "flatten", {}),
               ("Linear", "fc", {"out_features": 5})]
    if final_softmax:
        layers.append(("Softmax", "softmax", {}))
    return sequential(layers)


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 5, n)


def test_compile_refuses_an_invalid_graph_listing_the_problems():
    g = sequential([("Input", "input", {"channels": 1, "height": 4, "width": 4}),
                    ("Conv2d", "conv", {"kernel_size": 7}),
                    ("Linear", "fc", {})])
    with pytest.raises(GraphError) as exc:
        Network.compile(g)
    assert "1 problem" in str(exc.value) and "'conv'" in str(exc.value)
    with pytest.raises(GraphError, match="no output"):
        Network.compile(sequential([("Input", "input", {})]))


def test_same_seed_same_weights_other_seed_other_weights():
    g = small_net_graph()
    a = Network.compile(g, np.random.default_rng(7)).state_dict()
    b = Network.compile(g, np.random.default_rng(7)).state_dict()
    c = Network.compile(g, np.random.default_rng(8)).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert set(a) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "bn.weight",
                      "bn.bias", "bn.running_mean", "bn.running_var", "fc.weight", "fc.bias"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == np.float32
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])


def test_init_scale_follows_he_and_glorot():
    g = sequential([("Input", "input", {"channels": 16, "height": 3, "width": 3}),
                    ("Conv2d", "he", {"out_channels": 64, "kernel_size": 3}),
                    ("Flatten", "f", {}),
                    ("Linear", "gl", {"out_features": 300, "init": "glorot"})])
    net = Network.compile(g, np.random.default_rng(0))
    w = net.layers["he"].weights["weight"]
    bound = np.sqrt(6 / (16 * 9))  # He uniform: sqrt(6 / fan_in)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    w = net.layers["gl"].weights["weight"]
    bound = np.sqrt(6 / (64 + 300))  # Glorot uniform: sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    np.testing.assert_array_equal(net.layers["he"].weights["bias"], 0)


def test_forward_options():
    net = Network.compile(small_net_graph(), np.random.default_rng(0))
    x, _ = batch()
    x0 = x.copy()
    probs = net.forward(x)
    assert probs.shape == (6, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    z = net.forward(x, logits=True)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), probs, rtol=1e-5)
    outs = net.forward(x, keep=True)
    assert set(outs) == set(net.order)
    assert outs["conv2"].shape == (6, 4, 4, 4)
    np.testing.assert_array_equal(outs["softmax"], probs)
    np.testing.assert_allclose(net.predict(x, batch_size=4), probs, rtol=1e-6)
    np.testing.assert_array_equal(x, x0)  # the input is untouched
    assert net.forward(x.astype(np.float64)).dtype == np.float32  # cast on the way in
    assert net.input_shape == (1, 8, 8) and net.output_shape == (5,)
    with pytest.raises(ValueError, match="1×8×8"):
        net.forward(np.zeros((2, 1, 8, 9), np.float32))


def test_state_dict_round_trip_and_errors():
    g = small_net_graph()
    a = Network.compile(g, np.random.default_rng(1))
    b = Network.compile(g, np.random.default_rng(2))
    x, _ = batch()
    assert not np.allclose(a.forward(x), b.forward(x))
    state = a.state_dict()
    assert sorted(b.load_state_dict(state)) == sorted(state)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    state["conv1.weight"][...] = 0  # state_dict hands out copies
    assert np.abs(a.layers["conv1"].weights["weight"]).sum() > 0
    bad = dict(state)
    del bad["fc.bias"]
    with pytest.raises(ProjectError, match="'fc'"):
        b.load_state_dict(bad)
    assert b.load_state_dict(bad, strict=False) == [k for k in state if k != "fc.bias"]
    bad = dict(state, **{"conv2.weight": np.zeros((4, 3, 2, 2))})
    with pytest.raises(ProjectError) as exc:
        b.load_state_dict(bad)
    assert "'conv2'" in str(exc.value) and "4×3×2×2" in str(exc.value)
    assert "4×3×3×3" in str(exc.value)


def gradients(net, x, y_grad):
    net.forward(x, training=True, logits=True)
    net.backward(y_grad, from_logits=True)
    return {f"{nid}.{k}": v.copy() for nid, layer in net.layers.items()
            for k, v in layer.grads.items()}


def test_frozen_middle_layer_still_passes_gradient_to_earlier_layers():
    g = small_net_graph(bn=False)
    x, _ = batch()
    dz = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
    free = Network.compile(g, np.random.default_rng(4))
    frozen = Network.compile(g, np.random.default_rng(4))
    frozen.set_frozen(["conv2"])
    assert "conv2.weight" not in {p.key for p in frozen.parameters()}
    assert frozen.graph.nodes["conv2"].trainable is False
    g_free, g_frozen = gradients(free, x, dz), gradients(frozen, x, dz)
    # conv1 gets exactly the gradient it gets when conv2 trains
    for k in ("conv1.weight", "conv1.bias", "fc.weight"):
        assert np.abs(g_frozen[k]).sum() > 0
        np.testing.assert_allclose(g_frozen[k], g_free[k], rtol=1e-6)
    assert "conv2.weight" not in g_frozen


def test_frozen_layers_do_not_change_when_training_steps_run():
    g = small_net_graph()
    g.nodes["conv2"].trainable = False  # frozen in the graph itself
    g.nodes["bn"].trainable = False
    net = Network.compile(g, np.random.default_rng(5))
    assert net.layers["conv2"].frozen and net.layers["bn"].frozen
    before = net.state_dict()
    opt = make_optimizer("sgd", net.parameters(), lr=0.1)
    x, _ = batch()
    for step in range(3):
        gradients(net, x + step, np.ones((6, 5), np.float32) / 6)
        opt.step()
    after = net.state_dict()
    for k in ("conv2.weight", "conv2.bias", "bn.weight", "bn.bias", "bn.running_mean",
              "bn.running_var"):
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    for k in ("conv1.weight", "fc.weight"):
        assert not np.array_equal(after[k], before[k]), k


def test_frozen_front_stops_backward_early_and_trains_the_rest():
    g = small_net_graph(bn=False, final_softmax=False)
    net = Network.compile(g, np.random.default_rng(6))
    net.set_frozen(["conv1", "conv2"])
    x, _ = batch()
    before = net.state_dict()
    gradients(net, x, np.ones((6, 5), np.float32))
    assert {p.key for p in net.parameters()} == {"fc.weight", "fc.bias"}
    assert np.abs(net.layers["fc"].grads["weight"]).sum() > 0
    net.set_frozen(["conv1"], frozen=False)
    assert "conv1.weight" in {p.key for p in net.parameters()}
    grads = gradients(net, x, np.ones((6, 5), np.float32))
    assert np.abs(grads["conv1.weight"]).sum() > 0
    np.testing.assert_array_equal(net.state_dict()["conv2.weight"], before["conv2.weight"])


def test_batchnorm_running_stats_move_in_training_only():
    net = Network.compile(small_net_graph(), np.random.default_rng(0))
    x, _ = batch()
    rm = net.layers["bn"].weights["running_mean"].copy()
    net.forward(x)
    np.testing.assert_array_equal(net.layers["bn"].weights["running_mean"], rm)
    net.forward(x, training=True)
    assert not np.array_equal(net.layers["bn"].weights["running_mean"], rm)
