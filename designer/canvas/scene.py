"""The canvas scene: mirrors the document's graph as items and turns gestures into commands.

It listens to the document's signals (node_added, edge_removed, validated, ...) and updates only
the items whose content changed. Gestures (moving cards, dragging a connection from a port,
dropping a layer) become commands pushed through `doc.push`; refusals come back through
`doc.edit_refused` with the reason.
"""

from __future__ import annotations

import contextlib

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene

from engine.graph import Edge

from ..commands import AddEdgeCommand, MoveNodesCommand
from ..document import Document
from .blocks import BlockItem, GraphIndex, collapsible, summarize, visible_layout
from .items import EdgeItem, Look, NodeItem, PortItem, edge_path
from .layout import NODE_H


class CanvasScene(QGraphicsScene):
    """Items for every node and edge of `doc.graph`, kept in step with the document."""

    status_message = Signal(str)  # hints while connecting ("cannot connect: ...")
    content_changed = Signal()  # items added / removed / moved (the minimap listens)
    collapse_changed = Signal()  # blocks collapsed or expanded

    def __init__(self, doc: Document, dark: bool = False, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.look = Look(dark)
        self.node_items: dict[str, NodeItem] = {}
        self.edge_items: dict[Edge, EdgeItem] = {}
        self.bulk = False
        self._cards: tuple[list[float], list] | None = None
        # collapsed blocks (a view state: the graph stays flat)
        self.collapsed: set[str] = set()
        self.block_items: dict[str, BlockItem] = {}
        self.owner: dict[str, str] = {}  # hidden node id -> the shown block that holds it
        self.override: dict[str, tuple[float, float]] = {}  # view positions while collapsed
        self._detected: dict[str, list[str]] | None = None
        self._blocks: dict[str, list[str]] | None = None
        self._index: GraphIndex | None = None
        self._structure_dirty = False
        self._content: QRectF | None = None
        self.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.BspTreeIndex)
        self._press_positions: dict[str, QPointF] = {}
        self._connect: dict | None = None  # state of a connection being dragged
        self._reroute = QTimer(self)
        self._reroute.setSingleShot(True)
        self._reroute.setInterval(0)
        self._reroute.timeout.connect(self._reroute_long_edges)
        doc.graph_reset.connect(self.rebuild)
        doc.node_added.connect(self._on_node_added)
        doc.node_removed.connect(self._on_node_removed)
        doc.edge_added.connect(self._on_edge_added)
        doc.edge_removed.connect(self._on_edge_removed)
        doc.node_changed.connect(self._on_node_changed)
        doc.node_moved.connect(self._on_node_moved)
        doc.validated.connect(self._on_validated)
        self.rebuild()

    # ---- mirror of the document -------------------------------------------------------------

    def rebuild(self) -> None:
        self._connect = None
        self.clear()
        self.node_items.clear()
        self.edge_items.clear()
        self.block_items.clear()
        self.collapsed.clear()
        self.owner, self.override = {}, {}
        self._detected = self._blocks = self._index = None
        self._cards = None
        self.bulk = True  # edges skip routing round cards until every card is in place
        try:
            for nid in self.doc.graph.nodes:
                self._add_node_item(nid)
            for e in self.doc.graph.edges:
                self._add_edge_item(e)
        finally:
            self.bulk = False
        for e in self.edge_items.values():
            e.update_path()
        # inputs of a merge place their labels by where the other curves run: now routed
        for e in self.edge_items.values():
            if sum(o.b is e.b for o in e.b.edges) > 1:
                e.update_path()
        self.update_scene_rect()
        self.content_changed.emit()

    def _add_node_item(self, nid: str) -> NodeItem:
        item = NodeItem(self.doc, nid, self.look)
        self.node_items[nid] = item
        self.addItem(item)
        self._cards = None
        return item

    def card_index(self) -> tuple[list[float], list]:
        """Visible cards sorted by y: (ys, [(y, x, item)]) for quick band queries (edge
        routing)."""
        if self._cards is None:
            cards = sorted(((it.y(), it.x(), it) for it in self.visible_cards()),
                           key=lambda c: c[0])
            self._cards = ([c[0] for c in cards], cards)
        return self._cards

    def cards_moved(self) -> None:
        self._cards = None
        self._content = None

    def _add_edge_item(self, e: Edge) -> EdgeItem | None:
        src, dst = self.node_items.get(e.src), self.node_items.get(e.dst)
        if src is None or dst is None:
            return None
        self._structure_changed()
        item = EdgeItem(self.doc, e, src, dst, self.look)
        self.edge_items[e] = item
        self.addItem(item)
        if not self.bulk:  # a rebuild routes every edge once, at the end
            item.update_path()
            self._update_siblings(item)
        return item

    @staticmethod
    def _update_siblings(item: EdgeItem) -> None:
        """Edges into the same port spread out; edges from the same output share one label."""
        for other in item.dst.edges:
            if other is not item and other.edge.dst == item.edge.dst:
                other.update_path()
        for other in item.src.edges:
            if other is not item and other.edge.src == item.edge.src:
                other.update_path()

    def _on_node_added(self, nid: str) -> None:
        self._structure_changed()
        self._add_node_item(nid)
        self.content_changed.emit()

    def _on_node_removed(self, nid: str) -> None:
        self._structure_changed()
        item = self.node_items.pop(nid, None)
        self._cards = None
        if item is not None:
            for e in list(item.edges):
                self._on_edge_removed(e.edge)
            self.removeItem(item)
        self.content_changed.emit()

    def _on_edge_added(self, e: Edge) -> None:
        self._add_edge_item(e)
        self.content_changed.emit()

    def _on_edge_removed(self, e: Edge) -> None:
        item = self.edge_items.pop(e, None)
        if item is None:
            return
        self._structure_changed()
        item.detach()
        for end in (item.a, item.b):
            if isinstance(end, BlockItem) and item in end.edges:
                end.edges.remove(item)
        self.removeItem(item)
        self._update_siblings(item)

    def _on_node_changed(self, nid: str) -> None:
        item = self.node_items.get(nid)
        if item is not None:
            item.signature = None  # its parameters changed: re-read it on the next validation

    def _on_node_moved(self, nid: str) -> None:
        item = self.node_items.get(nid)
        if item is None:
            return
        if nid in self.override:  # collapsed view: cards sit where the view's layout put them
            return
        x, y = self.doc.graph.nodes[nid].position
        if item.pos() != QPointF(x, y):
            item.setPos(x, y)
        self._reroute.start()
        self.content_changed.emit()

    def _on_validated(self, validation) -> None:
        """Repaint only what changed: nodes whose shown result differs, and their out-edges;
        collapsed blocks re-read their summary."""
        for nid, item in self.node_items.items():
            if item.refresh():
                for e in item.edges:
                    if e.edge.src == nid:
                        e.refresh()
        if self._structure_dirty and self.collapsed:
            self._apply_collapse(relayout=False)
        elif self.block_items:
            self._refresh_blocks()
        self._structure_dirty = False

    # ---- blocks -----------------------------------------------------------------------------

    def _structure_changed(self) -> None:
        self._structure_dirty = True
        self._blocks = self._index = self._content = None

    def blocks(self) -> dict[str, list[str]]:
        """Blocks that can collapse: the document's (a template's), else detected from names
        and structure (engine.blocks, once per opened graph); members that no longer exist are
        left out, blocks of fewer than two layers too, and layers added between two members
        since are in."""
        if self._blocks is None:
            src = self.doc.blocks
            if src is None:
                if self._detected is None:
                    from engine.blocks import detect_blocks

                    self._detected = detect_blocks(self.doc.graph)
                src = self._detected
            from engine.blocks import with_layers_between

            # a layer inserted inside a block since it was made folds with it
            self._blocks = {name: ids for name, ids in
                            with_layers_between(self.doc.graph, src).items() if len(ids) >= 2}
        return self._blocks

    def blocks_containing(self, node_id: str) -> list[str]:
        """Names of the blocks holding `node_id`, innermost first."""
        found = [(len(ids), name) for name, ids in self.blocks().items() if node_id in ids]
        return [name for _, name in sorted(found)]

    def block_info(self, name: str):
        """BlockInfo (title, shapes in and out, parameters) of block `name`."""
        if self._index is None:
            self._index = GraphIndex(self.doc.graph)
        blocks = self.blocks()
        return summarize(self.doc.graph, self.doc.validation, self._index, name, blocks[name],
                         blocks)

    def collapse(self, names) -> None:
        """Collapse blocks (a name or several) into one card each."""
        names = [names] if isinstance(names, str) else list(names)
        new = {n for n in names if n in self.blocks()} - self.collapsed
        if new:
            self.collapsed |= new
            self._apply_collapse()

    def expand(self, name: str, fully: bool = False) -> None:
        """Expand block `name` (its inner collapsed blocks stay collapsed unless `fully`)."""
        if name not in self.collapsed:
            return
        self.collapsed.discard(name)
        if fully:
            inner = set(self.blocks().get(name, ()))
            self.collapsed = {n for n in self.collapsed
                              if not set(self.blocks().get(n, ())) <= inner}
        self._apply_collapse()

    def expand_later(self, name: str) -> None:
        """Expand from inside the block card's own event handler (the card goes away)."""
        QTimer.singleShot(0, lambda: self.expand(name))

    def collapse_all(self) -> None:
        """Collapse every block smaller than half the network: the net reads as a short
        column of blocks; expanding one shows the blocks inside it, collapsed."""
        names = set(collapsible(self.blocks(), len(self.doc.graph.nodes)))
        if names and names != self.collapsed:
            self.collapsed = names
            self._apply_collapse()

    def expand_all(self) -> None:
        if self.collapsed:
            self.collapsed.clear()
            self._apply_collapse()

    def relayout(self) -> None:
        """Lay the folded view out again (cards moved by hand go back in line)."""
        self._apply_collapse()

    def _owners(self) -> tuple[dict[str, str], list[str]]:
        """(hidden node id -> shown block, shown blocks): the outermost collapsed blocks."""
        blocks = self.blocks()
        self.collapsed &= set(blocks)
        owner: dict[str, str] = {}
        shown = []
        for name in sorted(self.collapsed, key=lambda n: (-len(blocks[n]), n)):
            ids = blocks[name]
            if any(i in owner for i in ids):  # inside an outer collapsed block
                continue
            shown.append(name)
            for i in ids:
                owner[i] = name
        order = {n: k for k, n in enumerate(blocks)}
        shown.sort(key=order.__getitem__)
        return owner, shown

    def _apply_collapse(self, relayout: bool = True) -> None:
        """Show the graph with the collapsed blocks folded: member cards hidden, one card per
        shown block, edges crossing a block's border drawn to its card; `relayout` lays the
        visible graph out again (every card placed as if the members were not there)."""
        owner, shown = self._owners()
        # laid out before anything changes: a failure leaves the view as it was, never half
        # folded
        layout = visible_layout(self.doc.graph, owner, shown) if relayout and shown else {}
        self.owner = owner
        for nid, item in self.node_items.items():
            item.setVisible(nid not in owner)
        for name in [n for n in self.block_items if n not in shown]:
            item = self.block_items.pop(name)
            self.removeItem(item)
        for name in shown:
            if name not in self.block_items:
                item = BlockItem(self, name, self.look)
                self.block_items[name] = item
                self.addItem(item)
        self.bulk = True
        try:
            if relayout:
                self.override = layout
                for nid, item in self.node_items.items():
                    pos = self.override.get(nid, self.doc.graph.nodes[nid].position)
                    item.setPos(*pos)
            for name, item in self.block_items.items():
                if name not in self.override:  # shown without a relayout: at its first member
                    first = self.node_items.get(self.blocks()[name][0])
                    self.override[name] = (first.x(), first.y()) if first else (0.0, 0.0)
                item.setPos(*self.override[name])
        finally:
            self.bulk = False
        self._project_edges()
        self._refresh_blocks()
        self._cards = self._content = None
        for e in self.edge_items.values():
            if e.isVisible():
                e.update_path()
        self.update_scene_rect()
        self.content_changed.emit()
        self.collapse_changed.emit()

    def _project_edges(self) -> None:
        """Route every edge between the cards that show its ends; edges inside a collapsed
        block are hidden, parallel edges into or out of a block drawn once."""
        for b in self.block_items.values():
            b.edges = []
        seen = set()
        owner, blocks = self.owner, self.block_items
        for e, item in self.edge_items.items():
            a = blocks[owner[e.src]] if e.src in owner else item.src
            b = blocks[owner[e.dst]] if e.dst in owner else item.dst
            item.a, item.b = a, b
            key = (id(a), id(b))
            folded = isinstance(a, BlockItem) or isinstance(b, BlockItem)
            visible = a is not b and not (folded and key in seen)
            if folded:
                seen.add(key)
            item.setVisible(visible)
            if visible:
                for end in (a, b):
                    if isinstance(end, BlockItem):
                        end.edges.append(item)

    def _refresh_blocks(self) -> None:
        for name, item in self.block_items.items():
            item.set_info(self.block_info(name), self.doc.validation, self.doc.graph)

    def visible_cards(self) -> list:
        """The layer cards and block cards on show."""
        if not self.owner:
            return list(self.node_items.values()) + list(self.block_items.values())
        return [it for nid, it in self.node_items.items() if nid not in self.owner] + \
            list(self.block_items.values())

    def _reroute_long_edges(self) -> None:
        moved = []
        for e in self.edge_items.values():
            if e.dst.y() - e.src.y() > NODE_H * 1.6 or e.path.elementCount() > 4:
                e.update_path()
                moved.append(e)
        # a rerouted curve into a merge: the straight input beside it places its label anew
        for e in moved:
            for other in e.dst.edges:
                if other is not e and other.b is e.b and other not in moved:
                    other.update_path()
        self.update_scene_rect()

    def update_scene_rect(self) -> None:
        """Scene rect = content plus a generous margin, so one can pan a little beyond it."""
        r = self.content_rect()
        if r.isNull():
            r = QRectF(-400, -300, 800, 600)
        self.setSceneRect(r.adjusted(-600, -400, 600, 400))

    def set_dark(self, dark: bool) -> None:
        self.look.set_dark(dark)
        for item in self.node_items.values():
            item.restyle()
        for item in self.block_items.values():
            item.update()
        for e in self.edge_items.values():
            e.update()
        self.update()

    # ---- queries ----------------------------------------------------------------------------

    def selected_node_ids(self) -> list[str]:
        """Selected nodes in graph order."""
        sel = {i.node_id for i in self.selectedItems() if isinstance(i, NodeItem)}
        return [nid for nid in self.doc.graph.nodes if nid in sel]

    def selected_edges(self) -> list[Edge]:
        return [i.edge for i in self.selectedItems() if isinstance(i, EdgeItem)]

    def select_nodes(self, ids) -> None:
        self.clearSelection()
        for nid in ids:
            item = self.node_items.get(nid)
            if item is not None:
                item.setSelected(True)

    def node_at(self, pos: QPointF) -> NodeItem | None:
        for it in self.items(pos):
            if isinstance(it, NodeItem):
                return it
            if isinstance(it, PortItem):
                return it.node
        return None

    def edge_at(self, pos: QPointF) -> EdgeItem | None:
        if self.node_at(pos) is not None:
            return None
        for it in self.items(QRectF(pos.x() - 6, pos.y() - 6, 12, 12)):
            if isinstance(it, EdgeItem):
                return it
        return None

    def selected_blocks(self) -> list[str]:
        return [i.name for i in self.selectedItems() if isinstance(i, BlockItem)]

    def block_at(self, pos: QPointF) -> BlockItem | None:
        for it in self.items(pos):
            if isinstance(it, BlockItem):
                return it
            if isinstance(it, (NodeItem, PortItem)):
                return None
        return None

    def content_rect(self) -> QRectF:
        """Bounding rectangle of what is on show (hidden members of collapsed blocks and
        the dragged connection are not content)."""
        if self._content is None:
            r = QRectF()
            for it in self.visible_cards():
                r = r.united(it.sceneBoundingRect())
            for e in self.edge_items.values():
                if e.isVisible():
                    r = r.united(e.sceneBoundingRect())
            self._content = r
        return QRectF(self._content)

    # ---- gestures ---------------------------------------------------------------------------

    def mousePressEvent(self, event):
        if event.button() == Qt.MouseButton.LeftButton:
            port = self._port_at(event.scenePos())
            if port is not None and self.doc.locked_reason is None:
                self._start_connect(port, event.scenePos())
                event.accept()
                return
        super().mousePressEvent(event)
        self._press_positions = {i.node_id: i.pos() for i in self.selectedItems()
                                 if isinstance(i, NodeItem)}
        self._press_blocks = {i.name: i.pos() for i in self.selectedItems()
                              if isinstance(i, BlockItem)}

    def mouseMoveEvent(self, event):
        if self._connect is not None:
            self._drag_connect(event.scenePos())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._connect is not None:
            self._finish_connect(event.scenePos())
            event.accept()
            return
        super().mouseReleaseEvent(event)
        moves = {}
        for nid, old in self._press_positions.items():
            item = self.node_items.get(nid)
            if item is not None and item.pos() != old:
                if nid in self.override:  # collapsed view: a move of the view, not the graph
                    self.override[nid] = (item.pos().x(), item.pos().y())
                    continue
                moves[nid] = ((old.x(), old.y()), (item.pos().x(), item.pos().y()))
        for name in getattr(self, "_press_blocks", {}):
            item = self.block_items.get(name)
            if item is not None:
                self.override[name] = (item.pos().x(), item.pos().y())
        self._press_positions, self._press_blocks = {}, {}
        if moves and not self.doc.push(MoveNodesCommand(self.doc, moves)):
            for nid, (old, _) in moves.items():  # refused (locked): put the cards back
                if nid in self.node_items:
                    self.node_items[nid].setPos(*old)

    def _port_at(self, pos: QPointF) -> PortItem | None:
        for it in self.items(QRectF(pos.x() - 3, pos.y() - 3, 6, 6)):
            if isinstance(it, PortItem):
                return it
        return None

    def _start_connect(self, port: PortItem, pos: QPointF) -> None:
        rubber = QGraphicsPathItem()
        pen = QPen(self.look.accent, 2, Qt.PenStyle.DashLine, Qt.PenCapStyle.RoundCap)
        rubber.setPen(pen)
        rubber.setZValue(5)
        self.addItem(rubber)
        self._connect = {"port": port, "rubber": rubber, "target": None}
        self._drag_connect(pos)

    def _drag_connect(self, pos: QPointF) -> None:
        c = self._connect
        port: PortItem = c["port"]
        anchor = port.scene_anchor()
        c["rubber"].setPath(edge_path(pos, anchor) if port.is_input else edge_path(anchor, pos))
        target = self.node_at(pos)
        old = c["target"]
        # dragging from an input, the pointer may move to another output of the same card
        if old is not None and (old is not target or port.is_input):
            self._highlight(old, port, None, c.get("src_port", 0))
        c["target"] = target
        if target is None:
            self.status_message.emit("")
            return
        src, dst, src_port = self._ends(port, target, pos)
        c["src_port"] = src_port
        ok, reason = self.doc.graph.can_connect(src, dst, src_port)
        self._highlight(target, port, "ok" if ok else "bad", src_port)
        g = self.doc.graph
        a = g.nodes[src].name + (f":{src_port}" if src_port else "")
        self.status_message.emit(f"Connect '{a}' → '{g.nodes[dst].name}'" if ok
                                 else f"Cannot connect: {reason}")

    def _ends(self, port: PortItem, target: NodeItem, pos: QPointF) -> tuple[str, str, int]:
        """(src, dst, src_port) of the edge a drag from `port` onto `target` asks for: from
        the output port dragged, or, dragging from an input, from the target's output port
        under the pointer (its first output elsewhere on the card)."""
        if port.is_input:
            under = self._port_at(pos)
            k = under.index if under is not None and under.node is target \
                and not under.is_input else 0
            return target.node_id, port.node.node_id, k
        return port.node.node_id, target.node_id, port.index

    @staticmethod
    def _highlight(target: NodeItem, port: PortItem, state: str | None,
                   src_port: int = 0) -> None:
        if port.is_input:
            tp = target.out_ports[src_port] if src_port < len(target.out_ports) else None
        else:
            tp = target.in_port
        if tp is not None:
            tp.set_highlight(state)

    def _finish_connect(self, pos: QPointF) -> None:
        c, self._connect = self._connect, None
        self.removeItem(c["rubber"])
        self.status_message.emit("")
        target = c["target"]
        if target is None:
            return
        self._highlight(target, c["port"], None, c.get("src_port", 0))
        src, dst, src_port = self._ends(c["port"], target, pos)
        # a refusal reports its reason
        self.doc.push(AddEdgeCommand(self.doc, src, dst, src_port))

    def cancel_connect(self) -> None:
        if self._connect is not None:
            c, self._connect = self._connect, None
            self.removeItem(c["rubber"])

    # ---- rendering for export ---------------------------------------------------------------

    def image_geometry(self, scale: float = 2.0, margin: float = 40.0):
        """(source rect, width, height, scale) of the whole graph's image at `scale` ×."""
        src = self.content_rect().adjusted(-margin, -margin, margin, margin)
        w, h = max(1, int(src.width() * scale)), max(1, int(src.height() * scale))
        # bounded for huge graphs: at most 32000 px a side and 60 M pixels (240 MB); beyond
        # that the scale drops (the SVG export stays exact at any size)
        k = min(1.0, 32000 / max(w, h), (60e6 / (w * h)) ** 0.5)
        if k < 1.0:
            w, h, scale = max(1, int(w * k)), max(1, int(h * k)), scale * k
        return src, w, h, scale

    def render_image(self, scale: float = 2.0, margin: float = 40.0) -> QImage:
        """The whole graph as an image at `scale` × in one pass (designer/canvas/png_export
        renders the same image in strips without blocking the window)."""
        src, w, h, scale = self.image_geometry(scale, margin)
        img = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(self.look.canvas)
        painter = QPainter(img)
        painter.setRenderHints(QPainter.RenderHint.Antialiasing
                               | QPainter.RenderHint.TextAntialiasing)
        self.render_to(painter, QRectF(0, 0, w, h), src)
        painter.end()
        return img

    def prepare_export(self):
        """Switch off selection highlights and item caching (every item at full detail);
        returns the function that restores both."""
        selected = self.selectedItems()
        for it in selected:
            it.setSelected(False)
        cache = {}
        for item in list(self.node_items.values()) + list(self.block_items.values()):
            cache[item] = item.cacheMode()
            item.setCacheMode(NodeItem.CacheMode.NoCache)

        def restore() -> None:  # an item deleted meanwhile is skipped
            for item, mode in cache.items():
                with contextlib.suppress(RuntimeError):
                    item.setCacheMode(mode)
            for it in selected:
                with contextlib.suppress(RuntimeError):
                    it.setSelected(True)
        return restore

    def render_to(self, painter: QPainter, target: QRectF, source: QRectF) -> None:
        """Render `source` without selection highlights and with every item at full detail."""
        restore = self.prepare_export()
        try:
            self.render(painter, target, source, Qt.AspectRatioMode.KeepAspectRatio)
        finally:
            restore()

