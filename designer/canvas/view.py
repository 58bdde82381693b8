"""The canvas view: wheel zoom around the cursor, pan, fit, rubber-band selection, drops from
the palette, and an overview (minimap) in the corner for graphs bigger than the window."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QFrame, QGraphicsView, QWidget

from ..commands import AddEdgeCommand, AddNodeCommand, InsertNodeOnEdgeCommand
from .items import DETAIL_LOD, EdgeItem
from .layout import NODE_H, NODE_W
from .scene import CanvasScene

LAYER_MIME = "application/x-cnn-designer-layer"
MIN_ZOOM, MAX_ZOOM = 0.05, 3.0
READABLE_ZOOM = DETAIL_LOD + 0.05  # cards show their parameters, edges their shapes
TOP_ZOOM = 0.75  # a tall graph's top is shown at this zoom (less when its width needs less)


class CanvasView(QGraphicsView):
    """Shows a CanvasScene. Wheel: zoom at the cursor; middle drag or Space + drag: pan."""

    zoom_changed = Signal(float)
    hint_posted = Signal(str, int)  # how to navigate, for the status bar (text, timeout ms)

    def __init__(self, scene: CanvasScene, parent: QWidget | None = None):
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.RenderHint.Antialiasing
                            | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.ItemSelectionMode.IntersectsItemShape)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setCacheMode(QGraphicsView.CacheModeFlag.CacheBackground)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._pan_from: QPointF | None = None
        self._space = False
        self._hot_edge: EdgeItem | None = None
        self._drag_hinted = False  # a drag's hint is posted when what it would do changes
        self._top_zoom: float | None = None  # the zoom fit_readable left, showing the top
        self.minimap = Minimap(self)
        self.horizontalScrollBar().valueChanged.connect(self.minimap.update_later)
        self.verticalScrollBar().valueChanged.connect(self.minimap.update_later)
        scene.content_changed.connect(self.minimap.content_changed)
        scene.doc.validated.connect(self.minimap.validated)  # error colours

    def canvas(self) -> CanvasScene:
        return self.scene()

    # ---- zoom and pan -----------------------------------------------------------------------

    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, z: float, anchor_under_mouse: bool = False) -> None:
        z = max(MIN_ZOOM, min(MAX_ZOOM, z))
        old = self.transformationAnchor()
        if not anchor_under_mouse:
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        k = z / self.zoom()
        self.scale(k, k)
        self.setTransformationAnchor(old)
        self.zoom_changed.emit(self.zoom())
        self.minimap.update_later()

    def zoom_by(self, factor: float, anchor_under_mouse: bool = False) -> None:
        self.set_zoom(self.zoom() * factor, anchor_under_mouse)

    def fit(self) -> None:
        """Fit the whole graph (never zooming in past 100 %)."""
        r = self.canvas().content_rect()
        if r.isNull():
            return
        r = r.adjusted(-30, -30, 30, 30)
        self.fitInView(r, Qt.AspectRatioMode.KeepAspectRatio)
        if self.zoom() > 1.0:
            self.set_zoom(1.0)
        elif self.zoom() < MIN_ZOOM:
            self.set_zoom(MIN_ZOOM)
        self.centerOn(r.center())
        self.zoom_changed.emit(self.zoom())
        self.minimap.update_later()

    def fit_readable(self, toggle: bool = True) -> bool:
        """Fit (F): the whole graph when it fits at a readable zoom (cards with their
        parameters); else its top at a readable zoom, with a status-bar hint on how to see
        the rest — and with `toggle`, F again on that view shows the whole graph anyway.
        True when the whole graph is in view."""
        r = self.canvas().content_rect()
        if r.isNull():
            return True
        vp = self.viewport().size()
        kw = vp.width() / (r.width() + 60)
        k = min(kw, vp.height() / (r.height() + 60))
        again = toggle and self._top_zoom is not None and abs(self.zoom() - self._top_zoom) < 1e-6
        self._top_zoom = None
        if k >= READABLE_ZOOM or again:
            self.fit()
            if again:
                self.hint_posted.emit(f"Whole network at {self.zoom() * 100:.0f} %: cards show "
                                      "their type and shape only — zoom in (wheel, Ctrl++) or "
                                      "press F again for readable cards", 10000)
            return True
        self.show_top(max(READABLE_ZOOM, min(TOP_ZOOM, kw)))
        self._top_zoom = self.zoom() if toggle else None  # F after opening: still readable
        n = len(self.canvas().visible_cards())
        keys = "F" if toggle else "F twice"
        self.hint_posted.emit(f"The top of the network ({n} cards) at a readable "
                              f"{self.zoom() * 100:.0f} %: scroll or drag the overview map for "
                              f"the rest; {keys} shows it all", 12000)
        return False

    def show_top(self, zoom: float = 1.0) -> None:
        """Readable zoom, top of the graph in view (a long chain is scrolled, not shrunk)."""
        r = self.canvas().content_rect()
        self.resetTransform()
        self.set_zoom(zoom)
        vis = self.mapToScene(self.viewport().rect()).boundingRect()
        self.centerOn(QPointF(r.center().x(), r.top() - 30 + vis.height() / 2))
        self.zoom_changed.emit(self.zoom())

    def wheelEvent(self, event):
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            super().wheelEvent(event)  # shift + wheel scrolls
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_at(1.15 ** steps, event.position())
        event.accept()

    def zoom_at(self, factor: float, vp_pos: QPointF) -> None:
        """Zoom keeping the scene point under `vp_pos` (viewport coordinates) where it is."""
        before = self.mapToScene(vp_pos.toPoint())
        self.zoom_by(factor)
        after = self.mapToScene(vp_pos.toPoint())
        centre = self.mapToScene(self.viewport().rect().center())
        self.centerOn(centre - (after - before))
        self.minimap.update_later()

    def mousePressEvent(self, event):
        if event.button() == Qt.MouseButton.MiddleButton or (
                self._space and event.button() == Qt.MouseButton.LeftButton):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._pan_from is not None:
            d = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event):
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if event.key() == Qt.Key.Key_Escape:
            self.canvas().cancel_connect()
            self.canvas().clearSelection()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event):
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().unsetCursor()
            return
        super().keyReleaseEvent(event)

    # ---- background ---------------------------------------------------------------------------

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        look = self.canvas().look
        painter.fillRect(rect, look.canvas)
        if self.zoom() < 0.5:  # denser dots are noise, and cost a frame when zooming out
            return
        step = 24.0
        painter.setPen(QPen(look.grid, 1.6 / max(self.zoom(), 0.3)))
        left = int(rect.left() // step) * step
        top = int(rect.top() // step) * step
        pts = []
        y = top
        while y < rect.bottom():
            x = left
            while x < rect.right():
                pts.append(QPointF(x, y))
                x += step
            y += step
        if len(pts) < 40000:
            painter.drawPoints(pts)

    def refresh_background(self) -> None:
        self.resetCachedContent()
        self.viewport().update()
        self.minimap.content_changed()

    # ---- drops from the palette ---------------------------------------------------------------

    def dragEnterEvent(self, event):
        if event.mimeData().hasFormat(LAYER_MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        if not event.mimeData().hasFormat(LAYER_MIME):
            event.ignore()
            return
        edge = self.canvas().edge_at(self.mapToScene(event.position().toPoint()))
        if edge is not self._hot_edge or not self._drag_hinted:
            self._drag_hinted = True
            type_name = bytes(event.mimeData().data(LAYER_MIME)).decode("utf-8", "replace")
            g = self.canvas().doc.graph
            src = self.drop_source(type_name.strip())
            if edge is not None:
                e = edge.edge
                text = (f"Drop to insert it between '{g.nodes[e.src].name}' and "
                        f"'{g.nodes[e.dst].name}'")
            elif src is not None:
                text = f"Drop to add it after the selected '{g.nodes[src].name}', connected"
            else:
                text = ("Drop to add it here; drop on a connection to insert it there, or "
                        "select a layer first to connect after it")
            self.hint_posted.emit(text, 4000)
        self._set_hot_edge(edge)
        event.acceptProposedAction()

    def dragLeaveEvent(self, event):
        self._drag_hinted = False
        self._set_hot_edge(None)
        event.accept()

    def dropEvent(self, event):
        self._drag_hinted = False
        self._set_hot_edge(None)
        data = event.mimeData()
        if not data.hasFormat(LAYER_MIME):
            event.ignore()
            return
        type_name = bytes(data.data(LAYER_MIME)).decode("utf-8", "replace").strip()
        pos = self.mapToScene(event.position().toPoint())
        if self.drop_layer(type_name, pos):
            event.acceptProposedAction()
        else:
            event.ignore()

    def drop_layer(self, type_name: str, pos: QPointF) -> bool:
        """Create a layer at `pos`; dropped on a connection, it is spliced into it; else,
        when one layer is selected and its output feeds nothing, connected after it."""
        scene = self.canvas()
        doc = scene.doc
        edge = scene.edge_at(pos)
        if edge is not None:
            cmd = InsertNodeOnEdgeCommand(doc, edge.edge, type_name, (pos.x(), pos.y()))
            if not doc.push(cmd):
                return False
            nid = cmd.new_id
            self.hint_posted.emit(f"{cmd.text()} (Ctrl+Z undoes)", 6000)
        else:
            src = self.drop_source(type_name)
            cmd = AddNodeCommand(doc, type_name, (pos.x(), pos.y()))
            if src is None or cmd.refusal or doc.locked_reason is not None:
                if not doc.push(cmd):
                    return False
            else:
                doc.undo_stack.beginMacro(f"Add {type_name} after '{doc.graph.nodes[src].name}'")
                doc.push(cmd)
                link = AddEdgeCommand(doc, src, cmd.node_id)
                doc.push(link)
                doc.undo_stack.endMacro()
                self.hint_posted.emit(f"Connected '{doc.graph.nodes[src].name}' → "
                                      f"'{doc.graph.nodes[cmd.node_id].name}' (it was "
                                      "selected; Ctrl+Z undoes)", 6000)
            nid = cmd.node_id
        scene.select_nodes([nid])
        self.setFocus()
        return True

    def drop_source(self, type_name: str) -> str | None:
        """The layer a new `type_name` dropped now would connect after: the one selected
        layer, when its first output feeds nothing and the new layer takes an input."""
        from engine.layers import REGISTRY

        scene = self.canvas()
        g = scene.doc.graph
        sel = scene.selected_node_ids()
        cls = REGISTRY.get(type_name)
        if len(sel) != 1 or cls is None or cls.max_inputs == 0 or g.successors(sel[0]):
            return None
        return sel[0]

    def _set_hot_edge(self, edge: EdgeItem | None) -> None:
        if self._hot_edge is not None and self._hot_edge is not edge:
            try:
                self._hot_edge.set_hot(False)
            except RuntimeError:
                pass
        self._hot_edge = edge
        if edge is not None:
            edge.set_hot(True)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self.minimap.place()


class Minimap(QWidget):
    """An overview of the whole graph in the view's bottom-right corner: family-coloured boxes,
    the visible area as a rectangle; click or drag to move there. Hidden when all fits."""

    def __init__(self, view: CanvasView):
        super().__init__(view)
        self.view = view
        self.W, self.H = 160, 110
        self.enabled = True  # View > Show Overview Map
        self.corner = "bottom"
        self.resize(self.W, self.H)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Overview: click or drag to move the view")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self.refresh)
        self._xf: tuple[float, float, float] | None = None  # scale, dx, dy
        # the graph drawn once per content change; panning repaints only the view rectangle
        # (no per-frame work proportional to the number of layers)
        self._pix: QPixmap | None = None
        self.hide()

    def content_changed(self) -> None:
        self._pix = None
        self.update_later()

    def validated(self, validation) -> None:
        """Redraw only when the layers shown in red changed (most edits change none)."""
        errors = frozenset(m.node_id for m in validation.errors)
        if errors != getattr(self, "_errors", frozenset()):
            self._errors = errors
            self.content_changed()

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        if on:
            self.refresh()
        else:
            self.hide()

    def _corner_rect(self, corner: str):
        vp = self.view.viewport().geometry()
        y = vp.top() + 10 if corner == "top" else vp.bottom() - self.H - 10
        return vp.right() - self.W - 10, y

    def place(self) -> None:
        """Bottom-right, or top-right when fewer cards lie under that corner."""
        from PySide6.QtCore import QRect

        from .items import NodeItem

        def covered(corner: str) -> int:
            x, y = self._corner_rect(corner)
            poly = self.view.mapToScene(QRect(x, y, self.W, self.H))
            return sum(isinstance(i, NodeItem) or type(i).__name__ == "BlockItem"
                       for i in self.view.scene().items(poly))

        if self.isVisible() and self.view.scene() is not None:
            counts = {c: covered(c) for c in ("bottom", "top")}
            if counts[self.corner] > min(counts.values()):
                self.corner = min(counts, key=counts.get)
        self.move(*self._corner_rect(self.corner))

    def update_later(self, *args) -> None:
        self._timer.start()

    def refresh(self) -> None:
        scene = self.view.canvas()
        if scene is None:
            return
        content = scene.content_rect()
        visible = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        fits = content.isNull() or visible.contains(content)
        self.setVisible(self.enabled and not fits and len(scene.node_items) > 1)
        if self.isVisible():
            # shape follows the graph: a narrow strip for a deep chain, wide for a wide one;
            # small, so it hides little of the canvas
            vp = self.view.viewport().size()
            aspect = content.height() / max(content.width(), 1.0)
            if aspect > 1.4:
                self.H = int(max(90, min(vp.height() * 0.3, 200)))
                self.W = int(max(56, min(130, self.H / aspect * 1.8)))
            else:
                self.W, self.H = 160, int(max(70, min(110, 160 * aspect)))
            self.resize(self.W, self.H)
            self.place()
            self.raise_()
            self.update()

    def _transform(self) -> tuple[float, float, float]:
        content = self.view.canvas().content_rect().adjusted(-40, -40, 40, 40)
        k = min((self.W - 12) / max(content.width(), 1), (self.H - 12) / max(content.height(), 1))
        dx = (self.W - content.width() * k) / 2 - content.left() * k
        dy = (self.H - content.height() * k) / 2 - content.top() * k
        return k, dx, dy

    def paintEvent(self, event):
        scene = self.view.canvas()
        if scene is None:
            return
        look = scene.look
        xf = self._transform()
        if self._pix is None or self._pix.size() != self.size() or xf != self._xf:
            self._pix = self._draw_content(scene, xf)
        self._xf = k, dx, dy = xf
        p = QPainter(self)
        p.setOpacity(1.0 if self.underMouse() else 0.85)  # the canvas shows through
        p.drawPixmap(0, 0, self._pix)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        vis = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        p.setPen(QPen(look.accent, 1.5))
        fill = QColor(look.accent)
        fill.setAlpha(30)
        p.setBrush(fill)
        p.drawRect(QRectF(vis.left() * k + dx, vis.top() * k + dy, vis.width() * k,
                          vis.height() * k))
        p.end()

    def _draw_content(self, scene, xf) -> QPixmap:
        """Background, edges (straight) and cards (family-coloured boxes) into a pixmap."""
        from .blocks import BLOCK_W, BlockItem

        look = scene.look
        pix = QPixmap(self.size())
        pix.fill(Qt.GlobalColor.transparent)
        p = QPainter(pix)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        bg = QColor(look.card)
        bg.setAlpha(200)
        p.setPen(QPen(look.border, 1))
        p.setBrush(bg)
        p.drawRoundedRect(QRectF(0.5, 0.5, self.W - 1, self.H - 1), 6, 6)
        k, dx, dy = xf
        p.setPen(QPen(look.edge, 0.8))
        for e in scene.edge_items.values():
            if e.isVisible():
                a, b = e.a.pos(), e.b.pos()
                p.drawLine(QPointF(a.x() * k + dx, a.y() * k + dy),
                           QPointF(b.x() * k + dx, b.y() * k + dy))
        p.setPen(Qt.PenStyle.NoPen)
        h = max(NODE_H * k, 1.5)
        for item in scene.visible_cards():
            if isinstance(item, BlockItem):
                c, w = (look.error if item.n_errors else item.header_colour()), BLOCK_W
            else:
                c, w = (look.error if item.severity == "error"
                        else look.family(item.type_name)), NODE_W
            w = max(w * k, 2.0)
            p.setBrush(c)
            pos = item.pos()
            p.drawRect(QRectF(pos.x() * k + dx - w / 2, pos.y() * k + dy - h / 2, w, h))
        p.end()
        return pix

    def _go(self, pos) -> None:
        k, dx, dy = self._xf or self._transform()
        self.view.centerOn(QPointF((pos.x() - dx) / k, (pos.y() - dy) / k))
        self.update()

    def enterEvent(self, event):
        self.update()
        super().enterEvent(event)

    def leaveEvent(self, event):
        self.update()
        super().leaveEvent(event)

    def mousePressEvent(self, event):
        self._go(event.position())
        event.accept()

    def mouseMoveEvent(self, event):
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._go(event.position())
        event.accept()
