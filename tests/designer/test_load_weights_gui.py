"""File ▸ Load Weights…: the file is read off the GUI thread, its weights land in the design as
one undoable command (modified mark included), a partial fit asks first, a hostile or damaged
file is refused with its message, and the read can be cancelled."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
from PySide6.QtWidgets import QMessageBox, QPushButton

from designer import weights_loader as wl
from engine.nn.network import Network
from engine.zoo.templates import make_template
from tests.engine.test_checkpoint import Reduce, Storages, torch_zip_of, write_zip


def lenet_state(classes: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    return Network.compile(make_template("lenet5", classes).graph,
                           np.random.default_rng(seed)).state_dict()


def load(qtbot, window, path) -> bool:
    loader = window.file_controller.weights_loader
    with qtbot.waitSignal(loader.finished, timeout=20000) as blocker:
        assert loader.load(path)
    return blocker.args[0]


def same(a: dict | None, b: dict) -> bool:
    return a is not None and set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in b)


def test_menu_has_load_weights(window):
    file_menu = window.menuBar().actions()[0].menu()
    assert window.file_controller.act_load_weights in file_menu.actions()


def test_load_is_one_undoable_command_and_marks_the_document(qtbot, window, tmp_path):
    doc = window.doc
    assert doc.weights is None and not doc.is_modified()
    state = lenet_state(seed=1)
    path = torch_zip_of(tmp_path / "lenet.pth", state)
    assert load(qtbot, window, path)
    assert same(doc.weights, state)
    assert doc.is_modified() and window.isWindowModified()
    assert doc.undo_stack.count() == 1
    assert doc.undo_stack.undoText() == "Load weights from lenet.pth"
    assert "Loaded all 10 weights from lenet.pth" in window.statusBar().currentMessage()
    doc.undo_stack.undo()
    assert doc.weights is None
    doc.undo_stack.redo()
    assert same(doc.weights, state)


def test_undo_brings_back_the_weights_before(qtbot, window, tmp_path):
    doc = window.doc
    before = lenet_state(seed=2)
    doc.set_weights(before)
    np.savez(tmp_path / "w.npz", **lenet_state(seed=3))
    assert load(qtbot, window, tmp_path / "w.npz")
    assert not same(doc.weights, before)
    doc.undo_stack.undo()
    assert same(doc.weights, before)


def test_a_partial_fit_asks_and_loads_only_what_fits(qtbot, window, tmp_path, monkeypatch):
    doc = window.doc
    before = lenet_state(seed=4)
    doc.set_weights(before)
    five = lenet_state(classes=5, seed=5)
    path = torch_zip_of(tmp_path / "five.pth", five)
    # the window fixture answers questions with 'Discard': nothing is loaded
    assert not load(qtbot, window, path)
    asked = window.shown_messages[-1]
    assert "fc3.weight (file 5×84, design 10×84)" in asked and "Load the 8 weights" in asked
    assert same(doc.weights, before) and doc.undo_stack.count() == 0
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a: QMessageBox.StandardButton.Yes))
    assert load(qtbot, window, path)
    assert np.array_equal(doc.weights["conv1.weight"], five["conv1.weight"])
    # the head the file could not fill keeps the weights it had
    assert np.array_equal(doc.weights["fc3.weight"], before["fc3.weight"])
    assert "Loaded 8 of 10 weights" in window.statusBar().currentMessage()
    doc.undo_stack.undo()
    assert same(doc.weights, before)


def test_hostile_and_foreign_files_are_refused(qtbot, window, tmp_path):
    doc = window.doc
    marker = tmp_path / "pwned"
    evil = write_zip(tmp_path / "evil.pth",
                     pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2), Storages())
    assert not load(qtbot, window, evil)
    assert "refused" in window.shown_messages[-1] and "system" in window.shown_messages[-1]
    assert not marker.exists() and doc.weights is None and doc.undo_stack.count() == 0
    other = {f"features.{i}.weight": np.zeros((3, 3), np.float32) for i in range(8)}
    np.savez(tmp_path / "other.npz", **other)
    assert not load(qtbot, window, tmp_path / "other.npz")
    assert "another architecture" in window.shown_messages[-1]
    assert doc.weights is None and doc.undo_stack.count() == 0


def test_training_lock_refuses(qtbot, window, tmp_path):
    window.doc.lock("training is running")
    try:
        assert not window.file_controller.weights_loader.load(tmp_path / "x.pth")
        assert "training is running" in window.shown_messages[-1]
    finally:
        window.doc.unlock()


def test_cancel_stops_the_read(qtbot, window, tmp_path, monkeypatch):
    """A slow read (a stand-in reporting progress until told to stop) ends at Cancel, with
    nothing loaded; the progress dialog shows the steps."""

    def slow_read(path, progress=None):
        for i in range(500):
            progress(i, 500)
            time.sleep(0.01)
        raise AssertionError("the read was not cancelled")  # reported as a failed load

    monkeypatch.setattr(wl, "read_checkpoint", slow_read)
    loader = window.file_controller.weights_loader
    with qtbot.waitSignal(loader.finished, timeout=20000) as blocker:
        assert loader.load(tmp_path / "big.pth")
        qtbot.waitUntil(lambda: loader._dialog is not None and loader._dialog.value() > 0)
        assert "Reading big.pth" in loader._dialog.labelText()
        loader._dialog.findChild(QPushButton).click()  # the dialog's Cancel button
    assert blocker.args == [False]
    assert window.doc.weights is None and window.doc.undo_stack.count() == 0
    assert "cancelled" in window.statusBar().currentMessage()
    assert not any("not cancelled" in m for m in window.shown_messages)
