"""Collapse after an edit inside a block (issue 16: ResNet-18, a ReLU inserted on
layer4.1.bn2 → layer4.1.add, Collapse All raised `min() arg is an empty sequence` in the
layout and left blocks half-collapsed). A layer inserted between two members of a block
belongs to that block; the folded view is laid out whatever the blocks are."""

import pytest

from designer.canvas.blocks import visible_layout
from designer.canvas.layout import layered_layout
from designer.commands import InsertNodeOnEdgeCommand
from engine.graph import Edge, Graph, Node


@pytest.fixture
def resnet(window):
    window.file_controller.load_template("resnet18", 10)
    return window


def _edge(doc, src, dst):
    return next(e for e in doc.graph.edges if e.src == src and e.dst == dst)


def test_collapse_all_after_inserting_a_layer_inside_a_block(resnet):
    w, scene, doc = resnet, resnet.scene, resnet.doc
    names = {n.name: i for i, n in doc.graph.nodes.items()}
    bn2, add = names["layer4.1.bn2"], names["layer4.1.add"]
    cmd = InsertNodeOnEdgeCommand(doc, _edge(doc, bn2, add), "ReLU")
    assert doc.push(cmd)
    relu = cmd.new_id
    w.editor.collapse_all()
    assert set(scene.block_items) == {"layer1", "layer2", "layer3", "layer4"}
    assert scene.owner[relu] == "layer4"  # the new layer folds with the block it sits in
    assert not scene.node_items[relu].isVisible()
    assert "layer4.1" in scene.blocks_containing(relu)
    # every visible card has a place; expanding shows every card again
    w.editor.expand_all()
    assert not scene.block_items and all(it.isVisible() for it in scene.node_items.values())
    # a collapse while the block is folded, then an edit inside it, still lays out
    scene.collapse("layer4.1")
    doc.undo_stack.undo()  # the ReLU goes away while its block is collapsed
    assert relu not in scene.owner and "layer4.1" in scene.block_items


def test_layout_of_a_folded_view_with_a_cycle_does_not_raise():
    """Blocks given by a file may fold into a cycle (a layer outside a block between two of
    its members): the layout still places every card."""
    g = Graph("g")
    for nid in ("in", "x", "a", "r", "b", "y"):
        g.nodes[nid] = Node(nid, "ReLU", nid, {}, True, (0.0, 0.0))
    for s, d in [("in", "x"), ("x", "a"), ("a", "r"), ("r", "b"), ("b", "y")]:
        g.edges.append(Edge(s, d, 0))
    pos = visible_layout(g, {"a": "blk", "b": "blk"}, ["blk"])  # r is outside "blk"
    assert set(pos) == {"in", "x", "r", "y", "blk"}
    g2 = Graph("cycle")
    for nid in ("s", "p", "q"):
        g2.nodes[nid] = Node(nid, "ReLU", nid, {}, True, (0.0, 0.0))
    g2.edges += [Edge("s", "p", 0), Edge("p", "q", 0), Edge("q", "p", 1)]
    assert set(layered_layout(g2)) == {"s", "p", "q"}
