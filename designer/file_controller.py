"""The file controller: every way a document enters or leaves the window — new, open (projects,
ONNX, examples, templates), save, save as, exports — with the unsaved-changes prompt, recent
files, autosave and recovery. The file formats and paths are designer/files.py's.

It owns no widgets but the dialogs it opens on `host` (the window); what the window should show
arrives by signals (`status_posted`, `frame_requested`, `blank_created`) and document signals.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QMenu,
    QMessageBox,
    QProgressDialog,
    QWidget,
)

from engine.errors import EngineError
from engine.fileio import atomic_path
from engine.graph import Graph
from engine.zoo.examples import EXAMPLES, load_example

from . import files
from .canvas import CanvasScene
from .document import Document
from .editor import make_action
from .export_dialog import ExportDialog
from .files import APP_NAME
from .weights_loader import WeightsLoader

AUTOSAVE_MS = 60_000


class FileController(QObject):
    """Files for `doc`; `settings` keeps the recent files, `autosave_dir` the autosaves."""

    status_posted = Signal(str, int)  # a message for the status bar, its timeout in ms
    frame_requested = Signal()  # a network was opened: frame it in the view
    blank_created = Signal()  # File > New: an empty canvas at 100 %

    def __init__(self, doc: Document, scene: CanvasScene, host: QWidget, settings,
                 autosave_dir: Path | None = None):
        super().__init__(host)
        self.doc, self.scene, self.host = doc, scene, host
        self.recent = files.RecentFiles(settings)
        self.autosave_dir = Path(autosave_dir) if autosave_dir else files.default_autosave_dir()
        self._threads = []
        self.png_export = None  # the last PNG export (its strips' timings)
        self._build_actions()
        self.weights_loader = WeightsLoader(doc, host)  # File > Load Weights…
        self.weights_loader.status_posted.connect(self.status_posted)
        self.act_load_weights = self.weights_loader.act_load
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey

        def a(*args):
            return make_action(self.host, *args)

        self.act_new = a("&New", self.new_file, K.New, "Start a new network")
        self.act_new_template = a("New from &Template…", self.new_from_template,
                                  QKeySequence("Ctrl+Shift+N"),
                                  "Start from a classic architecture (LeNet-5 … DenseNet-201)")
        self.act_new_pretrained = a("New from &Pretrained…", self.new_from_pretrained, None,
                                    "Start from a classic architecture with torchvision's "
                                    "ImageNet weights (downloaded once, then cached)")
        self.pretrained_opener = None  # designer.pretrained_dialog.PretrainedOpener, when used
        self.tb_template = QAction("Template…", self.host)  # the menu's action owns the keys
        self.tb_template.setToolTip("New from a classic architecture (Ctrl+Shift+N)")
        self.tb_template.triggered.connect(self.new_from_template)
        self.act_open = a("&Open…", self.open_dialog, K.Open, "Open a project or ONNX model")
        self.act_import_onnx = a("&Import ONNX…", self.import_onnx_dialog,
                                 QKeySequence("Ctrl+I"), "Open an .onnx model as a design: its "
                                 "layers, weights and a check against ONNX Runtime")
        self.act_save = a("&Save", self.save, K.Save)
        self.act_save_as = a("Save &As…", self.save_as, K.SaveAs)
        self.act_export_png = a("Export Canvas as &PNG…", lambda: self.export_canvas("png"))
        self.act_export_svg = a("Export Canvas as S&VG…", lambda: self.export_canvas("svg"))
        self.act_export_onnx = a("Export &ONNX…", self.export_onnx, None,
                                 "Export the network (with weights) to ONNX")
        self.act_import_report = a("&Import Report…", self.show_import_report, None,
                                   "How the ONNX file became this network, and how closely it "
                                   "matches ONNX Runtime")
        self.act_import_report.setEnabled(False)  # while the document comes from an ONNX file
        self.import_report = None  # its ImportReportDialog
        self.doc.graph_reset.connect(self._drop_import_report)
        self.act_export_pytorch = a("Export as &PyTorch Code…", lambda: self.export_pytorch(), None,
                                    "Write the network as a PyTorch module, its weights and a "
                                    "training script for one CPU / GPU or torchrun")

    def fill_examples_menu(self, menu: QMenu) -> None:
        """The examples, then the classic architectures in a submenu."""
        for e in EXAMPLES:
            act = menu.addAction(e.title)
            act.setStatusTip(e.description)
            act.triggered.connect(lambda _=False, n=e.name: self.open_example(n))
        from engine.zoo.templates import TEMPLATES

        menu.addSeparator()
        sub = menu.addMenu("Classic &architectures")
        for key, info in TEMPLATES.items():
            act = sub.addAction(info.title)
            act.setStatusTip(info.description)
            act.triggered.connect(lambda _=False, k=key: self.load_template(k))

    def fill_recent_menu(self, menu: QMenu) -> None:
        """Open Recent, filled each time it is about to show."""
        menu.clear()
        paths = self.recent.paths()
        for p in paths:
            act = menu.addAction(p.name)
            act.setStatusTip(str(p))
            act.triggered.connect(lambda _=False, path=p: self.open_path(path))
        if not paths:
            menu.addAction("(none)").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear list", self.recent.clear)

    # ---- unsaved changes ----------------------------------------------------------------------

    def maybe_save(self) -> bool:
        """Ask about unsaved changes (and a running training); False when the user cancels."""
        if self.doc.locked_reason is not None:  # training: its weights are not kept yet
            answer = QMessageBox.question(
                self.host, APP_NAME, "Training is running. Stop it and discard this run's "
                "weights?", QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Discard:
                return False
        if not self.doc.is_modified():
            return True
        answer = QMessageBox.question(
            self.host, APP_NAME, f"Save the changes to '{self.doc.title}' before closing it?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            # a .json file keeps no weights: still modified after it, and nothing is closed
            return self.save() and not self.doc.is_modified()
        return answer == QMessageBox.StandardButton.Discard

    def show_error(self, title: str, text: str) -> None:
        self.status_posted.emit(f"⚠ {text}", 10000)
        QMessageBox.warning(self.host, title, text)

    # ---- new and open -------------------------------------------------------------------------

    def new_file(self) -> None:
        if not self.maybe_save():
            return
        files.discard_autosave(self.autosave_dir, self.doc.path)
        g = Graph("untitled")
        g.add_node("Input", "input", {}, (0.0, 0.0), node_id="input")
        self.doc.reset(g)
        self.blank_created.emit()

    def open_dialog(self) -> None:
        start = str(self.doc.path.parent) if self.doc.path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self.host, "Open", start, files.OPEN_FILTERS)
        if path:
            self.open_path(path)

    def import_onnx_dialog(self) -> None:
        """File > Import ONNX: the open dialog showing ONNX models only."""
        start = str(self.doc.path.parent) if self.doc.path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self.host, "Import ONNX", start,
                                              f"{files.ONNX_FILTER};;All files (*)")
        if path:
            self.open_path(path)

    def open_path(self, path, ask: bool = True) -> bool:
        """Open `path` (project, architecture JSON or ONNX). On any problem: a message, and the
        current graph stays as it was. ONNX and big files load off the GUI thread."""
        path = Path(path)
        if ask and not self.maybe_save():
            return False
        slow = path.suffix.lower() == ".onnx" or (path.exists()
                                                   and path.stat().st_size > 4 << 20)
        try:
            opened = self._run_with_progress(files.open_file, path, f"Opening {path.name}…") \
                if slow else files.open_file(path)
        except (EngineError, OSError) as exc:
            self.show_error("Cannot open the file", str(exc))
            return False
        if opened is None:  # cancelled
            return False
        self._load_opened(opened)
        return True

    def _load_opened(self, opened: files.Opened) -> None:
        self.doc.reset(opened.graph, opened.weights, opened.path, opened.history,
                       blocks=opened.blocks)
        if opened.source is not None:
            self.recent.add(opened.source)
        if opened.path is None and opened.source is not None:
            self.doc.set_network_name(opened.graph.name or opened.source.stem)
        if opened.imported is not None and opened.imported.record is not None:
            self._show_new_import_report(opened)
        msg = f"Opened {opened.source.name}" if opened.source else "Opened"
        if opened.warnings:
            msg += f" ({len(opened.warnings)} warning{'s' * (len(opened.warnings) != 1)}: " \
                   f"{opened.warnings[0]})"
        self.status_posted.emit(msg, 8000)
        self.frame_requested.emit()
        self._offer_recovery()

    def _run_with_progress(self, fn, path, label):
        """Run fn(path, report=...) in a worker thread with a modal progress dialog."""
        from .workers import FunctionWorker, start_worker

        result: dict = {}
        dialog = QProgressDialog(label, "Cancel", 0, 0, self.host)
        dialog.setWindowTitle(APP_NAME)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(150)
        worker = FunctionWorker(fn, path)
        worker.progressed.connect(dialog.setLabelText)
        worker.finished.connect(lambda r: result.setdefault("ok", r))
        worker.failed.connect(lambda t: result.setdefault("error", t))
        worker.done.connect(dialog.reset)
        thread = start_worker(worker)
        self._threads.append((thread, worker))
        dialog.exec()
        thread.wait(60000 if "ok" in result or "error" in result else 0)
        if "error" in result:
            raise EngineError(result["error"])
        return result.get("ok")

    # ---- the import report ------------------------------------------------------------------

    def _show_new_import_report(self, opened: files.Opened) -> None:
        """The report of the ONNX file just opened, shown beside the canvas (non-modal), its
        parity check started in a worker thread."""
        from .import_report import ImportReportDialog

        self.import_report = ImportReportDialog(opened.imported.record, opened.source,
                                                opened.imported, self.host)
        self.act_import_report.setEnabled(True)
        self.show_import_report()
        self.import_report.start_check()

    def show_import_report(self) -> None:
        """File > Import Report…: the current document's (it came from an ONNX file)."""
        dialog = self.import_report
        if dialog is None:
            return
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _drop_import_report(self) -> None:
        """Another document replaced the imported one: its report goes (a check is cancelled)."""
        dialog, self.import_report = self.import_report, None
        self.act_import_report.setEnabled(False)
        if dialog is not None:
            dialog.shutdown()
            dialog.hide()
            dialog.deleteLater()

    def open_example(self, name: str) -> None:
        title = next((e.title for e in EXAMPLES if e.name == name), name)
        if not self.maybe_save():
            return
        try:
            graph = load_example(name)
        except EngineError as exc:
            self.show_error("Cannot open the example", str(exc))
            return
        if files.needs_layout(graph):
            files.apply_layout(graph)
        self.doc.reset(graph)
        self.status_posted.emit(f"Opened {title}", 5000)
        self.frame_requested.emit()

    def new_from_template(self) -> bool:
        """File > New from Template: the dialog, then the chosen net in the document."""
        from .template_dialog import TemplateDialog

        dialog = TemplateDialog(self.host)
        try:
            if dialog.exec() != TemplateDialog.DialogCode.Accepted:
                return False
            return self.load_template(dialog.key(), dialog.num_classes())
        finally:
            dialog.deleteLater()

    def new_from_pretrained(self) -> bool:
        """File > New from Pretrained: pick weights, then download / read them in a worker;
        the template with them replaces the document when done (open_pretrained)."""
        from .pretrained_dialog import PretrainedDialog

        if self.pretrained_opener is not None and self.pretrained_opener.running:
            return False
        dialog = PretrainedDialog(self.host)
        try:
            if dialog.exec() != PretrainedDialog.DialogCode.Accepted or not dialog.weights():
                return False
            return self.open_pretrained(dialog.weights())
        finally:
            dialog.deleteLater()

    def open_pretrained(self, w) -> bool:
        """Start fetching PretrainedWeights `w` (after asking about unsaved changes)."""
        from .pretrained_dialog import PretrainedOpener

        if not self.maybe_save():
            return False
        if self.pretrained_opener is None:
            self.pretrained_opener = PretrainedOpener(self.host)
            self.pretrained_opener.opened.connect(self._on_pretrained)
            self.pretrained_opener.failed.connect(self._on_pretrained_failed)
        return self.pretrained_opener.start(w)

    def _on_pretrained(self, p) -> None:
        if p is None:
            self.status_posted.emit("Pretrained weights: cancelled", 5000)
            return
        if files.needs_layout(p.graph):
            files.apply_layout(p.graph)
        self.doc.reset(p.graph, p.weights, blocks=p.blocks)
        info = p.meta["pretrained"]
        self.status_posted.emit(f"New {info['name']} with ImageNet weights (top-1 "
                                f"{info['top1']:.2f} %); input {p.graph.input_spec.describe()}",
                                10000)
        self.frame_requested.emit()

    def _on_pretrained_failed(self, text: str) -> None:
        self.show_error("New from Pretrained", text)

    def load_template(self, key: str, num_classes: int | None = None) -> bool:
        """Replace the document with template `key` (its blocks kept for collapsing)."""
        from engine.zoo.templates import TEMPLATES, make_template

        if not self.maybe_save():
            return False
        try:
            t = make_template(key, num_classes)
        except (EngineError, ValueError) as exc:
            self.show_error("Cannot create the network", str(exc))
            return False
        if files.needs_layout(t.graph):
            files.apply_layout(t.graph)
        self.doc.reset(t.graph, blocks=t.blocks)
        title = TEMPLATES[key].title
        out = self.doc.validation.nodes.get(self.doc.validation.output_id)
        classes = f", {out.out_shape[0]} classes" if out and out.out_shape else ""
        self.status_posted.emit(f"New {title}{classes}", 6000)
        self.frame_requested.emit()
        return True

    # ---- save ---------------------------------------------------------------------------------

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self.save_to(self.doc.path)

    def save_as(self) -> bool:
        start = self.doc.path or Path.home() / f"{self.doc.graph.name or 'network'}.cnnd"
        path, _ = QFileDialog.getSaveFileName(self.host, "Save As", str(start),
                                              files.SAVE_FILTERS)
        return self.save_to(path) if path else False

    def save_to(self, path) -> bool:
        try:
            written = files.save_file(path, self.doc.graph, self.doc.weights, self.doc.history,
                                      self.doc.blocks)
        except (EngineError, OSError) as exc:
            self.show_error("Cannot save", str(exc))
            return False
        old = self.doc.path
        self.doc.set_path(written)
        if Path(written).suffix.lower() == ".json" and (self.doc.weights or self.doc.history):
            # the architecture is saved, the weights / history are in no file: still modified,
            # so closing asks instead of losing them
            self.doc.undo_stack.setClean()
        else:
            self.doc.set_modified(False)
        files.discard_autosave(self.autosave_dir, old)
        files.discard_autosave(self.autosave_dir, self.doc.path)
        self.recent.add(written)
        note = ""
        if Path(written).suffix.lower() == ".json" and self.doc.weights:
            note = " (architecture only: save as .cnnd to keep the trained weights)"
        self.status_posted.emit(f"Saved {Path(written).name}{note}", 8000)
        return True

    # ---- autosave and recovery ----------------------------------------------------------------

    def autosave(self) -> None:
        if not self.doc.is_modified():
            return
        try:
            files.write_autosave(self.autosave_dir, self.doc.path, self.doc.graph,
                                 self.doc.weights, self.doc.history)
        except (EngineError, OSError) as exc:
            self.status_posted.emit(f"Autosave failed: {exc}", 8000)

    def discard_autosave(self) -> None:
        files.discard_autosave(self.autosave_dir, self.doc.path)

    def _offer_recovery(self) -> None:
        found = files.recovery_for(self.autosave_dir, self.doc.path)
        if found is None:
            return
        answer = QMessageBox.question(
            self.host, "Recover unsaved changes?",
            f"An autosave of '{self.doc.title}' newer than the file was found (the app may "
            f"have stopped unexpectedly). Recover it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            self.discard_autosave()
            return
        try:
            opened = files.open_file(found)
        except EngineError as exc:
            self.show_error("Cannot recover", str(exc))
            return
        path = self.doc.path
        self.doc.reset(opened.graph, opened.weights, path, opened.history)
        self.doc.set_modified(True)  # recovered changes are not saved yet

    def check_recovery(self) -> None:
        """Called once at start-up."""
        self._offer_recovery()

    # ---- exports ------------------------------------------------------------------------------

    def export_canvas(self, kind: str, path: str | None = None) -> bool:
        if path is None:
            filt = "PNG image (*.png)" if kind == "png" else "SVG drawing (*.svg)"
            start = str(Path.home() / f"{self.doc.graph.name or 'network'}.{kind}")
            path, _ = QFileDialog.getSaveFileName(self.host, f"Export canvas as {kind.upper()}",
                                                  start, filt)
            if not path:
                return False
        if kind == "png":
            outcome = self._export_png(path)
            if outcome == "cancelled":
                self.status_posted.emit("Export cancelled", 4000)
                return False
            if outcome != "ok":
                self.show_error("Cannot export", f"Could not write {path}: {outcome}")
                return False
        else:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                write_canvas(self.scene, path, kind, self.doc.graph.name)
            except OSError as exc:
                self.show_error("Cannot export", f"Could not write {path}: {exc}")
                return False
            finally:
                QApplication.restoreOverrideCursor()
        self.status_posted.emit(f"Exported {Path(path).name}", 4000)
        return True

    def _export_png(self, path) -> str:
        """Draw the PNG in strips between events, save it in a worker, with a window-modal
        progress dialog and Cancel; "ok", "cancelled" or the error's text."""
        from PySide6.QtCore import QEventLoop

        from .canvas.png_export import PngExport

        if self.png_export is not None:
            self.png_export.deleteLater()
        export = self.png_export = PngExport(self.scene, path, parent=self)
        dialog = QProgressDialog(f"Drawing {Path(path).name}…", "Cancel", 0, export.h, self.host)
        dialog.setWindowTitle(APP_NAME)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)
        dialog.setAutoReset(False)
        dialog.canceled.connect(export.cancel)
        export.progressed.connect(lambda done, total: dialog.setValue(done))
        export.saving.connect(lambda: (dialog.setLabelText(f"Writing {Path(path).name}…"),
                                       dialog.setRange(0, 0)))
        loop = QEventLoop()
        outcome: list[str] = []
        export.finished.connect(lambda text: (outcome.append(text), loop.quit()))
        export.start()
        if not outcome:
            loop.exec()
        dialog.canceled.disconnect(export.cancel)
        dialog.reset()
        dialog.deleteLater()
        return outcome[0]

    def export_onnx(self) -> None:
        dialog = ExportDialog(self.doc, self.host)
        dialog.exec()
        dialog.deleteLater()

    def export_pytorch(self, folder: str | Path | None = None) -> list[Path] | None:
        """Write model.py, weights.npz, train.py and a README into a folder (in a worker)."""
        from engine.pytorch_export import export_pytorch

        if folder is None:
            start = str(self.doc.path.parent if self.doc.path else Path.home())
            folder = QFileDialog.getExistingDirectory(self.host, "Export as PyTorch code", start)
            if not folder:
                return None
        graph, weights = self.doc.graph.copy(), self.doc.weights
        try:
            paths = self._run_with_progress(
                lambda path, report=None: export_pytorch(graph, weights, path), Path(folder),
                "Writing PyTorch code…")
        except EngineError as exc:
            self.show_error("Export as PyTorch code", str(exc))
            return None
        names = ", ".join(Path(p).name for p in paths)
        self.status_posted.emit(f"Wrote {names} to {folder}", 8000)
        return [Path(p) for p in paths]

    # ---- shutdown -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop autosaving and the workers still running (an import, an export)."""
        from .workers import stop_thread

        self.autosave_timer.stop()
        self._drop_import_report()
        self.weights_loader.shutdown()
        if self.pretrained_opener is not None:
            self.pretrained_opener.shutdown()
        for thread, _ in self._threads:
            stop_thread(thread)
        self._threads.clear()


def write_canvas(scene: CanvasScene, path, kind: str, title: str = "network") -> Path:
    """The whole graph as "png" (2× scale) or "svg" at `path`, atomically: written beside it
    and moved into place only when complete, so a failed export never leaves half a file (nor
    destroys the file that was there). OSError when it cannot be written."""
    path = Path(path)
    with atomic_path(path, suffix=f".{kind}") as tmp:
        if kind == "png":
            ok = scene.render_image(2.0).save(str(tmp), "PNG")
        else:
            ok = export_svg(scene, tmp, title)
        if not ok:
            raise OSError(f"the {kind.upper()} image could not be written")
    return path


def export_svg(scene: CanvasScene, path, title: str = "network") -> bool:
    """The whole graph as SVG (QSvgGenerator): vector, sharp at any size, complete."""
    from PySide6.QtSvg import QSvgGenerator

    src = scene.content_rect().adjusted(-40, -40, 40, 40)
    gen = QSvgGenerator()
    gen.setFileName(str(path))
    gen.setSize(QSize(int(src.width()), int(src.height())))
    gen.setViewBox(QRectF(0, 0, src.width(), src.height()))
    gen.setTitle(title)
    gen.setDescription("Exported from CNN Designer")
    painter = QPainter()
    if not painter.begin(gen):
        return False
    painter.fillRect(QRectF(0, 0, src.width(), src.height()), scene.look.canvas)
    scene.render_to(painter, QRectF(0, 0, src.width(), src.height()), src)
    painter.end()
    return Path(path).exists() and Path(path).stat().st_size > 0
