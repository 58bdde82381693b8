"""engine.fileio: atomic writes keep the target's mode or honour the umask, and leave nothing
behind on failure."""

import os
import stat

import numpy as np
import pytest

from engine.fileio import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_file_honours_umask(tmp_path, umask022):
    p = atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert p.read_bytes() == b"abc"
    assert _mode(p) == 0o644  # not mkstemp's 0600
    os.umask(0o077)
    q = atomic_write_text(tmp_path / "b.txt", "héllo\n")
    assert q.read_text(encoding="utf-8") == "héllo\n"
    assert _mode(q) == 0o600


def test_existing_file_keeps_its_mode(tmp_path, umask022):
    p = tmp_path / "a.txt"
    p.write_text("old")
    os.chmod(p, 0o640)
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert _mode(p) == 0o640


def test_failure_keeps_old_content_and_no_temp(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(p) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_path_with_a_writer_that_wants_a_name(tmp_path, umask022):
    p = tmp_path / "y.npy"
    with atomic_path(p, suffix=".npy") as tmp:
        np.save(tmp, np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(np.load(p), [0, 1, 2])
    assert _mode(p) == 0o644
    assert sorted(x.name for x in tmp_path.iterdir()) == ["y.npy"]


def test_project_and_onnx_saves_honour_umask(tmp_path, umask022):
    from engine.onnx.export import export_onnx
    from engine.project import save_architecture, save_project
    from engine.zoo.examples import load_example

    g = load_example("lenet5")
    for p in (save_project(tmp_path / "m.cnnd", g), save_architecture(tmp_path / "m.json", g)):
        assert _mode(p) == 0o644
    export_onnx(g, path=tmp_path / "m.onnx", check=False)
    assert _mode(tmp_path / "m.onnx") == 0o644
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.cnnd", "m.json", "m.onnx"]
