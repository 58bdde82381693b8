"""The feature-map inspector's Explain tab: Grad-CAM or saliency of the current input's
prediction for a chosen class, at the selected layer (engine.explain), computed off the GUI
thread and drawn over the input."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from engine.explain import explain, explain_network, jet, spatial_layers

from .workers import FunctionWorker, start_worker, stop_thread


def _compute(graph, weights, x, method, class_index, layer):
    """In the worker: (explanation, layer name) for one (C, H, W) input."""
    net = explain_network(graph, weights)
    if method == "gradcam" and layer not in spatial_layers(net):
        layer = None  # the selection has no spatial output: the default layer
    e = explain(net, x, method, class_index, layer)
    return e, (net.graph.nodes[e.layer].name if e.layer else None)


class ExplainTab(QWidget):
    """Method, class (or the top prediction) and the heatmap over the panel's input."""

    def __init__(self, panel):
        super().__init__(panel)
        from .feature_maps import image_view

        self.panel = panel
        self._thread = self._worker = None
        self._pending = False
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
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
        for w in (QLabel("Explain:"), self.method, self.klass):
            row.addWidget(w)
        row.addStretch(1)
        self.view, self.vb, self.img = image_view()
        self.caption = QLabel("Select a layer with spatial output (Grad-CAM), or any layer.")
        self.caption.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(row)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.caption)
        self.method.currentIndexChanged.connect(self.refresh)
        self.klass.valueChanged.connect(self.refresh)

    def refresh(self, *_) -> None:
        """Recompute for the panel's current input, class and layer (in a worker thread)."""
        if not self.isVisible():
            return
        x = getattr(self.panel, "_x", None)
        if x is None:
            self.caption.setText("No input: choose an MNIST sample, an image or draw.")
            return
        if self._thread is not None:
            self._pending = True
            return
        doc = self.panel.doc
        k = self.klass.value()
        self.caption.setText("computing…")
        self._worker = FunctionWorker(_compute, doc.graph.copy(), dict(doc.weights or {}),
                                      np.array(x), self.method.currentData(),
                                      None if k < 0 else k, self.panel.node_id)
        self._worker.finished.connect(self._show)
        self._worker.failed.connect(self.caption.setText)
        self._worker.done.connect(self._done)
        self._thread = start_worker(self._worker, self)

    def _done(self) -> None:
        stop_thread(self._thread)
        self._thread = self._worker = None
        if self._pending:
            self._pending = False
            self.refresh()

    def _show(self, result) -> None:
        e, layer = result
        x = np.asarray(getattr(self.panel, "_x", None), np.float32)
        grey = x.mean(axis=0) if x.ndim == 3 else x
        lo, hi = float(grey.min()), float(grey.max())
        grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
        photo = np.repeat(grey[..., None] * 255, 3, axis=2)
        rgb = 0.5 * photo + 0.5 * jet(e.heatmap)
        self.img.setImage(np.clip(rgb, 0, 255).astype(np.uint8), levels=(0, 255))
        self.vb.autoRange(padding=0)
        where = f" at '{layer}'" if layer else ""
        self.caption.setText(f"{'Grad-CAM' if e.method == 'gradcam' else 'Saliency'} of class "
                             f"{e.class_index}{where}: probability {e.probability:.1%}, logit "
                             f"{e.score:.3f}. Red: raises the score most."
                             + ("".join(f" {n}" for n in e.notes)))

    def shutdown(self) -> None:
        stop_thread(self._thread)
        self._thread = self._worker = None
