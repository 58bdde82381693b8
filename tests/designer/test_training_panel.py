"""Training panel end to end, offscreen: curves and progress, Stop within one batch, Pause,
edits refused while training, data mismatch fixes, frozen layers, the timeline."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

pytest.importorskip("pytestqt")

from designer.commands import SetParamCommand, SetTrainableCommand
from designer.document import Document
from designer.training_panel import TrainingPanel
from designer.training_session import LOCK_REASON
from engine.data import DataBundle, Dataset, load_mnist
from engine.nn.network import Network
from engine.zoo.examples import load_example

TIMEOUT = 120_000  # ms; the machine is shared, training a few batches can be slow


@pytest.fixture(scope="module")
def mnist():
    return DataBundle(load_mnist("train", limit=512), load_mnist("test", limit=256))


@pytest.fixture
def panel(qtbot, mnist):
    doc = Document(load_example("lenet5"))
    p = TrainingPanel(doc, load=False)
    qtbot.addWidget(p)
    p.resize(1000, 650)
    p.show()
    p.set_dataset(mnist)
    p.epochs.setValue(1)
    p.batch_size.setValue(64)
    yield p
    p.shutdown()


def wait_done(qtbot, p):
    qtbot.waitUntil(lambda: not p.training, timeout=TIMEOUT)


def test_short_run_updates_curves_progress_and_keeps_weights(qtbot, panel):
    doc = panel.doc
    assert doc.weights is None and panel.train_button.isEnabled()
    with qtbot.waitSignal(panel.training_finished, timeout=TIMEOUT) as sig:
        assert panel.start_training()
        assert doc.locked_reason == LOCK_REASON
    wait_done(qtbot, panel)
    result = sig.args[0]
    assert result is not None and result.history.stopped is None
    t, loss = panel.train_loss_curve.getData()
    assert len(t) >= 1 and np.all(np.isfinite(loss))
    assert panel.n_updates >= 1
    # the last batch always reports: the progress reached the end of the only epoch
    assert panel.progress.value() == 1000
    vt, _vloss = panel.val_loss_curve.getData()
    assert list(vt) == [1]
    # results: evaluated on the 256 test images, confusion counts add up
    assert result.eval_name == "test"
    assert int(result.confusion.sum()) == 256
    assert np.trace(result.confusion) / 256 == pytest.approx(result.eval_accuracy)
    assert len(result.worst) == 12
    assert all(0 <= w["p_true"] <= 1 for w in result.worst)
    # weights and history are in the document; the lock is gone
    assert doc.locked_reason is None
    assert doc.weights is not None and "conv1.weight" in doc.weights
    fresh = Network.compile(doc.graph, np.random.default_rng(0)).state_dict()
    assert not np.allclose(doc.weights["fc1.weight"], fresh["fc1.weight"])
    assert doc.history["epochs"][0]["epoch"] == 1
    assert doc.history["eval_accuracy"] == pytest.approx(result.eval_accuracy)
    # timeline: the state before training and after the epoch
    assert [s.epoch for s in panel.snapshots] == [0, 1]
    assert panel.snapshots[0].filters.shape == (6, 1, 5, 5)
    assert not np.allclose(panel.snapshots[0].filters, panel.snapshots[1].filters)
    assert panel.snapshots[1].maps is not None
    assert panel.slider.maximum() == 1


def test_training_continues_from_document_weights(qtbot, panel, mnist):
    doc = panel.doc
    net = Network.compile(doc.graph, np.random.default_rng(5))
    doc.set_weights(net.state_dict())
    from engine.nn.train import evaluate
    before = evaluate(net, mnist.test.x, mnist.test.y)[1]
    with qtbot.waitSignal(panel.training_finished, timeout=TIMEOUT) as sig:
        panel.start_training()
    wait_done(qtbot, panel)
    # the first snapshot shows the document's weights, not a fresh initialisation
    np.testing.assert_array_equal(panel.snapshots[0].filters, net.state_dict()["conv1.weight"])
    assert sig.args[0].eval_accuracy > before


def test_stop_stops_within_one_batch(qtbot, panel):
    panel.epochs.setValue(5)
    panel.start_training()
    qtbot.waitUntil(lambda: panel.worker is not None and panel.worker.batches_run >= 2,
                    timeout=TIMEOUT)
    worker = panel.worker
    with qtbot.waitSignal(panel.training_finished, timeout=TIMEOUT) as sig:
        panel.stop_training()
    wait_done(qtbot, panel)
    result = sig.args[0]
    assert result.history.stopped == "cancelled"
    assert result.batches_run - worker.batches_at_stop <= 1
    assert result.batches_run < 5 * 8  # far from the full run
    assert panel.doc.locked_reason is None
    assert panel.doc.weights is not None  # weights kept
    assert "Stopped" in panel.status.text()


def test_pause_blocks_between_batches_and_resume_continues(qtbot, panel):
    panel.epochs.setValue(5)
    panel.start_training()
    qtbot.waitUntil(lambda: panel.worker is not None and panel.worker.batches_run >= 1,
                    timeout=TIMEOUT)
    worker = panel.worker
    panel.toggle_pause()
    assert worker.paused and panel.pause_button.text() == "Resume"
    qtbot.wait(300)  # the batch running when paused may finish
    n = worker.batches_run
    qtbot.wait(500)
    assert worker.batches_run == n  # blocked, not training
    panel.toggle_pause()
    qtbot.waitUntil(lambda: worker.batches_run > n, timeout=TIMEOUT)
    panel.stop_training()
    wait_done(qtbot, panel)


def test_edits_are_refused_while_training(qtbot, panel):
    doc = panel.doc
    reasons = []
    doc.edit_refused.connect(reasons.append)
    panel.epochs.setValue(5)
    panel.start_training()
    assert not panel.train_button.isEnabled()
    assert doc.push(SetParamCommand(doc, "fc1", "out_features", 50)) is False
    assert reasons == [LOCK_REASON]
    assert doc.graph.nodes["fc1"].params["out_features"] == 120
    panel.stop_training()
    wait_done(qtbot, panel)
    assert doc.push(SetParamCommand(doc, "fc1", "out_features", 50)) is True


def test_frozen_layers_are_not_trained(qtbot, panel):
    doc = panel.doc
    assert doc.push(SetTrainableCommand(doc, ["conv1"], False))
    assert "conv1" in panel.frozen_label.text()
    initial = Network.compile(doc.graph, np.random.default_rng(0)).state_dict()
    with qtbot.waitSignal(panel.training_finished, timeout=TIMEOUT):
        panel.start_training()
    wait_done(qtbot, panel)
    np.testing.assert_array_equal(doc.weights["conv1.weight"], initial["conv1.weight"])
    assert not np.allclose(doc.weights["conv2.weight"], initial["conv2.weight"])


def test_the_fields_start_from_train_configs_defaults(qtbot):
    """One set of defaults: the panel's fields are TrainConfig()'s, as the command line's."""
    from dataclasses import replace

    from engine.nn.optim import DEFAULT_LR
    from engine.nn.train import TrainConfig

    p = TrainingPanel(Document(load_example("lenet5")), load=False)
    qtbot.addWidget(p)
    d = TrainConfig()
    assert p.config() == replace(d, lr=d.effective_lr)  # the rate Adam gets for lr None
    p.optimizer.setCurrentIndex(p.optimizer.findData("sgd"))  # the default rate follows
    assert p.config().lr == DEFAULT_LR["sgd"]


def test_data_mismatch_is_reported_with_fixes(qtbot, panel):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 3, 32, 32)).astype(np.float32)
    y = np.arange(40) % 12
    panel.set_dataset(DataBundle(Dataset(x, y, [f"c{i}" for i in range(12)], "toy")))
    errors = [m for m in panel.mismatch_messages if m.severity == "error"]
    assert len(errors) == 3  # channels, size, classes
    assert not panel.train_button.isEnabled()
    assert panel.start_training() is False
    assert panel.fix_button.isVisible()
    assert panel.apply_fix()
    inp = panel.doc.graph.nodes["input"].params
    assert (inp["channels"], inp["height"], inp["width"]) == (3, 32, 32)
    # the class count fix is offered next; applying it makes the data fit
    assert "12" in panel.fix_button.text()
    assert panel.apply_fix()
    assert panel.doc.graph.nodes["fc3"].params["out_features"] == 12
    assert not [m for m in panel.mismatch_messages if m.severity == "error"]
    assert panel.train_button.isEnabled()
    # one undo step per fix
    panel.doc.undo_stack.undo()
    assert panel.doc.graph.nodes["fc3"].params["out_features"] == 10


def test_focus_changes_do_not_reload_the_data(qtbot, panel, mnist):
    # editingFinished fires when a field loses focus (e.g. when Train disables it)
    panel.limit.editingFinished.emit()
    panel.path.editingFinished.emit()
    assert panel.session.data_thread is None
    assert panel.dataset.train is mnist.train


def test_image_folder_is_loaded_resized_previewed_and_checked(qtbot, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = (rng.uniform(size=(40, 30, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    doc = Document(load_example("lenet5"))
    p = TrainingPanel(doc, load=False)
    qtbot.addWidget(p)
    p.source.setCurrentIndex(p.source.findData("images"))
    p.path.setText(str(tmp_path))
    with qtbot.waitSignal(p.data_loaded, timeout=30_000):
        p.load_data()
    qtbot.waitUntil(lambda: p.session.data_thread is None, timeout=10_000)
    x = p.dataset.train.x
    assert x.shape[1:] == (1, 28, 28)  # resized and converted to the Input's shape
    assert len(x) == 6 and p.dataset.classes == ["cats", "dogs"]
    assert [name for name, _ in p.preview.rows] == ["cats", "dogs"]
    assert all(len(imgs) == 3 for _, imgs in p.preview.rows)
    # 2 classes but 10 outputs: a warning with the fix, training still allowed
    assert [m.severity for m in p.mismatch_messages] == ["warning"]
    assert "fc3" in p.fix_button.text() and p.train_button.isEnabled()
    p.shutdown()


def test_bad_data_path_is_reported(qtbot, tmp_path):
    doc = Document(load_example("lenet5"))
    p = TrainingPanel(doc, load=False)
    qtbot.addWidget(p)
    p.source.setCurrentIndex(p.source.findData("npz"))
    p.path.setText(str(tmp_path / "nope.npz"))
    p.load_data()
    qtbot.waitUntil(lambda: p.session.data_thread is None, timeout=10_000)
    assert p.dataset is None and "no such file" in p.data_info.text()
    assert not p.train_button.isEnabled()


def test_opening_another_network_stops_training_and_keeps_its_weights_out(qtbot, panel):
    doc = panel.doc
    panel.epochs.setValue(5)
    panel.start_training()
    qtbot.waitUntil(lambda: panel.worker is not None and panel.worker.batches_run >= 1,
                    timeout=TIMEOUT)
    other = load_example("lenet5")
    other.nodes["fc1"].params["out_features"] = 100
    with qtbot.waitSignal(panel.training_finished, timeout=TIMEOUT) as sig:
        doc.reset(other)  # File > Open does not go through the lock
    wait_done(qtbot, panel)
    assert sig.args[0] is None
    assert doc.weights is None and doc.locked_reason is None
    assert "another network" in panel.status.text()


def test_train_waits_for_the_data_the_fields_show(qtbot, panel, mnist, monkeypatch):
    """Typing a new image count and clicking Train trains on that count, not on the data a
    reload (started by editingFinished, still running) is about to replace."""
    import threading

    from designer import training_session

    gate = threading.Event()
    calls = []

    def slow_load(spec, shape=None, limit=None, input_spec=None):
        calls.append(limit)
        gate.wait(30)
        n = limit or len(mnist.train)
        return DataBundle(Dataset(mnist.train.x[:n], mnist.train.y[:n], mnist.train.classes,
                                  "MNIST train"), mnist.test)

    monkeypatch.setattr(training_session.engine_data, "load_dataset", slow_load)
    try:
        panel.limit.setValue(300)
        panel.limit.editingFinished.emit()  # the click on Train takes the focus: a reload
        assert panel.session.data_thread is not None and not panel.data_current
        panel.train_button.click()
        assert panel.waiting_for_data and not panel.training
        assert panel.doc.locked_reason is None
        assert not panel.train_button.isEnabled() and panel.stop_button.isEnabled()
        with qtbot.waitSignal(panel.training_started, timeout=TIMEOUT):
            gate.set()
        assert "300 training images" in panel.data_info.text()
        assert panel.session.run.n_train == 270  # 300 minus the 10 % validation split
        wait_done(qtbot, panel)
        # a count typed without leaving the field (no editingFinished) is loaded by Train too
        panel.limit.setValue(200)
        with qtbot.waitSignal(panel.training_started, timeout=TIMEOUT):
            assert panel.start_training()
        assert panel.session.run.n_train == 180
        assert "200 training images" in panel.data_info.text()
        wait_done(qtbot, panel)
        assert calls == [300, 200]
    finally:
        gate.set()


def test_stop_cancels_a_start_that_waits_for_data(qtbot, panel, mnist, monkeypatch):
    import threading

    from designer import training_session

    gate = threading.Event()

    def slow_load(spec, shape=None, limit=None, input_spec=None):
        gate.wait(30)
        return DataBundle(Dataset(mnist.train.x[:limit], mnist.train.y[:limit],
                                  mnist.train.classes), mnist.test)

    monkeypatch.setattr(training_session.engine_data, "load_dataset", slow_load)
    try:
        panel.limit.setValue(100)
        assert panel.start_training() and panel.waiting_for_data
        panel.stop_training()
        assert not panel.waiting_for_data
        gate.set()
        qtbot.waitUntil(lambda: panel.session.data_thread is None, timeout=10_000)
        assert not panel.training and len(panel.dataset.train) == 100
        assert panel.train_button.isEnabled()
    finally:
        gate.set()


def test_opening_another_network_clears_the_previous_results(qtbot, panel):
    with qtbot.waitSignal(panel.training_finished, timeout=TIMEOUT):
        assert panel.start_training()
    wait_done(qtbot, panel)
    assert panel.confusion.matrix is not None and panel.worst.items and panel.snapshots
    assert "accuracy" in panel.result_label.text()
    assert len(panel.train_loss_curve.getData()[0]) >= 1
    panel.doc.reset(load_example("lenet5"))
    assert panel.result is None
    assert panel.confusion.matrix is None and not panel.worst.items
    assert panel.snapshots == [] and panel.slider.maximum() == 0
    for curve in (panel.train_loss_curve, panel.val_loss_curve, panel.train_acc_curve,
                  panel.val_acc_curve):
        t, _ = curve.getData()
        assert t is None or len(t) == 0
    assert panel.progress.value() == 0 and "accuracy" not in panel.progress.format()
    assert "accuracy" not in panel.result_label.text()
    assert "Done" not in panel.status.text()
    assert panel.filters_img.image is None and panel.maps_img.image is None
    # a project saved with its history shows that history's curves and accuracy instead
    hist = {"epochs": [{"epoch": 1, "epochs": 2, "train_loss": 0.9, "train_accuracy": 0.7,
                        "val_loss": 0.5, "val_accuracy": 0.8, "seconds": 1.0,
                        "images_per_s": 9.0},
                       {"epoch": 2, "epochs": 2, "train_loss": 0.4, "train_accuracy": 0.85,
                        "val_loss": 0.3, "val_accuracy": 0.9, "seconds": 1.0,
                        "images_per_s": 9.0}],
            "stopped": None, "seconds": 2.0, "eval_set": "test", "eval_accuracy": 0.875,
            "eval_loss": 0.31}
    panel.doc.reset(load_example("lenet5"), history=hist)
    assert list(panel.train_loss_curve.getData()[1]) == [0.9, 0.4]
    assert list(panel.val_acc_curve.getData()[1]) == [0.8, 0.9]
    assert "87.50%" in panel.result_label.text()


def _host(qtbot, panel, width, height):
    """The panel in a scroll area of `width` × `height`, as main_window hosts big panels."""
    from PySide6.QtWidgets import QScrollArea

    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(panel)
    qtbot.addWidget(area)
    area.resize(width, height)
    area.show()
    qtbot.waitExposed(area)
    qtbot.wait(20)
    return area


def test_fits_a_narrow_dock_and_a_low_wide_one(qtbot, mnist):
    doc = Document(load_example("lenet5"))
    p = TrainingPanel(doc, load=False)
    p.set_dataset(mnist)
    area = _host(qtbot, p, 400, 900)
    assert p.narrow  # settings above the curves
    # nothing cut off at the right, once the narrow layout's posted relayout has run (on a
    # loaded machine that can take longer than _host's 20 ms)
    qtbot.waitUntil(lambda: p.width() <= area.viewport().width(), timeout=3000)
    assert area.horizontalScrollBar().maximum() == 0
    # the settings show whole (no scroll of their own), the sample grid below its fields
    assert p.settings_scroll.height() >= p.left.minimumSizeHint().height()
    assert p.preview.geometry().bottom() < p.check_label.geometry().top()
    area.resize(1500, 300)  # a bottom dock
    qtbot.wait(20)
    assert not p.narrow and p.short
    assert p.curves_split.orientation() == Qt.Orientation.Horizontal
    assert p.height() <= 320  # about the dock's height: the plots are not squeezed away
    p.shutdown()


def test_low_bottom_dock_shows_every_setting_and_the_buttons_without_scrolling(qtbot, mnist):
    doc = Document(load_example("lenet5"))
    p = TrainingPanel(doc, load=False)
    p.set_dataset(mnist)
    area = _host(qtbot, p, 970, 380)  # the bottom dock of a 1600 × 1000 window
    assert p.short and p.settings_columns == 2
    # Data beside Hyperparameters; the buttons and progress below both, outside the scroll
    assert p.data_box.geometry().right() < p.hp_box.geometry().left()
    sv = p.settings_scroll
    assert sv.verticalScrollBar().maximum() == 0  # nothing to scroll to
    assert p.seed.mapTo(sv.viewport(), p.seed.rect().bottomLeft()).y() <= sv.viewport().height()
    for w in (p.train_button, p.stop_button, p.progress, p.status):
        assert p.rect().contains(w.mapTo(p, w.rect().bottomRight())), w
    # little room for the curves: the timeline moves to its own tab, the plots keep the width
    assert p.timeline_tab
    assert p.tabs.indexOf(p.timeline) == 1 and p.tabs.tabText(1) == "Timeline"
    assert p.tabs.tabText(p.tabs.indexOf(p.results_tab)).startswith("Results")
    area.resize(1600, 380)  # room enough: the timeline beside the plots again
    qtbot.wait(20)
    assert not p.timeline_tab and p.tabs.indexOf(p.timeline) == -1
    assert p.timeline.parentWidget() is p.curves_split
    area.resize(400, 900)  # a narrow side dock: one column again
    qtbot.wait(20)
    assert p.narrow and p.settings_columns == 1
    assert p.data_box.geometry().bottom() < p.hp_box.geometry().top()
    p.shutdown()


def test_timeline_header_is_one_elided_line_with_the_full_text_as_tooltip(qtbot):
    from designer.training_panel import ElidedLabel

    label = ElidedLabel("filters of conv1 (6), a rather long header for a narrow column")
    qtbot.addWidget(label)
    label.resize(80, 40)
    label.show()
    qtbot.waitExposed(label)
    assert label.text().endswith("…") and len(label.text()) < len(label.full_text())
    assert "\n" not in label.text()
    assert label.toolTip() == label.full_text()
    assert label.minimumSizeHint().height() <= label.fontMetrics().lineSpacing() + 4
    label.resize(2000, 40)
    assert label.text() == label.full_text()


@pytest.mark.parametrize("size", [(420, 150), (300, 600), (900, 120), (200, 60)])
def test_worst_samples_fit_their_box_without_overlapping_text(qtbot, size):
    from designer.training_panel import Thumbnails

    t = Thumbnails()
    qtbot.addWidget(t)
    t.resize(*size)
    img = np.zeros((1, 28, 28), np.float32)
    t.set_items([{"image": img, "true": 1, "pred": 2, "confidence": 0.9}] * 12, ["a", "b", "c"])
    shown, cols, side = t._grid(len(t.items))
    rows = -(-shown // cols)
    assert 1 <= shown <= 12 and side >= 16
    # each row: the image and two text lines; each column: the image and a margin
    assert rows * (side + 32) <= max(t.height(), 16 + 32) + 1e-6
    assert cols * (side + 12) <= t.width() + 1e-6 or shown == 1
    from PySide6.QtGui import QFont, QFontMetrics

    font = QFont(t.font())
    font.setPointSizeF(8)
    assert t.width() / cols >= QFontMetrics(font).horizontalAdvance("99.7% sure") or cols == 1


@pytest.mark.parametrize("history", [["x"], "text", {"epochs": ["x", 3]}, {"epochs": 7}])
def test_a_malformed_saved_history_shows_nothing_and_raises_nothing(panel, history):
    panel.doc.history = history
    panel.clear_results()  # what opening a project does; a hand-edited file must not break it
    assert all(item.xData is None or len(item.xData) == 0
               for item in panel.loss_plot.listDataItems())
