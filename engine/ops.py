"""Vectorised NumPy kernels shared by convolution and pooling: padding, windows, col2im.

Loops run over kernel positions (K·K of them) at most, never over pixels or the batch.
"""

from __future__ import annotations

import ctypes
import sys

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


# ---- batch-innermost ("CHWN") kernels ------------------------------------------------------
#
# Convolution and pooling work on a (C, H, W, N) memory layout: the batch is the innermost,
# contiguous axis, so every kernel-tap copy, col2im add and pooling comparison runs over long
# contiguous rows (W·N or N values) instead of rows of W values, and the convolution is one
# matmul (Cout, C·kh·kw) @ (C·kh·kw, Ho·Wo·N). Layers still take and return logical
# (N, C, H, W) arrays: `nchw` is a free transposed view of CHWN memory and `as_chwn` is a free
# view of such an array (one copy only for other layouts), so a chain of conv / pool / ReLU
# layers passes its activations along without any layout change.


def as_chwn(x: np.ndarray) -> np.ndarray:
    """Logical (N, C, H, W) -> C-contiguous (C, H, W, N): a view if x has that memory layout."""
    t = x.transpose(1, 2, 3, 0)
    return t if t.flags.c_contiguous else np.ascontiguousarray(t)


def nchw(a: np.ndarray) -> np.ndarray:
    """(C, H, W, N) memory -> the logical (N, C, H, W) array (a view, no copy)."""
    return a.transpose(3, 0, 1, 2)


def pad_chwn(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """Logical (N, C, H, W) -> padded (C, H + top + bottom, W + left + right, N) memory."""
    t, l, b, r = pads
    if not (t or l or b or r):
        return as_chwn(x)
    n, c, h, w = x.shape
    out = np.empty((c, h + t + b, w + l + r, n), x.dtype)
    out[:, :t] = value
    out[:, t + h:] = value
    out[:, t:t + h, :l] = value
    out[:, t:t + h, l + w:] = value
    out[:, t:t + h, l:l + w] = x.transpose(1, 2, 3, 0)
    return out


def taps_chwn(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int,
              dh: int = 1, dw: int = 1) -> np.ndarray:
    """Strided view (C, kh, kw, Ho, Wo, N) of the kernel taps of padded CHWN memory; no copy."""
    s0, s1, s2, s3 = xp.strides
    c, n = xp.shape[0], xp.shape[3]
    return as_strided(xp, (c, kh, kw, ho, wo, n), (s0, s1 * dh, s2 * dw, s1 * sh, s2 * sw, s3),
                      writeable=False)


def tap_slice(i: int, j: int, sh: int, sw: int, ho: int, wo: int, dh: int = 1, dw: int = 1):
    """Index of tap (i, j)'s (C, Ho, Wo, N) window grid inside padded CHWN memory."""
    return (slice(None), slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))


def col2im_chwn(dcols: np.ndarray, hp: int, wp: int, sh: int, sw: int,
                dh: int = 1, dw: int = 1) -> np.ndarray:
    """Adjoint of `taps_chwn`: (C, kh, kw, Ho, Wo, N) -> (C, Hp, Wp, N), summing overlaps."""
    c, kh, kw, ho, wo, n = dcols.shape
    out = np.zeros((c, hp, wp, n), dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[tap_slice(i, j, sh, sw, ho, wo, dh, dw)] += dcols[:, i, j]
    return out


def matmul_nt(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(..., M, L) @ (..., K, L)^T -> (..., M, K) for a long contraction L and small M, K.

    OpenBLAS runs such products (weight gradients: L = Ho·Wo·N) on one thread with a slow
    kernel; L split into chunks of ~`chunk` and summed runs 2-4× faster on small layers."""
    m, big_l = a.shape[-2], a.shape[-1]
    k = b.shape[-2]
    parts = big_l // chunk
    if parts < 4 or m * k > 4096:
        return np.matmul(a, np.swapaxes(b, -1, -2))
    while big_l % parts:
        parts -= 1
    lead = a.shape[:-2]
    a4 = np.swapaxes(a.reshape(lead + (m, parts, big_l // parts)), -2, -3)
    b4 = np.swapaxes(b.reshape(lead + (k, parts, big_l // parts)), -2, -3)
    return np.matmul(a4, np.swapaxes(b4, -1, -2)).sum(axis=-3)


def scratch(owner, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A work array kept on `owner` (a layer) and reused while the shape stays the same.

    Training only, and only for arrays that never leave the layer (im2col matrices): a fresh
    20 MB array costs thousands of page faults on first touch, often more than the matmul that
    reads it. Inference allocates afresh, so concurrent inference calls never share memory."""
    bufs = owner.__dict__.setdefault("_scratch", {})
    a = bufs.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = bufs[key] = np.empty(shape, dtype)
    return a


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of unmapping it (Linux only; once).

    A training step frees and re-allocates the same multi-megabyte activations every batch.
    glibc serves blocks that big with mmap and unmaps them on free, so each step touches fresh
    pages: thousands of page faults (~3 µs each in a VM), measured at ~3 ms of a 27 ms LeNet-5
    step at batch 256. With the thresholds raised the heap keeps and reuses that memory; the
    cost is that the process does not hand it back to the OS after training."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
        libc.mallopt(m_mmap_threshold, 256 << 20)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        pass
