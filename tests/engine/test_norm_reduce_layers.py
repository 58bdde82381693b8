"""The modern building blocks: ReduceMean / ReduceMax, GlobalMaxPool2d, LayerNorm2d, GroupNorm,
Scale, Flatten from a later axis, Linear over the last axis, Concat of one input.

Forward against PyTorch (skipped without torch), backward against float64 finite differences,
ONNX export at opsets 13, 17, 18 and 21 (checker-clean, ONNX Runtime equal to the engine within
1e-5, imported back to the same graph), import of the single-op forms other writers use, and the
errors a user meets (naming the layer, the numbers, and a fix).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ShapeError
from engine.graph import Graph, sequential
from engine.layers import REGISTRY
from engine.layers.norm import nearest_divisor
from engine.nn.network import Network
from engine.onnx.export import export_onnx
from engine.onnx.importer import import_onnx
from engine.onnx.runtime import CPU as CPU_PROVIDER
from engine.onnx.runtime import OnnxModel
from engine.validate import validate
from tests.engine.test_gradients import check_layer, make_layer, randn
from tests.engine.test_onnx import comparable, randomized

ATOL = 1e-5


def layer_with_weights(type_name, params, in_shape, seed=0):
    """A float32 layer with random (non-trivial) weights."""
    rng = np.random.default_rng(seed)
    layer = REGISTRY[type_name]("t", **params)
    layer.output_shape([in_shape])
    layer.init_weights([in_shape], rng)
    for k, v in layer.weights.items():
        layer.weights[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32) if k == "weight" \
            else rng.standard_normal(v.shape).astype(np.float32)
    return layer


# ---- forward (and backward) against PyTorch ----------------------------------------------

TORCH_CASES = [
    ("LayerNorm2d", {}, (8, 5, 6)),
    ("LayerNorm2d", {"eps": 1e-5}, (3, 1, 1)),
    ("GroupNorm", {"num_groups": 4}, (8, 5, 6)),
    ("GroupNorm", {"num_groups": 1, "affine": False, "eps": 1e-3}, (6, 3, 4)),
    ("Scale", {}, (8, 5, 6)),
    ("ReduceMean", {}, (8, 5, 6)),
    ("ReduceMean", {"axes": "C", "keep_dims": False}, (8, 5, 6)),
    ("ReduceMax", {"axes": "H,W", "keep_dims": False}, (8, 5, 6)),
    ("ReduceMax", {"axes": "C,W"}, (8, 5, 6)),
    ("GlobalMaxPool2d", {}, (8, 5, 6)),
    ("Flatten", {"start_dim": 2}, (8, 5, 6)),
    ("Flatten", {"start_dim": 3}, (8, 5, 6)),
    ("Linear", {"out_features": 7, "over": "last_axis"}, (8, 5, 6)),
    ("Linear", {"out_features": 7, "over": "last_axis", "bias": False}, (8, 30)),
    ("Linear", {"out_features": 7, "over": "channels"}, (8, 5, 6)),
    ("Linear", {"out_features": 3, "over": "channels", "bias": False}, (4, 2, 3)),
]


def torch_reference(type_name, layer, x):
    """The PyTorch module (or function) computing what the layer should, with its weights."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    w = {k: torch.from_numpy(v.copy()) for k, v in layer.weights.items()}
    p = layer.values
    if type_name == "LayerNorm2d":
        ln = nn.LayerNorm(x.shape[1], eps=p["eps"])
        ln.weight.data, ln.bias.data = w["weight"], w["bias"]
        return lambda t: ln(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    if type_name == "GroupNorm":
        gn = nn.GroupNorm(p["num_groups"], x.shape[1], eps=p["eps"], affine=p["affine"])
        if p["affine"]:
            gn.weight.data, gn.bias.data = w["weight"], w["bias"]
        return gn
    if type_name == "Scale":
        return lambda t: t * w["weight"].view(-1, 1, 1)
    if type_name in ("ReduceMean", "ReduceMax"):
        from engine.layers.reduce import AXES

        dims = tuple(a + 1 for a in AXES[p["axes"]])
        fn = torch.mean if type_name == "ReduceMean" else torch.amax
        return lambda t: fn(t, dim=dims, keepdim=p["keep_dims"])
    if type_name == "GlobalMaxPool2d":
        return nn.AdaptiveMaxPool2d(1)
    if type_name == "Flatten":
        return nn.Flatten(p["start_dim"])
    if type_name == "Linear":
        channels = p["over"] == "channels"  # nn.Linear on the channels-last map (ConvNeXt)
        lin = nn.Linear(x.shape[1 if channels else -1], p["out_features"], bias=p["bias"])
        lin.weight.data = w["weight"]
        if p["bias"]:
            lin.bias.data = w["bias"]
        if channels:
            return lambda t: lin(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return lin
    raise AssertionError(type_name)


@pytest.mark.parametrize("type_name,params,shape", TORCH_CASES,
                         ids=[f"{t}-{p}" for t, p, _ in TORCH_CASES])
def test_forward_and_backward_match_pytorch(type_name, params, shape):
    torch = pytest.importorskip("torch")
    layer = layer_with_weights(type_name, params, shape)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4,) + shape).astype(np.float32)
    ref = torch_reference(type_name, layer, x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = ref(xt)
    y = layer.forward([x], training=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want.detach().numpy(), atol=ATOL, rtol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (dx,) = layer.backward(dy)
    want.backward(torch.from_numpy(dy))
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-4, rtol=1e-4)


# ---- backward against float64 finite differences ------------------------------------------

GRAD_CASES = TORCH_CASES + [
    ("Scale", {"init_value": 0.5}, (6,)),
    ("GroupNorm", {"num_groups": 2}, (4, 3, 3)),
    ("ReduceMean", {"axes": "C,H,W"}, (3, 2, 3)),
    ("ReduceMax", {"axes": "C", "keep_dims": False}, (3, 2, 3)),
]


@pytest.mark.parametrize("type_name,params,shape", GRAD_CASES,
                         ids=[f"{t}-{p}-{s}" for t, p, s in GRAD_CASES])
def test_gradients_match_finite_differences(type_name, params, shape):
    small = tuple(min(d, 4) for d in shape) if type_name != "Linear" else shape[:1] + (3, 4)
    if type_name == "GroupNorm":
        small = shape if shape[0] <= 4 else (params["num_groups"] * 2, 3, 3)
    layer = make_layer(type_name, params, [small])
    check_layer(layer, [randn((2,) + small, seed=3)])


# ---- ONNX at every opset family -----------------------------------------------------------

ONNX_CASES = [
    ("ReduceMean", {}, (4, 5, 6)),
    ("ReduceMean", {"axes": "C,H", "keep_dims": False}, (4, 5, 6)),
    ("ReduceMax", {"axes": "H"}, (4, 5, 6)),
    ("GlobalMaxPool2d", {}, (4, 5, 6)),
    ("LayerNorm2d", {}, (4, 5, 6)),
    ("GroupNorm", {"num_groups": 2, "eps": 1e-4}, (4, 5, 6)),
    ("GroupNorm", {"num_groups": 4, "affine": False}, (4, 5, 6)),
    ("Scale", {"init_value": 0.25}, (4, 5, 6)),
    ("Flatten", {"start_dim": 2}, (4, 5, 6)),
    ("Linear", {"out_features": 3, "over": "last_axis"}, (4, 5, 6)),
    ("Linear", {"out_features": 3, "over": "channels"}, (4, 5, 6)),
]


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
@pytest.mark.parametrize("type_name,params,shape", ONNX_CASES,
                         ids=[f"{t}-{p}" for t, p, _ in ONNX_CASES])
def test_onnx_export_at_each_opset_matches_and_imports_back(type_name, params, shape, opset):
    c, h, w = shape
    g = sequential([("Input", "input", {"channels": c, "height": h, "width": w}),
                    (type_name, "layer", params)], name="t")
    rng = np.random.default_rng(2)
    net = Network.compile(g, rng)
    weights = randomized(net, rng)
    net.load_state_dict(weights)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    model = export_onnx(g, weights, opset=opset)  # checker (full) and shape inference inside
    assert model.opset_import[0].version == opset
    y = net.forward(x)
    np.testing.assert_allclose(OnnxModel(model, providers=[CPU_PROVIDER]).run(x), y, atol=ATOL,
                               rtol=1e-4)
    imp = import_onnx(model.SerializeToString())
    assert comparable(imp.graph) == comparable(g)
    np.testing.assert_allclose(imp.network().forward(x), y, atol=ATOL, rtol=1e-4)


def test_reduce_axes_are_an_attribute_before_opset_18_and_an_input_from_18():
    g = sequential([("Input", "input", {"channels": 2, "height": 3, "width": 3}),
                    ("ReduceMean", "gap", {})], name="t")
    old = export_onnx(g, {}, opset=17).graph.node[0]
    assert [a.name for a in old.attribute] == ["axes", "keepdims"] and len(old.input) == 1
    new = export_onnx(g, {}, opset=18)
    assert len(new.graph.node[0].input) == 2
    axes = {i.name: numpy_helper.to_array(i) for i in new.graph.initializer}["gap.axes"]
    assert axes.dtype == np.int64 and list(axes) == [2, 3]


def test_layernorm_export_form_per_opset():
    g = sequential([("Input", "input", {"channels": 3, "height": 2, "width": 2}),
                    ("LayerNorm2d", "ln", {})], name="t")
    w = Network.compile(g, np.random.default_rng(0)).state_dict()
    ops = {o: [n.op_type for n in export_onnx(g, w, opset=o).graph.node] for o in (13, 17)}
    assert "LayerNormalization" not in ops[13] and ops[13][0] == "ReduceMean"
    assert ops[17] == ["Transpose", "LayerNormalization", "Transpose"]


# ---- import of other writers' single-op forms ----------------------------------------------

def one_op_model(nodes, inits, out_shape, in_shape=(4, 3, 5), opset=13):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape])
    g = helper.make_graph(nodes, "g", [x], [y],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def ort(model, x):
    return OnnxModel(model, providers=[CPU_PROVIDER]).run(x)


@pytest.mark.parametrize("form", ["attribute", "input"])
@pytest.mark.parametrize("keep", [1, 0])
def test_import_reduce_mean_with_axes_attribute_or_input(form, keep):
    out = (4, 1, 1) if keep else (4,)
    if form == "attribute":
        node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[-2, -1], keepdims=keep)
        m = one_op_model([node], {}, out, opset=13)
    else:
        node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keep)
        m = one_op_model([node], {"axes": np.array([2, 3], np.int64)}, out, opset=18)
    imp = import_onnx(m.SerializeToString())
    (layer,) = [n for n in imp.graph.nodes.values() if n.type_name != "Input"]
    if keep:  # a foreign ReduceMean over H, W keeping them is global average pooling
        assert layer.type_name == "GlobalAvgPool2d"
    else:
        assert layer.type_name == "ReduceMean" and layer.params == {"axes": "H,W",
                                                                     "keep_dims": False}
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(imp.network().forward(x), ort(m, x), atol=ATOL)


def test_import_reduce_over_the_batch_is_refused_by_name():
    node = helper.make_node("ReduceMax", ["x"], ["y"], name="rmax", axes=[0], keepdims=1)
    with pytest.raises(Exception, match="rmax.*batch"):
        import_onnx(one_op_model([node], {}, (4, 3, 5)).SerializeToString())


def test_import_global_max_pool():
    m = one_op_model([helper.make_node("GlobalMaxPool", ["x"], ["y"])], {}, (4, 1, 1))
    imp = import_onnx(m.SerializeToString())
    assert [n.type_name for n in imp.graph.nodes.values()] == ["Input", "GlobalMaxPool2d"]
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(imp.network().forward(x), ort(m, x), atol=ATOL)


def test_import_layer_normalization_between_transposes():
    """ConvNeXt's LayerNorm2d as PyTorch exports it from opset 17."""
    rng = np.random.default_rng(1)
    scale = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["t", "s", "b"], ["n"], axis=-1,
                              epsilon=1e-6),
             helper.make_node("Transpose", ["n"], ["y"], name="norm", perm=[0, 3, 1, 2])]
    m = one_op_model(nodes, {"s": scale, "b": bias}, (4, 3, 5), opset=17)
    imp = import_onnx(m.SerializeToString())
    (layer,) = [n for n in imp.graph.nodes.values() if n.type_name != "Input"]
    assert layer.type_name == "LayerNorm2d" and layer.params["eps"] == 1e-6
    assert layer.name == "norm"
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(imp.network().forward(x), ort(m, x), atol=ATOL)


def test_import_group_norm_chain_as_pytorch_writes_it():
    """Reshape(0, G, -1) -> InstanceNormalization -> Reshape back (to a shape folded from
    Shape(x)) -> Mul γ -> Add β, γ and β as 1-D unsqueezed constants (C×1×1)."""
    rng = np.random.default_rng(2)
    gamma = rng.uniform(0.5, 1.5, (4, 1, 1)).astype(np.float32)
    beta = rng.standard_normal((4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["x", "gshape"], ["r"]),
             helper.make_node("InstanceNormalization", ["r", "ones", "zeros"], ["i"],
                              epsilon=1e-5),
             helper.make_node("Shape", ["x"], ["xs"]),
             helper.make_node("Reshape", ["i", "xs"], ["b"]),
             helper.make_node("Mul", ["b", "gamma"], ["m"]),
             helper.make_node("Add", ["m", "beta"], ["y"])]
    inits = {"gshape": np.array([0, 2, -1], np.int64), "ones": np.ones(2, np.float32),
             "zeros": np.zeros(2, np.float32), "gamma": gamma, "beta": beta}
    m = one_op_model(nodes, inits, (4, 3, 5), opset=13)
    imp = import_onnx(m.SerializeToString())
    (layer,) = [n for n in imp.graph.nodes.values() if n.type_name != "Input"]
    assert layer.type_name == "GroupNorm" and layer.params["num_groups"] == 2
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(imp.network().forward(x), ort(m, x), atol=ATOL)


def test_import_matmul_on_a_map_is_linear_over_the_last_axis():
    rng = np.random.default_rng(3)
    wt = rng.standard_normal((5, 2)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"], name="mlp"),
             helper.make_node("Add", ["p", "b"], ["y"])]
    m = one_op_model(nodes, {"w": wt, "b": b}, (4, 3, 2))
    imp = import_onnx(m.SerializeToString())
    (layer,) = [n for n in imp.graph.nodes.values() if n.type_name != "Input"]
    assert layer.type_name == "Linear" and layer.params["over"] == "last_axis"
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(imp.network().forward(x), ort(m, x), atol=ATOL)


def test_import_channels_last_matmul_is_linear_over_the_channels():
    """torch.onnx's nn.Linear on a channels-last map (ConvNeXt's pointwise layers)."""
    rng = np.random.default_rng(4)
    wt = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["t", "w"], ["p"], name="pwconv"),
             helper.make_node("Add", ["p", "b"], ["a"]),
             helper.make_node("Transpose", ["a"], ["y"], perm=[0, 3, 1, 2])]
    m = one_op_model(nodes, {"w": wt, "b": b}, (4, 3, 5))
    imp = import_onnx(m.SerializeToString())
    (layer,) = [n for n in imp.graph.nodes.values() if n.type_name != "Input"]
    assert layer.type_name == "Linear" and layer.params["over"] == "channels"
    assert layer.name == "pwconv" and imp.weights["pwconv.weight"].shape == (6, 4)
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(imp.network().forward(x), ort(m, x), atol=ATOL)


# ---- what a user meets when it goes wrong ------------------------------------------------

def test_group_norm_groups_must_divide_the_channels_with_the_nearest_divisor_as_fix():
    g = sequential([("Input", "input", {"channels": 48, "height": 4, "width": 4}),
                    ("GroupNorm", "gn", {"num_groups": 32})], name="t")
    v = validate(g)
    (m,) = [m for m in v.errors if m.node_id == "gn"]
    assert "'gn'" in m.text and "32" in m.text and "48" in m.text and m.param == "num_groups"
    assert m.fix.params == {"num_groups": 24}  # 24 is the divisor of 48 nearest 32
    assert nearest_divisor(48, 32) == 24 and nearest_divisor(7, 3) == 1
    assert nearest_divisor(12, 5) == 4  # 4 and 6 tie: the smaller


def test_reduce_all_axes_without_keep_dims_is_refused_with_a_fix():
    layer = REGISTRY["ReduceMean"]("rm", axes="C,H,W", keep_dims=False)
    with pytest.raises(ShapeError, match="'rm'.*3×4×5") as e:
        layer.output_shape([(3, 4, 5)])
    assert e.value.param == "keep_dims" and e.value.fix.params == {"keep_dims": True}


def test_flatten_start_past_the_last_axis_names_the_numbers():
    layer = REGISTRY["Flatten"]("f", start_dim=3)
    with pytest.raises(ShapeError, match="'f'.*start_dim 3.*16×30") as e:
        layer.output_shape([(16, 30)])
    assert e.value.param == "start_dim" and e.value.fix.params == {"start_dim": 1}


def test_linear_after_a_map_still_asks_for_a_flatten_unless_over_the_last_axis():
    specs = [("Input", "input", {"channels": 2, "height": 3, "width": 4}),
             ("Linear", "fc", {"out_features": 5})]
    m = next(m for m in validate(sequential(specs)).errors if m.node_id == "fc")
    assert "Flatten" in m.text and m.fix.layer_type == "Flatten" and "2×3×4" in m.text
    assert "'channels'" in m.text and "2 channels" in m.text
    specs[1] = ("Linear", "fc", {"out_features": 5, "over": "last_axis"})
    v = validate(sequential(specs))
    assert v.ok and v.nodes["fc"].out_shape == (2, 3, 5)
    assert v.nodes["fc"].trainable_params == (4 + 1) * 5
    assert v.nodes["fc"].macs == 2 * 3 * 4 * 5
    specs[1] = ("Linear", "fc", {"out_features": 5, "over": "channels"})
    v = validate(sequential(specs))
    assert v.ok and v.nodes["fc"].out_shape == (5, 3, 4)
    assert v.nodes["fc"].trainable_params == (2 + 1) * 5
    assert v.nodes["fc"].macs == 3 * 4 * 2 * 5


def test_concat_of_one_input_is_an_identity():
    """torchvision's DenseNet writes torch.cat([x], 1)."""
    g = Graph("t")
    g.add_node("Input", "input", {"channels": 2, "height": 3, "width": 3}, node_id="input")
    g.add_node("Concat", "cat", {}, node_id="cat")
    g.add_node("ReLU", "relu", {}, node_id="relu")
    g.add_edge("input", "cat")
    g.add_edge("cat", "relu")
    v = validate(g)
    assert v.ok and v.nodes["cat"].out_shape == (2, 3, 3)
    net = Network.compile(g, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 2, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(net.forward(x), np.maximum(x, 0))
    model = export_onnx(g, {})
    np.testing.assert_allclose(ort(model, x), np.maximum(x, 0))
    assert comparable(import_onnx(model.SerializeToString()).graph) == comparable(g)


def test_formulas_show_the_real_numbers():
    ln = REGISTRY["LayerNorm2d"]("ln")
    assert any("30 positions" in t and "8 channel" in t for t in ln.formula([(8, 5, 6)]))
    gn = REGISTRY["GroupNorm"]("gn", num_groups=4)
    assert any("8 / 4 = 2" in t and "60" in t for t in gn.formula([(8, 5, 6)]))
    rm = REGISTRY["ReduceMean"]("rm")
    assert any("30 values" in t for t in rm.formula([(8, 5, 6)]))
    assert any("8×5×6 → 8×1×1" in t for t in rm.formula([(8, 5, 6)]))
    fl = REGISTRY["Flatten"]("f", start_dim=2)
    assert any("8×5×6 → 8×30" in t for t in fl.formula([(8, 5, 6)]))
    lin = REGISTRY["Linear"]("fc", out_features=3, over="last_axis")
    assert "40 rows" in lin.macs_formula([(8, 5, 6)], (8, 5, 3)).text
    lin = REGISTRY["Linear"]("fc", out_features=3, over="channels")
    assert "30 positions" in lin.macs_formula([(8, 5, 6)], (3, 5, 6)).text
    assert lin.param_formula([(8, 5, 6)]).trainable == 27


def test_pytorch_code_of_a_linear_over_the_channels_permutes_around_nn_linear(tmp_path):
    from tests.engine.test_registry import assert_pytorch_matches

    specs = [("Input", "input", {"channels": 4, "height": 3, "width": 5}),
             ("Linear", "pwconv", {"out_features": 6, "over": "channels"})]
    src = assert_pytorch_matches(sequential(specs), tmp_path)
    assert "nn.Linear(4, 6)" in src and ".permute(0, 2, 3, 1)).permute(0, 3, 1, 2)" in src


@pytest.mark.parametrize("type_name, params, n", [
    ("LayerNorm2d", {}, 8), ("GroupNorm", {"num_groups": 2}, 8),
    ("GroupNorm", {"num_groups": 2, "affine": False}, 0),
])
def test_affine_norms_share_gamma_one_beta_zero_and_count_them(type_name, params, n):
    """LayerNorm2d and GroupNorm share their γ/β code (norm._ChannelAffineNorm): γ = 1 and
    β = 0 at the start (a new layer outputs x̂), 2·C trainable, none with affine off."""
    layer = REGISTRY[type_name]("x", **params)
    shape = (4, 3, 3)
    layer.init_weights([shape], np.random.default_rng(0))
    assert layer.param_formula([shape]).trainable == n
    assert layer.param_count([shape]) == (n, 0)
    if n:
        np.testing.assert_array_equal(layer.weights["weight"], np.ones(4, np.float32))
        np.testing.assert_array_equal(layer.weights["bias"], np.zeros(4, np.float32))
    else:
        assert layer.weights == {} and layer.trainable_names() == []
    x = randn((2,) + shape).astype(np.float32)
    # at the start y is x̂: over each group (GroupNorm, 2 groups), or over the channels of
    # each position (LayerNorm2d)
    if type_name == "GroupNorm":
        xs, axis, eps = x.reshape(2, 2, -1), 2, 1e-5
    else:
        xs, axis, eps = x, 1, 1e-6
    want = (xs - xs.mean(axis, keepdims=True)) / np.sqrt(xs.var(axis, keepdims=True) + eps)
    np.testing.assert_allclose(layer.forward([x]), want.reshape(x.shape), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 1.0, 100.0])
def test_group_norm_statistics_keep_their_digits_for_large_means(offset):
    """var = Σx²/M − μ² loses digits when the mean dwarfs the spread; those groups are
    recomputed two-pass, so 1/σ stays exact at mean 100, spread 1. The output, x·a + b
    (PyTorch's form too), then rounds at the input's magnitude: ~ulp(μ)/σ absolute
    (measured 1.4e-5 at mean 100; PyTorch's group_norm 1.0e-5), ~4e-7 at mean 0 or 1."""
    from engine.layers.norm import _group_stats

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 8, 16, 16)) + offset).astype(np.float32)
    x64 = x.astype(np.float64).reshape(2 * 4, -1)
    mean, inv = _group_stats(x.reshape(2 * 4, -1), np.float32(1e-5))
    assert np.abs(mean - x64.mean(1)).max() <= 2e-7 * max(1.0, offset)
    assert np.abs(inv * np.sqrt(x64.var(1) + 1e-5) - 1).max() <= 2e-6
    layer = REGISTRY["GroupNorm"]("gn", num_groups=4)
    layer.init_weights([x.shape[1:]], rng)
    want = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    bound = 2e-6 + 4 * np.spacing(np.float32(offset + 4))
    assert np.abs(layer.forward([x]) - want.reshape(x.shape)).max() <= bound
