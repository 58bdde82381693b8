"""The feature-map inspector's Explain tab: Grad-CAM / saliency of the current input computed in a
worker thread and drawn over it, the same numbers as engine.explain."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from designer.document import Document
from designer.feature_maps import FeatureMapPanel
from engine.explain import explain_network, grad_cam, saliency
from engine.zoo.examples import load_example


def test_explain_tab_shows_grad_cam_and_saliency_for_the_selected_layer(qtbot, tmp_path):
    doc = Document(load_example("lenet5"))
    p = FeatureMapPanel(doc)
    qtbot.addWidget(p)
    p.resize(1280, 720)
    p.show()
    p.refresh()
    conv = next(n.id for n in doc.graph.nodes.values() if n.type_name == "Conv2d")
    p.set_node(conv)
    p.tabs.setCurrentWidget(p.explain_tab)
    tab = p.explain_tab
    qtbot.waitUntil(lambda: "probability" in tab.caption.text(), timeout=10000)
    net = explain_network(doc.graph, doc.weights)
    want = grad_cam(net, p._x, None, conv)
    assert f"class {want.class_index} at '{doc.graph.nodes[conv].name}'" in tab.caption.text()
    assert f"{want.probability:.1%}" in tab.caption.text()
    shown = tab.img.image
    assert shown is not None and shown.shape[:2] == want.heatmap.shape
    p.grab().save(str(tmp_path / "gradcam.png"))
    tab.method.setCurrentIndex(1)
    tab.klass.setValue(3)
    qtbot.waitUntil(lambda: "Saliency of class 3" in tab.caption.text(), timeout=10000)
    s = saliency(net, p._x, 3)
    assert f"{s.probability:.1%}" in tab.caption.text()
    assert not np.array_equal(tab.img.image, shown)
    p.shutdown()
