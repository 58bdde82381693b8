"""The `finetune` command: transfer learning from a pretrained MODEL on the user's images."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict

import numpy as np

from ..data import load_dataset
from ..inputspec import data_spec, model_spec
from ..nn.network import Network
from ..nn.train import evaluate
from ..summary import fmt_accuracy
from ..transfer.augment import Augment
from ..transfer.finetune import (
    check_freeze_point,
    describe_split,
    fine_tune,
    load_any_model,
    plan,
    replace_any_head,
    resolve_layer,
    split_graph,
)
from ..transfer.head import freeze_up_to
from ..validate import validate
from .common import (
    INTERRUPTED,
    OK,
    Progress,
    StopFlag,
    UsageError,
    add_training_options,
    check_out,
    image_folder_note,
    model_parser,
    positive_int,
    save_or_recover,
    train_config,
)
from .onnx import add_preprocess_options, export_with_preprocessing


def add_commands(sub) -> None:
    """Add the `finetune` subcommand to an argparse subparsers object (engine.cli.main wires it)."""

    p = model_parser(
        sub, "finetune", help="transfer learning: freeze a backbone, new head, fast fine-tuning",
        description="Fine-tune a pretrained MODEL on your data: layers up to --freeze-up-to "
                    "are frozen, the last fully connected layer is replaced by one with "
                    "--classes outputs, and only the layers after the frozen part train. The "
                    "frozen part's features are computed once with ONNX Runtime, so each epoch "
                    "costs only the small trainable part. Saves a project (and --onnx).")
    p.add_argument("model", metavar="MODEL",
                   help=".onnx file (PyTorch / Keras export, model zoo), project, architecture "
                        ".json, example or template name")
    p.add_argument("--data", required=True, metavar="PATH",
                   help="a folder with one subfolder of images per class (or an .npz, IDX "
                        "files, 'mnist')")
    p.add_argument("--freeze-up-to", required=True, metavar="LAYER",
                   help="the last frozen layer (name or id): it and everything before it keep "
                        "their weights")
    p.add_argument("--classes", type=positive_int, default=None, metavar="N",
                   help="classes of the new head (default: the number of class folders)")
    p.add_argument("--out", "-o", required=True, metavar="PROJECT",
                   help="project file to write (.cnnd)")
    p.add_argument("--onnx", metavar="OUT.onnx", help="also export the fine-tuned model")
    add_preprocess_options(p, "with --onnx: ")
    # half TrainConfig's batch: fine-tuning sets are small (often a few hundred photos), and
    # smaller batches give each epoch more updates of the new head
    add_training_options(p, batch_size=32,
                         batch_size_reason="smaller than train's: fine-tuning sets are small, "
                                           "and smaller batches give each epoch more updates")
    p.add_argument("--engine-only", action="store_true",
                   help="train the whole net in the engine (no feature caching)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random resized crop and horizontal flip of each training batch "
                        "(seeded by --seed; default: on). Augmented images change every epoch, "
                        "so the frozen part's features cannot be cached and it runs on every "
                        "batch; --no-augment caches them (much faster epochs) and suits data "
                        "whose meaning flips (digits, text)")
    p.add_argument("--patience", type=positive_int, default=None, metavar="N",
                   help="early stopping: stop after N epochs without a better validation "
                        "accuracy and keep the best epoch's weights (default: train every "
                        "epoch, keep the last)")
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args) -> int:
    out = check_out(args.out)
    if args.onnx:
        check_out(args.onnx, "model.onnx", "--onnx")
    elif args.preprocess:
        raise UsageError("--preprocess adds the input spec to the exported model: give --onnx "
                         "OUT.onnx too")
    graph, weights = load_any_model(args.model)
    v = validate(graph)
    v.raise_if_invalid("fine-tune it")
    if args.preprocess:
        model_spec(graph)  # a network no photo fits fails here, not after training
    target = resolve_layer(graph, args.freeze_up_to)  # before any work: a typo fails fast
    check_freeze_point(graph, target)
    if weights is None:
        print(f"warning: '{args.model}' has no weights: freezing random weights leaves a "
              f"backbone that has learnt nothing, and only the head trains. Import pretrained "
              f"weights first (an .onnx from the model zoo or torch.onnx.export, given as "
              f"MODEL or through `import`)", file=sys.stderr)
        weights = Network.compile(graph, np.random.default_rng(args.seed),
                                  validation=v).state_dict()
    input_id = next(n for n in v.order if graph.nodes[n].type_name == "Input")
    data = load_dataset(args.data, v.nodes[input_id].out_shape, args.limit, data_spec(graph))
    note = image_folder_note(args.data, v.nodes[input_id].out_shape, data_spec(graph))
    if note:
        print(f"note: {note}", file=sys.stderr)
    n_classes = args.classes or data.num_classes
    if data.num_classes > n_classes:
        raise UsageError(f"--classes {n_classes} but the data has {data.num_classes} classes")
    graph = freeze_up_to(graph, target)
    graph, weights = replace_any_head(graph, weights, n_classes,
                                      np.random.default_rng(args.seed))
    split = None if args.engine_only else split_graph(graph)
    augment = Augment() if args.augment else None
    if not args.engine_only:
        print(describe_split(graph, split, augment is not None), file=sys.stderr)
    print(plan(split, augment, args.engine_only), file=sys.stderr)
    if split is not None and split.note:
        print(f"note: {split.note}", file=sys.stderr)
    if split is not None and split.cut != target and target in graph.ancestors(split.cut):
        extra = [graph.nodes[n].name for n in split.prefix if target in graph.ancestors(n)]
        many = len(extra) != 1
        print(f"note: the frozen part ends at '{graph.nodes[split.cut].name}', not "
              f"'{graph.nodes[target].name}': the layer{'s' * many} after it "
              f"({', '.join(repr(x) for x in extra)}) {'have' if many else 'has'} no weights, "
              f"so {'their' if many else 'its'} output never changes either and is computed "
              f"once with the frozen part", file=sys.stderr)
    config = train_config(args)
    progress = Progress(sys.stderr)
    last = [0.0]

    def on_features(done, total):
        now = time.perf_counter()
        if now - last[0] > 1.0 or done == total:
            last[0] = now
            print(f"features {done}/{total}", file=sys.stderr, flush=True)

    def on_epoch(r) -> None:
        progress.clear()
        val = (f"  val_loss {r.val_loss:.4f}  val_acc {fmt_accuracy(r.val_accuracy)}"
               if r.val_loss is not None else "")
        print(f"epoch {r.epoch}/{r.epochs}  loss {r.train_loss:.4f}  acc "
              f"{fmt_accuracy(r.train_accuracy)}{val}  {r.seconds:.2f}s", flush=True)

    stop = StopFlag()
    with stop:
        new, history = fine_tune(graph, weights, data.train.x, data.train.y, config,
                                 fast=False if args.engine_only else None,
                                 on_batch=progress.batch, on_epoch=on_epoch, should_stop=stop,
                                 on_features=on_features, augment=augment,
                                 patience=args.patience)
    progress.clear()
    if history.best_epoch is not None:
        best = history.epochs[history.best_epoch - 1]
        why = (f"stopped after epoch {len(history.epochs)}: no better validation accuracy in "
               f"{args.patience} epochs; " if history.stopped_early else "")
        print(f"{why}kept epoch {history.best_epoch}'s weights (validation accuracy "
              f"{fmt_accuracy(best.val_accuracy)}, the best)", file=sys.stderr)
    meta = {"history": history.to_json(), "train_config": asdict(config),
            "fine_tuned_from": str(args.model), "frozen_up_to": args.freeze_up_to,
            "augment": augment.describe() if augment else None, "patience": args.patience,
            "data": {"source": str(args.data), "train_images": len(data.train),
                     "classes": list(data.classes)}}
    if history.stopped and history.stopped != "cancelled":
        print(f"error: {history.stopped}", file=sys.stderr)
    elif data.test is not None and len(data.test) and not history.stopped:
        net = Network.compile(graph)
        net.load_state_dict(new)
        loss, acc, _ = evaluate(net, data.test.x, data.test.y)
        meta["test"] = {"loss": loss, "accuracy": acc, "images": len(data.test)}
        print(f"test  loss {loss:.4f}  acc {fmt_accuracy(acc)}  ({len(data.test):,} images)")
    saved = save_or_recover(out, graph, new, meta)
    print(f"trained in {history.seconds:.1f}s", file=sys.stderr)
    if args.onnx:
        try:
            export_with_preprocessing(graph, new, args.onnx, args.preprocess, args.pixel_type)
            print(f"wrote {args.onnx}", file=sys.stderr)
        except OSError as exc:  # checked writable at the start; the folder went away since
            print(f"error: cannot write --onnx {args.onnx}: {exc.strerror or exc}",
                  file=sys.stderr)
            saved = False
    if history.stopped == "cancelled":
        return INTERRUPTED
    return OK if not history.stopped and saved else 1
