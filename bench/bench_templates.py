"""Build + validate time per template (medians of N runs), against a baseline in the same run.

    python bench/bench_templates.py [--runs 7]

Baseline: validating LeNet-5 (13 nodes). Validation runs after every edit, so a template's
validate time is what the canvas pays per edit; DESIGN.md asks for far below a frame (16 ms), the
modern-blocks issue for < 5 ms on the largest new template. "edit ms": the classifier's units (or
the last conv's filters) changed, then validated, alternating (what the designer does after a local edit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.validate import validate
from engine.zoo.templates import TEMPLATES, make_template


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    base_graph = make_template("lenet5", 10).graph
    base = median_ms(lambda: validate(base_graph), args.runs)
    print(f"baseline: validate LeNet-5 {base:.2f} ms (median of {args.runs})")
    print(f"{'template':<20}{'nodes':>7}{'build ms':>10}{'validate ms':>13}{'edit ms':>9}"
          f"{'× baseline':>12}")
    for name in TEMPLATES:
        build = median_ms(lambda n=name: make_template(n), args.runs)
        g = make_template(name).graph
        val = median_ms(lambda g=g: validate(g), args.runs)
        head = next(n for n in reversed(list(g.nodes.values()))
                    if n.type_name in ("Linear", "Conv2d"))
        key = "out_features" if head.type_name == "Linear" else "out_channels"
        units = [head.params.get(key, 10), 7]

        def edit(g=g, head=head, key=key, units=units):
            units.reverse()
            head.params[key] = units[0]
            validate(g)

        ed = median_ms(edit, args.runs)
        print(f"{name:<20}{len(g.nodes):>7}{build:>10.2f}{val:>13.2f}{ed:>9.2f}"
              f"{val / base:>12.1f}")


if __name__ == "__main__":
    main()
