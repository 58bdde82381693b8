"""Reductions: ReduceMean and ReduceMax over chosen axes of a C×H×W map.

ReduceMean over H, W with keep_dims is how newer exporters (PyTorch's dynamo exporter, tf2onnx)
write global average pooling; over C it is the "channel mean" of spatial attention (CBAM).
ONNX: ReduceMean / ReduceMax with `axes` an attribute before opset 18 and an int64 input from
opset 18 on; both forms import.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from .base import BOOL, CHOICE, Icon, Layer, Param, fmt_shape, register
from .formula_text import ARROW, DOT
from .torch_code import TorchCode

# the reducible axes of a C×H×W map (the batch is never reduced), by their letters
AXES: dict[str, tuple[int, ...]] = {
    "H,W": (1, 2), "C": (0,), "C,H,W": (0, 1, 2), "H": (1,), "W": (2,), "C,H": (0, 1),
    "C,W": (0, 2),
}
_LETTERS = "CHW"


def axes_choice(axes: tuple[int, ...]) -> str:
    """(1, 2) -> "H,W": the choice naming the reduced axes of a C×H×W map."""
    return ",".join(_LETTERS[a] for a in sorted(axes))


def onnx_reduce_axes(node, ctx, rank: int | None = None) -> list[int] | None:
    """The axes of an ONNX Reduce* node on an N×C×H×W tensor, normalised to 0..3 (attribute
    before opset 18, input from 18 on); None when it reduces every axis (no axes given)."""
    a = ctx.attrs(node)
    if ctx.opset >= 18 and len(node.input) > 1 and node.input[1]:
        c = ctx.const(node.input[1])
        if c is None:
            raise ValueError(f"{ctx.where(node)}: axes computed at run time are not supported")
        axes = [int(v) for v in np.asarray(c).reshape(-1)]
    else:
        axes = [int(v) for v in a.get("axes", [])]
    if not axes:
        if int(a.get("noop_with_empty_axes", 0)):
            return []
        return None
    if rank is None:  # of the input, batch included (given where its shape is not known yet)
        rank = len(ctx.shape(node.input[0])) + 1
    return sorted({v + rank if v < 0 else v for v in axes})


class _Reduce(Layer):
    """Shared shape rule, formulas and ONNX mapping of the reductions."""

    category = "Pooling"
    onnx_doc: str | None = None  # the doc string our export gives the node, where it needs one
    word = ""  # "mean" / "max", for the texts
    params = (
        Param("axes", CHOICE, "H,W", "Axes reduced: H,W per channel (global pooling), C per "
              "position (across channels), or all of C,H,W.", choices=tuple(AXES),
              choice_labels={"H,W": "H,W (per channel)", "C": "C (per position)",
                             "C,H,W": "C,H,W (one number)"}),
        Param("keep_dims", BOOL, True, "Keep each reduced axis as size 1 (C×1×1 for H,W) rather "
              "than dropping it; ONNX's keepdims."),
    )

    @property
    def reduced(self) -> tuple[int, ...]:
        return AXES[self.axes]

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise ShapeError(f"{self.where} needs a C×H×W input, got {fmt_shape(shape)}")
        ax = self.reduced
        if self.keep_dims:
            return tuple(1 if i in ax else d for i, d in enumerate(shape))
        if len(ax) == 3:
            raise ShapeError(f"{self.where}: reducing all of C,H,W of {fmt_shape(shape)} without "
                             f"keep_dims leaves no axis; turn keep_dims on (1×1×1)", "keep_dims",
                             Fix("keep_dims on (1×1×1)", "set_params", {"keep_dims": True}))
        return tuple(d for i, d in enumerate(shape) if i not in ax)

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        ax = self.reduced
        kh, kw = (h if 1 in ax else 1), (w if 2 in ax else 1)
        if (kh, kw) == (1, 1):  # over C only: each position reads its own column
            return None
        return ((kh, kw), (kh, kw), (0, 0))

    def describe(self, in_shapes=None):
        return f"{self.word} over {self.axes}" + ("" if self.keep_dims else ", drop")

    def formula(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 3:
            return super().formula(in_shapes)
        ax = self.reduced
        n = math.prod(shape[a] for a in ax)
        sizes = DOT.join(str(shape[a]) for a in ax)
        out = self.output_shape(in_shapes)
        kept = "kept as 1" if self.keep_dims else "dropped"
        lines = [f"{self.axes}: one {self.word} of {sizes} = {n} values each, the axes {kept}"]
        lines.append(f"{fmt_shape(shape)} {ARROW} {fmt_shape(out)}")
        return lines

    def to_pytorch(self, in_shapes, attr, names):
        dims = tuple(a + 1 for a in self.reduced)
        dim = str(dims[0]) if len(dims) == 1 else str(dims)
        fn = "mean" if self.word == "mean" else "amax"
        keep = ", keepdim=True" if self.keep_dims else ""
        return TorchCode(expr=f"{{0}}.{fn}(dim={dim}{keep})")

    def _keep_shape(self, dy):
        """dy with the reduced axes back as size 1 (the keep_dims form)."""
        if self.keep_dims:
            return dy
        shape = list(dy.shape)
        for a in self.reduced:
            shape.insert(a + 1, 1)
        return dy.reshape(shape)

    # ---- ONNX mapping ------------------------------------------------------------------------

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """axes: an attribute before opset 18, an int64 input from 18 on (Reduce*-18)."""
        axes = [a + 1 for a in self.reduced]
        op, doc = self.onnx_ops[0], self.onnx_doc
        if ctx.opset >= 18:
            name = ctx.initializer(f"{self.name}.axes", axes, np.int64)
            ctx.node(op, [inputs[0], name], [output], self.name, doc=doc,
                     keepdims=int(self.keep_dims))
        else:
            ctx.node(op, inputs, [output], self.name, doc=doc, axes=axes,
                     keepdims=int(self.keep_dims))

    @classmethod
    def from_onnx(cls, node, ctx):
        where = ctx.where(node)
        shape = ctx.shape(node.input[0])
        if len(shape) != 3:
            raise ValueError(f"{where}: {node.op_type} of a N×{fmt_shape(shape)} tensor is not "
                             f"supported; only of N×C×H×W maps")
        axes = onnx_reduce_axes(node, ctx)
        if axes is None or 0 in axes:
            raise ValueError(f"{where}: {node.op_type} over the batch axis is not supported; "
                             f"only over C, H and W")
        if not axes:
            raise ValueError(f"{where}: {node.op_type} over no axis (noop_with_empty_axes) is "
                             f"not supported")
        keep = bool(int(ctx.attrs(node).get("keepdims", 1)))
        params = {"axes": axes_choice(tuple(a - 1 for a in axes)), "keep_dims": keep}
        return ctx.imported(cls, params, {}, [node.input[0]])


@register
class ReduceMean(_Reduce):
    """Mean over the chosen axes: H,W is global average pooling, C the mean across channels."""

    type_name = "ReduceMean"
    label = "Reduce mean"
    doc = "Averages over chosen axes: H,W per channel (global pooling) or C per position."
    short_name = "mean"
    word = "mean"
    icon = Icon("pool-global")  # the whole window averaged
    onnx_ops = ("ReduceMean",)
    # a foreign ReduceMean over H, W keeping them is global average pooling (GlobalAvgPool2d
    # imports it); ours carries this tag to come back as the layer it was
    onnx_doc = "cnn-designer:ReduceMean"

    def forward(self, xs, training=False):
        (x,) = xs
        ax = tuple(a + 1 for a in self.reduced)
        if training:
            self._cache = x.shape
        if ax == (2, 3):  # one contiguous row per channel: a matrix-vector product (BLAS)
            n, c = x.shape[:2]
            rows = x.reshape(n * c, -1)
            y = (rows @ np.full(rows.shape[1], 1 / rows.shape[1], x.dtype)).reshape(n, c)
            return y.reshape(n, c, 1, 1) if self.keep_dims else y
        return x.mean(axis=ax, keepdims=self.keep_dims)  # follows x's dtype

    def backward(self, dy):
        shape, self._cache = self._cache, None
        n = math.prod(shape[a + 1] for a in self.reduced)
        g = self._keep_shape(dy) * dy.dtype.type(1 / n)
        return [np.broadcast_to(g, shape).copy()]


@register
class ReduceMax(_Reduce):
    """Maximum over the chosen axes: H,W is global max pooling, C the max across channels."""

    type_name = "ReduceMax"
    label = "Reduce max"
    doc = "Keeps the largest value over chosen axes: H,W per channel or C per position."
    short_name = "max"
    word = "max"
    icon = Icon("pool-max")
    onnx_ops = ("ReduceMax",)

    def forward(self, xs, training=False):
        (x,) = xs
        ax = tuple(a + 1 for a in self.reduced)
        y = x.max(axis=ax, keepdims=True)
        if training:
            self._cache = (x, y)
        if self.keep_dims:
            return y
        return y.reshape([d for i, d in enumerate(y.shape) if i not in ax])

    def backward(self, dy):
        # ties share the gradient equally, as torch.amax does (a max's subgradient)
        x, y = self._cache
        self._cache = None
        ax = tuple(a + 1 for a in self.reduced)
        mask = (x == y).astype(dy.dtype)
        count = mask.sum(axis=ax, keepdims=True)
        return [mask * (self._keep_shape(dy) / count)]


__all__ = ["AXES", "ReduceMax", "ReduceMean", "axes_choice", "onnx_reduce_axes"]
