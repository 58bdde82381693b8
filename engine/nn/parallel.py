"""Data-parallel training steps: the batch cut into one shard per thread, each shard's forward
and backward run by its own copy of the layers (the weights shared, not copied), BatchNorm's
batch statistics and its gradient sums added up over the shards, each layer's weight
gradients added up as the shards hand them over (in place: one set of gradients in memory, not
one per shard). The result is the one-thread step's to float32 rounding (the same loss,
gradients and running statistics; Dropout draws its masks from a generator per shard). Two
shards give the same numbers on every run; with three or more, the order the shards' gradients
arrive in may change their sum's last bit.

Why: a training step is a chain of short calls into three thread pools (OpenBLAS, ONNX
Runtime, the kernels' split). Between calls their threads sleep, and waking one costs ~0.1 ms
on a 2-core VM, so a layer's 2-thread kernels scale poorly: small_resnet's step (batch 64) took
94 ms at 2 threads against 108 at 1. Two shards of 32, each on one thread with one-thread
kernels, keep both cores busy for the whole step (python bench/bench_nets.py).

The shards meet at every BatchNorm (its sums over the whole batch), and the one that gets
there first waits: ResNet-18's shards each idled 14-21 ms of a 160 ms step. A conv's weight
gradient is needed by no layer below it, so in a shard it is handed over for later
(Conv2d.defer): the input gradient goes on down, and the weight gradient is computed while
the shard would wait at the next BatchNorm, the rest after the backward (at most MAX_PENDING
kept at once). ResNet-18 and small_resnet steps 4% faster (interleaved A/B, 2 threads).

    runner = parallel.runner(net, batch_size)   # None: the plain step (one thread set)
    loss, logits = runner.step(x, y)            # grads in net.layers[id].grads, as backward

Used for steps of at least MIN_MACS multiply-adds (small nets lose more to the GIL and the
hand-offs than they gain) and with threadpoolctl, which holds OpenBLAS at one thread while the
shards run. A smaller step, with 2+ threads, gets a one-shard Runner: the whole step on this
thread with one-thread kernels and OpenBLAS held at one thread, for the same reason (mobile_se,
64 M multiply-adds at batch 64: 59 ms a step with 2-thread kernels, 43 ms on one thread).
CNND_PARALLEL=0 switches both off.
"""

from __future__ import annotations

import copy
import os
import threading

import numpy as np

from . import kernels
from .losses import softmax_cross_entropy

ENV = "CNND_PARALLEL"  # "0": one thread runs every training step
MIN_SHARD = 8  # samples per shard below which the batch is not cut
MAX_PENDING = 2  # deferred weight gradients a shard keeps at once: each holds its conv's input
# (or im2col) and output gradient; unbounded, ResNet-18's 2-thread peak RSS was 1.21x
# PyTorch's (bench_nets --memory-only), 1.13x with 2
MIN_MACS = 300e6  # forward multiply-adds of a step below which one thread runs it:
# LeNet-5 (27 M at batch 64) and mobile_se (64 M) are slower in shards; small_resnet (870 M)
# steps in 71 ms in two shards against 109 ms on one thread
_CONTROLLER = None
_CONTROLLER_LOCK = threading.Lock()


def _blas_controller():
    """threadpoolctl's controller (found once), or None where it is not installed."""
    global _CONTROLLER
    with _CONTROLLER_LOCK:
        if _CONTROLLER is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # pragma: no cover - a dependency
                _CONTROLLER = False
            else:
                _CONTROLLER = ThreadpoolController()
    return _CONTROLLER or None


def shard_count(net, batch_size: int) -> int:
    """How many shards a training step of `batch_size` samples runs in (1: not cut)."""
    if os.environ.get(ENV, "").strip() == "0":
        return 1
    n = min(kernels.threads(), batch_size // MIN_SHARD)
    if n < 2 or net.validation.macs * batch_size < MIN_MACS:
        return 1
    return n


def runner(net, batch_size: int) -> Runner | None:
    """A Runner for training `net` at `batch_size` (in shards, or with one shard on one
    thread: see the module's docstring), or None where the plain step runs (one thread
    configured, CNND_PARALLEL=0, no threadpoolctl)."""
    if kernels.threads() < 2 or os.environ.get(ENV, "").strip() == "0" \
            or _blas_controller() is None:
        return None
    return Runner(net, shard_count(net, batch_size))


class _Sums:
    """Adds up per-shard arrays: every shard calls add(k, arrays) and gets the totals, summed in
    shard order (the same on every shard). A shard goes on once every shard has handed its
    arrays over; while it waits it may do deferred work (`busy`). Two alternating slots: a
    shard cannot be two calls ahead of another, since each call waits for all of them."""

    def __init__(self, n: int):
        self.cond = threading.Condition()
        self.slots = [[None] * n, [None] * n]
        self.calls = [0] * n
        self.posted = [0] * n  # per shard: how many calls it has handed its arrays to
        self.broken = False

    def add(self, k: int, arrays: tuple, busy=None) -> tuple:
        c = self.calls[k] + 1
        self.calls[k] = c
        slot = self.slots[c % 2]
        with self.cond:
            slot[k] = arrays
            self.posted[k] = c
            self.cond.notify_all()

        def ready():
            return self.broken or min(self.posted) >= c

        while busy is not None and not ready() and busy():
            pass  # one piece of deferred work done; the others have not all arrived yet
        with self.cond:
            self.cond.wait_for(ready)
        if self.broken:
            raise threading.BrokenBarrierError
        total = list(slot[0])
        for other in slot[1:]:
            total = [a + b for a, b in zip(total, other)]
        return tuple(total)

    def abort(self) -> None:
        """The other shards stop waiting (a shard failed): their add() raises."""
        with self.cond:
            self.broken = True
            self.cond.notify_all()


class ShardSync:
    """What a layer that couples the samples of a batch (BatchNorm) sees during a sharded
    step: its shard `k`, and add() to total its partial sums with the other shards'; and what
    a conv hands its weight gradient to for later (later(): run while this shard would wait
    at an add(), the rest by finish())."""

    def __init__(self, sums: _Sums, k: int, done=None):
        self.sums, self.k = sums, k
        self.pending: list = []  # (layer, work) in the order handed over
        self.done = done  # done(layer) after its deferred work: the gradients are in

    @property
    def first(self) -> bool:  # the shard that writes what is written once (running stats)
        return self.k == 0

    def add(self, *arrays: np.ndarray) -> tuple:
        return self.sums.add(self.k, arrays, busy=self._one)

    def later(self, layer, work) -> None:
        self.pending.append((layer, work))
        while len(self.pending) > MAX_PENDING:  # the oldest now: what it holds is let go
            self._one()

    def _one(self) -> bool:
        if not self.pending:
            return False
        layer, work = self.pending.pop(0)
        work()
        if self.done is not None:
            self.done(layer)
        return True

    def finish(self) -> None:
        while self._one():
            pass


class Runner:
    def __init__(self, net, n: int):
        self.net, self.n = net, n
        self.replicas = [_replica(net, k) for k in range(1, n)]

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward, softmax cross-entropy and backward (weight gradients only) of one batch in
        shards; returns (mean loss, logits (N, ...)) as one thread would."""
        n = min(self.n, len(x) // MIN_SHARD) if len(x) >= 2 * MIN_SHARD else 1
        net = self.net
        if n < 2:  # on this thread alone: no pool thread to wake at each call
            with kernels.one_thread(), _blas_controller().limit(limits=1, user_api="blas"):
                z = net.forward(x, training=True, logits=True)
                loss, dz = softmax_cross_entropy(z, y)
                net.backward(dz, from_logits=True, input_grad=False)
            return loss, z
        bounds = [len(x) * k // n for k in range(n + 1)]
        nets = [net] + self.replicas[:n - 1]
        for r in nets[1:]:
            _follow(r, net)
        sums = _Sums(n)
        sync_ids = [nid for nid, layer in net.layers.items()
                    if getattr(layer, "syncs_batch", False)]
        defer_ids = [nid for nid, layer in net.layers.items() if hasattr(layer, "defer")]
        out: list = [None] * n
        # each layer's weight gradients, added up as the shards hand them over: the first
        # shard's arrays take the others' in place (one set of gradients, not one per shard)
        summed: dict[str, dict[str, np.ndarray]] = {}
        lock = threading.Lock()

        def collect(nid, layer):
            if not layer.grads:
                return
            with lock:
                have = summed.setdefault(nid, {})
                for key, g in layer.grads.items():
                    h = have.get(key)
                    if h is None:
                        have[key] = g
                    elif h.flags.writeable and h.shape == g.shape and h.dtype == g.dtype:
                        np.add(h, g, out=h)
                    else:
                        have[key] = h + g
            layer.grads = {}

        def shard(k):
            lo, hi = bounds[k], bounds[k + 1]
            part = nets[k]
            ids = {id(layer): nid for nid, layer in part.layers.items()}
            sync = ShardSync(sums, k, done=lambda layer: collect(ids[id(layer)], layer))
            try:
                with kernels.one_thread():
                    for nid in sync_ids:
                        part.layers[nid].shard = sync
                    for nid in defer_ids:
                        part.layers[nid].defer = sync
                    z = part.forward(x[lo:hi], training=True, logits=True)
                    loss, dz = softmax_cross_entropy(z, y[lo:hi])
                    dz *= np.float32((hi - lo) / len(x))
                    part.backward(dz, from_logits=True, input_grad=False,
                                  on_grads=collect)
                    sync.finish()  # the deferred weight gradients not done while waiting
                out[k] = (loss * (hi - lo) / len(x), z)
            except BaseException as exc:  # noqa: BLE001 - handed back, raised below
                sums.abort()  # the other shards stop waiting for this one
                out[k] = exc
            finally:
                sync.pending.clear()  # a failed shard's deferred work holds activations
                for nid in sync_ids:
                    part.layers[nid].shard = None
                for nid in defer_ids:
                    part.layers[nid].defer = None

        with _blas_controller().limit(limits=1, user_api="blas"):
            kernels.in_parallel(shard, n)
        errors = [o for o in out if isinstance(o, BaseException)]
        if errors:  # the shard that failed first, not one that only saw the barrier break
            raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)),
                       errors[0])
        for nid, got in summed.items():  # the whole batch's weight gradients
            net.layers[nid].grads = got
        loss = float(sum(o[0] for o in out))
        return loss, np.concatenate([o[1] for o in out])


def _replica(net, k: int):
    """A copy of `net` whose layers share its weights (the same dicts) but keep their own
    gradients, caches and work arrays; Dropout gets a generator of its own (seeded from the
    layer's, so a seeded training stays reproducible)."""
    r = copy.copy(net)
    r.layers = {}
    for nid, layer in net.layers.items():
        c = copy.copy(layer)
        c.grads = {}
        c.__dict__.pop("_cache", None)
        c.__dict__.pop("_scratch", None)
        rng = layer.__dict__.get("rng")
        if isinstance(rng, np.random.Generator):
            c.rng = np.random.default_rng([int(rng.integers(1 << 62)), k])
        r.layers[nid] = c
    r.timings = None
    r._fp_cache = None
    return r


def _follow(replica, net) -> None:
    """Bring a replica in line with the net: each layer's frozen flag and weights dict, and
    gradients_only()'s switch."""
    for nid, layer in net.layers.items():
        c = replica.layers[nid]
        c.frozen = layer.frozen
        c.weights = layer.weights
    replica._through_frozen = net._through_frozen
    replica._fp_cache = None
