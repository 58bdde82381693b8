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
    - "add_edge": connect params["src"] (its first output) to params["dst"].
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


@dataclass(frozen=True)
class Message:
    severity: str  # ERROR or WARNING
    text: str
    node_id: str | None = None
    param: str | None = None
    fix: Fix | None = None

    def to_json(self) -> dict:
        out = {"severity": self.severity, "text": self.text, "node": self.node_id,
               "param": self.param}
        if self.fix:
            out["fix"] = self.fix.to_json()
        return out
