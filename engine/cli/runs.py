"""The `runs` command: list, show and compare the recorded runs of a project (engine.runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import OK, UsageError, _wrap, positive_int


def add_commands(sub) -> None:
    p = sub.add_parser(
        "runs", help="list and compare the recorded training runs of a project",
        description=_wrap("List the training runs recorded for PROJECT (every `train`, GUI "
                          "training and sweep trial is recorded in PROJECT.runs.sqlite beside "
                          "the project): status, epochs, best validation and test accuracy, "
                          "parameters, MACs, duration, images/s and what changed since the "
                          "previous run. --diff A B compares two runs; --show ID prints one "
                          "run's per-epoch curves."))
    p.add_argument("project", metavar="PROJECT",
                   help="a project .cnnd (its runs file beside it) or a .runs.sqlite file")
    p.add_argument("--format", "-f", choices=("table", "json", "csv"), default="table",
                   help="output format (default: table)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--diff", nargs=2, type=positive_int, metavar=("A", "B"),
                   help="architecture and hyperparameter differences from run A to run B, "
                   "and both runs' figures")
    g.add_argument("--show", type=positive_int, metavar="ID",
                   help="one run: its configuration, data and per-epoch curves")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args) -> int:
    from ..runs import RunStore, runs_path
    from ..runs.report import compare, format_compare, format_runs, runs_with_changes

    path = runs_path(Path(args.project))
    if not path.exists():
        raise UsageError(f"{path} does not exist: no run of {args.project} has been recorded")
    store = RunStore(path)
    if args.diff:
        c = compare(store, *args.diff)
        sys.stdout.write(json.dumps(c, indent=2) + "\n" if args.format == "json"
                         else format_compare(c))
        return OK
    if args.show:
        run = store.get_run(args.show)
        run["epochs"] = store.epochs(args.show)
        run.pop("graph")
        if args.format == "json":
            sys.stdout.write(json.dumps(run, indent=2) + "\n")
            return OK
        rows = [{"epoch": e["epoch"], "train_loss": e["train_loss"],
                 "train_accuracy": e["train_accuracy"], "val_loss": e["val_loss"],
                 "val_accuracy": e["val_accuracy"], "seconds": e["seconds"]}
                for e in run["epochs"]]
        if args.format == "csv":
            sys.stdout.write(",".join(rows[0]) + "\n" if rows else "")
            for r in rows:
                sys.stdout.write(",".join("" if v is None else str(v) for v in r.values())
                                 + "\n")
            return OK
        print(f"run {run['id']} ({run['status']}), {run['created'].replace('T', ' ')}, "
              f"{run['name']}: {run['data'].get('source') if run['data'] else ''}")
        print("config: " + ", ".join(f"{k}={v}" for k, v in run["config"].items()))
        print(f"{'epoch':>5}  {'loss':>8}  {'acc':>7}  {'val_loss':>8}  {'val_acc':>7}  "
              f"{'time':>6}")
        for r in rows:
            va = "" if r["val_accuracy"] is None else f"{100 * r['val_accuracy']:.2f}%"
            vl = "" if r["val_loss"] is None else f"{r['val_loss']:.4f}"
            print(f"{r['epoch']:>5}  {r['train_loss']:8.4f}  {100 * r['train_accuracy']:6.2f}%  "
                  f"{vl:>8}  {va:>7}  {r['seconds']:5.1f}s")
        return OK
    runs = runs_with_changes(store)
    if not runs and args.format == "table":
        print(f"no runs recorded in {path}", file=sys.stderr)
        return OK
    sys.stdout.write(format_runs(runs, args.format))
    return OK
