"""File > New from Template: pick a classic architecture (engine.zoo.templates) and a class count.

The list shows each template's title with its parameter count, layer count and input shape;
the right side describes the selected one. Counts come from building the template and
validating it (2-35 ms each), filled in one per event-loop turn so the dialog opens at once,
and cached for the session.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QFont, QFontMetrics, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QStyle,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from engine.layers import fmt_shape
from engine.summary import human_count
from engine.validate import validate
from engine.zoo.templates import TEMPLATES, Template, make_template

from .canvas.items import fmt_count

KEY_ROLE = Qt.ItemDataRole.UserRole
DETAIL_ROLE = int(Qt.ItemDataRole.UserRole) + 1  # "11.7M params · 70 layers · 3×224×224"
MAX_CLASSES = 100_000

# (template key, classes) -> (total params, trainable params, layers, blocks, MACs)
_STATS: dict[tuple[str, int], tuple[int, int, int, int, int]] = {}


def default_classes(key: str) -> int:
    """The architecture's own class count (10 for LeNet-5, 1000 for the ImageNet nets)."""
    return 10 if key == "lenet5" else 1000


def template_stats(key: str, classes: int) -> tuple[int, int, int, int, int]:
    """(total params, trainable params, layers, blocks, MACs) of template `key` with `classes`
    outputs, from validating the built graph (cached)."""
    k = (key, int(classes))
    if k not in _STATS:
        t = make_template(key, int(classes))
        v = validate(t.graph)
        _STATS[k] = (v.total_params, v.trainable_params, len(t.graph.nodes), len(t.blocks),
                     v.macs)
    return _STATS[k]


class _ItemDelegate(QStyledItemDelegate):
    """Two lines per template: the title (bold) and its figures (muted)."""

    def sizeHint(self, option, index) -> QSize:
        fm = QFontMetrics(option.font)
        return QSize(240, int(fm.height() * 2 + 18))

    def paint(self, painter, option, index) -> None:
        painter.save()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        pal = option.palette
        if selected:
            painter.fillRect(option.rect, pal.color(QPalette.ColorRole.Highlight))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            c = pal.color(QPalette.ColorRole.Highlight)
            c.setAlpha(40)
            painter.fillRect(option.rect, c)
        r = QRectF(option.rect).adjusted(12, 7, -10, -7)
        fm = QFontMetrics(option.font)
        title_font = QFont(option.font)
        title_font.setBold(True)
        ink = pal.color(QPalette.ColorRole.HighlightedText if selected
                        else QPalette.ColorRole.Text)
        painter.setFont(title_font)
        painter.setPen(ink)
        painter.drawText(QRectF(r.left(), r.top(), r.width(), fm.height() + 2),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         index.data(Qt.ItemDataRole.DisplayRole))
        detail = index.data(DETAIL_ROLE) or "…"
        muted = pal.color(QPalette.ColorRole.HighlightedText if selected
                          else QPalette.ColorRole.PlaceholderText)
        painter.setFont(option.font)
        painter.setPen(muted)
        painter.drawText(QRectF(r.left(), r.top() + fm.height() + 3, r.width(), fm.height() + 2),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         fm.elidedText(detail, Qt.TextElideMode.ElideRight, int(r.width())))
        painter.restore()


class TemplateDialog(QDialog):
    """Choose a template and the number of classes; `template()` builds the choice."""

    def __init__(self, parent: QWidget | None = None, key: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("New from Template")
        self.setModal(True)
        self.resize(860, 560)
        self._classes_touched = False

        self.list = QListWidget()
        self.list.setItemDelegate(_ItemDelegate(self.list))
        self.list.setMouseTracking(True)
        self.list.setUniformItemSizes(True)
        self.list.setMinimumWidth(300)
        self.list.setAccessibleName("Templates")
        for k, info in TEMPLATES.items():
            item = QListWidgetItem(info.title)
            item.setData(KEY_ROLE, k)
            item.setToolTip(info.description)
            self.list.addItem(item)

        self.title = QLabel()
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.6)
        f.setBold(True)
        self.title.setFont(f)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.description.setMinimumHeight(48)
        self.reference = QLabel()
        self.reference.setStyleSheet("color: palette(placeholder-text);")

        self.classes = QSpinBox()
        self.classes.setRange(1, MAX_CLASSES)
        self.classes.setAccelerated(True)
        self.classes.setMaximumWidth(160)
        self.classes.setToolTip("Outputs of the classifier: one per class of your data")
        self.classes.setAccessibleName("Number of classes")
        self.classes.valueChanged.connect(self._on_classes)
        self.input_shape = QLabel()
        self.params = QLabel()
        self.layers = QLabel()
        self.blocks = QLabel()
        self.macs = QLabel()
        for lab in (self.input_shape, self.params, self.layers, self.blocks, self.macs):
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(9)
        form.addRow("Number of &classes:", self.classes)
        form.addRow("Input:", self.input_shape)
        form.addRow("Parameters:", self.params)
        form.addRow("Layers:", self.layers)
        form.addRow("Blocks:", self.blocks)
        form.addRow("Multiply-adds:", self.macs)
        for row in range(form.rowCount()):
            lab = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if lab is not None and lab.widget() is not None:
                lab.widget().setStyleSheet("color: palette(placeholder-text);")

        right = QVBoxLayout()
        right.setContentsMargins(18, 6, 6, 6)
        right.setSpacing(10)
        right.addWidget(self.title)
        right.addWidget(self.description)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        right.addWidget(line)
        right.addLayout(form)
        right.addStretch(1)
        hint = QLabel("Blocks (residual blocks, dense blocks, inception modules) can be collapsed "
                      "on the canvas: right-click a layer, or View ▸ Collapse All Blocks.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: palette(placeholder-text);")
        right.addWidget(hint)
        right.addWidget(self.reference)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Create")
        self.ok.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        body = QHBoxLayout()
        body.addWidget(self.list, 0)
        body.addLayout(right, 1)
        outer = QVBoxLayout(self)
        outer.addLayout(body, 1)
        outer.addWidget(self.buttons)

        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemActivated.connect(lambda _: self.accept())
        QShortcut(QKeySequence("Ctrl+Return"), self, self.accept)
        start = next((i for i in range(self.list.count())
                      if self.list.item(i).data(KEY_ROLE) == key), 0)
        self.list.setCurrentRow(start)
        self.list.setFocus()
        # figures for the list, one template per event-loop turn
        self._pending = list(range(self.list.count()))
        self._filler = QTimer(self)
        self._filler.setInterval(0)
        self._filler.timeout.connect(self._fill_next)
        self._filler.start()

    # ---- state ------------------------------------------------------------------------------

    def key(self) -> str:
        item = self.list.currentItem()
        return item.data(KEY_ROLE) if item is not None else next(iter(TEMPLATES))

    def num_classes(self) -> int:
        return int(self.classes.value())

    def set_choice(self, key: str, classes: int | None = None) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(KEY_ROLE) == key:
                self.list.setCurrentRow(i)
                break
        if classes is not None:
            self.classes.setValue(int(classes))

    def template(self) -> Template:
        """The chosen template, built with the chosen class count."""
        return make_template(self.key(), self.num_classes())

    # ---- reactions --------------------------------------------------------------------------

    def _fill_next(self) -> None:
        if not self._pending:
            self._filler.stop()
            return
        row = self._pending.pop(0)
        item = self.list.item(row)
        k = item.data(KEY_ROLE)
        total, _, layers, _, _ = template_stats(k, default_classes(k))
        info = TEMPLATES[k]
        item.setData(DETAIL_ROLE, f"{fmt_count(total)} params · {layers} layers · "
                                  f"{fmt_shape(info.input_shape)}")

    def _on_current(self, item, _previous=None) -> None:
        if item is None:
            return
        k = item.data(KEY_ROLE)
        info = TEMPLATES[k]
        self.title.setText(info.title)
        self.description.setText(info.description)
        self.reference.setText(f"Reference: {info.reference}" if info.reference else "")
        self.input_shape.setText(fmt_shape(info.input_shape) + " (C×H×W)")
        if not self._classes_touched:
            self.classes.blockSignals(True)
            self.classes.setValue(default_classes(k))
            self.classes.blockSignals(False)
        self._show_figures()

    def _on_classes(self, _value) -> None:
        self._classes_touched = True
        self._show_figures()

    def _show_figures(self) -> None:
        total, trainable, layers, blocks, macs = template_stats(self.key(), self.num_classes())
        self.params.setText(f"<b>{total:,}</b>"
                            + (f" ({trainable:,} trainable)" if trainable != total else ""))
        self.layers.setText(f"{layers}")
        self.blocks.setText(f"{blocks}" if blocks else "none")
        self.macs.setText(human_count(macs))  # as the status bar and the summary say it
        self.macs.setToolTip(f"{macs:,} multiply-accumulates per image")
