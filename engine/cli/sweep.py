"""The `sweep` command: an Optuna study over hyperparameters and architecture variants of MODEL
(engine.sweep); every trial is also a recorded run (`python main.py runs`)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from .common import (
    MODEL_HELP,
    OK,
    UsageError,
    add_training_options,
    model_parser,
    positive_int,
    train_config,
)


def add_commands(sub) -> None:
    p = model_parser(
        sub, "sweep", help="search hyperparameters and architecture variants (Optuna)",
        description="Run an Optuna study over the search space file (YAML or JSON: "
        "hyperparameters such as lr, batch_size, optimizer, weight_decay, epochs; parameters "
        "and types of named layers; blocks repeated 0..k times). TPE sampling, median or "
        "successive-halving pruning on each epoch's validation accuracy; variants the graph cannot hold are skipped and "
        "counted. The study is stored in SQLite (--storage: any database URL, so several "
        "processes or machines can work on one study); running the same command again "
        "resumes it. Every trial is also a run in the run store. Prints the best trial, the "
        "table of trials and the parameter importances.\n\n"
        "The training options give the values of whatever the space does not search.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--data", required=True, metavar="mnist|PATH", help="as for train")
    p.add_argument("--space", required=True, metavar="FILE", help="search space (.yaml/.json)")
    p.add_argument("--trials", type=positive_int, default=20, help="trials in the study "
                   "(counting those already in --storage; default: 20)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="local worker processes; the cores are split between them (default: 1)")
    p.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                   help="median: stop a trial below the median of earlier ones at the same "
                   "epoch; halving: successive halving with rungs at epochs 1, 3, 9 (the best "
                   "third goes on; give trials room with --epochs 9); none (default: median)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop starting trials after S seconds")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna RDB storage URL (default: sqlite:///MODEL.sweep.sqlite beside "
                   "the run store)")
    p.add_argument("--study", default=None, help="study name (default: MODEL-SPACE)")
    p.add_argument("--runs", default=None, metavar="FILE",
                   help="run store (default: MODEL.runs.sqlite beside a project file, else in "
                   "the current folder)")
    p.add_argument("--baseline", action="store_true",
                   help="also train MODEL unchanged with the same options and budget, and "
                   "compare the best trial's test accuracy and the sweep's cost with it")
    p.add_argument("--out", "-o", default=None, metavar="PROJECT",
                   help="write the best trial's design with its best epoch's weights here")
    p.add_argument("--format", "-f", choices=("table", "json"), default="table")
    add_training_options(p)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from ..models import load_model
    from ..sweep.space import load_space
    from ..sweep.study import SweepSetup, default_paths, run_sweep, sweep_results
    from .common import check_out

    if args.out:
        check_out(args.out)
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    graph = load_model(args.model).graph
    space = load_space(args.space)  # SpaceError (exit 1) names the line
    space.check(graph)
    runs, storage, study = default_paths(args.model, args.space)
    setup = SweepSetup(model=args.model, data=args.data, space=args.space, trials=args.trials,
                       runs=str(args.runs or runs), storage=args.storage or storage,
                       study=args.study or study, limit=args.limit,
                       config=asdict(train_config(args)), timeout=args.timeout, seed=args.seed,
                       pruner=args.pruner)
    print(f"sweep '{setup.study}': {args.trials} trials over {len(space)} searched values, "
          f"{args.jobs} worker{'s' * (args.jobs != 1)}, {args.pruner} pruning; study in {setup.storage}, runs in "
          f"{setup.runs}", file=sys.stderr)
    baseline = _baseline(args, setup) if args.baseline else None
    run_sweep(setup, args.jobs)
    res = sweep_results(setup)
    if baseline is not None:
        res["baseline"] = baseline
    if args.out and res["best"] and res["best"]["run"]:
        _write_best(setup, res["best"]["run"], Path(args.out))
    if args.format == "json":
        sys.stdout.write(json.dumps(res, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(format_results(res, args.trials))
    return OK


def _baseline(args, setup) -> dict:
    """MODEL unchanged, trained with the sweep's base options: test accuracy and time."""
    import time

    import numpy as np

    from ..data import load_dataset
    from ..inputspec import data_spec
    from ..models import load_model
    from ..nn.network import Network
    from ..nn.train import TrainConfig, evaluate, train
    from ..runs import RunRecorder
    from ..validate import validate

    graph = load_model(args.model).graph
    v = validate(graph)
    shape = next(v.nodes[n].out_shape for n in v.order if graph.nodes[n].type_name == "Input")
    data = load_dataset(args.data, shape, args.limit, data_spec(graph))
    config = TrainConfig(**setup.config)
    net = Network.compile(graph, np.random.default_rng(config.seed))
    rec = RunRecorder(setup.runs, graph, {"source": args.data, "limit": args.limit,
                                          "baseline_of": setup.study}, source="baseline")
    t0 = time.perf_counter()
    hist = train(net, data.train.x, data.train.y, config, recorder=rec)
    secs = time.perf_counter() - t0
    out = {"val_accuracy": hist.epochs[-1].val_accuracy if hist.epochs else None,
           "seconds": secs, "epochs": config.epochs, "run": rec.run_id}
    if data.test is not None and len(data.test):
        loss, acc, _ = evaluate(net, data.test.x, data.test.y)
        rec.set_test(loss, acc)
        out["test_accuracy"] = acc
    print(f"baseline {args.model}: test {100 * out.get('test_accuracy', 0):.2f}% in "
          f"{secs:.1f}s ({config.epochs} epochs)", file=sys.stderr)
    return out


def _write_best(setup, run_id: int, out: Path) -> None:
    from ..graph import Graph
    from ..project import save_project
    from ..runs import RunStore

    store = RunStore(setup.runs)
    run = store.get_run(run_id)
    best = store.best_weights(run_id)
    meta = {"train_config": run["config"], "sweep": {"study": setup.study, "trial": run["trial"],
                                                     "run": run_id}}
    save_project(out, Graph.from_json(run["graph"]), best[1] if best else None, meta)
    print(f"wrote the best design (trial {run['trial']}, run {run_id}) to {out}", file=sys.stderr)


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def format_results(res: dict, n: int) -> str:
    c = res["counts"]
    lines = [(f"study {res['study']}: {len(res['trials'])} trials: {c['complete']} complete, "
              f"{c['pruned']} pruned, {c['invalid']} invalid (skipped), {c['fail']} failed")]
    b = res["best"]
    if b:
        lines.append(f"best: trial {b['trial']}  val {_pct(b['value'])}  test "
                     f"{_pct(b['test_accuracy'])}  run {b['run']}")
        lines += [f"  {k} = {v}" for k, v in b["params"].items()]
    base = res.get("baseline")
    if base:
        lines.append(f"baseline (the model unchanged, same budget): test "
                     f"{_pct(base.get('test_accuracy'))}, {base['seconds']:.1f}s")
        if b and b["test_accuracy"] is not None and base.get("test_accuracy") is not None:
            d = b["test_accuracy"] - base["test_accuracy"]
            lines.append(f"best trial vs baseline: {100 * d:+.2f} points of test accuracy")
        full = n * base["seconds"]
        lines.append(f"wall time: {res['seconds']:.1f}s of training for {len(res['trials'])} "
                     f"trials vs {full:.1f}s for {n} runs of the baseline "
                     f"({res['seconds'] / full:.2f}×; a shared machine's load varies)")
        full_eq = n * base["epochs"]
        lines.append(f"cost in epochs of the unchanged model (epochs × MACs ratio): "
                     f"{res['model_epoch_equivalents']:.1f} vs {full_eq} for {n} full runs "
                     f"of it ({res['model_epoch_equivalents'] / full_eq:.2f}×)")
    if res["unpruned_equivalents"]:
        lines.append(f"the same trials without pruning: {res['unpruned_equivalents']:.1f} "
                     f"(pruning: {res['model_epoch_equivalents'] / res['unpruned_equivalents']:.2f}"
                     f"× of that)")
    lines.append(f"epochs trained: {res['epochs_trained']} of {res['epochs_planned']} planned "
                 f"(pruning saved {res['epochs_planned'] - res['epochs_trained']})")
    if res["importances"]:
        lines.append("parameter importances (PED-ANOVA):")
        lines += [f"  {k:<28} {v:.3f}" for k, v in res["importances"].items()]
    lines.append("")
    names = sorted({k for r in res["trials"] for k in r["params"]})
    head = ["trial", "state", "val", "test", "epochs", "time", *names]
    rows = [head]
    for r in res["trials"]:
        rows.append([str(r["trial"]), r["state"], _pct(r["value"]), _pct(r["test_accuracy"]),
                     "" if r["epochs"] is None else f"{r['epochs']}/{r['epochs_planned']}",
                     "" if r["seconds"] is None else f"{r['seconds']:.1f}s",
                     *[_fmt(r["params"].get(k)) for k in names]])
    w = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines += ["  ".join(c.ljust(x) for c, x in zip(row, w)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.3g}" if isinstance(v, float) else str(v)
