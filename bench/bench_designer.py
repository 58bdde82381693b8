"""Designer speed: time from a parameter edit to the canvas showing the new shapes, and opening
plus laying out a big project. Prints medians; no pass/fail (goal: < 16 ms at 200 nodes).

    QT_QPA_PLATFORM=offscreen python bench/bench_designer.py [--quick]

Edit → shown = SetParamCommand pushed through the document (validation, incremental item
refresh) + processEvents() until the view has repainted. Two edits per size: a local one
(the first block's first conv filter count: the layers up to the next conv change) and a global one (the input's
height: every shape below changes). Validation alone is timed in the same run as the baseline.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtWidgets import QApplication

from designer import files
from designer.canvas import CanvasScene, CanvasView, layered_layout
from designer.commands import SetParamCommand
from designer.document import Document
from engine.graph import Graph
from engine.project import save_project
from engine.validate import validate


def resnet_like(n_nodes: int) -> Graph:
    """Input, then residual blocks (conv-bn-relu-conv-bn-add-relu) until ~n_nodes; a head."""
    g = Graph(f"bench{n_nodes}")
    g.add_node("Input", "input", {"channels": 3, "height": 64, "width": 64}, node_id="input")
    g.add_node("Conv2d", "stem", {"out_channels": 16, "kernel_size": 3, "padding": 1},
               node_id="stem")
    g.add_edge("input", "stem")
    prev, k = "stem", 0
    while len(g.nodes) < n_nodes - 4:
        b = f"b{k}_"
        ids = [g.add_node(t, b + nm, p, node_id=b + nm).id for t, nm, p in [
            ("Conv2d", "c1", {"out_channels": 16, "kernel_size": 3, "padding": 1}),
            ("BatchNorm2d", "bn1", {}), ("ReLU", "r1", {}),
            ("Conv2d", "c2", {"out_channels": 16, "kernel_size": 3, "padding": 1}),
            ("BatchNorm2d", "bn2", {}), ("Add", "add", {}), ("ReLU", "r2", {})]]
        g.add_edge(prev, ids[0])
        for a, c in pairwise(ids):
            g.add_edge(a, c)
        g.add_edge(prev, ids[5])
        prev, k = ids[-1], k + 1
    for t, nm, p in [("GlobalAvgPool2d", "gap", {}), ("Flatten", "flat", {}),
                     ("Linear", "fc", {"out_features": 10})]:
        g.add_node(t, nm, p, node_id=nm)
        g.add_edge(prev, nm)
        prev = nm
    for nid, pos in layered_layout(g).items():
        g.nodes[nid].position = pos
    return g


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def bench_edit(app: QApplication, n: int, reps: int) -> dict[str, float]:
    g = resnet_like(n)
    doc = Document(g)
    scene = CanvasScene(doc)
    view = CanvasView(scene)
    view.resize(1400, 900)
    view.show()
    view.set_zoom(0.6)
    view.centerOn(scene.node_items["stem"])
    app.processEvents()
    out = {"nodes": len(g.nodes)}

    t_val, c_val = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        validate(doc.graph)
        t_val.append(time.perf_counter() - t0)
        c_val.append(time.process_time() - c0)
    out["validate"] = median_ms(t_val)
    out["validate cpu"] = median_ms(c_val)

    for label, node, param, values in [("local", "b0_c1", "out_channels", (16, 32)),
                                       ("global", "input", "height", (64, 48))]:
        times, cpu = [], []
        for i in range(reps):
            value = values[(i + 1) % 2]
            t0, c0 = time.perf_counter(), time.process_time()
            doc.push(SetParamCommand(doc, node, param, value))
            app.processEvents()  # items refreshed, viewport repainted
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        # the canvas really shows the last value
        assert doc.validation.ok
        want = doc.validation.nodes["b0_r1"].out_shape
        shown = scene.node_items["b0_r1"].shape_text
        assert shown == "×".join(map(str, want)), (shown, want)
        out[label] = median_ms(times)
        out[label + " cpu"] = median_ms(cpu)
    view.close()
    view.deleteLater()
    scene.deleteLater()
    doc.deleteLater()
    app.processEvents()
    return out


def bench_open(app: QApplication, n: int, reps: int) -> dict[str, float]:
    g = resnet_like(n)
    for node in g.nodes.values():  # as if imported: no usable positions
        node.position = (0.0, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.cnnd"
        save_project(path, g)
        doc = Document()
        scene = CanvasScene(doc)
        view = CanvasView(scene)
        view.resize(1400, 900)
        view.show()
        app.processEvents()
        t_read, t_total = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            opened = files.open_file(path)  # read + validate format + auto layout
            t1 = time.perf_counter()
            doc.reset(opened.graph)
            view.fit()
            app.processEvents()
            t_total.append(time.perf_counter() - t0)
            t_read.append(t1 - t0)
        t_layout = []
        for _ in range(reps):
            t0 = time.perf_counter()
            layered_layout(g)
            t_layout.append(time.perf_counter() - t0)
        view.close()
        view.deleteLater()
        app.processEvents()
    return {"nodes": len(g.nodes), "open+layout (file)": median_ms(t_read),
            "layout alone": median_ms(t_layout), "open → painted": median_ms(t_total)}


def main() -> None:
    quick = "--quick" in sys.argv
    app = QApplication.instance() or QApplication([])
    reps = 5 if quick else 21
    print("edit → canvas shows new shapes: median ms, wall clock (CPU time of this process in "
          "brackets,\nwhich other load on the machine does not inflate); validation alone is the "
          "baseline")
    print(f"{'nodes':>6} {'validate':>15} {'local edit':>15} {'global edit':>15}  "
          f"{'local/validate':>14}")
    for n in (50, 200, 500):
        r = bench_edit(app, n, reps)
        cells = [f"{r[k]:6.2f} ({r[k + ' cpu']:5.2f})" for k in ("validate", "local", "global")]
        print(f"{r['nodes']:>6} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}"
              f"  {r['local cpu'] / max(r['validate cpu'], 1e-6):>13.1f}×")
    print()
    r = bench_open(app, 500, 3 if quick else 7)
    print(f"open a {r['nodes']}-node project without positions (median ms):")
    for k in ("open+layout (file)", "layout alone", "open → painted"):
        print(f"  {k:<20} {r[k]:8.1f}")


if __name__ == "__main__":
    main()
