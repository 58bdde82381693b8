"""Conv-heavy, depthwise and residual nets: the engine against PyTorch CPU, same architecture.

    python bench/bench_nets.py                       # every net, 1 and 2 threads (~10 min)
    python bench/bench_nets.py --nets small_resnet --threads 1 --repeats 5
    python bench/bench_nets.py --memory              # + peak RSS of a training step per net
    python bench/bench_nets.py --no-torch            # engine only (CI has no torch)

Each net is built in the engine and, from the same graph and the same weights, as PyTorch code
by our own `export-pytorch` generator (engine/pytorch_export.py). Timed, interleaved (engine,
PyTorch, engine, ... inside every repeat, so a burst of load hits both sides of a ratio): a
training step (forward + softmax cross-entropy + backward + Adam) at batch 64, inference at
batch 256 through the engine's entry point (Network.predict: ONNX Runtime where it runs the
design, engine/nn/inference.py), and the NumPy forward alone at batch 256 ("forward": what a
training step's forward costs, and inference where onnxruntime is missing). Printed: medians, ratio = PyTorch time / engine time (>= 1.0: the engine is faster),
a per-layer profile of the engine's training step (forward / backward ms, % of the step; the
Network's timing hook) with the GFLOP/s of the biggest convs against this CPU's float32 matmul
peak measured in the same run (2048³), and with --memory the peak RSS growth of a training
step, each side in a fresh process.

Threads: threadpoolctl where installed, else the BLAS environment variables are set before
NumPy is imported, so each thread count runs in a child process of its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.environ.get("BENCH_ENGINE_ROOT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..")


def _early_threads(argv: list[str]) -> None:
    """Set the BLAS thread variables before NumPy loads (a child run with --threads N)."""
    if "--threads" in argv:
        n = argv[argv.index("--threads") + 1]
        if "," not in n:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = n
    # OpenBLAS's idle threads spin up to 2^28 cycles (~0.1 s) after each product; interleaved
    # with PyTorch they took its second core: measured at 2 threads, PyTorch's small_vgg step
    # 105-115 ms beside a spinning engine, 68-74 ms beside one whose threads sleep at once.
    # The engine is timed with the same setting (its own figure alone moves by -20..+6%).
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


_early_threads(sys.argv)

import importlib.util
import resource
import statistics
import tempfile
import time
import uuid

import numpy as np

sys.path.insert(0, ROOT)

from engine.graph import Graph
from engine.nn import parallel
from engine.nn.losses import softmax_cross_entropy
from engine.nn.network import Network
from engine.nn.optim import make_optimizer
from engine.validate import validate
from engine.zoo.examples import load_example
from engine.zoo.templates import build_template

NETS = ("lenet5", "small_vgg", "small_resnet", "resnet18", "mobilenet_v2", "mobile_se")
TRAIN_BS, INFER_BS = 64, 256


def build_graph(name: str) -> Graph:
    """The net's graph: an example as shipped; ResNet-18 at 3×32×32 and MobileNetV2 at 3×64×64
    (torchvision's templates, 10 classes, the Input resized)."""
    if name in ("resnet18", "mobilenet_v2"):
        g = build_template(name, 10)
        size = 32 if name == "resnet18" else 64
        inp = next(n for n in g.nodes.values() if n.type_name == "Input")
        inp.params["height"] = inp.params["width"] = size
        return g
    return load_example(name)


def engine_side(graph: Graph, seed: int = 0):
    net = Network.compile(graph, rng=np.random.default_rng(seed))
    opt = make_optimizer("adam", net.parameters(), lr=1e-3)
    return net, opt


def torch_side(graph: Graph, net: Network):
    """The PyTorch module our export-pytorch generates, with the engine net's weights."""
    import torch

    from engine.pytorch_export import export_pytorch, generate_model
    with tempfile.TemporaryDirectory() as tmp:
        export_pytorch(graph, net.state_dict(), tmp)
        spec = importlib.util.spec_from_file_location(f"bench_{uuid.uuid4().hex}",
                                                      os.path.join(tmp, "model.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        code = generate_model(graph)
        model = getattr(mod, code.class_name)()
        mod.load_npz(model, os.path.join(tmp, "weights.npz"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, opt, code.ends_in_softmax


def make_data(shape, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def engine_train(net, opt, x, y):
    """The engine's training step as engine.nn.train runs it: in shards over the threads
    where parallel.runner says so (nn/parallel.py), else forward and backward on one."""
    sharded = parallel.runner(net, len(x))

    def step():
        if sharded is not None:
            sharded.step(x, y)
        else:
            z = net.forward(x, training=True, logits=True)
            _, dz = softmax_cross_entropy(z, y)
            net.backward(dz, from_logits=True, input_grad=False)
        opt.step()
    return step


def engine_infer(net, x):
    """The engine's inference entry point (Network.predict: ONNX Runtime where it runs the
    design, a session kept per weights; nn/inference.py), with ORT at the engine's threads."""
    return lambda: net.predict(x, batch_size=len(x))


def engine_forward(net, x):
    """The NumPy forward alone (what training runs, and inference without onnxruntime)."""
    return lambda: net.forward(x)


def torch_train(model, opt, logits, x, y):
    import torch
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()
    kw = {"logits": True} if logits else {}

    def step():
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt, **kw), yt)
        loss.backward()
        opt.step()
    return step


def torch_infer(model, x):
    import torch
    xt = torch.from_numpy(x)

    def run():
        model.eval()
        with torch.inference_mode():
            model(xt)
    return run


def interleaved(fns, calls: int, repeats: int, warmup: int = 2) -> list[list[float]]:
    """Seconds per call of each fn, one list per fn, taking turns inside every repeat."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            out.append((time.perf_counter() - t0) / calls)
    return times


def matmul_peak(repeats: int = 5) -> float:
    """float32 GFLOP/s of a 2048³ product at the current thread count (best of `repeats`)."""
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    np.matmul(a, a)
    best = min(_timed(lambda: np.matmul(a, a)) for _ in range(repeats))
    return 2 * 2048 ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def profile(net: Network, graph: Graph, x, y, steps: int, peak: float, top: int) -> None:
    """Per-layer forward / backward ms of the engine's training step (medians over steps)."""
    opt = make_optimizer("adam", net.parameters(), lr=1e-3)
    step = engine_train(net, opt, x, y)
    step()
    per: dict[tuple[str, str], list[float]] = {}
    totals = []
    for _ in range(steps):
        net.timings = {}
        t0 = time.perf_counter()
        step()
        totals.append(time.perf_counter() - t0)
        for k, v in net.timings.items():
            per.setdefault(k, []).append(v)
    net.timings = None
    total = statistics.median(totals) * 1e3
    v = validate(graph)
    rows = []
    for nid in net.order:
        f = statistics.median(per.get((nid, "forward"), [0.0])) * 1e3
        b = statistics.median(per.get((nid, "backward"), [0.0])) * 1e3
        if f or b:
            rows.append((f + b, nid, net.layers[nid].type_name, f, b, v.nodes[nid].macs))
    layer_sum = sum(r[0] for r in rows)
    by_type: dict[str, float] = {}
    for r in rows:
        by_type[r[2]] = by_type.get(r[2], 0.0) + r[0]
    shards = parallel.shard_count(net, len(x)) if parallel.runner(net, len(x)) else 1
    cut = (f" (in {shards} shards of the batch, one per thread: the layers' times are shard "
           f"0's, which waits for the others at each BatchNorm)" if shards > 1 else "")
    print(f"  engine training step {total:.1f} ms (median of {steps}); layers {layer_sum:.1f} ms,"
          f" loss + Adam + overhead {total - layer_sum:.1f} ms{cut}")
    print("  by type: " + ", ".join(f"{t} {ms:.1f} ms ({100 * ms / total:.0f}%)" for t, ms in
                                    sorted(by_type.items(), key=lambda kv: -kv[1])))
    print(f"  {'layer':<28}{'type':<18}{'fwd ms':>8}{'bwd ms':>8}{'% step':>8}"
          f"{'fwd GF/s':>10}{'bwd GF/s':>10}")
    bs = x.shape[0] // shards  # the samples the timed layers ran on (shard 0)
    for tot, nid, t, f, b, macs in sorted(rows, reverse=True)[:top]:
        gf = gb = ""
        if t in ("Conv2d", "Linear") and macs:
            flops = 2 * macs * bs
            gf = f"{flops / f / 1e6:10.1f}" if f else ""
            # weight gradient, plus the input gradient where one is computed
            nb = 2 if net.layers[nid].need_dx and (nid, "backward") in per else 1
            gb = f"{nb * flops / b / 1e6:10.1f}" if b else ""
        print(f"  {nid[:27]:<28}{t[:17]:<18}{f:8.2f}{b:8.2f}{100 * tot / total:7.1f}%{gf:>10}"
              f"{gb:>10}")
    print(f"  (matmul peak in this run: {peak:.0f} GFLOP/s, 2048³ float32)")


def run_speed(args) -> None:
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
    limiter = None
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(args.threads)
    except ImportError:
        pass
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "(unset)")
    print(f"== {args.threads} thread(s): OPENBLAS_NUM_THREADS={blas}, threadpoolctl "
          f"{'on' if limiter else 'not installed'}; torch "
          f"{torch.__version__ + ' threads ' + str(torch.get_num_threads()) if torch else '-'}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    peak = matmul_peak()
    print(f"float32 matmul 2048³: {peak:.0f} GFLOP/s", flush=True)
    header = (f"{'net':<14}{'case':<14}{'engine ms':>10}{'torch ms':>10}{'torch/engine':>13}"
              f"{'| best ratio':>13}")
    print(header)
    for name in args.nets:
        graph = build_graph(name)
        net, opt = engine_side(graph)
        shape = net.input_shape
        xt_, yt_ = make_data(shape, TRAIN_BS, 1)
        xi_, _ = make_data(shape, INFER_BS, 2)
        tside = torch_side(graph, net) if torch else None
        cases = [("train b64", [engine_train(net, opt, xt_, yt_)]
                  + ([torch_train(tside[0], tside[1], tside[2], xt_, yt_)] if tside else [])),
                 ("infer b256", [engine_infer(net, xi_)]
                  + ([torch_infer(tside[0], xi_)] if tside else [])),
                 ("forward b256", [engine_forward(net, xi_)]
                  + ([torch_infer(tside[0], xi_)] if tside else []))]
        for label, fns in cases:
            calls = args.calls
            times = interleaved(fns, calls, args.repeats)
            e = statistics.median(times[0]) * 1e3
            if len(times) > 1:
                t = statistics.median(times[1]) * 1e3
                best = min(times[1]) / min(times[0])
                print(f"{name:<14}{label:<14}{e:10.1f}{t:10.1f}{t / e:12.2f}x{best:12.2f}x",
                      flush=True)
            else:
                print(f"{name:<14}{label:<14}{e:10.1f}{'-':>10}", flush=True)
        if args.profile:
            profile(net, graph, xt_, yt_, max(3, args.repeats), peak, args.top)
    if limiter is not None:
        limiter.restore_original_limits()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def run_memory_child(name: str, side: str) -> None:
    """One side's training step in this (fresh) process: prints RSS before and peak after
    (and, for the engine, the RSS its compiled kernels' and ONNX Runtime's loading added
    first: the libraries' one-off cost, like importing torch on the other side, not the
    step's; ONNX Runtime is loaded by ort_conv's probe of its blocked kernel)."""
    from engine.nn import kernels, ort_conv

    r0 = _rss_mb()
    if side == "engine":
        kernels.warm()
        ort_conv.block()
    kernel_mb = _rss_mb() - r0 if side == "engine" else 0.0
    graph = build_graph(name)
    net, opt = engine_side(graph)
    x, y = make_data(net.input_shape, TRAIN_BS, 1)
    if side == "engine":
        step = engine_train(net, opt, x, y)
    else:
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        model, topt, logits = torch_side(graph, net)
        del net, opt
        step = torch_train(model, topt, logits, x, y)
    base = _rss_mb()
    for _ in range(3):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{kernel_mb:.1f} {base:.1f} {peak:.1f}")


def run_memory(args) -> None:
    for n in [int(t) for t in str(args.threads).split(",")]:
        _memory_at(args, n)


def _memory_at(args, threads: int) -> None:
    print(f"\npeak RSS of a training step at batch 64 (MB above the process's RSS after "
          f"building the net and data; each side in a fresh process, {threads} thread(s): at 2+ "
          f"the engine's step runs in shards, nn/parallel.py)")
    print(f"{'net':<14}{'engine MB':>10}{'torch MB':>10}{'engine/torch':>13}"
          f"{'| loading kernels + ONNX Runtime MB (once per process)':>55}")
    for name in args.nets:
        got = {}
        for side in ("engine", "torch"):
            if side == "torch" and args.no_torch:
                continue
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
                       OMP_NUM_THREADS=str(threads))
            out = subprocess.run([sys.executable, __file__, "--memory-child", name, side], check=False,
                                 capture_output=True, text=True, env=env)
            if out.returncode:
                print(f"{name}: {side} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            kmb, base, peak = map(float, out.stdout.split()[-3:])
            got[side] = peak - base
            if side == "engine":
                got["kernels"] = kmb
        e, t = got.get("engine"), got.get("torch")
        ratio = f"{e / t:12.2f}x" if e and t else f"{'':13}"
        print(f"{name:<14}{e or 0:10.1f}{t or 0:10.1f}{ratio}{got.get('kernels', 0):14.1f}",
              flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2 (default)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (medians)")
    ap.add_argument("--calls", type=int, default=3, help="calls per repeat")
    ap.add_argument("--top", type=int, default=8, help="layers in the profile")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also peak RSS per net")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--memory-child", nargs=2, metavar=("NET", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        run_memory_child(*args.memory_child)
        return 0
    counts = [int(t) for t in args.threads.split(",")]
    if not args.memory_only:
        if len(counts) == 1:
            args.threads = counts[0]
            run_speed(args)
        else:  # one child per thread count: the BLAS variables must be set before NumPy loads
            rest = [a for a in (argv if argv is not None else sys.argv[1:])]
            if "--threads" in rest:
                i = rest.index("--threads")
                del rest[i:i + 2]
            rest = [a for a in rest if a not in ("--memory", "--memory-only")]
            for n in counts:
                subprocess.run([sys.executable, __file__, *rest, "--threads", str(n)], check=False)
    if args.memory or args.memory_only:
        run_memory(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
