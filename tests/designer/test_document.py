"""Document: the only writer of the graph; signals, validation after every change, lock, weights."""

import numpy as np

from designer.commands import AddNodeCommand, SetParamCommand
from engine.graph import sequential


def test_validation_is_current_after_each_mutator(doc):
    assert doc.validation.ok
    before = doc.validation.nodes["conv2"].out_shape
    doc.set_params("conv1", {"out_channels": 10})
    assert doc.validation.nodes["conv2"].in_shapes[0][0] == 10
    assert doc.validation.nodes["conv2"].out_shape == before  # conv2 keeps its own channels
    doc.set_params("conv1", {"kernel_size": [40, 40]})
    assert not doc.validation.ok
    assert doc.validation.nodes["conv1"].has_error


def test_signals_and_batch_validates_once(doc, qtbot):
    seen = []
    doc.validated.connect(lambda v: seen.append(v))
    added = []
    doc.node_added.connect(added.append)
    with doc.batch():
        a = doc.add_node("ReLU", (0, 0))
        b = doc.add_node("ReLU", (0, 100))
        doc.add_edge(a, b)
    assert added == [a, b]
    assert len(seen) == 1 and seen[0] is doc.validation
    assert b in doc.validation.nodes


def test_lock_refuses_edits_with_reason(doc, qtbot):
    before = doc.graph.dumps()
    doc.lock("training is running")
    with qtbot.waitSignal(doc.edit_refused) as sig:
        assert not doc.push(AddNodeCommand(doc, "ReLU", (0, 0)))
    assert sig.args == ["training is running"]
    assert doc.graph.dumps() == before
    doc.unlock()
    assert doc.push(AddNodeCommand(doc, "ReLU", (0, 0)))


def test_clean_changed_and_reset(doc, qtbot):
    assert not doc.is_dirty()
    with qtbot.waitSignal(doc.clean_changed) as sig:
        doc.push(SetParamCommand(doc, "conv1", "out_channels", 8))
    assert sig.args == [False] and doc.is_dirty()
    with qtbot.waitSignal(doc.graph_reset):
        doc.reset(sequential([("Input", "x", {}), ("Flatten", "f", {})]))
    assert not doc.is_dirty() and doc.undo_stack.count() == 0
    assert set(doc.validation.nodes) == {"x", "f"}


def test_weights_dropped_when_shape_changes_and_back_on_undo(doc):
    rng = np.random.default_rng(0)
    state = {"conv1.weight": rng.standard_normal((6, 1, 5, 5)).astype(np.float32),
             "conv1.bias": np.zeros(6, np.float32),
             "conv2.weight": rng.standard_normal((16, 6, 5, 5)).astype(np.float32)}
    doc.set_weights(state)
    assert set(doc.weights) == set(state)
    doc.push(SetParamCommand(doc, "conv1", "out_channels", 8))
    # conv1 changed shape and conv2 now reads 8 channels: both are dropped
    assert "conv1.weight" not in doc.weights and "conv2.weight" not in doc.weights
    doc.undo_stack.undo()
    assert set(doc.weights) == set(state)
    assert np.array_equal(doc.weights["conv2.weight"], state["conv2.weight"])


def test_move_does_not_revalidate(doc, qtbot):
    seen = []
    doc.validated.connect(seen.append)
    with qtbot.waitSignal(doc.node_moved):
        doc.move_node("conv1", (5, 6))
    assert doc.graph.nodes["conv1"].position == (5.0, 6.0)
    assert seen == []
