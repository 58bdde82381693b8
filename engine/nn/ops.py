"""Vectorised NumPy kernels shared by convolution and pooling: padding, windows, col2im.

Loops run over kernel positions (K·K of them) at most, never over pixels or the batch.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading

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


def memory_view(x: np.ndarray) -> tuple[tuple[int, ...] | None, np.ndarray]:
    """(perm, x.transpose(perm)) with the axes in memory order (largest stride first) when
    that view is C-contiguous (an NCHW array, or a CHWN one from a convolution); else
    (None, x). Element-wise code run on the view keeps x's layout and reads memory in order."""
    if x.flags.c_contiguous:
        return tuple(range(x.ndim)), x
    perm = tuple(int(i) for i in np.argsort([-s for s in x.strides], kind="stable"))
    v = x.transpose(perm)
    return (perm, v) if v.flags.c_contiguous else (None, x)


def from_memory_view(v: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """Inverse of `memory_view`: the logical array of a memory-order view `v`."""
    return v.transpose(np.argsort(perm))


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


def matmul_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., M, L) @ (..., K, L)^T -> (..., M, K) for a long contraction L (weight gradients:
    L = Ho·Wo·N).

    OpenBLAS runs this shape slowly and, with two threads, erratically (10× swings on a busy
    machine). Measured on LeNet-5's convs: for tiny M·K (6×26) summing products over column
    blocks of ~6k is 2-4× faster; otherwise computing (b @ aᵀ)ᵀ is 1.5× faster and steady."""
    m, big_l = a.shape[-2:]
    k = b.shape[-2]
    if m * k > 64 * big_l:
        # a big result from a short contraction (ResNet-18's last convs at 32×32: 512×4608
        # from 64): the transposed result would cost a strided copy 9× the product's time
        return np.matmul(a, np.swapaxes(b, -1, -2))
    lb = _chunk_length(big_l, 6144) if m * k <= 1024 and big_l >= 4 * 6144 else None
    if lb is None:
        return np.swapaxes(np.matmul(b, np.swapaxes(a, -1, -2)), -1, -2)
    parts = big_l // lb
    lead = a.shape[:-2]
    a4 = np.swapaxes(a.reshape(lead + (m, parts, lb)), -2, -3)
    b4 = np.swapaxes(b.reshape(b.shape[:-2] + (k, parts, lb)), -2, -3)
    return np.matmul(a4, np.swapaxes(b4, -1, -2)).sum(axis=-3)


def scratch(owner, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A work array kept on `owner` (a layer) and reused while the shape stays the same.

    Training only, and only for arrays that never leave the layer (im2col matrices): a fresh
    20 MB array costs thousands of page faults on first touch, often more than the matmul that
    reads it. Inference allocates afresh, so concurrent inference calls never share memory,
    and drops the layer's work arrays (the first evaluation after training frees them)."""
    bufs = owner.__dict__.setdefault("_scratch", {})
    a = bufs.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = bufs[key] = np.empty(shape, dtype)
    return a


_WORK = threading.local()  # per thread: {key: flat buffer}, see work_buffer


def work_buffer(key: str, size: int, dtype) -> np.ndarray:
    """A flat work array of `size` elements for use inside one layer call (a conv's im2col row
    blocks, its input gradient's dcols), shared by every layer run on this thread and kept
    (grown, never shrunk) across calls: fresh pages cost page faults as in `scratch`, and one
    buffer per layer (ResNet-18: 67 MB) was most of the engine's excess memory over PyTorch's.
    Per thread, so a training in a worker thread never shares one with another."""
    bufs = _WORK.__dict__.setdefault("bufs", {})
    dtype = np.dtype(dtype)
    a = bufs.get((key, dtype))
    if a is None or a.size < size:
        a = bufs[(key, dtype)] = np.empty(size, dtype)
    return a[:size]


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


@functools.lru_cache(maxsize=256)
def _chunk_length(length: int, target: int = 4096) -> int | None:
    """A divisor of `length` near `target` (between target/2 and 2·target), or None."""
    best = None
    for parts in range(max(2, length // (2 * target)), length // (target // 2) + 1):
        if length % parts == 0:
            lb = length // parts
            if best is None or abs(lb - target) < abs(best - target):
                best = lb
    return best


def matmul_wide(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(..., M, K) @ (..., K, L) -> (..., M, L) for small M·K and a long L (conv matmuls).

    OpenBLAS packs the whole (K, L) operand when M is small; cut into column blocks of ~4096
    that stay in cache, the same product runs up to 2× faster (LeNet-5's 6-filter conv)."""
    m, k = a.shape[-2:]
    length = b.shape[-1]
    lb = _chunk_length(length) if m * k <= 1024 and length >= 16384 else None
    if lb is None:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (m, length),
                       np.result_type(a, b))
    parts = length // lb
    b4 = np.swapaxes(b.reshape(b.shape[:-1] + (parts, lb)), -2, -3)
    o4 = np.swapaxes(out.reshape(out.shape[:-1] + (parts, lb)), -2, -3)
    np.matmul(a[..., None, :, :], b4, out=o4)
    return out


BLOCK_BYTES = 2 << 20  # work-block size of conv_input_grad: fits the L2 cache


def conv_input_grad(wmat: np.ndarray, dyc: np.ndarray, kernel, stride, dilation,
                    xp_shape: tuple[int, ...], wo: int, owner=None,
                    compiled: bool | None = None) -> np.ndarray:
    """Input gradient of a CHWN convolution: col2im(Wᵀ @ dy) -> (C, Hp, Wp, N).

    wmat (G, Cout/G, Cg·kh·kw); dyc (G, Cout/G, Ho·Wo·N). Done in blocks of output rows
    whose dcols (~2 MB) stay in cache while their kh·kw taps are added into the result: at
    LeNet-5's conv2, batch 256, 1.9× faster than writing the whole 15 MB dcols and reading
    it back. With `owner` (a layer, while training) the block buffer is the thread's shared
    work_buffer. The taps are added by one compiled call per block where `compiled` (default:
    kernels.for_inference(), float32 only: the version warm() compiled, so the GUI thread never
    waits for a compile), else one NumPy += per tap: LeNet-5's conv2 (25 taps, batch 64)
    0.55 -> 0.2 ms."""
    from . import kernels, ort_conv

    if compiled is None:
        compiled = kernels.for_inference() and np.result_type(wmat, dyc) == np.float32

    g, og, kk = wmat.shape
    c, n = xp_shape[0], xp_shape[3]
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    wn = wo * n
    ho = dyc.shape[-1] // wn
    dtype = np.result_type(wmat, dyc)
    row_bytes = g * kk * wn * np.dtype(dtype).itemsize
    # blocks pay off once dcols is well past the cache (batch 256); a 4 MB one (batch 64) is
    # faster in one piece
    rows = ho if ho * row_bytes <= 4 * BLOCK_BYTES else max(1, min(ho, BLOCK_BYTES // row_bytes))
    size = (g * kk * rows * wn,)
    work = np.empty(size, dtype) if owner is None else work_buffer("dcols", size[0], dtype)
    dxp = np.zeros(xp_shape, dtype)
    dy4 = dyc.reshape(g, og, ho, wn)
    wt = wmat.transpose(0, 2, 1)
    for r0 in range(0, ho, rows):
        nr = min(rows, ho - r0)
        blk = work[:g * kk * nr * wn].reshape(g, kk, nr * wn)
        prod = ort_conv.matmul(wt[0], dy4[0, :, r0:r0 + nr].reshape(og, nr * wn)) \
            if g == 1 and kk >= ort_conv.MIN_ROWS else None  # MLAS: faster on this tall product
        if prod is None:
            np.matmul(wt, dy4[:, :, r0:r0 + nr].reshape(g, og, nr * wn), out=blk)
        else:
            blk = prod.reshape(1, kk, nr * wn)
        taps = blk.reshape(c, kh, kw, nr, wo, n)
        if compiled and kernels.col2im_add(taps, dxp, r0, (sh, sw), (dh, dw)):
            continue
        for i in range(kh):
            top = r0 * sh + i * dh
            for j in range(kw):
                dxp[:, top:top + sh * (nr - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw] \
                    += taps[:, i, j]
    return dxp
