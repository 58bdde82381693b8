"""PyTorch checkpoints (.pth / .pt) read without torch and without running the file's code.

    state = read_torch_file("resnet18-f37072fd.pth")   # whatever torch.save stored, tensors
                                                        # as float32 / int NumPy arrays

`torch.save` writes a pickle. Unpickling can call any function the file names, so the pickle is
read by `RestrictedUnpickler`, which knows only what `torch.load(weights_only=True)` needs for
weights: the tensor rebuild functions (`torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`,
`_rebuild_parameter`, `_rebuild_parameter_with_state`, `torch._tensor._rebuild_from_type_v2` for
plain tensors), `collections.OrderedDict`, and the storage types (`torch.FloatStorage`, …) that
appear only inside the persistent ids naming a storage. Any other global (os.system,
builtins.eval, getattr, a pickled nn.Module class …) is refused with its name before anything
is called; none of the allowed names is the real torch function, each is our own code that
records a tensor's storage, offset, size and stride. The arrays are built afterwards, with
every view checked against its storage's length.

Two layouts: the zip archive torch has written since 1.6 (`<name>/data.pkl`, one member
`<name>/data/<key>` per storage, `<name>/byteorder`) and the older "legacy" stream (magic number,
protocol version, system info, the pickle, the list of storage keys, then each storage as an
int64 element count followed by its bytes), in which torchvision published its first weight
files. TorchScript archives (torch.jit.save) and the pre-0.4 tar layout are named and refused.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ProjectError
from ..project import MAX_RATIO, RATIO_FLOOR  # a storage deflated beyond that is a zip bomb

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 256 << 20  # data.pkl of a state dict is kilobytes; a bigger one is refused

# torch's storage class -> the NumPy dtype of its elements (bfloat16: raw 16-bit words, widened
# to float32 when the array is built, as NumPy has no bfloat16)
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class CheckpointError(ProjectError):
    """A weights file cannot be read or does not fit; the message says which and why."""


# ---- what the pickle may build --------------------------------------------------------------
# Immutable (tuple-based) records: a hostile pickle's BUILD opcode cannot change them later.

class _StorageType(str):
    """A storage class the pickle named ("FloatStorage"); only a persistent id uses it."""
    __slots__ = ()


class _Storage(NamedTuple):
    key: str  # the storage's name in the archive (zip member data/<key>, legacy key)
    kind: str  # "FloatStorage", ...
    numel: int  # elements (not bytes)
    offset: int = 0  # legacy views: where this storage starts inside its root storage


class _TensorRef(NamedTuple):
    storage: Any
    offset: Any
    size: Any
    stride: Any


class _PlainType(str):
    """torch.Tensor / torch.nn.Parameter, named by _rebuild_from_type_v2 only."""
    __slots__ = ()


def _refuse(module: str, name: str) -> CheckpointError:
    full = f"{module}.{name}"
    hint = ""
    if module.startswith(("torch.nn", "torchvision")):
        hint = (" (the file holds a whole pickled model, torch.save(model); save its "
                "weights with torch.save(model.state_dict()) instead)")
    elif module.startswith(("numpy", "torch")):
        hint = (" (only tensors, ordered dicts and plain containers are read; save the "
                "state_dict alone)")
    return CheckpointError(f"refused: the pickle asks for '{full}', which a weights file does "
                           f"not need; nothing in it was run{hint}")


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that resolves only the globals a torch state dict uses (to our own
    record-building functions) and storages by persistent id; anything else raises
    CheckpointError naming the global. `storages` (key -> _Storage) collects what the pickle
    refers to; `storage_view` builds a legacy file's views."""

    def __init__(self, file, legacy: bool = False):
        super().__init__(file, encoding="utf-8")
        self.legacy = legacy
        self.storages: dict[str, _Storage] = {}

    # a fresh closure per lookup: BUILD on it could at most touch that one object
    def find_class(self, module: str, name: str):
        # protocol 2 writes Python 2's names ('__builtin__', 'commands'): read them as Python 3
        # does, so that a refusal names the function that would have run
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda *args: _rebuild_tensor(*args)
        if module == "torch._utils" and name in ("_rebuild_parameter",
                                                  "_rebuild_parameter_with_state"):
            return lambda data, *rest: _rebuild_parameter(data, *rest)
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return lambda *args: _rebuild_from_type(*args)
        if (module, name) in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter")):
            return _PlainType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise _refuse(module, name)

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"malformed pickle: persistent id {_short(pid)}")
        typename = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if typename == "module":
            raise CheckpointError("refused: the file holds a whole pickled model (its source "
                                  "code is inside); save model.state_dict() instead")
        if typename != "storage":
            raise CheckpointError(f"malformed pickle: persistent id of kind {_short(typename)}")
        want = 6 if self.legacy else 5
        if len(pid) != want:
            raise CheckpointError(f"malformed pickle: a storage id has {len(pid)} fields, "
                                  f"not {want}")
        kind, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(kind, _StorageType):
            raise CheckpointError(f"malformed pickle: storage type {_short(kind)}")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise CheckpointError(f"malformed pickle: storage {_short(key)} of "
                                  f"{_short(numel)} elements")
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = _Storage(key, str(kind), int(numel))
        elif root.kind != kind or root.numel != numel:
            raise CheckpointError(f"malformed pickle: storage '{key}' is declared twice, "
                                  f"differently")
        view = pid[5] if self.legacy else None
        if view is None:
            return root
        if (not isinstance(view, tuple) or len(view) != 3 or not _is_int(view[1])
                or not _is_int(view[2])):
            raise CheckpointError(f"malformed pickle: storage view {_short(view)}")
        _, offset, size = view
        if offset < 0 or size < 0 or offset + size > root.numel:
            raise CheckpointError(f"storage '{key}': a view of {size} elements at {offset} "
                                  f"lies outside its {root.numel} elements")
        return _Storage(key, root.kind, int(size), int(offset))


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _rebuild_tensor(storage, offset, size, stride, *_rest) -> _TensorRef:
    # requires_grad, backward_hooks and metadata (the rest) mean nothing to weights
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, *_rest) -> Any:
    return data


def _rebuild_from_type(func, new_type, args, state=None) -> Any:
    """torch._tensor._rebuild_from_type_v2: a plain Tensor / Parameter only, no Python state."""
    if not isinstance(new_type, _PlainType) or state:
        raise CheckpointError("refused: the pickle rebuilds a tensor subclass or a tensor "
                              "with Python attributes; save plain tensors")
    if not callable(func) or not isinstance(args, tuple):
        raise CheckpointError("malformed pickle: a tensor rebuilt from nothing")
    return func(*args)


# ---- turning records into arrays ------------------------------------------------------------

class _Arrays:
    """Storage key -> the whole storage as a 1-D NumPy array, read once, on first use."""

    def __init__(self, storages: dict[str, _Storage], read: Callable[[_Storage], bytes],
                 big_endian: bool, progress: Progress | None):
        self.storages, self.read = storages, read
        self.big = big_endian
        self.cache: dict[str, np.ndarray] = {}
        self.total = sum(s.numel * np.dtype(STORAGE_DTYPES[s.kind]).itemsize
                         for s in storages.values())
        self.done = 0
        self.progress = progress
        self.users: dict[str, int] = {}  # storage key -> how many tensors read it

    def get(self, s: _Storage) -> np.ndarray:
        arr = self.cache.get(s.key)
        if arr is None:
            root = self.storages[s.key]
            dtype = np.dtype(STORAGE_DTYPES[root.kind]).newbyteorder(">" if self.big else "<")
            raw = self.read(root)
            if len(raw) != root.numel * dtype.itemsize:
                raise CheckpointError(f"storage '{root.key}' holds {len(raw)} bytes, but "
                                      f"{root.numel} {root.kind} elements need "
                                      f"{root.numel * dtype.itemsize}: the file is truncated "
                                      f"or damaged")
            arr = np.frombuffer(raw, dtype)
            if root.kind == "BFloat16Storage":  # the top half of a float32
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            elif self.big and dtype.itemsize > 1:
                arr = arr.astype(dtype.newbyteorder("="))
            self.cache[s.key] = arr
            self.done += len(raw)
            if self.progress is not None:
                self.progress(self.done, self.total)
        return arr[s.offset:s.offset + s.numel]

    def tensor(self, ref: _TensorRef) -> np.ndarray:
        s, offset, size, stride = ref
        if not isinstance(s, _Storage) or s.key not in self.storages:
            raise CheckpointError(f"malformed pickle: a tensor built on {_short(s)}, not on a "
                                  f"storage")
        if isinstance(size, list):
            size = tuple(size)
        if isinstance(stride, list):
            stride = tuple(stride)
        ok = (_is_int(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
              and len(size) == len(stride) and len(size) <= 32
              and all(_is_int(v) for v in size + stride))
        if not ok:
            raise CheckpointError(f"malformed pickle: tensor offset / size / stride "
                                  f"{_short((offset, size, stride))}")
        if offset < 0 or any(v < 0 for v in size + stride):
            raise CheckpointError(f"tensor of size {size}, stride {stride}, offset {offset}: "
                                  f"negative values")
        n = int(np.prod(size, dtype=object)) if size else 1
        if n == 0:
            return np.zeros(size, self.get(s).dtype)
        last = offset + sum((d - 1) * st for d, st in zip(size, stride, strict=True))
        if last >= s.numel or n > s.numel:
            raise CheckpointError(f"tensor of size {tuple(size)}, stride {tuple(stride)} at "
                                  f"offset {offset} reaches element {max(last, n - 1)} of a "
                                  f"storage of {s.numel}: the file is damaged")
        base = self.get(s)
        if stride == _contiguous(size):  # the usual case: a plain slice, no strided copy
            view = base[offset:offset + n].reshape(size)
            # a storage that only this tensor uses is handed over as it is (its buffer is ours,
            # writable); one that several tensors share is copied, so they stay independent
            return view if self.users.get(s.key, 0) == 1 else view.copy()
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(base[offset:], shape=size,
                                               strides=tuple(st * item for st in stride),
                                               writeable=False)
        return np.array(view, order="C")  # a compact copy


def _contiguous(size: tuple) -> tuple:
    """The strides (in elements) of a C-contiguous tensor of `size`."""
    out, step = [], 1
    for d in reversed(size):
        out.append(step)
        step *= max(d, 1)
    return tuple(reversed(out))


def _build(obj: Any, arrays: _Arrays) -> Any:
    """`obj` with its tensors as arrays, after counting which storages each tensor reads."""
    refs: dict[int, _TensorRef] = {}
    _collect(obj, refs, set(), 0)
    for ref in refs.values():
        if isinstance(ref.storage, _Storage):
            arrays.users[ref.storage.key] = arrays.users.get(ref.storage.key, 0) + 1
    return _materialize(obj, arrays, {})


def _collect(obj: Any, refs: dict[int, _TensorRef], seen: set[int], depth: int) -> None:
    if depth > 200 or id(obj) in seen:
        return
    if isinstance(obj, _TensorRef):
        refs[id(obj)] = obj
    elif isinstance(obj, (dict, list, tuple)):
        seen.add(id(obj))
        for v in (obj.values() if isinstance(obj, dict) else obj):
            _collect(v, refs, seen, depth + 1)


def _materialize(obj: Any, arrays: _Arrays, memo: dict[int, Any], depth: int = 0) -> Any:
    """`obj` with every _TensorRef replaced by its array (containers rebuilt; shared and
    self-referencing containers handled through `memo`)."""
    if depth > 200:
        raise CheckpointError("malformed pickle: containers nested more than 200 deep")
    if isinstance(obj, _TensorRef):
        key = id(obj)
        if key not in memo:
            memo[key] = arrays.tensor(obj)
        return memo[key]
    if isinstance(obj, (str, bytes, int, float, bool, complex, type(None), _Storage)):
        return obj
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        memo[key] = out
        for k, v in obj.items():
            out[k] = _materialize(v, arrays, memo, depth + 1)
        return out
    if isinstance(obj, list):
        out_list: list = []
        memo[key] = out_list
        out_list.extend(_materialize(v, arrays, memo, depth + 1) for v in obj)
        return out_list
    if isinstance(obj, tuple):
        return tuple(_materialize(v, arrays, memo, depth + 1) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return obj
    raise CheckpointError(f"malformed pickle: an object of type {type(obj).__name__}")


def _unpickle(unpickler: RestrictedUnpickler, what: str) -> Any:
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{what}: the pickle is nested too deeply") from None
    except MemoryError:
        raise CheckpointError(f"{what}: the pickle asks for more memory than there is") from None
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises almost anything
        raise CheckpointError(f"{what}: the pickle is damaged ({type(exc).__name__}: "
                              f"{_short(str(exc))})") from None


# ---- the two layouts ------------------------------------------------------------------------

def read_torch_file(path: str | Path, progress: Progress | None = None) -> Any:
    """What torch.save wrote to `path`, with tensors as NumPy arrays (their own dtype; bfloat16
    widened to float32). CheckpointError for anything refused, damaged or not a checkpoint.
    `progress(bytes done, bytes in all)` is called as storages are read; an exception it raises
    (a cancel) ends the read."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise CheckpointError(f"{path}: a checkpoint in the tar layout of PyTorch before 0.4; "
                              f"load it with torch and save it again (torch.save)")
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        try:
            return (_read_zip if head[:1] == b"P" else _read_legacy)(path, progress)
        except CheckpointError as exc:  # the unpickler's own errors do not know the file
            if str(exc).startswith(str(path)):
                raise
            raise CheckpointError(f"{path}: {exc}") from None
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither the zip archive torch.save "
                          f"writes nor its older pickle stream)")


def _read_zip(path: Path, progress: Progress | None) -> Any:
    try:
        with zipfile.ZipFile(path) as z:
            infos = {i.filename: i for i in z.infolist()}
            pkl = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pkl:
                if any(n.endswith("graph.json") for n in infos):
                    raise CheckpointError(f"{path}: a CNN Designer project, not a PyTorch "
                                          f"checkpoint; open it as a project")
                raise CheckpointError(f"{path}: a zip archive without data.pkl: not a PyTorch "
                                      f"checkpoint")
            prefix = pkl[0][:-len("data.pkl")]
            if prefix + "constants.pkl" in infos or any(n.startswith(prefix + "code/")
                                                        for n in infos):
                raise CheckpointError(f"{path}: a TorchScript archive (torch.jit.save); with "
                                      f"torch, save its weights as torch.save("
                                      f"torch.jit.load(file).state_dict(), 'weights.pth')")
            order = _zip_text(z, infos.get(prefix + "byteorder"), "little")
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byte order {order!r}")
            info = infos[pkl[0]]
            if info.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(f"{path}: data.pkl declares {info.file_size} bytes; a "
                                      f"state dict's pickle is far smaller: refused")
            unpickler = RestrictedUnpickler(io.BytesIO(z.read(info)))
            obj = _unpickle(unpickler, str(path))

            def read(s: _Storage) -> bytearray:
                member = infos.get(f"{prefix}data/{s.key}")
                if member is None:
                    raise CheckpointError(f"{path}: storage '{s.key}' is missing from the "
                                          f"archive: the file is truncated or damaged")
                want = s.numel * np.dtype(STORAGE_DTYPES[s.kind]).itemsize
                if member.file_size != want:
                    raise CheckpointError(f"{path}: storage '{s.key}' holds {member.file_size} "
                                          f"bytes, but {s.numel} {s.kind} elements need "
                                          f"{want}: the file is truncated or damaged")
                if (member.file_size > RATIO_FLOOR
                        and member.file_size > MAX_RATIO * max(member.compress_size, 1)):
                    raise CheckpointError(f"{path}: refused: storage '{s.key}' would inflate "
                                          f"{member.compress_size} bytes to {member.file_size}")
                buf = bytearray(want)  # writable: a tensor that is its whole storage is a view
                with z.open(member) as f:
                    got = f.readinto(buf)
                    extra = f.read(1)
                if got != want or extra:
                    raise CheckpointError(f"{path}: storage '{s.key}' is damaged")
                return buf

            arrays = _Arrays(unpickler.storages, read, order == "big", progress)
            return _build(obj, arrays)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CheckpointError(f"{path}: the checkpoint archive is damaged or truncated "
                              f"({exc})") from None
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression
        raise CheckpointError(f"{path}: cannot open this archive ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _zip_text(z: zipfile.ZipFile, info: zipfile.ZipInfo | None, default: str) -> str:
    if info is None:
        return default
    if info.file_size > 64:
        raise CheckpointError(f"{z.filename}: {info.filename} is {info.file_size} bytes long")
    return z.read(info).decode("ascii", "replace").strip()


def _read_legacy(path: Path, progress: Progress | None) -> Any:
    what = str(path)
    try:
        with open(path, "rb") as f:
            magic = _unpickle(RestrictedUnpickler(f), what)
            if magic != LEGACY_MAGIC:
                raise CheckpointError(f"{path}: a pickle, but not a PyTorch checkpoint (no "
                                      f"torch magic number); refused")
            version = _unpickle(RestrictedUnpickler(f), what)
            if version != LEGACY_PROTOCOL:
                raise CheckpointError(f"{path}: PyTorch checkpoint protocol {_short(version)} "
                                      f"is not known (expected {LEGACY_PROTOCOL})")
            info = _unpickle(RestrictedUnpickler(f), what)
            little = info.get("little_endian", True) if isinstance(info, dict) else True
            unpickler = RestrictedUnpickler(f, legacy=True)
            obj = _unpickle(unpickler, what)
            keys = _unpickle(RestrictedUnpickler(f), what)
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise CheckpointError(f"{path}: malformed storage list {_short(keys)}")
            data: dict[str, bytearray] = {}
            storages = unpickler.storages
            done, total = 0, sum(s.numel * np.dtype(STORAGE_DTYPES[s.kind]).itemsize
                                 for s in storages.values())
            for key in keys:  # the storages follow the pickle, in this order
                s = storages.get(key)
                if s is None:
                    raise CheckpointError(f"{path}: storage '{key}' is listed but no tensor "
                                          f"uses it")
                head = f.read(8)
                if len(head) != 8:
                    raise CheckpointError(f"{path}: storage '{key}' is missing: the file is "
                                          f"truncated")
                (count,) = struct.unpack("<q" if little else ">q", head)
                if count != s.numel:
                    raise CheckpointError(f"{path}: storage '{key}' holds {count} elements, "
                                          f"the pickle says {s.numel}: the file is damaged")
                size = s.numel * np.dtype(STORAGE_DTYPES[s.kind]).itemsize
                raw = bytearray(size)
                if f.readinto(raw) != size:
                    raise CheckpointError(f"{path}: storage '{key}' is cut short: the file "
                                          f"is truncated")
                data[key] = raw
                done += size
                if progress is not None:
                    progress(done, total)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None

    def read(s: _Storage) -> bytearray:
        if s.key not in data:
            raise CheckpointError(f"{path}: storage '{s.key}' is used but not in the file: "
                                  f"the file is truncated or damaged")
        return data[s.key]

    arrays = _Arrays(storages, read, not little, None)
    return _build(obj, arrays)
