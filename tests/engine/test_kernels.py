"""The compiled kernels (engine/nn/kernels.py) against the NumPy code they replace, which stays
the fallback: both paths give the same forward, input and weight gradients (float64: to
rounding; float32: to 1e-5) and the finite-difference gradients."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ShapeError
from engine.nn import kernels

from .test_gradients import check_layer, make_layer, randn

pytest.importorskip("numba")

DEPTHWISE = [
    ({"kernel_size": [3, 3], "padding": [1, 1, 1, 1]}, (5, 6)),
    ({"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]}, (7, 6)),
    ({"kernel_size": [3, 2], "stride": [2, 1], "padding": [0, 1, 2, 0], "bias": False}, (6, 5)),
    ({"kernel_size": [2, 3], "dilation": [2, 1], "padding": "same"}, (5, 7)),
    ({"kernel_size": [5, 5], "stride": [3, 2], "dilation": [1, 2], "padding": [2, 2, 2, 2]},
     (8, 9)),
    ({"kernel_size": [3, 3]}, (3, 3)),
]


def _numpy_only(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "numpy")


def _run(layer, x, dy):
    y = layer.forward([x], training=True)
    (dx,) = layer.backward(dy)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("params,hw", DEPTHWISE)
def test_depthwise_compiled_equals_numpy(monkeypatch, params, hw, dtype):
    c, n = 4, 3
    monkeypatch.delenv(kernels.ENV, raising=False)
    assert kernels.enabled()
    try:
        layer = make_layer("Conv2d", {"out_channels": c, "groups": c, **params}, [(c, *hw)],
                           dtype=dtype)
    except ShapeError:
        pytest.skip("geometry does not fit")  # not expected for the cases above
    x = randn((n, c, *hw)).astype(dtype)
    y = layer.forward([x], training=False)
    dy = randn(y.shape, seed=4).astype(dtype)
    got = _run(layer, x, dy)
    assert layer._cache is None
    _numpy_only(monkeypatch)
    assert not kernels.enabled()
    want = _run(layer, x, dy)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(got[:2], want[:2]):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert got[2].keys() == want[2].keys() == {"weight", *(("bias",) if layer.bias else ())}
    for k in want[2]:
        np.testing.assert_allclose(got[2][k], want[2][k], rtol=tol, atol=tol)


@pytest.mark.parametrize("params,hw", DEPTHWISE)
def test_depthwise_compiled_matches_finite_differences(monkeypatch, params, hw):
    monkeypatch.delenv(kernels.ENV, raising=False)
    c = 3
    layer = make_layer("Conv2d", {"out_channels": c, "groups": c, **params}, [(c, *hw)])
    x = randn((2, c, *hw))
    layer.forward([x], training=True)
    assert layer._cache[0] == "depthwise_compiled"  # the path under test
    check_layer(layer, [x])


def test_frozen_and_no_input_gradient(monkeypatch):
    """A frozen depthwise layer gives no weight gradient; need_dx False gives no input one."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    c = 4
    layer = make_layer("Conv2d", {"out_channels": c, "groups": c, "kernel_size": [3, 3],
                                  "padding": "same"}, [(c, 5, 5)])
    x = randn((2, c, 5, 5))
    layer.frozen = True
    y = layer.forward([x], training=True)
    (dx,) = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and not layer.grads
    layer.frozen, layer.need_dx = False, False
    layer.forward([x], training=True)
    assert layer.backward(np.ones_like(y)) == [None] and "weight" in layer.grads


def test_a_kernel_numba_cannot_compile_falls_back_to_numpy(monkeypatch):
    """A numba error while compiling switches the kernels off; the layer computes with NumPy."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    c = 3
    layer = make_layer("Conv2d", {"out_channels": c, "groups": c, "kernel_size": [3, 3]},
                       [(c, 5, 5)])
    x = randn((2, c, 5, 5))
    want = layer.forward([x], training=False)
    from numba.core.errors import TypingError

    def broken(*args):
        raise TypingError("test: cannot compile")

    monkeypatch.setattr(kernels, "_KERNELS", {"dw_forward": broken})
    assert kernels.enabled()
    np.testing.assert_allclose(layer.forward([x], training=True), want, rtol=1e-12)
    assert layer._cache[0] == "depthwise"  # NumPy's
    assert not kernels.enabled()  # off for good


def test_other_errors_are_not_hidden(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)

    def bug(*args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(kernels, "_KERNELS", {"dw_forward": bug})
    x = np.zeros((2, 3, 3, 4), np.float32)
    with pytest.raises(ZeroDivisionError):
        kernels.depthwise_forward(x, np.zeros((2, 3, 3), np.float32),
                                  np.zeros((2, 1, 1, 4), np.float32), (1, 1), (1, 1),
                                  (0, 0, 0, 0))


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "numpy")
    assert not kernels.enabled()
    assert not kernels.depthwise_forward(np.zeros((1, 3, 3, 2), np.float32),
                                         np.zeros((1, 3, 3), np.float32),
                                         np.zeros((1, 1, 1, 2), np.float32), (1, 1), (1, 1),
                                         (0, 0, 0, 0))


MAXPOOL = [  # (params, (H, W)): tiled, floor drops a row, overlap + padding, ceil mode, ...
    ({"kernel_size": [2, 2]}, (6, 8)),
    ({"kernel_size": [2, 2]}, (7, 5)),
    ({"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]}, (7, 8)),
    ({"kernel_size": [2, 2], "ceil_mode": True}, (5, 7)),
    ({"kernel_size": [3, 2], "stride": [1, 2], "dilation": [2, 1]}, (8, 6)),
    ({"kernel_size": [3, 3], "stride": [1, 1], "padding": "same"}, (5, 5)),
    ({"kernel_size": [2, 3], "stride": [3, 3], "padding": [0, 1, 1, 0]}, (7, 8)),
    ({"kernel_size": [3, 3], "stride": [1, 1]}, (7, 9)),  # a cell in up to 9 windows
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("params,hw", MAXPOOL)
def test_maxpool_compiled_equals_numpy(monkeypatch, params, hw, dtype):
    """The compiled max pooling gives NumPy's output and input gradient, with ties (the first
    maximum wins), NaN (it propagates; the index follows np.greater) and a non-finite dy."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    calls = _spy_on_kernels(monkeypatch)
    c, n = 3, 4
    layer = make_layer("MaxPool2d", params, [(c, *hw)], dtype=dtype)
    x = np.round(randn((n, c, *hw)) * 2) / 2  # many ties
    x[0, 0, 1, 1] = np.nan
    x = np.ascontiguousarray(x.astype(dtype).transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    got_y = layer.forward([x], training=True)
    dy = randn(got_y.shape, seed=5).astype(dtype)
    dy[1, 2, 0, 0] = np.inf
    (got_dx,) = layer.backward(dy)
    assert calls == ["mp_forward", "mp_backward"]  # the path under test
    _numpy_only(monkeypatch)
    want_y = layer.forward([x], training=True)
    (want_dx,) = layer.backward(dy)
    assert got_y.dtype == want_y.dtype == got_dx.dtype == want_dx.dtype == dtype
    np.testing.assert_array_equal(got_y, want_y)
    assert np.isnan(got_y).any()
    # overlapping windows: each cell's sum in NumPy's order, to the bit
    np.testing.assert_array_equal(got_dx, want_dx)


@pytest.mark.parametrize("params,hw", MAXPOOL)
def test_maxpool_compiled_matches_finite_differences(monkeypatch, params, hw):
    monkeypatch.delenv(kernels.ENV, raising=False)
    calls = _spy_on_kernels(monkeypatch)
    layer = make_layer("MaxPool2d", params, [(2, *hw)])
    check_layer(layer, [randn((2, 2, *hw))])  # distinct values: no ties within a step
    assert {"mp_forward", "mp_backward"} <= set(calls)


@pytest.mark.parametrize("kernel,stride,dilation,groups,ho", [
    ((5, 5), (1, 1), (1, 1), 1, 10),   # LeNet-5's conv2
    ((3, 3), (2, 2), (1, 1), 1, 7),
    ((3, 2), (2, 1), (2, 3), 2, 6),
    ((1, 1), (2, 2), (1, 1), 1, 5),
])
@pytest.mark.parametrize("blocks", [False, True])
def test_col2im_compiled_equals_numpy_bit_for_bit(monkeypatch, kernel, stride, dilation,
                                                   groups, ho, blocks):
    """The input gradient's col2im: one compiled call per block of output rows adds the taps
    in NumPy's order, so the result is the same to the bit (in one block and in many)."""
    from engine.nn import ops

    monkeypatch.delenv(kernels.ENV, raising=False)
    if blocks:  # one output row per block
        monkeypatch.setattr(ops, "BLOCK_BYTES", 1)
    rng = np.random.default_rng(8)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    c, og, n, wo = 4, 3, 5, ho + 1
    hp, wp = (ho - 1) * sh + dh * (kh - 1) + 1, (wo - 1) * sw + dw * (kw - 1) + 1
    wmat = rng.standard_normal((groups, og, c // groups * kh * kw)).astype(np.float32)
    dyc = rng.standard_normal((groups, og, ho * wo * n)).astype(np.float32)
    calls = _spy_on_kernels(monkeypatch)
    args = (wmat, dyc, kernel, stride, dilation, (c, hp, wp, n), wo)
    got = ops.conv_input_grad(*args, compiled=True)
    assert calls and set(calls) == {"col2im_add"}
    want = ops.conv_input_grad(*args, compiled=False)
    assert len(calls) == (ho if blocks else 1)  # the NumPy run called no kernel
    np.testing.assert_array_equal(got, want)


def test_inference_runs_only_the_versions_warm_compiled(monkeypatch):
    """Inference (the designer's GUI thread) takes the compiled max pooling and col2im only on
    the float32 / byte-index versions warm() compiles: a float64 input or a window of 256+
    taps (a two-byte index) would make numba compile a new version on that thread."""
    from engine.nn import ops

    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.setattr(kernels, "for_inference", lambda: True)
    calls = _spy_on_kernels(monkeypatch)
    for params, dtype, hw, want in [({"kernel_size": [2, 2]}, np.float32, (4, 4), True),
                                    ({"kernel_size": [2, 2]}, np.float64, (4, 4), False),
                                    ({"kernel_size": [16, 16]}, np.float32, (16, 16), False)]:
        calls.clear()
        layer = make_layer("MaxPool2d", params, [(2, *hw)], dtype=dtype)
        y = layer.forward([randn((3, 2, *hw)).astype(dtype)], training=False)
        assert y.dtype == dtype
        assert ("mp_forward" in calls) == want, (params, dtype)
    for dtype, want in [(np.float32, True), (np.float64, False)]:
        calls.clear()
        ops.conv_input_grad(np.ones((1, 2, 4), dtype), np.ones((1, 2, 3 * 3 * 2), dtype),
                            (2, 2), (1, 1), (1, 1), (1, 4, 4, 2), 3)
        assert ("col2im_add" in calls) == want, dtype


def test_maxpool_backward_after_a_numpy_forward(monkeypatch):
    """A cache the NumPy forward wrote (numba switched on since) is read by the compiled
    backward, and one the compiled forward wrote by NumPy's (numba switched off since)."""
    params, hw = MAXPOOL[2]
    layer = make_layer("MaxPool2d", params, [(3, *hw)])
    x, dy = randn((2, 3, *hw)), randn((2, 3, 4, 4), seed=6)
    monkeypatch.setenv(kernels.ENV, "numpy")
    layer.forward([x], training=True)
    monkeypatch.delenv(kernels.ENV)
    calls = _spy_on_kernels(monkeypatch)
    (a,) = layer.backward(dy)
    layer.forward([x], training=True)
    monkeypatch.setenv(kernels.ENV, "numpy")
    (b,) = layer.backward(dy)
    assert calls == ["mp_backward", "mp_forward"]
    layer.forward([x], training=True)
    (want,) = layer.backward(dy)
    np.testing.assert_allclose(a, want, rtol=1e-12)
    np.testing.assert_allclose(b, want, rtol=1e-12)


@pytest.mark.parametrize("type_name", ["ReLU", "ReLU6", "HardSwish"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layouts", ["same", "mixed"])
def test_activation_gradients_compiled_equal_numpy(monkeypatch, type_name, dtype, layouts):
    """One compiled pass gives NumPy's backward, at the kinks (0, 6, ±3) too, whether dy has
    the input's memory layout or not (a CHWN activation, an NCHW gradient)."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4, 5, 6)) * 4).astype(dtype)
    x.flat[:8] = [0, 6, -3, 3, -0.0, 5.999, 3.0001, -3.0001]
    if layouts == "mixed":  # x as a convolution's CHWN output
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = make_layer(type_name, {}, [x.shape[1:]], dtype=dtype)
    layer.forward([x], training=True)
    (got,) = layer.backward(dy)
    _numpy_only(monkeypatch)
    layer.forward([x], training=True)
    (want,) = layer.backward(dy)
    assert got.dtype == want.dtype == dtype
    # to rounding: HardSwish's slope is x/3 + 1/2 in the kernel, x·(1/3) + 1/2 in NumPy
    f32 = dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6 if f32 else 1e-14, atol=1e-7 if f32 else 1e-15)
    assert np.array_equal(got == 0, want == 0)  # the same elements pass no gradient


@pytest.mark.parametrize("type_name", ["ReLU", "ReLU6", "HardSwish", "BatchNorm2d"])
def test_numpy_paths_match_finite_differences(monkeypatch, type_name):
    """The NumPy code the kernels replace stays right (it runs where numba is missing)."""
    _numpy_only(monkeypatch)
    layer = make_layer(type_name, {}, [(3, 4, 5)])
    check_layer(layer, [randn((2, 3, 4, 5), scale=4)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["nchw", "chwn"])
def test_batchnorm_compiled_equals_numpy(monkeypatch, dtype, layout):
    """Training BatchNorm: output, running statistics, dγ, dβ and dx of the compiled kernel
    equal NumPy's (NCHW input and a convolution's CHWN one)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5, 4, 3, 6)) * 3 + 1).astype(dtype)
    if layout == "chwn":
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    dy = rng.standard_normal(x.shape).astype(dtype)
    results = []
    gamma = rng.uniform(0.5, 1.5, 4)
    for env in (None, "numpy"):
        if env:
            monkeypatch.setenv(kernels.ENV, env)
        else:
            monkeypatch.delenv(kernels.ENV, raising=False)
        layer = make_layer("BatchNorm2d", {}, [x.shape[1:]], dtype=dtype)
        layer.weights["weight"][...] = gamma
        y = layer.forward([x], training=True)
        (dx,) = layer.backward(dy)
        results.append((y, dx, layer.grads["weight"], layer.grads["bias"],
                        layer.weights["running_mean"].copy(), layer.weights["running_var"].copy()))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for got, want in zip(*results):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_sums_about_a_given_or_the_own_mean(monkeypatch, dtype):
    """The partial sums a shard of a batch hands over (nn/parallel.py): Σa, Σ(a − mean)²
    about a given mean or each channel's own (one pass over memory), and Σa·b, in float64."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    rng = np.random.default_rng(7)
    a3 = (rng.standard_normal((2, 5, 37)) * 3 + 100).astype(dtype)  # a large mean
    b3 = rng.standard_normal(a3.shape).astype(dtype)
    a = a3.astype(np.float64)
    s_want = a.sum(axis=(0, 2))
    own = s_want / (a3.shape[0] * a3.shape[2])
    given = own + 0.25
    for mean, centre in (("own", own), (given, given)):
        s, q = kernels.batchnorm_sums(a3, mean)
        np.testing.assert_allclose(s, s_want, rtol=1e-12)
        np.testing.assert_allclose(q, ((a - centre[None, :, None]) ** 2).sum(axis=(0, 2)),
                                   rtol=1e-10)
    s, q = kernels.batchnorm_sums(a3, b3=b3)
    np.testing.assert_allclose(q, (a * b3).sum(axis=(0, 2)), rtol=1e-10)


def test_batchnorm_compiled_matches_finite_differences(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    layer = make_layer("BatchNorm2d", {}, [(3, 4, 5)])
    layer.weights["weight"][...] = [0.5, 1.0, 2.0]
    check_layer(layer, [randn((2, 3, 4, 5), scale=2)])


@pytest.mark.parametrize("type_name,params", [
    ("Conv2d", {"out_channels": 7, "groups": 7, "kernel_size": [3, 3], "padding": "same"}),
    ("Conv2d", {"out_channels": 7, "groups": 7, "kernel_size": [3, 3], "stride": [2, 2]}),
    ("BatchNorm2d", {}),
    ("ReLU", {}),
    ("HardSwish", {}),
    ("MaxPool2d", {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]}),
])
@pytest.mark.parametrize("layout", ["nchw", "chwn"])
def test_channels_split_over_threads_give_the_same_numbers(monkeypatch, type_name, params,
                                                          layout):
    """Three threads, each on its own range of the (independent) channels, write bit for bit
    what one thread writes (an NCHW BatchNorm input is not split: its channels are strided;
    an element-wise gradient is cut along its outermost memory axis)."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 7, 6, 5)).astype(np.float32)
    if layout == "chwn":
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    layer = make_layer(type_name, params, [x.shape[1:]], dtype=np.float32)
    out = []
    for min_split in (1 << 40, 1):
        monkeypatch.setattr(kernels, "MIN_SPLIT", min_split)
        monkeypatch.setattr(kernels, "MIN_SPLIT_PASS", min_split)
        y = layer.forward([x], training=True)
        (dx,) = layer.backward(np.cos(y))
        out.append((y, dx, *[layer.grads[k].copy() for k in sorted(layer.grads)]))
    assert kernels.threads() == 3
    for a, b in zip(*out):
        assert np.array_equal(a, b)


def _spy_on_kernels(monkeypatch) -> list[str]:
    """The names of the kernels run from now on, in order (every call goes through
    _run_parts)."""
    calls = []
    real = kernels._run_parts

    def spy(name, k, args_of):
        calls.append(name)
        return real(name, k, args_of)

    monkeypatch.setattr(kernels, "_run_parts", spy)
    return calls


def test_warm_loads_every_kernel(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    calls = _spy_on_kernels(monkeypatch)
    assert kernels.warm()
    assert set(calls) == {"dw_forward", "dw_weight_grad", "dw_input_grad", "bn_forward",
                          "bn_backward", "mp_forward", "mp_backward", "col2im_add",
                          "to_blocked", "from_blocked", "conv_weight_grad",
                          "conv_forward"}
    monkeypatch.setenv(kernels.ENV, "numpy")
    assert not kernels.warm()


def test_inference_waits_for_nothing_training_loads(monkeypatch):
    """After warm_in_background (the designer's start), inference (maybe on the GUI thread)
    uses the kernels only once they are loaded; training loads them itself."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    calls = _spy_on_kernels(monkeypatch)
    monkeypatch.setattr(kernels, "_WARM", False)
    monkeypatch.setattr(kernels, "_LOAD_ON_FIRST_USE", False)
    monkeypatch.setattr(kernels, "warm", lambda real=kernels.warm: real())
    c = 3
    layer = make_layer("Conv2d", {"out_channels": c, "groups": c, "kernel_size": [3, 3]},
                       [(c, 5, 5)], dtype=np.float32)
    x = randn((2, c, 5, 5)).astype(np.float32)
    want = layer.forward([x], training=False)
    assert not kernels.ready() and calls == []
    layer.forward([x], training=True)
    assert calls == ["dw_forward"]
    kernels.warm()
    assert kernels.ready()
    calls.clear()
    np.testing.assert_allclose(layer.forward([x], training=False), want, rtol=1e-5, atol=1e-6)
    assert calls == ["dw_forward"]


def test_without_the_designer_inference_loads_on_first_use(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.setattr(kernels, "_WARM", False)
    assert kernels._LOAD_ON_FIRST_USE and kernels.for_inference()


def test_a_cache_folder_numba_cannot_write_compiles_without_it(monkeypatch):
    """numba refuses cache=True where no cache folder is writable: the kernels are then built
    for this process only, not lost (and never an error in training)."""
    from numba.core import caching

    def read_only(self):
        raise OSError("read-only file system")

    monkeypatch.setattr(caching._CacheLocator, "ensure_cache_path", read_only)
    monkeypatch.setattr(kernels, "_KERNELS", None)
    monkeypatch.setattr(kernels, "_WARM", False)
    monkeypatch.delenv(kernels.ENV, raising=False)
    assert kernels.warm()
    assert "cache" in kernels.BUILD_NOTE


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_kernel_is_numpys_update_bit_for_bit(monkeypatch, weight_decay):
    """The one-pass Adam kernel writes exactly what NumPy's chunked update writes (float32,
    same operations in the same order), over several steps with bias correction."""
    from engine.nn.network import Parameter
    from engine.nn.optim import Adam

    monkeypatch.delenv(kernels.ENV, raising=False)
    calls = _spy_on_kernels(monkeypatch)
    out = []
    for env in (None, "numpy"):
        if env:
            monkeypatch.setenv(kernels.ENV, env)
        layer = make_layer("Linear", {"out_features": 700}, [(600,)], dtype=np.float32)
        opt = Adam([Parameter(f"fc.{k}", layer, k) for k in ("weight", "bias")], lr=3e-3,
                   weight_decay=weight_decay)
        grads = np.random.default_rng(1)
        for _ in range(3):
            layer.grads = {k: grads.standard_normal(w.shape).astype(np.float32)
                           for k, w in layer.weights.items()}
            opt.step()
        out.append({k: w.copy() for k, w in layer.weights.items()}
                   | {f"{k}.{s}": a for k, st in opt.state.items() for s, a in st.items()})
        if env is None:
            assert calls.count("adam") == 6  # both arrays, every step, by the kernel
    assert out[0].keys() == out[1].keys()
    for k in out[0]:
        assert np.array_equal(out[0][k], out[1][k]), k
