"""What one layer contributes to generated PyTorch code: submodules for `__init__` and an
expression for `forward`. Each layer type declares its own (`Layer.to_pytorch`);
engine/pytorch_export.py assembles the module from them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TorchModule:
    attr: str  # attribute name on the generated nn.Module
    ctor: str  # constructor text, e.g. "nn.Conv2d(1, 6, kernel_size=5)"


@dataclass
class TorchCode:
    modules: list[TorchModule] = field(default_factory=list)
    expr: str = ""  # forward expression; {call} is the module call, {0}, {1}, ... the inputs
    weights_attr: str | None = None  # the submodule holding the node's weights
    helper: str | None = None  # name of a helper class the generated file must define


def pair(v) -> str:
    """[3, 3] -> '3', [1, 7] -> '(1, 7)'."""
    a, b = v
    return str(a) if a == b else f"({a}, {b})"


def num(v: float) -> str:
    return repr(float(v))


def call_args(*positional, **kw) -> str:
    return ", ".join([str(p) for p in positional] + [f"{k}={v}" for k, v in kw.items()])
