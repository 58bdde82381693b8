"""ONNX Runtime against the engine (and PyTorch eager, where torch is installed): inference latency
at batch 1 and throughput at batch 256, LeNet-5 and the small VGG, all measured in the same run.

    python bench/bench_onnx.py [--repeats 21] [--threads N]

Prints medians and ratios. ORT runs our export; where torch is installed it also runs the same
net exported by torch.onnx.export (same weights), to show our export gives nothing away. PyTorch
eager runs with torch.set_num_threads equal to ORT's intra-op threads. Goal: ORT >= 3x PyTorch
eager at batch 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.nn.network import Network
from engine.onnx.export import export_onnx
from engine.onnx.runtime import OnnxModel, default_threads
from engine.zoo.examples import load_example

NETS = ("lenet5", "small_vgg")


def timed(fn, x, repeats: int, inner: int) -> float:
    """Median seconds of one call over `repeats` runs of `inner` calls (after a warm-up)."""
    for _ in range(3):
        fn(x)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(x)
        runs.append((time.perf_counter() - t0) / inner)
    return statistics.median(runs)


def torch_chain(graph, weights):
    """The same chain net as torch.nn.Sequential with the same weights (bench only)."""
    import torch
    from torch import nn

    from engine.validate import validate

    v = validate(graph)
    mods = []
    for nid in v.order:
        node, res = graph.nodes[nid], v.nodes[nid]
        layer, t = res.layer, node.type_name
        w = {k[len(nid) + 1:]: torch.from_numpy(a) for k, a in weights.items()
             if k.startswith(nid + ".")}
        if t == "Input":
            continue
        if t == "Conv2d":
            c = res.in_shapes[0][0]
            pt, pl, pb, pr = layer.padding if not isinstance(layer.padding, str) else (0,) * 4
            assert (pt, pl) == (pb, pr), "bench converter: symmetric padding only"
            m = nn.Conv2d(c, layer.out_channels, layer.kernel_size, layer.stride, (pt, pl),
                          layer.dilation, layer.groups, layer.bias)
        elif t == "MaxPool2d":
            m = nn.MaxPool2d(layer.kernel_size, layer.strides, ceil_mode=layer.ceil_mode)
        elif t == "BatchNorm2d":
            m = nn.BatchNorm2d(res.in_shapes[0][0], layer.eps, layer.momentum)
        elif t == "Linear":
            m = nn.Linear(res.in_shapes[0][0], layer.out_features, layer.bias)
        elif t == "Flatten":
            m = nn.Flatten()
        elif t == "Softmax":
            m = nn.Softmax(dim=1)
        elif t in ("ReLU", "Tanh", "Sigmoid", "Dropout"):
            m = getattr(nn, t)()
        else:
            raise NotImplementedError(t)
        if w:
            m.load_state_dict(w, strict=False)
        mods.append(m)
    return torch.nn.Sequential(*mods).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=default_threads())
    args = ap.parse_args()
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        import torch

        torch.set_num_threads(args.threads)
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}"
          + (f", torch {torch.__version__}" if has_torch else ", torch not installed")
          + f"; {args.threads} threads everywhere; medians of {args.repeats} runs")
    rng = np.random.default_rng(0)
    for name in NETS:
        graph = load_example(name)
        net = Network.compile(graph, np.random.default_rng(1))
        weights = net.state_dict()
        ours = OnnxModel(export_onnx(graph, weights), threads=args.threads)
        x1 = rng.random((1, *net.input_shape), dtype=np.float32)
        x256 = rng.random((256, *net.input_shape), dtype=np.float32)
        runners = {"engine": net.forward, "ORT (our export)": ours.run}
        if has_torch:
            tm = torch_chain(graph, weights)
            with torch.no_grad():
                ref = tm(torch.from_numpy(x256)).numpy()
            np.testing.assert_allclose(ref, net.forward(x256), atol=1e-4, rtol=1e-3)
            f = io.BytesIO()
            torch.onnx.export(tm, torch.from_numpy(x1), f, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
            theirs = OnnxModel(f.getvalue(), threads=args.threads)

            def eager(x, tm=tm):
                with torch.inference_mode():
                    return tm(torch.from_numpy(x))

            runners["ORT (torch.onnx.export)"] = theirs.run
            runners["PyTorch eager"] = eager
        if name == NETS[0]:
            print(f"ONNX Runtime providers: {', '.join(ours.providers)}")
        res = {}
        for label, fn in runners.items():
            b1 = timed(fn, x1, args.repeats, inner=50 if name == "lenet5" else 10)
            b256 = timed(fn, x256, args.repeats, inner=1)
            res[label] = (b1, 256 / b256)
        print(f"\n{name} ({'×'.join(map(str, net.input_shape))})")
        print(f"  {'runner':26s} {'batch 1 latency':>16s} {'batch 256 throughput':>22s}")
        for label, (b1, tp) in res.items():
            print(f"  {label:26s} {b1 * 1e6:13.1f} µs {tp:17,.0f} img/s")
        o1, otp = res["ORT (our export)"]
        e1, etp = res["engine"]
        print(f"  ORT vs engine: {e1 / o1:.1f}× faster at batch 1, {otp / etp:.1f}× the "
              f"throughput at batch 256")
        if has_torch:
            t1, ttp = res["PyTorch eager"]
            x1t, xtp = res["ORT (torch.onnx.export)"]
            print(f"  ORT vs PyTorch eager: {t1 / o1:.1f}× faster at batch 1 (goal ≥ 3×), "
                  f"{otp / ttp:.1f}× the throughput at batch 256")
            print(f"  our export vs torch.onnx.export in ORT: latency ratio {o1 / x1t:.2f}, "
                  f"throughput ratio {otp / xtp:.2f} (1.00 = the same)")


if __name__ == "__main__":
    main()
