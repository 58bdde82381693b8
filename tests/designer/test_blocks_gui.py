"""Collapsible blocks: a view state (the graph stays flat), block cards showing the engine's
BlockInfo, edges re-routed to the cards, layout of the folded graph, problems on the card,
and blocks detected for graphs that come without them."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from designer.canvas.blocks import GraphIndex, summarize
from designer.commands import RemoveNodesCommand, SetParamCommand
from engine.blocks import block_summary, detect_blocks
from engine.layers import fmt_shape
from engine.validate import validate
from engine.zoo.templates import make_template


@pytest.fixture
def resnet(window):
    window.file_controller.load_template("resnet18", 10)
    return window


def visible_nodes(scene):
    return [nid for nid, it in scene.node_items.items() if it.isVisible()]


def test_collapse_expand_round_trip_leaves_the_graph_untouched(resnet):
    w, scene, doc = resnet, resnet.scene, resnet.doc
    before = doc.graph.dumps()
    n = len(doc.graph.nodes)
    members = scene.blocks()["layer2"]
    scene.collapse("layer2")
    assert doc.graph.dumps() == before
    assert not doc.is_modified() and doc.undo_stack.count() == 0
    assert len(visible_nodes(scene)) == n - len(members)
    assert list(scene.block_items) == ["layer2"]
    assert doc.validation.ok and doc.validation.total_params == validate(doc.graph).total_params
    scene.expand("layer2")
    assert doc.graph.dumps() == before
    assert len(visible_nodes(scene)) == n and not scene.block_items
    # expanded again: every card back at the position stored in the graph
    for nid, item in scene.node_items.items():
        assert (item.x(), item.y()) == doc.graph.nodes[nid].position
    w.editor.collapse_all()
    assert doc.graph.dumps() == before
    assert set(scene.block_items) == {"layer1", "layer2", "layer3", "layer4"}


def test_block_card_shows_the_blocks_title_shapes_and_parameters(resnet):
    scene, doc = resnet.scene, resnet.doc
    scene.collapse("layer2")
    card = scene.block_items["layer2"]
    want = block_summary(doc.graph, doc.validation, scene.blocks()["layer2"], "layer2",
                         scene.blocks())
    assert card.title == want.title == "layer 2 (2 blocks, 16 layers)"
    assert card.info.params == want.params
    assert card.shapes_text() == (fmt_shape(want.in_shapes[0]), fmt_shape(want.out_shapes[0]))
    assert card.shapes_text() == ("64×56×56", "128×28×28")
    assert "layer 2" in card.toolTip() and f"{want.params:,}" in card.toolTip()


@pytest.mark.parametrize("key", ["resnet18", "densenet121", "googlenet", "squeezenet1_0"])
def test_fast_summaries_equal_the_engines(key):
    t = make_template(key)
    v = validate(t.graph)
    index = GraphIndex(t.graph)
    for name, ids in t.blocks.items():
        assert summarize(t.graph, v, index, name, ids, t.blocks) == \
            block_summary(t.graph, v, ids, name, t.blocks)


def test_edges_are_routed_to_the_block_card(resnet):
    scene, doc = resnet.scene, resnet.doc
    scene.collapse("layer2.0")
    inside = set(scene.blocks()["layer2.0"])
    card = scene.block_items["layer2.0"]
    into, out_of = set(), set()
    for e, item in scene.edge_items.items():
        if e.src in inside and e.dst in inside:
            assert not item.isVisible()
        elif e.dst in inside:
            assert item.b is card and item.a is scene.node_items[e.src]
            if item.isVisible():
                into.add(e.src)
        elif e.src in inside:
            assert item.a is card and item.b is scene.node_items[e.dst]
            if item.isVisible():
                out_of.add(e.dst)
        else:
            assert item.a is scene.node_items[e.src] and item.b is scene.node_items[e.dst]
    # layer1's output feeds both the conv path and the downsample path: drawn once
    sources = {e.src for e in doc.graph.edges if e.dst in inside and e.src not in inside}
    assert into == sources and len(sources) == 1
    assert len([i for i in card.edges if i.b is card]) == 1
    assert out_of and all(i.isVisible() for i in card.edges)
    # the curve ends at the card's ports
    item = next(i for i in card.edges if i.b is card)
    assert item.path.pointAtPercent(1.0) == card.in_anchor()


def test_inner_blocks_drill_down_and_expand_fully(resnet):
    scene = resnet.scene
    scene.collapse(["layer2", "layer2.0", "layer2.1"])
    assert list(scene.block_items) == ["layer2"]
    scene.expand("layer2")
    assert set(scene.block_items) == {"layer2.0", "layer2.1"}
    scene.collapse("layer2")
    scene.expand("layer2", fully=True)
    assert not scene.block_items and not scene.collapsed


def test_context_menu_collapses_the_innermost_block_and_offers_outer_ones(resnet):
    w, scene = resnet, resnet.scene
    item = scene.node_items["layer2.0.conv1"]
    menu = w.editor.context_menu_at(item.scenePos())
    texts = [a.text() for a in menu.actions()]
    collapse = next(a for a in menu.actions() if a.text() == "Collapse block 'layer2.0'")
    outer = next(a for a in menu.actions() if a.text() == "Collapse outer block").menu()
    assert [a.text() for a in outer.actions()] == ["'layer2' (16 layers)"]
    assert "Freeze up to 'layer2.0.conv1'" in texts
    collapse.trigger()
    assert list(scene.block_items) == ["layer2.0"]
    card = scene.block_items["layer2.0"]
    menu = w.editor.context_menu_at(card.scenePos())
    expand = next(a for a in menu.actions() if a.text().startswith("Expand 'layer 2.0"))
    expand.trigger()
    assert not scene.block_items


def test_double_click_on_a_block_card_expands_it(resnet, qtbot):
    w, scene = resnet, resnet.scene
    scene.collapse("layer3")
    card = scene.block_items["layer3"]
    w.view.set_zoom(1.0)
    w.view.centerOn(card)
    qtbot.wait(10)
    pt = w.view.mapFromScene(card.scenePos())
    QTest.mouseDClick(w.view.viewport(), Qt.MouseButton.LeftButton, pos=pt)
    qtbot.waitUntil(lambda: not scene.block_items, timeout=2000)
    assert scene.node_items["layer3.0.conv1"].isVisible()


def test_problems_inside_a_collapsed_block_show_on_its_card(resnet):
    scene, doc = resnet.scene, resnet.doc
    scene.collapse("layer3")
    card = scene.block_items["layer3"]
    assert card.n_errors == 0
    # a 3×3 conv with 100 filters breaks the residual Add of layer3.0 (256 vs 100 channels)
    assert doc.push(SetParamCommand(doc, "layer3.0.conv2", "out_channels", 100))
    assert not doc.validation.ok
    inside = set(scene.blocks()["layer3"])
    n_err = sum(1 for m in doc.validation.errors if m.node_id in inside)
    assert card.n_errors == n_err > 0
    doc.undo_stack.undo()
    assert card.n_errors == 0


def test_edits_while_collapsed_update_the_card(resnet):
    scene, doc = resnet.scene, resnet.doc
    scene.collapse("layer4")
    card = scene.block_items["layer4"]
    n = card.info.n_layers
    assert doc.push(RemoveNodesCommand(doc, ["layer4.1.relu2"]))  # the last ReLU
    assert scene.block_items["layer4"].info.n_layers == n - 1
    doc.undo_stack.undo()
    assert scene.block_items["layer4"].info.n_layers == n
    assert scene.node_items["layer4.1.relu2"].isVisible() is False


def test_collapsed_layout_is_a_short_column(window):
    window.file_controller.load_template("densenet201")
    scene, doc = window.scene, window.doc
    tall = scene.content_rect().height()
    before = doc.graph.dumps()
    window.editor.collapse_all()
    assert doc.graph.dumps() == before and doc.validation.ok
    names = [n for n in scene.block_items]
    assert [n for n in names if "denseblock" in n] == [
        f"features.denseblock{k}" for k in range(1, 5)]
    assert len(visible_nodes(scene)) + len(names) < 30
    assert scene.content_rect().height() < tall / 10
    # cards of the folded graph do not overlap
    rects = [it.sceneBoundingRect() for it in scene.visible_cards()]
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not a.adjusted(8, 12, -16, -14).intersects(b.adjusted(8, 12, -16, -14))
    assert scene.block_items["features.denseblock3"].title == \
        "dense block 3 (48 blocks, 336 layers)"


def test_graphs_without_blocks_get_them_detected(window):
    t = make_template("resnet18")
    window.doc.reset(t.graph)  # as if opened from a file that carries no blocks
    assert window.doc.blocks is None
    assert window.scene.blocks() == {k: v for k, v in detect_blocks(t.graph).items()
                                     if len(v) >= 2}
    window.editor.collapse_all()
    assert window.scene.block_items


def test_densenet201_loads_in_the_window_and_validates(window):
    assert window.file_controller.load_template("densenet201")
    want = make_template("densenet201")
    assert len(window.scene.node_items) == len(want.graph.nodes) > 700
    assert len(window.scene.edge_items) == len(want.graph.edges)
    assert window.doc.validation.ok
    assert window.doc.validation.total_params == validate(want.graph).total_params


def test_auto_layout_while_collapsed_arranges_the_view_not_the_graph(resnet):
    w, scene, doc = resnet, resnet.scene, resnet.doc
    w.editor.collapse_all()
    before = doc.graph.dumps()
    card = scene.block_items["layer3"]
    home = card.pos()
    card.setPos(home.x() + 500, home.y())  # as if dragged away
    scene.override["layer3"] = (card.x(), card.y())
    w.editor.auto_layout()
    assert scene.block_items["layer3"].pos() == home
    assert doc.graph.dumps() == before and doc.undo_stack.count() == 0


def test_select_all_and_delete_with_blocks_collapsed_removes_every_layer(window):
    from engine.zoo.templates import make_template

    t = make_template("resnet18", 10)
    window.doc.reset(t.graph)
    window.doc.blocks = t.blocks
    window.editor.collapse_all()
    assert window.scene.block_items
    window.editor.select_all()
    window.editor.delete_selection()
    assert not window.doc.graph.nodes
    window.doc.undo_stack.undo()
    assert len(window.doc.graph.nodes) == len(t.graph.nodes)
