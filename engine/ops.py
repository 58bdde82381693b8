"""Vectorised NumPy kernels shared by convolution and pooling: padding, windows, col2im.

Loops run over kernel positions (K·K of them) at most, never over pixels or the batch.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def pad2d(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """(N, C, H, W) -> (N, C, H + top + bottom, W + left + right). pads = (top, left, bottom, right)."""
    t, l, b, r = pads
    if not (t or l or b or r):
        return x
    n, c, h, w = x.shape
    out = np.empty((n, c, h + t + b, w + l + r), x.dtype)
    if value == 0.0:
        out[...] = 0
    else:
        out.fill(value)
    out[:, :, t:t + h, l:l + w] = x
    return out


def windows(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int,
            dh: int = 1, dw: int = 1) -> np.ndarray:
    """Strided view (N, C, Ho, Wo, kh, kw) of the padded input's kernel windows; no copy."""
    n, c, _, _ = xp.shape
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (n, c, ho, wo, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw),
                      writeable=False)


def scatter_windows(dwin: np.ndarray, hp: int, wp: int, sh: int, sw: int,
                    dh: int = 1, dw: int = 1) -> np.ndarray:
    """Adjoint of `windows`: (N, C, Ho, Wo, kh, kw) -> (N, C, Hp, Wp), summing overlaps."""
    n, c, ho, wo, kh, kw = dwin.shape
    out = np.zeros((n, c, hp, wp), dwin.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                j * dw:j * dw + sw * (wo - 1) + 1:sw] += dwin[:, :, :, :, i, j]
    return out


def unpad2d(xp: np.ndarray, pads: tuple[int, int, int, int], h: int, w: int) -> np.ndarray:
    t, l, _, _ = pads
    if xp.shape[2] == h and xp.shape[3] == w:
        return xp
    return xp[:, :, t:t + h, l:l + w]
