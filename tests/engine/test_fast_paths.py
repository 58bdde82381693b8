"""The engine's speed-ups keep the results: memory layouts, reused buffers, skipped gradients,
the chunked weight-gradient product and the fast parameter normalization."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine.nn.ops
from engine.errors import ParamError, ShapeError
from engine.graph import sequential
from engine.layers import REGISTRY
from engine.layers.base import _SLOW
from engine.nn.losses import softmax_cross_entropy
from engine.nn.network import Network
from engine.nn.ops import as_chwn, matmul_nt, nchw


def layer(type_name, params, in_shape, seed=0):
    lay = REGISTRY[type_name]("t", **params)
    lay.output_shape([in_shape])
    lay.init_weights([in_shape], np.random.default_rng(seed))
    return lay


def chwn_copy(x):
    """The same logical (N, C, H, W) values held in (C, H, W, N) memory."""
    return nchw(np.ascontiguousarray(x.transpose(1, 2, 3, 0)))


CASES = [
    ("Conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1}, (3, 7, 6)),
    ("Conv2d", {"out_channels": 4, "kernel_size": [2, 3], "stride": 2, "dilation": [2, 1],
                "groups": 2, "padding": "same", "bias": False}, (2, 9, 8)),
    ("MaxPool2d", {"kernel_size": 2}, (3, 7, 6)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 8, 9)),
    ("ReLU", {}, (3, 5, 5)),
]


@pytest.mark.parametrize("type_name, params, in_shape", CASES)
def test_layout_of_the_input_does_not_change_results(type_name, params, in_shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5,) + in_shape).astype(np.float32)
    a, b = layer(type_name, params, in_shape), layer(type_name, params, in_shape)
    ya = a.forward([x], training=True)
    yb = b.forward([chwn_copy(x)], training=True)
    np.testing.assert_array_equal(ya, yb)
    dy = rng.standard_normal(ya.shape).astype(np.float32)
    (dxa,), (dxb,) = a.backward(dy), b.backward(chwn_copy(dy))
    np.testing.assert_array_equal(dxa, dxb)
    for k in a.grads:
        np.testing.assert_allclose(a.grads[k], b.grads[k], rtol=1e-6, atol=1e-6)


def test_maxpool_gives_a_tied_window_gradient_to_its_first_maximum_only():
    """ReLU outputs are full of exact zeros: a window of equal values routes all of dy to
    the first (row-major) cell, as PyTorch does, not to every tied cell."""
    pool = layer("MaxPool2d", {"kernel_size": 2}, (1, 4, 4))
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 2:, 2:] = [[1, 3], [3, 2]]  # a tie between two maxima in the last window
    pool.forward([x], training=True)
    (dx,) = pool.backward(np.ones((1, 1, 2, 2), np.float32))
    expect = np.zeros((4, 4), np.float32)
    expect[0, 0] = expect[0, 2] = expect[2, 0] = 1  # first cell of each all-zero window
    expect[2, 3] = 1  # the first 3 in row-major order, not the one below-left
    np.testing.assert_array_equal(dx[0, 0], expect)


def test_maxpool_propagates_nan_like_pytorch():
    pool = layer("MaxPool2d", {"kernel_size": 2}, (1, 2, 2))
    x = np.array([[[[1, np.nan], [2, 0]]]], np.float32)
    assert np.isnan(pool.forward([x])[0, 0, 0, 0])


def test_a_second_training_forward_leaves_the_first_output_alone():
    """Conv2d reuses its im2col work arrays between training steps, never its outputs (10
    input channels: more than the direct convolution's DIRECT_MAX_CHANNELS)."""
    conv = layer("Conv2d", {"out_channels": 3, "kernel_size": 3}, (10, 6, 6))
    rng = np.random.default_rng(2)
    x1, x2 = (rng.standard_normal((4, 10, 6, 6)).astype(np.float32) for _ in range(2))
    y1 = conv.forward([x1], training=True)
    kept = y1.copy()
    conv.forward([x2], training=True)
    np.testing.assert_array_equal(y1, kept)
    assert getattr(conv, "_scratch", None)  # work arrays kept while training ...
    y3 = conv.forward([x1])
    assert not getattr(conv, "_scratch", None)  # ... and let go by inference
    np.testing.assert_allclose(y3, kept, rtol=1e-6)


def lenet():
    return sequential([
        ("Input", "input", {"channels": 1, "height": 12, "width": 12}),
        ("Conv2d", "conv1", {"out_channels": 3, "kernel_size": 3, "padding": 1}),
        ("ReLU", "relu1", {}),
        ("MaxPool2d", "pool1", {"kernel_size": 2}),
        ("Conv2d", "conv2", {"out_channels": 4, "kernel_size": 3}),
        ("ReLU", "relu2", {}),
        ("Flatten", "flat", {}),
        ("Linear", "fc", {"out_features": 5}),
        ("Softmax", "softmax", {}),
    ])


@pytest.mark.parametrize("frozen", [[], ["conv1"]])
def test_backward_without_input_gradient_gives_the_same_weight_gradients(frozen):
    rng = np.random.default_rng(3)
    x = rng.random((6, 1, 12, 12), dtype=np.float32)
    y = rng.integers(0, 5, 6)
    grads = []
    for input_grad in (True, False):
        net = Network.compile(lenet(), np.random.default_rng(0))
        net.set_frozen(frozen)
        z = net.forward(x, training=True, logits=True)
        _, dz = softmax_cross_entropy(z, y)
        dx = net.backward(dz, from_logits=True, input_grad=input_grad)
        # (with conv1 frozen, backward stops before the input either way)
        assert (dx is None) == (not input_grad or bool(frozen))
        assert all(getattr(lay, "need_dx", True) for lay in net.layers.values())
        grads.append({p.key: p.grad.copy() for p in net.parameters()})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        np.testing.assert_array_equal(grads[0][k], grads[1][k], err_msg=k)


@pytest.mark.parametrize("lead, m, k, length", [((), 6, 26, 50176), ((2,), 3, 10, 40000),
                                                ((1,), 16, 151, 25600), ((), 4, 5, 7)])
def test_chunked_weight_gradient_product_matches_matmul(lead, m, k, length):
    rng = np.random.default_rng(4)
    a = rng.standard_normal(lead + (m, length))
    b = rng.standard_normal(lead + (k, length))
    np.testing.assert_allclose(matmul_nt(a, b), a @ np.swapaxes(b, -1, -2), rtol=1e-10,
                               atol=1e-9)


def test_as_chwn_is_a_view_for_chwn_memory_and_a_copy_otherwise():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    c = as_chwn(x)
    assert c.flags.c_contiguous and c.shape == (3, 4, 5, 2)
    np.testing.assert_array_equal(nchw(c), x)
    assert as_chwn(nchw(c)).base is c or np.shares_memory(as_chwn(nchw(c)), c)


VALUES = [None, 0, 1, 3, -1, 64, 65, 1e9, True, False, 0.5, 2.0, -0.0, float("nan"),
          float("inf"), "valid", "same", "VALID", "x", "he", "glorot", [1, 1], [3, 3], (2, 3),
          [0, 1], [1, 65], [1], [1, 2, 3], [1, 2, 3, 4], (0, 0, 0, 0), [0, -1, 0, 0], [2, 1],
          [True, 1], [1.0, 2], ["a", 1], {}, 3.0]


def outcome(param, value, fast: bool):
    try:
        if not fast:  # force the full path
            object.__setattr__(param, "_canonical", lambda v: _SLOW)
        return ("ok", param.normalize(value, "Layer 'x'"))
    except ParamError as exc:
        return ("error", str(exc), exc.param)
    finally:
        if not fast:
            object.__delattr__(param, "_canonical")


def test_param_normalize_fast_path_returns_what_the_full_path_returns():
    for cls in REGISTRY.values():
        for p in cls.params:
            for v in VALUES:
                full, fast = outcome(p, v, False), outcome(p, v, True)
                if full[0] == "ok" and isinstance(full[1], float) and math.isnan(full[1]):
                    assert fast[0] == "ok" and math.isnan(fast[1])
                    continue
                assert fast == full and type(fast[-1]) is type(full[-1]), (cls, p.name, v)


@pytest.mark.parametrize("params", [
    {"out_channels": 4, "kernel_size": 3, "padding": 1},
    {"out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1], "dilation": [1, 2],
     "groups": 2, "padding": [1, 0, 2, 1]},
])
def test_conv_input_gradient_in_row_blocks_equals_one_block(params, monkeypatch):
    """Big layers compute dx in blocks of output rows; tiny blocks must give the same dx."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 9, 8))
    dxs = []
    for block in (1 << 30, 0):  # one block; one output row per block
        monkeypatch.setattr(engine.nn.ops, "BLOCK_BYTES", block)
        conv = layer("Conv2d", params, (4, 9, 8))
        y = conv.forward([x], training=True)
        dxs.append(conv.backward(np.random.default_rng(6).standard_normal(y.shape))[0])
    np.testing.assert_allclose(dxs[0], dxs[1], rtol=1e-12, atol=1e-12)


def test_linear_gives_dx_in_the_memory_order_of_its_input():
    fc = layer("Linear", {"out_features": 3}, (8,))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    dy = rng.standard_normal((5, 3)).astype(np.float32)
    dxs = []
    for xin in (x, np.asfortranarray(x)):
        fc.forward([xin], training=True)
        dxs.append(fc.backward(dy)[0])
    assert dxs[1].flags.f_contiguous
    np.testing.assert_allclose(dxs[0], dxs[1], rtol=1e-6)
    np.testing.assert_allclose(dxs[0], dy @ fc.weights["weight"], rtol=1e-6)


@pytest.mark.parametrize("params", [
    {"kernel_size": 2}, {"kernel_size": 2, "stride": 1},
    {"kernel_size": 2, "padding": [1, 0, 0, 1], "ceil_mode": True},
    {"kernel_size": 3, "stride": 2},
])
def test_maxpool_routes_gradient_to_the_first_maximum_of_each_window(params):
    """Against a direct loop over windows (ties everywhere: small integers), overlapping,
    padded and ceil-mode windows included."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, (2, 3, 7, 6)).astype(np.float32)
    pool = layer("MaxPool2d", params, (3, 7, 6))
    y = pool.forward([x], training=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (dx,) = pool.backward(dy)
    k, s = pool.kernel_size, pool.strides
    pads = pool._full_pads(7, 6)[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                constant_values=-np.inf)
    ref = np.zeros_like(xp)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            win = xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]]
            flat = win.reshape(2, 3, -1)
            first = flat.argmax(axis=-1)  # numpy: the first maximum
            np.testing.assert_array_equal(y[:, :, i, j], flat.max(axis=-1))
            for nn in range(2):
                for cc in range(3):
                    r, q = divmod(first[nn, cc], k[1])
                    ref[nn, cc, i * s[0] + r, j * s[1] + q] += dy[nn, cc, i, j]
    ref = ref[:, :, pads[0]:pads[0] + 7, pads[1]:pads[1] + 6]
    np.testing.assert_allclose(dx, ref, rtol=1e-6)


def test_conv_and_maxpool_match_pytorch_on_random_settings():
    """Batch 1-5, groups, strides, dilation, padding, ceil mode, a non-contiguous input and
    tied maxima: forward, input gradient and weight gradients equal PyTorch's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 25:
        n, g = int(rng.choice([1, 2, 5])), int(rng.choice([1, 2, 3]))
        c, co = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
        k, s, d = (tuple(int(v) for v in rng.integers(1, m, 2)) for m in (4, 3, 3))
        p = tuple(int(v) for v in rng.integers(0, 3, 2))
        h, w = (int(v) for v in rng.integers(6, 12, 2))
        try:
            conv = layer("Conv2d", {"out_channels": co, "kernel_size": list(k),
                                    "stride": list(s), "dilation": list(d),
                                    "padding": [p[0], p[1], p[0], p[1]], "groups": g},
                         (c, h, w), seed=checked)
        except ShapeError:
            continue
        x = rng.standard_normal((n, c, h, 2 * w)).astype(np.float32)[..., ::2]
        tc = torch.nn.Conv2d(c, co, k, s, p, d, g)
        with torch.no_grad():
            tc.weight.copy_(torch.from_numpy(conv.weights["weight"]))
            tc.bias.copy_(torch.from_numpy(conv.weights["bias"]))
        y = conv.forward([x], training=True)
        y = np.round(y * 4) / 4  # ties for the pooling below
        xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
        yt = tc(xt)
        np.testing.assert_allclose(y, np.round(yt.detach().numpy() * 4) / 4, atol=0.25)
        pool = layer("MaxPool2d", {"kernel_size": 2, "stride": int(rng.integers(1, 3)),
                                   "ceil_mode": bool(rng.integers(0, 2))}, y.shape[1:])
        z = pool.forward([y], training=True)
        yt2 = torch.from_numpy(np.ascontiguousarray(y)).requires_grad_(True)
        zt = torch.nn.functional.max_pool2d(yt2, 2, pool.strides, ceil_mode=pool.ceil_mode)
        np.testing.assert_array_equal(z, zt.detach().numpy())
        dz = rng.standard_normal(z.shape).astype(np.float32)
        zt.backward(torch.from_numpy(dz))
        np.testing.assert_allclose(pool.backward(dz)[0], yt2.grad.numpy(), rtol=1e-5,
                                   atol=1e-6)  # overlapping windows: summation order
        dy = rng.standard_normal(y.shape).astype(np.float32)
        yt.backward(torch.from_numpy(dy))
        (dx,) = conv.backward(dy)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(conv.grads["weight"], tc.weight.grad.numpy(), rtol=1e-4,
                                   atol=1e-3)
        np.testing.assert_allclose(conv.grads["bias"], tc.bias.grad.numpy(), rtol=1e-4,
                                   atol=1e-3)
        checked += 1
