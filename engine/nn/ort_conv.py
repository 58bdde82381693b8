"""Dense convolution (groups 1) in training by ONNX Runtime's blocked "NCHWc" kernel (MLAS).

The engine's own convolution is im2col + a BLAS matmul. For the dense 3×3 convs of 16-128
channels that small_vgg, small_resnet and ResNet-18 are made of, that matmul is short (M =
16-128 filters) and the im2col matrix is 9× the input: OpenBLAS reaches 46-77 GFLOP/s of its
150 at 1 thread. ONNX Runtime's CPU provider has a direct convolution on channel-blocked memory
(N, C/B, H, W, B), B = 16 with AVX-512 (8 with AVX2), that runs the same layers at 130-147
GFLOP/s at 1 thread and 260-290 at 2 (bench/bench_nets.py). ONNX Runtime uses it only for
inference, after rewriting a model's constant weights; here its operator
(com.microsoft.nchwc::Conv) runs alone in a tiny model whose weights are an input, so it serves
a training step whose weights change every step:

    y = ort_conv.forward(x4, w, bias, stride, dilation, pads)   # CHWN in and out, or None
    dx = ort_conv.input_grad(dy4, w, dilation, pads, h, w)      # stride 1, or None

A conv whose columns step by 1 runs on the engine's CHWN memory as it is: (C, H, W, N) read as
one image (1, C, H, W·N) whose columns are a pixel's N samples side by side, convolved with the
column taps dilated by N and the column padding times N, so each tap reads the same sample of
a neighbouring pixel (the same sums in the same order: the result is bit for bit the per-image
convolution's). ONNX Runtime's own layout changes (ReorderInput / ReorderOutput, vectorised:
0.4-0.5 ms for 4 MB) then move it in and out of the blocked layout, so CHWN goes in and comes
out. Forward at batch 64, 1 thread, per-image -> wide: 16 ch 32×32 5.3 -> 4.4 ms, 32 ch 16×16
3.5 -> 3.2 ms, 64 ch 16×16 11.8 -> 10.9 ms; a training step 3-4% faster at 1 thread
(small_resnet, small_vgg), the same at 2. A strided column step would mix samples; those
convs go in and out of the blocked layout by two compiled loops (kernels.to_blocked /
from_blocked, ~0.6-0.9 ms for 4 MB). The weight gradient stays the engine's matmul. The block
size is found once by running the operator on a known input: an onnxruntime or a CPU without
it (or giving another answer) leaves the NumPy path in charge (None), as does
CNND_KERNELS=numpy. Used for float32 only, for channel counts that are multiples of the block
and maps of at least MIN_PIXELS output pixels (ResNet-18's 4×4 layer4 is faster as a matmul).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ..shapes import conv_out
from . import kernels
from .ort_kernels import kept_session

_LOCK = threading.Lock()
_SESSIONS: dict[tuple, object] = {}  # conv geometry -> InferenceSession, None where it failed
_MAX_SESSIONS = 64
_BLOCK: int | None = None  # channels per block; 0: the operator is not usable here
DOMAIN = "com.microsoft.nchwc"
MIN_PIXELS = 64  # output pixels (Ho·Wo) below which the engine's matmul is as fast
MIN_ROWS = 64  # matmul(): a result with fewer rows is faster in OpenBLAS (a 1×1 conv's Cin)


def _model(kernel, stride, dilation, pads, bias: bool) -> bytes:
    from onnx import helper

    inputs = ["x", "w"] + (["b"] if bias else [])
    node = helper.make_node("Conv", inputs, ["y"], domain=DOMAIN, kernel_shape=list(kernel),
                            strides=list(stride), dilations=list(dilation), pads=list(pads),
                            group=1)
    return _one_node_model(node, inputs)


def _reorder_model(channels: int) -> bytes:
    """Plain NCHW memory into the blocked layout (channels 0), or back (channels: the
    output's)."""
    from onnx import helper

    node = (helper.make_node("ReorderOutput", ["x"], ["y"], domain=DOMAIN, channels=channels,
                             channels_last=0) if channels
            else helper.make_node("ReorderInput", ["x"], ["y"], domain=DOMAIN, channels_last=0))
    return _one_node_model(node, ["x"])


def _one_node_model(node, inputs: list[str]) -> bytes:
    from onnx import TensorProto, helper

    vi = helper.make_tensor_value_info
    graph = helper.make_graph([node], "conv", [vi(n, TensorProto.FLOAT, None) for n in inputs],
                              [vi("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 8
    return model.SerializeToString()


def _gemm_model(trans_b: bool) -> bytes:
    from onnx import TensorProto, helper

    node = (helper.make_node("Gemm", ["a", "b"], ["y"], transB=1) if trans_b
            else helper.make_node("MatMul", ["a", "b"], ["y"]))
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([node], "gemm", [vi(n, TensorProto.FLOAT, None) for n in "ab"],
                              [vi("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _build(key: tuple):
    """An InferenceSession running one blocked convolution (or, for a ("gemm", transB, threads)
    key, one matrix product), or None where it cannot be made."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a dependency
        return None
    if key[0] == "gemm":
        model, threads = _gemm_model(key[1]), key[2]
    elif key[0] == "reorder":
        model, threads = _reorder_model(key[1]), key[2]
    else:
        kernel, stride, dilation, pads, bias, threads = key
        model = _model(kernel, stride, dilation, pads, bias)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # the model is already what should run; and idle ORT threads must not spin on the cores
    # the rest of the step (NumPy, BLAS) runs on
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - an onnxruntime without the contrib operator
        return None


def _session(kernel, stride, dilation, pads, bias: bool):
    return _kept((tuple(int(k) for k in kernel), tuple(int(s) for s in stride),
                  tuple(int(d) for d in dilation), tuple(int(p) for p in pads), bool(bias),
                  kernels.threads()))


def _kept(key: tuple):
    return kept_session(_SESSIONS, key, lambda k: _build(k), _MAX_SESSIONS, _LOCK)


def on() -> bool:
    """Whether ONNX Runtime's kernels may serve the engine (not with CNND_KERNELS=numpy)."""
    return os.environ.get(kernels.ENV, "").lower() != "numpy"


def block() -> int:
    """Channels per block of ONNX Runtime's NCHWc kernel on this CPU, found once by convolving
    a known input in each candidate layout; 0 where it is unavailable (or kernels are off)."""
    global _BLOCK
    if not kernels.enabled():
        return 0
    if _BLOCK is None:
        with _LOCK:
            if _BLOCK is None:
                _BLOCK = _probe()
    return _BLOCK


def _probe() -> int:
    rng = np.random.default_rng(0)
    c = 16
    x = rng.standard_normal((2, c, 5, 5)).astype(np.float32)
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = sum(np.einsum("oc,nchw->nohw", w[:, :, i, j], xp[:, :, i:i + 5, j:j + 5])
               for i in range(3) for j in range(3))
    sess = _build(((3, 3), (1, 1), (1, 1), (1, 1, 1, 1), False, 1))
    if sess is None:
        return 0
    for b in (16, 8):
        xb = np.ascontiguousarray(x.reshape(2, c // b, b, 5, 5).transpose(0, 1, 3, 4, 2))
        try:
            y = sess.run(None, {"x": xb.reshape(x.shape), "w": blocked_weights(w, b)})[0]
        except Exception:  # noqa: BLE001, S112 - a layout the kernel refuses: try the next
            continue
        got = y.reshape(2, c // b, 5, 5, b).transpose(0, 1, 4, 2, 3).reshape(want.shape)
        if np.allclose(got, want, rtol=1e-4, atol=1e-4):
            return b
    return 0


def blocked_weights(w: np.ndarray, b: int) -> np.ndarray:
    """(Co, C, kh, kw) filters in the kernel's order (Co/B, C/B, kh, kw, C_b, Co_b), shaped
    (Co, C, kh, kw) as the operator declares them."""
    co, c, kh, kw = w.shape
    return np.ascontiguousarray(
        w.reshape(co // b, b, c // b, b, kh, kw).transpose(0, 2, 4, 5, 3, 1),
        np.float32).reshape(w.shape)


def usable(c: int, co: int, out_pixels: int, dtype) -> bool:
    """Whether forward() takes a conv of c -> co channels with Ho·Wo = out_pixels."""
    if dtype != np.float32 or out_pixels < MIN_PIXELS:
        return False
    b = block()
    return bool(b) and c % b == 0 and co % b == 0


def forward(x4: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride, dilation,
            pads) -> np.ndarray | None:
    """CHWN x4 (C, H, W, N) convolved with w (Co, C, kh, kw) (+ bias), zero padding `pads`
    (top, left, bottom, right) -> CHWN (Co, Ho, Wo, N); None where this path cannot run."""
    b = block()
    c, h, wd, n = x4.shape
    co = w.shape[0]
    if not b or c % b or co % b or x4.dtype != np.float32:
        return None
    if stride[1] == 1:
        y = _forward_wide(x4, w, bias, stride, dilation, pads, b)
        if y is not None:
            return y
    sess = _session(w.shape[2:], stride, dilation, pads, bias is not None)
    if sess is None:
        return None
    xb = np.empty((n, c // b, h, wd, b), np.float32)
    if not kernels.to_blocked(np.ascontiguousarray(x4), xb):
        return None
    feed = {"x": xb.reshape(n, c, h, wd), "w": blocked_weights(w, b)}
    if bias is not None:
        feed["b"] = np.ascontiguousarray(bias, np.float32)
    try:
        yb = sess.run(None, feed)[0]
    except Exception:  # noqa: BLE001 - onnxruntime's own error types: NumPy computes it
        return None
    _, _, ho, wo = yb.shape
    y = np.empty((co, ho, wo, n), np.float32)
    if not kernels.from_blocked(yb.reshape(n, co // b, ho, wo, b), y):
        return None
    return y


def _forward_wide(x4, w, bias, stride, dilation, pads, b) -> np.ndarray | None:
    """forward() of a conv whose columns step by 1, on CHWN memory read as one wide image
    (see the module's docstring): three runs, each writing into memory bound to it (the
    blocked copies and the output: arrays of this call, let go after it), so ONNX Runtime
    holds no activation between runs."""
    c, h, wd, n = x4.shape
    co, _, kh, kw = w.shape
    (sh, _), (dh, dw) = (int(v) for v in stride), (int(v) for v in dilation)
    pt, pl, pb, pr = (int(p) for p in pads)
    threads = kernels.threads()
    conv = _session((kh, kw), (sh, 1), (dh, dw * n), (pt, pl * n, pb, pr * n), bias is not None)
    into = _kept(("reorder", 0, threads))
    back = _kept(("reorder", int(co), threads))
    if conv is None or into is None or back is None:
        return None
    ho = conv_out(h, kh, sh, pt, pb, dh)
    won = conv_out(wd, kw, 1, pl, pr, dw) * n  # the wide output's columns
    xb = np.empty(c * h * wd * n, np.float32)
    yb = np.empty(co * ho * won, np.float32)
    y = np.empty((co, ho, won // n, n), np.float32)
    feeds = [(into, {"x": np.ascontiguousarray(x4).reshape(1, c, h, wd * n)},
              xb, (1, c, h, wd * n)),
             (conv, {"x": xb.reshape(1, c, h, wd * n), "w": blocked_weights(w, b),
                     **({"b": np.ascontiguousarray(bias, np.float32)} if bias is not None
                        else {})}, yb, (1, co, ho, won)),
             (back, {"x": yb.reshape(1, co, ho, won)}, y, (1, co, ho, won))]
    try:
        for sess, inputs, out, shape in feeds:
            binding = sess.io_binding()
            for name, a in inputs.items():
                binding.bind_cpu_input(name, a)
            binding.bind_output("y", "cpu", 0, np.float32, shape, out.ctypes.data)
            sess.run_with_iobinding(binding)
    except Exception:  # noqa: BLE001 - onnxruntime's own error types: NumPy computes it
        return None
    return y


def input_grad(dy4: np.ndarray, w: np.ndarray, dilation, pads, h: int, wd: int
               ) -> np.ndarray | None:
    """dL/dx (C, H, W, N) of a stride-1 convolution from CHWN dy4 (Co, Ho, Wo, N): the
    correlation of dy, padded by the kernel's reach less the forward's padding on each side,
    with the flipped filters, inputs and outputs swapped; None where it cannot run (a padding
    wider than the kernel's reach)."""
    kh, kw = w.shape[2:]
    dh, dw = dilation
    reach = (dh * (kh - 1), dw * (kw - 1), dh * (kh - 1), dw * (kw - 1))
    back = tuple(r - p for r, p in zip(reach, pads))
    if min(back) < 0:
        return None
    wflip = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    dx = forward(dy4, wflip, None, (1, 1), dilation, back)
    if dx is None or dx.shape[1:3] != (h, wd):
        return None
    return dx


def matmul(a: np.ndarray, b: np.ndarray, trans_b: bool = False, threads: int | None = None
           ) -> np.ndarray | None:
    """a @ b, or a @ bᵀ, by MLAS's SGEMM (2-D float32; b copied when not contiguous); None
    where it cannot run. For the engine's convolution products with a tall result: the weight
    gradient colsᵀ-side (Cin·kh·kw × Cout from a contraction over Ho·Wo·N) and col2im's Wᵀ @ dy
    run 1.1-2.9× faster than OpenBLAS at 16-128 channels (python bench/bench_nets.py); a wide,
    short result (W @ cols) is faster in OpenBLAS and stays there. `threads`: the session's
    (default kernels.threads()); 1 for a product that is one part of a kernels.in_parallel
    split."""
    if not on() or a.dtype != np.float32 or b.dtype != np.float32 or a.ndim != 2 \
            or b.ndim != 2:
        return None
    sess = _kept(("gemm", bool(trans_b), threads or kernels.threads()))
    if sess is None:
        return None
    try:
        return sess.run(None, {"a": np.ascontiguousarray(a), "b": np.ascontiguousarray(b)})[0]
    except Exception:  # noqa: BLE001 - onnxruntime's own error types: NumPy computes it
        return None
