"""The canvas scene: mirrors the document's graph as items and turns gestures into commands.

It listens to the document's signals (node_added, edge_removed, validated, ...) and updates only
the items whose content changed. Gestures (moving cards, dragging a connection from a port,
dropping a layer) become commands pushed through `doc.push`; refusals come back through
`doc.edit_refused` with the reason.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene

from engine.graph import Edge

from ..commands import AddEdgeCommand, MoveNodesCommand
from ..document import Document
from .items import EdgeItem, Look, NodeItem, PortItem, edge_path
from .layout import NODE_H


class CanvasScene(QGraphicsScene):
    """Items for every node and edge of `doc.graph`, kept in step with the document."""

    status_message = Signal(str)  # hints while connecting ("cannot connect: ...")
    content_changed = Signal()  # items added / removed / moved (the minimap listens)

    def __init__(self, doc: Document, dark: bool = False, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.look = Look(dark)
        self.node_items: dict[str, NodeItem] = {}
        self.edge_items: dict[Edge, EdgeItem] = {}
        self.bulk = False
        self._cards: tuple[list[float], list] | None = None
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
        self._cards = None
        self.bulk = True  # edges skip routing round cards until every card is in place
        try:
            for nid in self.doc.graph.nodes:
                self._add_node_item(nid)
            for e in self.doc.graph.edges:
                self._add_edge_item(e)
        finally:
            self.bulk = False
        self._reroute_long_edges()
        self.content_changed.emit()

    def _add_node_item(self, nid: str) -> NodeItem:
        item = NodeItem(self.doc, nid, self.look)
        self.node_items[nid] = item
        self.addItem(item)
        self._cards = None
        return item

    def card_index(self) -> tuple[list[float], list]:
        """Cards sorted by y: (ys, [(y, x, item)]) for quick band queries (edge routing)."""
        if self._cards is None:
            cards = sorted(((it.y(), it.x(), it) for it in self.node_items.values()),
                           key=lambda c: c[0])
            self._cards = ([c[0] for c in cards], cards)
        return self._cards

    def cards_moved(self) -> None:
        self._cards = None

    def _add_edge_item(self, e: Edge) -> EdgeItem | None:
        src, dst = self.node_items.get(e.src), self.node_items.get(e.dst)
        if src is None or dst is None:
            return None
        item = EdgeItem(self.doc, e, src, dst, self.look)
        self.edge_items[e] = item
        self.addItem(item)
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
        self._add_node_item(nid)
        self.content_changed.emit()

    def _on_node_removed(self, nid: str) -> None:
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
        item.detach()
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
        x, y = self.doc.graph.nodes[nid].position
        if item.pos() != QPointF(x, y):
            item.setPos(x, y)
        self._reroute.start()
        self.content_changed.emit()

    def _on_validated(self, validation) -> None:
        """Repaint only what changed: nodes whose shown result differs, and their out-edges."""
        for nid, item in self.node_items.items():
            if item.refresh():
                for e in item.edges:
                    if e.edge.src == nid:
                        e.refresh()

    def _reroute_long_edges(self) -> None:
        for e in self.edge_items.values():
            if e.dst.y() - e.src.y() > NODE_H * 1.6 or e.path.elementCount() > 4:
                e.update_path()
        self.update_scene_rect()

    def update_scene_rect(self) -> None:
        """Scene rect = content plus a generous margin, so one can pan a little beyond it."""
        r = self.itemsBoundingRect()
        if r.isNull():
            r = QRectF(-400, -300, 800, 600)
        self.setSceneRect(r.adjusted(-600, -400, 600, 400))

    def set_dark(self, dark: bool) -> None:
        self.look.set_dark(dark)
        for item in self.node_items.values():
            item.restyle()
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

    def content_rect(self) -> QRectF:
        return self.itemsBoundingRect()

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
                moves[nid] = ((old.x(), old.y()), (item.pos().x(), item.pos().y()))
        self._press_positions = {}
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
        if old is not None and old is not target:
            self._highlight(old, port, None)
        c["target"] = target
        if target is None:
            self.status_message.emit("")
            return
        src, dst = self._ends(port, target)
        ok, reason = self.doc.graph.can_connect(src, dst)
        self._highlight(target, port, "ok" if ok else "bad")
        g = self.doc.graph
        self.status_message.emit(f"Connect '{g.nodes[src].name}' → '{g.nodes[dst].name}'" if ok
                                 else f"Cannot connect: {reason}")

    @staticmethod
    def _ends(port: PortItem, target: NodeItem) -> tuple[str, str]:
        """(src, dst) of the edge a drag from `port` onto `target` asks for."""
        if port.is_input:
            return target.node_id, port.node.node_id
        return port.node.node_id, target.node_id

    @staticmethod
    def _highlight(target: NodeItem, port: PortItem, state: str | None) -> None:
        tp = target.out_port if port.is_input else target.in_port
        if tp is not None:
            tp.set_highlight(state)

    def _finish_connect(self, pos: QPointF) -> None:
        c, self._connect = self._connect, None
        self.removeItem(c["rubber"])
        self.status_message.emit("")
        target = c["target"]
        if target is None:
            return
        self._highlight(target, c["port"], None)
        src, dst = self._ends(c["port"], target)
        self.doc.push(AddEdgeCommand(self.doc, src, dst))  # a refusal reports its reason

    def cancel_connect(self) -> None:
        if self._connect is not None:
            c, self._connect = self._connect, None
            self.removeItem(c["rubber"])

    # ---- rendering for export ---------------------------------------------------------------

    def render_image(self, scale: float = 2.0, margin: float = 40.0) -> QImage:
        """The whole graph as an image at `scale` × (for PNG export)."""
        src = self.content_rect().adjusted(-margin, -margin, margin, margin)
        w, h = max(1, int(src.width() * scale)), max(1, int(src.height() * scale))
        # bounded for huge graphs: at most 32000 px a side and 60 M pixels (240 MB); beyond
        # that the scale drops (the SVG export stays exact at any size)
        k = min(1.0, 32000 / max(w, h), (60e6 / (w * h)) ** 0.5)
        if k < 1.0:
            w, h, scale = max(1, int(w * k)), max(1, int(h * k)), scale * k
        img = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(self.look.canvas)
        painter = QPainter(img)
        painter.setRenderHints(QPainter.RenderHint.Antialiasing
                               | QPainter.RenderHint.TextAntialiasing)
        self.render_to(painter, QRectF(0, 0, w, h), src)
        painter.end()
        return img

    def render_to(self, painter: QPainter, target: QRectF, source: QRectF) -> None:
        """Render `source` without selection highlights and with every item at full detail."""
        selected = self.selectedItems()
        for it in selected:
            it.setSelected(False)
        cache = {}
        for item in self.node_items.values():
            cache[item] = item.cacheMode()
            item.setCacheMode(NodeItem.CacheMode.NoCache)
        try:
            self.render(painter, target, source, Qt.AspectRatioMode.KeepAspectRatio)
        finally:
            for item, mode in cache.items():
                item.setCacheMode(mode)
            for it in selected:
                it.setSelected(True)

