"""Random edits with undo and redo over random graphs with weights (issue 16's stress run,
kept as a property test): after any mix of edits, undos and redos, every state the undo stack
can reach shows exactly the graph and the weights it had (graph JSON equal, every weight
bit-equal), and undoing everything gives back the start."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from designer.commands import (
    AddEdgeCommand,
    AddNodeCommand,
    ApplyFixCommand,
    FreezeUpToCommand,
    InsertNodeOnEdgeCommand,
    MoveNodesCommand,
    PasteCommand,
    RemoveEdgeCommand,
    RemoveNodesCommand,
    RenameNodeCommand,
    ReplaceHeadCommand,
    SetParamCommand,
    SetTrainableCommand,
    UnfreezeAllCommand,
    make_fragment,
)
from designer.document import Document
from engine.layers import REGISTRY
from engine.layers.base import BOOL, CHOICE, FLOAT, INT, PADDING, PAIR
from engine.project import expected_weight_shapes
from engine.zoo.examples import load_example
from tests.engine.test_validate import random_chains

EXAMPLES = ("lenet5", "small_resnet", "mobile_se")
NEW_TYPES = ("Conv2d", "ReLU", "Linear", "Flatten", "BatchNorm2d", "MaxPool2d", "Add",
             "Concat", "Dropout", "GlobalAvgPool2d")
_docs: list[Document] = []  # kept alive until the module ends (Qt owns their stacks)


@pytest.fixture(scope="module", autouse=True)
def _delete_docs(qapp):
    yield
    for d in _docs:
        d.undo_stack.clear()
        d.deleteLater()
    _docs.clear()
    qapp.processEvents()


def state(doc: Document):
    w = doc.weights or {}
    return doc.graph.dumps(), {k: (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).digest())
                               for k, a in w.items()}


def value_for(p, draw):
    """A value within the declaration (a few near its minimum, or its default)."""
    if p.optional and draw(st.integers(0, 5)) == 0:
        return None
    # small values, and larger ones that often break a shape (and offer a quick fix)
    if p.kind == INT:
        return draw(st.integers(int(p.min), int(min(p.max, p.min + draw(st.sampled_from(
            [6, 40]))))))
    if p.kind == FLOAT:
        return draw(st.floats(p.min, p.max, allow_nan=False, allow_infinity=False))
    if p.kind == BOOL:
        return draw(st.booleans())
    if p.kind == CHOICE:
        return draw(st.sampled_from(p.choices))
    if p.kind == PAIR:
        hi = int(min(p.max, p.min + draw(st.sampled_from([4, 30]))))
        return draw(st.lists(st.integers(int(p.min), hi), min_size=2, max_size=2))
    if p.kind == PADDING:
        return draw(st.one_of(st.sampled_from(["valid", "same"]),
                              st.lists(st.integers(0, 3), min_size=4, max_size=4)))
    return p.default


@st.composite
def documents(draw):
    """A Document on an example or a random chain, with seeded weights for every layer whose
    shape is known (a random chain may be invalid further down)."""
    if draw(st.booleans()):
        graph = load_example(draw(st.sampled_from(EXAMPLES)))
    else:
        graph = draw(random_chains())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    weights = {k: rng.standard_normal(s).astype(np.float32)
               for k, s in expected_weight_shapes(graph).items() if s is not None}
    doc = Document(graph)
    _docs.append(doc)
    doc.set_weights(weights or None)
    return doc


def an_edit(doc: Document, draw):
    """One random command on the document as it is now (it may be refused: that is fine)."""
    g = doc.graph
    ids = list(g.nodes)
    fixable = [m for m in doc.validation.messages if m.fix is not None]
    if fixable and draw(st.booleans()):  # a problem on show: its quick fix is a likely next step
        return ApplyFixCommand(doc, draw(st.sampled_from(fixable)))
    kind = draw(st.sampled_from(["add", "remove", "param", "param", "kernel", "kernel",
                                 "rename", "trainable", "move", "freeze", "unfreeze", "head",
                                 "connect", "disconnect", "insert", "paste"]))
    windowed = [i for i in ids
                if any(p.name == "kernel_size" for p in REGISTRY[g.nodes[i].type_name].params)]
    if kind == "kernel" and windowed:  # a kernel that may not fit: weights change shape
        return SetParamCommand(doc, draw(st.sampled_from(windowed)), "kernel_size",
                               draw(st.integers(1, 40)))
    node = draw(st.sampled_from(ids)) if ids else None
    if kind == "add" or node is None:
        return AddNodeCommand(doc, draw(st.sampled_from(NEW_TYPES)),
                              (draw(st.integers(-500, 500)), draw(st.integers(-500, 500))))
    if kind == "remove":
        return RemoveNodesCommand(doc, draw(st.lists(st.sampled_from(ids), min_size=1,
                                                     max_size=2)))
    if kind == "param":
        params = REGISTRY[g.nodes[node].type_name].params
        if not params:
            return RenameNodeCommand(doc, node, f"{g.nodes[node].name}_")
        p = draw(st.sampled_from(params))
        return SetParamCommand(doc, node, p.name, value_for(p, draw))
    if kind == "rename":
        return RenameNodeCommand(doc, node, draw(st.sampled_from(["a", "b", "conv", "x1"])))
    if kind == "trainable":
        return SetTrainableCommand(doc, [node], draw(st.booleans()))
    if kind == "move":
        return MoveNodesCommand(doc, {node: (g.nodes[node].position, (1.0, 2.0))})
    if kind == "freeze":
        return FreezeUpToCommand(doc, node)
    if kind == "unfreeze":
        return UnfreezeAllCommand(doc)
    if kind == "head":
        return ReplaceHeadCommand(doc, draw(st.integers(1, 12)))
    if kind == "connect":
        return AddEdgeCommand(doc, node, draw(st.sampled_from(ids)))
    if kind in ("disconnect", "insert") and g.edges:
        e = draw(st.sampled_from(g.edges))
        if kind == "disconnect":
            return RemoveEdgeCommand(doc, e)
        return InsertNodeOnEdgeCommand(doc, e, draw(st.sampled_from(NEW_TYPES)))
    if kind == "paste":
        picked = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3))
        return PasteCommand(doc, make_fragment(g, picked))
    return UnfreezeAllCommand(doc)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.data())
def test_every_reachable_state_comes_back_exactly(doc, data):
    stack = doc.undo_stack
    states = [state(doc)]  # states[i]: the document at stack.index() == i
    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        move = data.draw(st.sampled_from(["edit", "edit", "edit", "undo", "redo"]))
        if move == "undo" and stack.canUndo():
            stack.undo()
        elif move == "redo" and stack.canRedo():
            stack.redo()
        else:
            cmd = an_edit(doc, data.draw)
            note(f"{type(cmd).__name__}: {cmd.text()!r} refused={cmd.refusal!r}")
            if not doc.push(cmd):
                assert state(doc) == states[stack.index()]  # a refused edit changes nothing
                continue
            states = states[:stack.index()] + [state(doc)]
            continue
        assert state(doc) == states[stack.index()], move
    # every state the stack can reach, in a random walk, then all the way back
    for _ in range(data.draw(st.integers(0, 16), label="walk")):
        if data.draw(st.booleans()) and stack.canUndo():
            stack.undo()
        elif stack.canRedo():
            stack.redo()
        assert state(doc) == states[stack.index()]
    while stack.canUndo():
        stack.undo()
    assert state(doc) == states[0]
    while stack.canRedo():
        stack.redo()
    assert state(doc) == states[-1] == states[stack.index()]
