"""What recording a run (engine.runs) adds to training time: LeNet-5 epochs on the embedded
MNIST, with and without a RunRecorder, alternating in one process so the shared machine's load
hits both alike.

    python bench/bench_runs.py [--images 3000] [--repeats 7]

Each repeat trains one fresh LeNet-5 for 2 epochs without recording and one with (a new run in
a temporary store each time: the run's row, 2 epoch transactions, the best weights up to
twice, the end), and prints the medians of the two, their ratio, and the time spent inside the
recorder itself (begin / epoch / end, summed), which is the overhead without the timing noise.
Goal: < 2 % of training time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data import load_mnist
from engine.nn.network import Network
from engine.nn.train import TrainConfig, train
from engine.runs import RunRecorder
from engine.zoo.examples import load_example


class TimedRecorder(RunRecorder):
    """A RunRecorder that sums the time spent in its own calls."""

    spent = 0.0

    def _timed(name):
        def call(self, *args):
            t0 = time.perf_counter()
            getattr(RunRecorder, name)(self, *args)
            self.spent += time.perf_counter() - t0
        return call

    begin, epoch, end = _timed("begin"), _timed("epoch"), _timed("end")


def one(graph, x, y, config, store: Path | None) -> tuple[float, float]:
    net = Network.compile(graph, np.random.default_rng(0))
    rec = None if store is None else TimedRecorder(store, graph, {"source": "mnist"})
    t0 = time.perf_counter()
    train(net, x, y, config, recorder=rec)
    return time.perf_counter() - t0, 0.0 if rec is None else rec.spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    graph = load_example("lenet5")
    ds = load_mnist()
    x, y = ds.x[:args.images], ds.y[:args.images]
    config = TrainConfig(epochs=2, batch_size=64)
    plain, recorded, inside = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        one(graph, x[:256], y[:256], TrainConfig(epochs=1), None)  # warm up BLAS, caches
        for i in range(args.repeats):
            plain.append(one(graph, x, y, config, None)[0])
            t, spent = one(graph, x, y, config, Path(tmp) / "bench.runs.sqlite")
            recorded.append(t)
            inside.append(spent)
    a, b, s = (statistics.median(v) for v in (plain, recorded, inside))
    print(f"LeNet-5, {args.images:,} MNIST images, 2 epochs, batch 64; median of "
          f"{args.repeats}, alternating")
    print(f"  without recording  {a:7.3f} s")
    print(f"  with recording     {b:7.3f} s   ratio {b / a:.4f} ({100 * (b / a - 1):+.2f} %)")
    print(f"  inside the recorder {1000 * s:6.1f} ms  = {100 * s / a:.2f} % of training time "
          f"(goal < 2 %)")


if __name__ == "__main__":
    main()
