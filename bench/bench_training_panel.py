"""Training speed with the training panel open vs headless engine.nn.train.train.

Same network (LeNet-5), same data (the first N MNIST training images), same seed and
hyperparameters. The panel runs offscreen, shown, with its curves and progress updating. Runs
alternate (headless, panel, headless, ...) so that load from other processes hits both alike;
medians of --runs runs each.

    QT_QPA_PLATFORM=offscreen python bench/bench_training_panel.py [--images 4096] [--runs 5]

Figures: images/s inside the training loop (the engine's own epoch timer: seen / epoch
seconds) and wall-clock images/s from start to finish (for the panel: Train pressed ->
training_finished, including thread start and snapshots). Goal: panel ≥ 90% of headless.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from PySide6.QtCore import QEventLoop
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    from designer.document import Document
    from designer.training_panel import TrainingPanel
    from engine.data import DataBundle, load_mnist
    from engine.nn.network import Network
    from engine.nn.train import TrainConfig, train
    from engine.zoo.examples import load_example

    data = load_mnist("train", limit=args.images)
    graph = load_example("lenet5")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="adam",
                      lr=0.001, seed=0, val_split=0.0)

    def headless() -> tuple[float, float]:
        net = Network.compile(graph, np.random.default_rng(cfg.seed))
        t0 = time.perf_counter()
        h = train(net, data.x, data.y, cfg)
        wall = time.perf_counter() - t0
        return statistics.mean(e.images_per_s for e in h.epochs), len(data) * cfg.epochs / wall

    doc = Document(graph.copy())
    panel = TrainingPanel(doc, load=False)
    panel.resize(1200, 720)
    panel.show()
    panel.set_dataset(DataBundle(data))
    panel.val_split.setValue(0)
    panel.epochs.setValue(cfg.epochs)
    panel.batch_size.setValue(cfg.batch_size)
    panel.seed.setValue(cfg.seed)
    QTest.qWait(100)

    def with_panel() -> tuple[float, float, int]:
        doc.set_weights(None)  # start from the same initialisation as headless
        results = []
        loop = QEventLoop()
        panel.training_finished.connect(results.append)
        panel.training_finished.connect(loop.quit)
        t0 = time.perf_counter()
        assert panel.start_training(), panel.status.text()
        loop.exec()  # the GUI thread idles in its event loop, as in the app
        wall = time.perf_counter() - t0
        panel.training_finished.disconnect(results.append)
        panel.training_finished.disconnect(loop.quit)
        while panel.training:
            app.processEvents()
        h = results[0].history
        return (statistics.mean(e.images_per_s for e in h.epochs),
                len(data) * cfg.epochs / wall, panel.n_updates)

    headless()  # warm-up (imports, caches)
    hl, pl, updates = [], [], []
    for _ in range(args.runs):
        hl.append(headless())
        loop, wall, n = with_panel()
        pl.append((loop, wall))
        updates.append(n)
    h_loop = statistics.median(r[0] for r in hl)
    h_wall = statistics.median(r[1] for r in hl)
    p_loop = statistics.median(r[0] for r in pl)
    p_wall = statistics.median(r[1] for r in pl)
    print(f"LeNet-5, {args.images} MNIST images, {args.epochs} epoch(s), batch "
          f"{args.batch_size}, Adam; medians of {args.runs} alternating runs")
    print(f"  headless engine.nn.train.train : {h_loop:8,.0f} img/s in the loop, "
          f"{h_wall:8,.0f} img/s wall")
    print(f"  training panel (offscreen)  : {p_loop:8,.0f} img/s in the loop, "
          f"{p_wall:8,.0f} img/s wall, {statistics.median(updates):.0f} GUI updates per run")
    print(f"  ratio panel / headless      : {p_loop / h_loop:6.1%} in the loop, "
          f"{p_wall / h_wall:6.1%} wall   (goal >= 90%)")
    paired = statistics.median(p[0] / h[0] for h, p in zip(hl, pl))
    print(f"  median of paired ratios     : {paired:6.1%} in the loop (each panel run against "
          f"the headless run just before it)")
    print("  per-run loop img/s headless:", ", ".join(f"{r[0]:,.0f}" for r in hl))
    print("  per-run loop img/s panel   :", ", ".join(f"{r[0]:,.0f}" for r in pl))
    print("  per-run wall img/s headless:", ", ".join(f"{r[1]:,.0f}" for r in hl))
    print("  per-run wall img/s panel   :", ", ".join(f"{r[1]:,.0f}" for r in pl))
    panel.shutdown()
    panel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
