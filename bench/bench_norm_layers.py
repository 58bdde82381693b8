"""Forward and backward time of the modern building blocks against PyTorch CPU, batch 64.

    python bench/bench_norm_layers.py            # 7 repeats
    python bench/bench_norm_layers.py --quick    # 3 repeats
    python bench/bench_norm_layers.py --threads 1

Each layer runs on the same N×C×H×W input as its PyTorch twin (LayerNorm2d: ConvNeXt's
permute -> nn.LayerNorm -> permute; GroupNorm: nn.GroupNorm; Scale: x * γ.view(-1, 1, 1);
ReduceMean / ReduceMax: torch.mean / torch.amax; GlobalMaxPool2d: nn.AdaptiveMaxPool2d(1);
Flatten(2): nn.Flatten(2); Linear over the last axis: nn.Linear on the 4-D tensor). Engine and
PyTorch take turns inside every repeat (interleaved, so a burst of load hits both); the table
gives medians in ms and the ratio engine / PyTorch (goal: at most 2×). Training mode (forward
caches for backward); backward includes the weight gradients.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.layers import REGISTRY

N = 64
CASES = [  # (label, type, params, C×H×W)
    ("LayerNorm2d", "LayerNorm2d", {}, (96, 28, 28)),
    ("GroupNorm 32", "GroupNorm", {"num_groups": 32}, (128, 28, 28)),
    ("Scale", "Scale", {}, (96, 28, 28)),
    ("ReduceMean H,W", "ReduceMean", {}, (256, 14, 14)),
    ("ReduceMean C", "ReduceMean", {"axes": "C"}, (64, 28, 28)),
    ("ReduceMax C", "ReduceMax", {"axes": "C"}, (64, 28, 28)),
    ("GlobalMaxPool2d", "GlobalMaxPool2d", {}, (256, 14, 14)),
    ("Flatten(2)", "Flatten", {"start_dim": 2}, (96, 28, 28)),
    ("Linear last axis", "Linear", {"out_features": 96, "over": "last_axis"}, (32, 28, 96)),
]


def torch_twin(torch, type_name, layer, shape):
    nn = torch.nn
    w = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in layer.weights.items()}
    p = layer.values
    if type_name == "LayerNorm2d":
        ln = nn.LayerNorm(shape[0], eps=p["eps"])
        return lambda t: ln(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    if type_name == "GroupNorm":
        return nn.GroupNorm(p["num_groups"], shape[0], eps=p["eps"], affine=p["affine"])
    if type_name == "Scale":
        return lambda t: t * w["weight"].view(-1, 1, 1)
    if type_name in ("ReduceMean", "ReduceMax"):
        from engine.layers.reduce import AXES

        dims = tuple(a + 1 for a in AXES[p["axes"]])
        fn = torch.mean if type_name == "ReduceMean" else torch.amax
        return lambda t: fn(t, dim=dims, keepdim=p["keep_dims"])
    if type_name == "GlobalMaxPool2d":
        return nn.AdaptiveMaxPool2d(1)
    if type_name == "Flatten":
        return nn.Flatten(p["start_dim"])
    if type_name == "Linear":
        return nn.Linear(shape[-1], p["out_features"])
    raise AssertionError(type_name)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    ap.add_argument("--threads", type=int, default=2, help="BLAS and PyTorch threads")
    args = ap.parse_args()
    repeats = 3 if args.quick else 7
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("PyTorch is not installed: engine times only")

    rng = np.random.default_rng(0)
    print(f"batch {N}, {repeats} repeats, {args.threads} thread(s); medians in ms")
    print(f"{'layer':18} {'shape':>10} {'fwd':>7} {'torch':>7} {'ratio':>6} "
          f"{'bwd':>7} {'torch':>7} {'ratio':>6}")
    for label, type_name, params, shape in CASES:
        layer = REGISTRY[type_name]("b", **params)
        layer.output_shape([shape])
        layer.init_weights([shape], rng)
        x = rng.standard_normal((N,) + shape).astype(np.float32)
        y = layer.forward([x], training=True)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        layer.backward(dy)
        twin = torch_twin(torch, type_name, layer, shape) if torch else None
        times = {k: [] for k in ("f", "b", "tf", "tb")}
        for _ in range(repeats):
            times["f"].append(timed(lambda lr=layer, x=x: lr.forward([x], training=True)))
            times["b"].append(timed(lambda lr=layer, dy=dy: lr.backward(dy)))
            if twin is not None:
                xt = torch.from_numpy(x).requires_grad_(True)
                dyt = torch.from_numpy(dy)
                out = {}
                times["tf"].append(timed(lambda o=out, f=twin, t=xt: o.setdefault("y", f(t))))
                times["tb"].append(timed(lambda o=out, d=dyt: o["y"].backward(d)))
        med = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
        rf, rb = med["f"] / med["tf"], med["b"] / med["tb"]
        dims = "×".join(map(str, shape))
        print(f"{label:18} {dims:>10} {med['f']:7.2f} {med['tf']:7.2f} {rf:5.2f}× "
              f"{med['b']:7.2f} {med['tb']:7.2f} {rb:5.2f}×")


if __name__ == "__main__":
    main()
