"""The run store: one SQLite database per project, `P.runs.sqlite` beside `P.cnnd`.

Why per project and beside it: the project is what the user opens, copies and shares, and its
runs are the history of that one design, so "the diff to the previous run" compares versions of
the same network. A per-folder (workspace) file would mix unrelated networks that happen to share
a folder, and a file in the user's home would not travel with the project. The database is a
separate file, not a member of the `.cnnd` zip, because a zip cannot be appended to atomically
per epoch and SQLite can. Unsaved documents and example names (`train lenet5 ...` without a
project) record into `untitled.runs.sqlite` in the runs folder (`CNN_DESIGNER_RUNS_DIR`, else
`~/.cnn-designer/`).

Durability: WAL journal, one transaction per epoch (the epoch's row, the run's running figures
and, when the epoch is the best so far, its weights), so a crash loses at most the epoch in
progress. The best epoch's weights are an uncompressed `.npz` blob in the `best_weights` table
(not a file beside): the one file then holds everything and a weight file can never disagree
with its run row; SQLite stores blobs up to 1 GB, more than any network this engine trains.

Concurrency: every write opens its own connection with a busy timeout (SQLite's busy_timeout), so
a reader or another writer (the GUI's Runs panel, a sweep worker) only delays it; a database
still locked after the timeout gets a clear message and further retries (RunStore.write).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError

SCHEMA_VERSION = 1
SUFFIX = ".runs.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
    source TEXT, name TEXT, project TEXT,
    graph TEXT NOT NULL, diff TEXT, previous INTEGER,
    config TEXT NOT NULL, seed INTEGER, data TEXT,
    params INTEGER, macs INTEGER,
    epochs_planned INTEGER, epochs_done INTEGER NOT NULL DEFAULT 0,
    best_epoch INTEGER, best_val_accuracy REAL, best_val_loss REAL,
    final_train_loss REAL, final_train_accuracy REAL,
    final_val_loss REAL, final_val_accuracy REAL,
    test_loss REAL, test_accuracy REAL,
    seconds REAL, images_per_s REAL,
    notes TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '[]',
    study TEXT, trial INTEGER
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL, epoch INTEGER NOT NULL,
    train_loss REAL, train_accuracy REAL, val_loss REAL, val_accuracy REAL,
    seconds REAL, images_per_s REAL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS best_weights (
    run_id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, npz BLOB NOT NULL
);
"""

# the columns a listing shows (not the big JSON texts)
LIST_COLUMNS = ("id", "created", "status", "source", "name", "params", "macs", "epochs_done",
                "epochs_planned", "best_epoch", "best_val_accuracy", "final_val_accuracy",
                "test_accuracy", "seconds", "images_per_s", "seed", "notes", "tags", "study",
                "trial", "previous")
JSON_COLUMNS = ("graph", "diff", "config", "data", "tags")


class RunStoreError(EngineError):
    """The run store cannot be read or written (locked too long, not a run store, ...)."""


def runs_dir() -> Path:
    """Where runs of unsaved documents go: $CNN_DESIGNER_RUNS_DIR, else ~/.cnn-designer."""
    env = os.environ.get("CNN_DESIGNER_RUNS_DIR")
    return Path(env) if env else Path.home() / ".cnn-designer"


def runs_path(project: str | Path | None) -> Path:
    """The run store of a project: `P.cnnd` -> `P.runs.sqlite` beside it; a run store path
    stays itself; None (an unsaved document) -> `untitled.runs.sqlite` in runs_dir()."""
    if project is None:
        return runs_dir() / f"untitled{SUFFIX}"
    p = Path(project)
    if p.name.endswith(SUFFIX) or p.suffix in (".sqlite", ".db"):
        return p
    return p.with_name(p.stem + SUFFIX)


def weights_to_blob(state: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **state)  # uncompressed: a LeNet-5's weights in ~0.2 ms
    return buf.getvalue()


def blob_to_weights(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class RunStore:
    """One run store file. Cheap to create; every call opens its own short connection, so a
    store object may be used from any thread."""

    def __init__(self, path: str | Path, timeout: float = 5.0, retries: int = 12,
                 on_message: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.timeout = timeout  # SQLite's busy_timeout per attempt, seconds
        self.retries = retries  # attempts after the first, each after another busy_timeout
        self.on_message = on_message
        self._ready = False
        # one connection per thread, kept open: opening and closing one per epoch costs a WAL
        # checkpoint each time (~20 ms on a busy disk), a kept one costs only the commit
        self._local = threading.local()

    # -- connections --
    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise RunStoreError(f"cannot open the run store {self.path}: {exc}") from None
        con.row_factory = sqlite3.Row
        return con

    def _shared(self) -> sqlite3.Connection:
        """This thread's kept connection (synchronous=NORMAL: with WAL, durable past a crash
        of the program; only a power cut can lose the last commits)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def _drop(self) -> None:
        con = getattr(self._local, "con", None)
        self._local.con = None
        if con is not None:
            con.close()

    def close(self) -> None:
        """Close this thread's kept connection (others close when their thread's store goes)."""
        self._drop()

    def _ensure(self) -> None:
        if self._ready:
            return
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)

        con = self._connect()
        try:
            have = con.execute("PRAGMA user_version").fetchone()[0]
            if have > SCHEMA_VERSION:
                raise RunStoreError(f"{self.path} was written by a newer CNN Designer (run "
                                    f"store version {have}, this one reads {SCHEMA_VERSION})")
            if have < SCHEMA_VERSION:
                # WAL is a property of the file, set once; executescript runs its own commit
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except sqlite3.OperationalError as exc:
            raise RunStoreError(f"cannot create the run store {self.path}: {exc} (another "
                                f"program may hold it; try again)") from None
        except sqlite3.DatabaseError as exc:
            raise RunStoreError(f"{self.path} is not a readable run store: {exc}") from None
        finally:
            con.close()
        self._ready = True

    def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run fn(connection) in one IMMEDIATE transaction and commit it. A database locked by
        another program for longer than the busy timeout is reported through on_message and
        retried `retries` times; after that RunStoreError says who to close."""
        self._ensure()
        for attempt in range(self.retries + 1):
            con = self._shared()
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(con)
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                return out
            except sqlite3.OperationalError as exc:
                if con.in_transaction:  # a COMMIT refused: start clean on the next attempt
                    con.execute("ROLLBACK")
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise RunStoreError(f"run store {self.path}: {exc}") from None
                if attempt == self.retries:
                    raise RunStoreError(
                        f"the run store {self.path} stayed locked by another program for "
                        f"{self.timeout * (self.retries + 1):.0f} s; close the program that "
                        f"holds it (a database browser?) and train again") from None
                if self.on_message is not None:
                    self.on_message(f"the run store {self.path.name} is locked by another "
                                    f"program; retrying ({attempt + 1}/{self.retries})…")
            except sqlite3.DatabaseError as exc:
                self._drop()
                raise RunStoreError(f"{self.path} is not a readable run store: {exc}") from None
        raise AssertionError("unreachable")

    def read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        if not self.path.exists():
            return []
        self._ensure()
        try:
            return self._shared().execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise RunStoreError(f"run store {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._drop()
            raise RunStoreError(f"{self.path} is not a readable run store: {exc}") from None

    # -- reading --
    def list_runs(self) -> list[dict]:
        """Every run (newest last), without graph/config/diff texts; tags decoded."""
        rows = self.read(f"SELECT {', '.join(LIST_COLUMNS)} FROM runs ORDER BY id")
        out = []
        for r in rows:
            d = dict(r)
            d["tags"] = json.loads(d["tags"] or "[]")
            out.append(d)
        return out

    def get_run(self, run_id: int) -> dict:
        """One run with its graph, config, data and diff decoded; RunStoreError if absent."""
        rows = self.read("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            have = [r["id"] for r in self.read("SELECT id FROM runs ORDER BY id")]
            raise RunStoreError(f"{self.path.name} has no run {run_id}"
                                + (f" (runs: {_ranges(have)})" if have else " (it is empty)"))
        d = dict(rows[0])
        for k in JSON_COLUMNS:
            d[k] = json.loads(d[k]) if d[k] else ([] if k == "tags" else None)
        return d

    def epochs(self, run_id: int) -> list[dict]:
        return [dict(r) for r in self.read(
            "SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (int(run_id),))]

    def best_weights(self, run_id: int) -> tuple[int, dict[str, np.ndarray]] | None:
        """(epoch, weights) of the run's best epoch, or None when it finished no epoch."""
        rows = self.read("SELECT epoch, npz FROM best_weights WHERE run_id = ?", (int(run_id),))
        if not rows:
            return None
        return int(rows[0]["epoch"]), blob_to_weights(rows[0]["npz"])

    def last_run_id(self) -> int | None:
        rows = self.read("SELECT MAX(id) AS m FROM runs")
        return rows[0]["m"] if rows else None

    # -- editing --
    def set_notes(self, run_id: int, notes: str) -> None:
        self.get_run(run_id)
        self.write(lambda c: c.execute("UPDATE runs SET notes = ? WHERE id = ?",
                                       (str(notes), int(run_id))))

    def set_tags(self, run_id: int, tags: list[str]) -> None:
        self.get_run(run_id)
        clean = sorted({t.strip() for t in tags if t.strip()})
        self.write(lambda c: c.execute("UPDATE runs SET tags = ? WHERE id = ?",
                                       (json.dumps(clean), int(run_id))))

    def delete(self, run_id: int) -> None:
        self.get_run(run_id)

        def go(con):
            for table, col in (("epochs", "run_id"), ("best_weights", "run_id"), ("runs", "id")):
                con.execute(f"DELETE FROM {table} WHERE {col} = ?", (int(run_id),))
        self.write(go)


def _ranges(ids: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(f"{ids[i]}-{ids[j]}" if j > i else str(ids[i]))
        i = j + 1
    return ", ".join(out)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
