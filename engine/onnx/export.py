"""ONNX export: a valid graph with its weights -> an ONNX model (one node per layer).

Opset: OPSET = 17 by default, 13-21 on request. Why 17: it is the newest opset that the
deployment runtimes people actually meet all load (ONNX Runtime, including mobile builds,
TensorRT 8.6+, OpenVINO, the CoreML and TFLite converters), and every operator we emit already
has its current form there: Softmax-13 (per-axis), Clip-13 (min/max as inputs), Gemm-13,
Dropout-13, BatchNormalization-15, MaxPool-12, AveragePool-11, LRN-13, Concat-13, Flatten-13.
Opsets 18-21 changed none of these for float32 (AveragePool-19 only added dilations; 21 added
types), so a newer pin would lose compatibility for nothing.

Pooling ceil_mode: ONNX Runtime (all opsets 13-22, measured) and this engine drop a last window
that would start in the end padding (PyTorch's rule, `engine.shapes.conv_out`), but onnx's shape
inference does not. We write ceil_mode=1 only where it adds a window (otherwise it equals floor
mode), so ONNX Runtime, onnx shape inference and our validation agree; `shape_mismatches`
checks this for every node.

The layers' own `to_onnx(ctx, inputs, output)` methods (engine/layers/) add the nodes and
initializers through an `ExportContext`; this module walks the graph in topological order.
Names: the graph input is "input" (N×C×H×W, N dynamic), the output "output", every node is named
after its layer and its output tensor too; weights are initializers "<layer>.weight" etc.
A layer with several outputs names output 0 so and output k "<layer>:k" (as TensorFlow names
tensors); its `to_onnx` reads them all from `ctx.out_names` (`output` is the first).
Dropout is wired through (inference is the identity; no redundant node) unless keep_dropout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GraphError
from ..fileio import atomic_write_bytes
from ..graph import Graph
from ..layers import Shape, fmt_shape
from ..validate import Validation, validate
from .preprocess import spec_props

OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 21
PRODUCER = "CNN Designer"
INPUT_NAME, OUTPUT_NAME = "input", "output"
BATCH_DIM = "N"
POSITIONS_KEY = "cnn_designer.positions"  # metadata: canvas positions by layer name
INITIALIZER_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "min", "max", "ratio",
                        "axes", "shape", "groups", "ones", "zeros", "eps",
                        "split", "scales", "sizes", "roi")
# export_apart: float initializers of at least this size stay out of the ModelProto (a small
# one costs less to serialise than to hand over apart)
APART_MIN_BYTES = 1024
APART_LOCATION = "cnn-designer-weights-in-memory"  # never read: the arrays are handed over


def producer_version() -> str:
    try:
        from importlib.metadata import version

        return version("cnn-designer")
    except Exception:  # noqa: BLE001 - not installed as a package: still a valid model
        return "0.1.0"


@dataclass
class ExportContext:
    """What a layer's `to_onnx` sees: its weights and shapes, and ways to add to the model."""

    opset: int
    keep_dropout: bool = False
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    # set per layer by the exporter
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    in_shapes: list[Shape] = field(default_factory=list)
    out_shape: Shape | None = None
    out_names: list[str] = field(default_factory=list)  # every output port's tensor name
    out_shapes: list[Shape] = field(default_factory=list)  # and shape (layers with several)
    _init_names: set[str] = field(default_factory=set)
    apart: dict[str, np.ndarray] | None = None  # export_apart: weights kept out of the model

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str,
             doc: str | None = None, **attrs) -> None:
        from onnx import helper

        inputs = [self.aliases.get(i, i) for i in inputs]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, doc_string=doc,
                                           **attrs))

    def initializer(self, name: str, array: np.ndarray, dtype=np.float32) -> str:
        """Add a constant; `dtype` np.int64 for shapes and axes (Reshape, Reduce* inputs)."""
        from onnx import numpy_helper

        if name in self._init_names:
            raise GraphError(f"two weights would be called {name!r}; rename a layer")
        self._init_names.add(name)
        array = np.asarray(array, dtype)
        if self.apart is not None and array.dtype == np.float32 and \
                array.nbytes >= APART_MIN_BYTES:
            self.apart[name] = np.ascontiguousarray(array)
            self.initializers.append(_external_placeholder(name, array.shape))
        else:
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def add_input(self, name: str, shape: list[int]) -> None:
        from onnx import TensorProto, helper

        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                         [BATCH_DIM] + list(shape)))

    def alias(self, output: str, source: str) -> None:
        """The layer computes nothing at inference: its output is its input."""
        self.aliases[output] = self.aliases.get(source, source)


def export_onnx(graph: Graph, weights: dict[str, np.ndarray] | None = None,
                path: str | Path | None = None, opset: int = OPSET, keep_dropout: bool = False,
                check: bool = True, all_outputs: bool = False,
                rng: np.random.Generator | None = None):
    """Export `graph` with `weights` ({"node_id.weight": array}, as Network.state_dict()).

    Without weights the layers get their initial weights from `rng` (an untrained design).
    `all_outputs` also exposes every layer's output tensor (for the parity report).
    With `check`, the model passes onnx.checker (full check) and onnx shape inference must agree
    with our validation on every node's shape. Returns the onnx.ModelProto; saves it (atomically)
    to `path` if given.
    """
    import onnx

    model, v = _build(graph, weights, opset, keep_dropout, all_outputs, rng, None)
    if check:
        onnx.checker.check_model(model, full_check=True)
        bad = shape_mismatches(model, graph, v)
        if bad:
            raise GraphError("internal error: ONNX shape inference disagrees with validation:\n"
                             + "\n".join(f"  - {b}" for b in bad))
    if path is not None:
        save_model(model, path)
    return model


def export_apart(graph: Graph, weights: dict[str, np.ndarray] | None = None, opset: int = OPSET,
                 all_outputs: bool = False, tensors: dict[str, str] | None = None) -> tuple:
    """(model, arrays): the export with its float weights kept apart, for running it now in
    ONNX Runtime (runtime.OnnxModel(model, weights=arrays)), not for saving. The model's
    initializers of APART_MIN_BYTES or more are external-data placeholders (shape, no data) and
    `arrays` holds them by initializer name (the caller's arrays where already contiguous
    float32, no copy); the model itself is a few KB however big the network, so nothing of the
    weights is copied into protobuf, serialised and parsed again. Unchecked: the graph validated,
    and ONNX Runtime checks what it runs. `tensors`, when given, is filled with {node id: the
    tensor holding its output 0} for every exported layer: the last tensor of a layer that
    exports as several ONNX nodes, its input's for one wired through (Dropout), "input" and
    "output" at the ends."""
    arrays: dict[str, np.ndarray] = {}
    model, _ = _build(graph, weights, opset, False, all_outputs, None, arrays, tensors)
    return model, arrays


def _external_placeholder(name: str, shape: tuple):
    """A float initializer that names its data as external: shape and type, no values."""
    from onnx import TensorProto

    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape,
                    data_location=TensorProto.EXTERNAL)
    entry = t.external_data.add()
    entry.key, entry.value = "location", APART_LOCATION
    return t


def _build(graph: Graph, weights, opset: int, keep_dropout: bool, all_outputs: bool, rng,
           apart: dict | None, layer_tensors: dict | None = None):
    """The ModelProto of `graph` and its validation (export_onnx without the check)."""
    from onnx import TensorProto, helper

    if not (MIN_OPSET <= int(opset) <= MAX_OPSET):
        raise ValueError(f"opset {opset} is not supported for export; use {MIN_OPSET} to "
                         f"{MAX_OPSET} (default {OPSET})")
    v = validate(graph)
    v.raise_if_invalid("export it")
    weights = _complete_weights(graph, v, weights, rng)
    needed = graph.ancestors(v.output_id) | {v.output_id}
    order = [nid for nid in v.order if nid in needed]
    ctx = ExportContext(int(opset), keep_dropout, apart=apart)
    tensor = _tensor_names(graph, order, v.output_id)
    for nid in order:
        node, res = graph.nodes[nid], v.nodes[nid]
        layer = res.layer
        ctx.weights = {k[len(nid) + 1:]: a for k, a in weights.items()
                       if k.startswith(nid + ".")}
        ctx.in_shapes, ctx.out_shape = res.in_shapes, res.out_shape
        ctx.out_shapes = list(res.out_shapes)
        ctx.out_names = [port_tensor(tensor, nid, k) for k in range(len(ctx.out_shapes))]
        ins = [port_tensor(tensor, s, p) for s, p in graph.input_refs(nid)]
        try:
            layer.to_onnx(ctx, ins, tensor[nid])
        except (ValueError, KeyError) as exc:
            if isinstance(exc, GraphError):
                raise
            raise GraphError(f"cannot export {node.type_name} '{node.name}': {exc}") from None
    out_tensor = ctx.aliases.get(tensor[v.output_id], tensor[v.output_id])
    if out_tensor == INPUT_NAME:
        raise GraphError("cannot export: the network computes nothing at inference (its output "
                         "is its input); add a layer")
    if out_tensor != OUTPUT_NAME:
        # the last layer was wired through (a final Dropout): its producer's tensor gets the name
        _rename(ctx, out_tensor, OUTPUT_NAME)
        ctx.aliases = {k: (OUTPUT_NAME if a == out_tensor else a) for k, a in ctx.aliases.items()}

    def final(name: str) -> str:  # the tensor that holds `name` once aliases and renames apply
        t = ctx.aliases.get(name, name)
        return OUTPUT_NAME if t == out_tensor else t

    if layer_tensors is not None:
        layer_tensors.update({nid: final(tensor[nid]) for nid in order})
    out_shape = [BATCH_DIM] + list(v.nodes[v.output_id].out_shape)
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, out_shape)]
    if all_outputs:
        produced = {o for n in ctx.nodes for o in n.output}
        listed = {OUTPUT_NAME}  # a tensor shared by layers (one wired through) is listed once
        for nid in order:
            for k, port_shape in enumerate(v.nodes[nid].out_shapes):
                t = final(port_tensor(tensor, nid, k))
                if t in produced and t not in listed:
                    listed.add(t)
                    shape = [BATCH_DIM] + list(port_shape)
                    outputs.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, shape))
    g = helper.make_graph(ctx.nodes, graph.name or "network", ctx.inputs, outputs,
                          initializer=ctx.initializers)
    opsets = [helper.make_opsetid("", int(opset))]
    model = helper.make_model(g, opset_imports=opsets, producer_name=PRODUCER,
                              producer_version=producer_version())
    # the lowest IR version that carries this opset: loads in the widest range of runtimes
    model.ir_version = helper.find_min_ir_version_for(opsets)
    model.doc_string = f"Exported by {PRODUCER} from the graph '{graph.name}'."
    positions = {graph.nodes[n].name: list(graph.nodes[n].position) for n in order}
    # the input spec travels with the model (engine/onnx/preprocess.py reads it back)
    helper.set_model_props(model, {POSITIONS_KEY: json.dumps(positions), **spec_props(graph)})
    return model, v


def save_model(model, path: str | Path) -> None:
    """Write atomically (engine.fileio): a temporary file in the same folder, then os.replace."""
    atomic_write_bytes(path, model.SerializeToString())


def shape_mismatches(model, graph: Graph, v: Validation | None = None) -> list[str]:
    """Run ONNX shape inference (strict) and compare every node's output shape with
    validation's. Returns one line per disagreement (empty: all agree)."""
    from onnx import shape_inference

    v = v or validate(graph)
    try:
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                data_prop=True)
    except shape_inference.InferenceError as exc:  # conflicts with a declared output shape
        return [str(exc).strip()]
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
    by_name = {n.name: n for n in inferred.graph.node}
    out = []
    for nid, res in v.nodes.items():
        node = graph.nodes[nid]
        onode = by_name.get(node.name)
        if onode is None or res.out_shape is None:
            continue
        for k, port_shape in enumerate(res.out_shapes or [res.out_shape]):
            if k >= len(onode.output):
                break
            got = shapes.get(onode.output[k])
            want = [BATCH_DIM] + list(port_shape)
            if got != want:
                port = f" output {k}" if k else ""
                out.append(f"{node.type_name} '{node.name}'{port}: ONNX infers {got}, "
                           f"validation {fmt_shape(port_shape)}")
    return out


def _complete_weights(graph: Graph, v: Validation, weights, rng) -> dict[str, np.ndarray]:
    """Check the given weights against the layers' weight shapes; initialise if none given."""
    if weights is None:
        from ..nn.network import Network

        return Network.compile(graph, rng if rng is not None else np.random.default_rng(0),
                               validation=v).state_dict()
    out = {}
    for nid in v.order:
        res = v.nodes[nid]
        for k, (shape, _) in res.layer.weight_shapes(res.in_shapes).items():
            key = f"{nid}.{k}"
            if key not in weights:
                raise GraphError(f"cannot export: no '{k}' weights for layer "
                                 f"'{graph.nodes[nid].name}' ({key})")
            arr = np.asarray(weights[key], np.float32)
            if arr.shape != tuple(shape):
                raise GraphError(f"cannot export: layer '{graph.nodes[nid].name}' needs '{k}' "
                                 f"of {fmt_shape(shape)}, the weights have {fmt_shape(arr.shape)}")
            out[key] = arr
    return out


def _tensor_names(graph: Graph, order: list[str], output_id: str) -> dict[str, str]:
    """Each layer's output tensor: its name; "input" for the Input and "output" for the last."""
    names: dict[str, str] = {}
    taken = {INPUT_NAME, OUTPUT_NAME}
    # the initializers' names ("<layer>.weight", ...) are taken too
    taken |= {f"{graph.nodes[n].name}.{k}" for n in order for k in INITIALIZER_SUFFIXES}
    for nid in order:
        node = graph.nodes[nid]
        if node.type_name == "Input":
            names[nid] = INPUT_NAME
            continue
        if nid == output_id:
            names[nid] = OUTPUT_NAME
            continue
        base = node.name
        name, k = base, 1
        while name in taken:
            name = f"{base}_{k}"
            k += 1
        taken.add(name)
        names[nid] = name
    return names


def port_tensor(tensor: dict[str, str], nid: str, port: int) -> str:
    """The tensor name of output `port` of node `nid`: its layer's tensor for output 0,
    "<tensor>:<port>" for the others."""
    return tensor[nid] if port == 0 else f"{tensor[nid]}:{port}"


def _rename(ctx: ExportContext, old: str, new: str) -> None:
    for n in ctx.nodes:
        for i, t in enumerate(n.output):
            if t == old:
                n.output[i] = new
        for i, t in enumerate(n.input):
            if t == old:
                n.input[i] = new

