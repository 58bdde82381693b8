"""The editor controller: every edit action on the canvas (delete, cut / copy / paste, add and
insert layers, freeze, replace the head, auto layout, collapse blocks), the canvas's context
menu, zoom and the undo / redo actions of the document's undo stack.

It owns no widgets: the window places its actions in menus and on the toolbar, and shows what it
posts (`status_posted`); every change of the graph is a command pushed through the document.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QInputDialog, QMenu, QWidget

from . import clipboard, theme
from .canvas import CanvasScene, CanvasView, NodeItem, layered_layout
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

REVEAL_ZOOM = 0.8  # a layer picked in Problems / Summary is shown at least this big


def make_action(host: QWidget, text: str, slot, shortcut=None, tip: str = "") -> QAction:
    """A QAction on `host` (its shortcut works anywhere in host's window) triggering `slot`;
    `shortcut`: a key sequence, a standard key or a list of them."""
    a = QAction(text, host)
    if shortcut is not None:
        if isinstance(shortcut, list):
            a.setShortcuts(shortcut)
        else:
            a.setShortcut(shortcut)
    if tip:
        a.setStatusTip(tip)
    a.triggered.connect(slot)
    host.addAction(a)
    return a


class EditorController(QObject):
    """Edit actions over `doc` as shown by `scene` in `view`; dialogs and menus open on
    `host` (the window), whose shortcuts the actions use."""

    status_posted = Signal(str, int)  # a message for the status bar, its timeout in ms
    frame_requested = Signal()  # the visible layers changed a lot: frame the graph again
    dock_requested = Signal(str)  # a dock to show (the context menu's "Show feature maps")

    def __init__(self, doc: Document, scene: CanvasScene, view: CanvasView, host: QWidget):
        super().__init__(host)
        self.doc, self.scene, self.view, self.host = doc, scene, view, host
        self._paste_count = 0
        self._build_actions()
        scene.collapse_changed.connect(self._sync_collapse_button)
        QApplication.instance().installEventFilter(self)  # undo keys in the panels' fields

    # panels whose fields edit the document: their Ctrl+Z / Ctrl+Y undo the document's edits
    # (a field's own text undo would swallow them while the toolbar shows Undo enabled)
    UNDO_PANELS = ("inspector", "problems")

    def eventFilter(self, obj, event) -> bool:
        if event.type() != QEvent.Type.ShortcutOverride or not isinstance(obj, QWidget):
            return False
        K = QKeySequence.StandardKey
        if not (event.matches(K.Undo) or event.matches(K.Redo)
                or any(QKeySequence(event.keyCombination()) == k
                       for k in self.act_redo.shortcuts())):
            return False
        panels = getattr(self.host, "panels", {})
        if any(p is not None and (obj is p or p.isAncestorOf(obj))
               for p in (panels.get(k) for k in self.UNDO_PANELS)):
            event.ignore()  # not overridden: the window's Undo / Redo shortcut fires
            return True
        return False

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        stack = self.doc.undo_stack

        def a(*args):
            return make_action(self.host, *args)

        self.act_undo = stack.createUndoAction(self.host, "&Undo")
        self.act_undo.setShortcut(K.Undo)
        self.act_redo = stack.createRedoAction(self.host, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.host.addAction(self.act_undo)
        self.host.addAction(self.act_redo)
        # the toolbar's: fixed labels (the menu's actions carry the command's name, which would
        # make the bar jump); no shortcuts here: the menu's actions own Ctrl+Z / Ctrl+Shift+Z
        self.tb_undo = QAction("Undo", self.host)
        self.tb_undo.setToolTip("Undo (Ctrl+Z)")
        self.tb_undo.triggered.connect(stack.undo)
        self.tb_undo.setEnabled(stack.canUndo())
        stack.canUndoChanged.connect(self.tb_undo.setEnabled)
        self.tb_redo = QAction("Redo", self.host)
        self.tb_redo.setToolTip("Redo (Ctrl+Shift+Z)")
        self.tb_redo.triggered.connect(stack.redo)
        self.tb_redo.setEnabled(stack.canRedo())
        stack.canRedoChanged.connect(self.tb_redo.setEnabled)

        self.act_cut = a("Cu&t", self.cut, K.Cut)
        self.act_copy = a("&Copy", self.copy, K.Copy)
        self.act_paste = a("&Paste", self.paste, K.Paste)
        self.act_duplicate = a("&Duplicate", self.duplicate, QKeySequence("Ctrl+D"))
        self.act_delete = a("De&lete", self.delete_selection,
                            [QKeySequence(Qt.Key.Key_Delete), QKeySequence(Qt.Key.Key_Backspace)])
        self.act_select_all = a("Select &All", self.select_all, K.SelectAll)
        self.act_layout = a("Auto &Layout", self.auto_layout, QKeySequence("Ctrl+L"),
                            "Arrange the layers top to bottom")
        self.act_unfreeze_all = a("Unfreeze All Layers", self.unfreeze_all, None,
                                  "Make every layer trainable again")
        self.act_replace_head = a("Replace &Head for N Classes…", self.replace_head_dialog,
                                  None, "Give the classifier a new number of outputs "
                                        "(transfer learning)")
        self.act_collapse_all = a("&Collapse All Blocks", self.collapse_all,
                                  QKeySequence("Ctrl+Shift+C"),
                                  "Fold residual / dense / inception blocks into one card each")
        self.act_expand_all = a("&Expand All Blocks", self.expand_all,
                                QKeySequence("Ctrl+Shift+E"), "Show every layer again")
        self.tb_collapse = QAction("Collapse", self.host)
        self.tb_collapse.setToolTip("Collapse all blocks (Ctrl+Shift+C); expand all with "
                                    "Ctrl+Shift+E")
        self.tb_collapse.setCheckable(True)
        self.tb_collapse.toggled.connect(
            lambda on: self.collapse_all() if on else self.expand_all())

        view = self.view
        self.act_fit = a("&Fit to Window", lambda: view.fit_readable(), QKeySequence(Qt.Key.Key_F))
        self.act_zoom_in = a("Zoom &In", lambda: view.zoom_by(1.25),
                             [QKeySequence(K.ZoomIn), QKeySequence("Ctrl+=")])
        self.act_zoom_out = a("Zoom &Out", lambda: view.zoom_by(0.8), K.ZoomOut)
        self.act_zoom_reset = a("&Actual Size", lambda: view.set_zoom(1.0),
                                QKeySequence("Ctrl+0"))
        for act in (self.act_delete, self.act_fit):
            # plain keys: only while the canvas has focus, never while typing in a field
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.host.removeAction(act)
            view.addAction(act)

    # ---- navigation ---------------------------------------------------------------------------

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

    # ---- adding layers ------------------------------------------------------------------------

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

    def _add_at(self, type_name: str, pos: QPointF) -> None:
        cmd = AddNodeCommand(self.doc, type_name, (pos.x(), pos.y()))
        if self.doc.push(cmd):
            self.scene.select_nodes([cmd.node_id])

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

    # ---- context menu -------------------------------------------------------------------------

    def context_menu_at(self, pos: QPointF) -> QMenu:
        """Right-click menu for what is under `pos` (scene coordinates): a card, a connection
        or the empty canvas."""
        menu = QMenu(self.host)
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
                act = menu.addAction(f"Freeze up to '{short_label(g.nodes[nid].name)}'",
                                     lambda: self.freeze_up_to(nid))
                act.setStatusTip("Freeze this layer and every layer before it (their weights "
                                 "stay as they are while training)")
                self._transfer_actions(menu)
                self._collapse_actions(menu, nid)
                menu.addSeparator()
                menu.addAction("Show feature maps",
                               lambda: self.dock_requested.emit("feature_maps"))
            else:
                self._transfer_actions(menu)
        elif block is not None:
            self._block_menu(menu, block)
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

    def _block_menu(self, menu: QMenu, block) -> None:
        """A collapsed block's menu: expand, freeze, delete its layers."""
        doc, g, scene = self.doc, self.doc.graph, self.scene
        name = block.name
        if not block.isSelected():
            scene.clearSelection()
            block.setSelected(True)
        menu.addAction(f"Expand '{short_label(block.title)}'", lambda: scene.expand(name))
        if any(n != name and set(scene.blocks()[n]) < set(scene.blocks()[name])
               for n in scene.collapsed):
            menu.addAction("Expand fully", lambda: scene.expand(name, fully=True))
        outer = [n for n in scene.blocks_containing(scene.blocks()[name][0])
                 if len(scene.blocks()[n]) > len(scene.blocks()[name])]
        for n in outer[:1]:
            menu.addAction(f"Collapse outer block '{short_label(n)}'",
                           lambda n=n: scene.collapse(n))
        menu.addSeparator()
        last = block.info.node_ids[-1] if block.info and block.info.node_ids else None
        if last is not None:
            menu.addAction("Freeze up to the end of this block", lambda: self.freeze_up_to(last))
        members = list(scene.blocks()[name])
        fro = all(not g.nodes[i].trainable for i in members)
        menu.addAction("Unfreeze the block's layers" if fro else "Freeze the block's layers",
                       lambda: doc.push(SetTrainableCommand(doc, members, fro)))
        self._transfer_actions(menu)
        menu.addSeparator()
        menu.addAction(f"Delete the block's {len(members)} layers",
                       lambda: doc.push(RemoveNodesCommand(doc, members)))
        menu.addSeparator()
        menu.addActions([self.act_collapse_all, self.act_expand_all])

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
        menu.addAction(f"Collapse block '{short_label(names[0])}'",
                       lambda: self.scene.collapse(names[0]))
        if len(names) > 1:
            sub = menu.addMenu("Collapse outer block")
            for n in names[1:]:
                sub.addAction(f"'{short_label(n)}' ({len(self.scene.blocks()[n])} layers)",
                              lambda n=n: self.scene.collapse(n))

    # ---- blocks and transfer learning ---------------------------------------------------------

    def collapse_all(self) -> None:
        self.scene.collapse_all()
        if not self.scene.collapsed:
            self.status_posted.emit("No blocks to collapse in this network", 4000)
        self.frame_requested.emit()

    def expand_all(self) -> None:
        self.scene.expand_all()
        self.frame_requested.emit()

    def _sync_collapse_button(self) -> None:
        self.tb_collapse.blockSignals(True)
        self.tb_collapse.setChecked(bool(self.scene.collapsed))
        self.tb_collapse.blockSignals(False)

    def freeze_up_to(self, node_id: str) -> None:
        cmd = FreezeUpToCommand(self.doc, node_id)
        if self.doc.push(cmd):
            self.status_posted.emit(f"{cmd.text()}: their weights stay as they are while "
                                    "training", 6000)

    def unfreeze_all(self) -> None:
        self.doc.push(UnfreezeAllCommand(self.doc))

    def replace_head_dialog(self) -> None:
        """Ask for the number of classes, then replace the classifier (undoable)."""
        v = self.doc.validation
        out = v.nodes.get(v.output_id) if v.output_id else None
        current = out.out_shape[0] if out is not None and out.out_shape else 10
        n, ok = QInputDialog.getInt(
            self.host, "Replace Head", "Number of classes of the new classifier:\n(the last "
            "fully connected layer — or a final 1×1 convolution — gets this many outputs\nand "
            "new weights; everything before it keeps its weights)", int(current), 1, 100_000)
        if ok:
            self.replace_head(n)

    def replace_head(self, n_classes: int) -> bool:
        cmd = ReplaceHeadCommand(self.doc, n_classes)
        if not self.doc.push(cmd):
            return False
        self.status_posted.emit(f"{cmd.text()}: it trains from fresh weights", 6000)
        return True

    # ---- selection, clipboard, layout ---------------------------------------------------------

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
        bridge = self._bridge(ids[0]) if len(ids) == 1 and not edges else []
        stack.beginMacro("Delete selection")
        for e in edges:
            self.doc.push(RemoveEdgeCommand(self.doc, e))
        if ids:
            self.doc.push(RemoveNodesCommand(self.doc, ids))
        joined = [text for make, text in bridge if self.doc.push(make())]
        stack.endMacro()
        if joined:
            self.status_posted.emit(f"Deleted; reconnected {', '.join(joined)} "
                                    "(Ctrl+Z undoes both)", 8000)

    def _bridge(self, node_id: str) -> list:
        """Deleting a middle layer (one input, feeding others) reconnects its neighbours:
        [(make the AddEdgeCommand, "'a' → 'b'")] from its input's source to each layer it fed
        (made after the delete: the check runs on the graph without it)."""
        g = self.doc.graph
        ins = [e for e in g.edges if e.dst == node_id]
        outs = [e for e in g.edges if e.src == node_id]
        if len(ins) != 1 or not outs:
            return []
        src, sport = ins[0].src, ins[0].src_port
        return [(lambda d=e.dst: AddEdgeCommand(self.doc, src, d, sport),
                 f"'{g.nodes[src].name}' → '{g.nodes[e.dst].name}'") for e in outs]

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
            self.status_posted.emit(f"Copied {n} layer{'s' * (n != 1)}", 3000)

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
            self.status_posted.emit(f"Pasted {n} layer{'s' * (n != 1)}", 3000)

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


def short_label(text: str, n: int = 32) -> str:
    """Menu labels stay short: the middle of a long name gives way to an ellipsis."""
    return text if len(text) <= n else text[: n // 2 - 1] + "…" + text[-(n // 2 - 1):]
