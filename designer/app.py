"""Start the designer: QApplication + MainWindow (the file given, else LeNet-5 behind the start
page) + event loop."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from . import files, theme
from .main_window import APP_NAME, MainWindow


def run(argv: list[str] | None = None) -> int:
    """`argv[1]`, when given, is a project, architecture JSON or ONNX file to open."""
    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(files.ORGANIZATION)
    app.setApplicationDisplayName(APP_NAME)
    settings = files.make_settings()
    theme.apply_theme(app, str(settings.value("theme", "system")))
    window = MainWindow(settings=settings)
    window.show()
    from engine.nn import kernels

    kernels.warm_in_background()  # numba's compiled kernels: loaded before the first training
    args = [a for a in argv[1:] if not a.startswith("-")]
    if args:
        path = Path(args[0])
        QTimer.singleShot(0, lambda: window.file_controller.open_path(path, ask=False))
    else:
        def first_start() -> None:
            window.file_controller.check_recovery()
            if not window.doc.is_modified():  # nothing recovered: how to start
                window.show_start_page()

        QTimer.singleShot(0, first_start)
    code = app.exec()
    window.shutdown()
    window.deleteLater()
    app.processEvents()
    return code


if __name__ == "__main__":
    raise SystemExit(run())
