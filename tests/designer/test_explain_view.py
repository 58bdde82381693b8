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


def _explain_panel(qtbot, monkeypatch):
    """A LeNet-5 panel on its Explain tab whose computations wait for `gate` (so a test can act
    while one is running); `shown` records the images drawn."""
    import threading

    from designer import explain_view

    gate, started = threading.Event(), []
    real = explain_view._compute

    def slow(*args):
        started.append(args[4])  # the class asked for
        gate.wait(10)
        return real(*args)

    monkeypatch.setattr(explain_view, "_compute", slow)
    doc = Document(load_example("lenet5"))
    p = FeatureMapPanel(doc)
    qtbot.addWidget(p)
    p.resize(1280, 300)
    p.show()
    p.refresh()
    p.set_node(next(n.id for n in doc.graph.nodes.values() if n.type_name == "Conv2d"))
    shown = []
    real_set = p.explain_tab.img.set_image
    monkeypatch.setattr(p.explain_tab.img, "set_image",
                        lambda rgb: shown.append(rgb) or real_set(rgb))
    return p, gate, started, shown


def test_a_superseded_request_drops_its_result(qtbot, monkeypatch):
    p, gate, started, shown = _explain_panel(qtbot, monkeypatch)
    tab = p.explain_tab
    tab.klass.setValue(1)
    p.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: len(started) == 1, timeout=5000)
    tab.klass.setValue(2)  # while class 1 (or the first request) is computing
    tab.klass.setValue(3)
    assert tab.cancel_button.isVisibleTo(tab)
    gate.set()
    qtbot.waitUntil(lambda: "Grad-CAM of class 3" in tab.caption.text(), timeout=10000)
    qtbot.waitUntil(lambda: tab._thread is None, timeout=5000)
    assert started[-1] == 3 and 2 not in started  # 2 was superseded before it started
    assert len(shown) == 1 and not tab.cancel_button.isVisibleTo(tab)
    p.shutdown()


def test_cancel_drops_the_running_explanation(qtbot, monkeypatch):
    p, gate, started, shown = _explain_panel(qtbot, monkeypatch)
    tab = p.explain_tab
    p.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: len(started) == 1, timeout=5000)
    tab.cancel_button.click()
    assert "Cancelled" in tab.caption.text() and not tab.cancel_button.isVisibleTo(tab)
    gate.set()
    qtbot.waitUntil(lambda: tab._thread is None, timeout=10000)
    qtbot.wait(50)
    assert shown == [] and "Cancelled" in tab.caption.text()
    tab.klass.setValue(4)  # explains again
    qtbot.waitUntil(lambda: "of class 4" in tab.caption.text(), timeout=10000)
    assert len(shown) == 1
    p.shutdown()
