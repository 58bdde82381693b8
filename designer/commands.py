"""Undoable edits: one QUndoCommand per user intent. Commands call the Document only.

A command that cannot be applied says why at construction (`self.refusal`); `Document.push`
then emits `edit_refused` and leaves the stack and the graph untouched. Undo restores the graph
exactly (node and edge order included), so the JSON after undo equals the JSON before.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from PySide6.QtGui import QUndoCommand

from engine.errors import EngineError, GraphError, ParamError
from engine.graph import FORMAT_VERSION, Edge, Graph, Node, port_error
from engine.layers import REGISTRY
from engine.messages import Fix, Message

from .document import Document

FRAGMENT_FORMAT = "cnn-designer-fragment"
_MISSING = object()


class _Command(QUndoCommand):
    refusal: str | None = None
    noop: bool = False

    def __init__(self, doc: Document, text: str = ""):
        super().__init__(text)
        self.doc = doc


# ---- nodes ------------------------------------------------------------------------------------


class AddNodeCommand(_Command):
    """Add one layer of `type_name` at `position` (scene coordinates of its top-left)."""

    def __init__(self, doc: Document, type_name: str, position, params: dict | None = None,
                 name: str | None = None):
        super().__init__(doc)
        self.type_name, self.position = type_name, (float(position[0]), float(position[1]))
        self.params = dict(params or {})
        self.name = name
        self.node_id: str | None = None
        if type_name not in REGISTRY:
            self.refusal = f"unknown layer type {type_name!r}"
            return
        try:
            self.params = _normalized(type_name, self.params)
        except ParamError as exc:
            self.refusal = str(exc)
            return
        self.setText(f"Add {REGISTRY[type_name].label}")

    def redo(self):
        self.node_id = self.doc.add_node(self.type_name, self.position, self.params, self.name,
                                         node_id=self.node_id)
        self.name = self.doc.graph.nodes[self.node_id].name
        self.setText(f"Add {self.type_name} '{self.name}'")

    def undo(self):
        self.doc.remove_node(self.node_id)


class RemoveNodesCommand(_Command):
    """Delete nodes with their edges as one step; undo puts everything back in place."""

    def __init__(self, doc: Document, node_ids):
        super().__init__(doc)
        ids = [i for i in dict.fromkeys(node_ids) if i in doc.graph.nodes]
        if not ids:
            self.noop = True
            return
        order = list(doc.graph.nodes)
        self.nodes: list[tuple[int, Node]] = sorted(
            (order.index(i), copy.deepcopy(doc.graph.nodes[i])) for i in ids)
        idset = set(ids)
        self.edges: list[tuple[int, Edge]] = [
            (k, e) for k, e in enumerate(doc.graph.edges) if e.src in idset or e.dst in idset]
        self.ids = ids
        names = [n.name for _, n in self.nodes]
        self.setText(f"Delete '{names[0]}'" if len(names) == 1 else f"Delete {len(names)} layers")

    def redo(self):
        with self.doc.batch():
            for nid in self.ids:
                self.doc.remove_node(nid)

    def undo(self):
        with self.doc.batch():
            for index, n in self.nodes:
                self.doc.add_node(n.type_name, n.position, n.params, n.name, node_id=n.id,
                                  trainable=n.trainable, index=index)
            for index, e in self.edges:
                # the exact earlier state, unchecked: it may hold an edge the graph's checks
                # refuse (a cycle or an output port missing, from a file), as validation reports
                self.doc.add_edge(e.src, e.dst, e.port, index=index, check=False,
                                  src_port=e.src_port)


class SetParamCommand(_Command):
    """Set one parameter; consecutive edits of the same parameter merge (spin-box bursts).

    The value is normalized by the layer's Param declaration first; an impossible value (a
    negative kernel, text for a number) is refused with the declaration's message.
    """

    ID = 1001

    def __init__(self, doc: Document, node_id: str, name: str, value: Any):
        super().__init__(doc)
        self.node_id, self.name = node_id, name
        node = doc.graph.nodes.get(node_id)
        if node is None:
            self.refusal = f"no layer with id {node_id!r}"
            return
        cls = REGISTRY[node.type_name]
        decl = next((p for p in cls.params if p.name == name), None)
        if decl is None:
            self.refusal = f"{node.type_name} '{node.name}' has no parameter '{name}'"
            return
        try:
            self.value = decl.normalize(value, f"{node.type_name} '{node.name}'")
        except ParamError as exc:
            self.refusal = str(exc)
            return
        self.old_params = copy.deepcopy(node.params)
        current = node.params.get(name, _MISSING)
        if current is not _MISSING and _same(current, self.value):
            self.noop = True
        self.setText(f"Set {node.name}.{name} = {_short(self.value)}")

    def id(self):
        return self.ID

    def mergeWith(self, other):
        if not isinstance(other, SetParamCommand) or (other.node_id, other.name) != (
                self.node_id, self.name):
            return False
        self.value = other.value
        self.setText(other.text())
        if _same(self.old_params.get(self.name, _MISSING), self.value):
            self.setObsolete(True)
        return True

    def redo(self):
        self.doc.set_params(self.node_id, {self.name: self.value})

    def undo(self):
        self.doc.replace_params(self.node_id, self.old_params)


class RenameNodeCommand(_Command):
    def __init__(self, doc: Document, node_id: str, name: str):
        super().__init__(doc)
        self.node_id = node_id
        node = doc.graph.nodes.get(node_id)
        name = str(name).strip()
        if node is None:
            self.refusal = f"no layer with id {node_id!r}"
            return
        if not name:
            self.refusal = f"a layer needs a name; '{node.name}' keeps its name"
            return
        if name == node.name:
            self.noop = True
            return
        if any(n.name == name for n in doc.graph.nodes.values()):
            self.refusal = f"a layer named '{name}' already exists; names must be unique"
            return
        self.old, self.new = node.name, name
        self.setText(f"Rename '{self.old}' to '{self.new}'")

    def redo(self):
        self.doc.set_name(self.node_id, self.new)

    def undo(self):
        self.doc.set_name(self.node_id, self.old)


class SetTrainableCommand(_Command):
    """Freeze (flag False) or unfreeze layers."""

    def __init__(self, doc: Document, node_ids, flag: bool):
        super().__init__(doc)
        self.flag = bool(flag)
        self.old = {i: doc.graph.nodes[i].trainable for i in node_ids if i in doc.graph.nodes}
        if all(v == self.flag for v in self.old.values()):
            self.noop = True
            return
        what = "Unfreeze" if self.flag else "Freeze"
        self.setText(f"{what} {len(self.old)} layer{'s' * (len(self.old) != 1)}")

    def redo(self):
        with self.doc.batch():
            for i in self.old:
                self.doc.set_trainable(i, self.flag)

    def undo(self):
        with self.doc.batch():
            for i, v in self.old.items():
                self.doc.set_trainable(i, v)


class MoveNodesCommand(_Command):
    """Move nodes: {id: (old_pos, new_pos)}, taken on mouse release or by auto layout."""

    def __init__(self, doc: Document, moves: dict, text: str | None = None):
        super().__init__(doc)
        self.moves = {i: (tuple(map(float, o)), tuple(map(float, n)))
                      for i, (o, n) in moves.items()
                      if i in doc.graph.nodes and tuple(o) != tuple(n)}
        if not self.moves:
            self.noop = True
            return
        n = len(self.moves)
        self.setText(text or (f"Move '{doc.graph.nodes[next(iter(self.moves))].name}'" if n == 1
                              else f"Move {n} layers"))

    def redo(self):
        for i, (_, new) in self.moves.items():
            self.doc.move_node(i, new)

    def undo(self):
        for i, (old, _) in self.moves.items():
            self.doc.move_node(i, old)


class FreezeUpToCommand(SetTrainableCommand):
    """"Freeze up to here": `node_id` and every layer feeding it (directly or not) become not
    trainable, as one step (transfer learning: keep a pretrained backbone's weights)."""

    def __init__(self, doc: Document, node_id: str):
        if node_id not in doc.graph.nodes:
            _Command.__init__(self, doc)
            self.refusal = f"no layer with id {node_id!r}"
            return
        upstream = doc.graph.ancestors(node_id) | {node_id}
        ids = [i for i in doc.graph.nodes if i in upstream]
        super().__init__(doc, ids, False)
        self.node_ids = ids
        if not self.noop:
            n = len(ids)
            self.setText(f"Freeze up to '{doc.graph.nodes[node_id].name}' ({n} "
                         f"layer{'s' * (n != 1)})")


class UnfreezeAllCommand(SetTrainableCommand):
    """Make every layer trainable again."""

    def __init__(self, doc: Document):
        super().__init__(doc, [i for i, n in doc.graph.nodes.items() if not n.trainable], True)
        if not self.noop:
            self.setText("Unfreeze all layers")


class ReplaceHeadCommand(_Command):
    """"Replace head for N classes": the classifier (the last Linear, or a SqueezeNet-style
    final convolution) gets `n_classes` outputs and becomes trainable; its old weights are
    dropped and, when the document holds weights, fresh ones are initialised (everything
    else keeps its weights). engine.transfer.finetune.replace_any_head decides which layer is the head
    and checks that the result validates; this command applies its result, undoably."""

    def __init__(self, doc: Document, n_classes: int, seed: int = 0):
        super().__init__(doc)
        import numpy as np

        from engine.transfer.finetune import replace_any_head

        try:
            n_classes = int(n_classes)
        except (TypeError, ValueError):
            self.refusal = f"the number of classes must be a whole number, got {n_classes!r}"
            return
        if n_classes < 1:
            self.refusal = f"the new head needs at least 1 class, got {n_classes}"
            return
        old_w = doc.weights or {}
        try:
            g, w = replace_any_head(doc.graph, old_w, n_classes, np.random.default_rng(seed))
        except (EngineError, ValueError) as exc:
            self.refusal = f"cannot replace the head: {exc}"
            return
        changed = [nid for nid, n in g.nodes.items()
                   if n.params != doc.graph.nodes[nid].params
                   or n.trainable != doc.graph.nodes[nid].trainable]
        if not changed:
            self.refusal = f"the head already has {n_classes} outputs and is trainable"
            return
        head = changed[0]
        old, new = doc.graph.nodes[head], g.nodes[head]
        self.head = head
        self.n_classes = n_classes
        self.old_params, self.new_params = copy.deepcopy(old.params), copy.deepcopy(new.params)
        self.old_trainable = old.trainable
        self.old_weights = {k: a for k, a in old_w.items() if k.rpartition(".")[0] == head}
        self.new_weights = {k: a for k, a in w.items() if k.rpartition(".")[0] == head}
        self.setText(f"Replace head '{old.name}' for {n_classes} classes")

    # each step keeps the head weights it takes away, so undo / redo bring back the weights
    # that were there (a head trained since the replacement survives undo + redo)
    def redo(self):
        with self.doc.batch():
            self.doc.replace_params(self.head, self.new_params)
            self.doc.set_trainable(self.head, True)
            removed = self.doc.replace_node_weights(self.head, self.new_weights)
            if removed is not None:
                self.old_weights = removed

    def undo(self):
        with self.doc.batch():
            self.doc.replace_params(self.head, self.old_params)
            self.doc.set_trainable(self.head, self.old_trainable)
            removed = self.doc.replace_node_weights(self.head, self.old_weights)
            if removed is not None:
                self.new_weights = removed


class LoadWeightsCommand(_Command):
    """File ▸ Load Weights: the weights read from a file replace the design's, as one step.
    `weights` ("node_id.name" -> array) may cover only part of the design (a non-strict load):
    the other layers keep the weights they had. Undo brings back exactly the weights before."""

    def __init__(self, doc: Document, weights: dict, source: str):
        super().__init__(doc, f"Load weights from {source}")
        if not weights:
            self.refusal = f"{source} holds no weights that fit the design"
            return
        self.new = {**(doc.weights or {}), **weights}
        self.old: dict | None = None

    def redo(self):
        self.old = self.doc.exchange_weights(self.new)

    def undo(self):
        self.new = self.doc.exchange_weights(self.old)


class SetInputSpecCommand(_Command):
    """The input spec editor: how photos become the input (resize / crop, channels, value range,
    mean / std, interpolation), or None for the default of the Input's shape, as one step."""

    def __init__(self, doc: Document, spec):
        super().__init__(doc, "Edit input spec" if spec is not None else "Reset input spec")
        self.old, self.new = doc.graph.input_spec, spec
        self.noop = self.old == self.new

    def redo(self):
        self.doc.set_input_spec(self.new)

    def undo(self):
        self.doc.set_input_spec(self.old)


class RestoreRunCommand(_Command):
    """"Open this run": a recorded run's (or sweep trial's) architecture, input spec and best
    weights replace the document's, as one step on its undo stack; the file path stays, so a
    save writes the restored design over the project. Undo gives back the graph, weights
    (stashed ones included) and block membership as they were: the same objects, bit-exact."""

    def __init__(self, doc: Document, graph: Graph, weights: dict | None, title: str):
        super().__init__(doc, f"Restore {title}")
        self.new = (graph, dict(weights) if weights else None, None)
        self.old = None

    def redo(self):
        self.old = self.doc.exchange_graph(*self.new)

    def undo(self):
        self.new = self.doc.exchange_graph(*self.old)


# ---- edges ------------------------------------------------------------------------------------


class AddEdgeCommand(_Command):
    """Connect output `src_port` of `src` to the input of `dst`; refused with the graph's
    reason."""

    def __init__(self, doc: Document, src: str, dst: str, src_port: int = 0):
        super().__init__(doc)
        self.src, self.dst, self.src_port = src, dst, src_port
        ok, reason = doc.graph.can_connect(src, dst, src_port)
        if not ok:
            self.refusal = f"cannot connect: {reason}"
            return
        self.edge: Edge | None = None
        a = doc.graph.nodes[src].name + (f":{src_port}" if src_port else "")
        self.setText(f"Connect '{a}' → '{doc.graph.nodes[dst].name}'")

    def redo(self):
        port = self.edge.port if self.edge is not None else None
        self.edge = self.doc.add_edge(self.src, self.dst, port, src_port=self.src_port)

    def undo(self):
        self.doc.remove_edge(self.edge)


class RemoveEdgeCommand(_Command):
    def __init__(self, doc: Document, edge: Edge):
        super().__init__(doc)
        self.edge = edge
        if edge not in doc.graph.edges:
            self.noop = True
            return
        self.index = doc.graph.edges.index(edge)
        g = doc.graph
        self.setText(f"Disconnect '{g.nodes[edge.src].name}' → '{g.nodes[edge.dst].name}'")

    def redo(self):
        self.doc.remove_edge(self.edge)

    def undo(self):
        self.doc.add_edge(self.edge.src, self.edge.dst, self.edge.port, index=self.index,
                          check=False, src_port=self.edge.src_port)


# ---- compound edits ---------------------------------------------------------------------------


class _SpliceMixin:
    """Insert a new node on edge src -> dst: src -> new -> dst (dst keeps its port)."""

    def _prepare_splice(self, doc: Document, edge: Edge, type_name: str, params: dict | None,
                        position):
        self.edge = edge
        self.type_name = type_name
        self.new_id: str | None = None
        self.index = doc.graph.edges.index(edge)
        if type_name not in REGISTRY:
            self.refusal = f"unknown layer type {type_name!r}"
            return
        if REGISTRY[type_name].max_inputs == 0:
            self.refusal = f"{type_name} takes no input and cannot be inserted on a connection"
            return
        n_out = doc.graph.output_count(edge.src)
        if n_out is not None and not 0 <= edge.src_port < n_out:  # a bad edge from a file
            self.refusal = (f"cannot insert a layer on that connection: "
                            f"{port_error(doc.graph.nodes[edge.src], edge.src_port, n_out)}")
            return
        if self._new_layer_params(type_name, params):
            self.position, self.room = self._make_room(doc, edge, position)

    def _new_layer_params(self, type_name: str, params: dict | None) -> bool:
        """The new layer's full params in `self.params`; False (with the refusal) if bad."""
        try:
            self.params = _normalized(type_name, dict(params or {}))
        except ParamError as exc:
            self.refusal = str(exc)
            return False
        return True

    @staticmethod
    def _make_room(doc: Document, edge: Edge, position):
        """Where the new card goes, and the cards that move down to make room for it.

        With a row of free space between the two ends the card goes there (x from the drop);
        else it takes the place of `dst`, which moves down one row with everything below it
        that it feeds: {id: (old, new)} for undo."""
        from .canvas.layout import NODE_H, V_GAP  # here: the canvas package imports commands

        g = doc.graph
        a, b = g.nodes[edge.src].position, g.nodes[edge.dst].position
        pitch = NODE_H + V_GAP
        x = float(position[0]) if position is not None else b[0]
        if b[1] - a[1] >= 2 * pitch:
            y = a[1] + pitch if position is None else float(position[1])
            y = min(max(y, a[1] + pitch), b[1] - pitch)
            return (x, y), {}
        if b[1] <= a[1]:  # drawn upwards or sideways: no room to make, keep the drop point
            pos = position if position is not None else ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
            return (float(pos[0]), float(pos[1])), {}
        moving = {edge.dst} | g.descendants(edge.dst)
        room = {}
        for nid in moving:
            px, py = g.nodes[nid].position
            if py >= b[1] - 1:
                room[nid] = ((px, py), (px, py + pitch))
        return (b[0], b[1]), room

    def _splice(self, doc: Document):
        with doc.batch():
            for nid, (_, new) in self.room.items():
                doc.move_node(nid, new)
            doc.remove_edge(self.edge)
            self.new_id = doc.add_node(self.type_name, self.position, self.params,
                                       node_id=self.new_id)
            # the new layer reads the output the edge left from and feeds the same input
            doc.add_edge(self.edge.src, self.new_id, 0, src_port=self.edge.src_port)
            doc.add_edge(self.new_id, self.edge.dst, self.edge.port)

    def _unsplice(self, doc: Document):
        with doc.batch():
            doc.remove_node(self.new_id)
            doc.add_edge(self.edge.src, self.edge.dst, self.edge.port, index=self.index,
                         check=False, src_port=self.edge.src_port)
            for nid, (old, _) in self.room.items():
                doc.move_node(nid, old)


class InsertNodeOnEdgeCommand(_SpliceMixin, _Command):
    """Drop a new layer onto a connection: it is spliced in between the two ends."""

    def __init__(self, doc: Document, edge: Edge, type_name: str, position=None,
                 params: dict | None = None):
        super().__init__(doc)
        if edge not in doc.graph.edges:
            self.refusal = "that connection no longer exists"
            return
        self._prepare_splice(doc, edge, type_name, params, position)
        if not self.refusal:
            self.setText(f"Insert {type_name} on '{doc.graph.nodes[edge.src].name}' → "
                         f"'{doc.graph.nodes[edge.dst].name}'")

    def redo(self):
        self._splice(self.doc)

    def undo(self):
        self._unsplice(self.doc)


class ApplyFixCommand(_SpliceMixin, _Command):
    """Apply one of a validation message's quick fixes (`fix`, by default its preferred one):
    set_params, remove_edge, add_edge, insert_before on the input edge or insert_after."""

    def __init__(self, doc: Document, message: Message, fix: Fix | None = None):
        super().__init__(doc)
        fix = fix or message.fix
        if fix is None:
            self.refusal = "this problem has no automatic fix"
            return
        self.action = fix.action
        self.node_id = fix.node_id or message.node_id
        node = doc.graph.nodes.get(self.node_id) if self.node_id else None
        if node is None:
            self.refusal = "the layer this fix is about no longer exists"
            return
        if fix.action == "set_params":
            self.old_params = copy.deepcopy(node.params)
            self.new_params = {**node.params, **copy.deepcopy(fix.params)}
        elif fix.action == "remove_edge":
            src, dst = fix.params.get("src"), fix.params.get("dst")
            self.removed = [e for e in doc.graph.edges if e.src == src and e.dst == dst]
            if not self.removed:
                self.refusal = "that connection no longer exists"
                return
        elif fix.action == "add_edge":
            src, dst = fix.params.get("src"), fix.params.get("dst")
            ok, reason = doc.graph.can_connect(src, dst, 0)
            if not ok:
                self.refusal = f"cannot connect: {reason}"
                return
            self.src, self.dst, self.added = src, dst, None
        elif fix.action == "insert_before":
            edges = sorted((e for e in doc.graph.edges if e.dst == self.node_id),
                           key=lambda e: e.port)
            if not edges:
                self.refusal = f"'{node.name}' has no input connection to insert a layer on"
                return
            self._prepare_splice(doc, edges[0], fix.layer_type, fix.params, None)
            if self.refusal:
                return
        elif fix.action == "insert_after":
            edges = [e for e in doc.graph.edges if e.src == self.node_id and e.src_port == 0]
            if edges:  # it feeds a layer: splice the new one in on that connection
                self.action = "insert_before"
                self._prepare_splice(doc, edges[0], fix.layer_type, fix.params, None)
            else:  # the network's end: the new layer goes below and becomes the output
                self._prepare_append(doc, node, fix.layer_type, fix.params)
            if self.refusal:
                return
        else:
            self.refusal = f"unknown fix action {fix.action!r}"
            return
        self.setText(f"Fix: {fix.label}")

    def redo(self):
        if self.action == "set_params":
            self.doc.replace_params(self.node_id, self.new_params)
        elif self.action == "remove_edge":
            for e in self.removed:
                self.doc.remove_edge(e)
        elif self.action == "add_edge":
            port = self.added.port if self.added is not None else None
            self.added = self.doc.add_edge(self.src, self.dst, port)
        elif self.action == "insert_after":
            with self.doc.batch():
                self.new_id = self.doc.add_node(self.type_name, self.position, self.params,
                                                node_id=self.new_id)
                self.doc.add_edge(self.node_id, self.new_id, 0)
        else:
            self._splice(self.doc)

    def undo(self):
        if self.action == "set_params":
            self.doc.replace_params(self.node_id, self.old_params)
        elif self.action == "remove_edge":
            for e in self.removed:
                self.doc.add_edge(e.src, e.dst, e.port, check=False, src_port=e.src_port)
        elif self.action == "add_edge":
            self.doc.remove_edge(self.added)
        elif self.action == "insert_after":
            self.doc.remove_node(self.new_id)
        else:
            self._unsplice(self.doc)

    def _prepare_append(self, doc: Document, node, type_name: str, params: dict) -> None:
        """A new layer one row below `node`, reading its first output (insert_after at the end)."""
        from .canvas.layout import NODE_H, V_GAP  # here: the canvas package imports commands

        if type_name not in REGISTRY:
            self.refusal = f"unknown layer type {type_name!r}"
        elif self._new_layer_params(type_name, params):
            self.type_name, self.new_id = type_name, None
            self.position = (node.position[0], node.position[1] + NODE_H + V_GAP)


class PasteCommand(_Command):
    """Paste a fragment (JSON from designer.clipboard): new ids and names, shifted by `offset`.

    Garbage (not JSON, unknown layer types, bad params, edges to missing nodes) is refused with
    the reason and changes nothing. After redo, `node_ids` lists the pasted nodes.
    """

    def __init__(self, doc: Document, fragment_json: str | bytes | dict, offset=(40.0, 40.0)):
        super().__init__(doc)
        self.node_ids: list[str] = []
        try:
            self.fragment = parse_fragment(fragment_json)
        except (EngineError, ValueError) as exc:
            self.refusal = f"cannot paste: {exc}"
            return
        if not self.fragment.nodes:
            self.refusal = "cannot paste: the clipboard holds no layers"
            return
        self.offset = (float(offset[0]), float(offset[1]))
        n = len(self.fragment.nodes)
        self.setText(f"Paste {n} layer{'s' * (n != 1)}")

    def redo(self):
        g = self.doc.graph
        first = not self.node_ids
        mapping: dict[str, str] = {}
        with self.doc.batch():
            for k, node in enumerate(self.fragment.nodes.values()):
                if first:
                    name = g.unique_name(node.name)
                    nid = g.new_id()
                else:
                    name, nid = self.names[k], self.node_ids[k]
                pos = (node.position[0] + self.offset[0], node.position[1] + self.offset[1])
                mapping[node.id] = self.doc.add_node(node.type_name, pos, node.params, name,
                                                     node_id=nid, trainable=node.trainable)
            for e in self.fragment.edges:
                self.doc.add_edge(mapping[e.src], mapping[e.dst], e.port, src_port=e.src_port)
        if first:
            self.node_ids = [mapping[i] for i in self.fragment.nodes]
            self.names = [g.nodes[i].name for i in self.node_ids]

    def undo(self):
        with self.doc.batch():
            for nid in reversed(self.node_ids):
                self.doc.remove_node(nid)


# ---- helpers ----------------------------------------------------------------------------------


def make_fragment(graph: Graph, node_ids) -> str:
    """JSON text of the given nodes and the edges among them (what copy puts on the clipboard)."""
    ids = [i for i in graph.nodes if i in set(node_ids)]
    idset = set(ids)
    # fragment version 2: edges in the graph's version 2 form ("id:k" for output k)
    data = {"format": FRAGMENT_FORMAT, "version": FORMAT_VERSION,
            "nodes": [graph.nodes[i].to_json() for i in ids],
            "edges": [e.to_json() for e in graph.edges if e.src in idset and e.dst in idset]}
    return json.dumps(data, indent=1)


def parse_fragment(data: str | bytes | dict) -> Graph:
    """A fragment as a small Graph; GraphError / ParamError / ValueError say what is wrong."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise GraphError("the clipboard does not hold text") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, RecursionError):
            raise GraphError("the clipboard does not hold CNN Designer layers "
                             "(not JSON)") from None
    if not isinstance(data, dict) or data.get("format") not in (FRAGMENT_FORMAT,
                                                                 "cnn-designer-graph"):
        raise GraphError("the clipboard does not hold CNN Designer layers")
    # fragment versions follow the graph's (1: no output ports); from_json migrates old ones
    version = data.get("version", 1)
    graph = Graph.from_json({"format": "cnn-designer-graph", "version": version,
                             "nodes": data.get("nodes"), "edges": data.get("edges", [])})
    for node in graph.nodes.values():
        node.params = _normalized(node.type_name, node.params, node.name)
    # re-add the edges through the graph's own checks: no cycles, no overfull inputs
    edges, graph.edges = graph.edges, []
    for e in edges:
        graph.add_edge(e.src, e.dst, e.port, e.src_port)
    return graph


def _normalized(type_name: str, params: dict, name: str = "") -> dict:
    """Check parameters against the declaration (ParamError if impossible); keep given keys."""
    cls = REGISTRY[type_name]
    decl = {p.name: p for p in cls.params}
    where = f"{type_name} '{name}'" if name else type_name
    out = {}
    for k, v in params.items():
        if k not in decl:
            raise ParamError(f"{where} has no parameter '{k}'", k)
        out[k] = decl[k].normalize(v, where)
    return out


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                    default=str)


def _short(value) -> str:
    if isinstance(value, list):
        return "×".join(str(v) for v in value) if len(value) == 2 else str(value)
    return str(value)
