"""Feature-map inspector: what each layer sees in one image, a conv layer's filters, and the
hand-set kernel lesson (input -> convolution -> ReLU -> max pooling, side by side).

The grid is a GraphicsLayoutWidget of aspect-locked ViewBoxes whose ImageItems are reused with
setImage; the network runs off the GUI thread when it is big. The image arithmetic (fitting a
picture to the Input, statistics, colour levels, mosaics) is Qt-free, in designer/map_images.py.
"""

from __future__ import annotations

import functools
import html
import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.nn.network import Network
from engine.onnx.layer_outputs import layer_outputs
from engine.predict import class_names, probabilities, top_k
from engine.zoo import lesson_kernels

from .drawing_pad import DrawingPad, InputPreview
from .map_images import (
    as_maps,
    fit_image,
    grid_columns,
    is_flat,
    map_levels,
    map_stats,
)
from .responsive import FitsItsRoom
from .theme import severity_hex
from .workers import FunctionWorker, start_worker, stop_thread

MAX_MAPS = 256  # maps shown at once; more would be unreadable anyway
BIG_NET_MACS = 30_000_000  # above this, the forward pass runs in a worker thread
MAP_CMAP = "viridis"
DIVERGING_CMAP = "CET-D1"  # blue - white - red, centred on zero
GREY_CMAP = "CET-L1"


# ---- Qt images and colour maps ---------------------------------------------------------


def to_qimage(img: np.ndarray) -> QImage:
    """(H, W) or (C, H, W) with C in (1, 3), float in [0, 1] -> a QImage owning its pixels."""
    a = np.asarray(img, np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    u8 = np.ascontiguousarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
    if u8.ndim == 2:
        h, w = u8.shape
        return QImage(u8.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    rgb = np.ascontiguousarray(u8[:3].transpose(1, 2, 0))
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@functools.lru_cache(maxsize=16)
def lookup_table(cmap_name: str, alpha: bool = False) -> np.ndarray:
    """The 256-entry lookup table of a pyqtgraph colour map (read from its file once)."""
    return pg.colormap.get(cmap_name).getLookupTable(0.0, 1.0, 256, alpha=alpha)


def image_view(parent: QWidget | None = None) -> tuple[pg.GraphicsLayoutWidget, pg.ViewBox,
                                                        pg.ImageItem]:
    """A borderless widget showing one aspect-locked image (rows top-down)."""
    w = pg.GraphicsLayoutWidget(parent)
    w.setBackground(None)  # the widget's palette, light or dark
    w.ci.setContentsMargins(2, 2, 2, 2)
    vb = w.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
    vb.setMenuEnabled(False)
    img = pg.ImageItem(axisOrder="row-major")
    vb.addItem(img)
    return w, vb, img


# ---- the grid of maps ---------------------------------------------------------------------


class MapGrid(pg.GraphicsLayoutWidget):
    """A grid of images, one per map, reused across updates (setImage only). `hovered(text)`
    reports the value under the cursor."""

    hovered = Signal(str)
    clicked = Signal(int)  # index of the map clicked

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground(None)
        self.ci.setSpacing(3)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.cells: list[tuple[pg.ViewBox, pg.ImageItem, pg.TextItem]] = []
        self.maps: np.ndarray = np.zeros((0, 1, 1), np.float32)
        self.titles: list[str] = []
        self._shape: tuple[int, int] = (0, 0)  # (count, columns) of the current layout
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.scene().sigMouseClicked.connect(self._on_mouse_clicked)

    @property
    def count(self) -> int:
        return self._shape[0]

    def columns_for(self, n: int, h: int, w: int) -> int:
        return grid_columns(n, h, w, max(self.width(), 1) / max(self.height(), 1))

    def set_maps(self, maps: np.ndarray, titles: list[str] | None = None, shared: bool = True,
                 cmap: str = MAP_CMAP, symmetric: bool = False) -> None:
        """Show (N, H, W) maps; colour levels shared by all maps or per map."""
        maps = np.asarray(maps, np.float32)
        self.maps = maps
        self.titles = titles or [str(i + 1) for i in range(len(maps))]
        n = len(maps)
        cols = self.columns_for(n, maps.shape[1], maps.shape[2]) if n else 1
        if (n, cols) != self._shape:
            self._relayout(n, cols)
        lut = lookup_table(cmap)
        shared_levels = map_levels(maps, symmetric)
        for i in range(n):
            vb, img, label = self.cells[i]
            img.setImage(maps[i], autoLevels=False,
                         levels=shared_levels if shared else map_levels(maps[i], symmetric),
                         lut=lut)
            label.setText(self.titles[i])
            vb.setRange(xRange=(0, maps.shape[2]), yRange=(0, maps.shape[1]), padding=0.02)

    def resizeEvent(self, event):
        """Re-flow the grid when the widget's shape calls for another number of columns."""
        super().resizeEvent(event)
        n = self.count if hasattr(self, "_shape") else 0  # resized while still being built
        if n:
            cols = self.columns_for(n, self.maps.shape[1], self.maps.shape[2])
            if cols != self._shape[1]:
                self._relayout(n, cols)

    def _relayout(self, n: int, cols: int) -> None:
        self.ci.clear()
        while len(self.cells) < n:
            vb = pg.ViewBox(lockAspect=True, invertY=True, enableMouse=False)
            vb.setMenuEnabled(False)
            img = pg.ImageItem(axisOrder="row-major")
            vb.addItem(img)
            label = pg.TextItem("", color=(255, 255, 255), anchor=(0, 0),
                                fill=pg.mkBrush(0, 0, 0, 140))
            label.setFont(QFont("Sans", 7))
            label.setZValue(10)
            vb.addItem(label, ignoreBounds=True)
            label.setPos(0, 0)
            self.cells.append((vb, img, label))
        for i in range(n):
            r, c = divmod(i, cols)
            self.ci.addItem(self.cells[i][0], row=r, col=c)
        self._shape = (n, cols)

    def index_at(self, scene_pos) -> int | None:
        for i in range(self.count):
            if self.cells[i][0].sceneBoundingRect().contains(scene_pos):
                return i
        return None

    def _on_mouse_clicked(self, event) -> None:
        i = self.index_at(event.scenePos())
        if i is not None:
            self.clicked.emit(i)

    def _on_mouse_moved(self, pos) -> None:
        for i in range(self.count):
            vb = self.cells[i][0]
            if vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                x, y = math.floor(p.x()), math.floor(p.y())
                m = self.maps[i]
                if 0 <= y < m.shape[0] and 0 <= x < m.shape[1]:
                    self.hovered.emit(f"{self.titles[i]}  ·  row {y}, column {x}  ·  value "
                                      f"{m[y, x]:.4g}")
                return


class UnitBars(pg.PlotWidget):
    """A flat layer's output (Linear, Flatten, …: one value per unit) as bars: unit number
    across, value up; positive values warm, negative cool. `hovered(text)` reads a bar."""

    hovered = Signal(str)

    POS, NEG = (230, 120, 40), (60, 120, 200)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground(None)
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setLabel("bottom", "unit")
        self.setLabel("left", "value")
        self.getAxis("left").setWidth(44)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, pens=None)
        self.addItem(self.bars)
        self.zero = pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen((128, 128, 128)))
        self.addItem(self.zero)
        self.values = np.zeros(0, np.float32)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    def set_values(self, values: np.ndarray) -> None:
        v = np.asarray(values, np.float32).ravel()
        self.values = v
        n = len(v)
        x = np.arange(1, n + 1)
        brushes = [pg.mkBrush(*(self.POS if val >= 0 else self.NEG)) for val in v]
        self.bars.setOpts(x=x, height=v, width=0.8 if n <= 200 else 1.0, brushes=brushes,
                          pen=pg.mkPen(None) if n > 60 else None)
        lo, hi = (float(min(v.min(), 0)), float(max(v.max(), 0))) if n else (0.0, 1.0)
        if hi - lo < 1e-12:
            hi = lo + 1.0
        self.setXRange(0.4, n + 0.6, padding=0.01)
        self.setYRange(lo, hi, padding=0.05)

    def _on_mouse_moved(self, pos) -> None:
        vb = self.getPlotItem().vb
        if not len(self.values) or not vb.sceneBoundingRect().contains(pos):
            return
        i = round(vb.mapSceneToView(pos).x()) - 1
        if 0 <= i < len(self.values):
            self.hovered.emit(f"unit {i + 1}  ·  value {self.values[i]:.4g}")


class ProbabilityChart(pg.PlotWidget):
    """Output probabilities as bars; the predicted class stands out."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground(None)
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setYRange(0, 1, padding=0.02)
        self.getPlotItem().setTitle("output probabilities", size="9pt")
        self.getAxis("left").setWidth(32)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.75, brush=(100, 140, 200))
        self.addItem(self.bars)
        self.probs = np.zeros(0)
        self._prediction: tuple[str, str] | None = None  # (class name, "93%")
        self.title_text = "output probabilities"

    def set_probabilities(self, p: np.ndarray, names: list[str] | None = None) -> None:
        p = np.asarray(p, np.float64).ravel()
        self.probs = p
        k = len(p)
        brushes = [pg.mkBrush(100, 140, 200) for _ in range(k)]
        if k:
            brushes[int(p.argmax())] = pg.mkBrush(230, 120, 40)
        self.bars.setOpts(x=np.arange(k), height=p, brushes=brushes)
        self.setXRange(-0.6, k - 0.4, padding=0)
        names = names or [str(i) for i in range(k)]
        step = max(1, k // 12)
        # many classes: numbers on the axis (names would overlap; the top-5 list names them)
        ticks = names if k <= 20 else [str(i) for i in range(k)]
        self.getAxis("bottom").setTicks([[(i, ticks[i]) for i in range(0, k, step)]])
        if k:
            i = int(p.argmax())
            self._prediction = (names[i], f"{p[i]:.0%}")
            self._fit_title()

    def _fit_title(self) -> None:
        """"prediction: 7 (93%)" when it fits the chart's width, else "7 (93%)", else the
        name elided: the title is never cut off at the chart's edge."""
        name, share = self._prediction
        font = QFont(self.font())
        font.setPointSize(9)
        fm = QFontMetrics(font)
        room = max(20, self.width() - 8)
        text = f"prediction: {name} ({share})"
        if fm.horizontalAdvance(text) > room:
            text = f"{name} ({share})"
        if fm.horizontalAdvance(text) > room:
            name = fm.elidedText(name, Qt.TextElideMode.ElideMiddle,
                                 room - fm.horizontalAdvance(f" ({share})"))
            text = f"{name} ({share})"
        self.title_text = text
        self.setToolTip(f"prediction: {self._prediction[0]} ({share})")
        bold = html.escape(name)
        self.getPlotItem().setTitle(html.escape(text).replace(bold, f"<b>{bold}</b>", 1)
                                    if text.startswith("prediction") else
                                    f"<b>{bold}</b> ({share})", size="9pt")

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.__dict__.get("_prediction") is not None:  # None too while pyqtgraph builds
            self._fit_title()


# ---- the panel ----------------------------------------------------------------------------


class FeatureMapPanel(FitsItsRoom, QWidget):
    """Feature maps of the layer selected on the canvas for one input image."""

    computed = Signal()  # after maps were shown for a new input / layer / weights

    SOURCES = ("Dataset sample", "Image file", "Drawing pad")

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.node_id: str | None = None
        self._net: Network | None = None
        self._net_error: str | None = None
        self._untrained = False
        self._outs: dict[str, np.ndarray] | None = None
        self._x: np.ndarray | None = None  # (C, H, W) current input
        self._image_file: np.ndarray | None = None
        self._photo: str | None = None  # a photo file prepared by the model's input spec
        self._photo_cache: tuple | None = None  # (path, spec, x, pixels, notes)
        self.top5: list = []  # engine.predict.Ranked of the last prediction
        self._mnist = None
        self._thread = self._worker = None
        self._pending = False
        self._weights_before: dict | None = None
        self._timer = QTimer(self, singleShot=True, interval=30)
        self._timer.timeout.connect(self.refresh)
        self._build()
        doc.validated.connect(self._on_graph_changed)
        doc.weights_changed.connect(self._on_graph_changed)
        doc.graph_reset.connect(self._on_graph_changed)
        self._on_graph_changed()
        self.setAcceptDrops(True)  # a JPEG / PNG dropped here becomes the input

    # -- layout --
    def _build(self) -> None:
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        self.source = QComboBox()
        self.source.addItems(self.SOURCES)
        self.sample = QSpinBox()
        self.sample.setRange(0, 9999)
        self.sample.setPrefix("#")
        self.sample.setToolTip("Number of the MNIST test image (resized to the Input's shape).")
        self.open_button = QPushButton("Open image…")
        self.clear_button = QPushButton("Clear pad")
        self.scale = QComboBox()
        self.scale.addItems(["Shared scale", "Per-map scale"])
        self.scale.setToolTip("Shared: maps are comparable. Per map: each map uses its own "
                              "range, so weak maps become visible.")
        self.layer_label = QLabel()
        self.layer_label.setTextFormat(Qt.TextFormat.RichText)
        self.notice = QLabel()
        self.notice.setStyleSheet(f"color: {severity_hex('warning', self)};")
        for w in (self.source, self.scale):
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(7)
        self.sample.setMinimumWidth(60)
        self.source.setMaximumWidth(220)
        self.sample.setMaximumWidth(100)
        for w in (QLabel("Input:"), self.source, self.sample, self.open_button,
                  self.clear_button):
            top.addWidget(w, 1 if w in (self.source, self.sample) else 0)
        top.addStretch(0)  # takes what the capped fields leave
        top.addWidget(self.scale)
        second = QHBoxLayout()
        second.setContentsMargins(0, 0, 0, 0)
        self.layer_label.setMinimumWidth(10)
        second.addWidget(self.layer_label, 1)
        self.notice.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        second.addWidget(self.notice)

        # side: input (or the pad) with its caption, and the output probabilities; a column
        # beside the tabs when the panel is wide, a row above them when it is narrow
        left = QWidget()
        self.side = QBoxLayout(QBoxLayout.Direction.TopToBottom, left)
        self.side.setContentsMargins(0, 0, 0, 0)
        self.input_stack = QStackedWidget()
        self.input_widget, self.input_vb, self.input_img = image_view()
        self.pad = DrawingPad()
        # beside the pad: the image the network is fed, at its own size, crisp
        self.pad_preview = InputPreview()
        self.pad_preview_label = QLabel("network\nsees")
        self.pad_preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.pad_preview_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        pad_page = QWidget()
        pl = QHBoxLayout(pad_page)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(4)
        pl.addWidget(self.pad, 1)
        seen = QVBoxLayout()
        seen.addWidget(self.pad_preview)
        seen.addWidget(self.pad_preview_label)
        seen.addStretch(1)
        pl.addLayout(seen)
        self.input_stack.addWidget(self.input_widget)
        self.input_stack.addWidget(pad_page)
        self.input_stack.setMinimumSize(120, 120)
        self.input_caption = QLabel()
        self.input_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.input_caption.setMinimumWidth(10)
        self.probs = ProbabilityChart()
        self.probs.setMinimumSize(140, 120)
        input_box = QWidget()
        il = QVBoxLayout(input_box)
        il.setContentsMargins(0, 0, 0, 0)
        il.addWidget(self.input_stack, 1)
        il.addWidget(self.input_caption)
        self.input_box = input_box
        self.side.addWidget(input_box, 3)
        self.side.addWidget(self.probs, 2)
        self.top_label = QLabel()  # top-5 classes with their probabilities
        self.top_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.top_label.setMinimumWidth(10)
        self.side.addWidget(self.top_label)
        self.left = left

        # tabs
        self.tabs = QTabWidget()
        maps_tab = QWidget()
        ml = QVBoxLayout(maps_tab)
        ml.setContentsMargins(2, 2, 2, 2)
        self.grid = MapGrid()
        self.grid.setMinimumHeight(120)
        self.unit_bars = UnitBars()
        self.unit_bars.setMinimumHeight(120)
        self.unit_bars.hovered.connect(self._on_hovered)
        self.maps_stack = QStackedWidget()  # the maps grid, or bars for a flat output
        self.maps_stack.addWidget(self.grid)
        self.maps_stack.addWidget(self.unit_bars)
        self.hover = QLabel("Move the mouse over a map to read its values.")
        self.hover.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.hover.setMinimumWidth(10)
        self.stats = QTableWidget(0, 5)
        self.stats.setHorizontalHeaderLabels(["map", "min", "max", "mean", "zero after ReLU"])
        self.stats.verticalHeader().setVisible(False)
        self.stats.verticalHeader().setDefaultSectionSize(20)
        self.stats.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.stats.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.stats.horizontalHeader().setMinimumSectionSize(30)
        self.stats.horizontalHeaderItem(4).setText("≤ 0")
        self.stats.horizontalHeaderItem(4).setToolTip("share of the values that are zero after "
                                                      "ReLU (≤ 0)")
        self.stats.setMaximumHeight(160)
        self.stats.setMinimumHeight(50)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(self.maps_stack)
        split.addWidget(self.stats)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        ml.addWidget(split, 1)
        ml.addWidget(self.hover)
        self.tabs.addTab(maps_tab, "Feature maps")

        filt_tab = QWidget()
        fl = QVBoxLayout(filt_tab)
        fl.setContentsMargins(2, 2, 2, 2)
        self.filters_label = QLabel()
        self.filters_label.setWordWrap(True)
        self.filter_grid = MapGrid()
        self.filter_grid.hovered.connect(self.hover.setText)
        fl.addWidget(self.filters_label)
        fl.addWidget(self.filter_grid, 1)
        self.tabs.addTab(filt_tab, "Filters")

        self.lesson = KernelLesson(self)
        self.tabs.addTab(self.lesson, "Kernel lesson")
        from .explain_view import ExplainTab  # imports this module's image_view

        self.explain_tab = ExplainTab(self)
        self.tabs.addTab(self.explain_tab, "Explain")

        self.tabs.setMinimumWidth(260)
        self.body = body = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        body.addWidget(left)
        body.addWidget(self.tabs, 1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        # the input controls and the layer line: two rows when narrow, one when wide
        self.heads = QBoxLayout(QBoxLayout.Direction.TopToBottom)
        self.heads.addLayout(top)
        self.heads.addLayout(second, 1)
        outer.addLayout(self.heads)
        outer.addLayout(body, 1)
        self.narrow: str | None = None  # "narrow", "wide" or "short" (_fit_orientation)
        self._apply_orientation("wide")

        self.source.currentIndexChanged.connect(self._on_source_changed)
        self.sample.valueChanged.connect(self.schedule)
        self.scale.currentIndexChanged.connect(self._show_current)
        self.open_button.clicked.connect(self.open_image)
        self.clear_button.clicked.connect(self.pad.clear)
        self.pad.drawn.connect(self.schedule)
        self.grid.hovered.connect(self._on_hovered)
        self.tabs.currentChanged.connect(self._show_current)
        self._on_source_changed()

    # -- narrow or wide --
    def _fit_orientation(self) -> None:
        parent = self.parentWidget()
        room = parent.width() if parent is not None and parent.isVisible() else self.width()
        tall = parent.height() if parent is not None and parent.isVisible() else self.height()
        mode = "narrow" if room < 720 else ("short" if tall < 560 else "wide")
        if mode != self.narrow:
            self._apply_orientation(mode)

    def _apply_orientation(self, mode: str) -> None:
        """"narrow": input and probabilities side by side above the tabs. "wide": a column of
        them beside the tabs. "short" (a wide, low bottom dock): side by side, beside the
        tabs."""
        self.narrow = mode
        down, across = QBoxLayout.Direction.TopToBottom, QBoxLayout.Direction.LeftToRight
        self.body.setDirection(down if mode == "narrow" else across)
        self.side.setDirection(down if mode == "wide" else across)
        self.heads.setDirection(down if mode == "narrow" else across)
        # beside the other controls (wide and low docks) the source shows its whole name
        # ("Dataset sample"); only a narrow dock lets it shrink
        self.source.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            if mode == "narrow" else QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.source.setMinimumContentsLength(7)
        self.source.setMinimumWidth(0 if mode == "narrow" else self.source.sizeHint().width())
        small = mode == "short"
        self.grid.setMinimumHeight(70 if small else 120)
        self.unit_bars.setMinimumHeight(70 if small else 120)
        self.stats.setMinimumHeight(40 if small else 50)
        self.input_stack.setMinimumSize(120 if not small else 90, 120 if not small else 90)
        self.probs.setMinimumSize(140, 120 if not small else 90)
        max_size = 16777215
        if mode == "narrow":
            self.left.setMinimumWidth(0)
            self.left.setMaximumWidth(max_size)
            self.left.setFixedHeight(190)
            self.input_box.setMaximumWidth(190)
            self.tabs.setMinimumHeight(360)
        else:
            self.left.setMinimumHeight(0)
            self.left.setMaximumHeight(max_size)
            # low: input, chart and top-5 side by side; their widths add up to the column's,
            # so the chart's title and last class are not covered by the top-5 list
            self.left.setFixedWidth(220 if mode == "wide" else 460)
            self.input_box.setMaximumWidth(max_size if mode == "wide" else 170)
            self.tabs.setMinimumHeight(0)

    def _on_hovered(self, text: str) -> None:
        self.hover.setText(text)

    # -- public API --
    def set_node(self, node_id: str | None) -> None:
        """Show the maps of `node_id` (the canvas selection)."""
        self.node_id = node_id if node_id in self.doc.graph.nodes else None
        self._show_current()

    def set_input(self, x: np.ndarray) -> None:
        """Use the (C, H, W) or (H, W) image `x` as input (source becomes "Image file")."""
        shape = self._input_shape()
        self._image_file = fit_image(x, shape) if shape else np.asarray(x, np.float32)
        self._photo = None
        with QSignalBlocker(self.source):
            self.source.setCurrentIndex(1)
        self._on_source_changed()

    def shutdown(self) -> None:
        stop_thread(self._thread)
        self._thread = self._worker = None
        self.explain_tab.shutdown()

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)

    # -- input --
    def _input_shape(self) -> tuple[int, int, int] | None:
        v = self.doc.validation
        for nid, node in self.doc.graph.nodes.items():
            if node.type_name == "Input":
                res = v.nodes.get(nid)
                if res is not None and res.out_shape is not None:
                    return tuple(res.out_shape)
        return None

    def _on_source_changed(self) -> None:
        i = self.source.currentIndex()
        self.sample.setVisible(i == 0)
        self.open_button.setVisible(i == 1)
        self.clear_button.setVisible(i == 2)
        self.input_stack.setCurrentIndex(1 if i == 2 else 0)
        if i == 1 and self._image_file is None:
            self.input_caption.setText("Open an image file…")
        self.schedule()

    def open_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an image", "", "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.webp)")
        if path:
            self.open_photo(path)

    def open_photo(self, path: str) -> bool:
        """Use the photo at `path` as input, prepared by the model's input spec (the same
        arrays as infer --image); False with the reason shown where it cannot be read."""
        try:
            self._prepared(path)
        except ValueError as exc:
            self.notice.setText(str(exc))
            return False
        self._photo, self._image_file = path, None
        with QSignalBlocker(self.source):
            self.source.setCurrentIndex(1)
        self._on_source_changed()
        return True

    def _prepared(self, path: str) -> tuple:
        """(x (C, H, W), pixels (H, W, C) uint8, notes) of a photo, cached per path and spec."""
        from engine.inputspec import model_spec, normalise, photo_pixels

        spec = model_spec(self.doc.graph)
        c = self._photo_cache
        if c is None or c[0] != path or c[1] != spec:
            pixels, notes = photo_pixels(path, spec)
            c = self._photo_cache = (path, spec, normalise(pixels, spec), pixels, notes)
        return c[2], c[3], c[4]

    def dragEnterEvent(self, event):
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event):
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files and self.open_photo(files[0]):
            event.acceptProposedAction()
        else:
            event.ignore()

    def current_input(self) -> np.ndarray | None:
        """(C, H, W) float32 for the Input's shape from the chosen source, or None."""
        shape = self._input_shape()
        if shape is None or len(shape) != 3:
            return None
        i = self.source.currentIndex()
        if i == 0:
            if self._mnist is None:
                from engine.data import load_mnist
                self._mnist = load_mnist("test")
            k = self.sample.value() % len(self._mnist)
            self.input_caption.setText(f"MNIST test #{k}: label {int(self._mnist.y[k])}")
            self.input_caption.setToolTip("")
            return fit_image(self._mnist.x[k, 0], shape)
        if i == 1:
            if self._photo is not None:
                try:
                    x, _, notes = self._prepared(self._photo)
                except ValueError as exc:
                    self.input_caption.setText(str(exc))
                    return None
                name = self._photo.replace("\\", "/").rsplit("/", 1)[-1]
                self.input_caption.setText("; ".join([name, *notes]))
                self.input_caption.setToolTip(self._photo)
                return x if x.shape == tuple(shape) else None
            if self._image_file is None:
                return None
            self.input_caption.setText("image file")
            return fit_image(self._image_file, shape)
        self.input_caption.setText("centred like MNIST")
        self.input_caption.setToolTip("your drawing, scaled and centred like an MNIST digit")
        x = fit_image(self.pad.digit(shape[1:]), shape)
        self.pad_preview.set_array(x)
        self.pad_preview_label.setText(f"network\nsees\n{shape[1]}×{shape[2]}")
        return x

    # -- network --
    def _on_graph_changed(self, *_) -> None:
        self._net = None
        self._outs = None
        self.schedule()

    def network(self) -> Network | None:
        """The document's network with its weights (random where it has none)."""
        if self._net is not None:
            return self._net
        self._net_error = None
        try:
            # the document's weights copied in, not drawn and then overwritten
            net = Network.compile(self.doc.graph, np.random.default_rng(0),
                                  weights=self.doc.weights or None)
        except ValueError as exc:
            self._net_error = str(exc)
            return None
        have = self.doc.weights or {}
        self._untrained = any(f"{nid}.{k}" not in have
                              for nid, layer in net.layers.items() for k in layer.weights)
        self._net = net
        return net

    def schedule(self, *_) -> None:
        """Recompute soon (coalesces bursts of edits and mouse strokes)."""
        self._timer.start()

    def refresh(self) -> None:
        """Run the network on the current input and show the maps (off the GUI thread when
        the network is big)."""
        net = self.network()
        if net is None:
            self.notice.setText("The graph has errors: fix them to see feature maps.")
            self.notice.setToolTip(self._net_error or "")
            self._outs = None
            self._show_current()
            return
        self.notice.setText("untrained weights" if self._untrained
                            else "")
        self.notice.setToolTip("The weights are a random initialisation: train the network "
                               "(Training panel) to see what it learned."
                               if self._untrained else "")
        x = self.current_input()
        self._x = x
        if x is None:
            self._outs = None
            self._show_current()
            return
        self._show_input(x)
        macs = self.doc.validation.macs if hasattr(self.doc.validation, "macs") else 0
        if macs and macs > BIG_NET_MACS:
            self._run_in_worker(net, x)
        else:
            self._on_computed(net.forward(x[None], keep=True))

    def _run_in_worker(self, net: Network, x: np.ndarray) -> None:
        if self._thread is not None:
            self._pending = True
            return
        self.notice.setText("computing…")
        # ONNX Runtime (a session kept per document revision), the engine where it cannot run
        self._worker = FunctionWorker(layer_outputs, net, self.doc.graph.copy(), x[None],
                                      self.doc.revision)
        self._worker.finished.connect(self._on_layer_outputs)
        self._worker.failed.connect(self.notice.setText)
        self._worker.done.connect(self._on_worker_done)
        self._thread = start_worker(self._worker, self)

    def _on_layer_outputs(self, result: tuple) -> None:
        self._on_computed(result[0])  # (outputs, what computed them)

    def _on_worker_done(self) -> None:
        stop_thread(self._thread)
        self._thread = self._worker = None
        if self._pending:
            self._pending = False
            self.schedule()

    def _on_computed(self, outs: dict) -> None:
        self._outs = outs
        net = self._net
        if net is not None and net.output_id in outs:
            out = outs[net.output_id][0]
            p = probabilities(out.ravel(), already=net.ends_in_softmax)
            names = class_names(p.size)  # ImageNet's for a 1000-way head
            self.probs.set_probabilities(p, list(names) if names else None)
            self.top5 = top_k(p, 5, names)
            self.top_label.setText("<br>".join(
                f"{r.probability:.1%}&nbsp;&nbsp;{html.escape(r.name)}" for r in self.top5))
        self._show_current()
        self.computed.emit()

    # -- display --
    def _show_input(self, x: np.ndarray) -> None:
        if self.source.currentIndex() == 1 and self._photo is not None:
            x = self._prepared(self._photo)[1].transpose(2, 0, 1) / np.float32(255)
        if x.shape[0] == 3:
            self.input_img.setImage(np.clip(x.transpose(1, 2, 0), 0, 1), levels=(0, 1))
        else:
            self.input_img.setImage(x[0], levels=(0, 1),
                                    lut=lookup_table(GREY_CMAP))
        self.input_vb.autoRange(padding=0.02)

    def selected_maps(self) -> np.ndarray | None:
        """(N, H, W) maps of the selected layer for the current input (at most MAX_MAPS)."""
        if self._outs is None or self.node_id not in (self._outs or {}):
            return None
        return as_maps(self._outs[self.node_id][0])[:MAX_MAPS]

    def _show_current(self, *_) -> None:
        graph = self.doc.graph
        node = graph.nodes.get(self.node_id) if self.node_id else None
        if node is None:
            self.layer_label.setText("Select a layer on the canvas to see its feature maps.")
        else:
            res = self.doc.validation.nodes.get(node.id)
            shape = "×".join(map(str, res.out_shape)) if res and res.out_shape else "?"
            self.layer_label.setText(f"<b>{node.name}</b> ({node.type_name}) → {shape}")
        tab = self.tabs.currentIndex()
        if self.tabs.currentWidget() is self.explain_tab:
            self.explain_tab.refresh()
        elif tab == 0:
            self._show_maps()
        elif tab == 1:
            self._show_filters()
        else:
            self.lesson.refresh()

    def _show_maps(self) -> None:
        maps = self.selected_maps()
        if maps is None:
            self.grid.set_maps(np.zeros((0, 1, 1), np.float32))
            self.unit_bars.set_values(np.zeros(0, np.float32))
            self.maps_stack.setCurrentWidget(self.grid)
            self.stats.setRowCount(0)
            return
        out = self._outs[self.node_id][0]
        if is_flat(out):
            # one value per unit: bars (an image strip 1 pixel high says nothing)
            values = np.asarray(out, np.float32).ravel()
            self.grid.set_maps(np.zeros((0, 1, 1), np.float32))
            self.unit_bars.set_values(values)
            self.maps_stack.setCurrentWidget(self.unit_bars)
            self.hover.setText(f"{len(values)} values, one per unit: move the mouse over a bar "
                               f"to read it.")
            stats = map_stats(values.reshape(1, 1, -1))
            labels = [f"all {len(values)}"]
        else:
            full = as_maps(out)
            shared = self.scale.currentIndex() == 0
            self.maps_stack.setCurrentWidget(self.grid)
            self.grid.set_maps(maps, [f"{i + 1}" for i in range(len(maps))], shared=shared)
            if len(full) > MAX_MAPS:
                self.hover.setText(f"showing the first {MAX_MAPS} of {len(full)} maps")
            stats = map_stats(maps)
            labels = [str(i + 1) for i in range(len(maps))]
        self.stats.setRowCount(len(stats))
        for i, row in enumerate(stats):
            cells = [labels[i]] + [f"{v:.3g}" for v in row[:3]] + [f"{row[3]:.0%}"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.stats.setItem(i, j, item)

    def _show_filters(self) -> None:
        node = self.doc.graph.nodes.get(self.node_id) if self.node_id else None
        net = self.network()
        if node is None or node.type_name != "Conv2d" or net is None:
            self.filters_label.setText("Select a convolution layer to see its filters.")
            self.filter_grid.set_maps(np.zeros((0, 1, 1), np.float32))
            return
        w = net.layers[node.id].weights["weight"]  # (Cout, Cin, kh, kw)
        cout, cin = w.shape[:2]
        cin_shown = min(cin, max(1, MAX_MAPS // cout))
        tiles = w[:, :cin_shown].reshape(-1, *w.shape[2:])[:MAX_MAPS]
        titles = [f"{f + 1}·{c + 1}" for f in range(cout) for c in range(cin_shown)][:MAX_MAPS]
        self.filters_label.setText(
            f"{node.name}: {cout} filters of {cin}×{w.shape[2]}×{w.shape[3]} "
            f"(tile f·c = filter f, input channel c{'; first channels only' if cin_shown < cin else ''}). "
            "Blue is negative, red positive, white zero.")
        self.filter_grid.set_maps(tiles, titles, shared=self.scale.currentIndex() == 0,
                                  cmap=DIVERGING_CMAP, symmetric=True)

    # -- weights edited by the lesson --
    def apply_kernel_to_layer(self, kernel: np.ndarray, filter_index: int) -> str:
        """Set filter `filter_index` of the selected conv layer to `kernel` in the document's
        weights. Weights are not on the undo stack: restore_weights() brings the old ones back."""
        node = self.doc.graph.nodes.get(self.node_id) if self.node_id else None
        net = self.network()
        if node is None or node.type_name != "Conv2d" or net is None:
            raise ValueError("select a convolution layer on the canvas first")
        state = dict(self.doc.weights) if self.doc.weights else net.state_dict()
        if f"{node.id}.weight" not in state:
            state.update({k: v for k, v in net.state_dict().items()
                          if k.startswith(node.id + ".")})
        if self._weights_before is None:
            self._weights_before = ({k: v.copy() for k, v in self.doc.weights.items()}
                                    if self.doc.weights else None, True)
        self.doc.set_weights(lesson_kernels.with_kernels(state, node.id, {filter_index: kernel}))
        return f"filter {filter_index + 1} of {node.name} set"

    def restore_weights(self) -> bool:
        if self._weights_before is None:
            return False
        self.doc.set_weights(self._weights_before[0])
        self._weights_before = None
        return True


# ---- the kernel lesson --------------------------------------------------------------------


class KernelEditor(QTableWidget):
    """A small grid of numbers: the kernel, typed by hand."""

    edited = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(3, 3, parent)
        self.horizontalHeader().setVisible(False)
        self.verticalHeader().setVisible(False)
        self.setFixedSize(3 * 52 + 4, 3 * 34 + 4)
        self._set_cells(lesson_kernels.preset("vertical_edge"))
        self.itemChanged.connect(self._on_item_changed)

    def _set_cells(self, k: np.ndarray) -> None:
        with QSignalBlocker(self):
            self.setRowCount(k.shape[0])
            self.setColumnCount(k.shape[1])
            for c in range(k.shape[1]):
                self.setColumnWidth(c, 52)
            for r in range(k.shape[0]):
                self.setRowHeight(r, 34)
                for c in range(k.shape[1]):
                    item = QTableWidgetItem(lesson_kernels.format_kernel(k[r:r + 1, c:c + 1]))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    self.setItem(r, c, item)
        self._color()

    def set_kernel(self, k: np.ndarray) -> None:
        self._set_cells(np.asarray(k, np.float32))
        self.edited.emit()

    def kernel(self) -> np.ndarray:
        text = "\n".join(" ".join((self.item(r, c).text() if self.item(r, c) else "0") or "0"
                                  for c in range(self.columnCount()))
                         for r in range(self.rowCount()))
        return lesson_kernels.parse_kernel(text)

    def _color(self) -> None:
        try:
            k = self.kernel()
        except ValueError:
            return
        m = float(np.abs(k).max()) or 1.0
        with QSignalBlocker(self):
            for r in range(k.shape[0]):
                for c in range(k.shape[1]):
                    t = 0.6 * float(k[r, c]) / m  # pastel: the numbers stay readable
                    color = (QColor(255, int(255 * (1 - t)), int(255 * (1 - t))) if t > 0 else
                             QColor(int(255 * (1 + t)), int(255 * (1 + t)), 255))
                    self.item(r, c).setBackground(color)
                    self.item(r, c).setForeground(QColor(0, 0, 0))

    def _on_item_changed(self, *_) -> None:
        self._color()
        self.edited.emit()


class KernelLesson(QWidget):
    """Pick or type a kernel; see the input, the convolution, ReLU and max pooling at once."""

    STAGES = (("input", "Input"), ("conv", "Convolution"), ("relu", "After ReLU"),
              ("pool", "After 2×2 max pooling"))

    def __init__(self, panel: FeatureMapPanel):
        super().__init__(panel)
        self.panel = panel
        self.outputs: dict[str, np.ndarray] = {}
        # the kernel controls: one column beside the stages, or two columns above them when
        # the panel is narrow
        side = self.side = QBoxLayout(QBoxLayout.Direction.TopToBottom)
        side_a, side_b = QVBoxLayout(), QVBoxLayout()
        side.addLayout(side_a, 0)
        side.addLayout(side_b, 1)  # spare height above the filter / apply buttons
        self.preset = QComboBox()
        for p in lesson_kernels.PRESETS.values():
            self.preset.addItem(p.label, p.name)
        self.editor = KernelEditor()
        self.doc_label = QLabel()
        self.doc_label.setWordWrap(True)
        self.error = QLabel()
        self.error.setStyleSheet(f"color: {severity_hex('error', panel)};")
        self.error.setWordWrap(True)
        self.filter_index = QSpinBox()
        self.filter_index.setPrefix("filter ")
        self.filter_index.setRange(1, 1)
        self.apply_button = QPushButton("Set in selected layer")
        self.apply_button.setToolTip("Sets this kernel as one filter of the convolution layer "
                                     "selected on the canvas. Weights are not part of undo: "
                                     "use Restore weights to go back.")
        self.restore_button = QPushButton("Restore weights")
        self.status = QLabel()
        self.status.setWordWrap(True)
        side_a.addWidget(QLabel("<b>Kernel</b>"))
        side_a.addWidget(self.preset)
        side_a.addWidget(self.editor)
        side_a.addWidget(self.doc_label)
        side_b.addWidget(self.error)
        side_b.addStretch(1)
        side_b.addWidget(self.filter_index)
        side_b.addWidget(self.apply_button)
        side_b.addWidget(self.restore_button)
        side_b.addWidget(self.status)
        side_w = QWidget()
        side_w.setLayout(side)
        side_scroll = QScrollArea()  # a low dock: the kernel controls scroll
        side_scroll.setWidgetResizable(True)
        side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side_scroll.setWidget(side_w)
        self.side_scroll = side_scroll
        self._side_w = 200 + side_scroll.verticalScrollBar().sizeHint().width()
        side_scroll.setFixedWidth(self._side_w)
        self.narrow = False

        self.stages = QGridLayout()
        self.stages.setSpacing(4)
        self.views: dict[str, tuple] = {}
        self.captions: dict[str, QLabel] = {}
        self.heads: dict[str, QLabel] = {}
        for key, title in self.STAGES:
            head = QLabel(f"<b>{title}</b>")
            head.setAlignment(Qt.AlignmentFlag.AlignCenter)
            w, vb, img = image_view()
            w.setMinimumSize(56, 50)
            w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            cap = QLabel()
            cap.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cap.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            self.views[key] = (w, vb, img)
            self.captions[key] = cap
            self.heads[key] = head
        self._cols = 0
        self._arrange(4)
        explain = QLabel(
            "The kernel slides over the image; each output pixel is the sum of the 3×3 "
            "neighbourhood times the kernel (red = positive weights, blue = negative). ReLU "
            "keeps only the positive answers; max pooling keeps the strongest answer of each "
            "2×2 block, halving the size. Hover to read values; edit the numbers to experiment.")
        explain.setWordWrap(True)
        explain.setFrameShape(QFrame.Shape.StyledPanel)
        explain.setContentsMargins(6, 4, 6, 4)
        self.gallery_title = QLabel("<b>Every preset on this image</b> (after ReLU): each kernel "
                                    "finds something else. Click one to study it.")
        self.gallery_title.setWordWrap(True)
        self.gallery = MapGrid()
        self.gallery.setMinimumHeight(40)
        self.gallery.hovered.connect(panel.hover.setText)
        self.gallery.clicked.connect(self.preset.setCurrentIndex)
        self.right = right = QVBoxLayout()
        right.addLayout(self.stages, 1)
        right.addWidget(explain)
        right.addWidget(self.gallery_title)
        right.addWidget(self.gallery, 0)
        self.lay = lay = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(side_scroll)
        lay.addLayout(right, 1)
        self.hover_text = ""
        for key, (w, vb, img) in self.views.items():
            w.scene().sigMouseMoved.connect(self._make_hover(key))

        self.preset.currentIndexChanged.connect(self._on_preset)
        self.editor.edited.connect(self.refresh)
        self.apply_button.clicked.connect(self._apply)
        self.restore_button.clicked.connect(self._restore)
        self._on_preset()

    def _arrange(self, cols: int) -> None:
        """Stages in one row of four, or two rows of two when that makes them bigger."""
        if cols == self._cols:
            return
        for i, (key, _title) in enumerate(self.STAGES):
            r, c = divmod(i, cols)
            for j, w in enumerate((self.heads[key], self.views[key][0], self.captions[key])):
                self.stages.removeWidget(w)
                self.stages.addWidget(w, 3 * r + j, c)
        self._cols = cols

    def resizeEvent(self, event):
        super().resizeEvent(event)
        # re-arranging changes the children's sizes, which can resize this widget again: do it
        # once the resizes have settled, never from inside one (that fed back into a loop)
        if not hasattr(self, "_fit_timer"):
            self._fit_timer = QTimer(self)
            self._fit_timer.setSingleShot(True)
            self._fit_timer.timeout.connect(self._fit)
            self._flips: list[float] = []
        self._fit_timer.start(0)

    def _fit(self) -> None:
        """Pick the arrangement with the bigger views and keep them about square."""
        # the height in view, not the widget's own: inside a scrolled dock the arrangement
        # changes that height, which fed back into the choice (2, 4, 2 columns ...)
        seen = self.visibleRegion().boundingRect().height()
        height = min(self.height(), seen) if seen > 0 else self.height()
        narrow = self.width() < 560
        if narrow != self.narrow:
            self.narrow = narrow
            across, down = QBoxLayout.Direction.LeftToRight, QBoxLayout.Direction.TopToBottom
            self.lay.setDirection(down if narrow else across)
            self.side.setDirection(across if narrow else down)
            if narrow:
                self.side_scroll.setMinimumWidth(0)
                self.side_scroll.setMaximumWidth(16777215)
                self.side_scroll.setFixedHeight(self.side_scroll.widget().sizeHint().height() + 24)
            else:
                self.side_scroll.setMinimumHeight(0)
                self.side_scroll.setMaximumHeight(16777215)
                self.side_scroll.setFixedWidth(self._side_w)
        if narrow:
            w, h = self.width(), height - self.side_scroll.height() - 150
        else:
            w, h = self.width() - 220, height - 150
        one_row, two_rows = min(w / 4, h), min(w / 2, h / 2 - 40)
        want = 4 if one_row >= two_rows else 2
        if self._cols and want != self._cols:
            now = time.monotonic()
            self._flips = [t for t in self._flips if now - t < 1.0]
            near_tie = 0.9 < one_row / max(two_rows, 1e-6) < 1.1
            if near_tie or len(self._flips) >= 3:  # hysteresis, and never flip-flop
                want = self._cols
            else:
                self._flips.append(now)
        self._arrange(want)
        cap = int(one_row) if self._cols == 4 else 16777215  # QWIDGETSIZE_MAX: fill
        # one row: views stay square and the free height shows every preset at once
        one = self._cols == 4
        self.right.setStretch(0, 0 if one else 1)
        self.right.setStretch(3, 1 if one else 0)
        shown_before = not self.gallery.isHidden()
        self.gallery.setVisible(one)
        self.gallery_title.setVisible(one)
        if one and not shown_before:
            self.refresh()
        for view, _, _ in self.views.values():
            view.setMaximumHeight(max(100, cap))

    def _make_hover(self, key: str):
        def on_move(pos):
            _w, vb, _img = self.views[key]
            a = self.outputs.get(key)
            if a is None:
                return
            p = vb.mapSceneToView(pos)
            x, y = math.floor(p.x()), math.floor(p.y())
            if 0 <= y < a.shape[0] and 0 <= x < a.shape[1]:
                self.panel.hover.setText(f"{key}: row {y}, column {x} = {a[y, x]:.4g}")
                self.captions[key].setText(f"({y}, {x}) = {a[y, x]:.3g}")
        return on_move

    def _on_preset(self, *_) -> None:
        name = self.preset.currentData()
        self.doc_label.setText(lesson_kernels.PRESETS[name].doc)
        self.editor.set_kernel(lesson_kernels.preset(name))

    def kernel(self) -> np.ndarray | None:
        try:
            k = self.editor.kernel()
        except ValueError as exc:
            self.error.setText(str(exc))
            return None
        self.error.setText("")
        return k

    def refresh(self, *_) -> None:
        """Recompute the four stages for the panel's current input."""
        node = self.panel.doc.graph.nodes.get(self.panel.node_id or "")
        is_conv = node is not None and node.type_name == "Conv2d"
        self.apply_button.setEnabled(is_conv)
        if is_conv:
            n = int(node.params.get("out_channels", 1))
            self.filter_index.setRange(1, max(1, n))
        k = self.kernel()
        x = self.panel._x
        if k is None or x is None:
            return
        net = lesson_kernels.lesson_network([k], input_shape=tuple(x.shape))
        outs = net.forward(x[None], keep=True)
        if not self.gallery.isHidden():
            names = list(lesson_kernels.PRESETS)
            every = lesson_kernels.lesson_network([lesson_kernels.preset(n) for n in names], tuple(x.shape))
            relu = every.forward(x[None], keep=True)["relu"][0]
            self.gallery.set_maps(relu, [lesson_kernels.PRESETS[n].label for n in names],
                                  shared=False, cmap="inferno")
        self.outputs = {"input": x.mean(axis=0), "conv": outs["conv"][0, 0],
                        "relu": outs["relu"][0, 0], "pool": outs["pool"][0, 0]}
        grey, div, hot = (lookup_table(GREY_CMAP), lookup_table(DIVERGING_CMAP),
                          lookup_table("inferno"))
        for key, _title in self.STAGES:
            a = self.outputs[key]
            _, vb, img = self.views[key]
            if key == "input":
                img.setImage(a, levels=(0, 1), lut=grey)
            elif key == "conv":
                img.setImage(a, levels=map_levels(a, True), lut=div)
            else:
                img.setImage(a, levels=(0, max(float(a.max()), 1e-6)), lut=hot)
            vb.autoRange(padding=0.02)
            zeros = f", {np.mean(a <= 0):.0%} zero" if key in ("relu", "pool") else ""
            self.captions[key].setText(f"{a.shape[0]}×{a.shape[1]}, {a.min():.2g} … "
                                       f"{a.max():.2g}{zeros}")

    def _apply(self) -> None:
        k = self.kernel()
        if k is None:
            return
        try:
            self.status.setText(self.panel.apply_kernel_to_layer(k, self.filter_index.value() - 1))
        except ValueError as exc:
            self.status.setText(str(exc))

    def _restore(self) -> None:
        self.status.setText("previous weights restored" if self.panel.restore_weights()
                            else "nothing to restore")
