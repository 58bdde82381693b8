"""File ▸ Load Weights…: trained weights from a file into the design being edited.

The file is read and matched to the design (engine.transfer.checkpoint) in a worker thread,
with a progress dialog that can cancel between storages; the result becomes one undoable
LoadWeightsCommand. When some of the file's tensors do not fit (another head, another
architecture), the user is told which, with both shapes, and may load the ones that fit.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QWidget

from engine.transfer.checkpoint import WeightMatch, match_weights, read_checkpoint

from .commands import LoadWeightsCommand
from .document import Document
from .editor import make_action
from .files import APP_NAME
from .workers import FunctionWorker, start_worker, stop_thread

FILTERS = ("Weights (*.pth *.pt *.bin *.ckpt *.safetensors *.npz *.onnx *.cnnd);;"
           "PyTorch checkpoints (*.pth *.pt *.bin *.ckpt);;safetensors (*.safetensors);;"
           "NumPy arrays (*.npz);;ONNX models (*.onnx);;CNN Designer projects (*.cnnd);;"
           "All files (*)")


class Cancelled(Exception):
    """The user cancelled the read."""


def read_and_match(path: Path, graph, progress=None, should_stop=None) -> WeightMatch | None:
    """In the worker: read `path`, match it to `graph` (a copy). None when cancelled.
    `progress(text, permille, 1000)` and `should_stop()` come from FunctionWorker."""

    def step(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled
        if progress is not None and total:
            progress(f"Reading {path.name}: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB",
                     int(1000 * done / total), 1000)

    try:
        checkpoint = read_checkpoint(path, step)
    except Cancelled:
        return None
    if should_stop is not None and should_stop():
        return None
    if progress is not None:
        progress(f"Matching {path.name} to the design…", 1000, 1000)
    return match_weights(graph, checkpoint)


class WeightsLoader(QObject):
    """The Load Weights action over `doc`; dialogs open on `host`."""

    status_posted = Signal(str, int)
    finished = Signal(bool)  # a load ended: True when weights were loaded

    def __init__(self, doc: Document, host: QWidget):
        super().__init__(host)
        self.doc, self.host = doc, host
        self.act_load = make_action(host, "Load &Weights…", self.load_dialog, None,
                                    "Load trained weights (.pth, .safetensors, .npz, .onnx, "
                                    ".cnnd) into this design")
        self._thread = None
        self._worker: FunctionWorker | None = None
        self._dialog: QProgressDialog | None = None
        self._path: Path | None = None
        self._graph_at_start = None

    def load_dialog(self) -> None:
        start = str(self.doc.path.parent if self.doc.path else Path.home())
        path, _ = QFileDialog.getOpenFileName(self.host, "Load Weights", start, FILTERS)
        if path:
            self.load(path)

    def load(self, path) -> bool:
        """Start reading `path` in a worker; `finished` tells how it ended. False when it could
        not start (training runs, a load is already running)."""
        if self.doc.locked_reason is not None:
            self._error(f"Cannot load weights now: {self.doc.locked_reason}")
            return False
        if self._worker is not None:
            return False
        self._path = Path(path)
        self._graph_at_start = self.doc.graph.dumps()
        dialog = QProgressDialog(f"Reading {self._path.name}…", "Cancel", 0, 1000, self.host)
        dialog.setWindowTitle(APP_NAME)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setValue(0)
        self._dialog = dialog
        worker = FunctionWorker(read_and_match, self._path, self.doc.graph.copy())
        if hasattr(worker, "stepped"):
            worker.stepped.connect(self._on_step)
            dialog.canceled.connect(self._cancel)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._worker = worker
        self._thread = start_worker(worker, self)
        return True

    def _cancel(self) -> None:
        # called here, in the GUI thread: a queued call into the worker's thread would wait
        # for the read to end; cancel() only sets a threading.Event
        if self._worker is not None:
            self._worker.cancel()
            if self._dialog is not None:
                self._dialog.setLabelText("Cancelling…")

    def _on_step(self, text: str, done: int, total: int) -> None:
        if self._dialog is not None:
            self._dialog.setLabelText(text)
            self._dialog.setMaximum(total)
            self._dialog.setValue(done)

    def _end(self) -> None:
        if self._dialog is not None:
            self._dialog.close()
            self._dialog.deleteLater()
            self._dialog = None
        stop_thread(self._thread)
        self._thread, self._worker = None, None

    def _on_failed(self, text: str) -> None:
        self._end()
        self._error(text)
        self.finished.emit(False)

    def _on_finished(self, match: WeightMatch | None) -> None:
        self._end()
        if match is None:
            self.status_posted.emit("Loading weights cancelled", 5000)
            self.finished.emit(False)
            return
        if self.doc.graph.dumps() != self._graph_at_start:  # edited meanwhile: match again
            try:
                match = match_weights(self.doc.graph, match.weights)
            except ValueError as exc:
                self._on_failed(str(exc))
                return
        self.finished.emit(self.apply(match))

    def apply(self, match: WeightMatch) -> bool:
        """Load what `match` holds, asking first when some of the file does not fit."""
        name = self._path.name if self._path else match.source
        if match.loaded == 0:
            self._error(f"No weights loaded: {match.summary()}")
            return False
        if not match.ok:
            answer = QMessageBox.question(
                self.host, "Load Weights",
                f"{match.summary()}.\n\nLoad the {match.loaded} weights that fit? The other "
                f"layers keep their current (or fresh random) weights.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                self.status_posted.emit("No weights loaded", 5000)
                return False
        if not self.doc.push(LoadWeightsCommand(self.doc, match.weights, name)):
            return False
        text = (f"Loaded all {match.expected} weights from {name}" if match.ok
                else f"Loaded {match.loaded} of {match.expected} weights from {name}")
        notes = f" ({'; '.join(match.notes)})" if match.notes else ""
        self.status_posted.emit(text + notes, 10000)
        return True

    def _error(self, text: str) -> None:
        self.status_posted.emit(f"⚠ {text}", 10000)
        QMessageBox.warning(self.host, "Load Weights", text)

    def shutdown(self) -> None:
        if self._worker is not None and hasattr(self._worker, "cancel"):
            self._worker.cancel()
        stop_thread(self._thread)
        self._thread, self._worker = None, None
