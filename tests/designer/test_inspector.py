"""Inspector: editors generated from the Param declarations, undoable edits, live formulas."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from designer.inspector import InspectorPanel, MessageCard
from designer.param_editors import (
    BoolEditor,
    ChoiceEditor,
    FloatEditor,
    IntEditor,
    PaddingEditor,
    PairEditor,
)


@pytest.fixture
def panel(doc, qtbot):
    p = InspectorPanel(doc)
    qtbot.addWidget(p)
    p.resize(360, 900)
    p.show()
    return p


def kinds(panel):
    return {name: type(ed) for name, ed in panel.editors.items()}


def test_editors_follow_the_declarations(panel):
    panel.set_node("conv1")
    assert kinds(panel) == {"out_channels": IntEditor, "kernel_size": PairEditor,
                            "stride": PairEditor, "padding": PaddingEditor,
                            "dilation": PairEditor, "groups": IntEditor, "bias": BoolEditor,
                            "init": ChoiceEditor}
    assert panel.editors["out_channels"].spin.value() == 6
    assert panel.editors["out_channels"].spin.minimum() == 1
    assert (panel.editors["kernel_size"].h.value(), panel.editors["kernel_size"].w.value()) == (5, 5)
    pad = panel.editors["padding"]
    assert pad.mode.currentData() == "explicit"
    assert [pad.sides[k].value() for k in ("top", "left", "bottom", "right")] == [2, 2, 2, 2]
    assert panel.trainable.isVisibleTo(panel)

    panel.set_node("pool1")
    assert kinds(panel) == {"kernel_size": PairEditor, "stride": PairEditor,
                            "padding": PaddingEditor, "ceil_mode": BoolEditor,
                            "dilation": PairEditor}
    stride = panel.editors["stride"]
    assert stride.auto is not None and stride.auto.isChecked()  # stride None = kernel
    assert not stride.h.isEnabled() and stride.h.value() == 2
    assert not panel.trainable.isVisibleTo(panel)  # pooling has no weights

    panel.set_node("fc1")
    assert kinds(panel) == {"out_features": IntEditor, "bias": BoolEditor, "init": ChoiceEditor,
                            "over": ChoiceEditor}
    assert panel.editors["out_features"].spin.value() == 120

    panel.set_node("input")
    assert kinds(panel) == {"channels": IntEditor, "height": IntEditor, "width": IntEditor}
    assert panel.editors["height"].spin.value() == 28

    panel.set_node(None)
    assert panel.editors == {}
    panel.set_node("no-such-node")
    assert panel.node_id is None


def test_spin_edit_pushes_an_undoable_command_and_updates_downstream(doc, panel, qtbot):
    panel.set_node("conv1")
    editor_before = panel.editors["out_channels"]
    spin = editor_before.spin
    spin.setValue(10)
    assert doc.graph.nodes["conv1"].params["out_channels"] == 10
    assert doc.validation.nodes["conv2"].in_shapes[0] == (10, 14, 14)
    assert doc.validation.nodes["conv2"].params == (5 * 5 * 10 + 1) * 16
    assert panel.editors["out_channels"] is editor_before  # updated in place, not rebuilt
    # a burst of steps merges into one undo step
    spin.stepUp()
    spin.stepUp()
    assert doc.graph.nodes["conv1"].params["out_channels"] == 12
    assert doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert doc.graph.nodes["conv1"].params["out_channels"] == 6
    assert spin.value() == 6  # the editor follows the undo
    assert doc.validation.nodes["conv2"].in_shapes[0] == (6, 14, 14)


def test_kernel_pair_lock_and_padding_modes(doc, panel):
    panel.set_node("conv2")
    k = panel.editors["kernel_size"]
    assert k.lock.isChecked()
    k.h.setValue(3)
    assert doc.graph.nodes["conv2"].params["kernel_size"] == [3, 3]
    assert k.w.value() == 3
    assert doc.validation.nodes["conv2"].out_shape == (16, 12, 12)
    k.lock.setChecked(False)
    k.w.setValue(5)
    assert doc.graph.nodes["conv2"].params["kernel_size"] == [3, 5]
    assert doc.validation.nodes["conv2"].out_shape == (16, 12, 10)

    pad = panel.editors["padding"]
    pad.mode.setCurrentIndex(pad.mode.findData("same"))
    pad.mode.activated.emit(pad.mode.currentIndex())
    assert doc.graph.nodes["conv2"].params["padding"] == "same"
    assert doc.validation.nodes["conv2"].out_shape == (16, 14, 14)
    pad.mode.setCurrentIndex(pad.mode.findData("explicit"))
    pad.mode.activated.emit(pad.mode.currentIndex())
    # explicit starts from what 'same' padded: (1, 2, 1, 2) for a 3×5 kernel
    assert doc.graph.nodes["conv2"].params["padding"] == [1, 2, 1, 2]
    assert pad.box.isVisibleTo(pad)
    pad.lock.setChecked(False)
    pad.sides["bottom"].setValue(0)
    assert doc.graph.nodes["conv2"].params["padding"] == [1, 2, 0, 2]
    assert doc.validation.nodes["conv2"].out_shape == (16, 13, 14)


def test_pool_stride_equal_to_kernel_toggle(doc, panel):
    panel.set_node("pool1")
    stride = panel.editors["stride"]
    stride.auto.setChecked(False)
    assert doc.graph.nodes["pool1"].params["stride"] == [2, 2]
    assert stride.h.isEnabled()
    stride.h.setValue(1)
    assert doc.graph.nodes["pool1"].params["stride"] == [1, 1]
    assert doc.validation.nodes["pool1"].out_shape == (6, 27, 27)
    stride.auto.setChecked(True)
    assert doc.graph.nodes["pool1"].params["stride"] is None
    assert doc.validation.nodes["pool1"].out_shape == (6, 14, 14)


def test_out_of_range_typing_is_refused(doc, panel, qtbot):
    panel.set_node("conv1")
    spin = panel.editors["out_channels"].spin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "0")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert doc.graph.nodes["conv1"].params["out_channels"] == 6  # 0 filters is impossible
    spin.selectAll()
    qtbot.keyClicks(spin, "-4")  # the minus sign is not accepted: 4 remains
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert doc.graph.nodes["conv1"].params["out_channels"] == 4
    # values beyond the declared range are clamped by the editor's range
    spin.setValue(10**9)
    assert doc.graph.nodes["conv1"].params["out_channels"] == spin.maximum() == 65536
    panel.set_node("fc1")
    panel.set_node(None)
    doc.undo_stack.undo()
    # Dropout p is declared in [0, 0.99]: the float editor refuses 5
    from designer.commands import AddNodeCommand
    doc.push(AddNodeCommand(doc, "Dropout", (0, 0)))
    drop = next(n for n in doc.graph.nodes.values() if n.type_name == "Dropout")
    panel.set_node(drop.id)
    fspin = panel.editors["p"].spin
    assert isinstance(panel.editors["p"], FloatEditor)
    fspin.setFocus()
    fspin.selectAll()
    qtbot.keyClicks(fspin, "5")
    qtbot.keyClick(fspin, Qt.Key.Key_Return)
    assert 0.0 <= doc.graph.nodes[drop.id].params.get("p", 0.5) <= 0.99


def test_formula_text_for_lenet5(panel):
    panel.set_node("conv1")
    assert "H: O = floor((28 − 5 + 2·2) / 1) + 1 = 28" in panel.size_lines.toolTip()
    assert panel.flow.text() == "1×28×28 → 6×28×28"
    assert "((5·5·1) + 1) · 6 = 156" in panel.param_text.toolTip()
    panel.set_node("conv2")
    assert "H: O = floor((14 − 5 + 2·0) / 1) + 1 = 10" in panel.size_lines.toolTip()
    assert "((5·5·6) + 1) · 16 = 2,416" in panel.param_text.toolTip()
    assert panel.rf_text.text() == "sees 14×14 input pixels, steps 2 px"
    panel.set_node("fc1")
    assert "(400 + 1) · 120 = 48,120" in panel.param_text.toolTip()
    assert "400 · 120 = 48,000" in panel.macs_text.toolTip()
    assert panel.flow.text() == "400 → 120"


def test_error_message_with_fix_button(doc, panel, qtbot):
    panel.set_node("conv2")
    panel.editors["kernel_size"].h.setValue(20)
    assert not doc.validation.ok
    QApplication.processEvents()
    cards = panel.body.findChildren(MessageCard)
    cards = [c for c in cards if c.isVisibleTo(panel)]
    assert len(cards) == 1 and cards[0].message.severity == "error"
    assert "20×20" in cards[0].text.text()
    assert "color" in panel.param_labels["kernel_size"].styleSheet()
    # one button per alternative: the kernel that fits, the padding that fits, 'same'
    labels = [b.text() for b in cards[0].fix_buttons]
    assert labels == [f"Fix: {f.label}" for f in cards[0].message.fixes] and len(labels) == 3
    assert "kernel 20×20→14×14" in labels[0] and "(output 1×1)" in labels[1]
    for k, out in enumerate([(16, 1, 1), (16, 1, 1), (16, 14, 14)]):
        QApplication.processEvents()
        card = next(c for c in panel.body.findChildren(MessageCard) if c.isVisibleTo(panel))
        qtbot.mouseClick(card.fix_buttons[k], Qt.MouseButton.LeftButton)
        assert doc.validation.nodes["conv2"].out_shape == out
        doc.undo_stack.undo()  # the fix is one undo step
        assert not doc.validation.ok
        assert doc.graph.nodes["conv2"].params["kernel_size"] == [20, 20]


def test_rename_and_trainable(doc, panel, qtbot):
    panel.set_node("fc1")
    panel.name_edit.setText("hidden")
    panel.name_edit.editingFinished.emit()
    assert doc.graph.nodes["fc1"].name == "hidden"
    panel.name_edit.setText("conv1")  # taken: refused, the field shows the name again
    panel.name_edit.editingFinished.emit()
    assert doc.graph.nodes["fc1"].name == "hidden"
    assert panel.name_edit.text() == "hidden"
    panel.trainable.setChecked(False)
    assert doc.graph.nodes["fc1"].trainable is False
    doc.undo_stack.undo()
    assert doc.graph.nodes["fc1"].trainable is True
    assert panel.trainable.isChecked()


def test_locked_document_refuses_edits(doc, panel):
    panel.set_node("conv1")
    doc.lock("training in progress")
    assert not panel.body.isEnabled()
    doc.unlock()
    assert panel.body.isEnabled()


def test_removed_node_clears_the_panel(doc, panel):
    from designer.commands import RemoveNodesCommand
    panel.set_node("relu1")
    doc.push(RemoveNodesCommand(doc, ["relu1"]))
    assert panel.node_id is None


def test_caption_explains_the_focused_parameter(panel, qtbot):
    panel.set_node("conv1")
    assert panel.param_help.text().startswith("Filters:")
    panel.editors["stride"].h.setFocus()
    qtbot.waitUntil(lambda: panel.param_help.text().startswith("Stride:"), timeout=1000)
    assert "Step between" in panel.param_help.text()


def test_choice_params_show_readable_names_and_store_raw_values(doc, panel):
    from designer.param_editors import choice_label
    from engine.layers import REGISTRY

    panel.set_node("conv1")
    combo = panel.editors["init"].combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    values = [combo.itemData(i) for i in range(combo.count())]
    param = next(p for p in REGISTRY["Conv2d"].params if p.name == "init")
    assert values == list(param.choices)
    assert texts == ["He (Kaiming)", "Glorot (Xavier)"]
    assert combo.currentData() == doc.graph.nodes["conv1"].params.get("init", "he") == "he"
    i = combo.findData("glorot")
    combo.setCurrentIndex(i)
    combo.activated.emit(i)  # what a user's choice sends
    assert doc.graph.nodes["conv1"].params["init"] == "glorot"  # the raw value is stored
    assert combo.currentText() == "Glorot (Xavier)"
    doc.undo_stack.undo()
    assert doc.graph.nodes["conv1"].params.get("init", "he") == "he"
    assert panel.editors["init"].combo.currentText() == "He (Kaiming)"

    class Unknown:
        name, choices, choice_labels = "mode", ("a", "b"), None

    assert choice_label(Unknown, "a") == "a"  # no known name: the value itself


def test_nothing_selected_shows_an_overview_of_the_network(doc, panel):
    import numpy as np

    from engine.nn.network import Network

    panel.set_node(None)
    text = panel.empty.text()
    assert "61,706" in text and "1×28×28 → 10" in text and "not yet" in text
    assert "✓" in text
    doc.set_weights(Network.compile(doc.graph, np.random.default_rng(0)).state_dict())
    assert "not yet" not in panel.empty.text()
    from designer.commands import SetParamCommand

    doc.push(SetParamCommand(doc, "fc3", "out_features", 5))
    assert "1×28×28 → 5" in panel.empty.text()  # follows edits live
