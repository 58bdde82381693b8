"""The feature-map inspector's Explain tab: Grad-CAM or saliency of the current input's
prediction for a chosen class, at the selected layer (engine.explain), computed off the GUI
thread and drawn over the input (the photo itself when the input is one).

Each request has a number; a result arrives only for the latest one. A new request while one is
computing (another class, layer or input) supersedes it, and Cancel drops it: the superseded
computation finishes in its thread (a single forward and backward pass cannot be interrupted)
and its result is thrown away, never shown."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.explain import explain, explain_network, jet, overlay, spatial_layers

from .workers import FunctionWorker, start_worker, stop_thread


def _compute(graph, weights, x, method, class_index, layer):
    """In the worker: (explanation, layer name) for one (C, H, W) input."""
    net = explain_network(graph, weights)
    if method == "gradcam" and layer not in spatial_layers(net):
        layer = None  # the selection has no spatial output: the default layer
    e = explain(net, x, method, class_index, layer)
    return e, (net.graph.nodes[e.layer].name if e.layer else None)


class HeatmapView(QWidget):
    """One RGB image drawn as large as fits, aspect kept, at the top left; small inputs are
    enlarged without smoothing so their pixels stay visible. `image`: the (H, W, 3) uint8 shown
    (None: nothing)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self._qimage: QImage | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)

    def set_image(self, rgb: np.ndarray | None) -> None:
        self.image = None if rgb is None else np.ascontiguousarray(rgb, np.uint8)
        if self.image is None:
            self._qimage = None
        else:
            h, w, _ = self.image.shape
            self._qimage = QImage(self.image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(240, 240)

    def target_rect(self) -> QRectF:
        """Where the image is drawn: the largest aspect-kept rectangle, top left."""
        if self._qimage is None:
            return QRectF()
        iw, ih = self._qimage.width(), self._qimage.height()
        scale = min(self.width() / iw, self.height() / ih)
        return QRectF(0, 0, iw * scale, ih * scale)

    def paintEvent(self, _event):
        if self._qimage is None:
            return
        p = QPainter(self)
        rect = self.target_rect()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform,
                        min(self._qimage.width(), self._qimage.height()) >= 96)
        p.drawImage(rect, self._qimage)
        p.end()


def _legend() -> QLabel:
    """The colour scale: a jet bar from 'low' to 'high'."""
    bar = jet(np.repeat(np.linspace(0, 1, 160, dtype=np.float32)[None], 10, axis=0))
    img = QImage(np.ascontiguousarray(bar).data, 160, 10, 480, QImage.Format.Format_RGB888).copy()
    label = QLabel()
    label.setPixmap(QPixmap.fromImage(img))
    label.setToolTip("Blue: no effect on the class's score; red: raises it most.")
    return label


class ExplainTab(QWidget):
    """Method, class (or the top prediction) and the heatmap over the panel's input."""

    def __init__(self, panel):
        super().__init__(panel)
        self.panel = panel
        self._thread = self._worker = None
        self._request = 0  # the latest request's number; results of older ones are dropped
        self._pending = False  # a request waits for the running one's thread to end
        self.method = QComboBox()
        self.method.addItem("Grad-CAM", "gradcam")
        self.method.addItem("Saliency", "saliency")
        self.method.setToolTip("Grad-CAM: the layer's maps weighted by the class score's "
                               "gradient. Saliency: the gradient's size at each input pixel. "
                               "The score is the class's logit (before Softmax).")
        self.klass = QSpinBox()
        self.klass.setRange(-1, 9999)
        self.klass.setSpecialValueText("top prediction")
        self.klass.setValue(-1)
        self.klass.setPrefix("class ")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Drop the explanation being computed.")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.img = HeatmapView()
        self.caption = QLabel("Select a layer with spatial output (Grad-CAM), or any layer.")
        self.caption.setWordWrap(True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

        # wide and short docks: the picture on the left, the controls and words beside it
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Explain:"))
        row.addWidget(self.method)
        row.addWidget(self.klass)
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        side.addLayout(row)
        side.addWidget(self.caption)
        legend = QHBoxLayout()
        legend.addWidget(QLabel("low"))
        legend.addWidget(_legend())
        legend.addWidget(QLabel("high"))
        legend.addStretch(1)
        side.addLayout(legend)
        side.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(10)
        lay.addWidget(self.img, 3)
        lay.addLayout(side, 2)
        self.method.currentIndexChanged.connect(self.refresh)
        self.klass.valueChanged.connect(self.refresh)

    def refresh(self, *_) -> None:
        """Recompute for the panel's current input, class and layer (in a worker thread); a
        computation still running is superseded (its result dropped)."""
        if not self.isVisible():
            return
        x = getattr(self.panel, "_x", None)
        if x is None:
            self._drop()
            self.img.set_image(None)
            self.caption.setText("No input: choose an MNIST sample, an image or draw.")
            return
        self._request += 1
        self.caption.setText("computing…")
        self.cancel_button.setVisible(True)
        if self._thread is not None:  # starts when the running one's thread has ended
            self._worker.cancel()
            self._pending = True
            return
        self._start()

    def _start(self) -> None:
        x = getattr(self.panel, "_x", None)
        if x is None:
            self.cancel_button.setVisible(False)
            return
        doc = self.panel.doc
        k = self.klass.value()
        self._worker = FunctionWorker(_compute, doc.graph.copy(), dict(doc.weights or {}),
                                      np.array(x), self.method.currentData(),
                                      None if k < 0 else k, self.panel.node_id,
                                      tag=(self._request, np.array(x)))
        self._worker.finished.connect(self._show)
        self._worker.failed.connect(self._failed)
        self._worker.done.connect(self._done)
        self._thread = start_worker(self._worker, self)

    def cancel(self) -> None:
        """Drop the explanation being computed (Cancel)."""
        self._drop()
        self.caption.setText("Cancelled. Change the class, method, layer or input to explain "
                             "again.")

    def _drop(self) -> None:
        self._request += 1
        self._pending = False
        if self._worker is not None:
            self._worker.cancel()
        self.cancel_button.setVisible(False)

    def _current(self) -> bool:
        """Whether the finishing worker computed the latest request."""
        w = self.sender()
        return w is not None and w is self._worker and w.tag[0] == self._request

    def _done(self) -> None:
        stop_thread(self._thread)
        self._thread = self._worker = None
        if self._pending:
            self._pending = False
            self._start()

    def _failed(self, text: str) -> None:
        if self._current():
            self.cancel_button.setVisible(False)
            self.caption.setText(text)

    def _show(self, result) -> None:
        if not self._current():
            return  # superseded or cancelled: never shown
        self.cancel_button.setVisible(False)
        e, layer = result
        x = self.sender().tag[1]
        self.img.set_image(overlay(self._picture(x), e.heatmap))
        where = f" at '{layer}'" if layer else ""
        self.caption.setText(f"{'Grad-CAM' if e.method == 'gradcam' else 'Saliency'} of class "
                             f"{e.class_index}{where}: probability {e.probability:.1%}, logit "
                             f"{e.score:.3f}."
                             + ("".join(f" {n}" for n in e.notes)))

    def _picture(self, x: np.ndarray) -> np.ndarray:
        """What the heatmap is drawn over: the photo as the model sees it (resized and
        cropped, RGB) when the input is one, else the input's mean over channels, stretched
        to 0..255 grey."""
        cache = getattr(self.panel, "_photo_cache", None)
        photo = getattr(self.panel, "_photo", None)
        if photo is not None and cache is not None and cache[0] == photo and \
                np.array_equal(cache[2], x):
            spec, pixels = cache[1], cache[3]
            return pixels[..., ::-1] if spec.channels == "BGR" else pixels
        grey = x.mean(axis=0) if x.ndim == 3 else x
        lo, hi = float(grey.min()), float(grey.max())
        grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
        return (grey * 255 + 0.5).astype(np.uint8)

    def shutdown(self) -> None:
        self._drop()
        stop_thread(self._thread)
        self._thread = self._worker = None
