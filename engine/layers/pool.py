"""Pooling: MaxPool2d, AvgPool2d, GeometricPool2d, HarmonicPool2d, AdaptiveAvgPool2d,
GlobalAvgPool2d, GlobalMaxPool2d.

Window pooling has ONNX's full semantics: dilations, and padding of any size (ONNX allows pads
beyond half the kernel, PyTorch does not), as long as every window reads at least one input
cell. O = floor((I + pads − D·(K−1) − 1) / S) + 1 per axis (ceil in ceil_mode, dropping a last
window that would start in the end padding, as ONNX Runtime and PyTorch do). Max pooling pads
with −inf; average pooling divides by the window's cells inside the input (count_include_pad:
inside the input and the explicit padding; never the ceil-mode overhang).

Where nn.MaxPool2d / nn.AvgPool2d cannot say a setting (padding over half the kernel, dilated
average pooling, asymmetric padding not counted), the generated PyTorch code uses the helper
WindowPool2d (engine/pytorch_export.py): explicit F.pad, the windows read with F.unfold, and the
divisor counted the same way on a mask of ones: exact, not an approximation.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from ..nn import kernels
from ..nn.ops import as_chwn, nchw, pad_chwn, tap_slice
from ..shapes import conv_out, effective_kernel
from .base import (
    BOOL,
    FLOAT,
    MAX_PAD,
    PADDING,
    PAIR,
    Icon,
    Layer,
    Param,
    fmt_shape,
    register,
)
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
from .onnx_pattern import SCALAR, OnnxPattern, Op
from .torch_code import TorchCode, TorchModule, call_args, num, pair

POOL_PARAMS = (
    Param("kernel_size", PAIR, [2, 2], "Height × width of each pooling window.", min=1, max=64,
          label="kernel"),
    Param("stride", PAIR, None, "Step between windows; empty means equal to the kernel.",
          min=1, max=64, optional=True),
    Param("padding", PADDING, "valid", "'valid', 'same' or explicit padding per side (top, left, "
          "bottom, right); any size (ONNX), as long as every window reads an input cell.",
          min=0, max=MAX_PAD),
    Param("ceil_mode", BOOL, False, "Round the output size up, so a partial last window counts."),
)
POOL_DILATION = Param("dilation", PAIR, [1, 1], "Spacing between the window's taps; the window "
                      "then spans D·(K−1)+1 cells (ONNX dilations; AveragePool has them from "
                      "opset 19).", min=1, max=32)


def window_counts(size: int, k: int, s: int, d: int, p_begin: int, n_out: int, lo: int,
                  hi: int) -> np.ndarray:
    """Per output position along one axis: how many of the window's k taps (dilation d) lie in
    [lo, hi) of the unpadded axis (0..size is the input, −p_begin.. the explicit padding)."""
    taps = (np.arange(n_out) * s - p_begin)[:, None] + np.arange(k) * d
    return ((taps >= lo) & (taps < hi)).sum(axis=1)


class _Pool2d(Layer):
    """Shared shape logic of window pooling."""

    category = "Pooling"
    pad_value = 0.0

    @property
    def strides(self):
        return self.stride if self.stride is not None else list(self.kernel_size)

    @property
    def dilations(self):
        return self.values.get("dilation") or [1, 1]

    def _geometry(self, h, w):
        k, s = self.kernel_size, self.strides
        pads, ho, wo = window_output(self, h, w, k, s, self.dilations, self.ceil_mode)
        return k, s, pads, ho, wo

    def output_shape(self, in_shapes):
        c, h, w = self._single_image(in_shapes)
        k, s, pads, ho, wo = self._geometry(h, w)
        d = self.dilations
        if max(pads) > min(k[0] // 2, k[1] // 2) or d != [1, 1]:  # a window may miss the input
            for axis, size, i, n in (("rows", h, 0, ho), ("columns", w, 1, wo)):
                counts = window_counts(size, k[i], s[i], d[i], pads[i], n, 0, size)
                if counts.min() == 0:
                    o = int(np.argmin(counts))
                    raise ShapeError(
                        f"{self.where}: with padding {fmt_padding(list(pads))}"
                        f"{f' and dilation {d[0]}×{d[1]}' if d != [1, 1] else ''}, window {o} "
                        f"along the {axis} reads only padding, no input cell ({size} {axis})",
                        "padding", Fix("padding valid", "set_params", {"padding": "valid"}))
        return c, ho, wo

    def warnings(self, in_shapes, out_shape):
        if self.ceil_mode:
            return []
        _, h, w = in_shapes[0]
        k, s, pads, _, _ = self._geometry(h, w)
        out = unread_warnings(self, h, w, k, s, self.dilations, pads)
        return [(t, p, Fix("ceil_mode on (pool the partial window too)", "set_params",
                           {"ceil_mode": True})) for t, p, _ in out]

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        k, s, pads, _, _ = self._geometry(h, w)
        d = self.dilations
        return ((effective_kernel(k[0], d[0]), effective_kernel(k[1], d[1])), tuple(s),
                (pads[0], pads[1]))

    def formula(self, in_shapes):
        if len(in_shapes[0]) != 3:
            return super().formula(in_shapes)
        c, h, w = in_shapes[0]
        k, s, d = self.kernel_size, self.strides, self.dilations
        pads = resolve_pads(self.padding, h, w, k, s, d)
        return [*window_lines(h, w, k, s, d, pads, bool(self.ceil_mode)),
                f"C: {c} (pooling keeps the channels)"]

    def describe(self, in_shapes=None):
        k, s, d = self.kernel_size, self.strides, self.dilations
        parts = [f"{k[0]}×{k[1]}", f"s{s[0]}" if s[0] == s[1] else f"s{s[0]},{s[1]}"]
        if d != [1, 1]:
            parts.append(f"d{d[0]}" if d[0] == d[1] else f"d{d[0]},{d[1]}")
        if self.padding != "valid":
            parts.append(fmt_padding(self.padding))
        if self.ceil_mode:
            parts.append("ceil")
        return ", ".join(parts)

    def _window_pool(self, in_shapes, attr, mode: str, **extra) -> TorchCode:
        """The exact WindowPool2d helper (explicit padding, F.unfold windows, counted divisor)."""
        _, h, w = in_shapes[0]
        _, _, pads, _, _ = self._geometry(h, w)
        k, s, full, _, _ = self._full_pads(h, w)
        kw = {"kernel_size": pair(k), "stride": pair(s)}
        if self.dilations != [1, 1]:
            kw["dilation"] = pair(self.dilations)
        kw["pads"] = str(tuple(int(v) for v in pads))
        ext = (full[2] - pads[2], full[3] - pads[3])
        if any(ext):
            kw["extra"] = str(tuple(int(v) for v in ext))
        kw.update(extra)
        return TorchCode([TorchModule(attr, f"WindowPool2d({call_args(repr(mode), **kw)})")],
                         helper="WindowPool2d")

    def to_pytorch(self, in_shapes, attr, names):
        """nn.MaxPool2d / nn.AvgPool2d where they say the setting exactly: symmetric padding of
        at most half the kernel (PyTorch's limit), and no dilation for average pooling. Else:
        max pooling gets an explicit −inf nn.ConstantPad2d before an unpadded nn.MaxPool2d
        (cropped where PyTorch would keep a ceil-mode window starting in that padding); average
        pooling counting the padding (no dilation) an nn.ZeroPad2d before nn.AvgPool2d; every
        other average pooling (dilation, or uncounted padding that nn.AvgPool2d cannot take)
        the exact WindowPool2d helper."""
        _, h, w = in_shapes[0]
        k, s, pads, ho, wo = self._geometry(h, w)
        d = self.dilations
        t, l, b, r = pads
        is_max = self.type_name == "MaxPool2d"
        avg_excludes_pad = not is_max and not self.count_include_pad
        torch_pads = (t, l) == (b, r) and 2 * t <= k[0] and 2 * l <= k[1]
        if not is_max and (d != [1, 1] or (avg_excludes_pad and not torch_pads)):
            return self._window_pool(in_shapes, attr, "avg",
                                     count_include_pad=str(bool(self.count_include_pad)))
        kw: dict = {"kernel_size": pair(k)}
        if s != k:
            kw["stride"] = pair(s)
        code = TorchCode()
        crop = ""
        if torch_pads:
            if t or l:
                kw["padding"] = pair([t, l])
        else:
            ctor = (f'nn.ConstantPad2d(({l}, {r}, {t}, {b}), float("-inf"))' if is_max
                    else f"nn.ZeroPad2d(({l}, {r}, {t}, {b}))")
            code.modules.append(TorchModule(names.claim(attr + "_pad"), ctor))
            # PyTorch keeps a ceil-mode window that starts in the (now explicit) end padding;
            # the engine, like ONNX, drops it: crop to the engine's size
            th = conv_out(h + t + b, k[0], s[0], 0, 0, d[0], self.ceil_mode)
            tw = conv_out(w + l + r, k[1], s[1], 0, 0, d[1], self.ceil_mode)
            if (th, tw) != (ho, wo):
                crop = f"[:, :, :{ho}, :{wo}]"
        if d != [1, 1]:
            kw["dilation"] = pair(d)
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
        d = self.dilations
        keh, kew = effective_kernel(k[0], d[0]), effective_kernel(k[1], d[1])
        extra_h = max(0, (ho - 1) * s[0] + keh - (h + pads[0] + pads[2]))
        extra_w = max(0, (wo - 1) * s[1] + kew - (w + pads[1] + pads[3]))
        return k, s, (pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w), ho, wo

    # ---- ONNX mapping, shared by MaxPool and AveragePool --------------------------------------

    def _onnx_attrs(self, ctx) -> dict:
        _, h, w = ctx.in_shapes[0]
        k, s, pads, ho, wo = self._geometry(h, w)
        d = self.dilations
        keff = [effective_kernel(k[0], d[0]), effective_kernel(k[1], d[1])]
        # ceil_mode is written only where it adds a window. Where our (and ONNX Runtime's) rule
        # drops a last window that would start in the end padding, the result equals floor
        # mode, and onnx's shape inference (1.23) would otherwise count that window.
        fh = conv_out(h, k[0], s[0], pads[0], pads[2], d[0])
        fw = conv_out(w, k[1], s[1], pads[1], pads[3], d[1])
        ceil = int(bool(self.ceil_mode) and (ho, wo) != (fh, fw))
        attrs = onnx_padding(self.padding, ctx.in_shapes[0], k, s, d)
        if ceil:
            # one axis gains a window, the other may be a dropped-window axis: there, trimming
            # the end padding to the last window's end (the same windows, the same divisors)
            # makes ONNX's plain ceil formula count what we count
            pads = list(attrs["pads"])
            for i, (size, n) in enumerate(((h, ho), (w, wo))):
                pb, pe = pads[i], pads[i + 2]
                span = size + pb + pe - keff[i]
                if -(-span // s[i]) + 1 != n:
                    r = span % s[i]
                    if r > pe:
                        raise ValueError(
                            f"{self.where}: ceil_mode with stride {s[i]} over a kernel of "
                            f"{keff[i]} on {size} cells cannot be written in ONNX for both axes; "
                            f"Fix: turn ceil_mode off or change the padding")
                    pads[i + 2] = pe - r
            attrs = {"pads": pads}  # no longer the 'same' pads
        out = dict(kernel_shape=list(k), strides=list(s), ceil_mode=ceil, **attrs)
        if d != [1, 1]:  # written only where it says something: older files stay byte-equal
            out["dilations"] = list(d)
        return out

    @classmethod
    def _pool_params(cls, node, ctx, data_input: str | None = None) -> dict:
        a = ctx.attrs(node)
        where = ctx.where(node)
        if "kernel_shape" not in a:
            raise ValueError(f"{where}: kernel_shape is missing")
        k = onnx_pair(a, "kernel_shape", None, where)
        s = onnx_pair(a, "strides", [1, 1], where)  # ONNX's default stride is 1, ours the kernel
        d = onnx_pair(a, "dilations", [1, 1], where)
        if d != [1, 1] and not any(p.name == "dilation" for p in cls.params):
            raise ValueError(f"{where}: dilations {d} are not supported by {cls.type_name}")
        if len(node.output) > 1 and node.output[1] and ctx.is_used(node.output[1]):
            raise ValueError(f"{where}: the Indices output of MaxPool is not supported")
        in_shape = ctx.image_shape(data_input or node.input[0], node)
        out = {"kernel_size": k, "stride": None if s == k else s,
               "padding": padding_from_onnx(a, in_shape, k, s, d, where, node.doc_string),
               "ceil_mode": bool(a.get("ceil_mode", 0))}
        if d != [1, 1]:
            out["dilation"] = d
        return out


def window_divisor(layer: _Pool2d, h: int, w: int, include_pad: bool, dtype=np.float32):
    """(Ho, Wo) divisor of a window mean: the window's taps inside the input (with
    `include_pad`, inside the input and its explicit padding); the ceil-mode overhang never
    counts (ONNX, PyTorch)."""
    k, s, pads, ho, wo = layer._geometry(h, w)
    d = layer.dilations
    ch = window_counts(h, k[0], s[0], d[0], pads[0], ho, *((-pads[0], h + pads[2])
                                                           if include_pad else (0, h)))
    cw = window_counts(w, k[1], s[1], d[1], pads[1], wo, *((-pads[1], w + pads[3])
                                                           if include_pad else (0, w)))
    return np.outer(ch, cw).astype(dtype)


def window_mean(layer: _Pool2d, x: np.ndarray, include_pad: bool):
    """(the window means of x (N, C, H, W), what `window_mean_backward` needs). CHWN memory
    (engine/ops.py): a running sum over the kh·kw tap views, zero padding, then the divisor."""
    n, c, h, w = x.shape
    k, s, full, ho, wo = layer._full_pads(h, w)
    d = layer.dilations
    xp = pad_chwn(x, full, 0.0)
    div = window_divisor(layer, h, w, include_pad, x.dtype)
    y = np.empty((c, ho, wo, n), x.dtype)
    np.copyto(y, xp[tap_slice(0, 0, s[0], s[1], ho, wo, *d)])
    for t in range(1, k[0] * k[1]):
        y += xp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo, *d)]
    y /= div[:, :, None]
    return nchw(y), (x.shape, xp.shape, full, div)


def window_mean_backward(layer: _Pool2d, dy: np.ndarray, cache) -> np.ndarray:
    xshape, xpshape, full, div = cache
    h, w = xshape[2:]
    k, s, d = layer.kernel_size, layer.strides, layer.dilations
    ho, wo = dy.shape[2:]
    g = as_chwn(dy) / div[:, :, None]
    dxp = np.zeros(xpshape, g.dtype)
    for t in range(k[0] * k[1]):
        dxp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo, *d)] += g
    return nchw(dxp[:, full[0]:full[0] + h, full[1]:full[1] + w])


@register
class MaxPool2d(_Pool2d):
    """Max pooling: the largest value of each window. (C, H, W) -> (C, H', W')."""

    type_name = "MaxPool2d"
    label = "Max pooling"
    doc = "Keeps the largest value of each window: shrinks the maps, keeps the strongest response."
    short_name = "pool"
    icon = Icon("pool-max")  # a 2×2 window with one cell filled
    onnx_ops = ("MaxPool",)
    params = POOL_PARAMS + (POOL_DILATION,)
    pad_value = -np.inf

    def forward(self, xs, training=False):
        # CHWN memory (engine/ops.py): one running maximum over the kh·kw taps, each a
        # (C, Ho, Wo, N) view with N contiguous values per row; training also keeps the tap
        # index of each maximum (the first one on ties, as PyTorch) in one byte per output.
        (x,) = xs
        n, c, h, w = x.shape
        k, s, full, ho, wo = self._full_pads(h, w)
        d = self.dilations
        if k[0] * k[1] > 1:
            y = self._forward_compiled(x, k, s, d, full, ho, wo, training)
            if y is not None:
                return y
        xp = pad_chwn(x, full, -np.inf)
        y = np.empty((c, ho, wo, n), x.dtype)
        np.copyto(y, xp[tap_slice(0, 0, s[0], s[1], ho, wo, *d)])
        idx = None
        if training and k[0] * k[1] > 1:
            idx = np.zeros(y.shape, np.uint8 if k[0] * k[1] < 256 else np.uint16)
            won, code = np.empty(y.shape, bool), np.empty(y.shape, idx.dtype)
        for t in range(1, k[0] * k[1]):
            tap = xp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo, *d)]
            if idx is not None:
                np.greater(tap, y, out=won)
                # t exceeds every index stored so far: max(idx, won·t) sets idx = t where won
                np.multiply(won.view(np.uint8), idx.dtype.type(t), out=code)
                np.maximum(idx, code, out=idx)
            np.maximum(y, tap, out=y)
        if training:
            self._cache = (idx, x.shape, xp.shape, full)
        return nchw(y)

    def _forward_compiled(self, x, k, s, d, full, ho, wo, training):
        """The compiled forward (engine/nn/kernels.py: one pass over the taps, 3× NumPy's 4
        passes per tap at small_vgg's pool1) -> logical (N, C, Ho, Wo), or None (NumPy's
        turn); the cache is the NumPy forward's, so either backward reads it. Inference as
        kernels.for_inference says, and only on the float32 / byte-index version warm()
        compiles (the GUI thread never waits for a compile)."""
        if training:
            if not kernels.enabled():
                return None
        elif not (kernels.for_inference() and x.dtype == np.float32 and k[0] * k[1] < 256):
            return None  # inference: only the version warm() compiled (no compile waited for)
        n, c, h, w = x.shape
        x4 = as_chwn(x)
        y = np.empty((c, ho, wo, n), x4.dtype)
        idx = np.empty(y.shape, np.uint8 if k[0] * k[1] < 256 else np.uint16)
        if not kernels.maxpool_forward(x4, y, idx, k, s, d, full):
            return None
        if training:
            xpshape = (c, h + full[0] + full[2], w + full[1] + full[3], n)
            self._cache = (idx, x.shape, xpshape, full)
        return nchw(y)

    def backward(self, dy):
        idx, xshape, xpshape, full = self._cache
        self._cache = None
        h, w = xshape[2:]
        k, s, d = self.kernel_size, self.strides, self.dilations
        ho, wo = dy.shape[2:]
        dyc = as_chwn(dy)
        # two (window, tap) pairs can read one cell only where a stride is under the window's
        # span D·(K−1)+1
        overlap = s[0] < effective_kernel(k[0], d[0]) or s[1] < effective_kernel(k[1], d[1])
        tiled = (s == k and d == [1, 1] and ho * k[0] == xpshape[1]
                 and wo * k[1] == xpshape[2])
        if idx is not None and kernels.enabled():
            # the compiled pass: the windows' cells written (or added, where they overlap)
            # straight into the unpadded gradient; cells no window reads stay zero
            dx = (np.empty if tiled and not overlap else np.zeros)(
                (xshape[1], h, w, xshape[0]), dyc.dtype)
            if kernels.maxpool_backward(np.ascontiguousarray(dyc), idx, dx, k, s, d, full,
                                        add=overlap):
                return [nchw(dx)]
        # windows that tile the input exactly write every cell once: no need to zero it first
        dxp = (np.empty if tiled and idx is not None else np.zeros)(xpshape, dy.dtype)
        if idx is None:  # 1×1 kernel: every window has one tap
            dxp[tap_slice(0, 0, s[0], s[1], ho, wo)] = dyc
        for t in range(k[0] * k[1] if idx is not None else 0):
            view = dxp[tap_slice(t // k[1], t % k[1], s[0], s[1], ho, wo, *d)]
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
        POOL_DILATION,
        Param("count_include_pad", BOOL, True, "Count padded cells in the divisor of the mean."),
    )

    def _divisor(self, h, w, dtype=np.float32):
        return window_divisor(self, h, w, bool(self.count_include_pad), dtype)

    def forward(self, xs, training=False):
        (x,) = xs
        y, cache = window_mean(self, x, bool(self.count_include_pad))
        if training:
            self._cache = cache
        return y

    def backward(self, dy):
        cache, self._cache = self._cache, None
        return [window_mean_backward(self, dy, cache)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        d = self.dilations
        if d != [1, 1] and ctx.opset < 19:
            raise ValueError(
                f"{self.where} cannot be exported at opset {ctx.opset}: its dilation "
                f"{d[0]}×{d[1]} needs AveragePool's dilations attribute, which ONNX has from "
                f"opset 19 only. Fix: export at opset 19 or later (e.g. --opset 19), or set "
                f"the dilation to 1")
        # count_include_pad always written: ONNX's default is 0, ours (PyTorch's) True
        ctx.node("AveragePool", inputs, [output], self.name, **self._onnx_attrs(ctx),
                 count_include_pad=int(self.count_include_pad))

    @classmethod
    def from_onnx(cls, node, ctx):
        params = cls._pool_params(node, ctx)
        params["count_include_pad"] = bool(ctx.attrs(node).get("count_include_pad", 0))
        return ctx.imported(cls, params, {}, [node.input[0]])


# ---- geometric and harmonic mean pooling --------------------------------------------------

EPS = Param("eps", FLOAT, 1e-6, "Inputs are clamped to at least eps before the log / "
            "reciprocal (a 0 or a negative value has none); the gradient is that of the clamped "
            "function (0 where x < eps).", min=1e-12, max=1.0, label="eps")
_PROBE = np.linspace(-30.0, 30.0, 601, dtype=np.float32).reshape(1, 1, 1, -1)


def lowest_output(source: Layer | None) -> float | None:
    """The lowest value `source` can output, where it is known: a weightless elementwise
    activation is probed on a value grid (ReLU: 0, Sigmoid: > 0), geometric / harmonic pooling
    outputs at least its eps; None where nothing bounds it (data, a convolution, a Linear)."""
    if source is None:
        return None
    if isinstance(source, _MeanOfTransformPool2d):
        return float(source.eps)
    if source.category != "Activation" or source.min_inputs != 1 or source.params and any(
            p.kind not in (FLOAT, BOOL, "choice") for p in source.params):
        return None
    try:
        with np.errstate(all="ignore"):
            y = np.asarray(source.clone().forward([_PROBE.copy()]), np.float64)
    except Exception:  # noqa: BLE001 - needs weights or a real shape: not known
        return None
    if y.shape != _PROBE.shape or not np.isfinite(y).all():
        return None
    lo = float(y.min())
    return None if lo < -1e3 else lo  # still falling at the grid's end: unbounded


class _MeanOfTransformPool2d(_Pool2d):
    """y = g(mean over the window's input cells of f(max(x, eps))): geometric (f = ln, g = exp)
    and harmonic (f = g = 1/x) pooling. Padding never counts in the mean (ONNX AveragePool
    count_include_pad = 0), so 'same' padding keeps the borders' means. Exported as
    Max(x, eps) → f → AveragePool → g and imported back from exactly that pattern."""

    params = POOL_PARAMS + (EPS,)
    icon = Icon("pool-avg")
    onnx_ops = ()  # several nodes at every opset: the pattern in onnx_patterns only
    f_op: ClassVar[str]
    g_op: ClassVar[str]
    what: ClassVar[str]  # "the log" / "the reciprocal"

    def _f(self, xc):
        raise NotImplementedError

    def _g(self, m):
        raise NotImplementedError

    def forward(self, xs, training=False):
        (x,) = xs
        eps = x.dtype.type(self.eps)
        xc = np.maximum(x, eps)
        m, cache = window_mean(self, self._f(xc), False)
        y = self._g(m)
        if training:
            self._cache = (x >= eps, xc, y, cache)
        return y

    def _dm(self, dy, y):
        raise NotImplementedError

    def _df(self, du, xc):
        raise NotImplementedError

    def backward(self, dy):
        (keep, xc, y, cache), self._cache = self._cache, None
        du = window_mean_backward(self, self._dm(dy, y), cache)
        return [self._df(du, xc) * keep]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        eps = ctx.initializer(f"{self.name}.eps", np.array(self.eps, np.float32))
        clamped, f, mean = f"{output}/clamped", f"{output}/{self.f_op.lower()}", f"{output}/mean"
        ctx.node("Max", [inputs[0], eps], [clamped], f"{self.name}/Max")
        ctx.node(self.f_op, [clamped], [f], f"{self.name}/{self.f_op}")
        ctx.node("AveragePool", [f], [mean], f"{self.name}/AveragePool",
                 **self._onnx_attrs(ctx), count_include_pad=0)
        ctx.node(self.g_op, [mean], [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        return None  # imported through its pattern only (see onnx_patterns)

    @classmethod
    def from_onnx_pattern(cls, pattern, x, nodes, ctx):
        consts = [ctx.const(i) for i in nodes[0].input if ctx.const(i) is not None]
        pool = nodes[2]
        if len(consts) != 1 or ctx.attrs(pool).get("count_include_pad", 0):
            return None
        eps = float(str(np.float32(np.asarray(consts[0]).reshape(()))))  # 1e-06, not 9.99e-07
        if not (EPS.min <= eps <= EPS.max):
            return None
        try:
            params = cls._pool_params(pool, ctx, data_input=x)
        except ValueError:
            return None
        return dict(params, eps=eps)

    def to_pytorch(self, in_shapes, attr, names):
        """The exact WindowPool2d helper: clamp, transform, the mean over the window's input
        cells (padding never counts), back-transform."""
        return self._window_pool(in_shapes, attr, self.mode, eps=num(self.eps))

    def describe(self, in_shapes=None):
        return super().describe(in_shapes) + (f", eps {self.eps:g}" if self.eps != EPS.default
                                              else "")

    def _effect(self, n: int) -> str:
        raise NotImplementedError

    def source_warnings(self, in_shapes, sources):
        src = sources[0] if sources else None
        if src is None:
            return []
        lo = lowest_output(src)
        if lo is not None and lo > 0:
            return []
        if lo is None:
            can = "can be negative or 0 (nothing bounds its output below)"
        elif lo == 0:
            can = f"can be 0 ({src.type_name} outputs ≥ 0)"
        else:
            can = f"can be negative (down to {lo:.3g})"
        k = self.kernel_size
        n = k[0] * k[1]
        e = self.eps
        text = (f"{self.where}: its input from {src.where} {can}; such inputs are clamped to "
                f"eps = {e:g} before {self.what}, so {self._effect(n)}. Fix: make the input "
                f"positive (a Sigmoid, or a ReLU followed by + eps, before it) or use average "
                f"pooling")
        return [(text, "eps", None)]

    def _mean_line(self, in_shapes) -> str:
        raise NotImplementedError

    def formula(self, in_shapes):
        lines = super().formula(in_shapes)
        return [self._mean_line(in_shapes), *lines] if len(in_shapes[0]) == 3 else lines


@register
class GeometricPool2d(_MeanOfTransformPool2d):
    """Geometric-mean pooling: exp(mean(ln max(x, eps))) over each window's input cells."""

    type_name = "GeometricPool2d"
    label = "Geometric-mean pooling"
    doc = ("The geometric mean of each window, exp(mean(ln x)): between average and min pooling, "
           "for positive inputs (inputs are clamped to ≥ eps). Exported as Max → Log → "
           "AveragePool → Exp.")
    short_name = "geopool"
    mode = "geometric"
    f_op, g_op, what = "Log", "Exp", "the log"
    onnx_patterns = (OnnxPattern((Op("Max", "x", SCALAR), Op("Log", 0), Op("AveragePool", 1),
                                  Op("Exp", 2))),)

    def _f(self, xc):
        return np.log(xc)

    def _g(self, m):
        return np.exp(m)

    def _dm(self, dy, y):
        return dy * y  # d exp(m) / dm = y

    def _df(self, du, xc):
        return du / xc  # d ln(xc) / dxc = 1 / xc

    def _effect(self, n):
        return (f"one such cell in a window of {n} cells pulls the output of values near 1 "
                f"down to about ({self.eps:g})^(1/{n}) = {self.eps ** (1 / n):.3g}")

    def _mean_line(self, in_shapes):
        k, e = self.kernel_size, self.eps
        n = k[0] * k[1]
        return (f"y = exp((1/n)·Σ ln max(x, {e:g})) over the n ≤ {k[0]}·{k[1]} = {n} input "
                f"cells of each window (padding never counts)")


@register
class HarmonicPool2d(_MeanOfTransformPool2d):
    """Harmonic-mean pooling: n / Σ 1/max(x, eps) over each window's n input cells."""

    type_name = "HarmonicPool2d"
    label = "Harmonic-mean pooling"
    doc = ("The harmonic mean of each window, n / Σ(1/x): dominated by the smallest values, for "
           "positive inputs (inputs are clamped to ≥ eps). Exported as Max → Reciprocal → "
           "AveragePool → Reciprocal.")
    short_name = "harmpool"
    mode = "harmonic"
    f_op, g_op, what = "Reciprocal", "Reciprocal", "the reciprocal"
    onnx_patterns = (OnnxPattern((Op("Max", "x", SCALAR), Op("Reciprocal", 0),
                                  Op("AveragePool", 1), Op("Reciprocal", 2))),)

    def _f(self, xc):
        return np.reciprocal(xc)

    def _g(self, m):
        return np.reciprocal(m)

    def _dm(self, dy, y):
        return -dy * y * y  # d (1/m) / dm = −1/m² = −y²

    def _df(self, du, xc):
        return -du / (xc * xc)  # d (1/xc) / dxc = −1/xc²

    def _effect(self, n):
        return (f"one such cell in a window of {n} cells makes the output at most "
                f"{n}·{self.eps:g} = {n * self.eps:.3g}")

    def _mean_line(self, in_shapes):
        k, e = self.kernel_size, self.eps
        n = k[0] * k[1]
        return (f"y = n / Σ 1/max(x, {e:g}) over the n ≤ {k[0]}·{k[1]} = {n} input cells of "
                f"each window (padding never counts)")


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


class _GlobalPool2d(Layer):
    """Shared by the global poolings: (C, H, W) -> (C, 1, 1), one window over the whole map,
    one ONNX op (`onnx_ops[0]`) without attributes."""

    category = "Pooling"

    def output_shape(self, in_shapes):
        c, _, _ = self._single_image(in_shapes)
        return c, 1, 1

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        return ((h, w), (h, w), (0, 0))

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.node(self.onnx_ops[0], inputs, [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        ctx.image_shape(node.input[0], node)
        return ctx.imported(cls, {}, {}, [node.input[0]])


@register
class GlobalAvgPool2d(_GlobalPool2d):
    """Mean of each whole feature map. (C, H, W) -> (C, 1, 1)."""

    type_name = "GlobalAvgPool2d"
    label = "Global avg pooling"
    doc = "Averages each whole feature map to one number (C×1×1), as in ResNet and GoogLeNet."
    short_name = "gap"
    icon = Icon("pool-global")  # the whole window filled
    # also ReduceMean over H, W keeping them (how the dynamo exporter and tf2onnx write
    # global average pooling); our own ReduceMean layer's node (tagged) stays a ReduceMean
    onnx_ops = ("GlobalAveragePool", "ReduceMean")
    onnx_import_first = True  # claims only that ReduceMean (ReduceMean's layer takes the rest)

    def formula(self, in_shapes):
        if len(in_shapes[0]) != 3:
            return super().formula(in_shapes)
        return [f"{fmt_shape(in_shapes[0])} {ARROW} {in_shapes[0][0]}×1×1: one average per channel"]

    def torch_module(self, in_shapes):
        return "nn.AdaptiveAvgPool2d(1)"

    @classmethod
    def from_onnx(cls, node, ctx):
        """GlobalAveragePool; or ReduceMean over axes 2, 3 (H, W) of a map with keepdims, not
        tagged as our ReduceMean layer's (None for any other ReduceMean)."""
        if node.op_type == "GlobalAveragePool":
            return super().from_onnx(node, ctx)
        from .reduce import ReduceMean, onnx_reduce_axes

        shape = ctx.shapes.get(ctx.resolve(node.input[0]))
        if node.doc_string == ReduceMean.onnx_doc or shape is None or len(shape) != 3 \
                or not int(ctx.attrs(node).get("keepdims", 1)) \
                or onnx_reduce_axes(node, ctx) != [2, 3]:
            return None
        return ctx.imported(cls, {}, {}, [node.input[0]])

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = x.shape
        return x.mean(axis=(2, 3), keepdims=True)  # follows x's dtype

    def backward(self, dy):
        n, c, h, w = self._cache
        self._cache = None
        return [np.broadcast_to(dy / (h * w), (n, c, h, w)).copy()]


@register
class GlobalMaxPool2d(_GlobalPool2d):
    """Maximum of each whole feature map. (C, H, W) -> (C, 1, 1)."""

    type_name = "GlobalMaxPool2d"
    label = "Global max pooling"
    doc = "Keeps the largest value of each whole feature map (C×1×1): 'is the feature anywhere?'"
    short_name = "gmp"
    icon = Icon("pool-max")  # the max window: one cell stands for the whole map
    onnx_ops = ("GlobalMaxPool",)

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


__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "GeometricPool2d", "GlobalAvgPool2d",
           "GlobalMaxPool2d", "HarmonicPool2d", "MaxPool2d", "conv_out"]
