"""Retake the README's issue-16 screenshots (main window, training panel after a short run,
feature maps) at 1280×720 and 1600×1000, light and dark, offscreen:

    QT_QPA_PLATFORM=offscreen python resources/screenshots/take.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from designer import files, theme
from designer.main_window import MainWindow
from engine.data import DataBundle, load_mnist

SHOTS = (  # (width, height, theme, what)
    (1280, 720, "light", "main"), (1280, 720, "light", "training"),
    (1280, 720, "dark", "feature_maps"), (1600, 1000, "dark", "main"),
    (1600, 1000, "dark", "training"), (1600, 1000, "light", "feature_maps"))


def spin(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def take(app, out: Path, w: int, h: int, mode: str, what: str, data) -> Path:
    theme.apply_theme(app, mode)
    tmp = Path(tempfile.mkdtemp())
    win = MainWindow(settings=files.make_settings(tmp / "s.ini"), autosave_dir=tmp / "a")
    win.resize(w, h)
    win.show()
    spin(300)
    if what != "main":
        win.show_dock("training")
        spin(300)
        panel = win.panels["training"]
        panel.set_dataset(data)
        panel.epochs.setValue(2)
        loop = QEventLoop()
        panel.training_finished.connect(lambda *_: loop.quit())
        QTimer.singleShot(0, panel.start_training)
        loop.exec()
        spin(300)
        if what == "feature_maps":
            win.scene.select_nodes(["relu1"])
            win.show_dock("feature_maps")
            spin(1500)
    path = out / f"{what}_{w}x{h}_{mode}.png"
    win.grab().save(str(path), "PNG", 9)
    win.doc.set_modified(False)
    win.shutdown()
    win.deleteLater()
    spin(50)
    return path


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    app = QApplication.instance() or QApplication([])
    data = DataBundle(load_mnist("train", limit=2000), load_mnist("test", limit=500))
    for w, h, mode, what in SHOTS:
        path = take(app, out, w, h, mode, what, data)
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} KB)")


if __name__ == "__main__":
    main()
