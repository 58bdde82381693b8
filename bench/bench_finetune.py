"""Fast fine-tuning against engine-only fine-tuning, on a realistic transfer-learning case:
SqueezeNet 1.1 at 3×224×224 (engine.zoo.templates, random "pretrained" weights: speed does not
depend on their values), frozen up to the last fire module, a new 5-class classifier conv,
~300 synthetic images.

    python bench/bench_finetune.py [--images 300] [--engine-images 64] [--repeats 3]

(a) engine only: engine.transfer.head.fine_tune (the whole net in NumPy, frozen layers frozen; each
    batch runs the full forward). One epoch over all images would take minutes, so it is timed
    on --engine-images images (whole batches) and scaled per image to --images; this is said in
    the output.
(b) fast path: engine.transfer.finetune.fine_tune for 5 epochs: the frozen part's features once with
    ONNX Runtime (export included), then the tail (1×1 conv, ReLU, pooling, Flatten) trained in
    the engine; the 1-epoch total is the 5-epoch total less 4 median tail epochs.
(a) and (b) alternate in each repeat, so a shared machine's load hits both alike. Prints
medians over --repeats runs and the ratios (a)/(b) for 1 and 5 epochs. Goal: >= 10×.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.nn.network import Network
from engine.nn.train import TrainConfig
from engine.onnx.runtime import default_threads
from engine.transfer.finetune import describe_split, fine_tune, replace_any_head, split_graph
from engine.transfer.head import fine_tune as engine_fine_tune
from engine.transfer.head import freeze_up_to
from engine.zoo.templates import build_template

CLASSES = 5
FREEZE = "features.12.cat"  # the last fire module: everything but the classifier is frozen
HEAD = "classifier.1"  # SqueezeNet's classifier is a 1×1 conv (no Linear to replace)


def model():
    """SqueezeNet 1.1 with random weights, frozen up to the classifier, a fresh 5-class head."""
    g = build_template("squeezenet1_1", num_classes=1000)
    weights = Network.compile(g, np.random.default_rng(0)).state_dict()
    g = freeze_up_to(g, FREEZE)
    # the head: the classifier conv with CLASSES filters, freshly initialised
    g, weights = replace_any_head(g, weights, CLASSES, np.random.default_rng(1))
    assert g.nodes[HEAD].params["out_channels"] == CLASSES
    return g, weights


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--engine-images", type=int, default=64,
                    help="images the engine-only epoch is timed on (scaled per image)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    g, w = model()
    split = split_graph(g)
    print(f"SqueezeNet 1.1, 3×224×224, {CLASSES} classes; {describe_split(g, split)}")
    print(f"{args.images} images, batch {args.batch_size}, adam; ONNX Runtime threads "
          f"{default_threads()}; repeats {args.repeats} (medians)")
    rng = np.random.default_rng(0)
    x = rng.random((args.images, 3, 224, 224), dtype=np.float32)
    y = rng.integers(0, CLASSES, args.images).astype(np.int64)

    def config(epochs):
        return TrainConfig(epochs=epochs, batch_size=args.batch_size, optimizer="adam",
                           lr=1e-3, val_split=0, seed=0)

    # interleaved repeats (the machine may be shared: both paths see the same load)
    n_eng = min(args.engine_images, args.images)
    eng, eng_setup, feats, tails, totals = [], [], [], [], []
    for _ in range(args.repeats):
        # (a) engine only, 1 epoch on a subset, scaled per image
        t0 = time.perf_counter()
        _, hist = engine_fine_tune(g, w, x[:n_eng], y[:n_eng], config(1))
        wall = time.perf_counter() - t0
        eng.append(hist.epochs[0].seconds / n_eng)  # train's clock: the epoch itself
        eng_setup.append(wall - hist.epochs[0].seconds)  # compile, load weights: once per run
        # (b) fast path, 5 epochs: time to the last feature, then each epoch (train's clock)
        marks = {}
        t0 = time.perf_counter()

        def on_features(done, total, t0=t0, marks=marks):
            if done == total:
                marks["features"] = time.perf_counter() - t0

        _, hist = fine_tune(g, w, x, y, config(5), on_features=on_features)
        totals.append(time.perf_counter() - t0)
        feats.append(marks["features"])
        tails += [e.seconds for e in hist.epochs]
    eng_per_image = statistics.median(eng)
    eng_epoch = eng_per_image * args.images
    setup = statistics.median(eng_setup)
    feat, tail_epoch, total5 = (statistics.median(v) for v in (feats, tails, totals))
    # 1 epoch = everything before training (export, ORT, features, tail set-up) + one epoch
    total1 = total5 - 4 * tail_epoch
    print(f"(a) engine only: 1 epoch timed on {n_eng} images: {1e3 * eng_per_image:.1f} "
          f"ms/image -> {eng_epoch:.1f} s per epoch of {args.images} images (scaled), plus "
          f"{setup:.2f} s set-up per run")
    print(f"(b) fast path: features (export + ONNX Runtime) {feat:.2f} s "
          f"({1e3 * feat / args.images:.1f} ms/image), tail {tail_epoch:.3f} s per epoch; "
          f"total {total1:.2f} s for 1 epoch, {total5:.2f} s for 5 epochs (measured)")
    print()
    print(f"{'':24}{'engine only':>14}{'fast path':>12}{'ratio':>9}")
    rows = (("1 epoch", setup + eng_epoch, total1), ("5 epochs", setup + 5 * eng_epoch, total5),
            ("10 epochs (projected)", setup + 10 * eng_epoch, total5 + 5 * tail_epoch),
            ("each further epoch", eng_epoch, tail_epoch))
    for label, a, b in rows:
        print(f"{label:24}{a:>12.2f} s{b:>10.3f} s{a / max(b, 1e-9):>8.1f}×")
    goal = (setup + 5 * eng_epoch) / total5
    print(f"\ngoal >= 10× (5 epochs): {'met' if goal >= 10 else 'NOT met'} ({goal:.1f}×)")


if __name__ == "__main__":
    main()
