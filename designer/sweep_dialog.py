"""The Sweep dialog: an Optuna sweep (engine.sweep) over the document's network, run in a worker
thread (or worker processes) with progress and Cancel; its trials in a table as they finish, a
parallel-coordinates plot of the trials, a slice plot (validation accuracy against one searched
value), and "Open Best" (restored in the document, undoably, or as a new one).
Every trial is also a run in the document's run store, so the Runs panel lists them too."""

from __future__ import annotations

import os
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.errors import EngineError
from engine.graph import Graph
from engine.nn.train import TrainConfig
from engine.project import save_architecture
from engine.runs import RunStore, runs_path

from .parallel_plot import ParallelCoordinatesPlot
from .training_panel import style_plot
from .workers import FunctionWorker, start_worker, stop_thread

POLL_MS = 1000


def sweep_in_thread(setup, jobs: int, should_stop=None):
    """What the worker thread runs: the sweep, then its results."""
    from engine.sweep.study import run_sweep, sweep_results

    run_sweep(setup, jobs, log=lambda m: None, should_stop=should_stop)
    return sweep_results(setup)


class SweepDialog(QDialog):
    """Set up, run and read a sweep of the document's network."""

    open_requested = Signal(object, object, str)  # Graph, weights, title (as the Runs panel)
    open_new_requested = Signal(object, object, str)  # the same, as a new document

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Sweep")
        self.doc = doc
        self.setup = None
        self.thread = self.worker = None
        self.study = None
        self.result: dict | None = None
        self._rows: list[dict] = []
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    def _build(self) -> None:
        d = TrainConfig()
        self.space = QLineEdit()
        self.space.setPlaceholderText("space.yaml or .json: hyperparameters, layers, blocks")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        space_row = QHBoxLayout()
        space_row.addWidget(self.space, 1)
        space_row.addWidget(browse)
        self.data = QLineEdit("mnist")
        self.limit = QSpinBox()
        self.limit.setRange(0, 10_000_000)
        self.limit.setValue(1500)
        self.limit.setSpecialValueText("all")
        self.trials = QSpinBox()
        self.trials.setRange(1, 10_000)
        self.trials.setValue(20)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(min(d.epochs, 3))
        self.jobs = QSpinBox()
        self.jobs.setRange(1, max(1, os.cpu_count() or 1))
        form = QFormLayout()
        form.addRow("Search space:", space_row)
        form.addRow("Data:", self.data)
        form.addRow("Images per split:", self.limit)
        form.addRow("Trials:", self.trials)
        form.addRow("Epochs (unless searched):", self.epochs)
        form.addRow("Worker processes:", self.jobs)

        self.status = QLabel("Choose a search space file, then Start.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["trial", "state", "val", "test", "epochs"])
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.param = QComboBox()
        self.param.currentTextChanged.connect(lambda _: self._plot())
        self.plot = pg.PlotWidget()
        self.plot.setLabel("left", "validation accuracy (%)")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setMinimumSize(280, 200)
        style_plot(self.plot, self)
        slice_page = QWidget()
        right = QVBoxLayout(slice_page)
        right.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Slice:"))
        row.addWidget(self.param, 1)
        right.addLayout(row)
        right.addWidget(self.plot, 1)
        self.parallel = ParallelCoordinatesPlot()
        self.parallel.setToolTip("One line per trial across the searched values, coloured by "
                                 "validation accuracy; pruned trials dimmed")
        self.plots = QTabWidget()
        self.plots.setDocumentMode(True)
        self.plots.addTab(self.parallel, "Parallel coordinates")
        self.plots.addTab(slice_page, "Slice")
        results = QSplitter(Qt.Orientation.Horizontal)
        results.addWidget(self.table)
        results.addWidget(self.plots)
        results.setChildrenCollapsible(False)
        results.setStretchFactor(0, 2)
        results.setStretchFactor(1, 3)

        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.open_button = QPushButton("Open Best")
        self.open_button.setToolTip("Restore the best trial's architecture and weights in "
                                    "the document (undoable); right-click for a new document")
        self.open_button.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        act_new = QAction("Open Best as New Document", self.open_button)
        act_new.triggered.connect(lambda: self.open_best(new_document=True))
        self.open_button.addAction(act_new)
        close = QPushButton("Close")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button.clicked.connect(lambda: self.open_best())
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        for b in (self.start_button, self.cancel_button, self.open_button, close):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(results, 1)
        layout.addLayout(buttons)
        self.resize(900, 620)
        self._update_buttons()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Search Space", "",
                                              "Search space (*.yaml *.yml *.json)")
        if path:
            self.space.setText(path)

    @property
    def running(self) -> bool:
        return self.thread is not None

    def _update_buttons(self) -> None:
        self.start_button.setEnabled(not self.running)
        self.cancel_button.setEnabled(self.running)
        best = self.result and self.result.get("best")
        self.open_button.setEnabled(bool(best and best.get("run")) and not self.running)

    # -- running --
    def make_setup(self):
        """The SweepSetup for the fields: the document's graph (saved as an architecture file
        beside its run store), its run store, a study named after the network and space."""
        from engine.sweep.space import load_space
        from engine.sweep.study import SweepSetup

        space_path = self.space.text().strip()
        if not space_path:
            raise EngineError("choose a search space file first")
        load_space(space_path).check(self.doc.graph)  # a mistake names its line, before work
        runs = runs_path(self.doc.path)
        runs.parent.mkdir(parents=True, exist_ok=True)
        stem = runs.name.removesuffix(".runs.sqlite")
        model = runs.with_name(f"{stem}.sweep-model.json")
        save_architecture(model, self.doc.graph)
        cfg = TrainConfig(epochs=self.epochs.value())
        from dataclasses import asdict

        return SweepSetup(model=str(model), data=self.data.text().strip() or "mnist",
                          space=space_path, trials=self.trials.value(), runs=str(runs),
                          storage=f"sqlite:///{runs.with_name(stem + '.sweep.sqlite')}",
                          study=f"{self.doc.graph.name or 'network'}-{Path(space_path).stem}",
                          limit=self.limit.value() or None, config=asdict(cfg))

    def start(self) -> bool:
        if self.running:
            return False
        try:
            self.setup = self.make_setup()
        except (EngineError, OSError) as exc:
            self.status.setText(str(exc))
            return False
        from engine.sweep.study import open_study

        self.study = open_study(self.setup)
        self.worker = FunctionWorker(sweep_in_thread, self.setup, self.jobs.value())
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.done.connect(self._on_done)
        self.thread = start_worker(self.worker, self)
        self.progress.setRange(0, self.setup.trials)
        self.status.setText(f"Sweeping '{self.setup.study}'…")
        self.timer.start()
        self._update_buttons()
        return True

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelling after this batch…")

    def poll(self) -> None:
        """Show the study's trials so far (a few ms: one read of the study's database)."""
        if self.study is None:
            return
        from engine.sweep.study import trial_rows

        self._show_rows(trial_rows(self.study))

    def _show_rows(self, rows: list[dict]) -> None:
        self._rows = rows
        done = sum(r["state"] not in ("running", "waiting") for r in rows)
        self.progress.setValue(min(done, self.progress.maximum()))
        self.progress.setFormat(f"{done} of {self.progress.maximum()} trials")
        names = sorted({k for r in rows for k in r["params"]})
        self.table.setSortingEnabled(False)
        self.table.setColumnCount(5 + len(names))
        self.table.setHorizontalHeaderLabels(["trial", "state", "val", "test", "epochs", *names])
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = [r["trial"], r["state"], _pct(r["value"]), _pct(r["test_accuracy"]),
                     "" if r["epochs"] is None else f"{r['epochs']}/{r['epochs_planned']}",
                     *[_fmt(r["params"].get(k)) for k in names]]
            for j, c in enumerate(cells):
                it = QTableWidgetItem()
                it.setData(Qt.ItemDataRole.DisplayRole, c)
                if r.get("note"):
                    it.setToolTip(r["note"])
                self.table.setItem(i, j, it)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        current = self.param.currentText()
        if [self.param.itemText(i) for i in range(self.param.count())] != names:
            self.param.blockSignals(True)
            self.param.clear()
            self.param.addItems(names)
            if current in names:
                self.param.setCurrentText(current)
            self.param.blockSignals(False)
        self._plot()
        self.parallel.set_trials(rows)

    def _plot(self) -> None:
        """Slice plot: each finished trial's validation accuracy against the chosen value
        (categories spread along the axis in their order of appearance)."""
        self.plot.clear()
        name = self.param.currentText()
        pts = [(r["params"][name], 100 * r["value"]) for r in self._rows
               if r["value"] is not None and name in r["params"]]
        if not pts:
            return
        xs = [p[0] for p in pts]
        axis = self.plot.getAxis("bottom")
        if all(isinstance(x, (int, float)) for x in xs):
            axis.setTicks(None)
            x = [float(v) for v in xs]
            self.plot.enableAutoRange(axis="x")
        else:
            cats = list(dict.fromkeys(map(str, xs)))
            x = [float(cats.index(str(v))) for v in xs]
            axis.setTicks([list(enumerate(cats))])
            self.plot.setXRange(-0.5, len(cats) - 0.5, padding=0)
        self.plot.setLabel("bottom", name)
        self.plot.plot(x, [p[1] for p in pts], pen=None, symbol="o", symbolSize=8,
                       symbolBrush=pg.mkBrush(78, 121, 167, 200), symbolPen=None)
        style_plot(self.plot, self)

    def _on_finished(self, result: dict) -> None:
        self.result = result
        self._show_rows(result["trials"])
        c, best = result["counts"], result["best"]
        text = (f"{len(result['trials'])} trials: {c['complete']} complete, {c['pruned']} "
                f"pruned, {c['invalid']} invalid (skipped).")
        if best:
            text += (f" Best: trial {best['trial']}, validation {_pct(best['value'])}"
                     + (f", test {_pct(best['test_accuracy'])}"
                        if best["test_accuracy"] is not None else "") + ".")
        self.status.setText(text)

    def _on_failed(self, text: str) -> None:
        self.status.setText(f"The sweep stopped: {text}")

    def _on_done(self) -> None:
        self.timer.stop()
        stop_thread(self.thread)
        self.thread = self.worker = None
        self.poll()
        self._update_buttons()

    def open_best(self, new_document: bool = False) -> bool:
        best = self.result and self.result.get("best")
        if not best or not best.get("run"):
            return False
        store = RunStore(self.setup.runs)
        run = store.get_run(best["run"])
        weights = store.best_weights(best["run"])
        signal = self.open_new_requested if new_document else self.open_requested
        signal.emit(Graph.from_json(run["graph"]), weights[1] if weights else None,
                    f"sweep trial {best['trial']} (run {best['run']})")
        return True

    def changeEvent(self, event):
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:  # the theme changed while open
            style_plot(self.plot, self)

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        stop_thread(self.thread, 60000)
        self.timer.stop()


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.3g}" if isinstance(v, float) else str(v)
