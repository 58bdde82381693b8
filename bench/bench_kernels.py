"""The compiled kernels (engine/nn/kernels.py, numba) against the NumPy code they replace, on the
layers of MobileNetV2 3×64×64, mobile_se, small_vgg and LeNet-5 at batch 64: forward and
forward + backward of a depthwise conv, a training BatchNorm, the ReLU / ReLU6 / HardSwish
gradients and max pooling, interleaved
(compiled, NumPy, compiled, ... in every repeat), medians, ratio NumPy time / compiled time.
Then the weight gradient of the dense 3×3 convs of small_resnet / small_vgg / ResNet-18 alone:
the compiled kernel (taps read in place) against the row blocks of im2col and a matmul (MLAS
through ONNX Runtime where it runs, else OpenBLAS) that a training conv otherwise takes; and
the training forward + backward of the convs with few input channels (LeNet-5's, an RGB stem):
the direct convolution and that weight gradient against im2col + matmul.

    python bench/bench_kernels.py                  # 1 thread
    python bench/bench_kernels.py --threads 2      # the kernels split channels over 2 threads

Inputs are in the CHWN memory a convolution hands on (what these layers see inside a net).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _early_threads(argv: list[str]) -> None:
    n = argv[argv.index("--threads") + 1] if "--threads" in argv else "1"
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n


_early_threads(sys.argv)

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from engine.graph import Graph
from engine.nn import kernels
from engine.validate import validate

CASES = [  # (label, type, params, (C, H, W))
    ("depthwise 3x3 32ch 32x32", "Conv2d",
     {"out_channels": 32, "groups": 32, "kernel_size": [3, 3], "padding": "same"}, (32, 32, 32)),
    ("depthwise 3x3 s2 96ch 32x32", "Conv2d",
     {"out_channels": 96, "groups": 96, "kernel_size": [3, 3], "stride": [2, 2],
      "padding": [1, 1, 1, 1]}, (96, 32, 32)),
    ("depthwise 3x3 144ch 16x16", "Conv2d",
     {"out_channels": 144, "groups": 144, "kernel_size": [3, 3], "padding": "same"},
     (144, 16, 16)),
    ("depthwise 3x3 96ch 7x7", "Conv2d",
     {"out_channels": 96, "groups": 96, "kernel_size": [3, 3], "padding": "same"}, (96, 7, 7)),
    ("BatchNorm 96ch 32x32", "BatchNorm2d", {}, (96, 32, 32)),
    ("BatchNorm 144ch 16x16", "BatchNorm2d", {}, (144, 16, 16)),
    ("ReLU 96ch 32x32", "ReLU", {}, (96, 32, 32)),
    ("ReLU6 96ch 32x32", "ReLU6", {}, (96, 32, 32)),
    ("HardSwish 64ch 14x14", "HardSwish", {}, (64, 14, 14)),
    ("MaxPool 2x2 32ch 32x32", "MaxPool2d", {"kernel_size": [2, 2]}, (32, 32, 32)),
    ("MaxPool 3x3 s2 64ch 32x32", "MaxPool2d",
     {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]}, (64, 32, 32)),
    ("MaxPool 2x2 6ch 28x28", "MaxPool2d", {"kernel_size": [2, 2]}, (6, 28, 28)),
]
WEIGHT_GRAD = [(16, 32), (32, 16), (64, 8), (64, 16), (128, 8)]  # dense 3x3 'same': (C, H=W)
FEW_CHANNELS = [  # (label, params, (C, H, W), input gradient wanted)
    ("LeNet-5 conv1 1->6 5x5 28x28", {"out_channels": 6, "kernel_size": [5, 5]}, (1, 28, 28),
     False),
    ("LeNet-5 conv2 6->16 5x5 12x12", {"out_channels": 16, "kernel_size": [5, 5]}, (6, 12, 12),
     True),
    ("stem 3->16 3x3 32x32", {"out_channels": 16, "kernel_size": [3, 3], "padding": "same"},
     (3, 32, 32), False),
]


def make_layer(type_name: str, params: dict, shape):
    g = Graph()
    a = g.add_node("Input", params={"channels": shape[0], "height": shape[1],
                                    "width": shape[2]})
    b = g.add_node(type_name, params=params)
    g.add_edge(a.id, b.id)
    v = validate(g)
    layer = v.nodes[b.id].layer.clone()
    layer.init_weights(v.nodes[b.id].in_shapes, np.random.default_rng(0))
    return layer


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    os.environ.pop(kernels.ENV, None)
    if not kernels.warm():
        print("numba is not installed (or CNND_KERNELS=numpy): nothing to compare")
        return 1
    print(f"threads {kernels.threads()}, batch {args.batch}, medians of {args.repeats}")
    print(f"{'layer':<30}{'fwd compiled':>13}{'fwd NumPy':>11}{'ratio':>7}"
          f"{'f+b compiled':>14}{'f+b NumPy':>11}{'ratio':>7}")
    rng = np.random.default_rng(0)
    for label, type_name, params, shape in CASES:
        layer = make_layer(type_name, params, shape)
        x = rng.standard_normal((args.batch, *shape)).astype(np.float32)
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)  # CHWN
        y = layer.forward([x], training=True)
        dy = np.ascontiguousarray(  # the gradient in the same CHWN memory (as in a net)
            rng.standard_normal(y.shape).astype(np.float32).transpose(1, 2, 3, 0)
        ).transpose(3, 0, 1, 2)
        layer.backward(dy)

        def fwd(layer=layer, x=x):
            layer.forward([x], training=True)
            layer._cache = None

        def step(layer=layer, x=x, dy=dy):
            layer.forward([x], training=True)
            layer.backward(dy)

        res = {}
        for name, fn in (("fwd", fwd), ("step", step)):
            t = {"compiled": [], "numpy": []}
            for _ in range(args.repeats + 1):
                for mode in ("compiled", "numpy"):
                    if mode == "numpy":
                        os.environ[kernels.ENV] = "numpy"
                    else:
                        os.environ.pop(kernels.ENV, None)
                    t[mode].append(timed(fn))
            res[name] = {m: statistics.median(v[1:]) * 1e3 for m, v in t.items()}
        os.environ.pop(kernels.ENV, None)
        f, s = res["fwd"], res["step"]
        print(f"{label:<30}{f['compiled']:13.2f}{f['numpy']:11.2f}"
              f"{f['numpy'] / f['compiled']:6.1f}x{s['compiled']:14.2f}{s['numpy']:11.2f}"
              f"{s['numpy'] / s['compiled']:6.1f}x", flush=True)
    weight_grads(args, rng)
    few_channels(args, rng)
    return 0


def few_channels(args, rng) -> None:
    from engine.layers import conv

    direct = conv.DIRECT_MAX_CHANNELS
    print(f"\n{'few input channels (train f+b)':<30}{'direct':>13}{'im2col+mm':>11}{'ratio':>7}")
    for label, params, shape, need_dx in FEW_CHANNELS:
        layer = make_layer("Conv2d", params, shape)
        layer.need_dx = need_dx
        x = rng.standard_normal((*shape, args.batch)).astype(np.float32).transpose(3, 0, 1, 2)
        y = layer.forward([x], training=True)
        dy = rng.standard_normal(y.shape[1:] + y.shape[:1]).astype(np.float32)
        dy = dy.transpose(3, 0, 1, 2)  # CHWN memory, as in a net

        def step(layer=layer, x=x, dy=dy):
            layer.forward([x], training=True)
            layer.backward(dy)

        t = {"direct": [], "numpy": []}
        for _ in range(args.repeats + 1):
            for m, times in t.items():
                conv.DIRECT_MAX_CHANNELS = direct if m == "direct" else 0
                times.append(timed(step))
        conv.DIRECT_MAX_CHANNELS = direct
        med = {m: statistics.median(v[1:]) * 1e3 for m, v in t.items()}
        print(f"{label:<30}{med['direct']:13.2f}{med['numpy']:11.2f}"
              f"{med['numpy'] / med['direct']:6.1f}x", flush=True)


def weight_grads(args, rng) -> None:
    print(f"\n{'conv weight gradient (3x3)':<30}{'compiled':>13}{'im2col+mm':>11}{'ratio':>7}"
          f"{'GFLOP/s':>9}")
    for c, hw in WEIGHT_GRAD:
        med = _weight_grad_times(args, rng, c, hw)
        flops = 2 * c * c * 9 * hw * hw * args.batch
        print(f"{f'{c}ch {hw}x{hw}':<30}{med['compiled']:13.2f}{med['numpy']:11.2f}"
              f"{med['numpy'] / med['compiled']:6.1f}x{flops / med['compiled'] / 1e6:9.0f}",
              flush=True)


def _weight_grad_times(args, rng, c: int, hw: int) -> dict:
    from engine.nn.ops import pad_chwn

    layer = make_layer("Conv2d", {"out_channels": c, "kernel_size": [3, 3], "padding": "same"},
                       (c, hw, hw))
    x = rng.standard_normal((c, hw, hw, args.batch)).astype(np.float32)  # CHWN memory
    xp = pad_chwn(x.transpose(3, 0, 1, 2), (1, 1, 1, 1))
    dy = rng.standard_normal((c, hw, hw, args.batch)).astype(np.float32)
    out = np.empty((c, c, 3, 3), np.float32)
    fns = {"compiled": lambda: kernels.conv_weight_grad(xp, dy, out, (1, 1), (1, 1)),
           "numpy": lambda: layer._weight_grad_rows(xp, dy.reshape(1, c, -1), c * 9, hw, hw)}
    t = {m: [] for m in fns}
    for _ in range(args.repeats + 1):
        for m, fn in fns.items():
            t[m].append(timed(fn))
    return {m: statistics.median(v[1:]) * 1e3 for m, v in t.items()}


if __name__ == "__main__":
    sys.exit(main())
