"""The input spec editor: how a photo becomes the network's input (resize / crop, channel order,
value range, mean / std, interpolation), opened from the inspector's Input layer.

The size is the Input layer's (engine.inputspec.model_spec fits a stored spec to it), so the
dialog edits the rest. It only builds an InputSpec; the inspector pushes it as one
SetInputSpecCommand, so the edit is undoable and marks the document modified.
"""

from __future__ import annotations

import dataclasses
from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.errors import ParamError
from engine.inputspec import IMAGENET, INTERPOLATIONS, InputSpec

from .theme import severity_hex

CHANNEL_CHOICES = {3: (("RGB", "RGB (as Pillow reads photos)"), ("BGR", "BGR (OpenCV, Caffe)")),
                   1: (("L", "Grey (one channel)"),)}


def imagenet_for(size: tuple[int, int]) -> InputSpec:
    """torchvision's ImageNet preprocessing at `size` (H, W): the shorter side resized by
    256:224 before the centre crop, RGB, 0..1, ImageNet's mean and std."""
    h, w = size
    resize = max(h, w, round(min(h, w) * 256 / 224))
    return dataclasses.replace(IMAGENET, size=(h, w), resize=resize)


def _spin(lo: float, hi: float, decimals: int = 4, step: float = 0.01) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setAccelerated(True)
    return s


class InputSpecDialog(QDialog):
    """Edit `spec` (already fitted to the Input's C×H×W `shape`); `result_spec()` after accept:
    the new spec, or None when it is the default for the shape (nothing stored)."""

    def __init__(self, spec: InputSpec, shape: tuple[int, int, int],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Input Spec")
        self.setMinimumWidth(560)
        self.shape = tuple(int(v) for v in shape)
        c, h, w = self.shape
        self._size = (h, w)
        self._spec: InputSpec | None = spec

        lay = QVBoxLayout(self)
        intro = QLabel(f"How a photo becomes the network's {c}×{h}×{w} input, wherever one is "
                       "fed to it: <code>infer --image</code>, fine-tuning and training on image "
                       "folders, the feature-map inspector, explanations and the exported "
                       "ONNX's preprocessing. The size is the Input layer's.", self)
        intro.setWordWrap(True)
        lay.addWidget(intro)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        row = QHBoxLayout()
        self.crop = QCheckBox("Shorter side to", self)
        self.crop.setToolTip("Resize keeping the aspect ratio, then cut out the centre "
                             f"{h}×{w} (torchvision's Resize + CenterCrop). Unchecked: resize "
                             f"straight to {h}×{w}, stretching the photo.")
        self.resize = QSpinBox(self)
        self.resize.setRange(max(h, w), 16384)
        self.resize.setSuffix(" px")
        self.crop_note = QLabel(self)
        row.addWidget(self.crop)
        row.addWidget(self.resize)
        row.addWidget(self.crop_note, 1)
        form.addRow("Resize", row)

        self.interpolation = QComboBox(self)
        for name in INTERPOLATIONS:
            self.interpolation.addItem(name.capitalize(), name)
        self.interpolation.setToolTip("Resampling of the resize (Pillow's, antialiased when "
                                      "shrinking, as torchvision's).")
        form.addRow("Interpolation", self.interpolation)

        self.channels = QComboBox(self)
        for value, label in CHANNEL_CHOICES.get(c, ()):
            self.channels.addItem(label, value)
        self.channels.setEnabled(self.channels.count() > 1)
        self.channels.setToolTip("The order of the colour channels the network was trained "
                                 "with; the Input layer's channel count decides colour or grey.")
        form.addRow("Channels", self.channels)

        row = QHBoxLayout()
        self.low, self.high = _spin(-1e6, 1e6), _spin(-1e6, 1e6)
        row.addWidget(self.low)
        row.addWidget(QLabel("to", self))
        row.addWidget(self.high)
        row.addStretch(1)
        self.low.setToolTip("Pixel 0 becomes this value (before mean / std).")
        self.high.setToolTip("Pixel 255 becomes this value (before mean / std).")
        form.addRow("Pixel 0..255 to", row)

        self.normalise = QCheckBox("Subtract the mean, divide by the std (per channel)", self)
        form.addRow("Normalise", self.normalise)
        grid = QGridLayout()
        grid.setHorizontalSpacing(6)
        names = ("R", "G", "B") if c == 3 else ("grey",)
        self.means, self.stds = [], []
        for j, name in enumerate(names):
            head = QLabel(name, self)
            head.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(head, 0, j + 1)
            m, s = _spin(-1e6, 1e6), _spin(1e-6, 1e6)
            grid.addWidget(m, 1, j + 1)
            grid.addWidget(s, 2, j + 1)
            self.means.append(m)
            self.stds.append(s)
        grid.addWidget(QLabel("Mean", self), 1, 0)
        grid.addWidget(QLabel("Std", self), 2, 0)
        self.norm_box = QWidget(self)
        self.norm_box.setLayout(grid)
        grid.setContentsMargins(0, 0, 0, 0)
        form.addRow("", self.norm_box)
        lay.addLayout(form)

        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.summary)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, self)
        self.imagenet_button = QPushButton("ImageNet", self)
        self.imagenet_button.setToolTip("torchvision's ImageNet preprocessing: shorter side "
                                        "256:224 of the crop, bilinear, RGB, 0..1, mean 0.485, "
                                        "0.456, 0.406, std 0.229, 0.224, 0.225.")
        self.imagenet_button.setEnabled(c == 3)
        self.default_button = QPushButton("Default", self)
        self.default_button.setToolTip(f"Resize straight to {h}×{w}, pixel 0..255 to 0..1, no "
                                       "mean / std (what a project without a spec uses).")
        buttons.addButton(self.imagenet_button, QDialogButtonBox.ButtonRole.ResetRole)
        buttons.addButton(self.default_button, QDialogButtonBox.ButtonRole.ResetRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        lay.addWidget(buttons)
        self.imagenet_button.clicked.connect(lambda: self.set_spec(imagenet_for(self._size)))
        self.default_button.clicked.connect(lambda: self.set_spec(self.default()))

        self.set_spec(spec)
        for sig in (self.crop.toggled, self.resize.valueChanged,
                    self.interpolation.currentIndexChanged, self.channels.currentIndexChanged,
                    self.low.valueChanged, self.high.valueChanged, self.normalise.toggled,
                    *(b.valueChanged for b in (*self.means, *self.stds))):
            sig.connect(self._update)

    # ---- values ----------------------------------------------------------------------------

    def default(self) -> InputSpec:
        return InputSpec.for_shape(self.shape)

    def set_spec(self, spec: InputSpec) -> None:
        """Show `spec` in the fields (its size is the Input's)."""
        widgets = (self.crop, self.resize, self.interpolation, self.channels, self.low,
                   self.high, self.normalise, *self.means, *self.stds)
        for wdg in widgets:
            wdg.blockSignals(True)
        h, w = self._size
        self.crop.setChecked(spec.resize is not None)
        self.resize.setValue(spec.resize or max(h, w, round(min(h, w) * 256 / 224)))
        self.interpolation.setCurrentIndex(max(0, self.interpolation.findData(spec.interpolation)))
        self.channels.setCurrentIndex(max(0, self.channels.findData(spec.channels)))
        self.low.setValue(spec.value_range[0])
        self.high.setValue(spec.value_range[1])
        self.normalise.setChecked(bool(spec.mean or spec.std))
        n = len(self.means)
        for boxes, values, empty in ((self.means, spec.mean, 0.0), (self.stds, spec.std, 1.0)):
            values = values or (empty,)
            for j, box in enumerate(boxes):
                box.setValue(values[j] if len(values) == n else values[0])
        for wdg in widgets:
            wdg.blockSignals(False)
        self._update()

    def _build(self) -> InputSpec | str:
        """The spec the fields make, or the reason they make none."""
        norm = self.normalise.isChecked()
        try:
            return InputSpec(
                self._size, resize=self.resize.value() if self.crop.isChecked() else None,
                channels=self.channels.currentData() or "RGB",
                value_range=(self.low.value(), self.high.value()),
                mean=tuple(b.value() for b in self.means) if norm else (),
                std=tuple(b.value() for b in self.stds) if norm else (),
                interpolation=self.interpolation.currentData())
        except ParamError as exc:
            return str(exc)

    def _update(self, *_) -> None:
        h, w = self._size
        self.resize.setEnabled(self.crop.isChecked())
        self.crop_note.setText(f"then crop the centre {h}×{w}" if self.crop.isChecked()
                               else f"(off: straight to {h}×{w})")
        self.norm_box.setEnabled(self.normalise.isChecked())
        spec = self._build()
        ok = isinstance(spec, InputSpec)
        self._spec = spec if ok else None
        self.ok_button.setEnabled(ok)
        if ok:
            what = "the default" if spec == self.default() else (
                "ImageNet's" if spec == imagenet_for(self._size) else "")
            self.summary.setText(f"<b>{escape(spec.describe())}</b>"
                                 + (f" &nbsp;({what})" if what else ""))
        else:
            self.summary.setText(f"<span style='color:{severity_hex('error', self)}'>"
                                 f"{escape(spec)}</span>")

    def current_spec(self) -> InputSpec | None:
        """What the fields make now (None while they make no valid spec)."""
        return self._spec

    def result_spec(self) -> InputSpec | None:
        """The spec to store: None for the default of the Input's shape."""
        spec = self._spec
        return None if spec is None or spec == self.default() else spec


__all__ = ["InputSpecDialog", "imagenet_for"]
