"""Activations: ReLU, LeakyReLU, ReLU6, Sigmoid, Tanh, Softmax, SiLU, HardSigmoid, HardSwish, GELU,
ELU, PReLU (learned slopes), Identity. Shape-preserving; only PReLU has weights.

Each declares its icon as its curve (`Icon.plot`), drawn by the theme over x in [-1, 1]; the
curves are the functions' shapes made legible at 16 px (steeper sigmoid, a visible leak), not
their exact values.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from ..nn import kernels, ort_kernels
from ..nn.ops import memory_view
from .base import CHOICE, FLOAT, INT, Icon, Layer, Param, fmt_shape, register
from .formula_text import Count
from .formula_text import num as num_text
from .onnx_pattern import OnnxPattern, Op
from .torch_code import TorchCode, TorchModule, num


class _Elementwise(Layer):
    category = "Activation"
    per_value = True  # each output value from its input value alone (Softmax: not)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        return shape

    # ---- ONNX mapping: one node of the type's single op, no attributes -------------------------

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node(self.onnx_ops[0], inputs, [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        return ctx.imported(cls, {}, {}, [node.input[0]])


@register
class ReLU(_Elementwise):
    """max(0, x)."""

    type_name = "ReLU"
    label = "ReLU"
    doc = "max(0, x): keeps positive responses, zeroes the rest. The default non-linearity."
    icon = Icon.plot(lambda x: np.maximum(0.0, x))
    onnx_ops = ("Relu",)

    def torch_module(self, in_shapes):
        return "nn.ReLU()"

    def forward(self, xs, training=False):
        (x,) = xs
        # clip with two bounds runs a vectorised loop: 3× faster than np.maximum(x, 0) here;
        # it keeps x's memory layout (a CHWN view from a convolution stays one)
        y = np.clip(x, x.dtype.type(0), x.dtype.type(np.inf))
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y, self._cache = self._cache, None
        dx = kernels.elementwise("relu_grad", dy, y)  # one compiled pass (numba)
        return [dy * (y > 0) if dx is None else dx]


@register
class LeakyReLU(_Elementwise):
    """x if x > 0 else negative_slope · x."""

    type_name = "LeakyReLU"
    label = "Leaky ReLU"
    doc = "Like ReLU but lets a small slope through for negative inputs."
    icon = Icon.plot(lambda x: np.where(x > 0, x, 0.2 * x))  # the leak exaggerated to be seen
    onnx_ops = ("LeakyRelu",)
    params = (Param("negative_slope", FLOAT, 0.01, "Slope for negative inputs.", min=0.0,
                    max=1.0, label="slope"),)

    def torch_module(self, in_shapes):
        return f"nn.LeakyReLU(negative_slope={num(self.negative_slope)})"

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = x > 0
        return np.where(x > 0, x, x * np.float32(self.negative_slope)).astype(x.dtype, copy=False)

    def backward(self, dy):
        pos, self._cache = self._cache, None
        return [np.where(pos, dy, dy * np.float32(self.negative_slope)).astype(dy.dtype,
                                                                                copy=False)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("LeakyRelu", inputs, [output], self.name, alpha=float(self.negative_slope))

    @classmethod
    def from_onnx(cls, node, ctx):
        alpha = float(ctx.attrs(node).get("alpha", 0.01))
        return ctx.imported(cls, {"negative_slope": alpha}, {}, [node.input[0]])


@register
class ReLU6(_Elementwise):
    """min(max(0, x), 6), as in MobileNet."""

    type_name = "ReLU6"
    label = "ReLU6"
    doc = "ReLU capped at 6 (MobileNet); exported as ONNX Clip(0, 6)."
    icon = Icon.plot(lambda x: np.minimum(np.maximum(0.0, x), 0.6))  # the cap inside the tile
    onnx_ops = ("Clip",)

    def torch_module(self, in_shapes):
        return "nn.ReLU6()"

    def forward(self, xs, training=False):
        (x,) = xs
        y = np.clip(x, x.dtype.type(0), x.dtype.type(6))
        if training:  # y in (0, 6) exactly where x is: the output is the mask, no bool copy
            self._cache = y
        return y

    def backward(self, dy):
        y, self._cache = self._cache, None
        dx = kernels.elementwise("relu6_grad", dy, y)  # one compiled pass (numba)
        return [dy * ((y > 0) & (y < 6)) if dx is None else dx]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        # Clip's min and max are inputs since opset 11
        lo = ctx.initializer(f"{self.name}.min", np.array(0.0, np.float32))
        hi = ctx.initializer(f"{self.name}.max", np.array(6.0, np.float32))
        ctx.node("Clip", [inputs[0], lo, hi], [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        """Clip(0, 6) is ReLU6 and Clip(0, +inf) ReLU; other bounds are not a layer here."""
        if ctx.opset < 11:
            a = ctx.attrs(node)
            lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
        else:
            lo = float(ctx.weight(node, 1, "min")) if len(node.input) > 1 and node.input[1] \
                else -np.inf
            hi = float(ctx.weight(node, 2, "max")) if len(node.input) > 2 and node.input[2] \
                else np.inf
        if lo == 0 and hi == 6:
            return ctx.imported(cls, {}, {}, [node.input[0]])
        if lo == 0 and hi == np.inf:
            return ctx.imported(ReLU, {}, {}, [node.input[0]])
        raise ValueError(f"{ctx.where(node)}: Clip({lo:g}, {hi:g}) is not supported; only "
                         f"Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU) are")


@register
class Sigmoid(_Elementwise):
    """1 / (1 + exp(−x))."""

    type_name = "Sigmoid"
    label = "Sigmoid"
    doc = "Squashes to (0, 1); the classic activation of early nets like LeNet."
    icon = Icon.plot(lambda x: 1 / (1 + np.exp(-6 * x)), -0.1, 1.1)
    onnx_ops = ("Sigmoid",)

    def torch_module(self, in_shapes):
        return "nn.Sigmoid()"

    def forward(self, xs, training=False):
        (x,) = xs
        # 1 / (1 + e^(−x)) block by block in cache: accurate to the last bits in both tails
        # (e^(−x) = inf below −88 gives exactly 0, the float32 limit). ONNX Runtime's Sigmoid
        # is faster but flushes σ(−20) to 0 and is 2× off at σ(−17), which the tails of a
        # loss or of geometric pooling would feel
        y = np.empty_like(x)
        for b in _blocks(x):
            yb = y[b]
            np.negative(x[b], out=yb)
            with np.errstate(over="ignore"):
                np.exp(yb, out=yb)
            yb += _c(x, 1)
            np.reciprocal(yb, out=yb)
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y, self._cache = self._cache, None
        return [dy * y * (1 - y)]


@register
class Tanh(_Elementwise):
    """tanh(x)."""

    type_name = "Tanh"
    label = "Tanh"
    doc = "Squashes to (−1, 1); zero-centred, used in the original LeNet-5."
    icon = Icon.plot(lambda x: np.tanh(3 * x), -1.2, 1.2)
    onnx_ops = ("Tanh",)

    def torch_module(self, in_shapes):
        return "nn.Tanh()"

    def forward(self, xs, training=False):
        (x,) = xs
        y = np.tanh(x)
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y, self._cache = self._cache, None
        return [dy * (1 - y * y)]


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


@register
class Softmax(_Elementwise):
    """Softmax over axis 1 (classes, or channels of a C×H×W map): positive, sums to 1."""

    type_name = "Softmax"
    label = "Softmax"
    doc = "Turns class scores into probabilities that sum to 1; ends a classifier."
    icon = Icon("softmax")  # probability bars, one tall: a curve of one x says little here
    onnx_ops = ("Softmax",)
    per_value = False  # each output depends on the whole axis 1

    def torch_module(self, in_shapes):
        return "nn.Softmax(dim=1)"

    def forward(self, xs, training=False):
        (x,) = xs
        y = softmax(x, axis=1)
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y, self._cache = self._cache, None
        return [y * (dy - (dy * y).sum(axis=1, keepdims=True))]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("Softmax", inputs, [output], self.name, axis=1)

    @classmethod
    def from_onnx(cls, node, ctx):
        """Softmax over axis 1. Before opset 13 Softmax flattened the input to 2-D at `axis`
        (default 1): the same as ours on (N, F), or on (N, C, 1, 1) maps."""
        shape = ctx.shape(node.input[0])
        rank = len(shape) + 1
        a = ctx.attrs(node)
        if ctx.opset < 13:
            axis = int(a.get("axis", 1))
            axis += rank if axis < 0 else 0
            ok = axis == 1 and (rank == 2 or all(d == 1 for d in shape[1:]))
        else:
            axis = int(a.get("axis", -1))
            ok = axis + (rank if axis < 0 else 0) == 1
        if not ok:
            raise ValueError(f"{ctx.where(node)}: Softmax over axis {a.get('axis')} of a rank "
                             f"{rank} tensor (opset {ctx.opset}) is not supported; only the "
                             f"class / channel axis 1 is")
        return ctx.imported(cls, {}, {}, [node.input[0]])


# ---- modern activations (MobileNetV3, EfficientNet, transformers' GELU) ---------------------
#
# Written for float32 speed: every step writes into an array allocated once (`out=`), constants
# are of the input's dtype (a Python float would not promote float32, but a float64 scalar array
# would), and backward reuses what forward cached instead of recomputing it. A float64 input
# (the gradient tests) stays float64 throughout.


def _c(x: np.ndarray, v: float):
    """The constant v in x's dtype (keeps float32 arithmetic float32)."""
    return x.dtype.type(v)


_BLOCK = 1 << 16  # elements per block: 256 KB of float32, so a block's temporaries stay in L2


def _blocks(x: np.ndarray):
    """Index tuples of about _BLOCK elements each along x's outermost axis *in memory* (the
    batch of an NCHW array, the channels of a CHWN view from a convolution): a multi-pass
    formula run block by block reads main memory once instead of once per pass (2-4× faster
    here), and every block is one contiguous run of memory whatever the layout."""
    if not x.ndim:
        return [()]
    perm, _ = memory_view(x)
    k = perm[0] if perm else 0
    n = x.shape[k]
    step = max(1, _BLOCK // max(1, x.size // max(n, 1)))
    lead = (slice(None),) * k
    return [lead + (slice(i, i + step),) for i in range(0, n, step)]


def _tiles(x: np.ndarray, k: int, dtype=None):
    """The blocks of `_blocks` and k scratch arrays of one block's shape and memory layout,
    allocated once and reused by every block (a fresh array per block and pass costs more than
    the arithmetic); of x's dtype unless `dtype` says otherwise.
    Yields (index, scratch views trimmed to the block's length)."""
    blocks = _blocks(x)
    if not x.ndim:
        yield (), [np.empty((), dtype or x.dtype) for _ in range(k)]
        return
    axis = len(blocks[0]) - 1
    bufs = [np.empty_like(x[blocks[0]], dtype or x.dtype) for _ in range(k)]
    n = x.shape[axis]
    lead = (slice(None),) * axis
    for b in blocks:
        m = min(b[axis].stop, n) - b[axis].start
        yield b, [buf[lead + (slice(0, m),)] for buf in bufs]


# Eigen's / XLA's float32 erf: an odd rational function on [−4, 4] (erf is ±1 in float32
# beyond), accurate to a few float32 ulps, 13 vectorised passes; NumPy has no erf of its own.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
          -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
          -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
          -7.37332916720468e-03, -1.42647390514189e-02)
_erf64 = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """erf(x), elementwise, in x's dtype: float32 by the rational approximation above, float64
    (the gradient tests' finite differences need full precision) by math.erf."""
    if x.dtype != np.float32:
        return _erf64(x).astype(x.dtype)
    t, x2, p, q = (np.empty_like(x) for _ in range(4))
    return _erf32_into(x, t, x2, p, q)


_ERF_P32 = tuple(np.float32(c) for c in _ERF_P)
_ERF_Q32 = tuple(np.float32(c) for c in _ERF_Q)


def _horner_into(s: np.ndarray, coeffs, out: np.ndarray) -> np.ndarray:
    """out = the polynomial with `coeffs` (highest power first) at s, in place."""
    np.multiply(s, coeffs[0], out=out)
    out += coeffs[1]
    for c in coeffs[2:]:
        out *= s
        out += c
    return out


def _erf32_into(x: np.ndarray, t: np.ndarray, x2: np.ndarray, p: np.ndarray,
                q: np.ndarray) -> np.ndarray:
    """p = erf(x) for float32 x, using t, x2, q as scratch: the same operations as `erf`
    (bit for bit), with no allocation."""
    np.clip(x, np.float32(-4), np.float32(4), out=t)
    np.multiply(t, t, out=x2)
    _horner_into(x2, _ERF_P32, p)
    p *= t
    _horner_into(x2, _ERF_Q32, q)
    p /= q
    return p


SQRT2 = math.sqrt(2.0)
SQRT_2_PI = math.sqrt(2.0 / math.pi)  # GELU's tanh form: tanh(√(2/π)·(x + 0.044715·x³))
GELU_KAPPA = 0.044715
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # the standard normal density's factor


def _gelu_slope(x: np.ndarray, cdf: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = GELU's derivative Φ(x) + x·φ(x), φ(x) = exp(−x²/2) / √(2π), given Φ(x)."""
    np.multiply(x, x, out=out)
    out *= _c(x, -0.5)
    np.exp(out, out=out)
    out *= x
    out *= _c(x, INV_SQRT_2PI)
    out += cdf
    return out


def _gelu_grad32(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy·(Φ(x) + x·φ(x)) for float32, block by block in cache: Φ from ONNX Runtime's erf,
    φ(x) = exp(−x²/2)/√(2π) by NumPy."""
    dx = np.empty_like(dy)
    for b, (t, q) in _tiles(x, 2):
        xb = x[b]
        np.multiply(xb, np.float32(1 / SQRT2), out=q)
        e = ort_kernels.erf(q)
        if e is None:  # pragma: no cover - forward only defers here when the kernel ran
            e = _erf32_into(q, np.empty_like(q), np.empty_like(q), np.empty_like(q), q)
        e += np.float32(1)
        e *= np.float32(0.5)  # Φ(x)
        _gelu_slope(xb, e, t)
        np.multiply(t, dy[b], out=dx[b])
    return dx


@register
class SiLU(_Elementwise):
    """x · sigmoid(x) (Swish with β = 1)."""

    type_name = "SiLU"
    label = "SiLU (Swish)"
    doc = ("x·sigmoid(x): a smooth ReLU that dips slightly below zero (EfficientNet, "
           "YOLOv5+, MobileNetV3 as HardSwish). Exported as Sigmoid then Mul.")
    short_name = "silu"
    icon = Icon.plot(lambda x: x / (1 + np.exp(-8 * x)), -0.15, 1.0)
    onnx_ops = ()  # no single op up to opset 21: always the pattern below
    onnx_patterns = (OnnxPattern((Op("Sigmoid", "x"), Op("Mul", "x", 0))),)

    def formula(self, in_shapes):
        return ["y = x · σ(x) = x / (1 + e^(−x)), per element",
                *super().formula(in_shapes)]

    def torch_module(self, in_shapes):
        return "nn.SiLU()"

    def forward(self, xs, training=False):
        # y = x / (1 + e^(−x)) block by block; in training the derivative
        # s·(1 + x·(1 − s)), s = sigmoid(x), is computed here too, while the block is in cache,
        # so backward is one multiply
        (x,) = xs
        if not training:
            y = ort_kernels.silu(x)  # two vectorised passes (NumPy: four)
            if y is not None:
                return y
        y = np.empty_like(x)
        one = _c(x, 1)
        d = np.empty_like(x) if training else None
        for b, (den,) in _tiles(x, 1):
            xb, yb = x[b], y[b]
            with np.errstate(over="ignore"):  # e^(−x) = inf for very negative x: y = −0, s = 0
                np.negative(xb, out=den)
                np.exp(den, out=den)
            den += one
            np.divide(xb, den, out=yb)
            if training:
                s = np.reciprocal(den, out=den)
                db = np.subtract(one, s, out=d[b])
                db *= xb
                db += one
                db *= s
        if training:
            self._cache = d
        return y

    def backward(self, dy):
        # d/dx x·s = s + x·s·(1 − s) = s·(1 + x·(1 − s)), from forward
        d, self._cache = self._cache, None
        return [np.multiply(dy, d)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        sig = f"{output}/sigmoid"
        ctx.node("Sigmoid", inputs, [sig], f"{self.name}/Sigmoid")
        ctx.node("Mul", [inputs[0], sig], [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        return None  # imported through its pattern only (see onnx_patterns)


@register
class HardSigmoid(_Elementwise):
    """max(0, min(1, α·x + β)), as ONNX's HardSigmoid."""

    type_name = "HardSigmoid"
    label = "Hard sigmoid"
    doc = ("A piecewise-linear sigmoid: clip(α·x + β, 0, 1). ONNX's default α = 0.2; "
           "PyTorch's nn.Hardsigmoid (MobileNetV3's SE gate) is α = 1/6.")
    short_name = "hsigmoid"
    icon = Icon.plot(lambda x: np.clip(1.5 * x + 0.5, 0.0, 1.0), -0.1, 1.1)
    onnx_ops = ("HardSigmoid",)
    params = (Param("alpha", FLOAT, 0.2, "Slope α of the linear part (PyTorch: 1/6).",
                    min=0.0, max=10.0, label="α (slope)"),
              Param("beta", FLOAT, 0.5, "Value β at x = 0.", min=0.0, max=1.0,
                    label="β (offset)"))

    def describe(self, in_shapes=None):
        return f"α {self.alpha:g}, β {self.beta:g}"

    def formula(self, in_shapes):
        a, b = self.alpha, self.beta
        lo, hi = -b / a if a else -math.inf, (1 - b) / a if a else math.inf
        line = f"y = max(0, min(1, {a:g}·x + {b:g})), per element; linear for {lo:g} < x < {hi:g}"
        return [line, *super().formula(in_shapes)]

    def _is_torch_default(self) -> bool:
        return abs(self.alpha - 1 / 6) < 1e-7 and self.beta == 0.5

    def to_pytorch(self, in_shapes, attr, names):
        if self._is_torch_default():
            return TorchCode([TorchModule(attr, "nn.Hardsigmoid()")])
        # nn.Hardsigmoid has no α, β: the exact expression instead
        return TorchCode(expr=f"torch.clamp({{0}} * {num(self.alpha)} + {num(self.beta)}, "
                              f"0.0, 1.0)")

    def forward(self, xs, training=False):
        (x,) = xs
        y = ort_kernels.hard_sigmoid(x, self.alpha, self.beta)  # one pass (NumPy: three)
        if y is None:
            y = np.multiply(x, _c(x, self.alpha))
            y += _c(x, self.beta)
            np.clip(y, _c(x, 0), _c(x, 1), out=y)
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y, self._cache = self._cache, None
        # slope α where the line is not clipped (0 < y < 1), else 0
        return [dy * ((y > 0) & (y < 1)) * _c(dy, self.alpha)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("HardSigmoid", inputs, [output], self.name, alpha=float(self.alpha),
                 beta=float(self.beta))

    @classmethod
    def from_onnx(cls, node, ctx):
        a = ctx.attrs(node)
        return ctx.imported(cls, {"alpha": float(a.get("alpha", 0.2)),
                                  "beta": float(a.get("beta", 0.5))}, {}, [node.input[0]])


@register
class HardSwish(_Elementwise):
    """x · relu6(x + 3) / 6 (MobileNetV3)."""

    type_name = "HardSwish"
    label = "Hard swish"
    doc = ("x·relu6(x + 3)/6: MobileNetV3's cheap SiLU. ONNX HardSwish from opset 14; at "
           "opset 13 written as x·HardSigmoid(x, α 1/6, β 0.5).")
    short_name = "hswish"
    icon = Icon.plot(lambda x: x * np.clip(4 * x + 3, 0, 6) / 6, -0.15, 1.0)
    onnx_ops = ("HardSwish",)
    onnx_patterns = (OnnxPattern((Op("HardSigmoid", "x", alpha=1 / 6, beta=0.5),
                                  Op("Mul", "x", 0))),)

    def formula(self, in_shapes):
        return ["y = x · min(max(x + 3, 0), 6) / 6, per element (0 below −3, x above 3)",
                *super().formula(in_shapes)]

    def torch_module(self, in_shapes):
        return "nn.Hardswish()"

    def forward(self, xs, training=False):
        (x,) = xs
        y = ort_kernels.hard_sigmoid(x, 1 / 6, 0.5)  # x·relu6(x + 3)/6 = x·HardSigmoid(x)
        if y is not None:
            y *= x
            if training:
                self._cache = x
            return y
        y = np.empty_like(x)
        for b in _blocks(x):  # the four passes over one block while it is in cache
            xb, yb = x[b], y[b]
            np.add(xb, _c(x, 3), out=yb)
            np.clip(yb, _c(x, 0), _c(x, 6), out=yb)
            yb *= xb
            yb *= _c(x, 1 / 6)
        if training:
            self._cache = x
        return y

    def backward(self, dy):
        # 0 below −3, 1 above 3, (2x + 3)/6 = x/3 + 1/2 between (PyTorch's rule at the ends).
        # The pieces are picked by multiplying with boolean masks: np.copyto(where=) on a
        # random mask is ~20× slower than a multiply (a branch per element)
        x, self._cache = self._cache, None
        dx = kernels.elementwise("hardswish_grad", dy, x)  # one compiled pass (numba)
        if dx is not None:
            return [dx]
        g = np.empty_like(dy)
        for b, (mk,) in _tiles(x, 1, np.bool_):
            xb, gb = x[b], g[b]
            np.multiply(xb, _c(x, 1 / 3), out=gb)
            gb += _c(x, 0.5)
            np.greater_equal(xb, _c(x, -3), out=mk)
            gb *= mk
            np.less_equal(xb, _c(x, 3), out=mk)
            gb *= mk
            np.greater(xb, _c(x, 3), out=mk)
            gb += mk
            gb *= dy[b]
        return [g]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        if ctx.opset >= 14:
            ctx.node("HardSwish", inputs, [output], self.name)
            return
        gate = f"{output}/hardsigmoid"
        ctx.node("HardSigmoid", inputs, [gate], f"{self.name}/HardSigmoid", alpha=1 / 6,
                 beta=0.5)
        ctx.node("Mul", [inputs[0], gate], [output], self.name)


@register
class GELU(_Elementwise):
    """x · Φ(x), Φ the standard normal CDF; or its tanh approximation."""

    type_name = "GELU"
    label = "GELU"
    doc = ("x·Φ(x) (Φ: the normal CDF), as in transformers and ConvNeXt. 'tanh' is the "
           "approximation 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). ONNX Gelu from opset 20; "
           "below, its Erf or Tanh formula.")
    short_name = "gelu"
    icon = Icon.plot(lambda x: x * 0.5 * (1 + np.tanh(2.5 * x)), -0.15, 1.0)
    onnx_ops = ("Gelu",)
    params = (Param("approximate", CHOICE, "none", "'none': the exact erf form; 'tanh': the "
                    "tanh approximation (as PyTorch's nn.GELU).", choices=("none", "tanh"),
                    choice_labels={"none": "exact (erf)", "tanh": "tanh approximation"}),)
    # below opset 20, the forms PyTorch writes too (torch.onnx, opset 9 symbolic)
    onnx_patterns = (
        OnnxPattern((Op("Div", "x", SQRT2), Op("Erf", 0), Op("Add", 1, 1.0), Op("Mul", "x", 2),
                     Op("Mul", 3, 0.5)), {"approximate": "none"}),
        OnnxPattern((Op("Mul", "x", "x"), Op("Mul", "x", 0), Op("Mul", 1, GELU_KAPPA),
                     Op("Add", "x", 2), Op("Mul", 3, SQRT_2_PI), Op("Tanh", 4),
                     Op("Add", 5, 1.0), Op("Mul", "x", 6), Op("Mul", 7, 0.5)),
                    {"approximate": "tanh"}),
    )

    def describe(self, in_shapes=None):
        return "tanh approx." if self.approximate == "tanh" else ""

    def formula(self, in_shapes):
        if self.approximate == "tanh":
            line = "y = 0.5·x·(1 + tanh(0.79788·(x + 0.044715·x³))), per element"
        else:
            line = "y = x·Φ(x) = 0.5·x·(1 + erf(x / 1.41421)), per element"
        return [line, *super().formula(in_shapes)]

    def torch_module(self, in_shapes):
        return "nn.GELU(approximate='tanh')" if self.approximate == "tanh" else "nn.GELU()"

    def forward(self, xs, training=False):
        (x,) = xs
        if self.approximate == "tanh":
            x2 = np.multiply(x, x)
            u = x2 * _c(x, GELU_KAPPA)
            u += _c(x, 1)
            u *= x
            u *= _c(x, SQRT_2_PI)  # √(2/π)·(x + κx³)
            t = np.tanh(u, out=u)
            y = np.add(t, _c(x, 1))
            y *= x
            y *= _c(x, 0.5)
            if training:
                self._cache = (x, x2, t)
            return y
        if x.dtype != np.float32:  # float64 (gradient checks): erf by math.erf
            cdf = erf(x * _c(x, 1 / SQRT2))
            cdf += _c(x, 1)
            cdf *= _c(x, 0.5)  # Φ(x)
            if training:
                self._cache = _gelu_slope(x, cdf, np.empty_like(x))
            return np.multiply(x, cdf)
        fast = ort_kernels.gelu(x)  # one vectorised pass (NumPy: ~20)
        if fast is not None:
            if training:
                self._cache = ("x", x)  # the slope is made by backward, block by block
            return fast
        y = np.empty_like(x)
        d = np.empty_like(x) if training else None  # the derivative Φ(x) + x·φ(x)
        for b, (t, x2, p, q) in _tiles(x, 4):  # each pass over one block in cache
            xb = x[b]
            np.multiply(xb, np.float32(1 / SQRT2), out=q)
            _erf32_into(q, t, x2, p, q)
            p += np.float32(1)
            p *= np.float32(0.5)  # Φ(x)
            np.multiply(xb, p, out=y[b])
            if training:
                _gelu_slope(xb, p, d[b])
        if training:
            self._cache = d
        return y

    def backward(self, dy):
        cache, self._cache = self._cache, None
        if self.approximate == "tanh":
            # 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3κx²)
            x, x2, t = cache
            g = np.multiply(t, t)
            np.subtract(_c(x, 1), g, out=g)
            x2 *= _c(x, 3 * GELU_KAPPA * SQRT_2_PI * 0.5)
            x2 += _c(x, SQRT_2_PI * 0.5)
            g *= x2
            g *= x
            t *= _c(x, 0.5)
            g += t
            g += _c(x, 0.5)
            g *= dy
            return [g]
        if isinstance(cache, tuple):  # float32 with ONNX Runtime's erf: the slope from x
            return [_gelu_grad32(cache[1], dy)]
        # Φ(x) + x·φ(x), computed by forward
        return [np.multiply(dy, cache)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        if ctx.opset >= 20:
            ctx.node("Gelu", inputs, [output], self.name, approximate=self.approximate)
            return
        x, n = inputs[0], self.name

        def const(key: str, v: float) -> str:
            return ctx.initializer(f"{n}.{key}", np.array(v, np.float32))

        def step(op: str, ins: list[str], key: str, last: bool = False) -> str:
            out = output if last else f"{output}/{key}"
            ctx.node(op, ins, [out], n if last else f"{n}/{key}")
            return out

        if self.approximate == "tanh":
            x3 = step("Mul", [x, step("Mul", [x, x], "square")], "cube")
            inner = step("Add", [x, step("Mul", [x3, const("kappa", GELU_KAPPA)], "kx3")],
                         "inner")
            t = step("Tanh", [step("Mul", [inner, const("beta", SQRT_2_PI)], "scaled")], "tanh")
            half = step("Mul", [x, step("Add", [t, const("one", 1.0)], "plus1")], "xmul")
        else:
            e = step("Erf", [step("Div", [x, const("sqrt2", SQRT2)], "div")], "erf")
            half = step("Mul", [x, step("Add", [e, const("one", 1.0)], "plus1")], "xmul")
        step("Mul", [half, const("half", 0.5)], "half", last=True)

    @classmethod
    def from_onnx(cls, node, ctx):
        approx = ctx.attrs(node).get("approximate", "none")
        if approx not in ("none", "tanh"):
            raise ValueError(f"{ctx.where(node)}: Gelu approximate={approx!r} is not supported; "
                             f"only 'none' and 'tanh'")
        return ctx.imported(cls, {"approximate": approx}, {}, [node.input[0]])


@register
class ELU(_Elementwise):
    """x if x > 0 else α·(exp(x) − 1)."""

    type_name = "ELU"
    label = "ELU"
    doc = "Like ReLU for x > 0, a smooth α·(eˣ − 1) below: negative outputs down to −α."
    short_name = "elu"
    icon = Icon.plot(lambda x: np.where(x > 0, x, 0.6 * np.expm1(3 * x)), -0.7, 1.0)
    onnx_ops = ("Elu",)
    params = (Param("alpha", FLOAT, 1.0, "α: the value −α the output tends to for very negative "
                    "inputs.", min=0.0, max=10.0, label="α"),)

    def describe(self, in_shapes=None):
        return f"α {self.alpha:g}" if self.alpha != 1.0 else ""

    def formula(self, in_shapes):
        return [f"y = x if x > 0, else {self.alpha:g}·(eˣ − 1), per element",
                *super().formula(in_shapes)]

    def torch_module(self, in_shapes):
        return f"nn.ELU(alpha={num(self.alpha)})"

    def forward(self, xs, training=False):
        (x,) = xs
        y = np.empty_like(x)
        zero = _c(x, 0)
        for b, (t,) in _tiles(x, 1):
            xb, yb = x[b], y[b]
            np.minimum(xb, zero, out=yb)
            np.expm1(yb, out=yb)
            yb *= _c(x, self.alpha)
            if self.alpha <= 1:  # then α(eˣ − 1) ≥ x for x ≤ 0: one max picks the branch
                np.maximum(xb, yb, out=yb)
            else:  # α(e^min(x, 0) − 1) + max(x, 0): one of the two terms is 0
                yb += np.maximum(xb, zero, out=t)
        if training:
            self._cache = (x, y)
        return y

    def backward(self, dy):
        # 1 for x > 0; α·eˣ = y + α = min(y, 0) + α below (y > 0 exactly where x > 0), so for
        # α = 1 just min(y, 0) + 1. Pieces picked by multiplying with a boolean mask:
        # np.copyto(where=) on a random mask is ~20× slower (a branch per element)
        (x, y), self._cache = self._cache, None
        g = np.empty_like(dy)
        a = _c(y, self.alpha)
        for b, (mk,) in _tiles(x, 1, np.bool_):
            gb = np.minimum(y[b], _c(y, 0), out=g[b])
            gb += a
            if self.alpha != 1:
                gb *= np.less_equal(x[b], _c(x, 0), out=mk)  # (α·eˣ or 0) ...
                gb += np.greater(x[b], _c(x, 0), out=mk)  # ... + (0 or 1)
            gb *= dy[b]
        return [g]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("Elu", inputs, [output], self.name, alpha=float(self.alpha))

    @classmethod
    def from_onnx(cls, node, ctx):
        return ctx.imported(cls, {"alpha": float(ctx.attrs(node).get("alpha", 1.0))}, {},
                            [node.input[0]])


@register
class PReLU(_Elementwise):
    """x if x > 0 else a·x, the slope a learned (one per channel, or one shared)."""

    type_name = "PReLU"
    label = "PReLU"
    doc = ("Leaky ReLU whose negative slope is learned: one per channel (num_parameters = C) "
           "or one shared (1), as PyTorch's nn.PReLU; slopes start at 0.25.")
    short_name = "prelu"
    icon = Icon.plot(lambda x: np.where(x > 0, x, 0.35 * x), -0.4, 1.0)
    onnx_ops = ("PRelu",)
    per_value = False  # a slope per channel
    params = (Param("num_parameters", INT, 1, "How many slopes: 1 (shared by all channels) or "
                    "C, the input's channels (one each).", min=1, max=65536,
                    label="slopes"),)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        n, c = self.num_parameters, shape[0]
        if n not in (1, c):
            raise ShapeError(f"{self.where}: num_parameters is {n} but the input has {c} "
                             f"channels ({fmt_shape(shape)}); it must be 1 or {c}",
                             "num_parameters",
                             Fix(f"set num_parameters to {c} (one slope per channel)",
                                 "set_params", {"num_parameters": c}))
        return shape

    def describe(self, in_shapes=None):
        return f"{self.num_parameters} slope{'s' * (self.num_parameters != 1)}"

    def formula(self, in_shapes):
        per = "per channel" if self.num_parameters > 1 else "shared"
        return [f"y = x if x > 0, else a·x; a learned ({self.num_parameters} {per})",
                *super().formula(in_shapes)]

    def weight_shapes(self, in_shapes):
        return {"weight": ((self.num_parameters,), True)}

    def param_formula(self, in_shapes):
        n = self.num_parameters
        text = (f"{n} slopes (one per channel) = {num_text(n)}" if n > 1
                else "1 shared slope = 1")
        return Count(text, n)

    def macs(self, in_shapes, out_shape):
        return math.prod(out_shape)  # one multiply by the slope per element

    def macs_formula(self, in_shapes, out_shape):
        n = math.prod(out_shape)
        return Count(f"{fmt_shape(out_shape)} = {num_text(n)} (one slope multiply per element)",
                     n)

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        # PyTorch's 0.25: a leak big enough to pass gradient, small enough to stay ReLU-like
        self.weights["weight"][...] = 0.25

    def torch_module(self, in_shapes):
        return f"nn.PReLU(num_parameters={self.num_parameters})"

    def _slope(self, x: np.ndarray) -> np.ndarray:
        w = self.weights["weight"].astype(x.dtype, copy=False)
        return w.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, xs, training=False):
        (x,) = xs
        a, zero = self._slope(x), _c(x, 0)
        w = self.weights["weight"]
        # a·x, then max(a·x, x) when every a ≤ 1 (a·x ≥ x for x ≤ 0, ≤ x above), min when every
        # a ≥ 1: two passes, each element's one rounding as in max(x, 0) + a·min(x, 0)
        pick = np.maximum if (w <= 1).all() else np.minimum if (w >= 1).all() else None
        y = np.empty_like(x)
        neg = np.empty_like(x) if training else None
        for b, (t,) in _tiles(x, 1):
            xb, yb = x[b], y[b]
            if pick is not None:
                np.multiply(xb, a, out=yb)
                pick(yb, xb, out=yb)
            else:
                np.minimum(xb, zero, out=yb)
                yb *= a
                yb += np.maximum(xb, zero, out=t)  # max(x, 0) + a·min(x, 0)
            if training:
                np.minimum(xb, zero, out=neg[b])
        if training:
            self._cache = (x, neg)
        return y

    def backward(self, dy):
        (x, neg), self._cache = self._cache, None
        a = self._slope(x)
        neg *= dy  # dL/da = Σ dy·min(x, 0), over the batch and the positions of its channel
        axes = tuple(i for i in range(x.ndim) if i != 1 or self.num_parameters == 1)
        self.grads["weight"] = neg.sum(axis=axes).reshape(-1).astype(x.dtype, copy=False)
        g = np.empty_like(dy)
        # slope a where x ≤ 0, 1 where x > 0, picked by multiplying with boolean masks
        # (np.copyto(where=) and np.where on a random mask are ~20× slower: a branch each)
        for b, (mk,) in _tiles(x, 1, np.bool_):
            gb = np.multiply(np.less_equal(x[b], _c(x, 0), out=mk), a, out=g[b])
            gb += np.greater(x[b], _c(x, 0), out=mk)
            gb *= dy[b]
        return [g]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        # ONNX broadcasts the slope from the right: (C, 1, 1) against N×C×H×W, (F,) on N×F
        (shape,) = ctx.in_shapes
        w = np.asarray(ctx.weights["weight"], np.float32)
        if self.num_parameters > 1:
            w = w.reshape((-1,) + (1,) * (len(shape) - 1))
        slope = ctx.initializer(f"{self.name}.weight", w)
        ctx.node("PRelu", [inputs[0], slope], [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        shape = ctx.shape(node.input[0])
        w = ctx.weight(node, 1, "slope")
        c = shape[0]
        per_channel = (c,) + (1,) * (len(shape) - 1)  # (C, 1, 1) on images, (F,) on vectors
        if w.size == 1:
            n = 1
        elif w.shape == per_channel:
            n = c
        else:
            raise ValueError(f"{ctx.where(node)}: a slope of shape {fmt_shape(w.shape)} on "
                             f"N×{fmt_shape(shape)} is not supported; only one slope or one per "
                             f"channel ({fmt_shape(per_channel)})")
        return ctx.imported(cls, {"num_parameters": n}, {"weight": w.reshape(n)},
                            [node.input[0]])


@register
class Identity(_Elementwise):
    """y = x: a named placeholder (a block's empty shortcut, a spot to insert a layer later)."""

    type_name = "Identity"
    label = "Identity"
    doc = ("Passes its input through unchanged: a placeholder, or an explicit empty branch "
           "(a ResNet shortcut). Exported as a tagged ONNX Identity.")
    short_name = "identity"
    icon = Icon.plot(lambda x: x)
    onnx_ops = ()  # foreign Identity nodes are wired through on import; ours are tagged
    onnx_doc = "cnn-designer:Identity"
    onnx_patterns = (OnnxPattern((Op("Identity", "x"),), doc=onnx_doc),)

    def torch_module(self, in_shapes):
        return "nn.Identity()"

    def forward(self, xs, training=False):
        (x,) = xs
        return x

    def backward(self, dy):
        return [dy]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("Identity", inputs, [output], self.name, doc=self.onnx_doc)

    @classmethod
    def from_onnx(cls, node, ctx):
        return None  # imported through its tagged pattern only
