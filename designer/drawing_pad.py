"""A small pad to draw a digit with the mouse, turned into an MNIST-like input image."""

from __future__ import annotations

import itertools

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

CANVAS = 280  # internal resolution: 10× MNIST, so the brush stroke is smooth


def mnist_like(canvas: np.ndarray, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """(H, W) ink in [0, 1] -> (h, w) float32 prepared the way MNIST digits were: the ink's
    bounding box scaled to fit 20/28 of the image, then shifted so its centre of mass is at the
    centre. An empty canvas gives zeros."""
    from PIL import Image

    h, w = size
    ink = np.asarray(canvas, np.float32)
    rows, cols = np.nonzero(ink > 0.05)
    if len(rows) == 0:
        return np.zeros((h, w), np.float32)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    box = max(1, round(min(h, w) * 20 / 28))
    scale = box / max(crop.shape)
    ch, cw = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(
        (cw, ch), Image.Resampling.LANCZOS), np.float32) / 255.0
    out = np.zeros((h, w), np.float32)
    total = small.sum()
    if total > 0:
        yy, xx = np.mgrid[0:ch, 0:cw]
        cy, cx = (yy * small).sum() / total, (xx * small).sum() / total
    else:
        cy, cx = ch / 2, cw / 2
    top = round(h / 2 - cy - 0.5)
    left = round(w / 2 - cx - 0.5)
    top, left = min(max(top, 0), h - ch), min(max(left, 0), w - cw)
    out[top:top + ch, left:left + cw] = small
    return np.clip(out, 0, 1)


class DrawingPad(QWidget):
    """Draw with the left button, erase with the right one. `drawn` fires while drawing."""

    drawn = Signal()

    def __init__(self, parent: QWidget | None = None, brush: float = 22.0):
        super().__init__(parent)
        self.brush = brush
        self.image = QImage(CANVAS, CANVAS, QImage.Format.Format_Grayscale8)
        self.image.fill(0)
        self._last: QPointF | None = None
        self._erase = False
        self.setMinimumSize(96, 96)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Draw a digit with the left mouse button; the right button erases.")

    def sizeHint(self):
        from PySide6.QtCore import QSize
        return QSize(168, 168)

    # ---- data ----
    def ink(self) -> np.ndarray:
        """The canvas as (280, 280) float32 in [0, 1]."""
        ptr = self.image.constBits()
        arr = np.frombuffer(ptr, np.uint8, count=self.image.sizeInBytes())
        arr = arr.reshape(CANVAS, self.image.bytesPerLine())[:, :CANVAS]
        return arr.astype(np.float32) / 255.0

    def digit(self, size: tuple[int, int] = (28, 28)) -> np.ndarray:
        return mnist_like(self.ink(), size)

    def is_empty(self) -> bool:
        return not (self.ink() > 0.05).any()

    def clear(self) -> None:
        self.image.fill(0)
        self.update()
        self.drawn.emit()

    def draw_stroke(self, points: list[tuple[float, float]]) -> None:
        """Draw a polyline in canvas coordinates (0..280): for tests and demos."""
        p = QPainter(self.image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(255, 255, 255), self.brush, Qt.PenStyle.SolidLine,
                      Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        for a, b in itertools.pairwise(points):
            p.drawLine(QPointF(*a), QPointF(*b))
        p.end()
        self.update()
        self.drawn.emit()

    # ---- painting and mouse ----
    def _side(self) -> float:
        return float(min(self.width(), self.height()))

    def _to_canvas(self, pos) -> QPointF:
        s = self._side()
        ox, oy = (self.width() - s) / 2, (self.height() - s) / 2
        return QPointF((pos.x() - ox) * CANVAS / s, (pos.y() - oy) * CANVAS / s)

    def paintEvent(self, event):
        p = QPainter(self)
        s = self._side()
        target = QRectF((self.width() - s) / 2, (self.height() - s) / 2, s, s)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(target, self.image)
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(target.adjusted(0, 0, -1, -1))
        if self.is_empty():
            p.setPen(QColor(150, 150, 150))
            p.drawText(target, Qt.AlignmentFlag.AlignCenter, "draw a digit here")
        p.end()

    def _stroke_to(self, pos) -> None:
        q = self._to_canvas(pos)
        p = QPainter(self.image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        color = QColor(0, 0, 0) if self._erase else QColor(255, 255, 255)
        p.setPen(QPen(color, self.brush * (1.6 if self._erase else 1.0), Qt.PenStyle.SolidLine,
                      Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        p.drawLine(self._last if self._last is not None else q, q)
        p.end()
        self._last = q
        self.update()
        self.drawn.emit()

    def mousePressEvent(self, event):
        self._erase = event.button() == Qt.MouseButton.RightButton
        self._last = None
        self._stroke_to(event.position())

    def mouseMoveEvent(self, event):
        if event.buttons() & (Qt.MouseButton.LeftButton | Qt.MouseButton.RightButton):
            self._stroke_to(event.position())

    def mouseReleaseEvent(self, event):
        self._last = None


class InputPreview(QWidget):
    """The array the network is fed, drawn crisp: each value one block of pixels (nearest
    neighbour, whole-number scale where it fits `box`), grey for one channel, RGB for three."""

    def __init__(self, box: int = 56, parent: QWidget | None = None):
        super().__init__(parent)
        self.box = box
        self.image = QImage()
        self.setFixedSize(box + 2, box + 2)
        self.setToolTip("What the network sees: the drawing downsampled to the Input's size.")

    def set_array(self, x: np.ndarray | None) -> None:
        """(C, H, W) in [0, 1]; None shows nothing."""
        if x is None:
            self.image = QImage()
        else:
            a = np.ascontiguousarray(np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8))
            if a.shape[0] == 3:
                rgb = np.ascontiguousarray(a.transpose(1, 2, 0))
                h, w = rgb.shape[:2]
                self.image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
            else:
                h, w = a.shape[1:]
                self.image = QImage(a[0].data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        self.update()

    def target(self) -> QRectF:
        """Where the image is drawn inside the widget."""
        w, h = self.image.width(), self.image.height()
        scale = self.box / max(w, h, 1)
        if scale >= 1:
            scale = float(int(scale))
        sw, sh = w * scale, h * scale
        return QRectF(1 + (self.box - sw) / 2, 1 + (self.box - sh) / 2, sw, sh)

    def paintEvent(self, event):
        p = QPainter(self)
        if not self.image.isNull():
            t = self.target()
            p.drawImage(t, self.image)  # no smooth transform: nearest neighbour
            p.setPen(QPen(QColor(120, 120, 120), 1))
            p.drawRect(t.adjusted(-1, -1, 0, 0))
        p.end()
