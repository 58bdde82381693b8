"""Copy and paste of layers through the system clipboard (works between windows and apps).

Copy writes our own MIME type with a JSON fragment (nodes + the edges among them) and the same
JSON as plain text; paste reads ours first, then text. Parsing and refusal of garbage happen in
PasteCommand (designer/commands.py), so a bad clipboard changes nothing.
"""

from __future__ import annotations

import atexit

import shiboken6
from PySide6.QtCore import QMimeData
from PySide6.QtGui import QGuiApplication

from engine.graph import Graph

from .commands import make_fragment

FRAGMENT_MIME = "application/x-cnn-designer-graph"


def copy_nodes(graph: Graph, node_ids) -> int:
    """Put the nodes on the clipboard; returns how many were copied."""
    ids = [i for i in node_ids if i in graph.nodes]
    if not ids:
        return 0
    text = make_fragment(graph, ids)
    data = QMimeData()
    data.setData(FRAGMENT_MIME, text.encode("utf-8"))
    data.setText(text)
    QGuiApplication.clipboard().setMimeData(data)
    _release_at_exit()
    return len(ids)


_registered = False


def _release_at_exit() -> None:
    """A QMimeData made in Python and still on the clipboard when the interpreter ends crashes
    the process (PySide6 6.12, segfault at exit). Before that, swap it for Qt's own text copy
    (the JSON stays on the clipboard, and our paste reads text too)."""
    global _registered
    if not _registered:
        _registered = True
        atexit.register(release_clipboard)


def release_clipboard() -> None:
    app = QGuiApplication.instance()
    if app is None:
        return
    cb = QGuiApplication.clipboard()
    data = cb.mimeData()
    if data is None or not shiboken6.createdByPython(data):
        return  # Qt's own (or another application's) data is safe: not ours to touch
    if data.hasText():
        cb.setText(data.text())
    else:
        cb.clear()


def clipboard_fragment() -> bytes | str | None:
    """What the clipboard holds for a paste: our fragment, else its text, else None."""
    data = QGuiApplication.clipboard().mimeData()
    if data is None:
        return None
    if data.hasFormat(FRAGMENT_MIME):
        return bytes(data.data(FRAGMENT_MIME))
    if data.hasText():
        return data.text()
    return None
