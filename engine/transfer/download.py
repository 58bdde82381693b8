"""Downloading published weight files into the cache: resume, SHA-256 check, no half files.

    path = fetch(find_weights("resnet18"), progress=bar, should_stop=flag)  # the cached file
    cached_file(w)                                    # where it is (or would be) kept

The cache is the platform's (platformdirs.user_cache_dir("cnn-designer"), e.g.
~/.cache/cnn-designer on Linux) or the folder named by CNN_DESIGNER_CACHE; weight files go to
its `pretrained/` folder under their published names. CNN_DESIGNER_WEIGHTS_URL replaces the
download address's base (a mirror, or the tests' local server).

A download goes to NAME.part and becomes NAME (os.replace, atomic) only once its SHA-256
starts with the prefix in the file name; a mismatch deletes the .part and says so. An existing
NAME.part is resumed with an HTTP Range request (a server that ignores Range sends the whole file,
which then replaces it); a connection that drops midway is resumed a few times before giving up,
keeping the .part for the next try. Cancel (should_stop) keeps the .part too. When the server
cannot be reached, the error gives the URL and the folder to put the file in by hand; a file put
there is checked like a downloaded one before use. urllib (standard library) does the HTTP: one
GET with a Range header needs nothing more.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import EngineError
from ..zoo.pretrained import BASE_URL, PretrainedWeights

CACHE_ENV = "CNN_DESIGNER_CACHE"
URL_ENV = "CNN_DESIGNER_WEIGHTS_URL"
CHUNK = 1 << 20
RETRIES = 3  # resumptions after a dropped connection within one fetch
TIMEOUT_S = 30.0

# progress(stage, done, total): stage "download" (bytes; total 0 when unknown) or "check"
ProgressFn = Callable[[str, int, int], None]


class DownloadError(EngineError):
    """A weight file could not be downloaded or failed its check (the message says what to do)."""


class DownloadCancelled(Exception):
    """should_stop() turned true; the partial file is kept for resuming."""


def cache_dir() -> Path:
    """The folder weight files are cached in (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("cnn-designer", appauthor=False)
    return Path(root) / "pretrained"


def cached_file(w: PretrainedWeights) -> Path:
    return cache_dir() / w.file_name


def is_cached(w: PretrainedWeights) -> bool:
    """A file of that name is in the cache (its hash is checked when it is used)."""
    return cached_file(w).is_file()


def download_url(w: PretrainedWeights) -> str:
    base = os.environ.get(URL_ENV) or BASE_URL
    return base.rstrip("/") + "/" + w.file_name


def sha256_of(path: Path, progress: ProgressFn | None = None,
              should_stop: Callable[[], bool] | None = None) -> str:
    h = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            done += len(block)
            if should_stop is not None and should_stop():
                raise DownloadCancelled
            if progress is not None:
                progress("check", done, total)
    return h.hexdigest()


def fetch(w: PretrainedWeights, progress: ProgressFn | None = None,
          should_stop: Callable[[], bool] | None = None, timeout: float = TIMEOUT_S) -> Path:
    """The verified cached file of `w`, downloading (or resuming) it first when needed.
    DownloadError when it cannot be had or fails its check; DownloadCancelled on should_stop."""
    dest = cached_file(w)
    if dest.is_file():
        _verify(w, dest, progress, should_stop, "the cached file")
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the cache folder {dest.parent} "
                            f"({exc.strerror or exc}); set {CACHE_ENV} to another folder") from None
    part = dest.with_name(dest.name + ".part")
    url = download_url(w)
    for attempt in range(RETRIES + 1):
        try:
            _download(url, part, progress, should_stop, timeout)
            break
        except (http.client.IncompleteRead, ConnectionError, TimeoutError, _Short) as exc:
            if attempt == RETRIES:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"the download of {url} broke off ({_reason(exc)}) after {RETRIES + 1} "
                    f"tries; {have / 1e6:,.1f} MB are kept in {part} and the next try resumes "
                    f"from there") from None
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason}; "
                                f"{_by_hand(w, url)}") from None
        except urllib.error.URLError as exc:
            host = urllib.parse.urlsplit(url).netloc or url
            raise DownloadError(f"cannot reach {host} ({_reason(exc.reason)}): offline? "
                                f"{_by_hand(w, url)}") from None
        except OSError as exc:
            raise DownloadError(f"cannot write {part} ({exc.strerror or exc})") from None
    _verify(w, part, progress, should_stop, "the download")
    os.replace(part, dest)
    return dest


class _Short(Exception):
    """The server closed the connection before the announced length."""


def _download(url: str, part: Path, progress: ProgressFn | None,
              should_stop: Callable[[], bool] | None, timeout: float) -> None:
    """Append the rest of `url` to `part` (the whole file when the server ignores Range)."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "cnn-designer"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is whole (or wrong)
            return
        raise
    with resp:
        if have and resp.status != 206:  # Range ignored: the whole file comes again
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else 0
        done = have
        with open(part, "ab" if have else "wb") as f:
            while True:
                if should_stop is not None and should_stop():
                    raise DownloadCancelled
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                done += len(block)
                if progress is not None:
                    progress("download", done, total)
    if total and done < total:
        raise _Short(f"{done:,} of {total:,} bytes")


def _verify(w: PretrainedWeights, path: Path, progress, should_stop, what: str) -> None:
    digest = sha256_of(path, progress, should_stop)
    if not digest.startswith(w.hash_prefix):
        path.unlink(missing_ok=True)
        raise DownloadError(f"{what} {path.name} is damaged or not the published file: its "
                            f"SHA-256 starts with {digest[:len(w.hash_prefix)]}, the name says "
                            f"{w.hash_prefix}; it was deleted, try again")


def _by_hand(w: PretrainedWeights, url: str) -> str:
    return (f"download {url} another way (a browser, another machine) and put it in "
            f"{cache_dir()} as {w.file_name}, then try again")


def _reason(reason) -> str:
    if isinstance(reason, BaseException):
        return str(reason) or type(reason).__name__
    return str(reason)


__all__ = ["CACHE_ENV", "URL_ENV", "DownloadCancelled", "DownloadError", "cache_dir",
           "cached_file", "download_url", "fetch", "is_cached", "sha256_of"]
