"""The training session behind the training panel: it loads and checks the data, runs training
in a TrainWorker thread (start, pause, stop), and writes the trained weights and history back
to the document. It owns no widget: it reads the panel's fields through a `SessionForm` and
reports by signals, which the panel shows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
from PySide6.QtCore import QObject, Signal

from engine import data as engine_data
from engine.inputspec import data_spec
from engine.messages import ERROR, WARNING, Fix, Message
from engine.nn.network import Network
from engine.nn.train import TrainConfig, split_validation
from engine.runs import RunRecorder, runs_path

from .workers import FunctionWorker, TrainJob, TrainResult, TrainWorker, start_worker, stop_thread

LOCK_REASON = "training is running: stop it to edit the graph"
UPDATE_HZ = 10.0  # curve / progress updates per second: each repaint of the plots costs
# a few ms of CPU that training (which uses every core) would otherwise have


@dataclass(frozen=True)
class DataRequest:
    """What the data fields ask for."""

    source: str  # "mnist", "idx", "images" or "npz"
    spec: str  # "mnist", or the file or folder
    limit: int  # images of each split; 0: all


class SessionForm(Protocol):
    """What the session reads from the panel's fields when it needs them."""

    def data_request(self) -> DataRequest: ...

    def config(self) -> TrainConfig: ...

    def watched_node(self) -> str | None: ...


@dataclass(frozen=True)
class Run:
    """A started run, as the panel prepares its plots for it."""

    config: TrainConfig
    n_train: int  # images trained on (without the validation split)
    n_val: int
    batches: int  # per epoch
    sample: np.ndarray  # (1, C, H, W): the timeline's fixed image


def mismatch_fix(m: engine_data.Mismatch, graph) -> Fix | None:
    """The quick fix for one data mismatch: the Input takes the images' whole C×H×W (one undo
    step for channels and size), the last sized layer the class count."""
    if m.kind in ("channels", "size") and m.node_id is not None:
        dc, dh, dw = m.actual
        return Fix(f"set the Input to {dc}×{dh}×{dw}", "set_params",
                   {"channels": dc, "height": dh, "width": dw}, node_id=m.node_id)
    if m.kind == "classes" and m.node_id is not None and m.params:
        name, k = next(iter(m.params.items()))
        return Fix(f"set {graph.nodes[m.node_id].name}'s {name} to {k}", "set_params",
                   {name: k}, node_id=m.node_id)
    return None


class TrainingSession(QObject):
    """One panel's data and training runs over a document."""

    data_info_changed = Signal(str)  # "loading…", "Choose a file or folder."
    data_loaded = Signal(object)  # DataBundle, already checked
    data_failed = Signal(str)
    data_checked = Signal()  # `messages` is new
    status_changed = Signal(str)  # a line for the status label
    state_changed = Signal()  # loading, waiting, training or paused changed: the buttons
    run_started = Signal(object)  # Run
    batch_finished = Signal(object)  # BatchReport
    epoch_finished = Signal(object, object)  # EpochReport, Snapshot
    snapshot_taken = Signal(object)  # Snapshot
    run_finished = Signal(object)  # TrainResult: its weights and history are in the document
    run_discarded = Signal()  # another network was opened while it ran: nothing was kept
    run_failed = Signal(str)
    run_recorded = Signal(object, object)  # run store path, run id (None: not recorded)

    def __init__(self, doc, form: SessionForm, parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc
        self.form = form
        self.dataset = None  # engine DataBundle
        self.data_key = None  # (spec, image shape for image folders, limit, input spec) loaded
        self.messages: list[Message] = []  # the data's mismatches, with their fixes
        self.data_thread = self.data_worker = None
        self.thread = self.worker = None
        self.run: Run | None = None
        self._loading_key = None
        self._last_request = None  # (spec, limit) last asked for: a reload only on a change
        self._loading_request = None  # (spec, limit) of the load in flight
        self._loaded_request = None  # (spec, limit) that self.dataset was loaded with
        self._train_when_loaded = False  # Train was clicked while the data did not match
        self._load_gen = 0  # results of an older load (superseded by set_dataset) are dropped
        self._discard = False  # set when the document is replaced while training
        self.record_runs = True  # every run goes into the document's run store (engine.runs)
        doc.validated.connect(self._on_validated)
        doc.graph_reset.connect(self._on_graph_reset)

    # -- state --
    @property
    def training(self) -> bool:
        return self.thread is not None

    @property
    def paused(self) -> bool:
        return self.worker is not None and self.worker.paused

    @property
    def loading(self) -> bool:
        return self.data_thread is not None

    @property
    def waiting_for_data(self) -> bool:
        """Train was clicked while other data was loading: it starts when the load ends."""
        return self._train_when_loaded

    @property
    def data_fits(self) -> bool:
        return not any(m.severity == ERROR for m in self.messages)

    def data_fields(self) -> tuple[str, int]:
        """What the data fields ask for now: (source spec, image limit)."""
        r = self.form.data_request()
        return r.spec, r.limit

    @property
    def data_current(self) -> bool:
        """True when the loaded data is what the fields show (nothing loading, nothing edited
        since): only then does Train start at once."""
        return (self.dataset is not None and self.data_thread is None
                and self._loaded_request == self.data_fields())

    def input_shape(self) -> tuple | None:
        for nid, node in self.doc.graph.nodes.items():
            if node.type_name == "Input":
                res = self.doc.validation.nodes.get(nid)
                return tuple(res.out_shape) if res is not None and res.out_shape else None
        return None

    # -- data --
    def data_edited(self) -> None:
        """editingFinished also fires on focus changes: reload only when path / limit changed."""
        if self.data_fields() != self._last_request:
            self.load_data()

    def set_dataset(self, bundle, key=None) -> None:
        """Use an already loaded engine DataBundle (or Dataset) as the training data."""
        if isinstance(bundle, engine_data.Dataset):
            bundle = engine_data.DataBundle(bundle)
        self._loading_key = key
        self._last_request = self._loading_request = self.data_fields()
        self._load_gen += 1
        self._on_data_loaded(bundle)
        self.state_changed.emit()

    def load_data(self) -> None:
        """Load the chosen data in a worker thread (then check it)."""
        req = self.form.data_request()
        if not req.spec:
            self.data_info_changed.emit("Choose a file or folder.")
            return
        shape = self.input_shape()
        spec = data_spec(self.doc.graph) if req.source == "images" else None
        key = (req.spec, shape if req.source == "images" else None, req.limit, spec)
        if key == self.data_key and self.dataset is not None:
            return
        if self.data_thread is not None:
            return  # one load at a time; the user can retry when it ends
        self.data_info_changed.emit("loading…")
        self._loading_key = key
        self._last_request = self._loading_request = (req.spec, req.limit)
        self._load_gen += 1
        self.data_worker = FunctionWorker(engine_data.load_dataset, req.spec, shape,
                                          req.limit or None, spec, tag=self._load_gen)
        self.data_worker.finished.connect(self._on_loaded_in_worker)
        self.data_worker.failed.connect(self._on_data_failed)
        self.data_worker.done.connect(self._on_data_done)
        self.data_thread = start_worker(self.data_worker, self)
        self.state_changed.emit()

    def _on_loaded_in_worker(self, bundle) -> None:
        if self.data_worker is not None and self.data_worker.tag == self._load_gen:
            self._on_data_loaded(bundle)

    def _on_data_loaded(self, bundle) -> None:
        self.dataset = bundle
        self.data_key = self._loading_key
        self._loaded_request = self._loading_request
        self.check_data()
        self.data_loaded.emit(bundle)

    def _on_data_failed(self, text: str) -> None:
        if self.data_worker is None or self.data_worker.tag != self._load_gen:
            return
        self.dataset = None
        self.data_key = None
        self._loaded_request = None
        self.data_failed.emit(text)
        if self._train_when_loaded:
            self._train_when_loaded = False
            self.status_changed.emit("Not started: the data could not be loaded.")

    def _on_data_done(self) -> None:
        stop_thread(self.data_thread)
        self.data_thread = self.data_worker = None
        if self.data_fields()[0] and self.data_fields() != self._loading_request:
            self.load_data()  # the fields changed while this load ran: load what they show
        elif self._train_when_loaded:
            self._train_when_loaded = False
            if self.data_current:
                self.start()
        self.state_changed.emit()

    def check_data(self) -> list[Message]:
        """Compare the data with the network: `messages`, each with its quick fix."""
        self.messages = []
        if self.dataset is None:
            return []
        graph = self.doc.graph
        for m in engine_data.check_data(graph, self.dataset):
            fix = mismatch_fix(m, graph)
            self.messages.append(Message(ERROR if m.fatal else WARNING, m.text,
                                         fix.node_id if fix else None, None, fix))
        self.data_checked.emit()
        return self.messages

    def first_fix(self) -> Fix | None:
        return next((m.fix for m in self.messages if m.fix is not None), None)

    def apply_fix(self) -> bool:
        """Apply the first offered fix through the undo stack."""
        from .commands import ApplyFixCommand

        msg = next((m for m in self.messages if m.fix is not None), None)
        if msg is None:
            return False
        return self.doc.push(ApplyFixCommand(self.doc, msg))

    def _on_validated(self, *_) -> None:
        if self.dataset is None:
            return
        if (self.form.data_request().source == "images" and self.data_key is not None
                and (self.data_key[1] != self.input_shape()
                     or self.data_key[3] != data_spec(self.doc.graph))):
            self.load_data()  # image folders are prepared by the Input's shape and spec
        else:
            self.check_data()

    def _on_graph_reset(self) -> None:
        """Another network was opened: a running training belongs to the old one."""
        if self.training:
            self._discard = True
            self.stop()
        else:
            self._train_when_loaded = False

    # -- training --
    def start(self) -> bool:
        """Compile the network (continuing from the document's weights), lock the document and
        start the worker. Returns False (with the reason in the status line) if it can't."""
        if self.training or self._train_when_loaded:
            return False
        if not self.data_current and self.data_fields()[0]:
            # the fields ask for other data than what is loaded (or a load is running): load
            # it, then start; the click is not lost and what is shown is what trains
            if self.data_thread is None:
                self.load_data()
            if self.data_thread is not None:
                self._train_when_loaded = True
                n = self.data_fields()[1]
                self.status_changed.emit(f"Loading {'all' if not n else f'{n:,}'} images "
                                         f"first; training starts when they are ready.")
                self.state_changed.emit()
                return True
        if self.dataset is None:
            self.status_changed.emit("Load data first.")
            return False
        if self.check_data() and not self.data_fits:
            self.status_changed.emit("The data does not fit the network: "
                                     + self.messages[0].text)
            return False
        cfg = self.form.config()
        try:
            cfg.check()
            net = Network.compile(self.doc.graph, np.random.default_rng(cfg.seed))
            if self.doc.weights:
                net.load_state_dict(self.doc.weights, strict=False)
        except ValueError as exc:
            self.status_changed.emit(str(exc))
            return False
        tr = self.dataset.train
        x, y, xv, yv = split_validation(tr.x, tr.y, cfg.val_split,
                                        np.random.default_rng(cfg.seed))
        test = self.dataset.test
        sample = (xv if xv is not None and len(xv) else x)[:1].copy()
        job = TrainJob(net, x, y, cfg, xv, yv, test.x if test is not None else None,
                       test.y if test is not None else None, sample=sample,
                       watch_node=self.form.watched_node(), recorder=self._recorder())
        self.worker = TrainWorker(job, rate_hz=UPDATE_HZ)
        self.worker.batch_finished.connect(self._on_batch)
        self.worker.epoch_finished.connect(self._on_epoch)
        self.worker.snapshot_taken.connect(self._on_snapshot)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.done.connect(self._on_done)
        n_val = len(xv) if xv is not None else 0
        self.run = Run(cfg, len(x), n_val, max(1, math.ceil(len(x) / cfg.batch_size)), sample)
        self._discard = False
        self.doc.lock(LOCK_REASON)
        self.thread = start_worker(self.worker, self)
        self.status_changed.emit(f"Training on {len(x):,} images ({n_val:,} for "
                                 f"validation)…")
        self.state_changed.emit()
        # the worker's reports are queued: the plots are reset before the first one arrives
        self.run_started.emit(self.run)
        return True

    def _recorder(self) -> RunRecorder | None:
        """The recorder of the run about to start: the document's run store (P.runs.sqlite
        beside its project; untitled.runs.sqlite in the runs folder while it is unsaved)."""
        if not self.record_runs:
            return None
        req = self.form.data_request()
        tr, test = self.dataset.train, self.dataset.test
        info = {"source": req.spec, "name": tr.name, "classes": list(self.dataset.classes),
                "limit": req.limit or None, "test_images": 0 if test is None else len(test),
                "initial_weights": "document" if self.doc.weights else None}
        # status_changed is a signal: emitted from the worker thread, it is queued to the GUI
        return RunRecorder(runs_path(self.doc.path), self.doc.graph, info, source="gui",
                           project=self.doc.path, on_message=self.status_changed.emit)

    def set_watch_node(self, node_id: str | None) -> None:
        if self.worker is not None:
            self.worker.set_watch_node(node_id)

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.worker.paused:
            self.worker.resume()
            self.status_changed.emit("Training…")
        else:
            self.worker.pause()
            self.status_changed.emit("Paused (between batches). Resume or Stop.")
        self.state_changed.emit()

    def stop(self) -> None:
        if self._train_when_loaded:  # not started yet: cancel the start, let the load finish
            self._train_when_loaded = False
            self.status_changed.emit("Not started.")
            self.state_changed.emit()
        if self.worker is not None:
            self.worker.stop()
            self.status_changed.emit("Stopping after this batch…")

    def _on_batch(self, rep) -> None:
        self.batch_finished.emit(rep)

    def _on_epoch(self, rep, snap) -> None:
        self.epoch_finished.emit(rep, snap)

    def _on_snapshot(self, snap) -> None:
        self.snapshot_taken.emit(snap)

    def _on_finished(self, result: TrainResult) -> None:
        self.doc.unlock()
        if self._discard:
            self.run_discarded.emit()
            return
        self.doc.set_weights(result.state)
        hist = result.history.to_json()
        hist.update({"eval_set": result.eval_name, "eval_loss": result.eval_loss,
                     "eval_accuracy": result.eval_accuracy, "config": asdict(self.run.config)})
        self.doc.set_history(hist)
        self.run_finished.emit(result)

    def _on_failed(self, text: str) -> None:
        self.doc.unlock()
        self.run_failed.emit(text)

    def _on_done(self) -> None:
        rec = self.worker.job.recorder if self.worker is not None else None
        if rec is not None:
            self.run_recorded.emit(rec.store.path, rec.run_id)
        stop_thread(self.thread)
        self.thread = self.worker = None
        if self.doc.locked_reason == LOCK_REASON:
            self.doc.unlock()
        self.state_changed.emit()

    def shutdown(self) -> None:
        """Stop training and loading threads (window closing)."""
        if self.worker is not None:
            self.worker.stop()
        stop_thread(self.thread)
        stop_thread(self.data_thread)
        if self.doc.locked_reason == LOCK_REASON:
            self.doc.unlock()
