"""The layer palette: every registered layer type, grouped by family, searchable, draggable.

Everything shown comes from `engine.layers.REGISTRY` (label, category, doc, params): adding a
layer type to the registry adds it here. Dragging an entry carries its type_name under the MIME
type `LAYER_MIME`; double-click or Enter emits `layer_requested(type_name)`.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import (
    QEvent,
    QMimeData,
    QModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QDrag,
    QFont,
    QFontMetrics,
    QKeySequence,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
    QShortcut,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from engine.layers import CATEGORIES, REGISTRY

from .theme import family_color, is_dark, layer_icon, paint_layer_icon, theme_state

LAYER_MIME = "application/x-cnn-designer-layer"

TYPE_ROLE = Qt.ItemDataRole.UserRole + 1  # type_name of a layer entry (None for a family header)
SEARCH_ROLE = Qt.ItemDataRole.UserRole + 2  # lower-case text the search matches
CATEGORY_ROLE = Qt.ItemDataRole.UserRole + 3

# family headings as users read them (the registry's category names are the keys)
FAMILY_TITLES = {"Core": "Core", "Normalization": "Normalization", "Merge": "Merge"}


def tooltip_html(cls) -> str:
    """Rich tooltip of a layer type: label, type name, help text, its parameters."""
    params = ", ".join(escape(p.title) for p in cls.params)
    inputs = ""
    if cls.max_inputs is None:
        inputs = f"<br><i>Takes {cls.min_inputs} or more inputs.</i>"
    out = (f"<b>{escape(cls.label)}</b> &nbsp;<span style='color:gray'>{escape(cls.type_name)}"
           f"</span><br>{escape(cls.doc)}")
    if params:
        out += f"<br><i>Parameters:</i> {params}"
    return f"<p style='white-space:pre-wrap; max-width:320px'>{out}{inputs}</p>"


class LayerModel(QStandardItemModel):
    """Two levels: family headers, then layer types. Layer rows drag as LAYER_MIME."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.populate()

    def populate(self) -> None:
        self.clear()
        for category in CATEGORIES:
            types = [cls for cls in REGISTRY.values() if cls.category == category]
            if not types:
                continue
            head = QStandardItem(FAMILY_TITLES.get(category, category))
            head.setData(category, CATEGORY_ROLE)
            head.setData(None, TYPE_ROLE)
            head.setFlags(Qt.ItemFlag.ItemIsEnabled)
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            for cls in types:
                item = QStandardItem(cls.label)
                item.setData(cls.type_name, TYPE_ROLE)
                item.setData(category, CATEGORY_ROLE)
                item.setData(f"{cls.label} {cls.type_name} {cls.doc} {category}".lower(),
                             SEARCH_ROLE)
                item.setToolTip(tooltip_html(cls))
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                              | Qt.ItemFlag.ItemIsDragEnabled)
                head.appendRow(item)
            self.appendRow(head)
        self.refresh_icons()

    def refresh_icons(self) -> None:
        dark = is_dark()
        for r in range(self.rowCount()):
            head = self.item(r)
            for k in range(head.rowCount()):
                item = head.child(k)
                item.setIcon(layer_icon(item.data(TYPE_ROLE), dark))

    def mimeTypes(self):
        return [LAYER_MIME]

    def mimeData(self, indexes):
        types = [i.data(TYPE_ROLE) for i in indexes if i.isValid() and i.data(TYPE_ROLE)]
        if not types:
            return None
        mime = QMimeData()
        mime.setData(LAYER_MIME, types[0].encode("utf-8"))
        mime.setText(types[0])
        return mime

    def supportedDragActions(self):
        return Qt.DropAction.CopyAction


class _FilterModel(QSortFilterProxyModel):
    """Matches every word of the query against label, type name, help text and family."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.words: list[str] = []
        self.setRecursiveFilteringEnabled(True)

    def set_query(self, text: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9; invalidateFilter is deprecated
            self.beginFilterChange()
            self.words = text.lower().split()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.words = text.lower().split()
            self.invalidateFilter()

    def filterAcceptsRow(self, row, parent):
        if not self.words:
            return True
        index = self.sourceModel().index(row, 0, parent)
        hay = index.data(SEARCH_ROLE)
        if hay is None:  # a family header: shown when a child matches (recursive filtering)
            return False
        return all(w in hay for w in self.words)


class _LayerDelegate(QStyledItemDelegate):
    """Layer rows: icon, label, and the type name dimmed at the right. Headers: a family chip."""

    def sizeHint(self, option, index):
        size = super().sizeHint(option, index)
        return QSize(size.width(), max(size.height(), 26 if index.data(TYPE_ROLE) else 28))

    def paint(self, painter, option, index):
        type_name = index.data(TYPE_ROLE)
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        dark = is_dark(opt.palette)
        if type_name is None:  # family header: coloured dot + bold title
            painter.save()
            style = opt.widget.style() if opt.widget else None
            opt.text = ""
            if style:
                style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
            painter.setRenderHint(painter.RenderHint.Antialiasing)
            color = family_color(index.data(CATEGORY_ROLE), dark)
            r = opt.rect
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            cy = r.center().y() + 2
            painter.drawRoundedRect(r.left() + 2, cy - 4, 8, 8, 2, 2)
            font = QFont(opt.font)
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(opt.palette.color(QPalette.ColorRole.WindowText))
            painter.drawText(r.adjusted(16, 4, 0, 0),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             index.data(Qt.ItemDataRole.DisplayRole))
            painter.restore()
            return
        # layer row: default rendering of icon + label, then the dim type name on the right
        label = opt.text
        opt.text = ""
        style = opt.widget.style() if opt.widget else None
        if style:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        painter.save()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        text_rect = opt.rect.adjusted(opt.decorationSize.width() + 10, 0, -8, 0)
        main_color = opt.palette.color(QPalette.ColorRole.HighlightedText if selected
                                       else QPalette.ColorRole.Text)
        dim = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.PlaceholderText
        small = QFont(opt.font)
        small.setPointSizeF(max(opt.font.pointSizeF() - 1.5, 7.0))
        painter.setFont(small)
        type_w = painter.fontMetrics().horizontalAdvance(type_name)
        painter.setFont(opt.font)
        label_w = painter.fontMetrics().horizontalAdvance(label)
        painter.setFont(small)
        # the type name only where label and type name both fit whole
        show_type = type_name != label and text_rect.width() >= label_w + type_w + 12
        if show_type:
            painter.setPen(opt.palette.color(dim))
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                             type_name)
        painter.setFont(opt.font)
        painter.setPen(main_color)
        label_rect = QRect(text_rect)
        if show_type:
            label_rect.setRight(text_rect.right() - type_w - 8)
        elided = painter.fontMetrics().elidedText(label, Qt.TextElideMode.ElideRight,
                                                  label_rect.width())
        painter.drawText(label_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                         elided)
        painter.restore()


def drag_pixmap(type_name: str, dark: bool, ratio: float = 2.0) -> QPixmap:
    """A chip (family-coloured edge, icon, label) that follows the mouse while dragging."""
    cls = REGISTRY[type_name]
    font = QFont()
    font.setBold(True)
    w = QFontMetrics(font).horizontalAdvance(cls.label) + 52
    h = 30
    px = QPixmap(int(w * ratio), int(h * ratio))
    px.setDevicePixelRatio(ratio)
    px.fill(Qt.GlobalColor.transparent)
    p = QPainter(px)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = family_color(cls.category, dark)
    p.setPen(QPen(color, 1.5))
    p.setBrush(QColor("#2b2d31" if dark else "#ffffff"))
    p.drawRoundedRect(QRectF(0.75, 0.75, w - 1.5, h - 1.5), 6, 6)
    paint_layer_icon(p, QRectF(6, 5, 20, 20), type_name, dark)
    p.setFont(font)
    p.setPen(QColor("#e3e5e8" if dark else "#1d1f23"))
    p.drawText(QRectF(34, 0, w - 38, h), Qt.AlignmentFlag.AlignVCenter, cls.label)
    p.end()
    return px


class _PaletteTree(QTreeView):
    """Tree view whose drag shows a layer chip instead of a snapshot of the row."""

    def startDrag(self, actions):
        index = self.currentIndex()
        type_name = index.data(TYPE_ROLE) if index.isValid() else None
        if not type_name:
            return
        mime = self.model().mimeData([index])
        if mime is None:
            return
        drag = QDrag(self)
        drag.setMimeData(mime)
        px = drag_pixmap(type_name, is_dark(self.palette()))
        drag.setPixmap(px)
        drag.setHotSpot(QPoint(16, int(px.height() / px.devicePixelRatio() / 2)))
        drag.exec(Qt.DropAction.CopyAction)


class PalettePanel(QWidget):
    """Layer palette dock: search box on top, then the families with their layer types.

    Signals: layer_requested(type_name) on double-click / Enter (the window adds the layer).
    Drag a row onto the canvas: MIME LAYER_MIME carries the type_name (UTF-8).
    """

    layer_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("PalettePanel")
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search layers  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.setObjectName("paletteSearch")
        self.model = LayerModel(self)
        self.proxy = _FilterModel(self)
        self.proxy.setSourceModel(self.model)
        self.view = _PaletteTree(self)
        self.view.setObjectName("paletteTree")
        self.view.setModel(self.proxy)
        self.view.setHeaderHidden(True)
        self.view.setRootIsDecorated(False)
        self.view.setIndentation(10)
        self.view.setIconSize(QSize(20, 20))
        self.view.setUniformRowHeights(False)
        self.view.setAnimated(True)
        self.view.setItemDelegate(_LayerDelegate(self.view))
        self.view.setDragEnabled(True)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.view.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setMouseTracking(True)
        self.view.expandAll()
        self.view.doubleClicked.connect(self._request)
        self.view.installEventFilter(self)
        self.search.textChanged.connect(self._filter)
        self.search.returnPressed.connect(self._request_first)
        QShortcut(QKeySequence(Qt.Key.Key_Down), self.search, activated=self._focus_list,
                  context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self.search, activated=self.search.clear,
                  context=Qt.ShortcutContext.WidgetShortcut)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addWidget(self.search)
        layout.addWidget(self.view, 1)
        theme_state().changed.connect(self._on_theme_changed)

    def _on_theme_changed(self, _dark: bool) -> None:
        self.model.refresh_icons()

    # ---- queries used by tests and the main window ----------------------------------------

    def visible_types(self) -> list[str]:
        """Layer type names currently shown (after filtering), top to bottom."""
        out = []
        for r in range(self.proxy.rowCount()):
            head = self.proxy.index(r, 0)
            for k in range(self.proxy.rowCount(head)):
                out.append(self.proxy.index(k, 0, head).data(TYPE_ROLE))
        return out

    def visible_families(self) -> list[str]:
        return [self.proxy.index(r, 0).data(CATEGORY_ROLE) for r in range(self.proxy.rowCount())]

    def index_of(self, type_name: str) -> QModelIndex:
        """Proxy index of a type's row (invalid if filtered out)."""
        for r in range(self.proxy.rowCount()):
            head = self.proxy.index(r, 0)
            for k in range(self.proxy.rowCount(head)):
                idx = self.proxy.index(k, 0, head)
                if idx.data(TYPE_ROLE) == type_name:
                    return idx
        return QModelIndex()

    def mime_for(self, type_name: str) -> QMimeData | None:
        """The drag payload of a type's row, as a drag would carry it."""
        idx = self.index_of(type_name)
        return self.proxy.mimeData([idx]) if idx.isValid() else None

    # ---- slots -----------------------------------------------------------------------------

    def _filter(self, text: str) -> None:
        self.proxy.set_query(text)
        self.view.expandAll()
        types = self.visible_types()
        if text and types:
            self.view.setCurrentIndex(self.index_of(types[0]))

    def _focus_list(self) -> None:
        types = self.visible_types()
        if types:
            self.view.setFocus()
            self.view.setCurrentIndex(self.index_of(types[0]))

    def _request(self, index: QModelIndex) -> None:
        t = index.data(TYPE_ROLE)
        if t:
            self.layer_requested.emit(t)

    def eventFilter(self, obj, event):
        # Enter / Return on a layer row adds it (double-click is the mouse way); not `activated`,
        # which some styles fire on a single click and would add a layer on every click
        if (obj is self.view and event.type() == QEvent.Type.KeyPress
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)):
            self._request(self.view.currentIndex())
            return True
        return super().eventFilter(obj, event)

    def _request_first(self) -> None:
        """Enter in the search box adds the highlighted (else the first) match."""
        idx = self.view.currentIndex()
        if not (idx.isValid() and idx.data(TYPE_ROLE)):
            types = self.visible_types()
            if not types:
                return
            idx = self.index_of(types[0])
        self._request(idx)


__all__ = ["LAYER_MIME", "TYPE_ROLE", "LayerModel", "PalettePanel", "tooltip_html"]
