"""The template commands of the command line (engine.cli.main plugs them in):

    python main.py templates                       # list the classic architectures
    python main.py new resnet18 --classes 5 --out resnet18.cnnd [--weights]
    python main.py new resnet18 --weights-from resnet18-f37072fd.pth --out r18.cnnd

`new` writes a project with the template's graph (torchvision's layer names, so pretrained
weights map by name) and its block membership in the project's meta ("blocks"), for the
canvas to collapse. Without --weights the project holds no weights (the designer and `train`
initialise them); with --weights it holds freshly initialised ones (seeded). --weights-from
FILE loads trained weights (engine.transfer.checkpoint: .pth / .pt, .safetensors, .npz, .onnx,
.cnnd) as strictly as torch's load_state_dict; with --non-strict it loads what fits and the
layers it skipped get freshly initialised weights (seeded), as with --weights.
"""

from __future__ import annotations

import sys


def add_commands(sub) -> None:
    """Add the `templates` and `new` subcommands to an argparse subparsers object."""
    from ..zoo.templates import TEMPLATES
    from .common import non_negative_int, positive_int

    p = sub.add_parser("templates", help="list the classic architectures (templates)",
                       description="List the templates usable with `new` and as MODEL: name, "
                                   "title, input size, trainable parameters (plus the "
                                   "non-trainable BatchNorm statistics, which `summary` counts "
                                   "in its total) and layers.")
    p.set_defaults(func=cmd_templates)

    p = sub.add_parser("new", help="a new project from a classic architecture",
                       description="Write a project with a template's layer graph (exactly "
                                   "as torchvision defines it) and a classifier for --classes "
                                   "classes.")
    p.add_argument("template", metavar="TEMPLATE", choices=list(TEMPLATES),
                   help=f"one of: {', '.join(TEMPLATES)}")
    p.add_argument("--classes", type=positive_int, default=None, metavar="N",
                   help="classes of the classifier (default: 10 for lenet5, else 1000)")
    p.add_argument("--out", "-o", required=True, metavar="PROJECT",
                   help="the project file to write (.cnnd)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--weights", action="store_true",
                   help="store freshly initialised weights in the project")
    w.add_argument("--weights-from", metavar="FILE", default=None,
                   help="load trained weights from FILE: a PyTorch checkpoint (.pth / .pt, "
                        "read without running any code in it), .safetensors, .npz, .onnx or "
                        ".cnnd; every weight must match by name and shape")
    p.add_argument("--non-strict", action="store_true",
                   help="with --weights-from: load the weights that fit, give the others "
                        "fresh ones (e.g. a head for other classes) and say which")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed for --weights and the layers --non-strict skips "
                        "(default: 0)")
    p.set_defaults(func=cmd_new)


def cmd_templates(args) -> int:
    from ..validate import validate
    from ..zoo.templates import TEMPLATES

    width = max(len(k) for k in TEMPLATES)
    for key, info in TEMPLATES.items():
        g = info.build(10 if key == "lenet5" else 1000)
        v = validate(g)
        shape = "×".join(map(str, info.input_shape))
        extra = (f" (+{v.non_trainable_params:,} non-trainable{_non_trainable_kind(g)})"
                 if v.non_trainable_params else "")
        print(f"{key:<{width}}  {info.title}: {shape}, {v.trainable_params:,} parameters"
              f"{extra}, {len(g.nodes)} layers")
    return 0


def _non_trainable_kind(graph) -> str:
    """What a template's non-trainable values are (nothing is frozen in a fresh template)."""
    frozen = any(not n.trainable for n in graph.nodes.values())
    return "" if frozen else ": BatchNorm statistics"


def cmd_new(args) -> int:
    import numpy as np

    from ..nn.network import Network
    from ..project import save_project
    from ..zoo.templates import make_template
    from .common import UsageError, check_out

    if args.non_strict and not args.weights_from:
        raise UsageError("--non-strict applies to --weights-from FILE only")
    out = check_out(args.out, args.template + ".cnnd")
    classes = args.classes or (10 if args.template == "lenet5" else 1000)
    t = make_template(args.template, classes)
    weights, what = None, ""
    if args.weights_from:
        weights, what = _weights_from(t.graph, args, classes)
    elif args.weights:
        weights = Network.compile(t.graph, np.random.default_rng(args.seed)).state_dict()
        what = ", initial weights"
    meta = {"template": args.template, "blocks": t.blocks}
    save_project(out, t.graph, weights, meta)
    print(f"wrote {out}: {t.graph.name}, {len(t.graph.nodes)} layers, {classes} classes{what}",
          file=sys.stderr)
    return 0


def _weights_from(graph, args, classes: int):
    """(weights, what to say) for --weights-from: the file's weights, strictly or not; the
    layers non-strict loading skips get fresh seeded weights. CheckpointError (exit 1) when they
    do not fit."""
    import numpy as np

    from ..nn.network import Network
    from ..transfer.checkpoint import CheckpointError, match_weights, read_checkpoint

    m = match_weights(graph, read_checkpoint(args.weights_from))
    for note in m.notes:
        print(f"note: {note}", file=sys.stderr)
    if m.loaded == 0 or (not m.ok and not args.non_strict):
        hint = _classes_hint(m, classes)
        if m.loaded and not args.non_strict:
            hint += "; --non-strict loads the weights that fit"
        raise CheckpointError(m.summary() + hint)
    weights = m.weights
    if not m.ok:
        print(f"warning: {m.skipped()}; the layers without weights from the file got fresh "
              f"ones (seed {args.seed})", file=sys.stderr)
        fresh = Network.compile(graph, np.random.default_rng(args.seed)).state_dict()
        weights = {**fresh, **m.weights}
    name = m.source
    return weights, f", weights from {name} ({m.loaded} of {m.expected})"


def _classes_hint(m, classes: int) -> str:
    """"; the file's classifier has 10 classes: --classes 10" when the only misfit is the
    class count of the head."""
    heads = {a[0] for _, a, b in m.mismatched if a[1:] == b[1:] and b[0] == classes}
    if len(heads) == 1 and len(m.mismatched) <= 2 and not m.missing and not m.unexpected:
        n = heads.pop()
        return f"; the file's classifier has {n} classes: add --classes {n}"
    return ""
