"""Backward of every layer type against central finite differences, in float64.

The loss is L = Σ y · R for a fixed random R, so dL/dy = R. Inputs and weights are float64 and
the layers follow the input's dtype, so the analytic gradients must match the numeric ones to
~1e-6. hypothesis varies stride, padding (valid / same / explicit asymmetric), dilation,
groups, ceil_mode, count_include_pad, kernel sizes and small shapes. That every registered
type has its gradient checked is tests/engine/test_registry.py's job (parametrized over REGISTRY).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from engine.errors import ShapeError
from engine.graph import Graph
from engine.layers import REGISTRY
from engine.nn.network import Network

EPS = 1e-6
FEW = settings(max_examples=20, deadline=None)


def make_layer(type_name, params, in_shapes, seed=0, dtype=np.float64):
    """A layer with weights (random, biases and BN statistics included) in `dtype`."""
    rng = np.random.default_rng(seed)
    layer = REGISTRY[type_name]("g", **params)
    layer.output_shape(in_shapes)
    layer.init_weights(in_shapes, rng)
    for k, v in layer.weights.items():
        if k == "running_var":
            v = rng.uniform(0.5, 2.0, v.shape)
        elif k == "weight" and type_name == "BatchNorm2d":
            v = rng.uniform(0.5, 1.5, v.shape)
        elif k in ("bias", "running_mean"):
            v = rng.standard_normal(v.shape)
        layer.weights[k] = np.asarray(v, dtype)
    return layer


def numeric_grad(f, a):
    """Central differences of scalar f() w.r.t. every element of `a` (perturbed in place)."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        fp = f()
        flat[i] = old - EPS
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * EPS)
    return g


def check_layer(layer, xs, seed=1, reset=None, expect_weight_grads=True):
    """Compare backward's dx for every input and every trainable weight gradient with central
    differences. `reset` runs before each forward (e.g. to fix Dropout's mask)."""
    rng = np.random.default_rng(seed)

    ports: list = []  # the output ports' shapes, for a layer with several (ChannelSplit)

    def forward():
        if reset is not None:
            reset()
        y = layer.forward(xs, training=True)
        if isinstance(y, list):  # every port's values side by side, sample by sample
            ports[:] = [a.shape for a in y]
            y = np.concatenate([a.reshape(len(a), -1) for a in y], axis=1)
        return y

    y = forward()
    assert y.dtype == np.float64
    r = rng.standard_normal(y.shape)
    layer.grads = {}
    dy = r.copy()
    if ports:  # one gradient per output port
        cuts = np.cumsum([int(np.prod(s[1:])) for s in ports])[:-1]
        dy = [d.reshape(s) for d, s in zip(np.split(dy, cuts, axis=1), ports)]
    dxs = layer.backward(dy)
    grads = {k: np.array(v) for k, v in layer.grads.items()}

    def loss():
        return float((forward() * r).sum())

    assert len(dxs) == len(xs)
    for i, (x, dx) in enumerate(zip(xs, dxs)):
        assert dx.shape == x.shape and dx.dtype == np.float64, i
        np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7,
                                   err_msg=f"dx of input {i}")
    names = layer.trainable_names()
    if expect_weight_grads:
        assert set(grads) == set(names)
    else:
        assert not grads
    for k in names if expect_weight_grads else ():
        assert grads[k].dtype == np.float64, k
        np.testing.assert_allclose(grads[k], numeric_grad(loss, layer.weights[k]), rtol=1e-5,
                                   atol=1e-7, err_msg=f"gradient of {k}")


def randn(shape, seed=2, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


# ---- convolution ---------------------------------------------------------------------------

paddings = st.one_of(st.just("valid"), st.just("same"),
                     st.lists(st.integers(0, 2), min_size=4, max_size=4))


@FEW
@given(cg=st.integers(1, 2), og=st.integers(1, 2), groups=st.integers(1, 3),
       k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)), padding=paddings,
       hw=st.tuples(st.integers(1, 7), st.integers(1, 7)), bias=st.booleans(),
       seed=st.integers(0, 100), n=st.integers(1, 3))
@example(cg=2, og=1, groups=2, k=(2, 3), s=(2, 2), d=(2, 1), padding="same", hw=(6, 7),
         bias=True, seed=0, n=2)
@example(cg=1, og=2, groups=3, k=(3, 3), s=(2, 1), d=(1, 1), padding=[0, 2, 1, 0], hw=(5, 4),
         bias=False, seed=1, n=1)
def test_conv2d_backward(cg, og, groups, k, s, d, padding, hw, bias, seed, n):
    in_shape = (cg * groups,) + hw
    params = {"out_channels": og * groups, "kernel_size": list(k), "stride": list(s),
              "dilation": list(d), "padding": padding, "groups": groups, "bias": bias}
    try:
        layer = make_layer("Conv2d", params, [in_shape], seed)
    except ShapeError:
        assume(False)
    check_layer(layer, [randn((n,) + in_shape, seed)], seed)


def test_frozen_conv_and_linear_pass_gradient_without_weight_grads():
    conv = make_layer("Conv2d", {"out_channels": 3, "kernel_size": 3, "padding": 1}, [(2, 4, 4)])
    conv.frozen = True
    check_layer(conv, [randn((2, 2, 4, 4))], expect_weight_grads=False)
    fc = make_layer("Linear", {"out_features": 3}, [(5,)])
    fc.frozen = True
    check_layer(fc, [randn((4, 5))], expect_weight_grads=False)


# ---- pooling -------------------------------------------------------------------------------

def pool_params(k, stride, padding, ceil_mode):
    return {"kernel_size": list(k), "stride": None if stride is None else list(stride),
            "padding": padding, "ceil_mode": ceil_mode}


strides = st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3)))
pool_pads = st.one_of(st.just("valid"), st.just("same"),
                      st.lists(st.integers(0, 1), min_size=4, max_size=4))


@FEW
@given(k=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=strides, padding=pool_pads,
       ceil_mode=st.booleans(), hw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       seed=st.integers(0, 100), n=st.integers(1, 3))
@example(k=(3, 3), stride=(2, 2), padding=[1, 1, 1, 1], ceil_mode=True, hw=(6, 6), seed=0, n=2)
@example(k=(2, 3), stride=(3, 2), padding=[1, 0, 0, 1], ceil_mode=True, hw=(7, 5), seed=1, n=1)
def test_maxpool_backward(k, stride, padding, ceil_mode, hw, seed, n):
    try:
        layer = make_layer("MaxPool2d", pool_params(k, stride, padding, ceil_mode), [(2,) + hw])
    except ShapeError:
        assume(False)
    # random inputs: no ties, so the maximum is differentiable
    check_layer(layer, [randn((n, 2) + hw, seed)], seed)


@FEW
@given(k=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=strides, padding=pool_pads,
       ceil_mode=st.booleans(), include=st.booleans(),
       hw=st.tuples(st.integers(1, 7), st.integers(1, 7)), seed=st.integers(0, 100))
@example(k=(3, 3), stride=(2, 2), padding=[1, 1, 1, 1], ceil_mode=True, include=True, hw=(6, 6),
         seed=0)
@example(k=(3, 3), stride=(2, 2), padding=[1, 1, 1, 1], ceil_mode=True, include=False,
         hw=(6, 6), seed=0)
@example(k=(2, 3), stride=None, padding="same", ceil_mode=False, include=False, hw=(5, 7),
         seed=2)
def test_avgpool_backward(k, stride, padding, ceil_mode, include, hw, seed):
    params = pool_params(k, stride, padding, ceil_mode) | {"count_include_pad": include}
    try:
        layer = make_layer("AvgPool2d", params, [(2,) + hw])
    except ShapeError:
        assume(False)
    check_layer(layer, [randn((2, 2) + hw, seed)], seed)


@FEW
@given(hw=st.tuples(st.integers(1, 7), st.integers(1, 7)), out=st.tuples(st.integers(1, 7),
                                                                         st.integers(1, 7)),
       seed=st.integers(0, 100))
def test_adaptive_avgpool_backward(hw, out, seed):
    assume(out[0] <= hw[0] and out[1] <= hw[1])
    layer = make_layer("AdaptiveAvgPool2d", {"output_size": list(out)}, [(2,) + hw])
    check_layer(layer, [randn((2, 2) + hw, seed)], seed)


def test_global_avgpool_backward():
    check_layer(make_layer("GlobalAvgPool2d", {}, [(3, 4, 5)]), [randn((2, 3, 4, 5))])


# ---- element-wise, core, merges ------------------------------------------------------------

@pytest.mark.parametrize("type_name,params,scale", [
    ("ReLU", {}, 1.0), ("LeakyReLU", {"negative_slope": 0.1}, 1.0), ("ReLU6", {}, 5.0),
    ("Sigmoid", {}, 2.0), ("Tanh", {}, 1.0), ("Softmax", {}, 2.0), ("Flatten", {}, 1.0),
])
@pytest.mark.parametrize("in_shape", [(3, 4, 4), (7,)])
def test_shape_preserving_layer_backward(type_name, params, scale, in_shape):
    layer = make_layer(type_name, params, [in_shape])
    x = randn((3,) + in_shape, scale=scale)
    if type_name == "ReLU6":
        assert (x > 6).any() and (x < 0).any()  # both kinks are exercised
    check_layer(layer, [x])


def test_input_backward():
    check_layer(make_layer("Input", {"channels": 3, "height": 4, "width": 4}, []),
                [randn((2, 3, 4, 4))])


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward(bias):
    check_layer(make_layer("Linear", {"out_features": 4, "bias": bias}, [(6,)]), [randn((5, 6))])


def test_dropout_backward_with_fixed_mask():
    layer = make_layer("Dropout", {"p": 0.4}, [(3, 4, 4)])

    def reset():
        layer.rng = np.random.default_rng(42)

    reset()
    y = layer.forward([np.ones((2, 3, 4, 4))], training=True)
    assert (y == 0).any() and (y != 0).any()  # the mask drops some, keeps some
    check_layer(layer, [randn((2, 3, 4, 4))], reset=reset)


@pytest.mark.parametrize("n_inputs", [2, 3])
def test_add_backward(n_inputs):
    layer = make_layer("Add", {}, [(2, 3, 3)] * n_inputs)
    check_layer(layer, [randn((2, 2, 3, 3), seed=i) for i in range(n_inputs)])


def test_concat_backward():
    shapes = [(2, 3, 3), (1, 3, 3), (3, 3, 3)]
    layer = make_layer("Concat", {}, shapes)
    check_layer(layer, [randn((2,) + s, seed=i) for i, s in enumerate(shapes)])
    flat = make_layer("Concat", {}, [(3,), (2,)])
    check_layer(flat, [randn((4, 3)), randn((4, 2), seed=5)])


# ---- normalization -------------------------------------------------------------------------

@pytest.mark.parametrize("in_shape,batch", [((3, 2, 3), 3), ((4,), 5), ((2, 1, 1), 4)])
def test_batchnorm_backward_training(in_shape, batch):
    layer = make_layer("BatchNorm2d", {"eps": 1e-3}, [in_shape])
    check_layer(layer, [randn((batch,) + in_shape, scale=2.0) + 0.5])


@pytest.mark.parametrize("in_shape", [(3, 2, 3), (4,)])
def test_batchnorm_backward_frozen_uses_fixed_statistics(in_shape):
    layer = make_layer("BatchNorm2d", {}, [in_shape])
    layer.frozen = True
    before = {k: v.copy() for k, v in layer.weights.items()}
    check_layer(layer, [randn((3,) + in_shape)], expect_weight_grads=False)
    for k, v in layer.weights.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)  # statistics untouched


@FEW
@given(size=st.integers(1, 6), c=st.integers(1, 7), alpha=st.floats(1e-3, 2.0),
       beta=st.floats(0.1, 2.0), k=st.floats(0.5, 3.0), seed=st.integers(0, 100))
def test_lrn_backward(size, c, alpha, beta, k, seed):
    layer = make_layer("LocalResponseNorm", {"size": size, "alpha": alpha, "beta": beta, "k": k},
                       [(c, 2, 2)])
    check_layer(layer, [randn((2, c, 2, 2), seed)], seed)


# ---- a whole network with fan-out ----------------------------------------------------------

def fan_out_graph(final_softmax=False) -> Graph:
    """input ─┬─ conv_a ─ tanh_a ─┬─ conv_b ─ add ─ bn ─┐
              │                   └─────────┘           concat ─ pool ─ flatten ─ fc
              └─ conv_c ─ sigmoid ──────────────────────┘"""
    g = Graph()
    add = g.add_node
    add("Input", "input", {"channels": 2, "height": 6, "width": 6}, node_id="input")
    add("Conv2d", "conv_a", {"out_channels": 3, "kernel_size": 3, "padding": 1}, node_id="conv_a")
    add("Tanh", "tanh_a", {}, node_id="tanh_a")
    add("Conv2d", "conv_b", {"out_channels": 3, "kernel_size": 3, "padding": "same"},
        node_id="conv_b")
    add("Add", "add", {}, node_id="add")
    add("BatchNorm2d", "bn", {}, node_id="bn")
    add("Conv2d", "conv_c", {"out_channels": 2, "kernel_size": 3, "padding": 1,
                             "stride": 1}, node_id="conv_c")
    add("Sigmoid", "sigmoid", {}, node_id="sigmoid")
    add("Concat", "concat", {}, node_id="concat")
    # average pooling: smooth, so the float32-sized step on the input crosses no max kink
    add("AvgPool2d", "pool", {"kernel_size": 2}, node_id="pool")
    add("Flatten", "flatten", {}, node_id="flatten")
    add("Linear", "fc", {"out_features": 4}, node_id="fc")
    for a, b in [("input", "conv_a"), ("conv_a", "tanh_a"), ("tanh_a", "conv_b"),
                 ("conv_b", "add"), ("tanh_a", "add"), ("add", "bn"), ("input", "conv_c"),
                 ("conv_c", "sigmoid"), ("bn", "concat"), ("sigmoid", "concat"),
                 ("concat", "pool"), ("pool", "flatten"), ("flatten", "fc")]:
        g.add_edge(a, b)
    if final_softmax:
        add("Softmax", "softmax", {}, node_id="softmax")
        g.add_edge("fc", "softmax")
    return g


def float64_network(graph) -> Network:
    net = Network.compile(graph, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    for layer in net.layers.values():
        for k, v in layer.weights.items():
            if k == "bias":
                v = rng.standard_normal(v.shape)
            layer.weights[k] = np.asarray(v, np.float64)
    return net


def test_network_backward_with_fan_out_matches_finite_differences():
    net = float64_network(fan_out_graph())
    rng = np.random.default_rng(5)
    # inputs on a 2^-10 grid: x ± 2^-8 is exact in float32 (Network.forward casts to float32)
    x = (np.round(rng.standard_normal((3, 2, 6, 6)) * 1024) / 1024).astype(np.float32)
    r = rng.standard_normal((3, 4))

    def loss(xx=x):
        return float((net.forward(xx, training=True) * r).sum())

    y = net.forward(x, training=True)
    assert y.dtype == np.float64  # float64 weights carry through after the first layer
    dx = net.backward(r)
    for nid, layer in net.layers.items():
        for k in layer.trainable_names():
            np.testing.assert_allclose(layer.grads[k], numeric_grad(loss, layer.weights[k]),
                                       rtol=1e-5, atol=1e-7, err_msg=f"{nid}.{k}")
    # dL/dx: the input is float32, so use an exactly representable step of 2^-8
    h = 2.0 ** -8
    num = np.zeros(x.shape)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.flat[i] += h
        xm.flat[i] -= h
        num.flat[i] = (loss(xp) - loss(xm)) / (2 * h)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, num, rtol=1e-3, atol=1e-4)


def test_network_backward_from_logits_skips_the_final_softmax():
    net = float64_network(fan_out_graph(final_softmax=True))
    x = np.random.default_rng(6).standard_normal((2, 2, 6, 6)).astype(np.float32)
    r = np.random.default_rng(7).standard_normal((2, 4))
    z = net.forward(x, training=True, logits=True)
    net.backward(r, from_logits=True)
    g_logits = {k: v.copy() for k, v in net.layers["fc"].grads.items()}
    # the same weights without the Softmax node give the same gradients
    plain = float64_network(fan_out_graph())
    for nid, layer in plain.layers.items():
        for k in layer.weights:
            layer.weights[k] = net.layers[nid].weights[k].copy()
    np.testing.assert_allclose(plain.forward(x, training=True), z, rtol=1e-12)
    plain.backward(r)
    for k, v in plain.layers["fc"].grads.items():
        np.testing.assert_allclose(g_logits[k], v, rtol=1e-12)
    probs = net.forward(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_network_backward_without_input_grad_gives_the_same_weight_gradients():
    net = float64_network(fan_out_graph())
    x = np.random.default_rng(8).standard_normal((2, 2, 6, 6)).astype(np.float32)
    r = np.random.default_rng(9).standard_normal((2, 4))

    def weight_grads(**kw):
        net.forward(x, training=True)
        out = net.backward(r, **kw)
        return out, {f"{nid}.{k}": v.copy() for nid, layer in net.layers.items()
                     for k, v in layer.grads.items()}

    dx, full = weight_grads()
    none, fast = weight_grads(input_grad=False)
    assert dx is not None and none is None
    assert fast.keys() == full.keys() and "conv_a.weight" in fast and "conv_c.weight" in fast
    for k in full:
        np.testing.assert_allclose(fast[k], full[k], rtol=1e-12, err_msg=k)


# ---- large sizes: the code paths tiny finite-difference checks never reach -------------------

@pytest.mark.parametrize("type_name,params,in_shape", [
    ("Conv2d", {"out_channels": 4, "kernel_size": 3, "bias": False}, (3, 28, 28)),
    ("Conv2d", {"out_channels": 6, "kernel_size": 5, "padding": 2, "stride": 2, "bias": False},
     (2, 30, 30)),
    ("Conv2d", {"out_channels": 4, "kernel_size": 3, "groups": 2, "dilation": 2,
                "padding": "same", "bias": False}, (4, 24, 24)),
    ("MaxPool2d", {"kernel_size": 2}, (6, 28, 28)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (4, 27, 27)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                   "count_include_pad": False}, (4, 27, 27)),
    ("ReLU", {}, (6, 24, 24)),
    ("GlobalAvgPool2d", {}, (8, 14, 14)),
    ("Linear", {"out_features": 120, "bias": False}, (400,)),
])
def test_large_layers_satisfy_the_adjoint_identity(type_name, params, in_shape):
    """These layers are positively homogeneous: y = J(x)·x, so Σ y·dy = Σ x·dx exactly, and
    for conv / linear also Σ y·dy = Σ W·dW. Checked at sizes (batch 32, 28×28) where the
    engine switches to its fast paths (chunked weight-gradient matmuls, scratch buffers)."""
    layer = make_layer(type_name, params, [in_shape], seed=3)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        for k in layer.weights:
            layer.weights[k] = layer.weights[k].astype(dtype)
        x = randn((32,) + in_shape, seed=4).astype(dtype)
        y = layer.forward([x], training=True)
        dy = randn(y.shape, seed=5).astype(dtype)
        (dx,) = layer.backward(dy)
        assert dx.dtype == dtype
        lhs = float((y.astype(np.float64) * dy).sum())
        assert float((x.astype(np.float64) * dx).sum()) == pytest.approx(lhs, rel=tol)
        if "weight" in layer.weights:
            w = layer.weights["weight"].astype(np.float64)
            assert float((w * layer.grads["weight"]).sum()) == pytest.approx(lhs, rel=tol)


def test_large_conv_weight_gradient_matches_a_direct_sum():
    """dW[o, c, p, q] = Σ_{n, i, j} dy[n, o, i, j] · x[n, c, i + p, j + q] at batch 32, 28×28
    (the chunked weight-gradient path), in float64 and float32."""
    from numpy.lib.stride_tricks import sliding_window_view

    layer = make_layer("Conv2d", {"out_channels": 4, "kernel_size": 3}, [(3, 28, 28)], seed=6)
    x = randn((32, 3, 28, 28), seed=7)
    dy = randn((32, 4, 26, 26), seed=8)
    win = sliding_window_view(x, (3, 3), axis=(2, 3))  # (N, C, 26, 26, 3, 3)
    ref = np.einsum("nohw,nchwpq->ocpq", dy, win, optimize=True)
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        for k in layer.weights:
            layer.weights[k] = layer.weights[k].astype(dtype)
        layer.forward([x.astype(dtype)], training=True)
        layer.backward(dy.astype(dtype))
        np.testing.assert_allclose(layer.grads["weight"], ref, rtol=rtol, atol=rtol * 10)
        np.testing.assert_allclose(layer.grads["bias"], dy.sum(axis=(0, 2, 3)), rtol=rtol)
