"""The Runs panel: every recorded training run of the document's project (engine.runs), in a
sortable table (metric, duration, params, MACs), the curves of the selected runs overlaid, the
architecture / hyperparameter diff of two selected runs, notes and tags, "open this run" and
delete. It reads the run store file beside the project; the store is written by the training
loop, so the panel only refreshes (on show, after a run, on Refresh)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QFontDatabase, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.errors import EngineError
from engine.graph import Graph
from engine.runs import RunDiff, RunStore, diff_runs, runs_path
from engine.runs.report import COLUMNS, cell, runs_with_changes

from .training_panel import style_plot

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
# a qualitative palette that reads on light and dark backgrounds (Tableau 10)
COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
          "#ff9da7", "#9c755f", "#bab0ac")
NUMERIC = {"id", "best_val_accuracy", "test_accuracy", "params", "macs", "seconds",
           "images_per_s"}


class RunsPanel(QWidget):
    """Table, curves, diff, notes and tags of the runs recorded for the document."""

    open_requested = Signal(object, object, str)  # Graph, weights (or None), title: restore
    open_new_requested = Signal(object, object, str)  # the same, as a new document
    status_posted = Signal(str, int)

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.store: RunStore | None = None
        self.runs: list[dict] = []
        self._build()
        doc.path_changed.connect(self.refresh)
        doc.history_changed.connect(self.refresh)  # a GUI training run just ended
        self.refresh()

    # -- layout --
    def _build(self) -> None:
        self.where = QLabel()
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: tag, status, change…")
        self.filter.setClearButtonEnabled(True)
        self.filter.setMaximumWidth(220)
        self.where.setMinimumWidth(40)
        self.where.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.refresh_button = QPushButton("Refresh")
        self.open_button = QPushButton("Open Run")
        self.open_button.setToolTip("Restore the selected run's architecture, input spec and "
                                    "best epoch's weights in this document (Undo brings the "
                                    "design back); right-click a run to open it as a new "
                                    "document")
        self.sweep_button = QPushButton("Sweep…")
        self.sweep_button.setToolTip("Search hyperparameters and architecture variants of this "
                                     "network (Optuna); every trial becomes a run here")
        self.sweep_dialog = None
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected runs from the run store")
        top = QHBoxLayout()
        top.addWidget(self.where, 1)
        top.addWidget(self.filter)
        for b in (self.refresh_button, self.sweep_button, self.open_button, self.delete_button):
            top.addWidget(b)

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels([h for _, h in COLUMNS])
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(
            self.table.fontMetrics().height() + 8)
        self.table.setWordWrap(False)
        head = self.table.horizontalHeader()
        head.setHighlightSections(False)
        head.setStretchLastSection(True)
        head.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)

        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(140)
        self.plot.setLabel("bottom", "epoch")
        self.plot.setLabel("left", "accuracy (%)")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.legend = self.plot.addLegend(offset=(-8, 8), labelTextSize="8pt")
        style_plot(self.plot, self)

        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.diff_view = QPlainTextEdit()
        self.diff_view.setReadOnly(True)
        self.diff_view.setFont(mono)
        self.diff_view.setPlaceholderText("Select a run for what changed since the run "
                                          "before it, or two runs to compare them.")
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("Notes on the selected run")
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("tags, separated by commas")
        self.save_notes_button = QPushButton("Save Notes")
        notes_box = QWidget()
        nl = QVBoxLayout(notes_box)
        nl.setContentsMargins(0, 4, 0, 0)
        nl.addWidget(self.notes, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Tags:"))
        row.addWidget(self.tags, 1)
        row.addWidget(self.save_notes_button)
        nl.addLayout(row)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.diff_view, "Differences")
        self.tabs.addTab(notes_box, "Notes && Tags")

        # a wide, short dock (below the canvas) puts table | curves | details side by side;
        # a tall one (floating, or at the side) stacks them: see resizeEvent
        self.lower = lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.plot)
        lower.addWidget(self.tabs)
        lower.setChildrenCollapsible(False)
        self.split = split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(lower)
        split.setChildrenCollapsible(False)
        self.table.setMinimumWidth(200)
        self.tabs.setMinimumWidth(160)
        self.plot.setMinimumWidth(160)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addWidget(split, 1)

        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(lambda: self.open_selected())
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.act_open = QAction("Open Run (undoable, in this document)", self.table)
        self.act_open.triggered.connect(lambda: self.open_selected())
        self.act_open_new = QAction("Open Run as New Document", self.table)
        self.act_open_new.triggered.connect(lambda: self.open_selected(new_document=True))
        self.table.addActions([self.act_open, self.act_open_new])
        self.sweep_button.clicked.connect(self.show_sweep_dialog)
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.save_notes_button.clicked.connect(self.save_notes)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self._update_buttons()

    def changeEvent(self, event):
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:
            style_plot(self.plot, self)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        wide = self.width() > 2.2 * self.height()
        want = Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical
        if self.split.orientation() != want:
            self.split.setOrientation(want)
            self.lower.setOrientation(Qt.Orientation.Vertical if wide
                                      else Qt.Orientation.Horizontal)
            w, h = self.split.width(), self.split.height()
            self.split.setSizes([w * 11 // 20, w * 9 // 20] if wide else [h // 2, h // 2])
            lw, lh = self.lower.width(), self.lower.height()
            self.lower.setSizes([lh * 3 // 5, lh * 2 // 5] if wide
                                else [lw * 3 // 5, lw * 2 // 5])

    def showEvent(self, event):
        super().showEvent(event)
        self.refresh()

    # -- data --
    def refresh(self, *_) -> None:
        """Re-read the run store of the document (keeps the selection)."""
        path = runs_path(self.doc.path)
        self.store = RunStore(path)
        keep = set(self.selected_ids())
        try:
            self.runs = runs_with_changes(self.store)
            problem = None
        except EngineError as exc:
            self.runs, problem = [], str(exc)
        n = len(self.runs)
        self.where.setText(problem or (f"{n} run{'s' * (n != 1)} in {path.name}" if n else
                                       f"No runs recorded yet for this document ({path.name}); "
                                       f"every training run will be listed here."))
        self.where.setToolTip(str(path))
        sorting = self.table.isSortingEnabled()
        self.table.setSortingEnabled(False)
        self.model.setRowCount(0)
        for r in self.runs:
            row = []
            for key, _ in COLUMNS:
                it = QStandardItem(cell(r, key))
                raw = r.get(key)
                it.setData(raw if key in NUMERIC and raw is not None else
                           (-1 if key in NUMERIC else it.text()), SORT_ROLE)
                it.setData(r["id"], ID_ROLE)
                if key in NUMERIC or key == "epochs":
                    it.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                        | Qt.AlignmentFlag.AlignVCenter)
                if key == "changes":
                    it.setToolTip(it.text())
                if key == "status" and r["status"] in ("failed", "aborted"):
                    it.setToolTip(r.get("notes") or r["status"])
                row.append(it)
            self.model.appendRow(row)
        self.table.setSortingEnabled(sorting)
        self.table.resizeColumnsToContents()
        head = self.table.horizontalHeader()
        for i, (key, _) in enumerate(COLUMNS):
            if key in ("changes", "notes"):
                head.resizeSection(i, min(head.sectionSize(i), 320))
        if keep:
            self.select_ids(keep)
        self._on_selection()

    def selected_ids(self) -> list[int]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return sorted(int(self.proxy.data(i, ID_ROLE)) for i in rows)

    def select_ids(self, ids) -> None:
        sel = self.table.selectionModel()
        sel.clearSelection()
        for row in range(self.proxy.rowCount()):
            idx = self.proxy.index(row, 0)
            if int(self.proxy.data(idx, ID_ROLE)) in ids:
                sel.select(idx, sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def _update_buttons(self) -> None:
        ids = self.selected_ids()
        self.open_button.setEnabled(len(ids) == 1)
        self.act_open.setEnabled(len(ids) == 1)
        self.act_open_new.setEnabled(len(ids) == 1)
        self.delete_button.setEnabled(bool(ids))
        self.save_notes_button.setEnabled(len(ids) == 1)
        self.notes.setEnabled(len(ids) == 1)
        self.tags.setEnabled(len(ids) == 1)

    def _on_selection(self, *_) -> None:
        ids = self.selected_ids()
        self._update_buttons()
        self._plot(ids)
        self._show_diff(ids)
        if len(ids) == 1:
            run = next(r for r in self.runs if r["id"] == ids[0])
            self.notes.setPlainText(run.get("notes") or "")
            self.tags.setText(", ".join(run.get("tags") or []))
        else:
            self.notes.clear()
            self.tags.clear()

    def _plot(self, ids: list[int]) -> None:
        self.plot.clear()
        self.legend.clear()
        for k, rid in enumerate(ids[:len(COLORS)]):
            eps = self.store.epochs(rid)
            x = [e["epoch"] for e in eps if e["val_accuracy"] is not None]
            y = [100 * e["val_accuracy"] for e in eps if e["val_accuracy"] is not None]
            color = COLORS[k % len(COLORS)]
            self.plot.plot(x, y, pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                           symbolBrush=color, symbolPen=None, name=f"run {rid}")
            xt = [e["epoch"] for e in eps]
            yt = [100 * e["train_accuracy"] for e in eps]
            self.plot.plot(xt, yt, pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))
        last = max((max((e["epoch"] for e in self.store.epochs(r)), default=1)
                    for r in ids), default=1)
        step = max(1, -(-last // 8))  # whole epochs, at most ~8 ticks
        self.plot.getAxis("bottom").setTickSpacing(step, step)
        self.plot.setTitle("solid: validation · dashed: training" if ids else "", size="9pt")
        style_plot(self.plot, self)

    def _show_diff(self, ids: list[int]) -> None:
        if not ids:
            self.diff_view.clear()
            return
        try:
            if len(ids) == 1:
                run = self.store.get_run(ids[0])
                head = (f"run {ids[0]} against run {run['previous']}:" if run["previous"]
                        else f"run {ids[0]} is the first run.")
                lines = RunDiff.from_json(run["diff"]).lines() if run["diff"] else []
            else:
                a, b = self.store.get_run(ids[0]), self.store.get_run(ids[-1])
                d = diff_runs(a["graph"], b["graph"], a["config"], b["config"])
                head = f"run {ids[0]} → run {ids[-1]}:"
                lines = d.lines()
                if len(ids) > 2:
                    head += f" (the first and last of the {len(ids)} selected)"
        except EngineError as exc:
            self.diff_view.setPlainText(str(exc))
            return
        self.diff_view.setPlainText("\n".join([head, *lines]))

    # -- actions --
    def save_notes(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 1:
            return
        try:
            self.store.set_notes(ids[0], self.notes.toPlainText())
            self.store.set_tags(ids[0], self.tags.text().split(","))
        except EngineError as exc:
            self.status_posted.emit(str(exc), 8000)
            return
        self.status_posted.emit(f"Saved the notes of run {ids[0]}", 4000)
        self.refresh()

    def delete_selected(self, confirm: bool = True) -> bool:
        ids = self.selected_ids()
        if not ids:
            return False
        if confirm:
            names = ", ".join(map(str, ids))
            answer = QMessageBox.question(
                self, "Delete Runs", f"Delete run{'s' * (len(ids) > 1)} {names} with "
                f"{'their' if len(ids) > 1 else 'its'} curves and weights? This cannot be "
                f"undone.")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            for rid in ids:
                self.store.delete(rid)
        except EngineError as exc:
            self.status_posted.emit(str(exc), 8000)
        self.refresh()
        return True

    def show_sweep_dialog(self):
        """The (non-modal) Sweep dialog over the document's network; its trials land here."""
        from .sweep_dialog import SweepDialog

        if self.sweep_dialog is None:
            self.sweep_dialog = SweepDialog(self.doc, self)
            self.sweep_dialog.open_requested.connect(self.open_requested)
            self.sweep_dialog.open_new_requested.connect(self.open_new_requested)
            self.sweep_dialog.timer.timeout.connect(self.refresh)
            self.sweep_dialog.finished.connect(self.refresh)
        self.sweep_dialog.show()
        self.sweep_dialog.raise_()
        return self.sweep_dialog

    def open_selected(self, new_document: bool = False) -> bool:
        """Emit open_requested (open_new_requested) with the selected run's graph and best
        weights."""
        ids = self.selected_ids()
        if len(ids) != 1:
            return False
        try:
            run = self.store.get_run(ids[0])
            best = self.store.best_weights(ids[0])
            graph = Graph.from_json(run["graph"])
        except EngineError as exc:
            self.status_posted.emit(str(exc), 8000)
            return False
        weights = best[1] if best else None
        epoch = f", epoch {best[0]}" if best else ", no weights"
        signal = self.open_new_requested if new_document else self.open_requested
        signal.emit(graph, weights, f"run {ids[0]}{epoch}")
        return True
