"""Layers give the same values, gradients included, whatever the memory layout of their input.

A convolution returns its (N, C, H, W) output as a view of (C, H, W, N) memory ("CHWN",
engine/nn/ops.py); normalisation and element-wise layers work on that memory directly (blocks
along the outermost memory axis, BatchNorm on an (A, C, L) view) and keep the layout. Their
finite-difference checks (test_gradients.py) run on NCHW arrays; here every layout, and a
gradient of another layout than the input, must give those same results, in float64 and in
float32 (where some activations use ONNX Runtime kernels).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.layers import REGISTRY
from engine.nn.ops import memory_view

from .test_gradients import make_layer

SHAPE = (5, 6, 7, 9)  # N, C, H, W


def chwn(a: np.ndarray) -> np.ndarray:
    """The same logical array backed by (C, H, W, N) memory."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def hwnc(a: np.ndarray) -> np.ndarray:
    """Another layout: channels innermost (N, H, W, C) memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


LAYOUTS = {"nchw": np.ascontiguousarray, "chwn": chwn, "nhwc": hwnc,
           "strided": lambda a: np.repeat(a, 2, axis=3)[:, :, :, ::2]}

CASES = [("BatchNorm2d", {}), ("BatchNorm2d", {"eps": 1e-3, "momentum": 0.3}),
         ("HardSwish", {}), ("ReLU6", {}), ("ReLU", {}), ("SiLU", {}), ("GELU", {}),
         ("GELU", {"approximate": "tanh"}), ("ELU", {}), ("HardSigmoid", {}), ("Sigmoid", {}),
         ("LayerNorm2d", {}), ("GroupNorm", {"num_groups": 3})]


def run(type_name, params, x, dy, training=True, frozen=False):
    layer = make_layer(type_name, params, [x.shape[1:]], dtype=x.dtype)
    layer.frozen = frozen
    y = layer.forward([x], training)
    if not training:
        return y, None, {}
    (dx,) = layer.backward(dy)
    return y, dx, dict(layer.grads)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1] or ''}")
@pytest.mark.parametrize("layout", ["chwn", "nhwc", "strided"])
@pytest.mark.parametrize("grad_layout", ["nchw", "chwn"])
def test_layout_gives_the_nchw_results(case, layout, grad_layout, dtype):
    type_name, params = case
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(SHAPE) * 3).astype(dtype)
    dy = rng.standard_normal(SHAPE).astype(dtype)
    y0, dx0, g0 = run(type_name, params, x, dy)
    xl = LAYOUTS[layout](x)
    assert not xl.flags.c_contiguous and np.array_equal(xl, x)
    y1, dx1, g1 = run(type_name, params, xl, LAYOUTS[grad_layout](dy))
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-5,
                                                                      "atol": 2e-5}
    assert y1.dtype == dx1.dtype == dtype
    np.testing.assert_allclose(y1, y0, **tol)
    np.testing.assert_allclose(dx1, dx0, **tol)
    assert g1.keys() == g0.keys()
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], **tol)
    if layout == "chwn" and type_name not in ("LayerNorm2d", "GroupNorm"):
        # a convolution's output layout survives the layer: no transposing copy downstream
        assert memory_view(y1)[0] == (1, 2, 3, 0)


@pytest.mark.parametrize("frozen", [False, True])
def test_batchnorm_inference_and_frozen_forms_on_chwn(frozen):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(SHAPE)
    dy = rng.standard_normal(SHAPE)
    for training in (False, True):
        y0, dx0, _ = run("BatchNorm2d", {}, x, dy, training, frozen)
        y1, dx1, _ = run("BatchNorm2d", {}, chwn(x), chwn(dy), training, frozen)
        np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
        if training:
            np.testing.assert_allclose(dx1, dx0, rtol=1e-12, atol=1e-12)


def test_batchnorm_statistics_match_numpy_on_chwn():
    """Batch mean / biased variance normalise; running stats get the unbiased variance."""
    rng = np.random.default_rng(5)
    x = chwn(rng.standard_normal(SHAPE) * 2 + 1)
    layer = make_layer("BatchNorm2d", {"momentum": 1.0}, [SHAPE[1:]])
    layer.weights["weight"][...] = 1
    layer.weights["bias"][...] = 0
    y = layer.forward([x], True)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    want = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.weights["running_mean"], mean, rtol=1e-12)
    # the m/(m − 1) factor is a float32 constant: float32 precision
    np.testing.assert_allclose(layer.weights["running_var"], x.var(axis=(0, 2, 3), ddof=1),
                               rtol=1e-7)


def test_every_case_is_registered():
    assert {c[0] for c in CASES} <= set(REGISTRY)


@pytest.mark.parametrize("type_name", ["Add", "Multiply"])
def test_merge_output_keeps_a_convolution_layout(type_name):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    gate = rng.standard_normal(SHAPE[:2] + (1, 1))  # an SE gate broadcast over H, W
    for other in (b, chwn(b), gate):
        layer = REGISTRY[type_name]("m")
        y0 = layer.forward([a, other], True)
        y1 = layer.forward([chwn(a), other], True)
        np.testing.assert_array_equal(y1, y0)
        assert memory_view(y1)[0] == (1, 2, 3, 0)
