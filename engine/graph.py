"""The graph model: nodes (layers), edges, topological order and the versioned JSON form.

The graph stores parameters as given; validation (engine/validate.py) reports bad values, so a
half-edited or hand-written graph always loads and can be repaired.

Ports. A layer has numbered inputs (Concat's order matters) and numbered outputs (most layers
have one; a channel split has several, see `Layer.num_outputs`). An `Edge` names both ends:
it leaves output `src_port` of node `src` and enters input `port` of node `dst`.

JSON form, version 2 (FORMAT_VERSION)::

    {"format": "cnn-designer-graph", "version": 2, "name": "...",
     "nodes": [{"id": "conv1", "type": "Conv2d", "name": "conv1", "params": {...}, ...}],
     "edges": [["input", "conv1", 0],
               ["split1:1", "conv2", 0]],
     "input_spec": {"size": [224, 224], "resize": 256, ...}}   (optional: engine/inputspec.py)

An edge is [source, destination, input port]. The source is the node id alone when the edge
leaves output 0 (every edge of a single-output layer, so most files read exactly as before)
and "id:k" when it leaves output k, as ONNX and TensorFlow name tensors ("split1:1" is output 1
of node split1). An id that itself contains ":" is always written with its port ("a:b:0"), so
reading splits at the last ":" only when digits follow and is never ambiguous. Objects
{"src", "dst", "port", "src_port"} are read too (hand-written files).

Version 1 (before output ports) wrote [src, dst, port] with src always a plain id; `from_json`
migrates older versions step by step (`_MIGRATIONS`) and refuses newer ones.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError, ParamError
from .inputspec import InputSpec
from .layers import REGISTRY, layer_class

FORMAT = "cnn-designer-graph"
FORMAT_VERSION = 2  # 2: edges name the source's output port (see the module docstring)


@dataclass
class Node:
    id: str
    type_name: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    trainable: bool = True
    position: tuple[float, float] = (0.0, 0.0)

    def to_json(self) -> dict:
        return {"id": self.id, "type": self.type_name, "name": self.name,
                "params": copy.deepcopy(self.params), "trainable": self.trainable,
                "position": [round(float(self.position[0]), 2), round(float(self.position[1]), 2)]}


@dataclass(frozen=True)
class Edge:
    """Data flows from output `src_port` of node `src` into input `port` of node `dst`.

    `port` orders a layer's inputs (Concat); `src_port` picks one output of a layer with
    several (a channel split); both are 0 for the common single-input, single-output case.
    """

    src: str
    dst: str
    port: int = 0  # input port of dst
    src_port: int = 0  # output port of src

    @property
    def source(self) -> tuple[str, int]:
        """(src, src_port): the value this edge carries."""
        return self.src, self.src_port

    def to_json(self) -> list:
        return [port_ref(self.src, self.src_port), self.dst, self.port]


def port_ref(node_id: str, port: int) -> str:
    """The JSON text of output `port` of `node_id`: the bare id for output 0, else "id:port"
    (and always "id:port" for an id containing ":", so parse_port_ref reads it back)."""
    return node_id if port == 0 and ":" not in node_id else f"{node_id}:{port}"


def parse_port_ref(ref: str) -> tuple[str, int]:
    """Inverse of port_ref: "split1:1" -> ("split1", 1); "conv1" -> ("conv1", 0)."""
    head, sep, tail = ref.rpartition(":")
    if sep and tail.isdigit() and tail.isascii():
        return head, int(tail)
    return ref, 0


class Graph:
    """A DAG of layers. Several inputs where a layer allows them (Add, Concat); fan-out anywhere."""

    def __init__(self, name: str = "network"):
        self.name = name
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self._next_id = 1
        # How photos become this network's input (engine/inputspec.py); None: the default for
        # the Input's shape. Kept here so that projects, bare .json, copies and undo carry it.
        self.input_spec: InputSpec | None = None

    # ---- construction ----------------------------------------------------------------------

    def add_node(self, type_name: str, name: str | None = None, params: dict | None = None,
                 position=(0.0, 0.0), node_id: str | None = None,
                 trainable: bool = True) -> Node:
        layer_class(type_name)  # unknown types are refused here, with the list of known ones
        if node_id is None:
            node_id = self.new_id()
        elif node_id in self.nodes:
            raise GraphError(f"node id {node_id!r} is already used")
        node = Node(node_id, type_name, name or self.unique_name(default_name(type_name)),
                    dict(params or {}), trainable, (float(position[0]), float(position[1])))
        self.nodes[node_id] = node
        return node

    def new_id(self) -> str:
        while f"n{self._next_id}" in self.nodes:
            self._next_id += 1
        self._next_id += 1
        return f"n{self._next_id - 1}"

    def unique_name(self, base: str) -> str:
        taken = {n.name for n in self.nodes.values()}
        if base not in taken:
            return base
        stem = re.sub(r"\d+$", "", base) or base
        i = 1
        while f"{stem}{i}" in taken:
            i += 1
        return f"{stem}{i}"

    def remove_node(self, node_id: str) -> list[Edge]:
        """Remove a node and its edges; returns the removed edges."""
        removed = [e for e in self.edges if node_id in (e.src, e.dst)]
        self.edges = [e for e in self.edges if node_id not in (e.src, e.dst)]
        del self.nodes[node_id]
        return removed

    def add_edge(self, src: str, dst: str, port: int | None = None, src_port: int = 0) -> Edge:
        """Connect output `src_port` of `src` to input `port` of `dst` (None: the next free
        input); GraphError says why a connection is refused."""
        ok, reason = self.can_connect(src, dst, src_port)
        if not ok:
            raise GraphError(reason)
        if port is None:
            port = max((e.port + 1 for e in self.edges if e.dst == dst), default=0)
        edge = Edge(src, dst, port, src_port)
        self.edges.append(edge)
        return edge

    def remove_edge(self, edge: Edge) -> None:
        self.edges.remove(edge)

    def can_connect(self, src: str, dst: str, src_port: int = 0) -> tuple[bool, str]:
        """Whether an edge from output `src_port` of src to dst may be added, and if not, why
        (for the canvas)."""
        if src not in self.nodes or dst not in self.nodes:
            return False, "both ends of a connection must be layers of this graph"
        a, b = self.nodes[src], self.nodes[dst]
        if src == dst:
            return False, f"'{a.name}' cannot feed itself"
        cls = REGISTRY[b.type_name]
        if cls.max_inputs == 0:
            return False, f"{b.type_name} '{b.name}' takes no input"
        n_out = self.output_count(src)
        if n_out is not None and not 0 <= src_port < n_out:
            return False, port_error(a, src_port, n_out)
        if any(e.src == src and e.src_port == src_port and e.dst == dst for e in self.edges):
            return False, (f"'{a.name}' already feeds '{b.name}'" if n_out == 1 else
                           f"output {src_port} of '{a.name}' already feeds '{b.name}'")
        n_in = sum(1 for e in self.edges if e.dst == dst)
        if cls.max_inputs is not None and n_in >= cls.max_inputs:
            return False, (f"{b.type_name} '{b.name}' takes {cls.max_inputs} input"
                           f"{'s' * (cls.max_inputs != 1)} and already has {n_in}")
        if src in self.descendants(dst):
            return False, f"connecting '{a.name}' to '{b.name}' would make a cycle"
        return True, ""

    # ---- queries ---------------------------------------------------------------------------

    def inputs_of(self, node_id: str) -> list[str]:
        """Source node ids feeding `node_id`, in port order."""
        ins = [e for e in self.edges if e.dst == node_id]
        ins.sort(key=lambda e: e.port)
        return [e.src for e in ins]

    def input_refs(self, node_id: str) -> list[tuple[str, int]]:
        """(source node id, its output port) feeding `node_id`, in input port order: the values
        a layer reads (inputs_of gives only the nodes)."""
        ins = [e for e in self.edges if e.dst == node_id]
        ins.sort(key=lambda e: e.port)
        return [(e.src, e.src_port) for e in ins]

    def output_count(self, node_id: str) -> int | None:
        """How many outputs the node's layer has with its current parameters (None while they
        are invalid: validation reports that)."""
        node = self.nodes[node_id]
        cls = REGISTRY[node.type_name]
        if not cls.multi_output():  # the common case: no instance needed
            return 1
        try:
            return cls(node.name, **node.params).num_outputs()
        except (ValueError, TypeError):
            return None

    def successors(self, node_id: str) -> list[str]:
        return [e.dst for e in self.edges if e.src == node_id]

    def descendants(self, node_id: str) -> set[str]:
        """Every node `node_id` feeds, directly or not (itself excluded)."""
        return self._reach(node_id, forward=True)

    def ancestors(self, node_id: str) -> set[str]:
        """Every node feeding `node_id`, directly or not (itself excluded)."""
        return self._reach(node_id, forward=False)

    def _reach(self, node_id: str, forward: bool) -> set[str]:
        nxt_of: dict[str, list[str]] = {}
        for e in self.edges:
            a, b = (e.src, e.dst) if forward else (e.dst, e.src)
            nxt_of.setdefault(a, []).append(b)
        seen, stack = set(), [node_id]
        while stack:
            for nxt in nxt_of.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def topological_order(self) -> list[str]:
        """Kahn's algorithm (sources in insertion order, then in the order edges release nodes);
        GraphError names the nodes of a cycle."""
        order, cyclic = self.order_and_cycle()
        if cyclic:
            names = ", ".join(f"'{self.nodes[i].name}'" for i in cyclic)
            raise GraphError(f"the graph has a cycle through {names}")
        return order

    def order_and_cycle(self) -> tuple[list[str], list[str]]:
        """(order of the acyclic part, ids left on or after a cycle)."""
        indeg = {i: 0 for i in self.nodes}
        out: dict[str, list[str]] = {i: [] for i in self.nodes}
        for e in self.edges:
            if e.src in indeg and e.dst in indeg:
                indeg[e.dst] += 1
                out[e.src].append(e.dst)
        ready = [i for i, d in indeg.items() if d == 0]
        order = []
        k = 0
        while k < len(ready):
            i = ready[k]
            k += 1
            order.append(i)
            for j in out[i]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    ready.append(j)
        rest = [i for i in self.nodes if indeg[i] > 0]
        return order, rest

    def find(self, name: str) -> Node:
        for n in self.nodes.values():
            if n.name == name or n.id == name:
                return n
        raise GraphError(f"no layer named {name!r}")

    # ---- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "nodes": [n.to_json() for n in self.nodes.values()],
                "edges": [e.to_json() for e in self.edges],
                **({"input_spec": self.input_spec.to_json()} if self.input_spec else {})}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, data: Any) -> Graph:
        """Build a graph from its JSON form; GraphError names the first malformed entry."""
        if not isinstance(data, dict):
            raise GraphError("a graph must be a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise GraphError(f"not a CNN Designer graph (format {data.get('format')!r})")
        version = data.get("version", FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise GraphError(f"graph format version {version!r} is not valid (a whole number "
                             f"from 1 to {FORMAT_VERSION})")
        if version > FORMAT_VERSION:
            raise GraphError(f"graph format version {version!r} is newer than this app reads "
                             f"({FORMAT_VERSION}); update CNN Designer")
        while version < FORMAT_VERSION:  # older files: upgrade one version at a time
            data, version = _MIGRATIONS[version](data), version + 1
        g = cls(str(data.get("name", "network")))
        nodes, edges = data.get("nodes"), data.get("edges", [])
        if not isinstance(nodes, list) or not isinstance(edges, list):
            raise GraphError("a graph needs a 'nodes' list and an 'edges' list")
        for k, nd in enumerate(nodes):
            if not isinstance(nd, dict) or not isinstance(nd.get("type"), str):
                raise GraphError(f"node {k + 1} must be an object with a 'type'")
            nid = str(nd.get("id", g.new_id()))
            if nid in g.nodes:
                raise GraphError(f"node id {nid!r} appears twice")
            if nd["type"] not in REGISTRY:
                raise GraphError(f"node {nid!r} has unknown layer type {nd['type']!r}; known "
                                 f"types: {', '.join(sorted(REGISTRY))}")
            params = nd.get("params", {})
            if not isinstance(params, dict):
                raise GraphError(f"node {nid!r}: 'params' must be an object")
            pos = nd.get("position", [0, 0])
            try:
                pos = (float(pos[0]), float(pos[1]))
            except (TypeError, ValueError, IndexError):
                raise GraphError(f"node {nid!r}: 'position' must be two numbers") from None
            if not all(math.isfinite(v) for v in pos):  # NaN would not survive a JSON save
                raise GraphError(f"node {nid!r}: 'position' must be two finite numbers")
            trainable = nd.get("trainable", True)
            if not isinstance(trainable, bool):  # bool("false") is True
                raise GraphError(f"node {nid!r}: 'trainable' must be true or false, "
                                 f"got {trainable!r}")
            g.add_node(nd["type"], str(nd.get("name") or default_name(nd["type"])), params,
                       pos, node_id=nid, trainable=trainable)
        for k, e in enumerate(edges):
            if isinstance(e, dict):  # {"src", "dst", "port", "src_port"}: ids taken as they are
                src_port = e.get("src_port", 0)
                e = [e.get("src"), e.get("dst"), e.get("port", 0)]
                src = str(e[0])
            elif isinstance(e, list) and len(e) in (2, 3):
                src, src_port = parse_port_ref(str(e[0]))  # "split1:1": output 1 of split1
            else:
                raise GraphError(f"edge {k + 1} must be [src, dst] or [src, dst, port]")
            dst = str(e[1])
            port = e[2] if len(e) == 3 else 0
            if src not in g.nodes or dst not in g.nodes:
                raise GraphError(f"edge {k + 1} ({src} -> {dst}) names a node that does not exist")
            for what, p in (("port", port), ("src_port", src_port)):
                if not isinstance(p, int) or isinstance(p, bool) or p < 0:
                    raise GraphError(f"edge {k + 1}: {what} must be a whole number >= 0")
            # structure (cycles, too many inputs, missing output ports) is left to validation,
            # which reports it
            g.edges.append(Edge(src, dst, port, src_port))
        if data.get("input_spec") is not None:
            try:
                g.input_spec = InputSpec.from_json(data["input_spec"])
            except ParamError as exc:
                raise GraphError(str(exc)) from None
        return g

    @classmethod
    def loads(cls, text: str) -> Graph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraphError(f"not valid JSON: {exc}") from None
        return cls.from_json(data)

    def copy(self) -> Graph:
        return Graph.from_json(self.to_json())


def port_error(node: Node, src_port: int, n_out: int) -> str:
    """The message for an edge leaving an output a layer does not have."""
    return (f"{node.type_name} '{node.name}' has {n_out} output{'s' * (n_out != 1)} "
            f"(ports 0 to {n_out - 1}); there is no output port {src_port}")


def _v1_to_v2(data: dict) -> dict:
    """Version 1 had no output ports: every source is a plain node id, taken literally (an id
    such as "a:1" is not a port reference there), so write it as output 0 explicitly."""
    data = dict(data, version=2)
    edges = data.get("edges", [])
    if isinstance(edges, list):
        out = []
        for e in edges:
            if isinstance(e, list) and e and isinstance(e[0], str) and ":" in e[0]:
                e = [port_ref(e[0], 0)] + e[1:]
            out.append(e)
        data["edges"] = out
    return data


# version -> the function turning a file of that version into the next version's form
_MIGRATIONS = {1: _v1_to_v2}


def default_name(type_name: str) -> str:
    """'Conv2d' -> 'conv1' style base names for new nodes (the layer's declared `short_name`)."""
    cls = REGISTRY.get(type_name)
    return cls.default_name() if cls is not None else type_name.lower() + "1"


def sequential(layers: list[tuple[str, dict] | tuple[str, str, dict]], name: str = "network",
               spacing: float = 110.0) -> Graph:
    """Build a chain graph from (type, params) or (type, name, params) tuples: handy for tests,
    examples and templates."""
    g = Graph(name)
    prev = None
    for k, spec in enumerate(layers):
        if len(spec) == 2:
            t, p = spec
            nm = None
        else:
            t, nm, p = spec
        node = g.add_node(t, nm, p, position=(0.0, k * spacing), node_id=nm)
        if prev is not None:
            g.add_edge(prev.id, node.id)
        prev = node
    return g
