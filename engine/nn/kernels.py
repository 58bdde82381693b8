"""Compiled kernels (numba) for the loops NumPy runs slowly, each with the NumPy code it
replaces kept as the fallback (numba missing, CNND_KERNELS=numpy, or a kernel that fails).

Depthwise convolution (MobileNet, EfficientNet, mobile_se): NumPy computes it as kh·kw
broadcast multiply-adds over strided windows, 1.4-3 GFLOP/s; these loops keep each output
row's batch vector in cache and read the unpadded input with bounds checks. BatchNorm's
training passes run one channel at a time while its rows are in cache; the ReLU, ReLU6 and
HardSwish gradients are one-pass ufuncs; max pooling takes each window's maximum and its tap
in one pass (NumPy: four per tap); col2im adds a block's taps in one call (NumPy: one += per
tap, the same order); a dense convolution's weight gradient reads its taps where they are
instead of building an im2col matrix for a matmul (16 ch 32×32, batch 64: 6.1 -> 3.9 ms,
bench/bench_kernels.py), and a conv with few input channels (an RGB stem, LeNet-5) runs as a
direct convolution (no im2col). On CPUs with AVX-512 the code uses 512-bit vectors
(_full_width_vectors). Measured against NumPy at batch 64, 1 thread, forward + backward
(python bench/bench_kernels.py): depthwise 3.8-5.4×, BatchNorm 1.6-2.0×, the gradients
1.3-1.7×, max pooling 1.8× (6 ch 28×28) to 3.1-4.5× (32-64 ch 32×32). The kernels work on
the engine's CHWN memory (batch innermost, contiguous) and never allocate their outputs;
channel ranges are split over threads() threads.

    if kernels.depthwise_forward(x, w, y, stride, dilation, pads): ...   # False: NumPy

Compiled on first use (~2-5 s once per machine: numba's cache goes to the platform's cache
folder; loading it costs the process ~118 MB of RSS once). The compiled code releases the GIL.
Training loads the kernels where it runs (a worker thread in the GUI); the designer loads
them in the background at start and its inference uses them only once loaded (for_inference),
so the GUI thread never waits for a compile. Tests run both paths (tests/engine/test_kernels.py).
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

_LOCK = threading.Lock()
_KERNELS: dict | None = None  # name -> compiled function, {} when numba is unavailable
_WARM = False  # warm() has loaded every kernel
BUILD_NOTE = ""  # what numba said when a build of the kernels failed (with its cache, or both)
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
        import numba
    except ImportError:
        return {}
    _full_width_vectors(numba)
    for cache in (True, False):
        # with the cache first; numba raises for a cache folder it cannot write ("cannot
        # cache function"): then compiled for this process only; failing both, NumPy
        try:
            return _define(cache=cache)
        except Exception as exc:  # noqa: BLE001 - numba's errors have many types
            global BUILD_NOTE
            BUILD_NOTE = f"numba {'with' if cache else 'without'} its cache: {exc}"
    return {}


def _full_width_vectors(numba) -> None:
    """Let LLVM vectorise with the CPU's full 512-bit registers where it has AVX-512: its tuning
    for these CPUs prefers 256 bits, and the weight gradient's sums (conv_weight_grad) then
    reach half the FMA rate (16 ch 32×32, batch 64, 1 thread: 6.1 ms by im2col + MLAS, 4.8 at
    256 bits, 3.9 at 512). Set once, before numba builds its first function (its cache keys
    the code by these features); NUMBA_CPU_FEATURES, where set, is left as it is."""
    if os.environ.get("NUMBA_CPU_FEATURES") or numba.config.CPU_FEATURES is not None \
            or not getattr(numba.config, "ENABLE_AVX", True):
        return  # the user's features, or AVX off (NUMBA_ENABLE_AVX=0, or numba's own VM check)
    try:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features()
    except Exception:  # noqa: BLE001 - an llvmlite that cannot tell: numba's default
        return
    if features.get("avx512f"):
        numba.config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"


def _define(cache: bool) -> dict:
    """The kernels, defined (the ufuncs compiled) with numba's on-disk cache or without."""
    from numba import njit

    opts = {"nogil": True, "cache": cache}

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

    # Max pooling on CHWN x (C, H, W, N) unpadded: a tap outside the map is the padding's
    # -inf, which never wins and is never NaN, so it is skipped. idx gets the tap of each
    # maximum, the first one on ties; the value follows np.maximum (a NaN tap makes it NaN)
    # and the index np.greater, as the NumPy code does

    @njit(inline="always", cache=cache)
    def tap_cell(ho, wo, t, kw, sh, sw, dh, dw, pt, pl):  # pragma: no cover - compiled
        """The input cell (row, column) tap t of output (ho, wo) reads; may be outside."""
        return ho * sh + (t // kw) * dh - pt, wo * sw + (t % kw) * dw - pl

    @njit(**opts)
    def mp_forward(x, y, idx, kh, kw, sh, sw, dh, dw, pt, pl):  # pragma: no cover - compiled
        c_, h_, w_, n_ = x.shape
        ho_, wo_ = y.shape[1], y.shape[2]
        for c in range(c_):
            for ho in range(ho_):
                for wo in range(wo_):
                    acc, ix = y[c, ho, wo], idx[c, ho, wo]
                    r, q = ho * sh - pt, wo * sw - pl
                    if 0 <= r < h_ and 0 <= q < w_:
                        acc[:] = x[c, r, q]
                    else:
                        acc[:] = -np.inf
                    ix[:] = 0
                    for t in range(1, kh * kw):
                        r, q = tap_cell(ho, wo, t, kw, sh, sw, dh, dw, pt, pl)
                        if r < 0 or r >= h_ or q < 0 or q >= w_:
                            continue
                        xr = x[c, r, q]
                        for n in range(n_):
                            v = xr[n]
                            if v > acc[n]:
                                acc[n] = v
                                ix[n] = t
                            elif np.isnan(v):
                                acc[n] = v

    @njit(**opts)
    def mp_backward(dy, idx, dx, kh, kw, sh, sw, dh, dw, pt, pl, add):  # pragma: no cover
        # add: windows overlap (dx zeroed first): tap by tap over all windows, NumPy's order of
        # the sums into a cell (the same bits); else each cell is written by one tap
        c_, ho_, wo_, n_ = dy.shape
        h_, w_ = dx.shape[1], dx.shape[2]
        for c in range(c_):
            if add:
                for t in range(kh * kw):
                    for ho in range(ho_):
                        for wo in range(wo_):
                            r, q = tap_cell(ho, wo, t, kw, sh, sw, dh, dw, pt, pl)
                            if r < 0 or r >= h_ or q < 0 or q >= w_:
                                continue
                            d, ix, o = dy[c, ho, wo], idx[c, ho, wo], dx[c, r, q]
                            for n in range(n_):  # d·0 elsewhere, as NumPy's masked product
                                o[n] += d[n] if ix[n] == t else d[n] * 0
                continue
            for ho in range(ho_):
                for wo in range(wo_):
                    d, ix = dy[c, ho, wo], idx[c, ho, wo]
                    for t in range(kh * kw):
                        r, q = tap_cell(ho, wo, t, kw, sh, sw, dh, dw, pt, pl)
                        if r < 0 or r >= h_ or q < 0 or q >= w_:
                            continue
                        o = dx[c, r, q]
                        for n in range(n_):
                            o[n] = d[n] if ix[n] == t else d[n] * 0

    # col2im in CHWN memory: the kh·kw taps of a block of output rows added into the padded
    # input gradient in one call (NumPy: one strided += per tap), tap by tap in the same order

    @njit(**opts)
    def col2im_add(taps, dxp, r0, sh, sw, dh, dw):  # pragma: no cover - compiled
        # taps (C, kh, kw, rows, Wo, N); dxp (C, Hp, Wp, N)
        c_, kh, kw, nr, wo_, n_ = taps.shape
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    for r in range(nr):
                        for q in range(wo_):
                            src = taps[c, i, j, r, q]
                            dst = dxp[c, (r0 + r) * sh + i * dh, q * sw + j * dw]
                            for n in range(n_):
                                dst[n] += src[n]

    # BatchNorm in training on the (A, C, L) view of its input's memory (engine/layers/norm.py):
    # each channel's statistics, normalisation and gradient while its rows are in cache, the
    # sums in float64

    reduce = dict(opts, fastmath={"reassoc", "contract"})  # vectorised sums; NaN kept

    @njit(**reduce)
    def bn_forward(x3, gamma, beta, eps, y3, mean, var):  # pragma: no cover - compiled
        a_, c_, l_ = x3.shape
        m = a_ * l_
        for c in range(c_):
            s = 0.0
            for a in range(a_):
                row = x3[a, c]
                for i in range(l_):
                    s += row[i]
            mu = s / m
            q = 0.0
            for a in range(a_):
                row = x3[a, c]
                for i in range(l_):
                    d = row[i] - mu
                    q += d * d
            v = q / m
            mean[c], var[c] = mu, v
            sc = gamma[c] / np.sqrt(v + eps)
            sh = beta[c] - mu * sc
            for a in range(a_):
                row, out = x3[a, c], y3[a, c]
                for i in range(l_):
                    out[i] = row[i] * sc + sh

    @njit(**reduce)
    def bn_backward(dy3, x3, mean, inv, gamma, dx3, dgamma, dbeta):  # pragma: no cover
        a_, c_, l_ = x3.shape
        m = a_ * l_
        for c in range(c_):
            sd, sxy = 0.0, 0.0
            for a in range(a_):
                d, xr = dy3[a, c], x3[a, c]
                for i in range(l_):
                    sd += d[i]
                    sxy += d[i] * xr[i]
            dg = (sxy - mean[c] * sd) * inv[c]  # Σ dy·x̂
            dgamma[c], dbeta[c] = dg, sd
            # dx = γ·inv/m · (m·dy − Σdy − x̂·Σdy·x̂) = A·dy + B·x + C
            ca = gamma[c] * inv[c]
            cb = -ca * inv[c] * dg / m
            cc = -ca * sd / m - cb * mean[c]
            if dx3.shape[0] == 0:
                continue
            for a in range(a_):
                d, xr, out = dy3[a, c], x3[a, c], dx3[a, c]
                for i in range(l_):
                    out[i] = ca * d[i] + cb * xr[i] + cc

    # BatchNorm in one shard of a data-parallel step (engine/nn/parallel.py): the per-channel
    # sums the shards add up (float64), and the passes that use the whole batch's statistics

    @njit(**reduce)
    def bn_sums(a3, b3, mean, s, q, own):  # pragma: no cover - compiled
        # s = Σ a; q = Σ (a - mean)² (mean given; `own`: the channel's own mean, found by a
        # first pass over the channel while it is in cache), or Σ a·b (b3 given: dy, x)
        a_, c_, l_ = a3.shape
        centre, cross = mean.shape[0] > 0, b3.shape[0] > 0
        for c in range(c_):
            t, u = 0.0, 0.0
            mu = mean[c] if centre else 0.0
            if own:
                for a in range(a_):
                    row = a3[a, c]
                    for i in range(l_):
                        t += row[i]
                mu, t = t / (a_ * l_), 0.0
            for a in range(a_):
                row = a3[a, c]
                other = b3[a, c] if cross else row
                for i in range(l_):
                    t += row[i]
                    d = row[i] - mu
                    u += d * other[i] if cross else d * d
            s[c], q[c] = t, u

    @njit(**opts)
    def bn_affine(a3, b3, ca, cb, cc, out):  # pragma: no cover - compiled
        # out = ca·a + cb·b + cc per channel (b3 empty: out = ca·a + cc)
        a_, c_, l_ = a3.shape
        two = b3.shape[0] > 0
        for c in range(c_):
            for a in range(a_):
                row, o = a3[a, c], out[a, c]
                if two:
                    other = b3[a, c]
                    for i in range(l_):
                        o[i] = ca[c] * row[i] + cb[c] * other[i] + cc[c]
                else:
                    for i in range(l_):
                        o[i] = ca[c] * row[i] + cc[c]

    # A dense convolution's weight gradient on CHWN memory without an im2col matrix (columns
    # stepping by 1): dW[o, c, i, j] += Σ dy[o, r, q, n] · xp[c, r·sh + i·dh, q + j·dw, n].
    # The sums of 4 filters × 4 taps (c, i, j: in this order, so a stem's 3 channels or
    # LeNet-5's 1 block as well as 64 do) stay in registers, vectorised along an output
    # row's Wo·N contiguous values, a chunk at a time that stays in the L1 cache

    @njit(inline="always", **reduce)
    def _tap(x2, taps, k, r, sh, t0, m):  # pragma: no cover - compiled
        # the chunk of the input row that tap k multiplies (taps[k]: channel, row and column
        # offsets, found once per call: no divisions in the loops)
        x0 = taps[k, 2] + t0
        return x2[taps[k, 0], r * sh + taps[k, 1], x0:x0 + m]

    @njit(inline="always", **reduce)
    def _block44(a0, a1, a2, a3, b0, b1, b2, b3, out2, o, k):  # pragma: no cover - compiled
        z = np.float32(0)
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
        s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
        for t in range(a0.shape[0]):
            p0, p1, p2, p3 = a0[t], a1[t], a2[t], a3[t]
            q0, q1, q2, q3 = b0[t], b1[t], b2[t], b3[t]
            s00 += p0 * q0
            s01 += p0 * q1
            s02 += p0 * q2
            s03 += p0 * q3
            s10 += p1 * q0
            s11 += p1 * q1
            s12 += p1 * q2
            s13 += p1 * q3
            s20 += p2 * q0
            s21 += p2 * q1
            s22 += p2 * q2
            s23 += p2 * q3
            s30 += p3 * q0
            s31 += p3 * q1
            s32 += p3 * q2
            s33 += p3 * q3
        out2[o, k] += s00
        out2[o, k + 1] += s01
        out2[o, k + 2] += s02
        out2[o, k + 3] += s03
        out2[o + 1, k] += s10
        out2[o + 1, k + 1] += s11
        out2[o + 1, k + 2] += s12
        out2[o + 1, k + 3] += s13
        out2[o + 2, k] += s20
        out2[o + 2, k + 1] += s21
        out2[o + 2, k + 2] += s22
        out2[o + 2, k + 3] += s23
        out2[o + 3, k] += s30
        out2[o + 3, k + 1] += s31
        out2[o + 3, k + 2] += s32
        out2[o + 3, k + 3] += s33

    @njit(**reduce)
    def conv_weight_grad(x2, d2, out2, kh, kw, n_, sh, dh, dw, r0, r1,
                         chunk):  # pragma: no cover - compiled
        # x2 (C, Hp, Wp·N) padded input; d2 (Co, Ho, Wo·N); out2 (Co, C·kh·kw), added to;
        # output rows r0 .. r1 - 1
        co_, kk = out2.shape
        run = d2.shape[2]
        co4, kk4 = co_ - co_ % 4, kk - kk % 4
        taps = np.empty((kk, 3), np.int64)
        for k in range(kk):
            taps[k, 0] = k // (kh * kw)
            taps[k, 1] = (k // kw) % kh * dh
            taps[k, 2] = k % kw * dw * n_
        for r in range(r0, r1):
            for t0 in range(0, run, chunk):
                m = min(run, t0 + chunk) - t0
                for o in range(0, co_, 4):
                    for k in range(0, kk, 4):
                        if o < co4 and k < kk4:
                            _block44(d2[o, r, t0:t0 + m], d2[o + 1, r, t0:t0 + m],
                                     d2[o + 2, r, t0:t0 + m], d2[o + 3, r, t0:t0 + m],
                                     _tap(x2, taps, k, r, sh, t0, m),
                                     _tap(x2, taps, k + 1, r, sh, t0, m),
                                     _tap(x2, taps, k + 2, r, sh, t0, m),
                                     _tap(x2, taps, k + 3, r, sh, t0, m),
                                     out2, o, k)
                            continue
                        for oo in range(o, min(o + 4, co_)):  # the filters and taps left over
                            a = d2[oo, r, t0:t0 + m]
                            for kx in range(k, min(k + 4, kk)):
                                b = _tap(x2, taps, kx, r, sh, t0, m)
                                s = a[0] * b[0]
                                for t in range(1, m):
                                    s += a[t] * b[t]
                                out2[oo, kx] += s

    # A dense convolution with few input channels (an RGB stem, LeNet-5's) whose columns step
    # by 1, computed directly on CHWN memory: each output row's chunk gets its taps added
    # three at a time along the row's Wo·N contiguous values (im2col + a matmul whose inner
    # dimension is C·kh·kw = 9-150 is bound by copying the im2col matrix)

    @njit(nogil=True, cache=cache, fastmath={"contract"})
    def conv_forward(x2, w, b, y2, n_, sh, dh, dw, r0, r1, chunk):  # pragma: no cover
        # x2 (C, Hp, Wp·N) padded input; w (Co, C, kh, kw); b (Co,); y2 (Co, Ho, Wo·N):
        # output rows r0 .. r1 - 1 written
        co_, c_, kh, kw = w.shape
        run, step = y2.shape[2], dw * n_
        for r in range(r0, r1):
            for t0 in range(0, run, chunk):
                m = min(run, t0 + chunk) - t0
                for o in range(co_):
                    yy = y2[o, r, t0:t0 + m]
                    yy[:] = b[o]
                    for c in range(c_):
                        for i in range(kh):
                            xr = x2[c, r * sh + i * dh]
                            j = 0
                            while j < kw:
                                x0 = j * step + t0
                                a, v0 = xr[x0:x0 + m], w[o, c, i, j]
                                if j + 2 < kw:
                                    p, q = xr[x0 + step:x0 + step + m], \
                                        xr[x0 + 2 * step:x0 + 2 * step + m]
                                    v1, v2 = w[o, c, i, j + 1], w[o, c, i, j + 2]
                                    for t in range(m):
                                        yy[t] += v0 * a[t] + v1 * p[t] + v2 * q[t]
                                    j += 3
                                elif j + 1 < kw:
                                    p, v1 = xr[x0 + step:x0 + step + m], w[o, c, i, j + 1]
                                    for t in range(m):
                                        yy[t] += v0 * a[t] + v1 * p[t]
                                    j += 2
                                else:
                                    for t in range(m):
                                        yy[t] += v0 * a[t]
                                    j += 1

    # Adam's update in one pass over w, g, m, v (NumPy: ten passes over 1 MB chunks), with
    # NumPy's float32 operations in NumPy's order, so the results are bit for bit the same

    @njit(**opts)
    def adam(w, g, m, v, b1, b2, step, eps):  # pragma: no cover - compiled; 1-D float32
        c1, c2 = np.float32(1) - b1, np.float32(1) - b2
        for i in range(w.size):
            gi = g[i]
            mi = m[i] * b1 + gi * c1
            vi = v[i] * b2 + (gi * gi) * c2
            m[i], v[i] = mi, vi
            w[i] -= (mi * step) / (np.sqrt(vi) + eps)

    # CHWN memory <-> ONNX Runtime's blocked NCHWc memory (N, C/B, H, W, B) for its dense
    # convolution (engine/nn/ort_conv.py); each loop writes contiguous runs (B values, or N)

    @njit(**opts)
    def to_blocked(x, out):  # pragma: no cover - compiled; x (C, H, W, N)
        # 16 images at a time along a row: 16 output streams written in order (all N at
        # once had 64 streams a power of two apart, one cache set: 64 ch 32×32 at batch 64
        # took 13.2 ms, 3.6 ms so)
        c_, h_, w_, n_ = x.shape
        b_ = out.shape[4]
        for cb in range(c_ // b_):
            for h in range(h_):
                for n0 in range(0, n_, 16):
                    n1 = min(n0 + 16, n_)
                    for w in range(w_):
                        for n in range(n0, n1):
                            for b in range(b_):
                                out[n, cb, h, w, b] = x[cb * b_ + b, h, w, n]

    @njit(**opts)
    def from_blocked(a, out):  # pragma: no cover - compiled; out (C, H, W, N)
        n_, cbs, h_, w_, b_ = a.shape
        for cb in range(cbs):
            for h in range(h_):
                for w in range(w_):
                    for b in range(b_):
                        row = out[cb * b_ + b, h, w]
                        for n in range(n_):
                            row[n] = a[n, cb, h, w, b]

    # element-wise backward passes as ufuncs: one pass each (NumPy needs a mask pass, a cast
    # and a multiply, or ~9 passes for HardSwish), any memory layout, float32 and float64
    from numba import vectorize

    sigs = ["float32(float32, float32)", "float64(float64, float64)"]

    @vectorize(sigs, nopython=True, cache=cache)
    def relu_grad(dy, y):  # pragma: no cover - compiled
        return dy if y > 0 else dy * 0

    @vectorize(sigs, nopython=True, cache=cache)
    def relu6_grad(dy, y):  # pragma: no cover - compiled; y in (0, 6) iff x in (0, 6)
        return dy if 0 < y < 6 else dy * 0

    @vectorize(sigs, nopython=True, cache=cache)
    def hardswish_grad(dy, x):  # pragma: no cover - compiled; PyTorch's rule at ±3
        if x < -3:
            return dy * 0
        if x > 3:
            return dy
        return dy * (x / 3 + 0.5)

    return {"dw_forward": dw_forward, "dw_weight_grad": dw_weight_grad,
            "dw_input_grad": dw_input_grad, "relu_grad": relu_grad, "relu6_grad": relu6_grad,
            "hardswish_grad": hardswish_grad, "bn_forward": bn_forward,
            "bn_backward": bn_backward, "bn_sums": bn_sums, "bn_affine": bn_affine, "adam": adam,
            "to_blocked": to_blocked, "from_blocked": from_blocked, "mp_forward": mp_forward,
            "mp_backward": mp_backward, "col2im_add": col2im_add,
            "conv_weight_grad": conv_weight_grad, "conv_forward": conv_forward}


def ready() -> bool:
    """Whether the kernels are loaded (warm() has finished) and on: a caller that must not
    wait seconds for a first compile (the GUI thread's inference) uses them only then."""
    return _WARM and os.environ.get(ENV, "").lower() != "numpy" and bool(_KERNELS)


_LOAD_ON_FIRST_USE = True  # inference loads the kernels when it first needs them


def warm_in_background() -> threading.Thread:
    """warm() in a daemon thread, and from now on inference uses the kernels only once they
    are loaded (the designer calls it at start: its GUI thread never waits for a compile)."""
    global _LOAD_ON_FIRST_USE
    _LOAD_ON_FIRST_USE = False
    t = threading.Thread(target=warm, name="cnnd-kernels-warm", daemon=True)
    t.start()
    return t


def for_inference() -> bool:
    """Whether inference should use the kernels now: loading them on first use (the command
    line, a script), or, after warm_in_background(), only once they are loaded."""
    return enabled() if _LOAD_ON_FIRST_USE else ready()


def warm() -> bool:
    """Load (or compile, on a new machine) every kernel for float32 now, on tiny arrays:
    numba loads compiled code on a function's first call, and its LLVM runtime costs the
    process ~100 MB once (bench/bench_nets.py --memory reports it apart). False when off."""
    if not enabled():
        return False
    f = np.float32
    x, w = np.ones((2, 3, 3, 4), f), np.ones((2, 3, 3), f)
    y, dx, dwt = np.empty((2, 1, 1, 4), f), np.empty((2, 3, 3, 4), f), np.empty((2, 3, 3), f)
    depthwise_forward(x, w, y, (1, 1), (1, 1), (0, 0, 0, 0))
    depthwise_backward(x, w, y, dx, dwt, (1, 1), (1, 1), (0, 0, 0, 0))
    x3, v = np.ones((1, 2, 8), f), np.ones(2, f)
    batchnorm_forward(x3, v, v, 1e-5, np.empty_like(x3), np.empty_like(v), np.empty_like(v))
    batchnorm_backward(x3, x3, v, v, v, np.empty_like(x3), np.empty_like(v), np.empty_like(v))
    idx = np.empty(y.shape, np.uint8)
    maxpool_forward(x, y, idx, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0))
    maxpool_backward(y, idx, dx, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), add=True)
    col2im_add(np.ones((2, 3, 3, 1, 1, 4), f), dx, 0, (1, 1), (1, 1))
    conv_weight_grad(x, y, np.empty((2, 2, 3, 3), f), (1, 1), (1, 1))
    conv_forward(x, np.ones((2, 2, 3, 3), f), None, y, (1, 1), (1, 1))
    blocked = np.empty((4, 1, 3, 3, 2), f)
    to_blocked(x, blocked)
    from_blocked(blocked, np.empty_like(x))
    for name in ("relu_grad", "relu6_grad", "hardswish_grad"):
        elementwise(name, v, v)
    global _WARM
    _WARM = enabled()
    return _WARM


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
    return _run("dw_forward", x, w, y, *_geometry(stride, dilation, pads), split=(0, 0, 0))


def depthwise_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray, dx: np.ndarray | None,
                       dwt: np.ndarray | None, stride, dilation, pads) -> bool:
    """Writes dL/dx into dx (C, H, W, N, every element) and dL/dw into dwt (C, kh, kw), either
    of them None when not wanted, from dy (C, Ho, Wo, N); False (nothing written) where the
    compiled kernels cannot run."""
    arrays = [a for a in (x, w, dy, dx, dwt) if a is not None]
    if not enabled() or not _ok(*arrays):
        return False
    geo = _geometry(stride, dilation, pads)
    if dwt is not None and not _run("dw_weight_grad", x, dy, dwt, *geo, split=(0, 0, 0)):
        return False
    return dx is None or _run("dw_input_grad", dy, w, dx, *geo, split=(0, 0, 0))


def maxpool_forward(x: np.ndarray, y: np.ndarray, idx: np.ndarray, kernel, stride, dilation,
                    pads) -> bool:
    """y (C, Ho, Wo, N) = max pooling of CHWN x (C, H, W, N), padding `pads` (top, left, ...:
    only top and left are read; the output's size says where the windows end), and idx (y's
    shape, uint8 or uint16) = the tap (i·kw + j) of each maximum; False (nothing written)
    where the compiled kernel cannot run."""
    if not enabled() or not _ok(x, y) or idx.dtype not in (np.uint8, np.uint16) \
            or not idx.flags.c_contiguous:
        return False
    return _run("mp_forward", x, y, idx, int(kernel[0]), int(kernel[1]),
                *_geometry(stride, dilation, pads), split=(0, 0, 0))


def maxpool_backward(dy: np.ndarray, idx: np.ndarray, dx: np.ndarray, kernel, stride,
                     dilation, pads, add: bool) -> bool:
    """dx (C, H, W, N) gets dy (C, Ho, Wo, N) at each window's maximum (idx from
    maxpool_forward): added where windows overlap (`add`: dx zeroed by the caller), else
    written, with zeros at the window's other taps; False where the kernel cannot run."""
    if not enabled() or not _ok(dy, dx) or idx.dtype not in (np.uint8, np.uint16) \
            or not idx.flags.c_contiguous:
        return False
    return _run("mp_backward", dy, idx, dx, int(kernel[0]), int(kernel[1]),
                *_geometry(stride, dilation, pads), bool(add), split=(0, 0, 0))


def col2im_add(taps: np.ndarray, dxp: np.ndarray, r0: int, stride, dilation) -> bool:
    """dxp (C, Hp, Wp, N) += each tap (C, kh, kw, rows, Wo, N) of output rows r0 ... at its
    place; False (nothing added) where the kernel cannot run."""
    if not enabled() or not _ok(taps, dxp):
        return False
    return _run("col2im_add", taps, dxp, int(r0), int(stride[0]), int(stride[1]),
                int(dilation[0]), int(dilation[1]), split=(0, 0))


MAX_WEIGHT_GRAD = 64 * 64 * 9  # conv_weight_grad: weights above which im2col + MLAS is faster
# (each 4 filters re-read every tap: batch 32, 3×3, 256 ch 8×8 37 ms against 14 ms)
CHUNK = 1024  # the dense conv kernels: values of an output row per pass (4 filters' and 4
# taps' chunks, 32 KB, stay near the core; 512: 64 ch 16×16 10% slower, 16 ch 32×32 12%)


def conv_weight_grad(xp: np.ndarray, dy: np.ndarray, out: np.ndarray, stride, dilation) -> bool:
    """out (Co, C, kh, kw) = the weight gradient of a dense (groups 1) convolution from its
    padded CHWN input xp (C, Hp, Wp, N) and dy (Co, Ho, Wo, N), without an im2col matrix; the
    output rows are shared out over threads() threads, each summing into its own array. False
    (out not written) where the kernel cannot run."""
    if not enabled() or not _ok(xp, dy, out) or stride[1] != 1 or out.size > MAX_WEIGHT_GRAD:
        return False  # strided columns: runs of N values, too short; a wide conv: MLAS wins
    c, hp, wp, n = xp.shape
    co, ho, wo, _ = dy.shape
    kh, kw = out.shape[2:]
    x2, d2 = xp.reshape(c, hp, wp * n), dy.reshape(co, ho, wo * n)
    geo = (int(kh), int(kw), int(n), int(stride[0]), int(dilation[0]), int(dilation[1]))
    k = _row_parts(ho, c * kh * kw * ho * wo * n)
    bounds = [ho * p // k for p in range(k + 1)]
    parts = [np.zeros((co, c * kh * kw), out.dtype) for _ in range(k)]  # each part's own sums
    if not _run_parts("conv_weight_grad", k, lambda p: (x2, d2, parts[p], *geo, bounds[p],
                                                         bounds[p + 1], CHUNK)):
        return False
    out[:] = parts[0].reshape(out.shape)
    for p in parts[1:]:
        out += p.reshape(out.shape)
    return True


def _row_parts(rows: int, im2col_size: int) -> int:
    """Threads to share a conv's output rows over: threads() where its im2col would have at
    least MIN_SPLIT elements per thread, one else."""
    return max(1, min(threads(), rows, im2col_size // MIN_SPLIT))


def _run_parts(name: str, k: int, args_of) -> bool:
    """Kernel `name` on k parts at once (args_of(p): part p's arguments); False (switched off)
    where numba cannot compile it, as _run."""
    try:
        fn = _kernels()[name]
        in_parallel(lambda p: fn(*args_of(p)), k)
    except Exception as exc:  # numba's typing and lowering errors have many types
        if type(exc).__module__.split(".")[0] != "numba":
            raise
        _switch_off()
        return False
    return True


def conv_forward(xp: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray, stride,
                 dilation) -> bool:
    """y (Co, Ho, Wo, N) = a dense (groups 1) convolution of the padded CHWN input xp (C, Hp,
    Wp, N) with w (Co, C, kh, kw) and bias (or none), computed directly (no im2col), for
    columns stepping by 1; the output rows are shared out over threads() threads. False (y
    not written) where the kernel cannot run."""
    if not enabled() or stride[1] != 1:
        return False
    co, ho, wo, n = y.shape
    b = np.zeros(co, y.dtype) if bias is None else np.ascontiguousarray(bias, y.dtype)
    if not _ok(xp, w, b, y):
        return False
    c, hp, wp, _ = xp.shape
    x2, y2 = xp.reshape(c, hp, wp * n), y.reshape(co, ho, wo * n)
    geo = (int(n), int(stride[0]), int(dilation[0]), int(dilation[1]))
    k = _row_parts(ho, w[0].size * ho * wo * n)
    bounds = [ho * p // k for p in range(k + 1)]
    return _run_parts("conv_forward", k, lambda p: (x2, w, b, y2, *geo, bounds[p],
                                                     bounds[p + 1], CHUNK))


def batchnorm_forward(x3: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
                      y3: np.ndarray, mean: np.ndarray, var: np.ndarray) -> bool:
    """Training BatchNorm over the (A, C, L) view x3: writes y3, and each channel's batch mean
    and (biased) variance; False (nothing written) where the kernel cannot run."""
    if not enabled() or not _ok(x3, gamma, beta, y3, mean, var):
        return False
    return _run("bn_forward", x3, gamma, beta, float(eps), y3, mean, var,
                split=(1, 0, 0, None, 1, 0, 0) if x3.shape[0] == 1 else None)


def batchnorm_backward(dy3: np.ndarray, x3: np.ndarray, mean: np.ndarray, inv: np.ndarray,
                       gamma: np.ndarray, dx3: np.ndarray | None, dgamma: np.ndarray,
                       dbeta: np.ndarray) -> bool:
    """BatchNorm's training backward: dγ, dβ and (unless dx3 is None) dx3; False where the
    kernel cannot run."""
    arrays = [a for a in (dy3, x3, mean, inv, gamma, dx3, dgamma, dbeta) if a is not None]
    if not enabled() or not _ok(*arrays):
        return False
    out = np.empty((0, 0, 0), dy3.dtype) if dx3 is None else dx3
    return _run("bn_backward", dy3, x3, mean, inv, gamma, out, dgamma, dbeta,
                split=(1, 1, 0, 0, 0, None if dx3 is None else 1, 0, 0)
                if x3.shape[0] == 1 else None)


def batchnorm_sums(a3: np.ndarray, mean: np.ndarray | str | None = None,
                   b3: np.ndarray | None = None):
    """Per channel of the (A, C, L) view a3, in float64: (Σa, Σ(a − mean)²) with `mean` (an
    array, or "own": each channel's own mean, one pass over memory), (Σa, Σa·b) with `b3`,
    else (Σa, Σa²); None where the kernel cannot run."""
    c = a3.shape[1]
    empty3 = np.empty((0, 0, 0), a3.dtype)
    arrays = [a for a in (a3, b3) if a is not None]
    if not enabled() or not _ok(*arrays) or (b3 is not None and b3.dtype != a3.dtype):
        return None
    s, q = np.empty(c), np.empty(c)
    own = isinstance(mean, str)
    m = np.empty(0) if mean is None or own else np.ascontiguousarray(mean, np.float64)
    if not _run("bn_sums", a3, empty3 if b3 is None else b3, m, s, q, own):
        return None
    return s, q


def batchnorm_affine(a3: np.ndarray, ca, cc, out: np.ndarray, b3: np.ndarray | None = None,
                     cb=None) -> bool:
    """out = ca·a3 (+ cb·b3) + cc, per channel of the (A, C, L) views; False where the kernel
    cannot run."""
    arrays = [a for a in (a3, b3, out) if a is not None]
    if not enabled() or not _ok(*arrays) or any(a.dtype != out.dtype for a in arrays):
        return False
    dt = out.dtype
    coef = [np.ascontiguousarray(v, dt) for v in (ca, ca if cb is None else cb, cc)]
    return _run("bn_affine", a3, np.empty((0, 0, 0), dt) if b3 is None else b3, *coef, out)


def adam_update(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, b1, b2, step,
                eps) -> bool:
    """Adam's in-place update of float32 w, m, v from g (engine/nn/optim.py's _adam_update in
    one pass, the same numbers); False where the kernel cannot run."""
    arrays = (w, g, m, v)
    if not enabled() or not _ok(*arrays) or w.dtype != np.float32 \
            or any(a.shape != w.shape for a in arrays):
        return False
    f = np.float32
    return _run("adam", *(a.reshape(-1) for a in arrays), f(b1), f(b2), f(step), f(eps))


def to_blocked(x: np.ndarray, out: np.ndarray) -> bool:
    """out (N, C/B, H, W, B) = CHWN x (C, H, W, N) in blocks of B channels; False (nothing
    written) where the kernel cannot run."""
    if not enabled() or not _ok(x, out):
        return False
    return _run("to_blocked", x, out, split=(1, 2))


def from_blocked(a: np.ndarray, out: np.ndarray) -> bool:
    """out (C, H, W, N) = blocked a (N, C/B, H, W, B); False where the kernel cannot run."""
    if not enabled() or not _ok(a, out):
        return False
    return _run("from_blocked", a, out, split=(2, 1))


def elementwise(name: str, *arrays: np.ndarray) -> np.ndarray | None:
    """A new array from the element-wise kernel `name` ("relu_grad", "relu6_grad":
    (dy, y); "hardswish_grad": (dy, x)), or None where it cannot run (NumPy's turn)."""
    if not enabled() or any(a.dtype not in (np.float32, np.float64) or a.dtype != arrays[0].dtype
                            for a in arrays):
        return None
    fn = _kernels().get(name)
    if fn is None:
        return None
    from .ops import memory_view

    perm, _ = memory_view(arrays[-1])  # the forward's array: its memory layout for all
    if perm is not None:  # a ufunc over arrays in different layouts strides through memory
        arrays = tuple(a if memory_view(a)[0] == perm else
                       np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))
                       for a in arrays)
    try:
        return split_pass(fn, np.empty_like(arrays[-1]), *arrays)
    except Exception as exc:  # numba's errors: switched off, NumPy computes it
        if type(exc).__module__.split(".")[0] != "numba":
            raise
        _switch_off()
        return None


def _geometry(stride, dilation, pads) -> tuple[int, ...]:
    return (int(stride[0]), int(stride[1]), int(dilation[0]), int(dilation[1]), int(pads[0]),
            int(pads[1]))


_LOCAL = threading.local()  # .one: this thread runs one shard of a step (nn/parallel.py)


@contextlib.contextmanager
def one_thread():
    """Within it, threads() is 1 on this thread: the kernels, ONNX Runtime's sessions and the
    weight gradient's split run on it alone (a shard of a data-parallel step)."""
    before = getattr(_LOCAL, "one", False)
    _LOCAL.one = True
    try:
        yield
    finally:
        _LOCAL.one = before


def threads() -> int:
    """The threads the engine uses (its compiled kernels, its ONNX Runtime inference): the BLAS
    setting it was started with (OPENBLAS / OMP / MKL_NUM_THREADS), else the cores this process
    may use (runtime.default_threads), at most 16; 1 inside one_thread()."""
    from ..onnx.runtime import default_threads

    if getattr(_LOCAL, "one", False):
        return 1

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        try:
            n = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if n > 0:
            return min(n, 16)
    return default_threads()


MIN_SPLIT = 1 << 18  # elements of the biggest array per thread below which one thread runs it
# (the other threads sleep between calls: waking one costs ~0.1 ms on this 2-core VM)
_POOL = None
_POOL_SIZE = 0


def _pool(n: int):
    """A thread pool of at least n workers (kept; a bigger one replaces it when asked)."""
    global _POOL, _POOL_SIZE
    from concurrent.futures import ThreadPoolExecutor

    with _LOCK:
        if _POOL is None or _POOL_SIZE < n:
            if _POOL is not None:
                _POOL.shutdown(wait=False)  # its idle threads end; running parts finish
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cnnd-kernel")
            _POOL_SIZE = n
        return _POOL


def in_parallel(part, n: int) -> list:
    """[part(0), ..., part(n - 1)]: part 0 on this thread, the others on the kernel pool's
    threads at the same time; for work that lets go of the GIL (compiled kernels, NumPy copies,
    ONNX Runtime sessions). Every part has finished before an error reaches the caller (a
    fallback may then rewrite the same outputs)."""
    if n <= 1:
        return [part(0)]
    futures = [_pool(n - 1).submit(part, k) for k in range(1, n)]
    try:
        first = part(0)
    finally:
        for f in futures:
            f.exception()
    return [first] + [f.result() for f in futures]


MIN_SPLIT_PASS = 1 << 20  # elements per thread below which split_pass runs one call (a
# ReLU gradient of 2M elements: 1.8 -> 1.1 ms in 2 threads; at 1M the wake-up eats the gain)


def split_pass(fn, out: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
    """out = fn(*arrays) for an element-wise pass fn(*parts, out=part) (a ufunc, or a lambda
    around one), cut along out's outermost memory axis into one part per thread: one pass over
    memory is bound by one core's bandwidth, and NumPy's and numba's ufunc loops let go of the
    GIL. The arrays have out's shape and memory layout (CHWN or NCHW); anything else, or a
    small array, runs in one call."""
    from .ops import memory_view

    n = min(threads(), out.size // MIN_SPLIT_PASS)
    perm = memory_view(out)[0] if n > 1 else None
    if perm is None or any(a.shape != out.shape or a.strides != out.strides for a in arrays):
        fn(*arrays, out=out)
        return out
    ax = perm[0]
    n = min(n, out.shape[ax])
    bounds = [out.shape[ax] * k // n for k in range(n + 1)]

    def part(k):
        idx = (slice(None),) * ax + (slice(bounds[k], bounds[k + 1]),)
        fn(*[a[idx] for a in arrays], out=out[idx])

    in_parallel(part, n)
    return out


def _run(name: str, *args, split: tuple | None = None) -> bool:
    """Call a kernel; a kernel numba cannot compile (an older numba) is switched off for good
    and the caller falls back to NumPy, which then writes every output again (the kernels
    only write into the given arrays, and a compile error happens before they write).

    `split`: per argument, the axis holding the channels (None: passed whole): the channels
    are cut into one contiguous range per thread (threads()), each run by the GIL-free kernel
    in its own thread; the channels are independent, so the result is the same."""
    if not split:
        return _run_parts(name, 1, lambda k: args)
    split = tuple(split) + (None,) * (len(args) - len(split))
    arrays = [a for a, ax in zip(args, split) if ax is not None]
    c = args[0].shape[split[0]]
    n = min(threads(), c, max(1, max(a.size for a in arrays) // MIN_SPLIT) if arrays else 1)
    bounds = [c * k // n for k in range(n + 1)]
    return _run_parts(name, n, lambda k: [
        a if ax is None else a[(slice(None),) * ax + (slice(bounds[k], bounds[k + 1]),)]
        for a, ax in zip(args, split)])


def _switch_off() -> None:
    global _KERNELS
    with _LOCK:
        _KERNELS = {}
