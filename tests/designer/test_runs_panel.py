"""The Runs panel: runs of the document's project in a sortable table, curves and diffs of the
selection, notes and tags saved, delete, "open this run"; a GUI training run is recorded."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from designer.runs_panel import RunsPanel
from engine.nn.network import Network
from engine.nn.train import TrainConfig, train
from engine.project import save_project
from engine.runs import RunRecorder, RunStore
from tests.engine.test_train import tiny_graph, toy_data


def make_runs(project, n=3):
    """n recorded runs of the tiny net with lr 0.001·(k+1), the second with a wider conv."""
    for k in range(n):
        g = tiny_graph()
        if k == 1:
            g.find("conv1").params["out_channels"] = 6
        net = Network.compile(g, np.random.default_rng(0))
        x, y = toy_data()
        train(net, x, y, TrainConfig(epochs=2 + k, batch_size=16, lr=0.001 * (k + 1)),
              recorder=RunRecorder(project.with_name("p.runs.sqlite"), g, {"source": "toy"}))


@pytest.fixture
def panel(qtbot, doc, tmp_path):
    project = tmp_path / "p.cnnd"
    save_project(project, doc.graph)
    make_runs(project)
    doc.set_path(project)
    p = RunsPanel(doc)
    qtbot.addWidget(p)
    p.resize(1200, 600)
    return p


def column(panel, heading):
    from engine.runs.report import COLUMNS

    return [h for _, h in COLUMNS].index(heading)


def test_table_lists_runs_and_sorts_numerically(panel):
    assert panel.proxy.rowCount() == 3 and "3 runs in p.runs.sqlite" in panel.where.text()
    col = column(panel, "params")
    panel.table.sortByColumn(col, panel.table.horizontalHeader().sortIndicatorOrder().__class__
                             .AscendingOrder)
    params = [panel.proxy.data(panel.proxy.index(r, col), panel.proxy.sortRole())
              for r in range(3)]
    assert params == sorted(params) and params[0] < params[-1]  # numbers, not text
    changes = column(panel, "changes")
    texts = {panel.proxy.index(r, 0).data(): panel.proxy.index(r, changes).data()
             for r in range(3)}
    assert texts["1"] == "first run" and "conv1 out_channels 4→6" in texts["2"]


def test_selection_plots_curves_and_shows_the_diff(panel):
    panel.select_ids({1, 3})
    curves = panel.plot.getPlotItem().listDataItems()
    assert len(curves) == 4  # validation (solid) and training (dashed) per run
    assert list(curves[2].getData()[0]) == [1, 2, 3, 4]  # run 3 trained 4 epochs
    text = panel.diff_view.toPlainText()
    assert text.startswith("run 1 → run 3:") and "~ lr 0.001 → 0.003" in text
    panel.select_ids({2})
    assert "~ conv1 (Conv2d): out_channels 4 → 6" in panel.diff_view.toPlainText()
    assert panel.open_button.isEnabled() and panel.notes.isEnabled()


def test_notes_tags_and_delete(panel):
    panel.select_ids({2})
    panel.notes.setPlainText("wider conv")
    panel.tags.setText("wide, keep")
    panel.save_notes()
    run = RunStore(panel.store.path).get_run(2)
    assert run["notes"] == "wider conv" and run["tags"] == ["keep", "wide"]
    panel.filter.setText("keep")
    assert panel.proxy.rowCount() == 1
    panel.filter.clear()
    panel.select_ids({1, 3})
    assert panel.delete_selected(confirm=False)
    assert [r["id"] for r in RunStore(panel.store.path).list_runs()] == [2]
    assert panel.proxy.rowCount() == 1


def test_open_run_gives_its_graph_and_best_weights(panel, qtbot):
    panel.select_ids({2})
    with qtbot.waitSignal(panel.open_requested) as sig:
        assert panel.open_selected()
    graph, weights, title = sig.args
    assert graph.find("conv1").params["out_channels"] == 6
    epoch, best = RunStore(panel.store.path).best_weights(2)
    assert title == f"run 2, epoch {epoch}" and set(weights) == set(best)
    for k in best:
        np.testing.assert_array_equal(weights[k], best[k])


def _window_with_runs(window, tmp_path):
    project = tmp_path / "p.cnnd"
    save_project(project, window.doc.graph)
    make_runs(project, n=2)
    window.doc.set_path(project)
    window.show_dock("runs")
    panel = window.materialize("runs")
    panel.refresh()
    panel.select_ids({2})
    return project, panel


def test_open_run_restores_it_in_the_document_undoably(window, tmp_path):
    """Open Run: the run's design and best weights replace the document's as one undo step,
    the project's path stays; Undo gives back the graph and every weight bit-exactly."""
    project, panel = _window_with_runs(window, tmp_path)
    doc = window.doc
    doc.set_weights({k: np.full(a.shape, 0.25, np.float32)
                     for k, a in Network.compile(doc.graph, np.random.default_rng(0))
                     .state_dict().items()})
    doc.set_modified(False)
    before = doc.graph.dumps(), {k: a.tobytes() for k, a in doc.weights.items()}
    assert panel.open_selected()
    assert doc.path == project and doc.is_modified()
    assert doc.graph.find("conv1").params["out_channels"] == 6
    _, best = RunStore(panel.store.path).best_weights(2)
    assert {k: a.tobytes() for k, a in doc.weights.items()} == {
        k: a.tobytes() for k, a in best.items()}
    assert doc.undo_stack.undoText().startswith("Restore run 2")
    doc.undo_stack.undo()
    assert (doc.graph.dumps(), {k: a.tobytes() for k, a in doc.weights.items()}) == before
    assert len(window.scene.node_items) == len(doc.graph.nodes)


def test_open_run_as_new_document(window, tmp_path):
    _, panel = _window_with_runs(window, tmp_path)
    assert panel.act_open_new.isEnabled()
    panel.act_open_new.trigger()
    assert window.doc.path is None and window.doc.is_modified()
    assert not window.doc.undo_stack.canUndo()
    assert window.doc.graph.find("conv1").params["out_channels"] == 6
    assert window.doc.weights and "conv1.weight" in window.doc.weights
