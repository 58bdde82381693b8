"""A sweep's trials as parallel coordinates (pyqtgraph): one vertical axis for validation
accuracy and one per searched value, one polyline per trial across them. Ranges are scaled to
their trials' values (log ranges on a log scale), choices are spread evenly in the space file's
order and named; lines are coloured by validation accuracy, the best drawn thickest, pruned
trials (at the accuracy they were stopped with) dimmed beneath."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QWidget

VALUE_AXIS = "validation\naccuracy (%)"
TOP = 1.0  # axes run from 0 to TOP in view coordinates; names sit above them


class ParallelCoordinatesPlot(pg.PlotWidget):
    """set_trials(rows) with engine.sweep.study.trial_rows' dicts; redraws on a theme change."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        item = self.getPlotItem()
        for side in ("left", "bottom"):
            item.hideAxis(side)
        item.hideButtons()
        item.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.cmap = self._colormap()
        item.setContentsMargins(4, 10, 4, 4)  # the colour bar's end labels not clipped
        self.bar = pg.ColorBarItem(colorMap=self.cmap, interactive=False, width=12,
                                   values=(0, 100))
        item.layout.addItem(self.bar, 2, 5)
        self.rows: list[dict] = []
        self.names: list[str] = []
        self.lines: dict[int, pg.PlotCurveItem] = {}  # trial number -> its line (complete)
        self.pruned_line: pg.PlotCurveItem | None = None
        self.setMinimumSize(320, 220)
        self._draw()

    def changeEvent(self, event):
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "rows"):
            self._draw()

    def _colormap(self) -> pg.ColorMap:
        """Viridis, its best end the one that stands out from the background: yellow on a dark
        background, dark blue-violet (viridis reversed) on a light one."""
        from .theme import is_dark

        cmap = pg.colormap.get("viridis")
        if is_dark(self.palette()):
            return cmap.getSubset(0.25, 0.75)  # the darkest violet is lost on the background
        cmap = cmap.getSubset(0.0, 0.85)  # the palest yellow is lost on white
        cmap.reverse()
        return cmap

    def set_trials(self, rows: list[dict]) -> None:
        self.rows = rows
        self._draw()

    # -- layout of the axes --
    def _axes(self, shown: list[dict]) -> list[tuple[str, object]]:
        """(name, axis) per searched value in the order the space searches them."""
        axes: dict[str, object] = {}
        for r in shown:
            for name, kind in r.get("axes", {}).items():
                axes.setdefault(name, kind)
            for name, v in r["params"].items():  # rows without axes: by the values
                axes.setdefault(name, "linear" if isinstance(v, (int, float))
                                and not isinstance(v, bool) else None)
        for name, kind in axes.items():
            if kind is None:
                axes[name] = list(dict.fromkeys(r["params"][name] for r in shown
                                                if name in r["params"]))
        return list(axes.items())

    @staticmethod
    def _scale(kind, values: list) -> tuple:
        """(position of a value in 0..1, [(position, label)] ticks) for one axis."""
        if isinstance(kind, list):
            n = len(kind)
            index = {str(c): i for i, c in enumerate(kind)}

            def pos(v):
                return 0.5 if n == 1 else index.get(str(v), 0) / (n - 1)

            return pos, [(pos(c), _fmt(c)) for c in kind]
        log = kind == "log" and all(v > 0 for v in values)
        f = math.log10 if log else float
        lo, hi = (min(map(f, values)), max(map(f, values))) if values else (0.0, 1.0)

        def pos(v):
            return 0.5 if hi == lo else (f(v) - lo) / (hi - lo)

        if hi == lo:
            return pos, [(0.5, _fmt(values[0]))] if values else []
        inv = (lambda t: 10 ** t) if log else (lambda t: t)
        ticks = [(k / 2, _fmt(inv(lo + k / 2 * (hi - lo)))) for k in range(3)]
        return pos, ticks

    # -- drawing --
    def _draw(self) -> None:
        item = self.getPlotItem()
        item.clear()
        self.lines, self.pruned_line = {}, None
        pal = self.palette()
        bg, fg = pal.base().color(), pal.text().color()
        self.setBackground(bg)
        self.cmap = self._colormap()
        self.bar.setColorMap(self.cmap)
        self.bar.axis.setPen(pg.mkPen(fg))
        self.bar.axis.setTextPen(pg.mkPen(fg))
        self.bar.getAxis("left").setLabel("validation accuracy (%)", color=fg.name())
        done = [r for r in self.rows if r["state"] == "complete" and r["value"] is not None]
        pruned = [r for r in self.rows if r["state"] == "pruned" and r.get("last") is not None]
        shown = done + pruned
        axes = self._axes(shown)
        self.names = [VALUE_AXIS] + [n for n, _ in axes]
        if not shown:
            item.addItem(_text("No finished trials yet", fg, anchor=(0.5, 0.5)))
            item.setXRange(-1, 1, padding=0)
            item.setYRange(-1, 1, padding=0)
            self.bar.setLevels((0, 100))
            return
        accs = [100 * r["value"] for r in done] + [100 * r["last"] for r in pruned]
        lo, hi = min(accs), max(accs)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        # colours spread over the complete trials (pruned ones are grey)
        c_lo, c_hi = (min(accs[:len(done)]), max(accs[:len(done)])) if done else (lo, hi)
        if c_hi - c_lo < 1e-9:
            c_lo, c_hi = c_lo - 0.5, c_hi + 0.5
        self.bar.setLevels((c_lo, c_hi))
        scales = [self._scale(kind, [r["params"][n] for r in shown if n in r["params"]])
                  for n, kind in axes]

        def points(r, acc):
            ys = [(acc - lo) / (hi - lo)]
            for (name, _), (pos, _) in zip(axes, scales):
                v = r["params"].get(name)
                ys.append(np.nan if v is None else pos(v))
            return np.array(ys, float)

        x = np.arange(len(self.names), dtype=float)
        grid = QColor(fg)
        grid.setAlpha(90)
        for i in range(len(self.names)):  # the axes, under the lines
            item.addItem(pg.PlotCurveItem([i, i], [0, TOP], pen=pg.mkPen(grid, width=1)))
        if pruned:
            dim = QColor(fg)
            dim.setAlpha(45)
            xs = np.concatenate([np.append(x, np.nan) for _ in pruned])
            ys = np.concatenate([np.append(points(r, 100 * r["last"]), np.nan) for r in pruned])
            self.pruned_line = pg.PlotCurveItem(xs, ys, pen=pg.mkPen(dim, width=1),
                                                connect="finite")
            item.addItem(self.pruned_line)
        best = max(done, key=lambda r: r["value"]) if done else None
        for r in sorted(done, key=lambda r: r["value"]):  # the best drawn last, on top
            acc = 100 * r["value"]
            c = self.cmap.map((acc - c_lo) / (c_hi - c_lo), mode="qcolor")
            width = 3.2 if r is best else 1.8
            line = pg.PlotCurveItem(x, points(r, acc), pen=pg.mkPen(c, width=width),
                                    connect="finite")
            line.setToolTip(f"trial {r['trial']}: validation {acc:.2f}%")
            self.lines[r["trial"]] = line
            item.addItem(line)
        # tick labels on each axis (a backdrop keeps them readable over the lines), names above
        label_bg = QColor(bg)
        label_bg.setAlpha(200)
        val_ticks = [(0.0, f"{lo:.1f}"), (0.5, f"{(lo + hi) / 2:.1f}"), (1.0, f"{hi:.1f}")]
        for i, ticks in enumerate([val_ticks] + [t for _, t in scales]):
            for y, text in ticks:
                item.addItem(_text(text, fg, (i, y), anchor=(0, 0.5), fill=label_bg, size=-1))
        bold = QFont()
        bold.setBold(True)
        for i, name in enumerate(self.names):
            head = name.replace(".", "\n", 1)
            item.addItem(_text(head, fg, (i, TOP + 0.03), anchor=(0.5, 1.0), font=bold))
        item.setXRange(-0.5, len(self.names) - 0.4, padding=0)
        self._fit_y()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if hasattr(self, "rows") and self.rows:
            self._fit_y()

    def _fit_y(self) -> None:
        """Room above the axes for two lines of names, whatever the height in pixels."""
        h = max(self.getPlotItem().vb.height(), self.height() - 40, 120)
        pad = 2 * self.fontMetrics().height() + 14
        bottom = -0.04
        top = (TOP + 0.03 - pad * bottom / h) / (1 - pad / h)
        self.getPlotItem().setYRange(bottom, top, padding=0)


def _text(text: str, color: QColor, pos=(0.0, 0.0), anchor=(0.0, 0.0), fill=None,
          size: int = 0, font: QFont | None = None) -> pg.TextItem:
    t = pg.TextItem(text, color=color, anchor=anchor, fill=fill)
    f = QFont(font) if font is not None else QFont()
    if size:
        f.setPointSizeF(max(6.0, f.pointSizeF() + size))
    t.setFont(f)
    t.setPos(*pos)
    return t


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
