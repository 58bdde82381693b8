"""ONNX Runtime inference: `OnnxModel` over an InferenceSession, and the layer-by-layer
parity report (engine vs ONNX Runtime on every intermediate tensor).

    model = OnnxModel("lenet.onnx")      # CUDA / other accelerators when installed, else CPU
    probs = model.run(x)                 # (C, H, W) -> (classes,);  (N, C, H, W) -> (N, classes)
"""

from __future__ import annotations

import os
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
    """An ONNX model ready to run: path, bytes or ModelProto in; float32 arrays out."""

    def __init__(self, model, providers: list[str] | None = None, threads: int | None = None):
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
    (the float32 reference) unless `providers` says otherwise (None: the default choice)."""
    from ..nn.network import Network
    from .export import OPSET, export_onnx

    model = export_onnx(graph, weights, opset=opset or OPSET, all_outputs=True)
    net = Network.compile(graph, np.random.default_rng(0))
    net.load_state_dict(weights)
    x = np.asarray(x, np.float32)
    ours = net.forward(x, keep=True)
    ort_model = OnnxModel(model, providers=list(providers) if providers else None)
    theirs = ort_model.run_all(x)
    theirs["input"] = x
    tensor_of = {n.name: n.output[0] for n in model.graph.node}
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
