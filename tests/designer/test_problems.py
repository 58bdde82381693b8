"""Problems panel: count header, rows per message, click to activate, fixes are undoable."""

import pytest
from PySide6.QtCore import Qt

from designer.commands import RemoveEdgeCommand, SetParamCommand
from designer.problems import ProblemsPanel, count_text
from engine.zoo.examples import load_example


@pytest.fixture
def panel(doc, qtbot):
    p = ProblemsPanel(doc)
    qtbot.addWidget(p)
    p.resize(360, 400)
    p.show()
    return p


def test_count_text():
    assert count_text(0, 0) == "No problems"
    assert count_text(2, 1) == "2 errors, 1 warning"
    assert count_text(1, 0) == "1 error"
    assert count_text(0, 3) == "3 warnings"


def test_valid_network_has_no_problems(panel):
    assert panel.header.text() == "No problems"
    assert panel.rows == []
    assert panel.empty.isVisibleTo(panel)


def test_error_row_fix_applies_and_undoes(doc, panel, qtbot):
    doc.push(SetParamCommand(doc, "conv2", "kernel_size", [20, 20]))
    n_err, n_warn = len(doc.validation.errors), len(doc.validation.warnings)
    assert n_err == 1
    assert panel.header.text() == count_text(n_err, n_warn)
    row = panel.rows[0]  # errors first
    assert row.message.severity == "error" and row.message.node_id == "conv2"
    # a kernel larger than the 14×14 input: shrink it, pad to fit, or pad to keep the size
    fixes = row.message.fixes
    assert [b.text() for b in row.fix_buttons] == [f"Fix: {f.label}" for f in fixes]
    assert [f.params for f in fixes] == [{"kernel_size": [14, 14]}, {"padding": [3, 3, 3, 3]},
                                         {"padding": "same"}]
    assert row.fix_button is row.fix_buttons[0]
    for k, fix in enumerate(fixes):
        button = panel.rows[0].fix_buttons[k]  # rows are rebuilt after every edit
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        params = doc.graph.nodes["conv2"].params
        assert all(params[p] == v for p, v in fix.params.items())
        assert doc.validation.nodes["conv2"].out_shape is not None
        assert doc.undo_stack.count() == 2
        assert doc.undo_stack.undoText() == f"Fix: {fix.label}"
        doc.undo_stack.undo()  # each fix is one undo step
        assert not doc.validation.ok and doc.graph.nodes["conv2"].params["kernel_size"] == [20, 20]
        assert panel.rows[0].message.node_id == "conv2"
    qtbot.mouseClick(panel.rows[0].fix_buttons[2], Qt.MouseButton.LeftButton)
    assert doc.validation.ok
    assert panel.header.text() == "No problems"


def test_click_activates_the_layer(doc, panel, qtbot):
    edge = next(e for e in doc.graph.edges if e.dst == "fc1")
    doc.push(RemoveEdgeCommand(doc, edge))
    assert panel.rows
    got = []
    panel.node_activated.connect(got.append)
    row = next(r for r in panel.rows if r.message.node_id == "fc1")
    qtbot.mouseClick(row, Qt.MouseButton.LeftButton)
    assert got == ["fc1"]
    # messages about the whole network (no node) activate nothing
    assert all(m.node_id is None or m.node_id in doc.graph.nodes for m in panel.messages())


def test_insert_before_fix(doc, panel, qtbot):
    # remove the Flatten: fc1 then gets a C×H×W input, and its fix inserts a Flatten again
    from designer.commands import AddEdgeCommand, RemoveNodesCommand
    doc.push(RemoveNodesCommand(doc, ["flatten"]))
    doc.push(AddEdgeCommand(doc, "pool2", "fc1"))
    row = next(r for r in panel.rows if r.message.node_id == "fc1")
    assert row.message.fix.action == "insert_before"
    n_nodes = len(doc.graph.nodes)
    qtbot.mouseClick(row.fix_button, Qt.MouseButton.LeftButton)
    assert len(doc.graph.nodes) == n_nodes + 1
    assert doc.validation.ok
    doc.undo_stack.undo()
    assert len(doc.graph.nodes) == n_nodes


def test_deleted_panels_do_not_receive_document_signals(doc, qtbot):
    import shiboken6

    from designer.inspector import InspectorPanel
    from designer.summary_view import SummaryPanel

    panels = [ProblemsPanel(doc), SummaryPanel(doc), InspectorPanel(doc)]
    panels[2].set_node("conv1")
    for p in panels:
        shiboken6.delete(p)
    doc.reset(load_example("lenet5"))  # emits graph_reset and validated: must not raise
    doc.push(SetParamCommand(doc, "conv1", "out_channels", 4))
    assert doc.validation.ok


def test_classifier_output_warning_fixes_append_a_layer_and_undo(doc, panel, qtbot):
    from designer.commands import RemoveNodesCommand

    doc.push(RemoveNodesCommand(doc, ["flatten", "fc1", "relu3", "fc2", "relu4", "fc3",
                                      "softmax"]))
    row = next(r for r in panel.rows if "a classifier needs" in r.message.text)
    assert row.message.node_id == "pool2" and "16×5×5" in row.message.text
    assert [f.layer_type for f in row.message.fixes] == ["GlobalAvgPool2d", "Flatten"]
    n_nodes = len(doc.graph.nodes)
    for k, out in enumerate([(16, 1, 1), (400,)]):
        row = next(r for r in panel.rows if "a classifier needs" in r.message.text)
        qtbot.mouseClick(row.fix_buttons[k], Qt.MouseButton.LeftButton)
        v = doc.validation
        assert len(doc.graph.nodes) == n_nodes + 1 and v.nodes[v.output_id].out_shape == out
        assert not any("a classifier needs" in r.message.text for r in panel.rows)
        doc.undo_stack.undo()  # one step: the new layer and its connection go
        assert len(doc.graph.nodes) == n_nodes and doc.validation.output_id == "pool2"
