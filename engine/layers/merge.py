"""Merges: Add (residual connections), Multiply (squeeze-and-excitation gates) and Concat
(inception / dense blocks), 2 or more inputs.

Add and Multiply broadcast as ONNX and NumPy do (per sample: the batch axis is never
broadcast): inputs of the same rank whose sizes agree or are 1 on each axis, so a C×1×1 gate
scales a C×H×W map. Backward sums each input's gradient over the axes it was broadcast along.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from .base import Icon, Layer, Shape, fmt_shape, register
from .formula_text import DOT, Count, num
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
        return broadcast_shape(self.where, "Add", in_shapes)

    def describe(self, in_shapes=None):
        return f"{len(in_shapes)} inputs" if in_shapes else ""

    def formula(self, in_shapes):
        return broadcast_formula(in_shapes)

    def to_pytorch(self, in_shapes, attr, names):
        return TorchCode(expr=" + ".join(f"{{{i}}}" for i in range(len(in_shapes))))

    def forward(self, xs, training=False):
        y = _combine(np.add, xs)
        if training:
            self._cache = [x.shape for x in xs]
        return y

    def backward(self, dy):
        shapes, self._cache = self._cache, None
        return [unbroadcast(dy, s) for s in shapes]

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
    # one input is valid, an identity: torchvision's DenseNet writes torch.cat([x], 1)
    min_inputs = 1
    max_inputs = None
    short_name = "concat"
    icon = Icon("concat")  # two channel blocks side by side
    merges_branches = True

    def output_shape(self, in_shapes):
        first = in_shapes[0]
        for i, s in enumerate(in_shapes[1:], start=1):
            if len(s) != len(first):
                raise ShapeError(f"{self.where}: input {i + 1} is {fmt_shape(s)} but input 1 is "
                                 f"{fmt_shape(first)}; Concat needs the same rank on every "
                                 f"input", input_index=i)
        if any(s[1:] != first[1:] for s in in_shapes):
            # the message names an input that differs from the largest maps (the size a branch
            # was meant to keep), the one validation's padding fix can then grow
            big = max(range(len(in_shapes)), key=lambda k: math.prod(in_shapes[k][1:]))
            bad = next(k for k, s in enumerate(in_shapes) if s[1:] != in_shapes[big][1:])
            raise ShapeError(f"{self.where}: input {bad + 1} is {fmt_shape(in_shapes[bad])} but "
                             f"input {big + 1} is {fmt_shape(in_shapes[big])}; Concat needs the "
                             f"same {'H×W' if len(first) == 3 else 'size'} on every input",
                             input_index=bad)
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


@register
class Multiply(Layer):
    """Element-wise product of 2+ inputs, broadcast: a squeeze-and-excitation gate (C×1×1)
    scales a C×H×W map channel by channel.

    It is not a branch merge in the sense of `merges_branches`: its inputs are meant to differ
    in shape (a gate against a map), so validation offers no padding fix to make them agree,
    and block detection does not stop at it: an SE block's Mul lies inside the block (nested
    in the enclosing residual block, which is the one kept). A region closed by it alone is
    named "gated".
    """

    type_name = "Multiply"
    label = "Multiply"
    category = "Merge"
    doc = ("Multiplies inputs element by element, broadcasting size-1 axes: a C×1×1 gate "
           "scales each channel of a C×H×W map (squeeze-and-excitation).")
    onnx_ops = ("Mul",)
    min_inputs = 2
    max_inputs = None
    short_name = "mul"
    icon = Icon("multiply")  # a circled times
    merges_branches = False
    block_kind = "gated"
    # a product of more than two inputs is a chain of Mul nodes (ONNX has no n-ary product);
    # the nodes before the last carry this doc string so the chain imports as one layer
    onnx_chain_doc = "cnn-designer:Multiply partial product"

    def output_shape(self, in_shapes):
        return broadcast_shape(self.where, "Multiply", in_shapes)

    def describe(self, in_shapes=None):
        return f"{len(in_shapes)} inputs" if in_shapes else ""

    def formula(self, in_shapes):
        return broadcast_formula(in_shapes)

    def macs(self, in_shapes, out_shape):
        return (len(in_shapes) - 1) * math.prod(out_shape)

    def macs_formula(self, in_shapes, out_shape):
        k, n = len(in_shapes) - 1, math.prod(out_shape)
        return Count(f"{k} {DOT} {fmt_shape(out_shape)} = {num(k * n)} (one multiply per "
                     f"element per extra input)", k * n)

    def to_pytorch(self, in_shapes, attr, names):
        return TorchCode(expr=" * ".join(f"{{{i}}}" for i in range(len(in_shapes))))

    def forward(self, xs, training=False):
        y = _combine(np.multiply, xs)
        if training:
            self._cache = list(xs)
        return y

    def backward(self, dy):
        xs, self._cache = self._cache, None
        grads = []
        for i, x in enumerate(xs):
            others = [o for j, o in enumerate(xs) if j != i]
            g = _combine(np.multiply, [dy, *others])
            grads.append(unbroadcast(g, x.shape))
        return grads

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        acc = inputs[0]
        for k, other in enumerate(inputs[1:], start=1):
            last = k == len(inputs) - 1
            out = output if last else f"{output}/mul{k}"
            ctx.node("Mul", [acc, other], [out], self.name if last else f"{self.name}/mul{k}",
                     doc=None if last else self.onnx_chain_doc)
            acc = out

    @classmethod
    def from_onnx(cls, node, ctx):
        """A Mul of two layer outputs; our own chain of tagged partial products is taken
        whole (its later nodes absorbed), so a 3-input Multiply comes back as one."""
        ins = [i for i in node.input if i]
        inputs, cur = list(ins), node
        while cur.doc_string == cls.onnx_chain_doc:
            nxt = ctx.sole_consumer(cur.output[0])
            if nxt is None or nxt.op_type != "Mul" or nxt.input[0] != cur.output[0]:
                break
            ctx.absorb(nxt)
            inputs.append(nxt.input[1])
            cur = nxt
        consts = [i for i in inputs if ctx.const(i) is not None]
        if consts:
            raise ValueError(f"{ctx.where(node)}: Mul by a constant ({consts[0]}) is not "
                             f"supported; only products of layer outputs (a gate and a map)")
        res = ctx.imported(cls, {}, {}, inputs, output=cur.output[0])
        res.name = cur.name  # the chain's last Mul carries the layer's name
        return res


def broadcast_shape(where: str, op: str, in_shapes: list[Shape]) -> Shape:
    """The broadcast shape of per-sample input shapes (same rank; each axis equal or 1), or a
    ShapeError naming the layer, both shapes and the axis, with the obvious fix."""
    first = in_shapes[0]
    out = list(first)
    for i, s in enumerate(in_shapes[1:], start=1):
        if len(s) != len(first):
            raise ShapeError(f"{where}: input {i + 1} is {fmt_shape(s)} but input 1 is "
                             f"{fmt_shape(first)}; {op} needs inputs of the same rank "
                             f"({'C×H×W' if max(len(s), len(first)) == 3 else 'features'} on "
                             f"both). Fix: flatten both, or neither", input_index=i)
        for axis, (a, b) in enumerate(zip(out, s)):
            if a != b and a != 1 and b != 1:
                # name the smaller input as the wrong one (a branch that shrank the maps), the
                # input validation's padding fix is offered on
                earlier = next(k for k in range(i) if in_shapes[k][axis] == a)
                bad, good = (i, earlier) if b < a else (earlier, i)
                want = in_shapes[good][axis]
                name = ("C", "H", "W")[axis] if len(s) == 3 else "features"
                fix = (f"make input {bad + 1} have {want} channels (or 1, to scale all alike)"
                       if name == "C" else f"make input {bad + 1}'s {name} {want} or 1")
                raise ShapeError(f"{where}: input {bad + 1} is {fmt_shape(in_shapes[bad])} but "
                                 f"input {good + 1} is {fmt_shape(in_shapes[good])}; {name} is "
                                 f"{in_shapes[bad][axis]} against {want}, and {op} broadcasts "
                                 f"only sizes that match or are 1. Fix: {fix}",
                                 input_index=bad)
            out[axis] = max(a, b)
    return tuple(out)


def broadcast_formula(in_shapes: list[Shape]) -> list[str]:
    """'same shape as each input: 4×5×5', or how broadcasting makes the output shape."""
    if all(s == in_shapes[0] for s in in_shapes):
        return [f"same shape as each input: {fmt_shape(in_shapes[0])}"]
    out = np.broadcast_shapes(*in_shapes)
    shapes = " and ".join(fmt_shape(s) for s in in_shapes)
    return [f"broadcast {shapes} (size-1 axes stretched) = {fmt_shape(out)}"]


def _combine(op, xs: list[np.ndarray]) -> np.ndarray:
    """op (np.add / np.multiply) over all inputs, broadcast, into one new array: the first two
    into a fresh output, the rest in place (no temporary per input)."""
    shape = np.broadcast_shapes(*(x.shape for x in xs))
    dtype = np.result_type(*xs)
    # the output takes the memory layout of an input of its full shape: a CHWN view from a
    # convolution stays CHWN (an NCHW output would be written across the grain, ~10× slower)
    full = next((x for x in xs if x.shape == shape), None)
    y = np.empty(shape, dtype) if full is None else np.empty_like(full, dtype)
    op(xs[0], xs[1], out=y)
    for x in xs[2:]:
        op(y, x, out=y)
    return y


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The gradient of an input of `shape` (batch axis included) that was broadcast to g's
    shape: g summed over the axes where the input had size 1."""
    if g.shape == shape:
        return g
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, g.shape)) if a == 1 and b != 1)
    return g.sum(axis=axes, keepdims=True)
