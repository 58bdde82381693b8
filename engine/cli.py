"""The command line: summary, train, examples, and the subcommands other modules plug in.

    python main.py summary lenet5 --format markdown
    python main.py train lenet5 --data mnist --epochs 1 --out lenet5.cnnd

MODEL is a project file (.cnnd), a bare architecture .json, an ONNX file (.onnx, imported on
the fly), an example name (lenet5, ...) or a template name (alexnet, vgg16, resnet18, ...).
Exit codes: 0 ok; 1 invalid graph or failed; 2 usage error; 130 interrupted by Ctrl+C (during
training the first Ctrl+C stops after the batch and the last good weights are saved).

Output convention, for every command: data on stdout (summary tables, listings, per-epoch
metrics, accuracies, predictions), so it can be piped; messages on stderr (progress, notes,
warnings, errors and the "wrote FILE" / "saved FILE" lines). Accuracies print as percentages
with two decimals (summary.fmt_accuracy), file sizes in decimal units (summary.human_bytes).
A usage error prints one line, "cnn-designer COMMAND: error: ...", and a pointer to --help.

Each module in PLUGIN_MODULES (ONNX export / infer / import, PyTorch export, templates, fine-tuning)
contributes subcommands: `add_commands(subparsers)` adds its
parsers with `set_defaults(func=handler)`, handler(args) -> exit code (None means 0); an
EngineError it raises is printed as "error: ..." with exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import math
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from . import __version__
from .errors import EngineError
from .examples import example_names, load_example
from .project import Project, load_project, save_project
from .summary import FORMATS, fmt_accuracy, format_summary, human_bytes, summarize
from .train import SCHEDULES

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

EPILOG = """\
MODEL is a project file (.cnnd), a bare architecture .json, an ONNX file
(.onnx, imported on the fly), an example name ({examples})
or a template name:
{templates}

exit codes:
  0    success
  1    the graph is invalid, a file cannot be read, or the command failed
  2    usage error (unknown command or option, bad option value)
  130  training interrupted with Ctrl+C (the last good weights were still saved)
"""


MODEL_HELP = "project .cnnd, architecture .json, .onnx file, example or template name"


class UsageError(Exception):
    """A bad command-line value found after parsing: exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the (sub)command and pointing at --help
    instead of the whole usage block."""

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: error: {message}\n"
                         f"see '{self.prog} --help'\n")


def _wrap_list(names, width: int = 72, indent: str = "  ") -> str:
    """A comma-separated list wrapped to `width` columns (for the pre-formatted epilog)."""
    import textwrap

    return "\n".join(textwrap.wrap(", ".join(names), width, initial_indent=indent,
                                   subsequent_indent=indent))


def model_parser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand that takes MODEL: the MODEL / exit-code epilog and raw (pre-wrapped) help."""
    kwargs.setdefault("epilog", model_epilog())
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    if "description" in kwargs:
        kwargs["description"] = _wrap(kwargs["description"])
    return sub.add_parser(name, **kwargs)


def _wrap(text: str, width: int = 78) -> str:
    import textwrap

    return "\n\n".join(textwrap.fill(p, width) for p in text.split("\n\n"))


def model_epilog() -> str:
    from .templates import TEMPLATES

    return EPILOG.format(examples=", ".join(example_names()),
                         templates=_wrap_list(TEMPLATES))


def int_at_least(lo: int):
    """argparse type: a whole number >= lo."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v
    return parse


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def _float_in(lo: float, hi: float | None, lo_open: bool, hi_open: bool = True):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        bad = (not math.isfinite(v) or (v <= lo if lo_open else v < lo)
               or (hi is not None and (v >= hi if hi_open else v > hi)))
        if bad:
            rng = f"{'(' if lo_open else '['}{lo:g}, {'∞' if hi is None else f'{hi:g}'})"
            raise argparse.ArgumentTypeError(f"must be in {rng}, got {text}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    epilog = model_epilog()
    parser = Parser(
        prog="cnn-designer",
        description=_wrap("CNN Designer on the command line. Without a command, `python "
                          "main.py` (or cnn-designer-gui) opens the designer window; `python "
                          "main.py FILE` opens FILE in it."),
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"CNN Designer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = model_parser(sub, "summary",
                     help="layer table: shapes, parameters, MACs, receptive field",
                     description="Print a summary of MODEL: per layer name, type, output "
                     "shape (C×H×W), parameters (frozen layers marked), MACs, receptive field "
                     "and effective stride; totals and memory. An invalid graph lists every "
                     "problem and exits 1. Weights that do not fit the graph are reported on "
                     "stderr (the summary does not need them).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--format", "-f", choices=FORMATS, default="text",
                   help="output format (default: text)")
    p.set_defaults(func=cmd_summary)

    p = model_parser(sub, "train", help="train MODEL on MNIST or your data, save a project",
                     description="Train MODEL and save the trained weights and the history "
                     "to the project file --out. Progress goes to stderr, per-epoch metrics "
                     "and the test accuracy to stdout. Ctrl+C stops after the current batch "
                     "and saves the last good weights (press it twice to abort at once).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--data", required=True, metavar="mnist|PATH",
                   help="'mnist' (embedded), an .npz (arrays x, y), IDX files or a folder of "
                   "IDX files, or a folder with one subfolder of images per class")
    p.add_argument("--out", "-o", required=True, metavar="PROJECT",
                   help="project file to write (.cnnd)")
    p.add_argument("--epochs", type=positive_int, default=5, help="default: 5")
    add_training_options(p, batch_size=64)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("examples", help="list the example networks",
                       description="List the example networks usable as MODEL.")
    p.set_defaults(func=cmd_examples)

    for module in PLUGIN_MODULES:
        _add_plugin_commands(sub, module)
    return parser


# Modules that contribute subcommands through `add_commands(subparsers)`.
PLUGIN_MODULES = ("onnx_cli", "pytorch_export", "template_cli", "finetune")


def _add_plugin_commands(sub, module: str) -> None:
    """A module's subcommands plug in here; a broken one must not break summary / train."""
    name = f"{__package__}.{module}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return
        print(f"warning: the {module} commands are unavailable ({exc})", file=sys.stderr)
        return
    except Exception as exc:  # noqa: BLE001
        print(f"warning: the {module} commands are unavailable ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return
    mod.add_commands(sub)


def command_names() -> list[str]:
    """The subcommands (main.py sends these to the CLI, everything else to the GUI)."""
    parser = build_parser()
    for action in parser._subparsers._group_actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 after --help / --version, 2 on bad usage
        return int(exc.code or 0) if not isinstance(exc.code, str) else USAGE
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a COMMAND is needed; see '{parser.prog} --help'",
              file=sys.stderr)
        return USAGE
    try:
        rc = args.func(args)
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}\nsee '{parser.prog} {args.command} "
              f"--help'", file=sys.stderr)
        return USAGE
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except BrokenPipeError:  # `... | head`
        return OK
    except KeyboardInterrupt:  # outside training, or a second Ctrl+C during it
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED
    return OK if rc is None else int(rc)


# ---- MODEL -------------------------------------------------------------------------------

def load_model(spec: str, strict: bool = True) -> Project:
    """A project file, a bare architecture .json, an .onnx file (imported on the fly), an
    example or a template name. strict=False: weights that do not fit the graph are dropped and
    listed in Project.warnings (load_project)."""
    from .templates import TEMPLATES, build_template

    path = Path(spec)
    if path.is_file() and _is_onnx(path):
        from .onnx_import import import_onnx

        imp = import_onnx(path)
        for w in imp.warnings:
            print(f"note: {w}", file=sys.stderr)
        return Project(imp.graph, imp.weights, {"imported_from": path.name}, path)
    if path.exists():
        return load_project(path, strict=strict)
    if spec in example_names():
        return Project(load_example(spec))
    if spec in TEMPLATES:
        return Project(build_template(spec))
    raise UsageError(f"MODEL {spec!r} is neither a file, an example ({', '.join(example_names())})"
                     f" nor a template ({', '.join(TEMPLATES)})")


def check_out(path: str | Path, example: str = "model.cnnd", option: str = "--out") -> Path:
    """An output file option: UsageError when it names a folder or its folder does not exist
    (checked before any work, so a typo does not cost a training run)."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{option} {out} is a folder; give a file name such as {out / example}")
    if not out.parent.exists():
        raise UsageError(f"{option} {out}: the folder {out.parent} does not exist")
    return out


def _first_image(folder: Path, depth: int = 2) -> Path | None:
    """The first image (by name) in the class folders of `folder` (train/class/… too), without
    walking a whole dataset."""
    from .data import IMAGE_SUFFIXES

    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return None
    for f in entries:
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            return f
    if depth:
        for d in entries:
            if d.is_dir():
                found = _first_image(d, depth - 1)
                if found is not None:
                    return found
    return None


def _is_onnx(path: Path) -> bool:
    """An .onnx name, or (whatever the name) not a project zip nor JSON but ONNX's protobuf."""
    if path.suffix.lower() == ".onnx":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    # ModelProto starts with field 1 (ir_version, varint: 0x08) and names a producer soon
    return head[:1] == b"\x08" and path.suffix.lower() not in (".cnnd", ".json")


def image_folder_note(spec, input_shape) -> str | None:
    """For an image folder loaded as `input_shape` (C, H, W): a note when the first image is in
    another mode or size (load_images converts and resizes silently), else None."""
    path = Path(str(spec))
    if input_shape is None or not path.is_dir():
        return None
    first = _first_image(path)
    if first is None:
        return None
    try:
        from PIL import Image

        with Image.open(first) as im:
            mode, (w, h) = im.mode, im.size
    except Exception:  # noqa: BLE001 - the loader reports unreadable images itself
        return None
    c, mh, mw = (int(v) for v in input_shape)
    grey = mode in ("L", "1", "I", "I;16", "F")
    changes = []
    if grey != (c == 1):
        changes.append(f"converted to {'greyscale' if c == 1 else 'RGB'}")
    if (h, w) != (mh, mw):
        changes.append(f"resized to {mh}×{mw}")
    if not changes:
        return None
    return (f"the images are {'greyscale' if grey else mode} {h}×{w} (e.g. {first.name}); "
            f"they are {' and '.join(changes)} for the model's input {c}×{mh}×{mw}")


# ---- summary -----------------------------------------------------------------------------

def cmd_summary(args) -> int:
    project = load_model(args.model, strict=False)  # the summary needs no weights
    for w in project.warnings:
        print(f"warning: {w} (dropped; the summary does not need weights)", file=sys.stderr)
    s = summarize(project.graph)
    sys.stdout.write(format_summary(s, args.format))
    if not s.ok:
        if args.format == "csv":  # the CSV holds the table only: problems go to stderr
            for p in s.errors:
                print(f"error: {p.text}", file=sys.stderr)
        return FAILED
    return OK


def cmd_examples(args) -> int:
    from .examples import EXAMPLES

    width = max(len(e.name) for e in EXAMPLES)
    for e in EXAMPLES:
        print(f"{e.name:<{width}}  {e.title}: {e.description}")
    return OK


# ---- train -------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on a terminal (images/s, ETA); plain occasional lines elsewhere."""

    def __init__(self, stream: TextIO, width: int = 24, interval: float = 0.1):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.width = width
        self.interval = interval if self.tty else 5.0
        self.last = 0.0
        self.shown = False

    def batch(self, r) -> None:
        now = time.perf_counter()
        final = r.batch == r.batches
        if now - self.last < self.interval and not final:
            return
        self.last = now
        done = int(self.width * r.batch / r.batches)
        bar = "#" * done + "." * (self.width - done)
        line = (f"epoch {r.epoch}/{r.epochs} [{bar}] {r.batch}/{r.batches}  loss {r.loss:.4f}  "
                f"acc {100 * r.accuracy:5.1f}%  {r.images_per_s:,.0f} img/s  "
                f"ETA {fmt_seconds(r.seconds_left)}")
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self.shown = True
        elif not final:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False


def fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = round(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class StopFlag:
    """First Ctrl+C asks training to stop after the current batch; the second aborts."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this batch (Ctrl+C again to abort without saving)…",
              file=sys.stderr)

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self.handle)
        except ValueError:  # not the main thread: no handler, training runs to its end
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def add_training_options(p: argparse.ArgumentParser, batch_size: int) -> None:
    """The hyperparameter options shared by `train` and `finetune` (after --epochs)."""
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"default: {batch_size}")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="adam",
                   help="default: adam")
    p.add_argument("--lr", type=_float_in(0.0, None, lo_open=True), default=None,
                   help="learning rate (default: 0.001 for adam, 0.01 for sgd)")
    p.add_argument("--weight-decay", type=_float_in(0.0, None, lo_open=False), default=0.0,
                   help="L2 weight decay (default: 0)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule: cosine anneals it to 0 over the run "
                        "(default: cosine)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--val-split", type=_float_in(0.0, 1.0, lo_open=False), default=0.1,
                   help="fraction of the training data held out for validation (default: 0.1)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N samples of each split (quick runs)")


def train_config(args):
    """TrainConfig from the options of add_training_options."""
    from .train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                       lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                       val_split=args.val_split, schedule=args.schedule)


def cmd_train(args) -> int:
    import numpy as np

    from .data import check_data, load_dataset
    from .network import Network
    from .train import evaluate, train
    from .validate import validate

    out = check_out(args.out)
    project = load_model(args.model)
    graph = project.graph
    v = validate(graph)
    if not v.ok:
        s = summarize(graph, v)
        print(f"error: the network '{graph.name}' cannot be trained; it has "
              f"{len(s.errors)} problem{'s' * (len(s.errors) != 1)}:", file=sys.stderr)
        for p in s.errors:
            print(f"  - {p.text}" + (f" (fix: {p.fix})" if p.fix else ""), file=sys.stderr)
        return FAILED
    input_shape = v.nodes[next(n for n in v.order
                               if graph.nodes[n].type_name == "Input")].out_shape
    print(f"loading data from {args.data} …", file=sys.stderr)
    data = load_dataset(args.data, input_shape, args.limit)
    note = image_folder_note(args.data, input_shape)
    if note:
        print(f"note: {note}", file=sys.stderr)
    problems = check_data(graph, data)
    for m in problems:
        print(f"{'error' if m.fatal else 'note'}: {m.text}", file=sys.stderr)
    if any(m.fatal for m in problems):
        return FAILED
    net = Network.compile(graph, np.random.default_rng(args.seed), validation=v)
    if project.weights:
        net.load_state_dict(project.weights, strict=False)
        print(f"continuing from the weights in {args.model}", file=sys.stderr)
    config = train_config(args)
    train_data = data.train
    print(f"training '{graph.name}' on {split_text(len(train_data), config.val_split)} "
          f"from {train_data.name or args.data}, {data.num_classes} classes; {config.epochs} "
          f"epoch{'s' * (config.epochs != 1)}, batch {config.batch_size}, {config.optimizer}",
          file=sys.stderr)
    progress = Progress(sys.stderr)

    def on_epoch(r) -> None:
        progress.clear()
        val = (f"  val_loss {r.val_loss:.4f}  val_acc {fmt_accuracy(r.val_accuracy)}"
               if r.val_loss is not None else "")
        print(f"epoch {r.epoch}/{r.epochs}  loss {r.train_loss:.4f}  acc "
              f"{fmt_accuracy(r.train_accuracy)}{val}  {r.seconds:.1f}s  "
              f"{r.images_per_s:,.0f} img/s", flush=True)

    stop = StopFlag()
    with stop:
        history = train(net, train_data.x, train_data.y, config, on_batch=progress.batch,
                        on_epoch=on_epoch, should_stop=stop)
    progress.clear()
    meta = dict(project.meta)
    meta["history"] = history.to_json()
    meta["train_config"] = asdict(config)
    meta["data"] = {"source": str(args.data), "train_images": len(train_data),
                    "classes": list(data.classes)}
    rc = OK
    if history.stopped == "cancelled":
        print(f"training stopped by Ctrl+C after {len(history.epochs)} complete epoch"
              f"{'s' * (len(history.epochs) != 1)}", file=sys.stderr)
        rc = INTERRUPTED
    elif history.stopped:
        print(f"error: {history.stopped}", file=sys.stderr)
        rc = FAILED
    elif data.test is not None and len(data.test):
        test_loss, test_acc, _ = evaluate(net, data.test.x, data.test.y)
        meta["test"] = {"loss": test_loss, "accuracy": test_acc, "images": len(data.test)}
        print(f"test  loss {test_loss:.4f}  acc {fmt_accuracy(test_acc)}  "
              f"({len(data.test):,} images)")
    save_project(out, graph, net.state_dict(), meta)
    print(f"saved {out} ({human_bytes(out.stat().st_size)})", file=sys.stderr)
    return rc


def split_text(n: int, val_split: float) -> str:
    """'2,700 images (+300 held out for validation)': what train() does with n images."""
    n_val = round(n * val_split)  # engine.train.split_validation's count
    if not n_val:
        return f"{n:,} images"
    return f"{n - n_val:,} images (+{n_val:,} held out for validation)"


if __name__ == "__main__":
    sys.exit(main())
