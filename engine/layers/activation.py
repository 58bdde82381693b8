"""Activations: ReLU, LeakyReLU, ReLU6, Sigmoid, Tanh, Softmax. Shape-preserving, no weights."""

from __future__ import annotations

import numpy as np

from .base import FLOAT, Layer, Param, register


class _Elementwise(Layer):
    category = "Activation"

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        return shape


@register
class ReLU(_Elementwise):
    """max(0, x)."""

    type_name = "ReLU"
    label = "ReLU"
    doc = "max(0, x): keeps positive responses, zeroes the rest. The default non-linearity."
    onnx_ops = ("Relu",)

    def forward(self, xs, training=False):
        (x,) = xs
        y = np.maximum(x, 0)
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
    onnx_ops = ("LeakyRelu",)
    params = (Param("negative_slope", FLOAT, 0.01, "Slope for negative inputs.", min=0.0,
                    max=1.0, label="slope"),)

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = x > 0
        return np.where(x > 0, x, x * np.float32(self.negative_slope)).astype(x.dtype, copy=False)

    def backward(self, dy):
        pos, self._cache = self._cache, None
        return [np.where(pos, dy, dy * np.float32(self.negative_slope)).astype(dy.dtype,
                                                                                copy=False)]


@register
class ReLU6(_Elementwise):
    """min(max(0, x), 6), as in MobileNet."""

    type_name = "ReLU6"
    label = "ReLU6"
    doc = "ReLU capped at 6 (MobileNet); exported as ONNX Clip(0, 6)."
    onnx_ops = ("Clip",)

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = (x > 0) & (x < 6)
        return np.clip(x, 0, 6)

    def backward(self, dy):
        mask, self._cache = self._cache, None
        return [dy * mask]


@register
class Sigmoid(_Elementwise):
    """1 / (1 + exp(−x))."""

    type_name = "Sigmoid"
    label = "Sigmoid"
    doc = "Squashes to (0, 1); the classic activation of early nets like LeNet."
    onnx_ops = ("Sigmoid",)

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
    onnx_ops = ("Tanh",)

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
    onnx_ops = ("Softmax",)

    def forward(self, xs, training=False):
        (x,) = xs
        y = softmax(x, axis=1)
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y, self._cache = self._cache, None
        return [y * (dy - (dy * y).sum(axis=1, keepdims=True))]
