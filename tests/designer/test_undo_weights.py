"""Undo restores the weights exactly, for every command: do -> undo (and do -> undo -> redo ->
undo) leaves the graph JSON and every weight array bit-identical to what they were, also when
the edit comes after one that left the graph invalid (a quick fix's usual place).

Issue 16: Replace Head then undo lost the trained head weights, and undoing a quick fix left a
weight missing until the edit before it was undone too."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from designer import commands
from designer.commands import (
    AddEdgeCommand,
    AddNodeCommand,
    ApplyFixCommand,
    FreezeUpToCommand,
    InsertNodeOnEdgeCommand,
    LoadWeightsCommand,
    MoveNodesCommand,
    PasteCommand,
    RemoveEdgeCommand,
    RemoveNodesCommand,
    RenameNodeCommand,
    ReplaceHeadCommand,
    RestoreRunCommand,
    SetInputSpecCommand,
    SetParamCommand,
    SetTrainableCommand,
    UnfreezeAllCommand,
    make_fragment,
)
from designer.document import Document
from engine.inputspec import InputSpec
from engine.nn.network import Network
from engine.zoo.examples import load_example


def state(doc: Document) -> tuple[str, dict[str, tuple]]:
    """The graph JSON and every shown weight as (dtype, shape, SHA-256 of its bytes): equal
    means bit-equal."""
    w = doc.weights or {}
    return doc.graph.dumps(), {k: (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())
                               for k, a in w.items()}


@pytest.fixture
def docs(qtbot):
    """Documents made by trained_doc, deleted (undo stack first) after the test."""
    made: list[Document] = []
    yield made
    for d in made:
        d.undo_stack.clear()
        d.deleteLater()


def trained_doc(made: list) -> Document:
    """LeNet-5 with weights (seeded), one layer frozen, nothing to undo."""
    g = load_example("lenet5")
    g.nodes["conv1"].trainable = False
    doc = Document(g)
    made.append(doc)
    rng = np.random.default_rng(7)
    doc.set_weights({k: rng.standard_normal(a.shape).astype(np.float32)
                     for k, a in Network.compile(g, rng).state_dict().items()})
    doc.set_modified(False)
    return doc


def _run_of(doc) -> tuple:
    """A recorded run's graph and weights as the Runs panel gives them: a variant (conv2 of 20
    filters, a photo input spec) with its own seeded weights."""
    from engine.inputspec import InputSpec

    g = load_example("lenet5")
    g.nodes["conv2"].params["out_channels"] = 20
    g.input_spec = InputSpec((32, 32), resize=36, channels="L")
    rng = np.random.default_rng(11)
    return g, {k: a.copy() for k, a in Network.compile(g, rng).state_dict().items()}


def _first_fix(doc, action):
    return next(m for m in doc.validation.messages if m.fix and m.fix.action == action)


def _edge(doc, src, dst):
    return next(e for e in doc.graph.edges if e.src == src and e.dst == dst)


def _unlinked(doc):
    """relu4 without its input: relu4 and fc3 are of unknown shape (their weights still show)."""
    doc.push(RemoveEdgeCommand(doc, _edge(doc, "fc2", "relu4")))
    return AddEdgeCommand(doc, "fc2", "relu4")


def _cycle_fix(doc):
    doc.add_edge("fc1", "conv2", check=False)  # a cycle, as a file may hold one
    doc.undo_stack.clear()
    return ApplyFixCommand(doc, _first_fix(doc, "remove_edge"))


def _connect_fix(doc):
    """relu4's input removed: "needs an input" offers to connect fc2 (free, just above)."""
    doc.push(RemoveEdgeCommand(doc, _edge(doc, "fc2", "relu4")))
    fix = _first_fix(doc, "add_edge").fix
    assert (fix.params["src"], fix.params["dst"]) == ("fc2", "relu4")
    return ApplyFixCommand(doc, _first_fix(doc, "add_edge"))


def _flatten_fix(doc):
    doc.push(RemoveNodesCommand(doc, ["flatten"]))
    doc.push(AddEdgeCommand(doc, "pool2", "fc1"))
    return ApplyFixCommand(doc, _first_fix(doc, "insert_before"))


def _head_fix(doc):
    """The head removed: the output is pool2's 16×5×5 map, and the classifier warning offers to
    add a GlobalAvgPool2d after it (insert_after at the network's end)."""
    doc.push(RemoveNodesCommand(doc, ["flatten", "fc1", "relu3", "fc2", "relu4", "fc3",
                                      "softmax"]))
    return ApplyFixCommand(doc, _first_fix(doc, "insert_after"))


COMMANDS = {
    "add node": lambda d: AddNodeCommand(d, "Conv2d", (500, 0), {"out_channels": 4}),
    "remove nodes": lambda d: RemoveNodesCommand(d, ["fc2", "conv2"]),
    "set param": lambda d: SetParamCommand(d, "fc2", "out_features", 100),
    "set param upstream": lambda d: SetParamCommand(d, "conv2", "out_channels", 20),
    "rename": lambda d: RenameNodeCommand(d, "fc1", "dense1"),
    "set trainable": lambda d: SetTrainableCommand(d, ["conv2", "fc1"], False),
    "move": lambda d: MoveNodesCommand(d, {"fc1": (d.graph.nodes["fc1"].position, (9, 9))}),
    "freeze up to": lambda d: FreezeUpToCommand(d, "pool2"),
    "unfreeze all": UnfreezeAllCommand,
    "replace head": lambda d: ReplaceHeadCommand(d, 5),
    "add edge": _unlinked,
    "remove edge": lambda d: RemoveEdgeCommand(d, _edge(d, "flatten", "fc1")),
    "insert on edge": lambda d: InsertNodeOnEdgeCommand(d, _edge(d, "flatten", "fc1"), "Linear",
                                                        params={"out_features": 50}),
    "fix: set params": lambda d: ApplyFixCommand(d, _first_fix(d, "set_params")),
    "fix: insert before": _flatten_fix,
    "fix: remove edge": _cycle_fix,
    "fix: add edge": _connect_fix,
    "fix: insert after": _head_fix,
    "paste": lambda d: PasteCommand(d, make_fragment(d.graph, ["conv2", "relu2", "fc1"])),
    "restore run": lambda d: RestoreRunCommand(d, *_run_of(d), "run 3, epoch 2"),
    "load weights": lambda d: LoadWeightsCommand(  # File ▸ Load weights, part of the layers
        d, {"fc1.weight": np.full((120, 400), 0.5, np.float32)}, "w.npz"),
    "input spec": lambda d: SetInputSpecCommand(  # the inspector's Input spec… dialog
        d, InputSpec((28, 28), resize=32, channels="L", mean=(0.1307,), std=(0.3081,))),
}


# for commands refused (or with nothing to fix) downstream of an invalid layer: an edit before
# them that leaves the graph valid but stashes weights that no longer fit
STASHING_EDIT = {
    "replace head": lambda d: SetParamCommand(d, "fc2", "out_features", 100),  # fc3's
    "fix: insert before": lambda d: SetParamCommand(d, "conv2", "out_channels", 20),  # fc1's
    "fix: insert after": lambda d: SetParamCommand(d, "conv2", "out_channels", 20),
}


def _break_conv2(doc):
    """An edit that leaves conv2 invalid (its kernel does not fit; a padding fix is offered):
    conv2 and everything after it are of unknown shape."""
    assert doc.push(SetParamCommand(doc, "conv2", "kernel_size", 15))
    assert any(m.fix and m.fix.action == "set_params" for m in doc.validation.messages)


@pytest.mark.parametrize("before", ["valid", "after an invalidating edit"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_undo_restores_graph_and_weights_bit_exactly(docs, name, before):
    doc = trained_doc(docs)
    if before != "valid" and name in STASHING_EDIT:  # these need a valid graph (upstream)
        assert doc.push(STASHING_EDIT[name](doc))
    elif before != "valid" or name == "fix: set params":
        _break_conv2(doc)
    cmd = COMMANDS[name](doc)
    s0 = state(doc)
    assert doc.push(cmd), getattr(cmd, "refusal", None)
    s1 = state(doc)
    assert s1 != s0
    doc.undo_stack.undo()
    assert state(doc) == s0
    doc.undo_stack.redo()
    assert state(doc) == s1
    doc.undo_stack.undo()
    assert state(doc) == s0
    while doc.undo_stack.canUndo():  # and back to the start, weights and all
        doc.undo_stack.undo()
    assert state(doc)[1] == state(trained_doc(docs))[1]


def test_replace_head_then_undo_keeps_the_trained_head(docs):
    """The issue's steps: fc2 to 100 units, Replace Head for 5 classes, undo twice."""
    doc = trained_doc(docs)
    s0 = state(doc)
    assert doc.push(SetParamCommand(doc, "fc2", "out_features", 100))
    assert doc.push(ReplaceHeadCommand(doc, 5))
    assert doc.weights["fc3.weight"].shape == (5, 100)
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert state(doc) == s0 and "fc3.weight" in doc.weights


def test_undoing_a_quick_fix_brings_its_weights_back_at_once(docs):
    """Undo of the fix alone restores the weights that were there before it (conv2's and
    fc1's, of shapes the invalid graph could not check), not only once the edit before the
    fix is undone too."""
    doc = trained_doc(docs)
    _break_conv2(doc)
    before = state(doc)
    assert "conv2.weight" in doc.weights and "fc1.weight" in doc.weights
    assert doc.push(ApplyFixCommand(doc, _first_fix(doc, "set_params")))
    assert "conv2.weight" not in doc.weights  # 16×6×5×5 does not fit the 15×15 kernel
    doc.undo_stack.undo()
    assert state(doc) == before


def test_every_command_type_is_covered(docs):
    """A new command type needs its case in COMMANDS (this test lists the missing ones)."""
    import inspect

    every = {c for _, c in inspect.getmembers(commands, inspect.isclass)
             if issubclass(c, commands._Command) and c is not commands._Command}
    covered = set()
    for name, make in COMMANDS.items():
        doc = trained_doc(docs)
        if name == "fix: set params":
            _break_conv2(doc)
        covered.add(type(make(doc)))
    assert every - covered == set()
