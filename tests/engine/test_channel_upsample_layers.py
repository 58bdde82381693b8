"""ChannelShuffle, ChannelSplit (several outputs), ConvTranspose2d and Upsample: forward against
PyTorch, backward against float64 finite differences, ONNX export / ONNX Runtime parity /
import, and the messages for bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ShapeError
from engine.formulas import output_size_lines
from engine.graph import Graph
from engine.layers import REGISTRY
from engine.nn.network import Network
from engine.validate import validate
from tests.engine.test_gradients import check_layer, make_layer, numeric_grad, randn

CONVT = "ConvTranspose2d"

# (type, params, input C×H×W) checked against PyTorch and by finite differences
CASES = [
    ("ChannelShuffle", {"groups": 2}, (6, 3, 4)),
    ("ChannelShuffle", {"groups": 3}, (12, 2, 2)),
    ("ChannelShuffle", {"groups": 4}, (8, 1, 3)),
    (CONVT, {"out_channels": 4, "kernel_size": 2, "stride": 2}, (3, 3, 4)),
    (CONVT, {"out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1,
             "output_padding": 1}, (2, 4, 3)),
    (CONVT, {"out_channels": 4, "kernel_size": [3, 2], "stride": [1, 3], "padding": [1, 0],
             "output_padding": [0, 2], "bias": False}, (2, 3, 3)),
    (CONVT, {"out_channels": 6, "kernel_size": 3, "stride": 2, "groups": 2, "dilation": 2,
             "output_padding": 1}, (4, 3, 3)),
    (CONVT, {"out_channels": 4, "kernel_size": 4, "stride": 3, "padding": 2,
             "groups": 4}, (4, 4, 4)),
    ("Upsample", {"mode": "nearest", "scale_factor": 2}, (2, 3, 4)),
    ("Upsample", {"mode": "nearest", "scale_factor": 3}, (1, 2, 2)),
    ("Upsample", {"mode": "nearest", "size": [7, 5]}, (2, 3, 4)),
    ("Upsample", {"mode": "nearest", "size": [6, 12]}, (2, 3, 4)),
    ("Upsample", {"mode": "bilinear", "scale_factor": 2}, (2, 3, 4)),
    ("Upsample", {"mode": "bilinear", "scale_factor": 3}, (2, 4, 3)),
    ("Upsample", {"mode": "bilinear", "size": [7, 5]}, (2, 3, 4)),
    ("Upsample", {"mode": "bilinear", "size": [8, 8]}, (2, 4, 4)),
]
IDS = [f"{t}-{'-'.join(f'{k}{v}' for k, v in p.items())}".replace(" ", "") for t, p, _ in CASES]


def torch_module(type_name, params, c):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    if type_name == "ChannelShuffle":
        return nn.ChannelShuffle(params["groups"])
    if type_name == "Upsample":
        kw = {"size": tuple(params["size"])} if "size" in params else {
            "scale_factor": params["scale_factor"]}
        if params["mode"] == "bilinear":
            kw["align_corners"] = False
        return nn.Upsample(mode=params["mode"], **kw)
    layer = REGISTRY[type_name]("x", **params)
    return nn.ConvTranspose2d(c, layer.out_channels, tuple(layer.kernel_size),
                              tuple(layer.stride), tuple(layer.padding),
                              tuple(layer.output_padding), layer.groups, layer.bias,
                              tuple(layer.dilation))


@pytest.mark.parametrize("type_name, params, shape", CASES, ids=IDS)
def test_forward_matches_pytorch_and_backward_matches_autograd(type_name, params, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer = REGISTRY[type_name]("x", **params)
    out = layer.output_shape([shape])
    layer.init_weights([shape], rng)
    if "bias" in layer.weights:
        layer.weights["bias"][...] = rng.standard_normal(layer.weights["bias"].shape)
    mod = torch_module(type_name, params, shape[0])
    with torch.no_grad():
        for k, v in layer.weights.items():
            getattr(mod, k).copy_(torch.from_numpy(v))
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    y = layer.forward([x], training=True)
    assert y.dtype == np.float32 and y.shape == (3, *out)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = mod(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (dx,) = layer.backward(dy)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    for k in layer.grads:
        np.testing.assert_allclose(layer.grads[k], getattr(mod, k).grad.numpy(), rtol=1e-4,
                                   atol=1e-4, err_msg=k)


def test_split_matches_torch_chunk():
    torch = pytest.importorskip("torch")
    layer = REGISTRY["ChannelSplit"]("s", sections=3)
    x = np.random.default_rng(1).standard_normal((2, 9, 3, 2)).astype(np.float32)
    ys = layer.forward([x])
    want = torch.chunk(torch.from_numpy(x), 3, dim=1)
    assert len(ys) == 3 == layer.num_outputs()
    for a, b in zip(ys, want):
        np.testing.assert_array_equal(a, b.numpy())
    assert layer.output_shapes([(9, 3, 2)]) == [(3, 3, 2)] * 3


@pytest.mark.parametrize("type_name, params, shape", CASES, ids=IDS)
def test_backward_matches_finite_differences(type_name, params, shape):
    layer = make_layer(type_name, params, [shape])
    check_layer(layer, [randn((2, *shape), seed=3)])


def test_split_backward_with_gradients_on_some_ports_only():
    """The network gives zeros to an unread port; the layer's backward sums them back in
    place; finite differences of a loss that reads ports 0 and 2 only agree."""
    layer = make_layer("ChannelSplit", {"sections": 3}, [(6, 2, 3)])
    x = randn((2, 6, 2, 3), seed=4)
    rng = np.random.default_rng(5)
    r0, r2 = rng.standard_normal((2, 2, 2, 3)), rng.standard_normal((2, 2, 2, 3))

    def loss():
        ys = layer.forward([x], training=True)
        return float((ys[0] * r0).sum() + (ys[2] * r2).sum())

    layer.forward([x], training=True)
    (dx,) = layer.backward([r0, np.zeros_like(r0), r2])
    assert dx.dtype == np.float64 and dx.shape == x.shape
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    assert not dx[:, 2:4].any()


def test_network_routes_split_ports_and_trains_through_them():
    g = Graph("split")
    g.add_node("Input", "input", {"channels": 2, "height": 4, "width": 4}, node_id="input")
    g.add_node("Conv2d", "conv", {"out_channels": 8, "kernel_size": 1}, node_id="conv")
    g.add_node("ChannelSplit", "split", {"sections": 2}, node_id="split")
    g.add_node("ConvTranspose2d", "up", {"out_channels": 4}, node_id="up")
    g.add_node("Upsample", "nn", {"mode": "bilinear"}, node_id="nn")
    g.add_node("Concat", "cat", {}, node_id="cat")
    g.add_node("ChannelShuffle", "shuffle", {"groups": 2}, node_id="shuffle")
    for a, b, port in [("input", "conv", 0), ("conv", "split", 0), ("split", "up", 0),
                       ("split", "nn", 1), ("up", "cat", 0), ("nn", "cat", 0),
                       ("cat", "shuffle", 0)]:
        g.add_edge(a, b, src_port=port)
    v = validate(g)
    assert v.ok, [m.text for m in v.errors]
    assert v.nodes["split"].out_shapes == [(4, 4, 4), (4, 4, 4)]
    assert v.nodes["shuffle"].out_shape == (8, 8, 8)
    net = Network.compile(g, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    keep = net.forward(x, keep=True)
    y = keep["shuffle"]
    assert y.shape == (2, 8, 8, 8) and y.dtype == np.float32
    net.forward(x, training=True)
    dx = net.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    # the shuffle interleaves the two concatenated halves
    cat = np.concatenate([keep["up"], keep["nn"]], axis=1)
    np.testing.assert_array_equal(y[:, 0::2], cat[:, :4])
    np.testing.assert_array_equal(y[:, 1::2], cat[:, 4:])


# ---- ONNX -------------------------------------------------------------------------------

def onnx_graph(type_name, params, shape) -> Graph:
    c, h, w = shape
    g = Graph("t")
    g.add_node("Input", "input", {"channels": c, "height": h, "width": w}, node_id="input")
    g.add_node(type_name, "layer", params, node_id="layer")
    g.add_edge("input", "layer")
    if type_name == "ChannelSplit":  # every port read: a Concat of the reversed parts
        g.add_node("Concat", "cat", {}, node_id="cat")
        for k in reversed(range(params["sections"])):
            g.add_node("ReLU", f"r{k}", {}, node_id=f"r{k}")
            g.add_edge("layer", f"r{k}", src_port=k)
            g.add_edge(f"r{k}", "cat")
    return g


ONNX_CASES = [(t, p, s) for t, p, s in CASES] + [
    ("ChannelSplit", {"sections": 2}, (4, 3, 3)), ("ChannelSplit", {"sections": 3}, (6, 2, 2))]


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
@pytest.mark.parametrize("type_name, params, shape", ONNX_CASES,
                         ids=IDS + ["split2", "split3"])
def test_onnx_export_matches_onnxruntime_and_imports_back(type_name, params, shape, opset):
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx.export import export_onnx
    from engine.onnx.importer import import_onnx
    from tests.engine.test_onnx import comparable, randomized

    g = onnx_graph(type_name, params, shape)
    rng = np.random.default_rng(2)
    net = Network.compile(g, rng)
    w = randomized(net, rng)
    net.load_state_dict(w)
    model = export_onnx(g, w, opset=opset)  # onnx.checker (full) and shape inference agree
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = net.forward(x)
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], y, rtol=0, atol=1e-5)
    imp = import_onnx(model.SerializeToString())
    assert comparable(imp.graph) == comparable(g)
    np.testing.assert_allclose(imp.network().forward(x), y, rtol=0, atol=1e-5)


def test_onnx_forms():
    from engine.onnx.export import export_onnx

    def ops(type_name, params, shape, opset=17):
        m = export_onnx(onnx_graph(type_name, params, shape), opset=opset)
        return [n.op_type for n in m.graph.node]

    assert ops("ChannelShuffle", {"groups": 2}, (4, 2, 2)) == ["Reshape", "Transpose", "Reshape"]
    assert ops(CONVT, {}, (2, 3, 3)) == ["ConvTranspose"]
    assert ops("Upsample", {}, (2, 3, 3)) == ["Resize"]
    assert ops("Upsample", {"size": [5, 7]}, (2, 3, 3), 18) == ["Resize"]
    assert ops("Upsample", {"size": [5, 7]}, (2, 3, 3), 15) == ["Shape", "Concat", "Resize"]
    assert ops("Upsample", {"size": [5, 7]}, (2, 3, 3), 13)[:2] == ["Shape", "Constant"]
    assert ops("ChannelSplit", {"sections": 2}, (4, 2, 2))[0] == "Split"


def _split_model(opset: int, attr: bool, sizes=(2, 2)):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 2, 2])
    inits = []
    if attr:
        split = helper.make_node("Split", ["x"], ["a", "b"], "split", axis=1, split=list(sizes))
    else:
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [2], list(sizes)))
        split = helper.make_node("Split", ["x", "sizes"], ["a", "b"], "split", axis=1)
    nodes = [split, helper.make_node("Relu", ["b"], ["rb"], "relu"),
             helper.make_node("Concat", ["rb", "a"], ["y"], "cat", axis=1)]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset, attr", [(11, True), (13, False)])
def test_split_imports_both_forms(opset, attr):
    pytest.importorskip("onnx")
    from engine.onnx.importer import OnnxImportError, import_onnx

    imp = import_onnx(_split_model(opset, attr))
    split = next(n for n in imp.graph.nodes.values() if n.type_name == "ChannelSplit")
    assert split.params["sections"] == 2
    assert {(e.src, e.src_port, e.dst) for e in imp.graph.edges} >= {
        (split.id, 1, "relu"), (split.id, 0, "cat")}
    x = np.random.default_rng(0).standard_normal((2, 4, 2, 2)).astype(np.float32)
    want = np.concatenate([np.maximum(x[:, 2:], 0), x[:, :2]], axis=1)
    np.testing.assert_allclose(imp.network().forward(x), want)
    with pytest.raises(OnnxImportError, match="not 2 equal parts"):
        import_onnx(_split_model(opset, attr, sizes=(1, 3)))


def test_old_upsample_op_imports_in_nearest_mode():
    from onnx import TensorProto, helper

    from engine.onnx.importer import import_onnx

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])
    node = helper.make_node("Upsample", ["x"], ["y"], "up", mode="nearest",
                            scales=[1.0, 1.0, 2.0, 2.0])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 7)])
    imp = import_onnx(model)
    up = imp.graph.nodes["up"]
    assert (up.type_name, up.params["scale_factor"], up.params["mode"]) == (
        "Upsample", 2, "nearest")


def test_pytorch_exported_shuffle_and_upsample_import():
    """torch.onnx's own forms: the view/transpose shuffle and nn.Upsample's Resize."""
    torch = pytest.importorskip("torch")
    import io

    from engine.onnx.importer import import_onnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 6, 1)
            self.up = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.convt = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1,
                                                  output_padding=1)

        def forward(self, x):
            x = self.conv(x)
            n, c, h, w = x.shape
            x = x.view(n, 3, c // 3, h, w).transpose(1, 2).reshape(n, c, h, w)
            return self.convt(self.up(x))

    model = Net().eval()
    buf = io.BytesIO()
    x = torch.randn(2, 2, 3, 3)
    try:
        torch.onnx.export(model, (x,), buf, opset_version=17, dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {0: "N"}})
    except Exception as exc:  # noqa: BLE001 - an exporter missing here is not our failure
        pytest.skip(f"torch.onnx.export unavailable: {exc}")
    imp = import_onnx(buf.getvalue())
    types = sorted(n.type_name for n in imp.graph.nodes.values())
    assert types == ["ChannelShuffle", "Conv2d", "ConvTranspose2d", "Input", "Upsample"]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(imp.network().forward(x.numpy()), want, rtol=1e-4, atol=1e-5)


# ---- messages -----------------------------------------------------------------------------

@pytest.mark.parametrize("type_name, params, shape, param, text, fix", [
    ("ChannelShuffle", {"groups": 4}, (6, 3, 3), "groups",
     ("ChannelShuffle 'x': groups 4 does not divide the 6 input channels (6×3×3): each group "
      "needs the same number of channels; groups 3 divides them"), {"groups": 3}),
    ("ChannelSplit", {"sections": 3}, (8, 2, 2), "sections",
     ("ChannelSplit 'x': sections 3 does not divide the 8 input channels (8×2×2): 3 equal "
      "parts need a multiple of 3; sections 2 divides them"), {"sections": 2}),
    (CONVT, {"stride": 2, "output_padding": 2}, (3, 4, 4), "output_padding",
     ("ConvTranspose2d 'x': output_padding 2 along the height must be smaller than stride 2 "
      "or dilation 1"), {"output_padding": [1, 1]}),
    (CONVT, {"kernel_size": 1, "stride": 1, "padding": [1, 0]}, (3, 1, 4), "padding",
     "ConvTranspose2d 'x': padding (1, 0) crops the 1×4 input's 1×4 output to -1×4",
     {"padding": [0, 0]}),
    (CONVT, {"out_channels": 4, "groups": 3}, (3, 2, 2), "groups",
     "ConvTranspose2d 'x': groups 3 does not divide the 4 out_channels", {"groups": 1}),
    # Conv2d shares ConvTranspose2d's check (conv.check_groups): the same wording
    ("Conv2d", {"out_channels": 4, "groups": 3}, (3, 5, 5), "groups",
     "Conv2d 'x': groups 3 does not divide the 4 out_channels", {"groups": 1}),
    ("Conv2d", {"out_channels": 6, "groups": 3}, (4, 5, 5), "groups",
     "Conv2d 'x': groups 3 does not divide the 4 input channels", {"groups": 1}),
    (CONVT, {"out_channels": 6, "groups": 3}, (4, 5, 5), "groups",
     "ConvTranspose2d 'x': groups 3 does not divide the 4 input channels", {"groups": 1}),
])
def test_bad_settings_name_the_parameter_the_numbers_and_a_fix(type_name, params, shape, param,
                                                               text, fix):
    layer = REGISTRY[type_name]("x", **params)
    with pytest.raises(ShapeError) as info:
        layer.output_shapes([shape])
    err = info.value
    assert str(err) == text
    assert err.param == param
    assert err.fix is not None and err.fix.params == fix
    # the fix does repair it
    REGISTRY[type_name]("x", **{**params, **fix}).output_shapes([shape])


def test_upsample_needs_an_image_and_split_ports_show_on_the_graph():
    with pytest.raises(ShapeError, match="needs a C×H×W input"):
        REGISTRY["Upsample"]("x").output_shape([(12,)])
    g = Graph()
    g.add_node("Input", "input", {"channels": 6, "height": 2, "width": 2}, node_id="input")
    g.add_node("ChannelSplit", "split", {"sections": 3}, node_id="split")
    g.add_edge("input", "split")
    assert g.output_count("split") == 3


def test_formula_lines_carry_the_numbers():
    convt = REGISTRY[CONVT]("x", out_channels=4, kernel_size=3, stride=2, padding=1,
                            output_padding=1)
    assert output_size_lines(convt, [(3, 7, 5)]) == [
        "H: O = (7 − 1)·2 − 2·1 + 1·(3 − 1) + 1 + 1 = 14",
        "W: O = (5 − 1)·2 − 2·1 + 1·(3 − 1) + 1 + 1 = 10",
        "C: 4 (one map per filter)"]
    assert output_size_lines(REGISTRY["Upsample"]("u", scale_factor=3), [(2, 5, 4)])[:2] == [
        "H: 5 · 3 = 15", "W: 4 · 3 = 12"]
    assert output_size_lines(REGISTRY["ChannelSplit"]("s", sections=4), [(16, 2, 2)]) == [
        "C: 16 / 4 = 4 per output", "4 outputs of 4×2×2 (ports 0 to 3)"]
    assert "2 groups × 3" in output_size_lines(REGISTRY["ChannelShuffle"]("c", groups=2),
                                               [(6, 2, 2)])[1]
