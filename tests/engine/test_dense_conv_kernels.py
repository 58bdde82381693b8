"""The compiled kernels of a dense convolution, against float64 im2col references, the NumPy
paths they replace and finite differences: the weight gradient (kernels.conv_weight_grad: the
taps read where they are, no im2col matrix), the direct forward of a conv with few input
channels (kernels.conv_forward); and the choice of 512-bit vectors they depend on."""

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


def im2col(xp, kernel, stride, dilation, ho, wo):
    """(C·kh·kw, Ho·Wo·N) float64: the taps of the padded CHWN input, one row per tap."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    c, n = xp.shape[0], xp.shape[3]
    cols = np.empty((c, kh, kw, ho, wo, n))
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                               j * dw:j * dw + sw * (wo - 1) + 1:sw]
    return cols.reshape(c * kh * kw, -1)


def reference(xp, dy, kernel, stride, dilation):
    """dW (Co, C, kh, kw) in float64."""
    co, ho, wo, _ = dy.shape
    cols = im2col(xp, kernel, stride, dilation, ho, wo)
    return (dy.reshape(co, -1).astype(np.float64) @ cols.T).reshape(co, xp.shape[0], *kernel)


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
    monkeypatch.delenv("NUMBA_CPU_FEATURES")
    fake.config.ENABLE_AVX = False  # NUMBA_ENABLE_AVX=0, or numba's check of a VM's CPU
    kernels._full_width_vectors(fake)
    assert fake.config.CPU_FEATURES is None


def test_numbas_code_generator_gets_the_full_width_where_avx512_is():
    import llvmlite.binding as ll
    import numba
    from numba.core.registry import cpu_target

    kernels.warm()
    tm = cpu_target.target_context.codegen()._tm_features
    if ll.get_host_cpu_features().get("avx512f") and numba.config.ENABLE_AVX \
            and not __import__("os").environ.get("NUMBA_CPU_FEATURES"):
        assert "-prefer-256-bit" in tm
    else:
        assert "-prefer-256-bit" not in tm


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


FORWARD = [  # (Co, C, kernel, row stride, dilation, Ho, Wo, N, bias)
    (6, 1, (5, 5), 1, (1, 1), 4, 5, 3, True),  # LeNet-5's conv1: taps 3 + 2 per row
    (16, 6, (5, 5), 1, (1, 1), 3, 3, 2, True),
    (16, 3, (3, 3), 1, (1, 1), 5, 6, 4, False),  # an RGB stem
    (5, 2, (2, 4), 2, (2, 1), 3, 4, 2, True),  # taps 3 + 1; strided, dilated rows
    (3, 4, (3, 1), 1, (1, 3), 4, 3, 5, False),  # one tap per row
    (2, 8, (1, 7), 1, (1, 2), 3, 2, 3, True),  # 3 + 3 + 1, dilated columns
]


def forward_reference(xp, w, b, stride, dilation, ho, wo):
    """y (Co, Ho, Wo, N) in float64."""
    co = w.shape[0]
    y = w.reshape(co, -1).astype(np.float64) @ im2col(xp, w.shape[2:], stride, dilation, ho, wo)
    return y.reshape(co, ho, wo, -1) + (0 if b is None else b.reshape(co, 1, 1, 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", FORWARD)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", [512, 5])
def test_direct_forward_equals_the_im2col_reference(monkeypatch, case, dtype, threads, chunk):
    co, c, kernel, sh, dilation, ho, wo, n, bias = case
    monkeypatch.setattr(kernels, "threads", lambda: threads)
    monkeypatch.setattr(kernels, "MIN_SPLIT", 1)
    monkeypatch.setattr(kernels, "CHUNK", chunk)
    xp, _ = _inputs(co, c, kernel, sh, dilation, ho, wo, n, dtype)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((co, c, *kernel)).astype(dtype)
    b = rng.standard_normal(co).astype(dtype) if bias else None
    y = np.full((co, ho, wo, n), np.nan, dtype)  # every element is written
    assert kernels.conv_forward(xp, w, b, y, (sh, 1), dilation)
    want = forward_reference(xp, w, b, (sh, 1), dilation, ho, wo)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())


def test_direct_forward_declines_strided_columns_and_when_switched_off(monkeypatch):
    xp, _ = _inputs(4, 3, (3, 3), 1, (1, 1), 4, 4, 2, np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    y = np.full((4, 4, 4, 2), 7.0, np.float32)
    assert not kernels.conv_forward(xp, w, None, y, (1, 2), (1, 1))
    monkeypatch.setenv(kernels.ENV, "numpy")
    assert not kernels.conv_forward(xp, w, None, y, (1, 1), (1, 1))
    assert (y == 7.0).all()


@pytest.mark.parametrize("params,c", [
    ({"out_channels": 6, "kernel_size": [5, 5]}, 1),
    ({"out_channels": 16, "kernel_size": [3, 3], "padding": "same", "bias": False}, 3),
    ({"out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1], "dilation": [1, 2],
      "padding": [1, 0, 2, 1]}, 8),
])
def test_a_conv_with_few_input_channels_runs_direct_in_training_and_inference(monkeypatch,
                                                                               params, c):
    """float32 (the version warm() compiles): the direct forward in training (keeping only
    its input, so the weight gradient comes from conv_weight_grad) and in inference, the same
    output and gradients as NumPy's im2col path to float32 rounding."""
    x = randn((5, c, 9, 8)).astype(np.float32)
    ran = []
    real = kernels.conv_forward
    monkeypatch.setattr(kernels, "conv_forward", lambda *a: ran.append(real(*a)) or ran[-1])
    monkeypatch.setattr(kernels, "_LOAD_ON_FIRST_USE", True)  # inference may load them
    got = {}
    for mode in ("compiled", "numpy"):
        if mode == "numpy":
            monkeypatch.setenv(kernels.ENV, "numpy")
        layer = make_layer("Conv2d", params, [(c, 9, 8)], dtype=np.float32)
        layer.need_dx = True
        y = layer.forward([x], training=True)
        tag = layer._cache[0] if isinstance(layer._cache[0], str) else "cols"
        dy = randn(y.shape, seed=4).astype(np.float32)
        (dx,) = layer.backward(dy)
        got[mode] = (tag, y, dx, {k: g.copy() for k, g in layer.grads.items()},
                     layer.forward([x], training=False))
    assert got["compiled"][0] == "rows" and got["numpy"][0] == "cols"
    assert ran[:2] == [True, True]  # training's forward and inference's ran the kernel
    for a, b in zip(got["compiled"][1:], got["numpy"][1:]):
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=2e-5 * np.abs(b[k]).max())
        else:
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max())


@pytest.mark.parametrize("c,co", [(conv.DIRECT_MAX_CHANNELS + 1, 4),
                                  (3, conv.DIRECT_MAX_FILTERS + 1)])
def test_more_input_channels_or_filters_keep_the_im2col_path(c, co):
    layer = make_layer("Conv2d", {"out_channels": co, "kernel_size": [3, 3]}, [(c, 6, 6)],
                       dtype=np.float32)
    layer.forward([randn((2, c, 6, 6)).astype(np.float32)], training=True)
    assert not isinstance(layer._cache[0], str)  # the kept cols


def test_a_wide_conv_weight_gradient_is_left_to_mlas():
    c = 4
    co = kernels.MAX_WEIGHT_GRAD // (c * 9) + 1
    xp, dy = _inputs(co, c, (3, 3), 1, (1, 1), 2, 2, 2, np.float32)
    out = np.full((co, c, 3, 3), 7.0, np.float32)
    assert not kernels.conv_weight_grad(xp, dy, out, (1, 1), (1, 1))
    assert (out == 7.0).all()
