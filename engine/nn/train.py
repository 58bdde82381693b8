"""The training loop: mini-batches, softmax cross-entropy, an optimizer, callbacks, cancel.

A plain loop that reports through callbacks, so the CLI prints a progress bar and the GUI runs
it in a worker thread. A NaN / infinite loss or gradient stops training before the update, so
the weights kept are the last good ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import TrainingError
from . import parallel
from .inference import infer
from .losses import softmax_cross_entropy
from .network import Network
from .optim import DEFAULT_LR, make_optimizer

SCHEDULES = ("cosine", "constant")


def scheduled_lr(base: float, schedule: str, step: int, total: int) -> float:
    """Learning rate for `step` (0-based) of `total`: constant, or cosine-annealed to 0."""
    if schedule == "constant" or total <= 1:
        return base
    return 0.5 * base * (1.0 + math.cos(math.pi * step / total))


@dataclass
class TrainConfig:
    """One training run's hyperparameters. Its defaults are the only ones: the command line's
    options (engine.cli.common.add_training_options) and the training panel's fields start
    from `TrainConfig()`."""

    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adam"  # "sgd" (with momentum) or "adam"
    lr: float | None = None  # None: 0.01 for SGD, 0.001 for Adam
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    val_split: float = 0.1  # fraction of the training data held out for validation
    shuffle: bool = True
    # "cosine" anneals the learning rate to 0 over the run (Loshchilov & Hutter, 2017): the
    # last epochs take small steps, worth ~0.3-0.5 points of MNIST accuracy over "constant"
    schedule: str = "cosine"

    @property
    def effective_lr(self) -> float:
        """The learning rate the optimizer gets: `lr`, or the optimizer's default when None."""
        return DEFAULT_LR[str(self.optimizer).lower()] if self.lr is None else self.lr

    def check(self) -> None:
        for name, v in (("epochs", self.epochs), ("batch size", self.batch_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be a whole number, got {v!r}")  # noqa: TRY004
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}")
        if not 0 <= self.val_split < 1:
            raise ValueError(f"validation split must be in [0, 1), got {self.val_split}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"learning-rate schedule must be one of {', '.join(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if str(self.optimizer).lower() not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight decay must be a number >= 0, got {self.weight_decay}")


@dataclass
class BatchReport:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    loss: float
    accuracy: float
    images_per_s: float
    seconds_left: float


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    images_per_s: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class History:
    epochs: list[EpochReport] = field(default_factory=list)
    stopped: str | None = None  # None: finished; "cancelled"; or the problem that stopped it
    seconds: float = 0.0
    # with early stopping (train(patience=...)): the epoch whose weights were kept (1-based),
    # and whether training ended before the last epoch for lack of progress
    best_epoch: int | None = None
    stopped_early: bool = False

    def to_json(self) -> dict:
        out = {"epochs": [e.to_json() for e in self.epochs], "stopped": self.stopped,
               "seconds": self.seconds}
        if self.best_epoch is not None:
            out.update(best_epoch=self.best_epoch, stopped_early=self.stopped_early)
        return out


def split_validation(x, y, fraction: float, rng: np.random.Generator):
    """Hold out a random `fraction` of (x, y) for validation."""
    n_val = round(len(x) * fraction)
    if n_val == 0:
        return x, y, None, None
    perm = rng.permutation(len(x))
    va, tr = perm[:n_val], perm[n_val:]
    return x[tr], y[tr], x[va], y[va]


def check_labels(net: Network, x: np.ndarray, y: np.ndarray | None, what: str = "") -> None:
    """TrainingError unless `y` holds one class number in [0, classes) per image of `x`."""
    if y is None or len(x) != len(y):
        raise TrainingError(f"there are {len(x)} {what}images but "
                            f"{0 if y is None else len(y)} {what}labels")
    n_out = int(np.prod(net.output_shape))
    if len(y) and int(y.max()) >= n_out:
        raise TrainingError(f"the {what}labels go up to {int(y.max())} but the network's output "
                            f"'{net.graph.nodes[net.output_id].name}' has {n_out} classes; "
                            f"set its size to at least {int(y.max()) + 1}")
    if len(y) and int(y.min()) < 0:
        raise TrainingError(f"{what}labels must be class numbers 0, 1, 2, ...; "
                            f"got {int(y.min())}")


def evaluate(net: Network, x: np.ndarray, y: np.ndarray, batch_size: int = 256
             ) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, predicted classes) of the network in inference mode."""
    check_labels(net, x, y)
    zs = infer(net, x, batch_size, logits=True)  # ONNX Runtime where it runs the design
    total, preds = 0.0, []
    for i in range(0, len(x), batch_size):
        z = zs[i:i + batch_size]
        loss, _ = softmax_cross_entropy(z, y[i:i + batch_size])
        total += loss * len(z)
        preds.append(z.reshape(len(z), -1).argmax(axis=1))
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    n = max(len(x), 1)
    return total / n, float((pred == y).mean()) if len(y) else 0.0, pred


def train(net: Network, x: np.ndarray, y: np.ndarray, config: TrainConfig,
          x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
          on_batch: Callable[[BatchReport], None] | None = None,
          on_epoch: Callable[[EpochReport], None] | None = None,
          should_stop: Callable[[], bool] | None = None, recorder=None,
          batch_transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
          patience: int | None = None) -> History:
    """Train `net` in place on (N, C, H, W) float32 images `x` and (N,) int labels `y`.

    Without x_val, `config.val_split` of the data is held out. `should_stop` is polled before
    every batch (the GUI's cancel); training then stops within one batch.
    `batch_transform(xb, rng)` turns each training batch into what the network takes (random
    augmentation; features of a frozen part), with its own generator seeded from config.seed;
    validation images go in as they are. `patience`: early stopping on validation accuracy:
    training ends after `patience` epochs without a better one, and the best epoch's weights
    (and BatchNorm statistics) are put back in `net` (history.best_epoch). A `recorder`
    (engine.runs.RunRecorder) records the run: begin() before the first batch, epoch() after
    each epoch (before on_epoch, so a crash in a callback loses nothing), end() however the run
    ends.
    """
    try:
        history = _train(net, x, y, config, x_val, y_val, on_batch, on_epoch, should_stop,
                         recorder, batch_transform, patience)
    except BaseException as exc:  # a second Ctrl+C, a bug: the run is marked, then re-raised
        if recorder is not None:
            recorder.abort(str(exc) or type(exc).__name__)
        raise
    if recorder is not None:
        recorder.end(history)
    return history


def _train(net, x, y, config, x_val, y_val, on_batch, on_epoch, should_stop, recorder,
           batch_transform=None, patience=None) -> History:
    config.check()
    if patience is not None and (isinstance(patience, bool) or int(patience) != patience
                                 or patience < 1):
        raise ValueError(f"patience must be a whole number of epochs >= 1, got {patience!r}")
    check_labels(net, x, y)
    if x_val is not None:
        check_labels(net, x_val, y_val, "validation ")
    rng = np.random.default_rng(config.seed)
    if x_val is None:
        x, y, x_val, y_val = split_validation(x, y, config.val_split, rng)
    if patience is not None and (x_val is None or not len(x_val)):
        raise TrainingError(f"early stopping (patience {patience}) watches the validation "
                            f"accuracy, but there are no validation images; hold some out "
                            f"(a validation split above 0)")
    aug_rng = np.random.default_rng([config.seed, 1])  # apart: the shuffles stay the same
    best_acc, best_state = -1.0, None
    params = net.parameters()
    if not params:
        raise TrainingError("nothing to train: every layer with weights is frozen")
    opt = make_optimizer(config.optimizer, params, config.lr, config.weight_decay,
                         config.momentum)
    base_lr = opt.lr
    history = History()
    if recorder is not None:
        recorder.begin(net, config, len(x), 0 if x_val is None else len(x_val))
    # buffers (BatchNorm running statistics) change in forward: restored if a batch goes bad
    buffers = {f"{layer.name}.{k}": a for layer in net.layers.values()
               for k, a in layer.weights.items()
               if not layer.trainable_flags.get(k, True)}
    bs = config.batch_size
    sharded = parallel.runner(net, min(bs, len(x)))  # None: the plain step (one thread)
    batches = max(1, math.ceil(len(x) / bs))
    total_steps = batches * config.epochs
    t_start = time.perf_counter()
    steps_done = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(x)) if config.shuffle else np.arange(len(x))
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(batches):
            if should_stop is not None and should_stop():
                history.stopped = "cancelled"
                history.seconds = time.perf_counter() - t_start
                return history
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = x[idx], y[idx]
            if batch_transform is not None:
                xb = batch_transform(xb, aug_rng)
            saved = [a.copy() for a in buffers.values()]
            if sharded is not None:  # forward, loss and backward in shards (nn/parallel.py)
                loss, z = sharded.step(xb, yb)
            else:
                z = net.forward(xb, training=True, logits=True)
                loss, dz = softmax_cross_entropy(z, yb)
            bad_buf = next((k for k, a in buffers.items() if not np.isfinite(a).all()), None)
            if bad_buf is not None:
                _restore(buffers, saved)
                return _stop(history, t_start, f"'{bad_buf}' became infinite in epoch {epoch}, "
                             f"batch {b + 1}; training stopped and the last good weights were "
                             f"kept. Try a smaller learning rate (now {base_lr:g}).")
            if not math.isfinite(loss):
                _restore(buffers, saved)
                return _stop(history, t_start, f"the loss became {loss} in epoch {epoch}, batch "
                             f"{b + 1}; training stopped and the last good weights were kept. "
                             f"Try a smaller learning rate (now {base_lr:g}).")
            if sharded is None:
                net.backward(dz, from_logits=True, input_grad=False)  # weight grads only
            bad = next((p for p in params if p.grad is not None
                        and not np.isfinite(p.grad).all()), None)
            if bad is not None:
                _restore(buffers, saved)
                return _stop(history, t_start, f"the gradient of '{bad.layer.name}.{bad.name}' "
                             f"became infinite in epoch {epoch}, batch {b + 1}; training "
                             f"stopped and the last good weights were kept. Try a smaller "
                             f"learning rate (now {base_lr:g}).")
            opt.lr = scheduled_lr(base_lr, config.schedule, steps_done, total_steps)
            opt.step()
            n = len(idx)
            loss_sum += loss * n
            correct += int((z.reshape(n, -1).argmax(axis=1) == yb).sum())
            seen += n
            steps_done += 1
            if on_batch is not None:
                elapsed = time.perf_counter() - t_start
                on_batch(BatchReport(epoch, config.epochs, b + 1, batches, loss, correct / seen,
                                     seen / max(time.perf_counter() - t0, 1e-9),
                                     elapsed / steps_done * (total_steps - steps_done)))
        secs = time.perf_counter() - t0
        val_loss = val_acc = None
        if x_val is not None and len(x_val):
            val_loss, val_acc, _ = evaluate(net, x_val, y_val)
        rep = EpochReport(epoch, config.epochs, loss_sum / max(seen, 1), correct / max(seen, 1),
                          val_loss, val_acc, secs, seen / max(secs, 1e-9))
        history.epochs.append(rep)
        if recorder is not None:
            recorder.epoch(rep, net)
        if on_epoch is not None:
            on_epoch(rep)
        if patience is not None:
            if val_acc > best_acc:
                best_acc, history.best_epoch = val_acc, epoch
                best_state = _trained_state(net)
            elif epoch - history.best_epoch >= patience:
                history.stopped_early = epoch < config.epochs
                break
    if best_state is not None:
        net.load_state_dict(best_state, strict=False)
    history.seconds = time.perf_counter() - t_start
    return history


def _trained_state(net: Network) -> dict[str, np.ndarray]:
    """Copies of what training changes: the weights and buffers of layers that are not frozen."""
    return {f"{nid}.{k}": a.copy() for nid, layer in net.layers.items() if not layer.frozen
            for k, a in layer.weights.items()}


def _restore(buffers: dict[str, np.ndarray], saved: list[np.ndarray]) -> None:
    for a, s in zip(buffers.values(), saved):
        a[...] = s


def _stop(history: History, t_start: float, why: str) -> History:
    history.stopped = why
    history.seconds = time.perf_counter() - t_start
    return history
