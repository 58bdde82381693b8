"""Dense convolution in training by ONNX Runtime's blocked kernel, and its matrix products
(engine/nn/ort_conv.py): the forward, input and weight gradients equal the same layer's in
float64 by the NumPy path (itself checked against finite differences in test_gradients),
for paddings, strides, dilations, odd batches and both block layouts' conversions; a kernel
that cannot run leaves the NumPy path in charge."""

from __future__ import annotations

import numpy as np
import pytest

from engine.nn import kernels, ort_conv
from engine.nn.ops import as_chwn, nchw

from .test_gradients import make_layer, randn

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)


def _block():
    b = ort_conv.block()
    if not b:  # an onnxruntime or CPU without the NCHWc kernel: the NumPy path runs
        pytest.skip("ONNX Runtime's NCHWc convolution is not available on this CPU")
    return b


CASES = [  # (params, input (C, H, W)): every output map has at least MIN_PIXELS pixels
    ({"out_channels": 32, "kernel_size": [3, 3], "padding": [1, 1, 1, 1]}, (16, 10, 9)),
    ({"out_channels": 16, "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1],
      "bias": False}, (32, 17, 18)),
    ({"out_channels": 16, "kernel_size": [3, 5], "dilation": [2, 1], "padding": [0, 2, 3, 1]},
     (16, 12, 12)),
    ({"out_channels": 16, "kernel_size": [5, 5], "padding": "same"}, (16, 9, 11)),
]


class _Spy:
    """Counts the calls into ort_conv that returned a result (its path really ran)."""

    def __init__(self, monkeypatch):
        self.ran: dict[str, int] = {}
        for name in ("forward", "input_grad", "matmul"):
            real = getattr(ort_conv, name)

            def wrapped(*a, _real=real, _name=name, **k):
                out = _real(*a, **k)
                if out is not None:
                    self.ran[_name] = self.ran.get(_name, 0) + 1
                return out

            monkeypatch.setattr(ort_conv, name, wrapped)


def _step(layer, x, dy):
    layer.need_dx = True
    y = layer.forward([x], training=True)
    (dx,) = layer.backward(dy)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("params,shape", CASES)
def test_blocked_conv_training_equals_float64_numpy(monkeypatch, params, shape, threads):
    """With 3 threads the weight gradient's output rows are shared out (uneven ranges), each
    thread summing its own one-thread SGEMMs."""
    _block()
    monkeypatch.setattr(kernels, "threads", lambda: threads)
    monkeypatch.setattr(kernels, "MIN_SPLIT", 1)
    spy = _Spy(monkeypatch)
    n = 5  # odd: the batch is never blocked
    layer = make_layer("Conv2d", params, [shape], dtype=np.float32)
    ref = make_layer("Conv2d", params, [shape], dtype=np.float64)
    for k, v in layer.weights.items():
        ref.weights[k][...] = v
    x = randn((n, *shape)).astype(np.float32)
    y0 = ref.forward([x.astype(np.float64)], training=False)
    dy = randn(y0.shape, seed=3)
    got = _step(layer, x, dy.astype(np.float32))
    want = _step(ref, x.astype(np.float64), dy)
    assert spy.ran.get("forward", 0) >= 1  # the blocked kernel computed the forward
    if layer.stride == [1, 1]:
        assert spy.ran.get("input_grad", 0) == 1  # and the input gradient
    for a, b in zip(got[:2], want[:2]):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    for k in want[2]:
        np.testing.assert_allclose(got[2][k], want[2][k], rtol=1e-4,
                                   atol=1e-4 * np.abs(want[2][k]).max())


def test_numpy_switch_and_float64_never_use_onnxruntime(monkeypatch):
    _block()
    params, shape = CASES[0]
    spy = _Spy(monkeypatch)
    x = randn((3, *shape))
    layer = make_layer("Conv2d", params, [shape], dtype=np.float64)
    _step(layer, x, randn((3, 32, 10, 9), seed=2))
    assert not spy.ran
    monkeypatch.setenv(kernels.ENV, "numpy")
    layer = make_layer("Conv2d", params, [shape], dtype=np.float32)
    _step(layer, x.astype(np.float32), randn((3, 32, 10, 9), seed=2).astype(np.float32))
    assert not spy.ran


def test_small_maps_and_odd_channels_stay_on_the_matmul(monkeypatch):
    b = _block()
    spy = _Spy(monkeypatch)
    for params, shape in [({"out_channels": 16, "kernel_size": [3, 3], "padding": [1, 1, 1, 1]},
                           (16, 7, 7)),  # 49 pixels in and out
                          ({"out_channels": 16, "kernel_size": [3, 3], "padding": [1, 1, 1, 1]},
                           (b + 3, 9, 9))]:
        layer = make_layer("Conv2d", params, [shape], dtype=np.float32)
        y = layer.forward([randn((2, *shape)).astype(np.float32)], training=True)
        layer.backward(np.ones_like(y))
    assert "forward" not in spy.ran and "input_grad" not in spy.ran


def test_failing_session_falls_back_to_numpy(monkeypatch):
    _block()
    params, shape = CASES[0]
    layer = make_layer("Conv2d", params, [shape], dtype=np.float32)
    x = randn((2, *shape)).astype(np.float32)
    dy = randn((2, 32, 10, 9), seed=5).astype(np.float32)
    want = _step(layer, x, dy)
    monkeypatch.setattr(ort_conv, "_SESSIONS", {})
    monkeypatch.setattr(ort_conv, "_build", lambda key: None)
    spy = _Spy(monkeypatch)
    got = _step(layer, x, dy)
    assert not spy.ran
    for a, b in zip(got[:2], want[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("split", [False, True])
def test_block_layout_conversions(monkeypatch, split):
    if split:  # one range of rows per thread, even for tiny arrays
        monkeypatch.setattr(kernels, "MIN_SPLIT", 1)
        monkeypatch.setattr(kernels, "threads", lambda: 3)
    b = 8
    x4 = randn((2 * b, 5, 4, 3)).astype(np.float32)  # (C, H, W, N)
    out = np.empty((3, 2, 5, 4, b), np.float32)
    assert kernels.to_blocked(x4, out)
    for n in range(3):
        for c in range(2 * b):
            np.testing.assert_array_equal(out[n, c // b, :, :, c % b], x4[c, :, :, n])
    back = np.full_like(x4, np.nan)
    assert kernels.from_blocked(out, back)
    np.testing.assert_array_equal(back, x4)


def test_blocked_weights_order():
    b = 4
    w = randn((2 * b, 3 * b, 2, 3)).astype(np.float32)
    got = ort_conv.blocked_weights(w, b).reshape(2, 3, 2, 3, b, b)
    for o in range(2 * b):
        for c in range(3 * b):
            np.testing.assert_array_equal(got[o // b, c // b, :, :, c % b, o % b], w[o, c])


def test_forward_matches_reference_for_any_batch():
    b = _block()
    x = randn((7, b, 9, 8)).astype(np.float32)
    w = randn((2 * b, b, 3, 3)).astype(np.float32)
    bias = randn((2 * b,)).astype(np.float32)
    y = ort_conv.forward(as_chwn(x), w, bias, (1, 2), (1, 1), (1, 0, 1, 2))
    assert y is not None and y.shape == (2 * b, 9, 4, 7)  # W: (8 + 2 - 3) // 2 + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (0, 2)))
    want = sum(np.einsum("oc,nchw->nohw", w[:, :, i, j], xp[:, :, i:i + 9, j:j + 7:2])
               for i in range(3) for j in range(3)) + bias[None, :, None, None]
    np.testing.assert_allclose(nchw(y), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("stride,dilation,pads", [
    ((1, 1), (1, 1), (1, 1, 1, 1)),
    ((2, 1), (1, 1), (0, 2, 1, 0)),  # rows strided, columns not; asymmetric padding
    ((1, 1), (2, 3), (2, 3, 1, 0)),
])
def test_wide_image_equals_blocked_conv_bit_for_bit(monkeypatch, n, stride, dilation, pads):
    """A conv stepping by 1 along the columns runs on CHWN memory read as one wide image, its
    column taps dilated by N: each tap reads the same sample, so the sums are the blocked
    per-image conv's, bit for bit; and both equal the float64 reference."""
    b = _block()
    x = randn((n, b, 9, 8), seed=4).astype(np.float32)
    w = randn((2 * b, b, 3, 2), seed=5).astype(np.float32)
    bias = randn((2 * b,), seed=6).astype(np.float32)
    wide = []
    real = ort_conv._forward_wide

    def spy(*a):
        wide.append(real(*a))
        return wide[-1]

    monkeypatch.setattr(ort_conv, "_forward_wide", spy)
    got = ort_conv.forward(as_chwn(x), w, bias, stride, dilation, pads)
    assert len(wide) == 1 and wide[0] is got is not None
    assert got.flags.c_contiguous  # CHWN memory, as the rest of the step expects
    monkeypatch.setattr(ort_conv, "_forward_wide", lambda *a: None)  # the blocked path
    blocked = ort_conv.forward(as_chwn(x), w, bias, stride, dilation, pads)
    np.testing.assert_array_equal(got, blocked)
    (t, l, bo, r), (sh, _), (dh, dw) = pads, stride, dilation
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (t, bo), (l, r)))
    ho, wo = got.shape[1:3]
    want = sum(np.einsum("oc,nchw->nohw", w[:, :, i, j],
                         xp[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + wo])
               for i in range(3) for j in range(2)) + bias[None, :, None, None]
    np.testing.assert_allclose(nchw(got), want, rtol=1e-4, atol=1e-4)


def test_matmul():
    a = randn((70, 9)).astype(np.float32)
    b = randn((9, 11)).astype(np.float32)
    np.testing.assert_allclose(ort_conv.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ort_conv.matmul(a, b.T, trans_b=True), a @ b, rtol=1e-5,
                               atol=1e-5)
    # a strided operand is copied, not misread
    np.testing.assert_allclose(ort_conv.matmul(a, np.asfortranarray(b)), a @ b, rtol=1e-5,
                               atol=1e-5)
    assert ort_conv.matmul(a.astype(np.float64), b) is None
