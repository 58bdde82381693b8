"""Whole-graph validation: per node output shape, parameters, MACs, receptive field, messages.

`validate(graph)` never raises on a bad graph: it reports. Nodes downstream of an error get an
unknown shape (None), never a stale one. It runs after every edit, so it stays cheap: pure
shape arithmetic from the registry, no weights.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from .errors import GraphError, ParamError, ShapeError
from .graph import Graph
from .layers import REGISTRY, Layer, Shape, fmt_shape
from .messages import ERROR, WARNING, Fix, Message


@dataclass
class NodeResult:
    node_id: str
    layer: Layer | None = None
    in_shapes: list[Shape | None] = field(default_factory=list)
    out_shape: Shape | None = None  # output port 0's shape (most layers have only that one)
    out_shapes: list[Shape] | None = None  # every output port's shape, in port order
    trainable_params: int = 0
    non_trainable_params: int = 0
    macs: int = 0
    receptive_field: tuple[int, int] | None = None  # (h, w) in input pixels
    jump: tuple[int, int] | None = None  # effective stride relative to the input
    messages: list[Message] = field(default_factory=list)
    memory: int = 0  # bytes of its float32 weights and of one sample's outputs

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def has_error(self) -> bool:
        return any(m.severity == ERROR for m in self.messages)


@dataclass
class Validation:
    nodes: dict[str, NodeResult]
    messages: list[Message]  # every message, graph-level ones (node_id None) included
    order: list[str]  # topological order of the acyclic part
    output_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Message]:
        return [m for m in self.messages if m.severity == ERROR]

    @property
    def warnings(self) -> list[Message]:
        return [m for m in self.messages if m.severity == WARNING]

    @property
    def trainable_params(self) -> int:
        return sum(r.trainable_params for r in self.nodes.values())

    @property
    def non_trainable_params(self) -> int:
        return sum(r.non_trainable_params for r in self.nodes.values())

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.nodes.values())

    @property
    def activation_values(self) -> int:
        """Every layer's output values for one sample (where shapes are known)."""
        return sum(_values(r) for r in self.nodes.values())

    def raise_if_invalid(self, doing: str, error: type[Exception] = GraphError) -> None:
        """Raise `error` listing every problem (and a missing output) before `doing` a thing
        that needs a valid graph, e.g. doing="export it"."""
        if not self.ok:
            lines = "\n".join(f"  - {m.text}" for m in self.errors)
            n = len(self.errors)
            raise error(f"cannot {doing}: the graph has {n} problem{'s' * (n != 1)}:\n{lines}")
        if self.output_id is None:
            raise error(f"cannot {doing}: the graph has no output layer")


CONNECT_HINT = "connect a layer to it"  # ends the "needs an input" error


def validate(graph: Graph) -> Validation:
    results = {nid: NodeResult(nid) for nid in graph.nodes}
    messages: list[Message] = []

    def report(severity, text, node_id=None, param=None, fixes=()):
        m = Message(severity, text, node_id, param, fixes)
        messages.append(m)
        if node_id is not None:
            results[node_id].messages.append(m)

    order, cyclic = graph.order_and_cycle()
    for src, dst, loop in _closing_edges(graph, cyclic):
        a, b = graph.nodes[src].name, graph.nodes[dst].name
        path = " → ".join(f"'{graph.nodes[i].name}'" for i in loop + [loop[0]])
        report(ERROR, f"the connection '{a}' → '{b}' closes a cycle ({path}); a network must "
               f"flow one way: remove it", src, None,
               Fix(f"remove the connection '{a}' → '{b}'", "remove_edge",
                   {"src": src, "dst": dst}))

    inputs = [n for n in graph.nodes.values() if n.type_name == "Input"]
    if not inputs:
        report(ERROR, "the network has no Input layer: add an 'Image input' and connect it to "
               "the first layer")

    seen_names: dict[str, str] = {}
    for node in graph.nodes.values():
        if node.name in seen_names:
            report(ERROR, f"two layers are named '{node.name}'; names must be unique (they "
                   f"become ONNX node and PyTorch module names)", node.id, "name")
        seen_names.setdefault(node.name, node.id)

    # each node's inputs as (source id, source output port), in input port order
    ins_of: dict[str, list[tuple[str, int]]] = {nid: [] for nid in graph.nodes}
    for e in sorted(graph.edges, key=lambda e: e.port):
        if e.dst in ins_of and e.src in graph.nodes:
            ins_of[e.dst].append((e.src, e.src_port))
    has_out = {e.src for e in graph.edges}

    for nid in order:
        node, res = graph.nodes[nid], results[nid]
        refs = ins_of[nid]
        key = _node_key(node, refs, results, graph)
        hit = _CACHE.get(key)
        if hit is not None:
            res.layer, res.in_shapes, res.out_shape, res.trainable_params = hit[:4]
            res.non_trainable_params, res.macs, res.receptive_field, res.jump = hit[4:8]
            for severity, text, param, fixes in hit[8]:
                report(severity, text, nid, param, fixes)
            res.out_shapes, res.memory = hit[9], hit[10]
        else:
            start = len(res.messages)
            _check_node(graph, node, res, refs, results, report)
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.clear()
            _CACHE[key] = (res.layer, res.in_shapes, res.out_shape, res.trainable_params,
                           res.non_trainable_params, res.macs, res.receptive_field, res.jump,
                           [(m.severity, m.text, m.param, m.fixes) for m in res.messages[start:]],
                           res.out_shapes, res.memory)
        if not refs:  # the connect fix depends on other nodes: never from the cache
            _offer_connect(graph, node, res, messages)

    # the output: the one node nothing reads from; other dangling nodes are flagged
    sinks = [nid for nid in order if nid not in has_out and graph.nodes[nid].type_name != "Input"]
    output_id = sinks[-1] if sinks else None
    if len(sinks) > 1:
        for nid in sinks[:-1]:
            n = graph.nodes[nid]
            report(WARNING, f"the output of {n.type_name} '{n.name}' is not used; the network's "
                   f"output is '{graph.nodes[output_id].name}'", nid)
    used_ports: dict[str, set[int]] = {}
    for e in graph.edges:
        used_ports.setdefault(e.src, set()).add(e.src_port)
    for nid in order:  # a layer with several outputs: say which ones nothing reads
        shapes = results[nid].out_shapes
        if shapes and len(shapes) > 1 and nid != output_id and nid in used_ports:
            unused = [str(k) for k in range(len(shapes)) if k not in used_ports[nid]]
            if unused:
                n = graph.nodes[nid]
                report(WARNING, f"output{'s' * (len(unused) > 1)} {', '.join(unused)} of "
                       f"{n.type_name} '{n.name}' {'are' if len(unused) > 1 else 'is'} not "
                       f"used", nid)
    for n in inputs:
        if n.id not in has_out and len(graph.nodes) > 1:
            report(WARNING, f"Input '{n.name}' feeds no layer", n.id)
    if len(inputs) > 1:
        for n in inputs[1:]:
            report(ERROR, f"only one Input is supported; remove '{n.name}'", n.id)
    _check_memory(graph, results, report)
    if output_id is not None:
        _check_classifier_output(graph, results, output_id, report)
    return Validation(results, messages, order, output_id)


PROBABILITY_TYPES = ("Softmax",)  # output layers that turn channels into class probabilities


def _check_classifier_output(graph: Graph, results: dict[str, NodeResult], output_id: str,
                             report) -> None:
    """Warn when the network's output is a C×H×W map (H·W > 1) where a classifier needs C×1×1
    or C features, with the fixes: a GlobalAvgPool2d or a Flatten before a final Softmax, or
    after the output layer otherwise.

    The rule, so that segmentation-style nets are left alone: no layer of the network enlarges
    its map (an Upsample or ConvTranspose2d means dense prediction), and either the output is a
    Softmax over the channels of that map or the map is smaller than the Input's (the net
    shrank the image and kept no head). A net that keeps the input's full size and has no
    Softmax (a denoiser, a per-pixel regressor) is not warned."""
    out = results[output_id].out_shape
    if out is None or len(out) != 3 or out[1] * out[2] <= 1:
        return
    node = graph.nodes[output_id]
    softmax = node.type_name in PROBABILITY_TYPES
    in_sizes = [r.out_shape[1] * r.out_shape[2] for nid, r in results.items()
                if graph.nodes[nid].type_name == "Input" and r.out_shape
                and len(r.out_shape) == 3]
    if not softmax and not (in_sizes and out[1] * out[2] < max(in_sizes)):
        return
    for r in results.values():  # any layer that enlarges its map: dense prediction
        if (r.out_shape and len(r.out_shape) == 3 and r.in_shapes
                and r.in_shapes[0] is not None and len(r.in_shapes[0]) == 3
                and r.out_shape[1] * r.out_shape[2] > r.in_shapes[0][1] * r.in_shapes[0][2]):
            return
    c, h, w = out
    if softmax:
        where, action = f"before '{node.name}'", "insert_before"
    else:
        where, action = f"after '{node.name}'", "insert_after"
    fixes = (Fix(f"insert a GlobalAvgPool2d {where} (output {c}×1×1)", action, {},
                 "GlobalAvgPool2d"),
             Fix(f"insert a Flatten {where} ({c}·{h}·{w} = {c * h * w} features)", action, {},
                 "Flatten"))
    report(WARNING, f"the network's output '{node.name}' is {fmt_shape(out)}; a classifier "
           f"needs C×1×1 or C features — add a global average pool or flatten", output_id,
           None, fixes)


def _physical_memory() -> int:
    """This machine's memory in bytes (POSIX; elsewhere, or unknown, 1 TiB: no false alarm)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 1 << 40


MEMORY_BYTES = _physical_memory()
BYTES_PER_VALUE = 4  # float32


def _values(res: NodeResult) -> int:
    shapes = res.out_shapes or ([res.out_shape] if res.out_shape is not None else [])
    return sum(math.prod(s) for s in shapes)


def _check_memory(graph: Graph, results: dict[str, NodeResult], report) -> None:
    """An error when the network cannot run even one image in this machine's memory: its
    float32 weights and one sample's activations (every layer's output) together exceed
    MEMORY_BYTES. Compiling, exporting or training it would die allocating; the message gives
    the numbers and the layer that needs the most. Cheap: one sum over the nodes."""
    total = 0
    for res in results.values():
        total += res.memory
    if total <= MEMORY_BYTES:
        return
    from .summary import human_bytes

    weights = sum(r.params for r in results.values()) * BYTES_PER_VALUE
    acts = total - weights
    worst = max(results, key=lambda n: results[n].memory)
    node, res, worst_bytes = graph.nodes[worst], results[worst], results[worst].memory
    report(ERROR, f"the network cannot fit in this machine's memory: its weights "
           f"({human_bytes(weights)}) and one image's activations ({human_bytes(acts)}) need "
           f"{human_bytes(weights + acts)}, more than the {human_bytes(MEMORY_BYTES)} it has. "
           f"{node.type_name} '{node.name}' needs the most: {human_bytes(worst_bytes)} "
           f"({res.params:,} weights, output {fmt_shape(res.out_shape)}); make it or its input "
           f"smaller", worst)


# Per-node results of earlier validations, keyed by everything they depend on (the node's
# type, name, parameters and frozen flag; its inputs' ids, names, shapes and receptive fields).
# An edit then re-checks only the nodes it really changed: the rest are dictionary lookups.
# Layer instances in it are shared between validations and must not be mutated (Network
# makes its own).
_CACHE: dict[tuple, tuple] = {}
_CACHE_SIZE = 50_000


def _port_shape(res: NodeResult, port: int) -> Shape | None:
    """The shape of output `port` of a checked node (None if unknown or no such port)."""
    if port == 0:
        return res.out_shape
    shapes = res.out_shapes
    return shapes[port] if shapes is not None and port < len(shapes) else None


def _node_key(node, refs: list[tuple[str, int]], results: dict[str, NodeResult],
              graph: Graph) -> tuple:
    # the sources' params too: `source_warnings` reads what a source can output
    ins = tuple((s, p, graph.nodes[s].name, graph.nodes[s].type_name,
                 repr(graph.nodes[s].params), _port_shape(results[s], p),
                 results[s].receptive_field, results[s].jump)
                for s, p in refs)
    return (node.type_name, node.name, node.trainable, repr(node.params), ins)


def _check_node(graph: Graph, node, res: NodeResult, refs: list[tuple[str, int]],
                results: dict[str, NodeResult], report) -> None:
    """Shape rule, counts, warnings and receptive field of one node whose inputs are done."""
    nid = node.id
    srcs = [s for s, _ in refs]
    cls = REGISTRY[node.type_name]
    try:
        layer = cls(node.name, **node.params)
    except ParamError as exc:
        report(ERROR, str(exc), nid, exc.param, _reset_fix(cls, exc.param))
        return
    layer.frozen = not node.trainable
    res.layer = layer
    n_in = len(srcs)
    if n_in < cls.min_inputs:
        need = ("an input" if cls.min_inputs == 1 else f"at least {cls.min_inputs} inputs")
        report(ERROR, f"{node.type_name} '{node.name}' needs {need} but has "
               f"{n_in or 'none'}: {CONNECT_HINT}", nid)
        return
    if cls.max_inputs is not None and n_in > cls.max_inputs:
        report(ERROR, f"{node.type_name} '{node.name}' takes {cls.max_inputs} input"
               f"{'s' * (cls.max_inputs != 1)} but has {n_in}; remove "
               f"{n_in - cls.max_inputs} connection{'s' * (n_in - cls.max_inputs != 1)}", nid)
        return
    for s, p in refs:  # an edge from an output its source does not have
        shapes = results[s].out_shapes
        if p and shapes is not None and p >= len(shapes):
            src, n_out = graph.nodes[s], len(shapes)
            report(ERROR, f"'{node.name}' reads output {p} of {src.type_name} '{src.name}', "
                   f"which has {n_out} output{'s' * (n_out != 1)} (ports 0 to {n_out - 1}); "
                   f"connect it to one of those", nid)
            return
    in_shapes = [_port_shape(results[s], p) for s, p in refs]
    res.in_shapes = in_shapes
    if None in in_shapes:
        return  # unknown upstream: the upstream node carries the message
    try:
        outs = layer.output_shapes(in_shapes)
    except ShapeError as exc:
        fixes = exc.fixes
        if not fixes and cls.merges_branches:
            fixes = _merge_fix(graph, results, srcs, exc.input_index)
        report(ERROR, str(exc), nid, exc.param, fixes)
        return
    res.out_shapes = [tuple(map(int, o)) for o in outs]
    res.out_shape = res.out_shapes[0]
    res.trainable_params, res.non_trainable_params = layer.param_count(in_shapes)
    if not node.trainable:  # frozen: its weights are not trained (Keras counts them so too)
        res.non_trainable_params += res.trainable_params
        res.trainable_params = 0
    res.macs = layer.macs(in_shapes, res.out_shape)
    res.memory = (res.params + _values(res)) * BYTES_PER_VALUE
    for text, param, fix in layer.warnings(in_shapes, res.out_shape):
        report(WARNING, text, nid, param, fix)
    for text, param, fix in layer.source_warnings(in_shapes, [results[s].layer for s in srcs]):
        report(WARNING, text, nid, param, fix)
    _receptive_field(res, [results[s] for s in srcs], layer, in_shapes)


def _closing_edges(graph: Graph, cyclic: list[str]) -> list[tuple[str, str, list[str]]]:
    """For each cycle (a strongly connected part of the nodes Kahn's algorithm left over): the
    edge that closes it, src -> dst with dst the part's earliest-added node, and the loop
    dst -> ... -> src. Nodes merely downstream of a cycle are not on one."""
    left = set(cyclic)
    succ: dict[str, list[str]] = {i: [] for i in cyclic}
    pred: dict[str, list[str]] = {i: [] for i in cyclic}
    for e in graph.edges:
        if e.src in left and e.dst in left:
            succ[e.src].append(e.dst)
            pred[e.dst].append(e.src)
    rank = {nid: k for k, nid in enumerate(graph.nodes)}
    out, done = [], set()
    for start in sorted(cyclic, key=rank.__getitem__):
        if start in done:
            continue
        fwd, bwd = _reach(start, succ), _reach(start, pred)
        part = (fwd & bwd) | {start}
        done |= part
        closers = [p for p in pred[start] if p in part]
        if not closers:
            continue  # downstream of a cycle, not on one
        src = min(closers, key=rank.__getitem__)
        out.append((src, start, _path(start, src, succ, part)))
    return out


def _reach(start: str, nxt: dict[str, list[str]]) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for n in nxt[stack.pop()]:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def _path(a: str, b: str, succ: dict[str, list[str]], part: set[str]) -> list[str]:
    """Shortest path a -> ... -> b inside `part` (breadth first)."""
    prev, queue = {a: None}, [a]
    for cur in queue:
        if cur == b:
            break
        for n in succ[cur]:
            if n in part and n not in prev:
                prev[n] = cur
                queue.append(n)
    path, cur = [], b
    while cur is not None:
        path.append(cur)
        cur = prev[cur]
    return path[::-1]


def _receptive_field(res: NodeResult, ins: list[NodeResult], layer: Layer, in_shapes) -> None:
    """RF arithmetic: r_out = r_in + (k − 1)·j_in, j_out = j_in·s (per axis, max over inputs)."""
    if layer.type_name == "Input":
        res.receptive_field, res.jump = (1, 1), (1, 1)
        return
    if len(ins) == 1:  # the common case, without the generators
        rf, jump = ins[0].receptive_field, ins[0].jump
        if rf is None:
            return
    else:
        if not ins or any(r.receptive_field is None for r in ins):
            return
        rf = tuple(max(r.receptive_field[a] for r in ins) for a in (0, 1))
        # A broadcast input (a squeeze-and-excitation gate, C×1×1) already sees the whole image:
        # its RF counts, but the output's pixel grid, and so its jump, is the full-size inputs'.
        # (The gate's own jump is its global pool's window, which would inflate every later RF.)
        spatial = [tuple(s[-2:]) if len(s) == 3 else None for s in in_shapes]
        widest = max((s for s in spatial if s is not None), key=lambda s: s[0] * s[1],
                     default=None)
        grid = [r for r, s in zip(ins, spatial) if s == widest] or ins
        jump = tuple(max(r.jump[a] for r in grid) for a in (0, 1))
    win = layer.rf_window(in_shapes)
    if win is not None:
        (kh, kw), (sh, sw), _ = win
        rf = (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1])
        jump = (jump[0] * sh, jump[1] * sw)
    res.receptive_field, res.jump = rf, jump


def _offer_connect(graph: Graph, node, res, messages: list[Message]) -> None:
    """A layer with no input gets the fix that connects one (see _connect_fix)."""
    for k, m in enumerate(res.messages):
        if m.fix is None and m.text.endswith(CONNECT_HINT):
            fix = _connect_fix(graph, node)
            if fix is not None:
                res.messages[k] = new = dataclasses.replace(m, fixes=(fix,))
                messages[messages.index(m)] = new
            return


def _connect_fix(graph: Graph, node) -> Fix | None:
    """For a layer with no input: connect the nearest layer above it whose output is free
    (feeds nothing) and that it does not feed itself (no cycle); None when there is none."""
    x, y = node.position
    below = graph.descendants(node.id) | {node.id}
    cands = [n for n in graph.nodes.values()
             if n.id not in below and n.position[1] < y and not graph.successors(n.id)]
    if not cands:
        return None
    src = min(cands, key=lambda n: (n.position[0] - x) ** 2 + (n.position[1] - y) ** 2)
    return Fix(f"connect '{src.name}' → '{node.name}'", "add_edge",
               {"src": src.id, "dst": node.id})


def _reset_fix(cls, param: str | None) -> Fix | None:
    for p in cls.params:
        if p.name == param:
            return Fix(f"reset {param} to its default ({p.default})", "set_params",
                       {param: p.default})
    return None


def _merge_fix(graph: Graph, results, srcs: list[str], index: int | None) -> Fix | None:
    """For a spatial mismatch into a layer that merges branches (`Layer.merges_branches`: Add,
    Concat): if the input the message names (`index`; None: any) is a stride-1 convolution
    that shrank the maps, offer the padding that keeps them the size of the largest input."""
    shapes = [results[s].out_shape for s in srcs]
    target = max((s for s in shapes if len(s) == 3), key=lambda s: s[1] * s[2], default=None)
    if target is None:
        return None
    for k, (s, shape) in enumerate(zip(srcs, shapes)):
        if len(shape) != 3 or shape[1:] == target[1:] or index not in (None, k):
            continue
        node = graph.nodes[s]
        layer = results[s].layer
        if node.type_name == "Conv2d" and layer.stride == [1, 1]:
            (kh, kw), _, _ = layer.rf_window(results[s].in_shapes)
            in_shape = results[s].in_shapes[0]
            if in_shape[1:] == target[1:]:
                ph, pw = (kh - 1) // 2, (kw - 1) // 2
                if (kh - 1) % 2 == 0 and (kw - 1) % 2 == 0:
                    label = (f"padding {ph} keeps {target[1]}×{target[2]}" if ph == pw else
                             f"padding {ph},{pw} keeps {target[1]}×{target[2]}")
                    return Fix(f"{label} in '{node.name}'", "set_params",
                               {"padding": [ph, pw, ph, pw]}, node_id=s)
                return Fix(f"padding 'same' keeps {target[1]}×{target[2]} in '{node.name}'",
                           "set_params", {"padding": "same"}, node_id=s)
    return None


def shape_text(shape: Shape | None) -> str:
    return fmt_shape(shape)
