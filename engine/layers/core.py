"""Core layers: Input, Flatten, Linear (fully connected), Dropout."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from .base import BOOL, FLOAT, INT, Layer, Param, fmt_shape, register
from .conv import INIT, init_uniform


@register
class Input(Layer):
    """The network's input: one image of C×H×W (the batch axis is implicit)."""

    type_name = "Input"
    label = "Image input"
    category = "Input"
    doc = "The image the network sees: channels × height × width (1×28×28 for MNIST)."
    min_inputs = 0
    max_inputs = 0
    params = (
        Param("channels", INT, 1, "1 for greyscale, 3 for colour.", min=1, max=4096),
        Param("height", INT, 28, "Image height in pixels.", min=1, max=8192),
        Param("width", INT, 28, "Image width in pixels.", min=1, max=8192),
    )

    def output_shape(self, in_shapes):
        return self.channels, self.height, self.width

    def describe(self, in_shapes=None):
        return f"{self.channels}×{self.height}×{self.width}"

    def forward(self, xs, training=False):
        (x,) = xs
        return x

    def backward(self, dy):
        return [dy]


@register
class Flatten(Layer):
    """(C, H, W) -> (C·H·W,): turns feature maps into a vector for fully connected layers."""

    type_name = "Flatten"
    label = "Flatten"
    category = "Core"
    doc = "Unrolls C×H×W feature maps into one vector of C·H·W features for Linear layers."
    onnx_ops = ("Flatten",)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        return (int(np.prod(shape)),)

    def rf_window(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 3:
            return None
        return ((shape[1], shape[2]), (shape[1], shape[2]), (0, 0))

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        shape, self._cache = self._cache, None
        return [dy.reshape(shape)]


@register
class Linear(Layer):
    """Fully connected: every output is a weighted sum of all inputs. (F,) -> (out_features,)."""

    type_name = "Linear"
    label = "Fully connected"
    category = "Core"
    doc = "Fully connected layer: each output unit sees every input feature."
    onnx_ops = ("Gemm", "MatMul")
    params = (
        Param("out_features", INT, 10, "Number of output units (classes, for the last layer).",
              min=1, max=1 << 20, label="units"),
        Param("bias", BOOL, True, "Add a learned bias per unit."),
        INIT,
    )

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 1:
            raise ShapeError(f"{self.where} needs a flat input but gets {fmt_shape(shape)}; "
                             f"insert a Flatten before '{self.name}'", None,
                             Fix(f"insert a Flatten before '{self.name}'", "insert_before",
                                 layer_type="Flatten"))
        return (self.out_features,)

    def weight_shapes(self, in_shapes):
        out = {"weight": ((self.out_features, in_shapes[0][0]), True)}
        if self.bias:
            out["bias"] = ((self.out_features,), True)
        return out

    def macs(self, in_shapes, out_shape):
        return in_shapes[0][0] * self.out_features

    def describe(self, in_shapes=None):
        return f"{self.out_features} unit{'s' * (self.out_features != 1)}"

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        fo, fi = self.weights["weight"].shape
        self.weights["weight"][...] = init_uniform(self.init, fi, fo, (fo, fi), rng)

    def forward(self, xs, training=False):
        (x,) = xs
        y = x @ self.weights["weight"].T
        if self.bias:
            y += self.weights["bias"]
        if training:
            self._cache = x
        return y

    def backward(self, dy):
        x, self._cache = self._cache, None
        if not self.frozen:
            self.grads["weight"] = dy.T @ x
            if self.bias:
                self.grads["bias"] = dy.sum(axis=0)
        return [dy @ self.weights["weight"]]


@register
class Dropout(Layer):
    """Zeroes a random fraction p of activations while training (scaled by 1/(1−p))."""

    type_name = "Dropout"
    label = "Dropout"
    category = "Core"
    doc = "While training, zeroes a random fraction p of activations to fight overfitting."
    onnx_ops = ("Dropout",)
    params = (Param("p", FLOAT, 0.5, "Fraction of activations dropped while training.",
                    min=0.0, max=0.99),)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        return shape

    def describe(self, in_shapes=None):
        return f"p={self.p['p']:g}"  # self.p is the params dict; the param is p["p"]

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        self.rng = np.random.default_rng(rng.integers(1 << 63))

    def forward(self, xs, training=False):
        (x,) = xs
        drop = self.p["p"]  # not self.p: that is the dict of all params
        if not training or drop == 0:
            self._cache = None
            return x
        if not hasattr(self, "rng"):
            self.rng = np.random.default_rng(0)
        keep = np.float32(1 - drop)
        mask = (self.rng.random(x.shape, dtype=np.float32) < keep) / keep
        self._cache = mask
        return x * mask

    def backward(self, dy):
        mask, self._cache = self._cache, None
        return [dy if mask is None else dy * mask]
