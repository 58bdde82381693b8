"""Transfer learning without the GUI: freeze layers, replace the classifier head, fine-tune.

    graph, weights = imp.graph, imp.weights            # an imported or saved model
    graph = freeze_up_to(graph, "conv2")               # conv2 and everything before it frozen
    graph, weights = replace_head(graph, weights, 3, rng)   # last Linear -> 3 classes
    weights, history = fine_tune(graph, weights, x, y, TrainConfig(epochs=2))
    export_onnx(graph, weights, path="finetuned.onnx")
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphError
from ..graph import Graph
from ..nn.train import History, TrainConfig, train
from ..validate import validate


def freeze_up_to(graph: Graph, node_id: str, frozen: bool = True) -> Graph:
    """A copy of `graph` with `node_id` and every layer feeding it (directly or not) frozen:
    their weights (and BatchNorm statistics) stay as they are while fine-tuning."""
    if node_id not in graph.nodes:
        node_id = graph.find(node_id).id  # a layer name works too; GraphError if unknown
    g = graph.copy()
    for nid in g.ancestors(node_id) | {node_id}:
        g.nodes[nid].trainable = not frozen
    return g


def last_linear(graph: Graph) -> str:
    """The id of the classifier head: the last Linear in topological order."""
    order = graph.topological_order()
    heads = [nid for nid in order if graph.nodes[nid].type_name == "Linear"]
    if not heads:
        raise GraphError("the network has no Linear (fully connected) layer to replace; add "
                         "one before the output")
    return heads[-1]


def replace_head(graph: Graph, weights: dict[str, np.ndarray], n_classes: int,
                 rng: np.random.Generator | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """Copies of graph and weights with the last Linear replaced by a freshly initialised one of
    `n_classes` outputs (trainable); a final Softmax and everything else are kept."""
    if int(n_classes) < 1:
        raise ValueError(f"the new head needs at least 1 class, got {n_classes}")
    from ..layers import layer_class

    g = graph.copy()
    head = last_linear(g)
    node = g.nodes[head]
    node.params = dict(node.params, out_features=int(n_classes))
    node.trainable = True
    v = validate(g)
    if not v.ok:
        lines = "\n".join(f"  - {m.text}" for m in v.errors)
        raise GraphError(f"replacing the head of '{node.name}' leaves a broken graph:\n{lines}")
    res = v.nodes[head]
    layer = layer_class(node.type_name)(node.name, **node.params)
    layer.init_weights(res.in_shapes, rng if rng is not None else np.random.default_rng(0))
    out = {k: a for k, a in weights.items() if not k.startswith(head + ".")}
    for k, a in layer.weights.items():
        out[f"{head}.{k}"] = a.copy()
    return g, out


def fine_tune(graph: Graph, weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
              config: TrainConfig | None = None, **callbacks
              ) -> tuple[dict[str, np.ndarray], History]:
    """Train the graph's trainable layers on (x, y) with the engine, starting from `weights`;
    frozen layers (node.trainable False) keep theirs. Returns (new weights, history)."""
    from ..nn.network import Network

    net = Network.compile(graph, np.random.default_rng(config.seed if config else 0))
    net.load_state_dict(weights)
    frozen = [nid for nid, n in graph.nodes.items() if not n.trainable and nid in net.layers]
    net.set_frozen(frozen)
    history = train(net, x, y, config or TrainConfig(), **callbacks)
    return net.state_dict(), history
