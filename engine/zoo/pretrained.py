"""The published torchvision weight files for the templates: URL, hash prefix, transforms.

    w = find_weights("resnet50")              # the template's default (torchvision's DEFAULT)
    w = find_weights("resnet50.IMAGENET1K_V1")
    w.url, w.file_name, w.hash_prefix         # .../resnet50-11ad3fa6.pth, "11ad3fa6"
    w.crop, w.resize, w.mean, w.std           # the preprocessing the weights were trained with

A static table read off torchvision's `Weights` enums (torchvision/models/*.py, torchvision
0.28): only the ImageNet-1k classifiers (vgg16's IMAGENET1K_FEATURES, a feature extractor
without a trained head and with other normalisation, is left out). Nothing here imports
torchvision; tests/engine/test_pretrained.py compares the table with torchvision's enums where
torchvision is installed, so it cannot drift unnoticed. Every template but LeNet-5 has entries.

The preprocessing is what each entry's `transforms` declares (ImageClassification: resize the
shorter side to `resize` with `interpolation` and antialiasing, centre-crop `crop`×`crop`,
scale to 0..1, subtract `mean`, divide by `std`, RGB). GoogLeNet and Inception-v3 are built by
torchvision with `transform_input=True` for these weights: the model itself turns the
ImageNet-normalised input into (x − 0.5) / 0.5 per channel. The templates have no such step,
so the normalisation they need is mean = std = 0.5 (`input_mean` / `input_std`).

The file names carry the first hex digits of the file's SHA-256 after the last "-" before the
suffix, as torch.hub's HASH_REGEX reads them (`hash_prefix`).

DenseNet files predate torchvision's current key names ("denselayer1.norm.1.weight" for
"denselayer1.norm1.weight"); `fix_keys` renames them as torchvision's own loader does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

BASE_URL = "https://download.pytorch.org/models/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torch.hub.HASH_REGEX: the hash prefix in a published file name
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
# torchvision.models.densenet._load_state_dict's pattern for the old key names
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                               r"((?:[12])\.(?:weight|bias|running_mean|running_var))$")
TRANSFORM_INPUT = ("googlenet", "inception_v3")  # built with transform_input=True


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weight file of a template and the preprocessing it was trained with."""

    template: str  # engine.zoo.templates key (= torchvision's builder name)
    weights: str  # torchvision's enum member, e.g. "IMAGENET1K_V2"
    file_name: str  # at BASE_URL
    crop: int  # the model's input: crop×crop pixels
    resize: int  # the shorter side is resized to this before the centre crop
    acc1: float  # ImageNet-1k top-1 / top-5 accuracy (%), torchvision's meta
    acc5: float
    size_mb: float  # torchvision's meta "_file_size" (MB)
    default: bool = False  # torchvision's DEFAULT for the template
    interpolation: str = "bilinear"
    classes: int = 1000  # ImageNet-1k
    mean: tuple[float, float, float] = IMAGENET_MEAN  # as the transforms declare them
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def name(self) -> str:
        return f"{self.template}.{self.weights}"

    @property
    def url(self) -> str:
        return BASE_URL + self.file_name

    @property
    def hash_prefix(self) -> str:
        """The leading hex digits of the file's SHA-256 that its name carries."""
        return hash_prefix(self.file_name)

    @property
    def transform_input(self) -> bool:
        """True where torchvision's model renormalises its input itself (GoogLeNet,
        Inception-v3) and the template therefore wants mean = std = 0.5."""
        return self.template in TRANSFORM_INPUT

    @property
    def input_mean(self) -> tuple[float, float, float]:
        """The per-channel mean the template's input must be normalised with."""
        return (0.5, 0.5, 0.5) if self.transform_input else self.mean

    @property
    def input_std(self) -> tuple[float, float, float]:
        return (0.5, 0.5, 0.5) if self.transform_input else self.std

    def input_spec(self):
        """The engine.inputspec.InputSpec photos go through for these weights (the resize's
        interpolation aside: the spec resizes bilinearly, EfficientNet-B0 was trained bicubic)."""
        from ..inputspec import InputSpec

        return InputSpec((self.crop, self.crop), resize=self.resize, channels="RGB",
                         value_range=(0.0, 1.0), mean=self.input_mean, std=self.input_std)

    def fix_keys(self, state: Mapping) -> dict:
        """`state` with the file's old key names renamed to the template's (DenseNet)."""
        if not self.template.startswith("densenet"):
            return dict(state)
        out = {}
        for key, value in state.items():
            m = _DENSENET_OLD_KEY.match(key)
            out[m.group(1) + m.group(2) if m else key] = value
        return out


def hash_prefix(file_name: str) -> str:
    """"resnet18-f37072fd.pth" -> "f37072fd"; ValueError when the name carries none."""
    m = HASH_REGEX.search(file_name)
    if not m or not m.group(1):
        raise ValueError(f"{file_name}: no hash prefix in the file name")
    return m.group(1)


def _w(template, weights, file_name, crop, resize, acc1, acc5, size_mb, **kw):
    return PretrainedWeights(template, weights, file_name, crop, resize, acc1, acc5, size_mb,
                             **kw)


# template, torchvision enum member, file, crop, resize, top-1, top-5, MB (torchvision 0.28)
_TABLE = [
    _w("alexnet", "IMAGENET1K_V1", "alexnet-owt-7be5be79.pth", 224, 256, 56.522, 79.066, 233.087, default=True),
    _w("vgg11", "IMAGENET1K_V1", "vgg11-8a719046.pth", 224, 256, 69.02, 88.628, 506.84, default=True),
    _w("vgg16", "IMAGENET1K_V1", "vgg16-397923af.pth", 224, 256, 71.592, 90.382, 527.796, default=True),
    _w("googlenet", "IMAGENET1K_V1", "googlenet-1378be20.pth", 224, 256, 69.778, 89.53, 49.731, default=True),
    _w("squeezenet1_0", "IMAGENET1K_V1", "squeezenet1_0-b66bff10.pth", 224, 256, 58.092, 80.42, 4.778, default=True),
    _w("squeezenet1_1", "IMAGENET1K_V1", "squeezenet1_1-b8a52dc0.pth", 224, 256, 58.178, 80.624, 4.729, default=True),
    _w("resnet18", "IMAGENET1K_V1", "resnet18-f37072fd.pth", 224, 256, 69.758, 89.078, 44.661, default=True),
    _w("resnet50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", 224, 256, 76.13, 92.862, 97.781, default=False),
    _w("resnet50", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 224, 232, 80.858, 95.434, 97.79, default=True),
    _w("densenet121", "IMAGENET1K_V1", "densenet121-a639ec97.pth", 224, 256, 74.434, 91.972, 30.845, default=True),
    _w("densenet201", "IMAGENET1K_V1", "densenet201-c1103571.pth", 224, 256, 76.896, 93.37, 77.373, default=True),
    _w("inception_v3", "IMAGENET1K_V1", "inception_v3_google-0cc3c7bd.pth", 299, 342, 77.294, 93.45, 103.903, default=True),
    _w("mobilenet_v2", "IMAGENET1K_V1", "mobilenet_v2-b0353104.pth", 224, 256, 71.878, 90.286, 13.555, default=False),
    _w("mobilenet_v2", "IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", 224, 232, 72.154, 90.822, 13.598, default=True),
    _w("resnext50_32x4d", "IMAGENET1K_V1", "resnext50_32x4d-7cdf4587.pth", 224, 256, 77.618, 93.698, 95.789, default=False),
    _w("resnext50_32x4d", "IMAGENET1K_V2", "resnext50_32x4d-1a0047aa.pth", 224, 232, 81.198, 95.34, 95.833, default=True),
    _w("wide_resnet50_2", "IMAGENET1K_V1", "wide_resnet50_2-95faca4d.pth", 224, 256, 78.468, 94.086, 131.82, default=False),
    _w("wide_resnet50_2", "IMAGENET1K_V2", "wide_resnet50_2-9ba9bcbe.pth", 224, 232, 81.602, 95.758, 263.124, default=True),
    _w("mobilenet_v3_small", "IMAGENET1K_V1", "mobilenet_v3_small-047dcff4.pth", 224, 256, 67.668, 87.402, 9.829, default=True),
    _w("mobilenet_v3_large", "IMAGENET1K_V1", "mobilenet_v3_large-8738ca79.pth", 224, 256, 74.042, 91.34, 21.114, default=False),
    _w("mobilenet_v3_large", "IMAGENET1K_V2", "mobilenet_v3_large-5c1a4163.pth", 224, 232, 75.274, 92.566, 21.107, default=True),
    _w("efficientnet_b0", "IMAGENET1K_V1", "efficientnet_b0_rwightman-7f5810bc.pth", 224, 256, 77.692, 93.532, 20.451, default=True, interpolation="bicubic"),
    _w("shufflenet_v2_x1_0", "IMAGENET1K_V1", "shufflenetv2_x1-5666bf0f80.pth", 224, 256, 69.362, 88.316, 8.791, default=True),
    _w("mnasnet1_0", "IMAGENET1K_V1", "mnasnet1.0_top1_73.512-f206786ef8.pth", 224, 256, 73.456, 91.51, 16.915, default=True),
    _w("regnet_x_400mf", "IMAGENET1K_V1", "regnet_x_400mf-adf1edd5.pth", 224, 256, 72.834, 90.95, 21.258, default=False),
    _w("regnet_x_400mf", "IMAGENET1K_V2", "regnet_x_400mf-62229a5f.pth", 224, 232, 74.864, 92.322, 21.257, default=True),
    _w("regnet_y_400mf", "IMAGENET1K_V1", "regnet_y_400mf-c65dace8.pth", 224, 256, 74.046, 91.716, 16.806, default=False),
    _w("regnet_y_400mf", "IMAGENET1K_V2", "regnet_y_400mf-e6988f5f.pth", 224, 232, 75.804, 92.742, 16.806, default=True),
    _w("convnext_tiny", "IMAGENET1K_V1", "convnext_tiny-983f1562.pth", 224, 236, 82.52, 96.146, 109.119, default=True),
]
PRETRAINED: dict[str, PretrainedWeights] = {w.name: w for w in _TABLE}
DEFAULTS: dict[str, str] = {w.template: w.name for w in _TABLE if w.default}


def find_weights(name: str) -> PretrainedWeights:
    """An entry by its name ("resnet50.IMAGENET1K_V1") or its template's ("resnet50": the
    default); ValueError naming the known ones otherwise."""
    key = DEFAULTS.get(name, name)
    if key in PRETRAINED:
        return PRETRAINED[key]
    raise ValueError(f"no pretrained weights named {name!r}; known: "
                     f"{', '.join(DEFAULTS)} (or TEMPLATE.WEIGHTS: "
                     f"{', '.join(k for k in PRETRAINED if k not in DEFAULTS.values())})")


__all__ = ["BASE_URL", "DEFAULTS", "PRETRAINED", "PretrainedWeights", "find_weights",
           "hash_prefix"]
