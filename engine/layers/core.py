"""Core layers: Input, Flatten (from any start axis), Linear (fully connected, also over the last
axis of a map or over the channels of each position of a C×H×W map), Dropout."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ..messages import Fix
from ..nn.ops import as_chwn, matmul_nt, matmul_wide, nchw
from .base import BOOL, CHOICE, FLOAT, INT, Icon, Layer, Param, fmt_shape, register
from .conv import INIT, init_uniform
from .formula_text import ARROW, DOT, Count
from .formula_text import num as num_text  # torch_code's num writes Python literals
from .torch_code import TorchCode, TorchModule, call_args, num


@register
class Input(Layer):
    """The network's input: one image of C×H×W (the batch axis is implicit)."""

    type_name = "Input"
    label = "Image input"
    category = "Input"
    doc = "The image the network sees: channels × height × width (1×28×28 for MNIST)."
    min_inputs = 0
    max_inputs = 0
    short_name = "input"
    icon = Icon("input")  # a picture: frame, hill, sun
    params = (
        Param("channels", INT, 1, "1 for greyscale, 3 for colour.", min=1, max=4096),
        Param("height", INT, 28, "Image height in pixels.", min=1, max=8192),
        Param("width", INT, 28, "Image width in pixels.", min=1, max=8192),
    )

    def output_shape(self, in_shapes):
        return self.channels, self.height, self.width

    def describe(self, in_shapes=None):
        return f"{self.channels}×{self.height}×{self.width}"

    def formula(self, in_shapes):
        return [f"C×H×W = {self.channels}×{self.height}×{self.width} (set here)"]

    def to_pytorch(self, in_shapes, attr, names):
        return TorchCode()  # the module's forward argument

    def forward(self, xs, training=False):
        (x,) = xs
        return x

    def backward(self, dy):
        return [dy]

    # ---- ONNX mapping: the graph input "input" of N×C×H×W, N dynamic -------------------------

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        ctx.add_input(output, [self.channels, self.height, self.width])

    @classmethod
    def from_onnx(cls, value_info, ctx):
        """From the model's data input (a ValueInfoProto of rank 4: N×C×H×W)."""
        c, h, w = ctx.input_dims(value_info)
        return ctx.imported(cls, {"channels": c, "height": h, "width": w}, {}, [])


@register
class Flatten(Layer):
    """(C, H, W) -> (C·H·W,): turns feature maps into a vector for fully connected layers.

    From a later start axis it keeps the axes before it, as torch.nn.Flatten(start_dim): start 2
    turns C×H×W into C×(H·W) (a sequence of H·W positions per channel)."""

    type_name = "Flatten"
    label = "Flatten"
    category = "Core"
    doc = "Unrolls C×H×W feature maps into one vector of C·H·W features for Linear layers."
    short_name = "flatten"
    icon = Icon("flatten")  # a 2×2 block unrolled into a row
    onnx_ops = ("Flatten", "Reshape")
    params = (
        Param("start_dim", INT, 1, "First axis merged, counting the batch as 0 (PyTorch's "
              "start_dim): 1 flattens C×H×W to one vector, 2 gives C×(H·W).", min=1, max=3,
              label="start axis"),
    )

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        s = self.start_dim
        if s > len(shape):
            raise ShapeError(f"{self.where}: start_dim {s} is past the last axis of the "
                             f"{fmt_shape(shape)} input (axes 1 to {len(shape)} after the "
                             f"batch); use start_dim {len(shape)} or less", "start_dim",
                             Fix("start_dim 1", "set_params", {"start_dim": 1}))
        return tuple(shape[:s - 1]) + (math.prod(shape[s - 1:]),)

    def rf_window(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 3 or self.start_dim > 2:
            return None
        return ((shape[1], shape[2]), (shape[1], shape[2]), (0, 0))

    def describe(self, in_shapes=None):
        return "" if self.start_dim == 1 else f"from axis {self.start_dim}"

    def formula(self, in_shapes):
        first = in_shapes[0]
        s = self.start_dim
        if len(first) == 1:
            return [f"F = {num_text(first[0])} (already flat)"]
        if s == 1 and len(first) == 3:
            factors = DOT.join(str(v) for v in first)
            return [f"F = C{DOT}H{DOT}W = {factors} = {num_text(math.prod(first))}"]
        merged = first[s - 1:]
        out = (*first[:s - 1], math.prod(merged))
        return [(f"axes {s} on merged: {DOT.join(str(v) for v in merged)} = "
                 f"{num_text(out[-1])}; {fmt_shape(first)} {ARROW} {fmt_shape(out)}")]

    def torch_module(self, in_shapes):
        return "nn.Flatten()" if self.start_dim == 1 else f"nn.Flatten({self.start_dim})"

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = x.shape
        return x.reshape(x.shape[:self.start_dim] + (-1,))

    def backward(self, dy):
        shape, self._cache = self._cache, None
        return [dy.reshape(shape)]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """Flatten(axis 1) for a vector; from a later axis a Reshape to (0, kept axes…, -1), as
        ONNX's Flatten always makes a 2-D tensor (it would merge the batch)."""
        if self.start_dim == 1:
            ctx.node("Flatten", inputs, [output], self.name, axis=1)
            return
        kept = list(ctx.in_shapes[0][:self.start_dim - 1])
        shape = ctx.initializer(f"{self.name}.shape", [0, *kept, -1], np.int64)
        ctx.node("Reshape", [inputs[0], shape], [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        """Flatten at axis 1, the Reshape to (N, -1) / (N, F) / (0, -1) that PyTorch and
        Keras emit for flattening (its shape input folded to a constant by the importer), or a
        Reshape that keeps the batch and leading axes and merges the rest (start_dim 2, 3)."""
        shape = ctx.shape(node.input[0])
        where = ctx.where(node)
        if node.op_type == "Flatten":
            axis = int(ctx.attrs(node).get("axis", 1))
            if axis < 0:
                axis += len(shape) + 1
            if axis != 1:  # ONNX's Flatten makes N×C×H×W 2-D at the axis, batch included
                dims = "×".join(map(str, shape))
                if axis == 0:
                    into, after = "the features", f"1×(N·{math.prod(shape)})"
                else:
                    into = "the first axis"
                    after = f"(N·{math.prod(shape[:axis - 1])})×{math.prod(shape[axis - 1:])}"
                raise ValueError(f"{where}: Flatten at axis {axis} folds the batch axis into "
                                 f"{into} (N×{dims} -> {after}), which no per-sample layer "
                                 f"graph can express; only axis 1 keeps the batch")
            return cls._flattened(node, ctx)
        target = ctx.const(node.input[1]) if len(node.input) > 1 else None
        if target is None:
            raise ValueError(f"{where}: Reshape to a shape computed at run time is not supported")
        t = [int(v) for v in np.asarray(target).reshape(-1)]
        feat = int(np.prod(shape))
        if len(t) == 1:
            raise ValueError(f"{where}: Reshape of N×{'×'.join(map(str, shape))} to {t} folds "
                             f"the batch axis into the features (-> N·{feat} values), which no "
                             f"per-sample layer graph can express; only flattening to N×{feat} "
                             f"keeps the batch")
        zero_ok = not int(ctx.attrs(node).get("allowzero", 0))
        first_ok = len(t) >= 2 and (ctx.is_batch(t[0]) or (t[0] == 0 and zero_ok) or t[0] == -1)
        if len(t) == 2 and first_ok and t[1] in (-1, feat) and t != [-1, -1]:
            return cls._flattened(node, ctx)
        k = len(t) - 1  # the start_dim this Reshape would be
        if first_ok and 2 <= k <= len(shape) and t[-1] in (-1, math.prod(shape[k - 1:])) \
                and all(v == d or (v == 0 and zero_ok) for v, d in zip(t[1:-1], shape)) \
                and (t[0] != -1 or t[-1] != -1):
            return ctx.imported(cls, {"start_dim": k}, {}, [node.input[0]])
        shown = ["N" if ctx.is_batch(v) else v for v in t]
        raise ValueError(f"{where}: Reshape of N×{'×'.join(map(str, shape))} to {shown} is not "
                         f"supported; only flattening to N×{feat} is, or merging trailing axes")

    @classmethod
    def _flattened(cls, node, ctx):
        """A channels-last tensor (Keras / tf2onnx: Transpose to N×H×W×C, then flatten) is
        flattened from its channels-first source instead; the order its features had is kept for
        the Linear that reads them, which permutes its weight columns to match."""
        src = ctx.channels_last_source(node.input[0])
        if src is None:
            return ctx.imported(cls, {}, {}, [node.input[0]])
        tensor, (c, h, w) = src
        order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        ctx.set_feature_order(node.output[0], order)
        return ctx.imported(cls, {}, {}, [tensor])


@register
class Linear(Layer):
    """Fully connected: every output is a weighted sum of all inputs. (F,) -> (out_features,).

    `over` says what it reads: "flat" (the default) a feature vector; "last_axis" the last axis
    of any input, each row on its own; "channels" the C values at each position of a C×H×W map,
    y[o, h, w] = Σ_c W[o, c]·x[c, h, w] + b[o] — a 1×1 convolution whose weight keeps the
    (out, in) layout of torch's nn.Linear applied to channels-last data (ConvNeXt's pointwise
    layers: the same state_dict keys and shapes). It runs as one matmul (out, C) @ (C, H·W·N)
    in CHWN memory (engine/nn/ops.py); ONNX gets a tagged 1×1 Conv (ONNX Runtime's fastest exact
    form), and the Transpose -> MatMul [-> Add] -> Transpose form torch.onnx writes for a
    channels-last nn.Linear imports as this layer too."""

    type_name = "Linear"
    label = "Fully connected"
    category = "Core"
    doc = "Fully connected layer: each output unit sees every input feature."
    short_name = "fc"
    icon = Icon("dense")  # two columns of units, all joined
    onnx_ops = ("Gemm", "MatMul", "Conv")
    # first for Conv, where it claims only its own tagged 1×1 Conv (Conv2d takes the rest); the
    # only importer of Gemm and MatMul
    onnx_import_first = True
    onnx_doc = "cnn-designer:Linear over=channels"
    params = (
        Param("out_features", INT, 10, "Number of output units (classes, for the last layer).",
              min=1, max=1 << 20, label="units"),
        Param("bias", BOOL, True, "Add a learned bias per unit."),
        INIT,
        Param("over", CHOICE, "flat", "What it reads: a flat feature vector (after a Flatten; a "
              "map is then an error, with the fix), or the last axis of any input, each row on "
              "its own (ONNX MatMul on a map, a transformer's MLP), or the channels of each "
              "position of a C×H×W map (ConvNeXt's pointwise layers: a 1×1 conv with an "
              "(out, in) weight).",
              choices=("flat", "last_axis", "channels"),
              choice_labels={"flat": "flat vector", "last_axis": "last axis",
                             "channels": "channels"}),
    )

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        if self.over == "last_axis":
            return tuple(shape[:-1]) + (self.out_features,)
        if self.over == "channels":
            if len(shape) != 3:
                raise ShapeError(f"{self.where} over the channels needs a C×H×W map but gets "
                                 f"{fmt_shape(shape)}; set over to 'flat vector' for features",
                                 "over", Fix("over: flat vector", "set_params", {"over": "flat"}))
            return (self.out_features,) + tuple(shape[1:])
        if len(shape) != 1:
            # a map fed straight into a classifier is the classic beginner's slip: an error
            # with the one-click fix, rather than a silent per-row Linear
            per_position = (f", or over to 'channels' to apply it to the {shape[0]} channels "
                            f"of each position" if len(shape) == 3 else "")
            raise ShapeError(f"{self.where} needs a flat input but gets {fmt_shape(shape)}; "
                             f"insert a Flatten before '{self.name}' (or set over to 'last "
                             f"axis' to apply it to each row of {shape[-1]}{per_position})",
                             None, Fix(f"insert a Flatten before '{self.name}'", "insert_before",
                                       layer_type="Flatten"))
        return (self.out_features,)

    def _fan_in(self, shape) -> int:
        """The inputs each unit weighs: the channels, or the last axis."""
        return shape[0] if self.over == "channels" else shape[-1]

    def weight_shapes(self, in_shapes):
        out = {"weight": ((self.out_features, self._fan_in(in_shapes[0])), True)}
        if self.bias:
            out["bias"] = ((self.out_features,), True)
        return out

    def macs(self, in_shapes, out_shape):
        return math.prod(in_shapes[0]) * self.out_features

    def describe(self, in_shapes=None):
        rows = {"last_axis": ", last axis", "channels": ", per position"}.get(self.over, "")
        return f"{self.out_features} unit{'s' * (self.out_features != 1)}{rows}"

    def formula(self, in_shapes):
        shape = in_shapes[0]
        if self.over == "channels" and len(shape) == 3:
            c, h, w = shape
            return [f"C: {c} {ARROW} {num_text(self.out_features)} units at each position",
                    f"H×W = {h}×{w} (kept: a 1×1 conv with an (out, in) weight)"]
        if len(shape) > 1:
            out = self.output_shape(in_shapes)
            return [(f"last axis {shape[-1]} {ARROW} {num_text(self.out_features)} units, each "
                     f"of the {num_text(math.prod(shape[:-1]))} rows alone: {fmt_shape(shape)} "
                     f"{ARROW} {fmt_shape(out)}")]
        return [f"F = {num_text(self.out_features)} units"]

    def param_formula(self, in_shapes):
        """(F_in + 1)·F_out, without the '+ 1' when there is no bias."""
        f_in, f_out = self._fan_in(in_shapes[0]), self.out_features
        if self.bias:
            n = (f_in + 1) * f_out
            text = f"({num_text(f_in)} + 1) {DOT} {num_text(f_out)} = {num_text(n)}"
        else:
            n = f_in * f_out
            text = f"{num_text(f_in)} {DOT} {num_text(f_out)} = {num_text(n)}"
        note = (f"each of the {num_text(f_out)} units weighs all {num_text(f_in)} inputs"
                + (" + 1 bias" if self.bias else ""))
        return Count(text, n, 0, [note])

    def macs_formula(self, in_shapes, out_shape):
        """F_in·F_out (times the rows when applied over the last axis of a map, or the
        positions H·W when over its channels)."""
        shape, f_out = in_shapes[0], self.out_features
        f_in = self._fan_in(shape)
        rows = math.prod(shape) // f_in
        n = rows * f_in * f_out
        what = "positions" if self.over == "channels" else "rows"
        lead = f"{num_text(rows)} {what} {DOT} " if len(shape) > 1 else ""
        return Count(f"{lead}{num_text(f_in)} {DOT} {num_text(f_out)} = {num_text(n)}", n)

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        fo, fi = self.weights["weight"].shape
        self.weights["weight"][...] = init_uniform(self.init, fi, fo, (fo, fi), rng)

    def torch_module(self, in_shapes):
        kw = {} if self.bias else {"bias": False}  # nn.Linear works over the last axis too
        return f"nn.Linear({call_args(self._fan_in(in_shapes[0]), self.out_features, **kw)})"

    def to_pytorch(self, in_shapes, attr, names):
        """nn.Linear (keys <attr>.weight / <attr>.bias); over the channels it reads the map
        channels-last and permutes back, as ConvNeXt's blocks do."""
        code = TorchCode([TorchModule(attr, self.torch_module(in_shapes))])
        if self.over == "channels":
            code.expr = f"self.{attr}({{0}}.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)"
        return code

    def forward(self, xs, training=False):
        (x,) = xs
        if self.over == "channels":
            return self._forward_channels(x, training)
        y = x @ self.weights["weight"].T
        if self.bias:
            y += self.weights["bias"]
        if training:
            self._cache = x
        return y

    # over the channels: one (out, C) @ (C, H·W·N) matmul in CHWN memory, as a 1×1 conv, so a
    # chain of convs and these layers passes its activations along without a layout change

    def _forward_channels(self, x, training):
        n, c, h, w = x.shape
        xc = as_chwn(x).reshape(c, h * w * n)
        y = matmul_wide(self.weights["weight"], xc)
        if self.bias:
            y += self.weights["bias"][:, None]
        if training:
            self._cache = xc, x.shape
        return nchw(y.reshape(self.out_features, h, w, n))

    def _backward_channels(self, dy):
        (xc, (n, c, h, w)), self._cache = self._cache, None
        dyc = as_chwn(dy).reshape(self.out_features, h * w * n)
        if not self.frozen:
            wt = self.weights["weight"]
            self.grads["weight"] = matmul_nt(dyc, xc).astype(wt.dtype, copy=False)
            if self.bias:
                self.grads["bias"] = dyc.sum(axis=1).astype(wt.dtype, copy=False)
        if not self.need_dx:
            return [None]
        return [nchw((self.weights["weight"].T @ dyc).reshape(c, h, w, n))]

    def backward(self, dy):
        if self.over == "channels":
            return self._backward_channels(dy)
        x, self._cache = self._cache, None
        if x.ndim > 2:  # over the last axis: every row is one more sample of the same Linear
            dy2, x2 = dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1])
            if not self.frozen:
                self.grads["weight"] = dy2.T @ x2
                if self.bias:
                    self.grads["bias"] = dy2.sum(axis=0)
            return [None] if not self.need_dx else [dy @ self.weights["weight"]]
        if not self.frozen:
            self.grads["weight"] = dy.T @ x
            if self.bias:
                self.grads["bias"] = dy.sum(axis=0)
        if not self.need_dx:  # set by Network.backward(input_grad=False)
            return [None]
        if x.flags.f_contiguous and not x.flags.c_contiguous:
            # x was a transposed view (a flattened CHWN conv / pool output): give dx the same
            # memory order, so the layers before read it without a transposing copy
            return [(self.weights["weight"].T @ dy.T).T]
        return [dy @ self.weights["weight"]]

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """One Gemm: y = x · Wᵀ + b with W kept in its (out, in) layout (transB=1). Over the
        last axis of a map (Gemm takes only 2-D): MatMul by Wᵀ, then Add b. Over the channels:
        a 1×1 Conv with W as (out, in, 1, 1), tagged (doc string) so that an import gives this
        Linear back; ONNX Runtime runs it as fast as any form, and exactly."""
        if self.over == "channels":
            w = ctx.weights["weight"]
            ins = [inputs[0], ctx.initializer(f"{self.name}.weight", w.reshape(w.shape + (1, 1)))]
            if self.bias:
                ins.append(ctx.initializer(f"{self.name}.bias", ctx.weights["bias"]))
            ctx.node("Conv", ins, [output], self.name, doc=self.onnx_doc, kernel_shape=[1, 1])
            return
        if len(ctx.in_shapes[0]) > 1:
            wt = ctx.initializer(f"{self.name}.weight", ctx.weights["weight"].T)
            if not self.bias:
                ctx.node("MatMul", [inputs[0], wt], [output], self.name)
                return
            # the MatMul carries the layer's name (an import names the layer after it)
            prod = f"{output}/matmul"
            ctx.node("MatMul", [inputs[0], wt], [prod], self.name)
            ctx.node("Add", [prod, ctx.initializer(f"{self.name}.bias", ctx.weights["bias"])],
                     [output], f"{self.name}/bias")
            return
        ins = [inputs[0], ctx.initializer(f"{self.name}.weight", ctx.weights["weight"])]
        if self.bias:
            ins.append(ctx.initializer(f"{self.name}.bias", ctx.weights["bias"]))
        ctx.node("Gemm", ins, [output], self.name, transB=1)

    @classmethod
    def from_onnx(cls, node, ctx):
        """Gemm (transB, alpha and beta folded into the weights) or MatMul with a constant
        right-hand side, taking a following Add of a constant as its bias. Our tagged 1×1 Conv
        and torch.onnx's Transpose(to channels-last) -> MatMul [-> Add] -> Transpose(back) are
        a Linear over the channels; any other Conv is Conv2d's (None here)."""
        if node.op_type == "Conv":
            return cls._from_tagged_conv(node, ctx)
        if node.op_type == "MatMul" and ctx.channels_last_source(node.input[0]) is not None:
            return cls._from_channels_last(node, ctx)
        where = ctx.where(node)
        shape = ctx.shape(node.input[0])
        if len(shape) != 1 and node.op_type != "MatMul":
            raise ValueError(f"{where}: {node.op_type} on a N×{'×'.join(map(str, shape))} "
                             f"tensor is not supported; only on flat N×F features")
        output = node.output[0]
        if node.op_type == "MatMul":
            b = ctx.weight(node, 1, "B")
            if b.ndim != 2:
                raise ValueError(f"{where}: MatMul with a {b.ndim}-D right-hand side is not "
                                 f"supported")
            w, bias = b.T, None
            nxt = ctx.sole_consumer(output)
            if nxt is not None and nxt.op_type == "Add":
                other = [i for i in nxt.input if i != output]
                c = ctx.const(other[0]) if len(other) == 1 else None
                if c is not None and c.size == w.shape[0] and c.ndim <= 2:
                    bias = c.reshape(-1)
                    ctx.absorb(nxt)
                    output = nxt.output[0]
        else:
            a = ctx.attrs(node)
            if int(a.get("transA", 0)):
                raise ValueError(f"{where}: Gemm with transA=1 (the batch transposed) is not "
                                 f"supported")
            b = ctx.weight(node, 1, "B")
            if b.ndim != 2:
                raise ValueError(f"{where}: Gemm needs a 2-D B, got shape {list(b.shape)}")
            alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
            w = b if int(a.get("transB", 0)) else b.T
            if alpha != 1:  # no copy of a big weight for the usual alpha 1
                w = w * np.float32(alpha)
            bias = None
            if len(node.input) > 2 and node.input[2]:
                c = ctx.weight(node, 2, "C")
                if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                    raise ValueError(f"{where}: Gemm's C of shape {list(c.shape)} is not a "
                                     f"per-unit bias of {w.shape[0]}")
                bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * np.float32(beta)
        order = ctx.take_feature_order(node.input[0])
        if order is not None and len(order) == w.shape[1]:
            cols = np.empty_like(w)  # features flattened channels-last: permute the columns
            cols[:, order] = w
            w = cols
        if w.shape[1] != shape[-1]:
            raise ValueError(f"{where}: weight for {w.shape[1]} inputs but the input has "
                             f"{shape[-1]} features")
        weights = {"weight": np.ascontiguousarray(w, np.float32)}
        if bias is not None:
            weights["bias"] = np.ascontiguousarray(bias, np.float32)
        params = {"out_features": int(w.shape[0]), "bias": bias is not None,
                  "over": "flat" if len(shape) == 1 else "last_axis"}
        return ctx.imported(cls, params, weights, [node.input[0]], output=output)

    @classmethod
    def _from_tagged_conv(cls, node, ctx):
        """Our own 1×1 Conv of a Linear over the channels (by its doc string); None for any
        other Conv."""
        if node.doc_string != cls.onnx_doc:
            return None
        a = ctx.attrs(node)
        w = ctx.weight(node, 1, "W")
        plain = all(int(v) == 1 for v in list(a.get("strides", [1, 1])) + list(
            a.get("dilations", [1, 1]))) and int(a.get("group", 1)) == 1 and not any(
            a.get("pads", [0] * 4)) and a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        if w.ndim != 4 or w.shape[2:] != (1, 1) or not plain:
            return None  # edited since: an ordinary convolution, Conv2d's
        weights = {"weight": np.ascontiguousarray(w.reshape(w.shape[:2]))}
        if len(node.input) > 2 and node.input[2]:
            weights["bias"] = ctx.weight(node, 2, "B").reshape(-1)
        params = {"out_features": int(w.shape[0]), "bias": "bias" in weights,
                  "over": "channels"}
        return ctx.imported(cls, params, weights, [node.input[0]])

    @classmethod
    def _from_channels_last(cls, node, ctx):
        """torch.onnx's nn.Linear on a channels-last map: Transpose(0,2,3,1) -> MatMul by a
        constant (in, out) -> [Add of a constant bias] -> [Transpose(0,3,1,2), absorbed; without
        it the output stays channels-last for the next layer, as in ConvNeXt's block]."""
        where = ctx.where(node)
        tensor, (c, height, width) = ctx.channels_last_source(node.input[0])
        b = ctx.weight(node, 1, "B")
        if b.ndim != 2 or b.shape[0] != c:
            raise ValueError(f"{where}: MatMul of a channels-last map by a constant of shape "
                             f"{list(b.shape)} is not supported; only by ({c}, out)")
        w, bias, output = b.T, None, node.output[0]
        absorbed = []
        nxt = ctx.sole_consumer(output)
        if nxt is not None and nxt.op_type == "Add":
            other = [i for i in nxt.input if i != output]
            k = ctx.const(other[0]) if len(other) == 1 else None
            if k is not None and k.size == w.shape[0] and k.shape[-1] == w.shape[0]:
                bias, output = np.asarray(k, np.float32).reshape(-1), nxt.output[0]
                absorbed.append(nxt)
        back = ctx.sole_consumer(output)
        if back is not None and back.op_type == "Transpose" and \
                ctx.attrs(back).get("perm") == [0, 3, 1, 2]:
            absorbed.append(back)
            output = back.output[0]
        else:
            output = ctx.channels_last_output(output, (int(w.shape[0]), height, width))
        for n in absorbed:
            ctx.absorb(n)
        weights = {"weight": np.ascontiguousarray(w, np.float32)}
        if bias is not None:
            weights["bias"] = bias
        params = {"out_features": int(w.shape[0]), "bias": bias is not None,
                  "over": "channels"}
        return ctx.imported(cls, params, weights, [tensor], output=output)


@register
class Dropout(Layer):
    """Zeroes a random fraction p of activations while training (scaled by 1/(1−p))."""

    type_name = "Dropout"
    label = "Dropout"
    category = "Core"
    doc = "While training, zeroes a random fraction p of activations to fight overfitting."
    short_name = "dropout"
    icon = Icon("dropout")  # the dense glyph with a unit and some links dropped
    onnx_ops = ("Dropout",)
    # our own kept Dropout (export --keep-dropout): always imported back as the layer
    onnx_doc = "cnn-designer: Dropout layer, kept for the round trip"
    params = (Param("p", FLOAT, 0.5, "Fraction of activations dropped while training.",
                    min=0.0, max=0.99),)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        return shape

    def describe(self, in_shapes=None):
        return f"p={self.p:g}"

    def init_weights(self, in_shapes, rng):
        super().init_weights(in_shapes, rng)
        self.rng = np.random.default_rng(rng.integers(1 << 63))

    def torch_module(self, in_shapes):
        return f"nn.Dropout(p={num(self.p)})"

    def forward(self, xs, training=False):
        (x,) = xs
        drop = self.p
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

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """Inference does nothing here, so by default the input is wired straight through (no
        redundant node). With ctx.keep_dropout a Dropout node keeps the rate for a round trip
        (ONNX Runtime removes such nodes when it loads a model)."""
        if not ctx.keep_dropout:
            ctx.alias(output, inputs[0])
            return
        ratio = ctx.initializer(f"{self.name}.ratio", np.array(self.p, np.float32))
        ctx.node("Dropout", [inputs[0], ratio], [output], self.name, doc=self.onnx_doc)

    @classmethod
    def removed_on_import(cls, node, ctx) -> bool:
        """A Dropout node of another exporter does nothing at inference, so the import removes
        it (the clean-up's no-op removal) unless asked to keep it (import --keep-dropout, and
        fine-tuning from an .onnx, where the rate matters); ours is always a layer again."""
        if ctx.keep_dropout or node.doc_string == cls.onnx_doc:
            return False
        if len(node.output) > 1 and node.output[1] and ctx.is_used(node.output[1]):
            return False  # its mask is read: from_onnx says that is not supported
        if len(node.input) > 2 and node.input[2]:  # training_mode: refused by from_onnx
            mode = ctx.const(node.input[2])
            return mode is not None and not bool(np.asarray(mode))
        return True

    @classmethod
    def from_onnx(cls, node, ctx):
        """Dropout keeps its rate (attribute before opset 12, input since) for fine-tuning
        (when kept: see removed_on_import)."""
        where = ctx.where(node)
        if len(node.output) > 1 and node.output[1] and ctx.is_used(node.output[1]):
            raise ValueError(f"{where}: the mask output of Dropout is not supported")
        if ctx.opset < 12:
            p = float(ctx.attrs(node).get("ratio", 0.5))
        elif len(node.input) > 1 and node.input[1]:
            p = ctx.clean_float(float(ctx.weight(node, 1, "ratio")))
        else:
            p = 0.5
        if len(node.input) > 2 and node.input[2] and bool(ctx.weight(node, 2, "training_mode")):
            raise ValueError(f"{where}: Dropout in training mode at inference is not supported")
        return ctx.imported(cls, {"p": min(max(p, 0.0), 0.99)}, {}, [node.input[0]])
