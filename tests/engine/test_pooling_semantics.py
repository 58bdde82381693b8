"""Pooling with ONNX's full semantics (dilations, padding beyond half the kernel) and the
geometric / harmonic mean pooling layers: against a naive loop reference, ONNX Runtime on the
exported model, PyTorch where it has the feature (and the generated code always), float64
finite differences, the ONNX round trip, the ≤ 0 input warning and the opset refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.graph import sequential
from engine.layers import REGISTRY
from engine.nn.network import Network
from engine.onnx.export import export_onnx
from engine.onnx.importer import import_onnx
from engine.validate import validate
from tests.engine.test_gradients import check_layer, make_layer
from tests.engine.test_onnx import CPU, check_round_trip, close, comparable
from tests.engine.test_registry import assert_pytorch_matches


def out_len(size, k, s, d, pb, pe, ceil):
    span = size + pb + pe - d * (k - 1) - 1
    n = (-(-span // s) if ceil else span // s) + 1
    if ceil and (n - 1) * s >= size + pb:  # a last window starting in the end padding: dropped
        n -= 1
    return n


def naive_pool(x, mode, k, s, d=(1, 1), pads=(0, 0, 0, 0), ceil=False, cip=True, eps=1e-6):
    """Loop reference, float64: every window, every tap, by the definition."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    t, l, b, r = pads
    ho, wo = out_len(h, k[0], s[0], d[0], t, b, ceil), out_len(w, k[1], s[1], d[1], l, r, ceil)
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            vals, count = [], 0
            for a in range(k[0]):
                for bb in range(k[1]):
                    yy, xx = i * s[0] - t + a * d[0], j * s[1] - l + bb * d[1]
                    inside = 0 <= yy < h and 0 <= xx < w
                    in_pads = -t <= yy < h + b and -l <= xx < w + r
                    if inside:
                        vals.append(x[:, :, yy, xx])
                        count += 1
                    elif in_pads:  # explicit padding (the ceil overhang beyond never counts)
                        if mode == "max":
                            vals.append(np.full((n, c), -np.inf))
                        elif mode == "avg" and cip:
                            count += 1
            v = np.stack(vals, -1)
            if mode == "max":
                y[:, :, i, j] = v.max(-1)
            elif mode == "avg":
                y[:, :, i, j] = v.sum(-1) / count
            elif mode == "geometric":
                y[:, :, i, j] = np.exp(np.log(np.maximum(v, eps)).mean(-1))
            else:
                y[:, :, i, j] = v.shape[-1] / (1.0 / np.maximum(v, eps)).sum(-1)
    return y


def rand(shape, seed=0, positive=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    return np.abs(x) + 0.1 if positive else x


def graph_of(type_name, params, in_shape, before=()):
    c, h, w = in_shape
    return sequential([("Input", "input", {"channels": c, "height": h, "width": w}), *before,
                       (type_name, "pool", params)], name="t")


def run_ort(model, x):
    from engine.onnx.runtime import OnnxModel

    return OnnxModel(model, providers=CPU).run(x)


# (type, params, input shape, mode for the reference)
EXOTIC = [
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "dilation": 2}, (2, 9, 10)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 1, "padding": [2, 1, 1, 2]}, (2, 5, 6)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 2, "dilation": [2, 1],
                   "ceil_mode": True}, (2, 8, 9)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 2}, (1, 6, 6)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "dilation": 2}, (2, 9, 10)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 1, "padding": [2, 1, 1, 2]}, (2, 5, 6)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 1, "padding": [2, 1, 1, 2],
                   "count_include_pad": False}, (2, 5, 6)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 2, "dilation": [1, 2],
                   "count_include_pad": False}, (2, 8, 9)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": [1, 2, 2, 1], "dilation": 2,
                   "ceil_mode": True}, (2, 8, 9)),
]
MODE = {"MaxPool2d": "max", "AvgPool2d": "avg", "GeometricPool2d": "geometric",
        "HarmonicPool2d": "harmonic"}


def reference(type_name, params, x):
    layer = REGISTRY[type_name]("p", **params)
    _, _, h, w = x.shape
    k, s, pads, _, _ = layer._geometry(h, w)
    return naive_pool(x, MODE[type_name], k, s, layer.dilations, pads, layer.ceil_mode,
                      params.get("count_include_pad", type_name == "AvgPool2d"),
                      params.get("eps", 1e-6))


@pytest.mark.parametrize("type_name,params,shape", EXOTIC)
def test_dilated_and_over_padded_pooling(type_name, params, shape, tmp_path):
    layer = REGISTRY[type_name]("p", **params)
    x = rand((2, *shape)).astype(np.float32)
    out = layer.output_shape([shape])
    y = layer.forward([x])
    ref = reference(type_name, params, x)
    assert y.shape == ref.shape == (2, *out)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    # float64 finite differences
    check_layer(make_layer(type_name, params, [shape]), [rand((2, *shape), seed=3)])
    # ONNX Runtime on the exported model (AveragePool dilations: opset 19), import back
    g = graph_of(type_name, params, shape)
    net = Network.compile(g)
    opset = 19 if layer.dilations != [1, 1] else 17
    model = export_onnx(g, net.state_dict(), opset=opset)
    close(run_ort(model, x), y)
    imp = import_onnx(model.SerializeToString())
    close(imp.network().forward(x), y)
    assert comparable(imp.graph) == comparable(g)
    # the generated PyTorch code equals the engine
    assert_pytorch_matches(g, tmp_path)


def test_torch_agrees_where_it_has_the_feature():
    torch = pytest.importorskip("torch")
    x = rand((2, 3, 9, 10)).astype(np.float32)
    layer = REGISTRY["MaxPool2d"]("p", kernel_size=3, stride=2, dilation=2, padding=1,
                                  ceil_mode=True)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 2, 1, dilation=2,
                                          ceil_mode=True).numpy()
    np.testing.assert_allclose(layer.forward([x]), want, rtol=1e-6)


def test_torch_code_uses_plain_modules_where_it_can(tmp_path):
    # nn.MaxPool2d takes a dilation; nn.AvgPool2d has none: the exact helper
    src = assert_pytorch_matches(graph_of("MaxPool2d", {"kernel_size": 3, "dilation": 2,
                                                        "padding": 1}, (2, 9, 9)), tmp_path / "a")
    assert "nn.MaxPool2d(kernel_size=3, padding=1, dilation=2)" in src
    assert "WindowPool2d(" not in src
    src = assert_pytorch_matches(graph_of("AvgPool2d", {"kernel_size": 3, "dilation": 2},
                                          (2, 9, 9)), tmp_path / "b")
    assert "= WindowPool2d(" in src and "'avg'" in src and "class WindowPool2d" in src


def test_avg_pool_dilation_below_opset_19_is_refused_with_the_fix():
    g = graph_of("AvgPool2d", {"kernel_size": 2, "dilation": 2}, (1, 8, 8))
    net = Network.compile(g)
    with pytest.raises(ValueError) as exc:
        export_onnx(g, net.state_dict(), opset=17)
    text = str(exc.value)
    assert "AvgPool2d 'pool'" in text and "opset 17" in text and "opset 19" in text
    assert "Fix:" in text
    # MaxPool has dilations from opset 10: fine at 17
    g = graph_of("MaxPool2d", {"kernel_size": 2, "dilation": 2}, (1, 8, 8))
    model = export_onnx(g, Network.compile(g).state_dict(), opset=17)
    (node,) = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert [list(a.ints) for a in node.attribute if a.name == "dilations"] == [[2, 2]]


def test_a_window_of_padding_only_is_an_error():
    layer = REGISTRY["MaxPool2d"]("p", kernel_size=2, stride=1, padding=[3, 0, 0, 0])
    v = validate(graph_of("MaxPool2d", layer.values, (1, 4, 4)))
    assert not v.ok
    assert any("reads only padding" in m.text for m in v.errors)
    # dilation skipping over a one-cell input
    v = validate(graph_of("MaxPool2d", {"kernel_size": 2, "dilation": 2, "padding": [1, 0, 1, 0]},
                          (1, 1, 4)))
    assert any("reads only padding" in m.text for m in v.errors)


def test_over_half_padding_shape_rule():
    # O = floor((I + pads − D·(K−1) − 1) / S) + 1 = floor((5 + 3 − 2 − 1) / 1) + 1 = 6
    layer = REGISTRY["AvgPool2d"]("p", kernel_size=2, stride=1, padding=[2, 0, 1, 0],
                                  dilation=[2, 1])
    assert layer.output_shape([(1, 5, 4)]) == (1, 6, 3)
    lines = layer.formula([(1, 5, 4)])
    assert any("K_eff = 2·(2 − 1) + 1 = 3" in t for t in lines)


# ---- geometric / harmonic ------------------------------------------------------------------

MEANS = [
    ("GeometricPool2d", {"kernel_size": 2}, (2, 6, 6)),
    ("GeometricPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "eps": 1e-3}, (2, 7, 8)),
    ("GeometricPool2d", {"kernel_size": 3, "stride": 2, "padding": [0, 1, 2, 0],
                         "ceil_mode": True}, (2, 8, 7)),
    ("HarmonicPool2d", {"kernel_size": 2}, (2, 6, 6)),
    ("HarmonicPool2d", {"kernel_size": [3, 2], "stride": [1, 2], "padding": "same"}, (2, 7, 7)),
    ("HarmonicPool2d", {"kernel_size": 3, "stride": 2, "padding": 2, "eps": 0.01}, (2, 7, 7)),
]


@pytest.mark.parametrize("type_name,params,shape", MEANS)
def test_mean_pooling_against_numpy(type_name, params, shape, tmp_path):
    layer = REGISTRY[type_name]("p", **params)
    for positive in (True, False):  # negatives are clamped to eps
        x = rand((2, *shape), positive=positive).astype(np.float32)
        y = layer.forward([x])
        np.testing.assert_allclose(y, reference(type_name, params, x), rtol=2e-5, atol=1e-9)
    # the gradient of the clamped function, float64 finite differences (values away from eps)
    xs = rand((2, *shape), seed=5)
    xs[np.abs(xs - params.get("eps", 1e-6)) < 1e-3] += 0.01
    check_layer(make_layer(type_name, params, [shape]), [xs])
    assert_pytorch_matches(graph_of(type_name, params, shape), tmp_path)


def test_plain_means():
    x = np.array([1.0, 2.0, 4.0, 8.0], np.float32).reshape(1, 1, 2, 2)
    geo = REGISTRY["GeometricPool2d"]("g", kernel_size=2).forward([x])
    assert math.isclose(float(geo.item()), 64 ** 0.25, rel_tol=1e-6)
    har = REGISTRY["HarmonicPool2d"]("h", kernel_size=2).forward([x])
    assert math.isclose(float(har.item()), 4 / (1 + 0.5 + 0.25 + 0.125), rel_tol=1e-6)


@pytest.mark.parametrize("type_name,params,shape", MEANS)
@pytest.mark.parametrize("opset", [13, 17, 21])
def test_mean_pooling_onnx_round_trip(type_name, params, shape, opset):
    g = graph_of(type_name, params, shape)
    net = Network.compile(g)
    x = rand((2, *shape), seed=7).astype(np.float32)
    if opset == 17:
        _, imp = check_round_trip(g, net.state_dict(), x)
    else:
        model = export_onnx(g, net.state_dict(), opset=opset)
        close(run_ort(model, x), net.forward(x))
        imp = import_onnx(model.SerializeToString())
    ops = [n.op_type for n in export_onnx(g, net.state_dict(), opset=opset).graph.node]
    f = "Log" if type_name == "GeometricPool2d" else "Reciprocal"
    assert ops == ["Max", f, "AveragePool", "Exp" if f == "Log" else "Reciprocal"]
    (node,) = [n for n in imp.graph.nodes.values() if n.type_name != "Input"]
    assert node.type_name == type_name and node.name == "pool"
    if not params.get("ceil_mode"):  # ceil mode's export may trim unread end padding
        assert comparable(imp.graph) == comparable(g)


def test_mean_pooling_formula_has_the_numbers():
    lines = REGISTRY["GeometricPool2d"]("g", kernel_size=3, eps=1e-4).formula([(2, 7, 7)])
    assert lines[0].startswith("y = exp((1/n)·Σ ln max(x, 0.0001))") and "3·3 = 9" in lines[0]
    assert any(t.startswith("H: O = floor((7 − 3 + 2·0) / 3) + 1 = 2") for t in lines)
    lines = REGISTRY["HarmonicPool2d"]("h", kernel_size=2).formula([(2, 6, 6)])
    assert lines[0].startswith("y = n / Σ 1/max(x, 1e-06)") and "2·2 = 4" in lines[0]


def _pool_warnings(before, type_name="GeometricPool2d", params=None):
    v = validate(graph_of(type_name, params or {"kernel_size": 2}, (3, 8, 8), before))
    assert v.ok
    return [m.text for m in v.warnings if "'pool'" in m.text and "clamped" in m.text]


def test_warning_after_relu_names_the_layer_and_numbers():
    (text,) = _pool_warnings([("ReLU", "relu", {})])
    assert text.startswith("GeometricPool2d 'pool': its input from ReLU 'relu' can be 0")
    assert "clamped to eps = 1e-06 before the log" in text
    assert "(1e-06)^(1/4) = 0.0316" in text
    assert "Fix:" in text and "average pooling" in text
    (text,) = _pool_warnings([("ReLU", "relu", {})], "HarmonicPool2d", {"kernel_size": 3})
    assert "HarmonicPool2d 'pool'" in text and "at most 9·1e-06 = 9e-06" in text
    assert "before the reciprocal" in text


def test_warning_after_conv_and_input_says_negative():
    (text,) = _pool_warnings([("Conv2d", "conv", {"out_channels": 4, "padding": 1})])
    assert "from Conv2d 'conv' can be negative or 0" in text
    (text,) = _pool_warnings([("LeakyReLU", "lrelu", {"negative_slope": 0.1})])
    assert "can be negative (down to -3)" in text
    assert _pool_warnings([])  # raw data: unknown range


def test_no_warning_after_positive_producers():
    assert _pool_warnings([("Sigmoid", "sig", {})]) == []
    assert _pool_warnings([("Sigmoid", "sig", {}), ("GeometricPool2d", "g0",
                                                     {"kernel_size": 1})]) == []
