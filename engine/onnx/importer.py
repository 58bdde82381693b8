"""ONNX import: an ONNX model (from here, PyTorch, Keras, the model zoo) -> graph + weights.

    model = import_onnx("lenet.onnx")        # ImportedModel: .graph, .weights, .network()

Steps: read (size, corrupt and truncated files, external data confined to the model's folder),
check, upgrade old opsets, clean up (engine/onnx/cleanup.py: ONNX Runtime's basic optimisation
for the known input size folds the shape arithmetic, e.g. PyTorch's Shape -> Gather -> Unsqueeze
-> Concat -> Reshape flattening chain becomes a constant target shape, hence a Flatten; merges
Pad into Conv / pooling; drops dead nodes), fold what it left of constant expressions (those
over the large weights it runs without), elide Identity, then map each remaining node through
the registry: the layer classes declare `onnx_ops` and a `from_onnx(node, ctx)` classmethod that
reads attributes and weights through an `ImportContext`. Everything is checked before anything
is built: one error lists each unsupported operator with its node names, and every attribute
problem; nothing is half-imported.

Mapping (each in its layer class): Conv -> Conv2d (SAME_UPPER -> 'same', SAME_LOWER and
asymmetric pads -> explicit pads, a following per-channel constant Add -> its bias);
MaxPool / AveragePool -> MaxPool2d / AvgPool2d (ONNX's default stride 1 and count_include_pad 0
honoured, ceil_mode by ONNX Runtime's rule); GlobalAveragePool -> GlobalAvgPool2d; Relu,
LeakyRelu, Sigmoid, Tanh; Clip(0, 6) -> ReLU6 and Clip(0, inf) -> ReLU (attributes before opset
11, inputs since); Softmax on axis 1 (opset < 13's 2-D coercion where it means the same);
Gemm (transB, alpha, beta folded) and MatMul (+ Add of a constant) -> Linear; Flatten(axis 1) and
the flattening Reshape -> Flatten; BatchNormalization (momentum 1 − m) -> BatchNorm2d; LRN;
Add / Sum of layer outputs -> Add; Concat on channels; Identity, Dropout (it does nothing at
inference) and Constant disappear, except our own tagged Identity and Dropout layers; with
keep_dropout (import --keep-dropout, and fine-tuning from an .onnx) Dropout becomes the layer
with its rate. HardSigmoid, HardSwish, Gelu, Elu, PRelu, Mul -> their layers.

Multi-node forms (a layer's `onnx_patterns`, engine/layers/onnx_pattern.py) are matched before
the per-op converters and consume their nodes: x·Sigmoid(x) -> SiLU, x·HardSigmoid(x, 1/6, 0.5)
-> HardSwish, GELU's Erf and Tanh formulas (as we and PyTorch write them below opset 20) -> GELU.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ParamError, ProjectError, ShapeError
from ..graph import Graph
from ..layers import REGISTRY, Layer, Shape, fmt_shape
from ..validate import validate
from .cleanup import MAX_CONSTANT_ELEMENTS, clean_up
from .preprocess import stored_spec
from .report import ImportRecord, Trail

MAX_BYTES = 2 * 1024**3 - 1  # protobuf's limit; bigger models need external data
MIN_OPSET = 7  # the oldest opset mapped directly; older files are upgraded first
# Older files are upgraded to 13: the fewest converter steps (each one a chance to fail) to an
# opset whose forms the importer maps and ONNX Runtime runs (Clip's min/max and Softmax's axis
# as today); the op semantics that changed later (BatchNormalization's training_mode, Split
# as an input) do not matter to inference graphs.
UPGRADE_OPSET = 13
ROW_SPACING, COL_SPACING = 110.0, 180.0
POSITIONS_KEY = "cnn_designer.positions"
# wired through, never a layer: foreign Identity nodes (the clean-up keeps them, because our
# own Identity layer is a tagged Identity node)
PASS_THROUGH = ("Identity",)


class OnnxImportError(ProjectError):
    """The file cannot be imported; the message says why (every problem at once)."""


@dataclass
class Imported:
    """What a layer's `from_onnx` returns: the layer, its params and weights, its data inputs
    (tensor names, in port order) and the tensor it produces."""

    cls: type[Layer]
    params: dict
    weights: dict[str, np.ndarray]
    inputs: list[str]
    output: str
    name: str | None = None  # the ONNX node name the layer is named after (default: the node's)
    outputs: list[str] | None = None  # every output port's tensor (layers with several)


@dataclass
class ImportedModel:
    graph: Graph
    weights: dict[str, np.ndarray]  # "node_id.weight" -> array, as Network.state_dict()
    opset: int
    producer: str
    warnings: list[str] = field(default_factory=list)
    record: ImportRecord | None = None  # what became of each node (the import report)

    def network(self):
        """The compiled engine Network with the imported weights loaded (no random
        initialisation of the weights the file gives)."""
        from ..nn.network import Network

        return Network.compile(self.graph, np.random.default_rng(0), weights=self.weights)


# ---- reading ------------------------------------------------------------------------------

def _what_it_is(data: bytes) -> str | None:
    """What a file that does not parse as ONNX is instead, if it is something this app reads."""
    if data[:4] == b"PK\x03\x04":
        return ("it is a zip archive, likely a CNN Designer project (.cnnd): that needs no "
                "import; open it, or use it as MODEL directly")
    if data.lstrip()[:1] in (b"{", b"["):
        return ("it is JSON, likely an architecture .json: that needs no import; open it, or "
                "use it as MODEL directly")
    return None


def read_model(source, what: str | None = None):
    """Parse an ONNX file (path) or bytes into a checked ModelProto, or raise OnnxImportError.

    External data is only read from files inside the model's own folder."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import external_data_helper as edh

    base_dir = None
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
        what = what or "the model"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        what = what or "the ONNX data"
    else:
        path = Path(source)
        what = what or f"'{path.name}'"
        if not path.is_file():
            raise OnnxImportError(f"{what}: no such file ({path})")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise OnnxImportError(f"{what} is {size / 1e9:.1f} GB, more than an ONNX file can "
                                  f"hold without external data")
        data = path.read_bytes()
        base_dir = path.resolve().parent
    if not data:
        raise OnnxImportError(f"{what} is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        kind = _what_it_is(data)
        raise OnnxImportError(f"{what} is not an ONNX model: {kind}" if kind else
                              f"{what} is not a readable ONNX model (corrupt or truncated "
                              f"file: {exc})") from None
    if not model.graph.node or not model.opset_import:
        raise OnnxImportError(f"{what} is not a readable ONNX model (corrupt or truncated file: "
                              f"no graph or no opset)")
    external = [t for t in edh._get_all_tensors(model) if edh.uses_external_data(t)]
    if external:
        if base_dir is None:
            raise OnnxImportError(f"{what} keeps weights in external files; open it from its "
                                  f"file so they can be found next to it")
        for t in external:
            loc = edh.ExternalDataInfo(t).location
            target = (base_dir / loc).resolve()
            if Path(loc).is_absolute() or not target.is_relative_to(base_dir):
                raise OnnxImportError(f"{what}: tensor '{t.name}' refers to external data "
                                      f"'{loc}' outside the model's folder; refused")
            if not target.is_file():
                raise OnnxImportError(f"{what}: external data file '{loc}' of tensor "
                                      f"'{t.name}' is missing")
        try:
            edh.load_external_data_for_model(model, str(base_dir))
        except Exception as exc:  # noqa: BLE001 - onnx raises several types here
            raise OnnxImportError(f"{what}: cannot read its external data ({exc})") from None
    try:
        # the file's own bytes when they are the whole model: checking the ModelProto would
        # serialise it again (most of a large model's import time); with external data loaded,
        # the model in memory is what counts
        onnx.checker.check_model(model if external else data)
    except Exception as exc:  # noqa: BLE001 - the checker's ValidationError and others
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxImportError(f"{what} is not a valid ONNX model: {first}") from None
    return model


# ---- the context the layers' from_onnx methods read --------------------------------------

class ImportContext:
    """Attributes, constants and shapes of the model being imported."""

    def __init__(self, model, opset: int, keep_dropout: bool = False):
        self.model = model
        self.opset = opset
        self.keep_dropout = keep_dropout  # foreign Dropout nodes as layers (else removed)
        self.consts: dict[str, np.ndarray] = {}
        self.shapes: dict[str, Shape] = {}  # data tensors, without the batch axis
        self.aliases: dict[str, str] = {}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in model.graph.node:
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.graph_outputs = {o.name for o in model.graph.output}
        self.absorbed: set[int] = set()
        self.fixed_batch: int | None = None
        self.current = None
        # Keras / tf2onnx layouts: tensor -> (channels-first source, (C, H, W)) for a Transpose
        # to N×H×W×C, and tensor -> feature order for features flattened from one
        self.channels_last: dict[str, tuple[str, Shape]] = {}
        self.feature_orders: dict[str, np.ndarray] = {}
        self.taken_orders: set[str] = set()
        self.trail = Trail()  # what became of each node, for the import report

    # names
    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def where(self, node) -> str:
        return f"{node.op_type} node '{node.name or node.output[0]}'"

    # attributes
    def attrs(self, node) -> dict:
        from onnx import helper

        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, float):
                v = self.clean_float(v)
            elif isinstance(v, list):
                v = [self.clean_float(x) if isinstance(x, float) else x for x in v]
            out[a.name] = v
        return out

    @staticmethod
    def clean_float(v: float) -> float:
        """A float32 attribute as the short decimal it was written as (0.1, not 0.10000000149)."""
        if not math.isfinite(v):
            return float(v)
        return float(repr(np.float32(v)).removeprefix("np.float32(").removesuffix(")"))

    # tensors
    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(self.resolve(name)) if name else None

    def weight(self, node, index: int, what: str) -> np.ndarray:
        """Input `index` of `node` as a float32 constant, or a clear error."""
        if index >= len(node.input) or not node.input[index]:
            raise ValueError(f"{self.where(node)}: input {index + 1} ({what}) is missing")
        c = self.const(node.input[index])
        if c is None:
            raise ValueError(f"{self.where(node)}: its {what} ('{node.input[index]}') is computed "
                             f"at run time; only constant weights are supported")
        return np.array(c, dtype=np.float32)

    def shape(self, name: str) -> Shape:
        s = self.shapes.get(self.resolve(name))
        if s is None:
            raise ValueError(f"tensor '{name}' has no known shape")
        return s

    def image_shape(self, name: str, node) -> Shape:
        s = self.shape(name)
        if len(s) != 3:
            raise ValueError(f"{self.where(node)} needs an N×C×H×W input, got "
                             f"N×{fmt_shape(s)}")
        return s

    def is_batch(self, v: int) -> bool:
        """Whether a shape entry is the batch: the clean-up fixed an open batch to 1 before
        folding the shape arithmetic (a literal entry that is not the batch it refused)."""
        return self.fixed_batch is not None and v == self.fixed_batch

    def is_used(self, tensor: str) -> bool:
        return bool(self.consumers.get(tensor)) or tensor in self.graph_outputs

    def sole_consumer(self, tensor: str):
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and tensor not in self.graph_outputs:
            return users[0]
        return None

    def absorb(self, node) -> None:
        """A following node became part of the current layer (MatMul's bias Add)."""
        self.absorbed.add(id(node))
        self.trail.absorbed(node, self.current)

    def channels_last_source(self, tensor: str) -> tuple[str, Shape] | None:
        """(the N×C×H×W tensor, its C×H×W shape) that `tensor` is the channels-last form of."""
        return self.channels_last.get(self.resolve(tensor))

    def set_channels_last(self, tensor: str, source: str, shape: Shape) -> None:
        """`tensor` (N×H×W×C) is `source` (N×C×H×W, `shape` C×H×W) transposed."""
        c, h, w = shape
        self.channels_last[tensor] = (source, tuple(shape))
        self.shapes[tensor] = (h, w, c)

    def channels_last_output(self, tensor: str, shape: Shape) -> str:
        """The N×C×H×W tensor a layer writes where the file's `tensor` is channels-last: inside
        ConvNeXt's block (Transpose -> LayerNorm -> Linear -> GELU -> Linear -> Transpose) the
        layers work on N×C×H×W maps, and the Transpose back reads this tensor as it is."""
        source = f"{tensor}#nchw"
        self.set_channels_last(tensor, source, shape)
        return source

    def set_feature_order(self, tensor: str, order: np.ndarray) -> None:
        """Features of `tensor` are ours (C·H·W order) reordered: keras_feature[k] =
        ours[order[k]]."""
        self.feature_orders[tensor] = order

    def take_feature_order(self, tensor: str) -> np.ndarray | None:
        """The order of `tensor`'s features, if not ours; the caller accounts for it."""
        t = self.resolve(tensor)
        if t in self.feature_orders:
            self.taken_orders.add(t)
        return self.feature_orders.get(t)

    def input_dims(self, value_info) -> tuple[int, int, int]:
        t = value_info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) != 4:
            raise ValueError(f"the model's input '{value_info.name}' has rank {len(dims)}; only "
                             f"image inputs N×C×H×W are supported")
        if any(d is None or d < 1 for d in dims[1:]):
            shown = ["?" if d is None else d for d in dims]
            raise ValueError(f"the model's input '{value_info.name}' has open size {shown}; "
                             f"give its size C×H×W (import --input-shape C H W on the command "
                             f"line, input_shape=(C, H, W) in Python)")
        self.fixed_batch = dims[0]
        return int(dims[1]), int(dims[2]), int(dims[3])

    def imported(self, cls, params: dict, weights: dict, inputs: list[str],
                 output: str | None = None, name: str | None = None,
                 outputs: list[str] | None = None) -> Imported:
        """`name`: the ONNX node name to name the layer after, where a layer of several nodes
        names its last one after itself (the default is the current node's name)."""
        if output is None:
            output = self.current.output[0] if self.current is not None else ""
        if outputs:  # several output ports (ChannelSplit): output is port 0's
            output = outputs[0]
        return Imported(cls, params, weights, inputs, output, name, outputs)


def importer_table() -> dict[str, list[type[Layer]]]:
    """ONNX op type -> the layer classes that import it, a class claiming only its own tagged
    nodes (`onnx_import_first`) tried first. Built from the registry's `onnx_ops`."""
    table: dict[str, list[type[Layer]]] = defaultdict(list)
    for cls in REGISTRY.values():
        for op in cls.onnx_ops:  # a layer naming ops implements from_onnx (Layer's contract)
            table[op].append(cls)
    for classes in table.values():
        classes.sort(key=lambda c: not c.onnx_import_first)
    return dict(table)


def pattern_table() -> dict[str, list[tuple[type[Layer], object]]]:
    """Anchor op type -> (layer class, OnnxPattern) for every multi-node form the registry's
    layers declare (`onnx_patterns`): tried before the per-op converters."""
    table: dict[str, list] = defaultdict(list)
    for cls in REGISTRY.values():
        for pattern in cls.onnx_patterns:
            table[pattern.nodes[0].op].append((cls, pattern))
    for entries in table.values():  # the longest first: a GELU before a SiLU-like prefix
        entries.sort(key=lambda e: -len(e[1].nodes))
    return dict(table)


def _match_pattern(ctx: ImportContext, node, patterns) -> Imported | None:
    """The layer of the first pattern `node` anchors, named after the pattern's last node (the
    one producing its output). The pattern's other nodes are absorbed (skipped later)."""
    for cls, pattern in patterns.get(node.op_type, ()):
        found = pattern.match(node, ctx)
        if found is None:
            continue
        x, nodes = found
        params = cls.from_onnx_pattern(pattern, x, nodes, ctx)
        if params is None:  # the nodes' attributes / constants are not this layer's
            continue
        ctx.trail.pattern(node, nodes, cls.type_name)
        for n in nodes[1:]:
            ctx.absorb(n)
        last = nodes[-1]
        return Imported(cls, params, {}, [x], last.output[0], name=last.name)
    return None


# ---- import -------------------------------------------------------------------------------

def import_onnx(source, input_shape: tuple[int, int, int] | None = None,
                name: str | None = None, keep_dropout: bool = False) -> ImportedModel:
    """Import an ONNX model (path, bytes or ModelProto) as a graph with weights.

    `input_shape` (C, H, W) fixes an input whose sizes are open in the file. Dropout nodes of
    other exporters are removed (they do nothing at inference) unless `keep_dropout`. Every problem is
    an OnnxImportError; nothing else escapes, whatever the file holds."""
    model = read_model(source)
    what = f"'{Path(source).name}'" if isinstance(source, (str, Path)) else "the model"
    try:
        return _import(model, source, what, input_shape, name, keep_dropout)
    except OnnxImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed file must not crash the app
        raise OnnxImportError(f"{what} is malformed and cannot be imported "
                              f"({type(exc).__name__}: {exc})") from None


def _import(model, source, what: str, input_shape, name,
            keep_dropout: bool = False) -> ImportedModel:
    from onnx import numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    trail = Trail(model)  # the file's nodes, before any conversion
    notes = []
    if opset < MIN_OPSET:
        model = _upgrade(model, opset, what)
        notes.append(f"upgraded from opset {opset} to {UPGRADE_OPSET} (ONNX's version "
                     f"converter) before importing")
    mapped_opset = UPGRADE_OPSET if notes else opset
    cleaned = clean_up(model, input_shape, what)  # folds shape arithmetic for the input size
    if cleaned.problems:
        raise OnnxImportError(f"{what} cannot be imported; nothing was imported:\n"
                              + "\n".join(f"  - {x}" for x in cleaned.problems))
    model = cleaned.model
    notes += cleaned.notes
    ctx = ImportContext(model, mapped_opset, keep_dropout)
    ctx.trail = trail
    g = model.graph
    for init in g.initializer:
        try:
            ctx.consts[init.name] = numpy_helper.to_array(init)
        except (ValueError, TypeError, KeyError) as exc:
            raise OnnxImportError(f"{what}: weight tensor '{init.name}' is corrupt ({exc})"
                                  ) from None
    data_inputs = [vi for vi in g.input if vi.name not in ctx.consts]
    if len(data_inputs) != 1:
        names = ", ".join(f"'{vi.name}'" for vi in data_inputs) or "none"
        raise OnnxImportError(f"{what} has {len(data_inputs)} data inputs ({names}); one image "
                              f"input is supported")
    if len(g.output) != 1:
        raise OnnxImportError(f"{what} has {len(g.output)} outputs; one output is supported")
    vi = data_inputs[0]
    warnings = notes
    nhwc = _channels_last_input(ctx, vi)
    if nhwc is not None:
        vi = nhwc
        trail.channels_last_input = True
        warnings.append("the model's input was channels-last (N×H×W×C); here it is N×C×H×W: "
                        "feed images channels-first")
    try:  # its size: the file's, batch 1 where open, `input_shape` fixed by the clean-up
        inp = REGISTRY["Input"].from_onnx(vi, ctx)
    except ValueError as exc:
        raise OnnxImportError(f"{what}: {exc}") from None
    ctx.shapes[vi.name] = (inp.params["channels"], inp.params["height"], inp.params["width"])

    table = importer_table()
    patterns = pattern_table()
    unsupported: dict[str, list[str]] = defaultdict(list)
    problems: list[str] = []
    layers: list[tuple[str, Imported]] = []  # (our name, what the class made)
    producer: dict[str, int] = {vi.name: -1}  # tensor -> index into layers (-1: the Input)
    out_port: dict[str, int] = {}  # tensor -> its output port, where not 0 (ChannelSplit)
    taken: set[str] = set()
    input_name = _unique(_clean_name(vi.name) or "input", taken)
    unresolved: set[str] = set()
    scope_counts: dict[str, int] = defaultdict(int)
    for node in g.node:
        sc = _scope(node.name)
        if sc is not None and node.op_type not in ("Constant", "Shape", "Gather", "Unsqueeze",
                                                   "Concat", "Identity"):
            scope_counts[sc[0]] += 1

    dropped = 0  # Dropout nodes removed
    for k, node in enumerate(_topological(g)):
        if id(node) in ctx.absorbed:
            continue
        label = node.name or (node.output[0] if node.output else f"#{k}")
        if node.domain not in ("", "ai.onnx"):
            unsupported[f"{node.domain}.{node.op_type}"].append(label)
            continue
        ins = [i for i in node.input if i]
        if any(ctx.resolve(i) in unresolved for i in ins):
            unresolved.update(node.output)
            if node.op_type not in table and node.op_type not in PASS_THROUGH:
                unsupported[node.op_type].append(label)
            continue
        matched = _match_pattern(ctx, node, patterns)  # multi-node forms first (SiLU, GELU)
        if matched is None and (node.op_type in PASS_THROUGH or (
                node.op_type == "Dropout" and REGISTRY["Dropout"].removed_on_import(node, ctx))):
            ctx.aliases[node.output[0]] = ctx.resolve(node.input[0])
            trail.removed(node)
            dropped += node.op_type == "Dropout"
            continue
        if matched is None and _foldable(ctx, node):
            try:
                _check_fold_size(ctx, node)
                _fold(ctx, node)
                trail.folded(node)
            except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
                problems.append(f"{ctx.where(node)}: cannot evaluate this constant expression "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
                unresolved.update(node.output)
            continue
        if matched is None and _to_channels_last(ctx, node):
            trail.view(node)
            continue
        if matched is None and node.op_type not in table:
            unsupported[node.op_type].append(label)
            unresolved.update(node.output)
            continue
        ctx.current = node
        ctx.taken_orders = set()
        res = matched
        try:
            for cls in table[node.op_type] if res is None else ():
                res = cls.from_onnx(node, ctx)
                if res is not None:
                    break
        except ValueError as exc:
            problems.append(str(exc))
        except (IndexError, KeyError, TypeError) as exc:  # a malformed node
            problems.append(f"{ctx.where(node)}: malformed node ({type(exc).__name__}: {exc})")
        ctx.current = None
        if res is None:
            unresolved.update(node.output)
            continue
        named = node.name if res.name is None else res.name
        our = _unique(_clean_name(named, scope_counts) or _default_name(res.cls), taken)
        _read_channels_last(ctx, res)
        err = _check_layer(ctx, our, res) or _check_layout(ctx, res) or _check_finite(ctx, node, res)
        if err:
            problems.append(f"{ctx.where(node)}: {err}")
            unresolved.update(node.output)
            unresolved.add(res.output)
            continue
        layers.append((our, res))
        trail.layer(node, our, res.cls.type_name)
        for p, t in enumerate(res.outputs or [res.output]):
            producer[t] = len(layers) - 1
            out_port[t] = p

    if unsupported or problems:
        lines = []
        if unsupported:
            lines.append("unsupported operators: " + "; ".join(
                f"{op} ({', '.join(repr(n) for n in names)})"
                for op, names in sorted(unsupported.items())))
        lines += problems
        raise OnnxImportError(f"{what} cannot be imported; nothing was imported:\n"
                              + "\n".join(f"  - {x}" for x in lines))

    out_tensor = ctx.resolve(g.output[0].name)
    if out_tensor in ctx.feature_orders:
        raise OnnxImportError(f"{what}: the output is in channels-last feature order; only a "
                              f"Linear layer after the flattening can take that order")
    if out_tensor not in producer or producer[out_tensor] < 0:
        raise OnnxImportError(f"{what}: the output '{g.output[0].name}' is not computed by any "
                              f"supported layer")
    # keep what the output depends on
    keep, stack = set(), [producer[out_tensor]]
    while stack:
        i = stack.pop()
        if i < 0 or i in keep:
            continue
        keep.add(i)
        stack.extend(producer[ctx.resolve(t)] for t in layers[i][1].inputs)
    if len(keep) < len(layers):
        warnings.append(f"{len(layers) - len(keep)} layer(s) do not reach the output and were "
                        f"left out")
    if dropped:
        warnings.append(f"{dropped} Dropout node(s) removed: they do nothing at inference "
                        f"(import --keep-dropout keeps them as layers, with their rates, for "
                        f"fine-tuning)")

    stem = Path(source).stem if isinstance(source, (str, Path)) else None
    graph = Graph(name or (g.name if g.name and g.name not in ("main_graph", "torch_jit")
                           else stem or "imported"))
    weights: dict[str, np.ndarray] = {}
    ids = {-1: input_name}
    graph.add_node("Input", input_name, inp.params, node_id=input_name)
    for i, (our, res) in enumerate(layers):
        if i not in keep:
            continue
        graph.add_node(res.cls.type_name, our, res.params, node_id=our)
        ids[i] = our
        for port, t in enumerate(res.inputs):
            rt = ctx.resolve(t)
            graph.edges.append(_edge(ids[producer[rt]], our, port, out_port.get(rt, 0)))
        for key, arr in res.weights.items():
            weights[f"{our}.{key}"] = np.ascontiguousarray(arr, np.float32)
    _layout(graph, _stored_positions(model))
    graph.input_spec = _explicit_spec(graph, stored_spec(model))
    v = validate(graph)
    if not v.ok:
        raise OnnxImportError(f"{what} imports as an invalid graph; nothing was imported:\n"
                              + "\n".join(f"  - {m.text}" for m in v.errors))
    record = trail.record(model, graph, warnings, opset, ctx.opset,
                          what.strip("'") if what != "the model" else what, weights)
    return ImportedModel(graph, weights, opset, model.producer_name or "unknown", warnings,
                         record)


def _explicit_spec(graph: Graph, spec):
    """The input spec our exporter wrote, or None where it is the default for the graph's Input
    (every export writes one, so a design without a spec of its own comes back without one)."""
    from ..errors import DataError
    from ..inputspec import InputSpec, input_shape

    if spec is None:
        return None
    try:
        default = InputSpec.for_shape(input_shape(graph))
    except DataError:
        return spec
    return None if spec == default else spec


def _upgrade(model, opset: int, what: str):
    """The model converted to UPGRADE_OPSET by onnx.version_converter, or OnnxImportError naming
    the node it fails on, so files older than opset 7 import like current ones."""
    from onnx import shape_inference, version_converter

    try:
        # via opset 6: the broadcasting adapters (6 -> 7) need every tensor's shape, which
        # shape inference only knows for opset-6 forms (Relu-1 has none), with whole numbers:
        # an open batch is 1 while converting and open again after
        if opset < 6:
            model = version_converter.convert_version(model, 6)
        fixed = _batch_fixed(model)
        fixed = shape_inference.infer_shapes(fixed)
        _explicit_broadcasts(fixed)
        out = version_converter.convert_version(shape_inference.infer_shapes(fixed),
                                                UPGRADE_OPSET)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError and others
        text = str(exc).strip()
    else:
        for new_in, old_in in zip(out.graph.input, model.graph.input):
            new_in.type.CopyFrom(old_in.type)
        del out.graph.value_info[:]  # inferred at batch 1
        return out
    node = _converter_culprit(model, text)
    at = (f" at {node.op_type} node '{node.name or node.output[0]}'"
          if node is not None else "")
    reason = re.sub(r"^\S+:\d+: \S+: ", "", text.splitlines()[0]) if text else "no reason given"
    raise OnnxImportError(f"{what} uses opset {opset}; upgrading it to opset {UPGRADE_OPSET} "
                          f"failed{at}: {reason}; nothing was imported") from None


def _batch_fixed(model):
    """A copy of the model whose graph inputs' open first dimension (the batch) is 1."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in out.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    return out


def _explicit_broadcasts(model) -> None:
    """Opset < 7 Add/Sub/Mul/Div with broadcast=1 and an axis, of a constant B: B reshaped to
    B.shape + (1,)·(rank A − axis − rank B), the numpy broadcast that means, and the attributes
    dropped (in place). onnx's 6 -> 7 adapter gets it wrong for a (C,) B at axis 1 of a 4-D A
    (it makes (C, 1, 1, 1)): the per-channel bias and scale of old Caffe2 files."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim)
             for vi in [*g.input, *g.value_info, *g.output]
             if vi.type.tensor_type.HasField("shape")}
    for node in g.node:
        if node.op_type not in ("Add", "Sub", "Mul", "Div") or len(node.input) != 2:
            continue
        at = {a.name: a for a in node.attribute}
        if "broadcast" not in at or at["broadcast"].i != 1 or "axis" not in at:
            continue
        a_rank, b = ranks.get(node.input[0]), inits.get(node.input[1])
        if a_rank is None or b is None:
            continue
        arr = numpy_helper.to_array(b)
        axis = at["axis"].i % a_rank
        pad = a_rank - axis - arr.ndim
        if pad < 0:
            continue
        shaped = numpy_helper.from_array(arr.reshape(arr.shape + (1,) * pad), b.name + "_bcast")
        g.initializer.append(shaped)
        if any(i.name == b.name for i in g.input):  # IR < 4: initializers are graph inputs too
            g.input.append(helper.make_tensor_value_info(shaped.name, b.data_type, shaped.dims))
        node.input[1] = shaped.name
        keep = [a for a in node.attribute if a.name not in ("broadcast", "axis")]
        del node.attribute[:]
        node.attribute.extend(keep)


def _converter_culprit(model, text: str):
    """The node the version converter failed on: the first node of the op its message names
    (its adapters name the op, e.g. "No Adapter From Version $6 for Upsample"), else the first
    node that fails to convert on its own; None when neither finds one."""
    from onnx import helper, version_converter

    model = _batch_fixed(model)  # as _upgrade converts it
    g = model.graph
    named = [(m.start(), n.op_type) for n in g.node
             for m in [re.search(rf"\b{re.escape(n.op_type)}\b", text)] if m]
    if named:
        op = min(named)[1]
        return next(n for n in g.node if n.op_type == op)
    typed = {vi.name: vi for vi in [*g.input, *g.value_info, *g.output]}
    inits = {t.name: t for t in g.initializer}
    for node in g.node:
        ins = [typed.get(t) or helper.make_tensor_value_info(t, 1, None) for t in node.input
               if t and t not in inits]
        outs = [helper.make_tensor_value_info(t, 1, None) for t in node.output if t]
        one = helper.make_graph([node], "one", ins, outs,
                                [inits[t] for t in node.input if t in inits])
        m = helper.make_model(one, opset_imports=list(model.opset_import),
                              ir_version=model.ir_version)
        try:
            version_converter.convert_version(m, UPGRADE_OPSET)
        except Exception:  # noqa: BLE001 - this node is the one that does not convert
            return node
    return None


def _edge(src: str, dst: str, port: int, src_port: int = 0):
    from ..graph import Edge

    return Edge(src, dst, port, src_port)


def _foldable(ctx: ImportContext, node) -> bool:
    """Constant nodes and nodes of constants only. The clean-up folded the shape arithmetic;
    what reaches here is what it leaves: expressions over the large weights it runs without
    (a Reshape or Transpose of a weight, an fp16 weight's Cast), or the whole graph where ONNX
    Runtime could not read it."""
    if node.op_type == "Constant":
        return True
    ins = [i for i in node.input if i]
    return bool(ins) and all(ctx.const(i) is not None for i in ins)


MAX_FOLD_ELEMENTS = MAX_CONSTANT_ELEMENTS


def _check_fold_size(ctx: ImportContext, node) -> None:
    """Refuse constant expressions that would allocate absurd amounts (hostile files)."""
    ins = [ctx.const(i) for i in node.input]
    size = None
    op = node.op_type
    try:
        if op == "ConstantOfShape":
            size = int(np.prod(np.asarray(ins[0], np.float64)))
        elif op == "Expand":
            size = int(np.prod(np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in ins[1]))))
        elif op == "Tile":
            size = int(np.prod(np.asarray(ins[0].shape, np.float64) * np.asarray(ins[1])))
        elif op == "Range":
            start, limit, delta = (float(np.asarray(v)) for v in ins[:3])
            size = int(abs((limit - start) / delta)) if delta else 0
        elif op == "Pad" and len(ins) > 1 and ins[1] is not None:
            pads, n = np.asarray(ins[1], np.float64).reshape(-1), ins[0].ndim
            size = int(np.prod(np.asarray(ins[0].shape) + pads[:n] + pads[n:2 * n]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"malformed inputs ({exc})") from None
    if size is not None and size > MAX_FOLD_ELEMENTS:
        raise ValueError(f"it would make a constant of {size:,} elements")


def _fold(ctx: ImportContext, node) -> None:
    """Evaluate a constant node with onnx's reference implementation (numpy), at the model's
    opset."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    ins = [i for i in node.input if i]
    feeds = {i: ctx.const(i) for i in ins}
    inputs = [helper.make_tensor_value_info(
        i, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.asarray(v).shape)
        for i, v in feeds.items()]
    outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
               for o in node.output if o]
    g = helper.make_graph([node], "fold", inputs, outputs)
    m = helper.make_model(g, opset_imports=list(ctx.model.opset_import))
    res = ReferenceEvaluator(m).run(None, {i: np.asarray(v) for i, v in feeds.items()})
    for o, val in zip([o for o in node.output if o], res):
        ctx.consts[o] = np.asarray(val)


def channels_last_input(model) -> bool:
    """Whether the model's image input is N×H×W×C, read only through Transpose(0, 3, 1, 2)."""
    consts = {i.name for i in model.graph.initializer}
    ins = [vi for vi in model.graph.input if vi.name not in consts]
    if len(ins) != 1:
        return False
    ctx = ImportContext(model, 13)
    return _channels_last_input(ctx, ins[0]) is not None


def _channels_last_input(ctx: ImportContext, vi):
    """A N×H×W×C input read only through Transpose(perm 0,3,1,2) (Keras / tf2onnx): the input
    becomes N×C×H×W and those Transposes disappear. Returns the new ValueInfo or None."""
    from onnx import TensorProto, helper

    users = ctx.consumers.get(vi.name, [])
    dims = vi.type.tensor_type.shape.dim
    if not users or len(dims) != 4 or vi.name in ctx.graph_outputs:
        return None
    for n in users:
        perm = ctx.attrs(n).get("perm") if n.op_type == "Transpose" else None
        if perm != [0, 3, 1, 2]:
            return None
    for n in users:
        ctx.aliases[n.output[0]] = vi.name
        ctx.absorb(n)

    def dim(d):
        return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)

    n_, h, w, c = (dim(d) for d in dims)
    return helper.make_tensor_value_info(vi.name, TensorProto.FLOAT, [n_, c, h, w])


def _to_channels_last(ctx: ImportContext, node) -> bool:
    """Transpose(perm 0,2,3,1) of a C×H×W tensor: remembered, not a layer (a flattening, a
    LayerNorm over its channels, a MatMul by a (C, out) weight may read it); Transpose(perm
    0,3,1,2) of such a channels-last tensor is the N×C×H×W tensor it came from."""
    if node.op_type != "Transpose":
        return False
    perm = ctx.attrs(node).get("perm")
    if perm == [0, 3, 1, 2]:
        src = ctx.channels_last_source(node.input[0])
        if src is None:
            return False
        ctx.aliases[node.output[0]] = src[0]
        return True
    if perm != [0, 2, 3, 1]:
        return False
    src = ctx.resolve(node.input[0])
    shape = ctx.shapes.get(src)
    if shape is None or len(shape) != 3:
        return False
    ctx.set_channels_last(node.output[0], src, shape)
    return True


def _read_channels_last(ctx: ImportContext, res: Imported) -> None:
    """A weightless layer that acts on each value alone (`per_value`: ReLU, GELU...) reading a
    channels-last tensor reads its N×C×H×W source instead; its output is channels-last in
    turn (ConvNeXt's GELU between the two Linears of a block)."""
    if len(res.inputs) != 1 or res.weights or res.outputs or not res.cls.per_value:
        return
    src = ctx.channels_last_source(res.inputs[0])
    if src is None:
        return
    tensor, shape = src
    res.inputs = [tensor]
    res.output = ctx.channels_last_output(res.output, shape)


def _check_layout(ctx: ImportContext, res: Imported) -> str | None:
    """Channels-last tensors may only be flattened, normalised over their channels, multiplied
    by a (C, out) weight or go through a layer acting on each value (`_read_channels_last`);
    features flattened from one keep their order through weightless element-wise layers until
    a Linear takes it."""
    for t in res.inputs:
        rt = ctx.resolve(t)
        if rt in ctx.channels_last:
            return (f"reads a channels-last (N×H×W×C) tensor; only flattening it, a LayerNorm "
                    f"over its channels, a MatMul by a (C, out) weight and layers acting on each "
                    f"value alone are supported (a {res.cls.type_name} is not)")
        if rt in ctx.feature_orders and rt not in ctx.taken_orders:
            same = len(res.inputs) == 1 and not res.weights and ctx.shapes.get(
                ctx.resolve(res.output)) == ctx.shapes.get(rt)
            if not same:
                return ("reads features flattened in channels-last order; only a Linear "
                        "layer (or weightless element-wise layers before it) can take them")
            ctx.feature_orders[res.output] = ctx.feature_orders[rt]
    return None


def _check_layer(ctx: ImportContext, name: str, res: Imported) -> str | None:
    """Shapes and weights of the imported layer; records its output shape. Returns a problem."""
    try:
        in_shapes = [ctx.shape(t) for t in res.inputs]
        layer = res.cls(name, **res.params)
        outs = layer.output_shapes(in_shapes)
    except (ParamError, ShapeError, ValueError) as exc:
        return str(exc)
    want = layer.weight_shapes(in_shapes)
    if set(want) != set(res.weights):
        return (f"weights {sorted(res.weights)} do not match the {res.cls.type_name} layer's "
                f"{sorted(want)}")
    for k, (shape, _) in want.items():
        got = tuple(np.shape(res.weights[k]))
        if got != tuple(shape):
            return f"'{k}' has shape {fmt_shape(got)}, the layer needs {fmt_shape(shape)}"
    for t, out in zip(res.outputs or [res.output], outs):
        ctx.shapes[t] = tuple(int(d) for d in out)
    return None


def _check_finite(ctx: ImportContext, node, res: Imported) -> str | None:
    """A weight holding NaN or infinite values (a damaged file, or Gemm alpha / beta = inf):
    the problem, naming the node's non-finite initializers and attributes it came from."""
    for k, a in res.weights.items():
        flat = np.asarray(a, np.float32).reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: the exact path below
            if np.isfinite(np.dot(flat, flat)):  # a sum of squares is finite only if all are
                continue  # (BLAS: 4× faster than isfinite on VGG-11's 531 MB)
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        if not bad:
            continue
        sources = [f"initializer '{i}'" for i in node.input
                   if (c := ctx.const(i)) is not None and np.asarray(c).dtype.kind == "f"
                   and not np.isfinite(c).all()]
        sources += [f"attribute {n} = {v}" for n, v in ctx.attrs(node).items()
                    if isinstance(v, float) and not math.isfinite(v)]
        return (f"its weight '{k}' would hold {bad:,} NaN or infinite values"
                f"{' (from ' + ', '.join(sources) + ')' if sources else ''}; such a network "
                f"computes nothing but NaN")
    return None


def _topological(g) -> list:
    """The nodes in an order where every input is produced before use (ONNX requires it, but
    some writers do not comply)."""
    produced = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    nodes, order = list(g.node), []
    while nodes:
        rest = []
        for n in nodes:
            if all(i in produced for i in n.input):
                order.append(n)
                produced.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):
            names = ", ".join(f"'{n.name or n.output[0]}'" for n in rest[:5])
            raise OnnxImportError(f"the model's graph has a cycle or reads a tensor nothing "
                                  f"produces (at {names})")
        nodes = rest
    return order


def _scope(name: str) -> tuple[str, str] | None:
    """PyTorch's '/features/features.0/Conv' -> ('features.0', 'Conv') and
    '/layer1/layer1.0/conv1/Conv' -> ('layer1.0.conv1', 'Conv'): the full module path (as in the
    model's state_dict, so names match torchvision's and our templates') and the op."""
    from ..blocks import module_path

    parts = [p for p in name.strip().split("/") if p]
    if not name.startswith("/") or not parts:
        return None
    return ".".join(module_path(name)[0]), parts[-1]


def _clean_name(name: str, scope_counts: dict[str, int] | None = None) -> str:
    """ONNX node names as layer names. PyTorch's '/features/features.0/Conv' becomes
    'features.0'; an op of a module with several ops ('/layer1/Relu') 'layer1.relu'."""
    sc = _scope(name)
    if sc is not None:
        scope, op = sc
        if not scope:
            s = op.lower()
        elif scope_counts and scope_counts.get(scope, 0) > 1:
            s = scope + "." + re.sub(r"_\d+$", "", op).lower()
        else:
            s = scope
    else:
        s = name.strip()
    s = re.sub(r"[^\w.\-]+", "_", s).strip("_")
    return s[:64]


def _default_name(cls) -> str:
    from ..graph import default_name

    return default_name(cls.type_name)


def _unique(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def _stored_positions(model) -> dict[str, list[float]]:
    for p in model.metadata_props:
        if p.key == POSITIONS_KEY:
            try:
                data = json.loads(p.value)
            except ValueError:
                return {}
            if isinstance(data, dict):
                return data
    return {}


def _layout(graph: Graph, stored: dict) -> None:
    """Positions saved by our exporter where every layer has one; else a layered layout:
    topological depth -> y (110 px apart), index within the depth -> x (centred)."""
    try:
        if stored and all(n.name in stored for n in graph.nodes.values()):
            for n in graph.nodes.values():
                x, y = stored[n.name]
                n.position = (float(x), float(y))
            return
    except (TypeError, ValueError):
        pass
    depth: dict[str, int] = {}
    for nid in graph.topological_order():
        ins = graph.inputs_of(nid)
        depth[nid] = 1 + max((depth[s] for s in ins), default=-1)
    rows: dict[int, list[str]] = defaultdict(list)
    for nid, d in depth.items():
        rows[d].append(nid)
    for d, nids in rows.items():
        for i, nid in enumerate(nids):
            x = (i - (len(nids) - 1) / 2) * COL_SPACING
            graph.nodes[nid].position = (x, d * ROW_SPACING)
