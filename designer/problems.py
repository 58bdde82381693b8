"""The problems list: every error and warning of the current validation, with one-click fixes.

A click on a problem emits `node_activated(node_id)` (the window selects and shows the layer);
a problem with quick fixes shows a "Fix: …" button per fix, each pushing `ApplyFixCommand`
(undoable).
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from engine.messages import ERROR, Message

from .commands import ApplyFixCommand
from .theme import FlowBody, is_dark, severity_color, severity_icon, theme_state


def fix_buttons(message: Message, on_fix, parent: QWidget, undo_hint: str) -> list[QPushButton]:
    """A "Fix: …" button per alternative fix of `message`; a click calls on_fix(fix).
    Shared by the Problems panel and the Inspector."""
    out = []
    for fix in message.fixes:
        b = QPushButton(f"Fix: {fix.label}", parent)
        b.setToolTip(f"{fix.label}\n(apply this repair; {undo_hint})")
        b.setMinimumWidth(80)  # a long label clips instead of widening the dock
        b.setStyleSheet("QPushButton { text-align: left; padding: 3px 10px; }")
        b.setCursor(Qt.CursorShape.PointingHandCursor)
        b.clicked.connect(lambda _=False, f=fix: on_fix(f))
        out.append(b)
    return out


def count_text(n_errors: int, n_warnings: int) -> str:
    """'2 errors, 1 warning' / '1 error' / 'No problems'."""
    parts = []
    if n_errors:
        parts.append(f"{n_errors} error{'s' * (n_errors != 1)}")
    if n_warnings:
        parts.append(f"{n_warnings} warning{'s' * (n_warnings != 1)}")
    return ", ".join(parts) if parts else "No problems"


class ProblemRow(QFrame):
    """One message: severity icon, layer name, text, optional fix button. Click: activate."""

    clicked = Signal(object)  # the Message
    fix_requested = Signal(object)

    def __init__(self, message: Message, layer_name: str | None, dark: bool, parent=None):
        super().__init__(parent)
        self.message = message
        self.setObjectName("problemRow")
        self.setCursor(Qt.CursorShape.PointingHandCursor if message.node_id else
                       Qt.CursorShape.ArrowCursor)
        color = severity_color(message.severity, dark)
        hover = QColor(color)
        hover.setAlpha(30)
        self.setStyleSheet(
            f"#problemRow {{ border-left: 3px solid {color.name()}; border-radius: 0px;"
            f" background: transparent; }}"
            f"#problemRow:hover {{ background: rgba({hover.red()},{hover.green()},"
            f"{hover.blue()},{hover.alpha()}); }}")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(8)
        icon = QLabel(self)
        icon.setPixmap(severity_icon(message.severity, dark).pixmap(16, 16))
        lay.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        col = QVBoxLayout()
        col.setSpacing(3)
        title = QLabel(f"<b>{escape(layer_name or 'Network')}</b>", self)
        self.text = QLabel(message.text, self)
        self.text.setWordWrap(True)
        col.addWidget(title)
        col.addWidget(self.text)
        # one button per alternative fix, the preferred one first (`fix_button`)
        self.fix_buttons = fix_buttons(message, lambda fix: self.fix_requested.emit(
            (self.message, fix)), self, "Ctrl+Z undoes it")
        self.fix_button: QPushButton | None = self.fix_buttons[0] if self.fix_buttons else None
        for b in self.fix_buttons:
            row = QHBoxLayout()
            row.setContentsMargins(0, 2, 0, 0)
            row.addWidget(b)
            row.addStretch(1)
            col.addLayout(row)
        lay.addLayout(col, 1)

    def mousePressEvent(self, event):
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.message)
        super().mousePressEvent(event)


class ProblemsPanel(QWidget):
    """Problems dock: a count header, then one row per message (errors first).

    Signals: node_activated(str node_id) when a problem about a layer is clicked.
    """

    node_activated = Signal(str)

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ProblemsPanel")
        self.doc = doc
        self.rows: list[ProblemRow] = []
        self._key = None

        self.header = QLabel(self)
        f = self.header.font()
        f.setBold(True)
        self.header.setFont(f)
        self.header_icon = QLabel(self)
        head = QHBoxLayout()
        head.setContentsMargins(8, 6, 8, 6)
        head.setSpacing(6)
        head.addWidget(self.header_icon)
        head.addWidget(self.header, 1)

        self.list = FlowBody()
        self.list.setObjectName("problemsList")
        self.list_layout = QVBoxLayout(self.list)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(1)
        self.list_layout.addStretch(1)
        self.empty = QLabel("The network is valid: every layer's shape checks out.", self.list)
        self.empty.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setContentsMargins(12, 16, 12, 16)
        self.list_layout.insertWidget(0, self.empty)

        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.list)

        rule = QFrame(self)
        rule.setFrameShape(QFrame.Shape.HLine)
        rule.setFrameShadow(QFrame.Shadow.Plain)
        rule.setForegroundRole(QPalette.ColorRole.Mid)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(head)
        lay.addWidget(rule)
        lay.addWidget(self.scroll, 1)

        doc.validated.connect(self._on_validated)
        doc.graph_reset.connect(self.refresh)
        theme_state().changed.connect(self._on_theme_changed)
        self.refresh()

    def messages(self) -> list[Message]:
        """The messages shown, in display order (errors first)."""
        return [r.message for r in self.rows]

    def _on_validated(self, _validation) -> None:
        self.refresh()

    def _on_theme_changed(self, _dark: bool) -> None:
        self._key = None
        self.refresh()

    def refresh(self) -> None:
        v = self.doc.validation
        msgs = sorted(v.messages, key=lambda m: m.severity != ERROR)
        names = {nid: n.name for nid, n in self.doc.graph.nodes.items()}
        dark = is_dark(self.palette())
        key = ([(m.severity, m.text, m.node_id, m.fixes) for m in msgs],
               [names.get(m.node_id) for m in msgs], dark)
        n_err = sum(m.severity == ERROR for m in msgs)
        n_warn = len(msgs) - n_err
        self.header.setText(count_text(n_err, n_warn))
        sev = "error" if n_err else "warning" if n_warn else None
        if sev:
            self.header_icon.setPixmap(severity_icon(sev, dark).pixmap(16, 16))
            self.header_icon.setVisible(True)
        else:
            self.header_icon.setVisible(False)
        if key == self._key:
            return
        self._key = key
        for r in self.rows:
            self.list_layout.removeWidget(r)
            r.hide()
            r.deleteLater()
        self.rows = []
        for k, m in enumerate(msgs):
            row = ProblemRow(m, names.get(m.node_id), dark, self.list)
            row.clicked.connect(self._row_clicked)
            row.fix_requested.connect(lambda pair: self.apply_fix(*pair))
            self.list_layout.insertWidget(k, row)
            self.rows.append(row)
        self.empty.setVisible(not msgs)
        self.list.fit()

    def apply_fix(self, message: Message, fix=None) -> bool:
        """Push one of the message's fixes (its preferred one by default) as one undoable
        command; False if refused."""
        return self.doc.push(ApplyFixCommand(self.doc, message, fix))

    def _row_clicked(self, message: Message) -> None:
        if message.node_id and message.node_id in self.doc.graph.nodes:
            self.node_activated.emit(message.node_id)


__all__ = ["ProblemRow", "ProblemsPanel", "count_text", "fix_buttons"]
