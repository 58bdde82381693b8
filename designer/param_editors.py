"""The inspector's parameter editors: one editor class per `Param` kind (int, float, bool,
choice, h×w pair, padding), each calling `commit(name, value)` on a user edit and updated in
place by `set_value` without emitting; `EDITORS` maps a kind to its class.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QDoubleValidator, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.layers import REGISTRY, Layer, Param
from engine.layers.base import BOOL, CHOICE, FLOAT, INT, PADDING, PAIR
from engine.layers.conv import resolve_pads

from .theme import lock_icon

INT_LIMIT = 2**31 - 1
PAD_MODES = (("valid", "valid (no padding)"), ("same", "same (keep size)"),
             ("explicit", "explicit (per side)"))


def param_title(p: Param) -> str:
    """A parameter's label: its title, capitalised."""
    t = p.title
    return t[:1].upper() + t[1:]


def current_params(node, layer: Layer | None) -> dict:
    """Normalized parameter values of a node (the layer's if it built, else per Param)."""
    if layer is not None:
        return dict(layer.values)
    cls = REGISTRY[node.type_name]
    out = {}
    for p in cls.params:
        try:
            out[p.name] = p.normalize(node.params.get(p.name, p.default))
        except ValueError:
            out[p.name] = p.normalize(p.default)
    return out


# ---- editors ---------------------------------------------------------------------------------

class _Spin(QSpinBox):
    """Integer spin box that commits on Enter / focus-out / arrow steps, not per keystroke."""

    def __init__(self, lo: int, hi: int, parent=None):
        super().__init__(parent)
        self.setRange(lo, hi)
        self.setKeyboardTracking(False)
        self.setAccelerated(True)
        self.setMinimumWidth(64)
        self.setAlignment(Qt.AlignmentFlag.AlignRight)

    def set_quietly(self, v: int) -> None:
        if self.value() != v:
            self.blockSignals(True)
            self.setValue(v)
            self.blockSignals(False)


class FloatSpin(QDoubleSpinBox):
    """Double spin box showing compact numbers (1e-05, 0.5) and accepting scientific notation."""

    def __init__(self, lo: float, hi: float, step: float, parent=None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(lo, hi)
        self.setSingleStep(step)
        self.setKeyboardTracking(False)
        self.setMinimumWidth(90)
        self.setAlignment(Qt.AlignmentFlag.AlignRight)
        self._validator = QDoubleValidator(lo, hi, 12, self)
        self._validator.setNotation(QDoubleValidator.Notation.ScientificNotation)

    def textFromValue(self, value: float) -> str:
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.replace(",", "."))
        except ValueError:
            return self.value()

    def validate(self, text, pos):
        t = text.strip().replace(",", ".")
        if t in ("", "-", "+", ".", "e", "E") or t.endswith(("e", "E", "e-", "E-", "e+", "E+")):
            return QValidator.State.Intermediate, text, pos
        try:
            v = float(t)
        except ValueError:
            return QValidator.State.Invalid, text, pos
        if self.minimum() <= v <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def set_quietly(self, v: float) -> None:
        if self.value() != v:
            self.blockSignals(True)
            self.setValue(v)
            self.blockSignals(False)


def _lock_button(parent, tip: str) -> QToolButton:
    b = QToolButton(parent)
    b.setCheckable(True)
    b.setAutoRaise(True)
    b.setIconSize(QSize(14, 14))
    b.setToolTip(tip)
    b.toggled.connect(lambda on: b.setIcon(lock_icon(on)))
    b.setIcon(lock_icon(False))
    return b


class ParamEditor(QWidget):
    """One parameter's editor; calls `commit(name, value)` on a user edit."""

    def __init__(self, param: Param, commit, parent=None):
        super().__init__(parent)
        self.param = param
        self.commit = commit
        self.setToolTip(param.doc)

    def set_value(self, value, layer: Layer | None, in_shape) -> None:  # pragma: no cover
        raise NotImplementedError

    def _emit(self, value) -> None:
        self.commit(self.param.name, value)


class IntEditor(ParamEditor):
    def __init__(self, param, commit, parent=None):
        super().__init__(param, commit, parent)
        lo = int(param.min) if param.min is not None else -INT_LIMIT
        hi = int(min(param.max, INT_LIMIT)) if param.max is not None else INT_LIMIT
        self.spin = _Spin(lo, hi, self)
        self.spin.setToolTip(f"{param.doc}\nAllowed: {lo:,} … {hi:,}")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.spin)
        lay.addStretch(1)
        self.spin.valueChanged.connect(self._emit)

    def set_value(self, value, layer, in_shape):
        self.spin.set_quietly(int(value))


class FloatEditor(ParamEditor):
    def __init__(self, param, commit, parent=None):
        super().__init__(param, commit, parent)
        lo = float(param.min) if param.min is not None else -1e12
        hi = float(param.max) if param.max is not None else 1e12
        d = abs(float(param.default or 0))
        step = d if 0 < d < 0.01 else (0.05 if hi <= 1 else 0.1)
        self.spin = FloatSpin(lo, hi, step, self)
        self.spin.setToolTip(f"{param.doc}\nAllowed: {lo:g} … {hi:g}")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.spin)
        lay.addStretch(1)
        self.spin.valueChanged.connect(self._emit)

    def set_value(self, value, layer, in_shape):
        self.spin.set_quietly(float(value))


class BoolEditor(ParamEditor):
    def __init__(self, param, commit, parent=None):
        super().__init__(param, commit, parent)
        self.box = QCheckBox(self)
        self.box.setToolTip(param.doc)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.box)
        lay.addStretch(1)
        self.box.toggled.connect(self._emit)

    def set_value(self, value, layer, in_shape):
        if self.box.isChecked() != bool(value):
            self.box.blockSignals(True)
            self.box.setChecked(bool(value))
            self.box.blockSignals(False)


# Choice values are shown by the readable names their Param declares (`choice_labels`), else
# as stored.


def choice_label(param, value) -> str:
    """The text shown for choice `value` of `param` (a readable name, or the value itself)."""
    return str((param.choice_labels or {}).get(value, value))


class ChoiceEditor(ParamEditor):
    def __init__(self, param, commit, parent=None):
        super().__init__(param, commit, parent)
        self.combo = QComboBox(self)
        for c in param.choices:
            self.combo.addItem(choice_label(param, c), c)  # shown: the name; stored: c
        self.combo.setToolTip(param.doc)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.combo)
        lay.addStretch(1)
        self.combo.activated.connect(lambda i: self._emit(self.combo.itemData(i)))

    def set_value(self, value, layer, in_shape):
        i = self.combo.findData(value)
        if i >= 0 and i != self.combo.currentIndex():
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(i)
            self.combo.blockSignals(False)


class PairEditor(ParamEditor):
    """h × w spin boxes with a lock that keeps them equal; optional '= kernel' (pool stride)."""

    def __init__(self, param, commit, parent=None):
        super().__init__(param, commit, parent)
        lo = int(param.min) if param.min is not None else 0
        hi = int(min(param.max, INT_LIMIT)) if param.max is not None else INT_LIMIT
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.auto = None
        if param.optional:
            self.auto = QCheckBox("= kernel", self)
            self.auto.setToolTip("Use the kernel size as the stride (non-overlapping windows).")
            self.auto.toggled.connect(self._auto_toggled)
            lay.addWidget(self.auto)
        self.h = _Spin(lo, hi, self)
        self.w = _Spin(lo, hi, self)
        self.h.setMinimumWidth(52)
        self.w.setMinimumWidth(52)
        self.h.setToolTip(f"{param.doc}\nHeight (rows). Allowed: {lo} … {hi}")
        self.w.setToolTip(f"{param.doc}\nWidth (columns). Allowed: {lo} … {hi}")
        times = QLabel("×", self)
        times.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.lock = _lock_button(self, "Keep height and width equal (square)")
        self.lock.setChecked(True)
        lay.addWidget(self.h)
        lay.addWidget(times)
        lay.addWidget(self.w)
        lay.addWidget(self.lock)
        lay.addStretch(1)
        self.h.valueChanged.connect(lambda v: self._changed(v, "h"))
        self.w.valueChanged.connect(lambda v: self._changed(v, "w"))
        self._lock_decided = False

    def _changed(self, v: int, which: str) -> None:
        if self.lock.isChecked():
            other = self.w if which == "h" else self.h
            other.set_quietly(v)
            self._emit([v, v])
        else:
            self._emit([self.h.value(), self.w.value()])

    def _auto_toggled(self, on: bool) -> None:
        self.h.setEnabled(not on)
        self.w.setEnabled(not on)
        self.lock.setEnabled(not on)
        self._emit(None if on else [self.h.value(), self.w.value()])

    def set_value(self, value, layer, in_shape):
        shown = value
        if value is None and layer is not None:
            shown = list(layer.kernel_size)  # stride None means "= kernel"
        if self.auto is not None:
            if self.auto.isChecked() != (value is None):
                self.auto.blockSignals(True)
                self.auto.setChecked(value is None)
                self.auto.blockSignals(False)
            for w in (self.h, self.w, self.lock):
                w.setEnabled(value is not None)
        if shown is None:
            return
        if not self._lock_decided:  # start locked when square, unlocked otherwise
            self.lock.setChecked(shown[0] == shown[1])
            self._lock_decided = True
        elif shown[0] != shown[1] and self.lock.isChecked():
            self.lock.setChecked(False)  # e.g. undo restored a non-square value
        self.h.set_quietly(int(shown[0]))
        self.w.set_quietly(int(shown[1]))


class PaddingEditor(ParamEditor):
    """'valid' / 'same' / explicit, with four spin boxes laid out around a centre lock."""

    def __init__(self, param, commit, parent=None):
        super().__init__(param, commit, parent)
        self.mode = QComboBox(self)
        for key, text in PAD_MODES:
            self.mode.addItem(text, key)
        self.mode.setToolTip(param.doc)
        self.sides = {}
        box = QWidget(self)
        grid = QGridLayout(box)
        grid.setContentsMargins(0, 2, 0, 0)
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(2)
        names = {"top": "Top", "left": "Left", "bottom": "Bottom", "right": "Right"}
        for key, (r, c) in {"top": (0, 1), "left": (1, 0), "right": (1, 2),
                            "bottom": (2, 1)}.items():
            s = _Spin(int(param.min or 0), int(param.max) if param.max is not None else 1024, box)
            s.setMinimumWidth(52)
            s.setToolTip(f"{names[key]} zero padding (cells)")
            s.valueChanged.connect(lambda v, k=key: self._side_changed(k, v))
            grid.addWidget(s, r, c)
            self.sides[key] = s
        self.lock = _lock_button(box, "Same padding on all four sides")
        grid.addWidget(self.lock, 1, 1, Qt.AlignmentFlag.AlignCenter)
        grid.setColumnStretch(3, 1)
        box.setVisible(False)  # shown for explicit pads only
        self.box = box
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        row = QHBoxLayout()
        row.addWidget(self.mode)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(box)
        self.mode.activated.connect(self._mode_changed)
        self._resolved = (0, 0, 0, 0)
        self._lock_decided = False

    def _pads(self) -> list[int]:
        return [self.sides[k].value() for k in ("top", "left", "bottom", "right")]

    def _side_changed(self, key: str, v: int) -> None:
        if self.lock.isChecked():
            for k, s in self.sides.items():
                if k != key:
                    s.set_quietly(v)
        self._emit(self._pads())

    def _mode_changed(self, i: int) -> None:
        key = self.mode.itemData(i)
        if key == "explicit":
            # start from what the current setting pads (same -> its resolved pads)
            pads = list(self._resolved)
            for k, v in zip(("top", "left", "bottom", "right"), pads):
                self.sides[k].set_quietly(v)
            self.lock.setChecked(len(set(pads)) == 1)
            self._emit(pads)
        else:
            self._emit(key)
        self._show_box(key == "explicit")

    def _show_box(self, on: bool) -> None:
        if self.box.isVisibleTo(self) != on:
            self.box.setVisible(on)
            self.updateGeometry()

    def set_value(self, value, layer, in_shape):
        key = value if isinstance(value, str) else "explicit"
        i = self.mode.findData(key)
        if i != self.mode.currentIndex():
            self.mode.blockSignals(True)
            self.mode.setCurrentIndex(i)
            self.mode.blockSignals(False)
        self._show_box(key == "explicit")
        if layer is not None and in_shape is not None and len(in_shape) == 3:
            try:
                k = layer.kernel_size
                s = getattr(layer, "strides", None) or layer.stride
                d = layer.values.get("dilation", [1, 1])
                self._resolved = resolve_pads(value, in_shape[1], in_shape[2], k, s, d)
            except (AttributeError, TypeError, ValueError):
                self._resolved = (0, 0, 0, 0)
        if key == "explicit":
            pads = list(value)
            if not self._lock_decided:
                self.lock.setChecked(len(set(pads)) == 1)
                self._lock_decided = True
            elif len(set(pads)) != 1 and self.lock.isChecked():
                self.lock.setChecked(False)
            for k, v in zip(("top", "left", "bottom", "right"), pads):
                self.sides[k].set_quietly(int(v))


EDITORS = {INT: IntEditor, FLOAT: FloatEditor, BOOL: BoolEditor, CHOICE: ChoiceEditor,
           PAIR: PairEditor, PADDING: PaddingEditor}


__all__ = ["EDITORS", "BoolEditor", "ChoiceEditor", "FloatEditor", "FloatSpin", "IntEditor",
           "PaddingEditor", "PairEditor", "ParamEditor", "choice_label", "current_params",
           "param_title"]
