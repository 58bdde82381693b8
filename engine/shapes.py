"""Shared output-size arithmetic for convolution and pooling, per the ONNX specification.

O = floor((W - K_eff + P_begin + P_end) / S) + 1 with K_eff = D * (K - 1) + 1; ceil_mode rounds
up instead, dropping a last window that would start in the end padding (ONNX opset 19 / PyTorch).
"""

from __future__ import annotations

import math


def effective_kernel(k: int, d: int = 1) -> int:
    """Extent covered by a kernel of size k with dilation d."""
    return d * (k - 1) + 1


def conv_out(w: int, k: int, s: int = 1, p_begin: int = 0, p_end: int = 0, d: int = 1,
             ceil_mode: bool = False) -> int:
    """Output length along one axis; may be < 1 for impossible settings (the caller reports it)."""
    span = w + p_begin + p_end - effective_kernel(k, d)
    if span < 0:
        return span // s + 1  # < 1: the caller reports it
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= w + p_begin:  # the last window would start inside the end padding
        out -= 1
    return out


def same_pads(w: int, k: int, s: int = 1, d: int = 1, upper: bool = True) -> tuple[int, int]:
    """(begin, end) padding of ONNX auto_pad SAME_UPPER (odd cell at the end) or SAME_LOWER."""
    out = -(-w // s)
    total = max((out - 1) * s + effective_kernel(k, d) - w, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


def unread_cells(w: int, k: int, s: int, p_begin: int, p_end: int, d: int = 1) -> int:
    """How many trailing cells of the padded input no window reaches (floor mode)."""
    span = w + p_begin + p_end - effective_kernel(k, d)
    return span % s if span >= 0 else 0


def padding_for_same_size(k: int, d: int = 1) -> tuple[int, int]:
    """Symmetric-if-possible padding that keeps the size at stride 1."""
    total = effective_kernel(k, d) - 1
    return total // 2, total - total // 2


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def prod(shape) -> int:
    return math.prod(shape)
