"""Weights in: trained weights from the files users have, matched to a design by name.

    ckpt = read_checkpoint("resnet18-f37072fd.pth")     # .pth/.pt, .safetensors, .npz, .onnx,
    m = match_weights(graph, ckpt)                      #   .cnnd: names -> float32 arrays
    m.ok, m.weights, m.summary()                        # what fits, and what does not
    weights = load_weights(graph, path, strict=True)    # both, CheckpointError unless all fit

A design's weights are keyed "node_id.name" (Network.state_dict()); the templates' node ids are
torchvision's module paths, so a torchvision state_dict's keys ("layer1.0.conv1.weight",
"bn1.running_mean") are already ours. Matching is as strict as torch's load_state_dict: every
weight of the design must be in the file with its shape and every tensor of the file must be a
weight of the design; `WeightMatch` lists the missing, unexpected and mis-shaped keys with both
shapes, and non-strict loading takes what fits and says what it skipped. What is not a weight is
left out and said: BatchNorm's `num_batches_tracked` counter, the auxiliary classifiers that
torchvision's Inception-v3 / GoogLeNet files carry for training (`AuxLogits.*`, `aux1.*`,
`aux2.*`) when the design has no such layers, a `module.` prefix (DataParallel) or any one
leading name every key shares. A tensor that PyTorch keeps on a module itself (ConvNeXt's
`features.1.0.layer_scale`, shape C×1×1) fills that layer's only weight (the Scale node's
γ, `features.1.0.layer_scale.weight`, shape C) when the number of values agrees.

Formats, read without torch and without running anything the file holds:
- PyTorch checkpoints (torch.save, zip and legacy layouts) through engine.transfer.torch_pickle,
  whose unpickler builds only tensors, ordered dicts and plain containers; a
  {"state_dict": …} / {"model": …} / {"model_state_dict": …} wrapper is opened;
- .safetensors with the safetensors package (safetensors.numpy);
- .npz with np.load(allow_pickle=False);
- ONNX through engine.onnx.importer: the importer's layers (node names as PyTorch and our
  export write them, Gemm's transposition undone) and, for files whose node names are not
  module paths, the initializers by their own names; the reading that matches more is used;
- a CNN Designer project (.cnnd): its weights.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import read_head
from ..graph import Graph
from ..layers import fmt_shape
from ..project import MAX_RATIO, RATIO_FLOOR, expected_weight_shapes, load_project
from ..validate import validate
from .torch_pickle import CheckpointError, Progress, read_torch_file

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
IGNORED_SUFFIXES = ("num_batches_tracked",)  # BatchNorm's step counter: not a weight
# torchvision's Inception-v3 and GoogLeNet files carry their training-only side classifiers;
# the templates leave them out (they change no prediction)
AUXILIARY_HEADS = ("AuxLogits", "aux1", "aux2")

__all__ = ["Checkpoint", "CheckpointError", "WeightMatch", "load_weights", "match_weights",
           "read_checkpoint"]


@dataclass
class Checkpoint:
    """A file's tensors: one or more readings (name -> array) of the same weights, best first
    where known (ONNX: by layer and by initializer name); `match_weights` uses the one that
    fits the design best."""

    path: Path
    readings: list[dict[str, np.ndarray]]
    notes: list[str] = field(default_factory=list)


# ---- reading --------------------------------------------------------------------------------

def read_checkpoint(path: str | Path, progress: Progress | None = None) -> Checkpoint:
    """The tensors of a weights file (format told by its content, else its suffix).
    CheckpointError for a missing, damaged, refused or unknown file."""
    path = Path(path)
    head = read_head(path, 16, "weights file", CheckpointError)
    size = path.stat().st_size
    if not head:
        raise CheckpointError(f"{path}: the file is empty")
    if head[:4] == b"PK\x03\x04":
        members = _zip_names(path)
        if any(n.endswith("/data.pkl") for n in members):
            return _from_torch(path, progress)
        if "graph.json" in members:
            return _from_project(path)
        return _from_npz(path, members)
    if head[:1] == b"\x80":
        return _from_torch(path, progress)
    if _is_safetensors(head, size):
        return _from_safetensors(path)
    if path.suffix.lower() == ".onnx" or _looks_like_onnx(head):
        return _from_onnx(path)
    raise CheckpointError(f"{path}: not a weights file this app reads (a PyTorch .pth / .pt, "
                          f".safetensors, .npz, .onnx or .cnnd)")


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: the zip archive is damaged or truncated ({exc})") \
            from None


def _is_safetensors(head: bytes, size: int) -> bool:
    """8 bytes little-endian header length, then the JSON header."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _looks_like_onnx(head: bytes) -> bool:
    # a ModelProto starts with field 1 (ir_version, varint): tag byte 0x08
    return head[:1] == b"\x08"


def _from_torch(path: Path, progress: Progress | None) -> Checkpoint:
    obj = read_torch_file(path, progress)
    state, notes = unwrap_state_dict(obj, path)
    return Checkpoint(path, [state], notes)


def unwrap_state_dict(obj: Any, path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The state dict inside what torch.save stored: the object itself, or the value of a
    wrapper key ("state_dict", "model", ...). Non-tensor entries are left out."""
    notes: list[str] = []
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict (a dict "
                              f"of named tensors)")
    for _ in range(3):  # {"model": {"state_dict": ...}} happens
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)
                      and _has_arrays(obj[k], deep=True)), None)
        if inner is None or (_has_arrays(obj) and not _has_arrays(obj[inner])):
            break
        others = [str(k) for k in obj if k != inner]
        notes.append(f"read the weights under '{inner}'"
                     + (f" (also in the file: {_names(others)})" if others else ""))
        obj = obj[inner]
    state = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not state:
        raise CheckpointError(f"{path}: holds no tensors by name (its keys: "
                              f"{_names([str(k) for k in obj]) or 'none'})")
    return state, notes


def _has_arrays(d: Mapping, deep: bool = False) -> bool:
    return any(isinstance(v, np.ndarray) or (deep and isinstance(v, dict) and _has_arrays(v))
               for v in d.values())


def _from_safetensors(path: Path) -> Checkpoint:
    try:
        from safetensors.numpy import load_file
    except ImportError:  # a dependency; only a broken install lacks it
        raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package "
                              f"(pip install safetensors)") from None
    try:
        state = load_file(str(path))
    except TypeError as exc:
        if "bfloat16" in str(exc):
            raise CheckpointError(f"{path}: holds bfloat16 tensors, which NumPy cannot read; "
                                  f"save them as float32 (tensor.float())") from None
        raise CheckpointError(f"{path}: cannot read it as safetensors ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OS errors
        raise CheckpointError(f"{path}: not a readable .safetensors file ({exc})") from None
    return Checkpoint(path, [dict(state)])


def _from_npz(path: Path, members: list[str]) -> Checkpoint:
    try:
        with zipfile.ZipFile(path) as z:
            for i in z.infolist():  # deflated beyond MAX_RATIO: a zip bomb, not weights
                if i.file_size > RATIO_FLOOR and i.file_size > MAX_RATIO * max(i.compress_size,
                                                                                1):
                    raise CheckpointError(f"{path}: refused: '{i.filename}' would inflate "
                                          f"{i.compress_size} bytes to {i.file_size}")
        if not members or not all(n.endswith(".npy") for n in members):
            raise CheckpointError(f"{path}: a zip archive, but neither a PyTorch checkpoint nor "
                                  f"an .npz of arrays")
        state = {}
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                state[key] = npz[key]
    except CheckpointError:
        raise
    except ValueError as exc:  # object arrays need pickles: refused
        raise CheckpointError(f"{path}: refused: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: the .npz is damaged or truncated ({exc})") from None
    return Checkpoint(path, [state])


def _from_project(path: Path) -> Checkpoint:
    project = load_project(path)  # ProjectError: an EngineError with a clear message
    if not project.weights:
        raise CheckpointError(f"{path}: the project holds no weights")
    return Checkpoint(path, [project.weights])


def _from_onnx(path: Path) -> Checkpoint:
    from onnx import numpy_helper

    from ..onnx.importer import OnnxImportError, import_onnx, read_model

    try:
        model = read_model(path)
    except OnnxImportError as exc:
        raise CheckpointError(str(exc)) from None
    by_name: dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        try:
            arr = numpy_helper.to_array(init)
        except (ValueError, TypeError, KeyError):
            continue  # the import route names a corrupt tensor if a layer needs it
        if arr.dtype.kind == "f":
            by_name[init.name] = arr
    readings, notes = [], []
    try:
        readings.append(import_onnx(model).weights)
    except OnnxImportError as exc:
        notes.append(f"the model itself does not import ({exc}); its weights are read by "
                     f"initializer name")
    readings.append(by_name)
    return Checkpoint(path, readings, notes)


# ---- matching -------------------------------------------------------------------------------

Shape = tuple[int, ...]


@dataclass
class WeightMatch:
    """How a file's tensors fit a design: `weights` ("node_id.name" -> float32) are those that
    fit; the rest are listed with their shapes."""

    weights: dict[str, np.ndarray]
    expected: int  # how many weights the design has
    missing: list[tuple[str, Shape]] = field(default_factory=list)  # design key, its shape
    unexpected: list[tuple[str, Shape]] = field(default_factory=list)  # file key, its shape
    mismatched: list[tuple[str, Shape, Shape]] = field(default_factory=list)  # file, design
    bad_values: list[str] = field(default_factory=list)  # NaN or infinite
    notes: list[str] = field(default_factory=list)
    source: str = "the file"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.bad_values)

    @property
    def loaded(self) -> int:
        return len(self.weights)

    def problems(self, limit: int = 3) -> str:
        """The mismatches in one line, each kind with its first `limit` keys and a count."""
        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} mis-shaped: " + _listing(
                [f"{k} (file {_shape(a)}, design {_shape(b)})" for k, a, b in self.mismatched],
                limit))
        if self.missing:
            parts.append(f"{len(self.missing)} missing from the file: " + _listing(
                [f"{k} ({_shape(s)})" for k, s in self.missing], limit))
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (no such weight in the design): "
                         + _listing([f"{k} ({_shape(s)})" for k, s in self.unexpected], limit))
        if self.bad_values:
            parts.append(f"{len(self.bad_values)} with NaN or infinite values: "
                         + _listing(self.bad_values, limit))
        return "; ".join(parts)

    def summary(self) -> str:
        """One line: why strict loading fails (or that everything fits)."""
        if self.ok:
            return f"all {self.expected} weights of the design are in {self.source}"
        other = ""
        if self.loaded == 0 and (self.unexpected or self.missing):
            other = " (a checkpoint of another architecture?)"
        return (f"{self.source} does not fit the design{other}: {self.problems()}; "
                f"{self.loaded} of {self.expected} weights fit")

    def skipped(self) -> str:
        """One line for non-strict loading: what was loaded and what was left out."""
        text = f"loaded {self.loaded} of the design's {self.expected} weights from {self.source}"
        return text + (f"; skipped {self.problems()}" if not self.ok else "")

    def details(self) -> list[str]:
        """Every mismatch, one per line."""
        out = [f"mis-shaped: {k} (file {_shape(a)}, design {_shape(b)})"
               for k, a, b in self.mismatched]
        out += [f"missing from the file: {k} ({_shape(s)})" for k, s in self.missing]
        out += [f"unexpected in the file: {k} ({_shape(s)})" for k, s in self.unexpected]
        out += [f"NaN or infinite values: {k}" for k in self.bad_values]
        return out


def _shape(s: Shape) -> str:
    return fmt_shape(s) if len(s) else "scalar"


def _listing(items: list[str], limit: int) -> str:
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _names(keys: list[str], limit: int = 5) -> str:
    return _listing([repr(k) for k in keys], limit)


def design_shapes(graph: Graph) -> dict[str, Shape]:
    """"node_id.name" -> shape of every weight of a valid design (CheckpointError otherwise:
    an invalid layer has no known weight shapes)."""
    v = validate(graph)
    if not v.ok:
        first = v.errors[0].text if v.errors else "it does not validate"
        raise CheckpointError(f"the design has {len(v.errors)} error"
                              f"{'s' * (len(v.errors) != 1)} (first: {first}); fix it before "
                              f"loading weights")
    return {k: tuple(s) for k, s in expected_weight_shapes(graph).items() if s is not None}


def match_weights(graph: Graph, checkpoint: Checkpoint | Mapping[str, np.ndarray]
                  ) -> WeightMatch:
    """Match a file's tensors to the design's weights by name (see the module docstring);
    the reading (and key prefix) that fits most weights wins."""
    if isinstance(checkpoint, Checkpoint):
        readings, notes = checkpoint.readings, list(checkpoint.notes)
        source = f"'{checkpoint.path.name}'"
    else:
        readings, notes, source = [dict(checkpoint)], [], "the weights"
    want = design_shapes(graph)
    best: WeightMatch | None = None
    for reading in readings:
        for state, note in _prefix_variants(reading, want):
            m = _match(graph, state, want)
            if note:
                m.notes.append(note)
            if best is None or _score(m) > _score(best):
                best = m
    assert best is not None
    best.notes[:0] = notes
    best.source = source
    return best


def _score(m: WeightMatch) -> tuple[int, int]:
    return (m.loaded, -(len(m.missing) + len(m.unexpected) + len(m.mismatched)))


def _prefix_variants(state: dict[str, np.ndarray], want: Mapping[str, Shape]):
    """The state as it is, and without a leading name that every key shares ("module." from
    DataParallel, "model." from a wrapper module) unless the design uses that name."""
    yield state, None
    firsts = {k.split(".", 1)[0] for k in state}
    if len(firsts) == 1 and all("." in k for k in state):
        (first,) = firsts
        if not any(k.split(".", 1)[0] == first for k in want):
            yield ({k.split(".", 1)[1]: v for k, v in state.items()},
                   f"the prefix '{first}.' of every key was removed")


def _match(graph: Graph, state: dict[str, np.ndarray], want: Mapping[str, Shape]
           ) -> WeightMatch:
    notes: list[str] = []
    state = dict(state)
    counters = [k for k in state if k.rpartition(".")[2] in IGNORED_SUFFIXES]
    for k in counters:  # ignored without a word, as torch's BatchNorm ignores them in eval
        del state[k]
    nodes = {k.rpartition(".")[0] for k in want} | set(graph.nodes)
    for head in AUXILIARY_HEADS:
        keys = [k for k in state if k.split(".", 1)[0] == head]
        if keys and not any(n == head or n.startswith(head + ".") for n in nodes):
            for k in keys:
                del state[k]
            notes.append(f"ignored the auxiliary classifier '{head}' ({len(keys)} tensors, "
                         f"used only in training)")
    _module_held(graph, state, want)
    m = WeightMatch({}, len(want), notes=notes)
    dtypes: set[str] = set()
    for key, arr in state.items():
        arr = np.asarray(arr)
        shape = tuple(int(d) for d in arr.shape)
        if key not in want:
            m.unexpected.append((key, shape))
        elif shape != want[key]:
            m.mismatched.append((key, shape, want[key]))
        elif arr.dtype.kind not in "fiub":
            m.unexpected.append((key, shape))
        else:
            if arr.dtype != np.float32:
                dtypes.add(str(arr.dtype))
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            # NaN propagates through min / max, ±inf is one of them: two passes, no bool copy
            if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
                m.bad_values.append(key)
            else:
                m.weights[key] = arr
    m.missing = [(k, s) for k, s in want.items() if k not in state]
    if dtypes:
        m.notes.append(f"converted {', '.join(sorted(dtypes))} to float32")
    return m


def _module_held(graph: Graph, state: dict[str, np.ndarray], want: Mapping[str, Shape]) -> None:
    """A tensor PyTorch registers on a module itself ("<node id>", not "<node id>.<name>") fills
    that layer's only weight when the counts agree (reshaped; the values keep their order)."""
    by_node: dict[str, list[str]] = {}
    for k in want:
        by_node.setdefault(k.rpartition(".")[0], []).append(k)
    for key in [k for k in state if k not in want and k in by_node]:
        targets = by_node[key]
        arr = np.asarray(state[key])
        if len(targets) == 1 and targets[0] not in state \
                and arr.size == int(np.prod(want[targets[0]])):
            state[targets[0]] = arr.reshape(want[targets[0]])
            del state[key]


def load_weights(graph: Graph, path: str | Path, strict: bool = True,
                 progress: Progress | None = None) -> WeightMatch:
    """Read `path` and match it to `graph`. strict: CheckpointError (one line: which keys
    differ, with both shapes) unless every weight fits; non-strict: the match, whatever fits.
    A file of which nothing fits is an error either way."""
    m = match_weights(graph, read_checkpoint(path, progress))
    if (strict and not m.ok) or m.loaded == 0:
        raise CheckpointError(m.summary())
    return m
