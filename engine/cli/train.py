"""The `train` command: train MODEL on MNIST or the user's data and save a project."""

from __future__ import annotations

import sys
from dataclasses import asdict

from ..models import load_model
from ..summary import fmt_accuracy, summarize
from .common import (
    FAILED,
    INTERRUPTED,
    MODEL_HELP,
    OK,
    Progress,
    StopFlag,
    add_training_options,
    check_out,
    image_folder_note,
    model_parser,
    save_or_recover,
    split_text,
    train_config,
)


def add_commands(sub) -> None:
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
    add_training_options(p)
    add_record_options(p)
    p.set_defaults(func=cmd_train)


def add_record_options(p) -> None:
    """--runs / --no-record: where the run is recorded (engine.runs)."""
    p.add_argument("--runs", metavar="FILE", default=None,
                   help="run store to record this run in (default: PROJECT.runs.sqlite beside "
                   "--out; `python main.py runs` lists them)")
    p.add_argument("--no-record", action="store_true",
                   help="do not record this run in a run store")


def make_recorder(args, graph, data, source: str = "cli"):
    """The RunRecorder for a command's run (None with --no-record); messages go to stderr."""
    if getattr(args, "no_record", False):
        return None
    from ..runs import RunRecorder, runs_path

    path = runs_path(args.runs or args.out)
    info = {"source": str(args.data), "name": data.train.name, "classes": list(data.classes),
            "limit": args.limit,
            "test_images": 0 if data.test is None else len(data.test)}
    return RunRecorder(path, graph, info, source=source, project=args.out,
                       on_message=lambda m: print(f"note: {m}", file=sys.stderr))


def cmd_train(args) -> int:
    import numpy as np

    from ..data import check_data, load_dataset
    from ..inputspec import data_spec
    from ..nn.network import Network
    from ..nn.train import evaluate, train
    from ..validate import validate

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
    data = load_dataset(args.data, input_shape, args.limit, data_spec(graph))
    note = image_folder_note(args.data, input_shape, data_spec(graph))
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

    recorder = make_recorder(args, graph, data)
    stop = StopFlag()
    with stop:
        history = train(net, train_data.x, train_data.y, config, on_batch=progress.batch,
                        on_epoch=on_epoch, should_stop=stop, recorder=recorder)
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
        if recorder is not None:
            recorder.set_test(test_loss, test_acc)
        print(f"test  loss {test_loss:.4f}  acc {fmt_accuracy(test_acc)}  "
              f"({len(data.test):,} images)")
    if not save_or_recover(out, graph, net.state_dict(), meta):
        rc = FAILED
    if recorder is not None and recorder.run_id is not None:
        print(f"recorded as run {recorder.run_id} in {recorder.store.path}"
              + ("" if recorder.flush() else f" (not all written: {recorder.error})"),
              file=sys.stderr)
    return rc
