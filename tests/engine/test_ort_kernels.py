"""ONNX Runtime's element-wise kernels (engine/nn/ort_kernels.py): accurate, and the layers
that use them compute the same with their NumPy fallback."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from engine.layers import REGISTRY
from engine.nn import ort_kernels

GRID = np.linspace(-12.0, 12.0, 24001).astype(np.float32)
X64 = GRID.astype(np.float64)
ERF64 = np.array([math.erf(v) for v in X64 / math.sqrt(2.0)])


def test_erf_and_gelu_match_math_erf():
    e = ort_kernels.erf((X64 / math.sqrt(2.0)).astype(np.float32))
    assert e.dtype == np.float32 and e.shape == GRID.shape
    assert np.abs(e - ERF64).max() <= 2e-7
    g = ort_kernels.gelu(GRID)
    exact = 0.5 * X64 * (1 + ERF64)
    assert np.abs(g - exact).max() <= 2e-6  # 12·(a few ulps at 12)
    assert np.abs(g - exact)[np.abs(X64) < 1].max() <= 2e-7


def test_silu_and_hard_sigmoid_match_their_formulas():
    silu = X64 / (1 + np.exp(-X64))
    assert np.abs(ort_kernels.silu(GRID) - silu).max() <= 2e-6
    hs = np.clip(0.2 * X64 + 0.5, 0, 1)
    assert np.abs(ort_kernels.hard_sigmoid(GRID, 0.2, 0.5) - hs).max() <= 2e-7
    # a different α, β is another kernel, not the cached one
    hs2 = np.clip(X64 / 6 + 0.5, 0, 1)
    assert np.abs(ort_kernels.hard_sigmoid(GRID, 1 / 6, 0.5) - hs2).max() <= 2e-7


def test_other_dtypes_are_left_to_numpy():
    assert ort_kernels.gelu(X64) is None
    assert ort_kernels.erf(X64) is None


def test_kernels_are_shared_across_threads():
    x = np.random.default_rng(0).standard_normal((8, 16, 32, 32)).astype(np.float32)
    want = ort_kernels.gelu(x)
    got: list = [None] * 6

    def work(i):
        got[i] = ort_kernels.gelu(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(g, want) for g in got)


@pytest.mark.parametrize("type_name,params", [
    ("GELU", {}), ("SiLU", {}), ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}),
    ("HardSwish", {})])
def test_layers_compute_the_same_without_the_kernels(type_name, params, monkeypatch):
    """The NumPy path (an onnxruntime without the op) and the kernel path agree, forward in
    both modes and backward."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 8, 12, 12)) * 4).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)

    def run():
        layer = REGISTRY[type_name]("a", **params)
        y = layer.forward([x])
        yt = layer.forward([x], training=True)
        return y, yt, layer.backward(dy)[0]

    fast = run()
    for name in ("erf", "gelu", "silu", "hard_sigmoid"):
        monkeypatch.setattr(ort_kernels, name, lambda *a, **k: None)
    slow = run()
    for a, b in zip(fast, slow):
        assert a.dtype == np.float32 and a.shape == x.shape
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, float(np.abs(b).max()))


def test_sigmoid_keeps_its_tails():
    """The Sigmoid layer stays on NumPy: σ(−20) ≈ 2e-9 must not flush to 0 (MLAS's does)."""
    y = REGISTRY["Sigmoid"]("s").forward([np.array([-30.0, -20.0, 0.0, 20.0], np.float32)])
    exact = 1 / (1 + np.exp(np.array([30.0, 20.0, 0.0, -20.0])))
    assert np.all(np.abs(y - exact) <= 1e-6 * exact)
