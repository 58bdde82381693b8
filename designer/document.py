"""The open network as a Qt document: the only writer of the graph, with validation and undo.

Data flows one way: commands (designer/commands.py) call the mutators here; each mutator changes
the engine Graph, emits a signal naming what changed and re-validates, so `validation` is always
current. Views (canvas, panels) listen to the signals and never change the graph themselves: they
push commands through `push`, which refuses edits while training holds the lock.

Everything else the window shows is document state with a setter and a signal too: the file path
(`set_path`), the network's name (`set_network_name`), the training history (`set_history`), the
weights (`set_weights`), the title made of them (`title_changed`) and the modified mark
(`modified_changed`: unsaved graph edits, or weights / history changed since the last save).
"""

from __future__ import annotations

import copy
import itertools
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from engine.graph import Edge, Graph, Node
from engine.validate import Validation, validate

_SERIALS = itertools.count(1)  # one per Document: the owner part of `revision`


class Document(QObject):
    """One network being edited: graph, its validation, optional weights and training history,
    file path, undo stack.

    Mutators (`add_node`, `remove_node`, `add_edge`, ...) are for commands only; everything else
    edits through `push(command)`. Inside `batch()` validation runs once, at the end.
    """

    node_added = Signal(str)
    node_removed = Signal(str)
    edge_added = Signal(object)
    edge_removed = Signal(object)
    node_changed = Signal(str)  # params, name or trainable flag
    node_moved = Signal(str)
    graph_reset = Signal()  # new / open / import: views rebuild from scratch
    validated = Signal(object)  # Validation, after every change of the graph
    weights_changed = Signal()
    edit_refused = Signal(str)  # why an edit was not made
    clean_changed = Signal(bool)  # the undo stack's clean state (graph edits only)
    locked_changed = Signal(object)  # the lock reason, or None when unlocked
    path_changed = Signal(object)  # the file path, or None
    name_changed = Signal(str)  # the network's name
    history_changed = Signal()  # the training history (set_history, reset)
    title_changed = Signal(str)  # what the window title shows: file name, else network name
    modified_changed = Signal(bool)  # True: unsaved changes (graph, weights or history)
    input_spec_changed = Signal()  # graph.input_spec (how photos become the input)

    def __init__(self, graph: Graph | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.graph: Graph = graph if graph is not None else Graph("untitled")
        self.validation: Validation = validate(self.graph)
        self.weights: dict[str, np.ndarray] | None = None
        self.path: Path | None = None
        self.history: dict | None = None
        self.locked_reason: str | None = None
        # block membership (name -> node ids) a canvas can collapse: from a template or a saved
        # project; None: the canvas detects blocks itself when asked (engine.blocks)
        self.blocks: dict[str, list[str]] | None = None
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self.clean_changed)
        self.undo_stack.cleanChanged.connect(self._emit_modified)
        # weights or history changed since the last save: an undo back to the saved graph does
        # not bring the saved weights back, so this stays set until save / reset
        self._content_modified = False
        self._was_modified = False
        self._batch_depth = 0
        self._dirty_validation = False
        # weights dropped because their shape no longer fits; restored when it fits again (undo)
        self._weight_stash: dict[str, np.ndarray] = {}
        # (document serial, change count): a new value after every change of the graph or the
        # weights, so what is computed from them (an ONNX Runtime session) can be kept by it
        self.revision: tuple[int, int] = (next(_SERIALS), 0)
        for changed in (self.validated, self.weights_changed, self.graph_reset):
            changed.connect(self._next_revision)

    # ---- state -------------------------------------------------------------------------------

    @property
    def title(self) -> str:
        """What the window title shows: the file name, else the graph's name."""
        return self.path.name if self.path is not None else (self.graph.name or "untitled")

    def is_modified(self) -> bool:
        """Unsaved changes: graph edits since the clean state, or new weights / history."""
        return self._content_modified or not self.undo_stack.isClean()

    def set_modified(self, modified: bool) -> None:
        """False: the document is saved as it is now (the undo stack's clean state moves
        here). True: it holds changes no file has (a recovered autosave)."""
        self._content_modified = bool(modified)
        if not modified:
            self.undo_stack.setClean()
        self._emit_modified()

    def set_path(self, path: str | Path | None) -> None:
        """The file the document is saved in (None: not saved yet, or not ours, as ONNX)."""
        path = Path(path) if path is not None else None
        if path == self.path:
            return
        title = self.title
        self.path = path
        self.path_changed.emit(path)
        self._emit_title(title)

    def set_network_name(self, name: str) -> None:
        """The network's name (the title while it has no file)."""
        if name == self.graph.name:
            return
        title = self.title
        self.graph.name = name
        self.name_changed.emit(name)
        self._emit_title(title)

    def set_history(self, history: dict | None) -> None:
        """The training history saved with the project; a new one is an unsaved change."""
        self.history = history
        self._content_modified = True
        self.history_changed.emit()
        self._emit_modified()

    def _emit_title(self, before: str) -> None:
        if self.title != before:
            self.title_changed.emit(self.title)

    def _emit_modified(self, *_) -> None:
        modified = self.is_modified()
        if modified != self._was_modified:
            self._was_modified = modified
            self.modified_changed.emit(modified)

    def _next_revision(self, *_) -> None:
        self.revision = (self.revision[0], self.revision[1] + 1)

    def node(self, node_id: str) -> Node:
        return self.graph.nodes[node_id]

    # ---- editing entry point -----------------------------------------------------------------

    def push(self, command: QUndoCommand) -> bool:
        """Run `command` on the undo stack. Refuses (emits edit_refused, returns False) while
        locked or when the command found a reason at construction (`command.refusal`)."""
        if self.locked_reason is not None:
            self.edit_refused.emit(self.locked_reason)
            return False
        refusal = getattr(command, "refusal", None)
        if refusal:
            self.edit_refused.emit(refusal)
            return False
        if getattr(command, "noop", False):
            return False
        self.undo_stack.push(command)
        return True

    def lock(self, reason: str) -> None:
        """Refuse edits with `reason` (training in progress) until unlock()."""
        self.locked_reason = reason
        self.locked_changed.emit(reason)

    def unlock(self) -> None:
        self.locked_reason = None
        self.locked_changed.emit(None)

    @contextmanager
    def batch(self):
        """Group mutations: validation (and its `validated` signal) runs once at the end."""
        self._batch_depth += 1
        try:
            yield self
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0 and self._dirty_validation:
                self.revalidate()

    def revalidate(self) -> None:
        self._dirty_validation = False
        self.validation = validate(self.graph)
        self._fit_weights()
        self.validated.emit(self.validation)

    def _changed(self) -> None:
        if self._batch_depth:
            self._dirty_validation = True
        else:
            self.revalidate()

    # ---- mutators (commands only) ------------------------------------------------------------

    def add_node(self, type_name: str, position=(0.0, 0.0), params: dict | None = None,
                 name: str | None = None, node_id: str | None = None, trainable: bool = True,
                 index: int | None = None) -> str:
        """Add a node; `index` puts it at that place in the node order (undo of a removal)."""
        node = self.graph.add_node(type_name, name, copy.deepcopy(params or {}), position,
                                   node_id=node_id, trainable=trainable)
        if index is not None and index < len(self.graph.nodes) - 1:
            items = list(self.graph.nodes.items())
            items.insert(index, items.pop())
            self.graph.nodes = dict(items)
        self.node_added.emit(node.id)
        self._changed()
        return node.id

    def remove_node(self, node_id: str) -> tuple[Node, list[Edge]]:
        """Remove a node and its edges (edge_removed is emitted for each, then node_removed)."""
        node = self.graph.nodes[node_id]
        edges = [e for e in self.graph.edges if node_id in (e.src, e.dst)]
        for e in edges:
            self.graph.edges.remove(e)
            self.edge_removed.emit(e)
        self.graph.remove_node(node_id)
        self.node_removed.emit(node_id)
        self._changed()
        return node, edges

    def add_edge(self, src: str, dst: str, port: int | None = None,
                 index: int | None = None, check: bool = True, src_port: int = 0) -> Edge:
        """Connect output `src_port` of src to input `port` of dst (GraphError with the reason
        if not allowed). Undo passes check=False: it restores an earlier state exactly, even a
        cyclic one from a file."""
        if check:
            edge = self.graph.add_edge(src, dst, port, src_port)
        else:
            edge = Edge(src, dst, 0 if port is None else port, src_port)
            self.graph.edges.append(edge)
        if index is not None:
            self.graph.edges.pop()
            self.graph.edges.insert(index, edge)
        self.edge_added.emit(edge)
        self._changed()
        return edge

    def remove_edge(self, edge: Edge) -> None:
        self.graph.remove_edge(edge)
        self.edge_removed.emit(edge)
        self._changed()

    def set_params(self, node_id: str, params: dict) -> None:
        """Merge `params` into the node's parameters."""
        self.graph.nodes[node_id].params.update(copy.deepcopy(params))
        self.node_changed.emit(node_id)
        self._changed()

    def replace_params(self, node_id: str, params: dict) -> None:
        """Set the node's parameters to exactly `params` (undo restores defaults this way)."""
        self.graph.nodes[node_id].params = copy.deepcopy(params)
        self.node_changed.emit(node_id)
        self._changed()

    def set_name(self, node_id: str, name: str) -> None:
        self.graph.nodes[node_id].name = name
        self.node_changed.emit(node_id)
        self._changed()

    def set_trainable(self, node_id: str, flag: bool) -> None:
        self.graph.nodes[node_id].trainable = bool(flag)
        self.node_changed.emit(node_id)
        self._changed()

    def set_input_spec(self, spec) -> None:
        """How photos become the network's input (engine.inputspec.InputSpec), or None for the
        default of the Input's shape. Stored in graph.json; re-validates so that views showing
        prepared data (feature maps, the training panel's image folders) follow it."""
        self.graph.input_spec = spec
        self.input_spec_changed.emit()
        self._changed()

    def move_node(self, node_id: str, position) -> None:
        """Positions do not change shapes: no re-validation."""
        self.graph.nodes[node_id].position = (float(position[0]), float(position[1]))
        self.node_moved.emit(node_id)

    def reset(self, graph: Graph, weights: dict | None = None, path: Path | None = None,
              history: dict | None = None, blocks: dict[str, list[str]] | None = None) -> None:
        """Replace the whole document (new / open / import); clears undo history. `blocks`:
        block name -> node ids (a template's), kept for the canvas to collapse."""
        title, old_path, old_name = self.title, self.path, self.graph.name
        self.undo_stack.clear()
        self.graph = graph
        self.blocks = ({k: [i for i in v if i in graph.nodes] for k, v in blocks.items()}
                       if blocks else None)
        self.path = Path(path) if path is not None else None
        self.history = history
        self._content_modified = False
        self._weight_stash = {}
        self.weights = dict(weights) if weights else None
        self.validation = validate(self.graph)
        self._fit_weights()
        self.graph_reset.emit()
        self.validated.emit(self.validation)
        self.weights_changed.emit()
        self.history_changed.emit()
        self.undo_stack.setClean()
        self.clean_changed.emit(True)
        if self.path != old_path:
            self.path_changed.emit(self.path)
        if self.graph.name != old_name:
            self.name_changed.emit(self.graph.name)
        self._emit_title(title)
        self._emit_modified()

    def exchange_graph(self, graph: Graph, weights: dict | None,
                       blocks: dict[str, list[str]] | None = None):
        """Replace the graph (its input spec and name with it), every weight and the block
        membership at once, keeping the file path and the undo history: an undoable restore of a
        recorded run. Returns (graph, weights, blocks) as they were, stashed weights included,
        for the command to give back on undo. Views rebuild (graph_reset); an unsaved change."""
        old = (self.graph, None if self.weights is None else {**self._weight_stash,
                                                             **self.weights}, self.blocks)
        title, old_name, old_spec = self.title, self.graph.name, self.graph.input_spec
        self.graph = graph
        self.blocks = ({k: [i for i in v if i in graph.nodes] for k, v in blocks.items()}
                       if blocks else None)
        self._weight_stash = {}
        self.weights = dict(weights) if weights else None
        self._content_modified = True
        self.validation = validate(self.graph)
        self._fit_weights(emit=False)
        self.graph_reset.emit()
        self.validated.emit(self.validation)
        self.weights_changed.emit()
        if self.graph.name != old_name:
            self.name_changed.emit(self.graph.name)
        if self.graph.input_spec != old_spec:
            self.input_spec_changed.emit()
        self._emit_title(title)
        self._emit_modified()
        return old

    # ---- weights -----------------------------------------------------------------------------

    def set_weights(self, state: dict | None) -> None:
        """Store trained weights ("node_id.name" -> array), or None to forget them; either is
        an unsaved change (weights are not on the undo stack)."""
        self._weight_stash = {}
        self.weights = dict(state) if state else None
        self._content_modified = True
        self._fit_weights(emit=False)
        self.weights_changed.emit()
        self._emit_modified()

    def exchange_weights(self, state: dict | None) -> dict | None:
        """Replace every weight at once (an undoable load: the command keeps what this returns,
        the weights before, stashed ones included, and gives it back on undo); an unsaved
        change, like set_weights."""
        old = None if self.weights is None else {**self._weight_stash, **self.weights}
        self.set_weights(state)
        return old

    def replace_node_weights(self, node_id: str, arrays: dict[str, np.ndarray]
                             ) -> dict[str, np.ndarray] | None:
        """Set the weights of one layer to `arrays` ("node_id.name" -> array), dropping its
        others (a new classifier head); returns the layer's weights it replaced (stashed ones
        too), for undo. No-op (None) while the document has no weights."""
        if self.weights is None:
            return None
        removed = {}
        for store in (self.weights, self._weight_stash):
            for key in [k for k in store if k.rpartition(".")[0] == node_id]:
                removed[key] = store.pop(key)
        self.weights.update(arrays)
        self.weights_changed.emit()
        return removed

    def node_weights(self, node_id: str) -> dict[str, np.ndarray]:
        if not self.weights:
            return {}
        prefix = node_id + "."
        return {k: v for k, v in self.weights.items() if k.startswith(prefix)}

    def _fit_weights(self, emit: bool = True) -> None:
        """Show the weights that fit the current graph, stash the others.

        Which weights show is a function of the graph and of all weights held (shown and
        stashed) only: a weight shows when its shape is the one its layer needs now, or when
        its layer's shape is unknown (the graph is invalid there, as after an edit a quick fix
        then repairs). So an undo, which restores the graph, restores the weights exactly too,
        whatever order the edits came in."""
        if self.weights is None:
            return
        expected: dict[str, tuple] = {}
        unknown: set[str] = set()
        for nid, res in self.validation.nodes.items():
            if res.layer is None or res.out_shape is None:
                unknown.add(nid)
                continue
            for name, (shape, _) in res.layer.weight_shapes(res.in_shapes).items():
                expected[f"{nid}.{name}"] = tuple(shape)

        def fits(key: str, array: np.ndarray) -> bool:
            return (key.rpartition(".")[0] in unknown
                    or expected.get(key) == tuple(array.shape))

        changed = False
        for key in [k for k, a in self.weights.items() if not fits(k, a)]:
            self._weight_stash[key] = self.weights.pop(key)
            changed = True
        for key in [k for k, a in self._weight_stash.items()
                    if fits(k, a) and k not in self.weights]:
            self.weights[key] = self._weight_stash.pop(key)
            changed = True
        if changed and emit:
            self.weights_changed.emit()
