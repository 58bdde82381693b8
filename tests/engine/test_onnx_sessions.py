"""ONNX Runtime sessions kept across calls (engine.onnx.runtime.cached_model / graph_model), the
export with its weights kept apart, and compiling a network from given weights without a random
initialisation. Nothing here is timed: the figures are bench/bench_import.py's."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from engine.graph import sequential
from engine.nn.network import Network
from engine.onnx import runtime
from engine.onnx.export import APART_MIN_BYTES, export_apart, export_onnx
from engine.onnx.runtime import CPU, OnnxModel, cached_model, graph_model

CPU_ONLY = [CPU]


@pytest.fixture(autouse=True)
def fresh_sessions():
    runtime.clear_sessions()
    yield
    runtime.clear_sessions()


def small_net(out_features: int = 5):
    """Conv (weights above APART_MIN_BYTES), BatchNorm, pooling, Dropout, Linear."""
    g = sequential([("Input", "input", {"channels": 3, "height": 12, "width": 12}),
                    ("Conv2d", "conv", {"out_channels": 16, "kernel_size": 3, "padding": 1}),
                    ("BatchNorm2d", "bn", {}), ("ReLU", "relu", {}), ("MaxPool2d", "pool", {}),
                    ("Flatten", "flat", {}), ("Dropout", "drop", {"p": 0.5}),
                    ("Linear", "fc", {"out_features": out_features})], name="small")
    rng = np.random.default_rng(1)
    w = Network.compile(g, rng).state_dict()
    for k in w:  # statistics that matter
        if k.endswith("running_mean"):
            w[k] = rng.normal(0, 0.5, w[k].shape).astype(np.float32)
        if k.endswith("running_var"):
            w[k] = rng.uniform(0.5, 1.5, w[k].shape).astype(np.float32)
    return g, w


def key(g, layer: str, weight: str) -> str:
    """The weights' key of `weight` of the layer named `layer`."""
    return next(f"{n.id}.{weight}" for n in g.nodes.values() if n.name == layer)


def node_id(g, layer: str) -> str:
    return next(n.id for n in g.nodes.values() if n.name == layer)


def sample(n: int = 4) -> np.ndarray:
    return np.random.default_rng(2).normal(size=(n, 3, 12, 12)).astype(np.float32)


def reference(g, w, x) -> np.ndarray:
    """ONNX Runtime on the plain, fully checked export (weights inside the model)."""
    return OnnxModel(export_onnx(g, w), providers=CPU_ONLY).run(x)


# ---- graph_model ---------------------------------------------------------------------------

def test_an_unchanged_design_reuses_its_session_with_the_same_outputs():
    g, w = small_net()
    x = sample()
    first = graph_model(g, w, providers=CPU_ONLY)
    y1 = first.run(x)
    # equal values in new arrays, a copied graph, moved nodes: still the same design
    moved = g.copy()
    for node in moved.nodes.values():
        node.position = (node.position[0] + 40.0, node.position[1] - 7.0)
    again = graph_model(moved, {k: v.copy() for k, v in w.items()}, providers=CPU_ONLY)
    assert again is first
    assert np.array_equal(again.run(x), y1)
    np.testing.assert_allclose(y1, reference(g, w, x), rtol=1e-5, atol=1e-6)


def test_a_weight_changed_in_place_gives_a_new_session_with_its_outputs():
    g, w = small_net()
    x = sample()
    first = graph_model(g, w, providers=CPU_ONLY)
    y1 = first.run(x)
    w[key(g, "fc", "bias")][0] += 1.0  # in place, as an optimizer step would
    second = graph_model(g, w, providers=CPU_ONLY)
    assert second is not first
    y2 = second.run(x)
    np.testing.assert_allclose(y2, reference(g, w, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y2[:, 0] - y1[:, 0], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(y2[:, 1:], y1[:, 1:])
    assert np.array_equal(first.run(x), y1)  # the old session kept its own copy


def test_a_graph_change_gives_a_new_session():
    g, w = small_net()
    x = sample()
    first = graph_model(g, w, providers=CPU_ONLY)
    g2 = g.copy()
    g2.nodes[node_id(g, "relu")].type_name = "Sigmoid"  # same weights, another computation
    second = graph_model(g2, w, providers=CPU_ONLY)
    assert second is not first
    np.testing.assert_allclose(second.run(x), reference(g2, w, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(second.run(x), first.run(x))
    # and back: the first design is still kept
    assert graph_model(g, w, providers=CPU_ONLY) is first


def test_outputs_threads_providers_and_opset_are_part_of_the_key():
    g, w = small_net()
    base = graph_model(g, w, providers=CPU_ONLY, threads=1)
    assert graph_model(g, w, providers=CPU_ONLY, threads=1) is base
    assert graph_model(g, w, providers=CPU_ONLY, threads=2) is not base
    every = graph_model(g, w, all_outputs=True, providers=CPU_ONLY, threads=1)
    assert every is not base and len(every.output_names) > 1
    assert graph_model(g, w, opset=13, providers=CPU_ONLY, threads=1) is not base


def test_untrained_design_runs_its_seeded_initial_weights():
    g, _ = small_net()
    x = sample()
    m = graph_model(g, None, providers=CPU_ONLY)
    assert graph_model(g, None, providers=CPU_ONLY) is m
    initial = Network.compile(g, np.random.default_rng(0)).state_dict()
    np.testing.assert_allclose(m.run(x), reference(g, initial, x), rtol=1e-5, atol=1e-6)
    assert graph_model(g, initial, providers=CPU_ONLY) is not m  # given weights: another key


def test_only_the_last_few_sessions_are_kept():
    kept = [graph_model(*small_net(n), providers=CPU_ONLY)
            for n in range(2, 3 + runtime.KEEP_SESSIONS)]
    assert graph_model(*small_net(2 + runtime.KEEP_SESSIONS), providers=CPU_ONLY) is kept[-1]
    assert graph_model(*small_net(2), providers=CPU_ONLY) is not kept[0]  # the oldest went


# ---- cached_model: files and bytes ---------------------------------------------------------

def test_a_file_keeps_its_session_until_it_changes(tmp_path):
    g, w = small_net()
    x = sample()
    path = tmp_path / "m.onnx"
    export_onnx(g, w, path=path)
    first = cached_model(path, providers=CPU_ONLY)
    assert cached_model(str(path), providers=CPU_ONLY) is first
    np.testing.assert_array_equal(first.run(x), OnnxModel(path, providers=CPU_ONLY).run(x))
    w2 = {k: v.copy() for k, v in w.items()}
    w2[key(g, "fc", "bias")] += 0.5
    export_onnx(g, w2, path=path)  # rewritten (atomically: a new file)
    second = cached_model(path, providers=CPU_ONLY)
    assert second is not first
    np.testing.assert_allclose(second.run(x), first.run(x) + 0.5, rtol=1e-5, atol=1e-6)
    assert len([k for k in runtime._SESSIONS if k[0] == "file"]) == 1  # the stale one dropped


def test_bytes_and_model_protos_are_kept_by_their_content():
    g, w = small_net()
    model = export_onnx(g, w)
    data = model.SerializeToString()
    first = cached_model(data, providers=CPU_ONLY)
    assert cached_model(bytes(data), providers=CPU_ONLY) is first
    assert cached_model(model, providers=CPU_ONLY) is first
    other = onnx.ModelProto()
    other.CopyFrom(model)
    other.doc_string = "another"
    assert cached_model(other, providers=CPU_ONLY) is not first


def test_a_missing_file_is_a_data_error(tmp_path):
    from engine.errors import DataError

    with pytest.raises(DataError, match="no ONNX model at .*nothing.onnx"):
        cached_model(tmp_path / "nothing.onnx")


# ---- the export with its weights apart -----------------------------------------------------

def test_export_apart_keeps_the_weights_out_and_computes_the_same():
    g, w = small_net()
    x = sample()
    model, arrays = export_apart(g, w)
    full = export_onnx(g, w)
    big = {t.name for t in full.graph.initializer
           if onnx.numpy_helper.to_array(t).nbytes >= APART_MIN_BYTES}
    assert set(arrays) == big and big  # the conv and linear weights
    assert sum(a.nbytes for a in arrays.values()) > model.ByteSize()
    for t in model.graph.initializer:
        assert (t.data_location == onnx.TensorProto.EXTERNAL) == (t.name in arrays)
        assert not t.raw_data or t.name not in arrays
    assert arrays["conv.weight"] is w[key(g, "conv", "weight")]  # handed over, not copied
    y = OnnxModel(model, providers=CPU_ONLY, weights=arrays).run(x)
    np.testing.assert_allclose(y, OnnxModel(full, providers=CPU_ONLY).run(x), rtol=1e-6,
                               atol=1e-7)


def test_onnx_runtime_copies_the_weights_handed_over():
    """Changing the arrays after the session is built changes nothing: a kept session is a
    snapshot, which keying by the weights' values relies on."""
    g, w = small_net()
    x = sample()
    model, arrays = export_apart(g, w)
    m = OnnxModel(model, providers=CPU_ONLY, weights=arrays)
    y1 = m.run(x)
    for a in arrays.values():
        a[...] = 0
    assert np.array_equal(m.run(x), y1)


def test_parity_report_reuses_the_all_outputs_session():
    g, w = small_net()
    rows = runtime.parity_report(g, w, sample(2))
    assert rows and all(r.ok for r in rows)
    kept = dict(runtime._SESSIONS)
    runtime.parity_report(g, w, sample(2))
    assert dict(runtime._SESSIONS) == kept and len(kept) == 1


# ---- compiling from given weights ----------------------------------------------------------

class NoDraws:
    """An rng that fails the test if anything is drawn from it."""

    def __getattr__(self, name):
        raise AssertionError(f"rng.{name} called: a given weight was initialised at random")


def test_compile_with_every_weight_given_draws_nothing_and_copies():
    g = sequential([("Input", {"channels": 3, "height": 12, "width": 12}),
                    ("Conv2d", {"out_channels": 16, "kernel_size": 3, "padding": 1}),
                    ("BatchNorm2d", {}), ("ReLU", {}), ("Flatten", {}),
                    ("Linear", {"out_features": 4})])
    w = Network.compile(g, np.random.default_rng(5)).state_dict()
    net = Network.compile(g, NoDraws(), weights=w)
    state = net.state_dict()
    assert set(state) == set(w) and all(np.array_equal(state[k], w[k]) for k in w)
    assert not any(np.shares_memory(layer.weights[k], w[f"{nid}.{k}"])
                   for nid, layer in net.layers.items() for k in layer.weights)
    ref = Network.compile(g, np.random.default_rng(9))
    ref.load_state_dict(w)
    x = sample()
    assert np.array_equal(net.forward(x), ref.forward(x))


def test_compile_with_some_weights_initialises_the_rest():
    g, w = small_net()
    conv, fc, bn = node_id(g, "conv"), node_id(g, "fc"), node_id(g, "bn")
    given = {k: v for k, v in w.items() if k.startswith(conv + ".")}
    net = Network.compile(g, np.random.default_rng(0), weights=given)
    assert np.array_equal(net.layers[conv].weights["weight"], w[key(g, "conv", "weight")])
    assert np.abs(net.layers[fc].weights["weight"]).max() > 0  # drawn, not zeros
    assert np.all(net.layers[bn].weights["running_var"] == 1)  # its init rule


def test_compile_names_the_layer_of_a_mis_shaped_weight():
    from engine.errors import ProjectError

    g, w = small_net()
    w[key(g, "fc", "weight")] = np.zeros((3, 3), np.float32)
    with pytest.raises(ProjectError, match="layer 'fc': 'weight' has shape 3×3"):
        Network.compile(g, np.random.default_rng(0), weights=w)
