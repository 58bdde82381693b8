"""Look and feel: family colours per layer category, light / dark palettes, layer icons.

Every widget that colours a layer (canvas nodes, palette, inspector, summary) asks
`family_color(category, dark)`, so a family has one colour everywhere, tuned per theme so it
stays readable on a light and on a dark background. `layer_icon(type_name)` draws the icon a
layer type declares (`Layer.icon`: a named glyph, or an activation's own curve) with QPainter, no
image files, on a rounded tile of its family colour; icons are cached. A type whose icon the
theme does not know gets a neutral glyph (its first letters), never another type's picture.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QGuiApplication,
    QIcon,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QApplication, QWidget

from engine.layers import REGISTRY, Icon

MODES = ("system", "light", "dark")

# (light theme, dark theme): saturated enough to tell apart on white, lighter on dark grey.
# Every dark-theme colour is light enough for dark header text (see header_text_color): one
# rule for all families on a dark canvas, no white text on a pastel strip.
FAMILY_COLORS: dict[str, tuple[str, str]] = {
    "Input": ("#5f6b7a", "#9aa7b8"),
    "Convolution": ("#2f6fdb", "#6aa5ff"),
    "Pooling": ("#00796b", "#74dacd"),
    "Activation": ("#e0731c", "#f5a25a"),
    "Normalization": ("#8e44ad", "#c796e3"),
    "Core": ("#2a7f50", "#76d89e"),
    "Merge": ("#c2185b", "#f27aa6"),
}
_FALLBACK = ("#707070", "#a0a0a0")

# message colours (errors red, warnings amber), per theme
SEVERITY_COLORS = {"error": ("#c62828", "#ff6b6b"), "warning": ("#b26a00", "#ffb74d"),
                   "ok": ("#2e7d32", "#66d17a")}


def family_color(category: str, dark: bool = False) -> QColor:
    """The colour of a layer family (a registry category) for a light or dark background."""
    light, dk = FAMILY_COLORS.get(category, _FALLBACK)
    return QColor(dk if dark else light)


# ---- contrast ------------------------------------------------------------------------------

HEADER_INK_DARK = "#16181c"  # text on a light header strip
HEADER_INK_LIGHT = "#ffffff"  # text on a dark header strip
# shape labels along the edges of the canvas: (light theme, dark theme); at least 4.5:1
# against the canvas background of either theme
EDGE_LABEL_COLORS = ("#4d5561", "#b9c0ca")


def relative_luminance(c: QColor) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0 black … 1 white)."""
    def lin(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * lin(c.redF()) + 0.7152 * lin(c.greenF()) + 0.0722 * lin(c.blueF())


def contrast_ratio(a: QColor, b: QColor) -> float:
    """WCAG 2 contrast ratio of two colours, 1 … 21 (4.5 is the minimum for body text)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def header_text_color(fill: QColor) -> QColor:
    """White or near-black, whichever reads better on `fill` (a family colour header strip):
    by luminance contrast, not HSL lightness, so pastel greens and teals get dark text."""
    dark_ink, light_ink = QColor(HEADER_INK_DARK), QColor(HEADER_INK_LIGHT)
    return (light_ink if contrast_ratio(light_ink, fill) >= contrast_ratio(dark_ink, fill)
            else dark_ink)


def edge_label_color(dark: bool = False) -> QColor:
    """Colour of the shape labels on the canvas edges (readable on the canvas background)."""
    return QColor(EDGE_LABEL_COLORS[1] if dark else EDGE_LABEL_COLORS[0])


def severity_color(severity: str, dark: bool = False) -> QColor:
    light, dk = SEVERITY_COLORS.get(severity, SEVERITY_COLORS["warning"])
    return QColor(dk if dark else light)


def severity_hex(severity: str, widget: QWidget | None = None) -> str:
    """"#rrggbb" of an error / warning / ok colour for the theme `widget` shows (rich text)."""
    return severity_color(severity, is_dark(widget.palette() if widget is not None else None)
                          ).name()


def is_dark(palette: QPalette | None = None) -> bool:
    """True when the palette's window colour is dark (text is then light)."""
    if palette is None:
        app = QGuiApplication.instance()
        if app is None:
            return False
        palette = app.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


# ---- palettes -----------------------------------------------------------------------------------

def dark_palette() -> QPalette:
    """A calm dark palette (neutral greys, blue accent) for the Fusion style."""
    p = QPalette()
    C, R = QPalette.ColorGroup, QPalette.ColorRole
    window, base, alt = QColor("#2b2d31"), QColor("#1f2023"), QColor("#26282c")
    text, button = QColor("#e3e5e8"), QColor("#35373c")
    accent = QColor("#4f8ff7")
    roles = {
        R.Window: window, R.WindowText: text, R.Base: base, R.AlternateBase: alt,
        R.ToolTipBase: QColor("#3a3d42"), R.ToolTipText: text, R.Text: text,
        R.PlaceholderText: QColor("#8b8f96"), R.Button: button, R.ButtonText: text,
        R.BrightText: QColor("#ff6b6b"), R.Light: QColor("#4a4d53"), R.Midlight: QColor("#3e4146"),
        R.Mid: QColor("#2f3135"), R.Dark: QColor("#18191b"), R.Shadow: QColor("#0d0d0f"),
        R.Highlight: accent, R.HighlightedText: QColor("#ffffff"), R.Link: QColor("#7fb0ff"),
        R.LinkVisited: QColor("#b89cff"), R.Accent: accent,
    }
    for role, color in roles.items():
        p.setColor(C.All, role, color)
    disabled = QColor("#7a7e85")
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(C.Disabled, role, disabled)
    p.setColor(C.Disabled, R.Base, QColor("#26272a"))
    p.setColor(C.Disabled, R.Button, QColor("#2e3034"))
    p.setColor(C.Disabled, R.Highlight, QColor("#4a4d53"))
    p.setColor(C.Inactive, R.Highlight, QColor("#3d5a8a"))
    return p


def light_palette() -> QPalette:
    """Fusion's light palette with a slightly softer window and the same blue accent."""
    p = QPalette()
    C, R = QPalette.ColorGroup, QPalette.ColorRole
    accent = QColor("#2f6fdb")
    roles = {
        R.Window: QColor("#f3f4f6"), R.WindowText: QColor("#1d1f23"), R.Base: QColor("#ffffff"),
        R.AlternateBase: QColor("#f6f7f9"), R.ToolTipBase: QColor("#ffffff"),
        R.ToolTipText: QColor("#1d1f23"), R.Text: QColor("#1d1f23"),
        R.PlaceholderText: QColor("#8a8f98"), R.Button: QColor("#f7f8fa"),
        R.ButtonText: QColor("#1d1f23"), R.BrightText: QColor("#c62828"),
        R.Light: QColor("#ffffff"), R.Midlight: QColor("#e8eaee"), R.Mid: QColor("#c4c8cf"),
        R.Dark: QColor("#9ba1aa"), R.Shadow: QColor("#5c6068"), R.Highlight: accent,
        R.HighlightedText: QColor("#ffffff"), R.Link: QColor("#1f5fc8"),
        R.LinkVisited: QColor("#6a3fb5"), R.Accent: accent,
    }
    for role, color in roles.items():
        p.setColor(C.All, role, color)
    disabled = QColor("#a0a4ab")
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(C.Disabled, role, disabled)
    p.setColor(C.Disabled, R.Base, QColor("#f3f4f6"))
    p.setColor(C.Inactive, R.Highlight, QColor("#c9d8f5"))
    p.setColor(C.Inactive, R.HighlightedText, QColor("#1d1f23"))
    return p


class _ThemeState(QObject):
    """Holds the chosen mode; `changed(dark)` fires after every palette switch."""

    changed = Signal(bool)

    def __init__(self):
        super().__init__()
        self.mode = "system"
        self.connected = False


_state: _ThemeState | None = None


def theme_state() -> _ThemeState:
    global _state
    if _state is None:
        _state = _ThemeState()
    return _state


def current_mode() -> str:
    return theme_state().mode


def _system_is_dark(app: QApplication) -> bool:
    try:
        return app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    except AttributeError:  # Qt < 6.5
        return False


def apply_theme(app: QApplication, mode: str = "system") -> bool:
    """Apply "system" (follow the OS colour scheme), "light" or "dark" (Fusion + our palette).

    Returns whether the result is dark. In "system" mode a later OS switch is followed.
    """
    if mode not in MODES:
        raise ValueError(f"unknown theme {mode!r}; choose one of {', '.join(MODES)}")
    state = theme_state()
    state.mode = mode
    app.setStyle("Fusion")
    dark = _system_is_dark(app) if mode == "system" else mode == "dark"
    app.setPalette(dark_palette() if dark else light_palette())
    if not state.connected:
        try:
            app.styleHints().colorSchemeChanged.connect(
                lambda _scheme: theme_state().mode == "system" and apply_theme(app, "system"))
            state.connected = True
        except AttributeError:
            pass
    _icon_cache.clear()
    state.changed.emit(dark)
    return dark


# ---- icons --------------------------------------------------------------------------------------

_icon_cache: dict[tuple[str, bool], QIcon] = {}
ICON_SIZES = (16, 20, 24, 32, 48)


def layer_icon(type_name: str, dark: bool | None = None) -> QIcon:
    """A small glyph for a layer type on a tile of its family colour (cached per theme)."""
    if dark is None:
        dark = is_dark()
    key = (type_name, dark)
    icon = _icon_cache.get(key)
    if icon is None:
        icon = QIcon()
        for size in ICON_SIZES:
            icon.addPixmap(layer_pixmap(type_name, size, dark))
        _icon_cache[key] = icon
    return icon


def layer_pixmap(type_name: str, size: int = 24, dark: bool = False, ratio: float = 2.0
                 ) -> QPixmap:
    """The icon drawn at `size` logical pixels (rendered at `ratio` for crisp HiDPI)."""
    px = QPixmap(int(size * ratio), int(size * ratio))
    px.setDevicePixelRatio(ratio)
    px.fill(Qt.GlobalColor.transparent)
    painter = QPainter(px)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    paint_layer_icon(painter, QRectF(0, 0, size, size), type_name, dark)
    painter.end()
    return px


def paint_layer_icon(painter: QPainter, rect: QRectF, type_name: str, dark: bool = False) -> None:
    """Paint the icon of `type_name` into `rect` (also usable by canvas items)."""
    cls = REGISTRY.get(type_name)
    category = cls.category if cls is not None else ""
    # the tile keeps the mid-tone (light-theme) colour in both themes: white glyphs stay legible
    base = family_color(category, False)
    if dark:
        base = base.lighter(110)
    painter.save()
    painter.translate(rect.topLeft())
    scale = min(rect.width(), rect.height()) / 24.0
    painter.scale(scale, scale)
    # tile: rounded square, gentle vertical gradient of the family colour
    grad = QLinearGradient(0, 0, 0, 24)
    grad.setColorAt(0, base.lighter(112))
    grad.setColorAt(1, base.darker(112))
    painter.setPen(QPen(base.darker(135), 0.8))
    painter.setBrush(QBrush(grad))
    painter.drawRoundedRect(QRectF(0.6, 0.6, 22.8, 22.8), 5, 5)
    glyph = icon_glyph(type_name)
    fg = QColor("#ffffff")
    pen = QPen(fg, 1.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
               Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    if glyph is None:
        _glyph_letter(painter, fg, type_name)
    else:
        glyph(painter, fg)
    painter.restore()


def icon_glyph(type_name: str) -> Callable[[QPainter, QColor], None] | None:
    """What draws the icon `type_name` declares (`Layer.icon`): a glyph known by name, or the
    curve of its function; None for an unknown type or glyph (the generic glyph is drawn)."""
    cls = REGISTRY.get(type_name)
    if cls is None:
        return None
    icon: Icon = cls.icon
    if icon.curve is not None:
        return lambda p, fg: _glyph_curve(p, fg, icon)
    draw = _GLYPHS.get(icon.glyph)
    if draw is None:
        return None
    return lambda p, fg: draw(p, fg, icon.glyph)


# Glyphs draw in a 24×24 box, white on the tile. Keep them simple: they must read at 16 px.

def _glyph_input(p: QPainter, fg: QColor, _kind: str) -> None:
    p.drawRoundedRect(QRectF(5, 6, 14, 12), 1.5, 1.5)  # a picture: frame, hill, sun
    path = QPainterPath(QPointF(6, 16.5))
    path.lineTo(10, 12)
    path.lineTo(13, 15)
    path.lineTo(15, 13)
    path.lineTo(18, 16.5)
    p.drawPath(path)
    p.setBrush(fg)
    p.drawEllipse(QPointF(15.5, 9.6), 1.3, 1.3)


def _glyph_conv(p: QPainter, fg: QColor, _kind: str) -> None:
    """A 3×3 kernel grid with its centre tap filled."""
    p.setPen(QPen(fg, 1.3))
    x0, y0, c = 5.0, 5.0, 14.0 / 3
    for i in range(4):
        p.drawLine(QPointF(x0 + i * c, y0), QPointF(x0 + i * c, y0 + 14))
        p.drawLine(QPointF(x0, y0 + i * c), QPointF(x0 + 14, y0 + i * c))
    p.fillRect(QRectF(x0 + c + 0.6, y0 + c + 0.6, c - 1.2, c - 1.2), fg)


def _down_arrow(p: QPainter, fg: QColor, x: float, y0: float, y1: float) -> None:
    p.drawLine(QPointF(x, y0), QPointF(x, y1))
    p.drawLine(QPointF(x - 2.6, y1 - 2.6), QPointF(x, y1))
    p.drawLine(QPointF(x + 2.6, y1 - 2.6), QPointF(x, y1))


def _glyph_pool(p: QPainter, fg: QColor, kind: str) -> None:
    """A 2×2 window above a down arrow into one cell; what fills the window tells max / avg
    (kind "pool-max", "pool-avg"; "pool-global": one window over everything)."""
    p.setPen(QPen(fg, 1.3))
    x0, y0, c = 6.0, 3.5, 6.0
    dim = QColor(fg)
    dim.setAlphaF(0.45)
    if kind == "pool-global":
        p.fillRect(QRectF(x0, y0, 2 * c, 2 * c), dim)
        p.drawRect(QRectF(x0, y0, 2 * c, 2 * c))
    else:
        for i in range(2):
            for j in range(2):
                r = QRectF(x0 + i * c, y0 + j * c, c, c)
                if kind == "pool-max" and (i, j) == (1, 0):
                    p.fillRect(r, fg)
                elif kind == "pool-avg":
                    p.fillRect(r, dim)
                p.drawRect(r)
    p.setPen(QPen(fg, 1.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    _down_arrow(p, fg, 12, 16.5, 21)


def _curve(p: QPainter, f, x0=4.0, x1=20.0, y_lo=19.0, y_hi=5.0, lo=-1.0, hi=1.0, n=40):
    """Plot f (a NumPy function): [-1, 1] -> [lo, hi] into the box."""
    us = [-1 + 2 * k / n for k in range(n + 1)]
    ys = np.asarray(f(np.array(us)), dtype=np.float64).reshape(-1)
    # a declared curve leaving its y range (or not finite) stays on the tile
    vs = np.clip(np.nan_to_num((ys - lo) / (hi - lo), nan=0.5), -0.25, 1.25)
    path = QPainterPath()
    for k, (u, v) in enumerate(zip(us, vs.tolist())):
        pt = QPointF(x0 + (x1 - x0) * (u + 1) / 2, y_lo + (y_hi - y_lo) * v)
        if k == 0:
            path.moveTo(pt)
        else:
            path.lineTo(pt)
    p.drawPath(path)


def _glyph_curve(p: QPainter, fg: QColor, icon: Icon) -> None:
    """The function's curve (declared on the layer) over faint axes."""
    axis = QColor(fg)
    axis.setAlphaF(0.45)
    p.save()
    p.setPen(QPen(axis, 1.0))
    p.drawLine(QPointF(3.5, 12), QPointF(20.5, 12))
    p.drawLine(QPointF(12, 3.5), QPointF(12, 20.5))
    p.restore()
    p.setPen(QPen(fg, 2.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                  Qt.PenJoinStyle.RoundJoin))
    lo, hi = icon.y_range
    _curve(p, icon.curve, lo=lo, hi=hi)


def _glyph_softmax(p: QPainter, fg: QColor, _kind: str) -> None:
    """Probability bars (one tall: the winning class)."""
    for i, h in enumerate((4.0, 12.0, 6.0)):
        p.fillRect(QRectF(5.5 + i * 4.8, 19 - h, 3.4, h), fg)
    p.drawLine(QPointF(4.5, 19.8), QPointF(19.5, 19.8))


def _glyph_norm(p: QPainter, fg: QColor, kind: str) -> None:
    """Uneven bars evened out: normalisation (LRN: with a bracket over neighbouring channels)."""
    dim = QColor(fg)
    dim.setAlphaF(0.5)
    heights = (7.0, 12.0, 5.0, 10.0)
    for i, h in enumerate(heights):
        x = 4.5 + i * 4.0
        p.fillRect(QRectF(x, 19 - h, 2.8, h), dim)
        p.fillRect(QRectF(x, 11, 2.8, 8), fg)
    p.setPen(QPen(fg, 1.3, Qt.PenStyle.DashLine))
    p.drawLine(QPointF(3.5, 11), QPointF(20.5, 11))
    if kind == "lrn":
        p.setPen(QPen(fg, 1.3))
        p.drawLine(QPointF(8.5, 4.5), QPointF(15.5, 4.5))
        p.drawLine(QPointF(8.5, 4.5), QPointF(8.5, 6.5))
        p.drawLine(QPointF(15.5, 4.5), QPointF(15.5, 6.5))


def _glyph_linear(p: QPainter, fg: QColor, kind: str) -> None:
    """Two columns of units, every left unit joined to every right unit ("dropout": a unit and
    some links dropped)."""
    left = [QPointF(6, 6 + 6 * i) for i in range(3)]
    right = [QPointF(18, 9 + 6 * i) for i in range(2)]
    line = QColor(fg)
    line.setAlphaF(0.75)
    p.setPen(QPen(line, 1.0))
    dropped = {(0, 1), (2, 0)} if kind == "dropout" else set()
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            if (i, j) not in dropped:
                p.drawLine(a, b)
    p.setPen(QPen(fg, 1.3))
    for i, pt in enumerate(left + right):
        if kind == "dropout" and i == 1:
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(pt, 2.2, 2.2)
            continue
        p.setBrush(fg)
        p.drawEllipse(pt, 2.0, 2.0)
    p.setBrush(Qt.BrushStyle.NoBrush)


def _glyph_flatten(p: QPainter, fg: QColor, _kind: str) -> None:
    """A 2×2 block unrolled into a row of four cells."""
    p.setPen(QPen(fg, 1.2))
    for i in range(2):
        for j in range(2):
            p.drawRect(QRectF(7 + i * 5, 3.5 + j * 5, 5, 5))
    p.setPen(QPen(fg, 1.5, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    _down_arrow(p, fg, 12, 14, 16.5)
    p.setPen(QPen(fg, 1.2))
    for i in range(4):
        p.drawRect(QRectF(3 + i * 4.5, 17.5, 4.5, 3.5))


def _glyph_add(p: QPainter, fg: QColor, _kind: str) -> None:
    p.setPen(QPen(fg, 1.6))
    p.drawEllipse(QPointF(12, 12), 7, 7)
    p.drawLine(QPointF(12, 8), QPointF(12, 16))
    p.drawLine(QPointF(8, 12), QPointF(16, 12))


def _glyph_multiply(p: QPainter, fg: QColor, _kind: str) -> None:
    """A circled times (⊗): the element-wise product."""
    p.setPen(QPen(fg, 1.6))
    p.drawEllipse(QPointF(12, 12), 7, 7)
    p.drawLine(QPointF(9.2, 9.2), QPointF(14.8, 14.8))
    p.drawLine(QPointF(9.2, 14.8), QPointF(14.8, 9.2))


def _glyph_concat(p: QPainter, fg: QColor, _kind: str) -> None:
    """Two channel blocks stacked into one."""
    dim = QColor(fg)
    dim.setAlphaF(0.5)
    p.setPen(QPen(fg, 1.3))
    p.fillRect(QRectF(5, 5, 6, 14), dim)
    p.drawRect(QRectF(5, 5, 6, 14))
    p.fillRect(QRectF(13, 5, 6, 14), fg)
    p.drawRect(QRectF(13, 5, 6, 14))


def _glyph_shuffle(p: QPainter, fg: QColor, _kind: str) -> None:
    """Two columns of three channels, joined crosswise: the channels change places."""
    p.setPen(QPen(fg, 1.3))
    ys = (6.0, 12.0, 18.0)
    for y in ys:
        p.drawEllipse(QPointF(5, y), 1.8, 1.8)
        p.drawEllipse(QPointF(19, y), 1.8, 1.8)
    for a, b in ((0, 2), (1, 0), (2, 1)):
        p.drawLine(QPointF(7, ys[a]), QPointF(17, ys[b]))


def _glyph_split(p: QPainter, fg: QColor, _kind: str) -> None:
    """One channel block parted into two (Concat's picture taken apart)."""
    dim = QColor(fg)
    dim.setAlphaF(0.5)
    p.setPen(QPen(fg, 1.3))
    p.fillRect(QRectF(3, 5, 5, 14), fg)
    p.drawRect(QRectF(3, 5, 5, 14))
    p.drawLine(QPointF(9, 12), QPointF(13, 7))
    p.drawLine(QPointF(9, 12), QPointF(13, 17))
    p.fillRect(QRectF(14, 3, 6, 7), dim)
    p.drawRect(QRectF(14, 3, 6, 7))
    p.fillRect(QRectF(14, 14, 6, 7), dim)
    p.drawRect(QRectF(14, 14, 6, 7))


def _glyph_upsample(p: QPainter, fg: QColor, _kind: str) -> None:
    """A small 2×2 grid growing into a large one."""
    dim = QColor(fg)
    dim.setAlphaF(0.5)
    p.setPen(QPen(fg, 1.2))
    for i in range(2):
        for j in range(2):
            p.drawRect(QRectF(3 + i * 8, 3 + j * 8, 8, 8))
            p.fillRect(QRectF(3 + i * 3, 15 + j * 3, 3, 3), dim)
    p.drawRect(QRectF(3, 15, 6, 6))


def _glyph_letter(p: QPainter, fg: QColor, t: str) -> None:
    """The generic glyph: the type name's first two letters."""
    f = QFont()
    f.setPixelSize(11)
    f.setBold(True)
    p.setFont(f)
    p.drawText(QRectF(0, 0, 24, 24), Qt.AlignmentFlag.AlignCenter, (t or "?")[:2])


# the glyphs a layer's `Icon(glyph=...)` can name; each draws with (painter, fg, glyph name)
_GLYPHS = {
    "input": _glyph_input, "conv": _glyph_conv, "pool-max": _glyph_pool, "pool-avg": _glyph_pool,
    "pool-global": _glyph_pool, "norm": _glyph_norm, "lrn": _glyph_norm, "dense": _glyph_linear,
    "dropout": _glyph_linear, "flatten": _glyph_flatten, "add": _glyph_add,
    "multiply": _glyph_multiply,
    "concat": _glyph_concat, "softmax": _glyph_softmax,
    "shuffle": _glyph_shuffle, "split": _glyph_split, "upsample": _glyph_upsample,
}


def _drawn_icon(key, size: int, draw) -> QIcon:
    """A cached icon painted by `draw(painter)` in a 16×16 box, sharp at 2× device pixels."""
    icon = _icon_cache.get(key)
    if icon is not None:
        return icon
    ratio = 2.0
    px = QPixmap(int(size * ratio), int(size * ratio))
    px.setDevicePixelRatio(ratio)
    px.fill(Qt.GlobalColor.transparent)
    p = QPainter(px)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(size / 16, size / 16)
    draw(p)
    p.end()
    icon = QIcon(px)
    _icon_cache[key] = icon
    return icon


def severity_icon(severity: str, dark: bool = False, size: int = 16) -> QIcon:
    """Round red 'x' for errors, amber triangle '!' for warnings (drawn, cached)."""

    def draw(p: QPainter) -> None:
        color = severity_color(severity, dark)
        white = QPen(QColor("#ffffff"), 1.8, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
        if severity == "error":
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(color)
            p.drawEllipse(QRectF(1, 1, 14, 14))
            p.setPen(white)
            p.drawLine(QPointF(5.5, 5.5), QPointF(10.5, 10.5))
            p.drawLine(QPointF(10.5, 5.5), QPointF(5.5, 10.5))
        else:
            path = QPainterPath(QPointF(8, 1.2))
            path.lineTo(15, 14.5)
            path.lineTo(1, 14.5)
            path.closeSubpath()
            p.setPen(QPen(color, 1, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                          Qt.PenJoinStyle.RoundJoin))
            p.setBrush(color)
            p.drawPath(path)
            p.setPen(white)
            p.drawLine(QPointF(8, 5.8), QPointF(8, 9.6))
            p.drawPoint(QPointF(8, 12.2))

    return _drawn_icon((f"__{severity}_{size}", dark), size, draw)


__all__ = [
    "EDGE_LABEL_COLORS",
    "FAMILY_COLORS",
    "MODES",
    "FlowBody",
    "apply_theme",
    "contrast_ratio",
    "current_mode",
    "dark_palette",
    "edge_label_color",
    "family_color",
    "header_text_color",
    "icon_glyph",
    "is_dark",
    "layer_icon",
    "layer_pixmap",
    "light_palette",
    "paint_layer_icon",
    "relative_luminance",
    "severity_color",
    "severity_hex",
    "severity_icon",
    "theme_state",
]


def lock_icon(locked: bool, dark: bool | None = None, size: int = 16) -> QIcon:
    """A padlock, closed or open (the inspector's 'keep square' / 'all sides equal' toggle)."""
    if dark is None:
        dark = is_dark()

    def draw(p: QPainter) -> None:
        color = QColor("#d0d4da" if dark else "#4a4f57")
        p.setPen(QPen(color, 1.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        p.setBrush(Qt.BrushStyle.NoBrush)
        shackle = QPainterPath()
        x0 = 4.5 if locked else 8.5
        shackle.moveTo(x0, 7.5)
        shackle.lineTo(x0, 5.2)
        shackle.arcTo(QRectF(x0, 1.5, 7, 7), 180, -180)
        shackle.lineTo(x0 + 7, 7.5 if locked else 5.5)
        p.drawPath(shackle)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(color)
        p.drawRoundedRect(QRectF(2.5, 7.5, 11, 7.5), 1.5, 1.5)

    return _drawn_icon((f"__lock_{locked}_{size}", dark), size, draw)


class FlowBody(QWidget):
    """A scroll-area page whose wrapped labels get their full height.

    QScrollArea sizes its page from size hints, which ignore height-for-width: word-wrapped
    labels would be squeezed when the page is taller than the viewport. On every resize the page
    sets its minimum height to what its layout needs at the current width.
    """

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self.fit()

    def event(self, event):
        done = super().event(event)
        if event.type() == QEvent.Type.LayoutRequest:  # rows added, shown or hidden
            self.fit()
        return done

    def fit(self) -> None:
        lay = self.layout()
        if lay is None:
            return
        h = lay.heightForWidth(self.width()) if lay.hasHeightForWidth() else -1
        h = max(h, lay.minimumSize().height())
        if h > 0 and h != self.minimumHeight():
            self.setMinimumHeight(h)
