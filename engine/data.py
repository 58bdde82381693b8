"""Datasets: the embedded MNIST, IDX files (plain or .gz), image folders and .npz files.

Images come out as float32 NCHW in [0, 1] (image folders: as the model's input spec says);
labels as int64.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
MNIST_DIR = RESOURCES / "mnist"
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IDX_BYTES = 2 << 30  # refuse to inflate more than 2 GiB from one file


@dataclass
class Dataset:
    """Images x (N, C, H, W) float32 in [0, 1], labels y (N,) int64, optional class names."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.y.max()) + 1 if len(self.y) else 0


def read_idx(path: str | Path, limit: int | None = None) -> np.ndarray:
    """Read an IDX file (MNIST's format), plain or gzip-compressed: (d0, d1, ...) array.

    limit: read only the first `limit` entries along the first axis (the rest of the file is
    neither read nor checked)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_TYPES:
                raise DataError(f"{path}: not an IDX file (wrong magic number "
                                f"{magic.hex(' ') or 'none'}; IDX files start with "
                                f"00 00 <type> <dims>)")
            ndim = magic[3]
            raw_dims = f.read(4 * ndim)
            if ndim < 1 or len(raw_dims) < 4 * ndim:
                raise DataError(f"{path}: IDX header is truncated")
            dims = [int.from_bytes(raw_dims[4 * i:4 * i + 4], "big") for i in range(ndim)]
            dtype = np.dtype(IDX_TYPES[magic[2]])
            full = int(np.prod(dims)) * dtype.itemsize
            if limit is not None and limit < dims[0]:
                dims[0] = max(int(limit), 0)
            need = int(np.prod(dims)) * dtype.itemsize
            if need > MAX_IDX_BYTES:
                raise DataError(f"{path}: larger than {MAX_IDX_BYTES >> 30} GiB uncompressed; "
                                f"refused")
            body = f.read(need + (1 if need == full else 0))  # one more byte finds trailing junk
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read it; truncated or damaged? ({exc})") from None
    if len(body) != need:
        raise DataError(f"{path}: IDX header promises {'×'.join(map(str, dims))} values "
                        f"({need} bytes) but the file holds {len(body)} bytes"
                        f"{' (truncated)' if len(body) < need else ''}")
    return np.frombuffer(body, dtype).reshape(dims)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def load_mnist(split: str = "train", limit: int | None = None, verify: bool = False) -> Dataset:
    """The embedded MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges; CC BY-SA 3.0):
    60,000 training and 10,000 test digits, 1×28×28."""
    if split not in ("train", "test"):
        raise DataError(f"MNIST split must be 'train' or 'test', got {split!r}")
    img_file, img_md5 = MNIST_FILES[f"{split}_images"]
    lbl_file, lbl_md5 = MNIST_FILES[f"{split}_labels"]
    if verify:
        for f, h in ((img_file, img_md5), (lbl_file, lbl_md5)):
            if md5(MNIST_DIR / f) != h:
                raise DataError(f"{MNIST_DIR / f}: checksum mismatch; the file is damaged")
    images = read_idx(MNIST_DIR / img_file, limit)
    labels = read_idx(MNIST_DIR / lbl_file, limit)
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return Dataset(x, labels.astype(np.int64), [str(i) for i in range(10)], f"MNIST {split}")


# ---- user data ----------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
IDX_PAIRS = (("train", ("train-images", "train-labels")),
             ("test", ("t10k-images", "t10k-labels")),
             ("test", ("test-images", "test-labels")))


@dataclass
class DataBundle:
    """What `load_dataset` returns: the training data and, where the source has one, a test set."""

    train: Dataset
    test: Dataset | None = None

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        n = self.train.num_classes
        return max(n, self.test.num_classes) if self.test is not None and not self.classes else n


def to_unit_float(x: np.ndarray, where: str) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 / 255; floats already in [0, 1] kept; floats or ints in
    [0, 255] divided by 255; any other range scaled min..max -> 0..1."""
    if x.dtype.kind not in "fiu" or x.dtype.kind == "b":
        raise DataError(f"{where}: images must be numbers, got dtype {x.dtype}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    xf = x.astype(np.float32)
    if not np.isfinite(xf).all():
        raise DataError(f"{where}: the images hold NaN or infinite values")
    if xf.size == 0:
        return xf
    lo, hi = float(xf.min()), float(xf.max())
    if lo >= 0 and hi <= 1 and x.dtype.kind == "f":
        return xf
    if lo >= 0 and hi <= 255:
        return xf / np.float32(255)
    return (xf - np.float32(lo)) / np.float32(max(hi - lo, 1e-12))


def to_labels(y: np.ndarray, n: int, where: str, n_classes: int | None = None) -> np.ndarray:
    """(N,) int64 labels from integer (or whole float) labels or one-hot rows; checks range."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot rows
        if y.dtype.kind not in "fiub" or not np.all((y == 0) | (y == 1)) or \
                not np.all(y.sum(axis=1) == 1):
            raise DataError(f"{where}: 2-D labels must be one-hot rows (a single 1 per row)")
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a vector of N class numbers, got shape "
                        f"{'×'.join(map(str, y.shape))}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{where}: labels must be whole class numbers (0, 1, 2, …)")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be class numbers, got dtype {y.dtype}")
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} images; the counts must match")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: label {int(y.min())} is out of range; labels must be 0 or "
                        f"more")
    if n_classes is not None and len(y) and y.max() >= n_classes:
        raise DataError(f"{where}: label {int(y.max())} is out of range for {n_classes} classes "
                        f"(0…{n_classes - 1})")
    return y


def as_nchw(x: np.ndarray, where: str, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """N×H×W, N×C×H×W or N×H×W×C -> N×C×H×W (C in 1, 3, 4 decides the layout when the
    network's input shape does not)."""
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim != 4:
        raise DataError(f"{where}: images must be N×H×W, N×C×H×W or N×H×W×C, got shape "
                        f"{'×'.join(map(str, x.shape))}")
    if input_shape is not None and len(input_shape) == 3:
        c, h, w = input_shape
        if x.shape[1:] == (c, h, w):
            return x
        if x.shape[1:] == (h, w, c):
            return x.transpose(0, 3, 1, 2)
    if x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.transpose(0, 3, 1, 2)
    return x


def load_idx_pair(images: str | Path, labels: str | Path, name: str = "") -> Dataset:
    """An IDX images file (N×H×W or N×C×H×W) with its IDX labels file (N,)."""
    images, labels = Path(images), Path(labels)
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim not in (3, 4):
        raise DataError(f"{images}: an IDX images file holds N×H×W (or N×C×H×W) values; this "
                        f"one holds {'×'.join(map(str, x.shape))}")
    if y.ndim != 1:
        raise DataError(f"{labels}: an IDX labels file holds N values; this one holds "
                        f"{'×'.join(map(str, y.shape))}")
    if len(x) == 0:
        raise DataError(f"{images}: the file holds no images")
    if len(y) != len(x):
        raise DataError(f"{labels}: {len(y)} labels but {images.name} holds {len(x)} images; "
                        f"the counts must match")
    yy = to_labels(y, len(x), str(labels))
    xx = to_unit_float(as_nchw(x, str(images)), str(images))
    n_cls = int(yy.max()) + 1
    return Dataset(xx, yy, [str(i) for i in range(n_cls)], name or images.name)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for f in sorted(folder.iterdir()):
        low = f.name.lower()
        if f.is_file() and (low.startswith((stem + "-", stem + ".")) or low == stem):
            return f
    return None


def load_idx_folder(folder: str | Path) -> DataBundle:
    """A folder with MNIST-style pairs: train-images*/train-labels* and optionally
    t10k-images*/t10k-labels* (or test-images*/test-labels*), plain or .gz."""
    folder = Path(folder)
    found: dict[str, Dataset] = {}
    for split, (img_stem, lbl_stem) in IDX_PAIRS:
        if split in found:
            continue
        img, lbl = _find_idx(folder, img_stem), _find_idx(folder, lbl_stem)
        if img is None and lbl is None:
            continue
        if img is None or lbl is None:
            have, miss = (img or lbl), (lbl_stem if img else img_stem)
            raise DataError(f"{folder}: {have.name} has no partner file {miss}-…")
        found[split] = load_idx_pair(img, lbl, f"{folder.name} {split}")
    if "train" not in found:
        raise DataError(f"{folder}: no train-images / train-labels IDX files here")
    train, test = found["train"], found.get("test")
    if test is not None and test.x.shape[1:] != train.x.shape[1:]:
        raise DataError(f"{folder}: the test images are {'×'.join(map(str, test.x.shape[1:]))} "
                        f"but the training images {'×'.join(map(str, train.x.shape[1:]))}")
    if test is not None:
        n = max(train.num_classes, test.num_classes)
        train.classes = test.classes = [str(i) for i in range(n)]
    return DataBundle(train, test)


def load_npz(path: str | Path, input_shape: tuple[int, ...] | None = None) -> DataBundle:
    """An .npz with arrays x (N×H×W, N×C×H×W or N×H×W×C; uint8 or float) and y (N,), and
    optionally x_test / y_test and classes (names). Loaded with allow_pickle=False."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if magic == b"\x93NUMPY":
        raise DataError(f"{path}: holds a single array (.npy); an .npz with arrays 'x' and 'y' is "
                        f"needed: np.savez(path, x=images, y=labels)")
    if not magic.startswith(b"PK"):
        raise DataError(f"{path}: not an .npz file (it does not start like a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except ValueError as exc:
        msg = str(exc)
        if "pickle" in msg.lower():
            msg = "it holds Python objects (object arrays need pickle), refused for safety"
        raise DataError(f"{path}: cannot load it: {msg}") from None
    except (OSError, EOFError, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npz file; truncated or damaged? ({exc})") \
            from None
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile and friends from np.load
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") \
            from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{path}: no array {' or '.join(repr(m) for m in missing)}; the file "
                        f"holds {', '.join(sorted(arrays)) or 'no arrays'}. Save it with "
                        f"np.savez(path, x=images, y=labels)")
    classes: list[str] = []
    if "classes" in arrays:
        c = arrays["classes"]
        if c.dtype.kind not in "US" or c.ndim != 1:
            raise DataError(f"{path}: 'classes' must be a list of names")
        classes = [str(v) for v in c.tolist()]

    def part(xk: str, yk: str) -> Dataset:
        x, y = arrays[xk], arrays[yk]
        where = f"{path} ({xk}, {yk})"
        if x.ndim == 0 or len(x) == 0:
            raise DataError(f"{where}: no images (array {xk!r} is empty)")
        xx = to_unit_float(as_nchw(x, where, input_shape), where)
        yy = to_labels(y, len(x), where, len(classes) or None)
        names = classes or [str(i) for i in range(int(yy.max()) + 1)]
        return Dataset(xx, yy, names, f"{path.name} {xk}")

    train = part("x", "y")
    test = None
    if "x_test" in arrays or "y_test" in arrays:
        if "x_test" not in arrays or "y_test" not in arrays:
            raise DataError(f"{path}: 'x_test' and 'y_test' go together; one is missing")
        test = part("x_test", "y_test")
        if test.x.shape[1:] != train.x.shape[1:]:
            raise DataError(f"{path}: x_test images are {'×'.join(map(str, test.x.shape[1:]))} "
                            f"but x images {'×'.join(map(str, train.x.shape[1:]))}")
    if not classes:
        n = max(train.num_classes, test.num_classes if test else 0)
        train.classes = [str(i) for i in range(n)]
        if test is not None:
            test.classes = list(train.classes)
    return DataBundle(train, test)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.name)


def load_image_folder(folder: str | Path, input_shape: tuple[int, int, int] = (1, 28, 28),
                      classes: list[str] | None = None, input_spec=None,
                      limit: int | None = None) -> Dataset:
    """A folder with one subfolder per class (the folder names are the class names, sorted),
    each image prepared by `input_spec` (engine.inputspec: resize / crop, channels, range,
    mean / std; default: resized to H×W, 1 channel grey or 3 RGB, 0..1) -> float32 C×H×W.
    `limit`: a stratified sample of that many images (see stratified), only those decoded."""
    from .inputspec import InputSpec, photo_to_array

    folder = Path(folder)
    c, h, w = _image_shape(input_shape)
    spec = input_spec or InputSpec.for_shape((c, h, w))
    if spec.shape != (c, h, w):
        raise DataError(f"{folder}: the input spec makes {'×'.join(map(str, spec.shape))} "
                        f"images but the network's Input is {c}×{h}×{w}")
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    dirs = _class_dirs(folder)
    if not dirs:
        raise DataError(f"{folder}: no class folders; put the images of each class in a "
                        f"subfolder named after the class (e.g. {folder}/cat/1.png)")
    names = classes or [d.name for d in dirs]
    files: list[tuple[Path, int]] = []
    for d in dirs:
        if d.name not in names:
            raise DataError(f"{d}: class {d.name!r} is not one of the training classes "
                            f"({', '.join(names)})")
        imgs = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not imgs:
            raise DataError(f"{d}: class folder {d.name!r} holds no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        files += [(f, names.index(d.name)) for f in imgs]
    if limit is not None:
        files = [files[i] for i in stratified(np.array([lb for _, lb in files]), limit)]
    x = np.empty((len(files), c, h, w), np.float32)
    y = np.empty(len(files), np.int64)
    for i, (f, label) in enumerate(files):
        x[i] = photo_to_array(f, spec)[0]  # DataError names an unreadable file
        y[i] = label
    return Dataset(x, y, list(names), folder.name)


def _image_shape(input_shape) -> tuple[int, int, int]:
    if input_shape is None or len(input_shape) != 3:
        raise DataError(f"image folders need the network's C×H×W input shape, got "
                        f"{input_shape!r}")
    c, h, w = (int(v) for v in input_shape)
    if c not in (1, 3):
        raise DataError(f"images can be loaded as 1 channel (grey) or 3 (RGB), but the "
                        f"network's Input has {c} channels; set the Input's channels to 1 or 3")
    return c, h, w


def load_images(folder: str | Path, input_shape: tuple[int, int, int] = (1, 28, 28),
                input_spec=None, limit: int | None = None) -> DataBundle:
    """An image folder; with train/ and test/ subfolders (each with class folders) both splits
    are read, else the whole folder is training data. input_spec, limit (per split): as
    load_image_folder."""
    folder = Path(folder)
    sub = {d.name.lower(): d for d in _class_dirs(folder)} if folder.is_dir() else {}
    if "train" in sub and ("test" in sub or "val" in sub) and len(sub) <= 3:
        train = load_image_folder(sub["train"], input_shape, input_spec=input_spec, limit=limit)
        test = load_image_folder(sub.get("test") or sub["val"], input_shape, train.classes,
                                 input_spec, limit)
        return DataBundle(train, test)
    return DataBundle(load_image_folder(folder, input_shape, input_spec=input_spec,
                                        limit=limit))


def load_dataset(spec: str | Path, input_shape: tuple[int, ...] | None = None,
                 limit: int | None = None, input_spec=None) -> DataBundle:
    """One entry for every source: "mnist" (embedded), an .npz file, an IDX images file (its
    labels file beside it), a folder of IDX files or a folder of class subfolders of images.

    input_shape (C, H, W) is the network's input: image folders are resized and converted to
    it; .npz layouts use it to tell N×C×H×W from N×H×W×C. `limit` keeps a stratified sample
    of N per split (every class in its share; MNIST's first N, already mixed). input_spec (engine.inputspec.InputSpec, the model's) prepares the images of
    an image folder; the other formats hold prepared arrays and are taken as they are.
    """
    if str(spec).lower() == "mnist":
        bundle = DataBundle(load_mnist("train", limit), load_mnist("test", limit))
        return bundle
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (use 'mnist' for the embedded MNIST)")
    if path.is_dir():
        if any(_find_idx(path, stem) for _, pair in IDX_PAIRS for stem in pair):
            bundle = load_idx_folder(path)
        else:
            return load_images(path, input_shape or (1, 28, 28), input_spec, limit)
    elif path.suffix.lower() == ".npz":
        bundle = load_npz(path, input_shape)
    elif "images" in path.name and ("idx" in path.name or path.suffix in (".gz", ".idx")):
        labels = path.with_name(path.name.replace("images", "labels"))
        if not labels.exists():
            raise DataError(f"{path}: its labels file {labels.name} is not beside it")
        bundle = DataBundle(load_idx_pair(path, labels))
    else:
        raise DataError(f"{path}: unknown data format; use an .npz file (arrays x, y), IDX "
                        f"files (train-images-idx3-ubyte[.gz] …) or a folder of class folders "
                        f"of images")
    if limit is not None:
        bundle = DataBundle(_head(bundle.train, limit),
                            _head(bundle.test, limit) if bundle.test is not None else None)
    return bundle


def _head(ds: Dataset, n: int) -> Dataset:
    keep = stratified(ds.y, n)
    return Dataset(ds.x[keep], ds.y[keep], ds.classes, ds.name)


def stratified(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of n samples with each class in its share of `labels` (files sorted by class
    would otherwise give n of the first class): each class's samples in their order, the
    classes interleaved by relative position, so any prefix is stratified too."""
    labels = np.asarray(labels)
    key = np.empty(len(labels), np.float64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        key[where] = (np.arange(len(where)) + 0.5) / len(where)
    return np.argsort(key, kind="stable")[:max(int(n), 0)]


# ---- does the data fit the network? -------------------------------------------------------

@dataclass(frozen=True)
class Mismatch:
    """One way the data does not fit the network: in words (`text`) and as fields a GUI builds
    its quick fix from without reading the words."""

    text: str  # what does not fit and the fix, in words
    fatal: bool = True  # False: training works, but the result may not be what was meant
    kind: str = ""  # "channels", "size", "classes" or "graph"
    node_id: str | None = None  # the layer to change: the Input, or the last sized layer
    params: dict | None = None  # the parameter values that make the data fit, for a quick fix
    # what the network has and what the data has: "channels" and "size" give the Input's and
    # the images' whole (C, H, W); "classes" the output count and the class count
    expected: tuple[int, ...] | int | None = None
    actual: tuple[int, ...] | int | None = None


def check_data(graph, data: Dataset | DataBundle) -> list[Mismatch]:
    """Compare the data with the network's Input (channels, size) and its class count with the
    last layer's output size. Empty list: the data fits."""
    from .validate import validate  # data.py stays importable without the graph machinery

    ds = data.train if isinstance(data, DataBundle) else data
    n_classes = data.num_classes
    v = validate(graph)
    inp = next((n for n in graph.nodes.values() if n.type_name == "Input"), None)
    out: list[Mismatch] = []
    if inp is None or v.nodes[inp.id].out_shape is None:
        return [Mismatch("the network has no valid Input layer; fix the network first",
                         kind="graph")]
    c, h, w = v.nodes[inp.id].out_shape
    _, dc, dh, dw = ds.x.shape
    if dc != c:
        look = {1: "greyscale", 3: "colour (RGB)"}.get(dc, f"{dc}-channel")
        out.append(Mismatch(f"the data has {dc} channel{'s' * (dc != 1)} ({look}) but Input "
                            f"'{inp.name}' expects {c}: set the Input's channels to {dc}"
                            + (f", or load the images as {'greyscale' if c == 1 else 'RGB'}"
                               if c in (1, 3) and dc in (1, 3) else ""),
                            kind="channels", node_id=inp.id, params={"channels": dc},
                            expected=(c, h, w), actual=(dc, dh, dw)))
    if (dh, dw) != (h, w):
        out.append(Mismatch(f"the images are {dh}×{dw} but Input '{inp.name}' expects {h}×{w}: "
                            f"set the Input's height to {dh} and width to {dw}, or resize the "
                            f"images to {h}×{w}", kind="size", node_id=inp.id,
                            params={"height": dh, "width": dw}, expected=(c, h, w),
                            actual=(dc, dh, dw)))
    if v.output_id is None or v.nodes[v.output_id].out_shape is None:
        out.append(Mismatch("the network has no valid output layer; fix the network first",
                            kind="graph"))
        return out
    n_out = int(np.prod(v.nodes[v.output_id].out_shape))
    last = last_sized_layer(graph, v.output_id)
    param = None
    if last:
        param = "out_features" if graph.nodes[last].type_name == "Linear" else "out_channels"
    where = (f"the last layer '{graph.nodes[last].name}'" if last else
             f"the output '{graph.nodes[v.output_id].name}'")
    if n_classes > n_out:
        if last:
            what = "units (out_features)" if param == "out_features" else "filters (out_channels)"
            fix = f"set {what} of '{graph.nodes[last].name}' to {n_classes}"
        else:
            fix = f"make the network output {n_classes} values"
        out.append(Mismatch(f"the data has {n_classes} classes but {where} outputs {n_out} "
                            f"values: {fix}", kind="classes", node_id=last,
                            params={param: n_classes} if last else None, expected=n_out,
                            actual=n_classes))
    elif n_classes < n_out:
        out.append(Mismatch(f"the data has {n_classes} classes but {where} outputs {n_out} "
                            f"values; training works, but {n_out - n_classes} outputs are never "
                            f"a target (set it to {n_classes} to match)", fatal=False,
                            kind="classes", node_id=last,
                            params={param: n_classes} if last else None, expected=n_out,
                            actual=n_classes))
    return out


def last_sized_layer(graph, output_id: str) -> str | None:
    """Walk back from the output through size-keeping layers to the Linear / Conv2d that sets
    the number of outputs."""
    nid = output_id
    seen = set()
    while nid is not None and nid not in seen:
        seen.add(nid)
        node = graph.nodes[nid]
        if node.type_name in ("Linear", "Conv2d"):
            return nid
        ins = graph.inputs_of(nid)
        nid = ins[0] if len(ins) == 1 else None
    return None
