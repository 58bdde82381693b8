"""A save killed midway leaves its temporary file; the next save or open of the same file
removes it, and only files of our own naming that are stale (issue 16: 114 files, 16.7 MB
after 150 kills)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.fileio import STALE_AFTER_S, TEMP_TAG, check_writable, remove_stale_temps
from engine.project import load_project, save_project
from engine.zoo.examples import load_example

ROOT = Path(__file__).resolve().parents[2]

# a writer that starts an atomic save of argv[1], says so, and waits to be killed
WRITER = """
import sys, time
from engine.fileio import atomic_open
cm = atomic_open(sys.argv[1])
f = cm.__enter__()
f.write(b"half a project")
f.flush()
print("writing", flush=True)
time.sleep(120)
"""


def _start_writer(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMP_TAG in p.name)


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_killed_save_leaves_nothing_after_the_next_save_or_open(tmp_path):
    target = tmp_path / "net.cnnd"
    save_project(target, load_example("lenet5"))
    for _ in range(3):  # saves killed midway: each one's start clears the one before
        proc = _start_writer(target)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert len(_temps(tmp_path)) == 1  # no pile-up
    load_project(target)  # opening the file clears the last
    assert _temps(tmp_path) == []
    proc = _start_writer(target)
    proc.kill()
    proc.wait(30)
    save_project(target, load_example("lenet5"))  # so does the next save
    assert _temps(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["net.cnnd"]


@pytest.mark.skipif(os.name == "nt", reason="process ids")
def test_only_stale_files_of_our_own_naming_are_removed(tmp_path):
    target = tmp_path / "net.cnnd"
    live = _start_writer(target)  # a save in progress in another process: not stale
    try:
        (busy,) = _temps(tmp_path)
        others = [".net.cnnd.abc123.tmp",  # someone else's naming
                  f".net.cnnd.{TEMP_TAG}-notapid-abc.tmp",
                  f".other.cnnd.{TEMP_TAG}-999999999-abc.tmp",  # another file's
                  "net.cnnd.bak"]
        for name in others:
            (tmp_path / name).write_bytes(b"keep me")
        assert remove_stale_temps(target) == []
        assert busy in _temps(tmp_path)
        # older than STALE_AFTER_S: left over, whoever wrote it (a pid may be reused)
        old = time.time() - STALE_AFTER_S - 60
        os.utime(tmp_path / busy, (old, old))
        assert remove_stale_temps(target) == [tmp_path / busy]
        for name in others:
            assert (tmp_path / name).read_bytes() == b"keep me"
    finally:
        live.kill()
        live.wait(30)


def test_check_writable_leaves_no_probe_and_names_the_reason(tmp_path):
    check_writable(tmp_path / "x.cnnd")
    assert os.listdir(tmp_path) == []
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError):  # as root too: a file is no folder
        check_writable(blocker / "x.cnnd")
