"""The network's state and totals in words, one wording for the status bar, the inspector's
overview and the Problems panel, so that their readouts agree."""

from __future__ import annotations

from engine.graph import Graph
from engine.validate import ERROR

from .canvas.items import fmt_count
from .problems import count_text


def network_state(graph: Graph, v) -> tuple[str, str]:
    """(text, severity) of the whole network: its problem count as the Problems panel counts
    it ("2 errors, 1 warning", severity "error" / "warning"); else what is missing ("empty:
    add an Input" / "add layers after the input", severity "missing"); else ("✓ valid",
    "ok")."""
    n_err = sum(m.severity == ERROR for m in v.messages)
    n_warn = len(v.messages) - n_err
    if n_err or n_warn:
        return count_text(n_err, n_warn), "error" if n_err else "warning"
    if not graph.nodes:
        return "empty: add an Input", "missing"
    if all(n.type_name == "Input" for n in graph.nodes.values()):
        return "add layers after the input", "missing"
    return "✓ valid", "ok"


def unknown_layers(graph: Graph, v) -> int:
    """How many layers have no known shape (after an error): the totals are lower bounds."""
    return sum(1 for nid in graph.nodes
               if (r := v.nodes.get(nid)) is None or r.out_shape is None or r.layer is None)


def bound(n: int, unknown: int, fmt=fmt_count) -> str:
    """`n` formatted; "≥ n" when some layers are unknown; "?" when nothing is known."""
    return fmt(n) if not unknown else f"≥ {fmt(n)}" if n else "?"
