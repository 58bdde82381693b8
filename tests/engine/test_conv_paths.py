"""Conv2d's inference path (im2col in blocks of output rows) gives the training path's values
and a direct float64 reference, for every block size down to one row and a short last block."""

from __future__ import annotations

import numpy as np
import pytest

from engine.layers import conv as conv_module

from .test_gradients import make_layer


def reference(x, w, b, stride, pads, dilation, groups):
    """Direct convolution in float64: a sum over kernel taps of shifted, strided windows."""
    n, _, h, wd = x.shape
    co, cg, kh, kw = w.shape
    t, l, bo, r = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (t, bo), (l, r)))
    (sh, sw), (dh, dw) = stride, dilation
    ho = (h + t + bo - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + l + r - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, co, ho, wo))
    og = co // groups
    for gi in range(groups):
        xs = xp[:, gi * cg:(gi + 1) * cg]
        ws = w[gi * og:(gi + 1) * og].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                win = xs[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                         j * dw:j * dw + sw * (wo - 1) + 1:sw]
                y[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", win, ws[:, :, i, j])
    if b is not None:
        y += b[None, :, None, None]
    return y


CASES = [
    ({"out_channels": 5, "kernel_size": [3, 3], "padding": [1, 1, 1, 1]}, (4, 7, 9)),
    ({"out_channels": 6, "kernel_size": [3, 2], "stride": [2, 1], "padding": [0, 1, 2, 0],
      "bias": False}, (4, 8, 7)),
    ({"out_channels": 4, "kernel_size": [3, 3], "dilation": [2, 1], "groups": 2}, (6, 9, 8)),
    ({"out_channels": 8, "kernel_size": [1, 1], "stride": [2, 2]}, (3, 7, 7)),
    ({"out_channels": 3, "kernel_size": [5, 5], "padding": "same"}, (2, 6, 11)),
]


@pytest.mark.parametrize("block_rows", [None, 1, 2, 3])
@pytest.mark.parametrize("params,shape", CASES)
def test_inference_row_blocks_match_training_and_reference(monkeypatch, params, shape,
                                                           block_rows):
    n = 3
    layer = make_layer("Conv2d", params, [shape], dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    want = reference(x, layer.weights["weight"], layer.weights.get("bias"), layer.stride,
                     conv_module.resolve_pads(layer.padding, shape[1], shape[2],
                                              layer.kernel_size, layer.stride, layer.dilation),
                     layer.dilation, layer.groups)
    if block_rows is not None:  # row_bytes of this layer's cols: force blocks of block_rows
        kk = shape[0] // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        row_bytes = (kk + layer.bias) * layer.groups * want.shape[3] * n * 4
        monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_rows * row_bytes)
    y_infer = layer.forward([x], training=False)
    y_train = layer.forward([x], training=True)
    assert y_infer.dtype == np.float32 and y_infer.shape == want.shape
    np.testing.assert_allclose(y_infer, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y_infer, y_train, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [1, 40, 10 ** 6])  # one channel per block, a few, all
@pytest.mark.parametrize("params", [
    {"kernel_size": [3, 3], "padding": [1, 1, 1, 1]},
    {"kernel_size": [3, 2], "stride": [2, 2], "padding": [0, 1, 1, 0], "bias": False},
    {"kernel_size": [2, 3], "dilation": [2, 1], "frozen": True},
])
def test_depthwise_channel_blocks_match_finite_differences(monkeypatch, params, block):
    """Depthwise convolution runs all taps a few channels at a time: every split of the
    channels gives the finite-difference gradients (float64) and the reference output."""
    from .test_gradients import check_layer, randn

    monkeypatch.setattr(conv_module, "DEPTHWISE_BLOCK", block)
    monkeypatch.setenv("CNND_KERNELS", "numpy")  # the NumPy path (the compiled one: test_kernels)
    params = dict(params)
    frozen = params.pop("frozen", False)
    c = 5
    layer = make_layer("Conv2d", {"out_channels": c, "groups": c, **params}, [(c, 5, 6)])
    layer.frozen = frozen
    x = randn((2, c, 5, 6))
    want = reference(x, layer.weights["weight"], layer.weights.get("bias"), layer.stride,
                     conv_module.resolve_pads(layer.padding, 5, 6, layer.kernel_size,
                                              layer.stride, layer.dilation),
                     layer.dilation, layer.groups)
    np.testing.assert_allclose(layer.forward([x], training=False), want, rtol=1e-12,
                               atol=1e-12)
    check_layer(layer, [x], expect_weight_grads=not frozen)


@pytest.mark.parametrize("block_rows", [None, 1, 2])
@pytest.mark.parametrize("params,shape", CASES)
def test_training_without_kept_cols_matches_finite_differences(monkeypatch, params, shape,
                                                               block_rows):
    """A conv whose im2col matrix is over KEEP_COLS_BYTES keeps only its input and builds the
    matrix in row blocks again for the weight gradient: finite differences (float64), every
    block size, and the same forward and gradients as the kept-cols path."""
    from .test_gradients import check_layer, randn

    n = 2
    x = randn((n, *shape))
    kept = make_layer("Conv2d", params, [shape])
    y_kept = kept.forward([x], training=True)
    dy = randn(y_kept.shape, seed=5)
    dx_kept = kept.backward(dy)[0]
    monkeypatch.setattr(conv_module, "KEEP_COLS_BYTES", 0)
    if block_rows is not None:
        kk = shape[0] // kept.groups * kept.kernel_size[0] * kept.kernel_size[1]
        row_bytes = (kk + kept.bias) * kept.groups * y_kept.shape[3] * n * 8
        monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_rows * row_bytes)
    layer = make_layer("Conv2d", params, [shape])
    y = layer.forward([x], training=True)
    assert layer._cache[0] == "rows"  # the path under test: no cols kept
    np.testing.assert_allclose(y, y_kept, rtol=1e-12, atol=1e-12)
    dx = layer.backward(dy)[0]
    np.testing.assert_allclose(dx, dx_kept, rtol=1e-12, atol=1e-12)
    for k in kept.grads:
        np.testing.assert_allclose(layer.grads[k], kept.grads[k], rtol=1e-12, atol=1e-12)
    check_layer(layer, [x])
