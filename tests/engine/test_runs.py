"""The run store: every run recorded per epoch (curves, best weights, diff to the previous
run), a crash keeps the finished epochs, a locked database is waited for, notes/tags/delete."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

from engine import cli
from engine.graph import Graph
from engine.nn.network import Network
from engine.nn.train import TrainConfig, train
from engine.project import load_project
from engine.runs import RunRecorder, RunStore, RunStoreError, diff_runs, runs_path
from engine.runs.diff import diff_graphs
from tests.engine.test_train import tiny_graph, toy_data


def record(path, graph=None, epochs=2, on_epoch=None, **cfg):
    graph = graph or tiny_graph()
    net = Network.compile(graph, np.random.default_rng(0))
    x, y = toy_data()
    rec = RunRecorder(path, graph, {"source": "toy"}, source="test")
    hist = train(net, x, y, TrainConfig(epochs=epochs, batch_size=16, **cfg),
                 on_epoch=on_epoch, recorder=rec)
    return rec, hist, net


def test_runs_path_is_beside_the_project(tmp_path):
    assert runs_path(tmp_path / "P.cnnd") == tmp_path / "P.runs.sqlite"
    assert runs_path(tmp_path / "P.runs.sqlite") == tmp_path / "P.runs.sqlite"


def test_a_run_is_recorded_with_curves_best_weights_and_a_diff(tmp_path):
    db = tmp_path / "p.runs.sqlite"
    rec, hist, net = record(db, epochs=3)
    store = RunStore(db)
    run = store.get_run(rec.run_id)
    assert run["status"] == "finished" and run["epochs_done"] == 3
    assert run["config"]["epochs"] == 3 and run["seed"] == 0 and run["data"]["source"] == "toy"
    assert run["params"] > 0 and run["macs"] > 0 and run["diff"] is None
    eps = store.epochs(rec.run_id)
    assert [e["val_accuracy"] for e in eps] == [e.val_accuracy for e in hist.epochs]
    best = max(range(3), key=lambda i: (hist.epochs[i].val_accuracy, -i))
    assert run["best_epoch"] == best + 1
    assert run["best_val_accuracy"] == hist.epochs[best].val_accuracy
    epoch, weights = store.best_weights(rec.run_id)
    assert epoch == best + 1 and set(weights) == set(net.state_dict())
    if best == 2:  # the best epoch is the last: its weights are the net's
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(weights[k], v)
    assert run["images_per_s"] > 0 and run["seconds"] > 0
    # a second run with another lr and a wider conv: the diff names both
    g = tiny_graph()
    g.find("conv1").params["out_channels"] = 6
    rec2, _, _ = record(db, graph=g, lr=0.003)
    run2 = store.get_run(rec2.run_id)
    assert run2["previous"] == rec.run_id
    lines = "\n".join(__import__("engine.runs", fromlist=["RunDiff"]).RunDiff.from_json(
        run2["diff"]).lines())
    assert "~ conv1 (Conv2d): out_channels 4 → 6" in lines and "~ lr default → 0.003" in lines
    assert [r["id"] for r in store.list_runs()] == [rec.run_id, rec2.run_id]


def test_the_database_is_in_wal_mode(tmp_path):
    db = tmp_path / "p.runs.sqlite"
    record(db, epochs=1)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_a_crash_keeps_the_finished_epochs(tmp_path):
    db = tmp_path / "p.runs.sqlite"

    def crash(rep):
        if rep.epoch == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        record(db, epochs=4, on_epoch=crash)
    store = RunStore(db)
    (run,) = store.list_runs()
    assert run["status"] == "aborted" and run["epochs_done"] == 2  # epoch 2 was written first
    assert len(store.epochs(run["id"])) == 2 and store.best_weights(run["id"]) is not None


def test_a_locked_store_is_waited_for_with_a_message_and_nothing_is_lost(tmp_path):
    db = tmp_path / "p.runs.sqlite"
    RunStore(db).list_runs()  # creates nothing: a missing store reads as empty
    record(db, epochs=1)
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    messages = []
    store = RunStore(db, timeout=0.05, retries=100, on_message=messages.append)
    threading.Timer(0.4, lambda: blocker.execute("COMMIT")).start()
    t0 = time.perf_counter()
    store.set_notes(1, "waited")
    assert time.perf_counter() - t0 >= 0.3
    assert messages and "locked by another program; retrying" in messages[0]
    assert store.get_run(1)["notes"] == "waited"
    blocker.close()


def test_a_store_locked_past_its_retries_keeps_the_epochs_for_the_next_write(tmp_path):
    db = tmp_path / "p.runs.sqlite"
    graph = tiny_graph()
    net = Network.compile(graph, np.random.default_rng(0))
    msgs = []
    rec = RunRecorder(RunStore(db, timeout=0.02, retries=1), graph, {}, on_message=msgs.append)
    x, y = toy_data()
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def lock_during_epoch_1(rep):
        if rep.epoch == 1:
            blocker.execute("BEGIN EXCLUSIVE")  # epoch 2's write will fail

    def unlock_after(rep):
        lock_during_epoch_1(rep)
        if rep.epoch == 2:
            blocker.execute("COMMIT")  # epoch 3's write takes epoch 2's along

    train(net, x, y, TrainConfig(epochs=3, batch_size=16), on_epoch=unlock_after, recorder=rec)
    blocker.close()
    assert any("stayed locked" in m for m in msgs)
    store = RunStore(db)
    assert [e["epoch"] for e in store.epochs(rec.run_id)] == [1, 2, 3]
    assert store.get_run(rec.run_id)["status"] == "finished" and rec.error is None


def test_notes_tags_delete_and_unknown_runs(tmp_path):
    db = tmp_path / "p.runs.sqlite"
    a, _, _ = record(db, epochs=1)
    b, _, _ = record(db, epochs=1)
    store = RunStore(db)
    store.set_notes(a.run_id, "baseline")
    store.set_tags(a.run_id, ["good ", "lenet", "good"])
    assert store.get_run(a.run_id)["notes"] == "baseline"
    assert store.get_run(a.run_id)["tags"] == ["good", "lenet"]
    store.delete(a.run_id)
    assert [r["id"] for r in store.list_runs()] == [b.run_id]
    assert store.best_weights(a.run_id) is None and store.epochs(a.run_id) == []
    with pytest.raises(RunStoreError, match=f"has no run {a.run_id} \\(runs: {b.run_id}\\)"):
        store.get_run(a.run_id)


def test_not_a_run_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.runs.sqlite"
    bad.write_bytes(b"hello, this is not SQLite" * 10)
    with pytest.raises(RunStoreError, match="not a readable run store"):
        RunStore(bad).list_runs()


def test_graph_diff_names_added_removed_changed_nodes_and_edges():
    g = Graph("n")
    g.add_node("Input", "input", {"channels": 1, "height": 8, "width": 8}, node_id="i")
    g.add_node("Conv2d", "conv1", {"out_channels": 4}, node_id="c")
    g.add_node("ReLU", "relu", node_id="r")
    g.add_edge("i", "c")
    g.add_edge("c", "r")
    h = Graph.from_json(g.to_json())
    h.nodes["c"].params["kernel_size"] = 5
    h.remove_node("r")
    h.add_node("Sigmoid", "sig", node_id="s")
    h.add_edge("c", "s")
    d = diff_graphs(g.to_json(), h.to_json())
    assert [n["name"] for n in d.added] == ["sig"] and [n["name"] for n in d.removed] == ["relu"]
    assert d.changed == [{"id": "c", "name": "conv1", "type": "Conv2d",
                          "changes": {"kernel_size": (None, 5)}}]
    assert d.edges_added == ["conv1 → sig"] and d.edges_removed == ["conv1 → relu"]
    assert diff_runs(g.to_json(), g.to_json(), {"lr": 1}, {"lr": 1}).empty


def test_cli_train_records_every_run(tmp_path, capsys):
    out = tmp_path / "q.cnnd"
    argv = ["train", "lenet5", "--data", "mnist", "--limit", "120", "--epochs", "1",
            "--out", str(out)]
    assert cli.main(argv) == 0
    assert cli.main(argv + ["--batch-size", "32"]) == 0
    err = capsys.readouterr().err
    assert "recorded as run 2 in" in err
    store = RunStore(tmp_path / "q.runs.sqlite")
    runs = store.list_runs()
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs)
    assert runs[1]["test_accuracy"] == load_project(out).meta["test"]["accuracy"]
    assert store.get_run(2)["diff"]["config"] == {"batch_size": [64, 32]}
    assert cli.main(argv + ["--no-record"]) == 0
    assert len(store.list_runs()) == 2


def test_runs_command_lists_compares_and_shows(tmp_path, capsys):
    import csv
    import io
    import json

    db = tmp_path / "p.runs.sqlite"
    record(db, epochs=1)
    g = tiny_graph()
    g.find("conv1").params["out_channels"] = 6
    record(db, graph=g, epochs=2, lr=0.003)
    proj = str(tmp_path / "p.cnnd")
    assert cli.main(["runs", proj]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "best", "val"] and len(lines) == 3
    assert "first run" in lines[1] and "conv1 out_channels 4→6; epochs 1→2; lr default→0.003" in lines[2]
    assert cli.main(["runs", proj, "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["epochs_done"] for r in runs] == [1, 2]
    assert cli.main(["runs", proj, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["id"]) for r in rows] == [1, 2] and float(rows[1]["best_val_accuracy"]) > 0
    assert cli.main(["runs", proj, "--diff", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "~ conv1 (Conv2d): out_channels 4 → 6" in out and "~ epochs 1 → 2" in out
    assert cli.main(["runs", proj, "--show", "2", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("epoch,train_loss")
    assert cli.main(["runs", proj, "--show", "7"]) == 1
    assert "has no run 7 (runs: 1-2)" in capsys.readouterr().err
    assert cli.main(["runs", str(tmp_path / "none.cnnd")]) == 2
    assert "no run of" in capsys.readouterr().err
