"""The main window: the canvas in the centre, palette left, inspector / summary right, problems,
history, training and feature maps below; menus, toolbar and status bar.

The window arranges; it does not edit. Edit actions live in the editor controller
(designer/editor.py), files in the file controller (designer/file_controller.py); what the window
shows (title, modified mark, totals, messages) arrives by their signals and the document's.
"""

from __future__ import annotations

import contextlib
from itertools import pairwise
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTabBar,
    QUndoView,
    QWidget,
)

from engine.graph import Graph
from engine.summary import human_count
from engine.zoo.examples import load_example

from . import files, theme
from .canvas import CanvasScene, CanvasView
from .canvas.items import fmt_count
from .document import Document
from .editor import EditorController, make_action
from .feature_maps import FeatureMapPanel
from .file_controller import FileController
from .files import APP_NAME
from .inspector import InspectorPanel
from .palette import PalettePanel
from .problems import ProblemsPanel
from .readouts import bound, network_state, unknown_layers
from .summary_view import SummaryPanel
from .training_panel import TrainingPanel

__all__ = ["APP_NAME", "MainWindow", "totals_text"]

DOCK_STATE_VERSION = 2  # bump when the default dock placement changes (old states are ignored)
WIDE_BOTTOM_BELOW = 1440  # narrower windows give the bottom docks the full width (_fit_corners)
EMPTY_PROBLEMS_HEIGHT = 110  # the bottom dock's first height when it shows no problems
PROBLEMS_HEIGHT = 190  # ... and when it shows some: a few rows


class MainWindow(QMainWindow):
    """One document in one window: `editor` edits it, `file_controller` opens and saves it.
    `settings` and `autosave_dir` are injectable for tests."""

    def __init__(self, graph: Graph | None = None, settings=None, autosave_dir: Path | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings if settings is not None else files.make_settings()
        self.doc = Document(graph if graph is not None else load_example("lenet5"), self)
        self.scene = CanvasScene(self.doc, theme.is_dark(), self)
        self.view = CanvasView(self.scene, self)
        self.setCentralWidget(self.view)
        self.editor = EditorController(self.doc, self.scene, self.view, self)
        self.file_controller = FileController(self.doc, self.scene, self, self.settings,
                                              autosave_dir)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks
                            | QMainWindow.DockOption.AllowTabbedDocks)
        self._wide_bottom: bool | None = None  # _fit_corners
        self._fit_corners()
        self.panels: dict[str, QWidget] = {}
        self.docks: dict[str, QDockWidget] = {}
        self._factories: dict[str, object] = {}
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()
        self.resize(1500, 950)
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            with contextlib.suppress(TypeError, ValueError):
                self.restoreGeometry(geometry)
        self._show_title(self.doc.title)
        self.setWindowModified(self.doc.is_modified())
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
            if key in ("feature_maps", "training", "runs"):
                self._on_selection()
                if not self._layout_restored:  # the user's own sizes stay as they left them
                    QTimer.singleShot(0, self._grow_bottom_docks)
        return self.panels.get(key)

    def _build_docks(self) -> None:
        L, R, B = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                   Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("palette", "Layers", PalettePanel(self), L)
        problems = self._dock("problems", "Problems", ProblemsPanel(self.doc, self), B)
        history = QUndoView(self.doc.undo_stack, self)
        history.setEmptyLabel("Opened")
        history.setFrameShape(QFrame.Shape.NoFrame)
        history.setStyleSheet("QListView::item { padding: 3px 8px; }")
        history.setToolTip("Every edit, oldest first: click a line to go back to that state "
                           "(the later edits stay, for redo)")
        history_dock = self._dock("history", "History", history, B)
        right = [self._dock("inspector", "Inspector", InspectorPanel(self.doc, self), R),
                 self._dock("summary", "Summary", SummaryPanel(self.doc, self), R)]
        # wide and short below the canvas: curves and map grids need the width; built the
        # first time they are shown (plot-heavy panels cost ~0.5 s each)
        bottom = [problems, history_dock,
                  self._dock("training", "Training", None, B,
                             lambda: TrainingPanel(self.doc, self)),
                  self._dock("feature_maps", "Feature maps", None, B,
                             lambda: FeatureMapPanel(self.doc, self)),
                  self._dock("runs", "Runs", None, B, self._make_runs_panel)]
        for group in (bottom, right):
            for a, b in pairwise(group):
                self.tabifyDockWidget(a, b)
        right[0].raise_()
        bottom[0].raise_()
        self._sized = False
        self._layout_restored = False
        self._first_docks = (right[0], bottom[0])

    def _make_runs_panel(self) -> QWidget:
        from .runs_panel import RunsPanel

        panel = RunsPanel(self.doc, self)
        panel.open_requested.connect(self.restore_run)
        panel.open_new_requested.connect(self.open_run)
        panel.status_posted.connect(self.statusBar().showMessage)
        return panel

    def restore_run(self, graph: Graph, weights, title: str) -> bool:
        """"Open this run": a recorded run's architecture, input spec and best weights replace
        the document's as one undoable step (Edit ▸ Undo brings the design back)."""
        from .commands import RestoreRunCommand

        if files.needs_layout(graph):
            files.apply_layout(graph)
        if not self.doc.push(RestoreRunCommand(self.doc, graph, weights, title)):
            return False
        self.statusBar().showMessage(f"Restored {title}; Undo brings the previous design back",
                                     6000)
        self.initial_view()
        return True

    def open_run(self, graph: Graph, weights, title: str) -> bool:
        """A recorded run's architecture and best weights as a new (unsaved) document; the
        current one is offered for saving first, as when opening a file."""
        if not self.file_controller.maybe_save():
            return False
        if files.needs_layout(graph):
            files.apply_layout(graph)
        self.doc.reset(graph, weights)
        self.doc.set_modified(True)
        self.statusBar().showMessage(f"Opened {title} as a new document", 6000)
        self.initial_view()
        return True

    def _fit_corners(self) -> None:
        """Wide windows: the side docks run the full height beside the bottom docks. Below
        WIDE_BOTTOM_BELOW px the bottom docks take the corners and the full width instead, so
        the training panel keeps its settings beside its curves (the Train button and the
        plots in view at 1280×720) rather than stacking them in a narrow scroll."""
        wide_bottom = self.width() < WIDE_BOTTOM_BELOW
        if wide_bottom == self._wide_bottom:
            return
        self._wide_bottom = wide_bottom
        B, L, R = (Qt.DockWidgetArea.BottomDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea,
                   Qt.DockWidgetArea.RightDockWidgetArea)
        self.setCorner(Qt.Corner.BottomLeftCorner, B if wide_bottom else L)
        self.setCorner(Qt.Corner.BottomRightCorner, B if wide_bottom else R)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._fit_corners()

    def _size_docks(self) -> None:
        """Give the canvas the room: narrow side docks; below it a dock tall enough for a few
        problems, the history, the training curves or a row of feature maps."""
        right, bottom = self._first_docks
        self.resizeDocks([self.docks["palette"]], [220], Qt.Orientation.Horizontal)
        self.resizeDocks([right], [max(360, self.width() // 4)], Qt.Orientation.Horizontal)
        # an empty Problems list needs its header and one line, not a fifth of the window
        empty = bottom is self.docks["problems"] and not self.doc.validation.messages
        self.resizeDocks([bottom], [EMPTY_PROBLEMS_HEIGHT if empty else
                                    max(PROBLEMS_HEIGHT, min(280, self.height() * 20 // 100))],
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

    def _build_actions(self) -> None:
        """The window's own actions; the editor's and the file controller's are theirs."""
        K = QKeySequence.StandardKey
        self.act_quit = make_action(self, "&Quit", self.close, K.Quit)
        self.act_search = make_action(self, "Find &Layer Type", self.focus_palette_search, K.Find,
                                      "Search the layer palette")
        self.act_about = make_action(self, "&About CNN Designer", self.about)
        self.act_start_page = make_action(self, "&Start Page…", self.show_start_page, None,
                                          "Blank network, templates, examples, recent files")
        self.act_guide = make_action(self, "Build Your &First Network", self.start_guide, None,
                                     "Six guided steps to a small CNN")
        self.act_shortcuts = make_action(self, "&Keyboard Shortcuts", self.show_shortcuts,
                                         QKeySequence("Ctrl+/"), "Every shortcut on one sheet")

    def _build_menus(self) -> None:
        ed, fc = self.editor, self.file_controller
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([fc.act_new, fc.act_new_template, fc.act_new_pretrained, fc.act_open,
                      fc.act_import_onnx])
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(lambda: fc.fill_recent_menu(self.recent_menu))
        fc.fill_examples_menu(m.addMenu("&Examples"))
        m.addAction(fc.act_load_weights)
        m.addSeparator()
        m.addActions([fc.act_save, fc.act_save_as])
        m.addSeparator()
        m.addAction(fc.act_import_report)
        m.addSeparator()
        m.addActions([fc.act_export_png, fc.act_export_svg, fc.act_export_onnx,
                      fc.act_export_pytorch])
        m.addSeparator()
        m.addAction(self.act_quit)

        m = mb.addMenu("&Edit")
        m.addActions([ed.act_undo, ed.act_redo])
        m.addSeparator()
        m.addActions([ed.act_cut, ed.act_copy, ed.act_paste, ed.act_duplicate, ed.act_delete])
        m.addSeparator()
        m.addActions([ed.act_select_all, ed.act_layout, self.act_search])
        m.addSeparator()
        m.addActions([ed.act_replace_head, ed.act_unfreeze_all])

        m = mb.addMenu("&View")
        m.addActions([ed.act_fit, ed.act_zoom_in, ed.act_zoom_out, ed.act_zoom_reset])
        m.addSeparator()
        m.addActions([ed.act_collapse_all, ed.act_expand_all])
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
        m.addActions([self.act_start_page, self.act_guide, self.act_shortcuts])
        m.addSeparator()
        m.addAction(self.act_about)

    def _build_toolbar(self) -> None:
        """A slim bar of the everyday actions (text only: clear in both themes)."""
        ed, fc = self.editor, self.file_controller
        tb = self.addToolBar("Main")
        tb.setObjectName("toolbar_main")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.setIconSize(QSize(20, 20))
        for act in (fc.act_new, fc.tb_template, fc.act_open, fc.act_save, None,
                    ed.tb_undo, ed.tb_redo, None, ed.act_layout, ed.act_fit,
                    ed.act_zoom_in, ed.act_zoom_out, ed.tb_collapse, None,
                    fc.act_export_onnx):
            if act is None:
                tb.addSeparator()
            else:
                tb.addAction(act)
        self.toolbar = tb
        self._toolbar_icons = {
            fc.act_new: "new", fc.tb_template: "template", fc.act_open: "open",
            fc.act_save: "save", ed.tb_undo: "undo", ed.tb_redo: "redo",
            ed.act_layout: "layout", ed.act_fit: "fit", ed.act_zoom_in: "zoom_in",
            ed.act_zoom_out: "zoom_out", ed.tb_collapse: "collapse",
            fc.act_export_onnx: "export"}
        tips = {fc.act_new: "New network", fc.act_open: "Open a project or ONNX model",
                fc.act_save: "Save the project", ed.act_layout: "Arrange the layers top "
                "to bottom", ed.act_fit: "Fit the whole network in view",
                ed.act_zoom_in: "Zoom in", ed.act_zoom_out: "Zoom out",
                fc.act_export_onnx: "Export the network (with weights) to ONNX"}
        for act, tip in tips.items():
            keys = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            act.setToolTip(f"{tip} ({keys})" if keys else tip)
        ed.act_fit.setIconText("Fit")
        self._paint_toolbar_icons()

    def _paint_toolbar_icons(self) -> None:
        """Line icons in the palette's text colour (redrawn when the theme changes)."""
        from .toolbar_icons import tool_icon

        pal = QApplication.palette()  # the window's own palette follows a theme change later
        colour = pal.color(pal.ColorRole.ButtonText)
        for act, name in self._toolbar_icons.items():
            act.setIcon(tool_icon(name, colour))
            act.setIconVisibleInMenu(False)

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
        d, ed, fc = self.doc, self.editor, self.file_controller
        d.validated.connect(self._on_validated)
        d.title_changed.connect(self._show_title)
        d.modified_changed.connect(self.setWindowModified)
        d.edit_refused.connect(self._on_refused)
        for controller in (ed, fc):
            controller.status_posted.connect(self.statusBar().showMessage)
            controller.frame_requested.connect(self.initial_view)
        ed.dock_requested.connect(self.show_dock)
        fc.blank_created.connect(self._show_blank)
        self.scene.status_message.connect(self._on_hint)
        self.scene.selectionChanged.connect(self._on_selection)
        self._follow_only_when_shown("summary")
        self.view.zoom_changed.connect(lambda z: self.lbl_zoom.setText(f"{z * 100:.0f} %"))
        self.view.hint_posted.connect(self.statusBar().showMessage)
        theme.theme_state().changed.connect(self._on_theme_changed)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(
            lambda pos: ed.context_menu_at(self.view.mapToScene(pos)).exec(
                self.view.viewport().mapToGlobal(pos)))
        self.panels["palette"].layer_requested.connect(ed.add_layer)
        for key in ("problems", "inspector", "summary"):
            self.panels[key].node_activated.connect(ed.reveal_node)

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

    def _show_title(self, title: str) -> None:
        self.setWindowTitle(f"{title}[*] — {APP_NAME}")

    def _on_validated(self, v) -> None:
        ne, nw = len(v.errors), len(v.warnings)
        text, severity = network_state(self.doc.graph, v)
        self.lbl_state.setText(text)
        look = self.scene.look
        colour = {"ok": look.ok, "error": look.error, "warning": look.warning}.get(
            severity, look.muted)
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
        self._fit_problems_dock(bool(ne or nw))

    def _fit_problems_dock(self, any_problems: bool) -> None:
        """The Problems dock opens low while it is empty; the first problems on show grow it
        enough for a few rows (never shrinking what the user made taller)."""
        dock = self.docks.get("problems")
        if (any_problems and dock is not None and not dock.visibleRegion().isEmpty()
                and not dock.isFloating() and dock.height() < PROBLEMS_HEIGHT):
            self.resizeDocks([dock], [PROBLEMS_HEIGHT], Qt.Orientation.Vertical)

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
        """Fit the whole graph when it fits at a readable zoom (cards with their parameters);
        else its top at a readable zoom, the status bar saying how to see the rest. The hint
        joins a message already shown (what was opened or created) instead of replacing it."""
        bar = self.statusBar()
        before = bar.currentMessage()
        self.view.fit_readable(toggle=False)
        after = bar.currentMessage()
        if before and after and after != before:
            bar.showMessage(f"{before} — {after}", 15000)
        self.view.minimap.refresh()

    def show_dock(self, key: str) -> None:
        dock = self.docks.get(key)
        if dock is not None:
            dock.show()
            dock.raise_()
            self.materialize(key)
            if key in ("feature_maps", "training", "runs"):
                QTimer.singleShot(0, self._grow_bottom_docks)

    def _grow_bottom_docks(self) -> None:
        """Curves and map grids want more height than a list of problems: the first time
        they are shown (and whenever asked for from a menu), the bottom docks grow to ~40 %
        of the window — never shrink what the user made taller."""
        dock = next((self.docks[k] for k in ("training", "feature_maps", "runs")
                     if k in self.docks and self.docks[k].isVisible()
                     and not self.docks[k].isFloating()
                     and self.dockWidgetArea(self.docks[k])
                     == Qt.DockWidgetArea.BottomDockWidgetArea), None)
        want = max(300, min(460, self.height() * 40 // 100))
        if dock is not None and dock.height() < want:
            self.resizeDocks([dock], [want], Qt.Orientation.Vertical)

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

    def _show_blank(self) -> None:
        """A new, empty network: the canvas at 100 %, its input near the top."""
        self.view.resetTransform()
        self.view.centerOn(0, 150)
        self.view.zoom_changed.emit(1.0)

    def show_start_page(self):
        from .start_page import show_start_page

        return show_start_page(self)

    def start_guide(self) -> None:
        from .guide import start_guide

        start_guide(self)

    def show_shortcuts(self) -> None:
        from .shortcuts import ShortcutSheet

        sheet = ShortcutSheet(self)
        sheet.exec()
        sheet.deleteLater()

    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<h3>{APP_NAME}</h3><p>Design convolutional networks on a canvas with "
                          "live shapes and parameter counts, train them on MNIST with NumPy, and "
                          "exchange them with ONNX.</p>")

    # ---- shutdown -----------------------------------------------------------------------------

    def closeEvent(self, event):
        if not self.file_controller.maybe_save():
            event.ignore()
            return
        self.file_controller.autosave_timer.stop()
        self.save_layout()
        self.file_controller.discard_autosave()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop workers and close plot widgets before the interpreter tears Qt down."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        self.file_controller.shutdown()
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
    unknown = unknown_layers(graph, v)
    text = (f"{len(graph.nodes)} layers · {bound(v.total_params, unknown)} params · "
            f"{bound(v.macs, unknown, human_count)} MACs")
    if unknown:
        text += f" ({unknown} layer{'s' * (unknown != 1)} unknown)"
    return text
