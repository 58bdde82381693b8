"""The Sweep dialog: a sweep of the document's network in a worker thread, its trials shown as
they finish and recorded as runs, the parallel-coordinates and slice plots, Open Best; a bad space file is one line."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("optuna")

from designer.document import Document
from designer.runs_panel import RunsPanel
from engine.runs import RunStore
from tests.engine.test_sweep import SPACE
from tests.engine.test_train import tiny_graph, toy_data

TIMEOUT = 240_000


@pytest.fixture
def setup_dialog(qtbot, tmp_path):
    doc = Document(tiny_graph(bn=False))
    doc.set_path(tmp_path / "tiny.cnnd")
    x, y = toy_data(n=120)
    xt, yt = toy_data(n=40, seed=1)
    np.savez(tmp_path / "toy.npz", x=x[:, 0], y=y, x_test=xt[:, 0], y_test=yt)
    (tmp_path / "space.yaml").write_text(SPACE)
    panel = RunsPanel(doc)
    qtbot.addWidget(panel)
    dialog = panel.show_sweep_dialog()
    dialog.space.setText(str(tmp_path / "space.yaml"))
    dialog.data.setText(str(tmp_path / "toy.npz"))
    dialog.limit.setValue(0)
    dialog.epochs.setValue(2)
    yield panel, dialog
    dialog.shutdown()


def test_a_sweep_runs_in_the_dialog_and_its_trials_become_runs(qtbot, setup_dialog):
    panel, dialog = setup_dialog
    dialog.trials.setValue(5)
    assert dialog.start() and dialog.running and not dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT)
    res = dialog.result
    assert res is not None and len(res["trials"]) == 5, dialog.status.text()
    assert dialog.table.rowCount() == 5 and dialog.progress.value() == 5
    assert "5 trials" in dialog.status.text()
    assert sorted(dialog.param.itemText(i) for i in range(dialog.param.count())) == [
        "conv1.kernel_size", "conv1.out_channels", "lr", "pool.type"]
    scatter = dialog.plot.getPlotItem().listDataItems()
    assert len(scatter) == 1 and len(scatter[0].getData()[0]) == sum(
        t["value"] is not None for t in res["trials"])
    # parallel coordinates: one line per complete trial through the value axis and each
    # searched value, coloured by validation accuracy; pruned trials in one dimmed line
    par = dialog.parallel
    assert par.names[1:] == list(res["trials"][0]["params"])  # the space's order
    complete = [t for t in res["trials"] if t["state"] == "complete"]
    assert sorted(par.lines) == sorted(t["trial"] for t in complete)
    for t in complete:
        ys = par.lines[t["trial"]].getData()[1]
        assert len(ys) == len(par.names) and np.nanmin(ys) >= 0 and np.nanmax(ys) <= 1
    if len(complete) >= 2:
        best, worst = (max(complete, key=lambda t: t["value"]),
                       min(complete, key=lambda t: t["value"]))
        if best["value"] > worst["value"]:
            assert (par.lines[best["trial"]].opts["pen"].color()
                    != par.lines[worst["trial"]].opts["pen"].color())
    assert (par.pruned_line is not None) == any(t["state"] == "pruned" for t in res["trials"])
    trained = [t for t in res["trials"] if t["state"] in ("complete", "pruned")]
    panel.refresh()
    assert panel.proxy.rowCount() == len(trained)  # every trained trial is a run
    assert {r["source"] for r in RunStore(panel.store.path).list_runs()} == {"sweep"}
    if res["best"]:
        with qtbot.waitSignal(panel.open_requested) as sig:
            assert dialog.open_best()
        assert sig.args[0].find("conv1").params["kernel_size"] == 3


def test_cancel_stops_the_sweep(qtbot, setup_dialog):
    _, dialog = setup_dialog
    dialog.trials.setValue(200)
    dialog.epochs.setValue(50)
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.progress.value() >= 1 or not dialog.running,
                    timeout=TIMEOUT)
    dialog.cancel()
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT)
    assert len(dialog.result["trials"]) < 200


def test_a_bad_space_file_is_one_line_before_any_work(setup_dialog, tmp_path):
    _, dialog = setup_dialog
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  conv1:\n    filters: [3]\n")
    dialog.space.setText(str(bad))
    assert not dialog.start() and not dialog.running
    assert "line 3" in dialog.status.text() and "filters" in dialog.status.text()
