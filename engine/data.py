"""Datasets: the embedded MNIST, IDX files (plain or .gz), image folders and .npz files.

Images come out as float32 NCHW in [0, 1]; labels as int64.
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


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), plain or gzip-compressed."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataError(f"{path}: larger than {MAX_IDX_BYTES >> 30} GiB uncompressed; refused")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: IDX header is truncated")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(IDX_TYPES[raw[2]])
    need = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != need:
        raise DataError(f"{path}: IDX header promises {'×'.join(map(str, dims))} values "
                        f"({need} bytes) but the file holds {len(body)} bytes")
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
    images = read_idx(MNIST_DIR / img_file)
    labels = read_idx(MNIST_DIR / lbl_file)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return Dataset(x, labels.astype(np.int64), [str(i) for i in range(10)], f"MNIST {split}")
