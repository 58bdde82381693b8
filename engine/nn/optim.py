"""Optimizers: SGD with momentum and Adam, both with (L2) weight decay, updating in place."""

from __future__ import annotations

import numpy as np

from . import kernels
from .network import Parameter


class Optimizer:
    def __init__(self, params: list[Parameter], lr: float, weight_decay: float = 0.0):
        self.params = params
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def _grad(self, p: Parameter) -> np.ndarray | None:
        g = p.grad
        if g is None:
            return None
        if self.weight_decay and p.name not in ("bias",) and p.value.ndim > 1:
            g = g + np.float32(self.weight_decay) * p.value  # decay weights, not biases / BN
        return g

    def step(self) -> None:
        raise NotImplementedError

    def _each(self, update) -> None:
        """update(p) for every parameter with a gradient; with several threads and at least
        SPLIT_PARAMS values, the parameters are dealt into one group per thread (by size) and
        the groups run at once: the updates are passes over memory that NumPy runs without
        the GIL, bound by one core's bandwidth (ResNet-18's Adam: 37 ms on one thread)."""
        todo = [p for p in self.params if p.grad is not None]
        n = min(kernels.threads(), len(todo))
        if n < 2 or sum(p.value.size for p in todo) < SPLIT_PARAMS:
            for p in todo:
                update(p)
            return
        groups, loads = [[] for _ in range(n)], [0] * n
        for p in sorted(todo, key=lambda p: -p.value.size):  # biggest first, to the lightest
            k = loads.index(min(loads))
            groups[k].append(p)
            loads[k] += p.value.size
        kernels.in_parallel(lambda k: [update(p) for p in groups[k]], n)


class SGD(Optimizer):
    """v ← μ·v + g;  w ← w − lr·v   (PyTorch's form of momentum)."""

    def __init__(self, params, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = float(momentum)

    def step(self):
        lr, mu = np.float32(self.lr), np.float32(self.momentum)
        for p in self.params:  # the state first: the updates may run in several threads
            if mu and p.grad is not None:
                self.state.setdefault(p.key, {})
        self._each(lambda p: self._update(p, lr, mu))

    def _update(self, p, lr, mu):
        g = self._grad(p)
        if g is not None:
            if mu:
                v = self.state.setdefault(p.key, {}).get("v")
                if v is None:
                    v = self.state[p.key]["v"] = g.astype(np.float32, copy=True)
                else:
                    v *= mu
                    v += g
                g = v
            p.value[...] -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = np.float32(self.b1), np.float32(self.b2)
        corr = np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        step = np.float32(self.lr * corr)
        eps = np.float32(self.eps)
        for p in self.params:  # the state first: the updates may run in several threads
            if p.grad is None:
                continue
            st = self.state.setdefault(p.key, {})
            if "m" not in st:
                st["m"] = np.zeros_like(p.value)
                st["v"] = np.zeros_like(p.value)
        self._each(lambda p: self._update(p, b1, b2, step, eps))

    def _update(self, p, b1, b2, step, eps):
        g = self._grad(p)
        st = self.state[p.key]
        w = p.value
        if kernels.adam_update(w, g, st["m"], st["v"], b1, b2, step, eps):  # one pass
            return
        if not (w.flags.c_contiguous and g.flags.c_contiguous):
            _adam_update(w, g, st["m"], st["v"], b1, b2, step, eps)
            return
        # in chunks of ~1 MB: the ten passes over each chunk stay in cache, and the two
        # temporaries are 1 MB, not two copies of the biggest weight (ResNet-18: 19 MB)
        wf, gf, mf, vf = w.reshape(-1), g.reshape(-1), st["m"].reshape(-1), st["v"].reshape(-1)
        for i in range(0, wf.size, ADAM_CHUNK):
            j = i + ADAM_CHUNK
            _adam_update(wf[i:j], gf[i:j], mf[i:j], vf[i:j], b1, b2, step, eps)


ADAM_CHUNK = 1 << 18  # elements per Adam update pass (1 MB of float32)
SPLIT_PARAMS = 1 << 20  # parameters below which one thread updates them all


def _adam_update(w, g, m, v, b1, b2, step, eps) -> None:
    """In place, with two temporaries instead of eight; the same float32 rounding as
    m = b1·m + (1 − b1)·g;  v = b2·v + (1 − b2)·g²;  w −= step·m / (√v + eps)."""
    tmp, den = np.multiply(g, 1 - b1), np.empty_like(v)
    m *= b1
    m += tmp
    np.multiply(g, g, out=tmp)
    tmp *= 1 - b2
    v *= b2
    v += tmp
    np.sqrt(v, out=den)
    den += eps
    np.multiply(m, step, out=tmp)
    tmp /= den
    w -= tmp


# the learning rate each optimizer gets when none is given (TrainConfig.lr None, the CLI's and
# the GUI's defaults)
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}


def make_optimizer(name: str, params, lr: float | None = None, weight_decay: float = 0.0,
                   momentum: float = 0.9) -> Optimizer:
    name = name.lower()
    if name == "sgd":
        return SGD(params, lr=DEFAULT_LR["sgd"] if lr is None else lr, momentum=momentum,
                   weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=DEFAULT_LR["adam"] if lr is None else lr,
                    weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")
