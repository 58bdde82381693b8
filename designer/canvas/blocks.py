"""Collapsed blocks on the canvas: BlockItem (one card standing for a group of layers), the
block summaries it shows, and the layout of the graph as it is seen with blocks collapsed.

Collapsing is a view state: the graph stays flat (validation, training and files see every
layer); the scene hides the member cards, draws one BlockItem per outermost collapsed block and
routes the edges that cross the block's border to its card.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QStyle

from engine.blocks import BlockInfo
from engine.graph import Edge, Graph, Node
from engine.layers import fmt_shape
from engine.messages import ERROR
from engine.summary import human_count
from engine.validate import Validation

from .items import DETAIL_LOD, _draw_lock, fmt_count
from .layout import NODE_H, layered_layout

BLOCK_W = 300.0
HEADER_H = 22.0
RADIUS = 7.0
BUTTON = 16.0  # the expand button in the header


# ---- summaries --------------------------------------------------------------------------------

class GraphIndex:
    """Predecessors / successors of every node, built once per graph change (the summaries of
    all visible blocks then cost one pass over each block, not one pass over the edges per
    layer)."""

    def __init__(self, graph: Graph):
        self.preds: dict[str, list[str]] = {i: [] for i in graph.nodes}
        self.succs: dict[str, list[str]] = {i: [] for i in graph.nodes}
        for e in sorted(graph.edges, key=lambda e: e.port):
            if e.src in self.succs and e.dst in self.preds:
                self.preds[e.dst].append(e.src)
                self.succs[e.src].append(e.dst)


def summarize(graph: Graph, validation: Validation, index: GraphIndex, name: str,
              node_ids, blocks: dict[str, list[str]] | None = None) -> BlockInfo:
    """The same BlockInfo as engine.blocks.block_summary (shapes in and out, layer count,
    parameter total, blocks directly inside), with the edge index `index`."""
    rank = {n: k for k, n in enumerate(validation.order)}
    wanted = [n for n in node_ids if n in graph.nodes]
    ids = sorted((n for n in wanted if n in rank), key=rank.__getitem__) + \
        [n for n in wanted if n not in rank]
    inside = set(ids)
    srcs: list[str] = []
    for n in ids:
        for s in index.preds.get(n, ()):
            if s not in inside and s not in srcs:
                srcs.append(s)
    leaving = [n for n in ids if n == validation.output_id
               or any(d not in inside for d in index.succs.get(n, ()))]

    def shape(n):
        res = validation.nodes.get(n)
        return None if res is None else res.out_shape

    results = [validation.nodes[n] for n in ids if n in validation.nodes]
    trainable = sum(r.trainable_params for r in results)
    total = trainable + sum(r.non_trainable_params for r in results)
    n_blocks = 0
    if blocks:
        subs = {frozenset(v) for v in blocks.values()}
        subs = [b for b in subs if b < inside]
        n_blocks = sum(1 for b in subs if not any(b < o for o in subs))
    return BlockInfo(name, len(ids), [shape(s) for s in srcs], [shape(n) for n in leaving],
                     total, trainable, sum(r.macs for r in results), ids, n_blocks)


def collapsible(blocks: dict[str, list[str]], n_layers: int) -> list[str]:
    """The blocks "Collapse all" folds: every block smaller than half the network (a block
    holding nearly everything, torchvision's `features`, would fold the net into one card)."""
    limit = max(2, n_layers // 2)
    return [name for name, ids in blocks.items() if 2 <= len(ids) <= limit]


def visible_layout(graph: Graph, owner: dict[str, str], shown_blocks: list[str]
                   ) -> dict[str, tuple[float, float]]:
    """Layered layout of the graph as seen with blocks collapsed: every member of a collapsed
    block replaced by its block (`owner`: node id -> block name). Returns centres for the
    visible node ids and the block names."""
    v = Graph("visible")
    for nid, node in graph.nodes.items():
        if nid not in owner:
            v.nodes[nid] = node
    for name in shown_blocks:
        v.nodes[name] = Node(name, "Concat", name, {}, True, (0.0, 0.0))
    seen = set()
    for e in graph.edges:
        a, b = owner.get(e.src, e.src), owner.get(e.dst, e.dst)
        if a != b and (a, b) not in seen and a in v.nodes and b in v.nodes:
            seen.add((a, b))
            v.edges.append(Edge(a, b, len(seen)))
    return layered_layout(v, widths={name: BLOCK_W for name in shown_blocks})


# ---- the card ---------------------------------------------------------------------------------

class BlockItem(QGraphicsObject):
    """A collapsed block as one card: title from BlockInfo ("dense block 3 (48 blocks, 336
    layers)"), input → output shapes, parameter total, a neutral slate header (a block mixes
    families), an expand button, and a red / amber badge with the count of problems inside."""

    def __init__(self, scene, name: str, look):
        super().__init__()
        self.canvas = scene
        self.name = name
        self.look = look
        self.edges: list = []  # EdgeItems drawn to / from this card
        self.info: BlockInfo | None = None
        self.n_errors = self.n_warnings = 0
        self.frozen = "none"  # "all", "some" or "none"
        self.first_message = ""
        self.setFlags(QGraphicsItem.GraphicsItemFlag.ItemIsMovable
                      | QGraphicsItem.GraphicsItemFlag.ItemIsSelectable
                      | QGraphicsItem.GraphicsItemFlag.ItemSendsScenePositionChanges)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        self._signature = None

    # ---- content ----------------------------------------------------------------------------

    def set_info(self, info: BlockInfo, validation: Validation, graph: Graph) -> None:
        errors = warnings = 0
        first = ""
        frozen = 0
        for nid in info.node_ids:
            res = validation.nodes.get(nid)
            if res is not None:
                for m in res.messages:
                    if m.severity == ERROR:
                        errors += 1
                        first = first or f"{graph.nodes[nid].name}: {m.text}"
                    else:
                        warnings += 1
            frozen += not graph.nodes[nid].trainable
        sig = (info.title, tuple(info.in_shapes), tuple(info.out_shapes), info.params,
               info.macs, errors, warnings, frozen)
        self.info = info
        self.first_message = first
        if sig == self._signature:
            return
        self._signature = sig
        self.n_errors, self.n_warnings = errors, warnings
        n = max(info.n_layers, 1)
        self.frozen = "all" if frozen == n else ("some" if frozen else "none")
        self.setToolTip(self.tooltip_text())
        self.update()

    @property
    def title(self) -> str:
        return self.info.title if self.info is not None else self.name

    def shapes_text(self) -> tuple[str, str]:
        def fmt(ss):
            return ", ".join("?" if s is None else fmt_shape(s) for s in ss) or "–"

        if self.info is None:
            return "?", "?"
        return fmt(self.info.in_shapes), fmt(self.info.out_shapes)

    def tooltip_text(self) -> str:
        if self.info is None:
            return self.name
        i, o = self.shapes_text()
        lines = [f"<b>{_esc(self.title)}</b> (collapsed block '{_esc(self.name)}')",
                 f"input {i} → output {o}",
                 f"{self.info.params:,} parameters ({self.info.trainable_params:,} trainable)"
                 + (f" · {self.info.macs:,} MACs" if self.info.macs else "")]
        if self.frozen != "none":
            lines.append("all layers frozen" if self.frozen == "all" else "some layers frozen")
        if self.n_errors or self.n_warnings:
            lines.append(f"<span style='color:{self.look.error.name()}'>{self.n_errors} "
                         f"error(s)</span>, {self.n_warnings} warning(s) inside"
                         + (f"<br>{_esc(self.first_message)}" if self.first_message else ""))
        lines.append("<i>Double-click or ⊞ to expand</i>")
        return "<br>".join(lines)

    # ---- geometry ---------------------------------------------------------------------------

    _CARD = QRectF(-BLOCK_W / 2, -NODE_H / 2, BLOCK_W, NODE_H)
    _BOUNDS = _CARD.adjusted(-8, -12, 16, 14)

    def card_rect(self) -> QRectF:
        return QRectF(self._CARD)

    def boundingRect(self) -> QRectF:
        return self._BOUNDS

    def shape(self) -> QPainterPath:
        p = QPainterPath()
        p.addRoundedRect(self.card_rect(), RADIUS, RADIUS)
        return p

    def button_rect(self) -> QRectF:
        r = self.card_rect()
        return QRectF(r.right() - BUTTON - 5, r.top() + (HEADER_H - BUTTON) / 2, BUTTON, BUTTON)

    def in_anchor(self) -> QPointF:
        return self.scenePos() + QPointF(0, -NODE_H / 2)

    def out_anchor(self) -> QPointF:
        return self.scenePos() + QPointF(0, NODE_H / 2)

    # ---- painting ---------------------------------------------------------------------------

    def header_colour(self) -> QColor:
        c = QColor("#56617a") if not self.look.dark else QColor("#4d5872")
        if self.frozen == "all":
            c = QColor("#5f7d99") if not self.look.dark else QColor("#4f6882")
        return c

    def paint(self, painter: QPainter, option, widget=None) -> None:
        look = self.look
        r = self.card_rect()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        head = self.header_colour()
        if self.n_errors:
            frame, width = look.error, 2.2
        elif self.n_warnings:
            frame, width = look.warning, 2.0
        else:
            frame, width = look.border, 1.0
        if selected and not (self.n_errors or self.n_warnings):
            frame, width = look.accent, 2.2

        # a deck of cards: two offset sheets behind say "several layers in here"
        painter.setPen(QPen(look.border, 1.0))
        for k in (2, 1):
            painter.setBrush(look.card)
            painter.drawRoundedRect(r.translated(5 * k, 5 * k), RADIUS, RADIUS)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(look.frozen_card if self.frozen == "all" else look.card)
        painter.drawRoundedRect(r, RADIUS, RADIUS)
        painter.save()
        painter.setClipRect(QRectF(r.left() - 1, r.top() - 1, r.width() + 2, HEADER_H + 1),
                            Qt.ClipOperation.IntersectClip)  # inside an export strip's clip
        painter.setBrush(head)
        painter.drawRoundedRect(r, RADIUS, RADIUS)
        painter.restore()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(frame, width))
        painter.drawRoundedRect(r, RADIUS, RADIUS)
        if selected:
            halo = QColor(look.accent)
            halo.setAlphaF(0.3)
            painter.setPen(QPen(halo, 3.0))
            painter.drawRoundedRect(r.adjusted(-3.5, -3.5, 3.5, 3.5), RADIUS + 3, RADIUS + 3)
        if lod < 0.2:
            return
        ink = QColor("#ffffff")
        pad = 9.0
        i_text, o_text = self.shapes_text()
        if lod < DETAIL_LOD:  # far away: the block's name and its output in big letters
            f = QFont(look.f_title)
            f.setPointSizeF(13)
            painter.setFont(f)
            painter.setPen(ink)
            painter.drawText(QRectF(r.left() + pad, r.top(), r.width() - 2 * pad, HEADER_H),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             _short_title(self.title))
            f.setPointSizeF(16)
            painter.setFont(f)
            painter.setPen(look.error if self.n_errors else look.text)
            painter.drawText(r.adjusted(pad, HEADER_H, -pad, -2), Qt.AlignmentFlag.AlignCenter,
                             o_text)
            return

        # header: title, lock, expand button
        right = self.button_rect().left() - 6
        if self.frozen != "none":
            _draw_lock(painter, QPointF(right - 5, r.top() + HEADER_H / 2), ink)
            right -= 16
        painter.setPen(ink)
        painter.setFont(look.f_title)
        title = look.m_title.elidedText(self.title, Qt.TextElideMode.ElideRight,
                                        right - (r.left() + pad))
        painter.drawText(QRectF(r.left() + pad, r.top(), right - r.left() - pad, HEADER_H),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, title)
        b = self.button_rect()
        painter.setPen(QPen(ink, 1.3))
        painter.setBrush(QColor(255, 255, 255, 40))
        painter.drawRoundedRect(b, 3, 3)
        c = b.center()
        painter.drawLine(c + QPointF(-4, 0), c + QPointF(4, 0))
        painter.drawLine(c + QPointF(0, -4), c + QPointF(0, 4))

        inner = r.width() - 2 * pad
        y = r.top() + HEADER_H + 3
        painter.setFont(look.f_desc)
        painter.setPen(look.muted)
        line = f"in {i_text}"
        if self.info is not None and self.info.n_blocks:
            line += f"  ·  {self.info.n_blocks} blocks inside"
        painter.drawText(QRectF(r.left() + pad, y, inner, 17),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                         look.m_desc.elidedText(line, Qt.TextElideMode.ElideRight, inner))
        y += 18
        row = QRectF(r.left() + pad, y, inner, 21)
        if self.n_errors and self.first_message:
            painter.setPen(look.error)
            painter.drawText(row, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             look.m_desc.elidedText(self.first_message,
                                                    Qt.TextElideMode.ElideRight, inner))
        else:
            painter.setFont(look.f_shape)
            painter.setPen(look.text)
            painter.drawText(row, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             look.m_shape.elidedText(f"→ {o_text}", Qt.TextElideMode.ElideRight,
                                                     inner))
        y += 21
        small = QRectF(r.left() + pad, y, inner, 14)
        if self.info is not None:
            painter.setFont(look.f_small)
            painter.setPen(look.muted)
            if self.info.macs:
                painter.drawText(small, Qt.AlignmentFlag.AlignVCenter
                                 | Qt.AlignmentFlag.AlignLeft, f"{human_count(self.info.macs)} MACs")
            painter.setFont(look.f_desc)
            painter.setPen(look.text if self.info.params else look.muted)
            n = self.info.params
            painter.drawText(small, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                             f"{fmt_count(n)} params" if n else "no params")
        if self.n_errors or self.n_warnings:
            self._badge(painter, QPointF(r.right() - 1, r.top() + 1))

    def _badge(self, painter: QPainter, c: QPointF) -> None:
        look = self.look
        n = self.n_errors or self.n_warnings
        colour = look.error if self.n_errors else look.warning
        text = str(n)
        w = max(17.0, look.m_title.horizontalAdvance(text) + 10)
        rect = QRectF(c.x() - w / 2, c.y() - 8.5, w, 17)
        painter.setPen(QPen(look.card, 2))
        painter.setBrush(colour)
        painter.drawRoundedRect(rect, 8.5, 8.5)
        painter.setPen(QColor("#ffffff"))
        painter.setFont(look.f_title)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    # ---- interaction ------------------------------------------------------------------------

    def itemChange(self, change, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemScenePositionHasChanged:
            scene = self.scene()
            if scene is not None:
                scene.cards_moved()
            for e in self.edges:
                e.update_path()
        return super().itemChange(change, value)

    def mousePressEvent(self, event):
        if event.button() == Qt.MouseButton.LeftButton and \
                self.button_rect().contains(event.pos()):
            event.accept()
            self.canvas.expand_later(self.name)
            return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event):
        event.accept()
        self.canvas.expand_later(self.name)


def _short_title(title: str) -> str:
    return title.split(" (", 1)[0]


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["BLOCK_W", "BlockItem", "GraphIndex", "collapsible", "summarize", "visible_layout"]
