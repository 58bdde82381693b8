"""The ONNX commands of the command line: export, infer, import (engine.cli.main plugs them in).

    python main.py export MODEL --out model.onnx [--opset N] [--preprocess [NHWC|NCHW]]
    python main.py infer MODEL (--data mnist|PATH | --input x.npy --output y.npy
                                | --image photo.jpg [--top 5]) [--backend engine|onnxruntime]
    python main.py import model.onnx --out PROJECT.cnnd [--no-parity] [--nodes]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelNotFoundError
from ..fileio import atomic_open
from ..summary import fmt_accuracy, human_bytes

OK, FAILED, USAGE = 0, 1, 2
PARITY_FAILED = 3  # import: written, but the network differs from ONNX Runtime on the file
IMPORT_EXIT_CODES = """\
exit codes:
  0    imported; it matches ONNX Runtime (or the check was skipped or could not run)
  1    the file cannot be imported (nothing is written), or another failure
  2    usage error (unknown option, bad option value)
  3    imported and written, but its output differs from ONNX Runtime's on the file
       beyond the tolerance (relative error {rtol})
"""
BACKENDS = ("engine", "onnxruntime")


def add_commands(sub) -> None:
    """Add the export, infer and import subcommands to an argparse subparsers object."""
    from ..onnx.export import MAX_OPSET, MIN_OPSET, OPSET
    from ..onnx.report import PARITY_RTOL, PARITY_SAMPLES, tolerance
    from .common import MODEL_HELP, _wrap, model_parser

    p = model_parser(
        sub, "export", help="export a model to ONNX",
        description="Export a project (.cnnd), architecture (.json) or example to an ONNX file "
                    "with its weights: one node per layer, dynamic batch size, checked with "
                    "onnx.checker. A model without trained weights is exported with its initial "
                    "weights (a warning says so).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=OPSET, metavar="N",
                   help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {OPSET})")
    p.add_argument("--keep-dropout", action="store_true",
                   help="write Dropout layers as Dropout nodes (default: wired through, as "
                        "inference does nothing there)")
    add_preprocess_options(p)
    p.set_defaults(func=cmd_export)

    p = model_parser(
        sub, "infer", help="run a model (engine or ONNX Runtime) on data",
        description="Run a model on a dataset (accuracy where it has labels, else predictions) "
                    "or on a float32 N×C×H×W .npy array, writing the raw output array.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP + " (an .onnx file runs as it "
                   "is in ONNX Runtime)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="mnist|PATH", help="dataset: 'mnist', .npz, IDX files or "
                     "a folder of class subfolders of images")
    src.add_argument("--input", metavar="X.npy", help="float32 array N×C×H×W (or C×H×W), "
                     "fed as it is (integer pixels are scaled to 0..1 as --data does)")
    src.add_argument("--image", metavar="PHOTO", help="a photo (JPEG, PNG, …; any mode), "
                     "prepared by the model's input spec; prints the top classes")
    p.add_argument("--top", type=int, default=5, metavar="K",
                   help="with --image: how many classes to print (default 5)")
    p.add_argument("--output", metavar="Y.npy", help="where --input's output array is written")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime",
                   help="engine (NumPy) or onnxruntime (default; CUDA or another accelerator "
                        "when the installed onnxruntime has one)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use the first N samples of the dataset")
    p.add_argument("--batch-size", type=int, default=256, metavar="N",
                   help="images per batch (default 256)")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser(
        "import", help="import an ONNX model as a project",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_wrap(
            "Import an ONNX model (from this app, PyTorch, Keras, the model zoo) made of "
            "supported operators into a project file with its weights, and report how: each ONNX "
            "op, how many nodes of it and what they became, the opset conversion, and the parity "
            "of the imported network with ONNX Runtime running the original file on "
            f"{PARITY_SAMPLES} seeded N(0, 1) inputs (max absolute error, max relative error: "
            "each sample's largest difference over its largest |output|, and top-1 agreement)."),
        epilog=IMPORT_EXIT_CODES.format(rtol=tolerance(PARITY_RTOL)))
    p.add_argument("onnx_file", metavar="MODEL.onnx")
    p.add_argument("--out", required=True, metavar="PROJECT", help="the .cnnd project to write")
    p.add_argument("--input-shape", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="input size where the file leaves it open")
    p.add_argument("--no-parity", action="store_true",
                   help="skip the comparison with ONNX Runtime")
    p.add_argument("--nodes", action="store_true",
                   help="list every ONNX node and what it became, not only the op table")
    p.add_argument("--keep-dropout", action="store_true",
                   help="import Dropout nodes as Dropout layers with their rates (for "
                        "fine-tuning); by default they are removed, as they do nothing at "
                        "inference (our own export --keep-dropout always comes back)")
    p.set_defaults(func=cmd_import)


def _usage(text: str):
    from .common import UsageError

    return UsageError(text)


def _load(spec: str):
    """(graph, weights or None) of a project / .json / example / template / .onnx."""
    from ..models import load_model

    project = load_model(spec)
    return project.graph, project.weights


def _check_out(path: str, suffix: str) -> Path:
    from .common import check_out

    return check_out(path, "model" + suffix, "--output" if suffix == ".npy" else "--out")


def cmd_export(args) -> int:
    from ..onnx.export import MAX_OPSET, MIN_OPSET

    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        raise _usage(f"--opset {args.opset} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
    out = _check_out(args.out, ".onnx")
    graph, weights = _load(args.model)
    if weights is None:
        print(f"warning: '{args.model}' has no trained weights; exporting its initial weights",
              file=sys.stderr)
    model = export_with_preprocessing(graph, weights, out, args.preprocess, args.pixel_type,
                                      opset=args.opset, keep_dropout=args.keep_dropout)
    print(f"wrote {out} ({human_bytes(out.stat().st_size)}): {len(model.graph.node)} nodes, "
          f"opset {args.opset}, input {_dims(model.graph.input[0])}, output "
          f"{_dims(model.graph.output[0])}", file=sys.stderr)
    return OK


def add_preprocess_options(p, what: str = "") -> None:
    """--preprocess [NHWC|NCHW] and --pixel-type (export, finetune --onnx)."""
    p.add_argument("--preprocess", nargs="?", const="NHWC", choices=("NHWC", "NCHW"),
                   default=None, help=f"{what}take 0..255 pixels (N×H×W×C, or NCHW) and apply "
                   "the model's input spec inside (cast, scale, mean, std); resize and crop "
                   "stay outside, as the metadata says")
    p.add_argument("--pixel-type", choices=("uint8", "float32"), default="uint8",
                   help="with --preprocess: the pixels' type (default uint8)")


def export_with_preprocessing(graph, weights, out, layout: str | None, pixel_type: str = "uint8",
                              **export_options):
    """Write `graph` with `weights` to the .onnx `out`; with `layout` (NHWC / NCHW) the model's
    input spec is applied inside (engine/onnx/preprocess.py) and a line on stderr says so.
    Returns the ONNX model."""
    from ..onnx.export import export_onnx

    if not layout:
        return export_onnx(graph, weights, path=out, **export_options)
    from ..inputspec import model_spec
    from ..onnx.export import save_model
    from ..onnx.preprocess import add_preprocessing

    spec = model_spec(graph)
    model = add_preprocessing(export_onnx(graph, weights, **export_options), spec, layout,
                              pixel_type)
    save_model(model, out)
    print(f"preprocessing inside: pixels {layout} {pixel_type} 0..255 at "
          f"{spec.size[0]}×{spec.size[1]} (resize and crop outside: {spec.describe()})",
          file=sys.stderr)
    return model


def _dims(vi) -> str:
    return "×".join(d.dim_param or str(d.dim_value) for d in vi.type.tensor_type.shape.dim)


def _runner(spec: str, backend: str, check=None):
    """A function (N, C, H, W) -> output, the model's input shape (C, H, W; None where an ONNX
    file leaves a size open) and its graph (None for an .onnx file run as it is).
    check(input_shape) runs as soon as the shape is known, before any export or compile."""
    graph = None
    if backend == "onnxruntime":
        from ..onnx.runtime import OnnxModel, graph_model

        if spec.lower().endswith(".onnx"):
            if not Path(spec).is_file():  # a missing MODEL is a usage error everywhere
                raise ModelNotFoundError(f"MODEL '{spec}': no such file")
            model = OnnxModel(spec)
        else:
            graph, weights = _load(spec)
            if check is not None:
                check(_graph_input_shape(graph))
            if weights is None:
                print("warning: the model has no trained weights; using its initial weights",
                      file=sys.stderr)
            # weights handed over as arrays, the export unchecked (the graph validated): VGG-11's
            # session in ~2 s instead of ~15 s of serialising and checking 0.5 GB
            model = graph_model(graph, weights)
        print(f"onnxruntime on {', '.join(model.providers)}", file=sys.stderr)
        if spec.lower().endswith(".onnx") and _channels_last(spec):
            # a Keras-style N×H×W×C file: the command reads N×C×H×W like every other model
            h, w, c = model.input_shape
            print("note: the file's input is channels-last; the N×C×H×W data is transposed for "
                  "it", file=sys.stderr)
            if check is not None:
                check((c, h, w))
            return (lambda x: model.run(np.ascontiguousarray(
                np.asarray(x).transpose(0, 2, 3, 1)))), (c, h, w), graph
        if check is not None:
            check(model.input_shape)
        return model.run, model.input_shape, graph
    from ..nn.network import Network

    graph, weights = _load(spec)
    if check is not None:
        check(_graph_input_shape(graph))
    if weights is None:
        print("warning: the model has no trained weights; using its initial weights",
              file=sys.stderr)
    # a project's weights fit its graph (load_project checked them): no random initialisation
    net = Network.compile(graph, np.random.default_rng(0), weights=weights)
    return net.forward, net.input_shape, graph


def _graph_input_shape(graph) -> tuple:
    """(C, H, W) of the graph's Input (the graph is checked on compile / export anyway)."""
    from ..validate import validate

    v = validate(graph)
    v.raise_if_invalid("run it")
    return tuple(v.nodes[next(n for n in v.order
                              if graph.nodes[n].type_name == "Input")].out_shape)


def _channels_last(path: str) -> bool:
    """Whether an ONNX file's image input is N×H×W×C (read through Transpose(0, 3, 1, 2))."""
    from ..onnx.importer import channels_last_input, read_model

    return channels_last_input(read_model(path))


def cmd_infer(args) -> int:
    if args.image:
        if args.output:
            raise _usage("--output goes with --input; with --image the top classes are printed")
        if args.top < 1:
            raise _usage(f"--top must be at least 1, got {args.top}")
        return _infer_image(args)
    if args.input and not args.output:
        raise _usage("--input needs --output (where to write the output array)")
    if args.output and not args.input:
        raise _usage("--output goes with --input; with --data the results are printed")
    if args.batch_size < 1:
        raise _usage("--batch-size must be at least 1")
    check = None
    if args.input:
        x, single = _read_array(args.input)
        _check_out(args.output, ".npy")

        def check(want):
            _check_shape(args.input, x, single, want)
    run, in_shape, graph = _runner(args.model, args.backend, check)
    if args.input:
        return _infer_array(args, run, x, single)
    from ..data import check_data, load_dataset
    from ..inputspec import data_spec
    from ..validate import validate
    from .common import image_folder_note

    shape = tuple(in_shape) if None not in in_shape else None
    spec = data_spec(graph) if graph is not None else _file_spec(args.model, shape)
    bundle = load_dataset(args.data, shape, args.limit, spec)
    ds = bundle.test if bundle.test is not None else bundle.train
    x, y = ds.x, ds.y
    note = image_folder_note(args.data, shape, spec)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if shape is not None and tuple(x.shape[1:]) != shape:
        raise DataError(f"--data {args.data}: the model expects {_fmt(shape)} images, the data "
                        f"is {_fmt(x.shape[1:])}")
    if graph is None and args.model.lower().endswith(".onnx"):
        graph = _graph_or_none(args.model)
    if graph is not None and y is not None:
        for m in check_data(graph, bundle):
            if m.kind == "classes":  # (channels and size were converted on loading)
                v = validate(graph)
                n_out = int(np.prod(v.nodes[v.output_id].out_shape))
                names = (f" ({', '.join(bundle.classes[:5])}"
                         f"{', …' if len(bundle.classes) > 5 else ''})" if bundle.classes else "")
                print(f"warning: the data has {bundle.num_classes} classes{names} but the model "
                      f"outputs {n_out} values: the accuracy compares the labels 0-"
                      f"{bundle.num_classes - 1} with predicted classes 0-{n_out - 1}; is this "
                      f"the data the model was trained for?", file=sys.stderr)
    preds, outs = [], []
    for i in range(0, len(x), args.batch_size):
        out = np.asarray(run(x[i:i + args.batch_size]))
        outs.append(out)
        preds.append(out.reshape(len(out), -1).argmax(axis=1))
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    name = getattr(ds, "name", str(args.data))
    if y is not None and len(y) == len(pred) and len(pred):
        acc = float((pred == y).mean())
        print(f"{name}: accuracy {fmt_accuracy(acc)} ({int((pred == y).sum()):,}/"
              f"{len(pred):,}) [{args.backend}]")
    else:
        for i, p in enumerate(pred):
            print(f"{i}\t{int(p)}")
    return OK


def _infer_image(args) -> int:
    """infer --image: the photo through the model's input spec, the top classes printed."""
    from ..inputspec import model_spec, spec_note
    from ..predict import class_names, outputs_probabilities, photo_batch, probabilities, top_k

    own, already, pixels = None, False, None
    if args.model.lower().endswith(".onnx"):  # run as it is: its stored spec, else the default
        from ..onnx.preprocess import pixel_input, read_spec

        if not Path(args.model).is_file():
            raise ModelNotFoundError(f"MODEL '{args.model}': no such file")
        pixels = pixel_input(args.model)  # export --preprocess: it takes the pixels
        if pixels is not None:
            run = _pixel_runner(args.model, args.backend, pixels)
        else:
            run, in_shape, _ = _runner(args.model, args.backend)
        spec = read_spec(args.model, None if pixels else in_shape)
    else:
        from ..models import load_model

        project = load_model(args.model)
        graph = project.graph
        run = _graph_runner(graph, project.weights, args.backend)
        if spec_note(graph):
            print(f"note: {spec_note(graph)}", file=sys.stderr)
        spec, already = model_spec(graph), outputs_probabilities(graph)
        data = project.meta.get("data")  # fine-tuning keeps the data's class names there
        own = data.get("classes") if isinstance(data, dict) else None
        own = [str(c) for c in own] if isinstance(own, list) else None
    if pixels is not None:
        from ..onnx.preprocess import photo_pixel_batch

        x, notes = photo_pixel_batch(args.image, spec, *pixels)
        print(f"note: {args.model} takes the pixels ({' '.join(pixels)}) and applies the "
              f"input spec inside", file=sys.stderr)
    else:
        x, notes, spec = photo_batch(None, args.image, spec)
    for n in notes:
        print(f"note: {args.image}: {n}", file=sys.stderr)
    print(f"input spec: {spec.describe()}", file=sys.stderr)
    probs = probabilities(np.asarray(run(x)), already)[0]
    for r in top_k(probs, args.top, class_names(probs.size, own)):
        print(f"{r.index}\t{r.probability:.6f}\t{r.name}")
    return OK


def _pixel_runner(path: str, backend: str, pixels: tuple[str, str]):
    """Pixels -> output of an .onnx file with its preprocessing inside (ONNX Runtime only)."""
    if backend != "onnxruntime":
        raise DataError(f"{path} takes {' '.join(pixels)} pixels with the preprocessing inside; "
                        f"run it with --backend onnxruntime (or export it without --preprocess)")
    from ..onnx.runtime import OnnxModel

    model = OnnxModel(path)
    print(f"onnxruntime on {', '.join(model.providers)}", file=sys.stderr)
    return lambda x: model.session.run(model.output_names[:1], {model.input_name: x})[0]


def _graph_runner(graph, weights, backend: str):
    """(N, C, H, W) -> output of a loaded graph on `backend`."""
    if weights is None:
        print("warning: the model has no trained weights; using its initial weights",
              file=sys.stderr)
    if backend == "onnxruntime":
        from ..onnx.runtime import graph_model

        model = graph_model(graph, weights)
        print(f"onnxruntime on {', '.join(model.providers)}", file=sys.stderr)
        return model.run
    from ..nn.network import Network

    return Network.compile(graph, np.random.default_rng(0), weights=weights).forward


def _fmt(shape) -> str:
    return "×".join("?" if d is None else str(d) for d in shape)


def _graph_or_none(spec: str):
    """The graph of an .onnx file for the data checks; None where it does not import (the file
    still runs in ONNX Runtime)."""
    from ..errors import EngineError

    try:
        return _load(spec)[0]
    except (EngineError, OSError):
        return None


def _file_spec(model: str, shape):
    """The input spec an .onnx file carries in its metadata (our export writes it), else the
    default for its input; None where no photo fits it (the loader then says why)."""
    if not model.lower().endswith(".onnx"):
        return None
    from ..onnx.preprocess import read_spec

    try:
        return read_spec(model, shape)
    except DataError:
        return None


def _read_array(spec: str) -> tuple[np.ndarray, bool]:
    """--input: a finite N×C×H×W (or C×H×W: single=True) array as float32 N×C×H×W."""
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"--input {path}: no such file")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"--input {path} is not a readable .npy array ({exc})") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu" or x.ndim not in (3, 4):
        raise DataError(f"--input {path}: expected a float32 N×C×H×W array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                        f"{getattr(x, 'shape', '?')}")
    single = x.ndim == 3
    if x.dtype.kind in "iu":  # pixels, as --data reads them: uint8 / 255 (others by range)
        from ..data import to_unit_float

        print(f"note: --input {path} holds {x.dtype} pixels; scaled to 0..1 as --data scales "
              f"images", file=sys.stderr)
        x = to_unit_float(x, f"--input {path}")
    x = np.asarray(x[None] if single else x, np.float32)
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise DataError(f"--input {path}: {bad:,} of {x.size:,} values are NaN or infinite; "
                        f"the outputs would be NaN. Replace them first (e.g. "
                        f"np.nan_to_num(x))")
    return x, single


def _check_shape(name: str, x: np.ndarray, single: bool, want) -> None:
    """DataError (one line, both shapes) unless x (N, C, H, W) fits the model's input (C, H, W;
    None: any size)."""
    want = tuple(want)
    if len(x.shape) - 1 != len(want) or any(
            w is not None and g != w for g, w in zip(x.shape[1:], want)):
        raise DataError(f"--input {name}: the model expects N×{_fmt(want)} (or "
                        f"{_fmt(want)}), the array is {_fmt(x.shape[1:] if single else x.shape)}")


def _infer_array(args, run, x: np.ndarray, single: bool) -> int:
    """Run --input's array (already checked against the model's input) and write --output."""
    outs = [np.asarray(run(x[i:i + args.batch_size]), np.float32)
            for i in range(0, len(x), args.batch_size)]
    y = np.concatenate(outs) if outs else np.zeros((0,), np.float32)
    if single:
        y = y[0]
    out = _check_out(args.output, ".npy")
    try:
        with atomic_open(out) as f:
            np.save(f, y)
    except OSError as exc:
        raise DataError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}: {y.dtype} {_fmt(y.shape)} [{args.backend}]", file=sys.stderr)
    return OK


def cmd_import(args) -> int:
    """Import, print the report, write the project, then compare with ONNX Runtime: exit
    PARITY_FAILED when the imported network differs beyond the tolerance (the project is
    written all the same, to be inspected)."""
    from ..onnx import importer
    from ..onnx.report import check_parity
    from ..project import save_project

    if not Path(args.onnx_file).is_file():  # a missing MODEL is a usage error everywhere
        raise ModelNotFoundError(f"MODEL.onnx '{args.onnx_file}': no such file")
    out = _check_out(args.out, ".cnnd")
    imp = importer.import_onnx(args.onnx_file, input_shape=args.input_shape,
                               keep_dropout=args.keep_dropout)
    if imp.record is not None:
        print(imp.record.text(nodes=args.nodes, warnings=False), file=sys.stderr)
    for w in imp.warnings:
        print(f"note: {w}", file=sys.stderr)
    meta = {"imported_from": Path(args.onnx_file).name, "onnx_producer": imp.producer,
            "onnx_opset": imp.opset}
    save_project(out, imp.graph, imp.weights, meta=meta)
    n = len(imp.graph.nodes)
    params = sum(int(a.size) for a in imp.weights.values())
    print(f"wrote {out}: {n} layers, {params:,} weights (from {imp.producer}, opset {imp.opset})",
          file=sys.stderr)
    if args.no_parity:
        return OK
    parity = check_parity(args.onnx_file, imp)
    print(parity.text(), file=sys.stderr)
    if parity.ok is False:
        print(f"error: the imported network does not match ONNX Runtime on "
              f"{Path(args.onnx_file).name}; {out} was written for inspection", file=sys.stderr)
        return PARITY_FAILED
    return OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (the app's own CLI adds these commands to main.py)."""
    parser = argparse.ArgumentParser(prog="onnx_cli")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
