"""Big graphs in the designer: DenseNet-201 (708 layers) in the main window.

    QT_QPA_PLATFORM=offscreen python bench/bench_big_graphs.py [--quick]

Prints medians (ms); no pass/fail. Goals: open (build + validate + layout + first paint) well
under 2 s, an edit re-validated and repainted within a frame (16 ms), pan / zoom frames short.

- open: MainWindow.load_template("densenet201") split into its parts: build the template, the
  document reset (validation + scene items + panels that listen), the first view (fit or top
  at a readable zoom) and the first paint of the viewport; validation alone as the baseline;
  the layered layout (what an imported DenseNet without positions pays on open) apart.
- edit → repaint: SetParamCommand pushed through the document, then the viewport repainted
  (local: the last dense layer's 3×3 conv; global: the stem conv's filters, every shape below
  changes).
- pan / zoom frames: the time to paint the viewport after a scroll step (40 px) or a zoom
  step (×1.1 in, then back), median over 30 steps, with every layer shown (at 100 % and at
  fit) and with the blocks collapsed (at fit). `viewport().repaint()` paints synchronously,
  so the figure is the whole frame's drawing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtWidgets import QApplication

from designer import files
from designer.canvas import layered_layout
from designer.commands import SetParamCommand
from designer.main_window import MainWindow
from engine.validate import validate
from engine.zoo.templates import make_template

KEY = "densenet201"


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def make_window(tmp: Path) -> MainWindow:
    w = MainWindow(settings=files.make_settings(tmp / "settings.ini"), autosave_dir=tmp / "as")
    w.resize(1600, 1000)
    w.show()
    QApplication.processEvents()
    return w


def bench_open(w: MainWindow, reps: int) -> dict[str, float]:
    parts: dict[str, list[float]] = {k: [] for k in ("build", "reset", "view", "paint",
                                                     "total", "validate", "layout")}
    for _ in range(reps):
        w.doc.set_modified(False)
        t0 = time.perf_counter()
        t = make_template(KEY)
        t1 = time.perf_counter()
        w.doc.reset(t.graph, blocks=t.blocks)
        t2 = time.perf_counter()
        w.initial_view()
        QApplication.processEvents()
        t3 = time.perf_counter()
        w.view.viewport().repaint()
        t4 = time.perf_counter()
        for k, v in zip(("build", "reset", "view", "paint", "total"),
                        (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            parts[k].append(v)
        t0 = time.perf_counter()
        validate(t.graph)
        parts["validate"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        layered_layout(t.graph)
        parts["layout"].append(time.perf_counter() - t0)
    return {k: ms(v) for k, v in parts.items()}


def bench_edit(w: MainWindow, reps: int) -> dict[str, float]:
    doc = w.doc
    out = {}
    for label, node, param, values in [
            ("local", "features.denseblock4.denselayer32.conv2", "out_channels", (32, 33)),
            ("global", "features.conv0", "out_channels", (64, 65))]:
        w.editor.reveal_node(node)
        QApplication.processEvents()
        times = []
        for i in range(reps):
            t0 = time.perf_counter()
            doc.push(SetParamCommand(doc, node, param, values[(i + 1) % 2]))
            w.view.viewport().repaint()
            times.append(time.perf_counter() - t0)
        QApplication.processEvents()
        assert doc.validation.ok
        out[label] = ms(times)
    return out


def frames(w: MainWindow, steps: int) -> dict[str, float]:
    """Median paint time after scroll steps and after zoom steps."""
    view, vp = w.view, w.view.viewport()
    bar = view.verticalScrollBar()
    QApplication.processEvents()
    vp.repaint()
    pan = []
    sign = 1
    for _ in range(steps):
        if not bar.minimum() <= bar.value() + sign * 40 <= bar.maximum():
            sign = -sign
        bar.setValue(bar.value() + sign * 40)
        t0 = time.perf_counter()
        vp.repaint()
        pan.append(time.perf_counter() - t0)
    zoom = []
    for i in range(steps):
        view.zoom_by(1.1 if i % 2 == 0 else 1 / 1.1)
        t0 = time.perf_counter()
        vp.repaint()
        zoom.append(time.perf_counter() - t0)
    return {"pan": ms(pan), "zoom": ms(zoom), "zoom level": view.zoom() * 100}


def bench_frames(w: MainWindow, steps: int) -> dict[str, dict[str, float]]:
    out = {}
    w.doc.set_modified(False)  # no "save changes?" question
    w.file_controller.load_template(KEY)
    w.view.set_zoom(1.0)
    w.editor.reveal_node("features.denseblock3.denselayer20.conv1")
    out["expanded, 100 %"] = frames(w, steps)
    w.view.fit()
    out["expanded, fit"] = frames(w, steps)
    w.editor.collapse_all()
    w.view.fit()
    out["collapsed, fit"] = frames(w, steps)
    w.view.set_zoom(1.0)
    out["collapsed, 100 %"] = frames(w, steps)
    t0 = time.perf_counter()
    w.scene.expand_all()
    QApplication.processEvents()
    out["expand all"] = {"ms": (time.perf_counter() - t0) * 1e3}
    t0 = time.perf_counter()
    w.scene.collapse_all()
    QApplication.processEvents()
    out["collapse all"] = {"ms": (time.perf_counter() - t0) * 1e3}
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    app = QApplication.instance() or QApplication([])
    reps = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        w = make_window(Path(tmp))
        w.file_controller.load_template(KEY)  # warm up (imports, fonts)
        r = bench_open(w, reps)
        print(f"open DenseNet-201 ({len(w.doc.graph.nodes)} layers, {len(w.doc.graph.edges)} "
              f"connections) in the main window, median of {reps} (ms):")
        for k, label in [("build", "build the template"),
                         ("reset", "document reset (validate + items + panels)"),
                         ("view", "first view (fit / top) + events"),
                         ("paint", "first viewport paint"),
                         ("total", "total"),
                         ("validate", "  baseline: validate alone"),
                         ("layout", "  layered layout (an import without positions)")]:
            print(f"  {label:<46} {r[k]:8.1f}")
        e = bench_edit(w, 5 if quick else 21)
        print("edit → validated + repainted, median (ms):")
        print(f"  {'local (last dense layer conv2 filters)':<46} {e['local']:8.2f}")
        print(f"  {'global (stem conv filters: every shape below)':<46} {e['global']:8.2f}")
        print(f"  {'baseline: validate alone':<46} {r['validate']:8.2f}")
        f = bench_frames(w, 10 if quick else 30)
        print("pan / zoom: paint time of one frame after a step, median (ms):")
        for k, v in f.items():
            if "pan" in v:
                print(f"  {k:<22} pan {v['pan']:7.2f}   zoom {v['zoom']:7.2f}   "
                      f"(at {v['zoom level']:.0f} %)")
            else:
                print(f"  {k:<22} {v['ms']:7.1f}")
        w.doc.set_modified(False)
        w.shutdown()
        w.close()
        w.deleteLater()
        app.processEvents()


if __name__ == "__main__":
    main()
