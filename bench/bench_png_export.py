"""PNG export of DenseNet-201's canvas (offscreen Qt): the old single pass (render_image + save
on the GUI thread) against the export in strips (designer/canvas/png_export.py).

    python bench/bench_png_export.py

Prints the total time of each, the strips' count and longest strip, and the longest time the
event loop went without running (a zero-interval timer's largest gap, which also counts the
set-up before the first strip and the hand-over to the saving thread). Goal: longest gap
< 100 ms. No pass/fail.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from designer import files
from designer.main_window import MainWindow
from engine.zoo.templates import make_template


def main() -> None:
    app = QApplication.instance() or QApplication([])
    tmp = Path(tempfile.mkdtemp())
    w = MainWindow(settings=files.make_settings(tmp / "settings.ini"), autosave_dir=tmp / "as")
    w.resize(1600, 1000)
    w.show()
    t = make_template("densenet201")
    w.doc.reset(t.graph, blocks=t.blocks)
    w.initial_view()
    app.processEvents()
    _src, width, height, scale = w.scene.image_geometry(2.0)
    print(f"DenseNet-201: {len(t.graph.nodes)} nodes, image {width}×{height} px "
          f"(scale {scale:.2f})")

    t0 = time.perf_counter()
    ok = w.scene.render_image(2.0).save(str(tmp / "old.png"), "PNG")
    old = time.perf_counter() - t0
    print(f"single pass on the GUI thread: {old * 1e3:8.0f} ms blocking ({ok=})")

    last, gaps = [time.perf_counter()], []

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(tick)
    timer.start()
    t0 = time.perf_counter()
    ok = w.file_controller.export_canvas("png", str(tmp / "new.png"))
    total = time.perf_counter() - t0
    timer.stop()
    export = w.file_controller.png_export
    print(f"strips + saving thread:        {total * 1e3:8.0f} ms total ({ok=}), "
          f"{len(export.slice_ms)} strips, longest strip {max(export.slice_ms):.0f} ms, "
          f"median {sorted(export.slice_ms)[len(export.slice_ms) // 2]:.0f} ms")
    print(f"longest event-loop gap during the export: {max(gaps) * 1e3:.0f} ms "
          f"({len(gaps)} ticks)")
    w.doc.set_modified(False)
    w.close()


if __name__ == "__main__":
    main()
