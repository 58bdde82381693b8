"""PNG export of the whole canvas without blocking the window.

The image is drawn in horizontal strips from a zero-interval QTimer, so the event loop runs
between strips; each strip's height adapts so that drawing it takes about `SLICE_MS`. The
finished image is encoded and written in a worker thread (QImage may be saved off the GUI
thread) inside `atomic_path`: the target appears complete or not at all, and a cancel
during the write removes the temporary file.

    export = PngExport(scene, path)
    export.progressed.connect(...)        # rows drawn, total rows
    export.finished.connect(...)          # "ok" | "cancelled" | the error's text
    export.start()
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, QRectF, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QImage, QPainter

from engine.fileio import atomic_path

SLICE_MS = 40.0  # the time one strip should take: well under the 100 ms a user notices
FIRST_ROWS = 32
MIN_ROWS, MAX_ROWS = 4, 8192


def save_png(image: QImage, path: Path, should_stop) -> str:
    """Write `image` to `path` atomically; "ok", "cancelled" (nothing written, no temp file
    left) or the error's text."""

    class Cancelled(Exception):
        pass

    try:
        with atomic_path(path, suffix=".png") as tmp:  # an exception removes the temp file
            if not image.save(str(tmp), "PNG"):
                raise OSError("the PNG image could not be written")
            if should_stop():
                raise Cancelled
    except Cancelled:
        return "cancelled"
    except OSError as exc:
        return str(exc)
    return "ok"


class PngExport(QObject):
    """Renders `scene` at `scale` × into one image strip by strip, then saves it to `path`."""

    progressed = Signal(int, int)  # rows drawn, total rows
    saving = Signal()  # drawing is done; encoding and writing have started
    finished = Signal(str)  # "ok", "cancelled" or the error's text

    def __init__(self, scene, path, scale: float = 2.0, parent: QObject | None = None):
        super().__init__(parent)
        self.scene, self.path = scene, Path(path)
        self.src, self.w, self.h, scale = scene.image_geometry(scale)
        # the single-pass render's mapping (KeepAspectRatio, anchored at the top left)
        self.ratio = min(self.w / self.src.width(), self.h / self.src.height())
        self.rows = FIRST_ROWS
        self.done_rows = 0
        self.slice_ms: list[float] = []  # how long each strip kept the GUI thread
        self.image: QImage | None = None
        self._restore = None
        self._cancelled = False
        self._thread: QThread | None = None
        self._worker = None
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._step)

    def start(self) -> None:
        self.image = QImage(self.w, self.h, QImage.Format.Format_ARGB32_Premultiplied)
        if self.image.isNull():
            self.finished.emit(f"an image of {self.w}×{self.h} pixels does not fit in memory")
            return
        self._restore = self.scene.prepare_export()  # once, not per strip
        self._timer.start()

    def cancel(self) -> None:
        """Stop drawing, or (while saving) make the worker discard its temporary file."""
        if self._cancelled:
            return
        self._cancelled = True
        if self._worker is not None:
            self._worker.cancel()
            return
        if self._timer.isActive():
            self._timer.stop()
            self._end_drawing()
            self.image = None
            self.finished.emit("cancelled")

    @property
    def running(self) -> bool:
        return self._timer.isActive() or (self._thread is not None and self._thread.isRunning())

    def _end_drawing(self) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None

    def render_rows(self, y0: int, y1: int) -> None:
        """Draw image rows [y0, y1): the slice of the scene that maps there, as one pass would."""
        painter = QPainter(self.image)
        painter.setRenderHints(QPainter.RenderHint.Antialiasing
                               | QPainter.RenderHint.TextAntialiasing)
        target = QRectF(0, y0, self.w, y1 - y0)
        painter.fillRect(target, self.scene.look.canvas)
        r = self.ratio
        source = QRectF(self.src.left(), self.src.top() + y0 / r, self.w / r, (y1 - y0) / r)
        self.scene.render(painter, target, source, Qt.AspectRatioMode.IgnoreAspectRatio)
        painter.end()

    @Slot()
    def _step(self) -> None:
        t0 = time.perf_counter()
        y0 = self.done_rows
        y1 = min(self.h, y0 + self.rows)
        self.render_rows(y0, y1)
        ms = (time.perf_counter() - t0) * 1000
        self.slice_ms.append(ms)
        self.done_rows = y1
        # next strip: aim at SLICE_MS, growing at most 2× (a dense region may follow)
        want = (y1 - y0) * SLICE_MS / max(ms, 1.0)
        self.rows = int(max(MIN_ROWS, min(MAX_ROWS, 2 * (y1 - y0), want)))
        self.progressed.emit(self.done_rows, self.h)
        if self.done_rows >= self.h:
            self._timer.stop()
            self._end_drawing()
            self._save()

    def _save(self) -> None:
        from ..workers import FunctionWorker, start_worker

        self.saving.emit()
        self._worker = FunctionWorker(save_png, self.image, self.path)
        self._worker.finished.connect(self._saved)
        self._worker.failed.connect(self.finished)
        self._thread = start_worker(self._worker)
        self._thread.finished.connect(self._thread.deleteLater)

    @Slot(object)
    def _saved(self, outcome: str) -> None:
        if self._thread is not None:
            self._thread.wait()
        self.image = None
        self.finished.emit(outcome)
