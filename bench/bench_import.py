"""Opening a big ONNX model (VGG-11, 133 M parameters, 531 MB) against onnx.load +
onnxruntime.InferenceSession of the same file, all in the same run.

    python bench/bench_import.py [MODEL.onnx] [--repeats 5] [--threads N] [--before]

Without MODEL.onnx the script exports torchvision's vgg11(weights=None) itself (legacy
exporter, opset 17, input 1×3×224×224) into a temporary folder, removed at the end; that needs
torch and torchvision. Each repeat times, in turn:

  baseline   onnx.load(file) + InferenceSession(file) (CPU, the same threads as ours)
  import     engine.onnx.importer.import_onnx(file): read, check, map, validate
  save       engine.project.save_project of the imported graph and weights
  load       engine.project.load_project of that project
  ORT first  runtime.graph_model(graph, weights) + one batch-1 run, no session kept: what
             `infer --backend onnxruntime PROJECT` does
  ORT again  the same call again: the kept session (a digest of the weights) + the run
  ORT file   runtime.cached_model(file) + one run, no session kept (the import report's)
  engine     Network.compile(graph, weights=...) + one batch-1 forward (`infer --backend
             engine`)

and prints medians and minimums over the repeats with each median's ratio to the baseline's.
--before also times the old ORT path, OnnxModel(export_onnx(graph, weights)): the whole
model serialised, checked (onnx.checker, shape inference) and parsed again (~15 s for VGG-11).
Goals (issue 13): import ≤ 3 s, save ≤ 2 s. The machine may be shared: compare figures of one
run, not across runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.nn.network import Network
from engine.onnx import runtime
from engine.onnx.export import export_onnx
from engine.onnx.importer import import_onnx
from engine.onnx.runtime import CPU, OnnxModel, cached_model, default_threads, graph_model
from engine.project import load_project, save_project

GOALS = {"import": 3.0, "save": 2.0}


def export_vgg11(path: Path) -> None:
    """torchvision's VGG-11 (random weights) as ONNX: legacy exporter, opset 17, 1×3×224×224."""
    # the tests' loader: a CPU-only torch may lack torchvision's compiled ops (it declares the
    # two schemas torchvision's import needs); it skips, as pytest does, where either is missing
    from tests.engine.test_templates_torchvision import torchvision_models

    try:
        torch, models = torchvision_models()
    except BaseException as exc:  # pytest's Skipped derives from BaseException
        if isinstance(exc, KeyboardInterrupt):
            raise
        sys.exit(f"cannot build VGG-11 ({exc}); give an .onnx file: python "
                 f"bench/bench_import.py MODEL.onnx")
    model = models.vgg11(weights=None).eval()
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["output"])


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="an .onnx file (default: VGG-11 from torchvision)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help="ONNX Runtime intra-op threads, ours and the baseline's")
    ap.add_argument("--before", action="store_true",
                    help="also time OnnxModel(export_onnx(...)), the path before sessions kept "
                         "the weights apart (slow)")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp(prefix="bench_import_"))
    try:
        if args.model:
            path = Path(args.model)
            what = path.name
        else:
            path = tmp / "vgg11.onnx"
            print("exporting torchvision's vgg11(weights=None) (legacy exporter, opset 17)…",
                  flush=True)
            export_vgg11(path)
            what = "VGG-11 (torchvision, opset 17, 1×3×224×224)"
        project = tmp / "model.cnnd"
        print(f"{what}: {path.stat().st_size / 1e6:,.0f} MB; onnxruntime {ort.__version__}, "
              f"onnx {onnx.__version__}, numpy {np.__version__}; {args.threads} ORT threads; "
              f"medians of {args.repeats} repeats, steps interleaved", flush=True)

        def baseline():
            onnx.load(str(path))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            ort.InferenceSession(str(path), sess_options=opts, providers=[CPU])

        imp = import_onnx(path)  # warm-up (imports, page cache) and the data for the rest
        graph, weights = imp.graph, imp.weights
        x = np.random.default_rng(0).normal(size=(1, *imp.network().input_shape)) \
            .astype(np.float32)
        net = Network.compile(graph, weights=weights)
        y_engine = net.forward(x)
        del net
        y_file = OnnxModel(path, providers=[CPU], threads=args.threads).run(x)
        scale = float(np.abs(y_file).max())
        print(f"engine vs ONNX Runtime on the file: max |Δ| {np.abs(y_engine - y_file).max():.2g}"
              f" (outputs up to {scale:.3g})", flush=True)

        def ort_first():
            runtime.clear_sessions()
            graph_model(loaded.graph, loaded.weights, providers=[CPU], threads=args.threads).run(x)

        def ort_again():
            graph_model(loaded.graph, loaded.weights, providers=[CPU], threads=args.threads).run(x)

        def ort_file():
            runtime.clear_sessions()
            cached_model(path, providers=[CPU], threads=args.threads).run(x)

        def engine():
            Network.compile(loaded.graph, weights=loaded.weights).forward(x)

        def before():
            OnnxModel(export_onnx(loaded.graph, loaded.weights), providers=[CPU],
                      threads=args.threads).run(x)

        steps = ["baseline", "import", "save", "load", "ORT first", "ORT again", "ORT file",
                 "engine"] + (["before"] if args.before else [])
        times: dict[str, list[float]] = {s: [] for s in steps}
        save_project(project, graph, weights)
        loaded = load_project(project)
        for r in range(args.repeats):
            times["baseline"].append(seconds(baseline))
            times["import"].append(seconds(lambda: import_onnx(path)))
            times["save"].append(seconds(lambda: save_project(project, graph, weights)))
            t0 = time.perf_counter()
            loaded = load_project(project)
            times["load"].append(time.perf_counter() - t0)
            times["ORT first"].append(seconds(ort_first))
            times["ORT again"].append(seconds(ort_again))
            times["ORT file"].append(seconds(ort_file))
            times["engine"].append(seconds(engine))
            if args.before:
                times["before"].append(seconds(before))
            runtime.clear_sessions()
            print(f"  repeat {r + 1}: " + ", ".join(f"{s} {t[-1]:.2f} s" for s, t in
                                                   times.items()), flush=True)
        y_ours = graph_model(loaded.graph, loaded.weights, providers=[CPU]).run(x)
        runtime.clear_sessions()
        print(f"ORT through the project vs ORT on the file: max |Δ| "
              f"{np.abs(y_ours - y_file).max():.2g}")

        base = statistics.median(times["baseline"])
        print(f"\n  {'step':10s} {'median':>8s} {'min':>8s} {'÷ baseline':>11s}  goal")
        for s, t in times.items():
            med = statistics.median(t)
            goal = f"≤ {GOALS[s]:.0f} s" + (" ✓" if med <= GOALS[s] else " ✗") \
                if s in GOALS else ""
            print(f"  {s:10s} {med:7.2f}s {min(t):7.2f}s {med / base:10.2f}×  {goal}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
