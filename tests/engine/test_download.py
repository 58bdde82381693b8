"""Downloading pretrained weights from a local server: ok, resumed, damaged, offline, cancelled;
and `pretrained get --out` building a project from the downloaded file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from engine.cli.main import main
from engine.transfer import download
from engine.transfer.download import (
    DownloadCancelled,
    DownloadError,
    cache_dir,
    cached_file,
    fetch,
    is_cached,
)
from engine.zoo import pretrained as catalogue

from .weights_server import WeightsServer, free_port_url, weights_entry

DATA = np.random.default_rng(0).integers(0, 256, 3 * download.CHUNK + 12345,
                                         dtype=np.uint8).tobytes()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "pretrained"


@pytest.fixture
def server(monkeypatch):
    with WeightsServer() as s:
        monkeypatch.setenv(download.URL_ENV, s.url)
        yield s


def part_of(w):
    p = cached_file(w)
    return p.with_name(p.name + ".part")


def test_cache_folder_from_env_and_platformdirs(tmp_path, monkeypatch):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path))
    assert cache_dir() == tmp_path / "pretrained"
    monkeypatch.delenv(download.CACHE_ENV)
    import platformdirs

    assert cache_dir() == __import__("pathlib").Path(
        platformdirs.user_cache_dir("cnn-designer", appauthor=False)) / "pretrained"


def test_download_ok_with_progress(cache, server):
    w = weights_entry(DATA)
    server.files[w.file_name] = DATA
    seen = []
    path = fetch(w, progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert path == cache / w.file_name and path.read_bytes() == DATA
    assert not part_of(w).exists() and is_cached(w)
    downloads = [s for s in seen if s[0] == "download"]
    assert downloads[-1] == ("download", len(DATA), len(DATA))
    assert [d for _, d, _ in downloads] == sorted(d for _, d, _ in downloads)
    assert seen[-1] == ("check", len(DATA), len(DATA))
    assert server.ranges == [None]
    # a second fetch uses the cache (checked), no request
    assert fetch(w) == path and server.ranges == [None]


def test_connection_cut_midway_is_resumed_with_range(cache, server):
    w = weights_entry(DATA)
    server.files[w.file_name] = DATA
    server.cut_after, server.cuts = 1_000_000, 2  # two responses break off after 1 MB each
    path = fetch(w)
    assert path.read_bytes() == DATA
    assert server.ranges == [None, "bytes=1000000-", "bytes=2000000-"]


def test_broken_off_download_keeps_part_and_next_try_resumes(cache, server):
    w = weights_entry(DATA)
    server.files[w.file_name] = DATA
    server.cut_after, server.cuts = 500_000, download.RETRIES + 1
    with pytest.raises(DownloadError, match=r"broke off.*kept in .*\.part.*resumes"):
        fetch(w)
    part = part_of(w)
    assert part.stat().st_size == 500_000 * (download.RETRIES + 1)
    assert not cached_file(w).exists()  # never a half-written cache file
    assert fetch(w).read_bytes() == DATA
    assert server.ranges[-1] == f"bytes={500_000 * (download.RETRIES + 1)}-"
    assert not part.exists()


def test_server_ignoring_range_restarts_the_file(cache, server):
    w = weights_entry(DATA)
    server.files[w.file_name] = DATA
    server.honour_range = False
    part_of(w).parent.mkdir(parents=True)
    part_of(w).write_bytes(b"garbage that is not the start of the file")
    assert fetch(w).read_bytes() == DATA
    assert server.ranges == ["bytes=41-"]


def test_complete_part_is_checked_and_kept(cache, server):
    w = weights_entry(DATA)
    server.files[w.file_name] = DATA
    part_of(w).parent.mkdir(parents=True)
    part_of(w).write_bytes(DATA)  # the transfer ended before the rename
    assert fetch(w).read_bytes() == DATA
    assert server.ranges == [f"bytes={len(DATA)}-"]  # 416: nothing more to send


def test_hash_mismatch_deletes_the_file_and_says_so(cache, server):
    w = weights_entry(DATA, good=False)
    server.files[w.file_name] = DATA
    digest = hashlib.sha256(DATA).hexdigest()
    with pytest.raises(DownloadError) as e:
        fetch(w)
    msg = str(e.value)
    assert w.file_name in msg and digest[:8] in msg and w.hash_prefix in msg
    assert "deleted" in msg
    assert not cached_file(w).exists() and not part_of(w).exists()


def test_wrong_file_put_in_the_cache_is_deleted(cache, server):
    w = weights_entry(DATA)
    cache.mkdir(parents=True)
    cached_file(w).write_bytes(DATA[:-1])
    with pytest.raises(DownloadError, match="cached file .* deleted"):
        fetch(w)
    assert not cached_file(w).exists() and server.ranges == []


def test_server_down_gives_url_and_folder(cache, monkeypatch):
    url = free_port_url()
    monkeypatch.setenv(download.URL_ENV, url)
    w = weights_entry(DATA)
    with pytest.raises(DownloadError) as e:
        fetch(w, timeout=5)
    msg = str(e.value)
    assert f"{url}/{w.file_name}" in msg and str(cache) in msg and w.file_name in msg
    assert "cannot reach" in msg
    assert not cached_file(w).exists() and not part_of(w).exists()


def test_missing_on_server_names_status(cache, server):
    w = weights_entry(DATA)
    with pytest.raises(DownloadError, match="404"):
        fetch(w)


def test_cancel_keeps_the_part_for_resuming(cache, server):
    w = weights_entry(DATA)
    server.files[w.file_name] = DATA
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2  # after two blocks

    with pytest.raises(DownloadCancelled):
        fetch(w, should_stop=stop)
    assert not cached_file(w).exists()
    assert part_of(w).stat().st_size == 2 * download.CHUNK
    assert fetch(w).read_bytes() == DATA
    assert server.ranges[-1] == f"bytes={2 * download.CHUNK}-"


# ---- the command line -----------------------------------------------------------------------

def test_cli_get_out_builds_the_project(cache, server, tmp_path, monkeypatch, capsys):
    from engine.nn.network import Network
    from engine.project import load_project
    from engine.zoo.templates import make_template

    weights = Network.compile(make_template("squeezenet1_1").graph,
                              np.random.default_rng(3)).state_dict()
    f = tmp_path / "w.npz"
    np.savez(f, **weights)
    data = f.read_bytes()
    w = weights_entry(data, stem="squeezenet1_1")
    monkeypatch.setitem(catalogue.PRETRAINED, w.name, w)
    server.files[w.file_name] = data
    out = tmp_path / "sq.cnnd"
    assert main(["pretrained", "get", w.name, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(cache / w.file_name)
    assert "downloading" in captured.err and f"wrote {out}" in captured.err
    p = load_project(out)
    assert p.graph.input_spec == w.input_spec()
    assert p.graph.input_spec.mean == (0.485, 0.456, 0.406)
    assert p.meta["pretrained"]["name"] == w.name and p.meta["template"] == "squeezenet1_1"
    assert set(p.weights) == set(weights)
    for k, v in weights.items():
        np.testing.assert_array_equal(p.weights[k], v)
    # listed as cached
    assert main(["pretrained", "list"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith(w.name))
    assert "yes" in row.split()


def test_cli_get_offline_exit_1(cache, monkeypatch, capsys):
    monkeypatch.setenv(download.URL_ENV, free_port_url())
    assert main(["pretrained", "get", "resnet18"]) == 1
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth" in err and str(cache) in err


def test_cli_unknown_name_is_usage_error(capsys):
    assert main(["pretrained", "get", "resnet19"]) == 2
    assert "no pretrained weights named 'resnet19'" in capsys.readouterr().err
