"""Help ▸ Keyboard Shortcuts: a sheet of every shortcut, read from the window's menus (so it
cannot drift from what the keys do), plus the canvas's mouse and key gestures."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMainWindow,
    QMenu,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

# what the canvas does with the mouse and keys outside the menus (designer/canvas/view.py,
# scene.py): gestures, not actions, so they are listed here
GESTURES = (
    ("Wheel", "Zoom at the cursor"),
    ("Shift+Wheel", "Scroll"),
    ("Space+Drag, Middle drag", "Pan"),
    ("Drag from an output port to a card", "Connect"),
    ("Drop a layer on a connection", "Insert it there"),
    ("Drop a layer with one card selected", "Connect it after that card"),
    ("Esc", "Cancel a connection, clear the selection"),
)


def _clean(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").strip()


def menu_shortcuts(window: QMainWindow) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(menu title, [(action text, keys)])] for every menu action that has a shortcut."""
    out = []

    def walk(menu: QMenu, prefix: str, rows: list) -> None:
        for act in menu.actions():
            if act.menu() is not None:
                walk(act.menu(), f"{prefix}{_clean(act.text())} ▸ ", rows)
            elif isinstance(act, QAction) and act.shortcuts():
                keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                                 for k in act.shortcuts())
                rows.append((prefix + _clean(act.text()), keys))

    for top in window.menuBar().actions():
        if top.menu() is None:
            continue
        rows: list[tuple[str, str]] = []
        walk(top.menu(), "", rows)
        if rows:
            out.append((_clean(top.text()), rows))
    return out


class ShortcutSheet(QDialog):
    def __init__(self, window: QMainWindow, parent: QWidget | None = None):
        super().__init__(parent or window)
        self.setWindowTitle("Keyboard Shortcuts")
        self.resize(560, 620)
        lay = QVBoxLayout(self)
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Action", "Keys"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        groups = menu_shortcuts(window) + [("Canvas", [(b, a) for a, b in GESTURES])]
        for title, rows in groups:
            head = QTreeWidgetItem(self.tree, [title])
            f = head.font(0)
            f.setBold(True)
            head.setFont(0, f)
            head.setFirstColumnSpanned(True)
            for text, keys in rows:
                QTreeWidgetItem(self.tree, [f"   {text}", keys])
        lay.addWidget(self.tree)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        box.rejected.connect(self.reject)
        lay.addWidget(box)
