"""Blocks: groups of layers a canvas can collapse into one node (and expand again).

    blocks = detect_blocks(graph)           # {"layer2": [...ids], "layer2.0": [...], ...}
    info = block_summary(graph, validate(graph), blocks["layer2"], "layer2")
    info.in_shapes, info.out_shapes, info.params      # [(64, 56, 56)], [(128, 28, 28)], 526848

Two sources, combined:

- **Names.** Layers named after a module path (torchvision / PyTorch: "layer2.0.conv1"; raw
  ONNX node names: "/layer2/layer2.0/conv1/Conv") form a block per path prefix ("layer2",
  "layer2.0") holding at least two layers that are connected among themselves (an exporter
  that reuses a short scope name in two places does not make a block of unrelated layers).
- **Structure.** Where branches merge (Add, Concat), the single-entry single-exit region from
  the point where they forked (the merge's dominator) down to the merge is a block, with the
  activation right after the merge (ResNet's ReLU after the Add) and, when the fork is an
  activation, the conv feeding it (SqueezeNet's squeeze conv). Blocks are numbered in graph
  order and named "block 3 (residual, 7 layers)"; consecutive blocks with the same structure
  are grouped as "blocks 2-4 (3 × residual)".

Structural blocks are added where they nest with the named ones (each pair either disjoint or
one inside the other); names win. Block order: by first layer in topological order, outer
blocks before the blocks inside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .graph import Graph
from .layers import REGISTRY, Shape, fmt_shape
from .validate import Validation

MIN_LAYERS = 2  # a block of one layer collapses nothing


@dataclass
class BlockInfo:
    """What a collapsed block node shows."""

    name: str
    n_layers: int
    in_shapes: list[Shape | None]  # tensors entering the block (one per outside source)
    out_shapes: list[Shape | None]  # tensors leaving it (read outside, or the network output)
    params: int  # trainable + non-trainable (BatchNorm statistics)
    trainable_params: int = 0
    macs: int = 0
    node_ids: list[str] = field(default_factory=list)
    n_blocks: int = 0  # blocks directly inside (dense layers of a dense block), when given

    @property
    def title(self) -> str:
        """'features.denseblock3' -> 'dense block 3 (48 blocks, 336 layers)'; 'layer2' ->
        'layer 2 (16 layers)'; structural names already carry their size."""
        if "layers)" in self.name:
            return self.name
        size = f"{self.n_layers} layer{'s' * (self.n_layers != 1)}"
        if self.n_blocks:
            size = f"{self.n_blocks} block{'s' * (self.n_blocks != 1)}, {size}"
        return f"{display_name(self.name)} ({size})"

    def describe(self) -> str:
        """Two short lines for the collapsed node: title, then shapes and parameters."""
        def shapes(ss):
            return ", ".join("?" if s is None else fmt_shape(s) for s in ss) or "-"

        return (f"{self.title}\n"
                f"{shapes(self.in_shapes)} → {shapes(self.out_shapes)}, "
                f"{self.params:,} params")


# ---- names -------------------------------------------------------------------------------

def module_path(name: str) -> tuple[list[str], bool]:
    """A layer name as a module path (components) and whether the whole path is a module that
    may hold several layers (raw ONNX names, whose last part is the op).

    "layer2.0.conv1" -> (["layer2", "0", "conv1"], False);
    "/layer2/layer2.0/conv1/Conv" -> (["layer2", "0", "conv1"], True)."""
    name = name.strip()
    if "/" in name:
        parts = [p for p in name.split("/") if p][:-1]  # the last part is the op ("Conv")
        comps: list[str] = []
        prev = None
        for p in parts:
            # a segment names a module relative to the enclosing one, and a Sequential's child
            # repeats its parent's segment: /layer2/layer2.0/conv1, /layer2/short/short.0
            if prev is not None and p.startswith(prev + "."):
                comps[len(comps) - len(prev.split(".")):] = p.split(".")
            else:
                comps += p.split(".")
            prev = p
        return [c for c in comps if c], True
    return [c for c in name.split(".") if c], False


def blocks_from_names(graph: Graph) -> dict[str, list[str]]:
    """Blocks from dotted (or slash-separated) layer names: path prefix -> node ids (graph
    order), for prefixes shared by >= 2 connected layers, not the whole network."""
    order, _ = graph.order_and_cycle()
    members: dict[str, list[str]] = {}
    for nid in order:
        comps, whole = module_path(graph.nodes[nid].name)
        upto = len(comps) if whole else len(comps) - 1
        for k in range(1, upto + 1):
            members.setdefault(".".join(comps[:k]), []).append(nid)
    everything = {nid for nid in order if graph.nodes[nid].type_name != "Input"}
    out: dict[str, list[str]] = {}
    seen_sets: set[frozenset] = set()
    for prefix in sorted(members, key=lambda p: p.count(".")):  # outer first: keeps the outer
        ids = members[prefix]
        key = frozenset(ids)
        if len(ids) < MIN_LAYERS or key in seen_sets or key >= everything:
            continue
        if not _connected(graph, key):
            continue
        seen_sets.add(key)
        out[prefix] = ids
    return out


def _connected(graph: Graph, ids: frozenset | set) -> bool:
    """Whether the layers `ids` form one piece through the edges among them."""
    adj: dict[str, list[str]] = {i: [] for i in ids}
    for e in graph.edges:
        if e.src in ids and e.dst in ids:
            adj[e.src].append(e.dst)
            adj[e.dst].append(e.src)
    start = next(iter(ids))
    seen, stack = {start}, [start]
    while stack:
        for j in adj[stack.pop()]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return len(seen) == len(ids)


# ---- structure ---------------------------------------------------------------------------

def _dominators(order: list[str], preds: dict[str, list[str]]) -> dict[str, str | None]:
    """Immediate dominators in a DAG (Cooper-Harvey-Kennedy on a topological order); sources
    hang under a virtual root (None)."""
    index = {n: i for i, n in enumerate(order)}
    idom: dict[str, str | None] = {}

    def intersect(a, b):
        while a != b:
            if a is None or b is None:
                return None
            while a is not None and b is not None and index[a] > index[b]:
                a = idom[a]
            while a is not None and b is not None and index[b] > index[a]:
                b = idom[b]
            if a is None or b is None:
                return None
        return a

    for n in order:  # a DAG in topological order: one pass suffices
        ps = preds[n]
        if not ps:
            idom[n] = None
            continue
        d = ps[0]
        for p in ps[1:]:
            d = intersect(d, p)
        idom[n] = d
    return idom


@dataclass
class _Region:
    entry: str  # the fork the block starts after (not in the block)
    merge: str
    nodes: list[str]  # graph order
    kind: str


def _category(graph: Graph, nid: str) -> str:
    return REGISTRY[graph.nodes[nid].type_name].category


def _merges(graph: Graph, nid: str) -> bool:
    return REGISTRY[graph.nodes[nid].type_name].merges_branches


def _weighted(graph: Graph, nid: str) -> bool:
    return _category(graph, nid) in ("Convolution",) or graph.nodes[nid].type_name == "Linear"


def _regions(graph: Graph, order: list[str]) -> list[_Region]:
    preds = {n: graph.inputs_of(n) for n in order}
    succs: dict[str, list[str]] = {n: [] for n in order}
    for e in graph.edges:
        if e.src in succs and e.dst in succs:
            succs[e.src].append(e.dst)
    index = {n: i for i, n in enumerate(order)}
    idom = _dominators(order, preds)
    found: list[_Region] = []
    for m in order:
        if len(preds[m]) < 2:
            continue
        entry = idom[m]
        if entry is None:
            continue
        # the nodes on paths entry -> m
        down = _reach(entry, succs)
        up = _reach(m, preds)
        body = (down & up) - {entry}
        # single entry, single exit: nothing but the entry feeds the body, only m leaves it
        if any(p not in body and p != entry for n in body for p in preds[n]):
            continue
        if any(s not in body for n in body - {m} for s in succs[n]):
            continue
        nodes = sorted(body, key=index.__getitem__)
        kind = _kind(graph, m, entry, preds)
        found.append(_Region(entry, m, nodes, kind))
    # keep the outermost regions (an inner merge's region lies inside an outer one)
    found.sort(key=lambda r: -len(r.nodes))
    kept: list[_Region] = []
    for r in found:
        if not any(set(r.nodes) <= set(k.nodes) for k in kept):
            kept.append(r)
    kept.sort(key=lambda r: index[r.nodes[0]])
    taken = {n for r in kept for n in r.nodes}
    for r in kept:  # the activation after the merge (ResNet's ReLU after the Add)
        end = r.merge
        while len(succs[end]) == 1:
            nxt = succs[end][0]
            if (nxt in taken or len(preds[nxt]) != 1
                    or _category(graph, nxt) != "Activation"):
                break
            r.nodes.append(nxt)
            taken.add(nxt)
            end = nxt
    for r in kept:  # a fork that is an activation takes the layer feeding it (fire's squeeze)
        lead: list[str] = []
        cur = r.entry
        if cur in taken or _category(graph, cur) != "Activation":
            continue
        ok = False
        while True:
            if (cur in taken or len(preds[cur]) != 1 or _merges(graph, cur)
                    or _category(graph, cur) in ("Input", "Pooling")
                    or (cur != r.entry and len(succs[cur]) != 1)):
                ok = bool(lead) and _category(graph, cur) != "Input"
                break
            lead.append(cur)
            if _weighted(graph, cur):
                prev = preds[cur][0]
                ok = _category(graph, prev) != "Input"  # not the network's stem
                break
            cur = preds[cur][0]
        if ok and any(_weighted(graph, n) for n in lead):
            r.nodes[:0] = list(reversed(lead))
            taken.update(lead)
    return kept


def _reach(start: str, adj: dict[str, list[str]]) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for j in adj[stack.pop()]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def _kind(graph: Graph, merge: str, entry: str, preds: dict[str, list[str]]) -> str:
    """The merge layer's declared `block_kind` (Add: "residual"), else "dense" when the fork
    feeds the merge directly, else "n-branch"."""
    declared = REGISTRY[graph.nodes[merge].type_name].block_kind
    if declared:
        return declared
    if entry in preds[merge]:
        return "dense"
    return f"{len(preds[merge])}-branch"


def _signature(graph: Graph, nodes: list[str]) -> tuple:
    local = {n: i for i, n in enumerate(nodes)}
    return tuple((graph.nodes[n].type_name,
                  tuple((local.get(s, -1), p) for s, p in graph.input_refs(n))) for n in nodes)


def blocks_from_structure(graph: Graph) -> dict[str, list[str]]:
    """Blocks between fork and merge points, named "block k (kind, n layers)"; runs of
    consecutive blocks with the same structure are grouped too."""
    order, cyclic = graph.order_and_cycle()
    if cyclic:
        return {}
    regions = _regions(graph, order)
    out: dict[str, list[str]] = {}
    names = []
    for i, r in enumerate(regions, start=1):
        name = f"block {i} ({r.kind}, {len(r.nodes)} layers)"
        names.append(name)
        out[name] = r.nodes
    # runs of the same structure, each block fed only by the one before it
    sigs = [_signature(graph, r.nodes) for r in regions]
    i = 0
    while i < len(regions):
        j = i
        while (j + 1 < len(regions) and sigs[j + 1] == sigs[i]
               and _feeds_only_from(graph, regions[j + 1].nodes, regions[j].nodes)):
            j += 1
        if j > i:
            ids = [n for r in regions[i:j + 1] for n in r.nodes]
            out[f"blocks {i + 1}-{j + 1} ({j - i + 1} × {regions[i].kind})"] = ids
        i = j + 1
    return out


def _feeds_only_from(graph: Graph, block: list[str], before: list[str]) -> bool:
    inside, prev = set(block), set(before)
    return all(s in inside or s in prev for n in block for s in graph.inputs_of(n))


# ---- together ----------------------------------------------------------------------------

def detect_blocks(graph: Graph) -> dict[str, list[str]]:
    """Block name -> node ids (graph order), nested blocks allowed: named blocks, plus the
    structural blocks that nest with them. Outer blocks come before the blocks inside them."""
    order, _ = graph.order_and_cycle()
    index = {n: i for i, n in enumerate(order)}
    blocks = dict(blocks_from_names(graph))
    sets = [frozenset(v) for v in blocks.values()]
    for name, ids in blocks_from_structure(graph).items():
        s = frozenset(ids)
        if any(s == t or not (s <= t or t <= s or not (s & t)) for t in sets):
            continue
        blocks[name] = ids
        sets.append(s)
    return dict(sorted(blocks.items(),
                       key=lambda kv: (min(index.get(n, 0) for n in kv[1]), -len(kv[1]))))


def with_layers_between(graph: Graph, blocks: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each block with the layers that lie on a path from one of its members to another (a
    layer inserted into a block after the block was made, as a ReLU put on a connection inside
    a residual block): a collapsed block then hides a closed region and the folded graph has
    no cycle through the card. Members that no longer exist are left out; added layers come
    after the members, in graph order.

    Only layers whose topological place lies between the block's first and last member are
    searched, so the cost is the blocks' spans, not blocks × graph."""
    order, _ = graph.order_and_cycle()
    rank = {n: k for k, n in enumerate(order)}
    succs: dict[str, list[str]] = {n: [] for n in graph.nodes}
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for e in graph.edges:
        if e.src in succs and e.dst in preds:
            succs[e.src].append(e.dst)
            preds[e.dst].append(e.src)
    out: dict[str, list[str]] = {}
    for name, ids in blocks.items():
        members = [i for i in ids if i in graph.nodes]
        inside = set(members)
        ranks = [rank[i] for i in members if i in rank]
        if len(ranks) < 2:
            out[name] = members
            continue
        lo, hi = min(ranks), max(ranks)
        after: set[str] = set()  # reached from a member, still before the last member
        stack = list(members)
        while stack:
            for s in succs[stack.pop()]:
                if s not in inside and s not in after and lo < rank.get(s, -1) < hi:
                    after.add(s)
                    stack.append(s)
        between: set[str] = set()  # ... and leading back into a member
        stack = list(members)
        while stack:
            for p in preds[stack.pop()]:
                if p in after and p not in between:
                    between.add(p)
                    stack.append(p)
        out[name] = members + sorted(between, key=rank.__getitem__)
    return out


def display_name(name: str) -> str:
    """A block's module path as a short label: the last part, words and numbers apart
    ('features.denseblock3' -> 'dense block 3', 'layer2.0' -> 'layer 2.0', 'Mixed_5b' ->
    'Mixed 5b', 'conv1' -> 'conv1')."""
    comps, _ = module_path(name)
    if not comps:
        return name
    k = len(comps) - 1
    while k > 0 and comps[k].isdigit():  # "layer2.0": keep the numbers with their word
        k -= 1
    text = ".".join(comps[k:])
    text = re.sub(r"^(dense|transition|inception)(block|layer)?", r"\1 \2", text).strip()
    # a number after a word of 5+ letters ("layer2", "block3"); "conv1" stays as it is
    text = re.sub(r"(?<=[A-Za-z]{5})(?=\d)", " ", text.replace("_", " "))
    return re.sub(r"\s+", " ", text)


def block_summary(graph: Graph, validation: Validation, node_ids, name: str | None = None,
                  blocks: dict[str, list[str]] | None = None) -> BlockInfo:
    """The collapsed node of the layers `node_ids`: its input and output shapes (C×H×W or F,
    None where validation has no shape), layer count and parameter total. With `blocks`
    (detect_blocks' result), `n_blocks` counts the blocks directly inside this one."""
    wanted = [n for n in node_ids if n in graph.nodes]
    ranked = set(validation.order)
    ids = [n for n in validation.order if n in set(wanted)] + [n for n in wanted
                                                               if n not in ranked]
    inside = set(ids)
    srcs: list[tuple[str, int]] = []  # (node, output port) read from outside, first use first
    for n in ids:
        for ref in graph.input_refs(n):
            if ref[0] not in inside and ref not in srcs:
                srcs.append(ref)
    leaving = [n for n in ids if n == validation.output_id
               or any(e.src == n and e.dst not in inside for e in graph.edges)]

    def shape(n, port=0):
        res = validation.nodes.get(n)
        if res is None or port == 0:
            return None if res is None else res.out_shape
        return res.out_shapes[port] if res.out_shapes and port < len(res.out_shapes) else None

    results = [validation.nodes[n] for n in ids if n in validation.nodes]
    trainable = sum(r.trainable_params for r in results)
    total = trainable + sum(r.non_trainable_params for r in results)
    if name is None:
        name = _common_prefix([graph.nodes[n].name for n in ids]) or "block"
    return BlockInfo(name, len(ids), [shape(s, p) for s, p in srcs], [shape(n) for n in leaving],
                     total, trainable, sum(r.macs for r in results), ids,
                     _direct_children(inside, blocks) if blocks else 0)


def _direct_children(inside: set[str], blocks: dict[str, list[str]]) -> int:
    """How many of `blocks` lie inside `inside` (strictly) and inside no other such block."""
    subs = [frozenset(v) for v in blocks.values()]
    subs = [b for b in set(subs) if b < inside]
    return sum(1 for b in subs if not any(b < o for o in subs))


def _common_prefix(names: list[str]) -> str:
    paths = [module_path(n)[0] for n in names]
    if not paths:
        return ""
    common = paths[0]
    for p in paths[1:]:
        k = 0
        while k < min(len(common), len(p)) and common[k] == p[k]:
            k += 1
        common = common[:k]
    return ".".join(common)
