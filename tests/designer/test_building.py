"""Building by hand: readable zoom, connecting drops, reconnecting deletes, undo keys."""

from designer.canvas.items import DETAIL_LOD
from designer.canvas.view import READABLE_ZOOM


def test_lenet_opens_readable_with_a_hint_and_f_twice_shows_all(window, qtbot):
    window.resize(1600, 1000)
    qtbot.wait(30)
    window.file_controller.open_example("lenet5")
    qtbot.wait(30)
    view, scene = window.view, window.scene
    assert view.zoom() >= READABLE_ZOOM > DETAIL_LOD  # parameters on the cards
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.top() <= scene.content_rect().top() + 5  # its input in view
    assert "overview map" in window.statusBar().currentMessage()
    window.editor.act_fit.trigger()  # F: still readable (a tall net is not shrunk)
    assert view.zoom() >= READABLE_ZOOM
    window.editor.act_fit.trigger()  # F again: the whole network
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.contains(scene.content_rect())
    assert "Whole network" in window.statusBar().currentMessage()
    window.editor.act_fit.trigger()  # and back to readable
    assert view.zoom() >= READABLE_ZOOM


def _drop(window, type_name, pos):
    from PySide6.QtCore import QPointF

    return window.view.drop_layer(type_name, QPointF(*pos))


def test_drop_connects_after_the_selected_free_layer(window):
    window.file_controller.new_file()
    doc, scene = window.doc, window.scene
    scene.select_nodes(["input"])
    assert _drop(window, "Conv2d", (0, 200))
    conv = scene.selected_node_ids()[0]
    assert [(e.src, e.dst) for e in doc.graph.edges] == [("input", conv)]
    assert "Connected 'input'" in window.statusBar().currentMessage()
    doc.undo_stack.undo()  # one step: the layer and its connection
    assert list(doc.graph.nodes) == ["input"] and not doc.graph.edges
    # ambiguous (nothing selected): the layer lands unconnected
    scene.clearSelection()
    assert _drop(window, "ReLU", (400, 400))
    assert not doc.graph.edges


def test_drop_on_an_edge_splices_the_layer_in(window):
    window.file_controller.open_example("lenet5")
    doc, scene = window.doc, window.scene
    e = next(e for e in doc.graph.edges if (e.src, e.dst) == ("flatten", "fc1"))
    a = scene.node_items["flatten"].sceneBoundingRect()
    b = scene.node_items["fc1"].sceneBoundingRect()
    mid = (a.center() + b.center()) / 2  # the straight connection between them
    assert scene.edge_at(mid) is not None
    assert _drop(window, "Dropout", (mid.x(), mid.y()))
    new = scene.selected_node_ids()[0]
    pairs = {(x.src, x.dst) for x in doc.graph.edges}
    assert ("flatten", new) in pairs and (new, "fc1") in pairs and ("flatten", "fc1") not in pairs


def test_deleting_a_middle_layer_reconnects_its_neighbours(window):
    window.file_controller.open_example("lenet5")
    doc, scene = window.doc, window.scene
    before = doc.graph.dumps()
    scene.select_nodes(["relu1"])
    window.editor.delete_selection()
    assert "relu1" not in doc.graph.nodes
    assert ("conv1", "pool1") in {(e.src, e.dst) for e in doc.graph.edges}
    assert not doc.validation.errors
    assert "reconnected 'conv1' → 'pool1'" in window.statusBar().currentMessage()
    doc.undo_stack.undo()  # one step back to the exact graph
    assert doc.graph.dumps() == before


def test_needs_an_input_offers_to_connect(window):
    from designer.commands import ApplyFixCommand, RemoveEdgeCommand

    window.file_controller.open_example("lenet5")
    doc = window.doc
    e = next(e for e in doc.graph.edges if (e.src, e.dst) == ("pool2", "flatten"))
    doc.push(RemoveEdgeCommand(doc, e))
    msg = next(m for m in doc.validation.errors if m.node_id == "flatten")
    assert "needs an input" in msg.text
    assert msg.fix is not None and msg.fix.label == "connect 'pool2' → 'flatten'"
    assert doc.push(ApplyFixCommand(doc, msg))
    assert not doc.validation.errors
    # the Problems panel shows the fix button
    window.show_dock("problems")


def test_undo_keys_in_an_inspector_field_undo_the_document(window, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from designer.commands import SetParamCommand

    doc = window.doc
    window.activateWindow()
    window.scene.select_nodes(["conv1"])
    inspector = window.panels["inspector"]
    assert doc.push(SetParamCommand(doc, "conv1", "out_channels", 9))
    field = inspector.name_edit
    field.setFocus()
    qtbot.waitUntil(field.hasFocus, timeout=2000)
    QTest.keyClick(field, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.graph.nodes["conv1"].params.get("out_channels", 6) == 6  # the document's undo
    field = inspector.name_edit
    field.setFocus()
    qtbot.waitUntil(field.hasFocus, timeout=2000)
    QTest.keyClick(field, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert doc.graph.nodes["conv1"].params["out_channels"] == 9  # and its redo
