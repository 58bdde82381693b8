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
    assert not doc.is_modified()
    with qtbot.waitSignal(doc.clean_changed) as sig:
        doc.push(SetParamCommand(doc, "conv1", "out_channels", 8))
    assert sig.args == [False] and doc.is_modified()
    with qtbot.waitSignal(doc.graph_reset):
        doc.reset(sequential([("Input", "x", {}), ("Flatten", "f", {})]))
    assert not doc.is_modified() and doc.undo_stack.count() == 0
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


# ---- state the window shows: path, name, history, title, modified --------------------------


def _trained_state(doc):
    from engine.nn.network import Network

    return Network.compile(doc.graph, np.random.default_rng(0)).state_dict()


def test_path_name_and_history_setters_signal_and_title_follows(doc, qtbot, tmp_path):
    seen = []
    for name in ("path_changed", "name_changed", "history_changed", "title_changed"):
        getattr(doc, name).connect(lambda *a, n=name: seen.append((n, *a)))
    doc.set_network_name("Mine")
    assert doc.graph.name == "Mine" and doc.title == "Mine"
    assert seen == [("name_changed", "Mine"), ("title_changed", "Mine")]
    seen.clear()
    doc.set_path(tmp_path / "net.cnnd")
    assert seen == [("path_changed", tmp_path / "net.cnnd"), ("title_changed", "net.cnnd")]
    seen.clear()
    doc.set_network_name("Other")  # the file name stays the title
    assert seen == [("name_changed", "Other")]
    seen.clear()
    doc.set_path(tmp_path / "net.cnnd")  # no change: no signal
    doc.set_network_name("Other")
    assert seen == []
    doc.set_history({"epochs": []})
    assert doc.history == {"epochs": []} and seen == [("history_changed",)]
    seen.clear()
    doc.set_path(None)
    assert seen == [("path_changed", None), ("title_changed", "Other")]
    seen.clear()
    doc.reset(sequential([("Input", "x", {})]), path=tmp_path / "b.cnnd")
    assert ("path_changed", tmp_path / "b.cnnd") in seen and ("title_changed", "b.cnnd") in seen
    assert ("history_changed",) in seen and doc.history is None


def test_training_marks_the_document_modified_until_saved(doc, qtbot):
    """What the training panel does at the end of a run: weights, then history."""
    assert not doc.is_modified()
    with qtbot.waitSignal(doc.modified_changed) as sig:
        doc.set_weights(_trained_state(doc))
    assert sig.args == [True] and doc.is_modified()
    assert doc.undo_stack.isClean()  # weights are not an undoable edit ...
    doc.set_history({"epochs": [{"epoch": 1}]})
    assert doc.is_modified()  # ... but they are an unsaved change
    with qtbot.waitSignal(doc.modified_changed) as sig:
        doc.set_modified(False)  # saved
    assert sig.args == [False] and not doc.is_modified()
    doc.set_history(None)
    assert doc.is_modified()


def test_undo_back_to_the_clean_graph_keeps_new_weights_modified(doc, qtbot):
    doc.push(SetParamCommand(doc, "fc1", "out_features", 100))
    doc.undo_stack.undo()
    assert doc.undo_stack.isClean() and not doc.is_modified()
    doc.push(SetParamCommand(doc, "fc1", "out_features", 100))
    doc.undo_stack.undo()
    doc.set_weights(_trained_state(doc))  # trained at the saved graph's shape
    doc.push(SetParamCommand(doc, "fc1", "out_features", 100))
    doc.undo_stack.undo()  # back at the clean graph: the weights are still not saved
    assert doc.undo_stack.isClean() and doc.is_modified()
    doc.set_modified(False)
    doc.push(SetParamCommand(doc, "fc1", "out_features", 100))
    assert doc.is_modified()
    doc.undo_stack.undo()
    assert not doc.is_modified()  # saved with these weights: clean again on undo
    doc.set_modified(True)  # a recovered autosave: not saved anywhere
    assert doc.is_modified()
    doc.reset(doc.graph.copy())
    assert not doc.is_modified()
