"""Convolutions whose outer taps only ever read padding run on the cropped kernel
(engine/layers/conv.py, live_taps): same outputs and gradients as the full kernel, the cropped
taps' weight gradient exactly zero."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from engine.layers.conv import live_taps
from tests.engine.test_gradients import check_layer, make_layer, randn


def test_live_taps_finds_the_taps_that_reach_the_input():
    # 3×3, padding 1, on a 1×1 map: only the centre tap reads the input
    assert live_taps(1, 1, [3, 3], [1, 1], [1, 1], (1, 1, 1, 1), 1, 1) == ((1, 2, 1, 2),
                                                                          (0, 0, 0, 0))
    # stride 2 from 2×2 to 1×1 (ResNet-18's layer4.0.conv1 at 32×32): the first row and
    # column read padding only
    assert live_taps(2, 2, [3, 3], [2, 2], [1, 1], (1, 1, 1, 1), 1, 1) == ((1, 3, 1, 3),
                                                                          (0, 0, 0, 0))
    # one axis only: a 1×5 map, 3×3 padding 1 keeps all columns, crops the rows
    assert live_taps(1, 5, [3, 3], [1, 1], [1, 1], (1, 1, 1, 1), 1, 5) == ((1, 2, 0, 3),
                                                                          (0, 1, 0, 1))
    # every tap reads the input somewhere: nothing to crop
    assert live_taps(4, 4, [3, 3], [1, 1], [1, 1], (1, 1, 1, 1), 4, 4) is None
    assert live_taps(2, 2, [3, 3], [1, 1], [1, 1], (1, 1, 1, 1), 2, 2) is None
    # asymmetric padding on 1×1 (SAME_UPPER of an even kernel): kernel 4, pads 1 and 2
    assert live_taps(1, 1, [4, 4], [1, 1], [1, 1], (1, 1, 2, 2), 1, 1) == ((1, 2, 1, 2),
                                                                          (0, 0, 0, 0))


def direct_conv(x, w, b, stride, pads, dilation=(1, 1)):
    """The convolution written out (float64): pad, take every window, contract."""
    t, l, bt, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, bt), (l, r)))
    kh, kw = w.shape[2:]
    dh, dw = dilation
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::stride[0], ::stride[1], ::dh, ::dw]
    y = np.einsum("nchwpq,ocpq->nohw", win, w)
    return y if b is None else y + b[None, :, None, None]


@pytest.mark.parametrize("params,in_shape", [
    ({"out_channels": 32, "kernel_size": 3, "padding": 1}, (32, 1, 1)),
    ({"out_channels": 16, "kernel_size": 3, "padding": 1, "stride": 2}, (32, 2, 2)),
    ({"out_channels": 16, "kernel_size": 3, "padding": 1, "bias": False}, (16, 1, 6)),
    ({"out_channels": 32, "kernel_size": 3, "padding": 1, "groups": 32}, (32, 1, 1)),
])
def test_a_cropped_conv_equals_the_full_kernel(params, in_shape):
    layer = make_layer("Conv2d", params, [in_shape], seed=3, dtype=np.float32)
    x = randn((8,) + in_shape, seed=4).astype(np.float32)
    w = layer.weights["weight"].astype(np.float64)
    b = layer.weights["bias"].astype(np.float64) if layer.bias else None
    pads = (1, 1, 1, 1)
    s = layer.stride
    g = layer.groups
    if g == 1:
        ref = direct_conv(x.astype(np.float64), w, b, s, pads)
    else:  # depthwise: one channel each
        ref = np.concatenate([direct_conv(x[:, i:i + 1].astype(np.float64), w[i:i + 1],
                                          None if b is None else b[i:i + 1], s, pads)
                              for i in range(g)], axis=1)
    y = layer.forward([x], training=True)
    assert layer._cache[0] == "cropped"
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    dy = randn(y.shape, seed=5).astype(np.float32)
    (dx,) = layer.backward(dy)
    gw = layer.grads["weight"]
    assert gw.shape == layer.weights["weight"].shape and gw.dtype == np.float32
    (i0, i1, j0, j1), _ = live_taps(*in_shape[1:], layer.kernel_size, s, layer.dilation, pads,
                                    *y.shape[2:])
    dead = np.ones(gw.shape[2:], bool)
    dead[i0:i1, j0:j1] = False
    assert not gw[:, :, dead].any()  # exactly zero: those taps only multiply padding
    # the adjoint identity Σ y·dy = Σ x·dx = Σ W·dW (+ Σ b·db), as for every linear layer
    lhs = float((y.astype(np.float64) * dy).sum())
    assert float((x.astype(np.float64) * dx).sum()) == pytest.approx(
        lhs - (0 if b is None else float((b * dy.sum(axis=(0, 2, 3))).sum())), rel=1e-4)
    dot = float((w * gw).sum()) + (0 if b is None else float((b * layer.grads["bias"]).sum()))
    assert dot == pytest.approx(lhs, rel=1e-4)


@pytest.mark.parametrize("params,in_shape", [
    ({"out_channels": 3, "kernel_size": 3, "padding": 1}, (2, 1, 1)),
    ({"out_channels": 2, "kernel_size": 3, "padding": 1, "stride": 2}, (2, 2, 2)),
    ({"out_channels": 2, "kernel_size": [3, 5], "padding": [1, 2, 1, 2]}, (3, 1, 2)),
    ({"out_channels": 2, "kernel_size": 3, "padding": 2, "dilation": 2}, (2, 1, 3)),
    ({"out_channels": 2, "kernel_size": 3, "padding": 1, "groups": 2}, (2, 1, 1)),
])
def test_cropped_conv_gradients_match_finite_differences(params, in_shape):
    layer = make_layer("Conv2d", params, [in_shape], seed=1)
    x = randn((2,) + in_shape, seed=2)
    layer.forward([x], training=True)
    assert layer._cache[0] == "cropped"
    check_layer(layer, [x], seed=3)


def test_a_frozen_cropped_conv_passes_the_input_gradient_only():
    layer = make_layer("Conv2d", {"out_channels": 3, "kernel_size": 3, "padding": 1},
                       [(2, 1, 1)])
    layer.frozen = True
    check_layer(layer, [randn((2, 2, 1, 1))], expect_weight_grads=False)
