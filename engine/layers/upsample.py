"""Upsampling: ConvTranspose2d (learned, the convolution's input gradient) and Upsample
(nearest / bilinear resize by an integer factor or to a size)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from ..nn.ops import (
    as_chwn,
    conv_input_grad,
    keep_freed_memory,
    matmul_nt,
    nchw,
    pad_chwn,
    scratch,
    taps_chwn,
)
from ..shapes import effective_kernel
from .base import BOOL, CHOICE, INT, PAIR, Icon, Layer, Param, register
from .conv import INIT, check_groups, init_uniform, onnx_pair
from .formula_text import DOT, MINUS, Count, num
from .torch_code import TorchCode, TorchModule, call_args, pair


def transposed_out(i: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """O = (I − 1)·S − 2P + D·(K − 1) + output_padding + 1 (PyTorch, ONNX ConvTranspose)."""
    return (i - 1) * s - 2 * p + d * (k - 1) + op + 1


@register
class ConvTranspose2d(Layer):
    """Transposed ("fractionally strided") convolution: every input value scatters a weighted
    copy of its kernel into the output, `stride` cells apart; the gradient of Conv2d with
    respect to its input. (C, H, W) -> (out_channels, H', W'), H' about H·stride."""

    type_name = "ConvTranspose2d"
    label = "Transposed convolution 2D"
    category = "Convolution"
    doc = ("Learned upsampling (decoders, U-Net, GAN generators): each input cell spreads a "
           "kernel-sized patch into an output `stride` times larger.")
    short_name = "convt"
    icon = Icon("conv")  # a kernel grid, as the convolution it transposes
    onnx_ops = ("ConvTranspose",)
    params = (
        Param("out_channels", INT, 8, "Number of output feature maps.", min=1, max=65536,
              label="filters"),
        Param("kernel_size", PAIR, [2, 2], "Height × width of each kernel.", min=1, max=64,
              label="kernel"),
        Param("stride", PAIR, [2, 2], "Upsampling factor: input cells land this many output "
              "cells apart.", min=1, max=64),
        Param("padding", PAIR, [0, 0], "Cells cropped from each side of the output (rows, "
              "columns), as PyTorch's padding: D·(K−1)/2 keeps O = I·S with odd kernels.",
              min=0, max=64),
        Param("output_padding", PAIR, [0, 0], "Extra rows / columns added at the end of the "
              "output to reach an exact size; smaller than stride or dilation.", min=0, max=63),
        Param("dilation", PAIR, [1, 1], "Spacing between kernel taps.", min=1, max=32),
        Param("groups", INT, 1, "Split channels into groups transposed separately; must divide "
              "the input channels and out_channels.", min=1, max=65536),
        Param("bias", BOOL, True, "Add a learned bias per output channel."),
        INIT,
    )

    def output_shape(self, in_shapes):
        c, h, w = self._single_image(in_shapes)
        check_groups(self, c)
        k, s, p, op, d = (self.kernel_size, self.stride, self.padding, self.output_padding,
                          self.dilation)
        for a, axis in ((0, "height"), (1, "width")):
            if op[a] >= s[a] and op[a] >= d[a]:
                fix = [min(op[0], max(s[0], d[0]) - 1), min(op[1], max(s[1], d[1]) - 1)]
                raise ShapeError(
                    f"{self.where}: output_padding {op[a]} along the {axis} must be smaller than "
                    f"stride {s[a]} or dilation {d[a]}", "output_padding",
                    Fix(f"output_padding {pair(fix)}", "set_params", {"output_padding": fix}))
        ho, wo = (transposed_out(n, k[a], s[a], p[a], op[a], d[a]) for a, n in ((0, h), (1, w)))
        if ho < 1 or wo < 1:
            # the largest padding that still leaves one cell per axis
            most = [max(0, min(p[a], (transposed_out(n, k[a], s[a], 0, op[a], d[a]) - 1) // 2))
                    for a, n in ((0, h), (1, w))]
            raise ShapeError(f"{self.where}: padding {pair(p)} crops the {h}×{w} input's "
                             f"{transposed_out(h, k[0], s[0], 0, op[0], d[0])}×"
                             f"{transposed_out(w, k[1], s[1], 0, op[1], d[1])} output to "
                             f"{ho}×{wo}", "padding",
                             Fix(f"padding {pair(most)}", "set_params", {"padding": most}))
        return self.out_channels, ho, wo

    def weight_shapes(self, in_shapes):
        c = in_shapes[0][0]
        kh, kw = self.kernel_size
        # (in, out/groups, kh, kw), as PyTorch and ONNX: export and import need no transpose
        out = {"weight": ((c, self.out_channels // self.groups, kh, kw), True)}
        if self.bias:
            out["bias"] = ((self.out_channels,), True)
        return out

    def macs(self, in_shapes, out_shape):
        c, h, w = in_shapes[0]
        kh, kw = self.kernel_size
        return c * h * w * (self.out_channels // self.groups) * kh * kw

    def rf_window(self, in_shapes):
        # an output cell is reached from ceil(K_eff / S) input cells per axis; the jump (the
        # output cell spacing in input cells) would be 1/S, which validation's integer
        # arithmetic cannot express, so it stays (a conservative receptive field)
        k, s, d = self.kernel_size, self.stride, self.dilation
        span = [-(-effective_kernel(k[a], d[a]) // s[a]) for a in (0, 1)]
        return (tuple(span), (1, 1), (0, 0))

    def describe(self, in_shapes=None):
        kh, kw = self.kernel_size
        parts = [f"{kh}×{kw}", f"{self.out_channels} filter{'s' * (self.out_channels != 1)}"]
        sh, sw = self.stride
        parts.append(f"s{sh}" if sh == sw else f"s{sh},{sw}")
        if self.padding != [0, 0]:
            parts.append(f"p{pair(self.padding)}")
        if self.output_padding != [0, 0]:
            parts.append(f"op{pair(self.output_padding)}")
        if self.dilation != [1, 1]:
            parts.append(f"d{pair(self.dilation)}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if not self.bias:
            parts.append("no bias")
        return ", ".join(parts)

    def formula(self, in_shapes):
        if not in_shapes or in_shapes[0] is None or len(in_shapes[0]) != 3:
            return super().formula(in_shapes) if in_shapes and in_shapes[0] else []
        _, h, w = in_shapes[0]
        k, s, p, op, d = (self.kernel_size, self.stride, self.padding, self.output_padding,
                          self.dilation)
        lines = []
        for a, axis, n in ((0, "H", h), (1, "W", w)):
            o = transposed_out(n, k[a], s[a], p[a], op[a], d[a])
            lines.append(f"{axis}: O = ({n} {MINUS} 1){DOT}{s[a]} {MINUS} 2{DOT}{p[a]} + "
                         f"{d[a]}{DOT}({k[a]} {MINUS} 1) + {op[a]} + 1 = {num(o)}")
        lines.append(f"C: {self.out_channels} (one map per filter)")
        return lines

    def param_formula(self, in_shapes):
        """Cin·(Cout/groups)·Kh·Kw weights + Cout biases."""
        c = in_shapes[0][0]
        kh, kw = self.kernel_size
        g, co = self.groups, self.out_channels
        cog = f"{co}/{g}" if g != 1 else str(co)
        n = c * (co // g) * kh * kw
        text = f"{c}{DOT}{cog}{DOT}{kh}{DOT}{kw}"
        if self.bias:
            text += f" + {co}"
            n += co
        notes = [(f"each of the {num(c)} input channels has a {kh}×{kw} kernel for each of "
                  f"the {num(co // g)} output channels of its group")]
        return Count(f"{text} = {num(n)}", n, 0, notes)

    def macs_formula(self, in_shapes, out_shape):
        """Every input value times every weight of its group."""
        c, h, w = in_shapes[0]
        kh, kw = self.kernel_size
        cog = self.out_channels // self.groups
        n = c * h * w * cog * kh * kw
        return Count(f"{c}{DOT}{h}{DOT}{w} inputs {DOT} {cog}{DOT}{kh}{DOT}{kw} each = "
                     f"{num(n)}", n)

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        ci, cog, kh, kw = self.weights["weight"].shape
        sh, sw = self.stride
        # an output cell sums about (Cin/groups)·Kh·Kw/(Sh·Sw) products (the kernel taps that
        # reach it): that is its fan-in for He / Glorot; the fan-out is a cell's kernel patch
        fan_in = max(1, (ci // self.groups) * kh * kw // (sh * sw))
        self.weights["weight"][...] = init_uniform(self.init, fan_in, cog * kh * kw,
                                                   self.weights["weight"].shape, rng)

    # ---- execution: the input gradient of a convolution whose weight is ours ---------------
    # A Conv2d with weight (Cin, Cout/g, kh, kw) maps Cout channels to Cin; its input gradient
    # col2im(Wᵀ @ dy) maps Cin back to Cout: with our input as its dy that is exactly this
    # layer's forward (ops.conv_input_grad, CHWN memory, blocked). The backward is then that
    # convolution's forward: im2col of dy and one matmul per group for dx, another for dW.

    def _geometry(self, h: int, w: int):
        k, s, p, op, d = (self.kernel_size, self.stride, self.padding, self.output_padding,
                          self.dilation)
        full = [(n - 1) * s[a] + d[a] * (k[a] - 1) + 1 + op[a] for a, n in ((0, h), (1, w))]
        return k, s, p, d, full

    def forward(self, xs, training=False):
        (x,) = xs
        n, c, h, w = x.shape
        k, s, p, d, (hf, wf) = self._geometry(h, w)
        g, co = self.groups, self.out_channels
        keep_freed_memory()
        xc = as_chwn(x)  # (Cin, H, W, N)
        wmat = self.weights["weight"].reshape(g, c // g, (co // g) * k[0] * k[1])
        if not training:
            self.__dict__.pop("_scratch", None)
        full = conv_input_grad(wmat, xc.reshape(g, c // g, h * w * n), k, s, d,
                               (co, hf, wf, n), w, owner=self if training else None)
        y = full[:, p[0]:hf - p[0], p[1]:wf - p[1]]
        if self.bias:
            y += self.weights["bias"].astype(y.dtype)[:, None, None, None]
        if training:
            self._cache = (xc, x.shape)
        return nchw(y)

    def backward(self, dy):
        xc, xshape = self._cache
        self._cache = None
        n, c, h, w = xshape
        k, s, p, d, _ = self._geometry(h, w)
        g, co = self.groups, self.out_channels
        kk = (co // g) * k[0] * k[1]
        dyp = pad_chwn(dy, (p[0], p[1], p[0], p[1]))  # (Cout, Hfull, Wfull, N)
        cols = scratch(self, "cols", (g, kk, h * w * n), dyp.dtype)
        np.copyto(cols.reshape(co, k[0], k[1], h, w, n),
                  taps_chwn(dyp, k[0], k[1], s[0], s[1], h, w, d[0], d[1]))
        wt = self.weights["weight"]
        if not self.frozen:
            dw = matmul_nt(xc.reshape(g, c // g, h * w * n), cols)  # (G, Cin/G, kk)
            self.grads["weight"] = np.ascontiguousarray(dw.reshape(wt.shape), dtype=wt.dtype)
            if self.bias:
                self.grads["bias"] = dy.sum(axis=(0, 2, 3)).astype(wt.dtype)
        if not self.need_dx:
            return [None]
        dx = np.matmul(wt.reshape(g, c // g, kk).astype(cols.dtype, copy=False), cols)
        return [nchw(dx.reshape(c, h, w, n))]

    # ---- PyTorch and ONNX ----------------------------------------------------------------------

    def to_pytorch(self, in_shapes, attr, names):
        kw: dict = {"kernel_size": pair(self.kernel_size)}
        defaults = {"stride": [1, 1], "padding": [0, 0], "output_padding": [0, 0],
                    "dilation": [1, 1]}
        for key, default in defaults.items():
            if self.values[key] != default:
                kw[key] = pair(self.values[key])
        if self.groups != 1:
            kw["groups"] = self.groups
        if not self.bias:
            kw["bias"] = False
        ctor = f"nn.ConvTranspose2d({call_args(in_shapes[0][0], self.out_channels, **kw)})"
        return TorchCode([TorchModule(attr, ctor)])

    def to_onnx(self, ctx, inputs, output):
        """One ConvTranspose node: weights (Cin, Cout/groups, kh, kw) as ONNX's, symmetric
        pads, output_padding at the end."""
        ins = [inputs[0], ctx.initializer(f"{self.name}.weight", ctx.weights["weight"])]
        if self.bias:
            ins.append(ctx.initializer(f"{self.name}.bias", ctx.weights["bias"]))
        ph, pw = self.padding
        ctx.node("ConvTranspose", ins, [output], self.name, kernel_shape=list(self.kernel_size),
                 strides=list(self.stride), dilations=list(self.dilation), group=self.groups,
                 pads=[ph, pw, ph, pw], output_padding=list(self.output_padding))

    @classmethod
    def from_onnx(cls, node, ctx):
        """ConvTranspose (2-D): strides, dilations, group, output_padding, pads (an end pad
        smaller than its begin pad becomes output_padding), auto_pad VALID / NOTSET; an
        `output_shape` attribute is refused (give pads instead)."""
        a = ctx.attrs(node)
        where = ctx.where(node)
        w = ctx.weight(node, 1, "weight")
        if w.ndim != 4:
            raise ValueError(f"{where}: weight of shape {list(w.shape)} is not a 2-D transposed "
                             f"convolution")
        b = ctx.weight(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
        ctx.image_shape(node.input[0], node)
        if "output_shape" in a:
            raise ValueError(f"{where}: the output_shape attribute is not supported; export "
                             f"with explicit pads")
        auto = a.get("auto_pad", "NOTSET") or "NOTSET"
        if auto not in ("NOTSET", "VALID"):
            raise ValueError(f"{where}: auto_pad {auto} is not supported (NOTSET or VALID)")
        k = onnx_pair(a, "kernel_shape", w.shape[2:], where)
        if k != list(w.shape[2:]):
            raise ValueError(f"{where}: kernel_shape {k} disagrees with the weight "
                             f"{list(w.shape)}")
        s = onnx_pair(a, "strides", [1, 1], where)
        d = onnx_pair(a, "dilations", [1, 1], where)
        op = onnx_pair(a, "output_padding", [0, 0], where)
        pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])] if auto == "NOTSET" else [0] * 4
        if len(pads) != 4 or min(pads) < 0:
            raise ValueError(f"{where}: pads {pads} must be 4 values, none negative")
        t, l, bt, r = pads
        if bt > t or r > l:
            raise ValueError(f"{where}: pads {pads} crop more at the end than at the start; "
                             f"only symmetric pads (or more at the start) are supported")
        # cropping t at both ends, then giving back (t − b) cells at the end: output_padding
        op = [op[0] + t - bt, op[1] + l - r]
        g = int(a.get("group", 1))
        params = {"out_channels": int(w.shape[1]) * g, "kernel_size": k, "stride": s,
                  "padding": [t, l], "output_padding": op, "dilation": d, "groups": g,
                  "bias": b is not None}
        weights = {"weight": w}
        if b is not None:
            weights["bias"] = b
        return ctx.imported(cls, params, weights, [node.input[0]])


# ---- Upsample --------------------------------------------------------------------------------

def _axis_matrix(n_in: int, n_out: int, mode: str, scale: float) -> np.ndarray:
    """(n_out, n_in) interpolation matrix of one axis; `scale` = in / out as PyTorch and ONNX
    Resize compute source coordinates (float32): nearest floor(o·scale) (Resize asymmetric +
    floor), bilinear half-pixel (o + ½)·scale − ½ clamped to the edges."""
    sc = np.float32(scale)
    o = np.arange(n_out, dtype=np.float32)
    a = np.zeros((n_out, n_in))
    if mode == "nearest":
        a[np.arange(n_out), np.minimum(np.floor(o * sc).astype(np.int64), n_in - 1)] = 1
        return a
    src = np.maximum((o + np.float32(0.5)) * sc - np.float32(0.5), 0).astype(np.float64)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    np.add.at(a, (np.arange(n_out), i0), 1 - lam)
    np.add.at(a, (np.arange(n_out), i1), lam)
    return a


def _nearest_sources(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """The input cell each output cell copies in nearest mode (`_axis_matrix`'s rule)."""
    o = np.arange(n_out, dtype=np.float32)
    return np.minimum(np.floor(o * np.float32(scale)).astype(np.int64), n_in - 1)


def _onnx_nearest_sources(n_in: int, n_out: int, scale: float, ctm: str,
                          nearest_mode: str) -> np.ndarray | None:
    """The input cell ONNX Resize (nearest) copies to each output cell along one axis: the
    coordinate transformation of `ctm` with `scale` = out / in, rounded by `nearest_mode`,
    clamped to the input; None for a transformation or mode the spec does not define."""
    o = np.arange(n_out, dtype=np.float64)
    if ctm == "asymmetric":
        x = o / scale
    elif ctm == "half_pixel" or (ctm == "pytorch_half_pixel" and n_out > 1):
        x = (o + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        x = np.zeros(n_out)
    elif ctm == "tf_half_pixel_for_nn":
        x = (o + 0.5) / scale
    elif ctm == "align_corners":
        x = o * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    else:
        return None
    rounding = {"floor": np.floor, "ceil": np.ceil,
                "round_prefer_floor": lambda v: np.ceil(v - 0.5),
                "round_prefer_ceil": lambda v: np.floor(v + 0.5)}.get(nearest_mode)
    if rounding is None:
        return None
    return np.clip(rounding(x), 0, n_in - 1).astype(np.int64)


def _phases(s: int) -> list[tuple[int, float, float]]:
    """Bilinear upsampling by an integer factor s along one axis, on the input padded by one
    edge cell each side: output s·i + r = w0·xp[i + j] + w1·xp[i + j + 1] for each phase r,
    as (j, w0, w1). The edge padding is exactly PyTorch's clamping of the source index."""
    out = []
    for r in range(s):
        f = float(np.float32((r + 0.5) / s - 0.5))  # source offset in (−½, ½)
        out.append((0, -f, 1 + f) if f < 0 else (1, 1 - f, f))
    return out


def _sl(axis: int, start: int, stop: int, ndim: int = 4):
    idx = [slice(None)] * ndim
    idx[axis] = slice(start, stop)
    return tuple(idx)


def _lerp_up(x: np.ndarray, s: int, axis: int) -> np.ndarray:
    """Bilinear ×s along `axis` (2 or 3) of an (N, C, H, W) array."""
    n = x.shape[axis]
    xp = np.concatenate([x[_sl(axis, 0, 1)], x, x[_sl(axis, n - 1, n)]], axis=axis)
    shape = list(x.shape)
    shape[axis:axis + 1] = [n, s]
    y = np.empty(shape, x.dtype)
    for r, (j, w0, w1) in enumerate(_phases(s)):
        out = y[(slice(None),) * (axis + 1) + (r,)]
        np.multiply(xp[_sl(axis, j, j + n)], x.dtype.type(w0), out=out)
        if w1:
            out += xp[_sl(axis, j + 1, j + 1 + n)] * x.dtype.type(w1)
    return y.reshape(x.shape[:axis] + (n * s,) + x.shape[axis + 1:])


def _nearest_up_adjoint(dy: np.ndarray, f: tuple[int, int]) -> np.ndarray:
    """Nearest upsampling's adjoint: each input cell's f0×f1 block of dy summed, as f0 + f1
    slice additions (rows of w·f1, then pairs along the last axis): ~9× `sum(axis=(3, 5))`,
    whose strided reduction NumPy runs element by element."""
    n, c, hf, wf = dy.shape
    h, w = hf // f[0], wf // f[1]
    v = dy.reshape(n, c, h, f[0], w * f[1])
    r = v[:, :, :, 0].copy()
    for i in range(1, f[0]):
        r += v[:, :, :, i]
    r = r.reshape(n, c, h, w, f[1])
    out = r[..., 0].copy()
    for j in range(1, f[1]):
        out += r[..., j]
    return out


def _lerp_up_adjoint(dy: np.ndarray, s: int, axis: int) -> np.ndarray:
    """The transpose of `_lerp_up`: (…, n·s, …) -> (…, n, …)."""
    n = dy.shape[axis] // s
    shape = list(dy.shape)
    shape[axis:axis + 1] = [n, s]
    d5 = dy.reshape(shape)
    pshape = list(dy.shape)
    pshape[axis] = n + 2
    dxp = np.zeros(pshape, dy.dtype)
    for r, (j, w0, w1) in enumerate(_phases(s)):
        part = d5[(slice(None),) * (axis + 1) + (r,)]
        dxp[_sl(axis, j, j + n)] += part * dy.dtype.type(w0)
        if w1:
            dxp[_sl(axis, j + 1, j + 1 + n)] += part * dy.dtype.type(w1)
    dx = dxp[_sl(axis, 1, n + 1)]
    dx[_sl(axis, 0, 1)] += dxp[_sl(axis, 0, 1)]
    dx[_sl(axis, n - 1, n)] += dxp[_sl(axis, n + 1, n + 2)]
    return dx


@register
class Upsample(Layer):
    """Resize the feature maps: nearest (copy each cell) or bilinear (half-pixel, PyTorch's
    align_corners=False, ONNX Resize's half_pixel), by an integer `scale_factor` or to an
    explicit `size`. (C, H, W) -> (C, H', W')."""

    type_name = "Upsample"
    label = "Upsample"
    category = "Pooling"  # the spatial resampling family (pooling's inverse)
    doc = ("Enlarges the feature maps without weights: nearest repeats each cell, bilinear "
           "interpolates between neighbours (decoders, FPN top-down paths).")
    short_name = "up"
    icon = Icon("upsample")  # a small grid growing into a large one
    onnx_ops = ("Resize", "Upsample")
    params = (
        Param("mode", CHOICE, "nearest", "'nearest' copies each cell; 'bilinear' interpolates "
              "(half-pixel centres, PyTorch's align_corners=False).",
              choices=("nearest", "bilinear")),
        Param("scale_factor", INT, 2, "Output = input × this factor (when no size is given).",
              min=1, max=64, label="scale"),
        Param("size", PAIR, None, "Output height × width; empty: input × scale_factor.", min=1,
              max=8192, optional=True),
    )

    def output_shape(self, in_shapes):
        c, h, w = self._single_image(in_shapes)
        if self.size is not None:
            return c, self.size[0], self.size[1]
        return c, h * self.scale_factor, w * self.scale_factor

    def _factors(self, h: int, w: int, ho: int, wo: int) -> tuple[int, int] | None:
        """Integer factors per axis when the output is a whole multiple of the input (the
        fast paths), else None."""
        if ho % h == 0 and wo % w == 0:
            return ho // h, wo // w
        return None

    def _scales(self, h, w, ho, wo) -> tuple[float, float]:
        """in / out per axis, as PyTorch computes source coordinates: 1 / scale_factor when a
        factor is given, else in / out."""
        if self.size is None:
            return 1 / self.scale_factor, 1 / self.scale_factor
        return h / ho, w / wo

    def describe(self, in_shapes=None):
        what = (f"×{self.scale_factor}" if self.size is None
                else f"to {self.size[0]}×{self.size[1]}")
        return f"{self.mode} {what}"

    def formula(self, in_shapes):
        if not in_shapes or in_shapes[0] is None or len(in_shapes[0]) != 3:
            return super().formula(in_shapes) if in_shapes and in_shapes[0] else []
        c, h, w = in_shapes[0]
        if self.size is not None:
            return [f"H: {self.size[0]} (set; {h} → {self.size[0]})",
                    f"W: {self.size[1]} (set; {w} → {self.size[1]})", f"C: {c} (unchanged)"]
        s = self.scale_factor
        return [f"H: {h} {DOT} {s} = {num(h * s)}", f"W: {w} {DOT} {s} = {num(w * s)}",
                f"C: {c} (unchanged)"]

    def macs(self, in_shapes, out_shape):
        # bilinear: 4 neighbours weighted per output value; nearest only copies
        return 4 * int(np.prod(out_shape)) if self.mode == "bilinear" else 0

    def macs_formula(self, in_shapes, out_shape):
        c, ho, wo = out_shape
        if self.mode != "bilinear":
            return Count("0 (nearest copies values)", 0)
        n = 4 * c * ho * wo
        return Count(f"{c}{DOT}{ho}{DOT}{wo} outputs {DOT} 4 neighbours = {num(n)}", n)

    def rf_window(self, in_shapes):
        # bilinear reads a 2×2 neighbourhood; nearest is a copy (pointwise)
        return ((2, 2), (1, 1), (0, 0)) if self.mode == "bilinear" else None

    def forward(self, xs, training=False):
        (x,) = xs
        n, c, h, w = x.shape
        _, ho, wo = self.output_shape([(c, h, w)])
        f = self._factors(h, w, ho, wo)
        if training:
            self._cache = x.shape
        if f is not None and self.mode == "nearest":
            sh, sw = f
            return np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)).reshape(
                n, c, ho, wo)
        if f is not None and (self.size is None or f[0] == f[1]):
            # PyTorch's source coordinates use 1 / scale_factor, which equals in / out here
            return _lerp_up(_lerp_up(x, f[1], 3), f[0], 2)
        ah, aw = self._matrices(h, w, ho, wo, x.dtype)
        return np.matmul(ah, np.matmul(x, aw.T))

    def _matrices(self, h, w, ho, wo, dtype):
        sh, sw = self._scales(h, w, ho, wo)
        return (_axis_matrix(h, ho, self.mode, sh).astype(dtype),
                _axis_matrix(w, wo, self.mode, sw).astype(dtype))

    def backward(self, dy):
        _, _, h, w = self._cache
        self._cache = None
        ho, wo = dy.shape[2:]
        f = self._factors(h, w, ho, wo)
        if f is not None and self.mode == "nearest":
            return [_nearest_up_adjoint(dy, f)]
        if f is not None and (self.size is None or f[0] == f[1]):
            return [_lerp_up_adjoint(_lerp_up_adjoint(dy, f[0], 2), f[1], 3)]
        ah, aw = self._matrices(h, w, ho, wo, dy.dtype)
        return [np.matmul(ah.T, np.matmul(dy, aw))]

    def to_pytorch(self, in_shapes, attr, names):
        kw = {"size": pair(self.size)} if self.size is not None else {
            "scale_factor": self.scale_factor}
        kw["mode"] = repr(self.mode)
        if self.mode == "bilinear":
            kw["align_corners"] = False
        return TorchCode([TorchModule(attr, f"nn.Upsample({call_args(**kw)})")])

    def to_onnx(self, ctx, inputs, output):
        """Resize (opset 13+): scales [1, 1, s, s] for a factor; for a size, `sizes` with axes
        [2, 3] from opset 18, before that N×C read by Shape and joined to the size."""
        nm = self.name
        attrs = ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                  "nearest_mode": "floor"} if self.mode == "nearest" else
                 {"mode": "linear", "coordinate_transformation_mode": "half_pixel"})
        if self.size is None:
            s = float(self.scale_factor)
            scales = ctx.initializer(f"{nm}.scales", [1.0, 1.0, s, s])
            ctx.node("Resize", [inputs[0], "", scales], [output], nm, **attrs)
            return
        if ctx.opset >= 18:
            sizes = ctx.initializer(f"{nm}.sizes", list(self.size), np.int64)
            ctx.node("Resize", [inputs[0], "", "", sizes], [output], nm, axes=[2, 3], **attrs)
            return
        hw = ctx.initializer(f"{nm}.sizes", list(self.size), np.int64)
        nc = f"{output}/batch_channels"
        if ctx.opset >= 15:
            ctx.node("Shape", [inputs[0]], [nc], f"{nm}/Shape", start=0, end=2)
        else:
            from onnx import numpy_helper

            ctx.node("Shape", [inputs[0]], [f"{output}/shape"], f"{nm}/Shape")
            for k, v in (("starts", 0), ("ends", 2)):
                ctx.node("Constant", [], [f"{output}/{k}"], f"{nm}/{k}",
                         value=numpy_helper.from_array(np.array([v], np.int64)))
            ctx.node("Slice", [f"{output}/shape", f"{output}/starts", f"{output}/ends"], [nc],
                     f"{nm}/Slice")
        ctx.node("Concat", [nc, hw], [f"{output}/sizes"], f"{nm}/Concat", axis=0)
        ctx.node("Resize", [inputs[0], "", "", f"{output}/sizes"], [output], nm, **attrs)

    @classmethod
    def from_onnx(cls, node, ctx):
        """Resize by constant scales or sizes: linear with half_pixel or pytorch_half_pixel
        coordinates; nearest wherever its coordinate transformation and nearest_mode pick the
        cells ours picks, floor(o·in/out) (asymmetric + floor, as PyTorch writes nearest, at any
        size; half-pixel coordinates with a round mode at whole-number factors). Resize-10 (X,
        scales; asymmetric coordinates, floor) and the old Upsample op (opset 7-9) in nearest
        mode."""
        where = ctx.where(node)
        c, h, w = ctx.image_shape(node.input[0], node)
        a = ctx.attrs(node)
        mode = a.get("mode", "nearest")
        old = node.op_type == "Upsample" or ctx.opset < 11  # Upsample, Resize-10: x_out / scale
        if old:
            if mode != "nearest":
                raise ValueError(f"{where}: {node.op_type} mode {mode!r} (opset {ctx.opset}) "
                                 f"maps coordinates asymmetrically; only 'nearest' is supported "
                                 f"(re-export with Resize, opset 11+)")
            scales = a.get("scales")
            if scales is None:
                scales = ctx.const(node.input[1]) if len(node.input) > 1 else None
            if scales is None:
                raise ValueError(f"{where}: scales computed at run time are not supported")
            return cls._from_scales(ctx, node, [float(v) for v in np.asarray(scales).ravel()],
                                    "nearest", (h, w))
        ctm = a.get("coordinate_transformation_mode", "half_pixel")
        if mode == "nearest":
            ours = "nearest"
        elif mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel"):
            ours = "bilinear"
        else:
            raise ValueError(f"{where}: Resize mode {mode!r} with coordinate_transformation_mode "
                             f"{ctm!r} is not supported (nearest, or linear with half_pixel)")
        if a.get("antialias", 0) or a.get("exclude_outside", 0):
            raise ValueError(f"{where}: antialias / exclude_outside are not supported")
        ins = list(node.input) + [""] * 4
        if ins[3]:
            sizes = ctx.const(ins[3])
            if sizes is None:
                raise ValueError(f"{where}: sizes computed at run time are not supported")
            sizes = [int(v) for v in np.asarray(sizes).ravel()]
            axes = a.get("axes")
            if axes is not None:
                full = [None, c, h, w]
                for ax, v in zip(axes, sizes):
                    full[int(ax) % 4] = v
                sizes = full
            if len(sizes) != 4 or (sizes[0] is not None and not ctx.is_batch(sizes[0])) \
                    or sizes[1] != c:
                raise ValueError(f"{where}: Resize to {sizes} changes the batch or channels; "
                                 f"only the height and width can change")
            # a size stays a size (a scale factor would follow the input's size instead)
            params = {"mode": ours, "size": [sizes[2], sizes[3]]}
            onnx_scales = (sizes[2] / h, sizes[3] / w)
        else:
            scales = ctx.const(ins[2]) if ins[2] else None
            if scales is None:
                raise ValueError(f"{where}: Resize needs constant scales or sizes")
            scales = [float(v) for v in np.asarray(scales).ravel()]
            params = cls._from_scales(ctx, node, scales, ours, (h, w)).params
            onnx_scales = (scales[2], scales[3])
        if ours == "nearest":
            nearest_mode = a.get("nearest_mode", "round_prefer_floor")
            layer = cls("resize", **params)
            _, ho, wo = layer.output_shape([(c, h, w)])
            for n_in, n_out, scale, sc in zip((h, w), (ho, wo), onnx_scales,
                                              layer._scales(h, w, ho, wo)):
                theirs = _onnx_nearest_sources(n_in, n_out, scale, ctm, nearest_mode)
                if theirs is None or not np.array_equal(theirs, _nearest_sources(n_in, n_out,
                                                                                 sc)):
                    raise ValueError(
                        f"{where}: nearest Resize with coordinate_transformation_mode {ctm!r} "
                        f"and nearest_mode {nearest_mode!r} picks other cells than nearest "
                        f"upsampling (floor(o·in/out)) for {n_in} -> {n_out} cells; supported: "
                        f"'asymmetric' with 'floor' (PyTorch's nearest), or half-pixel "
                        f"coordinates with a round mode at whole-number factors")
        return ctx.imported(cls, params, {}, [node.input[0]])

    @classmethod
    def _from_scales(cls, ctx, node, scales, mode, hw):
        where = ctx.where(node)
        if len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
            raise ValueError(f"{where}: scales {scales} resize the batch or channels; only the "
                             f"height and width can change")
        sh, sw = scales[2], scales[3]
        if sh != sw or not float(sh).is_integer() or sh < 1:
            raise ValueError(f"{where}: scales {sh:g}×{sw:g} are not one whole-number factor "
                             f"(supported: the same integer for height and width)")
        return ctx.imported(cls, {"mode": mode, "scale_factor": int(sh), "size": None}, {},
                            [node.input[0]])


__all__ = ["ConvTranspose2d", "Upsample", "transposed_out"]
