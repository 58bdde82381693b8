"""Summary panel: rows and totals agree with validation; atomic CSV / Markdown export."""

import csv

import pytest
from PySide6.QtCore import Qt

from designer.commands import SetParamCommand
from designer.document import Document
from designer.summary_view import ID_ROLE, SummaryPanel


@pytest.fixture
def panel(doc, qtbot):
    p = SummaryPanel(doc)
    qtbot.addWidget(p)
    return p


def cell(panel, row, col):
    return panel.model.index(row, col).data(Qt.ItemDataRole.DisplayRole)


def test_rows_and_totals_match_validation(doc, panel):
    v = doc.validation
    assert panel.model.rowCount() == len(doc.graph.nodes)
    for r in range(panel.model.rowCount()):
        nid = panel.model.index(r, 0).data(ID_ROLE)
        res = v.nodes[nid]
        assert cell(panel, r, 0) == doc.graph.nodes[nid].name
        assert cell(panel, r, 2) == "×".join(str(d) for d in res.out_shape)
        assert int(cell(panel, r, 3).replace(",", "")) == res.params
    assert panel.total_labels["total"].text() == f"{v.total_params:,}"
    assert panel.total_labels["trainable"].text() == f"{v.trainable_params:,}"
    assert panel.total_labels["non_trainable"].text() == f"{v.non_trainable_params:,}"
    # LeNet-5 as published: 61,706 parameters
    assert v.total_params == 61706


def test_live_update_after_an_edit(doc, panel):
    doc.push(SetParamCommand(doc, "fc1", "out_features", 100))
    assert panel.total_labels["total"].text() == f"{doc.validation.total_params:,}"
    row = next(r for r in range(panel.model.rowCount())
               if panel.model.index(r, 0).data(ID_ROLE) == "fc1")
    assert cell(panel, row, 3) == f"{401 * 100:,}"
    doc.push(SetParamCommand(doc, "conv2", "kernel_size", [20, 20]))
    row = next(r for r in range(panel.model.rowCount())
               if panel.model.index(r, 0).data(ID_ROLE) == "conv2")
    assert cell(panel, row, 2) == "?"
    assert "error" in panel.status.text()


def test_row_click_activates_the_node(panel, qtbot):
    got = []
    panel.node_activated.connect(got.append)
    panel.table.clicked.emit(panel.model.index(1, 0))
    assert got == [panel.model.index(1, 0).data(ID_ROLE)]


def test_export_csv_and_markdown(doc, panel, tmp_path):
    path = panel.export(tmp_path / "lenet.csv", "csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert len(rows) == len(doc.graph.nodes)
    assert sum(int(r["params"]) for r in rows) == doc.validation.total_params
    md = panel.export(tmp_path / "sub" / "lenet.md", "markdown").read_text(encoding="utf-8")
    assert "| conv1 |" in md and "61,706" in md
    assert not list(tmp_path.glob("**/*.tmp"))  # the temporary file was renamed away


def test_columns_fit_a_narrow_dock_and_long_names_elide_in_the_middle(qtbot):
    from engine.zoo.templates import build_template

    doc = Document(build_template("resnet18"))
    p = SummaryPanel(doc)
    qtbot.addWidget(p)
    p.resize(380, 500)
    p.show()
    qtbot.waitExposed(p)
    hh = p.table.horizontalHeader()
    shown = [c for c in range(p.model.columnCount()) if not p.table.isColumnHidden(c)]
    assert sum(hh.sectionSize(c) for c in shown) <= p.table.viewport().width()
    assert {0, 2, 3} <= set(shown)  # name, shape and parameters always stay
    assert p.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    long = max(range(p.model.rowCount()), key=lambda r: len(cell(p, r, 0)))
    name = cell(p, long, 0)
    tip = p.model.index(long, 0).data(Qt.ItemDataRole.ToolTipRole)
    assert name in tip
    assert p.minimumSizeHint().width() <= 380
    # wide: every column, the type spelled out
    p.resize(1200, 500)
    qtbot.wait(20)
    assert not any(p.table.isColumnHidden(c) for c in range(p.model.columnCount()))
    assert cell(p, 1, 1) == doc.graph.nodes[p.model.index(1, 0).data(ID_ROLE)].type_name
    assert sum(hh.sectionSize(c) for c in range(6)) <= p.table.viewport().width() + 1
