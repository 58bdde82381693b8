"""Readable differences between two runs: the architecture (graph JSON: nodes by id, their type,
name, parameters and trainable flag; edges) and the hyperparameters (TrainConfig's fields).

    d = diff_runs(old_graph_json, new_graph_json, old_config, new_config)
    print("\n".join(d.lines()))
    ~ conv1 (Conv2d): out_channels 6 → 8
    + conv3 Conv2d(out_channels=16, kernel_size=3)
    - edge pool1 → fc1
    ~ lr 0.001 → 0.003
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunDiff:
    added: list[dict] = field(default_factory=list)  # {"id", "name", "type", "params"}
    removed: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)  # {"id", "name", "type", "changes"}
    edges_added: list[str] = field(default_factory=list)  # "pool1 → fc1"
    edges_removed: list[str] = field(default_factory=list)
    config: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field: (old, new)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.edges_added
                    or self.edges_removed or self.config)

    def to_json(self) -> dict:
        return {"added": self.added, "removed": self.removed, "changed": self.changed,
                "edges_added": self.edges_added, "edges_removed": self.edges_removed,
                "config": {k: list(v) for k, v in self.config.items()}}

    @classmethod
    def from_json(cls, d: dict | None) -> RunDiff:
        d = d or {}
        return cls(d.get("added", []), d.get("removed", []), d.get("changed", []),
                   d.get("edges_added", []), d.get("edges_removed", []),
                   {k: tuple(v) for k, v in d.get("config", {}).items()})

    def lines(self) -> list[str]:
        """One line per difference: '+' added, '-' removed, '~' changed."""
        if self.empty:
            return ["(same architecture and hyperparameters)"]
        out = [f"+ {n['name']} {_call(n['type'], n['params'])}" for n in self.added]
        out += [f"- {n['name']} {_call(n['type'], n['params'])}" for n in self.removed]
        for n in self.changed:
            out.append(f"~ {n['name']} ({n['type']}): " + ", ".join(
                f"{k} {_fmt(a)} → {_fmt(b)}" for k, (a, b) in n["changes"].items()))
        out += [f"+ edge {e}" for e in self.edges_added]
        out += [f"- edge {e}" for e in self.edges_removed]
        out += [f"~ {k} {_fmt(a)} → {_fmt(b)}" for k, (a, b) in self.config.items()]
        return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "default" if v is None else str(v)


def _call(type_name: str, params: dict) -> str:
    return f"{type_name}({', '.join(f'{k}={_fmt(v)}' for k, v in params.items())})"


def _edge_names(graph: dict) -> set[str]:
    names = {n["id"]: n.get("name", n["id"]) for n in graph.get("nodes", [])}
    out = set()
    for src, dst, *port in graph.get("edges", []):
        sid, _, sport = str(src).partition(":")
        label = names.get(sid, sid) + (f":{sport}" if sport else "")
        p = port[0] if port else 0
        out.add(f"{label} → {names.get(dst, dst)}" + (f" (input {p})" if p else ""))
    return out


def diff_graphs(old: dict | None, new: dict) -> RunDiff:
    """What changed from graph JSON `old` to `new` (nodes matched by id; positions ignored)."""
    d = RunDiff()
    a = {n["id"]: n for n in (old or {}).get("nodes", [])}
    b = {n["id"]: n for n in new.get("nodes", [])}
    for nid, n in b.items():
        if nid not in a:
            d.added.append({"id": nid, "name": n["name"], "type": n["type"],
                            "params": n.get("params", {})})
            continue
        o = a[nid]
        changes: dict[str, tuple] = {}
        if o["type"] != n["type"]:
            changes["type"] = (o["type"], n["type"])
        if o.get("name") != n.get("name"):
            changes["name"] = (o.get("name"), n.get("name"))
        if o.get("trainable", True) != n.get("trainable", True):
            changes["trainable"] = (o.get("trainable", True), n.get("trainable", True))
        po, pn = o.get("params", {}), n.get("params", {})
        for k in list(po) + [k for k in pn if k not in po]:
            if po.get(k) != pn.get(k):
                changes[k] = (po.get(k), pn.get(k))
        if changes:
            d.changed.append({"id": nid, "name": n["name"], "type": n["type"],
                              "changes": changes})
    for nid, o in a.items():
        if nid not in b:
            d.removed.append({"id": nid, "name": o["name"], "type": o["type"],
                              "params": o.get("params", {})})
    ea, eb = _edge_names(old or {}), _edge_names(new)
    d.edges_added = sorted(eb - ea)
    d.edges_removed = sorted(ea - eb)
    return d


def diff_runs(old_graph: dict | None, new_graph: dict, old_config: dict | None,
              new_config: dict) -> RunDiff:
    """The architecture and hyperparameter differences of two runs."""
    d = diff_graphs(old_graph, new_graph)
    oc = old_config or {}
    for k in list(oc) + [k for k in new_config if k not in oc]:
        if oc.get(k) != new_config.get(k):
            d.config[k] = (oc.get(k), new_config.get(k))
    return d
