"""The layer registry's building blocks: `Param` declarations, the `Layer` base class, `register`.

A layer type is declared once, as a `Layer` subclass: its parameters, shape rule, counts,
receptive-field window, weights with their initialisation, forward, backward, ONNX and PyTorch
mappings, and how it looks and reads (palette family, short name, icon, formula lines, whether it
merges branches). Everything else (validation, summary, inspector, palette, theme, network, ONNX,
blocks) reads that declaration; no other module tests a layer's type name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ParamError, ShapeError
from ..messages import Fix
from .formula_text import Count
from .torch_code import TorchCode, TorchModule

Shape = tuple[int, ...]

# Param kinds. "pair" is (h, w); "padding" is "valid", "same" or (top, left, bottom, right).
INT, FLOAT, BOOL, CHOICE, PAIR, PADDING = "int", "float", "bool", "choice", "pair", "padding"
# explicit padding per side: enough for 'same' around the largest kernel (64 taps, dilation 32)
MAX_PAD = 2048


_SLOW = object()  # Param._canonical: "take the full path"


@dataclass(frozen=True)
class Param:
    """One declared parameter: the inspector, validation and JSON form are built from it."""

    name: str
    kind: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None allowed (e.g. pooling stride: None means "= kernel")
    label: str | None = None
    choice_labels: dict[str, str] | None = None  # readable names of choices, for the GUI

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    def normalize(self, value: Any, layer: str = "") -> Any:
        """Return the canonical JSON-friendly form of `value` or raise ParamError naming it."""
        fast = self._canonical(value)
        if fast is not _SLOW:
            return fast
        where = f"{layer} parameter '{self.name}'" if layer else f"parameter '{self.name}'"
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"{where} is required", self.name)
        if self.kind == INT:
            return self._check_range(_as_int(value, where), where)
        if self.kind == FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParamError(f"{where} must be a number, got {value!r}", self.name)
            if not math.isfinite(value):
                raise ParamError(f"{where} must be finite, got {value!r}", self.name)
            return self._check_range(float(value), where)
        if self.kind == BOOL:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, np.integer)) and value in (0, 1):
                return bool(value)
            raise ParamError(f"{where} must be true or false, got {value!r}", self.name)
        if self.kind == CHOICE:
            if value not in self.choices:
                raise ParamError(f"{where} must be one of {', '.join(self.choices)}; got {value!r}",
                                 self.name)
            return value
        if self.kind == PAIR:
            pair = _as_ints(value, 2, where)
            return [self._check_range(v, where) for v in pair]
        if self.kind == PADDING:
            if isinstance(value, str):
                v = value.lower()
                if v not in ("valid", "same"):
                    raise ParamError(f"{where} must be 'valid', 'same', a number or four numbers "
                                     f"(top, left, bottom, right); got {value!r}", self.name)
                return v
            pads = _as_ints(value, 4, where, allow=(1, 2, 4))
            for p in pads:
                if p < 0:
                    raise ParamError(f"{where} must not be negative; got {p}", self.name)
                self._check_range(p, where)
            return pads
        raise AssertionError(f"unknown param kind {self.kind}")

    def _canonical(self, value: Any) -> Any:
        """Fast path of `normalize` (validation runs on every edit): the canonical form of a
        value that is already valid and of the usual type, else _SLOW (the full checks then
        run and word any error). Returns exactly what the full path returns."""
        kind, t = self.kind, type(value)
        if kind == INT or kind == FLOAT:
            if not (t is int if kind == INT else t is float and math.isfinite(value)):
                return _SLOW
            vals = (value,)
        elif kind == PAIR:
            if t is int:  # one number for both axes
                value = [value, value]
            elif (t is not list and t is not tuple) or len(value) != 2 \
                    or type(value[0]) is not int or type(value[1]) is not int:
                return _SLOW
            vals = value
        elif kind == BOOL:
            return value if t is bool else _SLOW
        elif kind == CHOICE:
            return value if t is str and value in self.choices else _SLOW
        elif kind == PADDING:
            if t is str:
                return value if value == "valid" or value == "same" else _SLOW
            hi = self.max if self.max is not None else math.inf
            if t is int:
                return [value] * 4 if 0 <= value <= hi else _SLOW
            if (t is list or t is tuple) and len(value) in (2, 4) \
                    and all(type(v) is int and 0 <= v <= hi for v in value):
                return list(value) if len(value) == 4 else [value[0], value[1]] * 2
            return _SLOW
        else:
            return _SLOW
        lo, hi = self.min, self.max
        for v in vals:
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return _SLOW
        return list(value) if kind == PAIR else value

    def _check_range(self, v, where):
        if self.min is not None and v < self.min:
            raise ParamError(f"{where} must be at least {_fmt(self.min)}; got {_fmt(v)}", self.name)
        if self.max is not None and v > self.max:
            raise ParamError(f"{where} must be at most {_fmt(self.max)}; got {_fmt(v)}", self.name)
        return v


def _fmt(v) -> str:
    if abs(v) >= 1e15:  # 1e308 given for an integer: not its 309 digits
        return f"{float(v):.3g}"
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _as_int(value, where) -> int:
    if isinstance(value, bool):
        raise ParamError(f"{where} must be a whole number, got {value!r}", where.split("'")[-2])
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ParamError(f"{where} must be a whole number, got {value!r}", where.split("'")[-2])


def _as_ints(value, n, where, allow=(1, 2)) -> list[int]:
    """Accept an int or a sequence; expand to n ints (pads: 1 -> all, 2 -> (h, w) symmetric)."""
    name = where.split("'")[-2]
    if isinstance(value, (int, float, np.integer)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) not in allow:
        raise ParamError(f"{where} must be {' or '.join(str(a) for a in allow)} whole numbers, "
                         f"got {value!r}", name)
    vals = [_as_int(v, where) for v in value]
    if len(vals) == 1:
        vals = vals * n
    elif len(vals) == 2 and n == 4:
        vals = [vals[0], vals[1], vals[0], vals[1]]
    return vals


@dataclass(frozen=True)
class Icon:
    """How a layer type's palette icon looks; designer/theme.py draws it (the engine has no Qt).

    Either a glyph the theme knows by name ("input", "conv", "pool-max", "pool-avg",
    "pool-global", "norm", "lrn", "dense", "dropout", "flatten", "add", "concat", "softmax",
    "shuffle", "split", "upsample", "multiply"), or,
    for a function of one variable such as an activation, its `curve`: a NumPy function
    x -> y plotted for x in [-1, 1] with `y_range` (bottom, top) filling the tile. The default,
    Icon(), is the neutral generic glyph (the type's first letters): never a wrong picture.
    """

    glyph: str = "generic"
    curve: Callable[[np.ndarray], np.ndarray] | None = None
    y_range: tuple[float, float] = (-1.0, 1.0)

    @classmethod
    def plot(cls, curve: Callable[[np.ndarray], np.ndarray], bottom: float = -1.0,
             top: float = 1.0) -> Icon:
        """The icon of a function: its curve over x in [-1, 1], y from bottom to top."""
        return cls("curve", curve, (bottom, top))


REGISTRY: dict[str, type[Layer]] = {}
CATEGORIES = ("Input", "Convolution", "Pooling", "Activation", "Normalization", "Core", "Merge")


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: add a layer type to the registry under its `type_name`."""
    assert cls.category in CATEGORIES, cls
    assert cls.type_name not in REGISTRY, cls.type_name
    names = [p.name for p in cls.params]
    assert len(set(names)) == len(names), cls
    REGISTRY[cls.type_name] = cls
    return cls


def unregister(type_name: str) -> None:
    """Remove a layer type from the registry (tests declare throwaway types and clean up)."""
    REGISTRY.pop(type_name, None)


def layer_class(type_name: str) -> type[Layer]:
    try:
        return REGISTRY[type_name]
    except KeyError:
        raise ParamError(f"unknown layer type {type_name!r}; known types: "
                         f"{', '.join(sorted(REGISTRY))}") from None


class Layer:
    """Base of every layer type. An instance holds normalized parameters and, once built, weights.

    Shapes never include the batch axis: (C, H, W) for images, (F,) for feature vectors.

    A subclass declares the class attributes below (only `type_name`, `label` and `category` have
    no default) and overrides the hooks it needs: `output_shape`, `forward` and `backward`
    always; `weight_shapes` and `init_weights` when it has weights; `to_onnx` / `from_onnx`
    when `onnx_ops` names ops; `torch_module` or `to_pytorch`; `formula`, `param_formula` and
    `macs_formula` when the generic text ("same shape as the input", the bare count) says too
    little. Then palette, inspector, validation, network, ONNX, PyTorch code and the icon all
    work with nothing else edited.
    """

    type_name: ClassVar[str]
    label: ClassVar[str]  # friendly name for the palette
    category: ClassVar[str]  # palette family, one of CATEGORIES (also the icon tile's colour)
    doc: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    # base of new nodes' names ("conv" -> conv1, conv2, ...); "" means the type name in lower case
    short_name: ClassVar[str] = ""
    icon: ClassVar[Icon] = Icon()  # the palette icon; the default is the neutral generic glyph
    # True for layers that join branches (Add, Concat): validation then offers the padding that
    # makes the branches' maps agree, and block detection never walks through one
    merges_branches: ClassVar[bool] = False
    # the kind a block closed by this layer is named by ("residual" for Add); None: by its shape
    # (a merge fed by the block's fork is "dense", otherwise "n-branch")
    block_kind: ClassVar[str | None] = None
    onnx_ops: ClassVar[tuple[str, ...]] = ()  # ONNX op types this layer exports to / imports from
    # tried before the other layers importing the same op: the layer claims only nodes it
    # recognises (AdaptiveAvgPool2d's tagged AveragePool) and returns None for the rest
    onnx_import_first: ClassVar[bool] = False
    # multi-node ONNX forms of this layer (engine/layers/onnx_pattern.py: SiLU is
    # x·Sigmoid(x)), matched by the importer before any per-op converter
    onnx_patterns: ClassVar[tuple] = ()
    # True for layers that act on each value alone (ReLU, GELU: not Softmax, not a per-channel
    # weight): any layout of the values gives the same result, so the ONNX import lets them
    # work inside a channels-last region (ConvNeXt's GELU between two channels-last Linears)
    per_value: ClassVar[bool] = False
    need_dx: bool = True  # False: backward may skip dx (Network.backward(input_grad=False))

    def __init__(self, name: str = "", **values):
        self.name = name or self.type_name
        unknown = set(values).difference(_param_names(type(self))) if values else ()
        if unknown:
            raise ParamError(f"{self.type_name} '{self.name}' has no parameter "
                             f"{', '.join(sorted(unknown))}", min(unknown))
        where = f"{self.type_name} '{self.name}'"
        self.values: dict[str, Any] = {}
        for p in self.params:
            self.values[p.name] = p.normalize(values.get(p.name, p.default), where)
        self.weights: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.trainable_flags: dict[str, bool] = {}  # weight name -> trainable; see init_weights
        self.frozen = False

    def clone(self) -> Layer:
        """A new instance with the same name, parameters and frozen flag (no weights)."""
        new = type(self)(self.name, **self.values)
        new.frozen = self.frozen
        return new

    def __getattr__(self, item):
        p = self.__dict__.get("values")
        if p is not None and item in p:
            return p[item]
        raise AttributeError(item)

    def __repr__(self) -> str:
        changed = [f"{p.name}={self.values[p.name]!r}" for p in self.params
                   if self.values[p.name] != p.normalize(p.default)]
        return f"{self.type_name}({', '.join(changed)})"

    @property
    def where(self) -> str:
        return f"{self.type_name} '{self.name}'"

    # ---- shape arithmetic (cheap: runs on every edit) -------------------------------------

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        """Output shape for the given input shapes, or ShapeError naming the parameter at fault."""
        raise NotImplementedError

    # Several outputs (a channel split): a layer type whose instances may have more than one
    # output overrides `num_outputs` and `output_shapes`; its `forward` then always returns a
    # list of arrays, one per output port (even when its parameters give it only one), and its
    # `backward` receives a list of gradients, one per port (zeros for a port nothing reads).
    # Single-output layers override neither.

    def num_outputs(self) -> int:
        """How many output ports this layer has with its parameters (edges name one)."""
        return 1

    @classmethod
    def multi_output(cls) -> bool:
        """Whether this type declares outputs of its own (forward returns a list)."""
        return cls.num_outputs is not Layer.num_outputs

    def output_shapes(self, in_shapes: list[Shape]) -> list[Shape]:
        """The shape of every output port, in port order; ShapeError as for output_shape."""
        return [self.output_shape(in_shapes)]

    def warnings(self, in_shapes: list[Shape], out_shape: Shape) -> list[tuple[str, str | None,
                                                                               Fix | None]]:
        """Non-fatal remarks as (text, param, fix)."""
        return []

    def source_warnings(self, in_shapes: list[Shape], sources: list[Layer | None]
                        ) -> list[tuple[str, str | None, Fix | None]]:
        """Remarks about what the inputs' producers (`sources`, one per input, in order) can
        output, e.g. geometric pooling warns when its input can be ≤ 0. Validation calls it
        after `warnings`; the default has none."""
        return []

    def weight_shapes(self, in_shapes: list[Shape]) -> dict[str, tuple[Shape, bool]]:
        """name -> (shape, trainable). Non-trainable entries are buffers (running statistics)."""
        return {}

    def param_count(self, in_shapes: list[Shape]) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts, from shapes alone."""
        t = n = 0
        for shape, trainable in self.weight_shapes(in_shapes).values():
            if trainable:
                t += math.prod(shape)
            else:
                n += math.prod(shape)
        return t, n

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Multiply-accumulate operations of one forward pass for one sample."""
        return 0

    def rf_window(self, in_shapes: list[Shape]) -> tuple | None:
        """Spatial window as ((kh, kw), (sh, sw), (pad_top, pad_left)), or None if pointwise."""
        return None

    def describe(self, in_shapes: list[Shape] | None = None) -> str:
        """Key parameters in a few words for the canvas, e.g. '5×5, 6 filters, s1, valid'."""
        return ""

    @classmethod
    def default_name(cls) -> str:
        """The name of a first new node of this type: 'conv1', 'relu1'."""
        return (cls.short_name or cls.type_name.lower()) + "1"

    # ---- the inspector's formulas (engine/formulas.py) ---------------------------------------

    def formula(self, in_shapes: list[Shape]) -> list[str]:
        """How the output shape follows from the (known) input shapes, one line per rule, with
        the numbers, e.g. ["H: O = floor((28 − 5 + 2·2) / 1) + 1 = 28", ...]. The default says
        a one-input layer keeps its input's shape; a layer that changes shapes overrides it."""
        if len(in_shapes) == 1:
            return [f"same shape as the input: {fmt_shape(in_shapes[0])}"]
        return []

    def param_formula(self, in_shapes: list[Shape]) -> Count | None:
        """The parameter count as a formula, e.g. '((5·5·1) + 1) · 6 = 156'. None (the default):
        the bare count from `param_count` is shown."""
        return None

    def macs_formula(self, in_shapes: list[Shape], out_shape: Shape) -> Count | None:
        """Multiply-accumulates as a formula. None (the default): the bare count from `macs`."""
        return None

    # ---- ONNX mapping (engine/onnx/) ---------------------------------------------------------

    def to_onnx(self, ctx, inputs: list[str], output: str) -> None:
        """Add this layer's nodes and initializers to the model being exported; `ctx` is
        engine.onnx.export's context, `inputs` / `output` the tensor names."""
        raise NotImplementedError(f"{self.type_name} has no ONNX export")

    @classmethod
    def from_onnx(cls, node, ctx):
        """The layer an ONNX node of one of `onnx_ops` is (`ctx.imported(...)`), None when the
        node is not this layer's (another class of the same op is then tried), or ValueError
        naming what is not supported. `ctx` is engine.onnx.importer's context."""
        raise NotImplementedError(f"{cls.type_name} has no ONNX import")

    @classmethod
    def from_onnx_pattern(cls, pattern, x: str, nodes: list, ctx) -> dict | None:
        """The parameters of the layer that `nodes` (matching one of `onnx_patterns`, data
        input tensor `x`) are: the pattern's own by default; a layer whose pattern leaves
        attributes or constants open (SCALAR) reads them here, or says None (not this layer)."""
        return dict(pattern.params)

    # ---- PyTorch code (engine/pytorch_export.py) --------------------------------------------

    def torch_module(self, in_shapes: list[Shape]) -> str:
        """Constructor text of the equivalent nn.Module, e.g. "nn.ReLU()"; layers whose
        equivalent needs more (extra padding modules, a forward expression) override
        `to_pytorch` instead."""
        raise NotImplementedError(f"{self.type_name} has no PyTorch equivalent")

    def to_pytorch(self, in_shapes: list[Shape], attr: str, names) -> TorchCode:
        """This layer in generated PyTorch code; `names.claim(base)` reserves extra attribute
        names (e.g. a padding module)."""
        return TorchCode([TorchModule(attr, self.torch_module(in_shapes))])

    # ---- execution -------------------------------------------------------------------------

    def init_weights(self, in_shapes: list[Shape], rng: np.random.Generator) -> None:
        """Allocate `self.weights` (float32); subclasses then fill them by their init rule, and
        do nothing else here: Network.compile skips this for a layer whose weights are given."""
        self.allocate_weights(in_shapes)

    def allocate_weights(self, in_shapes: list[Shape]) -> None:
        """`self.weights` as float32 zeros of their shapes, and their trainable flags."""
        shapes = self.weight_shapes(in_shapes)
        self.weights = {k: np.zeros(s, np.float32) for k, (s, _) in shapes.items()}
        self.trainable_flags = {k: t for k, (_, t) in shapes.items()}

    def trainable_names(self) -> list[str]:
        """Names of the weights an optimizer updates (none while the layer is frozen)."""
        if self.frozen:
            return []
        flags = self.trainable_flags
        return [k for k in self.weights if flags.get(k, True)]

    def forward(self, xs: list[np.ndarray], training: bool = False) -> np.ndarray:
        """(N, *in_shape) arrays -> (N, *out_shape); caches what backward needs when training.
        With several outputs: a list of arrays, one per output port."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> list[np.ndarray]:
        """Gradient of the loss w.r.t. each input; stores weight gradients in `self.grads`.
        With several outputs `dy` is a list, one gradient per output port."""
        raise NotImplementedError

    # ---- helpers for subclasses ------------------------------------------------------------

    def _single_image(self, in_shapes: list[Shape]) -> Shape:
        (shape,) = in_shapes
        if len(shape) != 3:
            raise ShapeError(f"{self.where} needs a C×H×W input, got {fmt_shape(shape)}")
        return shape


_NAMES: dict[type, frozenset[str]] = {}


def _param_names(cls: type[Layer]) -> frozenset[str]:
    """The declared parameter names of a layer class (cached: layers are built on every edit)."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = frozenset(p.name for p in cls.params)
    return names


def fmt_shape(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "×".join(str(d) for d in shape)
