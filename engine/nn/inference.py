"""Inference on many images: ONNX Runtime where it runs the design, the engine's NumPy forward
where it cannot.

    z = infer(net, x)                  # (N, *output_shape), as net.predict(x) always returned
    z = infer(net, x, logits=True)     # stops before a final Softmax, as forward(logits=True)

Training needs the engine (its forward keeps what backward reads); inference does not, and ONNX
Runtime, already a dependency, runs the exported design 1.3-3× faster than PyTorch CPU at batch
256 on this project's nets (bench/bench_nets.py), where the NumPy forward runs at 0.5-0.8×:
fused Conv+BatchNorm+activation, blocked (NCHWc) convolution kernels, no im2col. Evaluation
after every epoch, the test-set figures, the Training panel's confusion matrix and `evaluate`
all come here.

A session is kept per network and per state of its weights: the key is a digest of the graph
and the weights' values (xxhash, ~1.5 ms per 10 MB), so a training step, a loaded checkpoint or a
frozen layer is never served a stale session, and a network's older session is dropped when a
newer one is built (runtime.graph_model's `revision`). Building one costs an export and a
session (tens of ms for MNIST-size nets, ~0.8 s for ResNet-50), so a handful of images on a net
with no kept session runs in the engine instead (MIN_BATCH). float64 networks (gradient checks),
a design the exporter or ONNX Runtime refuses, and a process without onnxruntime use the engine;
the outputs agree to float32 rounding (~1e-6 relative; tests/engine/test_inference.py).
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from ..errors import EngineError
from . import kernels
from .network import Network

ORT, ENGINE = "ONNX Runtime", "engine"
MIN_BATCH = 32  # fewer images and no kept session: the engine (a session costs tens of ms+)
_SERIALS = itertools.count(1)
_SERIAL_LOCK = threading.Lock()


def infer(net: Network, x: np.ndarray, batch_size: int = 256, logits: bool = False,
          threads: int | None = None) -> np.ndarray:
    """(N, *input_shape) -> (N, *output_shape) in inference mode, in batches of `batch_size`.
    `logits`: stop before a final Softmax. `threads`: ONNX Runtime's intra-op threads (default:
    the engine's, kernels.threads())."""
    return infer_by(net, x, batch_size, logits, threads)[0]


def infer_by(net: Network, x: np.ndarray, batch_size: int = 256, logits: bool = False,
             threads: int | None = None) -> tuple[np.ndarray, str]:
    """(outputs, ORT or ENGINE): `infer`, saying which computed it."""
    x = np.asarray(x, np.float32)
    batch_size = max(1, int(batch_size))
    if x.shape[1:] != net.input_shape:
        raise ValueError(f"the network expects input N×{'×'.join(map(str, net.input_shape))}, "
                         f"got {'×'.join(map(str, x.shape))}")
    model = _session(net, len(x), logits, threads)
    if model is not None:
        try:
            outs = [model.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        except EngineError:  # ORT loaded the design but cannot run it: the engine, from now on
            net.__dict__["_ort_refused"] = True
        else:
            out = np.concatenate(outs) if outs else np.zeros((0,) + _out_shape(net, logits),
                                                               np.float32)
            return out.reshape((len(x),) + _out_shape(net, logits)), ORT
    return engine_predict(net, x, batch_size, logits), ENGINE


def engine_predict(net: Network, x: np.ndarray, batch_size: int = 256,
                   logits: bool = False) -> np.ndarray:
    """The engine's own NumPy forward in batches (what infer falls back to; the export check
    compares it with ONNX Runtime, so it must not be ONNX Runtime itself)."""
    x = np.asarray(x, np.float32)
    batch_size = max(1, int(batch_size))
    outs = [net.forward(x[i:i + batch_size], logits=logits) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,) + _out_shape(net, logits), np.float32)


def _out_shape(net: Network, logits: bool) -> tuple[int, ...]:
    """A Softmax keeps its input's shape: logits and probabilities have the output's."""
    return tuple(net.output_shape)


def _session(net: Network, n: int, logits: bool, threads: int | None):
    """The kept ONNX Runtime model of `net`'s current weights, built when `n` images make it
    worth it; None: the engine runs them."""
    if net.__dict__.get("_ort_refused") or not _have_onnxruntime():
        return None
    weights = {f"{nid}.{k}": w for nid in net.order for k, w in net.layers[nid].weights.items()}
    if any(w.dtype != np.float32 for w in weights.values()):
        return None  # float64 gradient checks: the engine's exact arithmetic
    from ..onnx.runtime import design_digest, graph_model, kept_model

    graph = _graph(net, logits)
    if graph is None:
        return None
    with _SERIAL_LOCK:
        serial = net.__dict__.setdefault("_infer_serial", next(_SERIALS))
    revision = (("inference", serial, logits), design_digest(graph, weights))
    threads = threads or kernels.threads()
    if n < MIN_BATCH and kept_model(revision, threads=threads) is None:
        return None
    try:
        return graph_model(graph, weights, revision=revision, threads=threads)
    except Exception:  # noqa: BLE001 - not exportable (a layer's to_onnx may raise anything)
        net.__dict__["_ort_refused"] = True  # or ORT cannot load it: the engine, for this net
        return None


def _graph(net: Network, logits: bool):
    """The graph to export: the network's, without its final Softmax for logits."""
    if not (logits and net.ends_in_softmax):
        return net.graph
    key = "_logits_graph"
    g = net.__dict__.get(key)
    if g is None:
        g = net.graph.copy()
        g.remove_node(net.output_id)
        net.__dict__[key] = g
    return g


def _have_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
