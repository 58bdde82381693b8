"""Time of engine.validate.validate for graphs of 50, 200 and 1000 nodes (the designer re-runs
it after every edit; the goal is < 5 ms at 200 nodes).

    python bench/bench_validate.py            # medians of 21 runs per graph
    python bench/bench_validate.py --quick    # medians of 7 runs
    python bench/bench_validate.py --profile  # also cProfile the 200-node branchy graph

Two shapes per size: a chain (conv / BN / ReLU / pool / ... ending in Flatten + Linear) and a
branchy graph of residual blocks (Add) and inception-like blocks (Concat), so that merges,
fan-out and multi-input ordering are exercised. The node counts printed are exact.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from engine.graph import Graph
from engine.validate import validate

GOAL_MS_AT_200 = 5.0


def chain(n_nodes: int) -> Graph:
    """Input, then repeated conv / BN / ReLU units (a 2×2 pool every few), Flatten, Linear."""
    g = Graph("chain")
    prev = g.add_node("Input", "input", {"channels": 3, "height": 64, "width": 64}).id
    body = n_nodes - 3  # input + flatten + linear
    kinds = ["Conv2d", "BatchNorm2d", "ReLU"]
    pools = 0
    for i in range(body):
        t = kinds[i % 3]
        params = {"out_channels": 16, "kernel_size": 3, "padding": 1} if t == "Conv2d" else {}
        if t == "ReLU" and i % 12 == 11 and pools < 4:
            t, params = "MaxPool2d", {"kernel_size": 2}
            pools += 1
        prev = _link(g, prev, t, params)
    prev = _link(g, prev, "Flatten", {})
    _link(g, prev, "Linear", {"out_features": 10})
    return g


def branchy(n_nodes: int) -> Graph:
    """Residual blocks (conv-BN-ReLU-conv-BN + skip -> Add -> ReLU: 7 nodes) alternating with
    inception-like blocks (1×1, 3×3, 5×5 and pool branches -> Concat -> 1×1 conv: 7 nodes)."""
    g = Graph("branchy")
    prev = g.add_node("Input", "input", {"channels": 3, "height": 32, "width": 32}).id
    prev = _link(g, prev, "Conv2d", {"out_channels": 16, "kernel_size": 3, "padding": 1})
    k = 0
    while len(g.nodes) + 7 + 3 <= n_nodes:
        if k % 2 == 0:
            a = _link(g, prev, "Conv2d", {"out_channels": 16, "kernel_size": 3, "padding": 1})
            a = _link(g, a, "BatchNorm2d", {})
            a = _link(g, a, "ReLU", {})
            a = _link(g, a, "Conv2d", {"out_channels": 16, "kernel_size": 3, "padding": 1})
            a = _link(g, a, "BatchNorm2d", {})
            add = g.add_node("Add").id
            g.add_edge(a, add)
            g.add_edge(prev, add)
            prev = _link(g, add, "ReLU", {})
        else:
            b1 = _link(g, prev, "Conv2d", {"out_channels": 4, "kernel_size": 1})
            b2 = _link(g, prev, "Conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1})
            b3 = _link(g, prev, "Conv2d", {"out_channels": 4, "kernel_size": 5,
                                           "padding": "same"})
            b4 = _link(g, prev, "MaxPool2d", {"kernel_size": 3, "stride": 1, "padding": 1})
            b4 = _link(g, b4, "Conv2d", {"out_channels": 4, "kernel_size": 1})
            cat = g.add_node("Concat").id
            for b in (b1, b2, b3, b4):
                g.add_edge(b, cat)
            prev = cat
        k += 1
    while len(g.nodes) < n_nodes - 2:
        prev = _link(g, prev, "ReLU", {})
    prev = _link(g, prev, "GlobalAvgPool2d", {})
    prev = _link(g, prev, "Flatten", {})
    return g


def _link(g: Graph, src: str, type_name: str, params: dict) -> str:
    node = g.add_node(type_name, params=params)
    g.add_edge(src, node.id)
    return node.id


def time_validate(g: Graph, repeats: int) -> tuple[float, float, float]:
    """(median, min) wall-clock ms and median CPU ms of validate(g), after 3 warm-up runs.
    CPU time (process_time) counts only this process's work: on a shared, busy machine it
    is the steadier figure; wall time is what the user waits when the machine is idle."""
    for _ in range(3):
        v = validate(g)
    assert v.ok, [m.text for m in v.errors][:3]
    ts, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        validate(g)
        ts.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(ts), min(ts), statistics.median(cpu)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="7 runs per graph instead of 21")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile validate() on the 200-node branchy graph")
    args = ap.parse_args(argv)
    repeats = 7 if args.quick else 21
    print(f"engine.validate.validate: wall-clock ms (median and min of {repeats} runs) and "
          f"CPU ms (median)")
    print(f"{'graph':<10}{'nodes':>7}{'edges':>7}{'wall ms':>10}{'min':>9}{'cpu ms':>9}"
          f"{'cpu µs/node':>13}")
    at200 = []
    for n in (50, 200, 1000):
        for name, build in (("chain", chain), ("branchy", branchy)):
            g = build(n)
            med, low, cpu = time_validate(g, repeats)
            if len(g.nodes) == 200:
                at200.append((med, cpu))
            print(f"{name:<10}{len(g.nodes):>7}{len(g.edges):>7}{med:10.2f}{low:9.2f}{cpu:9.2f}"
                  f"{cpu / len(g.nodes) * 1e3:13.1f}")
    wall, cpu = max(m for m, _ in at200), max(c for _, c in at200)
    print(f"\n200 nodes, worst graph: wall {wall:.2f} ms, CPU {cpu:.2f} ms; goal < "
          f"{GOAL_MS_AT_200:g} ms: {'met' if wall < GOAL_MS_AT_200 else 'not met'} in wall time, "
          f"{'met' if cpu < GOAL_MS_AT_200 else 'not met'} in CPU time")
    if args.profile:
        import cProfile
        import pstats
        g = branchy(200)
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(20):
            validate(g)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
