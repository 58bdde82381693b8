"""Feature maps of one image: every layer's output from the engine and from ONNX Runtime.

    python bench/bench_feature_maps.py                      # ResNet-50, 1×3×224×224
    python bench/bench_feature_maps.py --template resnet18 --repeats 11
    python bench/bench_feature_maps.py --gui                # + the panel itself, end to end

What the feature-map inspector runs for a big network (engine.onnx.layer_outputs): the template
with random weights (seeded), one image. Timed in one run, interleaved (engine, ORT, engine, ...
inside every repeat, so a burst of load hits both sides):
  engine first      the first Network.forward(x, keep=True) after compiling (cold caches)
  engine again      Network.forward(x, keep=True), median of the repeats
  ORT first         layer_outputs with no session kept: export, session build, run
  ORT again         layer_outputs for the same document revision (the kept session), median
  ORT output only   the same design's session without intermediate outputs (graph_model),
                    median: what exposing every layer's tensor costs (it blocks ORT's fusions)
The ORT results are checked against the engine's (largest difference per layer relative to the
layer's largest magnitude) before anything is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from engine.nn.network import Network
from engine.onnx import runtime
from engine.onnx.layer_outputs import ORT, layer_outputs, network_weights
from engine.zoo.templates import build_template


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--template", default="resnet50")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None,
                    help="ONNX Runtime intra-op threads (default: the cores this process may use)")
    ap.add_argument("--gui", action="store_true",
                    help="also the Feature maps panel itself: a new image to maps drawn")
    args = ap.parse_args()

    graph = build_template(args.template)
    net = Network.compile(graph, np.random.default_rng(0))
    shape = net.input_shape
    x = np.random.default_rng(1).uniform(0, 1, (1, *shape)).astype(np.float32)
    threads = args.threads or runtime.default_threads()
    print(f"{args.template}, input 1×{'×'.join(map(str, shape))}, {len(net.order)} layers, "
          f"ONNX Runtime {threads} threads, providers {runtime.default_providers()}")

    runtime.clear_sessions()
    t_engine_first, ref = timed(lambda: net.forward(x, keep=True))
    revision = ("bench", 1)
    t_ort_first, (outs, by) = timed(lambda: layer_outputs(net, graph, x, revision,
                                                          threads=threads))
    if by != ORT:
        sys.exit(f"ONNX Runtime did not run {args.template}: {by} computed the maps")
    worst = max(float(np.max(np.abs(ref[k].astype(np.float64) - outs[k])) /
                      max(float(np.max(np.abs(ref[k]))), 1e-12)) for k in ref)
    plain = runtime.graph_model(graph, network_weights(net), threads=threads)
    plain.run(x)

    engine, ort, only = [], [], []
    for _ in range(args.repeats):
        engine.append(timed(lambda: net.forward(x, keep=True))[0])
        ort.append(timed(lambda: layer_outputs(net, graph, x, revision, threads=threads))[0])
        only.append(timed(lambda: plain.run(x))[0])

    def ms(t: float) -> str:
        return f"{t * 1e3:8.1f} ms"

    med = statistics.median
    print(f"  engine first     {ms(t_engine_first)}")
    print(f"  engine again     {ms(med(engine))}   (median of {args.repeats})")
    print(f"  ORT first        {ms(t_ort_first)}   (export + session + run)")
    print(f"  ORT again        {ms(med(ort))}   (kept session; median of {args.repeats})")
    print(f"  ORT output only  {ms(med(only))}   (no intermediate outputs; median)")
    print(f"  engine again / ORT again: {med(engine) / med(ort):.1f}×;  largest per-layer "
          f"difference relative to the layer's range: {worst:.1e}")
    if args.gui:
        gui(args.template, args.repeats)


def gui(template: str, repeats: int) -> None:
    """The Feature maps panel itself (offscreen): from a new input image (the sample spin box)
    to its `computed` signal, emitted once the maps and class probabilities are drawn; the
    panel's 30 ms debounce, the worker thread and the drawing included."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    import designer.feature_maps as fm
    from designer.document import Document

    app = QApplication.instance() or QApplication([])
    doc = Document(build_template(template))
    doc.set_weights(Network.compile(doc.graph, np.random.default_rng(0)).state_dict())
    panel = fm.FeatureMapPanel(doc)
    panel.resize(900, 700)
    panel.show()
    stamps: list[float] = []
    panel.computed.connect(lambda: stamps.append(time.perf_counter()))

    def settle() -> None:  # the computation under way, its thread wound down
        loop = QEventLoop()
        panel.computed.connect(loop.quit)
        QTimer.singleShot(60_000, loop.quit)
        loop.exec()
        panel.computed.disconnect(loop.quit)
        while panel._thread is not None or panel._timer.isActive():
            app.processEvents()
            time.sleep(0.001)

    t0 = time.perf_counter()
    settle()
    first = stamps[-1] - t0
    panel.set_node(next(n.id for n in doc.graph.nodes.values() if n.name.startswith("layer2")))
    while panel._thread is not None or panel._timer.isActive():
        app.processEvents()
        time.sleep(0.001)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        panel.sample.setValue(panel.sample.value() + 1)  # a new input, the same revision
        settle()
        times.append(stamps[-1] - t0)
    panel.shutdown()
    print(f"  GUI first        {first * 1e3:8.1f} ms   (panel shown -> maps drawn)")
    print(f"  GUI new image    {statistics.median(times) * 1e3:8.1f} ms   (sample changed -> "
          f"maps drawn, median of {repeats}; goal < 150 ms)")


if __name__ == "__main__":
    main()
