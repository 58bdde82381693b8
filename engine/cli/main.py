"""The command line's entry point: the parser built from every command module, and main().

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

Each module in COMMAND_MODULES (summary and examples, train, ONNX export / infer / import,
PyTorch export, templates, pretrained weights, fine-tuning, explain) contributes subcommands: `add_commands(subparsers)` adds its
parsers with `set_defaults(func=handler)`, handler(args) -> exit code (None means 0); an
EngineError it raises is printed as "error: ..." with exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import EngineError, ModelNotFoundError
from . import explain, finetune, onnx, pretrained, pytorch, runs, summary, sweep, templates, train
from .common import FAILED, INTERRUPTED, OK, USAGE, Parser, UsageError, _wrap, model_epilog

# Each contributes its subcommands through `add_commands(subparsers)`, in this order of --help.
COMMAND_MODULES = (summary, train, runs, sweep, onnx, pytorch, templates, pretrained, finetune,
                   explain)


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

    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


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
    except (UsageError, ModelNotFoundError) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}\nsee '{parser.prog} {args.command} "
              f"--help'", file=sys.stderr)
        return USAGE
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except BrokenPipeError:  # `... | head`
        return OK
    except OSError as exc:  # a file that cannot be read or written: one line, no traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:  # outside training, or a second Ctrl+C during it
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED
    return OK if rc is None else int(rc)


if __name__ == "__main__":
    sys.exit(main())
