"""The start page shown when the app opens with no file (Help ▸ Start Page… later): a blank
network, a guided first net, the templates and examples with a layer-strip preview and their
parameter counts, the recent files, Open, Open an ONNX model and New from Pretrained.

The page only picks: `choice` says what was picked and `run_choice` hands it to the file
controller (the one that opens things), so the page never edits a document itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.graph import Graph
from engine.layers import REGISTRY
from engine.summary import human_count
from engine.validate import validate
from engine.zoo.examples import EXAMPLES, load_example
from engine.zoo.templates import TEMPLATES, make_template

from . import theme
from .canvas.items import fmt_count

THUMB = QSize(172, 46)  # a preview: one bar per layer, left to right
CHOICE_ROLE = Qt.ItemDataRole.UserRole
# layers that only reshape or rescale values: left out of the strip (a bar each would drown
# DenseNet's 200 convolutions in ReLUs and batch norms)
QUIET = {"ReLU", "BatchNorm2d", "Dropout", "Identity", "LeakyReLU", "ReLU6", "HardSwish",
         "SiLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Flatten"}


@dataclass(frozen=True)
class Choice:
    """What the user picked: kind is one of blank, guided, template, example, recent, open,
    onnx, pretrained; `arg` the template key, example name or path."""

    kind: str
    arg: str = ""


@dataclass(frozen=True)
class Preview:
    """A network's picture and figures for a start-page card."""

    pixmap: QPixmap
    params: int
    layers: int
    input_text: str


def layer_strip(graph: Graph, dark: bool = False, size: QSize = THUMB,
                ratio: float = 2.0) -> QPixmap:
    """A compact drawing of `graph`: its layers in order as bars coloured by family, each as
    tall as its output's side (log scale), so a CNN's funnel (big maps, then small, then the
    classifier) reads at a glance. Pure drawing from validation's shapes."""
    v = validate(graph)
    order = [nid for nid in graph.topological_order()
             if graph.nodes[nid].type_name not in QUIET] or list(graph.nodes)
    pm = QPixmap(int(size.width() * ratio), int(size.height() * ratio))
    pm.setDevicePixelRatio(ratio)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    w, h = size.width(), size.height()
    n = max(1, len(order))
    pitch = w / n
    bar = max(1.0, min(14.0, pitch * 0.72))
    sides = []
    for nid in order:
        r = v.nodes.get(nid)
        shape = r.out_shape if r is not None else None
        side = shape[-1] if shape is not None and len(shape) == 3 else 1
        sides.append(max(1, int(side)))
    top = math.log2(max(sides) + 1) or 1.0
    for k, (nid, side) in enumerate(zip(order, sides)):
        cls = REGISTRY.get(graph.nodes[nid].type_name)
        colour = theme.family_color(cls.category if cls else "", dark)
        frac = 0.22 + 0.78 * math.log2(side + 1) / top
        bh = (h - 6) * frac
        x = k * pitch + (pitch - bar) / 2
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(colour)
        p.drawRoundedRect(QRectF(x, (h - bh) / 2, bar, bh), min(2.0, bar / 3), min(2.0, bar / 3))
    p.end()
    return pm


_CACHE: dict[tuple[str, str, bool], Preview] = {}


def preview(kind: str, key: str, dark: bool = False) -> Preview:
    """The preview of template or example `key` (built and validated once per session)."""
    k = (kind, key, dark)
    if k not in _CACHE:
        graph = make_template(key).graph if kind == "template" else load_example(key)
        v = validate(graph)
        inp = next((v.nodes[n.id].out_shape for n in graph.nodes.values()
                    if n.type_name == "Input" and v.nodes[n.id].out_shape), None)
        text = "×".join(str(d) for d in inp) if inp else "?"
        _CACHE[k] = Preview(layer_strip(graph, dark), v.total_params, len(graph.nodes), text)
    return _CACHE[k]


class CardList(QListWidget):
    """A wrapping grid of cards (preview above, title and figures below)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setWrapping(True)
        self.setIconSize(THUMB)
        self.setGridSize(QSize(THUMB.width() + 22, THUMB.height() + 48))
        self.setSpacing(0)
        self.setWordWrap(True)
        self.setUniformItemSizes(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setStyleSheet("QListWidget { background: transparent; }"
                           "QListWidget::item { border-radius: 6px; padding: 4px; }")


class StartPage(QDialog):
    """Pick how to start; `choice` holds the pick after `accept()` (None when closed)."""

    chosen = Signal(object)  # the Choice

    def __init__(self, recent: list[Path] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Start — CNN Designer")
        self.setObjectName("start_page")
        self.choice: Choice | None = None
        self.dark = theme.is_dark(self.palette())
        self.resize(1120, 700)
        root = QHBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)
        root.addWidget(self._side(recent or []))
        main = QWidget(self)
        lay = QVBoxLayout(main)
        lay.setContentsMargins(22, 18, 22, 14)
        lay.setSpacing(6)
        lay.addWidget(self._heading("Examples"))
        lay.addWidget(self._note("Small networks that train in minutes on the built-in MNIST "
                                 "or your images — each bar a layer, as tall as its feature "
                                 "maps"))
        self.examples = CardList(main)
        self.examples.setFixedHeight(self.examples.gridSize().height() + 8)
        lay.addWidget(self.examples)
        lay.addSpacing(6)
        lay.addWidget(self._heading("Templates"))
        lay.addWidget(self._note("Classic architectures, exact to torchvision"))
        self.templates = CardList(main)
        lay.addWidget(self.templates, 1)
        root.addWidget(main, 1)
        self._pending: list[tuple[QListWidgetItem, str, str]] = []
        for kind, lst, entries in (
                ("example", self.examples, [(e.name, e.title, e.description) for e in EXAMPLES]),
                ("template", self.templates,
                 [(k, t.title, t.description) for k, t in TEMPLATES.items()])):
            for key, title, desc in entries:
                item = QListWidgetItem(title.split(" (")[0], lst)
                item.setData(CHOICE_ROLE, Choice(kind, key))
                item.setToolTip(f"<b>{title}</b><br>{desc}")
                item.setSizeHint(lst.gridSize() - QSize(8, 8))
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
                self._pending.append((item, kind, key))
            lst.itemActivated.connect(self._on_item)
            lst.itemClicked.connect(self._on_item)
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._fill_next)
        self._timer.start()  # previews one per event-loop turn: the page opens at once

    # ---- building ----------------------------------------------------------------------------

    def _heading(self, text: str) -> QLabel:
        lbl = QLabel(text)
        f = lbl.font()
        f.setPointSizeF(f.pointSizeF() * 1.25)
        f.setWeight(QFont.Weight.DemiBold)
        lbl.setFont(f)
        return lbl

    def _note(self, text: str) -> QLabel:
        lbl = QLabel(text)
        lbl.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        lbl.setWordWrap(True)
        return lbl

    def _side(self, recent: list[Path]) -> QWidget:
        side = QFrame(self)
        side.setObjectName("start_side")
        side.setFixedWidth(260)
        side.setAutoFillBackground(True)
        pal = side.palette()
        pal.setColor(QPalette.ColorRole.Window, pal.color(QPalette.ColorRole.AlternateBase))
        side.setPalette(pal)
        lay = QVBoxLayout(side)
        lay.setContentsMargins(18, 18, 18, 14)
        lay.setSpacing(6)
        title = QLabel("CNN Designer")
        f = title.font()
        f.setPointSizeF(f.pointSizeF() * 1.7)
        f.setWeight(QFont.Weight.Bold)
        title.setFont(f)
        lay.addWidget(title)
        lay.addWidget(self._note("Design, train and export convolutional networks"))
        lay.addSpacing(10)
        self.buttons: dict[str, QPushButton] = {}
        for kind, text, tip in (
                ("blank", "Blank network", "An empty canvas with an image input"),
                ("guided", "Build your first network…",
                 "Six guided steps to a small CNN: Input, Conv, ReLU, Pool, Flatten, Linear"),
                ("open", "Open…", "A project (.cnnd), an architecture (.json) or an ONNX model"),
                ("onnx", "Open an ONNX model…",
                 "Import an .onnx file: its layers, weights and a check against ONNX Runtime"),
                ("pretrained", "New from Pretrained…",
                 "A classic architecture with torchvision's ImageNet weights (downloaded once)")):
            b = QPushButton(text, side)
            b.setToolTip(tip)
            b.setMinimumHeight(32)
            b.setStyleSheet("text-align: left; padding: 4px 12px;")
            b.clicked.connect(lambda _=False, k=kind: self.pick(Choice(k)))
            lay.addWidget(b)
            self.buttons[kind] = b
        self.buttons["blank"].setDefault(True)
        lay.addSpacing(14)
        lay.addWidget(self._heading("Recent"))
        self.recent = QListWidget(side)
        self.recent.setFrameShape(QFrame.Shape.NoFrame)
        self.recent.setStyleSheet("QListWidget { background: transparent; }"
                                  "QListWidget::item { padding: 3px 2px; }")
        for path in recent:
            item = QListWidgetItem(path.name, self.recent)
            item.setToolTip(str(path))
            item.setData(CHOICE_ROLE, Choice("recent", str(path)))
        if not recent:
            item = QListWidgetItem("No recent files yet", self.recent)
            item.setFlags(Qt.ItemFlag.NoItemFlags)
        self.recent.itemActivated.connect(self._on_item)
        self.recent.itemClicked.connect(self._on_item)
        lay.addWidget(self.recent, 1)
        hint = self._note("Reopen this page from Help ▸ Start Page")
        lay.addWidget(hint)
        return side

    def _fill_next(self) -> None:
        if not self._pending:
            self._timer.stop()
            return
        item, kind, key = self._pending.pop(0)
        try:
            pv = preview(kind, key, self.dark)
        except (ValueError, KeyError, OSError):  # a broken example file: the card says so
            item.setText(item.text() + "\n(cannot be read)")
            return
        item.setIcon(pv.pixmap)
        item.setText(f"{item.text()}\n{fmt_count(pv.params)} params · {pv.input_text}")
        item.setToolTip(item.toolTip() + f"<br>{pv.params:,} parameters "
                        f"({human_count(pv.params)}), {pv.layers} layers, input {pv.input_text}")

    def fill_all(self) -> None:
        """Every preview now (tests and screenshots)."""
        while self._pending:
            self._fill_next()
        self._timer.stop()

    # ---- picking ------------------------------------------------------------------------------

    def _on_item(self, item: QListWidgetItem) -> None:
        choice = item.data(CHOICE_ROLE)
        if isinstance(choice, Choice):
            self.pick(choice)

    def pick(self, choice: Choice) -> None:
        self.choice = choice
        self._timer.stop()
        self.chosen.emit(choice)
        self.accept()


def run_choice(window, choice: Choice) -> bool:
    """Carry out a start-page pick in `window` (a MainWindow); False when nothing opened."""
    fc = window.file_controller
    if choice.kind == "blank":
        fc.new_file()
    elif choice.kind == "guided":
        from .guide import start_guide

        start_guide(window)
    elif choice.kind == "template":
        return fc.load_template(choice.arg)
    elif choice.kind == "example":
        fc.open_example(choice.arg)
    elif choice.kind == "recent":
        return fc.open_path(choice.arg)
    elif choice.kind == "open":
        fc.open_dialog()
    elif choice.kind == "onnx":
        fc.import_onnx_dialog()
    elif choice.kind == "pretrained":
        return fc.new_from_pretrained()
    else:
        return False
    return True


def show_start_page(window) -> Choice | None:
    """The start page over `window`; runs the pick and returns it (None when closed)."""
    page = StartPage(window.file_controller.recent.paths(), window)
    try:
        if page.exec() != QDialog.DialogCode.Accepted or page.choice is None:
            return None
        run_choice(window, page.choice)
        return page.choice
    finally:
        page.deleteLater()

