"""Scene items: NodeItem (a layer card), PortItem (its input / output), EdgeItem (a connection).

Items are views: they read the node from `doc.graph` and its results (shape, parameters,
messages) from `doc.validation`; they never compute shapes and never change the model. Moving,
connecting and deleting are reported to the scene, which pushes commands.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
)
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QStyle

from engine.graph import Edge
from engine.layers import REGISTRY, fmt_shape
from engine.messages import ERROR

from .. import theme
from .layout import NODE_H, NODE_W

HEADER_H = 22.0
RADIUS = 7.0
PORT_R = 5.0
# below this zoom a card's small print (parameters, RF, counts) and the edges' shape labels
# are a few pixels high: cards show their type and output shape in big letters instead
DETAIL_LOD = 0.55


class Look:
    """Colours and fonts of the canvas for the current theme (shared by all items)."""

    def __init__(self, dark: bool = False):
        self.set_dark(dark)
        base = QFont()
        self.f_title = QFont(base)
        self.f_title.setPointSizeF(9.0)
        self.f_title.setBold(True)
        self.f_name = QFont(base)
        self.f_name.setPointSizeF(8.5)
        self.f_desc = QFont(base)
        self.f_desc.setPointSizeF(8.5)
        self.f_shape = QFont(base)
        self.f_shape.setPointSizeF(11.0)
        self.f_shape.setBold(True)
        self.f_small = QFont(base)
        self.f_small.setPointSizeF(7.5)
        self.f_edge = QFont(base)
        self.f_edge.setPointSizeF(8.0)
        self.m_desc = QFontMetricsF(self.f_desc)
        self.m_shape = QFontMetricsF(self.f_shape)
        self.m_name = QFontMetricsF(self.f_name)
        self.m_title = QFontMetricsF(self.f_title)
        self.m_edge = QFontMetricsF(self.f_edge)

    def set_dark(self, dark: bool) -> None:
        self.dark = dark
        if dark:
            self.canvas = QColor("#1b1c1f")
            self.grid = QColor("#2c2e33")
            self.card = QColor("#2a2c31")
            self.border = QColor("#43464d")
            self.text = QColor("#e6e8eb")
            self.muted = QColor("#9aa1ab")
            self.edge = QColor("#737a85")
            self.accent = QColor("#5b9bff")
            self.ok = QColor("#3ccf7a")
            self.shadow = QColor(0, 0, 0, 90)
            self.frozen = QColor("#6f8fb3")
            self.frozen_card = QColor("#262c36")
        else:
            self.canvas = QColor("#f7f8fa")
            self.grid = QColor("#dde1e7")
            self.card = QColor("#ffffff")
            self.border = QColor("#cfd4dc")
            self.text = QColor("#1d1f23")
            self.muted = QColor("#667080")
            self.edge = QColor("#98a1ae")
            self.accent = QColor("#2f6fdb")
            self.ok = QColor("#1f9d55")
            self.shadow = QColor(20, 30, 50, 28)
            self.frozen = QColor("#7d9cc0")
            self.frozen_card = QColor("#eef3f9")
        # shape labels on the connections: readable, not as loud as the card text
        self.edge_label = (theme.edge_label_color(dark) if hasattr(theme, "edge_label_color")
                           else QColor(self.text))
        self.error = theme.severity_color("error", dark)
        self.warning = theme.severity_color("warning", dark)

    def family(self, type_name: str) -> QColor:
        cls = REGISTRY.get(type_name)
        return theme.family_color(cls.category if cls else "", self.dark)


def channels_text(shape) -> str:
    """What an input's channels are: "greyscale image", "RGB image", "4-channel image"."""
    if len(shape) != 3:
        return f"{shape[0]} features" if len(shape) == 1 else ""
    c = shape[0]
    kind = {1: "greyscale", 3: "RGB"}.get(c, f"{c}-channel")
    return f"{kind} image"


def fmt_count(n: int) -> str:
    """156 -> '156', 61706 -> '61,706', 11_689_512 -> '11.7M'."""
    if n < 1_000_000:
        return f"{n:,}"
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e9:.2f}G"


class PortItem(QGraphicsItem):
    """A node's input (top) or output (bottom) connector. Dragging from it draws a new edge.

    A layer with several outputs (a channel split) has one output PortItem per output,
    `index` 0, 1, ... from left to right along the card's bottom edge."""

    def __init__(self, node: NodeItem, is_input: bool, index: int = 0, count: int = 1):
        super().__init__(node)
        self.node = node
        self.is_input = is_input
        self.index = index  # the output port number (0 for the input and a single output)
        self.highlight: str | None = None  # None, "ok" or "bad" while a connection is dragged
        self.setPos(port_x(index, count), -NODE_H / 2 if is_input else NODE_H / 2)
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.CrossCursor)
        if is_input:
            tip = "Input: drag from here to a layer's output to connect"
        elif count > 1:
            tip = f"Output {index}: drag from here onto another layer to connect"
        else:
            tip = "Output: drag from here onto another layer to connect"
        self.setToolTip(tip)
        self.setZValue(2)
        self._hover = False

    _BOUNDS = QRectF(-PORT_R - 5, -PORT_R - 5, 2 * PORT_R + 10, 2 * PORT_R + 10)

    def boundingRect(self) -> QRectF:
        return self._BOUNDS

    def shape(self) -> QPainterPath:
        p = QPainterPath()
        r = PORT_R + 4  # easier to hit than to see
        p.addEllipse(QPointF(0, 0), r, r)
        return p

    def paint(self, painter: QPainter, option, widget=None) -> None:
        look: Look = self.node.look
        r = PORT_R + (2 if self._hover or self.highlight else 0)
        if self.highlight == "ok":
            fill, pen = look.ok, look.ok
        elif self.highlight == "bad":
            fill, pen = look.error, look.error
        else:
            fill = look.family(self.node.type_name) if self._hover else look.card
            pen = look.family(self.node.type_name)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(pen, 1.6))
        painter.setBrush(fill)
        painter.drawEllipse(QPointF(0, 0), r, r)

    def hoverEnterEvent(self, event):
        self._hover = True
        self.update()

    def hoverLeaveEvent(self, event):
        self._hover = False
        self.update()

    def set_highlight(self, state: str | None) -> None:
        if state != self.highlight:
            self.highlight = state
            self.update()

    def scene_anchor(self) -> QPointF:
        return self.scenePos()


class NodeItem(QGraphicsObject):
    """A layer as a card: family-coloured header (type, name), key parameters, output shape,
    parameter count, receptive field; red / amber border and badge on errors / warnings."""

    def __init__(self, doc, node_id: str, look: Look):
        super().__init__()
        self.doc = doc
        self.node_id = node_id
        self.look = look
        self.edges: list[EdgeItem] = []
        self.setFlags(QGraphicsItem.GraphicsItemFlag.ItemIsMovable
                      | QGraphicsItem.GraphicsItemFlag.ItemIsSelectable
                      | QGraphicsItem.GraphicsItemFlag.ItemSendsScenePositionChanges)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        node = doc.graph.nodes[node_id]
        self.type_name = node.type_name
        cls = REGISTRY[node.type_name]
        self.in_port = PortItem(self, True) if cls.max_inputs != 0 else None
        self.out_ports: list[PortItem] = []
        self._make_out_ports(doc.graph.output_count(node_id) or 1)
        self.signature = None
        self.setPos(*node.position)
        self.refresh()

    # ---- content ----------------------------------------------------------------------------

    @property
    def out_port(self) -> PortItem:
        """The first (for most layers the only) output port."""
        return self.out_ports[0]

    def _make_out_ports(self, count: int) -> None:
        """One output PortItem per output of the layer (its parameters may change the count)."""
        for p in self.out_ports:
            p.setParentItem(None)
            if p.scene() is not None:
                p.scene().removeItem(p)
        self.out_ports = [PortItem(self, False, k, count) for k in range(count)]

    def refresh(self) -> bool:
        """Re-read node and validation result; repaint only if what is shown changed."""
        node = self.doc.graph.nodes[self.node_id]
        count = self.doc.graph.output_count(self.node_id)
        if count is not None and count != len(self.out_ports):
            self._make_out_ports(count)
            for e in self.edges:
                e.update_path()
        res = self.doc.validation.nodes.get(self.node_id)
        cls = REGISTRY[node.type_name]
        # what the card shows depends on these; parameter edits reset `signature` (scene)
        if res is None:
            sig = (node.name, node.trainable, None)
        else:
            sig = (node.name, node.trainable, res.out_shape, res.trainable_params,
                   res.non_trainable_params, res.receptive_field, tuple(res.in_shapes),
                   res.layer is None, tuple((m.severity, m.text) for m in res.messages))
        if sig == self.signature:
            return False
        self.signature = sig
        self.name = node.name
        self.title = cls.label if len(cls.label) <= 14 else cls.type_name
        self.frozen = not node.trainable
        self.desc = ""
        if res is not None and res.layer is not None:
            self.desc = res.layer.describe(res.in_shapes)
        self.shape_text = fmt_shape(res.out_shape) if res is not None else "?"
        if cls.category == "Input" and res is not None and res.out_shape:
            # the shape line below already says C×H×W: say what the channels are instead
            self.desc = channels_text(res.out_shape)
        self.params_text = ""
        self.rf_text = ""
        self.severity = None
        self.first_message = ""
        if res is not None:
            if res.out_shape is not None:
                n = res.params
                self.params_text = f"{fmt_count(n)} param{'s' * (n != 1)}" if n else "no params"
            if res.receptive_field is not None and cls.category != "Input":
                rh, rw = res.receptive_field
                self.rf_text = f"RF {rh}×{rw}"
            errs = [m for m in res.messages if m.severity == ERROR]
            warns = [m for m in res.messages if m.severity != ERROR]
            if errs:
                self.severity = "error"
                self.first_message = errs[0].text
            elif warns:
                self.severity = "warning"
                self.first_message = warns[0].text
        self._tip = None  # built when hovered (HTML for 200 cards per edit is waste)
        if self.isUnderMouse():
            self.setToolTip(self.tooltip_text())
        self.update()
        return True

    def tooltip_text(self) -> str:
        """Type, name, output, parameters, MACs and every message with its fix (HTML)."""
        if self._tip is None:
            node = self.doc.graph.nodes[self.node_id]
            res = self.doc.validation.nodes.get(self.node_id)
            cls = REGISTRY[node.type_name]
            tip = [f"<b>{_esc(cls.label)}</b> '{_esc(node.name)}' ({node.type_name})",
                   _esc(cls.doc)]
            if res is not None and res.out_shape is not None:
                tip.append(f"output {self.shape_text} · {self.params_text}"
                           + (f" · {fmt_count(res.macs)} MACs" if res.macs else ""))
            for m in res.messages if res is not None else []:
                colour = (self.look.error if m.severity == ERROR else self.look.warning).name()
                fix = f"<br><i>Fix: {_esc(m.fix.label)}</i>" if m.fix else ""
                tip.append(f"<span style='color:{colour}'>● {_esc(m.text)}</span>{fix}")
            self._tip = "<br>".join(t for t in tip if t)
        return self._tip

    def restyle(self) -> None:
        self.signature = None
        self.refresh()
        for p in (self.in_port, *self.out_ports):
            if p is not None:
                p.update()

    # ---- geometry and painting --------------------------------------------------------------

    _CARD = QRectF(-NODE_W / 2, -NODE_H / 2, NODE_W, NODE_H)
    _BOUNDS = _CARD.adjusted(-8, -10, 10, 8)

    def card_rect(self) -> QRectF:
        return QRectF(self._CARD)

    def boundingRect(self) -> QRectF:
        return self._BOUNDS

    def shape(self) -> QPainterPath:
        p = QPainterPath()
        p.addRoundedRect(self.card_rect(), RADIUS, RADIUS)
        return p

    def in_anchor(self) -> QPointF:
        return self.scenePos() + QPointF(0, -NODE_H / 2)

    def out_anchor(self, port: int = 0) -> QPointF:
        """Where edges leaving output `port` start."""
        return self.scenePos() + QPointF(port_x(port, len(self.out_ports)), NODE_H / 2)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        look = self.look
        r = self.card_rect()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        fam = look.family(self.type_name)
        if self.frozen:  # a frozen layer: its family colour washed towards ice blue
            fam = _mix(fam, look.frozen, 0.55)
        if lod < 0.2:  # very far away (a 700-layer net fitted): a coloured tile, nothing else
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(look.error if self.severity == "error" else fam)
            painter.drawRect(r)
            if selected:
                painter.setPen(QPen(look.accent, 6.0))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(r)
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.severity == "error":
            frame, width = look.error, 2.2
        elif self.severity == "warning":
            frame, width = look.warning, 2.0
        else:
            frame, width = look.border, 1.0
        if selected and not self.severity:
            frame, width = look.accent, 2.2

        # soft shadow, card, header strip
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(look.shadow)
        painter.drawRoundedRect(r.translated(0, 2.5), RADIUS, RADIUS)
        painter.setBrush(look.frozen_card if self.frozen else look.card)
        painter.drawRoundedRect(r, RADIUS, RADIUS)
        painter.save()  # header strip: the card's rounded top, clipped (cheaper than path ops)
        painter.setClipRect(QRectF(r.left() - 1, r.top() - 1, r.width() + 2, HEADER_H + 1),
                            Qt.ClipOperation.IntersectClip)  # inside an export strip's clip
        painter.setBrush(fam)
        painter.drawRoundedRect(r, RADIUS, RADIUS)
        painter.restore()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(frame, width))
        painter.drawRoundedRect(r, RADIUS, RADIUS)
        if selected:  # a halo outside, so an error's red frame stays visible
            halo = QColor(look.accent)
            halo.setAlphaF(0.45 if self.severity else 0.28)
            painter.setPen(QPen(halo, 3.0))
            painter.drawRoundedRect(r.adjusted(-3.5, -3.5, 3.5, 3.5), RADIUS + 3, RADIUS + 3)

        ink = theme.header_text_color(fam)  # by contrast, legible on every family strip
        pad = 9.0
        if lod < DETAIL_LOD:  # far away: the type in big letters is all one can read
            painter.setPen(ink)
            f = QFont(look.f_title)
            f.setPointSizeF(13)
            painter.setFont(f)
            painter.drawText(QRectF(r.left() + pad, r.top(), r.width() - 2 * pad, HEADER_H),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             self.title)
            painter.setPen(look.error if self.severity == "error" else look.text)
            f.setPointSizeF(16)
            painter.setFont(f)
            painter.drawText(r.adjusted(pad, HEADER_H, -pad, -2), Qt.AlignmentFlag.AlignCenter,
                             self.shape_text)
            return

        # header: type label (bold) left, name right, lock when frozen
        painter.setPen(ink)
        hr = QRectF(r.left() + pad, r.top(), r.width() - 2 * pad, HEADER_H)
        name_right = hr.right()
        if self.frozen:
            _draw_lock(painter, QPointF(hr.right() - 5, hr.center().y()), ink)
            name_right -= 16
        title = self.title
        name_w = look.m_name.horizontalAdvance(self.name)
        if look.m_title.horizontalAdvance(title) + name_w + 12 > name_right - hr.left():
            title = self.type_name  # "Conv2d" leaves the long name more room
        title_w = look.m_title.horizontalAdvance(title)
        painter.setFont(look.f_title)
        painter.drawText(hr, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, title)
        painter.setFont(look.f_name)
        avail = name_right - (hr.left() + title_w + 10)
        name = look.m_name.elidedText(self.name, Qt.TextElideMode.ElideMiddle, max(avail, 10))
        c = QColor(ink)
        c.setAlphaF(0.85)
        painter.setPen(c)
        painter.drawText(QRectF(hr.left(), hr.top(), name_right - hr.left(), HEADER_H),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, name)

        # key parameters
        y = r.top() + HEADER_H + 3
        inner = r.width() - 2 * pad
        painter.setFont(look.f_desc)
        painter.setPen(look.muted)
        desc = look.m_desc.elidedText(self.desc, Qt.TextElideMode.ElideRight, inner)
        painter.drawText(QRectF(r.left() + pad, y, inner, 17),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, desc)

        # output shape, prominent; or the error in a few words
        y += 18
        row = QRectF(r.left() + pad, y, inner, 21)
        if self.severity == "error" and self.shape_text == "?":
            painter.setFont(look.f_desc)
            painter.setPen(look.error)
            text = look.m_desc.elidedText(self.first_message, Qt.TextElideMode.ElideRight,
                                          inner - 4)
            painter.drawText(row, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             text)
        else:
            painter.setFont(look.f_shape)
            painter.setPen(look.text if self.shape_text != "?" else look.muted)
            shape = look.m_shape.elidedText(self.shape_text, Qt.TextElideMode.ElideRight, inner)
            painter.drawText(row, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             shape)
        # receptive field (small) and parameter count
        y += 21
        small = QRectF(r.left() + pad, y, inner, 14)
        painter.setFont(look.f_small)
        painter.setPen(look.muted)
        painter.drawText(small, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                         self.rf_text)
        painter.setFont(look.f_desc)
        painter.setPen(look.text if self.params_text and self.params_text[0].isdigit()
                       else look.muted)
        painter.drawText(small, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                         self.params_text)

        if self.severity:
            _draw_badge(painter, QPointF(r.right() - 1, r.top() + 1),
                        look.error if self.severity == "error" else look.warning, look.card)

    # ---- interaction ------------------------------------------------------------------------

    def itemChange(self, change, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemScenePositionHasChanged:
            scene = self.scene()
            if scene is not None:
                scene.cards_moved()
                if scene.bulk:  # many cards move at once: the scene routes the edges after
                    return super().itemChange(change, value)
            for e in self.edges:
                e.update_path()
        return super().itemChange(change, value)

    def hoverEnterEvent(self, event):
        self.setToolTip(self.tooltip_text())
        for e in self.edges:
            e.set_emphasis(True)

    def hoverLeaveEvent(self, event):
        for e in self.edges:
            e.set_emphasis(False)


class EdgeItem(QGraphicsItem):
    """A connection drawn as a smooth cubic curve, output port to input port, with the shape it
    carries on a small label at its middle."""

    def __init__(self, doc, edge: Edge, src: NodeItem, dst: NodeItem, look: Look):
        super().__init__()
        self.doc, self.edge, self.src, self.dst, self.look = doc, edge, src, dst, look
        # the cards the curve is drawn between: src and dst, or the collapsed blocks that hold
        # them (the scene sets these; a NodeItem or a BlockItem, both have in/out anchors)
        self.a, self.b = src, dst
        self.setFlags(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setZValue(0)
        self.setAcceptHoverEvents(True)
        self.path = QPainterPath()
        self.label = ""
        self.label_pos = QPointF()
        self.hot = False  # a dragged layer hovers over this edge (drop splices it in)
        self.emphasis = False
        self._bounds = QRectF()
        self._path_bounds = QRectF()
        self._label_w = 0.0
        self.show_label, self.label_side = True, 1
        src.edges.append(self)
        dst.edges.append(self)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the shape label; the curve itself only moves with the cards."""
        res = self.doc.validation.nodes.get(self.edge.src)
        shapes = res.out_shapes if res is not None else None
        k = self.edge.src_port  # the shape of the output this edge leaves from
        label = fmt_shape(shapes[k]) if shapes and k < len(shapes) else ""
        if label != self.label:
            self.label = label
            self._label_w = self.look.m_edge.horizontalAdvance(label) + 8
            self.prepareGeometryChange()
            self._update_bounds()
            self.update()

    def detach(self) -> None:
        for n in (self.src, self.dst):
            if self in n.edges:
                n.edges.remove(self)

    def _end_offset(self) -> float:
        """Several edges into one input port (Add, Concat) fan out along the card's top."""
        if self.b is not self.dst:
            return 0.0
        ins = sorted((e.edge.port, id(e)) for e in self.dst.edges
                     if e.b is self.dst and e.edge.dst == self.edge.dst and e.isVisible())
        if len(ins) < 2 or (self.edge.port, id(self)) not in ins:
            return 0.0
        k = ins.index((self.edge.port, id(self)))
        return (k - (len(ins) - 1) / 2) * 18.0

    def update_path(self) -> None:
        self.prepareGeometryChange()
        # a collapsed block has one output anchor; a card one per output port
        p1 = self.a.out_anchor(self.edge.src_port) if self.a is self.src else self.a.out_anchor()
        p2 = self.b.in_anchor() + QPointF(self._end_offset(), 0)
        self.path = edge_path(p1, p2, self._lane(p1, p2))
        self.label_pos = self.path.pointAtPercent(0.5)
        self.label_side = 1
        # fan-out: the edges leaving one output carry the same shape; one label by the port
        outs = [e for e in self.a.edges if e.a is self.a and e.isVisible()
                and (e.a is not self.src or e.edge.source == self.edge.source)]
        self.show_label = len(outs) < 2 or outs[0] is self
        # the labelled curve of a fan-out is drawn over its siblings: its label stays whole
        self.setZValue(0.01 if len(outs) > 1 and self.show_label else 0.0)
        if len(outs) > 1 and self.show_label:
            right = sum(e.b.x() > self.a.x() + 1 for e in outs)
            left = sum(e.b.x() < self.a.x() - 1 for e in outs)
            self.label_side = -1 if right > left else 1
            self.label_pos = p1 + QPointF(0, 13)
        elif self.b is self.dst and len(ins := [e for e in self.dst.edges if e.b is self.dst
                                                 and e is not self and e.isVisible()]):
            if abs(p2.x() - p1.x()) > NODE_W / 2:
                # one of several curves converging on a merge (Concat, Add): the middles of
                # the curves crowd above the merge card, so the label sits by the source's
                # port, on the side away from where its curve heads
                self.label_pos = p1 + QPointF(0, 13)
                self.label_side = -1 if p2.x() > p1.x() else 1
            else:
                # the straight one: its label on the side the other curves do not come from
                # (where a curve runs: its source, or the lane it takes round other cards)
                xs = [e.path.boundingRect().center().x() if not e.path.isEmpty() else e.a.x()
                      for e in ins]
                right = sum(x > self.b.x() + 1 for x in xs)
                left = sum(x < self.b.x() - 1 for x in xs)
                self.label_side = -1 if right > left else 1
        stroke = QPainterPathStroker()
        stroke.setWidth(10)
        self._shape = stroke.createStroke(self.path)
        self._path_bounds = self.path.boundingRect()
        self._update_bounds()
        self.update()

    def _update_bounds(self) -> None:
        b = self._path_bounds
        if self.label and self.show_label:
            b = b.united(self.label_rect())
        self._bounds = b.adjusted(-4, -4, 4, 4)

    def _lane(self, p1: QPointF, p2: QPointF) -> float | None:
        """A long edge whose straight curve would cross other cards goes round them: the x of
        the free lane beside them, or None."""
        scene = self.scene()
        if p2.y() - p1.y() < NODE_H * 1.6 or scene is None or getattr(scene, "bulk", False):
            return None
        x0, x1 = min(p1.x(), p2.x()) - 12, max(p1.x(), p2.x()) + 12
        y0, y1 = p1.y() + 12, p2.y() - 12
        hw, hh = NODE_W / 2, NODE_H / 2
        # the cards in the band, from the scene's y-sorted index (scene.items() would rebuild
        # Qt's index for every edge while many items move: open, auto layout)
        ys, cards = scene.card_index()
        lo, hi = bisect_left(ys, y0 - hh), bisect_right(ys, y1 + hh)
        blockers = [it for _, x, it in cards[lo:hi]
                    if x + hw > x0 and x - hw < x1 and it is not self.a and it is not self.b]
        if not blockers:
            return None
        rects = [b.sceneBoundingRect() for b in blockers]
        right = max(r.right() for r in rects) + 14
        left = min(r.left() for r in rects) - 14
        mid = (p1.x() + p2.x()) / 2
        return right if abs(right - mid) <= abs(left - mid) else left

    def label_rect(self) -> QRectF:
        """The shape label sits just right of the curve's middle, clear of the ports (a
        fan-out's single label: beside the output port, on the side with fewer curves)."""
        if self.label_side < 0:
            return QRectF(self.label_pos.x() - 7 - self._label_w, self.label_pos.y() - 8,
                          self._label_w, 16)
        return QRectF(self.label_pos.x() + 7, self.label_pos.y() - 8, self._label_w, 16)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def shape(self) -> QPainterPath:
        return self._shape

    def paint(self, painter: QPainter, option, widget=None) -> None:
        look = self.look
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        if lod < 0.2:  # far away: a hairline, no arrow head, no label
            pen = QPen(look.accent if (selected or self.emphasis) else look.edge, 0)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(self.path)
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.hot:
            colour, width = look.ok, 3.0
        elif selected:
            colour, width = look.accent, 2.6
        elif self.emphasis:
            colour, width = look.accent, 2.0
        else:
            colour, width = look.edge, 1.6
        painter.setPen(QPen(colour, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.path)
        # arrow head into the input port
        end = self.path.pointAtPercent(1.0)
        painter.setBrush(colour)
        painter.setPen(Qt.PenStyle.NoPen)
        tip = QPainterPath()
        tip.moveTo(end + QPointF(0, -PORT_R))
        tip.lineTo(end + QPointF(-4.5, -PORT_R - 7))
        tip.lineTo(end + QPointF(4.5, -PORT_R - 7))
        tip.closeSubpath()
        painter.drawPath(tip)
        if self.label and self.show_label and lod >= DETAIL_LOD:
            painter.setFont(look.f_edge)
            rect = self.label_rect()
            bg = QColor(look.canvas)
            bg.setAlpha(225)
            painter.setBrush(bg)
            painter.drawRoundedRect(rect, 4, 4)
            painter.setPen(colour if (selected or self.hot or self.emphasis)
                           else look.edge_label)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.label)

    def set_hot(self, hot: bool) -> None:
        if hot != self.hot:
            self.hot = hot
            self.update()

    def set_emphasis(self, on: bool) -> None:
        if on != self.emphasis:
            self.emphasis = on
            self.update()

    def hoverEnterEvent(self, event):
        self.set_emphasis(True)

    def hoverLeaveEvent(self, event):
        self.set_emphasis(False)


def port_x(index: int, count: int) -> float:
    """x of output port `index` of `count` on a card, relative to its centre: one port in the
    middle, several spread evenly along the bottom edge."""
    return (index + 1) * NODE_W / (count + 1) - NODE_W / 2


def edge_path(p1: QPointF, p2: QPointF, lane: float | None = None) -> QPainterPath:
    """Cubic curve leaving p1 downwards and entering p2 from above; through `lane` (an x) when
    the direct curve would cross cards. Backward edges (p2 above p1) loop round."""
    path = QPainterPath(p1)
    dy = p2.y() - p1.y()
    if lane is not None:
        bend = 36.0
        path.cubicTo(QPointF(p1.x(), p1.y() + bend), QPointF(lane, p1.y() + bend * 0.2),
                     QPointF(lane, p1.y() + bend * 1.6))
        path.lineTo(QPointF(lane, p2.y() - bend * 1.6))
        path.cubicTo(QPointF(lane, p2.y() - bend * 0.2), QPointF(p2.x(), p2.y() - bend), p2)
        return path
    k = max(abs(dy) * 0.5, 40.0) if dy > 0 else max(80.0, abs(dy) * 0.3)
    path.cubicTo(QPointF(p1.x(), p1.y() + k), QPointF(p2.x(), p2.y() - k), p2)
    return path


def _draw_badge(painter: QPainter, c: QPointF, colour: QColor, ring: QColor) -> None:
    painter.setPen(QPen(ring, 2))
    painter.setBrush(colour)
    painter.drawEllipse(c, 8, 8)
    painter.setPen(QPen(QColor("#ffffff"), 2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    painter.drawLine(c + QPointF(0, -4), c + QPointF(0, 1))
    painter.drawPoint(c + QPointF(0, 4))


def _draw_lock(painter: QPainter, c: QPointF, colour: QColor) -> None:
    painter.setPen(QPen(colour, 1.4))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawArc(QRectF(c.x() - 3.2, c.y() - 7, 6.4, 8), 0, 180 * 16)
    painter.setBrush(colour)
    painter.drawRoundedRect(QRectF(c.x() - 4.5, c.y() - 2.5, 9, 7), 1.5, 1.5)


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    """a + t·(b − a), per channel."""
    return QColor(round(a.red() + t * (b.red() - a.red())),
                  round(a.green() + t * (b.green() - a.green())),
                  round(a.blue() + t * (b.blue() - a.blue())))


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

