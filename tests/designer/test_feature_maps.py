"""Feature-map inspector: map count and values against a direct computation for a hand-set
edge kernel, statistics, filters, the kernel lesson, the drawing pad, weights set by hand."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from designer.document import Document
from designer.drawing_pad import CANVAS, mnist_like
from designer.feature_maps import FeatureMapPanel
from designer.map_images import fit_image, map_stats
from engine.data import load_mnist
from engine.nn.network import Network
from engine.zoo import lesson_kernels
from engine.zoo.examples import load_example
from tests.engine.test_lesson_kernels import correlate


@pytest.fixture
def panel(qtbot):
    doc = Document(load_example("lenet5"))
    p = FeatureMapPanel(doc)
    qtbot.addWidget(p)
    p.resize(1000, 600)
    p.show()
    yield p
    p.shutdown()


def shown(qtbot, p):
    p.refresh()  # what the debounce timer runs
    qtbot.wait(10)


def test_hand_set_vertical_edge_kernel_maps_match_direct_computation(qtbot, panel):
    doc = panel.doc
    net = Network.compile(doc.graph, np.random.default_rng(1))
    k = lesson_kernels.preset("vertical_edge")
    doc.set_weights(lesson_kernels.with_kernels(net.state_dict(), "conv1", {0: k, 3: k.T}))
    panel.sample.setValue(0)
    panel.set_node("conv1")
    shown(qtbot, panel)
    assert panel.grid.count == 6  # LeNet-5's conv1 has 6 filters
    assert panel.notice.text() == ""  # trained / set weights: no "untrained" notice
    img = load_mnist("test", limit=1).x[0, 0]
    k5 = lesson_kernels.fit_kernel(k, (5, 5))
    expected0 = correlate(img, k5, pad=2)
    expected3 = correlate(img, k5.T, pad=2)
    np.testing.assert_allclose(panel.grid.maps[0], expected0, atol=1e-5)
    np.testing.assert_allclose(panel.grid.maps[3], expected3, atol=1e-5)
    assert np.abs(expected0).max() > 0.5  # the digit has edges: a meaningful comparison
    # the statistics row of map 1 reads the same numbers
    assert float(panel.stats.item(0, 1).text()) == pytest.approx(expected0.min(), rel=2e-3)
    assert float(panel.stats.item(0, 2).text()) == pytest.approx(expected0.max(), rel=2e-3)
    assert panel.stats.rowCount() == 6
    # after ReLU: the same maps clipped at zero, and the zero fraction shown
    panel.set_node("relu1")
    np.testing.assert_allclose(panel.grid.maps[0], np.maximum(expected0, 0), atol=1e-5)
    zeros = float(panel.stats.item(0, 4).text().rstrip("%")) / 100
    assert zeros == pytest.approx(np.mean(expected0 <= 0), abs=0.006)
    # pooling halves the size
    panel.set_node("pool1")
    assert panel.grid.maps.shape == (6, 14, 14)
    # the output probabilities sum to one
    assert panel.probs.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert len(panel.probs.probs) == 10


def test_untrained_notice_filters_and_vector_layers(qtbot, panel):
    panel.set_node("conv2")
    shown(qtbot, panel)
    assert "untrained" in panel.notice.text()
    assert panel.grid.count == 16
    panel.tabs.setCurrentIndex(1)
    assert panel.filter_grid.count == 16 * 6  # every filter × input channel
    w = panel.network().layers["conv2"].weights["weight"]
    np.testing.assert_array_equal(panel.filter_grid.maps[7], w[1, 1])
    panel.tabs.setCurrentIndex(0)
    panel.set_node("fc1")  # a vector: bars, one per unit (not a 1×120 image strip)
    assert panel.maps_stack.currentWidget() is panel.unit_bars
    assert panel.grid.count == 0
    x = panel.current_input()
    expected = panel.network().forward(x[None], keep=True)["fc1"][0]
    np.testing.assert_allclose(panel.unit_bars.values, expected, atol=1e-6)
    heights = panel.unit_bars.bars.opts["height"]
    np.testing.assert_allclose(heights, expected, atol=1e-6)
    assert list(panel.unit_bars.bars.opts["x"]) == list(range(1, 121))
    assert panel.stats.rowCount() == 1
    assert float(panel.stats.item(0, 2).text()) == pytest.approx(expected.max(), rel=2e-3)
    texts = []
    panel.unit_bars.hovered.connect(texts.append)
    vb = panel.unit_bars.getPlotItem().vb
    qtbot.wait(20)
    from PySide6.QtCore import QPointF
    panel.unit_bars._on_mouse_moved(vb.mapViewToScene(QPointF(7, 0)))
    assert texts and texts[-1].startswith("unit 7") and f"{expected[6]:.4g}" in texts[-1]
    panel.set_node("conv2")  # back to maps
    assert panel.maps_stack.currentWidget() is panel.grid and panel.grid.count == 16
    panel.set_node(None)
    assert panel.grid.count == 0


def test_map_stats_direct():
    maps = np.array([[[-1, 0], [2, 3]], [[0, 0], [0, 4]]], np.float32)
    s = map_stats(maps)
    np.testing.assert_allclose(s[0], [-1, 3, 1, 0.5])
    np.testing.assert_allclose(s[1], [0, 4, 1, 0.75])


def test_kernel_lesson_stages_match_direct_computation(qtbot, panel):
    panel.sample.setValue(3)
    shown(qtbot, panel)
    panel.tabs.setCurrentIndex(2)
    lesson = panel.lesson
    i = lesson.preset.findData("sobel_y")
    lesson.preset.setCurrentIndex(i)
    img = load_mnist("test", limit=4).x[3, 0]
    ref = correlate(img, lesson_kernels.preset("sobel_y"), pad=1)
    np.testing.assert_allclose(lesson.outputs["conv"], ref, atol=1e-5)
    np.testing.assert_allclose(lesson.outputs["relu"], np.maximum(ref, 0), atol=1e-5)
    pooled = np.maximum(ref, 0).reshape(14, 2, 14, 2).max(axis=(1, 3))
    np.testing.assert_allclose(lesson.outputs["pool"], pooled, atol=1e-5)
    # typing numbers: the middle cell becomes 1, the rest stays sobel_y
    lesson.editor.item(1, 1).setText("1")
    k = lesson_kernels.preset("sobel_y")
    k[1, 1] = 1
    np.testing.assert_allclose(lesson.outputs["conv"], correlate(img, k, pad=1), atol=1e-5)
    # a typo is reported, the last good maps stay
    lesson.editor.item(0, 0).setText("x")
    assert "not a number" in lesson.error.text()
    # clicking a map of the preset gallery picks that preset
    lesson.gallery.clicked.emit(list(lesson_kernels.PRESETS).index("laplacian"))
    assert lesson.preset.currentData() == "laplacian"
    np.testing.assert_allclose(lesson.outputs["conv"],
                               correlate(img, lesson_kernels.preset("laplacian"), pad=1), atol=1e-5)


def test_apply_kernel_to_layer_and_restore(qtbot, panel):
    doc = panel.doc
    panel.set_node("conv1")
    shown(qtbot, panel)
    assert doc.weights is None
    panel.apply_kernel_to_layer(lesson_kernels.preset("laplacian"), 2)
    np.testing.assert_allclose(doc.weights["conv1.weight"][2, 0],
                               lesson_kernels.fit_kernel(lesson_kernels.preset("laplacian"), (5, 5)))
    assert doc.weights["conv1.bias"][2] == 0
    shown(qtbot, panel)
    img = load_mnist("test", limit=1).x[0, 0]
    np.testing.assert_allclose(panel.grid.maps[2], correlate(
        img, lesson_kernels.fit_kernel(lesson_kernels.preset("laplacian"), (5, 5)), 2), atol=1e-5)
    assert panel.restore_weights()
    assert doc.weights is None
    panel.set_node("relu1")
    with pytest.raises(ValueError, match="convolution layer"):
        panel.apply_kernel_to_layer(lesson_kernels.preset("laplacian"), 0)


def test_drawing_pad_gives_a_centred_mnist_like_digit(qtbot, panel):
    panel.source.setCurrentIndex(2)
    panel.set_node("conv1")
    panel.pad.draw_stroke([(60, 30), (80, 150), (90, 250)])  # an off-centre stroke
    shown(qtbot, panel)
    x = panel._x
    assert x.shape == (1, 28, 28) and x.max() > 0.5
    yy, xx = np.mgrid[0:28, 0:28]
    cy, cx = (yy * x[0]).sum() / x[0].sum(), (xx * x[0]).sum() / x[0].sum()
    assert abs(cy - 13.5) < 1.5 and abs(cx - 13.5) < 1.5
    rows = np.flatnonzero(x[0].max(axis=1) > 0.05)
    assert rows[-1] - rows[0] + 1 <= 21  # fits the 20-pixel box like MNIST
    assert panel.grid.count == 6
    panel.pad.clear()
    assert mnist_like(np.zeros((CANVAS, CANVAS))).max() == 0


def test_fit_image_shapes():
    grey = np.random.default_rng(0).uniform(size=(40, 30)).astype(np.float32)
    assert fit_image(grey, (1, 28, 28)).shape == (1, 28, 28)
    rgb = fit_image(grey, (3, 32, 32))
    assert rgb.shape == (3, 32, 32)
    np.testing.assert_array_equal(rgb[0], rgb[2])
    back = fit_image(np.stack([grey] * 3, axis=-1), (1, 40, 30))
    np.testing.assert_allclose(back[0], grey, atol=1e-6)


def test_big_networks_run_in_a_worker_thread(qtbot, panel, monkeypatch):
    import designer.feature_maps as fm

    monkeypatch.setattr(fm, "BIG_NET_MACS", 1)  # LeNet-5 counts as big
    panel.set_node("conv1")
    with qtbot.waitSignal(panel.computed, timeout=30_000):
        panel.refresh()
        assert panel._thread is not None  # the forward pass left the GUI thread
    assert panel.grid.count == 6
    qtbot.waitUntil(lambda: panel._thread is None, timeout=10_000)


def test_hover_reports_the_value_under_the_cursor(qtbot, panel):
    from PySide6.QtCore import QPointF

    panel.set_node("conv1")
    shown(qtbot, panel)
    qtbot.wait(50)  # layout
    texts = []
    panel.grid.hovered.connect(texts.append)
    vb = panel.grid.cells[2][0]
    row, col = 9, 17
    panel.grid._on_mouse_moved(vb.mapViewToScene(QPointF(col + 0.5, row + 0.5)))
    assert texts and f"row {row}, column {col}" in texts[-1]
    assert f"{panel.grid.maps[2][row, col]:.4g}" in texts[-1]
    assert texts[-1].startswith("3")  # the third map


def test_fits_a_narrow_dock_and_a_low_wide_one(qtbot):
    from PySide6.QtWidgets import QScrollArea

    p = FeatureMapPanel(Document(load_example("lenet5")))
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(p)
    qtbot.addWidget(area)
    area.resize(400, 900)
    area.show()
    qtbot.waitExposed(area)
    qtbot.wait(20)
    assert p.narrow == "narrow"
    assert area.horizontalScrollBar().maximum() == 0  # nothing cut off at the right
    assert p.left.geometry().bottom() < p.tabs.geometry().top()  # stacked
    area.resize(1500, 300)  # a bottom dock
    qtbot.wait(20)
    assert p.narrow == "short"
    assert p.left.geometry().right() < p.tabs.geometry().left()  # side by side
    # the input source is not clipped ("Dataset samp…")
    text_w = p.source.fontMetrics().horizontalAdvance(p.source.currentText())
    assert p.source.width() >= text_w + 20  # the text and the arrow
    assert p.height() <= 320
    p.shutdown()


def test_drawing_pad_preview_shows_exactly_what_the_network_is_fed(qtbot, panel, monkeypatch):
    panel.source.setCurrentIndex(2)
    panel.set_node("conv1")
    net = panel.network()
    fed = []
    forward = net.forward
    monkeypatch.setattr(net, "forward", lambda x, **kw: fed.append(x.copy()) or forward(x, **kw))
    panel.pad.draw_stroke([(60, 30), (80, 150), (90, 250), (200, 240)])
    shown(qtbot, panel)
    assert fed and fed[-1].shape == (1, 1, 28, 28)
    first = fed[-1]
    x = first[0, 0]
    preview = panel.pad_preview
    assert preview.isVisible()
    img = preview.grab().toImage()
    t = preview.target()
    scale = t.width() / 28
    assert scale == int(scale) and scale >= 2  # crisp: whole screen pixels per input pixel
    grabbed = np.array([[img.pixelColor(int(t.x() + (j + 0.5) * scale),
                                        int(t.y() + (i + 0.5) * scale)).red()
                         for j in range(28)] for i in range(28)])
    np.testing.assert_array_equal(grabbed, np.rint(np.clip(x, 0, 1) * 255))
    assert grabbed.max() > 128 and (grabbed == 0).sum() > 300  # a drawing, not blank
    # updated as the user draws: another stroke changes the preview with the input
    panel.pad.draw_stroke([(20, 20), (260, 20)])
    shown(qtbot, panel)
    assert not np.array_equal(first, fed[-1])
    img = preview.grab().toImage()
    again = np.array([[img.pixelColor(int(t.x() + (j + 0.5) * scale),
                                      int(t.y() + (i + 0.5) * scale)).red()
                       for j in range(28)] for i in range(28)])
    np.testing.assert_array_equal(again, np.rint(np.clip(fed[-1][0, 0], 0, 1) * 255))
