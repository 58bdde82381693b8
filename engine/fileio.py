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

A process killed midway leaves its temporary file behind. The name says whose it is and which
process wrote it (".model.cnnd.cnnd-partial-4242-k3j9x_2a.tmp"), so the next write of the same
target (or `remove_stale_temps` when a file is opened) removes the ones whose writer is gone or
that are older than STALE_AFTER_S; other files are never touched.

    check_writable(path)                  # before long work: OSError if `path` cannot be written
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_TAG = "cnnd-partial"  # in every temporary file name this module makes
STALE_AFTER_S = 15 * 60  # a temporary file this old is left over, whoever wrote it
_TEMP_REST = re.compile(r"(\d+)-[a-z0-9_]+(\.[A-Za-z0-9_.-]+)?")  # after ".name.TAG-"


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{TEMP_TAG}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: go by age only
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process, alive
        return True
    return True


def remove_stale_temps(path: str | os.PathLike, max_age_s: float = STALE_AFTER_S
                       ) -> list[Path]:
    """Remove the temporary files that writes of `path` left behind (a save killed midway):
    only names this module makes for `path`, and only stale ones: their writing process is gone,
    or they are older than `max_age_s`. Best effort (an unreadable folder removes nothing);
    returns the files removed."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}.{TEMP_TAG}-"
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix):
            continue
        m = _TEMP_REST.fullmatch(name[len(prefix):])
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            pid = int(m.group(1))
            if (pid != os.getpid() and not _pid_alive(pid)) or now - st.st_mtime > max_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except (OSError, ValueError):
            continue
    return removed


def read_head(path: Path, n: int, kind: str, error) -> bytes:
    """The first `n` bytes of the file at `path`; `error` (an exception class) with one line
    for a missing file, a folder, or one that cannot be read. `kind` names what was expected
    ("project file", "weights file")."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {kind}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None


def check_writable(path: str | os.PathLike) -> None:
    """Raise OSError (with the reason) unless a file can be created beside `path` now: a probe
    file is made in its folder and removed at once, before long work whose result would
    otherwise be lost at the end. Also clears stale temporary files of earlier writes."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(path)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".probe", dir=folder)
    os.close(fd)
    os.unlink(name)


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
    remove_stale_temps(path)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=folder)
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
