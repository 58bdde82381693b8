"""PNG export in strips between events (designer/canvas/png_export.py): the same picture as a
single-pass render, the event loop running between strips, cancel leaving no file behind."""

import itertools

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QProgressDialog

from designer.canvas import CanvasScene, png_export
from designer.canvas.png_export import PngExport
from designer.document import Document
from engine.zoo.examples import load_example


def pixels(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_ARGB32)
    a = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    return a.reshape(img.height(), img.bytesPerLine())[:, :img.width() * 4].astype(int)


@pytest.fixture
def scene(qtbot):
    return CanvasScene(Document(load_example("lenet5")))


@pytest.fixture
def thin_strips(monkeypatch):
    """Strips of 8 rows, so a small net takes many."""
    monkeypatch.setattr(png_export, "FIRST_ROWS", 8)
    monkeypatch.setattr(png_export, "MAX_ROWS", 8)


def run(qtbot, export):
    with qtbot.waitSignal(export.finished, timeout=30000) as got:
        export.start()
    return got.args[0]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_strips_equal_the_single_pass_render(qtbot, scene, thin_strips, tmp_path):
    first = next(iter(scene.node_items.values()))
    first.setSelected(True)
    export = PngExport(scene, tmp_path / "net.png")
    assert run(qtbot, export) == "ok"
    assert len(export.slice_ms) == -(-export.h // 8) > 10
    assert first.isSelected()  # restored after the export
    first.setSelected(False)
    strips, whole = pixels(QImage(str(tmp_path / "net.png"))), pixels(scene.render_image(2.0))
    assert strips.shape == whole.shape
    diff = np.abs(strips - whole)
    assert diff.max() <= 8 and (diff > 0).mean() < 1e-4, (diff.max(), (diff > 0).mean())
    assert leftovers(tmp_path) == ["net.png"]


def test_event_loop_runs_between_strips(qtbot, scene, thin_strips, tmp_path):
    ticks, seen = [0], []
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    timer.start()
    export = PngExport(scene, tmp_path / "net.png")
    export.progressed.connect(lambda done, total: seen.append(ticks[0]))
    assert run(qtbot, export) == "ok"
    timer.stop()
    assert len(seen) > 10
    assert all(b > a for a, b in itertools.pairwise(seen)), seen  # other events between strips


def test_cancel_while_drawing_leaves_nothing(qtbot, scene, thin_strips, tmp_path):
    export = PngExport(scene, tmp_path / "net.png")
    export.progressed.connect(lambda done, total: done >= 24 and export.cancel())
    assert run(qtbot, export) == "cancelled"
    assert 3 <= len(export.slice_ms) < export.h // 8
    assert leftovers(tmp_path) == []
    assert all(item.cacheMode() != item.CacheMode.NoCache
               for item in scene.node_items.values())  # caching restored


def test_cancel_while_writing_removes_the_temp_file(qtbot, scene, tmp_path, monkeypatch):
    export = PngExport(scene, tmp_path / "net.png")
    real_save = QImage.save
    written = []

    def save_then_cancel(self, name, *a):
        ok = real_save(self, name, *a)
        written.append(name)
        export.cancel()  # the user presses Cancel while the file is being written
        return ok

    monkeypatch.setattr(QImage, "save", save_then_cancel)
    assert run(qtbot, export) == "cancelled"
    assert written and ".png" in written[0]  # a temp file had been written
    assert leftovers(tmp_path) == []


def test_export_canvas_cancel_from_the_dialog(qtbot, tmp_path, thin_strips):
    from designer import files
    from designer.main_window import MainWindow

    win = MainWindow(settings=files.make_settings(tmp_path / "settings.ini"),
                     autosave_dir=tmp_path / "autosave")
    qtbot.addWidget(win)
    win.show()
    out = tmp_path / "out"
    out.mkdir()

    def press_cancel():
        dialogs = win.findChildren(QProgressDialog)
        if not dialogs or win.file_controller.png_export.done_rows < 16:
            QTimer.singleShot(5, press_cancel)
            return
        dialogs[-1].canceled.emit()  # what its Cancel button sends

    QTimer.singleShot(0, press_cancel)
    assert not win.file_controller.export_canvas("png", str(out / "net.png"))
    assert leftovers(out) == []
    assert win.file_controller.export_canvas("png", str(out / "net.png"))  # again, complete
    assert leftovers(out) == ["net.png"]
    win.doc.set_modified(False)
    win.close()
