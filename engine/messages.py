"""Validation messages and the quick fixes they offer (plain data, shown by CLI and GUI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Fix:
    """A concrete, one-click repair. `action` is one of:

    - "set_params": set `params` (a dict) on the node;
    - "insert_before": insert a new node of `layer_type` (with `params`) on the node's input edge;
    - "remove_edge": remove the connection params["src"] -> params["dst"];
    - "add_edge": connect params["src"] (its first output) to params["dst"];
    - "insert_after": add a new node of `layer_type` (with `params`) reading the node's first
      output; it takes over the first connection from that output, if any (at the network's
      end it becomes the new output).
    """

    label: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    layer_type: str | None = None
    node_id: str | None = None  # the node to change; None means the node the message is about

    def to_json(self) -> dict:
        out = {"label": self.label, "action": self.action, "params": dict(self.params)}
        if self.layer_type:
            out["layer_type"] = self.layer_type
        if self.node_id:
            out["node"] = self.node_id
        return out


def as_fixes(fix) -> tuple[Fix, ...]:
    """None, one Fix or several (alternatives, the preferred one first) as a tuple."""
    if fix is None:
        return ()
    if isinstance(fix, Fix):
        return (fix,)
    return tuple(fix)


@dataclass(frozen=True)
class Message:
    """One problem. `fixes` are alternative repairs, the preferred one first (a single Fix or
    None is accepted and stored as a tuple); `fix` is the preferred one, or None."""

    severity: str  # ERROR or WARNING
    text: str
    node_id: str | None = None
    param: str | None = None
    fixes: tuple[Fix, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "fixes", as_fixes(self.fixes))

    @property
    def fix(self) -> Fix | None:
        return self.fixes[0] if self.fixes else None

    def to_json(self) -> dict:
        out = {"severity": self.severity, "text": self.text, "node": self.node_id,
               "param": self.param}
        if self.fixes:
            out["fix"] = self.fixes[0].to_json()
        if len(self.fixes) > 1:
            out["other_fixes"] = [f.to_json() for f in self.fixes[1:]]
        return out
