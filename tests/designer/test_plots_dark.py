"""The Runs panel's curves and the Sweep dialog's plots follow the palette when the theme
changes while they are open (dark mode had a white slice plot and grey legend labels)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from designer import theme
from designer.runs_panel import RunsPanel
from engine.project import save_project
from tests.designer.test_runs_panel import make_runs


def median_rgb(widget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    a = a.reshape(img.height(), img.bytesPerLine())[:, :img.width() * 4].reshape(-1, 4)
    return np.median(a[:, 2::-1], axis=0)  # BGRA -> RGB


@pytest.fixture
def light_then_dark():
    app = QApplication.instance()
    before = theme.current_mode()
    theme.apply_theme(app, "light")
    yield lambda: theme.apply_theme(app, "dark")
    theme.apply_theme(app, before)


def test_runs_and_sweep_plots_follow_a_switch_to_dark(qtbot, doc, tmp_path, light_then_dark):
    project = tmp_path / "p.cnnd"
    save_project(project, doc.graph)
    make_runs(project, n=2)
    doc.set_path(project)
    panel = RunsPanel(doc)
    qtbot.addWidget(panel)
    panel.resize(1280, 720)
    panel.show()
    panel.select_ids({1, 2})
    plots = [panel.plot]
    try:
        import optuna  # noqa: F401  (the Sweep dialog needs it)
    except ImportError:
        pass
    else:
        dialog = panel.show_sweep_dialog()
        dialog.resize(1280, 720)
        dialog.plots.setCurrentIndex(1)  # the slice plot
        plots += [dialog.plot, dialog.parallel]
    assert all(theme.relative_luminance(p.palette().base().color()) > 0.5 for p in plots)
    light_then_dark()
    QApplication.processEvents()
    for plot in plots:
        base = plot.palette().base().color()
        assert theme.relative_luminance(base) < 0.1  # the dark palette reached the plot
        rgb = median_rgb(plot)  # mostly background
        assert np.abs(rgb - [base.red(), base.green(), base.blue()]).max() <= 6, \
            (type(plot).__name__, rgb, base.name())
    text = panel.palette().text().color()
    labels = [label for _, label in panel.plot.getPlotItem().legend.items]
    assert len(labels) == 2
    for label in labels:
        assert label.opts["color"] == text.name(), (label.text, label.opts["color"])
