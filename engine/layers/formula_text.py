"""Text pieces of the teaching formulas: number formatting, one window axis, `Count`.

The layers' formula hooks (`Layer.formula`, `param_formula`, `macs_formula`) build their lines
from these; engine/formulas.py assembles a node's formulas from the hooks. A leaf module (it
imports only engine/shapes.py), so every layer module can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..shapes import conv_out, effective_kernel

MINUS, DOT, ARROW = "−", "·", "→"


def num(n: int) -> str:
    """48120 -> '48,120' (negative numbers with a real minus sign)."""
    return f"{n:,}" if n >= 0 else f"{MINUS}{-n:,}"


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


def window_lines(h: int, w: int, k, s, d, pads, ceil_mode: bool = False) -> list[str]:
    """The H and W lines of a sliding window (convolution, pooling); pads are
    (top, left, bottom, right) as the layer resolves them."""
    return [f"H: {axis_formula(h, k[0], s[0], pads[0], pads[2], d[0], ceil_mode)}",
            f"W: {axis_formula(w, k[1], s[1], pads[1], pads[3], d[1], ceil_mode)}"]
