"""File ▸ New from Pretrained…: a template with torchvision's published weights as a new document.

The dialog lists the catalogue (engine.zoo.pretrained: name, architecture, download size, cached
or not, ImageNet top-1, input); the chosen file is downloaded into the cache (or the cached one
checked) and read into its template in a worker thread (engine.transfer.download and
.pretrained), with a progress dialog whose Cancel stops between blocks (a cancelled download
keeps its .part and resumes next time). The template, its weights and their input spec then
replace the document, as New from Template does.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QProgressDialog,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.transfer.download import DownloadCancelled, cache_dir, download_url, fetch, is_cached
from engine.transfer.pretrained import Pretrained, build_pretrained
from engine.zoo.pretrained import DEFAULTS, PRETRAINED, PretrainedWeights
from engine.zoo.templates import TEMPLATES

from .files import APP_NAME
from .workers import FunctionWorker, start_worker, stop_thread

COLUMNS = ("Name", "Architecture", "Download", "Cached", "ImageNet top-1", "Input")
KEY_ROLE = Qt.ItemDataRole.UserRole


class Cancelled(Exception):
    """The user cancelled reading the file."""


def display_name(w: PretrainedWeights) -> str:
    """The template's name for its default weights, TEMPLATE.WEIGHTS for the others."""
    return w.template if DEFAULTS.get(w.template) == w.name else w.name


class PretrainedDialog(QDialog):
    """Pick one entry of the catalogue; `weights()` is the choice after accept()."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("New from Pretrained")
        self.table = QTableWidget(len(PRETRAINED), len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for row, (key, w) in enumerate(PRETRAINED.items()):
            title = TEMPLATES[w.template].title if w.template in TEMPLATES else w.template
            cells = (display_name(w), title, f"{w.size_mb:,.1f} MB",
                     "yes" if is_cached(w) else "", f"{w.acc1:.2f} %",
                     f"{w.resize} → {w.crop}×{w.crop}")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(KEY_ROLE, key)
                if col in (2, 4):
                    item.setTextAlignment(right)
                elif col == 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        # rows as tall as the text, not the style's default 30 px
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.table.itemSelectionChanged.connect(self._update)
        self.table.itemDoubleClicked.connect(lambda _item: self.accept())
        layout = QVBoxLayout(self)
        intro = QLabel("torchvision's published ImageNet weights. The file is downloaded once "
                       "into the cache, checked against the SHA-256 in its name, and opened as "
                       "a new network.", self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.buttons)
        self.table.selectRow(0)
        # a comfortable size that still fits a small parent window
        avail = parent.window().size() if parent is not None else None
        self.resize(min(900, int(0.9 * avail.width())) if avail else 900,
                    min(620, int(0.9 * avail.height())) if avail else 620)

    def weights(self) -> PretrainedWeights | None:
        items = self.table.selectedItems()
        return PRETRAINED[items[0].data(KEY_ROLE)] if items else None

    def select(self, name: str) -> None:
        """Select the entry `name` (catalogue key)."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(KEY_ROLE) == name:
                self.table.selectRow(row)
                return

    def _update(self) -> None:
        w = self.weights()
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(w is not None)
        if w is None:
            self.details.setText("")
            return
        cached = is_cached(w)
        ok.setText("Open" if cached else f"Download {w.size_mb:,.0f} MB and Open")
        where = "in the cache" if cached else f"from {download_url(w)}"
        self.details.setText(
            f"<b>{w.name}</b>: {TEMPLATES[w.template].title}, {w.classes} classes, top-1 "
            f"{w.acc1:.2f} %, top-5 {w.acc5:.2f} %.<br>Input: {w.input_spec().describe()}."
            f"<br>File: {w.file_name}, {where}.<br>Cache folder: {cache_dir()}")


def fetch_and_build(w: PretrainedWeights, progress=None, should_stop=None) -> Pretrained | None:
    """In the worker: the verified file (downloaded when needed), read into its template. None
    when cancelled. `progress(text, permille, 1000)` and `should_stop()` from FunctionWorker."""

    def step(stage: str, done: int, total: int) -> None:
        if progress is None:
            return
        verb = "Checking" if stage == "check" else "Downloading"
        if total:
            progress(f"{verb} {w.file_name}: {done / 1e6:,.1f} of {total / 1e6:,.1f} MB",
                     int(1000 * done / total), 1000)
        else:
            progress(f"{verb} {w.file_name}: {done / 1e6:,.1f} MB", 0, 0)

    def reading(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled
        if progress is not None and total:
            progress(f"Reading {w.file_name}: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB",
                     int(1000 * done / total), 1000)

    try:
        path = fetch(w, progress=step, should_stop=should_stop)
        return build_pretrained(w, path, progress=reading)
    except (DownloadCancelled, Cancelled):
        return None


class PretrainedOpener(QObject):
    """Runs fetch_and_build in a worker with a progress dialog on `host`; emits `opened(result)`
    with the Pretrained (None when cancelled) or `failed(text)`."""

    opened = Signal(object)
    failed = Signal(str)

    def __init__(self, host: QWidget):
        super().__init__(host)
        self.host = host
        self._thread = None
        self._worker: FunctionWorker | None = None
        self.dialog: QProgressDialog | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, w: PretrainedWeights) -> bool:
        if self._worker is not None:
            return False
        dialog = QProgressDialog(f"Preparing {w.file_name}…", "Cancel", 0, 1000, self.host)
        dialog.setWindowTitle(f"{APP_NAME}: {display_name(w)}")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)
        dialog.setMinimumWidth(460)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setValue(0)
        dialog.canceled.connect(self.cancel)
        self.dialog = dialog
        worker = FunctionWorker(fetch_and_build, w)
        worker.stepped.connect(self._on_step)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._worker = worker
        self._thread = start_worker(worker, self)
        return True

    def cancel(self) -> None:
        # in the GUI thread: cancel() only sets a threading.Event the worker polls
        if self._worker is not None:
            self._worker.cancel()
            if self.dialog is not None:
                self.dialog.setLabelText("Cancelling…")

    def _on_step(self, text: str, done: int, total: int) -> None:
        if self.dialog is not None and not self._worker.cancelled:
            self.dialog.setLabelText(text)
            self.dialog.setMaximum(total)
            self.dialog.setValue(done)

    def _end(self) -> None:
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
        stop_thread(self._thread)
        self._thread, self._worker = None, None

    def _on_finished(self, result) -> None:
        self._end()
        self.opened.emit(result)

    def _on_failed(self, text: str) -> None:
        self._end()
        self.failed.emit(text)

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        stop_thread(self._thread)
        self._thread, self._worker = None, None

