"""Normalization: BatchNorm2d (also after Linear, on F features) and LocalResponseNorm."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import FLOAT, INT, Icon, Layer, Param, fmt_shape, register
from .formula_text import DOT, Count
from .formula_text import num as num_text  # torch_code's num writes Python literals
from .torch_code import TorchCode, TorchModule, call_args, num


@register
class BatchNorm2d(Layer):
    """Normalizes each channel by its batch statistics, then scales and shifts (γ, β).

    Works on (C, H, W) maps and on (F,) feature vectors (BatchNorm1d's use after Linear).
    """

    type_name = "BatchNorm2d"
    label = "Batch normalization"
    category = "Normalization"
    doc = "Normalizes each channel over the batch, then learns a scale and shift; trains faster."
    short_name = "bn"
    icon = Icon("norm")  # uneven bars evened out
    onnx_ops = ("BatchNormalization",)
    params = (
        Param("eps", FLOAT, 1e-5, "Added to the variance for numerical safety.", min=1e-12,
              max=1.0),
        Param("momentum", FLOAT, 0.1, "Weight of the new batch in the running statistics "
              "(PyTorch's convention).", min=0.0, max=1.0),
    )

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) not in (1, 3):
            raise ShapeError(f"{self.where} needs C×H×W or a flat input, got {fmt_shape(shape)}")
        return shape

    def weight_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"weight": ((c,), True), "bias": ((c,), True),
                "running_mean": ((c,), False), "running_var": ((c,), False)}

    def describe(self, in_shapes=None):
        return f"eps={self.eps:g}"

    def param_formula(self, in_shapes):
        """2·C trainable (γ, β) + 2·C running statistics (mean, variance)."""
        c = in_shapes[0][0]
        both = num_text(2 * c)
        text = (f"2{DOT}{c} = {both} trainable (γ, β) + 2{DOT}{c} = {both} "
                f"running stats (mean, variance)")
        return Count(text, 2 * c, 2 * c)

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        self.weights["weight"][...] = 1
        self.weights["running_var"][...] = 1

    @staticmethod
    def _axes(x):
        return (0,) if x.ndim == 2 else (0, 2, 3)

    @staticmethod
    def _bc(v, x):
        return v.reshape((1, -1) + (1,) * (x.ndim - 2))

    def torch_module(self, in_shapes):
        shape = in_shapes[0]
        kw = {}
        if self.eps != 1e-5:
            kw["eps"] = num(self.eps)
        if self.momentum != 0.1:
            kw["momentum"] = num(self.momentum)
        kind = "BatchNorm2d" if len(shape) == 3 else "BatchNorm1d"
        return f"nn.{kind}({call_args(shape[0], **kw)})"

    def forward(self, xs, training=False):
        (x,) = xs
        wts = self.weights
        if not training or self.frozen:
            # inference form; a frozen layer keeps its statistics (transfer learning)
            scale = wts["weight"] / np.sqrt(wts["running_var"] + np.float32(self.eps))
            shift = wts["bias"] - wts["running_mean"] * scale
            if training:
                self._cache = ("fixed", scale)
            return x * self._bc(scale, x) + self._bc(shift, x)
        axes = self._axes(x)
        mean = x.mean(axis=axes)  # follows x's dtype (float32 in production)
        xc = x - self._bc(mean, x)
        var = (xc * xc).mean(axis=axes)
        inv = 1 / np.sqrt(var + np.float32(self.eps))
        xhat = xc * self._bc(inv, x)
        m = x.size // x.shape[1]
        mo = np.float32(self.momentum)
        unbiased = var * np.float32(m / max(m - 1, 1))  # PyTorch keeps the unbiased variance
        wts["running_mean"][...] = (1 - mo) * wts["running_mean"] + mo * mean
        wts["running_var"][...] = (1 - mo) * wts["running_var"] + mo * unbiased
        self._cache = (xhat, inv, m)
        return xhat * self._bc(wts["weight"], x) + self._bc(wts["bias"], x)

    def backward(self, dy):
        if isinstance(self._cache[0], str):  # "fixed" (comparing an array to it is an error)
            scale = self._cache[1]
            self._cache = None
            return [dy * self._bc(scale, dy)]
        xhat, inv, m = self._cache
        self._cache = None
        axes = self._axes(dy)
        dgamma = (dy * xhat).sum(axis=axes)
        dbeta = dy.sum(axis=axes)
        self.grads["weight"] = dgamma
        self.grads["bias"] = dbeta
        g = self._bc(self.weights["weight"] * inv / m, dy)
        dx = g * (m * dy - self._bc(dbeta, dy) - xhat * self._bc(dgamma, dy))
        return [dx]

    # ---- ONNX mapping ------------------------------------------------------------------------

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """BatchNormalization in inference form; ONNX's momentum is 1 − ours (PyTorch's)."""
        names = [ctx.initializer(f"{self.name}.{k}", ctx.weights[k])
                 for k in ("weight", "bias", "running_mean", "running_var")]
        ctx.node("BatchNormalization", [inputs[0]] + names, [output], self.name,
                 epsilon=float(self.eps), momentum=float(1 - self.momentum))

    @classmethod
    def from_onnx(cls, node, ctx):
        a = ctx.attrs(node)
        where = ctx.where(node)
        if int(a.get("spatial", 1)) != 1:
            raise ValueError(f"{where}: BatchNormalization with spatial=0 is not supported")
        if int(a.get("training_mode", 0)):
            raise ValueError(f"{where}: BatchNormalization in training mode is not supported")
        if any(o and ctx.is_used(o) for o in node.output[1:]):
            raise ValueError(f"{where}: the running-statistics outputs are not supported")
        keys = ("weight", "bias", "running_mean", "running_var")
        weights = {k: ctx.weight(node, i, k).reshape(-1) for i, k in enumerate(keys, start=1)}
        momentum = ctx.clean_float(1 - float(a.get("momentum", 0.9)))
        params = {"eps": float(a.get("epsilon", 1e-5)), "momentum": min(max(momentum, 0.0), 1.0)}
        return ctx.imported(cls, params, weights, [node.input[0]])


@register
class LocalResponseNorm(Layer):
    """AlexNet's normalization across neighbouring channels (ONNX LRN):
    y_c = x_c / (k + α/n · Σ_{c' near c} x_{c'}²)^β."""

    type_name = "LocalResponseNorm"
    label = "Local response norm"
    category = "Normalization"
    doc = "AlexNet's lateral inhibition: divides each value by the energy of nearby channels."
    short_name = "lrn"
    icon = Icon("lrn")  # the norm glyph with a bracket over neighbouring channels
    onnx_ops = ("LRN",)
    params = (
        Param("size", INT, 5, "Number of neighbouring channels in the sum.", min=1, max=255),
        Param("alpha", FLOAT, 1e-4, "Scale of the sum.", min=0.0, max=10.0),
        Param("beta", FLOAT, 0.75, "Exponent.", min=0.0, max=10.0),
        Param("k", FLOAT, 1.0, "Additive constant (AlexNet used 2); above 0 so the divisor is "
              "never 0.", min=1e-6, max=100.0),
    )

    def output_shape(self, in_shapes):
        return self._single_image(in_shapes)

    def describe(self, in_shapes=None):
        return f"size {self.size}"

    def _window_sum(self, v):
        """Sum over channels c - floor((n-1)/2) .. c + ceil((n-1)/2), clipped to the range."""
        n = self.size
        lo, hi = (n - 1) // 2, n - 1 - (n - 1) // 2
        c = v.shape[1]
        cs = np.zeros((v.shape[0], c + 1) + v.shape[2:], v.dtype)
        np.cumsum(v, axis=1, out=cs[:, 1:])
        idx = np.arange(c)
        return cs[:, np.minimum(idx + hi, c - 1) + 1] - cs[:, np.maximum(idx - lo, 0)]

    def _window_sum_adjoint(self, v):
        """Σ over the c whose window contains c' (the transpose of _window_sum)."""
        n = self.size
        lo, hi = (n - 1) // 2, n - 1 - (n - 1) // 2
        c = v.shape[1]
        cs = np.zeros((v.shape[0], c + 1) + v.shape[2:], v.dtype)
        np.cumsum(v, axis=1, out=cs[:, 1:])
        idx = np.arange(c)
        # c' is in window(c) iff c - lo <= c' <= c + hi, i.e. c' - hi <= c <= c' + lo
        return cs[:, np.minimum(idx + lo, c - 1) + 1] - cs[:, np.maximum(idx - hi, 0)]

    def to_pytorch(self, in_shapes, attr, names):
        args = call_args(self.size, alpha=num(self.alpha), beta=num(self.beta), k=num(self.k))
        if self.size % 2:
            return TorchCode([TorchModule(attr, f"nn.LocalResponseNorm({args})")])
        # nn.LocalResponseNorm centres even windows one channel lower than ONNX (and we) do
        return TorchCode([TorchModule(attr, f"OnnxLocalResponseNorm({args})")],
                         helper="OnnxLocalResponseNorm")

    def forward(self, xs, training=False):
        (x,) = xs
        # Python float constants take x's dtype (float32 in production, float64 in grad checks)
        a = self.alpha / self.size
        d = self.k + a * self._window_sum(x * x)
        y = x * d ** -self.beta
        if training:
            self._cache = (x, d, y)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy):
        x, d, y = self._cache
        self._cache = None
        a = self.alpha / self.size
        t = dy * y / d  # dy_c · x_c · d_c^(−β−1)
        dx = dy * d ** (-self.beta) - (2 * a * self.beta) * x * self._window_sum_adjoint(t)
        return [dx.astype(dy.dtype, copy=False)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("LRN", inputs, [output], self.name, size=self.size, alpha=float(self.alpha),
                 beta=float(self.beta), bias=float(self.k))

    @classmethod
    def from_onnx(cls, node, ctx):
        a = ctx.attrs(node)
        if "size" not in a:
            raise ValueError(f"{ctx.where(node)}: LRN without a size")
        params = {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
                  "beta": float(a.get("beta", 0.75)), "k": float(a.get("bias", 1.0))}
        return ctx.imported(cls, params, {}, [node.input[0]])
