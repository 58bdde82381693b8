"""The main window: canvas in the centre, palette left, inspector / summary right, problems and
history below; menus, shortcuts, files, autosave and the status bar."""

from __future__ import annotations

import contextlib
from itertools import pairwise
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressDialog,
    QScrollArea,
    QTabBar,
    QUndoView,
    QWidget,
)

from engine.errors import EngineError
from engine.fileio import atomic_path
from engine.graph import Graph
from engine.summary import human_count
from engine.zoo.examples import EXAMPLES, load_example

from . import clipboard, files, theme
from .canvas import CanvasScene, CanvasView, NodeItem, layered_layout
from .canvas.items import fmt_count
from .canvas.layout import NODE_H, NODE_W, V_GAP
from .commands import (
    AddEdgeCommand,
    AddNodeCommand,
    FreezeUpToCommand,
    InsertNodeOnEdgeCommand,
    MoveNodesCommand,
    PasteCommand,
    RemoveEdgeCommand,
    RemoveNodesCommand,
    ReplaceHeadCommand,
    SetTrainableCommand,
    UnfreezeAllCommand,
    make_fragment,
)
from .document import Document

APP_NAME = "CNN Designer"
AUTOSAVE_MS = 60_000
FIT_MIN_ZOOM = 0.4  # the opening view fits the whole graph when this zoom is enough
TOP_ZOOM = 0.75  # else: its top at this zoom (its width fitted when that needs less)
REVEAL_ZOOM = 0.8  # a layer picked in Problems / Summary is shown at least this big
DOCK_STATE_VERSION = 2  # bump when the default dock placement changes (old states are ignored)


def _optional(module: str, name: str):
    """A panel class from a sibling module, or None while it is not there (built in parallel)."""
    try:
        mod = __import__(f"designer.{module}", fromlist=[name])
        return getattr(mod, name)
    except ImportError:
        return None


class MainWindow(QMainWindow):
    """One document in one window. `settings` and `autosave_dir` are injectable for tests."""

    def __init__(self, graph: Graph | None = None, settings=None, autosave_dir: Path | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings if settings is not None else files.make_settings()
        self.recent = files.RecentFiles(self.settings)
        self.autosave_dir = Path(autosave_dir) if autosave_dir else files.default_autosave_dir()
        self.doc = Document(graph if graph is not None else load_example("lenet5"), self)
        self.scene = CanvasScene(self.doc, theme.is_dark(), self)
        self.view = CanvasView(self.scene, self)
        self.setCentralWidget(self.view)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks
                            | QMainWindow.DockOption.AllowTabbedDocks)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self._paste_count = 0
        self._threads = []
        self.panels: dict[str, QWidget] = {}
        self.docks: dict[str, QDockWidget] = {}
        self._factories: dict[str, object] = {}
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        self.resize(1500, 950)
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            with contextlib.suppress(TypeError, ValueError):
                self.restoreGeometry(geometry)
        self._update_title()
        self._on_validated(self.doc.validation)
        QTimer.singleShot(0, self.initial_view)

    # ---- construction -----------------------------------------------------------------------

    def _dock(self, key: str, title: str, widget: QWidget | None, area,
              factory=None) -> QDockWidget:
        """A dock for `widget`; with `factory` instead, the panel is built the first time the
        dock is shown (plot-heavy panels cost ~0.5 s each: start-up stays quick)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{key}")
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        self.docks[key] = dock
        if widget is not None:
            self._set_panel(key, widget)
        else:
            placeholder = QLabel(f"{title} opens here")
            placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            dock.setWidget(placeholder)
            self._factories[key] = factory
            dock.visibilityChanged.connect(
                lambda visible, k=key: visible and self.materialize(k))
        return dock

    def _set_panel(self, key: str, widget: QWidget) -> None:
        dock = self.docks[key]
        if widget.minimumSizeHint().width() > 420 or widget.minimumSizeHint().height() > 500:
            # a wide panel must not squeeze the canvas: it scrolls inside a narrow dock
            scroll = QScrollArea(dock)
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(widget)
            dock.setWidget(scroll)
        else:
            dock.setWidget(widget)
        self.panels[key] = widget

    def materialize(self, key: str) -> QWidget | None:
        """Build a lazily created panel now (first show of its dock); returns it."""
        factory = self._factories.pop(key, None)
        if factory is not None:
            old = self.docks[key].widget()
            self._set_panel(key, factory())
            if old is not None:
                old.deleteLater()
            if key in ("feature_maps", "training"):
                self._on_selection()
                if not self._layout_restored:  # the user's own sizes stay as they left them
                    QTimer.singleShot(0, self._grow_bottom_docks)
        return self.panels.get(key)

    def _build_docks(self) -> None:
        L, R, B = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                   Qt.DockWidgetArea.BottomDockWidgetArea)
        palette_cls = _optional("palette", "PalettePanel")
        if palette_cls is not None:
            self._dock("palette", "Layers", palette_cls(self), L)
        bottom = []
        problems_cls = _optional("problems", "ProblemsPanel")
        if problems_cls is not None:
            bottom.append(self._dock("problems", "Problems", problems_cls(self.doc, self), B))
        history = QUndoView(self.doc.undo_stack, self)
        history.setEmptyLabel("Opened")
        history.setFrameShape(QFrame.Shape.NoFrame)
        history.setStyleSheet("QListView::item { padding: 3px 8px; }")
        history.setToolTip("Every edit, oldest first: click a line to go back to that state "
                           "(the later edits stay, for redo)")
        bottom.append(self._dock("history", "History", history, B))
        right = []
        for key, title, module, name in [("inspector", "Inspector", "inspector", "InspectorPanel"),
                                         ("summary", "Summary", "summary_view", "SummaryPanel"),
                                         ("training", "Training", "training_panel",
                                          "TrainingPanel"),
                                         ("feature_maps", "Feature maps", "feature_maps",
                                          "FeatureMapPanel")]:
            cls = _optional(module, name)
            if cls is None:
                continue
            if key in ("training", "feature_maps"):
                # wide and short below the canvas: curves and map grids need the width
                bottom.append(self._dock(key, title, None, B,
                                         lambda c=cls: c(self.doc, self)))
            else:
                right.append(self._dock(key, title, cls(self.doc, self), R))
        for group in (bottom, right):
            for a, b in pairwise(group):
                self.tabifyDockWidget(a, b)
        if right:
            right[0].raise_()
        if bottom:
            bottom[0].raise_()
        self._sized = False
        self._layout_restored = False
        self._first_docks = (right[0] if right else None, bottom[0])

    def _size_docks(self) -> None:
        """Give the canvas the room: narrow side docks; below it a dock tall enough for a few
        problems, the history, the training curves or a row of feature maps."""
        right, bottom = self._first_docks
        if "palette" in self.docks:
            self.resizeDocks([self.docks["palette"]], [220], Qt.Orientation.Horizontal)
        if right is not None:
            self.resizeDocks([right], [max(360, self.width() // 4)], Qt.Orientation.Horizontal)
        self.resizeDocks([bottom], [max(190, min(280, self.height() * 20 // 100))],
                         Qt.Orientation.Vertical)

    def _restore_layout(self) -> bool:
        """The dock layout the user left (QSettings); False when there is none to restore."""
        state = self.settings.value("window/state")
        if state is None:
            return False
        try:
            return bool(self.restoreState(state, DOCK_STATE_VERSION))
        except (TypeError, ValueError):
            return False

    def save_layout(self) -> None:
        """The window's size and the docks' places and sizes, for the next start."""
        self.settings.setValue("window/state", self.saveState(DOCK_STATE_VERSION))
        self.settings.setValue("window/geometry", self.saveGeometry())

    def showEvent(self, event):
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            self._layout_restored = self._restore_layout()
            if not self._layout_restored:
                self._size_docks()
            QTimer.singleShot(0, self._hide_stray_tab_bars)
            QTimer.singleShot(0, self.initial_view)  # the docks' sizes are final now

    def _hide_stray_tab_bars(self) -> None:
        """Tabifying several docks before the first show leaves Qt's tab bar of an earlier step
        visible in the middle of the window (Qt 6.12); hide bars whose tabs another bar has."""
        direct = Qt.FindChildOption.FindDirectChildrenOnly
        bars = [b for b in self.findChildren(QTabBar, options=direct) if b.isVisible()]
        tabs = [{b.tabText(i) for i in range(b.count())} for b in bars]
        for bar, mine in zip(bars, tabs):
            if any(mine < other for other in tabs):
                bar.hide()

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, list):
                a.setShortcuts(shortcut)
            else:
                a.setShortcut(shortcut)
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        a = self._action
        self.act_new = a("&New", self.new_file, K.New, "Start a new network")
        self.act_new_template = a("New from &Template…", self.new_from_template,
                                  QKeySequence("Ctrl+Shift+N"),
                                  "Start from a classic architecture (LeNet-5 … DenseNet-201)")
        self.act_collapse_all = a("&Collapse All Blocks", self.collapse_all,
                                  QKeySequence("Ctrl+Shift+C"),
                                  "Fold residual / dense / inception blocks into one card each")
        self.act_expand_all = a("&Expand All Blocks", self.expand_all,
                                QKeySequence("Ctrl+Shift+E"), "Show every layer again")
        self.act_unfreeze_all = a("Unfreeze All Layers", self.unfreeze_all, None,
                                  "Make every layer trainable again")
        self.act_replace_head = a("Replace &Head for N Classes…", self.replace_head_dialog,
                                  None, "Give the classifier a new number of outputs "
                                        "(transfer learning)")
        self.act_open = a("&Open…", self.open_dialog, K.Open, "Open a project or ONNX model")
        self.act_save = a("&Save", self.save, K.Save)
        self.act_save_as = a("Save &As…", self.save_as, K.SaveAs)
        self.act_export_png = a("Export Canvas as &PNG…", lambda: self.export_canvas("png"))
        self.act_export_svg = a("Export Canvas as S&VG…", lambda: self.export_canvas("svg"))
        self.act_export_onnx = a("Export &ONNX…", self.export_onnx, None,
                                 "Export the network (with weights) to ONNX")
        self.act_export_onnx.setEnabled(_optional("export_dialog", "ExportDialog") is not None)
        self.act_export_pytorch = a("Export as &PyTorch Code…", lambda: self.export_pytorch(), None,
                                    "Write the network as a PyTorch module, its weights and a "
                                    "training script for one CPU / GPU or torchrun")
        self.act_quit = a("&Quit", self.close, K.Quit)
        self.act_undo = self.doc.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcut(K.Undo)
        self.act_redo = self.doc.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addAction(self.act_undo)
        self.addAction(self.act_redo)
        self.act_cut = a("Cu&t", self.cut, K.Cut)
        self.act_copy = a("&Copy", self.copy, K.Copy)
        self.act_paste = a("&Paste", self.paste, K.Paste)
        self.act_duplicate = a("&Duplicate", self.duplicate, QKeySequence("Ctrl+D"))
        self.act_delete = a("De&lete", self.delete_selection,
                            [QKeySequence(Qt.Key.Key_Delete), QKeySequence(Qt.Key.Key_Backspace)])
        self.act_select_all = a("Select &All", self.select_all, K.SelectAll)
        self.act_layout = a("Auto &Layout", self.auto_layout, QKeySequence("Ctrl+L"),
                            "Arrange the layers top to bottom")
        self.act_fit = a("&Fit to Window", self.view.fit, QKeySequence(Qt.Key.Key_F))
        self.act_zoom_in = a("Zoom &In", lambda: self.view.zoom_by(1.25),
                             [QKeySequence(K.ZoomIn), QKeySequence("Ctrl+=")])
        self.act_zoom_out = a("Zoom &Out", lambda: self.view.zoom_by(0.8), K.ZoomOut)
        self.act_zoom_reset = a("&Actual Size", lambda: self.view.set_zoom(1.0),
                                QKeySequence("Ctrl+0"))
        self.act_search = a("Find &Layer Type", self.focus_palette_search, K.Find,
                            "Search the layer palette")
        self.act_about = a("&About CNN Designer", self.about)
        for act in (self.act_delete, self.act_fit):
            # plain keys: only while the canvas has focus, never while typing in a field
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.removeAction(act)
            self.view.addAction(act)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.act_new, self.act_new_template, self.act_open])
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        ex = m.addMenu("&Examples")
        for e in EXAMPLES:
            act = ex.addAction(e.title)
            act.setStatusTip(e.description)
            act.triggered.connect(lambda _=False, n=e.name: self.open_example(n))
        self._add_templates_menu(ex)
        m.addSeparator()
        m.addActions([self.act_save, self.act_save_as])
        m.addSeparator()
        m.addActions([self.act_export_png, self.act_export_svg, self.act_export_onnx,
                      self.act_export_pytorch])
        m.addSeparator()
        m.addAction(self.act_quit)

        m = mb.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addActions([self.act_cut, self.act_copy, self.act_paste, self.act_duplicate,
                      self.act_delete])
        m.addSeparator()
        m.addActions([self.act_select_all, self.act_layout, self.act_search])
        m.addSeparator()
        m.addActions([self.act_replace_head, self.act_unfreeze_all])

        m = mb.addMenu("&View")
        m.addActions([self.act_fit, self.act_zoom_in, self.act_zoom_out, self.act_zoom_reset])
        m.addSeparator()
        m.addActions([self.act_collapse_all, self.act_expand_all])
        m.addSeparator()
        self.act_minimap = m.addAction("Show &Overview Map")
        self.act_minimap.setCheckable(True)
        self.act_minimap.setStatusTip("The small map of the whole network in the canvas corner "
                                      "(shown only when the network does not fit the view)")
        on = str(self.settings.value("view/minimap", "true")).lower() != "false"
        self.act_minimap.setChecked(on)
        self.view.minimap.set_enabled(on)
        self.act_minimap.toggled.connect(self.set_minimap_enabled)
        tm = m.addMenu("&Theme")
        group = QActionGroup(self)
        self.theme_actions = {}
        current = str(self.settings.value("theme", "system"))
        for mode in theme.MODES:
            act = tm.addAction(mode.capitalize())
            act.setCheckable(True)
            act.setChecked(mode == current)
            group.addAction(act)
            act.triggered.connect(lambda _=False, md=mode: self.set_theme(md))
            self.theme_actions[mode] = act
        m.addSeparator()
        for dock in self.docks.values():
            m.addAction(dock.toggleViewAction())

        m = mb.addMenu("&Help")
        m.addAction(self.act_about)

    def _build_toolbar(self) -> None:
        """A slim bar of the everyday actions (text only: clear in both themes)."""
        tb = self.addToolBar("Main")
        tb.setObjectName("toolbar_main")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.setIconSize(QSize(20, 20))
        stack = self.doc.undo_stack
        # fixed labels (the menu's actions carry the command's name, which would make the
        # bar jump); no shortcuts here: the menu's actions own Ctrl+Z / Ctrl+Shift+Z
        self.tb_undo = QAction("Undo", self)
        self.tb_undo.setToolTip("Undo (Ctrl+Z)")
        self.tb_undo.triggered.connect(stack.undo)
        self.tb_undo.setEnabled(stack.canUndo())
        stack.canUndoChanged.connect(self.tb_undo.setEnabled)
        self.tb_redo = QAction("Redo", self)
        self.tb_redo.setToolTip("Redo (Ctrl+Shift+Z)")
        self.tb_redo.triggered.connect(stack.redo)
        self.tb_redo.setEnabled(stack.canRedo())
        stack.canRedoChanged.connect(self.tb_redo.setEnabled)
        self.tb_template = QAction("Template…", self)
        self.tb_template.setToolTip("New from a classic architecture (Ctrl+Shift+N)")
        self.tb_template.triggered.connect(self.new_from_template)
        self.tb_collapse = QAction("Collapse", self)
        self.tb_collapse.setToolTip("Collapse all blocks (Ctrl+Shift+C); expand all with "
                                    "Ctrl+Shift+E")
        self.tb_collapse.setCheckable(True)
        self.tb_collapse.toggled.connect(
            lambda on: self.collapse_all() if on else self.expand_all())
        for act in (self.act_new, self.tb_template, self.act_open, self.act_save, None,
                    self.tb_undo, self.tb_redo, None, self.act_layout, self.act_fit,
                    self.act_zoom_in, self.act_zoom_out, self.tb_collapse, None,
                    self.act_export_onnx):
            if act is None:
                tb.addSeparator()
            else:
                tb.addAction(act)
        self.toolbar = tb
        self._toolbar_icons = {
            self.act_new: "new", self.tb_template: "template", self.act_open: "open",
            self.act_save: "save", self.tb_undo: "undo", self.tb_redo: "redo",
            self.act_layout: "layout", self.act_fit: "fit", self.act_zoom_in: "zoom_in",
            self.act_zoom_out: "zoom_out", self.tb_collapse: "collapse",
            self.act_export_onnx: "export"}
        tips = {self.act_new: "New network", self.act_open: "Open a project or ONNX model",
                self.act_save: "Save the project", self.act_layout: "Arrange the layers top "
                "to bottom", self.act_fit: "Fit the whole network in view",
                self.act_zoom_in: "Zoom in", self.act_zoom_out: "Zoom out",
                self.act_export_onnx: "Export the network (with weights) to ONNX"}
        for act, tip in tips.items():
            keys = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            act.setToolTip(f"{tip} ({keys})" if keys else tip)
        self.act_fit.setIconText("Fit")
        self._paint_toolbar_icons()

    def _paint_toolbar_icons(self) -> None:
        """Line icons in the palette's text colour (redrawn when the theme changes)."""
        from .toolbar_icons import tool_icon

        pal = QApplication.palette()  # the window's own palette follows a theme change later
        colour = pal.color(pal.ColorRole.ButtonText)
        for act, name in self._toolbar_icons.items():
            act.setIcon(tool_icon(name, colour))
            act.setIconVisibleInMenu(False)

    def _add_templates_menu(self, menu) -> None:
        try:
            from engine.zoo.templates import TEMPLATES, build_template
        except ImportError:
            return
        menu.addSeparator()
        sub = menu.addMenu("Classic &architectures")
        del build_template
        for key, info in TEMPLATES.items():
            act = sub.addAction(info.title)
            act.setStatusTip(info.description)
            act.triggered.connect(lambda _=False, k=key: self.load_template(k))

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.lbl_state = QLabel()
        self.lbl_totals = QLabel()
        self.lbl_frozen = QLabel()
        self.lbl_frozen.setToolTip("Frozen layers keep their weights while training "
                                   "(right-click a layer: Freeze up to here / Unfreeze all)")
        self.lbl_zoom = QLabel()
        for w in (self.lbl_frozen, self.lbl_totals, self.lbl_state, self.lbl_zoom):
            w.setContentsMargins(10, 0, 10, 0)
            sb.addPermanentWidget(w)
        self.lbl_zoom.setMinimumWidth(60)

    def _connect(self) -> None:
        d = self.doc
        d.validated.connect(self._on_validated)
        d.clean_changed.connect(lambda clean: self._update_title())
        d.graph_reset.connect(self._update_title)
        d.edit_refused.connect(self._on_refused)
        self.scene.status_message.connect(self._on_hint)
        self.scene.selectionChanged.connect(self._on_selection)
        self.scene.collapse_changed.connect(self._sync_collapse_button)
        self._follow_only_when_shown("summary")
        self.view.zoom_changed.connect(lambda z: self.lbl_zoom.setText(f"{z * 100:.0f} %"))
        theme.theme_state().changed.connect(self._on_theme_changed)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(
            lambda pos: self.context_menu_at(self.view.mapToScene(pos)).exec(
                self.view.viewport().mapToGlobal(pos)))
        pal = self.panels.get("palette")
        if pal is not None and hasattr(pal, "layer_requested"):
            pal.layer_requested.connect(self.add_layer)
        for key in ("problems", "inspector", "summary"):
            panel = self.panels.get(key)
            if panel is not None and hasattr(panel, "node_activated"):
                panel.node_activated.connect(self.reveal_node)

    def _follow_only_when_shown(self, key: str) -> None:
        """A panel behind another tab does not recompute on every edit (the summary table of
        a 700-layer net costs ~6 ms an edit): it stops following the document while its dock
        is hidden and catches up when shown."""
        panel, dock = self.panels.get(key), self.docks.get(key)
        slot = getattr(panel, "_on_validated", None)
        if panel is None or dock is None or slot is None:
            return
        state = {"following": True}

        def follow(visible: bool) -> None:
            if visible == state["following"]:
                return
            state["following"] = visible
            if visible:
                self.doc.validated.connect(slot)
                slot(self.doc.validation)
            else:
                with contextlib.suppress(RuntimeError, TypeError):
                    self.doc.validated.disconnect(slot)

        dock.visibilityChanged.connect(follow)
        if not dock.isVisible() or dock.visibleRegion().isEmpty():
            QTimer.singleShot(0, lambda: follow(not dock.visibleRegion().isEmpty()))

    # ---- reactions --------------------------------------------------------------------------

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.doc.title}[*] — {APP_NAME}")
        self.setWindowModified(self.doc.is_dirty())

    def _on_validated(self, v) -> None:
        ne, nw = len(v.errors), len(v.warnings)
        if ne == 0 and nw == 0:
            self.lbl_state.setText("✓ valid")
            colour = self.scene.look.ok
        else:
            parts = []
            if ne:
                parts.append(f"{ne} error{'s' * (ne != 1)}")
            if nw:
                parts.append(f"{nw} warning{'s' * (nw != 1)}")
            self.lbl_state.setText(", ".join(parts))
            colour = self.scene.look.error if ne else self.scene.look.warning
        self.lbl_state.setStyleSheet(f"color: {colour.name()}; font-weight: 600;")
        self.lbl_totals.setText(totals_text(self.doc.graph, v))
        self.lbl_totals.setToolTip(
            "Totals over the layers whose shapes are known; fix the errors for exact totals"
            if "unknown" in self.lbl_totals.text() else
            f"{v.total_params:,} parameters, {v.macs:,} multiply-accumulates per image")
        nodes = self.doc.graph.nodes
        frozen = sum(not n.trainable for n in nodes.values())
        left = sum(r.trainable_params for nid, r in v.nodes.items()
                   if nid in nodes and nodes[nid].trainable)
        self.lbl_frozen.setText(f"{frozen} layer{'s' * (frozen != 1)} frozen · "
                                f"{fmt_count(left)} params to train" if frozen else "")
        self.lbl_frozen.setVisible(bool(frozen))

    def _on_refused(self, reason: str) -> None:
        self.statusBar().showMessage(f"⚠ {reason}", 8000)

    def _on_hint(self, text: str) -> None:
        if text:
            self.statusBar().showMessage(text)
        else:
            self.statusBar().clearMessage()

    def _on_selection(self) -> None:
        try:
            ids = self.scene.selected_node_ids()
        except RuntimeError:  # the scene is being torn down
            return
        nid = ids[0] if len(ids) == 1 else None
        for key in ("inspector", "feature_maps", "training"):
            panel = self.panels.get(key)
            if panel is not None and hasattr(panel, "set_node"):
                panel.set_node(nid)
        summary = self.panels.get("summary")
        if summary is not None and hasattr(summary, "select_node"):
            summary.select_node(nid, emit=False)

    def _on_theme_changed(self, dark: bool) -> None:
        self._paint_toolbar_icons()
        self.scene.set_dark(dark)
        self.view.refresh_background()
        self._on_validated(self.doc.validation)

    def set_minimap_enabled(self, on: bool) -> None:
        self.settings.setValue("view/minimap", "true" if on else "false")
        self.view.minimap.set_enabled(on)

    def set_theme(self, mode: str) -> None:
        self.settings.setValue("theme", mode)
        theme.apply_theme(QApplication.instance(), mode)

    def initial_view(self) -> None:
        """Fit the whole graph when it fits at a readable zoom (≥ FIT_MIN_ZOOM); else fit its
        width (readable at least) and show its top: a deep net is scrolled, not shrunk."""
        r = self.scene.content_rect()
        vp = self.view.viewport().size()
        if r.isNull():
            return
        kw = vp.width() / (r.width() + 60)
        k = min(kw, vp.height() / (r.height() + 60))
        if k >= FIT_MIN_ZOOM:
            self.view.fit()
        else:
            self.view.show_top(max(FIT_MIN_ZOOM, min(TOP_ZOOM, kw)))
        self.view.minimap.refresh()

    # ---- editing ----------------------------------------------------------------------------

    def reveal_node(self, node_id: str) -> None:
        """Select `node_id` and bring it to the middle of the view, zoomed in to a readable
        size when the view is far out (a card at 5 % is a coloured dot)."""
        item = self.scene.node_items.get(node_id)
        if item is None:
            return
        self.scene.select_nodes([node_id])
        if not item.isVisible():  # folded into a collapsed block: show the block
            for block in self.scene.block_items.values():
                if node_id in getattr(block.info, "node_ids", ()):
                    self.view.centerOn(block)
                    return
        if self.view.zoom() < REVEAL_ZOOM:
            self.view.set_zoom(REVEAL_ZOOM)
        self.view.centerOn(item)
        self.view.minimap.update_later()

    def free_position(self, near: QPointF) -> tuple[float, float]:
        """`near`, or the first place to its right where a new card overlaps nothing."""
        x, y = near.x(), near.y()
        for _ in range(40):
            rect = QRectF(x - NODE_W / 2 - 10, y - NODE_H / 2 - 10, NODE_W + 20, NODE_H + 20)
            if not any(isinstance(i, NodeItem) for i in self.scene.items(rect)):
                break
            x += NODE_W + 30
        return x, y

    def add_layer(self, type_name: str) -> None:
        """Palette double-click / Enter: below the selected layer (connected to it) when that
        layer's output is free, else in the middle of the view."""
        sel = self.scene.selected_node_ids()
        g = self.doc.graph
        if len(sel) == 1 and not g.successors(sel[0]):
            src = g.nodes[sel[0]]
            pos = self.free_position(QPointF(src.position[0], src.position[1] + NODE_H + V_GAP))
            stack = self.doc.undo_stack
            cmd = AddNodeCommand(self.doc, type_name, pos)
            if self.doc.locked_reason is None and not cmd.refusal:
                stack.beginMacro(f"Add {type_name} after '{src.name}'")
                self.doc.push(cmd)
                link = AddEdgeCommand(self.doc, src.id, cmd.node_id)
                self.doc.push(link)
                stack.endMacro()
                self.scene.select_nodes([cmd.node_id])
                self.reveal_node(cmd.node_id)
                return
        centre = self.view.mapToScene(self.view.viewport().rect().center())
        cmd = AddNodeCommand(self.doc, type_name, self.free_position(centre))
        if self.doc.push(cmd):
            self.scene.select_nodes([cmd.node_id])

    def context_menu_at(self, pos: QPointF) -> QMenu:
        """Right-click menu for what is under `pos` (scene coordinates): a card, a connection
        or the empty canvas."""
        menu = QMenu(self)
        doc, g = self.doc, self.doc.graph
        node = self.scene.node_at(pos)
        block = self.scene.block_at(pos) if node is None else None
        edge = None if node is not None or block is not None else self.scene.edge_at(pos)
        if node is not None:
            if not node.isSelected():
                self.scene.select_nodes([node.node_id])
            ids = self.scene.selected_node_ids()
            menu.addActions([self.act_cut, self.act_copy, self.act_duplicate, self.act_delete])
            menu.addSeparator()
            frozen = all(not g.nodes[i].trainable for i in ids)
            menu.addAction("Unfreeze (trainable)" if frozen else "Freeze (not trainable)",
                           lambda: doc.push(SetTrainableCommand(doc, ids, frozen)))
            if len(ids) == 1:
                nid = ids[0]
                menu.addSeparator()
                act = menu.addAction(f"Freeze up to '{_short(g.nodes[nid].name)}'",
                                     lambda: self.freeze_up_to(nid))
                act.setStatusTip("Freeze this layer and every layer before it (their weights "
                                 "stay as they are while training)")
                self._transfer_actions(menu)
                self._collapse_actions(menu, nid)
                if "feature_maps" in self.docks:
                    menu.addSeparator()
                    menu.addAction("Show feature maps", lambda: self.show_dock("feature_maps"))
            else:
                self._transfer_actions(menu)
        elif block is not None:
            name = block.name
            if not block.isSelected():
                self.scene.clearSelection()
                block.setSelected(True)
            menu.addAction(f"Expand '{_short(block.title)}'", lambda: self.scene.expand(name))
            if any(n != name and set(self.scene.blocks()[n]) < set(self.scene.blocks()[name])
                   for n in self.scene.collapsed):
                menu.addAction("Expand fully", lambda: self.scene.expand(name, fully=True))
            outer = [n for n in self.scene.blocks_containing(self.scene.blocks()[name][0])
                     if len(self.scene.blocks()[n]) > len(self.scene.blocks()[name])]
            for n in outer[:1]:
                menu.addAction(f"Collapse outer block '{_short(n)}'",
                               lambda n=n: self.scene.collapse(n))
            menu.addSeparator()
            last = block.info.node_ids[-1] if block.info and block.info.node_ids else None
            if last is not None:
                menu.addAction("Freeze up to the end of this block",
                               lambda: self.freeze_up_to(last))
            members = list(self.scene.blocks()[name])
            fro = all(not g.nodes[i].trainable for i in members)
            menu.addAction("Unfreeze the block's layers" if fro else "Freeze the block's layers",
                           lambda: doc.push(SetTrainableCommand(doc, members, fro)))
            self._transfer_actions(menu)
            menu.addSeparator()
            menu.addAction(f"Delete the block's {len(members)} layers",
                           lambda: doc.push(RemoveNodesCommand(doc, members)))
            menu.addSeparator()
            menu.addActions([self.act_collapse_all, self.act_expand_all])
        elif edge is not None:
            e = edge.edge
            sub = menu.addMenu("Insert layer here")
            self._layer_menu(sub, lambda t: doc.push(
                InsertNodeOnEdgeCommand(doc, e, t, (pos.x(), pos.y()))), inputs_only=True)
            menu.addAction("Delete connection", lambda: doc.push(RemoveEdgeCommand(doc, e)))
        else:
            sub = menu.addMenu("Add layer")
            self._layer_menu(sub, lambda t: self._add_at(t, pos))
            menu.addAction(self.act_paste)
            menu.addSeparator()
            menu.addActions([self.act_select_all, self.act_layout, self.act_fit])
            menu.addSeparator()
            menu.addActions([self.act_collapse_all, self.act_expand_all])
            self._transfer_actions(menu)
        return menu

    def _transfer_actions(self, menu: QMenu) -> None:
        menu.addAction(self.act_replace_head)
        if any(not n.trainable for n in self.doc.graph.nodes.values()):
            menu.addAction(self.act_unfreeze_all)

    def _collapse_actions(self, menu: QMenu, node_id: str) -> None:
        """"Collapse block 'layer2.0'" for the innermost block holding the layer, and a
        submenu for the blocks around that one."""
        names = self.scene.blocks_containing(node_id)
        if not names:
            return
        menu.addSeparator()
        menu.addAction(f"Collapse block '{_short(names[0])}'",
                       lambda: self.scene.collapse(names[0]))
        if len(names) > 1:
            sub = menu.addMenu("Collapse outer block")
            for n in names[1:]:
                sub.addAction(f"'{_short(n)}' ({len(self.scene.blocks()[n])} layers)",
                              lambda n=n: self.scene.collapse(n))

    # ---- templates, blocks, transfer learning -------------------------------------------------

    def new_from_template(self) -> bool:
        """File > New from Template: the dialog, then the chosen net in the document."""
        from .template_dialog import TemplateDialog

        dialog = TemplateDialog(self)
        try:
            if dialog.exec() != TemplateDialog.DialogCode.Accepted:
                return False
            return self.load_template(dialog.key(), dialog.num_classes())
        finally:
            dialog.deleteLater()

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
        self.statusBar().showMessage(f"New {title}{classes}", 6000)
        self.initial_view()
        return True

    def collapse_all(self) -> None:
        self.scene.collapse_all()
        if not self.scene.collapsed:
            self.statusBar().showMessage("No blocks to collapse in this network", 4000)
        self.initial_view()

    def expand_all(self) -> None:
        self.scene.expand_all()
        self.initial_view()

    def _sync_collapse_button(self) -> None:
        self.tb_collapse.blockSignals(True)
        self.tb_collapse.setChecked(bool(self.scene.collapsed))
        self.tb_collapse.blockSignals(False)

    def freeze_up_to(self, node_id: str) -> None:
        cmd = FreezeUpToCommand(self.doc, node_id)
        if self.doc.push(cmd):
            self.statusBar().showMessage(f"{cmd.text()}: their weights stay as they are while "
                                         "training", 6000)

    def unfreeze_all(self) -> None:
        self.doc.push(UnfreezeAllCommand(self.doc))

    def replace_head_dialog(self) -> None:
        """Ask for the number of classes, then replace the classifier (undoable)."""
        v = self.doc.validation
        out = v.nodes.get(v.output_id) if v.output_id else None
        current = out.out_shape[0] if out is not None and out.out_shape else 10
        n, ok = QInputDialog.getInt(
            self, "Replace Head", "Number of classes of the new classifier:\n(the last fully "
            "connected layer — or a final 1×1 convolution — gets this many outputs\nand new "
            "weights; everything before it keeps its weights)", int(current), 1, 100_000)
        if ok:
            self.replace_head(n)

    def replace_head(self, n_classes: int) -> bool:
        cmd = ReplaceHeadCommand(self.doc, n_classes)
        if not self.doc.push(cmd):
            return False
        self.statusBar().showMessage(f"{cmd.text()}: it trains from fresh weights", 6000)
        return True

    def _layer_menu(self, menu: QMenu, on_pick, inputs_only: bool = False) -> None:
        from engine.layers import CATEGORIES, REGISTRY

        for cat in CATEGORIES:
            types = [c for c in REGISTRY.values() if c.category == cat
                     and not (inputs_only and c.max_inputs == 0)]
            if not types:
                continue
            menu.addSection(cat)
            for cls in types:
                act = menu.addAction(theme.layer_icon(cls.type_name), cls.label)
                act.setStatusTip(cls.doc)
                act.triggered.connect(lambda _=False, t=cls.type_name: on_pick(t))

    def _add_at(self, type_name: str, pos: QPointF) -> None:
        cmd = AddNodeCommand(self.doc, type_name, (pos.x(), pos.y()))
        if self.doc.push(cmd):
            self.scene.select_nodes([cmd.node_id])

    def show_dock(self, key: str) -> None:
        dock = self.docks.get(key)
        if dock is not None:
            dock.show()
            dock.raise_()
            self.materialize(key)
            if key in ("feature_maps", "training"):
                QTimer.singleShot(0, self._grow_bottom_docks)

    def _grow_bottom_docks(self) -> None:
        """Curves and map grids want more height than a list of problems: the first time
        they are shown (and whenever asked for from a menu), the bottom docks grow to ~40 %
        of the window — never shrink what the user made taller."""
        dock = next((self.docks[k] for k in ("training", "feature_maps")
                     if k in self.docks and self.docks[k].isVisible()
                     and not self.docks[k].isFloating()
                     and self.dockWidgetArea(self.docks[k])
                     == Qt.DockWidgetArea.BottomDockWidgetArea), None)
        want = max(300, min(460, self.height() * 40 // 100))
        if dock is not None and dock.height() < want:
            self.resizeDocks([dock], [want], Qt.Orientation.Vertical)

    def delete_selection(self) -> None:
        ids = self.scene.selected_node_ids()
        for name in self.scene.selected_blocks():
            ids += [i for i in self.scene.blocks().get(name, ()) if i not in ids]
        idset = set(ids)
        edges = [e for e in self.scene.selected_edges()
                 if e.src not in idset and e.dst not in idset]
        if not ids and not edges:
            return
        if self.doc.locked_reason is not None:
            self.doc.edit_refused.emit(self.doc.locked_reason)
            return
        stack = self.doc.undo_stack
        stack.beginMacro("Delete selection")
        for e in edges:
            self.doc.push(RemoveEdgeCommand(self.doc, e))
        if ids:
            self.doc.push(RemoveNodesCommand(self.doc, ids))
        stack.endMacro()

    def select_all(self) -> None:
        """Every visible card: layers and collapsed blocks (so Delete after it removes all)."""
        for item in self.scene.node_items.values():
            if item.isVisible():
                item.setSelected(True)
        for item in self.scene.block_items.values():
            item.setSelected(True)

    def copy(self) -> None:
        n = clipboard.copy_nodes(self.doc.graph, self.scene.selected_node_ids())
        if n:
            self._paste_count = 0
            self.statusBar().showMessage(f"Copied {n} layer{'s' * (n != 1)}", 3000)

    def cut(self) -> None:
        ids = self.scene.selected_node_ids()
        if ids and self.doc.locked_reason is None:
            self.copy()
            self.doc.push(RemoveNodesCommand(self.doc, ids))
        elif ids:
            self.doc.edit_refused.emit(self.doc.locked_reason)

    def paste(self) -> None:
        data = clipboard.clipboard_fragment()
        if data is None:
            self.doc.edit_refused.emit("cannot paste: the clipboard is empty")
            return
        self._paste_count += 1
        self._paste(data, (NODE_W + 40.0) * self._paste_count, 0.0)

    def duplicate(self) -> None:
        ids = self.scene.selected_node_ids()
        if ids:
            self._paste(make_fragment(self.doc.graph, ids), NODE_W + 40.0, 0.0)

    def _paste(self, data, dx: float, dy: float) -> None:
        cmd = PasteCommand(self.doc, data, (dx, dy))
        if self.doc.push(cmd):
            self.scene.select_nodes(cmd.node_ids)
            n = len(cmd.node_ids)
            self.statusBar().showMessage(f"Pasted {n} layer{'s' * (n != 1)}", 3000)

    def auto_layout(self) -> None:
        if self.scene.block_items:  # blocks collapsed: lay out the folded view (not the graph)
            self.scene.relayout()
            self.view.fit()
            return
        pos = layered_layout(self.doc.graph)
        moves = {nid: (self.doc.graph.nodes[nid].position, p) for nid, p in pos.items()}
        self.doc.push(MoveNodesCommand(self.doc, moves, "Auto layout"))
        self.scene.update_scene_rect()
        self.view.fit()

    def focus_palette_search(self) -> None:
        pal = self.panels.get("palette")
        if pal is None:
            return
        self.docks["palette"].show()
        self.docks["palette"].raise_()
        search = getattr(pal, "search", None)
        if search is not None:
            search.setFocus(Qt.FocusReason.ShortcutFocusReason)
            search.selectAll()

    # ---- files ------------------------------------------------------------------------------

    def maybe_save(self) -> bool:
        """Ask about unsaved changes (and a running training); False when the user cancels."""
        if self.doc.locked_reason is not None:  # training: its weights are not kept yet
            answer = QMessageBox.question(
                self, APP_NAME, "Training is running. Stop it and discard this run's weights?",
                QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Discard:
                return False
        if not self.doc.is_dirty():
            return True
        answer = QMessageBox.question(
            self, APP_NAME, f"Save the changes to '{self.doc.title}' before closing it?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def new_file(self) -> None:
        if not self.maybe_save():
            return
        files.discard_autosave(self.autosave_dir, self.doc.path)
        g = Graph("untitled")
        g.add_node("Input", "input", {}, (0.0, 0.0), node_id="input")
        self.doc.reset(g)
        self.view.resetTransform()
        self.view.centerOn(0, 150)
        self.view.zoom_changed.emit(1.0)

    def open_dialog(self) -> None:
        start = str(self.doc.path.parent) if self.doc.path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open", start, files.OPEN_FILTERS)
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
            self.doc.graph.name = opened.graph.name or opened.source.stem
            self._update_title()
        msg = f"Opened {opened.source.name}" if opened.source else "Opened"
        if opened.warnings:
            msg += f" ({len(opened.warnings)} warning{'s' * (len(opened.warnings) != 1)}: " \
                   f"{opened.warnings[0]})"
        self.statusBar().showMessage(msg, 8000)
        self.initial_view()
        self._offer_recovery()

    def _run_with_progress(self, fn, path, label):
        """Run fn(path, report=...) in a worker thread with a modal progress dialog."""
        from .workers import FunctionWorker, start_worker

        result: dict = {}
        dialog = QProgressDialog(label, "Cancel", 0, 0, self)
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

    def open_example(self, name: str) -> None:
        title = next((e.title for e in EXAMPLES if e.name == name), name)
        self._open_graph_safely(lambda: load_example(name), title)

    def _open_graph_safely(self, make, title: str) -> None:
        if not self.maybe_save():
            return
        try:
            graph = make()
        except EngineError as exc:
            self.show_error("Cannot open the example", str(exc))
            return
        if files.needs_layout(graph):
            files.apply_layout(graph)
        self.doc.reset(graph)
        self.statusBar().showMessage(f"Opened {title}", 5000)
        self.initial_view()

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self.save_to(self.doc.path)

    def save_as(self) -> bool:
        start = self.doc.path or Path.home() / f"{self.doc.graph.name or 'network'}.cnnd"
        path, _ = QFileDialog.getSaveFileName(self, "Save As", str(start), files.SAVE_FILTERS)
        return self.save_to(path) if path else False

    def save_to(self, path) -> bool:
        try:
            written = files.save_file(path, self.doc.graph, self.doc.weights, self.doc.history,
                                      self.doc.blocks)
        except (EngineError, OSError) as exc:
            self.show_error("Cannot save", str(exc))
            return False
        old = self.doc.path
        self.doc.path = Path(written)
        self.doc.undo_stack.setClean()
        files.discard_autosave(self.autosave_dir, old)
        files.discard_autosave(self.autosave_dir, self.doc.path)
        self.recent.add(written)
        self._update_title()
        note = ""
        if Path(written).suffix.lower() == ".json" and self.doc.weights:
            note = " (architecture only: save as .cnnd to keep the trained weights)"
        self.statusBar().showMessage(f"Saved {Path(written).name}{note}", 8000)
        return True

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        paths = self.recent.paths()
        for p in paths:
            act = self.recent_menu.addAction(p.name)
            act.setStatusTip(str(p))
            act.triggered.connect(lambda _=False, path=p: self.open_path(path))
        if not paths:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.recent.clear)

    def autosave(self) -> None:
        if not self.doc.is_dirty():
            return
        try:
            files.write_autosave(self.autosave_dir, self.doc.path, self.doc.graph,
                                 self.doc.weights, self.doc.history)
        except (EngineError, OSError) as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 8000)

    def _offer_recovery(self) -> None:
        found = files.recovery_for(self.autosave_dir, self.doc.path)
        if found is None:
            return
        answer = QMessageBox.question(
            self, "Recover unsaved changes?",
            f"An autosave of '{self.doc.title}' newer than the file was found (the app may "
            f"have stopped unexpectedly). Recover it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            files.discard_autosave(self.autosave_dir, self.doc.path)
            return
        try:
            opened = files.open_file(found)
        except EngineError as exc:
            self.show_error("Cannot recover", str(exc))
            return
        path = self.doc.path
        self.doc.reset(opened.graph, opened.weights, path, opened.history)
        self.doc.undo_stack.resetClean()  # recovered changes are not saved yet
        self._update_title()

    def check_recovery(self) -> None:
        """Called once at start-up."""
        self._offer_recovery()

    def export_canvas(self, kind: str, path: str | None = None) -> bool:
        if path is None:
            filt = "PNG image (*.png)" if kind == "png" else "SVG drawing (*.svg)"
            start = str(Path.home() / f"{self.doc.graph.name or 'network'}.{kind}")
            path, _ = QFileDialog.getSaveFileName(self, f"Export canvas as {kind.upper()}",
                                                  start, filt)
            if not path:
                return False
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)  # seconds for 200 layers
        try:
            write_canvas(self.scene, path, kind, self.doc.graph.name)
        except OSError as exc:
            self.show_error("Cannot export", f"Could not write {path}: {exc}")
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.statusBar().showMessage(f"Exported {Path(path).name}", 4000)
        return True

    def export_onnx(self) -> None:
        cls = _optional("export_dialog", "ExportDialog")
        if cls is None:
            self.show_error("Export ONNX", "ONNX export is not available in this installation")
            return
        dialog = cls(self.doc, self)
        dialog.exec()
        dialog.deleteLater()

    def export_pytorch(self, folder: str | Path | None = None) -> list[Path] | None:
        """Write model.py, weights.npz, train.py and a README into a folder (in a worker)."""
        from engine.pytorch_export import export_pytorch

        if folder is None:
            start = str(self.doc.path.parent if self.doc.path else Path.home())
            folder = QFileDialog.getExistingDirectory(self, "Export as PyTorch code", start)
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
        self.statusBar().showMessage(f"Wrote {names} to {folder}", 8000)
        return [Path(p) for p in paths]

    def show_error(self, title: str, text: str) -> None:
        self.statusBar().showMessage(f"⚠ {text}", 10000)
        QMessageBox.warning(self, title, text)

    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<h3>{APP_NAME}</h3><p>Design convolutional networks on a canvas with "
                          "live shapes and parameter counts, train them on MNIST with NumPy, and "
                          "exchange them with ONNX.</p>")

    # ---- shutdown -----------------------------------------------------------------------------

    def closeEvent(self, event):
        if not self.maybe_save():
            event.ignore()
            return
        self.autosave_timer.stop()
        self.save_layout()
        files.discard_autosave(self.autosave_dir, self.doc.path)
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop workers and close plot widgets before the interpreter tears Qt down."""
        from .workers import stop_thread

        if getattr(self, "_shut", False):
            return
        self._shut = True
        for thread, _ in self._threads:
            stop_thread(thread)
        self._threads.clear()
        for key in ("training", "feature_maps"):
            panel = self.panels.get(key)
            if panel is not None:
                for name in ("shutdown", "stop"):
                    fn = getattr(panel, name, None)
                    if callable(fn):
                        with contextlib.suppress(RuntimeError):
                            fn()
                        break
                with contextlib.suppress(RuntimeError):
                    panel.close()
        with contextlib.suppress(RuntimeError, TypeError):
            self.scene.selectionChanged.disconnect(self._on_selection)

    def sizeHint(self) -> QSize:
        return QSize(1500, 950)


def totals_text(graph: Graph, v) -> str:
    """"14 layers · 61,706 params · 429.1K MACs"; with layers whose shape is unknown (errors)
    the sums are lower bounds: "≥ 312 params · ≥ 1.2K MACs (2 layers unknown)"."""
    unknown = sum(1 for nid in graph.nodes
                  if (r := v.nodes.get(nid)) is None or r.out_shape is None or r.layer is None)
    def bound(n: int, fmt) -> str:
        return fmt(n) if not unknown else f"≥ {fmt(n)}" if n else "?"

    text = (f"{len(graph.nodes)} layers · {bound(v.total_params, fmt_count)} params · "
            f"{bound(v.macs, human_count)} MACs")
    if unknown:
        text += f" ({unknown} layer{'s' * (unknown != 1)} unknown)"
    return text


def _short(text: str, n: int = 32) -> str:
    """Menu labels stay short: the middle of a long name gives way to an ellipsis."""
    return text if len(text) <= n else text[: n // 2 - 1] + "…" + text[-(n // 2 - 1):]


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
