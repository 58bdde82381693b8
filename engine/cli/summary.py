"""The `summary` and `examples` commands."""

from __future__ import annotations

import sys

from ..models import load_model
from ..summary import FORMATS, format_summary, summarize
from .common import FAILED, MODEL_HELP, OK, model_parser


def add_commands(sub) -> None:
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

    p = sub.add_parser("examples", help="list the example networks",
                       description="List the example networks usable as MODEL.")
    p.set_defaults(func=cmd_examples)


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
    from ..zoo.examples import EXAMPLES

    width = max(len(e.name) for e in EXAMPLES)
    for e in EXAMPLES:
        print(f"{e.name:<{width}}  {e.title}: {e.description}")
    return OK
