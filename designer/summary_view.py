"""The live model summary: one row per layer (shape, parameters, MACs, receptive field), totals.

Reads `engine.summary.summarize(graph, doc.validation)` after every edit, so its figures are the
ones `cnn-designer summary` prints; exports use that module's CSV / Markdown writers.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.fileio import atomic_write_text
from engine.summary import Summary, format_summary, human_bytes, human_count, summarize

from .theme import is_dark, layer_icon, severity_color, severity_icon, theme_state

COLUMNS = ("Layer", "Type", "Output shape", "Params", "MACs", "RF / step")
NUMERIC = {3, 4}
ID_ROLE = Qt.ItemDataRole.UserRole + 1
_ROOT = QModelIndex()


def _pair(p) -> str:
    if p is None:
        return "—"
    return f"{p[0]}×{p[1]}"


class SummaryModel(QAbstractTableModel):
    """Rows of an engine Summary; errors per node tint their rows."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary: Summary | None = None
        self.error_ids: set[str] = set()
        self.warning_ids: set[str] = set()
        self.dark = False
        self.compact = False  # Type column as an icon only (a narrow dock); name in tooltips

    def set_compact(self, compact: bool) -> None:
        if compact != self.compact:
            self.compact = compact
            self.dataChanged.emit(self.index(0, 1), self.index(max(self.rowCount() - 1, 0), 1))
            self.headerDataChanged.emit(Qt.Orientation.Horizontal, 1, 1)

    def set_summary(self, summary: Summary, error_ids: set[str], warning_ids: set[str],
                    dark: bool) -> None:
        self.beginResetModel()
        self.summary, self.error_ids, self.warning_ids, self.dark = (summary, error_ids,
                                                                      warning_ids, dark)
        self.endResetModel()

    def rowCount(self, parent=_ROOT):
        return 0 if parent.isValid() or self.summary is None else len(self.summary.rows)

    def columnCount(self, parent=_ROOT):
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return "" if self.compact and section == 1 else COLUMNS[section]
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return int((Qt.AlignmentFlag.AlignRight if section in NUMERIC
                            else Qt.AlignmentFlag.AlignLeft) | Qt.AlignmentFlag.AlignVCenter)
            if role == Qt.ItemDataRole.ToolTipRole and section == 5:
                return ("Input pixels one output value depends on, and the step between "
                        "neighbouring outputs in input pixels")
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.summary is None:
            return None
        r = self.summary.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return r.name
            if col == 1:
                return "" if self.compact else r.type
            if col == 2:
                return r.shape_text if r.output_shape else "?"
            if col == 3:
                return f"{r.params:,}" if r.output_shape else "—"
            if col == 4:
                return human_count(r.macs) if r.macs else ("0" if r.output_shape else "—")
            if col == 5:
                if r.receptive_field is None:
                    return "—"
                step = r.jump[0] if r.jump and r.jump[0] == r.jump[1] else _pair(r.jump)
                return f"{_pair(r.receptive_field)}  / {step}"
        if role == ID_ROLE:
            return r.id
        if role == Qt.ItemDataRole.DecorationRole:
            if col == 1:
                return layer_icon(r.type, self.dark)
            if col == 0 and r.id in self.error_ids:
                return severity_icon("error", self.dark)
            if col == 0 and r.id in self.warning_ids:
                return severity_icon("warning", self.dark)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int((Qt.AlignmentFlag.AlignRight if col in NUMERIC
                        else Qt.AlignmentFlag.AlignLeft) | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and r.id in self.error_ids and col in (0, 2):
            return severity_color("error", self.dark)
        if role == Qt.ItemDataRole.ToolTipRole:
            tips = [f"{r.name}: {r.type}" + (f" ({r.details})" if r.details else "")]
            if r.output_shape is not None:
                tips.append(f"{r.trainable_params:,} trainable, {r.non_trainable_params:,} "
                            f"non-trainable parameters; {r.macs:,} MACs")
            if r.receptive_field is not None:
                tips.append(f"sees {_pair(r.receptive_field)} input pixels, steps "
                            f"{_pair(r.jump)} px")
            return "\n".join(tips)
        return None


class SummaryPanel(QWidget):
    """Summary dock: layer table, totals, export buttons.

    Signals: node_activated(str node_id) when a row is clicked (the window selects that node).
    """

    node_activated = Signal(str)

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("SummaryPanel")
        self.doc = doc
        self.summary: Summary | None = None
        self.model = SummaryModel(self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        # long names (DenseNet's "features.denseblock1.denselayer3.conv1") are elided in the
        # middle, where they differ least; the full name is in the row's tooltip
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        hh = self.table.horizontalHeader()
        hh.setHighlightSections(False)
        hh.setStretchLastSection(False)
        hh.setMinimumSectionSize(24)
        hh.setResizeContentsPrecision(300)  # big graphs: size from the first 300 rows
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # see _fit_columns
        self.table.setMinimumWidth(200)
        self.table.clicked.connect(self._clicked)

        # totals: label / value pairs, two pairs a row (narrow docks stay narrow)
        self.totals = QWidget(self)
        grid = QGridLayout(self.totals)
        grid.setContentsMargins(4, 2, 4, 2)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        self.total_labels: dict[str, QLabel] = {}
        names = [("total", "Params", "Total parameters"),
                 ("trainable", "Trainable", "Parameters the optimizer updates"),
                 ("macs", "MACs", "Multiply-accumulates per sample"),
                 ("non_trainable", "Non-trainable",
                  ("Parameters the optimizer leaves alone (BatchNorm running statistics, "
                   "frozen layers)")),
                 ("weights", "Weights", "Weight memory (float32)"),
                 ("activations", "Activations", "Activation memory of one sample (float32)")]
        for k, (key, text, tip) in enumerate(names):
            r, c = divmod(k, 2)
            cap = QLabel(text, self.totals)
            cap.setToolTip(tip)
            cap.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            val = QLabel("—", self.totals)
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            f = val.font()
            f.setBold(True)
            val.setFont(f)
            grid.addWidget(cap, r, 3 * c, Qt.AlignmentFlag.AlignLeft)
            grid.addWidget(val, r, 3 * c + 1, Qt.AlignmentFlag.AlignRight)
            self.total_labels[key] = val
        grid.setColumnMinimumWidth(2, 18)
        grid.setColumnStretch(2, 1)
        grid.setColumnStretch(5, 1)

        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.export_csv = QPushButton("CSV…", self)
        self.export_md = QPushButton("Markdown…", self)
        self.export_csv.setToolTip("Export this table as comma-separated values")
        self.export_md.setToolTip("Export this table as Markdown (for reports, READMEs)")
        self.export_csv.clicked.connect(lambda: self._export_dialog("csv"))
        self.export_md.clicked.connect(lambda: self._export_dialog("markdown"))
        export_label = QLabel("Export", self)
        export_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(export_label)
        bottom.addWidget(self.export_csv)
        bottom.addWidget(self.export_md)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.totals)
        lay.addLayout(bottom)

        doc.validated.connect(self._on_validated)
        doc.graph_reset.connect(self.refresh)
        theme_state().changed.connect(self._on_theme_changed)
        self._sized = False
        self.refresh()

    # ---- content ---------------------------------------------------------------------------

    def _on_validated(self, _validation) -> None:
        self.refresh()

    def _on_theme_changed(self, _dark: bool) -> None:
        self.refresh()

    def refresh(self) -> None:
        graph, v = self.doc.graph, self.doc.validation
        self.summary = s = summarize(graph, v)
        errors = {m.node_id for m in v.errors if m.node_id}
        warnings = {m.node_id for m in v.warnings if m.node_id} - errors
        dark = is_dark(self.palette())
        current = self.current_node()
        self.model.set_summary(s, errors, warnings, dark)
        if current is not None:
            self.select_node(current, emit=False)
        t = self.total_labels
        t["trainable"].setText(f"{s.trainable_params:,}")
        t["non_trainable"].setText(f"{s.non_trainable_params:,}")
        t["total"].setText(f"{s.total_params:,}")
        t["macs"].setText(f"{human_count(s.macs)}")
        t["macs"].setToolTip(f"{s.macs:,} multiply-accumulates per forward pass of one sample")
        t["weights"].setText(human_bytes(s.weight_bytes))
        t["weights"].setToolTip(f"{s.weight_bytes:,} bytes as float32")
        t["activations"].setText(human_bytes(s.activation_bytes))
        n_err, n_warn = len(v.errors), len(v.warnings)
        if n_err:
            c = severity_color("error", dark).name()
            self.status.setText(f"<span style='color:{c}'>{n_err} error{'s' * (n_err != 1)}"
                                "</span>")
            self.status.setToolTip("Layers after an error have unknown shapes and counts ('?').")
        elif n_warn:
            self.status.setText(f"{n_warn} warning{'s' * (n_warn != 1)}")
            self.status.setToolTip("")
        else:
            self.status.setText(f"{len(s.rows)} layers, valid")
            self.status.setToolTip("")
        self._fit_columns()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Every column fits the dock: the Layer column takes the room left (names elided in
        the middle); when that is too little, Type shows its icon only, then RF / step
        hides."""
        room = self.table.viewport().width() if self.table.isVisible() else self.width() - 16
        rows = self.summary.rows if self.summary is not None else []
        fm = self.table.fontMetrics()
        hh = self.table.horizontalHeader()
        icon = self.table.iconSize().width() if self.table.iconSize().isValid() else 16
        type_w = 24 + icon + max([fm.horizontalAdvance(r.type) for r in rows] + [40])
        rest = sum(max(hh.sectionSizeHint(c), self.table.sizeHintForColumn(c))
                   for c in (2, 3, 4))
        rf = max(hh.sectionSizeHint(5), self.table.sizeHintForColumn(5))
        names = 16 + max([fm.horizontalAdvance(r.name) for r in rows[:300]] + [60])
        compact = room - (type_w + rest + rf) < 110
        self.model.set_compact(compact)
        type_now = icon + 18 if compact else type_w
        self.table.setColumnHidden(5, room - (type_now + rest + rf) < 90)
        # wide: every column at its content's width, the last one takes the rest (the
        # numbers stay beside the names); narrow: the Layer column takes the rest, elided
        roomy = room >= names + type_now + rest + rf
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents if roomy
                                else QHeaderView.ResizeMode.Stretch)
        hh.setStretchLastSection(roomy)

    def current_node(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].data(ID_ROLE) if rows else None

    def select_node(self, node_id: str | None, emit: bool = False) -> None:
        """Highlight the row of `node_id` (the window calls this on canvas selection)."""
        if self.summary is None:
            return
        for r, row in enumerate(self.summary.rows):
            if row.id == node_id:
                self.table.blockSignals(not emit)
                self.table.selectRow(r)
                self.table.blockSignals(False)
                return
        self.table.clearSelection()

    def _clicked(self, index) -> None:
        nid = index.data(ID_ROLE)
        if nid:
            self.node_activated.emit(nid)

    # ---- export ----------------------------------------------------------------------------

    def export(self, path: str | os.PathLike, fmt: str) -> Path:
        """Write the summary as "csv" or "markdown" (or "text" / "json") atomically."""
        s = self.summary or summarize(self.doc.graph, self.doc.validation)
        text = format_summary(s, fmt)
        path = Path(path)
        write_atomic(path, text)
        return path

    def _export_dialog(self, fmt: str) -> None:
        ext, filt = (".csv", "CSV (*.csv)") if fmt == "csv" else (".md", "Markdown (*.md)")
        stem = (self.doc.path.stem if getattr(self.doc, "path", None) else
                (self.doc.graph.name or "network").replace(" ", "_"))
        start = str(Path.home() / f"{stem}_summary{ext}")
        path, _ = QFileDialog.getSaveFileName(self, "Export summary", start, filt)
        if not path:
            return
        if not path.endswith(ext):
            path += ext
        try:
            self.export(path, fmt)
        except OSError as exc:
            QMessageBox.warning(self, "Export summary", f"Could not write {path}:\n{exc}")
            return
        self.status.setText(f"Saved {Path(path).name}")


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder + os.replace (engine.fileio): never a
    half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


__all__ = ["COLUMNS", "SummaryModel", "SummaryPanel", "write_atomic"]
