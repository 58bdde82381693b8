"""Every registered layer type, read from the registry (no list of names to keep up to date):
gradients against float64 finite differences, ONNX round trip with ONNX Runtime parity, PyTorch
code equal to the engine, formula lines, a short name.

Each type is tried with its default parameters on a standard input: a 3×6×6 image, or a
12-feature vector where the type refuses images (min_inputs such inputs for merges). The icon
(it needs Qt) is checked in tests/designer/test_layer_icons.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine.errors import ShapeError
from engine.formulas import macs_formula, output_size_lines, param_formula
from engine.graph import Graph, default_name
from engine.layers import REGISTRY, Layer
from engine.nn.network import Network
from engine.onnx.importer import importer_table
from engine.pytorch_export import export_pytorch, generate_model
from engine.validate import validate
from tests.engine.test_gradients import check_layer, make_layer, randn
from tests.engine.test_onnx import check_round_trip, comparable, randomized
from tests.engine.test_pytorch_export import _import, _randomize

IMAGE, FLAT = (3, 6, 6), (12,)
TYPES = sorted(REGISTRY)


def sample_inputs(cls: type[Layer]) -> list[tuple[int, ...]]:
    """The first standard input shapes the type accepts with its default parameters."""
    if cls.min_inputs == 0:
        return []
    for shape in (IMAGE, FLAT):
        shapes = [shape] * cls.min_inputs
        try:
            cls("x").output_shape(shapes)
        except ShapeError:
            continue
        return shapes
    raise AssertionError(f"{cls.type_name} accepts neither {IMAGE} nor {FLAT}")


def sample_graph(cls: type[Layer]) -> Graph:
    """Input 3×6×6 -> (Flatten for vector inputs) -> (one ReLU per input of a merge) -> the
    type with its default parameters; a type that takes no input (the input) -> ReLU, as a
    graph needs a layer after its input (named "input", as an ONNX import names it)."""
    g = Graph("t")
    if cls.min_inputs == 0:
        g.add_node(cls.type_name, "input", {}, node_id="input")
        g.add_node("ReLU", "relu", {}, node_id="relu")
        g.add_edge("input", "relu")
        return g
    shapes = sample_inputs(cls)
    c, h, w = IMAGE
    g.add_node("Input", "input", {"channels": c, "height": h, "width": w}, node_id="input")
    feed = "input"
    if shapes[0] == FLAT:
        g.add_node("Flatten", "flatten", {}, node_id="flatten")
        g.add_edge("input", "flatten")
        feed = "flatten"
    g.add_node(cls.type_name, "layer", {}, node_id="layer")
    if len(shapes) == 1:
        g.add_edge(feed, "layer")
        return g
    for i in range(len(shapes)):  # distinct branches into the merge
        g.add_node("ReLU", f"branch{i}", {}, node_id=f"branch{i}")
        g.add_edge(feed, f"branch{i}")
        g.add_edge(f"branch{i}", "layer")
    return g


@pytest.mark.parametrize("type_name", TYPES)
def test_gradients_match_finite_differences(type_name):
    cls = REGISTRY[type_name]
    shapes = sample_inputs(cls)
    layer = make_layer(type_name, {}, shapes)
    if not shapes:  # the input layer: its data has its own shape
        shapes = [layer.output_shape([])]
    xs = [randn((2,) + s, seed=i) for i, s in enumerate(shapes)]

    def reset():  # a layer drawing randomness (Dropout's mask) draws the same each time
        layer.rng = np.random.default_rng(42)

    check_layer(layer, xs, reset=reset)


@pytest.mark.parametrize("type_name", TYPES)
def test_onnx_round_trip_matches_onnxruntime(type_name):
    cls = REGISTRY[type_name]
    assert cls.to_onnx is not Layer.to_onnx, f"{type_name} declares no to_onnx"
    table = importer_table()
    for op in cls.onnx_ops:
        assert cls.from_onnx.__func__ is not Layer.from_onnx.__func__, type_name
        assert cls in table[op], (type_name, op)
    g = sample_graph(cls)
    rng = np.random.default_rng(0)
    net = Network.compile(g, rng)
    x = rng.standard_normal((2,) + net.input_shape).astype(np.float32)
    _, imp = check_round_trip(g, randomized(net, rng), x, keep_dropout=True)
    assert comparable(imp.graph) == comparable(g)


@pytest.mark.parametrize("type_name", TYPES)
def test_pytorch_code_matches_the_engine(type_name, tmp_path):
    assert_pytorch_matches(sample_graph(REGISTRY[type_name]), tmp_path)


def assert_pytorch_matches(g: Graph, tmp_path) -> str:
    """The generated model.py, with the engine's weights, computes what the engine does;
    returns its source."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    net = Network.compile(g, rng)
    _randomize(net, rng)
    export_pytorch(g, net.state_dict(), tmp_path / "out")
    mod = _import(tmp_path / "out" / "model.py")
    model = getattr(mod, generate_model(g).class_name)()
    if (tmp_path / "out" / "weights.npz").exists():  # written only when there are weights
        mod.load_npz(model, str(tmp_path / "out" / "weights.npz"))
    model.eval()
    x = rng.standard_normal((3,) + net.input_shape).astype(np.float32)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, net.forward(x), rtol=1e-4, atol=1e-5)
    return (tmp_path / "out" / "model.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("type_name", TYPES)
def test_formula_lines_and_counts(type_name):
    cls = REGISTRY[type_name]
    shapes = sample_inputs(cls)
    layer = cls("x")
    out = layer.output_shape(shapes)
    lines = output_size_lines(layer, shapes)
    assert lines and all(isinstance(t, str) and t for t in lines)
    assert output_size_lines(layer, [None] * cls.min_inputs) in ([], lines)  # inputs unknown
    trainable, frozen = layer.param_count(shapes)
    p = param_formula(layer, shapes)
    assert (p.trainable, p.non_trainable) == (trainable, frozen)
    if shapes:
        m = macs_formula(layer, shapes, out)
        assert m.trainable == layer.macs(shapes, out)


@pytest.mark.parametrize("type_name", TYPES)
def test_short_name_names_new_nodes(type_name):
    name = default_name(type_name)
    assert re.fullmatch(r"[a-z][a-z0-9_]*1", name), name
    g = Graph()
    assert g.add_node(type_name).name == name
    assert REGISTRY[type_name].default_name() == name


def test_sample_graphs_are_valid():
    for type_name in TYPES:
        v = validate(sample_graph(REGISTRY[type_name]))
        assert v.ok, (type_name, [m.text for m in v.errors])
