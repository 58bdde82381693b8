"""Readouts agree (issue 16): the inspector's overview counts problems as the Problems panel
does, an Input alone is not "valid", unknown totals read "?" everywhere, and the overview names
the open file."""

import pytest

pytest.importorskip("pytestqt")

from designer.commands import SetParamCommand
from designer.problems import count_text
from engine.graph import Graph


def overview(window) -> str:
    window.scene.clearSelection()
    return window.panels["inspector"].overview_html()


def test_inspector_counts_problems_as_the_problems_panel(window, qtbot):
    doc = window.doc
    doc.push(SetParamCommand(doc, "conv2", "kernel_size", 40))  # an error, later ones unknown
    v = doc.validation
    n_err, n_warn = len(v.errors), len(v.warnings)
    assert n_err >= 1
    header = window.panels["problems"].header.text()
    assert header == count_text(n_err, n_warn)
    assert header in overview(window)
    assert window.lbl_state.text() == header


def test_an_input_alone_is_not_valid(window, qtbot):
    g = Graph(name="only input")
    g.add_node("Input")
    window.doc.reset(g)
    qtbot.wait(10)
    assert "valid" not in window.lbl_state.text()
    assert window.lbl_state.text() == "add layers after the input"
    text = overview(window)
    assert "valid" not in text and "add layers after the input" in text


def test_unknown_counts_read_question_marks_everywhere(window, qtbot):
    doc = window.doc
    g = Graph(name="broken")
    a = g.add_node("Input", params={"height": 4, "width": 4})
    b = g.add_node("Conv2d", params={"kernel_size": 9})  # larger than the input: error
    g.add_edge(a.id, b.id)
    doc.reset(g)
    qtbot.wait(10)
    assert "? params" in window.lbl_totals.text()
    text = overview(window)
    assert "<b>?</b>" in text and "Parameters</td><td><b>0" not in text


def test_overview_names_the_open_file(window, qtbot, tmp_path):
    assert "untitled" in overview(window)
    path = tmp_path / "mine.cnnd"
    assert window.file_controller.save_to(path)
    qtbot.wait(10)
    assert path.name in window.panels["inspector"].empty.text()
