"""Layer registry: shape rules, parameter counts and forward math of every layer type.

Expected shapes and counts are worked out by hand from the formulas
O = floor((W − K_eff + P_begin + P_end) / S) + 1, K_eff = D·(K − 1) + 1 (ceil_mode rounds up
but drops a last window that would start in the end padding; "same" is SAME_UPPER),
conv params ((Kh·Kw·Cin/groups) + 1)·Cout, Linear (in + 1)·out, BatchNorm 2C + 2C buffers.
Forward math is compared with a naive-loop NumPy convolution (always) and with PyTorch (when
torch is installed; it is not a product dependency).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ParamError, ShapeError
from engine.graph import sequential
from engine.layers import REGISTRY
from engine.validate import validate

RNG_SEED = 1234

# (type, params, in_shapes, expected out shape, (trainable, non-trainable))
SHAPE_TABLE = [
    # ---- Conv2d ------------------------------------------------------------------------
    # (28 − 5)/1 + 1 = 24; (5·5·1 + 1)·6 = 156
    ("Conv2d", {"out_channels": 6, "kernel_size": 5}, [(1, 28, 28)], (6, 24, 24), (156, 0)),
    # LeNet-5 conv1: (28 − 5 + 4)/1 + 1 = 28
    ("Conv2d", {"out_channels": 6, "kernel_size": 5, "padding": 2}, [(1, 28, 28)],
     (6, 28, 28), (156, 0)),
    # floor((32 − 3 + 2)/2) + 1 = 16; (9·3 + 1)·16 = 448
    ("Conv2d", {"out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1},
     [(3, 32, 32)], (16, 16, 16), (448, 0)),
    # same, s2 on 7: ceil(7/2) = 4; (9·4 + 1)·8 = 296
    ("Conv2d", {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": "same"},
     [(4, 7, 7)], (8, 4, 4), (296, 0)),
    # same, even kernel 4, s1 on 5: out 5 (pads 1 + 2); (16 + 1)·2 = 34
    ("Conv2d", {"out_channels": 2, "kernel_size": 4, "padding": "same"}, [(1, 5, 5)],
     (2, 5, 5), (34, 0)),
    # same, s2 on 8, k3: ceil(8/2) = 4 (total pad 1, at the end)
    ("Conv2d", {"out_channels": 1, "kernel_size": 3, "stride": 2, "padding": "same"},
     [(1, 8, 8)], (1, 4, 4), (10, 0)),
    # dilation 2: K_eff 5, 10 − 5 + 1 = 6; (9·2 + 1)·4 = 76
    ("Conv2d", {"out_channels": 4, "kernel_size": 3, "dilation": 2}, [(2, 10, 10)],
     (4, 6, 6), (76, 0)),
    # asymmetric pads (top 1, left 0, bottom 2, right 3): H 6 − 3 + 3 + 1 = 7, W 7 − 3 + 3 + 1 = 8
    ("Conv2d", {"out_channels": 2, "kernel_size": 3, "padding": [1, 0, 2, 3]}, [(1, 6, 7)],
     (2, 7, 8), (20, 0)),
    # groups 2: (9·4/2 + 1)·6 = 114; 5 − 3 + 1 = 3
    ("Conv2d", {"out_channels": 6, "kernel_size": 3, "groups": 2}, [(4, 5, 5)], (6, 3, 3),
     (114, 0)),
    # depthwise, no bias: 9·1·8 = 72
    ("Conv2d", {"out_channels": 8, "kernel_size": 3, "padding": 1, "groups": 8, "bias": False},
     [(8, 6, 6)], (8, 6, 6), (72, 0)),
    # non-square kernel (1, 3), stride (2, 1), no bias: H floor(8/2) + 1 = 5, W 7; 3·3·4 = 36
    ("Conv2d", {"out_channels": 4, "kernel_size": [1, 3], "stride": [2, 1], "bias": False},
     [(3, 9, 9)], (4, 5, 7), (36, 0)),
    # dilation (2, 1): H K_eff 5 -> 5, W 7
    ("Conv2d", {"out_channels": 1, "kernel_size": 3, "dilation": [2, 1]}, [(1, 9, 9)],
     (1, 5, 7), (10, 0)),
    # ---- MaxPool2d -----------------------------------------------------------------------
    ("MaxPool2d", {"kernel_size": 2}, [(6, 28, 28)], (6, 14, 14), (0, 0)),
    # floor((8 − 3)/2) + 1 = 3
    ("MaxPool2d", {"kernel_size": 3, "stride": 2}, [(4, 8, 8)], (4, 3, 3), (0, 0)),
    # ceil: ceil(5/2) + 1 = 4; the last window starts at 6 < 8, kept
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "ceil_mode": True}, [(4, 8, 8)], (4, 4, 4),
     (0, 0)),
    # ceil on 7, k2 s2: floor would be 3, ceil 4
    ("MaxPool2d", {"kernel_size": 2, "ceil_mode": True}, [(1, 7, 7)], (1, 4, 4), (0, 0)),
    ("MaxPool2d", {"kernel_size": 2}, [(1, 7, 7)], (1, 3, 3), (0, 0)),
    # k2 s3 p1 on 4: span 4, ceil(4/3) + 1 = 3, but window 3 starts at 6 >= 4 + 1: dropped -> 2
    ("MaxPool2d", {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True},
     [(1, 4, 4)], (1, 2, 2), (0, 0)),
    # non-square: H floor((6 − 2)/2) + 1 = 3, W (7 − 3)/1 + 1 = 5
    ("MaxPool2d", {"kernel_size": [2, 3], "stride": [2, 1]}, [(1, 6, 7)], (1, 3, 5), (0, 0)),
    # same, k3 s2 on 7: ceil(7/2) = 4
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": "same"}, [(2, 7, 7)], (2, 4, 4),
     (0, 0)),
    # ---- AvgPool2d -----------------------------------------------------------------------
    ("AvgPool2d", {"kernel_size": 2, "ceil_mode": True}, [(3, 7, 7)], (3, 4, 4), (0, 0)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, [(3, 7, 7)], (3, 7, 7), (0, 0)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     [(3, 9, 6)], (3, 5, 3), (0, 0)),
    # dilation: K_eff = 2·(3 − 1) + 1 = 5, (9 − 5)/2 + 1 = 3; padding over half the kernel
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "dilation": 2}, [(3, 9, 9)], (3, 3, 3), (0, 0)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 1, "padding": 2}, [(2, 5, 5)], (2, 7, 7), (0, 0)),
    # ---- geometric / harmonic mean pooling -----------------------------------------------
    ("GeometricPool2d", {"kernel_size": 2}, [(3, 8, 8)], (3, 4, 4), (0, 0)),
    ("HarmonicPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, [(3, 9, 9)], (3, 5, 5),
     (0, 0)),
    # ---- adaptive / global ---------------------------------------------------------------
    ("AdaptiveAvgPool2d", {"output_size": 3}, [(3, 10, 10)], (3, 3, 3), (0, 0)),
    ("AdaptiveAvgPool2d", {"output_size": [2, 3]}, [(2, 5, 7)], (2, 2, 3), (0, 0)),
    ("GlobalAvgPool2d", {}, [(16, 7, 5)], (16, 1, 1), (0, 0)),
    ("GlobalMaxPool2d", {}, [(16, 7, 5)], (16, 1, 1), (0, 0)),
    # ---- reductions: keep_dims keeps each reduced axis as 1, else drops it -----------------
    ("ReduceMean", {}, [(8, 7, 5)], (8, 1, 1), (0, 0)),
    ("ReduceMean", {"axes": "H,W", "keep_dims": False}, [(8, 7, 5)], (8,), (0, 0)),
    ("ReduceMean", {"axes": "C"}, [(8, 7, 5)], (1, 7, 5), (0, 0)),
    ("ReduceMean", {"axes": "C,H,W"}, [(8, 7, 5)], (1, 1, 1), (0, 0)),
    ("ReduceMax", {"axes": "C", "keep_dims": False}, [(8, 7, 5)], (7, 5), (0, 0)),
    ("ReduceMax", {"axes": "W"}, [(8, 7, 5)], (8, 7, 1), (0, 0)),
    ("ReduceMax", {"axes": "C,W", "keep_dims": False}, [(8, 7, 5)], (7,), (0, 0)),
    # ---- activations (shape-preserving, no weights) --------------------------------------
    ("ReLU", {}, [(6, 4, 4)], (6, 4, 4), (0, 0)),
    ("LeakyReLU", {"negative_slope": 0.2}, [(10,)], (10,), (0, 0)),
    ("ReLU6", {}, [(3, 2, 2)], (3, 2, 2), (0, 0)),
    ("Sigmoid", {}, [(5,)], (5,), (0, 0)),
    ("Tanh", {}, [(2, 3, 3)], (2, 3, 3), (0, 0)),
    ("Softmax", {}, [(10,)], (10,), (0, 0)),
    ("SiLU", {}, [(6, 4, 4)], (6, 4, 4), (0, 0)),
    ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}, [(3, 2, 2)], (3, 2, 2), (0, 0)),
    ("HardSwish", {}, [(12,)], (12,), (0, 0)),
    ("GELU", {}, [(2, 3, 3)], (2, 3, 3), (0, 0)),
    ("GELU", {"approximate": "tanh"}, [(7,)], (7,), (0, 0)),
    ("ELU", {"alpha": 0.5}, [(4, 3, 3)], (4, 3, 3), (0, 0)),
    ("PReLU", {}, [(8, 5, 5)], (8, 5, 5), (1, 0)),
    ("PReLU", {"num_parameters": 8}, [(8, 5, 5)], (8, 5, 5), (8, 0)),  # one slope per channel
    ("PReLU", {"num_parameters": 10}, [(10,)], (10,), (10, 0)),
    ("Identity", {}, [(3, 4, 4)], (3, 4, 4), (0, 0)),
    # ---- core ----------------------------------------------------------------------------
    ("Input", {"channels": 3, "height": 32, "width": 30}, [], (3, 32, 30), (0, 0)),
    ("Flatten", {}, [(16, 5, 5)], (400,), (0, 0)),
    ("Flatten", {"start_dim": 2}, [(16, 5, 6)], (16, 30), (0, 0)),  # torch's Flatten(2)
    ("Flatten", {"start_dim": 3}, [(16, 5, 6)], (16, 5, 6), (0, 0)),  # the last axis alone
    ("Flatten", {"start_dim": 2}, [(16, 30)], (16, 30), (0, 0)),
    # over the last axis of a map: (6 + 1)·4 = 28, the same weights for every row
    ("Linear", {"out_features": 4, "over": "last_axis"}, [(3, 5, 6)], (3, 5, 4), (28, 0)),
    ("Linear", {"out_features": 4, "over": "last_axis", "bias": False}, [(3, 30)], (3, 4),
     (120, 0)),
    # over the channels of each position (a 1×1 conv with an (out, in) weight): (3 + 1)·4
    ("Linear", {"out_features": 4, "over": "channels"}, [(3, 5, 6)], (4, 5, 6), (16, 0)),
    ("Linear", {"out_features": 8, "over": "channels", "bias": False}, [(6, 2, 3)], (8, 2, 3),
     (48, 0)),
    ("Linear", {"out_features": 120}, [(400,)], (120,), (48_120, 0)),  # (400 + 1)·120
    ("Linear", {"out_features": 5, "bias": False}, [(10,)], (5,), (50, 0)),
    ("Dropout", {"p": 0.3}, [(8, 3, 3)], (8, 3, 3), (0, 0)),
    # ---- normalization -------------------------------------------------------------------
    ("BatchNorm2d", {}, [(16, 8, 8)], (16, 8, 8), (32, 32)),
    ("LayerNorm2d", {}, [(16, 8, 8)], (16, 8, 8), (32, 0)),
    ("LayerNorm2d", {"eps": 1e-5}, [(3, 1, 1)], (3, 1, 1), (6, 0)),
    ("GroupNorm", {"num_groups": 4}, [(16, 8, 8)], (16, 8, 8), (32, 0)),
    ("GroupNorm", {"num_groups": 3, "affine": False}, [(6, 5, 5)], (6, 5, 5), (0, 0)),
    ("Scale", {}, [(16, 8, 8)], (16, 8, 8), (16, 0)),
    ("Scale", {"init_value": 1.0}, [(10,)], (10,), (10, 0)),
    ("BatchNorm2d", {}, [(84,)], (84,), (168, 168)),
    ("LocalResponseNorm", {"size": 5}, [(8, 5, 5)], (8, 5, 5), (0, 0)),
    # ---- merges --------------------------------------------------------------------------
    ("Add", {}, [(4, 5, 5), (4, 5, 5)], (4, 5, 5), (0, 0)),
    ("Add", {}, [(7,), (7,), (7,)], (7,), (0, 0)),
    ("Add", {}, [(4, 5, 5), (4, 1, 1)], (4, 5, 5), (0, 0)),  # broadcast, as ONNX
    ("Multiply", {}, [(4, 5, 5), (4, 1, 1)], (4, 5, 5), (0, 0)),  # an SE gate
    ("Multiply", {}, [(1, 5, 5), (4, 1, 1), (4, 5, 1)], (4, 5, 5), (0, 0)),
    ("Multiply", {}, [(6,), (6,)], (6,), (0, 0)),
    ("Concat", {}, [(2, 5, 5), (3, 5, 5)], (5, 5, 5), (0, 0)),
    ("Concat", {}, [(3,), (4,), (1,)], (8,), (0, 0)),
    # ---- channels and upsampling (engine/layers/channels.py, upsample.py) ---------------
    ("ChannelShuffle", {"groups": 2}, [(6, 4, 4)], (6, 4, 4), (0, 0)),
    ("ChannelShuffle", {"groups": 3}, [(12,)], (12,), (0, 0)),
    ("ChannelSplit", {"sections": 2}, [(8, 3, 3)], (4, 3, 3), (0, 0)),  # port 0 of 2
    ("ChannelSplit", {"sections": 3}, [(6,)], (2,), (0, 0)),
    # (4 − 1)·2 − 0 + (2 − 1) + 0 + 1 = 8; 3·8·2·2 + 8 = 104
    ("ConvTranspose2d", {"out_channels": 8, "kernel_size": 2, "stride": 2}, [(3, 4, 4)],
     (8, 8, 8), (104, 0)),
    # (5 − 1)·2 − 2 + (3 − 1) + 1 + 1 = 10; 4·(6/2)·3·3 = 108, no bias
    ("ConvTranspose2d", {"out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1,
                         "output_padding": 1, "groups": 2, "bias": False}, [(4, 5, 5)],
     (6, 10, 10), (108, 0)),
    ("Upsample", {}, [(3, 5, 4)], (3, 10, 8), (0, 0)),
    ("Upsample", {"mode": "bilinear", "size": [7, 9]}, [(2, 3, 4)], (2, 7, 9), (0, 0)),
]


def _id(row):
    t, p, ins, *_ = row
    return f"{t}-{p}-{ins}"


def _port0(layer, y, in_shapes):
    """Output port 0 of a layer's forward; with several outputs (ChannelSplit) every port's
    shape is checked first."""
    if not layer.multi_output():
        return y
    assert [a.shape[1:] for a in y] == list(layer.output_shapes(in_shapes))
    assert all(a.dtype == np.float32 for a in y)
    return y[0]


@pytest.mark.parametrize("type_name,params,in_shapes,out_shape,counts", SHAPE_TABLE,
                         ids=[_id(r) for r in SHAPE_TABLE])
def test_shape_and_param_count(type_name, params, in_shapes, out_shape, counts):
    layer = REGISTRY[type_name]("x", **params)
    assert tuple(layer.output_shape(in_shapes)) == out_shape
    assert layer.param_count(in_shapes) == counts
    # the weights actually allocated match the declared count
    layer.init_weights(in_shapes, np.random.default_rng(0))
    trainable = sum(v.size for k, v in layer.weights.items() if layer.trainable_flags[k])
    assert (trainable, sum(v.size for v in layer.weights.values()) - trainable) == counts
    for v in layer.weights.values():
        assert v.dtype == np.float32


def test_every_registered_type_is_in_the_table():
    assert {row[0] for row in SHAPE_TABLE} == set(REGISTRY)


@pytest.mark.parametrize("type_name,params,in_shapes,out_shape,counts", SHAPE_TABLE,
                         ids=[_id(r) for r in SHAPE_TABLE])
def test_forward_produces_the_declared_shape_in_float32(type_name, params, in_shapes,
                                                        out_shape, counts):
    rng = np.random.default_rng(RNG_SEED)
    layer = REGISTRY[type_name]("x", **params)
    layer.init_weights(in_shapes, rng)
    xs = [rng.standard_normal((2,) + s).astype(np.float32) for s in in_shapes or [out_shape]]
    x0 = [x.copy() for x in xs]
    for training in (False, True):
        y = _port0(layer, layer.forward(xs, training=training), in_shapes)
        assert y.shape == (2,) + out_shape
        assert y.dtype == np.float32, "float32 in must give float32 out"
        if not training:  # inference treats each sample alone: a batch of one agrees
            y1 = _port0(layer, layer.forward([x[1:] for x in xs]), in_shapes)
            np.testing.assert_allclose(y1, y[1:], rtol=1e-5, atol=1e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy0 = dy.copy()
    dxs = layer.backward([dy] + [np.zeros((2,) + s, np.float32) for s in layer.output_shapes(
        in_shapes)[1:]] if layer.multi_output() else dy)  # zeros for the unread ports
    # nothing is changed in place: Add hands the same dy to several branches, and a
    # fan-out hands the same x to several layers
    for x, xc in zip(xs, x0):
        np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(dy, dy0)
    for x, dx in zip(xs, dxs):
        assert dx.shape == x.shape and dx.dtype == np.float32
    for k, g in layer.grads.items():
        assert g.shape == layer.weights[k].shape and g.dtype == np.float32, k


LENET5 = [
    ("Input", "input", {"channels": 1, "height": 28, "width": 28}),
    ("Conv2d", "conv1", {"out_channels": 6, "kernel_size": 5, "padding": 2}),
    ("ReLU", "relu1", {}),
    ("MaxPool2d", "pool1", {"kernel_size": 2}),
    ("Conv2d", "conv2", {"out_channels": 16, "kernel_size": 5}),
    ("ReLU", "relu2", {}),
    ("MaxPool2d", "pool2", {"kernel_size": 2}),
    ("Flatten", "flatten", {}),
    ("Linear", "fc1", {"out_features": 120}),
    ("ReLU", "relu3", {}),
    ("Linear", "fc2", {"out_features": 84}),
    ("ReLU", "relu4", {}),
    ("Linear", "fc3", {"out_features": 10}),
]


def test_lenet5_parameter_count_and_shapes():
    v = validate(sequential(LENET5))
    assert v.ok, [m.text for m in v.messages]
    # 156 + 2,416 + 48,120 + 10,164 + 850
    assert v.total_params == 61_706 and v.non_trainable_params == 0
    assert v.nodes["conv1"].out_shape == (6, 28, 28)
    assert v.nodes["pool1"].out_shape == (6, 14, 14)
    assert v.nodes["conv2"].out_shape == (16, 10, 10)
    assert v.nodes["pool2"].out_shape == (16, 5, 5)
    assert v.nodes["flatten"].out_shape == (400,)
    assert v.nodes["conv2"].trainable_params == (5 * 5 * 6 + 1) * 16
    # MACs: output cells × taps: 6·28·28·25 and 16·10·10·150
    assert v.nodes["conv1"].macs == 6 * 28 * 28 * 25
    assert v.nodes["conv2"].macs == 16 * 10 * 10 * 150
    assert v.nodes["fc1"].macs == 400 * 120


# ---- parameter normalization -----------------------------------------------------------------

def test_param_normalization():
    conv = REGISTRY["Conv2d"]("c", kernel_size=3, stride=(2, 1), padding=1)
    assert conv.kernel_size == [3, 3] and conv.stride == [2, 1]
    assert conv.padding == [1, 1, 1, 1]
    assert REGISTRY["Conv2d"]("c", padding=[1, 2]).padding == [1, 2, 1, 2]
    assert REGISTRY["Conv2d"]("c", padding="SAME").padding == "same"
    assert REGISTRY["Conv2d"]("c", kernel_size=3.0).kernel_size == [3, 3]


@pytest.mark.parametrize("type_name,params,param", [
    ("Conv2d", {"kernel_size": 0}, "kernel_size"),
    ("Conv2d", {"out_channels": "abc"}, "out_channels"),
    ("Conv2d", {"out_channels": 2.5}, "out_channels"),
    ("Conv2d", {"padding": [1, 2, 3]}, "padding"),
    ("Conv2d", {"padding": -1}, "padding"),
    ("Conv2d", {"padding": "full"}, "padding"),
    ("Conv2d", {"bias": "yes"}, "bias"),
    ("Conv2d", {"init": "orthogonal"}, "init"),
    ("Dropout", {"p": 1.5}, "p"),
    ("Dropout", {"p": float("nan")}, "p"),
    ("LeakyReLU", {"negative_slope": True}, "negative_slope"),
    ("Linear", {"units": 3}, "units"),
    ("MaxPool2d", {"stride": [1, 2, 3]}, "stride"),
])
def test_bad_params_raise_param_error_naming_the_param(type_name, params, param):
    with pytest.raises(ParamError) as exc:
        REGISTRY[type_name]("mylayer", **params)
    assert exc.value.param == param
    assert param in str(exc.value) and "mylayer" in str(exc.value)


def test_shape_errors_name_the_parameter_and_numbers():
    conv = REGISTRY["Conv2d"]("c", kernel_size=5)
    with pytest.raises(ShapeError) as exc:
        conv.output_shape([(1, 3, 3)])
    assert exc.value.param == "kernel_size"
    assert "3×3" in str(exc.value) and "5×5" in str(exc.value)
    g = REGISTRY["Conv2d"]("c", out_channels=4, groups=3)
    with pytest.raises(ShapeError) as exc:
        g.output_shape([(6, 5, 5)])
    assert exc.value.param == "groups" and "3" in str(exc.value)
    pool = REGISTRY["MaxPool2d"]("p", kernel_size=2, padding=2)
    with pytest.raises(ShapeError) as exc:
        pool.output_shape([(1, 8, 8)])
    assert exc.value.param == "padding"
    with pytest.raises(ShapeError):
        REGISTRY["AdaptiveAvgPool2d"]("a", output_size=5).output_shape([(1, 4, 8)])
    with pytest.raises(ShapeError):
        REGISTRY["Linear"]("fc").output_shape([(16, 5, 5)])
    with pytest.raises(ShapeError):
        REGISTRY["Concat"]("cat").output_shape([(2, 5, 5), (2, 4, 5)])
    with pytest.raises(ShapeError):
        REGISTRY["Add"]("add").output_shape([(2, 5, 5), (3, 5, 5)])


# ---- forward against a naive loop (no torch needed) ----------------------------------------

def naive_conv(x, w, b, stride, pads, dilation, groups):
    """Direct definition: y[n, o, i, j] = b[o] + Σ_{c in group, p, q} w[o, c, p, q] ·
    xpad[n, g·Cg + c, i·sh + p·dh, j·sw + q·dw]."""
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    t, l, bo, r = pads
    xp = np.zeros((n, c, h + t + bo, wd + l + r), x.dtype)
    xp[:, :, t:t + h, l:l + wd] = x
    sh, sw = stride
    dh, dw = dilation
    ho = (h + t + bo - (dh * (kh - 1) + 1)) // sh + 1
    wo = (wd + l + r - (dw * (kw - 1) + 1)) // sw + 1
    og = co // groups
    y = np.zeros((n, co, ho, wo), np.float64)
    for o in range(co):
        g = o // og
        for i in range(ho):
            for j in range(wo):
                acc = np.zeros(n)
                for ci in range(cg):
                    for p in range(kh):
                        for q in range(kw):
                            acc += w[o, ci, p, q] * xp[:, g * cg + ci, i * sh + p * dh,
                                                       j * sw + q * dw]
                y[:, o, i, j] = acc + (b[o] if b is not None else 0.0)
    return y


CONV_CASES = [
    # params, in_shape, explicit (top, left, bottom, right) pads the naive loop uses
    ({"out_channels": 3, "kernel_size": 3}, (2, 6, 5), (0, 0, 0, 0)),
    ({"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1}, (2, 7, 6), (1, 1, 1, 1)),
    ({"out_channels": 2, "kernel_size": [2, 3], "padding": [0, 2, 1, 0]}, (1, 5, 5),
     (0, 2, 1, 0)),
    ({"out_channels": 2, "kernel_size": 3, "dilation": [2, 1], "stride": [1, 2]}, (2, 8, 7),
     (0, 0, 0, 0)),
    ({"out_channels": 4, "kernel_size": 3, "groups": 2, "bias": False}, (4, 5, 5), (0, 0, 0, 0)),
    ({"out_channels": 3, "kernel_size": 3, "groups": 3, "padding": 1}, (3, 4, 4), (1, 1, 1, 1)),
    # same, s2 on 6 with k4: out 3, total pad (3 − 1)·2 + 4 − 6 = 2 -> 1 + 1
    ({"out_channels": 1, "kernel_size": 4, "stride": 2, "padding": "same"}, (1, 6, 6),
     (1, 1, 1, 1)),
    # same, s1, k2: total pad 1, the odd cell at the end (SAME_UPPER)
    ({"out_channels": 1, "kernel_size": 2, "padding": "same"}, (1, 4, 5), (0, 0, 1, 1)),
]


@pytest.mark.parametrize("params,in_shape,pads", CONV_CASES)
def test_conv_forward_matches_naive_loop(params, in_shape, pads):
    rng = np.random.default_rng(7)
    conv = REGISTRY["Conv2d"]("c", **params)
    conv.init_weights([in_shape], rng)
    if conv.bias:
        conv.weights["bias"][...] = rng.standard_normal(conv.out_channels)
    x = rng.standard_normal((2,) + in_shape)
    y = conv.forward([x.astype(np.float32)])
    ref = naive_conv(x, conv.weights["weight"].astype(np.float64),
                     conv.weights["bias"] if conv.bias else None, conv.stride, pads,
                     conv.dilation, conv.groups)
    assert y.shape == ref.shape == (2,) + conv.output_shape([in_shape])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_maxpool_and_avgpool_forward_match_naive_loop():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    mp = REGISTRY["MaxPool2d"]("p", kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ap = REGISTRY["AvgPool2d"]("a", kernel_size=3, stride=2, padding=1, ceil_mode=True,
                               count_include_pad=False)
    ho, wo = mp.output_shape([(3, 7, 6)])[1:]
    ym, ya = mp.forward([x]), ap.forward([x])
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * 2 - 1, j * 2 - 1
            win = x[:, :, max(r0, 0):min(r0 + 3, 7), max(c0, 0):min(c0 + 3, 6)]
            np.testing.assert_allclose(ym[:, :, i, j], win.max(axis=(2, 3)), rtol=1e-6)
            np.testing.assert_allclose(ya[:, :, i, j], win.mean(axis=(2, 3)), rtol=1e-5)


def test_lrn_forward_matches_onnx_formula_loop():
    """ONNX LRN: sum over max(0, c − floor((n−1)/2)) .. min(C−1, c + ceil((n−1)/2))."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 7, 3, 2))
    for size in (1, 2, 3, 4, 5, 8):
        lrn = REGISTRY["LocalResponseNorm"]("l", size=size, alpha=0.3, beta=0.75, k=2.0)
        ref = onnx_lrn(x, size, 0.3, 0.75, 2.0)
        np.testing.assert_allclose(lrn.forward([x]), ref, rtol=1e-12)


def onnx_lrn(x, size, alpha, beta, bias):
    c = x.shape[1]
    y = np.empty_like(x)
    for ch in range(c):
        lo = max(0, ch - (size - 1) // 2)
        hi = min(c - 1, ch + -(-(size - 1) // 2))
        sq = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        y[:, ch] = x[:, ch] / (bias + alpha / size * sq) ** beta
    return y


def test_batchnorm_updates_running_stats_and_uses_them_in_eval():
    rng = np.random.default_rng(0)
    bn = REGISTRY["BatchNorm2d"]("bn", momentum=0.25)
    bn.init_weights([(3, 4, 4)], rng)
    x = (rng.standard_normal((5, 3, 4, 4)) * 2 + 1).astype(np.float32)
    y = bn.forward([x], training=True)
    xd = x.astype(np.float64)
    mean, var = xd.mean(axis=(0, 2, 3)), xd.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(bn.weights["running_mean"], 0.25 * mean, rtol=1e-5)
    n = 5 * 4 * 4
    np.testing.assert_allclose(bn.weights["running_var"], 0.75 + 0.25 * var * n / (n - 1),
                               rtol=1e-5)
    ye = bn.forward([x])  # eval: the running statistics
    ref = (xd - bn.weights["running_mean"].reshape(1, 3, 1, 1)) / np.sqrt(
        bn.weights["running_var"].reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(ye, ref, rtol=1e-5, atol=1e-6)


def test_dropout_scales_kept_values_and_is_identity_in_eval():
    d = REGISTRY["Dropout"]("d", p=0.25)
    d.init_weights([(1000,)], np.random.default_rng(0))
    x = np.ones((4, 1000), np.float32)
    np.testing.assert_array_equal(d.forward([x]), x)
    y = d.forward([x], training=True)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.2 < (y == 0).mean() < 0.3
    np.testing.assert_array_equal(d.backward(np.ones_like(x))[0], y)


# ---- forward and counts against PyTorch ----------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _t(a):
    torch = _torch()
    return torch.from_numpy(np.ascontiguousarray(a))


def _close(ours, theirs, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=atol)


TORCH_CONV_CASES = [
    # (our params, torch kwargs (padding as int/tuple or explicit F.pad), in_shape)
    ({"out_channels": 4, "kernel_size": 3}, {"kernel_size": 3}, (3, 9, 8)),
    ({"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
     {"kernel_size": 3, "stride": 2, "padding": 1}, (3, 9, 8)),
    ({"out_channels": 2, "kernel_size": [3, 2], "stride": [1, 2], "padding": [2, 1]},
     {"kernel_size": (3, 2), "stride": (1, 2), "padding": (2, 1)}, (2, 7, 7)),
    ({"out_channels": 3, "kernel_size": 3, "padding": [1, 0, 2, 3]},
     {"kernel_size": 3, "fpad": (0, 3, 1, 2)}, (2, 6, 7)),  # F.pad: (left, right, top, bottom)
    ({"out_channels": 4, "kernel_size": 3, "dilation": 2, "padding": 2},
     {"kernel_size": 3, "dilation": 2, "padding": 2}, (2, 9, 9)),
    ({"out_channels": 6, "kernel_size": 3, "groups": 2}, {"kernel_size": 3, "groups": 2},
     (4, 6, 6)),
    ({"out_channels": 4, "kernel_size": 3, "groups": 4, "padding": 1, "bias": False},
     {"kernel_size": 3, "groups": 4, "padding": 1, "bias": False}, (4, 5, 5)),
    ({"out_channels": 8, "kernel_size": 3, "groups": 4, "padding": "same"},
     {"kernel_size": 3, "groups": 4, "padding": "same"}, (4, 5, 6)),
    # same with stride 2 on 6, k3: SAME_UPPER pads 0 top/left, 1 bottom/right
    ({"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": "same"},
     {"kernel_size": 3, "stride": 2, "fpad": (0, 1, 0, 1)}, (1, 6, 6)),
]


@pytest.mark.parametrize("ours,theirs,in_shape", TORCH_CONV_CASES)
def test_conv_matches_torch(ours, theirs, in_shape):
    torch = _torch()
    F = torch.nn.functional
    theirs = dict(theirs)
    fpad = theirs.pop("fpad", None)
    rng = np.random.default_rng(11)
    conv = REGISTRY["Conv2d"]("c", **ours)
    conv.init_weights([in_shape], rng)
    if conv.bias:
        conv.weights["bias"][...] = rng.standard_normal(conv.out_channels)
    tconv = torch.nn.Conv2d(in_shape[0], ours["out_channels"], **theirs)
    assert conv.param_count([in_shape])[0] == sum(p.numel() for p in tconv.parameters())
    with torch.no_grad():
        tconv.weight.copy_(_t(conv.weights["weight"]))
        if conv.bias:
            tconv.bias.copy_(_t(conv.weights["bias"]))
    x = rng.standard_normal((2,) + in_shape).astype(np.float32)
    tx = _t(x)
    if fpad:
        tx = F.pad(tx, fpad)
    _close(conv.forward([x]), tconv(tx), rtol=1e-4)


POOL_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True},
    {"kernel_size": 2, "ceil_mode": True},
    {"kernel_size": [2, 3], "stride": [1, 2], "padding": [1, 1]},
    {"kernel_size": [3, 2], "stride": [2, 3], "padding": [1, 0], "ceil_mode": True},
]


def _torch_pool_kwargs(p):
    k = p["kernel_size"]
    out = {"kernel_size": tuple(k) if isinstance(k, list) else k}
    if "stride" in p:
        out["stride"] = tuple(p["stride"]) if isinstance(p["stride"], list) else p["stride"]
    if "padding" in p:
        out["padding"] = tuple(p["padding"]) if isinstance(p["padding"], list) else p["padding"]
    out["ceil_mode"] = p.get("ceil_mode", False)
    return out


@pytest.mark.parametrize("params", POOL_CASES)
@pytest.mark.parametrize("in_hw", [(7, 7), (8, 5)])
def test_maxpool_matches_torch(params, in_hw):
    torch = _torch()
    x = np.random.default_rng(2).standard_normal((2, 3) + in_hw).astype(np.float32)
    mp = REGISTRY["MaxPool2d"]("p", **params)
    ref = torch.nn.MaxPool2d(**_torch_pool_kwargs(params))(_t(x))
    assert mp.output_shape([(3,) + in_hw]) == tuple(ref.shape[1:])
    _close(mp.forward([x]), ref, rtol=0, atol=0)


@pytest.mark.parametrize("params", POOL_CASES)
@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("in_hw", [(7, 7), (8, 5)])
def test_avgpool_matches_torch(params, include, in_hw):
    torch = _torch()
    x = np.random.default_rng(4).standard_normal((2, 3) + in_hw).astype(np.float32)
    ap = REGISTRY["AvgPool2d"]("a", count_include_pad=include, **params)
    ref = torch.nn.AvgPool2d(count_include_pad=include, **_torch_pool_kwargs(params))(_t(x))
    assert ap.output_shape([(3,) + in_hw]) == tuple(ref.shape[1:])
    _close(ap.forward([x]), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("in_hw,out", [((10, 10), (3, 3)), ((7, 5), (3, 2)), ((9, 6), (4, 4)),
                                       ((5, 5), (5, 5)), ((6, 7), (1, 1))])
def test_adaptive_avgpool_matches_torch(in_hw, out):
    torch = _torch()
    x = np.random.default_rng(6).standard_normal((2, 3) + in_hw).astype(np.float32)
    ours = REGISTRY["AdaptiveAvgPool2d"]("a", output_size=list(out)).forward([x])
    _close(ours, torch.nn.AdaptiveAvgPool2d(out)(_t(x)), atol=1e-6)


def test_global_avgpool_matches_torch():
    torch = _torch()
    x = np.random.default_rng(6).standard_normal((2, 4, 5, 3)).astype(np.float32)
    ours = REGISTRY["GlobalAvgPool2d"]("g").forward([x])
    _close(ours, torch.nn.AdaptiveAvgPool2d(1)(_t(x)), atol=1e-6)


@pytest.mark.parametrize("in_shape", [(3, 4, 5), (6,)])
def test_batchnorm_matches_torch_train_and_eval(in_shape):
    torch = _torch()
    rng = np.random.default_rng(8)
    c = in_shape[0]
    bn = REGISTRY["BatchNorm2d"]("bn", momentum=0.3, eps=1e-3)
    bn.init_weights([in_shape], rng)
    bn.weights["weight"][...] = rng.uniform(0.5, 2, c)
    bn.weights["bias"][...] = rng.standard_normal(c)
    tbn = (torch.nn.BatchNorm2d if len(in_shape) == 3 else torch.nn.BatchNorm1d)(
        c, momentum=0.3, eps=1e-3)
    assert bn.param_count([in_shape]) == (sum(p.numel() for p in tbn.parameters()),
                                          sum(b.numel() for b in tbn.buffers()
                                              if b.dtype.is_floating_point))
    with torch.no_grad():
        tbn.weight.copy_(_t(bn.weights["weight"]))
        tbn.bias.copy_(_t(bn.weights["bias"]))
    tbn.train()
    for step in range(3):
        x = (rng.standard_normal((4,) + in_shape) * (step + 1) + step).astype(np.float32)
        _close(bn.forward([x], training=True), tbn(_t(x)), rtol=1e-4, atol=1e-4)
        _close(bn.weights["running_mean"], tbn.running_mean, rtol=1e-5, atol=1e-6)
        _close(bn.weights["running_var"], tbn.running_var, rtol=1e-5, atol=1e-6)
    tbn.eval()
    x = rng.standard_normal((3,) + in_shape).astype(np.float32)
    _close(bn.forward([x]), tbn(_t(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5, 2, 4])
def test_lrn_matches_torch_for_odd_sizes_and_onnx_loop_for_even(size):
    """torch.nn.LocalResponseNorm sums channels c − n//2 .. c + (n−1)//2; ONNX LRN (which we
    follow) sums c − (n−1)//2 .. c + ceil((n−1)/2). They agree for odd n only; for even n
    torch's window is shifted one channel down, so we compare with the ONNX formula instead."""
    torch = _torch()
    x = np.random.default_rng(9).standard_normal((2, 7, 3, 3)).astype(np.float32)
    lrn = REGISTRY["LocalResponseNorm"]("l", size=size, alpha=0.5, beta=0.75, k=2.0)
    ours = lrn.forward([x])
    theirs = torch.nn.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=2.0)(_t(x))
    if size % 2:
        _close(ours, theirs, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(ours, onnx_lrn(x.astype(np.float64), size, 0.5, 0.75, 2.0),
                                   rtol=1e-5)
        assert not np.allclose(ours, theirs.numpy(), rtol=1e-5)  # the documented difference


@pytest.mark.parametrize("type_name,params,tmod", [
    ("ReLU", {}, lambda t: t.nn.ReLU()),
    ("LeakyReLU", {"negative_slope": 0.2}, lambda t: t.nn.LeakyReLU(0.2)),
    ("ReLU6", {}, lambda t: t.nn.ReLU6()),
    ("Sigmoid", {}, lambda t: t.nn.Sigmoid()),
    ("Tanh", {}, lambda t: t.nn.Tanh()),
    ("Softmax", {}, lambda t: t.nn.Softmax(dim=1)),
    ("Flatten", {}, lambda t: t.nn.Flatten()),
])
@pytest.mark.parametrize("in_shape", [(3, 4, 4), (12,)])
def test_elementwise_layers_match_torch(type_name, params, tmod, in_shape):
    torch = _torch()
    x = (np.random.default_rng(10).standard_normal((3,) + in_shape) * 5).astype(np.float32)
    x[0, 0] = 40.0  # large values: Sigmoid / Softmax must not overflow
    ours = REGISTRY[type_name]("a", **params).forward([x])
    _close(ours, tmod(torch)(_t(x)), rtol=1e-6, atol=1e-7)


def test_linear_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(12)
    for bias in (True, False):
        fc = REGISTRY["Linear"]("fc", out_features=7, bias=bias)
        fc.init_weights([(13,)], rng)
        tfc = torch.nn.Linear(13, 7, bias=bias)
        assert fc.param_count([(13,)])[0] == sum(p.numel() for p in tfc.parameters())
        with torch.no_grad():
            tfc.weight.copy_(_t(fc.weights["weight"]))
            if bias:
                fc.weights["bias"][...] = rng.standard_normal(7)
                tfc.bias.copy_(_t(fc.weights["bias"]))
        x = rng.standard_normal((5, 13)).astype(np.float32)
        _close(fc.forward([x]), tfc(_t(x)))


def test_add_and_concat_match_torch():
    torch = _torch()
    rng = np.random.default_rng(13)
    a, b, c = (rng.standard_normal((2, k, 3, 3)).astype(np.float32) for k in (2, 2, 3))
    a0 = a.copy()
    _close(REGISTRY["Add"]("add").forward([a, b]), _t(a) + _t(b), rtol=0, atol=0)
    _close(REGISTRY["Concat"]("cat").forward([a, c, b]), torch.cat([_t(a), _t(c), _t(b)], 1),
           rtol=0, atol=0)
    # the inputs are untouched (Add must not sum into its first input)
    np.testing.assert_array_equal(a, a0)


def test_lenet5_param_count_matches_torch():
    torch = _torch()
    nn = torch.nn
    tnet = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))
    assert validate(sequential(LENET5)).total_params == sum(p.numel()
                                                            for p in tnet.parameters())


def test_no_parameter_is_shadowed_by_an_attribute():
    """`layer.<param>` must return the parameter (Dropout's `p` included)."""
    for cls in REGISTRY.values():
        layer = cls("x")
        for p in cls.params:
            assert getattr(layer, p.name) is layer.values[p.name], (cls.type_name, p.name)


@pytest.mark.parametrize("type_name,params,in_shapes,out_shape,counts", SHAPE_TABLE,
                         ids=[_id(r) for r in SHAPE_TABLE])
def test_describe_repr_macs_and_window_do_not_fail(type_name, params, in_shapes, out_shape,
                                                   counts):
    layer = REGISTRY[type_name]("x", **params)
    assert isinstance(layer.describe(in_shapes), str)
    assert repr(layer).startswith(type_name + "(")
    assert layer.macs(in_shapes, out_shape) >= 0
    win = layer.rf_window(in_shapes)
    if win is not None:
        (kh, kw), (sh, sw), (pt, pl) = win
        assert min(kh, kw, sh, sw) >= 1 and min(pt, pl) >= 0
    for text, param, _fix in layer.warnings(in_shapes, out_shape):
        assert text and (param is None or param in layer.values)


def test_describe_examples():
    conv = REGISTRY["Conv2d"]("c", out_channels=6, kernel_size=5)
    assert conv.describe() == "5×5, 6 filters, s1, valid"
    assert REGISTRY["Dropout"]("d", p=0.25).describe() == "p=0.25"
