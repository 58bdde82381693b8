"""Room to work (issue 16): at 1280×720 the canvas keeps most of the height, the training
panel's Train button and curves stay in view, an empty Problems panel stays low, and the
training panel's tabs say what they are and go back to the curves when another project opens."""

import pytest
from PySide6.QtWidgets import QScrollArea

pytest.importorskip("pytestqt")

from engine.data import DataBundle, load_mnist
from engine.zoo.examples import load_example


def in_view(widget, window) -> bool:
    """The widget is shown whole inside the window and no scroll area clips it (the visible
    region spans the widget; children such as a plot's viewport may cover the inside)."""
    if not widget.isVisible():
        return False
    rect = widget.rect()
    seen = widget.visibleRegion().boundingRect()
    inside = window.rect().contains(widget.mapTo(window, rect.topLeft())) and \
        window.rect().contains(widget.mapTo(window, rect.bottomRight()))
    return inside and seen.height() >= rect.height() - 2 and seen.width() >= rect.width() - 2


def test_at_1280x720_the_canvas_and_the_training_controls_have_room(window, qtbot):
    window.resize(1280, 720)
    qtbot.wait(50)
    central = window.view.height()
    assert window.docks["problems"].height() <= 130  # empty Problems: low
    assert central >= 0.55 * window.height()
    window.show_dock("training")
    qtbot.wait(300)
    p = window.panels["training"]
    assert not p.narrow  # settings beside the curves, not stacked above them
    for w in (p.train_button, p.stop_button, p.progress, p.loss_plot.viewport(),
              p.acc_plot.viewport()):
        assert in_view(w, window), w
    assert p.loss_plot.height() >= 120 and p.loss_plot.width() >= 250
    dock_scroll = window.docks["training"].widget()
    if isinstance(dock_scroll, QScrollArea):  # the panel fits its dock: nothing to scroll
        assert dock_scroll.verticalScrollBar().maximum() == 0
    assert window.view.height() >= 0.4 * window.height()  # the canvas keeps a good share


def test_tabs_name_their_pages_and_reset_for_another_project(window, qtbot):
    window.resize(1280, 720)
    window.show_dock("training")
    qtbot.wait(300)
    p = window.panels["training"]
    names = [p.tabs.tabText(i) for i in range(p.tabs.count())]
    assert len(set(names)) == len(names), names  # never "Curves | Results | Results"
    assert p.tabs.widget(names.index("Timeline")) is p.timeline if "Timeline" in names else True
    p.tabs.setCurrentWidget(p.results_tab)
    p.clear_results()  # as when another network is opened
    names = [p.tabs.tabText(i) for i in range(p.tabs.count())]
    assert p.tabs.tabText(p.tabs.indexOf(p.results_tab)) == "Results"
    assert len(set(names)) == len(names), names
    window.file_controller.doc.reset(load_example("small_vgg"))
    qtbot.wait(20)
    assert p.tabs.currentIndex() == 0  # the new project's curves, not the old results


def test_after_a_run_at_1280x720_the_curves_tab_does_not_scroll(window, qtbot):
    """The hidden Results page (its wrapped headline, the matrix) must not make the tabs taller
    than the dock: the curves' 'epoch' axis label was cut by a 22 px scroll."""
    window.resize(1280, 720)
    window.show_dock("training")
    qtbot.wait(300)
    p = window.panels["training"]
    dock_scroll = window.docks["training"].widget()
    assert isinstance(dock_scroll, QScrollArea)
    p.set_dataset(DataBundle(load_mnist("train", limit=256), load_mnist("test", limit=100)))
    p.epochs.setValue(1)
    with qtbot.waitSignal(p.training_finished, timeout=120_000):
        assert p.start_training()
    qtbot.waitUntil(lambda: not p.training, timeout=120_000)
    qtbot.wait(300)
    assert "Test accuracy" in p.result_label.text()  # the long headline is there
    p.tabs.setCurrentIndex(0)
    qtbot.wait(100)
    assert dock_scroll.verticalScrollBar().maximum() == 0
    assert in_view(p.loss_plot.viewport(), window)
    p.tabs.setCurrentWidget(p.results_tab)  # and the results fit too
    qtbot.wait(100)
    assert dock_scroll.verticalScrollBar().maximum() == 0
