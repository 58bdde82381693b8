"""The example networks shipped in resources/examples/ (the GUI's Examples menu reads EXAMPLES)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ProjectError
from ..graph import Graph

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "resources" / "examples"


@dataclass(frozen=True)
class Example:
    name: str  # file stem, also accepted by the CLI as MODEL
    title: str  # menu text
    description: str  # one line: input, structure, size


EXAMPLES: list[Example] = [
    Example("lenet5", "LeNet-5 (MNIST, 1×28×28)",
            "LeCun's classic: two 5×5 convolutions with pooling, three fully connected layers; "
            "61,706 parameters."),
    Example("small_vgg", "Small VGG (3×32×32)",
            "Two VGG blocks of 3×3 'same' convolutions with batch norm, ReLU and max pooling, "
            "then a classifier for 10 classes."),
    Example("small_resnet", "Small ResNet (3×32×32)",
            "A stem and three residual blocks joined by Add, one downsampling with a 1×1 "
            "stride-2 projection shortcut; global average pooling and a 10-way classifier."),
    Example("mobile_se", "Mobile SE (MNIST, 1×28×28)",
            "MobileNetV3-style: HardSwish, three inverted residual blocks (1×1 expand, 3×3 "
            "depthwise, squeeze-and-excitation gate, 1×1 project), 22,986 parameters; "
            "99.1% on MNIST after 6 epochs at learning rate 0.003."),
]


def example_names() -> list[str]:
    return [e.name for e in EXAMPLES]


def example_path(name: str) -> Path:
    """Path of an example's architecture JSON; ProjectError lists the known names."""
    if name not in example_names():
        raise ProjectError(f"no example named {name!r}; examples: {', '.join(example_names())}")
    return EXAMPLES_DIR / f"{name}.json"


def load_example(name: str) -> Graph:
    """The example `name` as a fresh Graph."""
    path = example_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read the example ({exc})") from None
    return Graph.loads(text)
