"""RunRecorder: what the training loop (engine.nn.train.train) calls to record one run.

    rec = RunRecorder(runs_path(out), graph, data={"source": "mnist", ...}, source="cli")
    history = train(net, x, y, config, recorder=rec)   # begin(), epoch() per epoch, end()
    rec.set_test(loss, accuracy)                        # when there is a test split

A write that fails (the store locked past its retries) is kept and tried again with the next
one, so a busy database delays a run's rows but does not lose them; the problem goes to
`on_message` (the CLI's stderr, the GUI's status line) and training goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .diff import diff_runs
from .store import RunStore, RunStoreError, now_iso, weights_to_blob


def _json(v: Any) -> str:
    return json.dumps(v, default=lambda o: o.item() if hasattr(o, "item") else str(o))


class RunRecorder:
    """Records one training run into a RunStore, one transaction per epoch."""

    def __init__(self, store: RunStore | str | Path, graph, data: dict | None = None,
                 source: str = "cli", project: str | Path | None = None,
                 study: str | None = None, trial: int | None = None,
                 on_message: Callable[[str], None] | None = None):
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        self.store.on_message = on_message or self.store.on_message
        self.on_message = on_message
        self.graph_json = graph.to_json()
        self.data = dict(data or {})
        self.source, self.project, self.study, self.trial = source, project, study, trial
        self.run_id: int | None = None
        self.best_acc: float | None = None
        self.best_loss: float | None = None
        self.best_epoch: int | None = None
        self.images = 0
        self.train_seconds = 0.0
        self._pending: list[Callable] = []
        self._t0 = 0.0
        self.error: str | None = None  # the last write problem, None when all is written

    # -- what train() calls --
    def begin(self, net, config, n_train: int, n_val: int) -> None:
        """Insert the run's row (status 'running'): graph, diff to the previous run, config."""
        from ..validate import validate

        self._t0 = time.perf_counter()
        v = validate(net.graph)
        cfg = asdict(config)
        self.data.update({"train_images": int(n_train), "val_images": int(n_val)})

        def insert(con):
            prev = con.execute("SELECT id, graph, config FROM runs ORDER BY id DESC LIMIT 1"
                               ).fetchone()
            diff = None
            if prev is not None:
                diff = diff_runs(json.loads(prev["graph"]), self.graph_json,
                                 json.loads(prev["config"]), cfg).to_json()
            cur = con.execute(
                "INSERT INTO runs (created, status, source, name, project, graph, diff, "
                "previous, config, seed, data, params, macs, epochs_planned, study, trial) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now_iso(), self.source, self.graph_json.get("name"),
                 None if self.project is None else str(self.project), _json(self.graph_json),
                 None if diff is None else _json(diff), None if prev is None else prev["id"],
                 _json(cfg), int(config.seed), _json(self.data), int(v.total_params),
                 int(v.macs), int(config.epochs), self.study, self.trial))
            return cur.lastrowid

        try:
            self.run_id = self.store.write(insert)
        except RunStoreError as exc:
            self._failed(exc)

    def epoch(self, rep, net) -> None:
        """One transaction: the epoch's row, the run's running figures and, when this epoch
        is the best so far (validation accuracy; the latest without validation), its weights."""
        if self.run_id is None:
            return
        self.images += round(rep.images_per_s * rep.seconds)
        self.train_seconds += rep.seconds
        better = (rep.val_accuracy is None or self.best_acc is None
                  or rep.val_accuracy > self.best_acc)
        blob = None
        if better:
            self.best_acc, self.best_loss = rep.val_accuracy, rep.val_loss
            self.best_epoch = rep.epoch
            blob = weights_to_blob(net.state_dict())
        row = (self.run_id, rep.epoch, rep.train_loss, rep.train_accuracy, rep.val_loss,
               rep.val_accuracy, rep.seconds, rep.images_per_s)
        figures = (rep.epoch, self.best_epoch, self.best_acc, self.best_loss, rep.train_loss,
                   rep.train_accuracy, rep.val_loss, rep.val_accuracy,
                   time.perf_counter() - self._t0, self._images_per_s(), self.run_id)
        best = (self.run_id, rep.epoch, blob) if blob is not None else None

        def write(con):
            con.execute("INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            con.execute("UPDATE runs SET epochs_done = ?, best_epoch = ?, best_val_accuracy = ?, "
                        "best_val_loss = ?, final_train_loss = ?, final_train_accuracy = ?, "
                        "final_val_loss = ?, final_val_accuracy = ?, seconds = ?, "
                        "images_per_s = ? WHERE id = ?", figures)
            if best is not None:
                con.execute("INSERT OR REPLACE INTO best_weights VALUES (?, ?, ?)", best)
        self._write(write)

    def end(self, history) -> None:
        """The run's status: 'finished', 'cancelled' or 'failed' (the reason in its notes)."""
        if self.run_id is None:
            return
        stopped = history.stopped
        status = "finished" if not stopped else ("cancelled" if stopped == "cancelled"
                                                 else "failed")
        args = (status, now_iso(), history.seconds, self._images_per_s(),
                "" if status != "failed" else str(stopped), self.run_id)
        self._write(lambda con: con.execute(
            "UPDATE runs SET status = ?, finished = ?, seconds = ?, images_per_s = ?, "
            "notes = CASE WHEN notes = '' THEN ? ELSE notes END WHERE id = ?", args))

    def abort(self, why: str) -> None:
        """Training raised (a second Ctrl+C, an error): status 'aborted', epochs kept."""
        if self.run_id is not None:
            args = (now_iso(), why, self.run_id)
            self._write(lambda con: con.execute(
                "UPDATE runs SET status = 'aborted', finished = ?, notes = ? WHERE id = ?",
                args))

    def set_status(self, status: str) -> None:
        """Overwrite the status (a sweep's 'pruned' trial)."""
        if self.run_id is not None:
            args = (status, self.run_id)
            self._write(lambda con: con.execute("UPDATE runs SET status = ? WHERE id = ?", args))

    def set_test(self, loss: float | None, accuracy: float | None) -> None:
        if self.run_id is None or accuracy is None:
            return
        args = (None if loss is None else float(loss), float(accuracy), self.run_id)
        self._write(lambda con: con.execute(
            "UPDATE runs SET test_loss = ?, test_accuracy = ? WHERE id = ?", args))

    # -- writing --
    def _images_per_s(self) -> float | None:
        return self.images / self.train_seconds if self.train_seconds > 0 else None

    def _write(self, fn) -> None:
        self._pending.append(fn)
        pending = self._pending

        def all_of(con):
            for f in pending:
                f(con)
        try:
            self.store.write(all_of)
        except RunStoreError as exc:
            self._failed(exc)  # kept in _pending: written with the next transaction
        else:
            self._pending = []
            self.error = None

    def flush(self) -> bool:
        """Try the kept writes again; True when nothing is left unwritten."""
        if self._pending:
            fn = self._pending.pop()
            self._write(fn)
        return not self._pending and self.error is None

    def _failed(self, exc: Exception) -> None:
        self.error = str(exc)
        if self.on_message is not None:
            self.on_message(f"{exc} (the run's records are kept and written with the next "
                            f"epoch)")
