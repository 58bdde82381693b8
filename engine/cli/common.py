"""What every subcommand shares: exit codes, the MODEL epilog and parser, option types, output
checks, the progress line, Ctrl+C handling and the training options."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from ..errors import EngineError, ProjectError
from ..fileio import check_writable
from ..nn.optim import DEFAULT_LR
from ..nn.train import SCHEDULES, TrainConfig
from ..project import save_project
from ..summary import human_bytes
from ..zoo.examples import example_names

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

EPILOG = """\
MODEL is a project file (.cnnd), a bare architecture .json, an ONNX file
(.onnx, imported on the fly), an example name:
{examples}
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
    from ..zoo.templates import TEMPLATES

    return EPILOG.format(examples=_wrap_list(example_names()),
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

class WriteError(EngineError):
    """An output cannot be written (a read-only folder, a file where a folder should be):
    exit code 1, one line."""


def check_out(path: str | Path, example: str = "model.cnnd", option: str = "--out") -> Path:
    """An output file option, checked before any work so that neither a typo nor a read-only
    folder costs a training run: UsageError when it names a folder or its folder does not
    exist, WriteError when no file can be created there (a probe file is made and removed)."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{option} {out} is a folder; give a file name such as {out / example}")
    if not out.parent.exists():
        raise UsageError(f"{option} {out}: the folder {out.parent} does not exist")
    _probe(out, option, out.parent)
    return out


def check_out_folder(path: str | Path, option: str = "--out") -> Path:
    """An output folder option (created if missing): WriteError unless files can be created
    in it, or in the nearest existing folder above it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out} is a file; give a folder")
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    _probe(out, option, base, base / ".cnn-designer-probe")
    return out


def _probe(out: Path, option: str, folder: Path, probe: Path | None = None) -> None:
    try:
        check_writable(probe or out)
    except OSError as exc:
        raise WriteError(f"{option} {out}: cannot write in {folder} ({exc.strerror or exc}); "
                         f"choose another folder") from None


def save_or_recover(out: Path, graph, weights, meta) -> bool:
    """Save the project a long run made. If `out` cannot be written after all (the folder went
    away, the disk filled), the run is not lost: it goes to a recovery file in the first
    writable of the current, the home and the temporary folder, and the messages say where.
    Returns True when `out` was written."""
    try:
        save_project(out, graph, weights, meta)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
    else:
        print(f"saved {out} ({human_bytes(out.stat().st_size)})", file=sys.stderr)
        return True
    name = f"{out.stem}.recovered-{time.strftime('%Y%m%d-%H%M%S')}{out.suffix or '.cnnd'}"
    last = None
    for folder in (Path.cwd(), Path.home(), Path(tempfile.gettempdir())):
        try:
            save_project(folder / name, graph, weights, meta)
        except ProjectError as exc:
            last = exc
            continue
        print(f"the trained network was saved to {folder / name} instead", file=sys.stderr)
        return False
    print(f"error: no recovery file could be written either ({last})", file=sys.stderr)
    return False

def _first_image(folder: Path, depth: int = 2) -> Path | None:
    """The first image (by name) in the class folders of `folder` (train/class/… too), without
    walking a whole dataset."""
    from ..data import IMAGE_SUFFIXES

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

def image_folder_note(spec, input_shape, input_spec=None) -> str | None:
    """For an image folder loaded as `input_shape` (C, H, W): a note saying how the first image
    is prepared when its mode or size differs from the input's (converted to grey or RGB,
    resized, centre-cropped, as `input_spec` says; default: the input shape's), else None."""
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
    if input_spec is None and c in (1, 3):
        from ..inputspec import InputSpec

        input_spec = InputSpec.for_shape((c, mh, mw))
    grey = mode in ("L", "1", "I", "I;16", "F")
    changes = []
    if grey != (c == 1):
        changes.append(f"converted to {'greyscale' if c == 1 else 'RGB'}")
    if input_spec is not None and input_spec.resize is not None:
        if min(h, w) != input_spec.resize or (h, w) != (mh, mw):
            changes.append(f"resized (shorter side {input_spec.resize}) and centre-cropped to "
                           f"{mh}×{mw}")
    elif (h, w) != (mh, mw):
        changes.append(f"resized to {mh}×{mw}")
    if not changes:
        return None
    how = f" (input spec: {input_spec.describe()})" if input_spec is not None else ""
    return (f"the images are {'greyscale' if grey else mode} {h}×{w} (e.g. {first.name}); "
            f"they are {' and '.join(changes)} for the model's input {c}×{mh}×{mw}{how}")


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
        self.show(line, final)

    def show(self, line: str, final: bool = False) -> None:
        """Replace the terminal's progress line; elsewhere print it (not the final one)."""
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

def add_training_options(p: argparse.ArgumentParser, batch_size: int | None = None,
                         batch_size_reason: str = "") -> None:
    """The hyperparameter options shared by `train` and `finetune`, --epochs first. Their
    defaults are TrainConfig()'s, the one set the training panel starts from too; a command
    with a reason for another batch size passes it with that reason (shown in its help)."""
    d = TrainConfig()
    batch_size = d.batch_size if batch_size is None else batch_size
    p.add_argument("--epochs", type=positive_int, default=d.epochs,
                   help=f"default: {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"default: {batch_size}" + (f" ({batch_size_reason})"
                                                    if batch_size_reason else ""))
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer,
                   help=f"default: {d.optimizer}")
    p.add_argument("--lr", type=_float_in(0.0, None, lo_open=True), default=d.lr,
                   help=f"learning rate (default: {DEFAULT_LR['adam']:g} for adam, "
                        f"{DEFAULT_LR['sgd']:g} for sgd)")
    p.add_argument("--weight-decay", type=_float_in(0.0, None, lo_open=False),
                   default=d.weight_decay, help=f"L2 weight decay (default: {d.weight_decay:g})")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="learning-rate schedule: cosine anneals it to 0 over the run "
                        f"(default: {d.schedule})")
    p.add_argument("--seed", type=non_negative_int, default=d.seed,
                   help=f"random seed (default: {d.seed})")
    p.add_argument("--val-split", type=_float_in(0.0, 1.0, lo_open=False), default=d.val_split,
                   help="fraction of the training data held out for validation "
                        f"(default: {d.val_split:g})")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N samples of each split (quick runs)")

def train_config(args):
    """TrainConfig from the options of add_training_options."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                       lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                       val_split=args.val_split, schedule=args.schedule)

def split_text(n: int, val_split: float) -> str:
    """'2,700 images (+300 held out for validation)': what train() does with n images."""
    n_val = round(n * val_split)  # engine.nn.train.split_validation's count
    if not n_val:
        return f"{n:,} images"
    return f"{n - n_val:,} images (+{n_val:,} held out for validation)"
