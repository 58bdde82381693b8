"""ONNX export from the GUI, followed by an automatic check shown as a checklist: onnx.checker,
ONNX Runtime on sample inputs, layer-by-layer parity with the engine, accuracy agreement and
latency. The export and the check run in a worker thread."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.nn.inference import engine_predict
from engine.nn.network import Network

from .theme import severity_hex
from .workers import FunctionWorker, start_worker, stop_thread

OK, FAIL, INFO = True, False, None


@dataclass
class CheckItem:
    title: str
    ok: bool | None  # None: information (latency), neither pass nor fail
    detail: str = ""


@dataclass
class ExportReport:
    path: Path
    items: list[CheckItem] = field(default_factory=list)
    parity: list = field(default_factory=list)  # engine.onnx.runtime.ParityRow
    engine_ms: float | None = None
    ort_ms: float | None = None
    agreement: float | None = None
    engine_accuracy: float | None = None
    ort_accuracy: float | None = None

    @property
    def passed(self) -> bool:
        return bool(self.items) and all(i.ok is not False for i in self.items)


def complete_weights(graph, weights: dict | None) -> tuple[dict, bool]:
    """The document's weights completed with a seeded initialisation where missing; and whether
    any were missing (an untrained design)."""
    net = Network.compile(graph, np.random.default_rng(0), weights=weights or None)
    state = net.state_dict()
    return state, any(k not in (weights or {}) for k in state)


def sample_inputs(input_shape: tuple, n: int = 256):
    """(x, y or None, what): labelled MNIST test images for a 1×28×28 Input, else random."""
    if tuple(input_shape) == (1, 28, 28):
        from engine.data import load_mnist
        ds = load_mnist("test", limit=n)
        return ds.x, ds.y, f"{n} MNIST test images"
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(min(n, 32),) + tuple(input_shape)).astype(np.float32)
    return x, None, f"{len(x)} random inputs"


def median_ms(fn, x, runs: int = 30) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def export_and_check(graph, weights: dict | None, path: str | Path, opset: int,
                     report=lambda text: None) -> ExportReport:
    """Export to `path` and check the result; every step adds a CheckItem. Runs off the GUI
    thread (`report(text)` says which step is running)."""
    import onnx

    from engine.onnx.export import export_onnx
    from engine.onnx.runtime import cached_model, parity_report

    path = Path(path)
    rep = ExportReport(path)
    report("exporting…")
    state, untrained = complete_weights(graph, weights)
    try:
        export_onnx(graph, state, path, opset=opset, check=False)
    except (ValueError, OSError) as exc:
        rep.items.append(CheckItem("Export", FAIL, str(exc)))
        return rep
    size = path.stat().st_size if path.exists() else 0
    rep.items.append(CheckItem("Export", OK, f"{path.name}, opset {opset}, {size / 1024:,.1f} KB"
                               + ("; untrained weights (random initialisation)" if untrained
                                  else "")))
    report("onnx.checker…")
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        rep.items.append(CheckItem("onnx.checker (full check)", OK, "the model is valid"))
    except Exception as exc:  # noqa: BLE001 (onnx raises its own types)
        rep.items.append(CheckItem("onnx.checker (full check)", FAIL, str(exc)))
        return rep
    report("ONNX Runtime…")
    net = Network.compile(graph, np.random.default_rng(0), weights=state)
    x, y, what = sample_inputs(net.input_shape)
    try:
        ort_model = cached_model(path)  # kept for the next check of the same file
        theirs = ort_model.predict(x)
    except ValueError as exc:
        rep.items.append(CheckItem("ONNX Runtime runs the model", FAIL, str(exc)))
        return rep
    want = (len(x),) + tuple(net.output_shape)
    good = theirs.shape == want and bool(np.isfinite(theirs).all())
    rep.items.append(CheckItem("ONNX Runtime runs the model", good,
                               f"{what}: output {'×'.join(map(str, theirs.shape))}"
                               + ("" if good else f", expected {'×'.join(map(str, want))}")))
    report("layer-by-layer comparison…")
    try:
        rep.parity = parity_report(graph, state, x[:8], opset=opset)
        worst = max(rep.parity, key=lambda r: r.max_abs_diff) if rep.parity else None
        bad = [r.node for r in rep.parity if not r.ok]
        rep.items.append(CheckItem(
            "Layer-by-layer agreement with the engine", not bad,
            (f"{len(rep.parity)} layers, largest difference {worst.max_abs_diff:.2g} "
             f"({worst.node})" if worst else "no layers") +
            (f"; differ: {', '.join(bad)}" if bad else "")))
    except ValueError as exc:
        rep.items.append(CheckItem("Layer-by-layer agreement with the engine", FAIL, str(exc)))
    report("predictions…")
    ours = engine_predict(net, x)  # the engine's own forward (predict would use ORT)
    p_ours = ours.reshape(len(x), -1).argmax(1)
    p_theirs = theirs.reshape(len(x), -1).argmax(1)
    rep.agreement = float((p_ours == p_theirs).mean())
    detail = f"{rep.agreement:.1%} same predictions on {what}"
    if y is not None:
        rep.engine_accuracy = float((p_ours == y).mean())
        rep.ort_accuracy = float((p_theirs == y).mean())
        detail += (f"; accuracy: engine {rep.engine_accuracy:.1%}, ONNX Runtime "
                   f"{rep.ort_accuracy:.1%}")
    rep.items.append(CheckItem("Predictions agree", rep.agreement >= 0.99, detail))
    report("latency…")
    x1 = x[:1]
    rep.engine_ms = median_ms(net.forward, x1)
    rep.ort_ms = median_ms(ort_model.run, x1)
    ratio = rep.engine_ms / max(rep.ort_ms, 1e-9)
    rep.items.append(CheckItem(
        "Latency at batch 1 (median of 30 runs)", INFO,
        f"ONNX Runtime {rep.ort_ms:.3f} ms, engine {rep.engine_ms:.3f} ms "
        f"({ratio:.1f}× {'faster' if ratio >= 1 else 'slower'} in ONNX Runtime)"))
    return rep


class ExportDialog(QDialog):
    """File name and opset, then Export: the checklist fills in as the check runs."""

    check_finished = Signal(object)  # ExportReport, or None when it failed to run

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.report: ExportReport | None = None
        self._thread = self._worker = None
        self.setWindowTitle("Export to ONNX")
        self.setModal(True)
        from engine.onnx.export import MAX_OPSET, MIN_OPSET, OPSET

        default = (doc.path.with_suffix(".onnx") if getattr(doc, "path", None)
                   else Path.cwd() / f"{(doc.graph.name or 'network').replace(' ', '_')}.onnx")
        self.path = QLineEdit(str(default))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        prow = QHBoxLayout()
        prow.addWidget(self.path, 1)
        prow.addWidget(browse)
        self.opset = QSpinBox()
        self.opset.setRange(MIN_OPSET, MAX_OPSET)
        self.opset.setValue(OPSET)
        self.opset.setToolTip(f"ONNX operator set version; {OPSET} runs in most runtimes.")
        form = QFormLayout()
        form.addRow("File", prow)
        form.addRow("Opset", self.opset)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        if not doc.weights:
            self.notice.setText("The network has no trained weights: the export holds a random "
                                "initialisation. Train it first to deploy it.")
            self.notice.setStyleSheet(f"color: {severity_hex('warning', self)};")
        self.checklist = QTreeWidget()
        self.checklist.setHeaderHidden(True)
        self.checklist.setRootIsDecorated(False)
        self.checklist.setIndentation(22)
        self.parity = QTableWidget(0, 4)
        self.parity.setHorizontalHeaderLabels(["layer", "shape", "max |engine − ORT|", "ok"])
        self.parity.verticalHeader().setVisible(False)
        self.parity.verticalHeader().setDefaultSectionSize(22)
        self.parity.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.parity.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.checklist)
        split.addWidget(self.parity)
        self.status = QLabel("Choose a file and press Export.")
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export",
                                                    QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self.start_export)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.notice)
        lay.addWidget(split, 1)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self.resize(680, 560)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to ONNX", self.path.text(),
                                              "ONNX models (*.onnx)")
        if path:
            self.path.setText(path if path.endswith(".onnx") else path + ".onnx")

    def start_export(self) -> bool:
        """Export and check in a worker thread; `check_finished` fires at the end."""
        if self._thread is not None:
            return False
        if not self.doc.validation.ok:
            self.status.setText(f"The graph has {len(self.doc.validation.errors)} problem(s): "
                                f"fix them before exporting.")
            return False
        path = Path(self.path.text().strip()).expanduser()
        if not path.name or not path.parent.is_dir():
            self.status.setText(f"{path.parent}: no such folder")
            return False
        self.checklist.clear()
        self.parity.setRowCount(0)
        self.export_button.setEnabled(False)
        graph = self.doc.graph.copy()
        weights = {k: v.copy() for k, v in self.doc.weights.items()} if self.doc.weights else None
        self._worker = FunctionWorker(export_and_check, graph, weights, path, self.opset.value())
        self._worker.progressed.connect(self.status.setText)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.done.connect(self._on_done)
        self._thread = start_worker(self._worker, self)
        return True

    def _on_finished(self, rep: ExportReport) -> None:
        self.report = rep
        for item in rep.items:
            mark = {True: "✔", False: "✖", None: "ℹ"}[item.ok]
            color = {True: QColor(46, 125, 50), False: QColor(198, 40, 40),
                     None: QColor(90, 110, 140)}[item.ok]
            row = QTreeWidgetItem([f"{mark}  {item.title}"])
            row.setForeground(0, color)
            font = row.font(0)
            font.setBold(True)
            row.setFont(0, font)
            detail = QTreeWidgetItem([item.detail])
            detail.setToolTip(0, item.detail)
            row.addChild(detail)
            self.checklist.addTopLevelItem(row)
            row.setExpanded(True)
        self.parity.setRowCount(len(rep.parity))
        for i, r in enumerate(rep.parity):
            cells = [f"{r.node} ({r.type_name})", "×".join(map(str, r.shape)),
                     f"{r.max_abs_diff:.3g}", "✔" if r.ok else "✖"]
            for j, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if j == 3:
                    it.setForeground(QColor(46, 125, 50) if r.ok else QColor(198, 40, 40))
                    it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.parity.setItem(i, j, it)
        self.status.setText(f"Exported to {rep.path}: every check passed." if rep.passed
                            else "Some checks failed: see the marks above.")
        self.check_finished.emit(rep)

    def _on_failed(self, text: str) -> None:
        self.status.setText(f"Export failed: {text}")
        self.check_finished.emit(None)

    def _on_done(self) -> None:
        stop_thread(self._thread)
        self._thread = self._worker = None
        self.export_button.setEnabled(True)

    def shutdown(self) -> None:
        stop_thread(self._thread, 60000)

    def done(self, result: int) -> None:  # closing waits for a running check
        self.shutdown()
        super().done(result)
