"""Project files: one zip (.cnnd) with the architecture, the weights and metadata.

A project file, like Keras' .keras, is a zip archive holding

- ``graph.json``   the architecture (engine.graph.Graph.to_json);
- ``weights.npz``  the weights, keys "node_id.name" as in Network.state_dict() (optional;
  stored, not deflated: float32 barely compresses and deflating is slow);
- ``meta.json``    {"format": "cnn-designer-project", "version": 1, "app_version", "created",
  "modified", and when trained "history" and "train_config"}.

Saving is atomic: the zip is written to a temporary file in the same folder, then moved over the
target with os.replace, so a failed save leaves the previous file as it was. Loading treats the
file as hostile: sizes are capped, member names are checked, JSON is parsed as data and arrays
are read with allow_pickle=False; every problem is a ProjectError with a clear message.
A bare architecture .json (Graph.to_json) opens too, as a project without weights.
"""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import EngineError, ProjectError
from .fileio import atomic_open, read_head, remove_stale_temps
from .graph import Graph
from .layers import fmt_shape
from .validate import validate

FORMAT = "cnn-designer-project"
FORMAT_VERSION = 1
SUFFIX = ".cnnd"
GRAPH_MEMBER, WEIGHTS_MEMBER, META_MEMBER = "graph.json", "weights.npz", "meta.json"

# The limits a project file must keep, read by the loader (a hostile file is refused) and the
# saver (which never writes a file the loader would refuse): `size_problem` is their one check.
MAX_TOTAL_BYTES = 1 << 30  # at most 1 GiB inflated from one project file
MAX_JSON_BYTES = 64 << 20  # graph.json / meta.json / a bare architecture .json
MAX_RATIO = 200  # deflate of real data rarely beats ~10:1; bombs reach ~1000:1
RATIO_FLOOR = 1 << 20  # members smaller than 1 MiB may compress as well as they like
MAX_CURVE_POINTS = 10_000  # a per-batch curve saved in the history keeps this many points


def member_limits() -> dict[str, int]:
    """Each member's limit on its inflated size, from the constants above."""
    return {GRAPH_MEMBER: MAX_JSON_BYTES, META_MEMBER: MAX_JSON_BYTES,
            WEIGHTS_MEMBER: MAX_TOTAL_BYTES}


def size_problem(sizes: dict[str, int]) -> str | None:
    """Why a project whose members have these inflated sizes (name -> bytes) is refused, or
    None: each member within its limit (member_limits), all together within MAX_TOTAL_BYTES."""
    limits = member_limits()
    for name, size in sizes.items():
        cap = limits.get(name)
        if cap is not None and size > cap:
            return (f"{name} declares {size} bytes ({size / 1e6:,.1f} MB), more than the "
                    f"{cap / (1 << 20):g} MiB allowed")
    total = sum(sizes.values())
    if total > MAX_TOTAL_BYTES:
        return (f"the archive would inflate to {total / 1e9:,.2f} GB, more than "
                f"{MAX_TOTAL_BYTES >> 30} GiB")
    return None


def bound_history(history: Any) -> Any:
    """The training history as it is saved: per-batch curves (any list in it other than
    "epochs") thinned to MAX_CURVE_POINTS evenly spaced points, first and last kept; the
    per-epoch records whole. A long run's history then stays small (a list thinned says so
    under "thinned": {name: points it had})."""
    if not isinstance(history, dict):
        return history
    out = dict(history)
    for key, value in history.items():
        if key != "epochs" and isinstance(value, list) and len(value) > MAX_CURVE_POINTS:
            out[key] = _thin(value, MAX_CURVE_POINTS)
            out.setdefault("thinned", {})[key] = len(value)
    return out


def _thin(items: list, n: int) -> list:
    """n items of `items`, evenly spaced, the first and the last among them."""
    if len(items) <= n:
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(np.int64))
    return [items[i] for i in idx]


@dataclass
class Project:
    graph: Graph
    weights: dict[str, np.ndarray] | None = None  # "node_id.name" -> float32 array
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)  # weights dropped when strict=False

    @property
    def history(self) -> dict | None:
        hist = self.meta.get("history")
        return hist if isinstance(hist, dict) else None  # a hand-edited file may hold anything


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# ---- saving -------------------------------------------------------------------------------

def save_project(path: str | Path, graph: Graph, weights: dict[str, np.ndarray] | None = None,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write graph (+ weights, + meta) to the zip project file `path` atomically.

    `meta` may carry "created", "history" (History.to_json()), "train_config" and any other
    JSON-friendly entries; "format", "version", "app_version" and "modified" are set here.
    """
    path = Path(path)
    meta = dict(meta or {})
    stamp = now_iso()
    meta.update(format=FORMAT, version=FORMAT_VERSION, app_version=__version__, modified=stamp)
    meta.setdefault("created", stamp)
    if "history" in meta:
        meta["history"] = bound_history(meta["history"])
    meta_bytes = _meta_bytes(meta)
    graph_bytes = json.dumps(graph.to_json(), indent=1, ensure_ascii=False).encode("utf-8")
    arrays = None
    if weights is not None:
        arrays = {str(k): np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    sizes = {META_MEMBER: len(meta_bytes), GRAPH_MEMBER: len(graph_bytes)}
    if arrays is not None:  # the .npz's size, rounded up: headers are at most a few hundred bytes
        sizes[WEIGHTS_MEMBER] = sum(a.nbytes + 512 + 3 * len(k) for k, a in arrays.items())
    problem = size_problem(sizes)
    if problem:
        raise ProjectError(f"cannot save {path}: {problem}; the app could not open it again")

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in ((META_MEMBER, meta_bytes), (GRAPH_MEMBER, graph_bytes)):
                z.writestr(name, data, compress_type=_json_compression(data))
            if arrays is not None:
                # stored, not deflated: float32 weights shrink by a few percent at best, and
                # deflating them took ~20 s for VGG-11's 500 MB (files saved deflated still load);
                # the .npz is written straight into the member, not built in memory first
                info = zipfile.ZipInfo(WEIGHTS_MEMBER, time.localtime()[:6])
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o600 << 16  # as writestr gives the other members
                with z.open(info, "w", force_zip64=True) as member:
                    np.savez(member, **arrays)

    atomic_write(path, write)
    return path


def _meta_bytes(meta: dict) -> bytes:
    """meta.json's text, within its limit (member_limits): a history whose per-epoch records alone pass
    it (hundreds of thousands of epochs) keeps evenly spaced epochs, the last one among them,
    and says so under its "thinned"."""
    def dump() -> bytes:
        try:
            return json.dumps(meta, indent=1, ensure_ascii=False,
                              default=_json_default).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ProjectError(f"the project's metadata cannot be saved as JSON: {exc}") \
                from None

    data = dump()
    hist = meta.get("history")
    if not isinstance(hist, dict) or not isinstance(hist.get("epochs"), list):
        return data
    n = len(hist["epochs"])
    cap = member_limits()[META_MEMBER]
    while len(data) > cap and len(hist["epochs"]) > 2:
        epochs = hist["epochs"]
        keep = max(2, min(len(epochs) - 1, int(len(epochs) * 0.9 * cap / len(data))))
        hist = meta["history"] = dict(hist, epochs=_thin(epochs, keep),
                                      thinned={**hist.get("thinned", {}), "epochs": n})
        data = dump()
    return data


def _json_compression(data: bytes) -> int:
    """Deflate, unless the loader would take the ratio for a zip bomb (a large member that
    deflates beyond MAX_RATIO:1): such a member is stored."""
    if len(data) > RATIO_FLOOR and len(data) > MAX_RATIO * len(zlib.compress(data, 9)):
        return zipfile.ZIP_STORED
    return zipfile.ZIP_DEFLATED


def save_architecture(path: str | Path, graph: Graph) -> Path:
    """Write only the architecture as JSON (the bare form load_project also opens), atomically."""
    path = Path(path)
    text = json.dumps(graph.to_json(), indent=1, ensure_ascii=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def atomic_write(path: Path, write) -> None:
    """Call write(binary_file) on a temp file beside `path`, then os.replace it onto `path`
    (engine.fileio). On any failure the temp file is removed and `path` keeps its old content."""
    try:
        with atomic_open(path) as f:
            write(f)
    except OSError as exc:
        raise ProjectError(f"cannot write {path}: {exc.strerror or exc}; the previous "
                           f"file, if any, is unchanged") from None


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


# ---- loading ------------------------------------------------------------------------------

def load_project(path: str | Path, strict: bool = True) -> Project:
    """Open a project zip or a bare architecture .json.

    strict: weights that do not fit the graph are a ProjectError; with strict=False they are
    dropped and each drop is listed in Project.warnings.
    """
    path = Path(path)
    remove_stale_temps(path)  # what saves of this file killed midway left behind
    head = read_head(path, 4, "project file", ProjectError)
    if head.startswith(b"PK"):
        return _load_zip(path, strict)
    return _load_bare_json(path)


def _load_bare_json(path: Path) -> Project:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise ProjectError(f"{path}: larger than {MAX_JSON_BYTES >> 20} MiB; not an "
                           f"architecture file")
    data = _parse_json(raw, path.name, f"{path}: neither a CNN Designer project (zip) nor an "
                       f"architecture JSON file")
    return Project(_graph_from(data, path, path.name), None, {}, path)


def _parse_json(raw: bytes, what: str, not_json: str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ProjectError(f"{not_json} ({what} is not UTF-8 text)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{not_json} ({what}: invalid JSON at line {exc.lineno}, "
                           f"column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise ProjectError(f"{not_json} ({what} is nested too deeply)") from None


def _graph_from(data: Any, path: Path, member: str) -> Graph:
    try:
        return Graph.from_json(data)
    except EngineError as exc:
        raise ProjectError(f"{path}: {member} is not a valid architecture: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ProjectError(f"{path}: {member} is malformed ({exc})") from None


def _load_zip(path: Path, strict: bool) -> Project:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            _check_members(path, infos)
            names = {i.filename: i for i in infos}
            problem = size_problem({i.filename: i.file_size for i in infos})
            if problem:
                raise ProjectError(f"{path}: refused: {problem}")
            if GRAPH_MEMBER not in names:
                raise ProjectError(f"{path}: not a CNN Designer project (no {GRAPH_MEMBER} "
                                   f"inside; members: {', '.join(sorted(names)) or 'none'})")
            meta: dict = {}
            if META_MEMBER in names:
                meta = _parse_json(_read_member(z, names[META_MEMBER], path,
                                                member_limits()[META_MEMBER]),
                                   META_MEMBER, f"{path}: the project's metadata is damaged")
                _check_meta(path, meta)
            data = _parse_json(_read_member(z, names[GRAPH_MEMBER], path,
                                            member_limits()[GRAPH_MEMBER]),
                               GRAPH_MEMBER, f"{path}: the project's architecture is damaged")
            graph = _graph_from(data, path, GRAPH_MEMBER)
            weights = None
            if WEIGHTS_MEMBER in names:
                raw = _read_member(z, names[WEIGHTS_MEMBER], path, MAX_TOTAL_BYTES)
                weights = _read_npz(raw, path)
    except ProjectError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ProjectError(f"{path}: the project file is damaged or truncated ({exc})") from None
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression
        raise ProjectError(f"{path}: cannot open this zip ({exc})") from None
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    project = Project(graph, weights, meta, path)
    if weights is not None:
        problems = check_weights(graph, weights)
        if problems and strict:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise ProjectError(f"{path}: the weights do not match the architecture:\n{lines}")
        if problems:
            project.warnings = problems
            project.weights = _drop_mismatched(graph, weights) or None
    return project


def _check_members(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse path tricks, duplicate names and declared sizes that would inflate too much."""
    seen: set[str] = set()
    total = 0
    for i in infos:
        name = i.filename
        parts = name.replace("\\", "/").split("/")
        if (name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")
                or "\x00" in name):
            raise ProjectError(f"{path}: refused: the archive holds a member with an unsafe "
                               f"path ({name!r})")
        if name in seen:
            raise ProjectError(f"{path}: refused: the archive holds {name!r} twice")
        seen.add(name)
        total += i.file_size
        if total > MAX_TOTAL_BYTES:
            raise ProjectError(f"{path}: refused: the archive would inflate to more than "
                               f"{MAX_TOTAL_BYTES >> 30} GiB")
        if i.file_size > RATIO_FLOOR and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise ProjectError(f"{path}: refused: {name!r} would inflate {i.compress_size} bytes "
                               f"to {i.file_size} (a ratio above {MAX_RATIO}:1, a zip bomb?)")


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, cap: int) -> bytes:
    """Read at most min(declared size, cap) bytes; more than declared is refused."""
    if info.file_size > cap:
        raise ProjectError(f"{path}: refused: {info.filename} declares {info.file_size} bytes, "
                           f"more than the {cap >> 20} MiB allowed")
    with z.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ProjectError(f"{path}: {info.filename} holds {len(data)} bytes but declares "
                           f"{info.file_size}; the file is damaged")
    return data


def _read_npz(raw: bytes, path: Path) -> dict[str, np.ndarray]:
    """Arrays of an .npz held in memory: checked like the outer zip, no pickles, numbers only."""
    where = f"{path}: {WEIGHTS_MEMBER}"
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            infos = z.infolist()
            _check_members(Path(where), infos)
            out: dict[str, np.ndarray] = {}
            budget = MAX_TOTAL_BYTES
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise ProjectError(f"{where}: unexpected member {info.filename!r}")
                if info.file_size > budget:
                    raise ProjectError(f"{where}: refused: the arrays exceed "
                                       f"{MAX_TOTAL_BYTES >> 20} MiB")
                budget -= info.file_size
                try:
                    if info.compress_type == zipfile.ZIP_STORED:  # what np.savez writes
                        arr = _stored_array(raw, info)
                    else:
                        data = _read_member(z, info, Path(where), info.file_size)
                        arr = np.load(io.BytesIO(data), allow_pickle=False)
                except ValueError as exc:
                    raise ProjectError(f"{where}: refused array {info.filename[:-4]!r}: {exc}") \
                        from None
                if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
                    raise ProjectError(f"{where}: array {info.filename[:-4]!r} has dtype "
                                       f"{getattr(arr, 'dtype', type(arr).__name__)}; weights "
                                       f"must be numbers")
                # float32, C-ordered, aligned and writable: a copy only where it is not yet
                out[info.filename[:-4]] = np.require(arr, np.float32, ("C", "A", "W"))
            return out
    except ProjectError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
            NotImplementedError) as exc:
        raise ProjectError(f"{where} is damaged ({exc})") from None


def _stored_array(raw: bytes, info: zipfile.ZipInfo) -> np.ndarray:
    """The array of a stored (uncompressed) .npy member of the .npz held in `raw`, read in place
    rather than through zipfile and np.load, which copy it three times in small chunks (VGG-11's
    project loaded in 3.6 s, ~1.5 s of it that). Only the header is parsed by NumPy (no pickles:
    a dtype with objects is refused); the values are the member's bytes, whose integrity the
    outer member's CRC, checked when `raw` was read, vouches for. Returns an array of the
    file's dtype that may be read-only (the caller converts it to float32, copying)."""
    fmt = np.lib.format
    start = info.header_offset
    if raw[start:start + 4] != b"PK\x03\x04":
        raise ValueError("its local header is damaged")
    start += 30 + int.from_bytes(raw[start + 26:start + 28], "little") \
        + int.from_bytes(raw[start + 28:start + 30], "little")
    if start + info.file_size > len(raw):
        raise ValueError("it is truncated")
    head = io.BytesIO(raw[start:start + min(info.file_size, 16 + 10000)])  # np.load's limit
    version = fmt.read_magic(head)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(head)
    if dtype.hasobject:
        raise ValueError("object arrays (Python pickles) are not loaded")
    count = math.prod(shape)
    if head.tell() + count * dtype.itemsize > info.file_size:
        raise ValueError(f"its {'×'.join(map(str, shape))} values do not fit its "
                         f"{info.file_size} bytes")
    arr = np.frombuffer(raw, dtype, count, start + head.tell())
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def _check_meta(path: Path, meta: Any) -> None:
    if not isinstance(meta, dict):
        raise ProjectError(f"{path}: {META_MEMBER} must be a JSON object")
    fmt = meta.get("format", FORMAT)
    if fmt != FORMAT:
        raise ProjectError(f"{path}: not a CNN Designer project (format {fmt!r})")
    version = meta.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProjectError(f"{path}: the project format version {version!r} is not valid")
    if version > FORMAT_VERSION:
        raise ProjectError(f"{path}: project format version {version} was written by a newer "
                           f"CNN Designer (app {meta.get('app_version', '?')}); this app reads "
                           f"version {FORMAT_VERSION}. Update CNN Designer to open it.")


# ---- weights against the graph ------------------------------------------------------------

def expected_weight_shapes(graph: Graph, v=None) -> dict[str, tuple[int, ...] | None]:
    """"node_id.name" -> shape for every weight the graph's layers have (None where the shape
    is unknown because the graph is invalid there). `v`: its validation, if at hand."""
    v = v or validate(graph)
    out: dict[str, tuple[int, ...] | None] = {}
    for nid, res in v.nodes.items():
        if res.layer is None or res.out_shape is None:
            continue
        for name, (shape, _) in res.layer.weight_shapes(res.in_shapes).items():
            out[f"{nid}.{name}"] = tuple(shape)
    return out


def check_weights(graph: Graph, weights: dict[str, np.ndarray]) -> list[str]:
    """Every mismatch between `weights` and the graph, naming the layer and the shapes. Layers
    whose shapes are unknown because the graph is invalid there (a parameter out of range, a
    missing input) are not judged: the graph's own error says what is wrong, not a list of
    every weight after it."""
    v = validate(graph)
    expected = expected_weight_shapes(graph, v)
    unknown = {nid for nid, res in v.nodes.items() if res.out_shape is None}
    problems = []
    for key, arr in weights.items():
        nid, _, name = key.rpartition(".")
        if nid in unknown:
            continue
        if key not in expected:
            if nid in graph.nodes:
                node = graph.nodes[nid]
                problems.append(f"layer '{node.name}' ({node.type_name}) has no weight "
                                f"'{name}', but the file holds one of shape "
                                f"{fmt_shape(arr.shape)}")
            else:
                problems.append(f"the weights hold '{key}' ({fmt_shape(arr.shape)}) for a layer "
                                f"'{nid}' the architecture does not have")
            continue
        want = expected[key]
        if tuple(arr.shape) != want:
            node = graph.nodes[nid]
            problems.append(f"layer '{node.name}': '{name}' is {fmt_shape(arr.shape)} in the "
                            f"weights but the layer needs {fmt_shape(want)}")
        elif not np.isfinite(arr).all():
            problems.append(f"layer '{graph.nodes[nid].name}': '{name}' holds NaN or infinite "
                            f"values")
    for key in expected:
        if key not in weights:
            nid, _, name = key.rpartition(".")
            problems.append(f"layer '{graph.nodes[nid].name}' has no '{name}' in the weights "
                            f"(expected {fmt_shape(expected[key])})")
    return problems


def _drop_mismatched(graph: Graph, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    expected = expected_weight_shapes(graph)
    return {k: v for k, v in weights.items()
            if k in expected and tuple(v.shape) == expected[k] and np.isfinite(v).all()}
