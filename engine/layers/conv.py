"""Convolution: Conv2d (stride, padding valid/same/explicit, dilation, groups, bias)."""

from __future__ import annotations

import copy

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from ..nn import kernels, ort_conv
from ..nn.ops import (
    BLOCK_BYTES,
    as_chwn,
    conv_input_grad,
    keep_freed_memory,
    matmul_nt,
    matmul_wide,
    nchw,
    pad_chwn,
    scratch,
    tap_slice,
    taps_chwn,
    work_buffer,
)
from ..shapes import conv_out, effective_kernel, padding_for_same_size, same_pads, unread_cells
from .base import (
    BOOL,
    CHOICE,
    INT,
    MAX_PAD,
    PADDING,
    PAIR,
    Icon,
    Layer,
    Param,
    Shape,
    fmt_shape,
    register,
)
from .formula_text import DOT, Count, num, window_lines
from .torch_code import TorchCode, TorchModule, call_args, pair

KERNEL = Param("kernel_size", PAIR, [3, 3], "Height × width of each filter.", min=1, max=64,
               label="kernel")
STRIDE = Param("stride", PAIR, [1, 1], "Step between neighbouring windows (rows, columns).",
               min=1, max=64)
PADDING_P = Param("padding", PADDING, "valid",
                  "'valid' (none), 'same' (output = ceil(input / stride), odd cell at the end) "
                  "or explicit zero padding per side (top, left, bottom, right).", min=0,
                  max=MAX_PAD)
DILATION = Param("dilation", PAIR, [1, 1], "Spacing between kernel taps; the kernel then spans "
                 "D·(K−1)+1 cells.", min=1, max=32)
INIT = Param("init", CHOICE, "he", "Weight initialisation: He (Kaiming) for ReLU nets, Glorot "
             "(Xavier) for tanh / sigmoid nets.", choices=("he", "glorot"),
             choice_labels={"he": "He (Kaiming)", "glorot": "Glorot (Xavier)"})


def resolve_pads(padding, h: int, w: int, k, s, d) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) zero padding for a 'valid' / 'same' / explicit setting."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        t, b = same_pads(h, k[0], s[0], d[0])
        l, r = same_pads(w, k[1], s[1], d[1])
        return t, l, b, r
    return tuple(padding)


def live_taps(h: int, w: int, k, s, d, pads, ho: int, wo: int):
    """((i0, i1, j0, j1), pads'): the kernel rows i0..i1-1 and columns j0..j1-1 that read the
    input at some output position, and the padding that gives the kernel cropped to them the
    same (Ho, Wo) output; None where every tap reads the input somewhere (or the cropped
    geometry would need a negative padding, as a dilated kernel may)."""
    spans, new = [], [0, 0, 0, 0]
    for ax, (size, out) in enumerate(((h, ho), (w, wo))):
        p = pads[ax]
        # tap i reads positions o·s − p + i·d, o = 0 .. out − 1: live iff one lies in the input
        live = [i for i in range(k[ax])
                if (out - 1) * s[ax] - p + i * d[ax] >= 0 and i * d[ax] - p <= size - 1]
        if not live:
            return None
        lo, hi = live[0], live[-1] + 1
        begin = p - lo * d[ax]
        end = max(0, (out - 1) * s[ax] - begin + (hi - lo - 1) * d[ax] - (size - 1))
        if begin < 0 or conv_out(size, hi - lo, s[ax], begin, end, d[ax]) != out:
            return None
        spans.append((lo, hi))
        new[ax], new[ax + 2] = begin, end
    if spans == [(0, k[0]), (0, k[1])]:
        return None
    return (*spans[0], *spans[1]), tuple(new)


def fmt_padding(padding) -> str:
    if isinstance(padding, str):
        return padding
    t, l, b, r = padding
    if t == l == b == r:
        return f"p{t}"
    if (t, l) == (b, r):
        return f"p{t},{l}"
    return "p" + ",".join(str(v) for v in padding)


def window_output(layer: Layer, h: int, w: int, k, s, d, ceil_mode=False):
    """Shared by conv and pooling: resolved pads and (Ho, Wo), or ShapeError with a fix."""
    pads = resolve_pads(layer.padding, h, w, k, s, d)
    ho = conv_out(h, k[0], s[0], pads[0], pads[2], d[0], ceil_mode)
    wo = conv_out(w, k[1], s[1], pads[1], pads[3], d[1], ceil_mode)
    if ho < 1 or wo < 1:
        keh, kew = effective_kernel(k[0], d[0]), effective_kernel(k[1], d[1])
        raise ShapeError(
            f"{layer.where}: the {keh}×{kew} kernel does not fit the {h}×{w} input with padding "
            f"{fmt_padding(list(pads))}; the output would be {ho}×{wo}",
            param="kernel_size", fixes=_misfit_fixes(layer, h, w, k, s, d, pads, ceil_mode))
    return pads, ho, wo


def _misfit_fixes(layer: Layer, h: int, w: int, k, s, d, pads, ceil_mode) -> list[Fix]:
    """The repairs a user would pick for a window larger than the (padded) input: shrink the
    kernel to fit, the smallest symmetric padding that fits, and at stride 1 the padding that
    keeps the size. Axes that already fit keep their kernel and padding."""
    sizes, fits = (h, w), []
    for i in (0, 1):
        fits.append(sizes[i] + pads[i] + pads[i + 2] >= effective_kernel(k[i], d[i]))
    fixes = []
    # the largest kernel whose extent D·(K−1)+1 fits the padded axis
    k2 = [k[i] if fits[i] else (sizes[i] + pads[i] + pads[i + 2] - 1) // d[i] + 1
          for i in (0, 1)]
    with_pad = f" with padding {fmt_padding(list(pads))}" if any(pads) else ""
    fixes.append(Fix(f"kernel {k[0]}×{k[1]}→{k2[0]}×{k2[1]} (fits the {h}×{w} input{with_pad})",
                     "set_params", {"kernel_size": k2}))
    p = list(pads)
    for i in (0, 1):
        if not fits[i]:  # smallest P with size + 2P ≥ the kernel's extent
            p[i] = p[i + 2] = -(-(effective_kernel(k[i], d[i]) - sizes[i]) // 2)
    if max(p) <= MAX_PAD:
        oh = conv_out(h, k[0], s[0], p[0], p[2], d[0], ceil_mode)
        ow = conv_out(w, k[1], s[1], p[1], p[3], d[1], ceil_mode)
        fixes.append(Fix(f"padding {fmt_pads_value(p)} (output {oh}×{ow})", "set_params",
                         {"padding": p}))
    if s == [1, 1] and layer.padding != "same":
        ph, pw = padding_for_same_size(k[0], d[0]), padding_for_same_size(k[1], d[1])
        if ph[0] == ph[1] and pw[0] == pw[1]:
            same = [ph[0], pw[0], ph[1], pw[1]]
            if same != p:
                fixes.append(Fix(f"padding {fmt_pads_label(ph, pw)} keeps {h}×{w}", "set_params",
                                 {"padding": same}))
        else:  # an even kernel pads one more cell at the end: exactly 'same' at stride 1
            fixes.append(Fix(f"padding 'same' keeps {h}×{w}", "set_params", {"padding": "same"}))
    return fixes


def fmt_pads_value(p) -> str:
    """'1' for equal padding on every side, '1, 2' for (rows, columns), else all four."""
    t, l, b, r = p
    if t == l == b == r:
        return str(t)
    return f"{t}, {l}" if (t, l) == (b, r) else f"{t}, {l}, {b}, {r}"


def fmt_pads_label(ph, pw) -> str:
    """'2' for equal padding on every side, '1, 2' for (rows, columns)."""
    return str(ph[0]) if ph[0] == pw[0] else f"{ph[0]}, {pw[0]}"


def unread_warnings(layer: Layer, h: int, w: int, k, s, d, pads):
    """Warn when (W − K + P) is not divisible by S: the last input rows / columns are never read."""
    out = []
    for axis, size, i, what in (("height", h, 0, "rows"), ("width", w, 1, "columns")):
        pb, pe = (pads[0], pads[2]) if i == 0 else (pads[1], pads[3])
        # unread cells of the padded input, less the end padding: rows of the real input
        r = unread_cells(size, k[i], s[i], pb, pe, d[i]) - pe
        keff = effective_kernel(k[i], d[i])
        if r > 0 and keff >= s[i]:  # with K < S rows are skipped everywhere, by design
            text = (f"{layer.where}: ({size} − {keff} + {pb + pe}) is not divisible by stride "
                    f"{s[i]} along the {axis}: " + (f"the last {what[:-1]} is never read" if r == 1
                                             else f"the last {r} {what} are never read"))
            out.append((text, "stride", None))
    return out


def check_groups(layer: Layer, c: int) -> None:
    """Raise ShapeError unless `layer.groups` divides both the c input channels and its
    out_channels (Conv2d, ConvTranspose2d)."""
    g = layer.groups
    for what, n in (("input channels", c), ("out_channels", layer.out_channels)):
        if n % g:
            raise ShapeError(f"{layer.where}: groups {g} does not divide the {n} {what}",
                             "groups", Fix("groups 1", "set_params", {"groups": 1}))


# A training step keeps a conv's im2col matrix for its weight gradient only while it is at most
# this big; a bigger one is built in cache-sized row blocks in the forward and again in the
# backward, and only the input is kept (what PyTorch keeps). Measured at batch 64, 1 thread
# (forward + weight gradient, kept -> blocks): 16->16 ch 32x32 (38 MB) 15.8 -> 14.4 ms, 32->32
# 32x32 (76 MB) 46.3 -> 46.3 ms, 64->64 16x16 (38 MB) 27.9 -> 31.0 ms, 256->256 4x4 19.6 -> 20.1
# ms; kept, the matrices took small_vgg's step to 1.8x PyTorch's peak memory (now 0.6x,
# bench/bench_nets.py --memory-only).
KEEP_COLS_BYTES = 8 << 20
# The weight gradient's row blocks are bigger than the forward's: each block is one matmul
# call (an ONNX Runtime session run, ~25 µs) and one strided copy, and in a sharded step each
# call hands the GIL to the other shard and takes it back. 2 -> 8 MB, batch 64, one thread:
# 16->16 ch 32x32 6.1 -> 5.4 ms, 32->32 16x16 3.9 -> 3.4 ms, 64->64 8x8 4.1 -> 3.5 ms, no change
# from 64 ch 32x32 up; two shards of 32 at once (16 ch 32x32): 4.8 -> 3.1 ms each against 2.9
# alone.
WEIGHT_GRAD_BLOCK_BYTES = 8 << 20
# A conv with at most this many input channels (an RGB stem, LeNet-5's) whose columns step by 1
# runs as the compiled direct convolution where the kernels are on: im2col + a matmul with an
# inner dimension of C·kh·kw = 9-150 is bound by copying the im2col matrix.
DIRECT_MAX_CHANNELS = 8
DIRECT_MAX_FILTERS = 16  # and this many filters (each re-reads the input: 3->64 is slower)


@register
class Conv2d(Layer):
    """2-D convolution: each of out_channels filters spans all input channels (of its group)
    and yields one feature map. (C, H, W) -> (out_channels, H', W')."""

    type_name = "Conv2d"
    label = "Convolution 2D"
    category = "Convolution"
    doc = "Slides out_channels learned filters over the input; each filter makes one feature map."
    short_name = "conv"
    icon = Icon("conv")  # a 3×3 kernel grid
    onnx_ops = ("Conv",)
    # In a shard of a data-parallel step (nn/parallel.py) a ShardSync: the weight gradient is
    # handed to it for later, so the shard computes it while it would wait for the other
    # shards at the next BatchNorm (the input gradient, which the layers below need, first)
    defer = None
    params = (
        Param("out_channels", INT, 8, "Number of filters = feature maps produced.", min=1,
              max=65536, label="filters"),
        KERNEL, STRIDE, PADDING_P, DILATION,
        Param("groups", INT, 1, "Split channels into groups convolved separately (groups = "
              "channels is depthwise).", min=1, max=65536),
        Param("bias", BOOL, True, "Add a learned bias per filter."),
        INIT,
    )

    def output_shape(self, in_shapes):
        c, h, w = self._single_image(in_shapes)
        check_groups(self, c)
        _, ho, wo = window_output(self, h, w, self.kernel_size, self.stride, self.dilation)
        return self.out_channels, ho, wo

    def warnings(self, in_shapes, out_shape):
        _, h, w = in_shapes[0]
        pads = resolve_pads(self.padding, h, w, self.kernel_size, self.stride, self.dilation)
        return unread_warnings(self, h, w, self.kernel_size, self.stride, self.dilation, pads)

    def weight_shapes(self, in_shapes):
        c = in_shapes[0][0]
        kh, kw = self.kernel_size
        out = {"weight": ((self.out_channels, c // self.groups, kh, kw), True)}
        if self.bias:
            out["bias"] = ((self.out_channels,), True)
        return out

    def macs(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        kh, kw = self.kernel_size
        return out_shape[0] * out_shape[1] * out_shape[2] * kh * kw * (c // self.groups)

    def rf_window(self, in_shapes):
        _, h, w = in_shapes[0]
        k, s, d = self.kernel_size, self.stride, self.dilation
        t, l, _, _ = resolve_pads(self.padding, h, w, k, s, d)
        return ((effective_kernel(k[0], d[0]), effective_kernel(k[1], d[1])), tuple(s), (t, l))

    def formula(self, in_shapes):
        if len(in_shapes[0]) != 3:
            return super().formula(in_shapes)
        _, h, w = in_shapes[0]
        k, s, d = self.kernel_size, self.stride, self.dilation
        pads = resolve_pads(self.padding, h, w, k, s, d)
        return [*window_lines(h, w, k, s, d, pads),
                f"C: {self.out_channels} (one map per filter)"]

    def param_formula(self, in_shapes):
        """((Kh·Kw·Cin/groups) + 1)·Cout, without the '+ 1' when there is no bias."""
        c = in_shapes[0][0]
        kh, kw = self.kernel_size
        g, co = self.groups, self.out_channels
        cin = f"{c}/{g}" if g != 1 else str(c)
        per_filter = kh * kw * (c // g)
        inner = f"{kh}{DOT}{kw}{DOT}{cin}"
        if self.bias:
            n = (per_filter + 1) * co
            text = f"(({inner}) + 1) {DOT} {co} = {num(n)}"
        else:
            n = per_filter * co
            text = f"({inner}) {DOT} {co} = {num(n)}"
        notes = [f"each of the {num(co)} filters has {kh}×{kw}×{num(c // g)} weights"
                 + (" + 1 bias" if self.bias else "")]
        if g != 1:
            notes.append(f"{g} groups: each filter sees {c}/{g} = {c // g} input channels")
        return Count(text, n, 0, notes)

    def macs_formula(self, in_shapes, out_shape):
        """Cout·Ho·Wo outputs × Kh·Kw·Cin/groups each."""
        c = in_shapes[0][0]
        kh, kw = self.kernel_size
        co, ho, wo = out_shape
        cg = c // self.groups
        n = co * ho * wo * kh * kw * cg
        return Count(f"{co}{DOT}{ho}{DOT}{wo} outputs {DOT} {kh}{DOT}{kw}{DOT}{cg} each = "
                     f"{num(n)}", n)

    def describe(self, in_shapes=None):
        kh, kw = self.kernel_size
        parts = [f"{kh}×{kw}", f"{self.out_channels} filter{'s' * (self.out_channels != 1)}"]
        sh, sw = self.stride
        parts.append(f"s{sh}" if sh == sw else f"s{sh},{sw}")
        parts.append(fmt_padding(self.padding))
        if self.dilation != [1, 1]:
            dh, dw = self.dilation
            parts.append(f"d{dh}" if dh == dw else f"d{dh},{dw}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if not self.bias:
            parts.append("no bias")
        return ", ".join(parts)

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        co, cg, kh, kw = self.weights["weight"].shape
        fan_in, fan_out = cg * kh * kw, co // self.groups * kh * kw
        self.weights["weight"][...] = init_uniform(self.init, fan_in, fan_out,
                                                   self.weights["weight"].shape, rng)

    # ---- execution: im2col in CHWN memory (batch innermost), one matmul per group ---------
    # cols (G, Cg·kh·kw [+ a row of ones: the bias rides in the matmul], Ho·Wo·N) is built by
    # one strided copy whose rows are Wo·N contiguous values; y = W @ cols is (Cout, Ho, Wo, N)
    # memory, returned as its logical (N, Cout, Ho, Wo) view. See engine/ops.py.

    def to_pytorch(self, in_shapes, attr, names):
        c, h, w = in_shapes[0]
        k, s, d = self.kernel_size, self.stride, self.dilation
        t, l, b, r = resolve_pads(self.padding, h, w, k, s, d)
        kw: dict = {"kernel_size": pair(k)}
        if s != [1, 1]:
            kw["stride"] = pair(s)
        code = TorchCode()
        if (t, l) == (b, r):
            if t or l:
                kw["padding"] = pair([t, l])
        else:  # asymmetric (e.g. SAME_UPPER with an even total): pad explicitly first
            code.modules.append(TorchModule(names.claim(attr + "_pad"),
                                            f"nn.ZeroPad2d(({l}, {r}, {t}, {b}))"))
        if d != [1, 1]:
            kw["dilation"] = pair(d)
        if self.groups != 1:
            kw["groups"] = self.groups
        if not self.bias:
            kw["bias"] = False
        code.modules.append(TorchModule(attr, f"nn.Conv2d({call_args(c, self.out_channels, **kw)})"))
        return code

    def forward(self, xs, training=False):
        (x,) = xs
        n, c, h, w = x.shape
        k, s, d, g = self.kernel_size, self.stride, self.dilation, self.groups
        pads = resolve_pads(self.padding, h, w, k, s, d)
        ho = conv_out(h, k[0], s[0], pads[0], pads[2], d[0])
        wo = conv_out(w, k[1], s[1], pads[1], pads[3], d[1])
        co, cg = self.out_channels, c // g
        kk = cg * k[0] * k[1]
        keep_freed_memory()  # once per process (engine/ops.py): saves thousands of page faults
        live = live_taps(h, w, k, s, d, pads, ho, wo)
        if live is not None:
            return self._forward_cropped(x, live, training)
        if cg == 1 and co == g:  # depthwise (MobileNet, EfficientNet): no im2col, see below
            y = self._depthwise_compiled(x, pads, ho, wo, training)
            if y is not None:
                return y
            return self._depthwise_forward(pad_chwn(x, pads), x.shape, pads, ho, wo, training)
        if training and g == 1 and k[0] * k[1] > 1 and ort_conv.usable(c, co, ho * wo,
                                                                         x.dtype):
            y = self._forward_blocked(x, pads, ho, wo)
            if y is not None:
                return y
        xp = pad_chwn(x, pads)  # (C, Hp, Wp, N)
        if g == 1 and c <= DIRECT_MAX_CHANNELS and co <= DIRECT_MAX_FILTERS and s[1] == 1 \
                and x.dtype == np.float32 \
                and self.weights["weight"].dtype == np.float32 \
                and (kernels.enabled() if training else kernels.for_inference()):
            y = self._forward_direct(xp, x, pads, ho, wo, training)
            if y is not None:
                return y
        wmat = self.weights["weight"].reshape(g, co // g, kk)
        if self.bias:
            wmat = np.concatenate([wmat, self.weights["bias"].reshape(g, co // g, 1)], axis=2)
        if not training:  # training's work arrays are let go; cols in cache-sized row blocks
            self.__dict__.pop("_scratch", None)
            y = self._forward_rows(xp, wmat.astype(x.dtype, copy=False), kk, ho, wo)
            return nchw(y.reshape(co, ho, wo, n))
        shape = (g, kk + self.bias, ho * wo * n)
        if np.prod(shape) * x.dtype.itemsize > KEEP_COLS_BYTES:
            # a big cols matrix is not kept: built in cache-sized row blocks here and again for
            # the weight gradient (same time, see KEEP_COLS_BYTES), only the input is kept
            y = self._forward_rows(xp, wmat.astype(x.dtype, copy=False), kk, ho, wo,
                                   owner=self)
            self._cache = ("rows", x, xp.shape, pads, ho, wo)
            return nchw(y.reshape(co, ho, wo, n))
        cols = scratch(self, "cols", shape, x.dtype)
        np.copyto(cols[:, :kk].reshape(g, cg, k[0], k[1], ho, wo, n),
                  taps_chwn(xp, k[0], k[1], s[0], s[1], ho, wo, d[0], d[1])
                  .reshape(g, cg, k[0], k[1], ho, wo, n))
        if self.bias:
            cols[:, kk] = 1
        y = matmul_wide(wmat, cols)  # (G, Cout/G, Ho·Wo·N)
        self._cache = (cols, x.shape, xp.shape, pads, ho, wo)
        return nchw(y.reshape(co, ho, wo, n))

    # ---- taps that only ever read padding -------------------------------------------------
    # A 3×3 conv with padding 1 on a 1×1 map (CIFAR-size ResNet-18's layer4) reads padding
    # zeros with 8 of its 9 taps at every output: the same layer with the kernel cropped to
    # the taps that reach the input (and its padding less what was cropped) gives the same
    # output with a ninth of the work, and the cropped taps' weight gradient is exactly zero.

    def _forward_cropped(self, x, live, training):
        (i0, i1, j0, j1), pads = live
        twin = copy.copy(self)  # the same layer on the live taps; its own cache and grads
        twin.values = dict(self.values, kernel_size=[i1 - i0, j1 - j0], padding=list(pads))
        twin.weights = {"weight": np.ascontiguousarray(self.weights["weight"][:, :, i0:i1,
                                                                              j0:j1])}
        if self.bias:
            twin.weights["bias"] = self.weights["bias"]
        twin.grads = {}
        twin.__dict__.pop("_cache", None)
        y = twin.forward([x], training)
        if training:
            self._cache = ("cropped", twin, live[0])
        return y

    def _backward_cropped(self, dy):
        _, twin, (i0, i1, j0, j1) = self._cache
        self._cache = None
        twin.need_dx, twin.frozen, twin.defer = self.need_dx, self.frozen, None
        dx = twin.backward(dy)
        if not self.frozen:
            wt = self.weights["weight"]
            gw = np.zeros(wt.shape, wt.dtype)
            gw[:, :, i0:i1, j0:j1] = twin.grads["weight"]
            self.grads["weight"] = gw
            if self.bias:
                self.grads["bias"] = twin.grads["bias"]
        return dx

    def _forward_blocked(self, x, pads, ho, wo):
        """Training forward by ONNX Runtime's blocked convolution (engine/nn/ort_conv.py):
        2-3× the matmul's speed on 16-128 channel 3×3 convs; only the input is kept (as on
        the "rows" path: the weight gradient builds its im2col blocks). None: NumPy's turn."""
        wt = self.weights["weight"].astype(x.dtype, copy=False)
        bias = self.weights["bias"] if self.bias else None
        y = ort_conv.forward(as_chwn(x), wt, bias, self.stride, self.dilation, pads)
        if y is None:
            return None
        n, c, h, w = x.shape
        xpshape = (c, h + pads[0] + pads[2], w + pads[1] + pads[3], n)
        self._cache = ("rows", x, xpshape, pads, ho, wo)
        return nchw(y)

    def _forward_direct(self, xp, x, pads, ho, wo, training):
        """The compiled direct convolution (kernels.conv_forward) of a conv with few input
        channels; in training only the input is kept (the "rows" path: the weight gradient's
        kernel reads the taps in place). None: the kernel cannot run."""
        wt = np.ascontiguousarray(self.weights["weight"])
        y = np.empty((self.out_channels, ho, wo, x.shape[0]), x.dtype)
        if not kernels.conv_forward(xp, wt, self.weights["bias"] if self.bias else None, y,
                                    self.stride, self.dilation):
            return None
        if training:
            self._cache = ("rows", x, xp.shape, pads, ho, wo)
        return nchw(y)

    def _row_blocks(self, xp, kb, ho, wo, owner=None, stride=None, block_bytes=BLOCK_BYTES):
        """(im2col of a few output rows at a time, in one cache-sized buffer): yields
        (first row, rows, cols block (G, kb, rows·Wo·N)) with the block's kk taps filled (a
        bias row, kb = kk + 1, is left to the caller). `owner`: the buffer is the thread's
        shared work buffer. `stride`: instead of the layer's (the input gradient's conv).
        `block_bytes`: the block's size (the weight gradient's are bigger)."""
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        sh, sw = stride or self.stride
        g, n = self.groups, xp.shape[3]
        cg = xp.shape[0] // g
        wn = wo * n
        rows = max(1, min(ho, block_bytes // (kb * g * wn * xp.dtype.itemsize)))
        size = g * kb * rows * wn
        work = (np.empty(size, xp.dtype) if owner is None
                else work_buffer("rows", size, xp.dtype))
        for r0 in range(0, ho, rows):
            nr = min(rows, ho - r0)
            blk = work[:g * kb * nr * wn].reshape(g, kb, nr * wn)
            np.copyto(blk[:, :cg * kh * kw].reshape(g, cg, kh, kw, nr, wo, n),
                      taps_chwn(xp[:, r0 * sh:], kh, kw, sh, sw, nr, wo, dh, dw)
                      .reshape(g, cg, kh, kw, nr, wo, n))
            yield r0, nr, blk

    def _forward_rows(self, xp, wmat, kk, ho, wo, owner=None):
        """y = W @ cols built a few output rows at a time into one cache-sized buffer (at
        batch 256 the whole cols matrix is hundreds of MB: fresh pages and a round trip through
        main memory). (C, Hp, Wp, N) -> (G, Cout/G, Ho·Wo·N)."""
        g, og, kb = wmat.shape
        wn = wo * xp.shape[3]
        y = np.empty((g, og, ho * wn), xp.dtype)
        for r0, nr, blk in self._row_blocks(xp, kb, ho, wo, owner):
            if self.bias:
                blk[:, kk] = 1
            np.matmul(wmat, blk, out=y[:, :, r0 * wn:(r0 + nr) * wn])
        return y

    def _weight_grad_rows(self, xp, dyc, kk, ho, wo):
        """dW = dy @ colsᵀ with cols rebuilt in row blocks (the "rows" forward kept none):
        (G, Cout/G, kk)."""
        g, og = dyc.shape[:2]
        wn = wo * xp.shape[3]
        # MLAS (g = 1) computes the transposed product (cols @ dyᵀ), summed over the blocks:
        # worth it while the result is small next to the contraction (as in matmul_nt)
        if not (g == 1 and kk >= ort_conv.MIN_ROWS and og * kk <= 64 * wn):
            dw = np.zeros((g, og, kk), dyc.dtype)
            for r0, nr, blk in self._row_blocks(xp, kk, ho, wo, owner=self,
                                                block_bytes=WEIGHT_GRAD_BLOCK_BYTES):
                dw += matmul_nt(dyc[:, :, r0 * wn:(r0 + nr) * wn], blk)
            return dw
        # With several threads the output rows are shared out: each thread builds its own
        # blocks and runs a one-thread SGEMM on them, and the threads' sums are added at the
        # end. (One multi-thread SGEMM per block left each NumPy copy fighting the SGEMM's
        # waking worker for the cores: 2 threads took 1.7× the time of 1, 16 channels 32×32.)
        sh = self.stride[0]
        n = min(kernels.threads(), ho, max(1, kk * ho * wn // kernels.MIN_SPLIT))
        bounds = [ho * k // n for k in range(n + 1)]

        def part(k):
            lo, hi = bounds[k], bounds[k + 1]
            dwt = np.zeros((kk, og), dyc.dtype)
            for r0, nr, blk in self._row_blocks(xp[:, lo * sh:], kk, hi - lo, wo, owner=self,
                                                block_bytes=WEIGHT_GRAD_BLOCK_BYTES):
                piece = dyc[0, :, (lo + r0) * wn:(lo + r0 + nr) * wn]
                r = ort_conv.matmul(blk[0], piece, trans_b=True, threads=1 if n > 1 else None)
                dwt += matmul_nt(piece[None], blk)[0].T if r is None else r
            return dwt

        return sum(kernels.in_parallel(part, n)).T[None]

    def _weight_grad(self, rows: bool, src, dyc, pads, kk, ho, wo) -> None:
        """Sets grads (weight, bias) from dyc (G, Cout/G, Ho·Wo·N) and either (`rows`) the
        input x, its im2col rebuilt in row blocks, or the kept cols (G, kk [+ 1], ...)."""
        wt = self.weights["weight"]
        g, og = dyc.shape[:2]
        co = g * og
        if rows:
            xp = pad_chwn(src, pads)
            # a compiled kernel reads the taps where they are (no im2col: 16 ch 32×32, batch
            # 64, 1 thread, 6.1 -> 3.9 ms); NumPy's row blocks where it cannot run
            dw = np.empty((co, xp.shape[0], *self.kernel_size), dyc.dtype)
            if g == 1 and kernels.conv_weight_grad(xp, dyc.reshape(co, ho, wo, -1), dw,
                                                   self.stride, self.dilation):
                dw = dw.reshape(1, co, kk)
            else:
                dw = self._weight_grad_rows(xp, dyc, kk, ho, wo)
            if self.bias:
                self.grads["bias"] = dyc.sum(axis=2, dtype=wt.dtype).reshape(co)
        else:
            cols = src  # (G, Cout/G, kk [+ 1: the bias gradient])
            dwt = (ort_conv.matmul(cols[0], dyc[0], trans_b=True)
                   if g == 1 and kk >= ort_conv.MIN_ROWS and og * kk <= 64 * cols.shape[2]
                   else None)
            dw = matmul_nt(dyc, cols) if dwt is None else dwt.T[None]
            if self.bias:
                self.grads["bias"] = dw[:, :, kk].reshape(co).astype(wt.dtype)
        self.grads["weight"] = np.ascontiguousarray(dw[:, :, :kk].reshape(wt.shape),
                                                    dtype=wt.dtype)

    def backward(self, dy):
        tag = self._cache[0] if isinstance(self._cache[0], str) else "cols"
        if tag == "cropped":
            return self._backward_cropped(dy)
        if tag == "depthwise":
            return self._depthwise_backward(dy)
        if tag == "depthwise_compiled":
            return self._depthwise_compiled_backward(dy)
        if tag == "rows":  # cols not kept: the input is
            _, x, xpshape, pads, ho, wo = self._cache
            cols, xshape = None, x.shape
        else:
            cols, xshape, xpshape, pads, ho, wo = self._cache
        self._cache = None
        rows = cols is None
        n, c, h, w = xshape
        k, s, d, g = self.kernel_size, self.stride, self.dilation, self.groups
        co, cg = self.out_channels, c // g
        og, kk = co // g, cg * k[0] * k[1]
        dyc = as_chwn(dy).reshape(g, og, ho * wo * n)
        if not self.frozen:
            args = (rows, x if rows else cols, dyc, pads, kk, ho, wo)
            if self.defer is not None:  # a shard's step: later (see `defer`)
                self.defer.later(self, lambda: self._weight_grad(*args))
            else:
                self._weight_grad(*args)
        if not self.need_dx:  # set by Network.backward(input_grad=False)
            return [None]
        if tuple(s) == (1, 1) and g == 1 and k[0] * k[1] > 1 \
                and ort_conv.usable(co, c, h * w, dy.dtype):
            dx = ort_conv.input_grad(dyc.reshape(co, ho, wo, n),
                                     self.weights["weight"].astype(dy.dtype, copy=False),
                                     d, pads, h, w)
            if dx is not None:
                return [nchw(dx)]
        if tuple(s) == (1, 1) and k[0] * k[1] > 1 and og * h * w <= cg * ho * wo:
            # as a convolution where its im2col is no bigger than col2im's dcols (not for a
            # widening conv on a shrinking map: LeNet-5's conv2 6->16, 12x12 -> 8x8)
            return [nchw(self._input_grad_as_conv(dyc, pads, h, w, ho, wo))]
        wmat = self.weights["weight"].reshape(g, og, kk)
        dxp = conv_input_grad(wmat, dyc, k, s, d, xpshape, wo, owner=self,  # col2im(Wᵀ @ dy)
                              compiled=kernels.enabled())
        t, l = pads[0], pads[1]
        return [nchw(dxp[:, t:t + h, l:l + w])]

    def _input_grad_as_conv(self, dyc, pads, h, w, ho, wo):
        """Input gradient of a stride-1 convolution as a convolution -> (C, H, W, N): dy padded
        by the (dilated) kernel's reach on every side, correlated with the flipped filters,
        channels in and out swapped per group, over the input's own rows and columns only (not
        its padding). The matmul then has Cout·kh·kw in its inner dimension instead of Cout,
        and no kh·kw-times bigger dcols is written and added back tap by tap (col2im):
        16->16 ch 3x3 at 32x32, batch 64: 11.2 -> 5.8 ms."""
        (kh, kw), (dh, dw), g = self.kernel_size, self.dilation, self.groups
        n = dyc.shape[-1] // (ho * wo)
        co = self.out_channels
        cg, og = self.weights["weight"].shape[1], co // g
        ph, pw = dh * (kh - 1), dw * (kw - 1)
        dyp = pad_chwn(nchw(dyc.reshape(co, ho, wo, n)), (ph, pw, ph, pw))
        # padded-input row r needs dyp rows r .. r + ph: the input's rows are t .. t + h - 1
        t, l = pads[0], pads[1]
        dyp = dyp[:, t:t + h + ph, l:l + w + pw]
        wt = self.weights["weight"].astype(dyc.dtype, copy=False)
        wflip = np.ascontiguousarray(
            wt.reshape(g, og, cg, kh, kw)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
        ).reshape(g, cg, og * kh * kw)
        wn = w * n
        dx = np.empty((g, cg, h * wn), dyc.dtype)
        for r0, nr, blk in self._row_blocks(dyp, og * kh * kw, h, w, owner=self,
                                            stride=(1, 1)):
            np.matmul(wflip, blk, out=dx[:, :, r0 * wn:(r0 + nr) * wn])
        return dx.reshape(g * cg, h, w, n)

    # ---- depthwise: one filter per channel -------------------------------------------------
    # im2col would copy kh·kw taps of every channel and then run C tiny (1 × kh·kw) products;
    # summing the kh·kw shifted, weighted windows directly does the same arithmetic in kh·kw
    # passes over the output and copies nothing (CHWN memory: each window is a strided view).

    def _depthwise_taps(self, ho, wo):
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return [(i * kw + j, tap_slice(i, j, sh, sw, ho, wo, dh, dw))
                for i in range(kh) for j in range(kw)]

    # With numba (engine/nn/kernels.py) a compiled loop does it without a padded copy:
    # 3-4x faster forward + backward at mobile_se's and MobileNetV2's sizes.

    def _depthwise_compiled(self, x, pads, ho, wo, training):
        """The compiled depthwise forward -> logical (N, C, Ho, Wo), or None (NumPy's turn).
        Inference as kernels.for_inference says (in the designer: once loaded, the GUI
        thread must not wait for a first compile); training loads them."""
        if not (kernels.enabled() if training else kernels.for_inference()):
            return None
        n, c = x.shape[:2]
        x4 = as_chwn(x)
        w3 = self.weights["weight"].reshape(c, *self.kernel_size).astype(x4.dtype, copy=False)
        y = np.empty((c, ho, wo, n), x4.dtype)
        if not kernels.depthwise_forward(x4, w3, y, self.stride, self.dilation, pads):
            return None
        if self.bias:
            y += self.weights["bias"].astype(y.dtype, copy=False)[:, None, None, None]
        if training:
            self._cache = ("depthwise_compiled", x4, pads, ho, wo)
        return nchw(y)

    def _depthwise_compiled_backward(self, dy):
        _, x4, pads, ho, wo = self._cache
        wt = self.weights["weight"]
        c = x4.shape[0]
        dyc = as_chwn(dy)
        w3 = wt.reshape(c, *self.kernel_size).astype(dyc.dtype, copy=False)
        need_dw = not self.frozen
        dw3 = np.empty((c, *self.kernel_size), dyc.dtype) if need_dw else None
        dx = np.empty(x4.shape, dyc.dtype) if self.need_dx else None
        if not kernels.depthwise_backward(x4, w3, dyc, dx, dw3, self.stride, self.dilation,
                                          pads):  # numba switched off since the forward
            self._cache = ("depthwise", pad_chwn(nchw(x4), pads), nchw(x4).shape, pads, ho, wo)
            return self._depthwise_backward(dy)
        self._cache = None
        if need_dw:
            self.grads["weight"] = dw3.reshape(wt.shape).astype(wt.dtype, copy=False)
            if self.bias:
                self.grads["bias"] = dyc.sum(axis=(1, 2, 3), dtype=wt.dtype)
        return [None if dx is None else nchw(dx)]

    # All taps of a few channels at a time (`_channel_blocks`): the block's output, window
    # products and gradients stay in cache across the kh·kw passes instead of streaming the
    # whole map through main memory once per tap (2-3× faster at MobileNetV2's sizes).

    def _depthwise_forward(self, xp, xshape, pads, ho, wo, training):
        c, n = xp.shape[0], xp.shape[3]
        y = np.empty((c, ho, wo, n), xp.dtype)
        wt = self.weights["weight"].reshape(c, -1).astype(xp.dtype, copy=False)
        taps = self._depthwise_taps(ho, wo)
        blocks = _channel_blocks(c, ho * wo * n)
        tmp = np.empty((blocks[0].stop - blocks[0].start, ho, wo, n), xp.dtype)
        for cs in blocks:
            yb, xb, tb = y[cs], xp[cs], tmp[:cs.stop - cs.start]
            wb = wt[cs, :, None, None, None]
            for t, sl in taps:
                if t == 0:
                    np.multiply(xb[sl], wb[:, 0], out=yb)
                else:
                    np.multiply(xb[sl], wb[:, t], out=tb)
                    yb += tb
            if self.bias:
                yb += self.weights["bias"][cs, None, None, None]
        if training:
            self._cache = ("depthwise", xp, xshape, pads, ho, wo)
        return nchw(y)

    def _depthwise_backward(self, dy):
        _, xp, xshape, pads, ho, wo = self._cache
        self._cache = None
        _, c, h, w = xshape
        dyc = as_chwn(dy)  # (C, Ho, Wo, N)
        taps = self._depthwise_taps(ho, wo)
        wt = self.weights["weight"]
        blocks = _channel_blocks(c, dyc[0].size)
        need_dw = not self.frozen
        dw = np.empty((c, len(taps)), wt.dtype)
        dxp = np.zeros(xp.shape, dyc.dtype) if self.need_dx else None
        wv = wt.reshape(c, -1).astype(dyc.dtype, copy=False)
        tmp = np.empty((blocks[0].stop - blocks[0].start, ho, wo, dyc.shape[3]), dyc.dtype)
        for cs in blocks:
            k = cs.stop - cs.start
            db, xb, tb = dyc[cs], xp[cs], tmp[:k]
            for t, sl in taps:
                if need_dw:  # Σ over (Ho, Wo, N) of dy · window, per channel
                    np.multiply(db, xb[sl], out=tb)
                    dw[cs, t] = tb.reshape(k, -1).sum(axis=1)
                if dxp is not None:
                    np.multiply(db, wv[cs, t, None, None, None], out=tb)
                    dxp[cs][sl] += tb
        if need_dw:
            self.grads["weight"] = dw.reshape(wt.shape)
            if self.bias:
                self.grads["bias"] = dyc.sum(axis=(1, 2, 3), dtype=wt.dtype)
        if dxp is None:
            return [None]
        t0, l0 = pads[0], pads[1]
        return [nchw(dxp[:, t0:t0 + h, l0:l0 + w])]

    # ---- ONNX mapping ------------------------------------------------------------------------

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """One Conv node; weights (Cout, Cin/groups, kh, kw) need no transpose."""
        ins = [inputs[0], ctx.initializer(f"{self.name}.weight", ctx.weights["weight"])]
        if self.bias:
            ins.append(ctx.initializer(f"{self.name}.bias", ctx.weights["bias"]))
        ctx.node("Conv", ins, [output], self.name, kernel_shape=list(self.kernel_size),
                 strides=list(self.stride), dilations=list(self.dilation), group=self.groups,
                 **onnx_padding(self.padding, ctx.in_shapes[0], self.kernel_size, self.stride,
                                self.dilation))

    @classmethod
    def from_onnx(cls, node, ctx):
        """Conv (2-D): auto_pad, asymmetric pads, strides, dilations, group; optional bias."""
        a = ctx.attrs(node)
        where = ctx.where(node)
        w = ctx.weight(node, 1, "weight")
        if w.ndim != 4:
            raise ValueError(f"{where}: weight of shape {list(w.shape)} is not a 2-D convolution")
        b = ctx.weight(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
        in_shape = ctx.image_shape(node.input[0], node)
        k = onnx_pair(a, "kernel_shape", w.shape[2:], where)
        if k != list(w.shape[2:]):
            raise ValueError(f"{where}: kernel_shape {k} disagrees with the weight "
                             f"{list(w.shape)}")
        s = onnx_pair(a, "strides", [1, 1], where)
        d = onnx_pair(a, "dilations", [1, 1], where)
        params = {"out_channels": int(w.shape[0]), "kernel_size": k, "stride": s,
                  "padding": padding_from_onnx(a, in_shape, k, s, d, where, node.doc_string),
                  "dilation": d,
                  "groups": int(a.get("group", 1)), "bias": b is not None}
        output = node.output[0]
        nxt = ctx.sole_consumer(output)
        if nxt is not None and nxt.op_type == "Add" and len(nxt.input) == 2:
            # a per-channel constant added right after (the ONNX model zoo's Conv + Add "Plus")
            other = nxt.input[1] if nxt.input[0] == output else nxt.input[0]
            c = ctx.const(other)
            cout = w.shape[0]
            per_channel = c is not None and (c.size == 1 or c.shape in ((cout, 1, 1),
                                                                         (1, cout, 1, 1)))
            if per_channel:
                c = np.broadcast_to(c.reshape(-1), (cout,)).astype(np.float32)
                b = c + (b if b is not None else 0)
                params["bias"] = True
                ctx.absorb(nxt)
                output = nxt.output[0]
        weights = {"weight": w}
        if b is not None:
            weights["bias"] = b
        return ctx.imported(cls, params, weights, [node.input[0]], output=output)


DEPTHWISE_BLOCK = 1 << 18  # elements per channel block of a depthwise conv: 1 MB of float32


def _channel_blocks(c: int, per_channel: int) -> list[slice]:
    """Slices of channels of about DEPTHWISE_BLOCK elements each (at least one channel)."""
    step = max(1, DEPTHWISE_BLOCK // max(1, per_channel))
    return [slice(i, min(i + step, c)) for i in range(0, c, step)]


# ---- ONNX padding, shared by Conv and the pooling layers -------------------------------------

SAME_DOC = "cnn-designer:padding=same"


def onnx_padding(padding, in_shape, k, s, d) -> dict:
    """ONNX attributes of a padding setting: always explicit `pads` for the node's input size
    (ONNX's [x1_begin, x2_begin, x1_end, x2_end] is our (top, left, bottom, right) order).
    auto_pad SAME_UPPER would say 'same' directly, but ONNX Runtime refuses it with dilation
    and the spec calls auto_pad deprecated; the node's doc_string keeps 'same' for our import."""
    _, h, w = in_shape
    pads = [int(v) for v in resolve_pads(padding, h, w, k, s, d)]
    out = {"pads": pads}
    if padding == "same":
        out["doc"] = SAME_DOC
    return out


def padding_from_onnx(attrs: dict, in_shape, k, s, d, where: str, doc: str = ""):
    """Our padding for an ONNX node's auto_pad / pads. SAME_LOWER becomes explicit pads for the
    node's input size (our 'same' puts the odd cell at the end, as SAME_UPPER); explicit pads
    tagged 'same' by our exporter are 'same' again if they are the same pads."""
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        for size, kk, ss, dd in zip(in_shape[1:], k, s, d):
            keff = dd * (kk - 1) + 1
            if (-(-size // ss) - 1) * ss + keff < size:
                raise ValueError(f"{where}: auto_pad {auto} with a {keff}-cell kernel, stride {ss} "
                                 f"on {size} cells asks for negative padding (cropping), which "
                                 f"is not supported")
    if auto == "NOTSET" and doc == SAME_DOC:
        _, h, w = in_shape
        if [int(v) for v in attrs.get("pads", [0] * 4)] == list(resolve_pads("same", h, w, k, s,
                                                                              d)):
            return "same"
    if auto == "SAME_UPPER":
        return "same"
    if auto == "VALID":
        return "valid"
    if auto == "SAME_LOWER":
        _, h, w = in_shape
        t, b = same_pads(h, k[0], s[0], d[0], upper=False)
        l, r = same_pads(w, k[1], s[1], d[1], upper=False)
        return [t, l, b, r] if (t or l or b or r) else "valid"
    if auto != "NOTSET":
        raise ValueError(f"{where}: unknown auto_pad {auto!r} (NOTSET, SAME_UPPER, SAME_LOWER "
                         f"or VALID)")
    pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise ValueError(f"{where}: pads {pads} must have 4 values for a 2-D window")
    if any(p < 0 for p in pads):
        raise ValueError(f"{where}: negative pads {pads} (cropping) are not supported")
    return pads if any(pads) else "valid"


def onnx_pair(attrs: dict, key: str, default, where: str) -> list[int]:
    """A 2-D attribute (strides, dilations, kernel_shape) as [h, w]; 1-D / 3-D ops are refused."""
    v = [int(x) for x in attrs.get(key, default)]
    if len(v) != 2:
        raise ValueError(f"{where}: {key} {v} is not 2-D; only 2-D images are supported")
    return v


def init_uniform(rule: str, fan_in: int, fan_out: int, shape, rng) -> np.ndarray:
    """He uniform keeps the activation variance through ReLU layers (He et al., 2015); Glorot
    uniform keeps it through symmetric activations like tanh (Glorot & Bengio, 2010)."""
    if rule == "he":
        bound = np.sqrt(6.0 / fan_in)
    else:
        bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


__all__ = ["Conv2d", "Shape", "fmt_shape", "init_uniform", "resolve_pads", "window_output"]
