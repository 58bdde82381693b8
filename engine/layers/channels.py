"""Channel rearrangement: ChannelShuffle (ShuffleNet) and ChannelSplit (torch.chunk, several
outputs)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from .base import INT, Icon, Layer, Param, fmt_shape, register
from .formula_text import DOT
from .torch_code import TorchCode, TorchModule


def nearest_divisor(n: int, want: int, lowest: int = 2) -> int | None:
    """The divisor of `n` closest to `want` (the smaller one on a tie), at least `lowest`;
    None if `n` has none (a prime below `lowest`...)."""
    best = None
    for d in range(max(lowest, 1), n + 1):
        if n % d == 0 and (best is None or abs(d - want) < abs(best - want)):
            best = d
    return best


def _channel_shape(layer: Layer, in_shapes) -> tuple[int, ...]:
    """The one input's shape; channels first, any number of axes after them (C, or C×H×W)."""
    (shape,) = in_shapes
    if len(shape) < 1:
        raise ShapeError(f"{layer.where} needs an input with a channel axis, got a scalar")
    return tuple(shape)


def _divides(layer: Layer, c: int, k: int, param: str, what: str, shape) -> None:
    """ShapeError naming `param` when `k` does not divide the `c` channels, with the nearest
    divisor as the fix."""
    if c % k == 0:
        return
    d = nearest_divisor(c, k)
    fix = Fix(f"{param} {d}", "set_params", {param: d}) if d is not None else None
    hint = f"; {param} {d} divides them" if d is not None else ""
    raise ShapeError(f"{layer.where}: {param} {k} does not divide the {c} input channels "
                     f"({fmt_shape(shape)}): {what}{hint}", param, fix)


@register
class ChannelShuffle(Layer):
    """ShuffleNet's channel shuffle: the C channels, seen as a groups × (C/groups) grid, are
    read column by column, so every group of a following grouped convolution gets channels from
    every group of the previous one. (C, ...) -> (C, ...)."""

    type_name = "ChannelShuffle"
    label = "Channel shuffle"
    category = "Core"
    doc = ("Interleaves the channels of `groups` groups (ShuffleNet), so the next grouped "
           "convolution mixes information across groups.")
    short_name = "shuffle"
    icon = Icon("shuffle")  # channels joined crosswise
    # ONNX has no shuffle op: Reshape(N, g, C/g, ...) -> Transpose(0, 2, 1, ...) -> Reshape(N,
    # C, ...), the form PyTorch exports for its view/transpose code; the import claims exactly
    # that chain (tried before Flatten's Reshape) and leaves every other Reshape alone
    onnx_ops = ("Reshape",)
    onnx_import_first = True
    params = (
        Param("groups", INT, 3, "Number of channel groups to interleave (ShuffleNet v1 uses 3 "
              "or 8, v2 uses 2); must divide the channels.", min=1, max=65536),
    )

    def output_shape(self, in_shapes):
        shape = _channel_shape(self, in_shapes)
        _divides(self, shape[0], self.groups, "groups", "each group needs the same number of "
                 "channels", shape)
        return shape

    def describe(self, in_shapes=None):
        return f"{self.groups} groups"

    def formula(self, in_shapes):
        if not in_shapes or in_shapes[0] is None:
            return []
        shape = in_shapes[0]
        c, g = shape[0], self.groups
        lines = [f"same shape as the input: {fmt_shape(shape)}"]
        if c % g == 0:
            lines.append(f"channels as {g} groups × {c // g}, read column by column: new channel "
                         f"k is old channel (k mod {g}){DOT}{c // g} + ⌊k / {g}⌋")
        return lines

    def forward(self, xs, training=False):
        (x,) = xs
        n, c = x.shape[:2]
        g = self.groups
        # a copy in the shuffled order (a transposed view would be slow for every later layer)
        return np.ascontiguousarray(
            x.reshape(n, g, c // g, *x.shape[2:]).swapaxes(1, 2)).reshape(x.shape)

    def backward(self, dy):
        # the inverse permutation: the same shuffle with groups and C/groups exchanged
        n, c = dy.shape[:2]
        g = self.groups
        return [np.ascontiguousarray(
            dy.reshape(n, c // g, g, *dy.shape[2:]).swapaxes(1, 2)).reshape(dy.shape)]

    def to_pytorch(self, in_shapes, attr, names):
        if len(in_shapes[0]) == 3:
            return TorchCode([TorchModule(attr, f"nn.ChannelShuffle({self.groups})")])
        # nn.ChannelShuffle wants N×C×H×W; the same view / transpose for a feature vector
        return TorchCode(expr=f"{{0}}.unflatten(1, ({self.groups}, -1)).transpose(1, 2)"
                              f".flatten(1, 2)")

    def to_onnx(self, ctx, inputs, output):
        shape = list(ctx.in_shapes[0])
        c, rest, g, nm = shape[0], shape[1:], self.groups, self.name
        # 0 copies the batch axis, so ONNX shape inference keeps it symbolic (N, not unknown)
        grid = ctx.initializer(f"{nm}.groups", [0, g, c // g, *rest], np.int64)
        back = ctx.initializer(f"{nm}.shape", [0, c, *rest], np.int64)
        perm = [0, 2, 1, *range(3, len(shape) + 2)]
        ctx.node("Reshape", [inputs[0], grid], [f"{output}/grid"], f"{nm}/Reshape")
        ctx.node("Transpose", [f"{output}/grid"], [f"{output}/shuffled"], f"{nm}/Transpose",
                 perm=perm)
        ctx.node("Reshape", [f"{output}/shuffled", back], [output], nm)

    @classmethod
    def from_onnx(cls, node, ctx):
        """Reshape(N, g, C/g, ...) -> Transpose(0, 2, 1, ...) -> Reshape(N, C, ...), each step
        read only by the next; None for any other Reshape (Flatten's, GroupNorm's)."""
        try:
            shape = ctx.shape(node.input[0])
        except ValueError:
            return None
        grid = _const_shape(ctx, node)
        if grid is None or len(grid) != len(shape) + 2 or not _is_batch(ctx, grid[0], node):
            return None
        c, g, cg = shape[0], grid[1], grid[2]
        if g < 1 or (cg != -1 and g * cg != c) or list(grid[3:]) != list(shape[1:]):
            return None
        tr = ctx.sole_consumer(node.output[0])
        perm = [0, 2, 1, *range(3, len(shape) + 2)]
        if tr is None or tr.op_type != "Transpose" or ctx.attrs(tr).get("perm") != perm:
            return None
        back_node = ctx.sole_consumer(tr.output[0])
        if back_node is None or back_node.op_type != "Reshape" or \
                back_node.input[0] != tr.output[0]:
            return None
        back = _const_shape(ctx, back_node)
        if back is None or len(back) != len(shape) + 1 or not _is_batch(ctx, back[0], back_node) \
                or any(b not in (a, -1) for a, b in zip((c, *shape[1:]), back[1:])) \
                or list(back[1:]).count(-1) + (back[0] == -1) > 1:
            return None
        ctx.absorb(tr)
        ctx.absorb(back_node)
        return ctx.imported(cls, {"groups": int(g)}, {}, [node.input[0]],
                            output=back_node.output[0], name=back_node.name)


def _const_shape(ctx, node) -> list[int] | None:
    """A Reshape node's constant target shape (None: computed at run time)."""
    if len(node.input) < 2:
        return None
    t = ctx.const(node.input[1])  # folded by the import's clean-up where it was computed
    return None if t is None else [int(v) for v in np.asarray(t).reshape(-1)]


def _is_batch(ctx, v: int, node) -> bool:
    """Whether a Reshape target's first entry keeps the batch: the batch itself, -1, or 0
    (copy) unless allowzero."""
    return ctx.is_batch(v) or v == -1 or (v == 0 and not int(ctx.attrs(node).get("allowzero", 0)))


@register
class ChannelSplit(Layer):
    """Splits the channels into `sections` equal parts, one output port each, as
    torch.chunk(x, sections, dim=1) and ONNX Split on axis 1. (C, ...) -> sections ×
    (C/sections, ...). Equal parts only (the common case: ShuffleNet v2 halves); the sections
    must divide the channels."""

    type_name = "ChannelSplit"
    label = "Channel split"
    category = "Merge"  # beside Concat, its inverse: where branches start and end
    doc = ("Splits the channels into equal parts, one output each (ShuffleNet v2's split, "
           "torch.chunk); connect each output port to its own branch.")
    short_name = "split"
    icon = Icon("split")  # one channel block parted in two
    # Split, or (PyTorch's legacy exporter for torch.chunk) one Slice per part on axis 1, the
    # bounds folded by the import's clean-up
    onnx_ops = ("Split", "Slice")
    params = (
        Param("sections", INT, 2, "Number of equal parts = output ports; must divide the "
              "channels.", min=1, max=64, label="outputs"),
    )

    def num_outputs(self) -> int:
        return self.sections

    def output_shapes(self, in_shapes):
        shape = _channel_shape(self, in_shapes)
        _divides(self, shape[0], self.sections, "sections",
                 f"{self.sections} equal parts need a multiple of {self.sections}", shape)
        return [(shape[0] // self.sections, *shape[1:])] * self.sections

    def output_shape(self, in_shapes):
        return self.output_shapes(in_shapes)[0]

    def describe(self, in_shapes=None):
        return f"{self.sections} parts"

    def formula(self, in_shapes):
        if not in_shapes or in_shapes[0] is None:
            return []
        shape = in_shapes[0]
        c, k = shape[0], self.sections
        if c % k:
            return [f"C: {c} / {k} is not a whole number"]
        part = fmt_shape((c // k, *shape[1:]))
        return [f"C: {c} / {k} = {c // k} per output",
                f"{k} outputs of {part} (ports 0 to {k - 1})"]

    def forward(self, xs, training=False):
        (x,) = xs
        # views, as torch.chunk: the next layers read them without a copy
        return np.split(x, self.sections, axis=1)

    def backward(self, dys):
        return [np.concatenate(dys, axis=1)]

    def to_pytorch(self, in_shapes, attr, names):
        return TorchCode(expr=f"torch.chunk({{0}}, {self.sections}, dim=1)")

    def to_onnx(self, ctx, inputs, output):
        """Split on axis 1 with the sizes as an input (opset 13+; 18+ also accepts them)."""
        sizes = [s[0] for s in ctx.out_shapes]
        split = ctx.initializer(f"{self.name}.split", sizes, np.int64)
        ctx.node("Split", [inputs[0], split], list(ctx.out_names), self.name, axis=1)

    @classmethod
    def from_onnx(cls, node, ctx):
        """Split on the channel axis into equal parts: sizes as an attribute (opset < 13) or an
        input (13+), or none (equal parts; `num_outputs` from opset 18); or Slices of one
        tensor that cut its channels into equal parts (`_from_slices`)."""
        if node.op_type == "Slice":
            return cls._from_slices(node, ctx)
        where = ctx.where(node)
        shape = ctx.shape(node.input[0])
        a = ctx.attrs(node)
        axis = int(a.get("axis", 0))
        if axis < 0:
            axis += len(shape) + 1
        if axis != 1:
            raise ValueError(f"{where}: Split on axis {axis} is not supported (only the channel "
                             f"axis 1)")
        k = len(node.output)
        if "split" in a:
            sizes = [int(v) for v in a["split"]]
        elif len(node.input) > 1 and node.input[1]:
            t = ctx.const(node.input[1])
            if t is None:
                raise ValueError(f"{where}: split sizes computed at run time are not supported")
            sizes = [int(v) for v in np.asarray(t).reshape(-1)]
        else:
            c = shape[0]
            sizes = [c // k] * k if c % k == 0 else [-(-c // k)] * (k - 1) + [c - (k - 1) *
                                                                            -(-c // k)]
        if len(sizes) != k or len(set(sizes)) != 1:
            raise ValueError(f"{where}: split sizes {sizes} are not {k} equal parts; only equal "
                             f"parts are supported")
        return ctx.imported(cls, {"sections": k}, {}, [node.input[0]], outputs=list(node.output))

    @classmethod
    def _from_slices(cls, node, ctx):
        """torch.chunk as PyTorch's legacy exporter writes it: Slice(x, starts, ends, axes=[1])
        per part, the parts' bounds [0, C/k), [C/k, 2C/k), ... (in any node order); the first
        Slice met takes the others (absorbed). Any other Slice is refused by name."""
        where = ctx.where(node)
        x = ctx.resolve(node.input[0])
        shape = ctx.shapes.get(x)
        parts = []
        for s in ctx.consumers.get(node.input[0], []):
            bounds = _channel_slice(s, ctx, shape) if s.op_type == "Slice" else None
            if bounds is not None:
                parts.append((bounds, s))
        parts.sort(key=lambda p: p[0])
        mine = next((b for b, s in parts if s is node), None)
        k = len(parts)
        c = shape[0] if shape else 0
        if mine is None or k < 2 or c % k or \
                [b for b, _ in parts] != [(i * c // k, (i + 1) * c // k) for i in range(k)]:
            got = "" if mine is None else f" (channels {mine[0]} to {mine[1]} of {c})"
            raise ValueError(f"{where}: Slice{got} is supported only as one of the equal parts "
                             f"of the channels that torch.chunk / split write (Slices on axis 1, "
                             f"step 1, of one tensor, together covering all its channels)")
        for _, s in parts:
            if s is not node:
                ctx.absorb(s)
        return ctx.imported(cls, {"sections": k}, {}, [node.input[0]],
                            outputs=[s.output[0] for _, s in parts])


def _channel_slice(node, ctx, shape) -> tuple[int, int] | None:
    """(start, end) of a Slice that takes channels of a C×H×W map (axis 1, step 1): bounds as
    inputs from opset 10, attributes before; None for any other Slice."""
    if shape is None:
        return None
    a = ctx.attrs(node)
    if "starts" in a:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        given = []
        for i in (list(node.input) + [""] * 5)[1:5]:  # starts, ends, axes, steps
            v = ctx.const(i) if i else None
            if i and v is None:
                return None  # computed at run time
            given.append(None if v is None else [int(t) for t in np.asarray(v).reshape(-1)])
        starts, ends, axes, steps = given
        if starts is None or ends is None:
            return None
    rank = len(shape) + 1
    axes = list(range(len(starts))) if axes is None else [v + rank if v < 0 else v for v in axes]
    if axes != [1] or (steps is not None and steps != [1]):
        return None
    c = shape[0]
    start, end = (min(max(v + c if v < 0 else v, 0), c) for v in (starts[0], ends[0]))
    return (start, end) if start < end else None


__all__ = ["ChannelShuffle", "ChannelSplit", "nearest_divisor"]
