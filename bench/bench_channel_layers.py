"""Forward / backward of the channel and upsampling layers against PyTorch CPU, same shapes.

    python bench/bench_channel_layers.py              # batch 64, 7 repeats, 2 threads
    python bench/bench_channel_layers.py --threads 1 --repeats 5

ChannelShuffle, ChannelSplit, ConvTranspose2d (k2 s2, and k3 s2 p1 op1) and Upsample (nearest
and bilinear ×2) at batch 64 on 32-channel 16×16 maps (ConvTranspose2d: 32 -> 16 channels).
Engine and PyTorch take turns inside every repeat, so a burst of load on this shared machine
hits both sides of a ratio; the table gives medians (ms) and the ratio engine / PyTorch.
Goal: no ratio above 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from engine.layers import REGISTRY

SHAPE = (32, 16, 16)
CASES = [
    ("ChannelShuffle g4", "ChannelShuffle", {"groups": 4}),
    ("ChannelSplit 2", "ChannelSplit", {"sections": 2}),
    ("ConvTranspose2d k2 s2", "ConvTranspose2d", {"out_channels": 16, "kernel_size": 2,
                                                  "stride": 2}),
    ("ConvTranspose2d k3 s2 p1 op1", "ConvTranspose2d",
     {"out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),
    ("Upsample nearest ×2", "Upsample", {"mode": "nearest", "scale_factor": 2}),
    ("Upsample bilinear ×2", "Upsample", {"mode": "bilinear", "scale_factor": 2}),
]


def torch_twin(torch, type_name, params, layer):
    nn = torch.nn
    if type_name == "ChannelShuffle":
        return nn.ChannelShuffle(params["groups"])
    if type_name == "ChannelSplit":
        return lambda x: torch.chunk(x, params["sections"], dim=1)
    if type_name == "Upsample":
        extra = {"align_corners": False} if params["mode"] == "bilinear" else {}
        return nn.Upsample(scale_factor=params["scale_factor"], mode=params["mode"], **extra)
    m = nn.ConvTranspose2d(SHAPE[0], layer.out_channels, tuple(layer.kernel_size),
                           tuple(layer.stride), tuple(layer.padding),
                           tuple(layer.output_padding))
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(layer.weights["weight"]))
        m.bias.copy_(torch.from_numpy(layer.weights["bias"]))
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=5, help="calls per timed repeat")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed: nothing to compare with")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # BLAS then keeps its own thread count (OPENBLAS_NUM_THREADS)
        def threadpool_limits(_n):
            return contextlib.nullcontext()

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *SHAPE)).astype(np.float32)
    print(f"batch {args.batch}, input {'×'.join(map(str, SHAPE))}, {args.threads} thread(s), "
          f"{args.repeats} repeats of {args.calls} calls; median ms per call (fwd + bwd)")
    print(f"{'layer':30} {'engine fwd':>10} {'torch fwd':>10} {'ratio':>6}   "
          f"{'engine f+b':>10} {'torch f+b':>10} {'ratio':>6}")
    worst = 0.0
    with threadpool_limits(args.threads):
        for label, type_name, params in CASES:
            layer = REGISTRY[type_name]("x", **params)
            outs = layer.output_shapes([SHAPE])
            layer.init_weights([SHAPE], rng)
            mod = torch_twin(torch, type_name, params, layer)
            dys = [rng.standard_normal((args.batch, *s)).astype(np.float32) for s in outs]
            xt = torch.from_numpy(x).requires_grad_(True)
            dyt = [torch.from_numpy(d) for d in dys]
            multi = layer.multi_output()

            def ours_fwd(layer=layer):
                layer.forward([x])

            def ours_step(layer=layer, dys=dys, multi=multi):
                layer.forward([x], training=True)
                layer.backward(dys if multi else dys[0])

            def torch_fwd(mod=mod, xt=xt):
                with torch.no_grad():
                    mod(xt)

            def torch_step(mod=mod, xt=xt, dyt=dyt):
                y = mod(xt)
                ys = list(y) if isinstance(y, tuple) else [y]
                torch.autograd.backward(ys, dyt)
                xt.grad = None

            fns = [ours_fwd, torch_fwd, ours_step, torch_step]
            times = [[] for _ in fns]
            for f in fns:  # warm-up
                f()
            for _ in range(args.repeats):
                for i, f in enumerate(fns):  # interleaved: a load burst hits both sides
                    t0 = time.perf_counter()
                    for _ in range(args.calls):
                        f()
                    times[i].append((time.perf_counter() - t0) / args.calls * 1e3)
            med = [statistics.median(t) for t in times]
            r_f, r_s = med[0] / med[1], med[2] / med[3]
            worst = max(worst, r_f, r_s)
            print(f"{label:30} {med[0]:10.2f} {med[1]:10.2f} {r_f:6.2f}   {med[2]:10.2f} "
                  f"{med[3]:10.2f} {r_s:6.2f}")
    print(f"worst ratio {worst:.2f} (goal ≤ 2)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
