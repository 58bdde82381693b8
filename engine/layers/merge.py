"""Merges: Add (residual connections) and Concat (inception / dense blocks), 2 or more inputs."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import Icon, Layer, fmt_shape, register
from .formula_text import num
from .torch_code import TorchCode


@register
class Add(Layer):
    """Element-wise sum of inputs of identical shape (ResNet's skip connection)."""

    type_name = "Add"
    label = "Add"
    category = "Merge"
    doc = "Sums inputs of the same shape element by element: the residual (skip) connection."
    onnx_ops = ("Add", "Sum")
    min_inputs = 2
    max_inputs = None
    short_name = "add"
    icon = Icon("add")  # a circled plus
    merges_branches = True
    block_kind = "residual"  # a block closed by an Add is a residual block

    def output_shape(self, in_shapes):
        first = in_shapes[0]
        for i, s in enumerate(in_shapes[1:], start=2):
            if s != first:
                what = ("channels" if len(s) == len(first) == 3 and s[1:] == first[1:]
                        else "shapes")
                raise ShapeError(f"{self.where}: input {i} is {fmt_shape(s)} but input 1 is "
                                 f"{fmt_shape(first)}; Add needs identical {what}")
        return first

    def describe(self, in_shapes=None):
        return f"{len(in_shapes)} inputs" if in_shapes else ""

    def formula(self, in_shapes):
        return [f"same shape as each input: {fmt_shape(in_shapes[0])}"]

    def to_pytorch(self, in_shapes, attr, names):
        return TorchCode(expr=" + ".join(f"{{{i}}}" for i in range(len(in_shapes))))

    def forward(self, xs, training=False):
        y = xs[0].copy()
        for x in xs[1:]:
            y += x
        if training:
            self._cache = len(xs)
        return y

    def backward(self, dy):
        n, self._cache = self._cache, None
        return [dy] * n

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """Add for two inputs, one Sum node for more."""
        ctx.node("Add" if len(inputs) == 2 else "Sum", inputs, [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        ins = [i for i in node.input if i]
        consts = [i for i in ins if ctx.const(i) is not None]
        if consts:
            raise ValueError(f"{ctx.where(node)}: {node.op_type} of a constant ({consts[0]}) is "
                             f"not supported; only sums of layer outputs (skip connections)")
        if len(ins) == 1:
            raise ValueError(f"{ctx.where(node)}: Sum of a single input is not supported")
        return ctx.imported(cls, {}, {}, ins)


@register
class Concat(Layer):
    """Stacks inputs along the channel axis; spatial sizes must match (inception, DenseNet)."""

    type_name = "Concat"
    label = "Concatenate"
    category = "Merge"
    doc = "Stacks inputs along the channel axis: C1 + C2 + … channels, same H×W."
    onnx_ops = ("Concat",)
    min_inputs = 2
    max_inputs = None
    short_name = "concat"
    icon = Icon("concat")  # two channel blocks side by side
    merges_branches = True

    def output_shape(self, in_shapes):
        first = in_shapes[0]
        for i, s in enumerate(in_shapes[1:], start=2):
            if len(s) != len(first) or s[1:] != first[1:]:
                raise ShapeError(f"{self.where}: input {i} is {fmt_shape(s)} but input 1 is "
                                 f"{fmt_shape(first)}; Concat needs the same "
                                 f"{'H×W' if len(first) == 3 else 'rank'} on every input")
        return (sum(s[0] for s in in_shapes),) + tuple(first[1:])

    def describe(self, in_shapes=None):
        return f"{len(in_shapes)} inputs" if in_shapes else ""

    def formula(self, in_shapes):
        chans = " + ".join(str(s[0]) for s in in_shapes)
        return [f"C = {chans} = {num(sum(s[0] for s in in_shapes))}"]

    def to_pytorch(self, in_shapes, attr, names):
        return TorchCode(expr="torch.cat([" + ", ".join(f"{{{i}}}" for i in range(len(in_shapes)))
                         + "], dim=1)")

    def forward(self, xs, training=False):
        if training:
            self._cache = [x.shape[1] for x in xs]
        return np.concatenate(xs, axis=1)

    def backward(self, dy):
        sizes, self._cache = self._cache, None
        return np.split(dy, np.cumsum(sizes)[:-1], axis=1)

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("Concat", inputs, [output], self.name, axis=1)

    @classmethod
    def from_onnx(cls, node, ctx):
        rank = len(ctx.shape(node.input[0])) + 1
        axis = int(ctx.attrs(node).get("axis", 1))
        if axis + (rank if axis < 0 else 0) != 1:
            raise ValueError(f"{ctx.where(node)}: Concat along axis {axis} is not supported; "
                             f"only along channels (axis 1)")
        if any(ctx.const(i) is not None for i in node.input):
            raise ValueError(f"{ctx.where(node)}: Concat with a constant input is not supported")
        return ctx.imported(cls, {}, {}, list(node.input))
