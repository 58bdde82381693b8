"""Every layer's output for one input batch, computed by ONNX Runtime where it can run the design
and by the engine where it cannot (feature maps, the drawing pad's prediction).

    outs, by = layer_outputs(net, graph, x[None], revision=doc.revision)
    outs[node_id]        # (N, ...) output 0 of that layer, as Network.forward(x, keep=True)

The design is exported once per revision with every layer's output tensor as a graph output
(runtime.graph_model(all_outputs=True)); the exporter says which tensor holds each layer's output
(the last one of a layer that exports as several ONNX nodes, the input's of one wired through),
so nothing is matched by node names here.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import EngineError
from ..graph import Graph
from ..nn.network import Network
from .export import INPUT_NAME

ORT, ENGINE = "ONNX Runtime", "engine"
_REFUSED: set = set()  # revisions ONNX Runtime could not load: the engine runs them, no retry
_REFUSED_LOCK = threading.Lock()


def ort_layer_outputs(graph: Graph, weights: dict[str, np.ndarray] | None, x: np.ndarray,
                      revision: tuple | None = None, providers: list[str] | None = None,
                      threads: int | None = None) -> dict[str, np.ndarray]:
    """{node id: (N, ...) output 0} of every layer the output depends on, the Input included,
    for the batch x (N, C, H, W), run in ONNX Runtime. The session is kept per design
    (runtime.graph_model: by `revision` when given, else by a digest of graph and weights).
    Raises DataError / GraphError when the design cannot be exported or run."""
    from .runtime import graph_model

    model = graph_model(graph, weights, all_outputs=True, providers=providers, threads=threads,
                        revision=revision)
    x = np.ascontiguousarray(x, np.float32)
    outs = model.run_all(x)
    outs[INPUT_NAME] = x
    return {nid: outs[t] for nid, t in model.layer_tensors.items()}


def network_weights(net: Network) -> dict[str, np.ndarray]:
    """The compiled network's weights by "node_id.name", not copied (state_dict copies)."""
    return {f"{nid}.{k}": w for nid in net.order for k, w in net.layers[nid].weights.items()}


def layer_outputs(net: Network, graph: Graph, x: np.ndarray, revision: tuple | None = None,
                  providers: list[str] | None = None,
                  threads: int | None = None) -> tuple[dict[str, np.ndarray], str]:
    """({node id: (N, ...) output 0 of every layer}, ORT or ENGINE): the outputs of `net`
    (compiled from `graph`) for the batch x, as net.forward(x, keep=True), from ONNX Runtime
    when it is installed and runs the design, else from the engine. A layer the output does not
    depend on (left out of the export) also makes the engine run it all."""
    with _REFUSED_LOCK:
        refused = revision is not None and revision in _REFUSED
    if not refused and _have_onnxruntime():
        try:
            outs = ort_layer_outputs(graph, network_weights(net), x, revision, providers,
                                     threads)
        except EngineError:  # not exportable or not runnable: not asked again this revision
            _refuse(revision)
        else:
            if outs.keys() >= set(net.order):
                return {nid: outs[nid] for nid in net.order}, ORT
            _refuse(revision)
    return net.forward(np.asarray(x, np.float32), keep=True), ENGINE


def _refuse(revision: tuple | None) -> None:
    if revision is not None:
        with _REFUSED_LOCK:
            _REFUSED.add(revision)


def _have_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
