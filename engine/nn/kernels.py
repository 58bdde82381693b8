"""Compiled kernels (numba) for the loops NumPy runs slowly, each with the NumPy code it
replaces kept as the fallback (numba missing, CNND_KERNELS=numpy, or a kernel that fails).

Depthwise convolution (MobileNet, EfficientNet, mobile_se): NumPy computes it as kh·kw
broadcast multiply-adds over strided windows, 1.4-3 GFLOP/s; this loop keeps each output row's
batch vector in cache and reads every input row once per tap, 4-10× faster forward and ~3×
backward (bench/bench_kernels.py). The kernels work on the engine's CHWN memory (batch
innermost, contiguous) and never allocate; the caller owns every array.

    if kernels.depthwise_forward(x, w, y, stride, dilation, pads): ...   # False: NumPy

Compilation is lazy (the first depthwise layer to run pays ~2 s, once per machine: numba's
cache goes to the platform's cache folder) and the compiled code releases the GIL, so a
training worker thread never blocks the GUI. Tests run both paths (tests/engine/test_kernels).
"""

from __future__ import annotations

import os
import threading

import numpy as np

_LOCK = threading.Lock()
_KERNELS: dict | None = None  # name -> compiled function, {} when numba is unavailable
ENV = "CNND_KERNELS"  # "numpy": never use the compiled kernels


def enabled() -> bool:
    """Whether the compiled kernels run (numba importable and not switched off)."""
    return os.environ.get(ENV, "").lower() != "numpy" and bool(_kernels())


def _kernels() -> dict:
    global _KERNELS
    if _KERNELS is None:
        with _LOCK:
            if _KERNELS is None:
                _KERNELS = _compile()
    return _KERNELS


def _compile() -> dict:
    if "NUMBA_CACHE_DIR" not in os.environ:  # a writable place for the compiled code
        try:
            import platformdirs

            os.environ["NUMBA_CACHE_DIR"] = os.path.join(
                platformdirs.user_cache_dir("cnn-designer", appauthor=False), "numba")
        except ImportError:  # pragma: no cover - platformdirs is a dependency
            pass
    try:
        from numba import njit
    except ImportError:
        return {}
    opts = {"nogil": True, "cache": True}

    # x (C, H, W, N) unpadded: a tap outside the map reads the padding's zero (pt, pl: the
    # padding above and left), so no padded copy is made or kept

    @njit(**opts)
    def dw_forward(x, w, y, sh, sw, dh, dw, pt, pl):  # pragma: no cover - compiled
        c_, ho_, wo_, n_ = y.shape
        h_, w_ = x.shape[1], x.shape[2]
        kh, kw = w.shape[1], w.shape[2]
        acc = np.empty(n_, y.dtype)
        for c in range(c_):
            for ho in range(ho_):
                for wo in range(wo_):
                    acc[:] = 0
                    for i in range(kh):
                        r = ho * sh + i * dh - pt
                        if r < 0 or r >= h_:
                            continue
                        for j in range(kw):
                            q = wo * sw + j * dw - pl
                            if q < 0 or q >= w_:
                                continue
                            wv = w[c, i, j]
                            xr = x[c, r, q]
                            for n in range(n_):
                                acc[n] += wv * xr[n]
                    y[c, ho, wo, :] = acc

    @njit(**opts)
    def dw_weight_grad(x, dy, dwt, sh, sw, dh, dw, pt, pl):  # pragma: no cover - compiled
        c_, ho_, wo_, n_ = dy.shape
        h_, w_ = x.shape[1], x.shape[2]
        kh, kw = dwt.shape[1], dwt.shape[2]
        acc = np.empty((kh, kw, n_), dy.dtype)  # per-lane sums: vectorised, summed at the end
        for c in range(c_):
            acc[:] = 0
            for ho in range(ho_):
                for wo in range(wo_):
                    d = dy[c, ho, wo]
                    for i in range(kh):
                        r = ho * sh + i * dh - pt
                        if r < 0 or r >= h_:
                            continue
                        for j in range(kw):
                            q = wo * sw + j * dw - pl
                            if q < 0 or q >= w_:
                                continue
                            xr = x[c, r, q]
                            a = acc[i, j]
                            for n in range(n_):
                                a[n] += d[n] * xr[n]
            for i in range(kh):
                for j in range(kw):
                    dwt[c, i, j] = acc[i, j].sum()

    @njit(**opts)
    def dw_input_grad(dy, w, dx, sh, sw, dh, dw, pt, pl):  # pragma: no cover - compiled
        # a gather: each input row sums the taps that read it and is written once
        c_, ho_, wo_, n_ = dy.shape
        _, h_, w_, _ = dx.shape
        kh, kw = w.shape[1], w.shape[2]
        acc = np.empty(n_, dy.dtype)
        for c in range(c_):
            for r in range(h_):
                for q in range(w_):
                    acc[:] = 0
                    for i in range(kh):
                        a = r + pt - i * dh
                        if a < 0 or a % sh or a // sh >= ho_:
                            continue
                        for j in range(kw):
                            b = q + pl - j * dw
                            if b < 0 or b % sw or b // sw >= wo_:
                                continue
                            wv = w[c, i, j]
                            d = dy[c, a // sh, b // sw]
                            for n in range(n_):
                                acc[n] += wv * d[n]
                    dx[c, r, q, :] = acc

    return {"dw_forward": dw_forward, "dw_weight_grad": dw_weight_grad,
            "dw_input_grad": dw_input_grad}


def _ok(*arrays) -> bool:
    dt = arrays[0].dtype
    return dt in (np.float32, np.float64) and all(
        a.dtype == dt and a.flags.c_contiguous for a in arrays)


def depthwise_forward(x: np.ndarray, w: np.ndarray, y: np.ndarray, stride, dilation,
                      pads) -> bool:
    """y (C, Ho, Wo, N) = depthwise convolution of CHWN x (C, H, W, N) with w (C, kh, kw),
    zero padding `pads` (top, left, bottom, right), no bias; False (nothing written) where the
    compiled kernel cannot run."""
    if not enabled() or not _ok(x, w, y):
        return False
    return _run("dw_forward", x, w, y, *_geometry(stride, dilation, pads))


def depthwise_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray, dx: np.ndarray | None,
                       dwt: np.ndarray | None, stride, dilation, pads) -> bool:
    """Writes dL/dx into dx (C, H, W, N, every element) and dL/dw into dwt (C, kh, kw), either
    of them None when not wanted, from dy (C, Ho, Wo, N); False (nothing written) where the
    compiled kernels cannot run."""
    arrays = [a for a in (x, w, dy, dx, dwt) if a is not None]
    if not enabled() or not _ok(*arrays):
        return False
    geo = _geometry(stride, dilation, pads)
    if dwt is not None and not _run("dw_weight_grad", x, dy, dwt, *geo):
        return False
    return dx is None or _run("dw_input_grad", dy, w, dx, *geo)


def _geometry(stride, dilation, pads) -> tuple[int, ...]:
    return (int(stride[0]), int(stride[1]), int(dilation[0]), int(dilation[1]), int(pads[0]),
            int(pads[1]))


def _run(name: str, *args) -> bool:
    """Call a kernel; a kernel numba cannot compile (an older numba) is switched off for good
    and the caller falls back to NumPy, which then writes every output again (the kernels
    only write into the given arrays, and a compile error happens before they write)."""
    global _KERNELS
    try:
        _kernels()[name](*args)
    except Exception as exc:  # numba's typing and lowering errors have many types
        if type(exc).__module__.split(".")[0] != "numba":
            raise
        with _LOCK:
            _KERNELS = {}
        return False
    return True
