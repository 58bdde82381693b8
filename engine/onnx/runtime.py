"""ONNX Runtime inference: `OnnxModel` over an InferenceSession, sessions kept across calls,
and the layer-by-layer parity report (engine vs ONNX Runtime on every intermediate tensor).

    model = OnnxModel("lenet.onnx")      # CUDA / other accelerators when installed, else CPU
    probs = model.run(x)                 # (C, H, W) -> (classes,);  (N, C, H, W) -> (N, classes)
    model = cached_model("vgg11.onnx")   # the same session again while the file is unchanged
    model = graph_model(graph, weights)  # a design in ONNX Runtime, kept while it is unchanged

Building a session costs seconds for a big network (VGG-11: ~2-3 s), so the app keeps the last
few (KEEP_SESSIONS) by what they run: an ONNX file by its path, size, modification time and
inode; bytes by a digest of them; a design by its graph (canvas positions aside) and a digest of
its weights' values (xxHash's XXH3, ~7 GB/s: an in-place change of a weight is seen). A design
is exported with its weights kept apart (export.export_apart): they go to ONNX Runtime as arrays
(SessionOptions.add_external_initializers, which copies them), never through protobuf, and the
export is not re-checked each time (the graph validated; ONNX Runtime checks what it runs).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..graph import Graph

# preferred order; ORT lists "AzureExecutionProvider" too, which is a remote-call bridge, not a
# local accelerator, so it is never chosen automatically
ACCELERATED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
               "MIGraphXExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider",
               "OpenVINOExecutionProvider")
CPU = "CPUExecutionProvider"
ATOL, RTOL = 1e-5, 1e-4
# sessions kept by cached_model / graph_model: the opened file, the design, one more; each holds
# a copy of its weights (VGG-11: ~0.5 GB)
KEEP_SESSIONS = 3


def default_providers() -> list[str]:
    """Accelerated providers the installed onnxruntime offers (best first), then the CPU."""
    import onnxruntime as ort

    avail = ort.get_available_providers()
    return [p for p in ACCELERATED if p in avail] + [CPU]


def default_threads() -> int:
    """Intra-op threads: the cores this process may use (ORT's own default can oversubscribe
    in containers), at most 16."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


class OnnxModel:
    """An ONNX model ready to run: path, bytes or ModelProto in; float32 arrays out.

    `weights` ({initializer name: float32 array}) supplies the initializers the model keeps as
    external data (export.export_apart); ONNX Runtime copies them while building the session."""

    exported = None  # graph_model's: the exported ModelProto without its weights (names)
    layer_tensors: dict[str, str] | None = None  # graph_model's: node id -> its output tensor

    def __init__(self, model, providers: list[str] | None = None, threads: int | None = None,
                 weights: dict[str, np.ndarray] | None = None):
        import onnxruntime as ort

        if hasattr(model, "SerializeToString"):
            data = model.SerializeToString()
        elif isinstance(model, (bytes, bytearray)):
            data = bytes(model)
        else:
            path = Path(model)
            if not path.is_file():
                raise DataError(f"no ONNX model at {path}")
            data = str(path)
        opts = ort.SessionOptions()
        self.threads = threads or default_threads()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only
        if weights:
            names = list(weights)
            opts.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(weights[n], np.float32)) for n in names])
        chosen = providers or default_providers()
        try:
            self.session = ort.InferenceSession(data, sess_options=opts, providers=chosen)
        except Exception as exc:  # noqa: BLE001 - onnxruntime has its own exception types
            raise DataError(f"ONNX Runtime cannot load the model: {exc}") from None
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        # (C, H, W), None where the file leaves a size open; the batch axis is left out
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape[1:])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __repr__(self) -> str:
        shape = "×".join("?" if d is None else str(d) for d in self.input_shape)
        return f"OnnxModel(input N×{shape}, providers={self.providers})"

    def _check(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, np.float32)
        single = x.ndim == len(self.input_shape)
        if single:
            x = x[None]
        if x.ndim != len(self.input_shape) + 1 or any(
                want is not None and got != want for got, want in zip(x.shape[1:],
                                                                      self.input_shape)):
            shape = "×".join("?" if d is None else str(d) for d in self.input_shape)
            raise DataError(f"the model expects input {shape} or N×{shape}, got "
                            f"{'×'.join(map(str, np.shape(x)))}")
        return np.ascontiguousarray(x), single

    def run(self, x: np.ndarray) -> np.ndarray:
        """(C, H, W) -> one output without batch axis; (N, C, H, W) -> (N, ...)."""
        x, single = self._check(x)
        y = self._run(self.output_names[:1], x)[0]
        return y[0] if single else y

    def _run(self, names, x):
        try:
            return self.session.run(names, {self.input_name: x})
        except Exception as exc:  # noqa: BLE001 - onnxruntime has its own exception types
            raise DataError(f"ONNX Runtime failed to run the model: {exc}") from None

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the model by name, for a batch."""
        x, _ = self._check(x)
        return dict(zip(self.output_names, self._run(None, x)))

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """A big (N, C, H, W) array in batches -> (N, ...)."""
        outs = [self.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


# ---- sessions kept across calls --------------------------------------------------------------

_SESSIONS: OrderedDict[tuple, OnnxModel] = OrderedDict()  # key -> model, least recent first
_LOCK = threading.Lock()  # one build at a time: workers asking for the same model share it


def cached_model(source, providers: list[str] | None = None,
                 threads: int | None = None) -> OnnxModel:
    """OnnxModel(source) kept across calls: the same object while the ONNX file (path: its
    size, modification time and inode) or the bytes / ModelProto (their digest) are unchanged
    and the providers and threads are the same."""
    if hasattr(source, "SerializeToString"):
        source = source.SerializeToString()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        key = ("bytes", _digest(data))
        return _kept(key, None, lambda p, t: OnnxModel(data, p, t), providers, threads)
    path = Path(source)
    try:
        st = path.stat()
    except OSError:
        raise DataError(f"no ONNX model at {path}") from None
    where = ("file", str(path.resolve()))
    key = (*where, st.st_size, st.st_mtime_ns, st.st_ino)
    return _kept(key, where, lambda p, t: OnnxModel(str(path), p, t), providers, threads)


def graph_model(graph: Graph, weights: dict[str, np.ndarray] | None, opset: int | None = None,
                all_outputs: bool = False, providers: list[str] | None = None,
                threads: int | None = None, revision: tuple | None = None) -> OnnxModel:
    """The design (graph + weights, None: its seeded initial weights) exported and loaded in
    ONNX Runtime, kept across calls: the same object while the graph (canvas positions aside),
    the weights' values, opset, outputs, providers and threads are the same.

    `revision`: (owner, counter), where the owner (a designer Document's serial) bumps the
    counter whenever its graph or weights change: it keys the session instead of a digest of
    the weights' values (~15 ms per 100 MB), and the owner's sessions of older revisions are
    dropped."""
    from .export import OPSET, export_apart

    opset = opset or OPSET
    if revision is not None:
        where = ("revision", revision[0], opset, all_outputs)
        key = (*where, revision[1])
    else:
        where, key = None, ("graph", design_digest(graph, weights), opset, all_outputs)

    def build(p, t):
        tensors: dict[str, str] = {}
        model, arrays = export_apart(graph, weights, opset=opset, all_outputs=all_outputs,
                                     tensors=tensors)
        runner = OnnxModel(model, p, t, weights=arrays)
        runner.exported = model
        runner.layer_tensors = tensors
        return runner

    return _kept(key, where, build, providers, threads)


def kept_model(revision: tuple, opset: int | None = None, all_outputs: bool = False,
               providers: list[str] | None = None, threads: int | None = None
               ) -> OnnxModel | None:
    """graph_model's kept session for `revision` if there is one; never builds."""
    from .export import OPSET

    full = ("revision", revision[0], opset or OPSET, all_outputs, revision[1],
            tuple(providers or default_providers()), threads or default_threads())
    with _LOCK:
        return _SESSIONS.get(full)


def clear_sessions() -> None:
    """Forget every kept session (their memory is freed once no caller holds them)."""
    with _LOCK:
        _SESSIONS.clear()


def design_digest(graph: Graph, weights: dict[str, np.ndarray] | None) -> str:
    """A digest of what a design computes: its graph without canvas positions, and its weights'
    names, shapes and values (float32)."""
    import xxhash

    h = xxhash.xxh3_128()
    data = graph.to_json()
    for n in data.get("nodes", []):
        n.pop("position", None)
    h.update(json.dumps(data, sort_keys=True, default=str).encode())
    for k in sorted(weights or {}):
        a = np.ascontiguousarray(weights[k], np.float32)
        h.update(f"{k}:{a.shape};".encode())
        h.update(a)
    if weights is None:
        h.update(b"initial weights")
    return h.hexdigest()


def _digest(data: bytes) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest(data)


def _kept(key: tuple, where: tuple | None, build, providers, threads) -> OnnxModel:
    """The kept model for `key` (with providers and threads), or build(providers, threads) and
    keep it; an entry for the same file (`where`) in an older state is dropped first."""
    chosen = tuple(providers or default_providers())
    threads = threads or default_threads()
    full = (*key, chosen, threads)
    with _LOCK:
        model = _SESSIONS.get(full)
        if model is not None:
            _SESSIONS.move_to_end(full)
            return model
        if where is not None:
            for k in [k for k in _SESSIONS if k[:len(where)] == where]:
                del _SESSIONS[k]
        model = build(list(chosen), threads)
        _SESSIONS[full] = model
        while len(_SESSIONS) > KEEP_SESSIONS:
            _SESSIONS.popitem(last=False)
        return model


@dataclass
class ParityRow:
    node: str  # layer name
    type_name: str
    shape: tuple  # without the batch axis
    max_abs_diff: float
    max_rel_diff: float
    ok: bool  # |engine − ORT| <= ATOL + RTOL · |engine| everywhere

    def to_json(self) -> dict:
        return {"node": self.node, "type": self.type_name, "shape": list(self.shape),
                "max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff,
                "ok": self.ok}


def parity_report(graph: Graph, weights: dict[str, np.ndarray], x: np.ndarray,
                  opset: int | None = None, providers: list[str] | None = (CPU,),
                  atol: float = ATOL, rtol: float = RTOL) -> list[ParityRow]:
    """Layer-by-layer comparison of the engine with ONNX Runtime on input batch `x`.

    The graph is exported with every layer's output exposed as a model output; the engine runs
    Network.forward(keep=True). One row per layer in topological order. A layer wired through in
    the export (Dropout) is compared on the tensor it passes on. ONNX Runtime runs on the CPU
    (the float32 reference) unless `providers` says otherwise (None: the default choice); its
    session is kept (graph_model) for the next report on the same design."""
    from ..nn.network import Network

    net = Network.compile(graph, np.random.default_rng(0), weights=weights)
    x = np.asarray(x, np.float32)
    ours = net.forward(x, keep=True)
    ort_model = graph_model(graph, weights, opset, all_outputs=True,
                            providers=list(providers) if providers else None)
    theirs = ort_model.run_all(x)
    theirs["input"] = x
    tensor_of = {n.name: n.output[0] for n in ort_model.exported.graph.node}
    rows = []
    for nid in net.order:
        node = graph.nodes[nid]
        a = ours[nid]
        if node.type_name == "Input":
            b = theirs["input"]
        elif node.name in tensor_of:
            b = theirs[tensor_of[node.name]]
        else:  # wired through: the same tensor as its input
            b = theirs.get(_through(graph, nid, tensor_of, theirs), None)
            if b is None:
                continue
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        ref = np.abs(a.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(ref, 1e-12)).max()) if diff.size else 0.0
        ok = a.shape == b.shape and bool(np.all(diff <= atol + rtol * ref))
        rows.append(ParityRow(node.name, node.type_name, tuple(a.shape[1:]), max_abs, max_rel,
                              ok))
    return rows


def _through(graph: Graph, nid: str, tensor_of: dict, theirs: dict) -> str | None:
    while True:
        ins = graph.inputs_of(nid)
        if not ins:
            return None
        nid = ins[0]
        node = graph.nodes[nid]
        if node.type_name == "Input":
            return "input"
        if node.name in tensor_of:
            return tensor_of[node.name]
