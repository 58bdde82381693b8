"""No clipped or overlapping text (issue 16): the feature maps' prediction title and last class
at 1280×720, the curves' key out of the data, the confusion matrix's counts scaled to its room
(or read from a tooltip), long layer names elided with the full name in a tooltip."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QFont, QFontMetrics

pytest.importorskip("pytestqt")

from designer.commands import RenameNodeCommand
from designer.feature_maps import ProbabilityChart
from designer.training_panel import ConfusionMatrix


def test_prediction_title_and_classes_fit_the_feature_maps_dock(window, qtbot):
    window.resize(1280, 720)
    window.scene.select_nodes(["relu1"])
    window.show_dock("feature_maps")
    panel = window.panels["feature_maps"]
    qtbot.waitUntil(lambda: panel.probs.title_text.startswith(("prediction", "")) and
                    len(panel.probs.probs) == 10, timeout=5000)
    qtbot.wait(100)
    chart, top = panel.probs, panel.top_label
    assert chart.isVisible() and top.isVisible()
    right = chart.mapTo(panel, QPoint(chart.width(), 0)).x()
    if panel.narrow != "wide":  # side by side: the top-5 list starts after the chart
        assert right <= top.mapTo(panel, QPoint(0, 0)).x()
    font = QFont(chart.font())
    font.setPointSize(9)
    assert QFontMetrics(font).horizontalAdvance(chart.title_text) <= chart.width()
    assert "%" in chart.title_text and "prediction" in chart.toolTip()
    small = ProbabilityChart()  # very narrow: the short form, still whole
    qtbot.addWidget(small)
    small.setMinimumSize(0, 0)
    small.resize(90, 120)
    small.set_probabilities(np.full(10, 0.1), [f"class {i}" for i in range(10)])
    assert small.title_text == "class 0 (10%)"
    assert QFontMetrics(font).horizontalAdvance(small.title_text) <= 90


def test_curves_key_is_out_of_the_data(window, qtbot):
    window.show_dock("training")
    p = window.panels["training"]
    for plot in (p.loss_plot, p.acc_plot):
        assert plot.getPlotItem().legend is None  # no box drawn over the curves
        title = plot.getPlotItem().titleLabel.text
        assert "training" in title and "validation" in title


def test_confusion_counts_fit_their_cells_or_hide_in_a_tooltip(qtbot):
    m = ConfusionMatrix()
    qtbot.addWidget(m)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30, (10, 10))
    counts[np.arange(10), np.arange(10)] = 980
    m.set_matrix(counts)
    m.resize(520, 520)
    _l, _t, _side, cell = m._geometry()
    font = m.count_font(cell)
    assert font is not None and QFontMetrics(font).horizontalAdvance("980") <= cell - 4
    m.resize(160, 160)
    _l, _t, _side, cell = m._geometry()
    assert m.count_font(cell) is None  # "980" cannot fit a 10 px cell: hidden
    left, top, _side, cell = m._geometry()
    hit = m.cell_at(QPoint(int(left + 2.5 * cell), int(top + 2.5 * cell)))
    assert hit == (2, 2)
    assert m.cell_text(*hit) == f"true 2, predicted 2: 980 of {int(counts[2].sum()):,} " \
                                f"({980 / counts[2].sum():.1%})"
    assert m.cell_at(QPoint(1, 1)) is None


def test_long_layer_names_are_elided_with_the_full_name_in_tooltips(window, qtbot):
    long = "features.denseblock1.denselayer3.conv1.very_long_suffix"
    window.doc.push(RenameNodeCommand(window.doc, "conv1", long))
    qtbot.wait(10)
    assert long in window.scene.node_items["conv1"].tooltip_text()
    window.show_dock("summary")
    summary = window.panels["summary"]
    model = summary.model
    row = next(r for r in range(model.rowCount()) if model.index(r, 0).data() == long)
    assert long in model.index(row, 0).data(3)  # ToolTipRole
    from PySide6.QtCore import Qt
    assert summary.table.textElideMode() == Qt.TextElideMode.ElideMiddle


def test_confusion_matrix_follows_a_dark_palette_with_readable_counts(qtbot):
    from designer.theme import contrast_ratio, dark_palette

    m = ConfusionMatrix()
    qtbot.addWidget(m)
    m.setPalette(dark_palette())
    counts = np.array([[90, 6, 4], [30, 70, 0], [1, 2, 97]])
    m.set_matrix(counts)
    m.resize(400, 400)
    m.show()
    qtbot.waitExposed(m)
    base = dark_palette().base().color()
    img = m.grab().toImage()
    left, top, _side, cell = m._geometry()
    for share in np.linspace(0, 1, 21):
        for diagonal in (True, False):
            bg, ink = m.cell_colors(diagonal, float(share))
            assert contrast_ratio(bg, ink) >= 4.5, (diagonal, share)
    # painted: an empty cell shows the dark base, not a light colour; a full one is not white
    empty = img.pixelColor(int(left + 2.5 * cell), int(top + 1.5 * cell + cell * 0.1))
    assert abs(empty.red() - base.red()) <= 2 and abs(empty.green() - base.green()) <= 2
    assert empty.lightness() < 100
    bg, ink = m.cell_colors(True, 0.97)
    assert contrast_ratio(bg, ink) >= 4.5
