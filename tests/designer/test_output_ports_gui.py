"""Output ports on the canvas and in the commands: a card with k outputs draws k output ports,
an edge attaches to the port it leaves from, dragging from port i connects output i, and every
edit that touches such an edge (connect, delete, splice, copy/paste, fixes) undoes exactly."""

import pytest
from PySide6.QtCore import QPointF

from designer.commands import (
    AddEdgeCommand,
    InsertNodeOnEdgeCommand,
    PasteCommand,
    RemoveEdgeCommand,
    RemoveNodesCommand,
    SetParamCommand,
    make_fragment,
    parse_fragment,
)
from designer.document import Document
from engine.graph import Edge, Graph
from tests.designer.test_canvas import drag_port, make_canvas
from tests.designer.test_commands import round_trip
from tests.multi_output import CHUNK, chunk_layer  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("chunk_layer")  # TestChunk registered for each test


def split_graph() -> Graph:
    """input ─ chunk(3) ─┬ :1 ─ relu;  tanh and sigmoid loose below."""
    g = Graph("ports")
    g.add_node("Input", "x", {"channels": 6, "height": 4, "width": 4}, (0, 0), node_id="x")
    g.add_node(CHUNK, "chunk", {"chunks": 3}, (0, 200), node_id="chunk")
    g.add_node("ReLU", "relu", {}, (-250, 400), node_id="relu")
    g.add_node("Tanh", "tanh", {}, (0, 400), node_id="tanh")
    g.add_node("Sigmoid", "sigmoid", {}, (250, 400), node_id="sigmoid")
    g.add_edge("x", "chunk")
    g.add_edge("chunk", "relu", src_port=1)
    return g


def test_card_draws_one_port_per_output_and_edges_attach_to_theirs(qtbot):
    doc, scene, _ = make_canvas(qtbot, split_graph(), 900, 800, (0, 200))
    chunk = scene.node_items["chunk"]
    assert len(chunk.out_ports) == 3 and len(scene.node_items["relu"].out_ports) == 1
    xs = [p.scenePos().x() for p in chunk.out_ports]
    assert xs == sorted(xs) and len(set(xs)) == 3  # left to right, apart
    assert [p.index for p in chunk.out_ports] == [0, 1, 2]
    edge = scene.edge_items[Edge("chunk", "relu", 0, 1)]
    start = edge.path.pointAtPercent(0)
    assert start == chunk.out_ports[1].scenePos()
    assert edge.label == "2×4×4"
    # fewer outputs: the ports follow the parameter (the edge from output 1 stays valid)
    assert doc.push(SetParamCommand(doc, "chunk", "chunks", 2))
    assert len(chunk.out_ports) == 2
    assert edge.path.pointAtPercent(0) == chunk.out_ports[1].scenePos()
    assert edge.label == "3×4×4"
    doc.undo_stack.undo()
    assert len(chunk.out_ports) == 3


def test_dragging_from_output_i_connects_output_i_and_undoes_exactly(qtbot):
    doc, scene, view = make_canvas(qtbot, split_graph(), 900, 800, (0, 200))
    chunk, tanh = scene.node_items["chunk"], scene.node_items["tanh"]
    before = doc.graph.dumps()
    drag_port(view, qtbot, chunk.out_ports[2].scenePos(), tanh.in_port.scenePos())
    assert Edge("chunk", "tanh", 0, 2) in doc.graph.edges
    after = doc.graph.dumps()
    assert '"chunk:2"' in after
    item = scene.edge_items[Edge("chunk", "tanh", 0, 2)]
    assert item.path.pointAtPercent(0) == chunk.out_ports[2].scenePos()
    doc.undo_stack.undo()
    assert doc.graph.dumps() == before
    assert Edge("chunk", "tanh", 0, 2) not in scene.edge_items
    doc.undo_stack.redo()
    assert doc.graph.dumps() == after
    assert Edge("chunk", "tanh", 0, 2) in scene.edge_items


def test_dragging_from_an_input_onto_an_output_port_picks_that_port(qtbot):
    doc, scene, view = make_canvas(qtbot, split_graph(), 900, 800, (0, 200))
    chunk, sig = scene.node_items["chunk"], scene.node_items["sigmoid"]
    drag_port(view, qtbot, sig.in_port.scenePos(), chunk.out_ports[2].scenePos())
    assert doc.graph.input_refs("sigmoid") == [("chunk", 2)]
    # onto the card body: the first output
    drag_port(view, qtbot, scene.node_items["tanh"].in_port.scenePos(),
              chunk.pos() + QPointF(0, -10))
    assert doc.graph.input_refs("tanh") == [("chunk", 0)]


def test_commands_keep_output_ports(qtbot):
    doc = Document(split_graph())
    round_trip(doc, AddEdgeCommand(doc, "chunk", "tanh", 2))
    assert Edge("chunk", "tanh", 0, 2) in doc.graph.edges
    cmd = AddEdgeCommand(doc, "chunk", "sigmoid", 3)
    assert cmd.refusal == ("cannot connect: TestChunk 'chunk' has 3 outputs (ports 0 to 2); "
                           "there is no output port 3")
    round_trip(doc, RemoveEdgeCommand(doc, Edge("chunk", "tanh", 0, 2)))
    round_trip(doc, RemoveNodesCommand(doc, ["chunk"]))
    doc.undo_stack.undo()
    assert Edge("chunk", "relu", 0, 1) in doc.graph.edges
    # a layer dropped on the edge reads the same output
    cmd = InsertNodeOnEdgeCommand(doc, Edge("chunk", "relu", 0, 1), "Sigmoid")
    round_trip(doc, cmd)
    assert doc.graph.input_refs(cmd.new_id) == [("chunk", 1)]
    assert doc.graph.input_refs("relu") == [(cmd.new_id, 0)]


def test_copy_paste_keeps_output_ports(qtbot):
    doc = Document(split_graph())
    frag = make_fragment(doc.graph, ["chunk", "relu"])
    assert '"chunk:1"' in frag
    assert parse_fragment(frag).edges == [Edge("chunk", "relu", 0, 1)]
    cmd = PasteCommand(doc, frag, (400, 0))
    round_trip(doc, cmd)
    a, b = cmd.node_ids
    assert doc.graph.input_refs(b) == [(a, 1)]
    # fragments written before output ports (version 1) still paste
    old = ('{"format": "cnn-designer-fragment", "version": 1, "nodes": ['
           '{"id": "a:1", "type": "ReLU"}, {"id": "b", "type": "Tanh"}], '
           '"edges": [["a:1", "b", 0]]}')
    assert parse_fragment(old).edges == [Edge("a:1", "b", 0, 0)]


def test_an_edge_from_a_missing_output_is_reported_and_every_edit_around_it_undoes(qtbot):
    """Fewer chunks (or a hand-written file) leave an edge on an output the layer no longer
    has: validation reports it; deleting the layer undoes exactly (undo restores the earlier
    state unchecked, it used to raise GraphError), dropping a layer on that edge is refused,
    and the canvas draws it all."""
    doc, scene, _view = make_canvas(qtbot, split_graph())
    assert doc.push(AddEdgeCommand(doc, "chunk", "tanh", 2))
    assert doc.push(SetParamCommand(doc, "chunk", "chunks", 2))  # output 2 is gone now
    assert any("output 2" in m.text for m in doc.validation.errors)
    qtbot.wait(10)
    round_trip(doc, RemoveNodesCommand(doc, ["chunk"]))
    doc.undo_stack.undo()
    assert Edge("chunk", "tanh", 0, 2) in doc.graph.edges
    round_trip(doc, RemoveNodesCommand(doc, ["chunk", "tanh", "relu"]))
    doc.undo_stack.undo()
    cmd = InsertNodeOnEdgeCommand(doc, Edge("chunk", "tanh", 0, 2), "Sigmoid")
    assert cmd.refusal and "no output port 2" in cmd.refusal
    assert not doc.push(cmd)
    # a good edge of the same layer still takes a layer, and undo puts the edge back
    round_trip(doc, InsertNodeOnEdgeCommand(doc, Edge("chunk", "relu", 0, 1), "Sigmoid"))
    scene.render_image(1.0)
    assert doc.push(SetParamCommand(doc, "chunk", "chunks", 3))  # the port exists again
    assert not any("output 2" in m.text for m in doc.validation.errors)
