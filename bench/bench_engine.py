"""LeNet-5 throughput of the NumPy engine against PyTorch CPU, in the same run, same threads.

    python bench/bench_engine.py            # full run (a minute or two on 2 cores)
    python bench/bench_engine.py --quick    # short run: fewer steps and repeats

Prints training images/s (forward + backward + Adam step) at batch 64 and 256, inference
images/s at batch 256, the ratio engine / PyTorch for each (PyTorch only where installed),
a per-layer forward / backward breakdown at batch 256, and which BLAS kernel ran. Figures are
medians of repeats after a warm-up; noise between runs on a shared machine is ~10%, so compare
ratios measured in the same run, never absolute numbers from different runs.

The environment may set OPENBLAS_CORETYPE (see /work/shared/PERFORMANCE.md); to measure with
OpenBLAS's own kernel choice, unset it for this one command:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_engine.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

# BENCH_ENGINE_ROOT=/path/to/an/older/checkout measures that engine instead (before / after)
sys.path.insert(0, os.environ.get("BENCH_ENGINE_ROOT")
                or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from engine.nn.losses import softmax_cross_entropy
from engine.nn.network import Network
from engine.nn.optim import make_optimizer
from engine.zoo.examples import load_example


def interleaved_rates(fns, items_per_call: int, calls: int, repeats: int, warmup: int = 3):
    """[(median, best)] items/s of each fn(i) over `repeats` repeats of `calls` calls.

    The functions take turns within every repeat (engine, PyTorch, engine, ...), so a burst
    of load from other processes hits both sides of a ratio alike."""
    for fn in fns:
        for i in range(warmup):
            fn(i)
    rates = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, rates):
            t0 = time.perf_counter()
            for i in range(calls):
                fn(i)
            out.append(items_per_call * calls / (time.perf_counter() - t0))
    return [(statistics.median(r), max(r)) for r in rates]


def make_data(n: int, seed: int = 0, mnist: bool = False):
    if mnist:
        from engine.data import load_mnist
        ds = load_mnist("train", limit=n)
        return ds.x, ds.y
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return x, y


# ---- engine ------------------------------------------------------------------------------

def engine_net():
    net = Network.compile(load_example("lenet5"), rng=np.random.default_rng(0))
    opt = make_optimizer("adam", net.parameters(), lr=1e-3)
    return net, opt


def engine_train_step(x, y, bs):
    net, opt = engine_net()
    nb = len(x) // bs
    try:  # as engine.nn.train does: no gradient for the input images
        net.backward(net.forward(x[:2], training=True, logits=True), from_logits=True,
                     input_grad=False)
        kw = {"input_grad": False}
    except TypeError:  # an older engine (bench run against a previous commit)
        kw = {}

    def step(i):
        j = i % nb
        xb, yb = x[j * bs:(j + 1) * bs], y[j * bs:(j + 1) * bs]
        z = net.forward(xb, training=True, logits=True)
        _, dz = softmax_cross_entropy(z, yb)
        net.backward(dz, from_logits=True, **kw)
        opt.step()

    return step


def engine_infer_step(x, bs):
    net, _ = engine_net()
    nb = len(x) // bs
    return lambda i: net.forward(x[(i % nb) * bs:(i % nb + 1) * bs])


def dtype_report(x, y, bs):
    """Dtypes of every forward output, backward gradient and weight gradient in one step."""
    net, opt = engine_net()
    xb, yb = x[:bs], y[:bs]
    outs = net.forward(xb, training=True, keep=True)
    z = net.forward(xb, training=True, logits=True)
    _, dz = softmax_cross_entropy(z, yb)
    bad = [f"{k} out {v.dtype}" for k, v in outs.items() if v.dtype != np.float32]
    bad += [f"dlogits {dz.dtype}"] if dz.dtype != np.float32 else []
    net.backward(dz, from_logits=True)
    for p in net.parameters():
        if p.grad is not None and p.grad.dtype != np.float32:
            bad.append(f"{p.key} grad {p.grad.dtype}")
    opt.step()
    for p in net.parameters():
        if p.value.dtype != np.float32:
            bad.append(f"{p.key} weight {p.value.dtype}")
    return bad


def layer_breakdown(x, y, bs, repeats):
    """Median forward / backward ms per layer of one training step at batch `bs`."""
    net, _ = engine_net()
    xb = np.ascontiguousarray(x[:bs])
    order = [nid for nid in net.order if nid != net.input_id]
    fwd = {nid: [] for nid in order}
    bwd = {nid: [] for nid in order}
    for rep in range(max(repeats, 10) + 2):
        h = xb
        for nid in order:
            t0 = time.perf_counter()
            h = net.layers[nid].forward([h], True)
            fwd[nid].append(time.perf_counter() - t0)
        g = (h - 0.1).astype(np.float32)  # any gradient of the right shape
        for nid in reversed(order):
            layer = net.layers[nid]
            layer.need_dx = nid != order[0]  # training needs no gradient for the input
            t0 = time.perf_counter()
            (g,) = layer.backward(g)
            bwd[nid].append(time.perf_counter() - t0)
    rows = []
    for nid in order:
        f = statistics.median(fwd[nid][2:]) * 1e3
        b = statistics.median(bwd[nid][2:]) * 1e3
        rows.append((nid, net.layers[nid].type_name, f, b, min(fwd[nid][2:]) * 1e3,
                     min(bwd[nid][2:]) * 1e3))
    return rows


# ---- PyTorch -----------------------------------------------------------------------------

def torch_net():
    import torch
    from torch import nn
    torch.manual_seed(0)
    body = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.Adam(body.parameters(), lr=1e-3)
    return body, opt


def torch_train_step(x, y, bs):
    import torch
    body, opt = torch_net()
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    nb = len(x) // bs

    def step(i):
        j = i % nb
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(body(xt[j * bs:(j + 1) * bs]), yt[j * bs:(j + 1) * bs])
        loss.backward()
        opt.step()

    return step


def torch_infer_step(x, bs):
    import torch
    body, _ = torch_net()
    body.eval()
    xt = torch.from_numpy(x)
    nb = len(x) // bs

    def run(i):
        j = i % nb
        with torch.inference_mode():
            torch.softmax(body(xt[j * bs:(j + 1) * bs]), dim=1)

    return run


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for d in threadpool_info():
        if d.get("user_api") == "blas":
            parts.append(f"{d.get('internal_api')} {d.get('version')} kernel "
                         f"{d.get('architecture')} threads {d.get('num_threads')}")
    return "; ".join(parts) or "no BLAS found"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer steps and repeats")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / PyTorch threads (2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, 5 quick)")
    ap.add_argument("--mnist", action="store_true", help="use real MNIST images, not random")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-layer table")
    args = ap.parse_args(argv)

    repeats = args.repeats or (5 if args.quick else 7)
    images = 2048 if args.quick else 4096
    x, y = make_data(images, mnist=args.mnist)

    limiter = None
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(args.threads)
    except ImportError:
        pass
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None

    import engine
    print(f"engine: {os.path.dirname(os.path.abspath(engine.__file__))}")
    print(f"numpy {np.__version__}; BLAS: {blas_info()}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}")
    if torch is not None:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    else:
        print("torch: not installed (or --no-torch): engine figures only")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on "
          f"{os.cpu_count()} CPUs (other processes make 2-thread BLAS timings swing widely)")
    print(f"data: {'MNIST' if args.mnist else 'random'} {images} images 1x28x28; "
          f"medians of {repeats} repeats after warm-up")

    bad = dtype_report(x, y, 64)
    print("dtypes through a training step: " + ("all float32" if not bad else ", ".join(bad)))

    cases = [("train", 64, 16 if args.quick else 40), ("train", 256, 4 if args.quick else 10),
             ("infer", 256, 8 if args.quick else 16)]
    print()
    print(f"{'LeNet-5':<17}{'engine img/s':>13}{'torch img/s':>12}{'engine/torch':>13}"
          f"{'| best: engine':>15}{'torch':>8}{'ratio':>7}")
    for kind, bs, calls in cases:
        if kind == "train":
            fns = [engine_train_step(x, y, bs)]
            fns += [torch_train_step(x, y, bs)] if torch is not None else []
        else:
            fns = [engine_infer_step(x, bs)]
            fns += [torch_infer_step(x, bs)] if torch is not None else []
        rates = interleaved_rates(fns, bs, calls, repeats)
        (e, eb), (t, tb) = rates[0], (rates[1] if len(rates) > 1 else (None, None))
        label = f"{kind} batch {bs}"
        if t:
            print(f"{label:<17}{e:13,.0f}{t:12,.0f}{e / t:12.2f}x{eb:15,.0f}{tb:8,.0f}"
                  f"{eb / tb:6.2f}x", flush=True)
        else:
            print(f"{label:<17}{e:13,.0f}{'-':>12}{'-':>13}{eb:15,.0f}", flush=True)
    print("(medians of the repeats; 'best' = fastest repeat of each, the least disturbed by "
          "other processes)")

    if not args.no_breakdown:
        rows = layer_breakdown(x, y, 256, repeats)
        print()
        print("per-layer time of one training step at batch 256 (ms; medians, and minimums: "
              "less disturbed by other processes)")
        print(f"{'layer':<10}{'type':<11}{'forward':>9}{'backward':>10}{'fwd min':>10}"
              f"{'bwd min':>10}")
        for nid, t, f, b, fm, bm in rows:
            print(f"{nid:<10}{t:<11}{f:9.3f}{b:10.3f}{fm:10.3f}{bm:10.3f}")
        tf, tb = sum(r[2] for r in rows), sum(r[3] for r in rows)
        print(f"{'total':<21}{tf:9.3f}{tb:10.3f}{sum(r[4] for r in rows):10.3f}"
              f"{sum(r[5] for r in rows):10.3f}   (= {256 / (tf + tb) * 1e3:,.0f} img/s from "
              f"the medians, without loss / optimizer / Network overhead)")
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if limiter is not None:
        limiter.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
