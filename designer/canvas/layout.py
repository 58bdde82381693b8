"""Automatic layered layout (top to bottom) that makes a 100-layer imported network readable.

Sugiyama-style, kept short: longest-path layering, dummy nodes on edges that skip layers,
barycentre ordering sweeps, then x coordinates by alternating up/down passes that pull each node
towards the mean of its neighbours while keeping a minimum gap inside a layer (pool-adjacent-
violators, exact for that 1D problem). Pure Python, no Qt: positions are node centres.
"""

from __future__ import annotations

from engine.graph import Graph

NODE_W, NODE_H = 212.0, 80.0
H_GAP = 36.0  # between cards in a layer
V_GAP = 46.0  # between layers: room for the edge's shape label
DUMMY_W = 28.0  # a skip connection's lane


def layered_layout(graph: Graph, node_w: float = NODE_W, node_h: float = NODE_H,
                   h_gap: float = H_GAP, v_gap: float = V_GAP,
                   sweeps: int = 4, widths: dict[str, float] | None = None
                   ) -> dict[str, tuple[float, float]]:
    """Centre position for every node: {node_id: (x, y)}; the first layer sits at y = 0.
    `widths` gives some nodes another width than `node_w` (collapsed block cards)."""
    ids = list(graph.nodes)
    if not ids:
        return {}
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for e in graph.edges:
        if e.src in preds and e.dst in preds and e.src != e.dst:
            preds[e.dst].append(e.src)
            succs[e.src].append(e.dst)

    # 1. layering: longest path from the sources; nodes on cycles go below the rest
    order, rest = graph.order_and_cycle()
    layer: dict[str, int] = {}
    for v in order:
        layer[v] = max((layer[u] + 1 for u in preds[v] if u in layer), default=0)
    # pull each non-source node down to just above its nearest consumer, so a side branch
    # (a shortcut projection) sits next to the layer it feeds rather than at the top
    # (consumers on a cycle have no layer yet: they go below everything, so no pull there)
    for v in reversed(order):
        below = min((layer[s] for s in succs[v] if s in layer), default=None)
        if preds[v] and below is not None:
            layer[v] = max(layer[v], below - 1)
    base = max(layer.values(), default=-1) + 1
    for k, v in enumerate(rest):
        layer[v] = base + k

    # 2. dummies: an edge spanning several layers becomes a chain through one dummy per layer
    up: dict[str, list[str]] = {i: [] for i in ids}
    down: dict[str, list[str]] = {i: [] for i in ids}
    width = {i: node_w for i in ids}
    if widths:
        width.update({i: w for i, w in widths.items() if i in width})
    n_dummy = 0
    for v in ids:
        for s in succs[v]:
            a, b = layer[v], layer[s]
            if b <= a:  # edge on a cycle: leave it out of the layout
                continue
            prev = v
            for lv in range(a + 1, b):
                d = f"\0d{n_dummy}"
                n_dummy += 1
                layer[d] = lv
                width[d] = DUMMY_W
                up[d], down[d] = [prev], []
                down[prev].append(d)
                prev = d
            down[prev].append(s)
            up[s].append(prev)

    n_layers = max(layer.values()) + 1
    layers: list[list[str]] = [[] for _ in range(n_layers)]
    # initial order: depth-first from the sources, so chains start aligned
    seen: set[str] = set()
    for root in [v for v in ids if not up[v]] + ids:
        stack = [root]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            layers[layer[v]].append(v)
            stack.extend(reversed(down[v]))
    for v in layer:
        if v not in seen:
            layers[layer[v]].append(v)

    # 3. ordering: barycentre sweeps down and up
    pos = {v: k for lay in layers for k, v in enumerate(lay)}
    for sweep in range(sweeps):
        rng = range(1, n_layers) if sweep % 2 == 0 else range(n_layers - 2, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for li in rng:
            lay = layers[li]
            keys = {}
            for v in lay:
                ns = nbrs[v]
                keys[v] = sum(pos[u] for u in ns) / len(ns) if ns else pos[v]
            lay.sort(key=lambda v: (keys[v], pos[v]))
            for k, v in enumerate(lay):
                pos[v] = k

    # 4. x coordinates: start packed and centred, then pull towards neighbours
    x: dict[str, float] = {}
    for lay in layers:
        total = sum(width[v] for v in lay) + h_gap * (len(lay) - 1)
        cur = -total / 2
        for v in lay:
            x[v] = cur + width[v] / 2
            cur += width[v] + h_gap
    for it in range(2 * sweeps + 1):
        downward = it % 2 == 0
        rng = range(1, n_layers) if downward else range(n_layers - 2, -1, -1)
        nbrs = up if downward else down
        for li in rng:
            lay = layers[li]
            want = []
            for v in lay:
                ns = nbrs[v]
                want.append(sum(x[u] for u in ns) / len(ns) if ns else x[v])
            seps = [(width[lay[k - 1]] + width[lay[k]]) / 2 + h_gap for k in range(1, len(lay))]
            for v, xv in zip(lay, _place(want, seps)):
                x[v] = xv

    pitch = node_h + v_gap
    return {v: (round(x[v], 1), round(layer[v] * pitch, 1)) for v in ids}


def _place(want: list[float], seps: list[float]) -> list[float]:
    """Positions closest (least squares) to `want` with x[k] - x[k-1] >= seps[k-1]."""
    offs = [0.0]
    for s in seps:
        offs.append(offs[-1] + s)
    ys = [w - o for w, o in zip(want, offs)]
    # isotonic regression (non-decreasing) by pool adjacent violators
    blocks: list[list[float]] = []  # [mean, count]
    for y in ys:
        blocks.append([y, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    out = []
    for m, c in blocks:
        out.extend([m] * c)
    return [y + o for y, o in zip(out, offs)]


def needs_layout(graph: Graph, node_w: float = NODE_W, node_h: float = NODE_H) -> bool:
    """True when stored positions are missing or make cards overlap (imported or hand-written
    graphs): such a graph is laid out on open."""
    pts = [n.position for n in graph.nodes.values()]
    if len(pts) < 2:
        return False
    cell: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for p in pts:
        key = (int(p[0] // node_w), int(p[1] // node_h))
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for q in cell.get((key[0] + dx, key[1] + dy), ()):
                    if abs(p[0] - q[0]) < node_w and abs(p[1] - q[1]) < node_h + 16:
                        return True
        cell.setdefault(key, []).append(p)
    return False
