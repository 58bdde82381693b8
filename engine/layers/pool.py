"""Pooling: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from ..nn.ops import as_chwn, nchw, pad_chwn, tap_slice
from ..shapes import conv_out
from .base import BOOL, PADDING, PAIR, Icon, Layer, Param, fmt_shape, register
from .conv import (
    fmt_padding,
    onnx_padding,
    onnx_pair,
    padding_from_onnx,
    resolve_pads,
    unread_warnings,
    window_output,
)
from .formula_text import ARROW, window_lines
from .torch_code import TorchCode, TorchModule, call_args, pair

POOL_PARAMS = (
    Param("kernel_size", PAIR, [2, 2], "Height × width of each pooling window.", min=1, max=64,
          label="kernel"),
    Param("stride", PAIR, None, "Step between windows; empty means equal to the kernel.",
          min=1, max=64, optional=True),
    Param("padding", PADDING, "valid", "'valid', 'same' or explicit padding per side (top, left, "
          "bottom, right); at most half the kernel."),
    Param("ceil_mode", BOOL, False, "Round the output size up, so a partial last window counts."),
)


class _Pool2d(Layer):
    """Shared shape logic of window pooling."""

    category = "Pooling"
    pad_value = 0.0

    @property
    def strides(self):
        return self.stride if self.stride is not None else list(self.kernel_size)

    def _geometry(self, h, w):
        k, s = self.kernel_size, self.strides
        pads, ho, wo = window_output(self, h, w, k, s, [1, 1], self.ceil_mode)
        return k, s, pads, ho, wo

    def output_shape(self, in_shapes):
        c, h, w = self._single_image(in_shapes)
        k, _, pads, ho, wo = self._geometry(h, w)
        if max(pads[0], pads[2]) > k[0] // 2 or max(pads[1], pads[3]) > k[1] // 2:
            raise ShapeError(f"{self.where}: padding {fmt_padding(list(pads))} is more than half "
                             f"the {k[0]}×{k[1]} kernel", "padding",
                             Fix("padding valid", "set_params", {"padding": "valid"}))
        return c, ho, wo

    def warnings(self, in_shapes, out_shape):
        if self.ceil_mode:
            return []
        _, h, w = in_shapes[0]
        k, s, pads, _, _ = self._geometry(h, w)
        out = unread_warnings(self, h, w, k, s, [1, 1], pads)
        return [(t, p, Fix("ceil_mode on (pool the partial window too)", "set_params",
                           {"ceil_mode": True})) for t, p, _ in out]

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        k, s, pads, _, _ = self._geometry(h, w)
        return (tuple(k), tuple(s), (pads[0], pads[1]))

    def formula(self, in_shapes):
        if len(in_shapes[0]) != 3:
            return super().formula(in_shapes)
        c, h, w = in_shapes[0]
        k = self.kernel_size
        s = self.stride if self.stride is not None else list(k)
        pads = resolve_pads(self.padding, h, w, k, s, [1, 1])
        return [*window_lines(h, w, k, s, [1, 1], pads, bool(self.ceil_mode)),
                f"C: {c} (pooling keeps the channels)"]

    def describe(self, in_shapes=None):
        k, s = self.kernel_size, self.strides
        parts = [f"{k[0]}×{k[1]}", f"s{s[0]}" if s[0] == s[1] else f"s{s[0]},{s[1]}"]
        if self.padding != "valid":
            parts.append(fmt_padding(self.padding))
        if self.ceil_mode:
            parts.append("ceil")
        return ", ".join(parts)

    def to_pytorch(self, in_shapes, attr, names):
        _, h, w = in_shapes[0]
        k, s, pads, ho, wo = self._geometry(h, w)
        t, l, b, r = pads
        is_max = self.type_name == "MaxPool2d"
        avg_excludes_pad = not is_max and not self.count_include_pad
        kw: dict = {"kernel_size": pair(k)}
        if s != k:
            kw["stride"] = pair(s)
        code = TorchCode()
        crop = ""
        if (t, l) == (b, r):
            if t or l:
                kw["padding"] = pair([t, l])
        else:
            if avg_excludes_pad:
                raise ShapeError(
                    f"{self.where}: asymmetric padding ({t}, {l}, {b}, {r}) with "
                    f"count_include_pad off has no PyTorch equivalent; use symmetric padding or "
                    f"turn count_include_pad on", "padding")
            ctor = (f'nn.ConstantPad2d(({l}, {r}, {t}, {b}), float("-inf"))' if is_max
                    else f"nn.ZeroPad2d(({l}, {r}, {t}, {b}))")
            code.modules.append(TorchModule(names.claim(attr + "_pad"), ctor))
            # PyTorch keeps a ceil-mode window that starts in the (now explicit) end padding;
            # the engine, like ONNX, drops it: crop to the engine's size
            th = conv_out(h + t + b, k[0], s[0], 0, 0, 1, self.ceil_mode)
            tw = conv_out(w + l + r, k[1], s[1], 0, 0, 1, self.ceil_mode)
            if (th, tw) != (ho, wo):
                crop = f"[:, :, :{ho}, :{wo}]"
        if self.ceil_mode:
            kw["ceil_mode"] = True
        if avg_excludes_pad:
            kw["count_include_pad"] = False
        code.modules.append(TorchModule(attr, f"nn.{self.type_name}({call_args(**kw)})"))
        code.expr = "{call}" + crop
        return code

    def _full_pads(self, h, w):
        """Kernel, strides, pads (explicit + the ceil-mode overhang at the end), Ho, Wo."""
        k, s, pads, ho, wo = self._geometry(h, w)
        extra_h = max(0, (ho - 1) * s[0] + k[0] - (h + pads[0] + pads[2]))
        extra_w = max(0, (wo - 1) * s[1] + k[1] - (w + pads[1] + pads[3]))
        return k, s, (pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w), ho, wo

    # ---- ONNX mapping, shared by MaxPool and AveragePool --------------------------------------

    def _onnx_attrs(self, ctx) -> dict:
        _, h, w = ctx.in_shapes[0]
        k, s, pads, ho, wo = self._geometry(h, w)
        # ceil_mode is written only where it adds a window. Where our (and ONNX Runtime's) rule
        # drops a last window that would start in the end padding, the result equals floor
        # mode, and onnx's shape inference (1.23) would otherwise count that window.
        fh = conv_out(h, k[0], s[0], pads[0], pads[2])
        fw = conv_out(w, k[1], s[1], pads[1], pads[3])
        ceil = int(bool(self.ceil_mode) and (ho, wo) != (fh, fw))
        attrs = onnx_padding(self.padding, ctx.in_shapes[0], k, s, [1, 1])
        if ceil:
            # one axis gains a window, the other may be a dropped-window axis: there, trimming
            # the end padding to the last window's end (the same windows, the same divisors)
            # makes ONNX's plain ceil formula count what we count
            pads = list(attrs["pads"])
            for i, (size, n) in enumerate(((h, ho), (w, wo))):
                pb, pe = pads[i], pads[i + 2]
                span = size + pb + pe - k[i]
                if -(-span // s[i]) + 1 != n:
                    r = span % s[i]
                    if r > pe:
                        raise ValueError(
                            f"{self.where}: ceil_mode with stride {s[i]} over a kernel of "
                            f"{k[i]} on {size} cells cannot be written in ONNX for both axes; "
                            f"Fix: turn ceil_mode off or change the padding")
                    pads[i + 2] = pe - r
            attrs = {"pads": pads}  # no longer the 'same' pads
        return dict(kernel_shape=list(k), strides=list(s), ceil_mode=ceil, **attrs)

    @classmethod
    def _pool_params(cls, node, ctx) -> dict:
        a = ctx.attrs(node)
        where = ctx.where(node)
        if "kernel_shape" not in a:
            raise ValueError(f"{where}: kernel_shape is missing")
        k = onnx_pair(a, "kernel_shape", None, where)
        s = onnx_pair(a, "strides", [1, 1], where)  # ONNX's default stride is 1, ours the kernel
        if onnx_pair(a, "dilations", [1, 1], where) != [1, 1]:
            raise ValueError(f"{where}: dilated pooling (dilations {a['dilations']}) is not "
                             f"supported")
        if len(node.output) > 1 and node.output[1] and ctx.is_used(node.output[1]):
            raise ValueError(f"{where}: the Indices output of MaxPool is not supported")
        in_shape = ctx.image_shape(node.input[0], node)
        return {"kernel_size": k, "stride": None if s == k else s,
                "padding": padding_from_onnx(a, in_shape, k, s, [1, 1], where, node.doc_string),
                "ceil_mode": bool(a.get("ceil_mode", 0))}


@register
class MaxPool2d(_Pool2d):
    """Max pooling: the largest value of each window. (C, H, W) -> (C, H', W')."""

    type_name = "MaxPool2d"
    label = "Max pooling"
    doc = "Keeps the largest value of each window: shrinks the maps, keeps the strongest response."
    short_name = "pool"
    icon = Icon("pool-max")  # a 2×2 window with one cell filled
    onnx_ops = ("MaxPool",)
    params = POOL_PARAMS
    pad_value = -np.inf

    def forward(self, xs, training=False):
        # CHWN memory (engine/ops.py): one running maximum over the kh·kw taps, each a
        # (C, Ho, Wo, N) view with N contiguous values per row; training also keeps the tap
        # index of each maximum (the first one on ties, as PyTorch) in one byte per output.
        (x,) = xs
        n, c, h, w = x.shape
        k, s, full, ho, wo = self._full_pads(h, w)
        xp = pad_chwn(x, full, -np.inf)
        y = np.empty((c, ho, wo, n), x.dtype)
        np.copyto(y, xp[tap_slice(0, 0, s[0], s[1], ho, wo)])
        idx = None
        if training and k[0] * k[1] > 1:
            idx = np.zeros(y.shape, np.uint8 if k[0] * k[1] < 256 else np.uint16)
            won, code = np.empty(y.shape, bool), np.empty(y.shape, idx.dtype)
        for t in range(1, k[0] * k[1]):
            tap = xp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo)]
            if idx is not None:
                np.greater(tap, y, out=won)
                # t exceeds every index stored so far: max(idx, won·t) sets idx = t where won
                np.multiply(won.view(np.uint8), idx.dtype.type(t), out=code)
                np.maximum(idx, code, out=idx)
            np.maximum(y, tap, out=y)
        if training:
            self._cache = (idx, x.shape, xp.shape, full)
        return nchw(y)

    def backward(self, dy):
        idx, xshape, xpshape, full = self._cache
        self._cache = None
        h, w = xshape[2:]
        k, s = self.kernel_size, self.strides
        ho, wo = dy.shape[2:]
        dyc = as_chwn(dy)
        overlap = s[0] < k[0] or s[1] < k[1]
        tiled = s == k and ho * k[0] == xpshape[1] and wo * k[1] == xpshape[2]
        # windows that tile the input exactly write every cell once: no need to zero it first
        dxp = (np.empty if tiled and idx is not None else np.zeros)(xpshape, dy.dtype)
        if idx is None:  # 1×1 kernel: every window has one tap
            dxp[tap_slice(0, 0, s[0], s[1], ho, wo)] = dyc
        for t in range(k[0] * k[1] if idx is not None else 0):
            view = dxp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo)]
            mask = np.equal(idx, t).view(np.uint8).astype(dy.dtype)
            if overlap:
                view += np.multiply(dyc, mask, out=mask)
            else:  # disjoint windows: each input cell is written by one tap at most
                np.multiply(dyc, mask, out=view)
        return [nchw(dxp[:, full[0]:full[0] + h, full[1]:full[1] + w])]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("MaxPool", inputs, [output], self.name, **self._onnx_attrs(ctx))

    @classmethod
    def from_onnx(cls, node, ctx):
        return ctx.imported(cls, cls._pool_params(node, ctx), {}, [node.input[0]])


@register
class AvgPool2d(_Pool2d):
    """Average pooling: the mean of each window. (C, H, W) -> (C, H', W')."""

    type_name = "AvgPool2d"
    label = "Average pooling"
    doc = "Averages each window: shrinks the maps smoothly."
    short_name = "avgpool"
    icon = Icon("pool-avg")  # a 2×2 window, every cell half filled
    onnx_ops = ("AveragePool",)
    params = POOL_PARAMS + (
        Param("count_include_pad", BOOL, True, "Count padded cells in the divisor of the mean."),
    )

    def _divisor(self, h, w, dtype=np.float32):
        """(Ho, Wo) divisor: cells of each window inside the input (or inside the explicit
        padding with count_include_pad); the ceil-mode overhang never counts (ONNX, PyTorch)."""
        k, s, pads, ho, wo = self._geometry(h, w)

        def counts(size, kk, ss, pb, pe, n_out):
            start = np.arange(n_out) * ss - pb
            lo, hi = (-pb, size + pe) if self.count_include_pad else (0, size)
            return np.minimum(start + kk, hi) - np.maximum(start, lo)

        ch = counts(h, k[0], s[0], pads[0], pads[2], ho)
        cw = counts(w, k[1], s[1], pads[1], pads[3], wo)
        return np.outer(ch, cw).astype(dtype)

    def forward(self, xs, training=False):
        # CHWN memory (engine/ops.py): a running sum over the kh·kw tap views
        (x,) = xs
        n, c, h, w = x.shape
        k, s, full, ho, wo = self._full_pads(h, w)
        xp = pad_chwn(x, full, 0.0)
        div = self._divisor(h, w, x.dtype)
        y = np.empty((c, ho, wo, n), x.dtype)
        np.copyto(y, xp[tap_slice(0, 0, s[0], s[1], ho, wo)])
        for t in range(1, k[0] * k[1]):
            y += xp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo)]
        y /= div[:, :, None]
        if training:
            self._cache = (x.shape, xp.shape, full, div)
        return nchw(y)

    def backward(self, dy):
        xshape, xpshape, full, div = self._cache
        self._cache = None
        h, w = xshape[2:]
        k, s = self.kernel_size, self.strides
        ho, wo = dy.shape[2:]
        g = as_chwn(dy) / div[:, :, None]
        dxp = np.zeros(xpshape, g.dtype)
        for t in range(k[0] * k[1]):
            dxp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo)] += g
        return [nchw(dxp[:, full[0]:full[0] + h, full[1]:full[1] + w])]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        # count_include_pad always written: ONNX's default is 0, ours (PyTorch's) True
        ctx.node("AveragePool", inputs, [output], self.name, **self._onnx_attrs(ctx),
                 count_include_pad=int(self.count_include_pad))

    @classmethod
    def from_onnx(cls, node, ctx):
        params = cls._pool_params(node, ctx)
        params["count_include_pad"] = bool(ctx.attrs(node).get("count_include_pad", 0))
        return ctx.imported(cls, params, {}, [node.input[0]])


def adaptive_matrix(size: int, out: int, dtype=np.float32) -> np.ndarray:
    """(out, size) averaging matrix of adaptive pooling: window i covers
    [floor(i·size/out), ceil((i+1)·size/out)), as PyTorch defines it."""
    m = np.zeros((out, size), dtype)
    for i in range(out):
        a, b = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, a:b] = 1.0 / (b - a)
    return m


@register
class AdaptiveAvgPool2d(Layer):
    """Average pooling to a fixed output size, whatever the input size."""

    type_name = "AdaptiveAvgPool2d"
    label = "Adaptive avg pooling"
    category = "Pooling"
    doc = "Averages into a fixed output size (e.g. 7×7 before VGG's classifier)."
    short_name = "adaptpool"
    icon = Icon("pool-avg")
    onnx_ops = ("AveragePool",)
    params = (Param("output_size", PAIR, [1, 1], "Output height × width.", min=1, max=1024,
                    label="output size"),)

    def output_shape(self, in_shapes):
        c, h, w = self._single_image(in_shapes)
        oh, ow = self.output_size
        if oh > h or ow > w:
            raise ShapeError(f"{self.where}: output size {oh}×{ow} is larger than the {h}×{w} "
                             f"input", "output_size",
                             Fix(f"output size {min(oh, h)}×{min(ow, w)}", "set_params",
                                 {"output_size": [min(oh, h), min(ow, w)]}))
        return c, oh, ow

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        oh, ow = self.output_size
        kh, kw = -(-h // oh), -(-w // ow)
        return ((kh, kw), (h // oh, w // ow), (0, 0))

    def describe(self, in_shapes=None):
        return f"→ {self.output_size[0]}×{self.output_size[1]}"

    def formula(self, in_shapes):
        if len(in_shapes[0]) != 3:
            return super().formula(in_shapes)
        c, h, w = in_shapes[0]
        oh, ow = self.output_size
        return [f"H×W: fixed output size {oh}×{ow} (input {h}×{w})",
                f"C: {c} (pooling keeps the channels)"]

    def torch_module(self, in_shapes):
        return f"nn.AdaptiveAvgPool2d({pair(self.output_size)})"

    def forward(self, xs, training=False):
        (x,) = xs
        _, _, h, w = x.shape
        mh = adaptive_matrix(h, self.output_size[0], x.dtype)
        mw = adaptive_matrix(w, self.output_size[1], x.dtype)
        if training:
            self._cache = (mh, mw)
        return np.matmul(np.matmul(mh, x), mw.T)

    def backward(self, dy):
        mh, mw = self._cache
        self._cache = None
        return [np.matmul(np.matmul(mh.T, dy), mw)]

    # Exported as an AveragePool where the output size divides the input; the node's doc_string
    # names this type so our own files import back as AdaptiveAvgPool2d.
    onnx_doc = "cnn-designer:AdaptiveAvgPool2d"
    onnx_import_first = True  # claims only its own tagged AveragePool nodes

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        _, h, w = ctx.in_shapes[0]
        oh, ow = self.output_size
        if h % oh or w % ow:
            raise ValueError(f"{self.where} cannot be exported to ONNX: output size {oh}×{ow} "
                             f"does not divide the {h}×{w} input (ONNX has no adaptive "
                             f"pooling). Fix: choose an output size that divides {h}×{w}, or "
                             f"change the input size")
        k = [h // oh, w // ow]
        ctx.node("AveragePool", inputs, [output], self.name, doc=self.onnx_doc, kernel_shape=k,
                 strides=k, pads=[0, 0, 0, 0], ceil_mode=0, count_include_pad=0)

    @classmethod
    def from_onnx(cls, node, ctx):
        if node.doc_string != cls.onnx_doc:
            return None
        a = ctx.attrs(node)
        k = list(a.get("kernel_shape", []))
        _, h, w = ctx.image_shape(node.input[0], node)
        if (len(k) != 2 or list(a.get("strides", [1, 1])) != k or any(a.get("pads", [0] * 4))
                or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or h % k[0]
                or w % k[1]):
            return None  # not our pattern after all: a plain AveragePool
        return ctx.imported(cls, {"output_size": [h // k[0], w // k[1]]}, {}, [node.input[0]])


@register
class GlobalAvgPool2d(Layer):
    """Mean of each whole feature map. (C, H, W) -> (C, 1, 1)."""

    type_name = "GlobalAvgPool2d"
    label = "Global avg pooling"
    category = "Pooling"
    doc = "Averages each whole feature map to one number (C×1×1), as in ResNet and GoogLeNet."
    short_name = "gap"
    icon = Icon("pool-global")  # the whole window filled
    onnx_ops = ("GlobalAveragePool",)

    def output_shape(self, in_shapes):
        c, _, _ = self._single_image(in_shapes)
        return c, 1, 1

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        return ((h, w), (h, w), (0, 0))

    def formula(self, in_shapes):
        if len(in_shapes[0]) != 3:
            return super().formula(in_shapes)
        return [f"{fmt_shape(in_shapes[0])} {ARROW} {in_shapes[0][0]}×1×1: one average per channel"]

    def torch_module(self, in_shapes):
        return "nn.AdaptiveAvgPool2d(1)"

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = x.shape
        return x.mean(axis=(2, 3), keepdims=True)  # follows x's dtype

    def backward(self, dy):
        n, c, h, w = self._cache
        self._cache = None
        return [np.broadcast_to(dy / (h * w), (n, c, h, w)).copy()]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("GlobalAveragePool", inputs, [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        ctx.image_shape(node.input[0], node)
        return ctx.imported(cls, {}, {}, [node.input[0]])


@register
class GlobalMaxPool2d(Layer):
    """Maximum of each whole feature map. (C, H, W) -> (C, 1, 1)."""

    type_name = "GlobalMaxPool2d"
    label = "Global max pooling"
    category = "Pooling"
    doc = "Keeps the largest value of each whole feature map (C×1×1): 'is the feature anywhere?'"
    short_name = "gmp"
    icon = Icon("pool-max")  # the max window: one cell stands for the whole map
    onnx_ops = ("GlobalMaxPool",)

    def output_shape(self, in_shapes):
        c, _, _ = self._single_image(in_shapes)
        return c, 1, 1

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        return ((h, w), (h, w), (0, 0))

    def formula(self, in_shapes):
        if len(in_shapes[0]) != 3:
            return super().formula(in_shapes)
        c, h, w = in_shapes[0]
        return [(f"{fmt_shape(in_shapes[0])} {ARROW} {c}×1×1: the largest of {h}·{w} = "
                 f"{h * w} values per channel")]

    def torch_module(self, in_shapes):
        return "nn.AdaptiveMaxPool2d(1)"

    def forward(self, xs, training=False):
        (x,) = xs
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        if not training:
            return flat.max(axis=2).reshape(n, c, 1, 1)
        # the gradient goes to the first maximum, as PyTorch's adaptive max pooling does
        idx = flat.argmax(axis=2)
        self._cache = (x.shape, idx)
        return np.take_along_axis(flat, idx[:, :, None], axis=2).reshape(n, c, 1, 1)

    def backward(self, dy):
        shape, idx = self._cache
        self._cache = None
        n, c = shape[:2]
        dx = np.zeros((n, c, shape[2] * shape[3]), dy.dtype)
        np.put_along_axis(dx, idx[:, :, None], dy.reshape(n, c, 1), axis=2)
        return [dx.reshape(shape)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node("GlobalMaxPool", inputs, [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        ctx.image_shape(node.input[0], node)
        return ctx.imported(cls, {}, {}, [node.input[0]])


__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d", "MaxPool2d",
           "conv_out"]
