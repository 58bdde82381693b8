"""Graph clean-up before mapping: the model as ONNX Runtime's offline basic optimisation leaves
it for the known input size, plus the few rewrites that tool does not make.

    cleaned = clean_up(model, input_shape, what)   # Cleaned: .model, .notes, .problems

engine/onnx/importer.py calls it once, after the opset upgrade and before any mapping:

1. The input's size is fixed: batch 1 where the file leaves it open, C×H×W from `input_shape`
   where given. Shape arithmetic then has one value (PyTorch's x.view(x.size(0), -1),
   torch.chunk's Shape -> Gather -> Div -> Slice bounds, a shuffle's Reshape targets).
   A Reshape to a *literal* shape whose first entry is a number in a file whose batch is open
   cannot keep the batch: that is reported (`problems`), not mapped.
2. ONNX Runtime's basic level (ORT_ENABLE_BASIC, `optimized_model_filepath`) runs on the graph
   without its large weights (they become graph inputs for the run and come back after):
   constant folding, Constant nodes as initializers, dead nodes, no-op Cast / Unsqueeze /
   Expand / Slice, Pad merged into the following Conv or pooling (PadFusion). The rewrites that
   would change which layers the nodes become are disabled (DISABLED, each with its reason):
   BatchNormalization stays a node, our tagged Identity and Dropout stay layers.
3. Our own rewrites: the dynamo exporter's "as_strided" on a 1×1 map (Reshape to [-1], then
   Gather of arange(n) in the map's shape) is the identity and is removed; a file with no
   BatchNormalization whose convolutions carry PyTorch's folded weights ('onnx::Conv_…') is
   noted: its BatchNorm layers were folded into the convolutions by the exporter.

Measured (2 shared cores, this machine) on the files torchvision's models export to, batch 1:
ONNX Runtime with every weight: VGG-11 3.2 s + 0.8 s to read the result back, ConvNeXt-tiny
1.1 s; onnxslim 0.1.98 with every weight: 3.6 s and 2.9 s. Without the large weights:
ONNX Runtime 0.13 s (VGG-11), 0.04 s (ConvNeXt-tiny), 0.09 s (ShuffleNetV2: 902 nodes -> 186);
onnxslim 0.03 s, 0.27 s, 0.75 s. Both leave the same graphs (shape arithmetic folded, nothing
else changed with the fusions off), so ONNX Runtime, already a dependency, does it; a graph with
nothing for it to do (no shape arithmetic, Constant, Pad, Cast... nodes: VGG-11) skips the run.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np

STRIP_ELEMENTS = 1024  # initializers larger than this stay out of ONNX Runtime's run
MAX_CONSTANT_ELEMENTS = 1 << 26  # 64 M: a folded constant bigger than that is not a real model's

# ONNX Runtime's level-1 rewrites (their names) that stay off, and why
DISABLED = (
    "EliminateIdentity",  # our own Identity layer is a tagged Identity node (foreign ones are
    "EliminateDropout",  # wired through by the importer); Dropout imports as a layer (its rate)
    "NoopElimination",  # an Add of 0 / Mul by 1 is a layer's parameter (a bias, a γ = 1)
    # fusions: each changes which layers the nodes become (BatchNorm must stay a node; a
    # MatMul + Add on a channels-last map would become a Gemm between Reshapes)
    "ConvBNFusion", "ConvAddFusion", "ConvMulFusion", "MatmulBNFusion", "MatMulAddFusion",
    "GemmSumFusion", "GemmTransposeFusion", "DivMulFusion", "FuseReluClip", "NotWhereFusion",
    "GeluFusion", "LayerNormFusion",  # below opset 20 / 17: com.microsoft ops; patterns map these
    "TransposeOptimizer",  # moves Transposes across ops: the channels-last idioms would change
    # merge equal nodes / weights: two parallel layers reading one tensor would become one
    "CommonSubexpressionElimination", "ConstantSharing",
)
# ops that give ONNX Runtime something to do (besides nodes of constants only): shape
# arithmetic starts at Shape / Size, the no-op removals and PadFusion act on the rest
_WORK = frozenset({"Shape", "Size", "Constant", "Pad", "Cast", "Unsqueeze", "Squeeze", "Expand",
                   "Slice"})
# PyTorch's legacy exporter names the weights it computes (BatchNorm folded into a Conv) so
_FOLDED_WEIGHT = re.compile(r"^onnx::Conv_\d+$")


@dataclass
class Cleaned:
    """The model to map, what to tell the user, and what cannot be imported."""

    model: object  # onnx.ModelProto
    notes: list[str] = field(default_factory=list)  # warnings for ImportedModel.warnings
    problems: list[str] = field(default_factory=list)  # refusals, with the node named


def clean_up(model, input_shape: tuple[int, int, int] | None = None,
             what: str = "the model") -> Cleaned:
    """`model` (ModelProto of one image input) cleaned for mapping; see the module docstring.
    A model ONNX Runtime cannot read is returned as it is, with a note (the importer then names
    what it cannot map)."""
    out = Cleaned(model)
    note = _folded_batchnorm(model)
    if note:
        out.notes.append(note)
    inits = {t.name for t in model.graph.initializer}
    data = [vi for vi in model.graph.input if vi.name not in inits]
    if len(data) != 1 or len(data[0].type.tensor_type.shape.dim) != 4:
        return out  # the importer refuses these with its own message
    vi = data[0]
    open_batch = not vi.type.tensor_type.shape.dim[0].HasField("dim_value")
    _fix_input(model, vi, input_shape)
    if open_batch:
        out.problems += _literal_batch_reshapes(model, vi.name)
    light, heavy = _without_large_weights(model)
    changed = _drop_dead_nodes(light)  # first: a dead branch is neither folded nor refused
    if _has_work(light):
        out.problems += _huge_constants(light)
        if out.problems:
            return out
        try:
            light = _run_onnxruntime(light)
            changed = True
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail / InvalidGraph / ...
            text = str(exc).strip()
            out.notes.append(f"the graph clean-up (ONNX Runtime) could not read {what}, so it "
                             f"is mapped as it is: {text.splitlines()[0] if text else exc!r}")
            return out
    changed |= _drop_identity_gathers(light, heavy)
    if changed:
        out.model = _restore(light, model, heavy)
    return out


# ---- the input's size ----------------------------------------------------------------------

def _fix_input(model, vi, input_shape) -> None:
    """Batch 1 where open; C, H, W from `input_shape` where given (for a channels-last input,
    read by Transposes to N×C×H×W, its H, W, C)."""
    dims = vi.type.tensor_type.shape.dim
    if not dims[0].HasField("dim_value"):
        dims[0].dim_value = 1
    if input_shape is not None:
        from .importer import channels_last_input

        c, h, w = (int(d) for d in input_shape)
        for d, v in zip(dims[1:], (h, w, c) if channels_last_input(model) else (c, h, w)):
            d.dim_value = v


def _literal_batch_reshapes(model, data_input: str) -> list[str]:
    """Reshapes of data to a literal shape (an initializer or Constant) whose first entry is a
    number, in a file whose batch is open: that entry is not the batch (0 or -1 keep it), so
    the batch axis is folded into the others, which no per-sample layer graph can express."""
    from onnx import numpy_helper

    literal = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            literal[n.output[0]] = n.attribute[0].t
    data = {data_input}
    problems = []
    for n in model.graph.node:
        if not any(i in data for i in n.input):
            continue
        data.update(n.output)
        if n.op_type != "Reshape" or len(n.input) < 2 or n.input[1] not in literal \
                or n.input[0] not in data:
            continue
        t = [int(v) for v in numpy_helper.to_array(literal[n.input[1]]).reshape(-1)]
        if t and t[0] >= 1:
            problems.append(f"Reshape node '{n.name or n.output[0]}' reshapes to the fixed "
                            f"shape {t} while the model's batch size is open: its first entry "
                            f"{t[0]} is not the batch (0 or -1 would keep it), so it folds the "
                            f"batch axis into the other axes, which no per-sample layer graph "
                            f"can express")
    return problems


def _folded_batchnorm(model) -> str | None:
    """A note when PyTorch's exporter folded BatchNorm into the convolutions: no
    BatchNormalization node, and Conv weights named 'onnx::Conv_…' (the legacy exporter's name
    for computed ones) or Conv nodes marked by the dynamo exporter's FuseBatchNormIntoConv."""
    g = model.graph
    if any(n.op_type == "BatchNormalization" for n in g.node):
        return None
    folded = sum(1 for n in g.node if n.op_type == "Conv" and (
        (len(n.input) > 1 and _FOLDED_WEIGHT.match(n.input[1]))
        or any(p.key == "pkg.onnxscript.rewriter.rule_name" and "FuseBatchNorm" in p.value
               for p in n.metadata_props)))
    if not folded:
        return None
    return (f"the exporter folded BatchNorm into {folded} convolution(s) (PyTorch does in eval "
            f"mode): the file has no BatchNorm layers, so neither has the import; to keep them "
            f"(for fine-tuning) export with training=torch.onnx.TrainingMode.PRESERVE, or "
            f"optimize=False with dynamo=True")


# ---- ONNX Runtime's run ----------------------------------------------------------------------

def _has_work(model) -> bool:
    """Whether ONNX Runtime's run could change anything: a node of _WORK or of constants only.
    Without one (VGG-11, AlexNet from PyTorch) the run is skipped."""
    consts = {t.name for t in model.graph.initializer}
    return any(n.op_type in _WORK or all(i in consts for i in n.input if i)
               for n in model.graph.node)


def _without_large_weights(model):
    """(a copy of `model` whose initializers above STRIP_ELEMENTS are graph inputs instead,
    those initializers by name). ONNX Runtime copies, optimises around and writes back every
    weight it holds (VGG-11: 3-4 s); shape arithmetic never needs them."""
    from onnx import helper

    g = model.graph
    light, heavy = [], {}
    for t in g.initializer:
        if int(np.prod(t.dims, dtype=np.int64)) > STRIP_ELEMENTS:
            heavy[t.name] = t
        else:
            light.append(t)
    inits = {t.name for t in g.initializer}
    graph = helper.make_graph([], g.name or "model", [], [])
    graph.node.extend(g.node)
    graph.input.extend(vi for vi in g.input if vi.name not in inits)
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in heavy.values())
    graph.output.extend(g.output)
    graph.initializer.extend(light)
    graph.sparse_initializer.extend(g.sparse_initializer)
    m = helper.make_model(graph, opset_imports=list(model.opset_import),
                          ir_version=max(int(model.ir_version), 4))
    m.functions.extend(model.functions)
    return m, heavy


def _huge_constants(model) -> list[str]:
    """Constant expressions whose value would exceed MAX_CONSTANT_ELEMENTS (a hostile file's
    ConstantOfShape / Expand / Tile), found by ONNX's shape inference before any is made."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - ONNX Runtime reports a graph that does not infer
        return []
    sizes = {}
    for vi in inferred.graph.value_info:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            sizes[vi.name] = int(np.prod([d.dim_value for d in dims], dtype=np.float64))
    const = {t.name for t in model.graph.initializer} | {""}
    problems = []
    for n in model.graph.node:
        if n.op_type in ("Shape", "Size") or all(i in const for i in n.input):
            const.update(n.output)
            big = [sizes[o] for o in n.output if sizes.get(o, 0) > MAX_CONSTANT_ELEMENTS]
            if big:
                problems.append(f"{n.op_type} node '{n.name or n.output[0]}': it would make a "
                                f"constant of {big[0]:,} elements; refused")
    return problems


def _run_onnxruntime(model):
    """`model` as ONNX Runtime's basic optimisation writes it (DISABLED off)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3  # errors only: its notes on unused initializers are expected
    so.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as d:
        so.optimized_model_filepath = os.path.join(d, "cleaned.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"],
                             disabled_optimizers=list(DISABLED))
        return onnx.load(so.optimized_model_filepath)


def _restore(cleaned, original, heavy: dict):
    """The original model (input, metadata, opsets kept) with the cleaned graph's nodes, small
    initializers and outputs, and the large weights it still uses. The large weights never
    move: copying them into the cleaned model took 0.96 s of VGG-11's import (531 MB); the
    nodes and small constants moved instead are a few KB. `original` is the importer's own
    parse of the file, so changing it in place is safe."""
    g, c = original.graph, cleaned.graph
    used = {i for n in c.node for i in n.input}
    data = [vi for vi in g.input if vi.name not in {t.name for t in g.initializer}]
    drop = [i for i, t in enumerate(g.initializer) if t.name not in heavy or t.name not in used]
    for i in reversed(drop):
        del g.initializer[i]
    g.initializer.extend(c.initializer)
    del g.input[:]
    g.input.extend(data)
    del g.node[:]
    g.node.extend(c.node)
    del g.output[:]
    g.output.extend(c.output)
    del g.value_info[:]
    g.value_info.extend(c.value_info)
    return original


# ---- our own rewrites ------------------------------------------------------------------------

def _drop_identity_gathers(model, heavy: dict) -> bool:
    """Reshape(x, [-1]) -> Gather(axis 0, arange(n) in x's own shape) is x (PyTorch's dynamo
    exporter writes it for as_strided on a 1×1 map): its readers read x, both nodes go.
    `heavy`: the initializers kept out of `model` (the indices of a large map). Whether any
    went."""
    from onnx import numpy_helper, shape_inference

    g = model.graph
    gathers = [n for n in g.node if n.op_type == "Gather"]
    if not gathers:
        return False
    consts = {**heavy, **{t.name: t for t in g.initializer}}
    producer = {o: n for n in g.node for o in n.output}
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - then nothing is rewritten
        return False
    shapes = {vi.name: [d.dim_value if d.HasField("dim_value") else None
                        for d in vi.type.tensor_type.shape.dim]
              for vi in [*inferred.graph.value_info, *inferred.graph.input]}
    outputs = {o.name for o in g.output}
    alias, dead = {}, set()
    for n in gathers:
        rs = producer.get(n.input[0])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
        if rs is None or rs.op_type != "Reshape" or axis != 0 or n.input[1] not in consts \
                or rs.input[1] not in consts or n.output[0] in outputs:
            continue
        target = numpy_helper.to_array(consts[rs.input[1]]).reshape(-1).tolist()
        idx = numpy_helper.to_array(consts[n.input[1]])
        shape = shapes.get(rs.input[0])
        if target != [-1] or not shape or None in shape or list(idx.shape) != shape \
                or not np.array_equal(idx.reshape(-1), np.arange(idx.size)):
            continue
        alias[n.output[0]] = rs.input[0]
        dead.add(id(n))
        if sum(rs.output[0] in m.input for m in g.node) == 1:
            dead.add(id(rs))
    if not alias:
        return False
    keep = _set_nodes(g, [n for n in g.node if id(n) not in dead])
    for n in keep:
        for k, i in enumerate(n.input):
            n.input[k] = alias.get(i, i)
    return True


def _drop_dead_nodes(model) -> bool:
    """Nodes the output does not depend on go (a branch left over from training, an unused
    auxiliary head): they need not be supported to import the rest. Whether any went."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output if o}
    live, stack = set(), [o.name for o in g.output]
    while stack:
        n = producer.get(stack.pop())
        if n is not None and id(n) not in live:
            live.add(id(n))
            stack.extend(i for i in n.input if i)
    if len(live) == len(g.node):
        return False
    _set_nodes(g, [n for n in g.node if id(n) in live])
    return True


def _set_nodes(graph, nodes: list) -> list:
    """`graph`'s nodes become `nodes` (some of its own, in order); returns the graph's nodes."""
    from onnx import NodeProto

    copies = []
    for n in nodes:  # copied out first: clearing the field releases the messages it holds
        c = NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    del graph.node[:]
    graph.node.extend(copies)
    return list(graph.node)
