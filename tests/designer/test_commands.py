"""Commands: do -> undo restores the graph JSON exactly; redo reproduces the edit; bad edits
are refused with a reason and change nothing."""

import pytest

from designer.commands import (
    AddEdgeCommand,
    AddNodeCommand,
    ApplyFixCommand,
    InsertNodeOnEdgeCommand,
    MoveNodesCommand,
    PasteCommand,
    RemoveEdgeCommand,
    RemoveNodesCommand,
    RenameNodeCommand,
    SetParamCommand,
    SetTrainableCommand,
    make_fragment,
)
from designer.document import Document
from engine.graph import sequential
from engine.zoo.examples import load_example


def round_trip(doc, cmd):
    before = doc.graph.dumps()
    assert doc.push(cmd), getattr(cmd, "refusal", None)
    after = doc.graph.dumps()
    assert after != before
    doc.undo_stack.undo()
    assert doc.graph.dumps() == before
    doc.undo_stack.redo()
    assert doc.graph.dumps() == after
    return after


def test_add_node_round_trip(doc):
    cmd = AddNodeCommand(doc, "Conv2d", (10, 20), {"out_channels": 4})
    round_trip(doc, cmd)
    node = doc.graph.nodes[cmd.node_id]
    assert node.params == {"out_channels": 4} and node.position == (10.0, 20.0)


def test_remove_nodes_restores_order_and_edges(doc):
    round_trip(doc, RemoveNodesCommand(doc, ["conv2", "relu1"]))
    assert "conv2" not in doc.graph.nodes
    assert not any("conv2" in (e.src, e.dst) for e in doc.graph.edges)


def test_set_param_changes_downstream_and_merges(doc):
    out_before = doc.validation.nodes["fc1"].in_shapes[0]
    round_trip(doc, SetParamCommand(doc, "conv2", "out_channels", 20))
    assert doc.validation.nodes["fc1"].in_shapes[0] != out_before
    n = doc.undo_stack.count()
    doc.push(SetParamCommand(doc, "conv2", "out_channels", 21))
    doc.push(SetParamCommand(doc, "conv2", "out_channels", 22))
    assert doc.undo_stack.count() == n  # merged into the previous edit
    doc.undo_stack.undo()
    assert "out_channels" not in doc.graph.nodes["conv2"].params or \
        doc.graph.nodes["conv2"].params["out_channels"] == 16


@pytest.mark.parametrize("value", [-3, 0, "five", 2.5, None, [1, 2, 3]])
def test_impossible_param_is_refused(doc, qtbot, value):
    before = doc.graph.dumps()
    cmd = SetParamCommand(doc, "conv1", "out_channels", value)
    with qtbot.waitSignal(doc.edit_refused) as sig:
        assert not doc.push(cmd)
    assert "out_channels" in sig.args[0]
    assert doc.graph.dumps() == before and doc.undo_stack.count() == 0


def test_rename_and_refusals(doc, qtbot):
    round_trip(doc, RenameNodeCommand(doc, "conv1", "first"))
    assert RenameNodeCommand(doc, "conv2", "first").refusal  # duplicate
    assert RenameNodeCommand(doc, "conv2", "  ").refusal


def test_trainable_and_move(doc):
    round_trip(doc, SetTrainableCommand(doc, ["conv1", "conv2"], False))
    assert not doc.graph.nodes["conv1"].trainable
    round_trip(doc, MoveNodesCommand(doc, {"conv1": ((0, 110), (300, 400))}))
    assert doc.graph.nodes["conv1"].position == (300.0, 400.0)


def test_edges_round_trip_and_refusals(doc, qtbot):
    g = doc.graph
    e = next(e for e in g.edges if e.dst == "conv2")
    round_trip(doc, RemoveEdgeCommand(doc, e))
    doc.push(RemoveEdgeCommand(doc, e))
    round_trip(doc, AddEdgeCommand(doc, "pool1", "conv2"))
    doc.undo_stack.undo()  # conv2 has no input again
    for src, dst, word in [("conv1", "conv1", "itself"), ("fc1", "conv2", "cycle"),
                           ("conv1", "relu1", "already"), ("relu1", "conv1", "takes 1 input")]:
        before = g.dumps()
        with qtbot.waitSignal(doc.edit_refused) as sig:
            assert not doc.push(AddEdgeCommand(doc, src, dst))
        assert word in sig.args[0]
        assert g.dumps() == before


def test_insert_on_edge(doc):
    e = next(e for e in doc.graph.edges if e.dst == "conv2")
    cmd = InsertNodeOnEdgeCommand(doc, e, "BatchNorm2d", (0, 400))
    round_trip(doc, cmd)
    assert doc.graph.inputs_of("conv2") == [cmd.new_id]
    assert doc.graph.inputs_of(cmd.new_id) == [e.src]
    assert doc.validation.ok


def test_fix_set_params_and_insert_before(qtbot):
    g = sequential([("Input", "x", {"channels": 1, "height": 28, "width": 28}),
                    ("Conv2d", "c", {"out_channels": 4, "kernel_size": 3}),
                    ("Linear", "fc", {"out_features": 10})])
    d = Document(g)
    msg = next(m for m in d.validation.errors if m.fix and m.fix.action == "insert_before")
    round_trip(d, ApplyFixCommand(d, msg))
    assert d.validation.ok
    assert d.graph.nodes[d.graph.inputs_of("fc")[0]].type_name == "Flatten"
    d.push(SetParamCommand(d, "c", "kernel_size", [40, 40]))
    msg = next(m for m in d.validation.errors if m.node_id == "c")
    if msg.fix is not None:
        round_trip(d, ApplyFixCommand(d, msg))
    d.deleteLater()


def test_paste_round_trip_new_ids(doc):
    frag = make_fragment(doc.graph, ["conv1", "relu1"])
    cmd = PasteCommand(doc, frag, (200, 0))
    round_trip(doc, cmd)
    assert len(cmd.node_ids) == 2 and not set(cmd.node_ids) & {"conv1", "relu1"}
    a, b = cmd.node_ids
    assert doc.graph.inputs_of(b) == [a]
    names = [n.name for n in doc.graph.nodes.values()]
    assert len(names) == len(set(names))


FRAG = '{"format": "cnn-designer-fragment", '


@pytest.mark.parametrize("garbage", ["", "hello", "[1, 2]", '{"format": "x"}',
                                     FRAG + '"nodes": [{"type": "Nope"}]}',
                                     FRAG + '"nodes": [{"id": "a", "type": "Conv2d", '
                                            '"params": {"kernel_size": -1}}]}',
                                     FRAG + '"nodes": [{"id": "a", "type": "ReLU"}], '
                                            '"edges": [["a", "a"]]}',
                                     FRAG + '"version": 0, "nodes": []}',
                                     b"\xff\xfe"])
def test_garbage_paste_refused(doc, qtbot, garbage):
    before = doc.graph.dumps()
    with qtbot.waitSignal(doc.edit_refused) as sig:
        assert not doc.push(PasteCommand(doc, garbage))
    assert sig.args[0].startswith("cannot paste")
    assert doc.graph.dumps() == before


def test_insert_on_tight_edge_makes_room(doc):
    from designer.canvas.layout import NODE_H, V_GAP

    g = doc.graph
    old = {nid: n.position for nid, n in g.nodes.items()}
    e = next(e for e in g.edges if e.dst == "conv2")
    cmd = InsertNodeOnEdgeCommand(doc, e, "BatchNorm2d", (5.0, 400.0))
    round_trip(doc, cmd)
    pitch = NODE_H + V_GAP
    assert g.nodes[cmd.new_id].position[1] == old["conv2"][1]
    below = g.descendants(cmd.new_id)
    assert below and all(g.nodes[n].position[1] == old[n][1] + pitch for n in below)
    assert all(g.nodes[n].position == old[n] for n in old if n not in below)


def test_insert_with_room_moves_nothing(doc):
    g = doc.graph
    for k, nid in enumerate(["conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2",
                             "relu4", "fc3", "softmax"]):
        g.nodes[nid].position = (0.0, 1000.0 + 110 * k)
    old = {nid: n.position for nid, n in g.nodes.items()}
    e = next(e for e in g.edges if e.dst == "conv2")
    cmd = InsertNodeOnEdgeCommand(doc, e, "BatchNorm2d", (5.0, 600.0))
    doc.push(cmd)
    assert all(g.nodes[n].position == old[n] for n in old)
    assert g.nodes[cmd.new_id].position == (5.0, 600.0)


def test_fix_removes_the_connection_that_closes_a_cycle(qtbot):
    from engine.graph import Edge, Graph

    g = Graph.from_json(load_example("lenet5").to_json())
    g.edges.append(Edge("relu1", "conv1", 1))  # a hand-written file with a cycle
    d = Document(g)
    cycle = [m for m in d.validation.errors if m.fix and m.fix.action == "remove_edge"]
    assert len(cycle) == 1
    after = round_trip(d, ApplyFixCommand(d, cycle[0]))  # undo restores the cyclic edge
    assert Edge("relu1", "conv1", 1) not in Graph.loads(after).edges
    assert d.validation.ok
    # disconnecting it by hand undoes the same way (no refusal of the restored cycle)
    d.undo_stack.undo()
    round_trip(d, RemoveEdgeCommand(d, Edge("relu1", "conv1", 1)))
    d.deleteLater()
