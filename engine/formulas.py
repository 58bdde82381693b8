"""The teaching formulas with a node's actual numbers, as text (inspector, summary, CLI).

    output_size_lines(conv1, [(1, 28, 28)])
    -> ["H: O = floor((28 − 5 + 2·2) / 1) + 1 = 28", "W: O = floor((28 − 5 + 2·2) / 1) + 1 = 28"]
    param_formula(conv1, [(1, 28, 28)])  -> "((5·5·1) + 1) · 6 = 156"

The final number of every output-size line comes from the engine's own shape arithmetic
(engine/shapes.py, the layer's pads), so the formula and the validated shape cannot disagree;
the parameter and MAC formulas are built from the same factors as the layer's weight shapes, and
tests check their results against `param_count` / `macs` for many settings.
Pure functions: no Qt, no weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .layers import Layer, Shape, fmt_shape
from .layers.conv import resolve_pads
from .shapes import conv_out, effective_kernel

MINUS, DOT, ARROW = "−", "·", "→"


def num(n: int) -> str:
    """48120 -> '48,120' (negative numbers with a real minus sign)."""
    return f"{n:,}" if n >= 0 else f"{MINUS}{-n:,}"


def shape_flow(in_shapes: list[Shape | None], out_shape: Shape | None) -> str:
    """'1×28×28 → 6×28×28' ('16×5×5 + 16×5×5 → 32×5×5' for merges; '?' where unknown)."""
    left = " + ".join(fmt_shape(s) for s in in_shapes) if in_shapes else "—"
    return f"{left} {ARROW} {fmt_shape(out_shape)}"


# ---- output size -----------------------------------------------------------------------------

def _window_geometry(layer: Layer, h: int, w: int):
    """(kernel, stride, dilation, pads, ceil_mode) of a conv / window-pooling layer, or None."""
    t = layer.type_name
    if t == "Conv2d":
        k, s, d, ceil = layer.kernel_size, layer.stride, layer.dilation, False
    elif t in ("MaxPool2d", "AvgPool2d"):
        k = layer.kernel_size
        s = layer.stride if layer.stride is not None else list(k)
        d, ceil = [1, 1], bool(layer.ceil_mode)
    else:
        return None
    return k, s, d, resolve_pads(layer.padding, h, w, k, s, d), ceil


def axis_formula(size: int, k: int, s: int, p_begin: int, p_end: int, d: int = 1,
                 ceil_mode: bool = False) -> str:
    """One axis of O = floor((W − K_eff + P) / S) + 1 with the numbers, ending in the result.

    The result is the engine's `conv_out`; in ceil mode a last window that would start in the end
    padding is dropped (ONNX / PyTorch), which the text then says.
    """
    parts = []
    keff = effective_kernel(k, d)
    if d != 1:
        parts.append(f"K_eff = {d}{DOT}({k} {MINUS} 1) + 1 = {keff}; ")
    pad = f"2{DOT}{p_begin}" if p_begin == p_end else f"({p_begin} + {p_end})"
    fn = "ceil" if ceil_mode else "floor"
    span = size - keff + p_begin + p_end
    raw = (-(-span // s) if ceil_mode else span // s) + 1
    result = conv_out(size, k, s, p_begin, p_end, d, ceil_mode)
    text = f"O = {fn}(({size} {MINUS} {keff} + {pad}) / {s}) + 1 = "
    if raw != result:  # ceil mode dropped a window that would start in the padding
        text += f"{num(raw)} {MINUS} 1 = {num(result)} (the last window would start in the padding)"
    else:
        text += num(result)
    if result < 1:
        text += " (< 1: the window does not fit)"
    return "".join(parts) + text


def output_size_lines(layer: Layer, in_shapes: list[Shape | None]) -> list[str]:
    """How the output shape follows from the inputs, one line per rule (per axis for windows).

    Empty when the inputs are unknown. Never raises for a constructed layer.
    """
    t = layer.type_name
    if t == "Input":
        return [f"C×H×W = {layer.channels}×{layer.height}×{layer.width} (set here)"]
    if not in_shapes or any(s is None for s in in_shapes):
        return []
    first = in_shapes[0]
    try:
        if len(first) == 3 and t in ("Conv2d", "MaxPool2d", "AvgPool2d"):
            c, h, w = first
            k, s, d, pads, ceil = _window_geometry(layer, h, w)
            lines = [f"H: {axis_formula(h, k[0], s[0], pads[0], pads[2], d[0], ceil)}",
                     f"W: {axis_formula(w, k[1], s[1], pads[1], pads[3], d[1], ceil)}"]
            if t == "Conv2d":
                lines.append(f"C: {layer.out_channels} (one map per filter)")
            else:
                lines.append(f"C: {c} (pooling keeps the channels)")
            return lines
        if t == "AdaptiveAvgPool2d" and len(first) == 3:
            c, h, w = first
            oh, ow = layer.output_size
            return [f"H×W: fixed output size {oh}×{ow} (input {h}×{w})",
                    f"C: {c} (pooling keeps the channels)"]
        if t == "GlobalAvgPool2d" and len(first) == 3:
            return [f"{fmt_shape(first)} {ARROW} {first[0]}×1×1: one average per channel"]
        if t == "Flatten":
            factors = DOT.join(str(v) for v in first)
            if len(first) == 1:
                return [f"F = {num(first[0])} (already flat)"]
            return [f"F = C{DOT}H{DOT}W = {factors} = {num(math.prod(first))}"]
        if t == "Linear":
            return [f"F = {num(layer.out_features)} units"]
        if t == "Concat":
            chans = " + ".join(str(s[0]) for s in in_shapes)
            return [f"C = {chans} = {num(sum(s[0] for s in in_shapes))}"]
        if t == "Add":
            return [f"same shape as each input: {fmt_shape(first)}"]
    except (AttributeError, TypeError, ValueError, IndexError):
        return []
    if len(in_shapes) == 1:
        return [f"same shape as the input: {fmt_shape(first)}"]
    return []


# ---- parameters, MACs --------------------------------------------------------------------------

@dataclass
class Count:
    """A counted quantity with the formula that gives it. `text` ends in the number(s)."""

    text: str
    trainable: int = 0
    non_trainable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def param_formula(layer: Layer, in_shapes: list[Shape | None]) -> Count | None:
    """The parameter count as a formula, e.g. '((5·5·1) + 1) · 6 = 156'; None if inputs unknown.

    Conv2d: ((Kh·Kw·Cin/groups) + 1)·Cout; Linear: (F_in + 1)·F_out (no '+ 1' without bias);
    BatchNorm2d: 2·C trainable (γ, β) + 2·C running statistics (mean, variance).
    """
    t = layer.type_name
    if t == "Input":
        return Count("0 (no weights)", 0, 0)
    if not in_shapes or any(s is None for s in in_shapes):
        return None
    try:
        if t == "Conv2d":
            c = in_shapes[0][0]
            kh, kw = layer.kernel_size
            g, co = layer.groups, layer.out_channels
            cin = f"{c}/{g}" if g != 1 else str(c)
            per_filter = kh * kw * (c // g)
            inner = f"{kh}{DOT}{kw}{DOT}{cin}"
            if layer.bias:
                n = (per_filter + 1) * co
                text = f"(({inner}) + 1) {DOT} {co} = {num(n)}"
            else:
                n = per_filter * co
                text = f"({inner}) {DOT} {co} = {num(n)}"
            notes = [f"each of the {num(co)} filters has {kh}×{kw}×{num(c // g)} weights"
                     + (" + 1 bias" if layer.bias else "")]
            if g != 1:
                notes.append(f"{g} groups: each filter sees {c}/{g} = {c // g} input channels")
            return Count(text, n, 0, notes)
        if t == "Linear":
            f_in, f_out = in_shapes[0][0], layer.out_features
            if layer.bias:
                n = (f_in + 1) * f_out
                text = f"({num(f_in)} + 1) {DOT} {num(f_out)} = {num(n)}"
            else:
                n = f_in * f_out
                text = f"{num(f_in)} {DOT} {num(f_out)} = {num(n)}"
            return Count(text, n, 0, [f"each of the {num(f_out)} units weighs all {num(f_in)} "
                                      "inputs" + (" + 1 bias" if layer.bias else "")])
        if t == "BatchNorm2d":
            c = in_shapes[0][0]
            text = (f"2{DOT}{c} = {num(2 * c)} trainable (γ, β) + 2{DOT}{c} = {num(2 * c)} "
                    f"running stats (mean, variance)")
            return Count(text, 2 * c, 2 * c)
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    trainable, frozen = layer.param_count(list(in_shapes))
    if trainable or frozen:  # a layer type without its own formula text yet
        return Count(f"{num(trainable + frozen)}", trainable, frozen)
    return Count("0 (no weights)", 0, 0)


def macs_formula(layer: Layer, in_shapes: list[Shape | None], out_shape: Shape | None
                 ) -> Count | None:
    """Multiply-accumulates of one forward pass for one sample, as a formula.

    Conv2d: Cout·Ho·Wo outputs × Kh·Kw·Cin/groups each; Linear: F_in·F_out.
    """
    if out_shape is None or not in_shapes or any(s is None for s in in_shapes):
        return None
    t = layer.type_name
    if t == "Conv2d":
        c = in_shapes[0][0]
        kh, kw = layer.kernel_size
        co, ho, wo = out_shape
        cg = c // layer.groups
        n = co * ho * wo * kh * kw * cg
        return Count(f"{co}{DOT}{ho}{DOT}{wo} outputs {DOT} {kh}{DOT}{kw}{DOT}{cg} each = "
                     f"{num(n)}", n)
    if t == "Linear":
        f_in, f_out = in_shapes[0][0], layer.out_features
        n = f_in * f_out
        return Count(f"{num(f_in)} {DOT} {num(f_out)} = {num(n)}", n)
    n = layer.macs(list(in_shapes), out_shape)
    return Count(num(n) if n else "0 (no multiply-accumulates)", n)


# ---- receptive field ---------------------------------------------------------------------------

def _pair_text(p: tuple[int, int], unit: str = "") -> str:
    return f"{p[0]}{unit}" if p[0] == p[1] else f"{p[0]}×{p[1]}{unit}"


def receptive_field_text(rf: tuple[int, int] | None, jump: tuple[int, int] | None) -> str:
    """'sees 14×14 input pixels, steps 2 px' (from validation's receptive_field and jump)."""
    if rf is None or jump is None:
        return ""
    step = f"{jump[0]} px" if jump[0] == jump[1] else f"{jump[0]}×{jump[1]} px"
    return f"sees {rf[0]}×{rf[1]} input pixel{'s' * (rf[0] * rf[1] != 1)}, steps {step}"


def rf_formula(layer: Layer, in_shapes: list[Shape | None], rf_in: tuple[int, int] | None,
               jump_in: tuple[int, int] | None) -> list[str]:
    """r = r_in + (K − 1)·j_in and j = j_in·S per axis, with the numbers; [] if pointwise."""
    if rf_in is None or jump_in is None or not in_shapes or any(s is None for s in in_shapes):
        return []
    try:
        win = layer.rf_window(list(in_shapes))
    except (AttributeError, TypeError, ValueError, IndexError):
        return []
    if win is None:
        return []
    (kh, kw), (sh, sw), _ = win
    out = []
    for ax, r, j, k, s in (("H", rf_in[0], jump_in[0], kh, sh), ("W", rf_in[1], jump_in[1], kw, sw)):
        out.append(f"{ax}: r = {r} + ({k} {MINUS} 1){DOT}{j} = {r + (k - 1) * j}, "
                   f"j = {j}{DOT}{s} = {j * s}")
    return out


# ---- everything for one node -------------------------------------------------------------------

@dataclass
class NodeFormulas:
    flow: str
    output_size: list[str]
    params: Count | None
    macs: Count | None
    receptive_field: str
    rf_steps: list[str]


def node_formulas(graph, validation, node_id: str) -> NodeFormulas | None:
    """All formulas of one node from a graph and its validation; None if it has no layer."""
    res = validation.nodes.get(node_id)
    if res is None or res.layer is None:
        return None
    ins = [validation.nodes[s] for s in graph.inputs_of(node_id) if s in validation.nodes]
    rf_in = jump_in = None
    if ins and all(r.receptive_field is not None for r in ins):
        rf_in = tuple(max(r.receptive_field[a] for r in ins) for a in (0, 1))
        jump_in = tuple(max(r.jump[a] for r in ins) for a in (0, 1))
    in_shapes = list(res.in_shapes)
    return NodeFormulas(
        flow=shape_flow(in_shapes, res.out_shape),
        output_size=output_size_lines(res.layer, in_shapes),
        params=param_formula(res.layer, in_shapes) if res.out_shape is not None else None,
        macs=macs_formula(res.layer, in_shapes, res.out_shape),
        receptive_field=receptive_field_text(res.receptive_field, res.jump),
        rf_steps=rf_formula(res.layer, in_shapes, rf_in, jump_in),
    )


__all__ = ["Count", "NodeFormulas", "axis_formula", "macs_formula", "node_formulas", "num",
           "output_size_lines", "param_formula", "receptive_field_text", "rf_formula",
           "shape_flow"]
