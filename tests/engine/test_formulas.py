"""The formula texts end in the numbers validation computes, for many parameter settings."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine.formulas import (
    axis_formula,
    macs_formula,
    node_formulas,
    output_size_lines,
    param_formula,
    receptive_field_text,
    rf_formula,
)
from engine.graph import sequential
from engine.layers import REGISTRY
from engine.validate import validate
from engine.zoo.examples import load_example


def final_number(text: str) -> int:
    """The number after the last '=' of a formula, before any trailing remark in parentheses."""
    tail = text.rsplit(" = ", 1)[1]
    m = re.match(r"(−?[\d,]+)", tail)
    assert m, text
    return int(m.group(1).replace(",", "").replace("−", "-"))


def test_lenet5_conv1_conv2_fc1_hand_computed():
    g = load_example("lenet5")
    v = validate(g)
    conv1 = node_formulas(g, v, "conv1")
    assert conv1.output_size[:2] == ["H: O = floor((28 − 5 + 2·2) / 1) + 1 = 28",
                                     "W: O = floor((28 − 5 + 2·2) / 1) + 1 = 28"]
    assert conv1.params.text == "((5·5·1) + 1) · 6 = 156"
    assert conv1.flow == "1×28×28 → 6×28×28"
    conv2 = node_formulas(g, v, "conv2")
    assert conv2.output_size[0] == "H: O = floor((14 − 5 + 2·0) / 1) + 1 = 10"
    assert conv2.params.text == "((5·5·6) + 1) · 16 = 2,416"
    assert conv2.macs.text == "16·10·10 outputs · 5·5·6 each = 240,000"
    assert conv2.receptive_field == "sees 14×14 input pixels, steps 2 px"
    assert conv2.rf_steps[0] == "H: r = 6 + (5 − 1)·2 = 14, j = 2·1 = 2"
    fc1 = node_formulas(g, v, "fc1")
    assert fc1.params.text == "(400 + 1) · 120 = 48,120"
    assert fc1.macs.text == "400 · 120 = 48,000"
    assert node_formulas(g, v, "flatten").output_size == ["F = C·H·W = 16·5·5 = 400"]


def test_axis_formula_dilation_asymmetric_pads_and_ceil():
    # K_eff = 2·(3−1)+1 = 5; (10 − 5 + 0 + 1) / 2 = 3 -> 4
    assert axis_formula(10, 3, 2, 0, 1, 2) == \
        "K_eff = 2·(3 − 1) + 1 = 5; O = floor((10 − 5 + (0 + 1)) / 2) + 1 = 4"
    assert axis_formula(5, 2, 2, 0, 0, 1, True) == "O = ceil((5 − 2 + 2·0) / 2) + 1 = 3"
    # ceil mode whose last window would start in the end padding is dropped (ONNX / PyTorch)
    text = axis_formula(5, 2, 2, 1, 1, 1, True)
    assert "ceil((5 − 2 + 2·1) / 2) + 1 = 4 − 1 = 3" in text
    assert "(< 1" in axis_formula(3, 5, 1, 0, 0)


def test_batchnorm_and_bias_free_counts():
    bn = REGISTRY["BatchNorm2d"]("bn")
    c = param_formula(bn, [(6, 8, 8)])
    assert c.text == "2·6 = 12 trainable (γ, β) + 2·6 = 12 running stats (mean, variance)"
    assert (c.trainable, c.non_trainable) == bn.param_count([(6, 8, 8)])
    conv = REGISTRY["Conv2d"]("c", out_channels=6, kernel_size=5, bias=False)
    assert param_formula(conv, [(1, 28, 28)]).text == "(5·5·1) · 6 = 150"
    lin = REGISTRY["Linear"]("l", out_features=10, bias=False)
    assert param_formula(lin, [(84,)]).text == "84 · 10 = 840"
    grouped = REGISTRY["Conv2d"]("g", out_channels=32, kernel_size=3, groups=32)
    assert param_formula(grouped, [(32, 8, 8)]).text == "((3·3·32/32) + 1) · 32 = 320"


def _random_window_layer(rng, type_name):
    k = [int(rng.integers(1, 6)), int(rng.integers(1, 6))]
    s = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    pad_kind = rng.integers(3)
    if pad_kind == 0:
        padding = "valid"
    elif pad_kind == 1:
        padding = "same"
    else:
        padding = [int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)),
                   int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1))]
    if type_name == "Conv2d":
        g = int(rng.choice([1, 2]))
        return {"out_channels": int(rng.integers(1, 5)) * g, "kernel_size": k, "stride": s,
                    "padding": padding, "dilation": [int(rng.integers(1, 3)), int(rng.integers(1, 3))],
                    "groups": g, "bias": bool(rng.integers(2))}
    params = {"kernel_size": k, "stride": s if rng.integers(2) else None, "padding": padding,
                  "ceil_mode": bool(rng.integers(2))}
    return params


@pytest.mark.parametrize("type_name", ["Conv2d", "MaxPool2d", "AvgPool2d"])
def test_window_formulas_match_validation(type_name):
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(300):
        c, h, w = int(rng.choice([2, 4])), int(rng.integers(1, 20)), int(rng.integers(1, 20))
        params = _random_window_layer(rng, type_name)
        g = sequential([("Input", "x", {"channels": c, "height": h, "width": w}),
                        (type_name, "layer", params)])
        v = validate(g)
        res = v.nodes["layer"]
        if res.out_shape is None:
            continue
        lines = output_size_lines(res.layer, res.in_shapes)
        assert final_number(lines[0]) == res.out_shape[1], (params, lines)
        assert final_number(lines[1]) == res.out_shape[2], (params, lines)
        p = param_formula(res.layer, res.in_shapes)
        assert p.total == res.params
        if res.params:
            assert final_number(p.text) == res.params
        m = macs_formula(res.layer, res.in_shapes, res.out_shape)
        assert m.trainable == res.macs
        steps = rf_formula(res.layer, res.in_shapes, (1, 1), (1, 1))
        assert [int(re.search(r"r = .* = (\d+),", s).group(1)) for s in steps] == \
            list(res.receptive_field)
        checked += 1
    assert checked > 100


def test_linear_and_flatten_formulas_match_validation():
    rng = np.random.default_rng(3)
    for _ in range(50):
        c, h, w = (int(v) for v in rng.integers(1, 9, size=3))
        units = int(rng.integers(1, 300))
        g = sequential([("Input", "x", {"channels": c, "height": h, "width": w}),
                        ("Flatten", "f", {}),
                        ("Linear", "fc", {"out_features": units, "bias": bool(rng.integers(2))})])
        v = validate(g)
        assert v.ok
        flat = v.nodes["f"]
        assert final_number(output_size_lines(flat.layer, flat.in_shapes)[0]) == flat.out_shape[0]
        fc = v.nodes["fc"]
        assert final_number(param_formula(fc.layer, fc.in_shapes).text) == fc.params
        assert final_number(macs_formula(fc.layer, fc.in_shapes, fc.out_shape).text) == fc.macs


def test_formulas_for_every_example_and_type_never_raise():
    for name in ("lenet5", "small_vgg", "small_resnet"):
        g = load_example(name)
        v = validate(g)
        for nid in g.nodes:
            f = node_formulas(g, v, nid)
            res = v.nodes[nid]
            if f is None:
                continue
            if res.out_shape is not None and f.params is not None and res.params:
                assert f.params.total == res.params
            if res.receptive_field is not None:
                assert f.receptive_field.startswith(
                    f"sees {res.receptive_field[0]}×{res.receptive_field[1]} input")


def test_receptive_field_text():
    assert receptive_field_text((14, 14), (2, 2)) == "sees 14×14 input pixels, steps 2 px"
    assert receptive_field_text((1, 1), (1, 1)) == "sees 1×1 input pixel, steps 1 px"
    assert receptive_field_text(None, None) == ""
