"""Fast fine-tuning: compute the frozen part's features once with ONNX Runtime, train only the
trainable tail in the engine.

    graph = freeze_up_to(imp.graph, "features.12.cat")        # engine.transfer.head
    graph, weights = replace_any_head(graph, imp.weights, 5)  # Linear or conv classifier
    weights, history = fine_tune(graph, weights, x, y, TrainConfig(epochs=5))

A frozen layer never changes, so neither does its output for a given image: the frozen prefix
(every layer that is frozen or has no weights, fed only by such layers) is exported to an
in-memory ONNX model whose output is the cut tensor, ONNX Runtime computes that tensor for every
training (and validation) image once, and the engine trains a small network made of the tail
layers with the cached features as its input. The trained tail weights are merged back into the
full graph's weights under the same node ids, so the whole net exports to ONNX unchanged.

It gives the same result as training the full net in the engine with the frozen layers: the
engine already runs a frozen prefix in inference mode (frozen BatchNorm uses its running
statistics, Dropout in the prefix passes everything through), which is what ONNX Runtime does.
Caching is only valid because the images do not change between epochs: with random data
augmentation (crops, flips), the features would have to be recomputed each epoch.

The features take N · prod(cut shape) · 4 bytes (`feature_bytes`): 300 SqueezeNet images cut
before the classifier (512×13×13) take 104 MB. Dropout layers in the trainable tail draw other
random masks than in the engine-only path (the tail network seeds them itself): the same in
distribution, not bit for bit.

Only one cut tensor is supported (the backbone -> head case). When the frozen layers end in
several tensors that the tail reads (frozen up to the middle of a residual block), the prefix is
shortened to the last layer whose output is the only thing the rest reads; the remaining frozen
layers run, frozen, in the engine tail (`Split.note` says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, GraphError, TrainingError
from ..graph import Edge, Graph
from ..layers import Shape, fmt_shape
from ..nn.network import Network
from ..nn.train import History, TrainConfig, split_validation, train
from ..validate import Validation, validate
from .augment import Augment

CUT_INPUT_ID = "cut_input"  # the tail network's Input (a fresh id if the graph uses it)
CUT_FLATTEN_ID = "cut_flatten"  # feeds a flat cut (F,) through Input (F, 1, 1) + Flatten
FEATURE_BATCH = 64  # images per ONNX Runtime call while computing features


@dataclass
class Split:
    """Where the graph is cut: `prefix` (node ids, topological) runs once in ONNX Runtime and
    ends in node `cut`, whose output (shape `cut_shape`, without the batch axis) is the only
    tensor the `tail` (node ids, topological) reads from it."""

    prefix: list[str]
    cut: str
    cut_shape: Shape
    tail: list[str]
    note: str | None = None  # why the prefix is shorter than the frozen part, if it is
    frozen_in_tail: tuple[str, ...] = ()  # tail layers that stay frozen (after a shortened cut)


# ---- splitting ------------------------------------------------------------------------------

def frozen_prefix(graph: Graph, validation: Validation | None = None) -> list[str]:
    """Ids (topological) of the layers that are frozen or weightless and fed only by such layers:
    their outputs never change while fine-tuning."""
    v = validation or validate(graph)
    v.raise_if_invalid("fine-tune it")
    inside: set[str] = set()
    out = []
    for nid in v.order:
        node, res = graph.nodes[nid], v.nodes[nid]
        weightless = not res.layer.weight_shapes(res.in_shapes)
        if (not node.trainable or weightless) and all(s in inside
                                                        for s in graph.inputs_of(nid)):
            inside.add(nid)
            out.append(nid)
    return out


def _cut_of(graph: Graph, part: set[str], used: set[str]) -> list[tuple[str, int]]:
    """The tensors (node, output port) of `part` that a node outside `part` reads (of the
    nodes in `used`)."""
    return sorted({(e.src, e.src_port) for e in graph.edges
                   if e.src in part and e.dst not in part and e.dst in used})


def split_graph(graph: Graph, validation: Validation | None = None) -> Split | None:
    """The cut between the frozen prefix and the trainable tail, or None when nothing but the
    Input is frozen (no fast path: train in the engine). TrainingError when nothing is left to
    train."""
    v = validation or validate(graph)
    prefix = frozen_prefix(graph, v)
    inside = set(prefix)
    if v.output_id in inside:
        raise TrainingError("nothing to train: every layer with weights is frozen; unfreeze the "
                            "last layers (the head) to fine-tune")
    # a side branch that ends nowhere (validation warns about it) changes no output and no
    # gradient: it is left out of both parts
    used = graph.ancestors(v.output_id) | {v.output_id}
    cut = _cut_of(graph, inside, used)
    note = None
    # the cached features are one tensor, the cut node's output 0 (the prefix model's output)
    if len(cut) != 1 or cut[0][1] != 0:
        names = ", ".join(f"'{graph.nodes[c].name}'" + (f" (output {p})" if p else "")
                          for c, p in cut)
        # the last frozen layer whose output alone separates its ancestors from the rest
        best = None
        for nid in reversed(prefix):
            part = graph.ancestors(nid) | {nid}
            if _cut_of(graph, part, used) == [(nid, 0)]:
                best = nid
                break
        if best is None:
            return None
        inside = graph.ancestors(best) | {best}
        note = (f"the frozen layers end in {len(cut)} tensors read by trainable layers "
                f"({names}); features are cached at '{graph.nodes[best].name}', the frozen "
                f"layers after it run (frozen) in the engine")
        cut = [(best, 0)]
    ((c, _),) = cut
    if graph.nodes[c].type_name == "Input":
        return None
    needed = graph.ancestors(c) | {c}
    prefix = [nid for nid in v.order if nid in needed]
    tail = [nid for nid in v.order if nid in used and nid not in needed]
    frozen_tail = tuple(nid for nid in tail if not graph.nodes[nid].trainable)
    return Split(prefix, c, tuple(v.nodes[c].out_shape), tail, note, frozen_tail)


# ---- the two halves ---------------------------------------------------------------------------

def prefix_graph(graph: Graph, split: Split) -> Graph:
    """The frozen prefix as a graph of its own whose output is the cut node."""
    g = Graph(f"{graph.name} (frozen part)")
    keep = set(split.prefix)
    for nid in split.prefix:
        n = graph.nodes[nid]
        g.add_node(n.type_name, n.name, dict(n.params), n.position, node_id=nid,
                   trainable=n.trainable)
    g.edges = [e for e in graph.edges if e.src in keep and e.dst in keep]
    return g


def prefix_model(graph: Graph, weights: dict[str, np.ndarray], split: Split,
                 check: bool = True):
    """The frozen prefix with its weights as an in-memory ONNX model (input "input",
    N×C×H×W; output "output", N × cut shape)."""
    from ..onnx.export import export_onnx

    g = prefix_graph(graph, split)
    w = _of_nodes(weights, split.prefix)
    return export_onnx(g, w, check=check)


def prefix_runner(graph: Graph, weights: dict[str, np.ndarray], split: Split,
                  providers: list[str] | None = None):
    """The frozen prefix in ONNX Runtime (runtime.graph_model): its weights handed over as
    arrays rather than serialised, the export unchecked (the graph validated), the session kept
    for the next run on the same prefix."""
    from ..onnx.runtime import graph_model

    return graph_model(prefix_graph(graph, split), _of_nodes(weights, split.prefix),
                       providers=providers)


def _fresh_id(graph: Graph, base: str) -> str:
    nid, k = base, 1
    while nid in graph.nodes:
        nid = f"{base}{k}"
        k += 1
    return nid


def tail_graph(graph: Graph, split: Split) -> Graph:
    """The tail as a graph of its own: an Input of the cut's shape feeds the tail layers (same
    ids, names, params and trainable flags) where the cut fed them. A flat cut (F,) comes in as
    Input (F, 1, 1) followed by a Flatten, since Input is C×H×W."""
    g = Graph(f"{graph.name} (trainable part)")
    shape = split.cut_shape
    src = _fresh_id(graph, CUT_INPUT_ID)
    dims = shape if len(shape) == 3 else (int(np.prod(shape)), 1, 1)
    g.add_node("Input", "cut input", {"channels": dims[0], "height": dims[1], "width": dims[2]},
               node_id=src)
    if len(shape) != 3:
        flat = _fresh_id(graph, CUT_FLATTEN_ID)
        g.add_node("Flatten", "cut flatten", {}, node_id=flat)
        g.edges.append(Edge(src, flat, 0))
        src = flat
    keep = set(split.tail)
    for nid in split.tail:
        n = graph.nodes[nid]
        g.add_node(n.type_name, n.name, dict(n.params), n.position, node_id=nid,
                   trainable=n.trainable)
    for e in graph.edges:
        if e.dst in keep:
            if e.src in keep:
                g.edges.append(e)
            elif e.src == split.cut:
                g.edges.append(Edge(src, e.dst, e.port))
            else:  # split_graph guarantees the cut is the only tensor crossing
                raise GraphError(f"internal error: '{graph.nodes[e.dst].name}' reads "
                                 f"'{graph.nodes[e.src].name}' across the cut")
    return g


def tail_network(graph: Graph, weights: dict[str, np.ndarray], split: Split,
                 rng: np.random.Generator | None = None) -> Network:
    """The compiled tail with the tail layers' weights loaded and its frozen layers frozen."""
    g = tail_graph(graph, split)
    v = validate(g)
    v.raise_if_invalid("train the layers after the frozen part")
    net = Network.compile(g, rng if rng is not None else np.random.default_rng(0), validation=v)
    net.load_state_dict(_of_nodes(weights, split.tail))
    net.set_frozen([nid for nid in split.tail if not graph.nodes[nid].trainable])
    return net


def merge_weights(weights: dict[str, np.ndarray], tail_state: dict[str, np.ndarray],
                  split: Split) -> dict[str, np.ndarray]:
    """The full graph's weights with the tail layers' arrays replaced by `tail_state`'s."""
    out = dict(weights)
    out.update(_of_nodes(tail_state, split.tail))
    return out


def _of_nodes(weights: dict[str, np.ndarray], node_ids) -> dict[str, np.ndarray]:
    """The entries "node_id.name" of `weights` whose node is in `node_ids` (ids may hold dots:
    the array name is what follows the last one)."""
    ids = set(node_ids)
    return {k: a for k, a in weights.items() if k.rpartition(".")[0] in ids}


# ---- features ---------------------------------------------------------------------------------

def compute_features(model, x: np.ndarray, batch_size: int = FEATURE_BATCH,
                     on_progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     providers: list[str] | None = None) -> np.ndarray | None:
    """Run an ONNX model (ModelProto, bytes, path or a runtime.OnnxModel) over (N, C, H, W)
    images in batches -> (N, *out). `on_progress(done, total)` after each batch; returns None
    when `should_stop()` turns true (polled before each batch)."""
    from ..onnx.runtime import OnnxModel

    runner = model if isinstance(model, OnnxModel) else OnnxModel(model, providers=providers)
    x = np.asarray(x, np.float32)
    n = len(x)
    out = None  # allocated at the first batch: no second copy of all features at the end
    for i in range(0, n, batch_size):
        if should_stop is not None and should_stop():
            return None
        f = np.asarray(runner.run(x[i:i + batch_size]), np.float32)
        if out is None:
            out = np.empty((n, *f.shape[1:]), np.float32)
        out[i:i + len(f)] = f
        if on_progress is not None:
            on_progress(min(i + batch_size, n), n)
    if out is None:
        out_shape = runner.session.get_outputs()[0].shape[1:]
        return np.zeros((0, *[int(d) for d in out_shape]), np.float32)
    return out


def feature_bytes(split: Split, n_images: int) -> int:
    """Memory the cached features of `n_images` take (float32): N · prod(cut shape) · 4."""
    return int(n_images) * int(np.prod(split.cut_shape)) * 4


# ---- fine-tuning ------------------------------------------------------------------------------

def fine_tune(graph: Graph, weights: dict[str, np.ndarray] | None, x: np.ndarray, y: np.ndarray,
              config: TrainConfig | None = None, x_val: np.ndarray | None = None,
              y_val: np.ndarray | None = None, *, fast: bool | None = None,
              on_batch=None, on_epoch=None, should_stop: Callable[[], bool] | None = None,
              on_features: Callable[[int, int], None] | None = None,
              feature_batch_size: int = FEATURE_BATCH, providers: list[str] | None = None,
              cache: FeatureCache | None = None, augment: Augment | None = None,
              patience: int | None = None) -> tuple[dict[str, np.ndarray], History]:
    """Train the trainable layers of `graph` on (N, C, H, W) images `x` and labels `y`, starting
    from `weights` ("node_id.name" arrays; None: initial weights from config.seed); frozen layers
    keep theirs. Returns (all weights, history).

    fast=None picks the fast path when the graph has a frozen prefix (features from ONNX
    Runtime, tail trained in the engine), else trains the whole net in the engine; fast=False
    forces the engine; fast=True raises TrainingError without a frozen prefix. Callbacks as in
    engine.nn.train.train, plus on_features(done, total) while computing features; should_stop
    also cancels feature computation (history.stopped == "cancelled", weights unchanged).
    Without x_val, config.val_split of the data is held out exactly as train() does.
    With a `cache` (FeatureCache), a second run on the same frozen part and the same images
    (another learning rate, more epochs) reuses the features instead of recomputing them.
    `augment` (engine.transfer.augment.Augment) changes every training batch, so the training
    images' features cannot be cached: the frozen part then runs in ONNX Runtime on each
    augmented batch (validation images are not augmented: their features are computed once);
    `plan` says which applies. `patience`: early stopping on validation accuracy, the best
    epoch's weights returned (engine.nn.train.train).
    """
    config = config or TrainConfig()
    config.check()
    v = validate(graph)
    v.raise_if_invalid("fine-tune it")
    if weights is None:  # an untrained design: start from the initial weights
        weights = Network.compile(graph, np.random.default_rng(config.seed),
                                  validation=v).state_dict()
    split = split_graph(graph, v) if fast is not False else None
    if split is None:
        if fast:
            raise TrainingError("no frozen layers before the trainable ones: nothing to compute "
                                "once; freeze the backbone (\"freeze up to here\") first")
        return _engine_fine_tune(graph, weights, x, y, config, x_val, y_val, on_batch, on_epoch,
                                 should_stop, augment, patience)
    if augment is not None:
        return _augmented_fine_tune(graph, weights, split, x, y, config, x_val, y_val, on_batch,
                                    on_epoch, should_stop, on_features, feature_batch_size,
                                    providers, augment, patience, fast)
    t0 = time.perf_counter()
    key = cache.key(graph, weights, split, x, x_val) if cache is not None else None
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        f, f_val = hit
        if on_features is not None:
            on_features(len(f) + (0 if f_val is None else len(f_val)),
                        len(f) + (0 if f_val is None else len(f_val)))
    else:
        try:
            f, f_val = _features(graph, weights, split, x, x_val, feature_batch_size,
                                 on_features, should_stop, providers)
        except (GraphError, DataError, ImportError):
            if fast:
                raise
            # no ONNX Runtime (or it refuses the model): the engine alone gives the same result
            return _engine_fine_tune(graph, weights, x, y, config, x_val, y_val, on_batch,
                                     on_epoch, should_stop, None, patience)
        if f is None:
            return dict(weights), History(stopped="cancelled",
                                          seconds=time.perf_counter() - t0)
        if cache is not None:
            cache.put(key, f, f_val)
    net = tail_network(graph, weights, split, np.random.default_rng(config.seed))
    f = f.reshape(len(f), *net.input_shape)  # a flat cut (F,) enters as F×1×1
    if f_val is not None:
        f_val = f_val.reshape(len(f_val), *net.input_shape)
    # without x_val, train() holds out config.val_split of the features: the same images (same
    # seed, same count) it would hold out of the images in the engine-only path
    history = train(net, f, y, config, x_val=f_val, y_val=y_val if f_val is not None else None,
                    on_batch=on_batch, on_epoch=on_epoch, should_stop=should_stop,
                    patience=patience)
    history.seconds = time.perf_counter() - t0
    return merge_weights(weights, net.state_dict(), split), history


def _augmented_fine_tune(graph, weights, split, x, y, config, x_val, y_val, on_batch, on_epoch,
                         should_stop, on_features, batch_size, providers, augment, patience,
                         fast):
    """Augmentation with a frozen prefix: each training batch is augmented, then goes through
    the prefix in ONNX Runtime, then the tail trains on those features; validation features
    once."""
    t0 = time.perf_counter()
    if x_val is None:  # held out here, as train() would, so that only features reach train()
        x, y, x_val, y_val = split_validation(x, y, config.val_split,
                                              np.random.default_rng(config.seed))
    try:
        runner = prefix_runner(graph, weights, split, providers)
        f_val = None
        if x_val is not None and len(x_val):
            f_val = compute_features(runner, x_val, batch_size, on_features, should_stop)
            if f_val is None:
                return dict(weights), History(stopped="cancelled",
                                              seconds=time.perf_counter() - t0)
    except (GraphError, DataError, ImportError):
        if fast:
            raise
        return _engine_fine_tune(graph, weights, x, y, config, x_val, y_val, on_batch,
                                 on_epoch, should_stop, augment, patience)
    net = tail_network(graph, weights, split, np.random.default_rng(config.seed))
    shape = net.input_shape

    def features(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        f = np.asarray(runner.run(augment(xb, rng)), np.float32)
        return f.reshape(len(f), *shape)

    if f_val is not None:
        f_val = f_val.reshape(len(f_val), *shape)
    history = train(net, x, y, config, x_val=f_val, y_val=y_val if f_val is not None else None,
                    on_batch=on_batch, on_epoch=on_epoch, should_stop=should_stop,
                    batch_transform=features, patience=patience)
    history.seconds = time.perf_counter() - t0
    return merge_weights(weights, net.state_dict(), split), history


def _features(graph, weights, split, x, x_val, batch_size, on_features, should_stop, providers
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Features of x (and x_val) from the prefix in ONNX Runtime; (None, None) if cancelled."""
    runner = prefix_runner(graph, weights, split, providers)
    n_val = 0 if x_val is None else len(x_val)
    total = len(x) + n_val

    def progress(offset):
        if on_features is None:
            return None
        return lambda done, _n: on_features(offset + done, total)

    f = compute_features(runner, x, batch_size, progress(0), should_stop)
    if f is None or not n_val:
        return f, None
    f_val = compute_features(runner, x_val, batch_size, progress(len(x)), should_stop)
    return (f, f_val) if f_val is not None else (None, None)


class FeatureCache:
    """Keeps the features of the last fast fine-tuning run (one entry: features are big), keyed
    by the frozen part (layers, parameters, weights) and a digest of the images."""

    def __init__(self):
        self._key: str | None = None
        self._value: tuple[np.ndarray, np.ndarray | None] | None = None

    @staticmethod
    def key(graph: Graph, weights: dict[str, np.ndarray], split: Split, x: np.ndarray,
            x_val: np.ndarray | None) -> str:
        import hashlib
        import json

        h = hashlib.blake2b(digest_size=20)
        part = prefix_graph(graph, split).to_json()
        for n in part["nodes"]:
            n.pop("position", None)
            n.pop("name", None)
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        for k, a in sorted(_of_nodes(weights, split.prefix).items()):
            h.update(k.encode())
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
        for arr in (x, x_val):
            if arr is None:
                h.update(b"none")
                continue
            arr = np.ascontiguousarray(arr, np.float32)
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray | None] | None:
        return self._value if key == self._key else None

    def put(self, key: str, f: np.ndarray, f_val: np.ndarray | None) -> None:
        self._key, self._value = key, (f, f_val)

    def clear(self) -> None:
        self._key = self._value = None


def _engine_fine_tune(graph, weights, x, y, config, x_val, y_val, on_batch, on_epoch,
                      should_stop, augment=None, patience=None):
    """The plain path: the whole net in the engine, frozen layers frozen."""
    net = Network.compile(graph, np.random.default_rng(config.seed))
    net.load_state_dict(weights)
    net.set_frozen([nid for nid in net.order if not graph.nodes[nid].trainable])
    history = train(net, x, y, config, x_val=x_val, y_val=y_val, on_batch=on_batch,
                    on_epoch=on_epoch, should_stop=should_stop, batch_transform=augment,
                    patience=patience)
    return net.state_dict(), history


def plan(split: Split | None, augment: Augment | None, engine_only: bool = False) -> str:
    """One line for the UI / CLI: whether the frozen part's features are cached, and why."""
    if engine_only:
        how = "the whole network trains in the engine (--engine-only: no feature cache)"
        return how + (f"; augmentation on: {augment.describe()}" if augment else "")
    if split is None:
        how = "no frozen layers before the trainable ones, so there is nothing to cache: the "\
              "whole network trains in the engine"
        return how + (f"; augmentation on: {augment.describe()}" if augment else "")
    if augment is None:
        return ("augmentation off: the training images are the same every epoch, so the frozen "
                "part's features are computed once and cached")
    return (f"augmentation on ({augment.describe()}): the training images change every epoch, "
            f"so the frozen part's features cannot be cached; it runs in ONNX Runtime on every "
            f"augmented batch (validation features are computed once). --no-augment caches "
            f"them: each epoch then costs only the trainable part")


def describe_split(graph: Graph, split: Split | None, augmented: bool = False) -> str:
    """One line for the UI / CLI: what runs where (`augmented`: the frozen part runs on every
    augmented batch rather than once)."""
    if split is None:
        return "no frozen layers before the trainable ones: the whole network trains in the engine"
    n_frozen_tail = len(split.frozen_in_tail)
    extra = f" ({n_frozen_tail} of them frozen)" if n_frozen_tail else ""
    return (f"{len(split.prefix) - 1} frozen layers up to '{graph.nodes[split.cut].name}' "
            f"(features {fmt_shape(split.cut_shape)}) run "
            f"{'on every augmented batch' if augmented else 'once'} in ONNX Runtime; "
            f"{len(split.tail)} layers{extra} train in the engine")


# ---- what the finetune command (engine.cli.finetune) asks -------------------------------------

def load_any_model(spec: str):
    """(graph, weights or None) of an .onnx file, a project, a bare .json, an example name or a
    template name (untrained): engine.models.load_model."""
    from ..models import load_model

    project = load_model(spec, keep_dropout=True)  # the rates matter when training
    return project.graph, project.weights


def replace_any_head(graph: Graph, weights: dict[str, np.ndarray], n_classes: int,
                     rng: np.random.Generator | None = None
                     ) -> tuple[Graph, dict[str, np.ndarray]]:
    """engine.transfer.head.replace_head (the last Linear gets `n_classes` outputs), or, for a net
    whose classifier is a convolution followed only by weightless layers (SqueezeNet: 1×1 conv,
    ReLU, global pooling, Flatten), that Conv2d with `n_classes` filters, freshly initialised."""
    from .head import replace_head

    if any(n.type_name == "Linear" for n in graph.nodes.values()):
        return replace_head(graph, weights, n_classes, rng)
    v = validate(graph)
    v.raise_if_invalid("replace its head")
    weighted = [nid for nid in v.order if v.nodes[nid].layer.weight_shapes(v.nodes[nid].in_shapes)]
    if not weighted or graph.nodes[weighted[-1]].type_name != "Conv2d":
        raise GraphError("the network has no fully connected (Linear) layer or final "
                         "convolution to turn into the new classifier; add a Linear before "
                         "the output")
    head = weighted[-1]
    g = graph.copy()
    node = g.nodes[head]
    node.params = dict(node.params, out_channels=int(n_classes))
    node.trainable = True
    v = validate(g)
    v.raise_if_invalid(f"make '{node.name}' the new {n_classes}-class head")
    res = v.nodes[head]
    layer = res.layer.clone()  # validation's instance is shared with its cache: never mutate it
    layer.init_weights(res.in_shapes, rng if rng is not None else np.random.default_rng(0))
    out = {k: a for k, a in weights.items() if k.rpartition(".")[0] != head}
    out.update({f"{head}.{k}": a for k, a in layer.weights.items()})
    return g, out


def head_id(graph: Graph, validation: Validation | None = None) -> str:
    """The layer replace_any_head turns into the new classifier: the last Linear, else the last
    layer with weights (a Conv2d classifier, SqueezeNet)."""
    from .head import last_linear

    if any(n.type_name == "Linear" for n in graph.nodes.values()):
        return last_linear(graph)
    v = validation or validate(graph)
    weighted = [nid for nid in v.order if v.nodes[nid].layer.weight_shapes(v.nodes[nid].in_shapes)]
    if not weighted:
        raise GraphError("the network has no layer with weights to turn into the new classifier")
    return weighted[-1]


def resolve_layer(graph: Graph, spec: str, what: str = "--freeze-up-to") -> str:
    """The id of the layer named (or with id) `spec`; GraphError suggesting real names when there
    is none: close matches, or the layers of a block ('layer3' -> 'layer3.1.relu2')."""
    import difflib

    for n in graph.nodes.values():
        if spec in (n.id, n.name):
            return n.id
    order = graph.topological_order() if graph.edges else list(graph.nodes)
    names = [graph.nodes[nid].name for nid in order]
    inside = [nm for nm in names if nm.startswith((spec + ".", spec + "_"))]
    if inside:
        raise GraphError(f"{what} {spec}: there is no layer '{spec}', but a block of "
                         f"{len(inside)} layers ('{inside[0]}' … '{inside[-1]}'); to freeze "
                         f"the whole block, use its last layer: {what} {inside[-1]}")
    close = difflib.get_close_matches(spec, names, n=4, cutoff=0.6)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close else
            f"the layers are {', '.join(repr(nm) for nm in names[:6])}"
            f"{' … ' + repr(names[-1]) if len(names) > 6 else ''} (`summary MODEL` lists all)")
    raise GraphError(f"{what} {spec}: no layer of that name or id; {hint}")


def check_freeze_point(graph: Graph, target: str) -> None:
    """GraphError when freezing up to `target` would freeze the classifier head, which the
    fine-tuning replaces and trains: the head itself or a layer after it (Softmax)."""
    head = head_id(graph)
    if target != head and head not in graph.ancestors(target):
        return
    before = graph.inputs_of(head)
    hint = (f"; freeze up to the layer before it: --freeze-up-to {graph.nodes[before[0]].name}"
            if len(before) == 1 and graph.nodes[before[0]].type_name != "Input" else "")
    name, head_name = graph.nodes[target].name, graph.nodes[head].name
    where = ("is the classifier head" if target == head else
             f"comes after the classifier head '{head_name}'")
    raise GraphError(f"--freeze-up-to {name}: '{name}' {where}; fine-tuning replaces "
                     f"'{head_name}' with a new layer for your classes and trains it, so it "
                     f"cannot be frozen{hint}")


