"""Outputs of the long commands (issue 16): an output that cannot be written is found before
any work, as one line and exit code 1, never a traceback; a run whose output cannot be written
at the end (the folder went away) is saved to a recovery file, and the message says where.

Tests run as root here, where a read-only folder is still writable: a folder that cannot be
written is made honest by a path under a regular file (ENOTDIR for anyone), or by a folder
whose file creation fails with EACCES (engine.fileio's mkstemp patched for that folder only).
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

import pytest

from engine import fileio
from engine.cli.main import main
from engine.project import load_project

DATA = Path(__file__).resolve().parents[1] / "data"


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder in which creating a file fails with EACCES, as a read-only folder does for a
    user who is not root; everything else is untouched."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    return folder


def _commands(out_dir: Path, onnx_file: Path) -> dict[str, tuple[list, str]]:
    """command -> (argv writing into out_dir, the option named in the error)."""
    return {
        "train": (["train", "lenet5", "--data", "mnist", "--limit", "60", "--epochs", "1",
                   "--out", out_dir / "x.cnnd"], "--out"),
        "export": (["export", "lenet5", "--out", out_dir / "x.onnx"], "--out"),
        "import": (["import", onnx_file, "--out", out_dir / "x.cnnd", "--no-parity"], "--out"),
        "finetune --onnx": (["finetune", "lenet5", "--data", "mnist", "--limit", "60",
                             "--freeze-up-to", "pool2", "--epochs", "1", "--out",
                             onnx_file.parent / "ok.cnnd", "--onnx", out_dir / "x.onnx"],
                            "--onnx"),
        "export-pytorch": (["export-pytorch", "lenet5", "--out", out_dir / "torch"], "--out"),
        "new": (["new", "lenet5", "--out", out_dir / "x.cnnd"], "--out"),
    }


@pytest.mark.parametrize("how", ["under a regular file", "read-only folder"])
@pytest.mark.parametrize("command", ["train", "export", "import", "finetune --onnx",
                                     "export-pytorch", "new"])
def test_an_unwritable_output_is_one_line_and_exit_1_before_any_work(tmp_path, capsys,
                                                                      read_only, command, how):
    if how == "under a regular file":
        blocker = tmp_path / "a_file"
        blocker.write_text("a file, not a folder")
        out_dir, reason = blocker, "Not a directory"
    else:
        out_dir, reason = read_only, "Permission denied"
    onnx_file = tmp_path / "small.onnx"
    shutil.copy(DATA / "torch_vgg_small.onnx", onnx_file)
    argv, option = _commands(out_dir, onnx_file)[command]
    rc, out, err = run(argv, capsys)
    assert rc == 1, err
    line = _one_error_line(err)
    assert option in line and reason in line and str(out_dir) in line
    assert "loading data" not in err and "epoch" not in out  # nothing was done first
    assert not list(out_dir.iterdir()) if out_dir.is_dir() else True


def test_a_training_whose_folder_goes_away_is_saved_to_a_recovery_file(tmp_path, capsys,
                                                                        monkeypatch):
    """The folder is fine when training starts and gone when it ends (a USB stick pulled):
    the trained weights land in a recovery file in the current folder, the message says
    where, the exit code is 1."""
    from engine.cli import train as train_cli
    from engine.nn import train as engine_train

    out_dir = tmp_path / "stick"
    out_dir.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    real_train = engine_train.train

    def train_then_pull_the_stick(*args, **kwargs):
        history = real_train(*args, **kwargs)
        shutil.rmtree(out_dir)
        return history

    monkeypatch.setattr(engine_train, "train", train_then_pull_the_stick)
    rc, out, err = run(["train", "lenet5", "--data", "mnist", "--limit", "60", "--epochs", "1",
                        "--out", out_dir / "net.cnnd", "--no-record"], capsys)
    assert rc == 1
    assert "Traceback" not in err and "cannot write" in err
    (recovered,) = cwd.glob("net.recovered-*.cnnd")
    assert f"saved to {recovered}" in err.replace(str(cwd.resolve()), str(cwd))
    project = load_project(recovered)
    assert project.weights and project.history["epochs"][0]["epoch"] == 1
    assert train_cli  # the command module that calls engine.nn.train.train


def test_an_os_error_anywhere_is_one_line(tmp_path, capsys, monkeypatch):
    """The command line's safety net: a file error no check foresaw is still one line."""
    from engine.onnx import export

    def full_disk(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.onnx"))

    monkeypatch.setattr(export, "atomic_write_bytes", full_disk)
    rc, _, err = run(["export", "lenet5", "--out", tmp_path / "x.onnx"], capsys)
    assert rc == 1 and "No space left on device" in _one_error_line(err)
