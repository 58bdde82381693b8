"""Every layer's output from ONNX Runtime (engine/onnx/layer_outputs.py): equal to the engine's
per layer, each layer's final tensor taken (multi-node exports, several outputs, wired-through
layers), the session kept per revision and rebuilt after a change, the engine as fallback."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from engine.errors import DataError
from engine.graph import Graph
from engine.nn.network import Network
from engine.onnx import layer_outputs as lo
from engine.onnx import runtime
from engine.zoo.examples import load_example
from engine.zoo.templates import build_template


def mixed_graph() -> Graph:
    """Layers that export as several ONNX nodes (GroupNorm, GeometricPool2d), one with several
    outputs (ChannelSplit, both ports read), one wired through (Dropout) and a final Dropout."""
    g = Graph("mixed")
    g.add_node("Input", "input", {"channels": 3, "height": 12, "width": 12}, node_id="input")
    specs = [("Conv2d", "conv", {"out_channels": 8, "kernel_size": 3, "padding": 1}),
             ("GroupNorm", "gn", {"num_groups": 4}),
             ("ReLU", "relu", {}),
             ("ChannelSplit", "split", {"sections": 2}),
             ("Conv2d", "left", {"out_channels": 4, "kernel_size": 1}),
             ("Sigmoid", "right", {}),
             ("Concat", "cat", {}),
             ("Dropout", "drop", {}),
             ("GeometricPool2d", "geo", {"kernel_size": [2, 2]}),
             ("Flatten", "flat", {}),
             ("Linear", "fc", {"out_features": 5}),
             ("Dropout", "last", {})]
    for t, name, params in specs:
        g.add_node(t, name, params, node_id=name)
    for a, b, port in [("input", "conv", 0), ("conv", "gn", 0), ("gn", "relu", 0),
                       ("relu", "split", 0), ("split", "left", 0), ("split", "right", 1),
                       ("left", "cat", 0), ("right", "cat", 0), ("cat", "drop", 0),
                       ("drop", "geo", 0), ("geo", "flat", 0), ("flat", "fc", 0),
                       ("fc", "last", 0)]:
        g.add_edge(a, b, src_port=port)
    return g


def _trained_like(net: Network, seed: int) -> None:
    """Non-trivial norm statistics and affine weights, so a wrong tensor cannot pass."""
    rng = np.random.default_rng(seed)
    for layer in net.layers.values():
        for k, w in layer.weights.items():
            if k in ("running_var",):
                w[...] = rng.uniform(0.5, 2.0, w.shape)
            elif k in ("running_mean", "bias") or (k == "weight" and w.ndim == 1):
                w[...] = rng.uniform(-0.5, 0.5, w.shape) + (k == "weight")


def _close(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest difference relative to the layer's largest magnitude."""
    assert ours.shape == theirs.shape
    return float(np.max(np.abs(ours.astype(np.float64) - theirs)) /
                 max(float(np.max(np.abs(ours))), 1e-12))


GRAPHS = {
    "mixed": mixed_graph,
    "small_resnet": lambda: load_example("small_resnet"),
    "mobile_se": lambda: load_example("mobile_se"),
    "lenet5": lambda: build_template("lenet5"),
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_every_layer_equals_the_engine(name):
    g = GRAPHS[name]()
    net = Network.compile(g, np.random.default_rng(0))
    _trained_like(net, 1)
    shape = net.input_shape
    x = np.random.default_rng(2).uniform(0, 1, (2, *shape)).astype(np.float32)
    outs, by = lo.layer_outputs(net, g, x)
    assert by == lo.ORT
    ref = net.forward(x, keep=True)
    assert set(outs) == set(ref) == set(net.order)
    worst = {nid: _close(ref[nid], outs[nid]) for nid in ref}
    bad = {nid: d for nid, d in worst.items() if d > 1e-4}
    assert not bad, bad


def test_multi_node_layers_map_to_their_final_tensor():
    g = mixed_graph()
    net = Network.compile(g, np.random.default_rng(0))
    model = runtime.graph_model(g, lo.network_weights(net), all_outputs=True)
    t = model.layer_tensors
    producer = {o: n for n in model.exported.graph.node for o in n.output}
    # GroupNorm and geometric pooling export as several nodes: the last one's tensor is theirs
    assert producer[t["gn"]].op_type != "InstanceNormalization"
    assert producer[t["geo"]].op_type == "Exp"
    assert t["split"] == producer[t["split"]].output[0] and producer[t["split"]].op_type == "Split"
    assert t["drop"] == t["cat"]  # wired through: its input's tensor
    assert t["last"] == t["fc"] == "output" and t["input"] == "input"
    names = [o.name for o in model.exported.graph.output]
    assert len(names) == len(set(names))  # a shared tensor is listed once


def test_session_kept_per_revision_and_rebuilt_after_a_change():
    runtime.clear_sessions()
    g = load_example("small_resnet")
    net = Network.compile(g, np.random.default_rng(0))
    x = np.random.default_rng(3).uniform(0, 1, (1, *net.input_shape)).astype(np.float32)
    w = lo.network_weights(net)
    first = lo.ort_layer_outputs(g, w, x, revision=("doc", 1))
    model = runtime.graph_model(g, w, all_outputs=True, revision=("doc", 1))
    assert runtime.graph_model(g, w, all_outputs=True, revision=("doc", 1)) is model
    # a weight change under a new revision: a new session that sees the new weights
    conv = next(nid for nid in net.order if g.nodes[nid].type_name == "Conv2d")
    net.layers[conv].weights["weight"] *= 2
    second = lo.ort_layer_outputs(g, lo.network_weights(net), x, revision=("doc", 2))
    rebuilt = runtime.graph_model(g, w, all_outputs=True, revision=("doc", 2))
    assert rebuilt is not model
    np.testing.assert_allclose(second[conv], 2 * first[conv], rtol=1e-5, atol=1e-6)
    # the document's older revision is dropped, not kept beside the new one
    assert not [k for k in runtime._SESSIONS if k[:2] == ("revision", "doc") and k[4] == 1]
    # an edit of the graph under a new revision: rebuilt with the new graph
    relu = next(nid for nid in net.order if g.nodes[nid].type_name == "ReLU")
    g.nodes[relu].type_name = "Sigmoid"
    net2 = Network.compile(g, np.random.default_rng(0))
    third = lo.ort_layer_outputs(g, lo.network_weights(net2), x, revision=("doc", 3))
    assert third[relu].min() > 0 and (first[relu] == 0).any()
    runtime.clear_sessions()


def test_engine_runs_what_onnx_runtime_cannot(monkeypatch):
    g = load_example("lenet5")
    net = Network.compile(g, np.random.default_rng(0))
    x = np.random.default_rng(4).uniform(0, 1, (1, *net.input_shape)).astype(np.float32)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise DataError("ONNX Runtime cannot load the model: test")

    monkeypatch.setattr(runtime, "graph_model", refuse)
    for _ in range(2):
        outs, by = lo.layer_outputs(net, g, x, revision=("refused", 1))
        assert by == lo.ENGINE
        ref = net.forward(x, keep=True)
        assert all(np.array_equal(outs[k], ref[k]) for k in ref)
    assert len(calls) == 1  # not asked again for the same revision


def test_a_layer_the_output_does_not_need_runs_in_the_engine():
    g = load_example("lenet5")
    first = next(nid for nid, n in g.nodes.items() if n.type_name == "Conv2d")
    g.add_node("ReLU", "dangling", {}, node_id="dangling")
    g.add_edge(first, "dangling")
    net = Network.compile(g, np.random.default_rng(0))
    x = np.random.default_rng(5).uniform(0, 1, (1, *net.input_shape)).astype(np.float32)
    outs, by = lo.layer_outputs(net, g, x)
    assert by == lo.ENGINE and "dangling" in outs
