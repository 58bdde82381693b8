"""A trial's architecture: the model's graph with the sampled layer parameters, layer types and
block repeats applied, checked by validation before it costs a training run."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from ..errors import EngineError
from ..graph import Graph
from ..layers import REGISTRY
from ..validate import validate
from .space import Space


class InvalidVariant(EngineError):
    """The sampled variant is not a valid network (the trial is skipped and counted)."""


def apply_values(graph: Graph, space: Space, values: dict[str, Any]) -> Graph:
    """A copy of `graph` with `values` ("conv1.out_channels", "pool1.type", "conv2+relu2.repeat")
    applied; InvalidVariant naming the layer and problem when validation refuses it."""
    g = Graph.from_json(graph.to_json())
    by_name = {n.name: n for n in g.nodes.values()}
    for lname, params in space.layers.items():
        node = by_name[lname]
        new_type = values.get(f"{lname}.type", node.type_name)
        if new_type != node.type_name:
            keep = {p.name for p in REGISTRY[new_type].params}
            node.type_name = new_type
            node.params = {k: v for k, v in node.params.items() if k in keep}
        declared = {p.name for p in REGISTRY[node.type_name].params}
        for pname in params:
            key = f"{lname}.{pname}"
            if pname != "type" and key in values and pname in declared:
                node.params[pname] = values[key]
    for block in space.blocks:
        repeat_block(g, [by_name[n].id for n in block.layers], int(values[block.name]))
    v = validate(g)
    if not v.ok:
        m = v.errors[0]
        where = f"{g.nodes[m.node_id].name}: " if m.node_id in g.nodes else ""
        raise InvalidVariant(where + m.text)
    return g


def repeat_block(g: Graph, ids: list[str], times: int) -> None:
    """Repeat the chain of nodes `ids` (each feeding the next) `times` times in place:
    0 removes it (its input then feeds its successors), 1 keeps it, k adds k-1 copies."""
    for a, b in pairwise(ids):
        if g.inputs_of(b) != [a]:
            raise InvalidVariant(f"block {'+'.join(g.nodes[i].name for i in ids)}: "
                                 f"{g.nodes[b].name} does not take {g.nodes[a].name} as its "
                                 f"only input, so the block is not a chain")
    first, last = ids[0], ids[-1]
    ins = [e for e in g.edges if e.dst == first]
    if len(ins) != 1:
        raise InvalidVariant(f"block starting at {g.nodes[first].name} must have one input "
                             f"to be repeated, it has {len(ins)}")
    src_in = ins[0]
    outs = [e for e in g.edges if e.src == last]
    if times == 1:
        return
    if times == 0:
        for nid in ids:
            g.remove_node(nid)
        for e in outs:
            g.add_edge(src_in.src, e.dst, e.port, src_in.src_port)
        return
    for e in outs:
        g.remove_edge(e)
    prev = last
    for _ in range(times - 1):
        copies = []
        for nid in ids:
            n = g.nodes[nid]
            c = g.add_node(n.type_name, g.unique_name(n.name), dict(n.params),
                           (n.position[0], n.position[1]), trainable=n.trainable)
            copies.append(c.id)
        g.add_edge(prev, copies[0])
        for a, b in pairwise(copies):
            g.add_edge(a, b)
        prev = copies[-1]
    for e in outs:
        g.add_edge(prev, e.dst, e.port)
