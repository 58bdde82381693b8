"""Copy and paste of layers through the system clipboard (works between windows and apps).

Copy writes our own MIME type with a JSON fragment (nodes + the edges among them) and the same
JSON as plain text; paste reads ours first, then text. Parsing and refusal of garbage happen in
PasteCommand (designer/commands.py), so a bad clipboard changes nothing.
"""

from __future__ import annotations

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
    return len(ids)


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
