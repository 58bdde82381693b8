"""Atomic file writes: the one helper every save in the app goes through.

    atomic_write_bytes(path, data)
    atomic_write_text(path, text)
    with atomic_path(path) as tmp:        # for writers that want a file name (onnx.save, np.save)
        np.save(tmp, array)
    with atomic_open(path) as f:          # for writers that want a binary file object (zipfile)
        write_zip(f)

The data goes to a temporary file in the target's folder, is flushed and fsynced, gets the mode
the target would have had (an existing file's mode, else 0o666 minus the umask: what `open()`
gives a new file), and is moved onto the target with os.replace. On any failure the temporary
file is removed and the target keeps its previous content. OSError is raised as it comes: the
callers turn it into their own error type.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _target_mode(path: Path) -> int:
    """The permission bits `path` keeps (an existing file's) or gets (0o666 & ~umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    umask = os.umask(0)  # reading the umask means setting it; put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an exception the file
    written there is fsynced, given the target's mode and moved onto `path`. `suffix` lets
    writers that append their own extension (np.save adds ".npy") keep the name they write."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _target_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file open for writing; it replaces `path` atomically when the block ends
    without an exception."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
        f.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (newlines as given); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))
