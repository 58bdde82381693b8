"""Kernel presets, parsing and the lesson network (against a direct correlation loop)."""

import numpy as np
import pytest

from engine.errors import ParamError
from engine.zoo.lesson_kernels import (
    PRESETS,
    fit_kernel,
    format_kernel,
    lesson_network,
    parse_kernel,
    preset,
    with_kernels,
)


def correlate(img: np.ndarray, k: np.ndarray, pad: int) -> np.ndarray:
    """Direct 2-D cross-correlation with `pad` zeros on every side, written as loops (the
    reference for the engine's convolution; also used by the feature-map panel tests)."""
    h, w = img.shape
    kh, kw = k.shape
    ho, wo = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    out = np.zeros((ho, wo), np.float64)
    for i in range(ho):
        for j in range(wo):
            s = 0.0
            for a in range(kh):
                for b in range(kw):
                    y, x = i + a - pad, j + b - pad
                    if 0 <= y < h and 0 <= x < w:
                        s += float(img[y, x]) * float(k[a, b])
            out[i, j] = s
    return out


def correlate_same(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """'same' output size for an odd kernel."""
    return correlate(img, k, k.shape[0] // 2)


def test_presets_are_3x3_float32_and_known_sums():
    for name in PRESETS:
        k = preset(name)
        assert k.shape == (3, 3) and k.dtype == np.float32, name
    # edge detectors and the Laplacian ignore flat areas; blurs and sharpen keep brightness
    for name in ("vertical_edge", "horizontal_edge", "sobel_x", "sobel_y", "laplacian"):
        assert abs(preset(name).sum()) < 1e-6
    for name in ("box_blur", "gaussian_blur", "sharpen", "identity"):
        assert abs(preset(name).sum() - 1) < 1e-6
    with pytest.raises(ParamError, match="presets"):
        preset("nope")


def test_parse_and_format_round_trip():
    k = parse_kernel("-1 0 1\n-2, 0, 2; -1 0 1")
    np.testing.assert_array_equal(k, preset("sobel_x"))
    np.testing.assert_allclose(parse_kernel("1/9 1/9 1/9;" * 3), preset("box_blur"))
    np.testing.assert_allclose(parse_kernel(format_kernel(preset("gaussian_blur"))),
                               preset("gaussian_blur"), atol=1e-4)
    with pytest.raises(ParamError, match="row 2"):
        parse_kernel("1 2 3\n4 x 6")
    with pytest.raises(ParamError, match="different lengths"):
        parse_kernel("1 2 3\n4 5")
    with pytest.raises(ParamError, match="5×5"):
        parse_kernel("1 2 3\n4 5 6\n7 8 9", size=(5, 5))
    with pytest.raises(ParamError, match="empty"):
        parse_kernel("  ")


def test_fit_kernel_centres_and_refuses_too_small():
    k = fit_kernel(preset("vertical_edge"), (5, 5))
    assert k.shape == (5, 5)
    np.testing.assert_array_equal(k[1:4, 1:4], preset("vertical_edge"))
    assert k[0].sum() == 0 and k[:, 0].sum() == 0
    with pytest.raises(ParamError, match="does not fit"):
        fit_kernel(preset("sobel_x"), (1, 1))


def test_lesson_network_matches_direct_correlation_relu_and_pool():
    rng = np.random.default_rng(3)
    img = np.zeros((12, 10), np.float32)
    img[:, 5:] = 1.0  # a vertical edge: dark left, bright right
    img += rng.uniform(0, 0.1, img.shape).astype(np.float32)
    ks = [preset("vertical_edge"), preset("laplacian")]
    net = lesson_network(ks, input_shape=(1, 12, 10))
    outs = net.forward(img[None, None], keep=True)
    for i, k in enumerate(ks):
        ref = correlate_same(img, k)
        np.testing.assert_allclose(outs["conv"][0, i], ref, atol=1e-5)
        np.testing.assert_allclose(outs["relu"][0, i], np.maximum(ref, 0), atol=1e-5)
        pooled = np.maximum(ref, 0).reshape(6, 2, 5, 2).max(axis=(1, 3))
        np.testing.assert_allclose(outs["pool"][0, i], pooled, atol=1e-5)
    # the vertical edge kernel answers strongest along the edge column
    assert outs["relu"][0, 0, 6].argmax() in (4, 5)


def test_lesson_network_on_colour_uses_brightness():
    img = np.random.default_rng(0).uniform(size=(3, 8, 8)).astype(np.float32)
    net = lesson_network([preset("sobel_y")], input_shape=(3, 8, 8))
    y = net.forward(img[None], keep=True)["conv"][0, 0]
    np.testing.assert_allclose(y, correlate_same(img.mean(axis=0), preset("sobel_y")), atol=1e-5)


def test_with_kernels_sets_one_filter_and_leaves_the_rest():
    rng = np.random.default_rng(1)
    w = {"c.weight": rng.normal(size=(4, 2, 5, 5)).astype(np.float32),
         "c.bias": np.ones(4, np.float32), "fc.weight": np.ones((3, 3), np.float32)}
    out = with_kernels(w, "c", {2: preset("sharpen")})
    np.testing.assert_allclose(out["c.weight"][2, 1], fit_kernel(preset("sharpen"), (5, 5)) / 2)
    assert out["c.bias"][2] == 0 and out["c.bias"][0] == 1
    np.testing.assert_array_equal(out["c.weight"][[0, 1, 3]], w["c.weight"][[0, 1, 3]])
    assert w["c.bias"][2] == 1  # the input is not modified
    with pytest.raises(ParamError, match="no filter 5"):
        with_kernels(w, "c", {4: preset("sharpen")})
    with pytest.raises(ParamError, match="no convolution weights"):
        with_kernels(w, "x", {0: preset("sharpen")})
