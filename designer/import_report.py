"""The Import Report dialog: after an ONNX file opens, what became of its nodes (engine's
ImportRecord) and the imported network's parity with ONNX Runtime running the original file
(engine.onnx.report.check_parity), computed in a worker thread with progress and Cancel.

Non-modal: the user can work on the network while the check runs; closing only hides it
(File ▸ Import Report… shows it again). The file controller owns one per imported document.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.onnx.report import ImportRecord, Parity, check_parity, tolerance

from .theme import is_dark, severity_color, severity_icon, theme_state
from .workers import FunctionWorker, start_worker, stop_thread

RUNNING, MATCHES, DIFFERS, UNCHECKED, CANCELLED, FAILED = (
    "running", "matches", "differs", "unchecked", "cancelled", "failed")
# badge text and severity colour per state (None: neutral)
BADGES = {RUNNING: ("Checking…", None), MATCHES: ("✔  Matches ONNX Runtime", "ok"),
          DIFFERS: ("✖  Differs from ONNX Runtime", "error"),
          UNCHECKED: ("Not checked", "warning"), CANCELLED: ("Check cancelled", None),
          FAILED: ("Check failed", "error"), None: ("Not checked yet", None)}


def run_check(source, imported, progress=None, should_stop=None) -> Parity | None:
    """The worker's job: parity of `imported` (an ImportedModel; None: import `source` again,
    as the document may have changed since) with ONNX Runtime on `source`."""
    if imported is None:
        from engine.onnx.importer import import_onnx

        if progress is not None:
            progress(f"importing {Path(source).name} again…", 0, 1)
        imported = import_onnx(source)
        if should_stop is not None and should_stop():
            return None
    return check_parity(source, imported, progress=progress, should_stop=should_stop)


class _Tile(QFrame):
    """A figure with its caption above it (max abs error, ...)."""

    def __init__(self, caption: str, tip: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("tile")
        self.caption = QLabel(caption)
        self.caption.setObjectName("caption")
        self.value = QLabel("—")
        self.value.setObjectName("value")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.45)
        f.setBold(True)
        self.value.setFont(f)
        self.setToolTip(tip)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(14, 10, 14, 10)
        lay.setSpacing(2)
        lay.addWidget(self.caption)
        lay.addWidget(self.value)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)


class ImportReportDialog(QDialog):
    """The report of one import; `start_check()` runs the parity check (once on opening)."""

    check_finished = Signal(object)  # Parity, or None when cancelled or failed

    def __init__(self, record: ImportRecord, source: Path | None, imported=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.record, self.source = record, Path(source) if source is not None else None
        self._imported = imported  # the in-memory import, for the first check only
        self.parity: Parity | None = None
        self.state: str | None = None
        self.error: str | None = None
        self._thread = self._worker = None
        self.setWindowTitle(f"Import Report — {record.source}")
        self.setModal(False)
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.setSizeGripEnabled(True)
        self._build()
        self._fill_record()
        self._show_state(None)
        self._restyle()
        theme_state().changed.connect(self._restyle)
        self._fit_to_screen()

    # ---- construction -------------------------------------------------------------------------

    def _build(self) -> None:
        rec = self.record
        self.title = QLabel(rec.source)
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.5)
        f.setBold(True)
        self.title.setFont(f)
        self.subtitle = QLabel()
        self.subtitle.setObjectName("muted")
        self.subtitle.setWordWrap(True)
        self.badge = QLabel()
        self.badge.setObjectName("badge")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        head_text = QVBoxLayout()
        head_text.setSpacing(2)
        head_text.addWidget(self.title)
        head_text.addWidget(self.subtitle)
        head = QHBoxLayout()
        head.addLayout(head_text, 1)
        head.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)

        # facts of the import
        self.facts = QGridLayout()
        self.facts.setHorizontalSpacing(16)
        self.facts.setVerticalSpacing(6)
        self.fact_labels: dict[str, QLabel] = {}
        for row, key in enumerate(("Opset", "Result", "Input")):
            name = QLabel(key)
            name.setObjectName("muted")
            value = QLabel()
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.facts.addWidget(name, row, 0, Qt.AlignmentFlag.AlignTop)
            self.facts.addWidget(value, row, 1)
            self.fact_labels[key] = value
        self.facts.setColumnStretch(1, 1)

        # parity
        self.parity_title = self._section("Numeric parity with ONNX Runtime")
        self.tile_abs = _Tile("Max absolute error", "The largest |engine − ONNX Runtime| over "
                              "every output value of every sample")
        self.tile_rel = _Tile("Max relative error", "Each sample's largest |engine − ONNX "
                              "Runtime| divided by its largest |ONNX Runtime output|; the "
                              "worst sample's")
        self.tile_top1 = _Tile("Top-1 agreement", "Samples (pixels, for image outputs) whose "
                               "largest output is the same class in both")
        tiles = QHBoxLayout()
        tiles.setSpacing(10)
        for t in (self.tile_abs, self.tile_rel, self.tile_top1):
            tiles.addWidget(t)
        self.parity_detail = QLabel()
        self.parity_detail.setObjectName("muted")
        self.parity_detail.setWordWrap(True)
        self.parity_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.status = QLabel()
        self.status.setObjectName("muted")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the check (the import itself is kept)")
        self.cancel_button.clicked.connect(self.cancel_check)
        self.again_button = QPushButton("Check Again")
        self.again_button.setToolTip("Import the file again and compare it with ONNX Runtime")
        self.again_button.clicked.connect(lambda: self.start_check())
        # the detail (or, while running, the step and its progress) beside the buttons
        prow = QHBoxLayout()
        prow.setSpacing(10)
        pcol = QVBoxLayout()
        pcol.setSpacing(4)
        pcol.addWidget(self.parity_detail)
        pcol.addWidget(self.status)
        pcol.addWidget(self.progress)
        prow.addLayout(pcol, 1)
        prow.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignTop)
        prow.addWidget(self.again_button, 0, Qt.AlignmentFlag.AlignTop)

        # the op table, each op's nodes beneath it
        self.ops_title = self._section("Operators and what they became")
        self.ops = QTreeWidget()
        self.ops.setColumnCount(3)
        self.ops.setHeaderLabels(["ONNX op / node", "Nodes", "Became"])
        self.ops.setAlternatingRowColors(True)
        self.ops.setUniformRowHeights(True)
        self.ops.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.ops.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        header = self.ops.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

        # warnings
        self.warnings_title = self._section("Warnings")
        self.warnings = QListWidget()
        self.warnings.setWordWrap(True)
        self.warnings.setIconSize(QSize(16, 16))
        self.warnings.setFrameShape(QFrame.Shape.StyledPanel)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = self.buttons.addButton("Copy Report",
                                                  QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.setToolTip("Copy the report as text (every node, the parity figures)")
        self.copy_button.clicked.connect(self.copy_report)
        self.buttons.rejected.connect(self.hide)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(20, 18, 20, 14)
        lay.setSpacing(8)
        lay.addLayout(head)
        lay.addSpacing(4)
        lay.addLayout(self.facts)
        lay.addSpacing(8)
        lay.addWidget(self.parity_title)
        lay.addLayout(tiles)
        lay.addLayout(prow)
        lay.addSpacing(8)
        lay.addWidget(self.ops_title)
        lay.addWidget(self.ops, 1)
        lay.addWidget(self.warnings_title)
        lay.addWidget(self.warnings)
        lay.addWidget(self.buttons)

    def _section(self, text: str) -> QLabel:
        label = QLabel(text)
        f = QFont(self.font())
        f.setBold(True)
        label.setFont(f)
        return label

    def _fit_to_screen(self) -> None:
        """About 60 % × 80 % of the window it reports on (of the screen without one), within
        760×520 … 1100×820: 790×560 over a 1280×720 window, 990×780 over 1600×1000."""
        host = self.parentWidget().window() if self.parentWidget() is not None else None
        screen = host.screen() if host is not None else QGuiApplication.primaryScreen()
        room = host.size() if host is not None else screen.availableGeometry().size()
        w = min(max(int(room.width() * 0.62), 760), 1100)
        h = min(max(int(room.height() * 0.78), 520), 820)
        self.resize(w, h)

    def _fill_record(self) -> None:
        rec = self.record
        self.subtitle.setText(f"Made by {rec.producer_text()} · ONNX IR version "
                              f"{rec.ir_version}" + (f" · {self.source.parent}"
                                                      if self.source is not None else ""))
        self.subtitle.setToolTip(str(self.source) if self.source is not None else "")
        self.fact_labels["Opset"].setText(rec.conversion())
        self.fact_labels["Result"].setText(rec.counts().replace("->", "→"))
        self.fact_labels["Input"].setText(
            "channels-last (N×H×W×C) in the file, channels-first (N×C×H×W) here"
            if rec.channels_last_input else "N×C×H×W, as in the file")
        self.ops.clear()
        for row in rec.ops():
            top = QTreeWidgetItem([row.op_type, str(row.count), row.mapped_to])
            top.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            f = top.font(0)
            f.setBold(True)
            top.setFont(0, f)
            top.setToolTip(2, row.mapped_to)
            for m in row.nodes:
                child = QTreeWidgetItem([m.node, "", m.became()])
                child.setToolTip(0, m.node)
                child.setToolTip(2, m.became())
                top.addChild(child)
            self.ops.addTopLevelItem(top)
        fm = self.ops.fontMetrics()
        widest = max([fm.horizontalAdvance(m.node) for m in rec.nodes] or [0]) + 48
        self.ops.setColumnWidth(0, min(max(widest, 180), 340))
        self.warnings.clear()
        for w in rec.warnings:
            self.warnings.addItem(QListWidgetItem(severity_icon("warning", is_dark()), w))
        has = bool(rec.warnings)
        self.warnings_title.setVisible(has)
        self.warnings.setVisible(has)
        if has:
            rows = min(len(rec.warnings), 4)
            self.warnings.setFixedHeight(rows * (self.fontMetrics().height() + 10) + 8)

    # ---- the check ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start_check(self) -> bool:
        """Compare the import with ONNX Runtime in a worker thread (the first time with the
        import in memory, later by importing the file again); False when one is running or
        there is no file."""
        if self._thread is not None or (self.source is None and self._imported is None):
            return False
        imported, self._imported = self._imported, None
        self.parity, self.error = None, None
        self._show_state(RUNNING)
        self._worker = FunctionWorker(run_check, self.source, imported)
        self._worker.stepped.connect(self._on_step)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.done.connect(self._on_done)
        self._thread = start_worker(self._worker, self)
        self._show_buttons()
        return True

    def cancel_check(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._say("Cancelling after the current step…")
            self.cancel_button.setEnabled(False)

    def _on_step(self, text: str, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self._say(text[:1].upper() + text[1:])

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _on_finished(self, parity: Parity | None) -> None:
        self.parity = parity
        if parity is None:
            self._show_state(CANCELLED)
        else:
            self._show_state({True: MATCHES, False: DIFFERS, None: UNCHECKED}[parity.ok])
        self.check_finished.emit(parity)

    def _on_failed(self, text: str) -> None:
        self.error = text
        self._show_state(FAILED)
        self.check_finished.emit(None)

    def _on_done(self) -> None:
        stop_thread(self._thread)
        self._thread = self._worker = None
        self._show_buttons()

    def _show_buttons(self) -> None:
        running = self._thread is not None
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        self.again_button.setVisible(not running and self.source is not None)

    def _show_state(self, state: str | None) -> None:
        self.state = state
        text, _ = BADGES[state]
        self.badge.setText(text)
        p = self.parity
        figures = p is not None and p.max_abs is not None
        self.tile_abs.value.setText(f"{p.max_abs:.3g}" if figures else "—")
        self.tile_rel.value.setText(f"{p.max_rel:.3g}" if figures else "—")
        self._verdict_colour = {True: "ok", False: "error"}.get(p.ok) if figures else None
        self.tile_top1.value.setText(
            "n/a" if figures and p.top1 is None else
            f"{round(p.top1 * p.top1_of)} / {p.top1_of}  ({p.top1:.0%})" if figures else "—")
        if state == RUNNING:
            self._say("Starting…")
            self.progress.setRange(0, 0)
            self.parity_detail.setText("Running the imported network and ONNX Runtime on the "
                                       "original file with the same seeded inputs…")
        elif p is not None:
            shape = "×".join(map(str, p.input_shape))
            lines = [] if p.ok else [p.verdict()[:1].upper() + p.verdict()[1:] + "."]
            if figures:
                lines.append(f"{p.samples} seeded N(0, 1) inputs of {shape}; ONNX Runtime (CPU) "
                             f"running {p.against}; {p.seconds:.1f} s. Relative error: each "
                             f"sample's largest difference over its largest |output|, tolerance "
                             f"{tolerance(p.rtol)}.")
            self.parity_detail.setText("\n".join(lines))
            self._say("")
        elif state == CANCELLED:
            self.parity_detail.setText("The check was cancelled; the import itself is kept. "
                                       "Check Again compares it with ONNX Runtime.")
            self._say("")
        elif state == FAILED:
            self.parity_detail.setText(f"The check could not run: {self.error}")
            self._say("")
        else:
            self.parity_detail.setText("The imported network has not been compared with ONNX "
                                       "Runtime yet.")
            self._say("")
        self._show_buttons()
        self._restyle_badge()

    # ---- text, theme, closing -------------------------------------------------------------------

    def report_text(self) -> str:
        """The whole report as text: every node, then the parity."""
        text = self.record.text(nodes=True)
        if self.parity is not None:
            return text + "\n" + self.parity.text()
        return text + f"\nparity: {BADGES[self.state][0].strip('✔✖ ').lower()}"

    def copy_report(self) -> None:
        QGuiApplication.clipboard().setText(self.report_text())
        self._say("Report copied to the clipboard.")

    def _restyle(self, _dark: bool | None = None) -> None:
        """Colours from the application's palette (light or dark theme); re-run when the theme
        changes (theme_state().changed, after the new palette is in place)."""
        pal = QApplication.palette()
        muted = pal.color(pal.ColorRole.PlaceholderText).name()
        base = pal.color(pal.ColorRole.Base).name()
        border = pal.color(pal.ColorRole.Mid).name()
        self.setStyleSheet(
            f"QLabel#muted, QLabel#caption {{ color: {muted}; }}"
            f"QFrame#tile {{ background: {base}; border: 1px solid {border}; "
            f"border-radius: 6px; }}"
            f"QFrame#tile QLabel {{ background: transparent; border: none; }}"
            f"QTreeWidget::item {{ padding: 2px 0px; }}")
        for i in range(self.warnings.count()):
            self.warnings.item(i).setIcon(severity_icon("warning", is_dark()))
        self._restyle_badge()

    def _restyle_badge(self) -> None:
        severity = BADGES[self.state][1]
        dark = is_dark()
        pal = QApplication.palette()
        colour = getattr(self, "_verdict_colour", None)
        self.tile_rel.value.setStyleSheet(
            f"color: {severity_color(colour, dark).name()};" if colour else "")
        if severity is None:
            fg = pal.color(pal.ColorRole.WindowText)
            bg = pal.color(pal.ColorRole.Mid if dark else pal.ColorRole.Midlight)
        else:
            fg = severity_color(severity, dark)
            bg = severity_color(severity, dark)
            bg.setAlpha(48 if dark else 28)
        self.badge.setStyleSheet(
            f"QLabel#badge {{ color: {fg.name()}; background: rgba({bg.red()}, {bg.green()}, "
            f"{bg.blue()}, {bg.alpha()}); border: 1px solid {fg.name()}; border-radius: 12px; "
            f"padding: 4px 12px; font-weight: bold; }}")

    def shutdown(self) -> None:
        """Cancel a running check and wait for its thread (closing the document or the app)."""
        if self._worker is not None:
            self._worker.cancel()
        stop_thread(self._thread, 60000)
