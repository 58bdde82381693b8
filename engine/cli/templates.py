"""The template commands of the command line (engine.cli.main plugs them in):

    python main.py templates                       # list the classic architectures
    python main.py new resnet18 --classes 5 --out resnet18.cnnd [--weights]

`new` writes a project with the template's graph (torchvision's layer names, so pretrained
weights map by name) and its block membership in the project's meta ("blocks"), for the
canvas to collapse. Without --weights the project holds no weights (the designer and `train`
initialise them); with --weights it holds freshly initialised ones (seeded).
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
    p.add_argument("--weights", action="store_true",
                   help="store freshly initialised weights in the project")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed for --weights (default: 0)")
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
    from .common import check_out

    out = check_out(args.out, args.template + ".cnnd")
    classes = args.classes or (10 if args.template == "lenet5" else 1000)
    t = make_template(args.template, classes)
    weights = None
    if args.weights:
        weights = Network.compile(t.graph, np.random.default_rng(args.seed)).state_dict()
    meta = {"template": args.template, "blocks": t.blocks}
    save_project(out, t.graph, weights, meta)
    print(f"wrote {out}: {t.graph.name}, {len(t.graph.nodes)} layers, {classes} classes"
          f"{', initial weights' if weights is not None else ''}", file=sys.stderr)
    return 0
