"""Modern CNN building blocks: SiLU, HardSigmoid, HardSwish, GELU, ELU, PReLU, Identity and the
broadcasting Multiply / Add (squeeze-and-excitation gates).

Forward against the formulas and torch.nn.functional (when torch is installed), backward against
float64 finite differences (broadcast inputs included), ONNX export at opsets 13, 17 and 20
(single ops where the opset has them, their formulas below) with ONNX Runtime parity and import
of both forms, and the error a wrongly sized gate gives.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.graph import Graph, sequential
from engine.layers import REGISTRY
from engine.layers.activation import erf
from engine.nn.network import Network
from engine.onnx.export import export_onnx
from engine.onnx.importer import import_onnx
from engine.onnx.runtime import CPU, OnnxModel
from engine.validate import validate
from tests.engine.test_gradients import check_layer, randn

ACTIVATIONS = [
    ("SiLU", {}),
    ("HardSigmoid", {}),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
    ("HardSwish", {}),
    ("GELU", {}),
    ("GELU", {"approximate": "tanh"}),
    ("ELU", {}),
    ("ELU", {"alpha": 0.3}),
    ("ELU", {"alpha": 2.5}),
    ("PReLU", {}),
    ("PReLU", {"num_parameters": 4}),
    ("Identity", {}),
]


def _id(case):
    t, p = case
    return t + "".join(f"-{k}{v:.3g}" if isinstance(v, float) else f"-{k}{v}"
                       for k, v in p.items())


def reference(type_name: str, params: dict, x: np.ndarray, w=None) -> np.ndarray:
    """The textbook formula, in float64."""
    x = x.astype(np.float64)
    if type_name == "SiLU":
        return x / (1 + np.exp(-x))
    if type_name == "HardSigmoid":
        return np.clip(params.get("alpha", 0.2) * x + params.get("beta", 0.5), 0, 1)
    if type_name == "HardSwish":
        return x * np.clip(x + 3, 0, 6) / 6
    if type_name == "GELU":
        if params.get("approximate") == "tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    if type_name == "ELU":
        return np.where(x > 0, x, params.get("alpha", 1.0) * np.expm1(x))
    if type_name == "PReLU":
        a = np.asarray(w, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))
        return np.where(x > 0, x, a * x)
    assert type_name == "Identity"
    return x


def built(type_name: str, params: dict, in_shape, seed=0):
    layer = REGISTRY[type_name]("x", **params)
    layer.init_weights([in_shape], np.random.default_rng(seed))
    if "weight" in layer.weights:  # slopes other than the initial 0.25, one per channel
        layer.weights["weight"][...] = np.linspace(0.05, 0.9, layer.weights["weight"].size)
    return layer


# ---- forward -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ACTIVATIONS, ids=[_id(c) for c in ACTIVATIONS])
def test_forward_matches_the_formula_in_float32(case):
    type_name, params = case
    x = (randn((3, 4, 5, 5), scale=3.0)).astype(np.float32)
    x[0, 0, 0, :] = [-3.0, 3.0, 0.0, -40.0, 40.0]  # the kinks and the far tails
    layer = built(type_name, params, (4, 5, 5))
    y = layer.forward([x])
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, reference(type_name, params, x, layer.weights.get("weight")),
                               rtol=1e-5, atol=2e-6)
    assert np.isfinite(y).all()


def test_float32_erf_is_accurate_everywhere():
    x = np.linspace(-10, 10, 200_001).astype(np.float32)
    exact = np.vectorize(math.erf)(x.astype(np.float64))
    assert np.abs(erf(x) - exact).max() < 5e-7
    assert erf(x).dtype == np.float32


TORCH_CASES = [
    ("SiLU", {}, "silu", {}),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, "hardsigmoid", {}),
    ("HardSwish", {}, "hardswish", {}),
    ("GELU", {}, "gelu", {}),
    ("GELU", {"approximate": "tanh"}, "gelu", {"approximate": "tanh"}),
    ("ELU", {"alpha": 0.7}, "elu", {"alpha": 0.7}),
    ("PReLU", {"num_parameters": 4}, "prelu", {}),
    ("PReLU", {}, "prelu", {}),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[_id(c[:2]) for c in TORCH_CASES])
def test_forward_and_backward_match_torch(case):
    torch = pytest.importorskip("torch")
    type_name, params, fn, kw = case
    x = (randn((3, 4, 6, 6), seed=5, scale=3.0)).astype(np.float32)
    layer = built(type_name, params, (4, 6, 6))
    y = layer.forward([x], training=True)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    if type_name == "PReLU":
        tw = torch.from_numpy(layer.weights["weight"].copy()).requires_grad_(True)
        ty = torch.nn.functional.prelu(tx, tw)
    else:
        ty = getattr(torch.nn.functional, fn)(tx, **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    dy = randn(y.shape, seed=6).astype(np.float32)
    (dx,) = layer.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    if type_name == "PReLU":
        np.testing.assert_allclose(layer.grads["weight"], tw.grad.numpy(), rtol=1e-4, atol=1e-4)


# ---- backward against finite differences ---------------------------------------------------

def as64(layer):
    layer.weights = {k: v.astype(np.float64) for k, v in layer.weights.items()}
    return layer


@pytest.mark.parametrize("case", ACTIVATIONS, ids=[_id(c) for c in ACTIVATIONS])
def test_backward_matches_finite_differences(case):
    type_name, params = case
    x = randn((2, 4, 3, 3), seed=3, scale=2.5)
    x[np.abs(np.abs(x) - 3) < 0.01] += 0.05  # away from HardSwish's kinks at ±3
    x[np.abs(x) < 0.01] += 0.05  # and from 0
    check_layer(as64(built(type_name, params, (4, 3, 3))), [x])


def test_prelu_on_feature_vectors():
    layer = as64(built("PReLU", {"num_parameters": 6}, (6,)))
    check_layer(layer, [randn((3, 6), seed=8)])


BROADCASTS = [
    [(4, 3, 5), (4, 1, 1)],  # an SE gate: C×1×1 scales C×H×W
    [(4, 1, 1), (4, 3, 5)],  # the gate first
    [(4, 3, 5), (1, 1, 1)],  # one number
    [(4, 3, 5), (1, 3, 1)],  # along H
    [(4, 3, 5), (4, 1, 5)],  # along W
    [(1, 3, 5), (4, 1, 1), (4, 3, 1)],  # three inputs, none of the output's shape
    [(6,), (1,)],
]


@pytest.mark.parametrize("type_name", ["Multiply", "Add"])
@pytest.mark.parametrize("shapes", BROADCASTS, ids=[str(s) for s in BROADCASTS])
def test_broadcast_merges_backward_matches_finite_differences(type_name, shapes):
    layer = REGISTRY[type_name]("m")
    out = layer.output_shape(shapes)
    assert out == tuple(np.broadcast_shapes(*shapes))
    xs = [randn((2,) + s, seed=10 + i) for i, s in enumerate(shapes)]
    y = layer.forward([x.astype(np.float32) for x in xs])
    ref = xs[0]
    for x in xs[1:]:
        ref = ref * x if type_name == "Multiply" else ref + x
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32
    check_layer(layer, xs)


# ---- shape errors ------------------------------------------------------------------------

def se_graph(gate_channels: int = 8) -> Graph:
    """conv (8 channels) -> SE: global pool -> 1×1 conv (2) -> ReLU -> 1×1 conv -> Sigmoid
    gate, multiplied into the conv's map."""
    g = Graph("se")
    g.add_node("Input", "input", {"channels": 3, "height": 8, "width": 8}, node_id="input")
    specs = [("conv", "Conv2d", {"out_channels": 8, "kernel_size": 3, "padding": 1}),
             ("gap", "GlobalAvgPool2d", {}),
             ("squeeze", "Conv2d", {"out_channels": 2, "kernel_size": 1}),
             ("act", "SiLU", {}),
             ("excite", "Conv2d", {"out_channels": gate_channels, "kernel_size": 1}),
             ("gate", "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5})]
    prev = "input"
    for nid, t, p in specs:
        g.add_node(t, nid, p, node_id=nid)
        g.add_edge(prev, nid)
        prev = nid
    g.add_node("Multiply", "scale", {}, node_id="scale")
    g.add_edge("conv", "scale")
    g.add_edge("gate", "scale")
    return g


def test_a_gate_with_the_wrong_channel_count_names_the_layer_and_both_shapes():
    v = validate(se_graph(gate_channels=4))
    assert not v.ok
    (msg,) = [m for m in v.errors if m.node_id == "scale"]
    assert "Multiply 'scale'" in msg.text
    assert "4×1×1" in msg.text and "8×8×8" in msg.text
    assert "8 channels" in msg.text  # the fix
    with pytest.raises(Exception, match="same rank"):
        REGISTRY["Add"]("a").output_shape([(8, 4, 4), (8,)])


def test_prelu_slopes_must_be_one_or_the_channels():
    v = validate(sequential([("Input", "input", {"channels": 3, "height": 4, "width": 4}),
                             ("PReLU", "p", {"num_parameters": 5})]))
    (msg,) = v.errors
    assert "PReLU 'p'" in msg.text and "5" in msg.text and "3 channels" in msg.text
    assert msg.param == "num_parameters" and msg.fix.params == {"num_parameters": 3}


# ---- ONNX at opsets 13, 17, 20 -------------------------------------------------------------

EXPECTED_OPS = {  # (type, params) -> opset -> the op types written
    ("SiLU", ""): {13: ["Sigmoid", "Mul"], 17: ["Sigmoid", "Mul"], 20: ["Sigmoid", "Mul"]},
    ("HardSwish", ""): {13: ["HardSigmoid", "Mul"], 17: ["HardSwish"], 20: ["HardSwish"]},
    ("GELU", "none"): {13: ["Div", "Erf", "Add", "Mul", "Mul"],
                       17: ["Div", "Erf", "Add", "Mul", "Mul"], 20: ["Gelu"]},
    ("GELU", "tanh"): {13: ["Mul", "Mul", "Mul", "Add", "Mul", "Tanh", "Add", "Mul", "Mul"],
                       17: ["Mul", "Mul", "Mul", "Add", "Mul", "Tanh", "Add", "Mul", "Mul"],
                       20: ["Gelu"]},
}


def export_and_compare(g: Graph, opset: int, seed: int = 0, rtol: float = 1e-6):
    """Export at `opset` (checker and shape inference inside), run ONNX Runtime: the engine's
    output within 1e-5; import: the same graph, the same output. Returns the model, the
    imported graph."""
    rng = np.random.default_rng(seed)
    net = Network.compile(g, rng)
    w = net.state_dict()
    for k in w:  # slopes and biases away from their initial values
        if k.endswith((".weight", ".bias")) and w[k].ndim == 1:
            w[k] = rng.uniform(0.1, 0.9, w[k].shape).astype(np.float32)
    net.load_state_dict(w)
    model = export_onnx(g, w, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    x = (rng.standard_normal((3,) + net.input_shape) * 3).astype(np.float32)
    y = net.forward(x)
    # 1e-5 absolute, and float32's own rounding on large products (a 4-input Multiply)
    np.testing.assert_allclose(OnnxModel(model, providers=[CPU]).run(x), y, atol=1e-5, rtol=rtol)
    imp = import_onnx(model.SerializeToString())
    np.testing.assert_allclose(imp.network().forward(x), y, atol=1e-5, rtol=1e-5)
    return model, imp.graph


def strip(graph: Graph) -> list:
    """Types, names and parameters (floats as float32 carries them: 1/6 comes back 0.16666667)."""
    def canon(params):
        return {k: float(np.float32(v)) if isinstance(v, float) else v
                for k, v in params.items()}

    return sorted((n.type_name, n.name, canon(REGISTRY[n.type_name](n.name, **n.params).values))
                  for n in graph.nodes.values())


@pytest.mark.parametrize("opset", [13, 17, 20])
@pytest.mark.parametrize("case", ACTIVATIONS, ids=[_id(c) for c in ACTIVATIONS])
def test_onnx_export_at_each_opset_runs_and_imports_back(case, opset):
    type_name, params = case
    g = sequential([("Input", "input", {"channels": 4, "height": 5, "width": 5}),
                    ("Conv2d", "conv", {"out_channels": 4, "kernel_size": 3, "padding": 1}),
                    (type_name, "act", params),
                    ("Conv2d", "head", {"out_channels": 2, "kernel_size": 1})], name="t")
    model, back = export_and_compare(g, opset)
    ops = [n.op_type for n in model.graph.node][1:-1]  # between the two convolutions
    want = EXPECTED_OPS.get((type_name, params.get("approximate", "")))
    if want is not None:
        assert ops == want[opset]
    assert strip(back) == strip(g)


def test_se_block_round_trips_at_each_opset():
    g = se_graph()
    for opset in (13, 17, 20):
        model, back = export_and_compare(g, opset)
        assert strip(back) == strip(g)
        assert [n.op_type for n in model.graph.node][-1] == "Mul"


@pytest.mark.parametrize("n", [2, 3, 4])
def test_multiply_of_several_inputs_round_trips_as_one_layer(n):
    g = Graph("m")
    g.add_node("Input", "input", {"channels": 2, "height": 4, "width": 4}, node_id="input")
    for i in range(n):
        g.add_node("Conv2d", f"c{i}", {"out_channels": 3 if i else 1, "kernel_size": 3,
                                       "padding": 1}, node_id=f"c{i}")
        g.add_edge("input", f"c{i}")
    g.add_node("Multiply", "prod", {}, node_id="prod")
    for i in range(n):
        g.add_edge(f"c{i}", "prod")
    model, back = export_and_compare(g, 17, rtol=1e-5)  # k-fold products: k roundings
    assert [nd.op_type for nd in model.graph.node].count("Mul") == n - 1
    assert strip(back) == strip(g)
    assert [e.port for e in back.edges if e.dst == "prod"] == list(range(n))


# ---- import of forms written by hand (single ops, other writers' decompositions) -----------

def hand_model(nodes, inits: dict, opset: int, shape=(2, 3, 3)):
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, *shape])],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k)
                     for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def import_and_check(model, shape=(2, 3, 3)):
    imp = import_onnx(model)
    x = (np.random.default_rng(0).standard_normal((1, *shape)) * 3).astype(np.float32)
    ort = OnnxModel(model, providers=[CPU]).run(x)
    np.testing.assert_allclose(imp.network().forward(x), ort, atol=1e-5, rtol=1e-5)
    return [(n.type_name, n.params) for n in imp.graph.nodes.values()][1:]


def test_single_op_forms_import():
    for op, attrs, want in [
        ("Gelu", {}, ("GELU", {"approximate": "none"})),
        ("Gelu", {"approximate": "tanh"}, ("GELU", {"approximate": "tanh"})),
        ("HardSwish", {}, ("HardSwish", {})),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.6}, ("HardSigmoid", {"alpha": 0.3,
                                                                     "beta": 0.6})),
        ("Elu", {"alpha": 0.5}, ("ELU", {"alpha": 0.5})),
    ]:
        m = hand_model([helper.make_node(op, ["x"], ["y"], **attrs)], {}, 20)
        assert import_and_check(m) == [want], op


def test_prelu_slopes_of_every_supported_shape_import():
    for slope, n in [([0.2], 1), (np.array([0.1, 0.4]).reshape(2, 1, 1), 2)]:
        m = hand_model([helper.make_node("PRelu", ["x", "s"], ["y"])], {"s": slope}, 17)
        assert import_and_check(m) == [("PReLU", {"num_parameters": n})]
    m = hand_model([helper.make_node("PRelu", ["x", "s"], ["y"])], {"s": [0.1, 0.2, 0.3]}, 17)
    with pytest.raises(Exception, match="slope of shape 3"):
        import_onnx(m)


def test_decompositions_with_constants_first_and_constant_nodes_import():
    """PyTorch writes Mul(0.5, t) and Constant nodes: the patterns match inputs in either order
    of Add and Mul, and constants from Constant nodes."""
    def const(name, v):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
            np.array(v, np.float32)))

    gelu = [const("r2", math.sqrt(2)), const("one", 1.0), const("half", 0.5),
            helper.make_node("Div", ["x", "r2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["one", "e"], ["a"]), helper.make_node("Mul", ["a", "x"], ["m"]),
            helper.make_node("Mul", ["half", "m"], ["y"])]
    assert import_and_check(hand_model(gelu, {}, 13)) == [("GELU", {"approximate": "none"})]
    silu = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "x"], ["y"])]
    assert import_and_check(hand_model(silu, {}, 13)) == [("SiLU", {})]
    hswish = [helper.make_node("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.5),
              helper.make_node("Mul", ["x", "h"], ["y"])]
    assert import_and_check(hand_model(hswish, {}, 13)) == [("HardSwish", {})]


def test_a_partial_pattern_stays_separate_layers():
    """Sigmoid(x) read by a Mul *and* elsewhere is not a SiLU: its nodes stay layers."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["m"]),
             helper.make_node("Add", ["m", "s"], ["y"])]
    got = [t for t, _ in import_and_check(hand_model(nodes, {}, 17))]
    assert sorted(got) == ["Add", "Multiply", "Sigmoid"]


def test_foreign_identity_is_wired_through_ours_is_kept():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])]
    assert [t for t, _ in import_and_check(hand_model(nodes, {}, 17))] == ["ReLU"]
