"""The search space file of a sweep (YAML, or JSON, which YAML reads too):

    hyperparameters:                       # TrainConfig's fields
      lr: {low: 0.0003, high: 0.01, log: true}
      batch_size: [32, 64, 128]            # a list: one of these
      optimizer: [adam, sgd]
      weight_decay: {low: 0.0, high: 0.001}
      epochs: {low: 1, high: 3}            # whole numbers: an integer range
    layers:                                # parameters of named layers
      conv1:
        out_channels: {low: 4, high: 16, step: 2}
        kernel_size: [3, 5]
      pool1:
        type: [MaxPool2d, AvgPool2d, GeometricPool2d, HarmonicPool2d]   # the layer's type
        kernel_size: [2, 3]
      fc1:
        out_features: [64, 120, 256]
    blocks:                                # depth: a chain of layers repeated 0..k times
      - layers: [conv2, relu2]
        repeat: {low: 0, high: 2}

A mistake names the line: "space.yaml line 7: conv1 has no parameter 'filters' (Conv2d's
parameters: ...)".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EngineError

HYPERPARAMETERS = {"lr": float, "batch_size": int, "optimizer": str, "weight_decay": float,
                   "epochs": int, "momentum": float, "schedule": str}


class SpaceError(EngineError):
    """The search space file is wrong; the message names the file and line."""


@dataclass(frozen=True)
class Dist:
    """One searched value: `choices` (categorical), or an int / float range."""

    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False
    line: int = 0

    def suggest(self, trial, name: str):
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Block:
    layers: tuple[str, ...]
    repeat: Dist
    line: int = 0

    @property
    def name(self) -> str:
        return "+".join(self.layers) + ".repeat"


@dataclass
class Space:
    path: str
    hyper: dict[str, Dist] = field(default_factory=dict)
    layers: dict[str, dict[str, Dist]] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hyper) + sum(map(len, self.layers.values())) + len(self.blocks)

    def check(self, graph) -> None:
        """SpaceError unless every named layer and parameter exists in `graph`."""
        from ..layers import REGISTRY

        by_name = {n.name: n for n in graph.nodes.values()}
        for lname, params in self.layers.items():
            node = by_name.get(lname)
            if node is None:
                first = min(d.line for d in params.values()) - 1
                raise SpaceError(f"{self.path} line {first}: the model has no layer {lname!r} "
                                 f"(its layers: {', '.join(by_name)})")
            types = {node.type_name}
            if "type" in params:
                for t in params["type"].choices:
                    if t not in REGISTRY:
                        raise SpaceError(f"{self.path} line {params['type'].line}: unknown "
                                         f"layer type {t!r} for {lname}")
                types |= set(params["type"].choices)
            for pname, d in params.items():
                if pname == "type":
                    continue
                if not any(pname in {p.name for p in REGISTRY[t].params} for t in types):
                    known = ", ".join(p.name for p in REGISTRY[node.type_name].params)
                    raise SpaceError(f"{self.path} line {d.line}: {lname} ({node.type_name}) "
                                     f"has no parameter {pname!r} (its parameters: {known})")
        for b in self.blocks:
            for lname in b.layers:
                if lname not in by_name:
                    raise SpaceError(f"{self.path} line {b.line}: the block names layer "
                                     f"{lname!r}, which the model does not have")


def load_space(path: str | Path) -> Space:
    """Parse a search space file; SpaceError naming the line of any mistake."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"cannot read the search space {path}: {exc}") from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpaceError(f"{path}{where}: not valid YAML/JSON: "
                         f"{getattr(exc, 'problem', None) or exc}") from None
    return parse_space(root, str(path))


def _line(node) -> int:
    return node.start_mark.line + 1


def _mapping(node, where: str, path: str) -> list[tuple[Any, Any]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise SpaceError(f"{path} line {_line(node)}: {where} must be a mapping "
                         f"(name: value lines)")
    return node.value


def _scalar(node, path: str):
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise SpaceError(f"{path} line {_line(node)}: expected a single value")
    return yaml.safe_load(yaml.serialize(node))


def parse_space(root, path: str = "space") -> Space:
    import yaml

    space = Space(path)
    if root is None:
        raise SpaceError(f"{path}: the search space is empty")
    for knode, vnode in _mapping(root, "the search space", path):
        key = _scalar(knode, path)
        if key == "hyperparameters":
            for hk, hv in _mapping(vnode, "hyperparameters", path):
                name = _scalar(hk, path)
                if name not in HYPERPARAMETERS:
                    raise SpaceError(f"{path} line {_line(hk)}: unknown hyperparameter "
                                     f"{name!r} (searchable: {', '.join(HYPERPARAMETERS)})")
                space.hyper[name] = _dist(hv, name, path)
        elif key == "layers":
            for lk, lv in _mapping(vnode, "layers", path):
                lname = str(_scalar(lk, path))
                params = {}
                for pk, pv in _mapping(lv, f"layer {lname}", path):
                    pname = str(_scalar(pk, path))
                    params[pname] = _dist(pv, f"{lname}.{pname}", path)
                space.layers[lname] = params
        elif key == "blocks":
            if not isinstance(vnode, yaml.SequenceNode):
                raise SpaceError(f"{path} line {_line(vnode)}: blocks must be a list of "
                                 f"'- layers: [...]' / 'repeat: ...' entries")
            for bn in vnode.value:
                items = {_scalar(k, path): v for k, v in _mapping(bn, "a block", path)}
                if set(items) != {"layers", "repeat"}:
                    raise SpaceError(f"{path} line {_line(bn)}: a block needs exactly "
                                     f"'layers' and 'repeat', got {', '.join(map(str, items))}")
                lnode = items["layers"]
                if not isinstance(lnode, yaml.SequenceNode) or not lnode.value:
                    raise SpaceError(f"{path} line {_line(lnode)}: a block's layers must be a "
                                     f"non-empty list of layer names")
                names = tuple(str(_scalar(n, path)) for n in lnode.value)
                rep = _dist(items["repeat"], "repeat", path)
                if not rep.integer or (rep.low is not None and rep.low < 0) or (
                        rep.choices and any(not isinstance(c, int) or c < 0
                                            for c in rep.choices)):
                    raise SpaceError(f"{path} line {rep.line}: a block's repeat must be whole "
                                     f"numbers >= 0, e.g. {{low: 0, high: 2}}")
                space.blocks.append(Block(names, rep, _line(bn)))
        else:
            raise SpaceError(f"{path} line {_line(knode)}: unknown section {key!r} (sections: "
                             f"hyperparameters, layers, blocks)")
    if not len(space):
        raise SpaceError(f"{path}: the search space names nothing to search")
    return space


def _dist(node, name: str, path: str) -> Dist:
    import yaml

    line = _line(node)
    if isinstance(node, yaml.SequenceNode):
        choices = tuple(_scalar(n, path) for n in node.value)
        if not choices:
            raise SpaceError(f"{path} line {line}: {name}: the list of choices is empty")
        if len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{path} line {line}: {name}: a choice is listed twice")
        integer = all(isinstance(c, int) and not isinstance(c, bool) for c in choices)
        return Dist(choices=choices, integer=integer, line=line)
    if isinstance(node, yaml.MappingNode):
        d = {str(_scalar(k, path)): _scalar(v, path) for k, v in node.value}
        extra = set(d) - {"low", "high", "step", "log"}
        if extra or "low" not in d or "high" not in d:
            raise SpaceError(f"{path} line {line}: {name}: a range is {{low: A, high: B}} "
                             f"with optional step and log"
                             + (f"; unknown key {min(extra)!r}" if extra else ""))
        lo, hi, step, log = d["low"], d["high"], d.get("step"), d.get("log", False)
        for k, v in (("low", lo), ("high", hi), ("step", step)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v)):
                raise SpaceError(f"{path} line {line}: {name}: {k} must be a number, got {v!r}")
        if not isinstance(log, bool):
            raise SpaceError(f"{path} line {line}: {name}: log must be true or false")
        if lo > hi:
            raise SpaceError(f"{path} line {line}: {name}: low {lo} is above high {hi}")
        if log and lo <= 0:
            raise SpaceError(f"{path} line {line}: {name}: a log range needs low > 0, got {lo}")
        if log and step is not None:
            raise SpaceError(f"{path} line {line}: {name}: step and log cannot be combined")
        integer = all(isinstance(v, int) for v in (lo, hi) + ((step,) if step else ()))
        return Dist(low=lo, high=hi, step=step, log=log, integer=integer, line=line)
    value = _scalar(node, path)
    return Dist(choices=(value,), integer=isinstance(value, int), line=line)
