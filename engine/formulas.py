"""The teaching formulas with a node's actual numbers, as text (inspector, summary, CLI).

    output_size_lines(conv1, [(1, 28, 28)])
    -> ["H: O = floor((28 − 5 + 2·2) / 1) + 1 = 28", "W: O = floor((28 − 5 + 2·2) / 1) + 1 = 28"]
    param_formula(conv1, [(1, 28, 28)])  -> "((5·5·1) + 1) · 6 = 156"

Each layer type declares its own lines (`Layer.formula`, `param_formula`, `macs_formula` in
engine/layers/); this module asks the hooks, falls back to the generic text, and adds what is
shared by all (shape flow, receptive field). The final number of every output-size line comes
from the engine's own shape arithmetic (engine/shapes.py, the layer's pads), so the formula and
the validated shape cannot disagree; the parameter and MAC formulas are built from the same
factors as the layer's weight shapes, and tests check their results against `param_count` /
`macs` for many settings. Pure functions: no Qt, no weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layers.base import Layer, Shape, fmt_shape

# the text pieces live with the layers so that every layer's formula hooks can use them; they
# are re-exported here for this module's callers
from .layers.formula_text import ARROW, DOT, MINUS, Count, axis_formula, num


def shape_flow(in_shapes: list[Shape | None], out_shape: Shape | None) -> str:
    """'1×28×28 → 6×28×28' ('16×5×5 + 16×5×5 → 32×5×5' for merges; '?' where unknown)."""
    left = " + ".join(fmt_shape(s) for s in in_shapes) if in_shapes else "—"
    return f"{left} {ARROW} {fmt_shape(out_shape)}"


def _unknown(layer: Layer, in_shapes: list[Shape | None]) -> bool:
    """True when a layer that reads inputs has none, or one of unknown shape."""
    return layer.min_inputs > 0 and (not in_shapes or any(s is None for s in in_shapes))


# errors a formula hook may raise on a layer whose shapes do not fit (the node has a shape error)
_HOOK_ERRORS = (AttributeError, TypeError, ValueError, IndexError)


# ---- output size -----------------------------------------------------------------------------

def output_size_lines(layer: Layer, in_shapes: list[Shape | None]) -> list[str]:
    """How the output shape follows from the inputs, one line per rule (per axis for windows):
    the layer's `formula` hook. Empty when the inputs are unknown. Never raises for a
    constructed layer."""
    if _unknown(layer, in_shapes):
        return []
    try:
        return layer.formula(list(in_shapes))
    except _HOOK_ERRORS:
        return []


# ---- parameters, MACs --------------------------------------------------------------------------

def param_formula(layer: Layer, in_shapes: list[Shape | None]) -> Count | None:
    """The parameter count as a formula, e.g. '((5·5·1) + 1) · 6 = 156'; None if inputs unknown.

    The layer's `param_formula` hook gives the text (Conv2d, Linear, BatchNorm2d); without one
    the bare count from `param_count` is shown.
    """
    if _unknown(layer, in_shapes):
        return None
    try:
        count = layer.param_formula(list(in_shapes))
    except _HOOK_ERRORS:
        return None
    if count is not None:
        return count
    trainable, frozen = layer.param_count(list(in_shapes))
    if trainable or frozen:  # a layer type without its own formula text
        return Count(f"{num(trainable + frozen)}", trainable, frozen)
    return Count("0 (no weights)", 0, 0)


def macs_formula(layer: Layer, in_shapes: list[Shape | None], out_shape: Shape | None
                 ) -> Count | None:
    """Multiply-accumulates of one forward pass for one sample, as a formula (the layer's
    `macs_formula` hook, else the bare count from `macs`)."""
    if out_shape is None or not in_shapes or any(s is None for s in in_shapes):
        return None
    count = layer.macs_formula(list(in_shapes), out_shape)
    if count is not None:
        return count
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


__all__ = ["ARROW", "DOT", "MINUS", "Count", "NodeFormulas", "axis_formula", "macs_formula",
           "node_formulas", "num", "output_size_lines", "param_formula", "receptive_field_text",
           "rf_formula", "shape_flow"]
