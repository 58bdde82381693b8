"""Activations: ReLU, LeakyReLU, ReLU6, Sigmoid, Tanh, Softmax. Shape-preserving, no weights.

Each declares its icon as its curve (`Icon.plot`), drawn by the theme over x in [-1, 1]; the
curves are the functions' shapes made legible at 16 px (steeper sigmoid, a visible leak), not
their exact values.
"""

from __future__ import annotations

import numpy as np

from .base import FLOAT, Icon, Layer, Param, register
from .torch_code import num


class _Elementwise(Layer):
    category = "Activation"

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
        return [dy * (y > 0)]


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
        if training:
            self._cache = (x > 0) & (x < 6)
        return np.clip(x, 0, 6)

    def backward(self, dy):
        mask, self._cache = self._cache, None
        return [dy * mask]

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
        # exp of a non-positive number only: no overflow for large |x|
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
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
