"""Forward and backward time of the modern layers against PyTorch CPU, same shapes, same run.

    python bench/bench_layers.py [--quick] [--threads N] [--shape 64,32,28,28]

Layers: SiLU, HardSigmoid, HardSwish, GELU (exact and tanh), ELU, PReLU (per channel),
Multiply and Add with a squeeze-and-excitation gate (N×C×1×1 against N×C×H×W). Each repeat
times the engine and PyTorch back to back (interleaved, so a load swing on this shared machine
hits both) and the figures are medians. The ratio is engine / PyTorch: the goal is ≤ 2 for every
layer. PyTorch runs on `--threads` threads (default 1: the engine's NumPy element-wise code is
single-threaded, so one thread compares the kernels, not the core count); forward is measured
under `torch.no_grad()`, backward as autograd's backward of a forward with grad enabled, the
engine's as `layer.backward` after a training forward.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.layers import REGISTRY

CASES = [  # (label, type, params, torch function name)
    ("SiLU", "SiLU", {}, "silu"),
    ("HardSigmoid", "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, "hardsigmoid"),
    ("HardSwish", "HardSwish", {}, "hardswish"),
    ("GELU", "GELU", {}, "gelu"),
    ("GELU tanh", "GELU", {"approximate": "tanh"}, "gelu_tanh"),
    ("ELU", "ELU", {}, "elu"),
    ("PReLU (C)", "PReLU", {"num_parameters": -1}, "prelu"),
    ("Multiply (SE)", "Multiply", {}, "mul"),
    ("Add (bcast)", "Add", {}, "add"),
]


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() over `repeats` calls."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 repeats instead of 15")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    ap.add_argument("--shape", default="64,32,28,28", help="N,C,H,W (default 64,32,28,28)")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    n, c, h, w = (int(v) for v in args.shape.split(","))
    repeats = 5 if args.quick else 15
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, c, h, w)) * 2).astype(np.float32)
    gate = rng.uniform(0, 1, (n, c, 1, 1)).astype(np.float32)
    dy = rng.standard_normal((n, c, h, w)).astype(np.float32)
    print(f"input {n}×{c}×{h}×{w} float32, PyTorch {torch.__version__} on {args.threads} "
          f"thread(s), {repeats} interleaved repeats, medians in ms")
    print(f"{'layer':<15}{'fwd ours':>10}{'fwd torch':>10}{'ratio':>7}"
          f"{'bwd ours':>10}{'bwd torch':>10}{'ratio':>7}")
    for label, type_name, params, fn in CASES:
        bench_case(label, type_name, params, fn, x, gate, dy, rng, repeats, torch, F)


def bench_case(label, type_name, params, fn, x, gate, dy, rng, repeats, torch, F) -> None:
    """Time one layer against its PyTorch function, interleaved, and print one row."""
    c = x.shape[1]
    if params.get("num_parameters") == -1:
        params = {"num_parameters": c}
    layer = REGISTRY[type_name]("x", **params)
    merge = type_name in ("Multiply", "Add")
    xs = [x, gate] if merge else [x]
    layer.init_weights([s.shape[1:] for s in xs], rng)
    tx = torch.from_numpy(x.copy())
    tg = torch.from_numpy(gate.copy())
    tw = torch.full((c,), 0.25)
    tdy = torch.from_numpy(dy.copy())

    def torch_fwd(a, b):
        if fn == "prelu":
            return F.prelu(a, tw)
        if fn == "gelu_tanh":
            return F.gelu(a, approximate="tanh")
        if fn in ("mul", "add"):
            return a * b if fn == "mul" else a + b
        return getattr(F, fn)(a)

    def ours_fwd():
        layer.forward(xs)

    def theirs_fwd():
        with torch.no_grad():
            torch_fwd(tx, tg)

    def ours_bwd():
        layer.forward(xs, training=True)
        layer.backward(dy)

    def theirs_bwd():
        a = tx.clone().requires_grad_(True)
        b = tg.clone().requires_grad_(True)
        torch_fwd(a, b).backward(tdy)

    ours_f, theirs_f, ours_b, theirs_b = [], [], [], []
    for _ in range(repeats):  # interleaved: one of each per round
        ours_f.append(timed(ours_fwd, 1))
        theirs_f.append(timed(theirs_fwd, 1))
        # backward alone = (forward + backward) − forward, both sides alike
        ours_b.append(timed(ours_bwd, 1) - timed(ours_fwd, 1))
        theirs_b.append(timed(theirs_bwd, 1) - timed(theirs_fwd, 1))
    of, tf = statistics.median(ours_f) * 1e3, statistics.median(theirs_f) * 1e3
    ob, tb = statistics.median(ours_b) * 1e3, statistics.median(theirs_b) * 1e3
    print(f"{label:<15}{of:>10.2f}{tf:>10.2f}{of / tf:>7.2f}"
          f"{ob:>10.2f}{tb:>10.2f}{ob / max(tb, 1e-6):>7.2f}")


if __name__ == "__main__":
    main()
