"""ONNX patterns: a small subgraph of ONNX nodes that one layer type is (SiLU is x·Sigmoid(x)).

A layer type whose ONNX form is several nodes at some opset (because no single op exists
there) declares each such form once, next to its `to_onnx`, as an `OnnxPattern` in its
`onnx_patterns`; engine/onnx/importer.py tries them before its per-op converters and turns the
matched nodes into one layer. A pattern is data, not code: a list of nodes in topological
order, each an op type, its inputs and the attribute values it must have:

    OnnxPattern((Op("Sigmoid", "x"), Op("Mul", "x", 0)))        # SiLU: x · Sigmoid(x)

An input is "x" (the pattern's one data input, a tensor of known shape), an int k (the output of
the pattern's node k), a float (a scalar constant of that value, within float32 rounding) or
SCALAR (any scalar constant: a parameter the layer reads back in `from_onnx_pattern`, as
geometric pooling's eps in Max(x, eps)). An attribute a node leaves out has its ONNX default.
The first node is the anchor (the importer meets it first); every later node reads an earlier
one's output. Add and Mul match with their inputs in either order. The nodes inside must feed
nothing but the pattern; the last node's output is the layer's.

A leaf module (no onnx import): the layer modules declare patterns at import time, the matcher
runs only during an import, reading the model through the importer's context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

COMMUTATIVE = frozenset({"Add", "Mul", "Max", "Min"})


class _Scalar:
    def __repr__(self) -> str:
        return "SCALAR"


SCALAR = _Scalar()  # a pattern input: any scalar constant


@dataclass(frozen=True)
class Op:
    """One node of a pattern: its op type, its inputs and required attribute values."""

    op: str
    inputs: tuple[Any, ...]
    attrs: tuple[tuple[str, Any], ...] = ()

    def __init__(self, op: str, *inputs: Any, **attrs: Any):
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "attrs", tuple(sorted(attrs.items())))


@dataclass(frozen=True)
class OnnxPattern:
    """Nodes (topological order) that import as one layer with `params`; `doc`, when given, is
    the doc_string the anchor must carry (our own tagged forms, e.g. a kept Identity)."""

    nodes: tuple[Op, ...]
    params: dict = field(default_factory=dict, hash=False)
    doc: str | None = None
    min_opset: int = 1  # the opset the pattern's ops exist from

    def __post_init__(self):
        for k, op in enumerate(self.nodes[1:], start=1):
            assert any(isinstance(i, int) and not isinstance(i, bool) and i < k
                       for i in op.inputs), f"pattern node {k} reads no earlier node"

    def match(self, anchor, ctx) -> tuple[str, list] | None:
        """(the data input's tensor name, the matched nodes in pattern order) when `anchor`
        starts this pattern in the model `ctx` reads; else None."""
        if ctx.opset < self.min_opset or (self.doc is not None and anchor.doc_string != self.doc):
            return None
        bound: list = []
        env: dict[str, str] = {}
        if not _unify(self.nodes[0], anchor, bound, env, ctx):
            return None
        bound.append(anchor)
        for k, spec in enumerate(self.nodes[1:], start=1):
            ref = next(i for i in spec.inputs if isinstance(i, int) and not isinstance(i, bool))
            for cand in ctx.consumers.get(bound[ref].output[0], []):
                if cand.op_type == spec.op and all(cand is not b for b in bound) \
                        and _unify(spec, cand, bound, env, ctx):
                    bound.append(cand)
                    break
            else:
                return None
        inner = {id(n) for n in bound}
        for n in bound[:-1]:  # an intermediate tensor read elsewhere: not this layer alone
            if n.output[0] in ctx.graph_outputs or any(
                    id(c) not in inner for c in ctx.consumers.get(n.output[0], [])):
                return None
        return env["x"], bound


def _unify(spec: Op, node, bound: list, env: dict, ctx) -> bool:
    """Whether `node` is `spec` given the nodes bound so far; binds "x" in `env` if it does."""
    if node.op_type != spec.op or node.domain not in ("", "ai.onnx"):
        return False
    ins = [i for i in node.input if i]
    if len(ins) != len(spec.inputs) or len(node.output) != 1:
        return False
    if spec.attrs:
        attrs = ctx.attrs(node)
        for name, want in spec.attrs:
            got = attrs[name] if name in attrs else _default(node.op_type, name, ctx.opset)
            if isinstance(want, float):
                if not isinstance(got, (int, float)) or not _close(got, want):
                    return False
            elif got != want:
                return False
    orders = [ins, ins[::-1]] if spec.op in COMMUTATIVE and len(ins) == 2 else [ins]
    for order in orders:
        trial = dict(env)
        if all(_input_is(want, got, bound, trial, ctx) for want, got in zip(spec.inputs, order)):
            env.update(trial)
            return True
    return False


def _input_is(want, got: str, bound: list, env: dict, ctx) -> bool:
    if isinstance(want, str):  # the data input
        got = ctx.resolve(got)
        if want in env:
            return env[want] == got
        if ctx.const(got) is not None or got not in ctx.shapes:
            return False
        env[want] = got
        return True
    if isinstance(want, int) and not isinstance(want, bool):
        return want < len(bound) and ctx.resolve(bound[want].output[0]) == ctx.resolve(got)
    c = ctx.const(got)
    if want is SCALAR:
        return c is not None and np.size(c) == 1
    return c is not None and np.size(c) == 1 and _close(float(np.asarray(c).reshape(())), want)


@cache
def _default(op: str, attr: str, opset: int):
    """The value an attribute left out of a node has by the ONNX spec at `opset` (PyTorch
    writes HardSigmoid(alpha=1/6) and leaves beta at its default 0.5); None where none."""
    from onnx import defs, helper

    try:
        a = defs.get_schema(op, opset).attributes.get(attr)
    except Exception:  # noqa: BLE001 - onnx raises SchemaError for an op unknown at `opset`
        return None
    if a is None or not a.default_value.type:
        return None
    v = helper.get_attribute_value(a.default_value)
    return v.decode() if isinstance(v, bytes) else v


def _close(a: float, b: float) -> bool:
    """Equal within float32 rounding (constants are written as float32)."""
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-30)
