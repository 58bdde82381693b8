"""Canvas: real events on the view (drops, port drags, moves, wheel), items mirroring the
document (shapes, errors, warnings), fixes, and a 300-node graph."""

import html

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from designer.canvas import LAYER_MIME, CanvasScene, CanvasView, layered_layout
from designer.canvas.items import fmt_count
from designer.canvas.layout import NODE_H, NODE_W
from designer.commands import ApplyFixCommand, SetParamCommand
from designer.document import Document
from engine.graph import Graph, sequential
from engine.layers import fmt_shape
from engine.zoo.examples import load_example


def make_canvas(qtbot, graph, w=900, h=700, centre=None):
    """Document + scene + a shown view at 100 % (centred on `centre`, scene coordinates)."""
    doc = Document(graph)
    scene = CanvasScene(doc)
    view = CanvasView(scene)
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    view.set_zoom(1.0)
    if centre is not None:
        view.centerOn(*centre)
    return doc, scene, view


@pytest.fixture
def canvas(qtbot):
    return make_canvas(qtbot, load_example("lenet5"))


def vp_point(view, scene_pt: QPointF) -> QPoint:
    return view.mapFromScene(scene_pt)


def drop(view, mime: QMimeData, at: QPoint) -> QDropEvent:
    actions = Qt.DropAction.CopyAction
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    QApplication.sendEvent(view.viewport(), QDragEnterEvent(at, actions, mime, buttons, mods))
    QApplication.sendEvent(view.viewport(), QDragMoveEvent(at, actions, mime, buttons, mods))
    ev = QDropEvent(QPointF(at), actions, mime, buttons, mods)
    QApplication.sendEvent(view.viewport(), ev)
    return ev


def layer_mime(type_name: str) -> QMimeData:
    try:
        from designer.palette import PalettePanel
        m = PalettePanel().mime_for(type_name)  # what a real drag from the palette carries
        if m is not None:
            return m
    except ImportError:
        pass
    m = QMimeData()
    m.setData(LAYER_MIME, type_name.encode())
    return m


def test_items_mirror_graph_and_validation(canvas):
    doc, scene, _view = canvas
    assert set(scene.node_items) == set(doc.graph.nodes)
    assert len(scene.edge_items) == len(doc.graph.edges)
    for nid, item in scene.node_items.items():
        res = doc.validation.nodes[nid]
        assert item.shape_text == fmt_shape(res.out_shape)
        assert item.pos() == QPointF(*doc.graph.nodes[nid].position)
    conv1 = scene.node_items["conv1"]
    assert conv1.params_text == f"{fmt_count(doc.validation.nodes['conv1'].params)} params"
    assert conv1.desc == doc.validation.nodes["conv1"].layer.describe()
    e = next(e for e in scene.edge_items.values() if e.edge.src == "conv1")
    assert e.label == fmt_shape(doc.validation.nodes["conv1"].out_shape)


def test_drop_from_palette_creates_node_at_cursor(canvas):
    doc, scene, view = canvas
    before = doc.graph.dumps()
    at = QPoint(view.viewport().width() - 60, 60)
    target = view.mapToScene(at)
    assert scene.node_at(target) is None and scene.edge_at(target) is None
    ev = drop(view, layer_mime("BatchNorm2d"), at)
    assert ev.isAccepted()
    new = [n for n in doc.graph.nodes.values() if n.type_name == "BatchNorm2d"]
    assert len(new) == 1
    assert abs(new[0].position[0] - target.x()) < 1 and abs(new[0].position[1] - target.y()) < 1
    assert scene.selected_node_ids() == [new[0].id]
    doc.undo_stack.undo()
    assert doc.graph.dumps() == before


def test_drop_on_edge_splices_layer_in(canvas):
    doc, scene, view = canvas
    edge = next(e for e in scene.edge_items.values() if e.edge.dst == "conv2")
    mid = edge.path.pointAtPercent(0.5)
    view.centerOn(mid)
    drop(view, layer_mime("BatchNorm2d"), vp_point(view, mid))
    bn = next(n for n in doc.graph.nodes.values() if n.type_name == "BatchNorm2d")
    assert doc.graph.inputs_of("conv2") == [bn.id]
    assert doc.graph.inputs_of(bn.id) == [edge.edge.src]
    assert scene.node_items[bn.id].shape_text == scene.node_items[edge.edge.src].shape_text


def test_garbage_drop_is_ignored(canvas):
    doc, _scene, view = canvas
    before = doc.graph.dumps()
    m = QMimeData()
    m.setText("Conv2d")
    drop(view, m, QPoint(50, 50))
    m = QMimeData()
    m.setData(LAYER_MIME, b"NoSuchLayer")
    drop(view, m, QPoint(50, 50))
    assert doc.graph.dumps() == before


def drag_port(view, qtbot, a: QPointF, b: QPointF) -> None:
    vp = view.viewport()
    pa, pb = vp_point(view, a), vp_point(view, b)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pa)
    QTest.mouseMove(vp, (pa + pb) / 2)
    QTest.mouseMove(vp, pb)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pb)


@pytest.fixture
def loose(qtbot):
    """An input and a conv side by side, not connected."""
    g = Graph("t")
    g.add_node("Input", "x", {}, (0, 0), node_id="x")
    g.add_node("Conv2d", "c", {"out_channels": 4, "kernel_size": 3}, (0, 200), node_id="c")
    g.add_node("ReLU", "r", {}, (0, 400), node_id="r")
    g.add_edge("c", "r")
    return make_canvas(qtbot, g, 800, 800, (0, 200))


def test_connect_ports_with_the_mouse(loose, qtbot):
    doc, scene, view = loose
    x, c = scene.node_items["x"], scene.node_items["c"]
    drag_port(view, qtbot, x.out_port.scenePos(), c.in_port.scenePos())
    assert doc.graph.inputs_of("c") == ["x"]
    assert scene.node_items["r"].shape_text == fmt_shape(doc.validation.nodes["r"].out_shape)
    assert doc.validation.nodes["r"].out_shape is not None
    assert len(scene.edge_items) == 2
    assert not any((i is None) for i in scene.items())
    doc.undo_stack.undo()
    assert doc.graph.inputs_of("c") == []


def test_connect_by_dropping_on_card_and_reverse_drag(loose, qtbot):
    doc, scene, view = loose
    x, c = scene.node_items["x"], scene.node_items["c"]
    # from the conv's input port back up onto the input's card body
    drag_port(view, qtbot, c.in_port.scenePos(), x.pos())
    assert doc.graph.inputs_of("c") == ["x"]


@pytest.mark.parametrize("case", ["self", "cycle", "full"])
def test_invalid_connections_refused_with_reason(loose, qtbot, case):
    doc, scene, view = loose
    x, c, r = (scene.node_items[k] for k in "xcr")
    doc.graph  # noqa: B018
    if case == "cycle":
        drag_port(view, qtbot, x.out_port.scenePos(), c.in_port.scenePos())
    before = doc.graph.dumps()
    refusals = []
    doc.edit_refused.connect(refusals.append)
    hints = []
    scene.status_message.connect(hints.append)
    if case == "self":
        drag_port(view, qtbot, c.out_port.scenePos(), c.in_port.scenePos())
        word = "itself"
    elif case == "cycle":
        drag_port(view, qtbot, r.out_port.scenePos(), c.in_port.scenePos())
        word = "takes 1 input"  # c is fed by x already; the engine names the first problem
    else:
        drag_port(view, qtbot, r.out_port.scenePos(), x.pos())
        word = "takes no input"
    assert doc.graph.dumps() == before
    assert refusals and word in refusals[-1]
    assert any(h.startswith("Cannot connect") for h in hints)  # shown while hovering
    assert all(p.highlight is None for it in scene.node_items.values()
               for p in (it.in_port, it.out_port) if p is not None)


def test_cycle_refused(qtbot):
    g = sequential([("Input", "x", {}), ("Add", "a", {}), ("ReLU", "r", {})])
    doc, scene, view = make_canvas(qtbot, g, 800, 800, (0, 110))
    refusals = []
    doc.edit_refused.connect(refusals.append)
    before = g.dumps()
    drag_port(view, qtbot, scene.node_items["r"].out_port.scenePos(),
              scene.node_items["a"].in_port.scenePos())
    assert doc.graph.dumps() == before
    assert "cycle" in refusals[-1]


def test_param_edit_updates_downstream_items_only(canvas):
    doc, scene, _view = canvas
    untouched = scene.node_items["input"]
    calls = []
    orig = untouched.update
    untouched.update = lambda *a: (calls.append(a), orig(*a))
    doc.push(SetParamCommand(doc, "conv1", "out_channels", 10))
    want = fmt_shape(doc.validation.nodes["relu1"].out_shape)
    assert want.startswith("10×")
    assert scene.node_items["relu1"].shape_text == want
    assert scene.node_items["conv1"].desc == doc.validation.nodes["conv1"].layer.describe()
    assert next(e for e in scene.edge_items.values() if e.edge.src == "pool1").label.startswith(
        "10×")
    n = doc.validation.nodes["conv2"].params
    assert scene.node_items["conv2"].params_text == f"{fmt_count(n)} params"
    assert calls == []  # the input's card was not repainted


def test_error_and_warning_display_and_quick_fix(canvas):
    doc, scene, _view = canvas
    doc.push(SetParamCommand(doc, "conv2", "kernel_size", [4, 4]))  # 16×11×11: pool drops a row
    warn = next(m for m in doc.validation.warnings if m.node_id == "pool2")
    pool2 = scene.node_items["pool2"]
    assert pool2.severity == "warning"
    assert html.escape(warn.text, quote=False) in pool2.tooltip_text()
    doc.push(SetParamCommand(doc, "conv1", "kernel_size", [40, 40]))
    err = next(m for m in doc.validation.errors if m.node_id == "conv1")
    conv1 = scene.node_items["conv1"]
    assert conv1.severity == "error" and conv1.shape_text == "?"
    assert conv1.first_message == err.text
    assert scene.node_items["relu1"].shape_text == "?"
    assert scene.node_items["relu1"].severity is None  # downstream: unknown, not blamed
    fixable = next((m for m in doc.validation.errors if m.fix), None)
    if fixable is not None:
        before = doc.graph.dumps()
        doc.push(ApplyFixCommand(doc, fixable))
        assert doc.graph.dumps() != before
        doc.undo_stack.undo()
        assert doc.graph.dumps() == before
    doc.undo_stack.undo()
    assert conv1.severity is None and conv1.shape_text == fmt_shape(
        doc.validation.nodes["conv1"].out_shape)


def test_insert_flatten_fix_shows_new_card(qtbot):
    g = sequential([("Input", "x", {}), ("Conv2d", "c", {"out_channels": 2, "kernel_size": 3}),
                    ("Linear", "fc", {"out_features": 10})])
    doc = Document(g)
    scene = CanvasScene(doc)
    msg = next(m for m in doc.validation.errors if m.fix and m.fix.action == "insert_before")
    assert scene.node_items["fc"].severity == "error"
    doc.push(ApplyFixCommand(doc, msg))
    flat = doc.graph.inputs_of("fc")[0]
    assert scene.node_items[flat].type_name == "Flatten"
    assert scene.node_items["fc"].severity is None
    assert scene.node_items["fc"].shape_text == "10"


def test_move_with_mouse_is_one_undoable_command(canvas, qtbot):
    doc, scene, view = canvas
    item = scene.node_items["conv1"]
    view.centerOn(item)
    start = vp_point(view, item.pos() + QPointF(0, 8))
    vp = view.viewport()
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for k in range(1, 6):
        QTest.mouseMove(vp, start + QPoint(20 * k, 4 * k))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       start + QPoint(100, 20))
    old = (0.0, 110.0)
    new = doc.graph.nodes["conv1"].position
    assert new != doc.graph.nodes["conv1"].position or new[0] > 50
    assert doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert doc.graph.nodes["conv1"].position == load_example("lenet5").nodes["conv1"].position
    assert item.pos() == QPointF(*doc.graph.nodes["conv1"].position)
    del old


def test_rubber_band_selects(canvas):
    _doc, scene, view = canvas
    view.fit()
    r = view.mapFromScene(scene.content_rect()).boundingRect()
    vp = view.viewport()
    a = QPoint(r.left() - 5, r.top() - 5)
    b = QPoint(r.right() + 5, r.top() + r.height() // 3)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(vp, (a + b) / 2)
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    sel = scene.selected_node_ids()
    assert "input" in sel and "softmax" not in sel


def test_wheel_zooms_around_cursor_and_fit(canvas):
    _doc, scene, view = canvas
    vp = view.viewport()
    at = QPointF(200, 150)
    under = view.mapToScene(at.toPoint())
    ev = QWheelEvent(at, vp.mapToGlobal(at), QPoint(0, 0), QPoint(0, 240),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                     Qt.ScrollPhase.NoScrollPhase, False)
    z0 = view.zoom()
    QApplication.sendEvent(vp, ev)
    assert view.zoom() == pytest.approx(z0 * 1.15 ** 2, rel=1e-3)
    after = view.mapToScene(at.toPoint())
    assert abs(after.x() - under.x()) < 4 and abs(after.y() - under.y()) < 4
    view.fit()
    vis = view.mapToScene(vp.rect()).boundingRect()
    assert vis.contains(scene.content_rect())


def test_layout_separates_cards():
    g = load_example("small_resnet")
    pos = layered_layout(g)
    pts = list(pos.values())
    for i, p in enumerate(pts):
        for q in pts[i + 1:]:
            assert abs(p[0] - q[0]) >= NODE_W or abs(p[1] - q[1]) >= NODE_H
    for e in g.edges:  # flows downwards
        assert pos[e.dst][1] > pos[e.src][1]


def test_300_node_graph_builds_lays_out_and_renders(qtbot):
    specs = [("Input", "x", {"channels": 3, "height": 32, "width": 32})]
    for k in range(289):
        specs.append(("ReLU" if k % 3 else "Conv2d", f"l{k}",
                      {} if k % 3 else {"out_channels": 8, "kernel_size": 3, "padding": "same"}))
    g = sequential(specs)
    # some branches so the layout has work to do
    for k in range(10, 290, 30):
        g.add_node("Add", f"add{k}", {}, node_id=f"add{k}")
        g.add_edge(f"l{k}", f"add{k}")
        g.add_edge(f"l{k + 3}", f"add{k}")
    pos = layered_layout(g)
    for nid, p in pos.items():
        g.nodes[nid].position = p
    doc, scene, view = make_canvas(qtbot, g, 800, 600)
    view.fit()
    assert len(scene.node_items) == len(g.nodes) == 300
    img = view.grab()
    assert not img.isNull()
    png = scene.render_image(0.25)
    assert png.width() > 100 and png.height() > 100
    view.set_zoom(0.5)
    qtbot.waitUntil(view.minimap.isVisible, timeout=2000)  # too big to see at once
    doc.push(SetParamCommand(doc, "l0", "out_channels", 16))
    assert scene.node_items["l1"].shape_text.startswith("16×")
    view.close()


def test_minimap_click_moves_the_view(canvas, qtbot):
    _doc, scene, view = canvas
    view.set_zoom(1.0)
    view.centerOn(scene.node_items["input"])
    mm = view.minimap
    mm.refresh()
    assert mm.isVisible()  # LeNet at 100 % does not fit a 900×700 view
    before = view.mapToScene(view.viewport().rect().center())
    QTest.mouseClick(mm, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(mm.width() // 2, mm.height() - 8))
    after = view.mapToScene(view.viewport().rect().center())
    assert after.y() > before.y() + 300  # moved towards the bottom of the network


def test_input_card_says_what_the_channels_are_not_the_shape_twice(canvas):
    doc, scene, _ = canvas
    item = scene.node_items["input"]
    assert item.shape_text == "1×28×28"
    assert item.desc and item.desc != item.shape_text and "greyscale" in item.desc
    doc.push(SetParamCommand(doc, "input", "channels", 3))
    item = scene.node_items["input"]
    assert "RGB" in item.desc and "3×28×28" not in item.desc


@pytest.mark.parametrize("dark", [False, True])
def test_edge_labels_are_readable_on_the_canvas(dark):
    from designer.canvas.items import Look
    from designer.theme import contrast_ratio

    look = Look(dark)
    assert contrast_ratio(look.edge_label, look.canvas) >= 4.5


def test_merge_input_labels_keep_clear_of_the_other_curves(qtbot):
    _doc, scene, _view = make_canvas(qtbot, load_example("small_resnet"))
    add = scene.node_items["block1_add"]
    ins = [e for e in add.edges if e.b is add]
    straight = next(e for e in ins if e.edge.src == "block1_bn2")
    skip = next(e for e in ins if e.edge.src == "stem_relu")
    lane_x = skip.path.boundingRect().center().x()
    label = straight.label_rect()
    # the label lies on the other side of the card's axis from the skip connection's lane
    assert (label.center().x() - add.x()) * (lane_x - add.x()) < 0
