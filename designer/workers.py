"""Worker objects that run long work off the GUI thread and talk to the GUI by signals only.

    worker = TrainWorker(job)
    thread = start_worker(worker, parent)   # moveToThread + started -> run
    worker.epoch_finished.connect(panel.on_epoch)   # bound methods of QObjects: queued calls

Workers never touch a widget. Signals carry plain data (dataclasses, NumPy copies).
Connect them to bound methods of QObjects, never to lambdas: a lambda has no thread affinity,
so Qt would call it in the worker's thread.
"""

from __future__ import annotations

import inspect
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from engine.nn.inference import infer
from engine.nn.losses import softmax_cross_entropy
from engine.nn.network import Network
from engine.nn.train import BatchReport, EpochReport, History, TrainConfig, train


def error_text(exc: BaseException) -> str:
    """User errors (ValueError family) speak for themselves; others get their type name."""
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def report_failure(failed: Signal, exc: BaseException) -> None:
    """Send the error's text to the GUI; a bug (not a user error) also prints its traceback."""
    failed.emit(error_text(exc))
    if not isinstance(exc, ValueError):
        traceback.print_exc()


def start_worker(worker: QObject, parent: QObject | None = None) -> QThread:
    """Move `worker` to a new QThread, run `worker.run` there and quit the thread when the
    worker emits `done`. Keep references to both until `thread.finished`.

    `done -> quit` is a direct connection: QThread.quit is thread-safe and is then called in the
    worker thread itself, so the thread ends even while the GUI thread is blocked (a caller that
    waits with `thread.wait()` on the GUI thread would otherwise wait for a queued quit that
    only the GUI event loop could deliver)."""
    thread = QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    thread.start()
    return thread


def stop_thread(thread: QThread | None, timeout_ms: int = 10000) -> None:
    """Ask the thread's event loop to quit and wait for it (clean shutdown)."""
    if thread is None:
        return
    try:
        if thread.isRunning():
            thread.quit()
            thread.wait(timeout_ms)
    except RuntimeError:  # the C++ object is already gone
        pass


# ---- generic one-shot work ----------------------------------------------------------------


class FunctionWorker(QObject):
    """Runs fn(*args) once in a worker thread. Keywords fn accepts are filled in: `report`, a
    callable that emits `progressed(str)`; `progress`, one that emits `stepped(text, done,
    total)` (a progress bar's steps); `should_stop`, one that turns true after `cancel()` (fn
    checks it between steps and returns early). Emits `finished(result)` or `failed(text)`,
    then `done()`."""

    progressed = Signal(str)
    stepped = Signal(str, int, int)
    finished = Signal(object)
    failed = Signal(str)
    done = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, tag: Any = None):
        super().__init__()
        self.fn, self.args, self.tag = fn, args, tag
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask fn to stop (thread-safe); only an fn taking `should_stop` can."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def run(self) -> None:
        try:
            kwargs = {}
            try:
                params = inspect.signature(self.fn).parameters
            except (TypeError, ValueError):
                params = {}
            if "report" in params:
                kwargs["report"] = self.progressed.emit
            if "progress" in params:
                kwargs["progress"] = self.stepped.emit
            if "should_stop" in params:
                kwargs["should_stop"] = self._cancel.is_set
            result = self.fn(*self.args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (reported to the GUI, never raised into Qt)
            report_failure(self.failed, exc)
        else:
            self.finished.emit(result)
        self.done.emit()


# ---- training ------------------------------------------------------------------------------


@dataclass
class TrainJob:
    """Everything a training run needs, prepared in the GUI thread (the network is already
    compiled from the document's graph and weights)."""

    net: Network
    x: np.ndarray
    y: np.ndarray
    config: TrainConfig
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    sample: np.ndarray | None = None  # (1, C, H, W): the fixed image of the timeline
    watch_node: str | None = None  # layer whose maps of `sample` the timeline keeps
    n_worst: int = 12
    recorder: Any = None  # engine.runs.RunRecorder: the run is recorded in the project's store


@dataclass
class Snapshot:
    """The timeline's picture of one moment (epoch 0 = before training)."""

    epoch: int
    filters: np.ndarray | None  # first Conv2d weight (Cout, Cin, kh, kw), a copy
    filters_node: str | None
    maps: np.ndarray | None  # watched layer's output for the fixed sample (C, H, W) or (F,)
    maps_node: str | None


@dataclass
class TrainResult:
    history: History
    state: dict[str, np.ndarray]
    eval_name: str = "test"  # which set the final figures come from
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    confusion: np.ndarray | None = None  # (K, K) counts, rows true, columns predicted
    worst: list[dict] = field(default_factory=list)  # image, true, pred, confidence, index
    batches_run: int = 0


def first_conv(net: Network) -> str | None:
    return next((nid for nid in net.order if net.graph.nodes[nid].type_name == "Conv2d"), None)


def softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z.reshape(len(z), -1).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate_full(net: Network, x: np.ndarray, y: np.ndarray, n_classes: int, n_worst: int = 12,
                  batch_size: int = 256) -> tuple[float, float, np.ndarray, list[dict]]:
    """(loss, accuracy, confusion (K, K), worst samples) of `net` on (x, y).

    The worst samples are those with the lowest probability given to their true class."""
    probs, total = [], 0.0
    zs = infer(net, x, batch_size, logits=True)  # ONNX Runtime where it runs the design
    for i in range(0, len(x), batch_size):
        z = zs[i:i + batch_size]
        total += softmax_cross_entropy(z, y[i:i + batch_size])[0] * len(z)
        probs.append(softmax_rows(z))
    p = np.concatenate(probs) if probs else np.zeros((0, n_classes))
    pred = p.argmax(axis=1) if len(p) else np.zeros(0, np.int64)
    k = max(n_classes, p.shape[1] if p.ndim == 2 else 0)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (y, pred), 1)
    worst = []
    if len(p):
        p_true = p[np.arange(len(y)), y]
        for i in np.argsort(p_true, kind="stable")[:n_worst]:
            worst.append({"index": int(i), "image": x[i].copy(), "true": int(y[i]),
                          "pred": int(pred[i]), "confidence": float(p[i, pred[i]]),
                          "p_true": float(p_true[i])})
    acc = float((pred == y).mean()) if len(y) else 0.0
    return total / max(len(x), 1), acc, conf, worst


class TrainWorker(QObject):
    """Runs engine.nn.train.train in a worker thread.

    GUI updates are throttled to `rate_hz` (the last batch of an epoch always reports), so the
    panel costs little training speed. stop() makes training end before the next batch;
    pause() blocks the worker between batches on an Event (no busy wait) until resume()."""

    batch_finished = Signal(object)  # BatchReport (throttled)
    epoch_finished = Signal(object, object)  # EpochReport, Snapshot
    snapshot_taken = Signal(object)  # Snapshot (epoch 0, before training)
    finished = Signal(object)  # TrainResult
    failed = Signal(str)
    done = Signal()

    def __init__(self, job: TrainJob, rate_hz: float = 15.0):
        super().__init__()
        self.job = job
        self.interval = 1.0 / rate_hz
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._last_emit = 0.0
        self.batches_run = 0  # every batch, emitted or not (tests count batches after stop)
        self.batches_at_stop: int | None = None
        self.conv_id = first_conv(job.net)

    # -- control, called from the GUI thread --
    def stop(self) -> None:
        if self.batches_at_stop is None:
            self.batches_at_stop = self.batches_run
        self._stop.set()
        self._running.set()  # a paused worker wakes up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def set_watch_node(self, node_id: str | None) -> None:
        """The layer whose maps the next snapshots keep (a plain attribute swap: thread-safe)."""
        self.job.watch_node = node_id if node_id in self.job.net.layers else None

    # -- worker thread --
    def _should_stop(self) -> bool:
        self._running.wait()
        return self._stop.is_set()

    def _on_batch(self, rep: BatchReport) -> None:
        self.batches_run += 1
        now = time.perf_counter()
        if now - self._last_emit >= self.interval or rep.batch == rep.batches:
            self._last_emit = now
            self.batch_finished.emit(rep)

    def _on_epoch(self, rep: EpochReport) -> None:
        self.epoch_finished.emit(rep, self.snapshot(rep.epoch))

    def snapshot(self, epoch: int) -> Snapshot:
        net, job = self.job.net, self.job
        filters = None
        if self.conv_id is not None:
            filters = net.layers[self.conv_id].weights["weight"].copy()
        maps, node = None, job.watch_node
        if job.sample is not None and node is not None:
            outs = net.forward(job.sample, keep=True)
            if node in outs:
                maps = np.array(outs[node][0], np.float32, copy=True)
        return Snapshot(epoch, filters, self.conv_id, maps, node if maps is not None else None)

    @Slot()
    def run(self) -> None:
        job = self.job
        try:
            self.snapshot_taken.emit(self.snapshot(0))
            history = train(job.net, job.x, job.y, job.config, job.x_val, job.y_val,
                            on_batch=self._on_batch, on_epoch=self._on_epoch,
                            should_stop=self._should_stop, recorder=job.recorder)
            result = TrainResult(history, job.net.state_dict(), batches_run=self.batches_run)
            if job.x_test is not None and len(job.x_test):
                xe, ye, result.eval_name = job.x_test, job.y_test, "test"
            else:
                xe, ye, result.eval_name = job.x_val, job.y_val, "validation"
            if xe is not None and len(xe) and not self._stop.is_set():
                n_classes = int(np.prod(job.net.output_shape))
                (result.eval_loss, result.eval_accuracy, result.confusion,
                 result.worst) = evaluate_full(job.net, xe, ye, n_classes, job.n_worst)
                if job.recorder is not None and result.eval_name == "test":
                    job.recorder.set_test(result.eval_loss, result.eval_accuracy)
        except Exception as exc:  # noqa: BLE001 (reported to the GUI, never raised into Qt)
            report_failure(self.failed, exc)
        else:
            self.finished.emit(result)
        self.done.emit()
