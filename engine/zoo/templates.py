"""Classic architectures as exact templates: each layer graph as torchvision defines it.

    graph = build_template("resnet18", num_classes=10)       # an engine.graph.Graph
    t = TEMPLATES["densenet121"].make(num_classes=1000)      # Template: graph + blocks

Every template mirrors torchvision's module structure: node ids (= names) are torchvision's
module paths ("layer2.0.conv1", "features.denseblock3.denselayer12.conv2"), so trained weights
map across by name; functional ops in torchvision's `forward` (torch.flatten, F.relu,
F.avg_pool2d, torch.cat, the residual `+`) become Flatten, ReLU, AvgPool2d, Concat and Add nodes
named after the place they occur. Trainable parameter counts equal torchvision's exactly
(tests/engine/test_templates.py checks them against torchvision's published numbers), and
loading a torchvision model's state_dict by name gives its outputs
(tests/engine/test_templates_torchvision.py). Squeeze-and-excitation (MobileNetV3,
EfficientNet, RegNetY) is pool -> 1×1 conv -> activation -> 1×1 conv -> gate, then a
broadcasting Multiply ("<se>.mul"); ShuffleNet V2's x.chunk(2) is a ChannelSplit whose output
ports feed the concat and the branch; torch's x.mean([2, 3]) is a ReduceMean ("mean").
ConvNeXt's pointwise nn.Linear layers on channels-last data are Linear(over="channels") nodes
(the same (out, in) weights), its Permutes need no node, and its stochastic depth (identity at
inference) is left out.

Where torchvision keeps a weight under a key (and shape) that no layer's "node.weight" naming
gives, the template says so in `Template.torch_keys`, a declarative alias table: our key ->
torchvision's key, the array reshaped without changing its values. ConvNeXt's layer scale is a
parameter of the block itself, `features.1.0.layer_scale` of shape (C, 1, 1); the template has
a Scale node "features.1.0.layer_scale" whose γ (C,) is "features.1.0.layer_scale.weight", so
its alias is that key. `Template.to_torch` / `Template.from_torch` convert whole state dicts
(tests/engine/test_templates_torchvision.py loads torchvision's state through it, as
pretrained-weight loading will). A table rather than a special Scale keeps layers free of any
one library's naming, and node ids stay torchvision's module paths.

Repeated blocks (residual block, inception module, fire module, dense layer, inverted residual)
are written once as functions. Each template also returns its block membership,
`Template.blocks`: block name -> node ids in build order (e.g. "layer1.0" -> the ids of the
first residual block), outermost blocks first, so a canvas can collapse them. A node can sit in
a nested block ("features.denseblock1" contains "features.denseblock1.denselayer1").

Layout: one row per layer, ROW pixels apart, top to bottom; parallel branches of a block sit
side by side, COL pixels apart, and the merge sits under the longest branch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..graph import Edge, Graph

ROW = 110.0  # vertical distance between rows on the canvas
COL = 260.0  # horizontal distance between parallel branches

Shape = tuple[int, ...]


@dataclass
class Template:
    """A built template: the graph, its block membership (block name -> node ids) and the keys
    torchvision stores some of its weights under (`torch_keys`: our "node.weight" key ->
    torchvision's state_dict key; every other key is the same in both)."""

    graph: Graph
    blocks: dict[str, list[str]] = field(default_factory=dict)
    torch_keys: dict[str, str] = field(default_factory=dict)

    def to_torch(self, state: Mapping[str, np.ndarray],
                 shapes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
        """Our state dict keyed and shaped as torchvision's: `shapes` are torchvision's
        (model.state_dict() shapes); an aliased array is reshaped to its torchvision shape."""
        return _rekey(state, self.torch_keys, shapes)

    def from_torch(self, state: Mapping[str, np.ndarray],
                   shapes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
        """torchvision's state dict keyed and shaped as ours (`shapes`: Network.state_dict()
        shapes), ready for Network.load_state_dict."""
        return _rekey(state, {v: k for k, v in self.torch_keys.items()}, shapes)


def _rekey(state: Mapping[str, np.ndarray], aliases: Mapping[str, str],
           shapes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """`state` with each aliased key renamed and its array reshaped to the new key's shape in
    `shapes` (the same values in the same order; a different count is a ValueError)."""
    out = {}
    for key, arr in state.items():
        new = aliases.get(key, key)
        arr = np.asarray(arr)
        if key in aliases and new in shapes:
            want = tuple(shapes[new])
            if arr.size != int(np.prod(want)):
                raise ValueError(f"'{key}' has {arr.size} values, '{new}' needs shape "
                                 f"{want}")
            arr = arr.reshape(want)
        out[new] = arr
    return out


@dataclass(frozen=True)
class TemplateInfo:
    """One entry of the template registry."""

    title: str
    description: str
    input_shape: Shape
    make: Callable[..., Template]  # make(num_classes=...) -> Template
    reference: str = ""  # where the architecture is defined

    def build(self, num_classes: int | None = None) -> Graph:
        """The graph; num_classes None keeps the architecture's own (10 for LeNet-5, else 1000)."""
        return (self.make() if num_classes is None else self.make(num_classes=num_classes)).graph


class _Builder:
    """Adds nodes with readable ids and canvas positions, and records block membership.

    Edges are appended directly (with explicit ports): the graph is acyclic by construction,
    and skipping Graph.add_edge's cycle check keeps building 700-node DenseNets fast.
    """

    def __init__(self, name: str):
        self.g = Graph(name)
        self.blocks: dict[str, list[str]] = {}
        self.torch_keys: dict[str, str] = {}
        self._open: list[str] = []

    def node(self, type_name: str, nid: str, params: dict | None = None,
             inputs: Sequence[str | tuple[str, int]] = (), x: float = 0.0,
             row: float = 0.0) -> str:
        """An input is a node id, or (node id, output port) for a layer with several outputs."""
        self.g.add_node(type_name, nid, params or {}, position=(x, row * ROW), node_id=nid)
        for port, src in enumerate(inputs):
            src, src_port = (src, 0) if isinstance(src, str) else src
            self.g.edges.append(Edge(src, nid, port, src_port))
        for b in self._open:
            self.blocks[b].append(nid)
        return nid

    def open(self, block: str) -> None:
        self.blocks.setdefault(block, [])
        self._open.append(block)

    def close(self) -> None:
        self._open.pop()

    def result(self) -> Template:
        return Template(self.g, self.blocks, self.torch_keys)


# A cursor through the main column: (last node id, next row).
Cursor = tuple[str, float]


def _seq(b: _Builder, cur: Cursor, specs: Sequence[tuple[str, str, dict | None]],
         x: float = 0.0) -> Cursor:
    """Chain (type, id, params) nodes after cur; returns the new cursor."""
    prev, row = cur
    for type_name, nid, params in specs:
        prev = b.node(type_name, nid, params, [prev], x, row)
        row += 1
    return prev, row


def _conv(out: int, k, s=1, p=0, bias=True, groups=1) -> dict:
    params: dict = {"out_channels": out, "kernel_size": k, "stride": s, "padding": p}
    if not bias:
        params["bias"] = False
    if groups != 1:
        params["groups"] = groups
    return params


def _pool(k, s=None, p=0, ceil=False) -> dict:
    params: dict = {"kernel_size": k, "stride": s if s is not None else k, "padding": p}
    if ceil:
        params["ceil_mode"] = True
    return params


def _input(b: _Builder, c: int, h: int, w: int) -> Cursor:
    return b.node("Input", "input", {"channels": c, "height": h, "width": w}), 1.0


def _head(b: _Builder, cur: Cursor, num_classes: int, in_pool: str = "avgpool",
          dropout: float | None = None, fc: str = "fc") -> Cursor:
    """AdaptiveAvgPool2d(1) -> Flatten -> [Dropout] -> Linear (ResNet, GoogLeNet, ...)."""
    specs: list = [("AdaptiveAvgPool2d", in_pool, {"output_size": [1, 1]}),
                   ("Flatten", "flatten", None)]
    if dropout is not None:
        specs.append(("Dropout", "dropout", {"p": dropout}))
    specs.append(("Linear", fc, {"out_features": num_classes}))
    return _seq(b, cur, specs)


def _branches(b: _Builder, src: str, row: float, x0: float,
              branches: Sequence[Callable[[str, float, float], Cursor]],
              widths: Sequence[int] | None = None) -> tuple[list[str], float]:
    """Run parallel branch builders side by side from `src`; returns their outputs and the
    first free row under the longest one. Each builder takes (src, x, row) -> cursor; a branch
    that forks again takes widths[i] columns."""
    widths = list(widths or [1] * len(branches))
    total = sum(widths)
    outs, end, left = [], row, 0
    for make, w in zip(branches, widths):
        x = x0 + (left + w / 2 - total / 2) * COL
        left += w
        last, r = make(src, x, row)
        outs.append(last)
        end = max(end, r)
    return outs, end


# ---- LeNet-5 -------------------------------------------------------------------------------

def lenet5(num_classes: int = 10) -> Template:
    """LeNet-5 (LeCun et al., 1998) for 1×28×28 MNIST: the first conv pads by 2 so the 28×28
    digits act like the paper's 32×32 input; tanh and average pooling ("subsampling") as in
    the paper; 61,706 parameters for 10 classes."""
    b = _Builder("LeNet-5")
    cur = _input(b, 1, 28, 28)
    _seq(b, cur, [
        ("Conv2d", "conv1", _conv(6, 5, p=2)), ("Tanh", "tanh1", None),
        ("AvgPool2d", "pool1", _pool(2)),
        ("Conv2d", "conv2", _conv(16, 5)), ("Tanh", "tanh2", None),
        ("AvgPool2d", "pool2", _pool(2)),
        ("Flatten", "flatten", None),
        ("Linear", "fc1", {"out_features": 120}), ("Tanh", "tanh3", None),
        ("Linear", "fc2", {"out_features": 84}), ("Tanh", "tanh4", None),
        ("Linear", "fc3", {"out_features": num_classes}),
    ])
    return b.result()


# ---- AlexNet and VGG (torchvision.models.alexnet / vgg) ----------------------------------

def _classifier(b: _Builder, cur: Cursor, num_classes: int, layout: Sequence) -> Cursor:
    """torchvision's `classifier` Sequential: ("D", p) dropout, ("L", n) linear, ("R",) ReLU."""
    specs = []
    for i, item in enumerate(layout):
        nid = f"classifier.{i}"
        if item[0] == "D":
            specs.append(("Dropout", nid, {"p": item[1]}))
        elif item[0] == "R":
            specs.append(("ReLU", nid, None))
        else:
            n = num_classes if item[1] is None else item[1]
            specs.append(("Linear", nid, {"out_features": n}))
    return _seq(b, cur, specs)


def alexnet(num_classes: int = 1000) -> Template:
    """torchvision's AlexNet (the one-GPU variant of "One weird trick", no LRN)."""
    b = _Builder("AlexNet")
    cur = _input(b, 3, 224, 224)
    b.open("features")
    cur = _seq(b, cur, [
        ("Conv2d", "features.0", _conv(64, 11, s=4, p=2)), ("ReLU", "features.1", None),
        ("MaxPool2d", "features.2", _pool(3, 2)),
        ("Conv2d", "features.3", _conv(192, 5, p=2)), ("ReLU", "features.4", None),
        ("MaxPool2d", "features.5", _pool(3, 2)),
        ("Conv2d", "features.6", _conv(384, 3, p=1)), ("ReLU", "features.7", None),
        ("Conv2d", "features.8", _conv(256, 3, p=1)), ("ReLU", "features.9", None),
        ("Conv2d", "features.10", _conv(256, 3, p=1)), ("ReLU", "features.11", None),
        ("MaxPool2d", "features.12", _pool(3, 2)),
    ])
    b.close()
    cur = _seq(b, cur, [("AdaptiveAvgPool2d", "avgpool", {"output_size": [6, 6]}),
                        ("Flatten", "flatten", None)])
    b.open("classifier")
    _classifier(b, cur, num_classes, [("D", 0.5), ("L", 4096), ("R",), ("D", 0.5), ("L", 4096),
                                      ("R",), ("L", None)])
    b.close()
    return b.result()


VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}


def vgg(cfg: str, num_classes: int = 1000) -> Template:
    """torchvision's VGG without batch norm: 3×3 convs (padding 1) + ReLU, 2×2 max pools."""
    b = _Builder(cfg.upper().replace("VGG", "VGG-"))
    cur = _input(b, 3, 224, 224)
    b.open("features")
    specs, i = [], 0
    for v in VGG_CFGS[cfg]:
        if v == "M":
            specs.append(("MaxPool2d", f"features.{i}", _pool(2, 2)))
            i += 1
        else:
            specs += [("Conv2d", f"features.{i}", _conv(v, 3, p=1)),
                      ("ReLU", f"features.{i + 1}", None)]
            i += 2
    cur = _seq(b, cur, specs)
    b.close()
    cur = _seq(b, cur, [("AdaptiveAvgPool2d", "avgpool", {"output_size": [7, 7]}),
                        ("Flatten", "flatten", None)])
    b.open("classifier")
    _classifier(b, cur, num_classes, [("L", 4096), ("R",), ("D", 0.5), ("L", 4096), ("R",),
                                      ("D", 0.5), ("L", None)])
    b.close()
    return b.result()


# ---- conv + BN + ReLU units ---------------------------------------------------------------

def _basic_conv(b: _Builder, prefix: str, src: str, out: int, k, s=1, p=0, x=0.0, row=0.0,
                eps=0.001) -> Cursor:
    """torchvision's BasicConv2d (GoogLeNet, Inception-v3): conv (no bias) + BN + F.relu."""
    return _seq(b, (src, row), [
        ("Conv2d", f"{prefix}.conv", _conv(out, k, s, p, bias=False)),
        ("BatchNorm2d", f"{prefix}.bn", {"eps": eps}),
        ("ReLU", f"{prefix}.relu", None),
    ], x)


# ---- GoogLeNet (torchvision.models.googlenet, no auxiliary heads) -------------------------

def _inception(b: _Builder, name: str, cur: Cursor, ch1, ch3red, ch3, ch5red, ch5,
               pool_proj) -> Cursor:
    """GoogLeNet's Inception module: four branches concatenated. torchvision's "5×5" branch
    uses a 3×3 conv (a known quirk kept for weight compatibility)."""
    src, row = cur
    b.open(name)
    outs, end = _branches(b, src, row, 0.0, [
        lambda s, x, r: _basic_conv(b, f"{name}.branch1", s, ch1, 1, x=x, row=r),
        lambda s, x, r: _basic_conv(b, f"{name}.branch2.1", _basic_conv(
            b, f"{name}.branch2.0", s, ch3red, 1, x=x, row=r)[0], ch3, 3, p=1, x=x, row=r + 3),
        lambda s, x, r: _basic_conv(b, f"{name}.branch3.1", _basic_conv(
            b, f"{name}.branch3.0", s, ch5red, 1, x=x, row=r)[0], ch5, 3, p=1, x=x, row=r + 3),
        lambda s, x, r: _basic_conv(b, f"{name}.branch4.1", b.node(
            "MaxPool2d", f"{name}.branch4.0", _pool(3, 1, 1, ceil=True), [s], x, r), pool_proj,
            1, x=x, row=r + 1),
    ])
    out = b.node("Concat", f"{name}.cat", None, outs, 0.0, end)
    b.close()
    return out, end + 1


GOOGLENET_CFG = [
    ("inception3a", 64, 96, 128, 16, 32, 32), ("inception3b", 128, 128, 192, 32, 96, 64), "3",
    ("inception4a", 192, 96, 208, 16, 48, 64), ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64), ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128), "4",
    ("inception5a", 256, 160, 320, 32, 128, 128), ("inception5b", 384, 192, 384, 48, 128, 128),
]


def googlenet(num_classes: int = 1000) -> Template:
    """torchvision's GoogLeNet (Inception v1) with batch norm, without the auxiliary heads
    (torchvision drops them at inference and in its pretrained model)."""
    b = _Builder("GoogLeNet")
    cur = _input(b, 3, 224, 224)
    cur = _basic_conv(b, "conv1", cur[0], 64, 7, 2, 3, row=cur[1])
    cur = _seq(b, cur, [("MaxPool2d", "maxpool1", _pool(3, 2, ceil=True))])
    cur = _basic_conv(b, "conv2", cur[0], 64, 1, row=cur[1])
    cur = _basic_conv(b, "conv3", cur[0], 192, 3, p=1, row=cur[1])
    cur = _seq(b, cur, [("MaxPool2d", "maxpool2", _pool(3, 2, ceil=True))])
    for item in GOOGLENET_CFG:
        if item == "3":
            cur = _seq(b, cur, [("MaxPool2d", "maxpool3", _pool(3, 2, ceil=True))])
        elif item == "4":
            cur = _seq(b, cur, [("MaxPool2d", "maxpool4", _pool(2, 2, ceil=True))])
        else:
            cur = _inception(b, item[0], cur, *item[1:])
    _head(b, cur, num_classes, dropout=0.2)
    return b.result()


# ---- SqueezeNet (torchvision.models.squeezenet) -------------------------------------------

def _fire(b: _Builder, name: str, cur: Cursor, squeeze: int, e1: int, e3: int) -> Cursor:
    """Fire module: 1×1 squeeze + ReLU, then 1×1 and 3×3 expands (+ ReLU) concatenated."""
    b.open(name)
    src, row = _seq(b, cur, [("Conv2d", f"{name}.squeeze", _conv(squeeze, 1)),
                             ("ReLU", f"{name}.squeeze_activation", None)])
    outs, end = _branches(b, src, row, 0.0, [
        lambda s, x, r: _seq(b, (s, r), [("Conv2d", f"{name}.expand1x1", _conv(e1, 1)),
                                         ("ReLU", f"{name}.expand1x1_activation", None)], x),
        lambda s, x, r: _seq(b, (s, r), [("Conv2d", f"{name}.expand3x3", _conv(e3, 3, p=1)),
                                         ("ReLU", f"{name}.expand3x3_activation", None)], x),
    ])
    out = b.node("Concat", f"{name}.cat", None, outs, 0.0, end)
    b.close()
    return out, end + 1


def squeezenet(version: str, num_classes: int = 1000) -> Template:
    """torchvision's SqueezeNet 1.0 / 1.1: fire modules, ceil-mode max pools, and a conv
    classifier followed by global average pooling."""
    b = _Builder(f"SqueezeNet {version}")
    cur = _input(b, 3, 224, 224)
    if version == "1.0":
        stem = _conv(96, 7, s=2)
        plan = ["M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M", (32, 128, 128),
                (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)]
    else:
        stem = _conv(64, 3, s=2)
        plan = ["M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
                (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]
    b.open("features")
    cur = _seq(b, cur, [("Conv2d", "features.0", stem), ("ReLU", "features.1", None)])
    for i, item in enumerate(plan, start=2):
        if item == "M":
            cur = _seq(b, cur, [("MaxPool2d", f"features.{i}", _pool(3, 2, ceil=True))])
        else:
            cur = _fire(b, f"features.{i}", cur, *item)
    b.close()
    b.open("classifier")
    cur = _seq(b, cur, [
        ("Dropout", "classifier.0", {"p": 0.5}),
        ("Conv2d", "classifier.1", _conv(num_classes, 1)),
        ("ReLU", "classifier.2", None),
        ("AdaptiveAvgPool2d", "classifier.3", {"output_size": [1, 1]}),
    ])
    b.close()
    _seq(b, cur, [("Flatten", "flatten", None)])
    return b.result()


# ---- ResNet (torchvision.models.resnet) ---------------------------------------------------

def _conv_bn(prefix_conv: str, prefix_bn: str, out: int, k, s=1, p=0) -> list:
    return [("Conv2d", prefix_conv, _conv(out, k, s, p, bias=False)),
            ("BatchNorm2d", prefix_bn, None)]


def _residual(b: _Builder, name: str, cur: Cursor, planes: int, stride: int, in_ch: int,
              bottleneck: bool, groups: int = 1, base_width: int = 64) -> tuple[Cursor, int]:
    """BasicBlock (two 3×3) or Bottleneck (1×1, 3×3 with the stride — ResNet v1.5 — then a
    1×1 to 4× planes); a 1×1 conv + BN projects the shortcut when the shape changes.
    The bottleneck's inner width is planes·base_width/64·groups, its 3×3 conv grouped
    (ResNeXt: 32 groups of 4; Wide ResNet: base width 128)."""
    src, row = cur
    out_ch = planes * 4 if bottleneck else planes
    b.open(name)
    if bottleneck:
        width = int(planes * (base_width / 64.0)) * groups
        conv2 = [("Conv2d", f"{name}.conv2", _conv(width, 3, stride, 1, bias=False,
                                                   groups=groups)),
                 ("BatchNorm2d", f"{name}.bn2", None)]
        main = (_conv_bn(f"{name}.conv1", f"{name}.bn1", width, 1)
                + [("ReLU", f"{name}.relu1", None)] + conv2
                + [("ReLU", f"{name}.relu2", None)]
                + _conv_bn(f"{name}.conv3", f"{name}.bn3", out_ch, 1))
    else:
        main = (_conv_bn(f"{name}.conv1", f"{name}.bn1", planes, 3, stride, 1)
                + [("ReLU", f"{name}.relu1", None)]
                + _conv_bn(f"{name}.conv2", f"{name}.bn2", planes, 3, 1, 1))
    last, end = _seq(b, (src, row), main, x=-COL / 2)
    shortcut = src
    if stride != 1 or in_ch != out_ch:
        shortcut, _ = _seq(b, (src, row), _conv_bn(f"{name}.downsample.0",
                                                   f"{name}.downsample.1", out_ch, 1, stride),
                           x=COL / 2)
    add = b.node("Add", f"{name}.add", None, [last, shortcut], 0.0, end)
    relu = b.node("ReLU", f"{name}.relu{3 if bottleneck else 2}", None, [add], 0.0, end + 1)
    b.close()
    return (relu, end + 2), out_ch


def resnet(depth: int, num_classes: int = 1000, groups: int = 1, width_per_group: int = 64,
           title: str | None = None) -> Template:
    """torchvision's ResNet-18 (BasicBlock ×[2,2,2,2]) or ResNet-50 (Bottleneck ×[3,4,6,3]);
    with groups / width_per_group the ResNet-50 variants ResNeXt-50 32×4d and Wide ResNet-50-2."""
    bottleneck, counts = {18: (False, [2, 2, 2, 2]), 50: (True, [3, 4, 6, 3])}[depth]
    b = _Builder(title or f"ResNet-{depth}")
    cur = _input(b, 3, 224, 224)
    cur = _seq(b, cur, _conv_bn("conv1", "bn1", 64, 7, 2, 3) + [
        ("ReLU", "relu", None), ("MaxPool2d", "maxpool", _pool(3, 2, 1))])
    ch = 64
    for stage, (planes, n) in enumerate(zip([64, 128, 256, 512], counts), start=1):
        b.open(f"layer{stage}")
        for i in range(n):
            stride = 2 if (i == 0 and stage > 1) else 1
            cur, ch = _residual(b, f"layer{stage}.{i}", cur, planes, stride, ch, bottleneck,
                                groups, width_per_group)
        b.close()
    _head(b, cur, num_classes)
    return b.result()


# ---- DenseNet (torchvision.models.densenet) -----------------------------------------------

def _dense_layer(b: _Builder, name: str, src: str, row: float, growth: int,
                 bn_size: int) -> str:
    """BN-ReLU-conv1×1 (bn_size·growth) then BN-ReLU-conv3×3 (growth), drawn beside the
    concatenation chain."""
    b.open(name)
    out, _ = _seq(b, (src, row), [
        ("BatchNorm2d", f"{name}.norm1", None), ("ReLU", f"{name}.relu1", None),
        ("Conv2d", f"{name}.conv1", _conv(bn_size * growth, 1, bias=False)),
        ("BatchNorm2d", f"{name}.norm2", None), ("ReLU", f"{name}.relu2", None),
        ("Conv2d", f"{name}.conv2", _conv(growth, 3, p=1, bias=False)),
    ], x=COL)
    b.close()
    return out


def _dense_block(b: _Builder, name: str, cur: Cursor, n: int, growth: int,
                 bn_size: int) -> Cursor:
    """Each layer reads the concatenation of the block input and all earlier layers' outputs.
    torchvision concatenates the whole list in every layer; chaining two-input Concats
    (concat_k = [concat_{k-1}, new_{k-1}]) gives the same tensors, channel order included,
    with linearly many edges. The concat feeding layer k is named denselayer{k}.cat."""
    src, row = cur
    b.open(name)
    feats = src
    for k in range(1, n + 1):
        lname = f"{name}.denselayer{k}"
        new = _dense_layer(b, lname, feats, row, growth, bn_size)
        row += 6
        cat = f"{name}.denselayer{k + 1}.cat" if k < n else f"{name}.cat"
        feats = b.node("Concat", cat, None, [feats, new], 0.0, row)
        if k < n:  # the concat belongs to the next dense layer, as torchvision's bn_function
            b.blocks.setdefault(f"{name}.denselayer{k + 1}", []).append(cat)
        row += 1
    b.close()
    return feats, row


def densenet(depth: int, num_classes: int = 1000) -> Template:
    """torchvision's DenseNet-121 (blocks 6, 12, 24, 16) or -201 (6, 12, 48, 32): growth 32,
    bottleneck 4·32, 64 initial features, transitions halve channels and size."""
    blocks = {121: (6, 12, 24, 16), 201: (6, 12, 48, 32)}[depth]
    growth, bn_size = 32, 4
    b = _Builder(f"DenseNet-{depth}")
    cur = _input(b, 3, 224, 224)
    b.open("features")
    cur = _seq(b, cur, [
        ("Conv2d", "features.conv0", _conv(64, 7, 2, 3, bias=False)),
        ("BatchNorm2d", "features.norm0", None), ("ReLU", "features.relu0", None),
        ("MaxPool2d", "features.pool0", _pool(3, 2, 1)),
    ])
    ch = 64
    for i, n in enumerate(blocks, start=1):
        cur = _dense_block(b, f"features.denseblock{i}", cur, n, growth, bn_size)
        ch += n * growth
        if i < len(blocks):
            t = f"features.transition{i}"
            b.open(t)
            cur = _seq(b, cur, [
                ("BatchNorm2d", f"{t}.norm", None), ("ReLU", f"{t}.relu", None),
                ("Conv2d", f"{t}.conv", _conv(ch // 2, 1, bias=False)),
                ("AvgPool2d", f"{t}.pool", _pool(2, 2)),
            ])
            b.close()
            ch //= 2
    cur = _seq(b, cur, [("BatchNorm2d", "features.norm5", None)])
    b.close()
    cur = _seq(b, cur, [("ReLU", "relu", None)])
    _head(b, cur, num_classes, fc="classifier")
    return b.result()


# ---- Inception-v3 (torchvision.models.inception_v3, no auxiliary head) --------------------

def _chain_convs(b: _Builder, name: str, src: str, x: float, row: float,
                 convs: Sequence[tuple]) -> Cursor:
    """A branch of BasicConv2d units: (suffix, out, kernel, stride, padding)."""
    cur = (src, row)
    for suffix, out, k, s, p in convs:
        cur = _basic_conv(b, f"{name}.{suffix}", cur[0], out, k, s, p, x=x, row=cur[1])
    return cur


def _avgpool_branch(b: _Builder, name: str, out: int) -> Callable:
    """F.avg_pool2d(x, 3, stride=1, padding=1) (count_include_pad) + a 1×1 BasicConv2d."""
    def make(s, x, r):
        pool = b.node("AvgPool2d", f"{name}.avg_pool", _pool(3, 1, 1), [s], x, r)
        return _basic_conv(b, f"{name}.branch_pool", pool, out, 1, x=x, row=r + 1)
    return make


def _inception_module(b: _Builder, name: str, cur: Cursor, branches: list,
                      widths: Sequence[int] | None = None) -> Cursor:
    b.open(name)
    outs, end = _branches(b, cur[0], cur[1], 0.0, branches, widths)
    out = b.node("Concat", f"{name}.cat", None, outs, 0.0, end)
    b.close()
    return out, end + 1


def _inception_a(b, name, cur, pool_features):
    return _inception_module(b, name, cur, [
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch1x1", 64, 1, 1, 0)]),
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch5x5_1", 48, 1, 1, 0),
                                                        ("branch5x5_2", 64, 5, 1, 2)]),
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch3x3dbl_1", 64, 1, 1, 0),
                                                        ("branch3x3dbl_2", 96, 3, 1, 1),
                                                        ("branch3x3dbl_3", 96, 3, 1, 1)]),
        _avgpool_branch(b, name, pool_features),
    ])


def _maxpool_branch(b: _Builder, name: str) -> Callable:
    """F.max_pool2d(x, kernel_size=3, stride=2)."""
    def make(s, x, r):
        return b.node("MaxPool2d", f"{name}.max_pool", _pool(3, 2), [s], x, r), r + 1
    return make


def _inception_b(b, name, cur):
    return _inception_module(b, name, cur, [
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch3x3", 384, 3, 2, 0)]),
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch3x3dbl_1", 64, 1, 1, 0),
                                                        ("branch3x3dbl_2", 96, 3, 1, 1),
                                                        ("branch3x3dbl_3", 96, 3, 2, 0)]),
        _maxpool_branch(b, name),
    ])


def _inception_c(b, name, cur, c7):
    h, v = ([1, 7], [0, 3]), ([7, 1], [3, 0])  # 1×7 and 7×1 kernels with their padding
    return _inception_module(b, name, cur, [
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch1x1", 192, 1, 1, 0)]),
        lambda s, x, r: _chain_convs(b, name, s, x, r, [
            ("branch7x7_1", c7, 1, 1, 0), ("branch7x7_2", c7, h[0], 1, h[1]),
            ("branch7x7_3", 192, v[0], 1, v[1])]),
        lambda s, x, r: _chain_convs(b, name, s, x, r, [
            ("branch7x7dbl_1", c7, 1, 1, 0), ("branch7x7dbl_2", c7, v[0], 1, v[1]),
            ("branch7x7dbl_3", c7, h[0], 1, h[1]), ("branch7x7dbl_4", c7, v[0], 1, v[1]),
            ("branch7x7dbl_5", 192, h[0], 1, h[1])]),
        _avgpool_branch(b, name, 192),
    ])


def _inception_d(b, name, cur):
    return _inception_module(b, name, cur, [
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch3x3_1", 192, 1, 1, 0),
                                                        ("branch3x3_2", 320, 3, 2, 0)]),
        lambda s, x, r: _chain_convs(b, name, s, x, r, [
            ("branch7x7x3_1", 192, 1, 1, 0), ("branch7x7x3_2", 192, [1, 7], 1, [0, 3]),
            ("branch7x7x3_3", 192, [7, 1], 1, [3, 0]), ("branch7x7x3_4", 192, 3, 2, 0)]),
        _maxpool_branch(b, name),
    ])


def _split_1x3_3x1(b: _Builder, name: str, stem: str, a: str, bb: str, cat: str, x: float,
                   row: float) -> Cursor:
    """Inception-E's fork: a 1×3 and a 3×1 conv side by side on the same input, concatenated."""
    ya, _ = _basic_conv(b, f"{name}.{a}", stem, 384, [1, 3], 1, [0, 1], x=x - COL / 2, row=row)
    yb, _ = _basic_conv(b, f"{name}.{bb}", stem, 384, [3, 1], 1, [1, 0], x=x + COL / 2, row=row)
    return b.node("Concat", f"{name}.{cat}", None, [ya, yb], x, row + 3), row + 4


def _inception_e(b, name, cur):
    def b3x3(s, x, r):
        stem, r = _chain_convs(b, name, s, x, r, [("branch3x3_1", 384, 1, 1, 0)])
        return _split_1x3_3x1(b, name, stem, "branch3x3_2a", "branch3x3_2b", "branch3x3_cat",
                              x, r)

    def b3x3dbl(s, x, r):
        stem, r = _chain_convs(b, name, s, x, r, [("branch3x3dbl_1", 448, 1, 1, 0),
                                                  ("branch3x3dbl_2", 384, 3, 1, 1)])
        return _split_1x3_3x1(b, name, stem, "branch3x3dbl_3a", "branch3x3dbl_3b",
                              "branch3x3dbl_cat", x, r)

    return _inception_module(b, name, cur, [
        lambda s, x, r: _chain_convs(b, name, s, x, r, [("branch1x1", 320, 1, 1, 0)]),
        b3x3, b3x3dbl, _avgpool_branch(b, name, 192),
    ], widths=[1, 2, 2, 1])  # the 3×3 branches fork into 1×3 and 3×1 side by side


def inception_v3(num_classes: int = 1000) -> Template:
    """torchvision's Inception-v3 at 299×299 without the auxiliary classifier (and without
    transform_input, off unless pretrained weights are requested)."""
    b = _Builder("Inception-v3")
    cur = _input(b, 3, 299, 299)
    for nm, out, k, s, p in [("Conv2d_1a_3x3", 32, 3, 2, 0), ("Conv2d_2a_3x3", 32, 3, 1, 0),
                             ("Conv2d_2b_3x3", 64, 3, 1, 1)]:
        cur = _basic_conv(b, nm, cur[0], out, k, s, p, row=cur[1])
    cur = _seq(b, cur, [("MaxPool2d", "maxpool1", _pool(3, 2))])
    cur = _basic_conv(b, "Conv2d_3b_1x1", cur[0], 80, 1, row=cur[1])
    cur = _basic_conv(b, "Conv2d_4a_3x3", cur[0], 192, 3, row=cur[1])
    cur = _seq(b, cur, [("MaxPool2d", "maxpool2", _pool(3, 2))])
    cur = _inception_a(b, "Mixed_5b", cur, 32)
    cur = _inception_a(b, "Mixed_5c", cur, 64)
    cur = _inception_a(b, "Mixed_5d", cur, 64)
    cur = _inception_b(b, "Mixed_6a", cur)
    for nm, c7 in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)]:
        cur = _inception_c(b, nm, cur, c7)
    cur = _inception_d(b, "Mixed_7a", cur)
    cur = _inception_e(b, "Mixed_7b", cur)
    cur = _inception_e(b, "Mixed_7c", cur)
    # torchvision: avgpool -> dropout -> torch.flatten -> fc
    _seq(b, cur, [("AdaptiveAvgPool2d", "avgpool", {"output_size": [1, 1]}),
                  ("Dropout", "dropout", {"p": 0.5}), ("Flatten", "flatten", None),
                  ("Linear", "fc", {"out_features": num_classes})])
    return b.result()


# ---- MobileNetV2 (torchvision.models.mobilenetv2) -----------------------------------------

def _conv_bn_relu6(prefix: str, out: int, k: int, s: int = 1, groups: int = 1) -> list:
    """torchvision's Conv2dNormActivation: conv (padding (k−1)/2, no bias), BN, ReLU6."""
    return [("Conv2d", f"{prefix}.0", _conv(out, k, s, (k - 1) // 2, bias=False, groups=groups)),
            ("BatchNorm2d", f"{prefix}.1", None), ("ReLU6", f"{prefix}.2", None)]


def _inverted_residual(b: _Builder, name: str, cur: Cursor, inp: int, oup: int, stride: int,
                       t: int) -> Cursor:
    """Expand 1×1 (×t, skipped when t = 1), depthwise 3×3 with the stride, linear 1×1
    projection; the input is added back when stride 1 keeps the shape."""
    hidden = round(inp * t)
    b.open(name)
    specs, i = [], 0
    if t != 1:
        specs += _conv_bn_relu6(f"{name}.conv.{i}", hidden, 1)
        i += 1
    specs += _conv_bn_relu6(f"{name}.conv.{i}", hidden, 3, stride, groups=hidden)
    specs += [("Conv2d", f"{name}.conv.{i + 1}", _conv(oup, 1, bias=False)),
              ("BatchNorm2d", f"{name}.conv.{i + 2}", None)]
    src = cur[0]
    use_res = stride == 1 and inp == oup
    last, row = _seq(b, cur, specs, x=-COL / 2 if use_res else 0.0)
    if use_res:
        last = b.node("Add", f"{name}.add", None, [src, last], 0.0, row)
        row += 1
    b.close()
    return last, row


MOBILENET_V2_SETTINGS = [  # t (expansion), c (channels), n (repeats), s (first stride)
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def mobilenet_v2(num_classes: int = 1000) -> Template:
    """torchvision's MobileNetV2 (width 1.0): 17 inverted residual blocks with ReLU6 and
    depthwise convolutions, a 1280-channel 1×1 conv, global pooling, dropout 0.2, linear."""
    b = _Builder("MobileNetV2")
    cur = _input(b, 3, 224, 224)
    b.open("features")
    cur = _seq(b, cur, _conv_bn_relu6("features.0", 32, 3, 2))
    ch, idx = 32, 1
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        for i in range(n):
            cur = _inverted_residual(b, f"features.{idx}", cur, ch, c, s if i == 0 else 1, t)
            ch, idx = c, idx + 1
    cur = _seq(b, cur, _conv_bn_relu6(f"features.{idx}", 1280, 1))
    b.close()
    cur = _seq(b, cur, [("AdaptiveAvgPool2d", "avgpool", {"output_size": [1, 1]}),
                        ("Flatten", "flatten", None)])
    b.open("classifier")
    _seq(b, cur, [("Dropout", "classifier.0", {"p": 0.2}),
                  ("Linear", "classifier.1", {"out_features": num_classes})])
    b.close()
    return b.result()


# ---- Conv2dNormActivation and squeeze-and-excitation (torchvision.ops.misc) ---------------

def _cna(prefix: str, out: int, k: int, s: int = 1, groups: int = 1, act: str | None = None,
         bn: dict | None = None, act_params: dict | None = None) -> list:
    """torchvision's Conv2dNormActivation: conv (padding (k−1)/2, no bias) ".0", BatchNorm
    ".1" (`bn`: its eps / momentum), and the activation ".2" unless `act` is None."""
    specs = [("Conv2d", f"{prefix}.0", _conv(out, k, s, (k - 1) // 2, bias=False, groups=groups)),
             ("BatchNorm2d", f"{prefix}.1", dict(bn) if bn else None)]
    if act:
        specs.append((act, f"{prefix}.2", dict(act_params) if act_params else None))
    return specs


def _se(b: _Builder, name: str, cur: Cursor, x: float, channels: int, squeeze: int,
        act: str = "ReLU", gate: str = "Sigmoid", gate_params: dict | None = None) -> Cursor:
    """torchvision's SqueezeExcitation: avgpool -> fc1 (1×1 conv) -> activation -> fc2 ->
    scale_activation gives a C×1×1 gate; `scale * input` is a broadcasting Multiply. The gate
    runs in a column right of the block's main column `x`."""
    src = cur[0]
    b.open(name)
    g, r = _seq(b, cur, [
        ("AdaptiveAvgPool2d", f"{name}.avgpool", {"output_size": [1, 1]}),
        ("Conv2d", f"{name}.fc1", _conv(squeeze, 1)), (act, f"{name}.activation", None),
        ("Conv2d", f"{name}.fc2", _conv(channels, 1)),
        (gate, f"{name}.scale_activation", dict(gate_params) if gate_params else None),
    ], x + COL)
    out = b.node("Multiply", f"{name}.mul", None, [g, src], x, r)
    b.close()
    return out, r + 1


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible: round to a multiple of divisor, losing at most 10 %."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _add_skip(b: _Builder, name: str, src: str, last: str, row: float) -> Cursor:
    return b.node("Add", f"{name}.add", None, [last, src], 0.0, row), row + 1


# ---- MobileNetV3 (torchvision.models.mobilenetv3) -----------------------------------------

_BN_V3 = {"eps": 0.001, "momentum": 0.01}
_HSIGMOID = {"alpha": 1 / 6, "beta": 0.5}  # PyTorch's nn.Hardsigmoid

# input, kernel, expanded, output, squeeze-excitation, activation ("RE" ReLU / "HS"), stride
MOBILENET_V3_SETTINGS = {
    "large": [(16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2),
              (24, 3, 72, 24, False, "RE", 1), (24, 5, 72, 40, True, "RE", 2),
              (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
              (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1),
              (80, 3, 184, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
              (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
              (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1),
              (160, 5, 960, 160, True, "HS", 1)],
    "small": [(16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2),
              (24, 3, 88, 24, False, "RE", 1), (24, 5, 96, 40, True, "HS", 2),
              (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
              (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1),
              (48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1),
              (96, 5, 576, 96, True, "HS", 1)],
}


def _mbv3_block(b: _Builder, name: str, cur: Cursor, inp: int, k: int, exp: int, out: int,
                se: bool, act: str, stride: int) -> Cursor:
    """MobileNetV3's InvertedResidual: [expand 1×1], depthwise k×k, [SE with ReLU and a hard
    sigmoid gate], linear 1×1 projection; the input is added back when the shape is kept."""
    act = "HardSwish" if act == "HS" else "ReLU"
    use_res = stride == 1 and inp == out
    x = -COL / 2 if use_res else 0.0
    src = cur[0]
    b.open(name)
    j = 0
    if exp != inp:
        cur = _seq(b, cur, _cna(f"{name}.block.{j}", exp, 1, act=act, bn=_BN_V3), x)
        j += 1
    cur = _seq(b, cur, _cna(f"{name}.block.{j}", exp, k, stride, groups=exp, act=act,
                            bn=_BN_V3), x)
    j += 1
    if se:
        cur = _se(b, f"{name}.block.{j}", cur, x, exp, _make_divisible(exp // 4), "ReLU",
                  "HardSigmoid", _HSIGMOID)
        j += 1
    cur = _seq(b, cur, _cna(f"{name}.block.{j}", out, 1, bn=_BN_V3), x)
    if use_res:
        cur = _add_skip(b, name, src, *cur)
    b.close()
    return cur


def mobilenet_v3(size: str, num_classes: int = 1000) -> Template:
    """torchvision's MobileNetV3-Large / -Small (width 1.0): inverted residual blocks with
    hard-swish, squeeze-and-excitation gated by a hard sigmoid, BN eps 0.001."""
    settings = MOBILENET_V3_SETTINGS[size]
    last_channel = {"large": 1280, "small": 1024}[size]
    b = _Builder(f"MobileNetV3-{size.capitalize()}")
    cur = _input(b, 3, 224, 224)
    b.open("features")
    cur = _seq(b, cur, _cna("features.0", 16, 3, 2, act="HardSwish", bn=_BN_V3))
    for i, cfg in enumerate(settings, start=1):
        cur = _mbv3_block(b, f"features.{i}", cur, *cfg)
    last = 6 * settings[-1][3]
    cur = _seq(b, cur, _cna(f"features.{len(settings) + 1}", last, 1, act="HardSwish",
                            bn=_BN_V3))
    b.close()
    cur = _seq(b, cur, [("AdaptiveAvgPool2d", "avgpool", {"output_size": [1, 1]}),
                        ("Flatten", "flatten", None)])
    b.open("classifier")
    _seq(b, cur, [("Linear", "classifier.0", {"out_features": last_channel}),
                  ("HardSwish", "classifier.1", None), ("Dropout", "classifier.2", {"p": 0.2}),
                  ("Linear", "classifier.3", {"out_features": num_classes})])
    b.close()
    return b.result()


# ---- EfficientNet-B0 (torchvision.models.efficientnet) ------------------------------------

EFFICIENTNET_B0_SETTINGS = [  # expand ratio, kernel, first stride, in, out, layers
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
]


def _mbconv(b: _Builder, name: str, cur: Cursor, t: int, k: int, stride: int, inp: int,
            out: int) -> Cursor:
    """EfficientNet's MBConv: [expand 1×1], depthwise k×k, SE (squeeze inp/4, SiLU, sigmoid
    gate), linear 1×1 projection, with SiLU throughout. The residual's stochastic depth is
    the identity at inference, so the block output is block(x) + x."""
    exp = inp * t
    use_res = stride == 1 and inp == out
    x = -COL / 2 if use_res else 0.0
    src = cur[0]
    b.open(name)
    j = 0
    if exp != inp:
        cur = _seq(b, cur, _cna(f"{name}.block.{j}", exp, 1, act="SiLU"), x)
        j += 1
    cur = _seq(b, cur, _cna(f"{name}.block.{j}", exp, k, stride, groups=exp, act="SiLU"), x)
    cur = _se(b, f"{name}.block.{j + 1}", cur, x, exp, max(1, inp // 4), "SiLU", "Sigmoid")
    cur = _seq(b, cur, _cna(f"{name}.block.{j + 2}", out, 1), x)
    if use_res:
        cur = _add_skip(b, name, src, *cur)
    b.close()
    return cur


def efficientnet_b0(num_classes: int = 1000) -> Template:
    """torchvision's EfficientNet-B0: seven stages of MBConv blocks with SiLU and
    squeeze-and-excitation, a 1280-channel 1×1 conv, pooling, dropout 0.2, linear."""
    b = _Builder("EfficientNet-B0")
    cur = _input(b, 3, 224, 224)
    b.open("features")
    cur = _seq(b, cur, _cna("features.0", 32, 3, 2, act="SiLU"))
    for s, (t, k, stride, inp, out, n) in enumerate(EFFICIENTNET_B0_SETTINGS, start=1):
        b.open(f"features.{s}")
        for i in range(n):
            cur = _mbconv(b, f"features.{s}.{i}", cur, t, k, stride if i == 0 else 1,
                          inp if i == 0 else out, out)
        b.close()
    cur = _seq(b, cur, _cna("features.8", 1280, 1, act="SiLU"))
    b.close()
    cur = _seq(b, cur, [("AdaptiveAvgPool2d", "avgpool", {"output_size": [1, 1]}),
                        ("Flatten", "flatten", None)])
    b.open("classifier")
    _seq(b, cur, [("Dropout", "classifier.0", {"p": 0.2}),
                  ("Linear", "classifier.1", {"out_features": num_classes})])
    b.close()
    return b.result()


# ---- ShuffleNet V2 (torchvision.models.shufflenetv2) --------------------------------------

def _shuffle_unit(b: _Builder, name: str, cur: Cursor, inp: int, oup: int,
                  stride: int) -> Cursor:
    """ShuffleNet V2's InvertedResidual. Stride 1: x.chunk(2) — the first half passes, the
    second goes through branch2 (1×1, depthwise 3×3, 1×1); stride 2: branch1 (depthwise 3×3,
    1×1) and branch2 both read x. The halves are concatenated and channel-shuffled (2 groups)."""
    bf = oup // 2
    src, row = cur
    b.open(name)

    def branch2(s, x, r):
        return _seq(b, (s, r), [
            ("Conv2d", f"{name}.branch2.0", _conv(bf, 1, bias=False)),
            ("BatchNorm2d", f"{name}.branch2.1", None), ("ReLU", f"{name}.branch2.2", None),
            ("Conv2d", f"{name}.branch2.3", _conv(bf, 3, stride, 1, bias=False, groups=bf)),
            ("BatchNorm2d", f"{name}.branch2.4", None),
            ("Conv2d", f"{name}.branch2.5", _conv(bf, 1, bias=False)),
            ("BatchNorm2d", f"{name}.branch2.6", None), ("ReLU", f"{name}.branch2.7", None),
        ], x)

    if stride > 1:
        def branch1(s, x, r):
            return _seq(b, (s, r), [
                ("Conv2d", f"{name}.branch1.0", _conv(inp, 3, stride, 1, bias=False,
                                                      groups=inp)),
                ("BatchNorm2d", f"{name}.branch1.1", None),
                ("Conv2d", f"{name}.branch1.2", _conv(bf, 1, bias=False)),
                ("BatchNorm2d", f"{name}.branch1.3", None), ("ReLU", f"{name}.branch1.4", None),
            ], x)
        outs, end = _branches(b, src, row, 0.0, [branch1, branch2])
    else:
        split = b.node("ChannelSplit", f"{name}.chunk", {"sections": 2}, [src], 0.0, row)
        last, end = branch2((split, 1), COL, row + 1)
        outs = [(split, 0), last]
    cat = b.node("Concat", f"{name}.cat", None, outs, 0.0, end)
    out = b.node("ChannelShuffle", f"{name}.shuffle", {"groups": 2}, [cat], 0.0, end + 1)
    b.close()
    return out, end + 2


def shufflenet_v2(num_classes: int = 1000) -> Template:
    """torchvision's ShuffleNet V2 ×1.0: stages of 4, 8, 4 units (116, 232, 464 channels),
    a 1024-channel 1×1 conv, x.mean([2, 3]) and a linear classifier."""
    b = _Builder("ShuffleNet V2 x1.0")
    cur = _input(b, 3, 224, 224)
    b.open("conv1")
    cur = _seq(b, cur, [("Conv2d", "conv1.0", _conv(24, 3, 2, 1, bias=False)),
                        ("BatchNorm2d", "conv1.1", None), ("ReLU", "conv1.2", None)])
    b.close()
    cur = _seq(b, cur, [("MaxPool2d", "maxpool", _pool(3, 2, 1))])
    ch = 24
    for s, (n, out) in enumerate(zip([4, 8, 4], [116, 232, 464]), start=2):
        b.open(f"stage{s}")
        for i in range(n):
            cur = _shuffle_unit(b, f"stage{s}.{i}", cur, ch, out, 2 if i == 0 else 1)
            ch = out
        b.close()
    b.open("conv5")
    cur = _seq(b, cur, [("Conv2d", "conv5.0", _conv(1024, 1, bias=False)),
                        ("BatchNorm2d", "conv5.1", None), ("ReLU", "conv5.2", None)])
    b.close()
    _seq(b, cur, [("ReduceMean", "mean", {"axes": "H,W", "keep_dims": False}),
                  ("Linear", "fc", {"out_features": num_classes})])
    return b.result()


# ---- MNASNet (torchvision.models.mnasnet) -------------------------------------------------

_BN_MNAS = {"momentum": 1 - 0.9997}
MNASNET_STACKS = [  # out, kernel, first stride, expansion, repeats (depths for alpha 1.0)
    (24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3), (96, 3, 1, 6, 2), (192, 5, 2, 6, 4),
    (320, 3, 1, 6, 1),
]


def _mnas_block(b: _Builder, name: str, cur: Cursor, inp: int, out: int, k: int, stride: int,
                t: int) -> Cursor:
    """MNASNet's _InvertedResidual: 1×1 expand, depthwise k×k, linear 1×1, + input if kept."""
    mid = inp * t
    use_res = inp == out and stride == 1
    x = -COL / 2 if use_res else 0.0
    src = cur[0]
    p = f"{name}.layers"
    b.open(name)
    cur = _seq(b, cur, [
        ("Conv2d", f"{p}.0", _conv(mid, 1, bias=False)), ("BatchNorm2d", f"{p}.1", _BN_MNAS),
        ("ReLU", f"{p}.2", None),
        ("Conv2d", f"{p}.3", _conv(mid, k, stride, k // 2, bias=False, groups=mid)),
        ("BatchNorm2d", f"{p}.4", _BN_MNAS), ("ReLU", f"{p}.5", None),
        ("Conv2d", f"{p}.6", _conv(out, 1, bias=False)), ("BatchNorm2d", f"{p}.7", _BN_MNAS),
    ], x)
    if use_res:
        cur = _add_skip(b, name, src, *cur)
    b.close()
    return cur


def mnasnet1_0(num_classes: int = 1000) -> Template:
    """torchvision's MNASNet 1.0: a separable-conv stem, six stacks of inverted residuals
    (3×3 and 5×5 depthwise), a 1280-channel 1×1 conv, x.mean([2, 3]), dropout 0.2, linear."""
    b = _Builder("MNASNet 1.0")
    cur = _input(b, 3, 224, 224)
    b.open("layers")
    cur = _seq(b, cur, [
        ("Conv2d", "layers.0", _conv(32, 3, 2, 1, bias=False)),
        ("BatchNorm2d", "layers.1", _BN_MNAS), ("ReLU", "layers.2", None),
        ("Conv2d", "layers.3", _conv(32, 3, 1, 1, bias=False, groups=32)),
        ("BatchNorm2d", "layers.4", _BN_MNAS), ("ReLU", "layers.5", None),
        ("Conv2d", "layers.6", _conv(16, 1, bias=False)), ("BatchNorm2d", "layers.7", _BN_MNAS),
    ])
    ch = 16
    for s, (out, k, stride, t, n) in enumerate(MNASNET_STACKS, start=8):
        b.open(f"layers.{s}")
        for i in range(n):
            cur = _mnas_block(b, f"layers.{s}.{i}", cur, ch, out, k, stride if i == 0 else 1, t)
            ch = out
        b.close()
    cur = _seq(b, cur, [
        ("Conv2d", "layers.14", _conv(1280, 1, bias=False)),
        ("BatchNorm2d", "layers.15", _BN_MNAS), ("ReLU", "layers.16", None),
    ])
    b.close()
    cur = _seq(b, cur, [("ReduceMean", "mean", {"axes": "H,W", "keep_dims": False})])
    b.open("classifier")
    _seq(b, cur, [("Dropout", "classifier.0", {"p": 0.2}),
                  ("Linear", "classifier.1", {"out_features": num_classes})])
    b.close()
    return b.result()


# ---- RegNet (torchvision.models.regnet) ---------------------------------------------------

# stages as torchvision's BlockParams.from_init_params expands them: (width, depth); every
# stage starts with stride 2; group width; squeeze-excitation ratio (None: no SE)
REGNET_SETTINGS = {
    "regnet_x_400mf": ([(32, 1), (64, 2), (160, 7), (400, 12)], 16, None),  # w0 24, wa 24.48
    "regnet_y_400mf": ([(48, 1), (104, 3), (208, 6), (440, 6)], 8, 0.25),  # w0 48, wa 27.89
}


def _regnet_block(b: _Builder, name: str, cur: Cursor, w_in: int, w_out: int, stride: int,
                  group_width: int, se_ratio: float | None) -> Cursor:
    """ResBottleneckBlock (bottleneck multiplier 1): f = a (1×1) -> b (grouped 3×3 with the
    stride) -> [se] -> c (1×1, no activation); proj (1×1 conv + BN) on the shortcut when the
    shape changes; ReLU after the sum."""
    src, row = cur
    g = w_out // group_width
    b.open(name)
    f = f"{name}.f"
    main = _seq(b, cur, _cna(f"{f}.a", w_out, 1, act="ReLU")
                + _cna(f"{f}.b", w_out, 3, stride, groups=g, act="ReLU"), -COL / 2)
    if se_ratio:
        main = _se(b, f"{f}.se", main, -COL / 2, w_out, round(se_ratio * w_in))
    last, end = _seq(b, main, _cna(f"{f}.c", w_out, 1), -COL / 2)
    shortcut = src
    if w_in != w_out or stride != 1:
        shortcut, _ = _seq(b, (src, row), _cna(f"{name}.proj", w_out, 1, stride),
                           COL * (1.5 if se_ratio else 0.5))
    add = b.node("Add", f"{name}.add", None, [shortcut, last], 0.0, end)
    out = b.node("ReLU", f"{name}.activation", None, [add], 0.0, end + 1)
    b.close()
    return out, end + 2


def regnet(key: str, num_classes: int = 1000) -> Template:
    """torchvision's RegNetX-400MF / RegNetY-400MF: a 32-channel stem, four stages of
    residual bottleneck blocks with grouped 3×3 convs (RegNetY adds squeeze-excitation)."""
    stages, group_width, se_ratio = REGNET_SETTINGS[key]
    b = _Builder(key.replace("regnet_", "RegNet").replace("_", "-").upper()
                 .replace("REGNET", "RegNet"))
    cur = _input(b, 3, 224, 224)
    b.open("stem")
    cur = _seq(b, cur, _cna("stem", 32, 3, 2, act="ReLU"))
    b.close()
    ch = 32
    b.open("trunk_output")
    for i, (w, depth) in enumerate(stages, start=1):
        stage = f"trunk_output.block{i}"
        b.open(stage)
        for j in range(depth):
            cur = _regnet_block(b, f"{stage}.block{i}-{j}", cur, ch, w, 2 if j == 0 else 1,
                                group_width, se_ratio)
            ch = w
        b.close()
    b.close()
    _head(b, cur, num_classes)
    return b.result()


# ---- ConvNeXt (torchvision.models.convnext) ------------------------------------------------

CONVNEXT_TINY_STAGES = [(96, 3), (192, 3), (384, 9), (768, 3)]  # channels, blocks
_LN = {"eps": 1e-6}


def _cnblock(b: _Builder, name: str, cur: Cursor, c: int) -> Cursor:
    """torchvision's CNBlock: depthwise 7×7 conv (block.0) -> [Permute] -> LayerNorm (block.2,
    over the channels: LayerNorm2d) -> Linear C -> 4C (block.3) -> GELU -> Linear 4C -> C
    (block.5) -> [Permute] -> layer scale -> [stochastic depth: identity at inference] -> +
    input. The layer scale is torchvision's parameter `<block>.layer_scale` (C, 1, 1): a Scale
    node whose γ maps to it through `torch_keys`."""
    src = cur[0]
    p = f"{name}.block"
    b.open(name)
    cur = _seq(b, cur, [
        ("Conv2d", f"{p}.0", _conv(c, 7, p=3, groups=c)),
        ("LayerNorm2d", f"{p}.2", dict(_LN)),
        ("Linear", f"{p}.3", {"out_features": 4 * c, "over": "channels"}),
        ("GELU", f"{p}.4", None),
        ("Linear", f"{p}.5", {"out_features": c, "over": "channels"}),
        ("Scale", f"{name}.layer_scale", {"init_value": 1e-6}),
    ], -COL / 2)
    b.torch_keys[f"{name}.layer_scale.weight"] = f"{name}.layer_scale"
    cur = _add_skip(b, name, src, *cur)
    b.close()
    return cur


def convnext_tiny(num_classes: int = 1000) -> Template:
    """torchvision's ConvNeXt-Tiny: a 4×4 stride-4 "patchify" stem + LayerNorm2d, four stages
    of 3, 3, 9, 3 CNBlocks (96, 192, 384, 768 channels) joined by LayerNorm2d + 2×2 stride-2
    convs, then global average pooling, LayerNorm2d, Flatten and a Linear classifier. No
    BatchNorm: every normalisation is a LayerNorm over the channels (eps 1e-6)."""
    b = _Builder("ConvNeXt-Tiny")
    cur = _input(b, 3, 224, 224)
    b.open("features")
    b.open("features.0")
    cur = _seq(b, cur, [("Conv2d", "features.0.0", _conv(96, 4, s=4)),
                        ("LayerNorm2d", "features.0.1", dict(_LN))])
    b.close()
    i = 1
    for k, (c, n) in enumerate(CONVNEXT_TINY_STAGES):
        if k:  # downsampling between stages
            b.open(f"features.{i}")
            cur = _seq(b, cur, [("LayerNorm2d", f"features.{i}.0", dict(_LN)),
                                ("Conv2d", f"features.{i}.1", _conv(c, 2, s=2))])
            b.close()
            i += 1
        b.open(f"features.{i}")
        for j in range(n):
            cur = _cnblock(b, f"features.{i}.{j}", cur, c)
        b.close()
        i += 1
    b.close()
    cur = _seq(b, cur, [("AdaptiveAvgPool2d", "avgpool", {"output_size": [1, 1]})])
    b.open("classifier")
    _seq(b, cur, [("LayerNorm2d", "classifier.0", dict(_LN)), ("Flatten", "classifier.1", None),
                  ("Linear", "classifier.2", {"out_features": num_classes})])
    b.close()
    return b.result()


# ---- registry ------------------------------------------------------------------------------

_224, _299 = (3, 224, 224), (3, 299, 299)
_TEMPLATE_TABLE = [  # key, title, description, input shape, make(num_classes=...)
    ("lenet5", "LeNet-5", ("LeCun et al. 1998: two 5×5 convs with tanh and average pooling, "
     "three fully connected layers; for 28×28 digits."), (1, 28, 28), lenet5),
    ("alexnet", "AlexNet", ("Krizhevsky et al. 2012: five convs (11×11 stride 4 first), max "
     "pooling, three large fully connected layers."), _224, alexnet),
    ("vgg11", "VGG-11", ("Simonyan & Zisserman 2014, configuration A: 8 3×3 convs in 5 stages, "
     "3 fully connected layers."), _224, partial(vgg, "vgg11")),
    ("vgg16", "VGG-16", ("Simonyan & Zisserman 2014, configuration D: 13 3×3 convs in 5 stages, "
     "3 fully connected layers."), _224, partial(vgg, "vgg16")),
    ("googlenet", "GoogLeNet", ("Szegedy et al. 2014 (Inception v1, with batch norm): nine "
     "inception modules of parallel 1×1, 3×3 and pooling branches."), _224, googlenet),
    ("squeezenet1_0", "SqueezeNet 1.0", ("Iandola et al. 2016: fire modules (squeeze 1×1, expand "
     "1×1 + 3×3); AlexNet accuracy with 50× fewer parameters."), _224,
     partial(squeezenet, "1.0")),
    ("squeezenet1_1", "SqueezeNet 1.1", ("SqueezeNet with a 3×3 stem and earlier pooling: 2.4× "
     "less computation than 1.0."), _224, partial(squeezenet, "1.1")),
    ("resnet18", "ResNet-18", ("He et al. 2015: eight residual blocks of two 3×3 convs with batch "
     "norm and skip connections."), _224, partial(resnet, 18)),
    ("resnet50", "ResNet-50", ("He et al. 2015: sixteen bottleneck blocks (1×1, 3×3, 1×1) with "
     "skip connections."), _224, partial(resnet, 50)),
    ("densenet121", "DenseNet-121", ("Huang et al. 2016: dense blocks where each layer reads all "
     "earlier feature maps (blocks 6-12-24-16)."), _224, partial(densenet, 121)),
    ("densenet201", "DenseNet-201", ("DenseNet with dense blocks 6-12-48-32 (about 700 layers in "
     "the graph)."), _224, partial(densenet, 201)),
    ("inception_v3", "Inception-v3", ("Szegedy et al. 2015: factorised inception modules with "
     "1×7 / 7×1 kernels, 299×299 input (no auxiliary head)."), _299, inception_v3),
    ("mobilenet_v2", "MobileNetV2", ("Sandler et al. 2018: inverted residual blocks with "
     "depthwise 3×3 convs and ReLU6."), _224, mobilenet_v2),
    ("resnext50_32x4d", "ResNeXt-50 32×4d", ("Xie et al. 2016: ResNet-50 whose bottleneck 3×3 "
     "convs are split into 32 groups of 4 channels (per 64 planes)."), _224,
     partial(resnet, 50, groups=32, width_per_group=4, title="ResNeXt-50 32x4d")),
    ("wide_resnet50_2", "Wide ResNet-50-2", ("Zagoruyko & Komodakis 2016: ResNet-50 with "
     "bottlenecks twice as wide."), _224,
     partial(resnet, 50, width_per_group=128, title="Wide ResNet-50-2")),
    ("mobilenet_v3_small", "MobileNetV3-Small", ("Howard et al. 2019: inverted residuals with "
     "hard-swish and squeeze-and-excitation; the small, low-latency model."), _224,
     partial(mobilenet_v3, "small")),
    ("mobilenet_v3_large", "MobileNetV3-Large", ("Howard et al. 2019: inverted residuals with "
     "hard-swish and squeeze-and-excitation gated by a hard sigmoid."), _224,
     partial(mobilenet_v3, "large")),
    ("efficientnet_b0", "EfficientNet-B0", ("Tan & Le 2019: MBConv blocks with SiLU and "
     "squeeze-and-excitation, the baseline of the compound-scaled family."), _224,
     efficientnet_b0),
    ("shufflenet_v2_x1_0", "ShuffleNet V2 x1.0", ("Ma et al. 2018: units that split the "
     "channels, convolve one half, concatenate and shuffle the channels."), _224, shufflenet_v2),
    ("mnasnet1_0", "MNASNet 1.0", ("Tan et al. 2018: a mobile network found by architecture "
     "search; inverted residuals with 3×3 and 5×5 depthwise convs."), _224, mnasnet1_0),
    ("regnet_x_400mf", "RegNetX-400MF", ("Radosavovic et al. 2020: residual bottlenecks with "
     "grouped 3×3 convs (group width 16), widths from a linear rule."), _224,
     partial(regnet, "regnet_x_400mf")),
    ("regnet_y_400mf", "RegNetY-400MF", ("RegNetX design with squeeze-and-excitation in every "
     "block (group width 8)."), _224, partial(regnet, "regnet_y_400mf")),
    ("convnext_tiny", "ConvNeXt-Tiny", ("Liu et al. 2022: a ResNet modernised: 4×4 patchify "
     "stem, depthwise 7×7 convs, LayerNorm, inverted MLP with GELU, layer scale."), _224,
     convnext_tiny),
]
TEMPLATES: dict[str, TemplateInfo] = {
    key: TemplateInfo(title, desc, shape, make,
                      "LeCun et al., 1998" if key == "lenet5" else f"torchvision.models.{key}")
    for key, title, desc, shape, make in _TEMPLATE_TABLE
}


def make_template(name: str, num_classes: int | None = None) -> Template:
    """Build a template with its block membership; KeyError-free: ValueError names the known."""
    try:
        info = TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown template {name!r}; known templates: "
                         f"{', '.join(TEMPLATES)}") from None
    if num_classes is None:
        return info.make()  # the architecture's own class count
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"number of classes must be a whole number of at least 1, got "
                         f"{num_classes!r}")
    return info.make(num_classes=num_classes)


def build_template(name: str, num_classes: int | None = None) -> Graph:
    """The graph of template `name` with a `num_classes`-way classifier."""
    return make_template(name, num_classes).graph


__all__ = ["TEMPLATES", "Template", "TemplateInfo", "build_template", "make_template"]
