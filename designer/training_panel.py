"""Training panel: data, hyperparameters, Train / Pause / Stop, live curves, the per-epoch
timeline of filters and feature maps, and the results (test accuracy, confusion matrix, the
worst-classified samples).

The panel owns the widgets, plots and layout. Its TrainingSession (designer/training_session.py)
loads and checks the data, runs training in a worker thread with the document locked, and stores
the trained weights and history in the document at the end; the panel shows what it reports.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QMargins, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from engine import data as engine_data
from engine.messages import ERROR, Message
from engine.nn.optim import DEFAULT_LR
from engine.nn.train import BatchReport, EpochReport, TrainConfig

from .feature_maps import DIVERGING_CMAP, MAP_CMAP, image_view, lookup_table, to_qimage
from .map_images import mosaic
from .responsive import FitsItsRoom
from .theme import contrast_ratio, severity_hex
from .training_session import DataRequest, Run, TrainingSession
from .workers import Snapshot, TrainResult, TrainWorker

SOURCES = (("mnist", "MNIST (embedded)"), ("idx", "IDX folder"),
           ("images", "Image folder (one subfolder per class)"), ("npz", ".npz file (x, y)"))
NO_RESULT_TEXT = "Train the network to see how well it does on data it has never seen."


def fmt_seconds(s: float) -> str:
    s = max(0, round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def style_plot(plot: pg.PlotWidget, widget: QWidget) -> None:
    """Plots follow the application palette (light or dark) instead of pyqtgraph's black."""
    pal = widget.palette()
    plot.setBackground(pal.base().color())
    fg = pal.text().color()
    for side in ("left", "bottom"):
        ax = plot.getAxis(side)
        ax.setPen(pg.mkPen(fg))
        ax.setTextPen(pg.mkPen(fg))
    title = plot.getPlotItem().titleLabel
    title.setText(title.text, color=fg.name())
    legend = plot.getPlotItem().legend
    if legend is not None:  # pyqtgraph's default grey, not the palette's text
        legend.setLabelTextColor(fg)  # for labels to come; those shown are redrawn:
        for _sample, label in legend.items:
            label.setText(label.text, color=fg)


# ---- small painted widgets ----------------------------------------------------------------


class WrappedLabel(QLabel):
    """Word-wrapped, without height-for-width: a wrapped label made the dock's scroll area
    size the whole panel by its height for the panel's width (at 1280×720 the results tab
    scrolled 174 px and cut the confusion matrix)."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setWordWrap(True)

    def hasHeightForWidth(self) -> bool:
        return False

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(hint.width(), max(hint.height(), self.heightForWidth(max(self.width(),
                                                                              200))))


class ElidedLabel(QLabel):
    """One line whatever the width: the text is elided ("…") when it does not fit, and the
    tooltip always has all of it. `full_text()` is the text as set."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._full = ""
        self.setMinimumWidth(10)
        self.setText(text)

    def setText(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()
        self.updateGeometry()

    def full_text(self) -> str:
        return self._full

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                              max(self.width(), 10))
        if shown != super().text():
            super().setText(shown)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._elide()

    def sizeHint(self):
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + 4,
                     super().sizeHint().height())

    def minimumSizeHint(self):
        return QSize(10, super().minimumSizeHint().height())



class SamplePreview(QWidget):
    """A few samples per class: one column per class (at most 10), its name on top, samples
    below. Cells grow with the width (16 to 40 px); the height follows (height-for-width), so
    nothing below it is ever drawn over."""

    ROWS = 3  # samples per class shown
    HEAD = 16  # class-name row

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[tuple[str, list]] = []  # (class name, images)
        self.max_rows = self.ROWS  # fewer in a low dock
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def set_data(self, x: np.ndarray, y: np.ndarray, classes: list[str], per_class: int = 3,
                 max_classes: int = 10) -> None:
        self.rows = []
        for k in range(min(max(len(classes), int(y.max()) + 1 if len(y) else 0), max_classes)):
            idx = np.flatnonzero(y == k)[:per_class]
            name = classes[k] if k < len(classes) else str(k)
            self.rows.append((name, [to_qimage(x[i]) for i in idx]))
        self.setToolTip("A few training images of each class" if self.rows else "")
        self.updateGeometry()
        self.update()

    def set_max_rows(self, n: int) -> None:
        if n != self.max_rows:
            self.max_rows = n
            self.updateGeometry()
            self.update()

    def _cell(self, width: int) -> int:
        return int(max(16, min(40, (width - 2) // max(len(self.rows), 1) - 2)))

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        if not self.rows:
            return 24
        n = min(self.max_rows, max(len(imgs) for _, imgs in self.rows))
        return self.HEAD + n * (self._cell(width) + 2) + 2

    def sizeHint(self):
        return QSize(300, self.heightForWidth(300))

    def minimumSizeHint(self):
        return QSize(120, self.heightForWidth(max(self.width(), 120)))

    def paintEvent(self, event):
        p = QPainter(self)
        p.setPen(self.palette().windowText().color())
        if not self.rows:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no data loaded")
            return
        cell = self._cell(self.width())
        fm = p.fontMetrics()
        x0 = max(0, (self.width() - len(self.rows) * (cell + 2)) // 2)
        for c, (name, imgs) in enumerate(self.rows):
            x = x0 + c * (cell + 2)
            p.drawText(QRectF(x - 1, 0, cell + 4, self.HEAD), Qt.AlignmentFlag.AlignCenter,
                       fm.elidedText(name, Qt.TextElideMode.ElideRight, cell + 4))
            for r, img in enumerate(imgs[:self.max_rows]):
                p.drawImage(QRectF(x, self.HEAD + r * (cell + 2), cell, cell), img)
        p.end()


class ConfusionMatrix(QWidget):
    """Counts of (true class, predicted class); cells shaded by their share of the row."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.matrix: np.ndarray | None = None
        self.names: list[str] = []
        self.setMinimumSize(200, 200)

    def set_matrix(self, m: np.ndarray | None, names: list[str] | None = None) -> None:
        self.matrix = m
        self.names = names or ([str(i) for i in range(len(m))] if m is not None else [])
        self.update()

    def _geometry(self) -> tuple[int, int, float, float]:
        """(left margin, top margin, side, cell): the matrix fills the widget's room."""
        k = len(self.matrix) if self.matrix is not None else 1
        margin_l, margin_t = 44, 30
        side = max(1, min(self.width() - margin_l - 8, self.height() - margin_t - 8))
        return margin_l, margin_t, side, side / max(k, 1)

    def count_font(self, cell: float) -> QFont | None:
        """The largest font (6 to 10 pt) in which the widest count fits a cell with a margin,
        or None: the counts are then hidden and read from the tooltip."""
        if self.matrix is None or not len(self.matrix):
            return None
        widest = str(int(self.matrix.max()))
        font = QFont(self.font())
        for size in (10.0, 9.0, 8.0, 7.0, 6.0):
            font.setPointSizeF(size)
            fm = QFontMetrics(font)
            if fm.horizontalAdvance(widest) <= cell - 4 and fm.height() <= cell - 2:
                return font
        return None

    def cell_at(self, pos) -> tuple[int, int] | None:
        """(true, predicted) class of the cell under the widget point `pos`, or None."""
        if self.matrix is None:
            return None
        margin_l, margin_t, _side, cell = self._geometry()
        j, i = math.floor((pos.x() - margin_l) / cell), math.floor((pos.y() - margin_t) / cell)
        k = len(self.matrix)
        return (i, j) if 0 <= i < k and 0 <= j < k else None

    def cell_text(self, i: int, j: int) -> str:
        m = self.matrix
        n, row = int(m[i, j]), int(m[i].sum())
        name = (lambda c: self.names[c] if c < len(self.names) else str(c))
        return (f"true {name(i)}, predicted {name(j)}: {n:,} of {row:,} "
                f"({n / max(row, 1):.1%})")

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:  # every cell's count, shown or not
            hit = self.cell_at(event.pos())
            if hit is None:
                QToolTip.hideText()
            else:
                QToolTip.showText(event.globalPos(), self.cell_text(*hit), self)
            return True
        return super().event(event)

    def cell_colors(self, diagonal: bool, share: float) -> tuple[QColor, QColor]:
        """(background, text) of a cell holding `share` of its row: the palette's base blended
        towards green (right) or red (wrong; a quarter of the row is full red), so a dark theme
        gets dark cells; the text black or white, whichever contrasts more."""
        base = self.palette().base().color()
        if diagonal:
            t, (r, g, b) = share, (0.25, 0.65, 0.25)
        else:
            t, (r, g, b) = min(1.0, 4 * share), (1.0, 0.2, 0.2)
        c = QColor.fromRgbF(base.redF() + (r - base.redF()) * t,
                            base.greenF() + (g - base.greenF()) * t,
                            base.blueF() + (b - base.blueF()) * t)
        white, black = QColor(255, 255, 255), QColor(0, 0, 0)
        return c, white if contrast_ratio(white, c) > contrast_ratio(black, c) else black

    def paintEvent(self, event):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        text_color = self.palette().windowText().color()
        if self.matrix is None:
            p.setPen(text_color)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "The confusion matrix appears after training.")
            return
        m = self.matrix
        k = len(m)
        margin_l, margin_t, side, cell = self._geometry()
        rows = m.sum(axis=1, keepdims=True).clip(min=1)
        share = m / rows
        font = self.count_font(cell)
        if font is not None:
            p.setFont(font)
        grid = self.palette().mid().color()
        for i in range(k):
            for j in range(k):
                r = QRectF(margin_l + j * cell, margin_t + i * cell, cell, cell)
                c, ink = self.cell_colors(i == j, float(share[i, j]))
                p.fillRect(r, c)
                p.setPen(QPen(grid, 0.5))
                p.drawRect(r)
                if m[i, j] and font is not None:
                    p.setPen(ink)
                    p.drawText(r, Qt.AlignmentFlag.AlignCenter, str(int(m[i, j])))
        p.setFont(self.font())
        p.setPen(text_color)
        step = max(1, math.ceil(12 / cell))
        for i in range(0, k, step):
            name = self.names[i] if i < len(self.names) else str(i)
            p.drawText(QRectF(0, margin_t + i * cell, margin_l - 4, cell),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, name)
            p.drawText(QRectF(margin_l + i * cell, margin_t - 16, cell, 16),
                       Qt.AlignmentFlag.AlignCenter, name)
        p.drawText(QRectF(margin_l, 0, side, 14), Qt.AlignmentFlag.AlignCenter,
                   "predicted →")
        p.save()
        p.translate(10, margin_t + side / 2)
        p.rotate(-90)
        p.drawText(QRectF(-40, -8, 80, 16), Qt.AlignmentFlag.AlignCenter, "true →")
        p.restore()
        p.end()


class Thumbnails(QWidget):
    """Worst-classified samples: the image, its true and predicted labels, the confidence."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.items: list[tuple] = []
        self.names: list[str] = []
        self.setMinimumHeight(120)

    def _grid(self, n: int) -> tuple[int, int, float]:
        """(shown, columns, image side): as many samples as fit with images of 28 px or more
        (else the biggest images possible), each with its two text lines below (32 px) and
        columns as wide as those lines: in a low dock fewer samples, never overlapping text."""
        width, height = self.width(), self.height()
        font = QFont(self.font())
        font.setPointSizeF(8)
        text_w = QFontMetrics(font).horizontalAdvance("99.7% sure") + 8  # labels never touch
        max_cols = max(1, int(width // text_w))
        fallback = None
        for shown in range(n, 0, -1):  # the most samples whose images are still readable
            side, cols = max((min(width / c - 12, height / math.ceil(shown / c) - 32, 96), c)
                             for c in range(1, min(shown, max_cols) + 1))
            if side >= 28:
                return shown, cols, side
            if fallback is None or side > fallback[2]:
                fallback = (shown, cols, side)
        return (fallback[0], fallback[1], max(16.0, fallback[2])) if fallback else (0, 1, 16.0)

    def set_items(self, worst: list[dict], names: list[str]) -> None:
        self.items = [(to_qimage(w["image"]), w) for w in worst]
        self.names = names
        self.update()

    def paintEvent(self, event):
        p = QPainter(self)
        p.setPen(self.palette().windowText().color())
        if not self.items:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "The worst-classified samples appear after training.")
            return
        n, cols, img_side = self._grid(len(self.items))
        cw = self.width() / cols
        ch = img_side + 32
        font = QFont(self.font())
        font.setPointSizeF(8)
        p.setFont(font)
        for i, (img, w) in enumerate(self.items[:n]):
            r, c = divmod(i, cols)
            x0, y0 = c * cw, r * ch
            p.drawImage(QRectF(x0 + (cw - img_side) / 2, y0 + 2, img_side, img_side), img)
            name = (lambda k: self.names[k] if k < len(self.names) else str(k))
            ok = w["true"] == w["pred"]
            p.setPen(QColor(46, 125, 50) if ok else QColor(198, 40, 40))
            p.drawText(QRectF(x0, y0 + img_side + 3, cw, 14), Qt.AlignmentFlag.AlignCenter,
                       f"{name(w['true'])} → {name(w['pred'])}")
            p.setPen(self.palette().windowText().color())
            p.drawText(QRectF(x0, y0 + img_side + 16, cw, 14), Qt.AlignmentFlag.AlignCenter,
                       f"{w['confidence']:.1%} sure" if w["confidence"] > 0.995
                       else f"{w['confidence']:.0%} sure")
        p.end()


# ---- the panel ----------------------------------------------------------------------------


class FixedHeightLabel(QLabel):
    """A word-wrapped label of fixed height that does not report height-for-width: below the
    settings it would otherwise make the panel ask for its tall preferred height, and the
    dock would scroll the Train button out of view."""

    def hasHeightForWidth(self) -> bool:
        return False


class TrainingPanel(FitsItsRoom, QWidget):
    """Train the document's network on a dataset, watch it learn, keep the weights.

    The widgets, plots and layout are here; the data, the runs and the document's weights and
    history are the TrainingSession's (`session`), whose signals this panel shows."""

    data_loaded = Signal()
    training_started = Signal()
    progress_updated = Signal()  # after curves / progress were redrawn
    training_finished = Signal(object)  # TrainResult, or None when training failed

    def __init__(self, doc, parent: QWidget | None = None, load: bool = True):
        """`load` False skips loading the default data (tests and benchmarks call
        set_dataset)."""
        super().__init__(parent)
        self.doc = doc
        self.session = TrainingSession(doc, self, self)
        self.result: TrainResult | None = None
        self.snapshots: list[Snapshot] = []
        self.watch_node: str | None = None
        self.n_updates = 0
        self._autoload = load
        self._reset_curves()
        self._build()
        s = self.session
        s.data_info_changed.connect(self.data_info.setText)
        s.data_loaded.connect(self._on_data_loaded)
        s.data_failed.connect(self._on_data_failed)
        s.data_checked.connect(self._show_check)
        s.status_changed.connect(self.status.setText)
        s.state_changed.connect(self._update_buttons)
        s.run_started.connect(self._on_run_started)
        s.batch_finished.connect(self.on_batch)
        s.epoch_finished.connect(self.on_epoch)
        s.snapshot_taken.connect(self.on_snapshot)
        s.run_finished.connect(self.on_finished)
        s.run_discarded.connect(self._on_run_discarded)
        s.run_failed.connect(self.on_failed)
        doc.validated.connect(self._on_validated)
        doc.locked_changed.connect(self._update_buttons)
        doc.graph_reset.connect(self._on_graph_reset)
        self._on_source_changed()
        self._on_optimizer()
        self._on_validated()
        if load:
            self.load_data()

    # -- what the session reads and does (SessionForm) --
    def data_request(self) -> DataRequest:
        return DataRequest(self.source.currentData(), self.data_spec(), self.limit.value())

    def config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs.value(), batch_size=self.batch_size.value(),
                           optimizer=self.optimizer.currentData(), lr=self.lr.value(),
                           momentum=self.momentum.value(),
                           weight_decay=self.weight_decay.value(), seed=self.seed.value(),
                           val_split=self.val_split.value() / 100,
                           schedule=self.schedule.currentData())

    def watched_node(self) -> str | None:
        self.watch_node = self.watch_combo.currentData() or self.watch_node
        return self.watch_node

    @property
    def dataset(self):
        """The loaded engine DataBundle, or None."""
        return self.session.dataset

    @property
    def mismatch_messages(self) -> list[Message]:
        return self.session.messages

    @property
    def worker(self) -> TrainWorker | None:
        return self.session.worker

    @property
    def training(self) -> bool:
        return self.session.training

    @property
    def waiting_for_data(self) -> bool:
        return self.session.waiting_for_data

    @property
    def data_current(self) -> bool:
        """True when the loaded data is what the fields show: only then does Train start at
        once."""
        return self.session.data_current

    def data_spec(self) -> str:
        return "mnist" if self.source.currentData() == "mnist" else self.path.text().strip()

    def set_dataset(self, bundle, key=None) -> None:
        """Use an already loaded engine DataBundle (or Dataset) as the training data."""
        n = len(bundle.train if isinstance(bundle, engine_data.DataBundle) else bundle)
        self.limit.blockSignals(True)
        self.limit.setValue(n)
        self.limit.blockSignals(False)
        self.session.set_dataset(bundle, key)

    def load_data(self, *_) -> None:
        """Load the chosen data in a worker thread (then preview and check it)."""
        self.session.load_data()

    def check_data(self) -> list[Message]:
        """Compare the data with the network; show the problems with the fix to apply."""
        return self.session.check_data()

    def apply_fix(self) -> bool:
        """Apply the first offered fix through the undo stack."""
        return self.session.apply_fix()

    def start_training(self) -> bool:
        """Start training (or, when other data is loading, as soon as it is loaded). Returns
        False (with the reason in the status line) if it can't."""
        return self.session.start()

    def toggle_pause(self) -> None:
        self.session.toggle_pause()

    def stop_training(self) -> None:
        self.session.stop()

    # -- layout --
    def _build(self) -> None:
        # data
        data_box = QGroupBox("Data")
        self.data_form = df = QFormLayout(data_box)
        self.source = QComboBox()
        for key, text in SOURCES:
            self.source.addItem(text, key)
        self.path = QLineEdit()
        self.path.setPlaceholderText("folder or file")
        self.browse = QPushButton("…")
        self.browse.setFixedWidth(30)
        prow = QHBoxLayout()
        prow.addWidget(self.path, 1)
        prow.addWidget(self.browse)
        self.limit = QSpinBox()
        self.limit.setRange(0, 10_000_000)
        self.limit.setSingleStep(1000)
        self.limit.setValue(10000)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("Use only the first N images of each split (0 = all): quick "
                              "experiments first.")
        defaults = TrainConfig()  # the one set of defaults, the command line's too
        self.val_split = QSpinBox()
        self.val_split.setRange(0, 50)
        self.val_split.setValue(round(defaults.val_split * 100))
        self.val_split.setSuffix(" %")
        self.data_info = QLabel("loading…")
        self.data_info.setWordWrap(True)
        self.preview = SamplePreview()
        self.check_label = QLabel()
        self.check_label.setWordWrap(True)
        self.check_label.setTextFormat(Qt.TextFormat.RichText)
        self.fix_button = QPushButton("Apply the fix")
        self.fix_button.setVisible(False)
        df.addRow("Source", self.source)
        df.addRow("Path", prow)
        df.addRow("Images", self.limit)
        df.addRow("Validation", self.val_split)
        df.addRow(self.data_info)
        df.addRow(self.preview)
        df.addRow(self.check_label)
        df.addRow(self.fix_button)

        # hyperparameters
        hp_box = QGroupBox("Hyperparameters")
        self.hp_form = hf = QFormLayout(hp_box)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(defaults.epochs)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 8192)
        self.batch_size.setValue(defaults.batch_size)
        self.optimizer = QComboBox()
        self.optimizer.addItem("Adam", "adam")
        self.optimizer.addItem("SGD with momentum", "sgd")
        self.optimizer.setCurrentIndex(self.optimizer.findData(defaults.optimizer))
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 10.0)
        self.lr.setSingleStep(0.0005)
        self.lr.setValue(defaults.effective_lr)
        self.momentum = QDoubleSpinBox()
        self.momentum.setRange(0.0, 0.999)
        self.momentum.setSingleStep(0.05)
        self.momentum.setValue(defaults.momentum)
        self.weight_decay = QDoubleSpinBox()
        self.weight_decay.setDecimals(6)
        self.weight_decay.setRange(0.0, 1.0)
        self.weight_decay.setSingleStep(0.0001)
        self.weight_decay.setValue(defaults.weight_decay)
        self.schedule = QComboBox()
        self.schedule.addItem("Cosine annealing", "cosine")
        self.schedule.addItem("Constant", "constant")
        self.schedule.setCurrentIndex(self.schedule.findData(defaults.schedule))
        self.schedule.setToolTip("How the learning rate changes over the run: cosine annealing "
                                 "takes smaller steps at the end, which usually adds accuracy.")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(defaults.seed)
        self.frozen_label = QLabel()
        self.frozen_label.setWordWrap(True)
        self.frozen_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        hf.addRow("Epochs", self.epochs)
        hf.addRow("Batch size", self.batch_size)
        hf.addRow("Optimizer", self.optimizer)
        hf.addRow("Learning rate", self.lr)
        hf.addRow("Momentum", self.momentum)
        hf.addRow("Weight decay", self.weight_decay)
        hf.addRow("LR schedule", self.schedule)
        hf.addRow("Seed", self.seed)
        hf.addRow(self.frozen_label)

        # buttons and progress
        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        brow = QHBoxLayout()
        for b in (self.train_button, self.pause_button, self.stop_button):
            brow.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.status = FixedHeightLabel("Ready.")
        self.status.setWordWrap(True)
        # a fixed height: new text never re-lays out the panel (that repaints every plot)
        self.status.setFixedHeight(self.status.fontMetrics().lineSpacing() * 2 + 4)
        self.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

        self.controls = QWidget()
        cl = QVBoxLayout(self.controls)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(4)
        cl.addLayout(brow)
        cl.addWidget(self.progress)
        cl.addWidget(self.status)
        self.data_box, self.hp_box = data_box, hp_box
        left = QWidget()
        # one column (tall docks), or Data | Hyperparameters with the buttons below both
        # (a wide, low bottom dock): _place_settings
        self.settings_grid = QGridLayout(left)
        self.settings_grid.setContentsMargins(0, 0, 4, 0)
        self.settings_grid.setVerticalSpacing(4)
        self.settings_columns = 0
        # the settings scroll on their own when the panel is wide and short (a bottom dock);
        # in a narrow dock they take their full height above the curves
        self.settings_scroll = QScrollArea()
        self.settings_scroll.setWidgetResizable(True)
        self.settings_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.settings_scroll.setWidget(left)
        for w in (self.source, self.path, self.limit, self.val_split, self.epochs,
                  self.batch_size, self.optimizer, self.lr, self.momentum, self.weight_decay,
                  self.schedule, self.seed):
            w.setMinimumWidth(90)  # combo boxes and spin boxes shrink with a narrow dock
        shrink = QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        for combo in (self.source, self.optimizer, self.schedule):
            combo.setSizeAdjustPolicy(shrink)
            combo.setMinimumContentsLength(8)
        for form in (df, hf):
            form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for b in (self.train_button, self.pause_button, self.stop_button):
            b.setMinimumWidth(60)

        # curves + timeline
        blue, orange = (40, 110, 200), (230, 120, 40)
        # the key sits in the title line, out of the data: a legend box inside the plot
        # covered the curves it names
        key = (f"&nbsp;&nbsp;<span style='color:rgb{blue}'>━&nbsp;training</span>&nbsp; "
               f"<span style='color:rgb{orange}'>●&nbsp;validation</span>")
        self.loss_plot = pg.PlotWidget()
        self.acc_plot = pg.PlotWidget()
        for plot, name in ((self.loss_plot, "loss"), (self.acc_plot, "accuracy")):
            plot.setTitle(name + key, size="8pt")  # small: it fits a 190 px plot
        for plot in (self.loss_plot, self.acc_plot):
            style_plot(plot, self)
            # no grid: the axes draw it across the plot, so every curve update would repaint
            # (and re-draw the text of) both axes
            plot.setLabel("bottom", "epoch")
            plot.setMenuEnabled(False)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        self.train_loss_curve = self.loss_plot.plot(pen=pg.mkPen(blue, width=2), name="training")
        self.val_loss_curve = self.loss_plot.plot(pen=pg.mkPen(orange, width=2), symbol="o",
                                                  symbolSize=7, symbolBrush=orange,
                                                  name="validation")
        self.train_acc_curve = self.acc_plot.plot(pen=pg.mkPen(blue, width=2), name="training")
        self.val_acc_curve = self.acc_plot.plot(pen=pg.mkPen(orange, width=2), symbol="o",
                                                symbolSize=7, symbolBrush=orange,
                                                name="validation")
        self.epoch_lines = []
        for plot in (self.loss_plot, self.acc_plot):
            line = pg.InfiniteLine(angle=90, pen=pg.mkPen((120, 120, 120), style=Qt.PenStyle
                                                          .DashLine))
            line.setVisible(False)
            plot.addItem(line)
            self.epoch_lines.append(line)

        timeline = QGroupBox("Timeline: what the network learned")
        timeline.setToolTip("The first convolution's filters and one layer's feature maps of a "
                            "fixed image, before training and after each epoch.")
        tl = QGridLayout(timeline)
        self.filters_title = ElidedLabel("filters of the first convolution")
        self.maps_title = QLabel("feature maps of")
        self.watch_combo = QComboBox()
        self.watch_combo.setToolTip("The layer whose feature maps of one fixed validation image "
                                    "the timeline shows.")
        self.filters_view, self.filters_vb, self.filters_img = image_view()
        self.filters_view.setToolTip("The first convolution's filters (averaged over input "
                                     "channels): blue negative, red positive.")
        self.maps_view, self.maps_vb, self.maps_img = image_view()
        self.sample_view, self.sample_vb, self.sample_img = image_view()
        self.sample_view.setMaximumWidth(90)
        for w in (self.filters_view, self.maps_view, self.sample_view):
            w.setMinimumSize(60, 90)
        self.watch_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.watch_combo.setMinimumContentsLength(6)
        self.filters_title.setMinimumWidth(10)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider_label = QLabel("before training")
        self.slider_label.setMinimumWidth(self.slider_label.fontMetrics()
                                          .horizontalAdvance("after epoch 1000") + 4)
        mrow = QHBoxLayout()
        mrow.addWidget(self.maps_title)
        mrow.addWidget(self.watch_combo, 1)
        tl.addLayout(mrow, 0, 0, 1, 3)
        tl.addWidget(self.filters_title, 1, 0)
        tl.addWidget(QLabel("maps"), 1, 1)
        tl.addWidget(QLabel("image"), 1, 2)
        tl.addWidget(self.filters_view, 2, 0)
        tl.addWidget(self.maps_view, 2, 1)
        tl.addWidget(self.sample_view, 2, 2)
        srow = QHBoxLayout()
        srow.addWidget(QLabel("epoch"))
        srow.addWidget(self.slider, 1)
        srow.addWidget(self.slider_label)
        tl.addLayout(srow, 3, 0, 1, 3)
        tl.setColumnStretch(0, 2)
        tl.setColumnStretch(1, 3)

        curves = QWidget()
        cl = QVBoxLayout(curves)
        cl.setContentsMargins(0, 0, 0, 0)
        self.plots = plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.acc_plot)
        self.curves_split = vs = QSplitter(Qt.Orientation.Vertical)
        vs.setChildrenCollapsible(False)
        vs.addWidget(plots)
        vs.addWidget(timeline)
        vs.setStretchFactor(0, 3)
        vs.setStretchFactor(1, 2)
        cl.addWidget(vs)

        results = QWidget()
        rl = QVBoxLayout(results)
        self.result_label = WrappedLabel(NO_RESULT_TEXT)
        self.result_label.setWordWrap(True)
        self.result_label.setTextFormat(Qt.TextFormat.RichText)
        self.confusion = ConfusionMatrix()
        self.worst = Thumbnails()
        worst_title = WrappedLabel("<b>Worst-classified samples</b> (lowest probability for the true "
                             "class)")
        worst_title.setWordWrap(True)
        conf_box, worst_box = QWidget(), QWidget()
        for box, title, w in ((conf_box, QLabel("<b>Confusion matrix</b>"), self.confusion),
                              (worst_box, worst_title, self.worst)):
            bl = QVBoxLayout(box)
            bl.setContentsMargins(0, 0, 0, 0)
            bl.addWidget(title)
            bl.addWidget(w, 1)
        # side by side when wide, stacked when narrow (_fit_orientation)
        self.results_row = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self.results_row.addWidget(conf_box, 1)
        self.results_row.addWidget(worst_box, 1)
        rl.addWidget(self.result_label)
        rl.addLayout(self.results_row, 1)

        self.tabs = QTabWidget()
        self.tabs.addTab(curves, "Curves && timeline")
        self.tabs.addTab(results, "Results")
        self.timeline, self.results_tab = timeline, results
        self._timeline_title = timeline.title()
        self.timeline_tab = False  # its own tab when a low dock leaves the curves little width

        self.left = left
        self.narrow: bool | None = None
        self.short = False  # a wide, low dock (bottom): plots and timeline side by side
        self.outer = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self.outer.setContentsMargins(4, 4, 4, 4)
        # the settings' column: in a low dock the buttons, progress and status sit under the
        # scrolled settings, always in view (_place_settings)
        self.side = QWidget()
        side = QVBoxLayout(self.side)
        side.setContentsMargins(0, 0, 0, 0)
        side.setSpacing(4)
        side.addWidget(self.settings_scroll, 1)
        self.outer.addWidget(self.side)
        self.outer.addWidget(self.tabs, 1)
        self.tabs.setMinimumWidth(280)
        self._place_settings(1)
        self._apply_orientation(False)
        self._apply_short(False)

        self.source.currentIndexChanged.connect(self._on_source_changed)
        self.browse.clicked.connect(self._browse)
        self.path.editingFinished.connect(self._on_data_edited)
        self.limit.editingFinished.connect(self._on_data_edited)
        self.optimizer.currentIndexChanged.connect(self._on_optimizer)
        self.train_button.clicked.connect(self.start_training)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop_training)
        self.fix_button.clicked.connect(self.apply_fix)
        self.slider.valueChanged.connect(self._show_snapshot)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.watch_combo.currentIndexChanged.connect(self._on_watch_changed)

    # -- data --
    def _on_data_edited(self) -> None:
        self.session.data_edited()

    def _on_source_changed(self, *_) -> None:
        key = self.source.currentData()
        self.path.setEnabled(key != "mnist")
        self.browse.setEnabled(key != "mnist")
        if key == "mnist" and self._autoload:
            self.load_data()

    def _browse(self) -> None:
        key = self.source.currentData()
        if key == "npz":
            path, _ = QFileDialog.getOpenFileName(self, "Open a dataset", "", "NumPy (*.npz)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose the data folder")
        if path:
            self.path.setText(path)
            self.load_data()

    def _on_data_loaded(self, bundle) -> None:
        tr = bundle.train
        c, h, w = tr.x.shape[1:]
        test = f", {len(bundle.test):,} test" if bundle.test is not None else ""
        self.data_info.setText(f"{tr.name or 'data'}: {len(tr):,} training images{test}, "
                               f"{c}×{h}×{w}, {bundle.num_classes} classes")
        self.preview.set_data(tr.x[:2000], tr.y[:2000], bundle.classes)
        self.data_loaded.emit()

    def _on_data_failed(self, text: str) -> None:
        red = severity_hex("error", self)
        self.data_info.setText(f"<span style='color:{red}'>{text}</span>")
        self.preview.set_data(np.zeros((0, 1, 1, 1)), np.zeros(0, np.int64), [])

    def _show_check(self) -> None:
        """The data's mismatches, each in its severity's colour, and the first fix's button."""
        messages = self.session.messages
        if not messages:
            green = severity_hex("ok", self)
            self.check_label.setText(f"<span style='color:{green}'>✔ the data fits the "
                                     "network</span>")
        else:
            lines = [f"<span style='color:{severity_hex(m.severity, self)}'>"
                     f"{'✖' if m.severity == ERROR else '⚠'} {m.text}</span>"
                     for m in messages]
            self.check_label.setText("<br>".join(lines))
        fix = self.session.first_fix()
        self.fix_button.setVisible(fix is not None)
        if fix is not None:
            self.fix_button.setText(f"Fix: {fix.label}")
        self._update_buttons()

    def _on_validated(self, *_) -> None:
        frozen = [n.name for n in self.doc.graph.nodes.values()
                  if not n.trainable and n.type_name not in ("Input",)]
        self.frozen_label.setText(f"Frozen (skipped by the optimizer): {', '.join(frozen)}"
                                  if frozen else "")
        self.hp_form.setRowVisible(self.frozen_label, bool(frozen))  # no empty row
        self._refresh_watch_combo()
        self._update_buttons()

    def _on_graph_reset(self) -> None:
        """Another network was opened: the results on show belong to the old one (they are
        replaced by the new document's saved history, if any). A running training is
        discarded by the session; its end clears them then."""
        if not self.training:
            self.clear_results()
            self.status.setText("Ready.")
        self._on_validated()

    def clear_results(self) -> None:
        """Forget the shown run: curves, timeline, progress, accuracy, confusion matrix and
        worst samples. The document's saved history (an opened project's), if any, is shown
        instead: its per-epoch curves and final accuracy."""
        self.result = None
        self._reset_curves()
        self.snapshots = []
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.blockSignals(False)
        self.slider.setEnabled(False)
        self.slider_label.setText("before training")
        for line in self.epoch_lines:
            line.setVisible(False)
        for img in (self.filters_img, self.maps_img, self.sample_img):
            img.clear()
        self.filters_title.setText("first conv layer's filters")
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.confusion.set_matrix(None)
        self.worst.set_items([], [])
        # by the tab, not its index: a low dock puts the timeline at index 1
        self.tabs.setTabText(self.tabs.indexOf(self.results_tab), "Results")
        self.tabs.setCurrentIndex(0)  # another project: its curves, not the old results
        self.result_label.setText(NO_RESULT_TEXT)
        self._show_saved_history(self.doc.history)

    def _show_saved_history(self, hist: dict | None) -> None:
        """Per-epoch curves and the final figures of a run saved with the project."""
        if not isinstance(hist, dict):  # none, or a hand-edited file's odd value: nothing
            hist = {}
        epochs = hist.get("epochs")
        if not isinstance(epochs, list):
            epochs = []
        try:
            t = [float(e["epoch"]) for e in epochs]
            loss = [float(e["train_loss"]) for e in epochs]
            acc = [float(e["train_accuracy"]) for e in epochs]
            val = [(float(e["epoch"]), float(e["val_loss"]), float(e["val_accuracy"]))
                   for e in epochs if e.get("val_loss") is not None]
        except (AttributeError, KeyError, TypeError, ValueError):
            return  # an unreadable history: nothing to show
        for plot in (self.loss_plot, self.acc_plot):
            plot.enableAutoRange(x=True, y=plot is self.loss_plot)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        if t:
            self.train_loss_curve.setData(t, loss)
            self.train_acc_curve.setData(t, acc)
        if val:
            ve, vl, va = zip(*val)
            self.val_loss_curve.setData(list(ve), list(vl))
            self.val_acc_curve.setData(list(ve), list(va))
        ev = hist.get("eval_accuracy")
        if isinstance(ev, (int, float)):
            name = str(hist.get("eval_set") or "test")
            loss_txt = (f" · loss {hist['eval_loss']:.4f}"
                        if isinstance(hist.get("eval_loss"), (int, float)) else "")
            self.result_label.setText(
                f"<b>{name.capitalize()} accuracy {ev:.2%}</b>{loss_txt} (saved with the "
                f"project, after {len(epochs)} epoch{'s' * (len(epochs) != 1)}). Train again to "
                f"see the confusion matrix and the worst-classified samples.")

    def _on_optimizer(self, *_) -> None:
        """The learning rate follows the optimizer while it is the other one's default."""
        sgd = self.optimizer.currentData() == "sgd"
        self.momentum.setEnabled(sgd)
        new, other = ("sgd", "adam") if sgd else ("adam", "sgd")
        if abs(self.lr.value() - DEFAULT_LR[other]) < 1e-12:
            self.lr.setValue(DEFAULT_LR[new])


    # -- training --
    def _update_buttons(self, *_) -> None:
        busy = self.training
        waiting = self.session.waiting_for_data
        v = self.doc.validation
        fatal = not self.session.data_fits
        # Train stays enabled while data loads (a click then waits for it): the data shown is
        # the data trained on
        has_data = self.dataset is not None or self.session.loading
        can = (not busy and not waiting and has_data and v.ok and not fatal
               and self.doc.locked_reason is None)
        self.train_button.setEnabled(can)
        self.pause_button.setEnabled(busy)
        self.pause_button.setText("Resume" if self.session.paused else "Pause")
        self.stop_button.setEnabled(busy or waiting)
        for w in (self.source, self.path, self.browse, self.limit, self.val_split, self.epochs,
                  self.batch_size, self.optimizer, self.lr, self.weight_decay, self.schedule,
                  self.seed):
            w.setEnabled(not busy and (w not in (self.path, self.browse)
                                       or self.source.currentData() != "mnist"))
        self.momentum.setEnabled(not busy and self.optimizer.currentData() == "sgd")
        if self.narrow:
            self._fit_settings_height()  # texts above may have changed their height
        if not busy:
            if not v.ok:
                self.train_button.setToolTip(f"The graph has {len(v.errors)} problem(s): fix "
                                             f"them first (Problems panel).")
            elif fatal:
                self.train_button.setToolTip("The data does not fit the network: apply the "
                                             "fix below.")
            else:
                self.train_button.setToolTip("Train the network on the data.")

    def _on_run_started(self, run: Run) -> None:
        """Empty curves with fixed ranges, the timeline's fixed image."""
        self._reset_curves()
        for plot in (self.loss_plot, self.acc_plot):
            # fixed ranges: the axes are not re-laid out and re-drawn at every update
            plot.enableAutoRange(x=False, y=False)
            plot.setXRange(0, run.config.epochs, padding=0.02)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        self._loss_top = None
        self.snapshots = []
        self.slider.setRange(0, 0)
        sample = run.sample
        self.sample_img.setImage(sample[0].transpose(1, 2, 0) if sample.shape[1] == 3
                                 else sample[0, 0], levels=(0, 1))
        self.sample_vb.autoRange(padding=0.02)
        self.training_started.emit()

    def on_batch(self, rep: BatchReport) -> None:
        step = (rep.epoch - 1) * rep.batches + rep.batch
        self.progress.setValue(int(1000 * step / max(1, rep.epochs * rep.batches)))
        self.progress.setFormat(f"epoch {rep.epoch}/{rep.epochs} · batch {rep.batch}/"
                                f"{rep.batches}")
        if not self.session.paused:
            self.status.setText(f"Epoch {rep.epoch}/{rep.epochs} · batch {rep.batch}/"
                                f"{rep.batches} · {rep.images_per_s:,.0f} images/s · "
                                f"{fmt_seconds(rep.seconds_left)} left")
        # The report's accuracy is the running mean of the epoch so far; plot the accuracy of
        # the batches since the last report instead, smoothed like the loss (exponential
        # moving average over batches), so the curve does not jump at epoch boundaries.
        run = self.session.run
        seen = min(rep.batch * run.config.batch_size, run.n_train)
        c = self._curve
        if c["epoch"] == rep.epoch and seen > c["seen"]:
            acc = (rep.accuracy * seen - c["correct"]) / (seen - c["seen"])
            nb = step - c["step"]
        else:
            acc, nb = rep.accuracy, rep.batch
        a = 1 - 0.9 ** max(nb, 1)
        c["ema_loss"] = rep.loss if c["ema_loss"] is None else (1 - a) * c["ema_loss"] + a * rep.loss
        c["ema_acc"] = acc if c["ema_acc"] is None else (1 - a) * c["ema_acc"] + a * acc
        c.update(epoch=rep.epoch, seen=seen, correct=rep.accuracy * seen, step=step)
        c["t"].append(rep.epoch - 1 + rep.batch / rep.batches)
        c["loss"].append(c["ema_loss"])
        c["acc"].append(c["ema_acc"])
        self.train_loss_curve.setData(self._curve["t"], self._curve["loss"])
        self.train_acc_curve.setData(self._curve["t"], self._curve["acc"])
        top = max(c["ema_loss"], rep.loss) if c["ema_loss"] is not None else rep.loss
        if self._loss_top is None or top > self._loss_top:
            self._loss_top = top * 1.15  # grows in steps, rarely
            self.loss_plot.setYRange(0, self._loss_top, padding=0.02)
        self.n_updates += 1
        self.progress_updated.emit()

    def on_epoch(self, rep: EpochReport, snap: Snapshot) -> None:
        if rep.val_loss is not None:
            self._curve["ve"].append(rep.epoch)
            self._curve["vloss"].append(rep.val_loss)
            self._curve["vacc"].append(rep.val_accuracy)
            self.val_loss_curve.setData(self._curve["ve"], self._curve["vloss"])
            self.val_acc_curve.setData(self._curve["ve"], self._curve["vacc"])
        # once per epoch: fit the loss axis to what the curves now show
        shown = [v for v in self._curve["loss"] + self._curve["vloss"] if math.isfinite(v)]
        if shown:
            self._loss_top = max(shown) * 1.05
            self.loss_plot.setYRange(0, self._loss_top, padding=0.02)
        self.on_snapshot(snap)

    def on_snapshot(self, snap: Snapshot) -> None:
        follow = self.slider.value() == self.slider.maximum()
        self.snapshots.append(snap)
        self.slider.setEnabled(len(self.snapshots) > 1)
        self.slider.setRange(0, len(self.snapshots) - 1)
        if follow or len(self.snapshots) == 1:
            self.slider.setValue(len(self.snapshots) - 1)
            self._show_snapshot(len(self.snapshots) - 1)

    def on_finished(self, result: TrainResult) -> None:
        """The run ended and its weights and history are in the document: the results."""
        self.result = result
        h = result.history
        names = self.dataset.classes if self.dataset is not None else []
        if h.stopped == "cancelled":
            done = len(h.epochs)
            self.status.setText(f"Stopped after {done} full epoch{'s' * (done != 1)} "
                                f"({result.batches_run} batches); the weights were kept.")
        elif h.stopped:
            red = severity_hex("error", self)
            self.status.setText(f"<span style='color:{red}'>{h.stopped}</span>")
        else:
            self.progress.setValue(1000)
            self.status.setText(f"Done in {fmt_seconds(h.seconds)}; the weights are kept in "
                                f"the project.")
        if result.eval_accuracy is not None:
            self.progress.setFormat(f"{result.eval_name} accuracy {result.eval_accuracy:.2%}")
            n_eval = int(result.confusion.sum()) if result.confusion is not None else 0
            last = h.epochs[-1] if h.epochs else None
            train_txt = (f" · training accuracy {last.train_accuracy:.2%}" if last else "")
            self.result_label.setText(
                f"<span style='font-size:15pt'><b>{result.eval_name.capitalize()} accuracy "
                f"{result.eval_accuracy:.2%}</b></span> on {n_eval:,} images it never trained "
                f"on · loss {result.eval_loss:.4f}{train_txt}")
            self.confusion.set_matrix(result.confusion, names)
            self.worst.set_items(result.worst, names)
            self.tabs.setTabText(self.tabs.indexOf(self.results_tab), "Results ●")
        self.training_finished.emit(result)

    def _on_run_discarded(self) -> None:
        self.clear_results()
        self.status.setText("Training stopped: another network was opened; its weights "
                            "were not kept.")
        self.training_finished.emit(None)

    def on_failed(self, text: str) -> None:
        red = severity_hex("error", self)
        self.status.setText(f"<span style='color:{red}'>Training failed: {text}</span>")
        self.training_finished.emit(None)

    # -- curves and timeline --
    def _reset_curves(self) -> None:
        self._curve = {"t": [], "loss": [], "acc": [], "ve": [], "vloss": [], "vacc": [],
                       "epoch": 0, "seen": 0, "correct": 0.0, "step": 0, "ema_loss": None,
                       "ema_acc": None}
        for name in ("train_loss_curve", "val_loss_curve", "train_acc_curve", "val_acc_curve"):
            if hasattr(self, name):
                getattr(self, name).setData([], [])
        self.n_updates = 0

    def set_node(self, node_id: str | None) -> None:
        """Follow the canvas selection: its feature maps are the ones the timeline shows."""
        i = self.watch_combo.findData(node_id) if node_id else -1
        if i >= 0:
            self.watch_combo.setCurrentIndex(i)

    def _refresh_watch_combo(self) -> None:
        v = self.doc.validation
        current = self.watch_combo.currentData() or self.watch_node
        self.watch_combo.blockSignals(True)
        self.watch_combo.clear()
        for nid in v.order:
            res = v.nodes.get(nid)
            node = self.doc.graph.nodes.get(nid)
            if node is None or res is None or node.type_name == "Input":
                continue
            if res.out_shape is not None and len(res.out_shape) == 3:
                self.watch_combo.addItem(f"{node.name} ({'×'.join(map(str, res.out_shape))})",
                                         nid)
        if current is None:
            # default: the first ReLU after the first convolution, else the first map layer
            for i in range(self.watch_combo.count()):
                nid = self.watch_combo.itemData(i)
                if self.doc.graph.nodes[nid].type_name == "ReLU":
                    current = nid
                    break
        i = self.watch_combo.findData(current)
        self.watch_combo.setCurrentIndex(max(i, 0))
        self.watch_combo.blockSignals(False)
        self.watch_node = self.watch_combo.currentData()

    def _on_watch_changed(self, *_) -> None:
        self.watch_node = self.watch_combo.currentData()
        self.session.set_watch_node(self.watch_node)
        self._show_snapshot(self.slider.value())

    def _show_snapshot(self, i: int) -> None:
        if not (0 <= i < len(self.snapshots)):
            return
        snap = self.snapshots[i]
        self.slider_label.setText("before training" if snap.epoch == 0
                                  else f"after epoch {snap.epoch}")
        for line in self.epoch_lines:
            line.setValue(snap.epoch)
            line.setVisible(True)
        if snap.filters is not None:
            w = snap.filters
            tiles = (w.mean(axis=1) if w.shape[1] > 1 else w[:, 0])[:64]
            self.filters_img.setImage(mosaic(tiles, lookup_table(DIVERGING_CMAP, True),
                                             symmetric=True))
            self.filters_vb.autoRange(padding=0.02)
            name = self.doc.graph.nodes.get(snap.filters_node)
            self.filters_title.setText(f"filters of {name.name if name else snap.filters_node}"
                                       f" ({len(w)})")
        if snap.maps is not None:
            maps = snap.maps if snap.maps.ndim == 3 else snap.maps.reshape(1, 1, -1)
            self.maps_img.setImage(mosaic(maps[:64], lookup_table(MAP_CMAP, True),
                                          per_tile=False))
            self.maps_vb.autoRange(padding=0.02)
        else:
            self.maps_img.clear()

    def _fit_orientation(self) -> None:
        """Narrow dock (< 760 px): settings above the curves, plots and results stacked, the
        panel as tall as its content (the dock scrolls). Wide dock (a bottom dock, or a wide
        side dock): settings in a scrolled column beside the tabs, which take any height."""
        parent = self.parentWidget()
        room = parent.width() if parent is not None and parent.isVisible() else self.width()
        narrow = room < 760
        if narrow != self.narrow:
            self._apply_orientation(narrow)
        tall = parent.height() if parent is not None and parent.isVisible() else self.height()
        short = not narrow and tall < 480
        if short != self.short:
            self._apply_short(short)
        self._place_timeline(short and room - self.settings_scroll.maximumWidth() < 800)
        if narrow:
            self._fit_settings_height()

    def _place_timeline(self, own_tab: bool) -> None:
        """In a low dock that leaves the curves less than ~800 px, the timeline gets a tab of
        its own instead of squeezing the plots; otherwise it sits beside / below them."""
        if own_tab == self.timeline_tab:
            return
        self.timeline_tab = own_tab
        current = self.tabs.currentWidget()
        if own_tab:
            self.timeline.setTitle("")
            self.timeline.setFlat(True)
            self.tabs.insertTab(1, self.timeline, "Timeline")
            self.tabs.setTabText(0, "Curves")
            self.tabs.setTabToolTip(1, self.timeline.toolTip())
        else:
            i = self.tabs.indexOf(self.timeline)
            self.tabs.removeTab(i)
            self.timeline.setTitle(self._timeline_title)
            self.timeline.setFlat(False)
            self.curves_split.addWidget(self.timeline)
            self.timeline.show()
            if self.short:  # plots ~60 %, timeline ~40 % of the width
                self.curves_split.setSizes([640, 360])
            self.tabs.setTabText(0, "Curves && timeline")
            if current is self.timeline:
                current = self.tabs.widget(0)
        self.tabs.setCurrentWidget(current)
        self._size_by_current_tab()

    def _apply_short(self, short: bool) -> None:
        """A low dock: the timeline goes beside the plots instead of under them, and the
        results' pictures may get smaller."""
        self.short = short
        self._place_settings(2 if short else 1)
        self.curves_split.setOrientation(Qt.Orientation.Horizontal if short
                                         else Qt.Orientation.Vertical)
        if short:
            self.curves_split.setSizes([640, 360])
        for w in (self.filters_view, self.maps_view, self.sample_view):
            w.setMinimumSize(60, 50 if short else 90)
        self.worst.setMinimumHeight(70 if short else 120)
        if not self.narrow:
            self.confusion.setMinimumSize(120 if short else 160, 120 if short else 160)
        self.loss_plot.setMinimumHeight(90 if short else 150)
        self.acc_plot.setMinimumHeight(90 if short else 150)

    def _place_settings(self, columns: int) -> None:
        """One column: Data, Hyperparameters, the buttons and progress below each other.
        Two columns (a wide, low dock): Data beside Hyperparameters, the buttons and the
        progress under the hyperparameters, so all of it shows without scrolling."""
        if columns == self.settings_columns:
            return
        self.settings_columns = columns
        g = self.settings_grid
        for w in (self.data_box, self.hp_box, self.controls):
            g.removeWidget(w)
        self.side.layout().removeWidget(self.controls)
        for r in range(4):
            g.setRowStretch(r, 0)
        if columns == 1:
            g.addWidget(self.data_box, 0, 0)
            g.addWidget(self.hp_box, 1, 0)
            g.addWidget(self.controls, 2, 0)
            g.setRowStretch(3, 1)
            g.setColumnStretch(1, 0)
        else:
            g.addWidget(self.data_box, 0, 0, 3, 1)
            g.addWidget(self.hp_box, 0, 1, 3, 1)
            self.side.layout().addWidget(self.controls)
            g.setRowStretch(2, 1)
            g.setColumnStretch(0, 1)
            g.setColumnStretch(1, 1)
        compact = columns > 1
        self.preview.set_max_rows(2 if compact else SamplePreview.ROWS)
        for form in (self.data_form, self.hp_form):
            form.setVerticalSpacing(3 if compact else -1)
        for box in (self.data_box, self.hp_box):
            if not hasattr(self, "_box_margins"):
                self._box_margins = box.layout().contentsMargins()
            box.layout().setContentsMargins(QMargins(6, 2, 6, 4) if compact
                                            else self._box_margins)
        self._fit_settings_width()

    def _fit_settings_width(self) -> None:
        """Beside the tabs the settings are a fixed-width column (or two)."""
        if self.narrow is not False:
            return
        per_column = 250 if self.settings_columns > 1 else 350
        w = (per_column * self.settings_columns + 6 * (self.settings_columns - 1)
             + self.settings_scroll.verticalScrollBar().sizeHint().width())
        self.settings_scroll.setMinimumWidth(w)
        self.settings_scroll.setMaximumWidth(w)

    def _apply_orientation(self, narrow: bool) -> None:
        self.narrow = narrow
        down, across = QBoxLayout.Direction.TopToBottom, QBoxLayout.Direction.LeftToRight
        self.outer.setDirection(down if narrow else across)
        self.results_row.setDirection(down if narrow else across)
        self.plots.setOrientation(Qt.Orientation.Vertical if narrow
                                  else Qt.Orientation.Horizontal)
        if narrow:
            self.settings_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            self.settings_scroll.setMinimumWidth(0)
            self.settings_scroll.setMaximumWidth(16777215)
            self.tabs.setMinimumHeight(820)
            self.confusion.setMinimumSize(200, 240)
        else:
            self.settings_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            self._fit_settings_width()
            self.settings_scroll.setMinimumHeight(120)
            self.settings_scroll.setMaximumHeight(16777215)
            self.tabs.setMinimumHeight(0)
            self.confusion.setMinimumSize(160, 160)

    def _fit_settings_height(self) -> None:
        """In a narrow dock the settings show whole: their height follows their width (wrapped
        texts, the sample grid)."""
        if not self.narrow:
            return
        w = self.settings_scroll.width() if self.settings_scroll.width() > 50 else self.width()
        h = self.left.layout().totalHeightForWidth(w) if self.left.layout().hasHeightForWidth() \
            else self.left.sizeHint().height()
        h = max(h, self.left.minimumSizeHint().height())
        if self.settings_scroll.minimumHeight() != h:
            self.settings_scroll.setFixedHeight(h)

    def _on_tab_changed(self, i: int) -> None:
        if self.tabs.widget(i) is self.results_tab:
            self.tabs.setTabText(i, "Results")
        self._size_by_current_tab()

    def _size_by_current_tab(self) -> None:
        """Only the tab in view sizes the tabs: a tab widget is as tall as its tallest page's
        minimum, and the hidden Results page's headline, wrapped at a stale width, made the
        dock scroll 22 px at 1280×720 and cut the curves' 'epoch' axis."""
        shown = QSizePolicy.Policy.Preferred
        for i in range(self.tabs.count()):
            policy = shown if i == self.tabs.currentIndex() else QSizePolicy.Policy.Ignored
            self.tabs.widget(i).setSizePolicy(policy, policy)
        if not self.timeline_tab:  # back in the curves' splitter
            self.timeline.setSizePolicy(shown, shown)

    def shutdown(self) -> None:
        """Stop training and loading threads (window closing)."""
        self.session.shutdown()

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)


__all__ = ["TrainingPanel"]

