"""The compiled, executable form of a valid graph with its weights: forward, backward, state.

    net = Network.compile(graph, rng=np.random.default_rng(0))
    probs = net.forward(x)                 # (N, C, H, W) float32 -> (N, classes)
    net.forward(x, training=True); net.backward(dy)   # grads in net.layers[id].grads
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ..errors import ProjectError
from ..graph import Graph
from ..layers import Layer, Shape, fmt_shape
from ..validate import Validation, validate


@dataclass
class Parameter:
    """A view on one trainable array: the optimizer updates `layer.weights[name]` in place."""

    key: str  # "node_id.weight"
    layer: Layer
    name: str

    @property
    def value(self) -> np.ndarray:
        return self.layer.weights[self.name]

    @property
    def grad(self) -> np.ndarray | None:
        return self.layer.grads.get(self.name)


class Network:
    def __init__(self, graph: Graph, validation: Validation):
        self.graph = graph
        self.validation = validation
        self.order = list(validation.order)
        self.inputs = {nid: graph.inputs_of(nid) for nid in self.order}
        # what each layer reads: (source id, source output port), in input port order
        self.refs = {nid: graph.input_refs(nid) for nid in self.order}
        # fresh instances: validation's are shared with its cache and hold no weights
        self.layers: dict[str, Layer] = {nid: validation.nodes[nid].layer.clone()
                                         for nid in self.order}
        self.in_shapes = {nid: validation.nodes[nid].in_shapes for nid in self.order}
        self.input_id = next(nid for nid in self.order if graph.nodes[nid].type_name == "Input")
        self.output_id = validation.output_id
        self.input_shape: Shape = validation.nodes[self.input_id].out_shape
        self.output_shape: Shape = validation.nodes[self.output_id].out_shape
        # layers of a type with outputs of its own (a channel split): their per-port shapes;
        # their forward returns a list and their backward takes one
        self.multi_out: dict[str, list[Shape]] = {
            nid: validation.nodes[nid].out_shapes for nid in self.order
            if self.layers[nid].multi_output()}
        consumers: dict[str, int] = {nid: 0 for nid in self.order}
        for nid in self.order:
            for s in self.inputs[nid]:
                consumers[s] += 1
        self._consumers = consumers
        # per-layer profile (bench/bench_nets.py): {(node id, "forward" | "backward"): seconds}
        # accumulated while set to a dict; None (the default) costs one test per layer
        self.timings: dict[tuple[str, str], float] | None = None

    @classmethod
    def compile(cls, graph: Graph, rng: np.random.Generator | None = None,
                validation: Validation | None = None,
                weights: dict[str, np.ndarray] | None = None) -> Network:
        """Check the graph, instantiate its layers and initialise their weights.

        With `weights` ("node_id.name" arrays, as state_dict()), a layer that finds all of its
        weights there gets copies of them and no random initialisation (VGG-11's would take ~2 s
        only to be overwritten); the others draw theirs from `rng` (so, where weights are given
        for some layers, not the values a compile without them would draw). A given array of the
        wrong shape is a ProjectError naming the layer, as in load_state_dict."""
        v = validation or validate(graph)
        v.raise_if_invalid("build the network")
        net = cls(graph.copy(), v)
        rng = rng if rng is not None else np.random.default_rng(0)
        for nid in net.order:
            layer, in_shapes = net.layers[nid], net.in_shapes[nid]
            names = layer.weight_shapes(in_shapes) if weights else ()
            if names and all(f"{nid}.{k}" in weights for k in names):
                layer.allocate_weights(in_shapes)  # filled by load_state_dict below
            else:
                layer.init_weights(in_shapes, rng)
        if weights:
            net.load_state_dict(weights, strict=False)
        return net

    # ---- execution -------------------------------------------------------------------------

    @property
    def ends_in_softmax(self) -> bool:
        return self.graph.nodes[self.output_id].type_name == "Softmax"

    def forward(self, x: np.ndarray, training: bool = False, logits: bool = False,
                keep: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        """(N, *input_shape) -> (N, *output_shape). `logits` stops before a final Softmax (the
        loss fuses it); `keep` returns every node's output as {node_id: array} (output 0 of a
        layer with several outputs; the network's output is its output node's port 0)."""
        x = np.asarray(x, np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"the network expects input N×{fmt_shape(self.input_shape)}, got "
                             f"{'×'.join(map(str, x.shape))}")
        skip = self.output_id if (logits and self.ends_in_softmax) else None
        outs: dict[str, list[np.ndarray]] = {}  # node id -> its outputs, by port
        remaining = dict(self._consumers)
        for nid in self.order:
            if nid == skip:
                break
            layer = self.layers[nid]
            if nid == self.input_id:
                outs[nid] = [x]
                continue
            refs = self.refs[nid]
            # a frozen part with nothing trainable before it runs as in inference: no caches
            train_here = training and not self._frozen_prefix[nid]
            if self.timings is None:
                y = layer.forward([outs[s][p] for s, p in refs], train_here)
            else:
                t0 = time.perf_counter()
                y = layer.forward([outs[s][p] for s, p in refs], train_here)
                self._timed(nid, "forward", t0)
            outs[nid] = list(y) if nid in self.multi_out else [y]
            if not keep:  # free what no later layer reads
                for s, _ in refs:
                    remaining[s] -= 1
                    if remaining[s] == 0 and s != self.input_id:
                        del outs[s]
        if keep:
            return {nid: ys[0] for nid, ys in outs.items()}
        if skip:
            s, p = self.refs[skip][0]
            return outs[s][p]
        return outs[self.output_id][0]

    def backward(self, dy: np.ndarray, from_logits: bool = False,
                 input_grad: bool = True, capture: Collection[str] = (),
                 on_grads=None) -> np.ndarray | None:
        """Backpropagate dL/d(output) (or dL/d(logits) with from_logits); returns dL/d(input),
        or None with input_grad=False: layers fed only by the input (or by frozen layers)
        then skip their own input gradient (training needs only the weight gradients).
        `capture`: node ids whose output gradient (summed over their consumers, what their
        backward receives) is kept in `self.captured_grads` (Grad-CAM, engine.explain).
        `on_grads(node id, layer)`: called after each layer's backward (a data-parallel step
        adds the shards' weight gradients up as they come, nn/parallel.py)."""
        self.captured_grads: dict[str, np.ndarray] = {}
        for layer in self.layers.values():  # the last step's weight gradients are replaced:
            layer.grads.clear()  # freed now, not kept beside the new ones (ResNet-18: 43 MB)
        # node id -> gradient w.r.t. each of its output ports (None: no consumer reached yet);
        # consumers of the same port add up, ports of one node stay apart
        grads: dict[str, list[np.ndarray | None]] = {}
        start, start_port = self.output_id, 0
        if from_logits and self.ends_in_softmax:
            start, start_port = self.refs[self.output_id][0]
        grads[start] = self._port_slots(start)
        grads[start][start_port] = dy
        started = False
        for nid in reversed(self.order):
            if nid == start:
                started = True
            if not started or nid not in grads:
                continue
            g = self._port_grads(nid, grads.pop(nid))
            if nid in capture:
                self.captured_grads[nid] = g
            if nid == self.input_id:
                return g
            if self._frozen_prefix.get(nid):
                continue  # nothing trainable upstream: no need to go further back
            layer = self.layers[nid]
            t0 = time.perf_counter()
            if input_grad or not all(self._frozen_prefix[s] for s in self.inputs[nid]):
                dxs = layer.backward(g)
            else:  # a layer that honours need_dx = False returns None for its inputs
                layer.need_dx = False
                try:
                    dxs = layer.backward(g)
                finally:
                    layer.need_dx = True
            if self.timings is not None:
                self._timed(nid, "backward", t0)
            if on_grads is not None:
                on_grads(nid, layer)
            for (s, p), dx in zip(self.refs[nid], dxs):
                if dx is None:
                    continue
                slots = grads.get(s)
                if slots is None:
                    slots = grads[s] = self._port_slots(s)
                slots[p] = dx if slots[p] is None else slots[p] + dx
        g = grads.get(self.input_id)
        return None if g is None else g[0]

    def _timed(self, nid: str, what: str, t0: float) -> None:
        key = (nid, what)
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def _port_slots(self, nid: str) -> list[np.ndarray | None]:
        """One empty gradient slot per output port of `nid`."""
        return [None] * len(self.multi_out.get(nid, (None,)))

    def _port_grads(self, nid: str, slots: list[np.ndarray | None]):
        """What `backward` of layer `nid` receives: the array for a single output; for several,
        the list by port, zeros where no consumer sent a gradient."""
        shapes = self.multi_out.get(nid)
        if shapes is None:
            return slots[0]
        some = next(d for d in slots if d is not None)
        return [np.zeros((some.shape[0], *shape), some.dtype) if d is None else d
                for d, shape in zip(slots, shapes)]

    @property
    def _frozen_prefix(self) -> dict[str, bool]:
        """Nodes with nothing trainable at or before them: backward can stop there."""
        cache = getattr(self, "_fp_cache", None)
        if cache is not None:
            return cache
        out: dict[str, bool] = {}
        for nid in self.order:
            layer = self.layers[nid]
            own = not self._through_frozen and (layer.frozen or not layer.trainable_names())
            out[nid] = own and all(out[s] for s in self.inputs[nid])
        self._fp_cache = out
        return out

    _through_frozen = False  # set by gradients_only()

    def gradients_only(self) -> None:
        """Prepare for gradients w.r.t. the input and layer outputs but not the weights
        (engine.explain): every layer frozen, so it computes as in inference (BatchNorm with
        its running statistics) and keeps no weight gradients, yet forward(training=True)
        caches in every layer and backward goes back to the input. (Dropout still drops in
        training mode: give it p = 0 in the graph.)"""
        self._through_frozen = True
        self.set_frozen(self.order)

    def set_frozen(self, node_ids: set[str] | list[str], frozen: bool = True) -> None:
        for nid in node_ids:
            self.layers[nid].frozen = frozen
            self.graph.nodes[nid].trainable = not frozen
        self._fp_cache = None

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Inference in batches: (N, ...) -> (N, *output_shape), by ONNX Runtime where it runs
        the design and the batch makes a session worth it, else by forward (nn/inference.py)."""
        from .inference import infer

        return infer(self, x, batch_size)

    # ---- parameters and state --------------------------------------------------------------

    def parameters(self) -> list[Parameter]:
        """Trainable arrays of layers that are not frozen."""
        return [Parameter(f"{nid}.{name}", self.layers[nid], name)
                for nid in self.order for name in self.layers[nid].trainable_names()]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every weight and buffer, keyed "node_id.name" (copies)."""
        return {f"{nid}.{k}": v.copy() for nid in self.order
                for k, v in self.layers[nid].weights.items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> list[str]:
        """Copy arrays in; a missing or mis-shaped array is an error naming the layer.
        Returns the keys that were loaded."""
        loaded = []
        for nid in self.order:
            layer = self.layers[nid]
            for k, cur in layer.weights.items():
                key = f"{nid}.{k}"
                if key not in state:
                    if strict:
                        raise ProjectError(f"the weights have no '{k}' for layer "
                                           f"'{layer.name}' ({key})")
                    continue
                arr = np.asarray(state[key])
                if arr.shape != cur.shape:
                    raise ProjectError(f"layer '{layer.name}': '{k}' has shape "
                                       f"{fmt_shape(arr.shape)} in the weights but the layer "
                                       f"needs {fmt_shape(cur.shape)}")
                cur[...] = arr  # cast on assignment: no temporary copy
                loaded.append(key)
        return loaded
