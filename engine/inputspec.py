"""A model's input spec (size, resize/crop, channel order, value range, mean/std) and the one
function that turns any photo into the array the model takes.

The steps follow torchvision's classic preprocessing so that published weights see what they
were trained on: Resize(shorter side, bilinear with antialias, as Pillow does) → CenterCrop →
ToTensor (pixel / 255) → Normalize(mean, std). Each step is a separate function so that the
exported ONNX preprocessing (engine/onnx/preprocess.py) can take over after the crop:
`photo_pixels` (decode, convert, resize, crop: uint8 H×W×C) then `normalise` (float32 C×H×W).
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import DataError, ParamError

CHANNELS = {"RGB": 3, "BGR": 3, "L": 1}
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class InputSpec:
    """How a photo becomes the network's input.

    size: (H, W) the network takes. resize: the shorter side is resized to this (keeping the
    aspect ratio), then the centre H×W is cropped (torchvision: 256 → 224); None resizes
    straight to H×W. channels: "RGB", "BGR" or "L" (grey). value_range: pixel 0..255 maps
    linearly onto it. mean / std: per channel, applied after the range mapping; () for none.
    interpolation: of the resize (Pillow's, antialiased when shrinking, as torchvision's).
    """

    size: tuple[int, int]
    resize: int | None = None
    channels: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    interpolation: str = "bilinear"  # of the resize: "bilinear" | "bicubic" | "nearest"

    def __post_init__(self):
        # Lists from JSON or a GUI become tuples, so specs compare and hash by value.
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.resize is not None:
            object.__setattr__(self, "resize", int(self.resize))
        problem = self.problem()
        if problem:
            raise ParamError(f"input spec: {problem}", problem.split(" ", 1)[0])

    def problem(self) -> str:
        """'' when the spec is consistent, else one line naming the field and its value."""
        if len(self.size) != 2 or min(self.size) < 1:
            return f"size must be two positive numbers (H, W), got {self.size}"
        if self.channels not in CHANNELS:
            return f"channels must be one of {', '.join(CHANNELS)}, got {self.channels!r}"
        if self.interpolation not in INTERPOLATIONS:
            return (f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                    f"{self.interpolation!r}")
        if self.resize is not None and self.resize < max(self.size):
            return (f"resize {self.resize} is smaller than the crop {self.size[0]}×{self.size[1]};"
                    f" it must be at least {max(self.size)} (or none)")
        lo, hi = self.value_range if len(self.value_range) == 2 else (0.0, 0.0)
        if len(self.value_range) != 2 or not np.isfinite([lo, hi]).all() or lo == hi:
            return f"value_range must be two different finite numbers, got {self.value_range}"
        c = self.n_channels
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values and len(values) not in (1, c):
                return (f"{name} has {len(values)} values but channels {self.channels} has {c}; "
                        f"give {c} (or 1, or none)")
            if not np.isfinite(values).all():
                return f"{name} must be finite, got {values}"
        if any(s == 0 for s in self.std):
            return f"std must not be 0, got {self.std}"
        return ""

    @property
    def n_channels(self) -> int:
        return CHANNELS[self.channels]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The C×H×W array this spec produces."""
        return (self.n_channels, *self.size)

    def fits(self, in_shape) -> str:
        """'' when the spec produces the network input `in_shape` (C, H, W), else why not."""
        if in_shape is None or len(in_shape) != 3:
            return f"the network's input {in_shape} is not an image (C×H×W)"
        if tuple(int(v) for v in in_shape) != self.shape:
            c, h, w = self.shape
            return (f"the input spec makes {c}×{h}×{w} arrays but the network's input is "
                    f"{'×'.join(str(v) for v in in_shape)}")
        return ""

    def describe(self) -> str:
        """One line for users: 'resize 256, crop 224×224, RGB, 0..1, mean …, std …'."""
        h, w = self.size
        parts = [f"resize {self.resize}, crop {h}×{w}" if self.resize else f"resize to {h}×{w}",
                 *([self.interpolation] if self.interpolation != "bilinear" else []),
                 self.channels, f"{_num(self.value_range[0])}..{_num(self.value_range[1])}"]
        if self.mean:
            parts.append("mean " + ", ".join(_num(v) for v in self.mean))
        if self.std:
            parts.append("std " + ", ".join(_num(v) for v in self.std))
        return ", ".join(parts)

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_string(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, d: dict | str) -> InputSpec:
        if isinstance(d, str):
            try:
                d = json.loads(d)
            except json.JSONDecodeError as exc:
                raise ParamError(f"input spec: not JSON ({exc})", "input_spec") from None
        if not isinstance(d, dict) or "size" not in d:
            raise ParamError(f"input spec: expected an object with at least 'size', got {d!r}",
                             "input_spec")
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ParamError(f"input spec: unknown field(s) {', '.join(sorted(unknown))}",
                             min(unknown))
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ParamError):
                raise
            raise ParamError(f"input spec: {exc}", "input_spec") from None

    @classmethod
    def for_shape(cls, in_shape) -> InputSpec:
        """The default for a network input (C, H, W): resize straight to H×W, 0..1, no mean/std
        (what the image-folder loader always did; MNIST's 1×28×28 [0, 1])."""
        c, h, w = (int(v) for v in in_shape)
        return cls((h, w), channels="L" if c == 1 else "RGB")


IMAGENET = InputSpec((224, 224), resize=256, channels="RGB", value_range=(0.0, 1.0),
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def imagenet(size: int = 224, resize: int | None = None) -> InputSpec:
    """torchvision's ImageNet spec at another size (Inception-v3: 299, resize 342)."""
    return InputSpec((size, size), resize=resize or round(size * 256 / 224),
                     mean=IMAGENET.mean, std=IMAGENET.std)


def _num(v: float) -> str:
    return f"{v:g}"


# ---- photos ---------------------------------------------------------------------------------

def open_photo(source):
    """A Pillow image from a path, bytes, a file object or an Image; DataError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source
    name = str(source) if isinstance(source, (str, Path)) else "photo"
    try:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        im = Image.open(source)
        im.load()
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: unreadable image ({exc})") from None
    return im


def to_mode(im, channels: str) -> tuple[object, list[str]]:
    """Any Pillow image -> "RGB" or "L", 8 bits, with notes saying what was converted:
    grey, palette, CMYK, 16-bit, float, transparency (flattened onto white), EXIF rotation,
    extra frames."""
    from PIL import Image, ImageOps

    notes: list[str] = []
    target = "L" if channels == "L" else "RGB"
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"used the first of {im.n_frames} frames")
        im.seek(0)
    if _orientation(im) not in (None, 1):
        notes.append("turned upright as its EXIF orientation says")
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            notes.append("16-bit grey scaled to 8 bits")
            a = a * (255 / 65535)
        elif mode == "F":
            notes.append("floating-point grey clipped to 0..255")
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode == "P":
        notes.append("converted from palette colours")
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min(initial=255) < 255:
            notes.append("transparency flattened onto white")
            base = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(base, im.convert("RGBA"))
        im = im.convert("RGB" if mode.startswith(("RGB", "P")) else "L")
        mode = im.mode
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    if mode != target:
        what = {"L": "grayscale", "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab",
                "HSV": "HSV", "RGB": "RGB", "RGBX": "RGBX"}.get(mode, mode)
        notes.append(f"converted from {what} to {'grayscale' if target == 'L' else 'RGB'}")
        im = im.convert(target)
    return im, notes


def _orientation(im) -> int | None:
    try:
        return im.getexif().get(0x0112)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):  # broken EXIF: ignore it
        return None


def fit(im, spec: InputSpec):
    """Resize and centre-crop as torchvision's Resize(resize) + CenterCrop(size) on a Pillow
    image (Pillow antialiases when shrinking, as torchvision's PIL path does)."""
    from PIL import Image

    how = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
           "nearest": Image.Resampling.NEAREST}[spec.interpolation]
    th, tw = spec.size
    w, h = im.size
    if spec.resize is None:
        return im if (w, h) == (tw, th) else im.resize((tw, th), how)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = spec.resize, int(spec.resize * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), how)
    top, left = round((nh - th) / 2.0), round((nw - tw) / 2.0)
    return im.crop((left, top, left + tw, top + th))


def photo_pixels(source, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
    """Any photo -> uint8 (H, W, C) at the spec's size, channels in the spec's order, plus notes
    on every conversion made ("converted from CMYK to RGB")."""
    im, notes = to_mode(open_photo(source), spec.channels)
    im = fit(im, spec)
    a = np.asarray(im, dtype=np.uint8)
    a = a[:, :, None] if a.ndim == 2 else a
    if spec.channels == "BGR":
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a), notes


def scale_divisor(spec: InputSpec) -> np.float32:
    """pixel / this + low = the value range (255 for 0..1, as torchvision's ToTensor divides)."""
    lo, hi = spec.value_range
    return np.float32(255.0 / (hi - lo))


def normalise(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 or float 0..255 pixels (H, W, C) or (N, H, W, C) -> float32 (C, H, W) / (N, C, H, W)
    in the spec's range, minus mean, over std. The float32 operations and their order are those
    of the exported ONNX preprocessing, so both give the same bits."""
    x = np.asarray(pixels).astype(np.float32)
    x = np.moveaxis(x, -1, -3)
    x = x / scale_divisor(spec)
    lo = np.float32(spec.value_range[0])
    if lo != 0:
        x = x + lo
    shape = (-1, 1, 1)
    if spec.mean:
        x = x - np.asarray(spec.mean, np.float32).reshape(shape)
    if spec.std:
        x = x / np.asarray(spec.std, np.float32).reshape(shape)
    return np.ascontiguousarray(x, dtype=np.float32)


def photo_to_array(source, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
    """Any photo (path, bytes, file object or Pillow image) -> float32 (C, H, W) as the spec
    says, plus notes like "converted from CMYK to RGB". DataError when it is not an image."""
    pixels, notes = photo_pixels(source, spec)
    return normalise(pixels, spec), notes


# ---- a model's spec --------------------------------------------------------------------------

def input_shape(graph) -> tuple[int, int, int]:
    """The C×H×W of the graph's Input layer; DataError when there is none or it is not valid."""
    inp = next((n for n in graph.nodes.values() if n.type_name == "Input"), None)
    if inp is None:
        raise DataError("the network has no Input layer, so it cannot take a photo")
    try:
        shape = tuple(int(inp.params[k]) for k in ("channels", "height", "width"))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"Input '{inp.name}': channels, height and width must be whole "
                        f"numbers, got {inp.params}") from None
    if min(shape) < 1:
        raise DataError(f"Input '{inp.name}': channels, height and width must be at least 1, "
                        f"got {'×'.join(map(str, shape))}")
    return shape


def model_spec(graph) -> InputSpec:
    """The spec photos go through for this graph: its stored one (graph.input_spec) made to fit
    the Input layer, else the default for the Input's shape. The Input layer owns the size: a
    stored spec's size follows it (the resize keeps its ratio to the crop, 256:224), so editing
    the Input never leaves a spec that makes the wrong arrays. DataError when the Input takes
    neither 1 (grey) nor 3 (colour) channels, as no photo fits it."""
    c, h, w = input_shape(graph)
    if c not in (1, 3):
        raise DataError(f"the network's Input has {c} channels; a photo gives 1 (grey) or 3 "
                        f"(colour), so set the Input's channels to 1 or 3")
    spec = graph.input_spec
    if spec is None or spec.n_channels != c:
        return InputSpec.for_shape((c, h, w))
    if spec.size == (h, w):
        return spec
    resize = None
    if spec.resize is not None:
        resize = max(h, w, round(spec.resize * min(h, w) / min(spec.size)))
    return dataclasses.replace(spec, size=(h, w), resize=resize)


def spec_note(graph) -> str:
    """'' or one line saying the stored spec was not used as it is (channel count changed)."""
    spec = graph.input_spec
    try:
        c = input_shape(graph)[0]
    except DataError as exc:
        return str(exc)
    if spec is not None and spec.n_channels != c:
        return (f"the input spec is for {spec.channels} ({spec.n_channels} channel"
                f"{'s' * (spec.n_channels > 1)}) but the Input takes {c}; the default for "
                f"{c} channel{'s' * (c > 1)} is used")
    return ""


def data_spec(graph) -> InputSpec | None:
    """model_spec for loading image folders, or None where no photo fits the Input (the loader
    then says why)."""
    try:
        return model_spec(graph)
    except DataError:
        return None
