"""The compiled weight gradient of a dense convolution (kernels.conv_weight_grad: the taps read
where they are, no im2col matrix) against a float64 im2col reference, the NumPy path it
replaces and finite differences; and the choice of 512-bit vectors it depends on."""

from __future__ import annotations

import types

import numpy as np
import pytest

from engine.layers import conv
from engine.nn import kernels

from .test_gradients import check_layer, make_layer, randn

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)


def reference(xp, dy, kernel, stride, dilation):
    """dW (Co, C, kh, kw) in float64 from an explicit im2col of the padded CHWN input."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    co, ho, wo, n = dy.shape
    c = xp.shape[0]
    cols = np.empty((c, kh, kw, ho, wo, n))
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                               j * dw:j * dw + sw * (wo - 1) + 1:sw]
    return (dy.reshape(co, -1).astype(np.float64) @ cols.reshape(c * kh * kw, -1).T
            ).reshape(co, c, kh, kw)


CASES = [  # (Co, C, kernel, row stride, dilation, Ho, Wo, N)
    (4, 4, (3, 3), 1, (1, 1), 5, 6, 3),
    (16, 16, (3, 3), 1, (1, 1), 6, 7, 8),
    (8, 12, (5, 5), 1, (1, 1), 4, 4, 2),
    (6, 5, (3, 3), 1, (1, 1), 5, 5, 4),  # channels left over from the blocks of 4
    (1, 3, (2, 3), 1, (1, 1), 3, 4, 1),
    (9, 7, (3, 2), 2, (2, 1), 4, 5, 3),  # strided rows, dilated rows
    (4, 8, (3, 3), 1, (1, 2), 5, 4, 2),  # dilated columns
    (5, 4, (1, 3), 1, (1, 1), 3, 3, 5),
]


def _inputs(co, c, kernel, sh, dilation, ho, wo, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    (kh, kw), (dh, dw) = kernel, dilation
    hp, wp = sh * (ho - 1) + dh * (kh - 1) + 1 + sh - 1, wo + dw * (kw - 1)
    xp = rng.standard_normal((c, hp, wp, n)).astype(dtype)
    dy = rng.standard_normal((co, ho, wo, n)).astype(dtype)
    return xp, dy


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("chunk", [512, 7])
def test_equals_the_im2col_reference(monkeypatch, case, dtype, threads, chunk):
    """Every tap, channel block and leftover channel, a row stride, dilations, the output rows
    shared over threads (each its own sums, added at the end) and rows longer than a chunk."""
    co, c, kernel, sh, dilation, ho, wo, n = case
    monkeypatch.setattr(kernels, "threads", lambda: threads)
    monkeypatch.setattr(kernels, "MIN_SPLIT", 1)
    monkeypatch.setattr(kernels, "CHUNK", chunk)
    xp, dy = _inputs(co, c, kernel, sh, dilation, ho, wo, n, dtype)
    out = np.full((co, c, *kernel), np.nan, dtype)  # every element is written
    assert kernels.conv_weight_grad(xp, dy, out, (sh, 1), dilation)
    want = reference(xp, dy, kernel, (sh, 1), dilation)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.abs(want).max())


def test_a_nan_reaches_the_taps_that_read_it():
    """The sums are reassociated (vectorised), never told that NaN cannot occur."""
    xp, dy = _inputs(4, 4, (3, 3), 1, (1, 1), 4, 4, 2, np.float32)
    xp[1, 0, 0, 0] = np.nan  # read only by tap (0, 0) at output (0, 0)
    out = np.empty((4, 4, 3, 3), np.float32)
    assert kernels.conv_weight_grad(xp, dy, out, (1, 1), (1, 1))
    assert np.isnan(out[:, 1, 0, 0]).all()
    assert np.isfinite(np.delete(out.reshape(4, 4, 9), 0, axis=2)).all()
    assert np.isfinite(out[:, [0, 2, 3]]).all()


def test_declines_strided_columns_and_when_switched_off(monkeypatch):
    xp, dy = _inputs(4, 4, (3, 3), 1, (1, 1), 4, 4, 2, np.float32)
    out = np.full((4, 4, 3, 3), 7.0, np.float32)
    assert not kernels.conv_weight_grad(xp, dy[:, :, :2], out, (1, 2), (1, 1))
    monkeypatch.setenv(kernels.ENV, "numpy")
    assert not kernels.conv_weight_grad(xp, dy, out, (1, 1), (1, 1))
    assert (out == 7.0).all()  # nothing written where it declined


@pytest.mark.parametrize("params", [
    {"out_channels": 6, "kernel_size": [3, 3], "padding": "same"},
    {"out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1], "dilation": [1, 2],
     "padding": [1, 0, 2, 1], "bias": True},
    {"out_channels": 5, "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]},
])
def test_the_layer_takes_it_and_matches_numpy_and_finite_differences(monkeypatch, params):
    """A training conv whose im2col is not kept (the "rows" path, forced here on a small
    layer) gets its weight gradient from the kernel where the columns step by 1, the same
    as NumPy's row blocks give; both match central differences."""
    monkeypatch.setattr(conv, "KEEP_COLS_BYTES", 0)
    calls = []
    real = kernels.conv_weight_grad

    def spy(*args):
        ran = real(*args)
        calls.append(ran)
        return ran

    monkeypatch.setattr(kernels, "conv_weight_grad", spy)
    x = randn((3, 5, 6, 7))
    dy = None
    grads, ran = {}, {}
    for mode in ("compiled", "numpy"):
        if mode == "numpy":
            monkeypatch.setenv(kernels.ENV, "numpy")
        layer = make_layer("Conv2d", params, [(5, 6, 7)])
        y = layer.forward([x], training=True)
        dy = randn(y.shape, seed=4) if dy is None else dy
        calls.clear()
        layer.backward(dy)
        ran[mode] = calls[:]
        grads[mode] = layer.grads["weight"].copy()
        check_layer(layer, [x])
    assert ran == {"compiled": [params.get("stride", [1, 1])[1] == 1], "numpy": [False]}
    np.testing.assert_allclose(grads["compiled"], grads["numpy"], rtol=1e-10, atol=1e-12)


class _Features(dict):
    def flatten(self):
        return ",".join(("+" if v else "-") + k for k, v in self.items())


@pytest.mark.parametrize("avx512", [True, False])
def test_full_width_vectors_only_with_avx512_and_never_over_the_user(monkeypatch, avx512):
    import llvmlite.binding as ll

    feats = _Features(avx2=True, avx512f=avx512)
    monkeypatch.setattr(ll, "get_host_cpu_features", lambda: feats)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    fake = types.SimpleNamespace(config=types.SimpleNamespace(CPU_FEATURES=None))
    kernels._full_width_vectors(fake)
    assert fake.config.CPU_FEATURES == ("+avx2,+avx512f,-prefer-256-bit" if avx512 else None)
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2")  # the user's choice stands
    fake.config.CPU_FEATURES = None
    kernels._full_width_vectors(fake)
    assert fake.config.CPU_FEATURES is None


def test_a_kernel_numba_cannot_compile_leaves_numpy_in_charge(monkeypatch):
    """A numba error switches the kernels off, nothing is written, and the layer's weight
    gradient is NumPy's; any other error is a bug and is raised."""
    from numba.core.errors import TypingError

    def broken(*args):
        raise TypingError("test: cannot compile")

    monkeypatch.setattr(kernels, "_KERNELS", {"conv_weight_grad": broken})
    xp, dy = _inputs(4, 4, (3, 3), 1, (1, 1), 4, 4, 2, np.float32)
    out = np.full((4, 4, 3, 3), 7.0, np.float32)
    assert kernels.enabled()
    assert not kernels.conv_weight_grad(xp, dy, out, (1, 1), (1, 1))
    assert (out == 7.0).all()
    assert not kernels.enabled()  # off for good

    def bug(*args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(kernels, "_KERNELS", {"conv_weight_grad": bug})
    with pytest.raises(ZeroDivisionError):
        kernels.conv_weight_grad(xp, dy, out, (1, 1), (1, 1))
