"""The pretrained-weights commands (engine.cli.main plugs them in):

    python main.py pretrained list                       # catalogue: size, cached, accuracy
    python main.py pretrained get resnet18               # download (resume, SHA-256 check)
    python main.py pretrained get resnet50.IMAGENET1K_V1 --out r50.cnnd   # + the project

The catalogue is engine.zoo.pretrained (torchvision's published files); downloading is
engine.transfer.download (progress bar on stderr; offline, the message gives the URL and the
cache folder to put the file in); `--out` builds the template with the weights and its input
spec (engine.transfer.pretrained) and saves the project.
"""

from __future__ import annotations

import sys
import time

from .common import Progress


def add_commands(sub) -> None:
    """Add the `pretrained` subcommand (list, get) to an argparse subparsers object."""
    p = sub.add_parser("pretrained", help="list and download torchvision's pretrained weights",
                       description="torchvision's published ImageNet weights for the templates: "
                                   "list them, download one into the cache (resumed when cut "
                                   "off, checked against the SHA-256 prefix in its name), "
                                   "and make a project with it.")
    ps = p.add_subparsers(dest="pretrained_command", metavar="ACTION", required=True,
                          parser_class=type(p))
    q = ps.add_parser("list", help="the catalogue: name, size, cached, ImageNet top-1",
                      description="Every published weight file: NAME (TEMPLATE for its "
                                  "default, TEMPLATE.WEIGHTS for the others), download size, "
                                  "whether it is in the cache, ImageNet-1k top-1 accuracy and "
                                  "the input (resize → crop).")
    q.set_defaults(func=cmd_list)
    q = ps.add_parser("get", help="download weights; with --out also write a project",
                      description="Download NAME's weight file into the cache (or use the "
                                  "cached one, after checking it) and print its path on "
                                  "stdout; with --out, write a project of the template with "
                                  "those weights and their input spec.")
    q.add_argument("name", metavar="NAME",
                   help="a template (its default weights) or TEMPLATE.WEIGHTS, as `pretrained "
                        "list` shows")
    q.add_argument("--out", "-o", metavar="PROJECT", default=None,
                   help="also write this project file (.cnnd)")
    q.set_defaults(func=cmd_get)


def cmd_list(args) -> int:
    from ..transfer.download import cache_dir, is_cached
    from ..zoo.pretrained import DEFAULTS, PRETRAINED

    defaults = set(DEFAULTS.values())
    names = {k: (w.template if k in defaults else k) for k, w in PRETRAINED.items()}
    width = max(len(n) for n in names.values())
    print(f"{'NAME':<{width}}  {'MB':>6}  {'CACHED':<6}  {'TOP-1':>6}  INPUT")
    for key, w in PRETRAINED.items():
        print(f"{names[key]:<{width}}  {w.size_mb:>6.1f}  {'yes' if is_cached(w) else '-':<6}  "
              f"{w.acc1:>5.2f}%  resize {w.resize} → crop {w.crop}")
    print(f"cache: {cache_dir()}", file=sys.stderr)
    return 0


class ByteBar(Progress):
    """A text progress bar for downloads on stderr (one updated line on a terminal, a line every
    few seconds elsewhere); called as progress(stage, done, total)."""

    def __init__(self, stream, label: str, width: int = 28):
        super().__init__(stream, width)
        self.label, self.start = label, time.perf_counter()

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        final = bool(total) and done >= total
        if now - self.last < self.interval and not final:
            return
        self.last = now
        verb = "checking" if stage == "check" else "downloading"
        if total:
            n = int(self.width * done / total)
            bar = f"[{'#' * n}{'.' * (self.width - n)}] {done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
        else:
            bar = f"{done / 1e6:,.1f} MB"
        rate = done / 1e6 / max(now - self.start, 1e-9) if stage == "download" else 0
        self.show(f"{verb} {self.label} {bar}" + (f"  {rate:,.1f} MB/s" if rate else ""))


def cmd_get(args) -> int:
    from ..project import save_project
    from ..transfer.download import fetch
    from ..transfer.pretrained import build_pretrained
    from ..zoo.pretrained import find_weights
    from .common import UsageError, check_out

    try:
        w = find_weights(args.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = check_out(args.out, w.template + ".cnnd") if args.out else None
    bar = ByteBar(sys.stderr, w.file_name)
    try:
        path = fetch(w, progress=bar)
    finally:
        bar.clear()
    print(path)
    if out is None:
        return 0
    p = build_pretrained(w, path)
    for note in p.notes:
        print(f"note: {note}", file=sys.stderr)
    save_project(out, p.graph, p.weights, p.meta)
    print(f"wrote {out}: {w.name}, {len(p.graph.nodes)} layers, {w.classes} classes, "
          f"input {p.graph.input_spec.describe()}", file=sys.stderr)
    return 0
