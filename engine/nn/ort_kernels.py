"""Element-wise kernels NumPy lacks or runs slowly, run by ONNX Runtime's vectorised CPU
kernels (MLAS).

NumPy has no erf: written with NumPy ufuncs, erf is a 13-pass rational function and GELU's
exact form ~20 passes (4-6× PyTorch). ONNX Runtime, already a dependency, computes each in one
vectorised pass, to ~1e-7 absolute (float32). Not relative: MLAS's Sigmoid flushes σ(−20) to 0,
so the engine's Sigmoid layer keeps its exact NumPy formula, and SiLU uses this kernel only
where the tails are ~0 anyway (x·σ(x)). Each kernel
is a tiny model run by its own InferenceSession, made on first use and shared by all threads
(`run` is thread-safe). The sessions run on one thread, like the engine's own element-wise
NumPy code: these kernels are memory-bound, and a second thread would compete with the one
running the rest of the step. Every function returns a new float32 array, or None for other
dtypes (float64 gradient checks) or where onnxruntime cannot run the kernel, and the caller
then computes it with NumPy.

    y = ort_kernels.gelu(x)
    e = ort_kernels.erf(x)
"""

from __future__ import annotations

import threading

import numpy as np

from .ops import from_memory_view, memory_view

_LOCK = threading.Lock()
_SESSIONS: dict[tuple, object] = {}  # kernel key -> InferenceSession, or None where it failed
_MAX_SESSIONS = 64  # HardSigmoid's α, β are user parameters: bound the cache


def _nodes(key: tuple):
    """(opset, nodes from x to y) of one kernel."""
    from onnx import helper

    name = key[0]
    if name == "SiLU":  # x·σ(x): ONNX Runtime fuses nothing here, two passes
        return 13, [helper.make_node("Sigmoid", ["x"], ["s"]),
                    helper.make_node("Mul", ["x", "s"], ["y"])]
    if name == "HardSigmoid":
        return 6, [helper.make_node("HardSigmoid", ["x"], ["y"], alpha=key[1], beta=key[2])]
    opset = {"Erf": 13, "Gelu": 20}[name]
    return opset, [helper.make_node(name, ["x"], ["y"])]


def _build(key: tuple):
    """A float32 model of the kernel, any shape; None where ONNX Runtime cannot run it."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    opset, nodes = _nodes(key)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, key[0].lower(), [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9  # opset 20's IR: readable by every onnxruntime the project allows
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - an older onnxruntime without the op: NumPy instead
        return None


def kept_session(sessions: dict, key: tuple, build, limit: int, lock=_LOCK):
    """sessions[key], built by build(key) on first use (None kept where it failed); the
    store is emptied when it reaches `limit` keys. Shared with engine/nn/ort_conv.py."""
    sess = sessions.get(key, False)
    if sess is False:
        with lock:
            sess = sessions.get(key, False)
            if sess is False:
                if len(sessions) >= limit:
                    sessions.clear()
                sess = sessions[key] = build(key)
    return sess


def _session(key: tuple):
    return kept_session(_SESSIONS, key, _build, _MAX_SESSIONS)


def _run(key: tuple, x: np.ndarray) -> np.ndarray | None:
    if x.dtype != np.float32:
        return None
    sess = _session(key)
    if sess is None:
        return None
    perm, xm = memory_view(x)  # a CHWN view from a convolution stays CHWN: no transposing copy
    if perm is None:
        return sess.run(None, {"x": np.ascontiguousarray(x)})[0]
    return from_memory_view(sess.run(None, {"x": xm})[0], perm)


def erf(x: np.ndarray) -> np.ndarray | None:
    """erf(x)."""
    return _run(("Erf",), x)


def gelu(x: np.ndarray) -> np.ndarray | None:
    """x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (ONNX Gelu, exact form; opset 20)."""
    return _run(("Gelu",), x)


def silu(x: np.ndarray) -> np.ndarray | None:
    """x·σ(x)."""
    return _run(("SiLU",), x)


def hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray | None:
    """max(0, min(1, α·x + β))."""
    return _run(("HardSigmoid", float(alpha), float(beta)), x)
