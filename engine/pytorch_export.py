"""Export a design (and its weights) as plain PyTorch code: model.py, weights.npz, train.py.

    paths = export_pytorch(graph, net.state_dict(), "out/lenet")   # -> [model.py, ...]
    python main.py export-pytorch MODEL --out DIR                  # the same from the CLI

The generated folder needs only torch and numpy: one `nn.Module` class whose submodules are named
after the layers, a `forward` that follows the graph, `load_npz` / `save_npz` for weights, and a
training script that runs on one CPU, one GPU, or many under `torchrun` (DistributedDataParallel).
PyTorch is not needed to *generate* the code (this module never imports it).

Submodule names: a layer's name with every character that is not a letter, digit or underscore
replaced by "_" ("layer2.0.conv1" -> "layer2_0_conv1"); a leading digit gets "layer_" in front;
names that would shadow nn.Module attributes or locals of `forward` ("training", "forward", "x",
...) get a trailing "_"; a name already taken gets "_2", "_3", ... `NODE_MODULES` in model.py
records the mapping from engine node ids to submodule names, so the app's "node_id.weight" keys
and the module's state_dict keys translate both ways.

Each layer type declares its own PyTorch equivalent next to its math and ONNX mapping
(`Layer.torch_module` / `Layer.to_pytorch` in engine/layers); this module assembles them.
Semantics follow the engine (ONNX conventions), including the places where PyTorch's layer
differs: asymmetric / SAME_UPPER padding becomes an explicit nn.ZeroPad2d (nn.ConstantPad2d(-inf)
before a max pool), a ceil-mode window that PyTorch would add after such padding is cropped, and
LocalResponseNorm with an even size uses a small ONNX-windowed module (torch centres even windows
one channel earlier).
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import GraphError, ShapeError
from .fileio import atomic_open, atomic_write_text
from .graph import Graph
from .layers.torch_code import TorchCode
from .validate import Validation, validate

# attributes of nn.Module (and names used inside generated forward) a submodule must not shadow
RESERVED = frozenset((
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children",
    "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward",
    "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
    "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
    "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad", "x", "self", "torch", "nn", "F", "np", "logits",
    "input", "INPUT_SHAPE", "NODE_MODULES",
))


class ExportError(GraphError):
    """The design cannot be written as PyTorch code (names the layer and a fix)."""


# ---- names -----------------------------------------------------------------------------------

def python_name(name: str) -> str:
    """A layer name as a Python identifier (see the module docstring for the rule)."""
    ident = re.sub(r"\W", "_", name, flags=re.ASCII).strip() or "layer"
    if ident[0].isdigit():
        ident = "layer_" + ident
    if keyword.iskeyword(ident) or ident in RESERVED or ident.startswith("__"):
        ident += "_"
    return ident


def class_name_for(graph_name: str) -> str:
    """'LeNet-5' -> 'LeNet5', 'my net' -> 'MyNet'; 'Net' when nothing usable remains."""
    parts = re.findall(r"[A-Za-z0-9]+", graph_name)
    name = "".join(p[:1].upper() + p[1:] for p in parts)
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = "Net" + name
    return name


class _Names:
    def __init__(self):
        self.taken: set[str] = set()

    def claim(self, base: str) -> str:
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


HELPERS = {
    "LayerNorm2d": '''

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an N×C×H×W map, as ConvNeXt's: each position's C values
    are normalised together, then scaled and shifted per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)
''',
    "WindowPool2d": '''

class WindowPool2d(nn.Module):
    """Window pooling as ONNX (and CNN Designer) defines it, for what nn.MaxPool2d / nn.AvgPool2d
    cannot say: padding beyond half the kernel, dilated average pooling, uncounted asymmetric
    padding, geometric and harmonic means. Exact: the input is padded explicitly (`pads` =
    top, left, bottom, right; then `extra` rows / columns at the end, the ceil-mode overhang),
    F.unfold reads the dilated windows, and
      max:       the largest tap (padding is -inf);
      avg:       the window's sum / its cells inside the input (with count_include_pad: inside
                 the input and `pads`; the overhang never counts), counted on a mask of ones;
      geometric: exp(mean of log(max(x, eps))) over the window's input cells;
      harmonic:  1 / (mean of 1 / max(x, eps)) over the window's input cells."""

    def __init__(self, mode: str, kernel_size, stride, dilation=1, pads=(0, 0, 0, 0),
                 extra=(0, 0), count_include_pad: bool = False, eps: float = 1e-6):
        super().__init__()
        two = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        self.mode, self.kernel_size = mode, two(kernel_size)
        self.stride, self.dilation = two(stride), two(dilation)
        self.pads, self.extra = tuple(pads), tuple(extra)
        self.count_include_pad = count_include_pad and mode == "avg"
        self.eps = eps

    def _window_sums(self, x: torch.Tensor, pad_value: float, extra_value: float, reduce):
        n, c, h, w = x.shape
        t, l, b, r = self.pads
        x = F.pad(x, (l, r, t, b), value=pad_value)
        x = F.pad(x, (0, self.extra[1], 0, self.extra[0]), value=extra_value)
        hp, wp = x.shape[2:]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
        cols = F.unfold(x.reshape(n * c, 1, hp, wp), self.kernel_size, dilation=self.dilation,
                        stride=self.stride)
        return reduce(cols).reshape(n, c, ho, wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            inf = float("-inf")
            return self._window_sums(x, inf, inf, lambda cols: cols.amax(1))
        if self.mode == "geometric":
            x = torch.log(torch.clamp(x, min=self.eps))
        elif self.mode == "harmonic":
            x = 1.0 / torch.clamp(x, min=self.eps)
        total = self._window_sums(x, 0.0, 0.0, lambda cols: cols.sum(1))
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        count = self._window_sums(ones, float(self.count_include_pad), 0.0,
                                  lambda cols: cols.sum(1))
        mean = total / count
        if self.mode == "geometric":
            return torch.exp(mean)
        return 1.0 / mean if self.mode == "harmonic" else mean
''',
    "LayerScale": '''

class LayerScale(nn.Module):
    """A learned scale per channel, y = x · γ (ConvNeXt's layer scale)."""

    def __init__(self, channels: int, init_value: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(-1, *([1] * (x.dim() - 2)))
''',
    "OnnxLocalResponseNorm": '''

class OnnxLocalResponseNorm(nn.Module):
    """LocalResponseNorm as ONNX (and CNN Designer) defines it: the window of channel c spans
    c - (size - 1) // 2 .. c + size // 2. nn.LocalResponseNorm centres even-sized windows one
    channel earlier; for odd sizes the two are the same."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq = F.pad((x * x).unsqueeze(1), (0, 0, 0, 0, (self.size - 1) // 2, self.size // 2))
        mean = F.avg_pool3d(sq, (self.size, 1, 1), stride=1).squeeze(1)
        return x / (self.k + self.alpha * mean) ** self.beta
''',
}


# ---- the generator ---------------------------------------------------------------------------

@dataclass
class PyTorchCode:
    """The generated model.py text and the node id -> submodule name mapping."""

    source: str
    class_name: str
    node_modules: dict[str, str]  # node id -> attribute holding its weights
    input_shape: tuple[int, ...]
    ends_in_softmax: bool


def generate_model(graph: Graph, class_name: str | None = None,
                   validation: Validation | None = None) -> PyTorchCode:
    """model.py for `graph`; ExportError (a GraphError) if the graph is not valid."""
    v = validation or validate(graph)
    v.raise_if_invalid("export it as PyTorch code", ExportError)
    cls = class_name or class_name_for(graph.name)
    if not cls.isidentifier() or keyword.iskeyword(cls):
        raise ExportError(f"class name {cls!r} is not a valid Python identifier; use letters, "
                          f"digits and underscores, not starting with a digit")
    order = v.order
    ins = {nid: graph.inputs_of(nid) for nid in order}
    input_id = next(nid for nid in order if graph.nodes[nid].type_name == "Input")
    out_id = v.output_id
    # forward computes only what the output needs; every layer still gets its submodule
    needed = {out_id}
    for nid in reversed(order):
        if nid in needed:
            needed.update(ins[nid])
    fwd_order = _depth_first_order([nid for nid in order if nid in needed], ins)
    consumers: dict[str, list[str]] = {nid: [] for nid in order}
    for nid in fwd_order:
        for s in ins[nid]:
            consumers[s].append(nid)

    names = _Names()
    attrs = {nid: names.claim(python_name(graph.nodes[nid].name)) for nid in order}
    codes: dict[str, TorchCode] = {}  # each layer declares its code: Layer.to_pytorch
    node_modules: dict[str, str] = {}
    helpers: list[str] = []
    for nid in order:
        res = v.nodes[nid]
        node = graph.nodes[nid]
        try:
            code = res.layer.to_pytorch(res.in_shapes, attrs[nid], names)
        except ShapeError as exc:  # names the layer already
            raise ExportError(str(exc)) from None
        except NotImplementedError as exc:
            raise ExportError(f"{node.type_name} '{node.name}': {exc}") from None
        codes[nid] = code
        if code.helper and code.helper not in helpers:
            helpers.append(code.helper)
        if any(m.attr == attrs[nid] for m in code.modules):
            node_modules[nid] = attrs[nid]

    # variables: "x" for a plain chain, the layer's attribute name where a value is read later;
    # a layer with several outputs (a split) unpacks its tuple into one variable per port
    var: dict[str, str] = {}
    port_vars: dict[str, list[str]] = {
        nid: [names.claim(f"{attrs[nid]}_{k}") for k in range(len(v.nodes[nid].out_shapes))]
        for nid in fwd_order if len(v.nodes[nid].out_shapes) > 1}
    for i, nid in enumerate(fwd_order):
        nxt = fwd_order[i + 1] if i + 1 < len(fwd_order) else None
        cons = consumers[nid]
        chain = len(cons) == 1 and cons[0] == nxt and ins[nxt].count(nid) == 1
        var[nid] = "x" if (chain or nid == out_id) else attrs[nid]

    def value(src: str, port: int) -> str:
        """The variable holding output `port` of node `src`."""
        return port_vars[src][port] if src in port_vars else var[src]

    ends_in_softmax = graph.nodes[out_id].type_name == "Softmax"
    body: list[str] = []
    for nid in fwd_order:
        code = codes[nid]
        if nid == input_id:
            if var[nid] != "x":
                body.append(f"{var[nid]} = x")
            continue
        args = [value(s, p) for s, p in graph.input_refs(nid)]
        if code.modules:
            call = args[0]
            for m in code.modules:
                call = f"self.{m.attr}({call})"
            expr = (code.expr or "{call}").format(*args, call=call)
        else:
            expr = code.expr.format(*args)
        if nid == out_id and ends_in_softmax:
            body.append("if logits:  # the scores before the softmax, for a loss on logits")
            body.append(f"    return {args[0]}")
        target = ", ".join(port_vars[nid]) if nid in port_vars else var[nid]
        body.append(f"{target} = {expr}")
    body.append(f"return {value(out_id, 0)}")

    init: list[str] = []
    for nid in _depth_first_order(order, ins):
        for m in codes[nid].modules:
            init.append(f"self.{m.attr} = {m.ctor}")
    in_shape = tuple(v.nodes[input_id].out_shape)
    out_shape = tuple(v.nodes[out_id].out_shape)
    sig = "self, x: torch.Tensor, logits: bool = False" if ends_in_softmax else \
        "self, x: torch.Tensor"
    shape_doc = "×".join(map(str, in_shape))
    out_doc = "×".join(map(str, out_shape))
    src = MODEL_TEMPLATE.format(
        title=_safe_title(graph.name), cls=cls, input_shape=repr(in_shape), shape_doc=shape_doc,
        out_doc=out_doc, init=_indent(init or ["pass"], 8), sig=sig,
        forward=_indent(body, 8), helpers="".join(HELPERS[h] for h in helpers),
        node_modules=_dict_literal({k: a for k, a in node_modules.items()
                                    if a != k and v.nodes[k].params}),
        softmax_doc=("\n\n    With logits=True, forward returns the scores before the final "
                     "softmax.\n    " if ends_in_softmax else ""),
        params=f"{v.trainable_params:,}")
    return PyTorchCode(src, cls, node_modules, in_shape, ends_in_softmax)


def _safe_title(name: str) -> str:
    """The design's name for a docstring / heading: no quotes, backslashes or line breaks."""
    return re.sub(r"[\\\"'`\r\n]", "", name).strip()[:60] or "network"


def _depth_first_order(order: list[str], ins: dict[str, list[str]]) -> list[str]:
    """A topological order that finishes a chain before starting the next branch, so forward
    reads like the network (and most values flow through one variable, x)."""
    pos = {nid: i for i, nid in enumerate(order)}
    indeg = {nid: len(ins[nid]) for nid in order}
    succ: dict[str, list[str]] = {nid: [] for nid in order}
    for nid in order:
        for s in ins[nid]:
            succ[s].append(nid)
    stack = [nid for nid in reversed(order) if indeg[nid] == 0]
    out = []
    while stack:
        nid = stack.pop()
        out.append(nid)
        ready = []
        for m in sorted(succ[nid], key=pos.__getitem__):
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
        stack.extend(reversed(ready))
    return out


def _indent(lines: list[str], n: int) -> str:
    out = []
    for ln in lines:
        extra = len(ln) - len(ln.lstrip(" "))
        pad = " " * (n + extra)
        out += [pad + w for w in _wrap(ln.lstrip(" "), n + extra)]
    return "\n".join(out)


def _wrap(stmt: str, indent: int, width: int = 100) -> list[str]:
    """Break a long generated statement inside its call's parentheses (after commas) or, for a
    sum, before its + signs; lines stay within `width` unless a single name is longer."""
    if indent + len(stmt) <= width:
        return [stmt]
    eq = stmt.find(" = ")
    lhs, rhs = (stmt[:eq + 3], stmt[eq + 3:]) if eq >= 0 else ("", stmt)
    p = rhs.find("(")
    if p >= 0 and rhs.endswith(")") and _closing(rhs, p) == len(rhs) - 1:
        head, inner, sep = lhs + rhs[:p + 1], rhs[p + 1:-1], ", "
    elif " + " in rhs:
        head, inner, sep = lhs + "(", rhs, " + "
    else:
        return [stmt]
    avail = width - indent - 4
    parts = inner.split(sep)
    lines, cur = [], parts[0]
    for part in parts[1:]:
        if len(cur) + len(sep) + len(part) <= avail:
            cur += sep + part
        elif sep == ", ":
            lines.append(cur + ",")
            cur = part
        else:
            lines.append(cur)
            cur = "+ " + part
    lines.append(cur)
    return [head] + ["    " + ln for ln in lines] + [")"]


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at `start`."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([":
            depth += 1
        elif text[i] in ")]":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _dict_literal(d: dict[str, str]) -> str:
    if not d:
        return "{}"
    items = "\n".join(f"    {json.dumps(k)}: {json.dumps(v)}," for k, v in d.items())
    return "{\n" + items + "\n}"


MODEL_TEMPLATE = '''"""{title} (exported from CNN Designer as a PyTorch module).

{params} trainable parameters. Plain PyTorch and NumPy, nothing else: edit it freely.

    model = {cls}()
    load_npz(model, "weights.npz")   # the exported weights (or a CNN Designer weights file)
    y = model(x)                     # x: (N, {shape_doc}) float32 -> (N, {out_doc})
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: F401  (handy when editing forward)
from torch import nn

# CNN Designer layer id -> submodule holding its weights, where the two differ. load_npz
# accepts weight files keyed either way ("<layer id>.weight" or "<submodule>.weight").
NODE_MODULES = {node_modules}
{helpers}

class {cls}(nn.Module):
    """Input (N, {shape_doc}) -> output (N, {out_doc}).{softmax_doc}"""

    INPUT_SHAPE = {input_shape}

    def __init__(self):
        super().__init__()
{init}

    def forward({sig}) -> torch.Tensor:
{forward}


def load_npz(model: nn.Module, path: str = "weights.npz") -> nn.Module:
    """Load weights from an .npz keyed by state_dict keys or by CNN Designer node ids."""
    state = model.state_dict()
    loaded = {{}}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            node, _, name = key.rpartition(".")
            target = key if key in state else f"{{NODE_MODULES.get(node, node)}}.{{name}}"
            if target not in state:
                raise KeyError(f"{{path}}: {{key!r}} matches no parameter of "
                               f"{{type(model).__name__}}")
            value = torch.from_numpy(np.asarray(data[key]))
            if value.shape != state[target].shape:
                raise ValueError(f"{{path}}: {{key!r}} has shape {{tuple(value.shape)}}, the "
                                 f"model needs {{tuple(state[target].shape)}}")
            loaded[target] = value.to(state[target].dtype)
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise KeyError(f"{{path}} has no values for {{', '.join(missing)}}")
    model.load_state_dict(loaded, strict=False)
    return model


def save_npz(model: nn.Module, path: str) -> None:
    """Save weights keyed by CNN Designer node ids, so the app can load them back."""
    to_node = {{module: node for node, module in NODE_MODULES.items()}}
    arrays = {{}}
    for key, value in model.state_dict().items():
        module, _, name = key.rpartition(".")
        if name == "num_batches_tracked":
            continue
        arrays[f"{{to_node.get(module, module)}}.{{name}}"] = value.detach().cpu().numpy()
    np.savez(path, **arrays)
'''


def export_pytorch(graph: Graph, weights: dict[str, np.ndarray] | None, out_dir: str | Path,
                   class_name: str | None = None) -> list[Path]:
    """Write model.py, weights.npz (when weights are given), train.py and README.md into
    out_dir; returns the written paths. `weights` are keyed "node_id.name" (Network.state_dict)
    and are saved under the module's state_dict keys."""
    v = validate(graph)
    code = generate_model(graph, class_name, v)
    arrays = _torch_state(graph, v, code, weights) if weights else None
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the folder {out}: {exc.strerror or exc}") from None
    written = [_write(out / "model.py", code.source)]
    if arrays is not None:
        path = out / "weights.npz"
        try:
            with atomic_open(path) as f:
                np.savez(f, **arrays)
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    written.append(_write(out / "train.py", TRAIN_TEMPLATE.format(
        cls=code.class_name, comma_logits=", logits=True" if code.ends_in_softmax else "")))
    written.append(_write(out / "README.md", README_TEMPLATE.format(
        title=_safe_title(graph.name), cls=code.class_name,
        shape="×".join(map(str, code.input_shape)),
        commas=", ".join(map(str, code.input_shape)),
        weights=("`weights.npz` holds the design's weights (keys: the module's state_dict "
                 "keys)." if weights else "No weights were exported: the model starts from "
                 "PyTorch's default initialisation."),
        # without weights.npz the example must not load it: train first (checkpoint.npz)
        load=(f'load_npz({code.class_name}(), "weights.npz").eval()' if weights else
              f'{code.class_name}().eval()  # untrained; after train.py: load_npz(model, '
              f'"checkpoint.npz")'))))
    return written


def _torch_state(graph: Graph, v: Validation, code: PyTorchCode,
                 weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """"node_id.name" arrays -> the module's state_dict keys; every layer's weights must be
    there with the shapes the design needs (ExportError names the first that is not)."""
    arrays = {}
    for nid in v.order:
        res = v.nodes[nid]
        for name, (shape, _) in res.layer.weight_shapes(res.in_shapes).items():
            key = f"{nid}.{name}"
            if key not in weights:
                raise ExportError(f"the weights have no '{name}' for layer "
                                  f"'{graph.nodes[nid].name}' ({key}); export without weights "
                                  f"or train the design first")
            arr = np.asarray(weights[key], np.float32)
            if arr.shape != tuple(shape):
                raise ExportError(f"layer '{graph.nodes[nid].name}': '{name}' has shape "
                                  f"{arr.shape} in the weights, the layer needs {tuple(shape)}")
            arrays[f"{code.node_modules[nid]}.{name}"] = arr
    return arrays


def _write(path: Path, text: str) -> Path:
    """Atomic write (engine.fileio): a temporary file in the same folder, then os.replace."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


TRAIN_TEMPLATE = '''"""Train the exported model on one CPU, one GPU, or several processes / GPUs.

    python train.py --data data.npz --epochs 5                   # x: (N, C, H, W), y: (N,)
    python train.py --mnist-idx path/to/mnist --epochs 5         # train-images-idx3-ubyte[.gz]
    torchrun --nproc_per_node=4 train.py --data data.npz         # DistributedDataParallel

Under torchrun each process takes a share of every epoch (DistributedSampler); the backend is
NCCL on GPUs and Gloo on the CPU. Rank 0 prints the progress and writes the checkpoint.
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from model import {cls}, load_npz, save_npz

HERE = Path(__file__).resolve().parent


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), optionally gzipped."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(folder: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise SystemExit(f"{{folder}} has no {{stem}}[.gz]")


def load_data(args) -> tuple[np.ndarray, np.ndarray]:
    if args.data:
        with np.load(args.data, allow_pickle=False) as d:
            x, y = d["x"], d["y"]
    else:
        folder = Path(args.mnist_idx)
        x = read_idx(find(folder, "train-images-idx3-ubyte"))
        y = read_idx(find(folder, "train-labels-idx1-ubyte"))
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if tuple(x.shape[1:]) != {cls}.INPUT_SHAPE:
        raise SystemExit(f"the model takes images of {{{cls}.INPUT_SHAPE}}, the data has "
                         f"{{tuple(x.shape[1:])}}")
    return x, y.astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description="Train the exported {cls}.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help=".npz with x (N, C, H, W) and y (N,) integer labels")
    src.add_argument("--mnist-idx", help="folder with train-images/labels IDX files")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64, help="per process")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--weights", default=str(HERE / "weights.npz"),
                    help="initial weights (skipped if the file does not exist)")
    ap.add_argument("--out", default="checkpoint", help="checkpoint path without suffix")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(args.seed)

    x, y = load_data(args)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    sampler = DistributedSampler(dataset, seed=args.seed) if distributed else None
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None,
                        sampler=sampler, drop_last=False)

    model = {cls}()
    if Path(args.weights).exists():
        load_npz(model, args.weights)
    model.to(device)
    net = model
    if distributed:
        net = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda"
                                      else None)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    for epoch in range(1, args.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            out = net(xb{comma_logits})
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            totals += torch.stack([loss.detach().double() * len(yb),
                                   (out.argmax(1) == yb).sum().double(),
                                   torch.tensor(float(len(yb)), dtype=torch.float64,
                                                device=device)])
        if distributed:
            dist.all_reduce(totals)
        if rank == 0:
            loss_sum, correct, count = totals.tolist()
            print(f"epoch {{epoch}}/{{args.epochs}}  loss {{loss_sum / count:.4f}}  "
                  f"accuracy {{correct / count:.2%}}  {{time.perf_counter() - t0:.1f}} s",
                  flush=True)

    if rank == 0:
        torch.save(model.state_dict(), args.out + ".pt")
        save_npz(model, args.out + ".npz")  # keyed by node ids: loads back into CNN Designer
        print(f"saved {{args.out}}.pt and {{args.out}}.npz", flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
'''

README_TEMPLATE = '''# {title} — exported from CNN Designer

Plain PyTorch: `model.py` needs only `torch` and `numpy`.

- `model.py` — `class {cls}(nn.Module)`, input N×{shape}; submodules are named after the
  layers (dots and other characters become `_`; `NODE_MODULES` maps the designer's layer ids to
  them). `load_npz(model, path)` loads weights keyed by state_dict keys or by layer ids;
  `save_npz(model, path)` writes layer-id keys that CNN Designer can load back.
- {weights}
- `train.py` — trains on a `.npz` with `x` (N×{shape}, float32 or uint8) and `y` (integer
  labels), or on MNIST IDX files:

```
python train.py --data data.npz --epochs 5 --batch-size 64 --lr 0.001
python train.py --mnist-idx ~/mnist --device cuda
torchrun --nproc_per_node=2 train.py --data data.npz     # DistributedDataParallel
```

Under `torchrun` each process trains on its share of the data (DistributedSampler) with the
NCCL backend on GPUs, Gloo on the CPU; rank 0 prints the progress and saves `checkpoint.pt`
and `checkpoint.npz`.

```python
import torch
from model import {cls}, load_npz

model = {load}
with torch.no_grad():
    scores = model(torch.zeros(1, {commas}))
```
'''


__all__ = ["ExportError", "PyTorchCode", "class_name_for",
           "export_pytorch", "generate_model", "python_name"]
