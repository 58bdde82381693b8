"""Line icons for the main toolbar, drawn with QPainter in the theme's text colour (crisp at any
scale, one consistent style, no image files)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

NAMES = ("new", "template", "open", "save", "undo", "redo", "layout", "fit", "zoom_in",
         "zoom_out", "collapse", "export")


def _draw(p: QPainter, name: str) -> None:
    """Draw `name` into a 24×24 box (2 px margins)."""
    if name == "new":
        path = QPainterPath(QPointF(6, 3))
        for x, y in ((14, 3), (19, 8), (19, 21), (6, 21)):
            path.lineTo(x, y)
        path.closeSubpath()
        p.drawPath(path)
        p.drawPolyline([QPointF(14, 3), QPointF(14, 8), QPointF(19, 8)])
    elif name == "template":
        for x, y in ((3, 3), (13, 3), (3, 13), (13, 13)):
            p.drawRoundedRect(QRectF(x, y, 8, 8), 1.5, 1.5)
    elif name == "open":
        path = QPainterPath(QPointF(3, 19))
        for x, y in ((3, 5), (9, 5), (11, 7), (19, 7), (19, 10)):
            path.lineTo(x, y)
        p.drawPath(path)
        path = QPainterPath(QPointF(3, 19))
        for x, y in ((6.5, 10), (22, 10), (18.5, 19)):
            path.lineTo(x, y)
        path.closeSubpath()
        p.drawPath(path)
    elif name == "save":
        path = QPainterPath(QPointF(4, 4))
        for x, y in ((17, 4), (20, 7), (20, 20), (4, 20)):
            path.lineTo(x, y)
        path.closeSubpath()
        p.drawPath(path)
        p.drawRect(QRectF(8, 4, 7, 5))
        p.drawRect(QRectF(7.5, 13, 9, 7))
    elif name in ("undo", "redo"):
        if name == "redo":
            p.translate(24, 0)
            p.scale(-1, 1)
        path = QPainterPath(QPointF(5, 10))
        path.lineTo(15, 10)
        path.cubicTo(21, 10, 21, 19, 15, 19)
        path.lineTo(10, 19)
        p.drawPath(path)
        p.drawPolyline([QPointF(9, 6), QPointF(5, 10), QPointF(9, 14)])
    elif name == "layout":
        for y in (2.5, 10, 17.5):
            p.drawRoundedRect(QRectF(6, y, 12, 4.5), 1.2, 1.2)
        p.drawLine(QPointF(12, 7), QPointF(12, 10))
        p.drawLine(QPointF(12, 14.5), QPointF(12, 17.5))
    elif name == "fit":
        for (x, y), (dx, dy) in zip(((3, 3), (21, 3), (3, 21), (21, 21)),
                                    ((1, 1), (-1, 1), (1, -1), (-1, -1))):
            p.drawPolyline([QPointF(x, y + 5 * dy), QPointF(x, y), QPointF(x + 5 * dx, y)])
        p.drawRect(QRectF(8, 8, 8, 8))
    elif name in ("zoom_in", "zoom_out"):
        p.drawEllipse(QRectF(3, 3, 13, 13))
        p.drawLine(QPointF(14.5, 14.5), QPointF(20.5, 20.5))
        p.drawLine(QPointF(6.5, 9.5), QPointF(12.5, 9.5))
        if name == "zoom_in":
            p.drawLine(QPointF(9.5, 6.5), QPointF(9.5, 12.5))
    elif name == "collapse":  # a stack of cards folded into one (a block card's look)
        p.drawPolyline([QPointF(8, 5), QPointF(8, 3), QPointF(21, 3), QPointF(21, 16),
                        QPointF(19, 16)])
        p.drawRoundedRect(QRectF(3, 7, 15, 14), 2, 2)
        p.drawLine(QPointF(7, 14), QPointF(14, 14))
    elif name == "export":
        p.drawPolyline([QPointF(9, 5), QPointF(4, 5), QPointF(4, 20), QPointF(19, 20),
                        QPointF(19, 15)])
        p.drawLine(QPointF(10, 14), QPointF(20, 4))
        p.drawPolyline([QPointF(14, 4), QPointF(20, 4), QPointF(20, 10)])


def tool_icon(name: str, colour: QColor) -> QIcon:
    """Icon `name` (one of NAMES) in `colour`, with a faded variant for disabled actions."""
    icon = QIcon()
    for mode, alpha in ((QIcon.Mode.Normal, 255), (QIcon.Mode.Disabled, 90)):
        for scale in (1, 2):
            pix = QPixmap(24 * scale, 24 * scale)
            pix.setDevicePixelRatio(scale)
            pix.fill(Qt.GlobalColor.transparent)
            p = QPainter(pix)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            c = QColor(colour)
            c.setAlpha(alpha)
            pen = QPen(c, 1.7)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            _draw(p, name)
            p.end()
            icon.addPixmap(pix, mode)
    return icon
