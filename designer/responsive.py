"""A panel that re-lays itself out for the room it has (narrow side dock, wide bottom dock)."""

from __future__ import annotations

from PySide6.QtCore import QEvent


class FitsItsRoom:
    """Mixin for a QWidget subclass defining `_fit_orientation()`: called whenever the panel or
    its parent (a scroll area's viewport, whose size is the real room) is resized or shown.
    List it before QWidget: `class Panel(FitsItsRoom, QWidget)`."""

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._fit_orientation()

    def showEvent(self, event):
        super().showEvent(event)
        parent = self.parentWidget()
        if parent is not None and not getattr(self, "_watching_parent", False):
            parent.installEventFilter(self)
            self._watching_parent = True
        self._fit_orientation()

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Resize:
            self._fit_orientation()
        return False

    def _fit_orientation(self) -> None:
        raise NotImplementedError
