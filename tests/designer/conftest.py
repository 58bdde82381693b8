"""Fixtures shared by the designer tests: a LeNet-5 document, and a main window whose message
boxes never block."""

import pytest
from PySide6.QtWidgets import QInputDialog, QMessageBox

from designer import files
from designer.document import Document
from designer.main_window import MainWindow
from engine.zoo.examples import load_example


@pytest.fixture
def doc(qtbot):
    """A Document holding the LeNet-5 example."""
    d = Document(load_example("lenet5"))
    yield d
    d.deleteLater()


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """A shown MainWindow (1400×900) with its own settings and autosave folder; warnings are
    recorded in `window.shown_messages`, questions answered 'Discard'."""
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda parent, title, text, *a: shown.append(text)))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda parent, title, text, *a: shown.append(text) or QMessageBox.StandardButton.Discard))
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(
        lambda *a, **k: pytest.fail("an unexpected number dialog opened")))
    w = MainWindow(settings=files.make_settings(tmp_path / "settings.ini"),
                   autosave_dir=tmp_path / "autosave")
    w.shown_messages = shown
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.doc.set_modified(False)
    w.shutdown()
