"""Sweeps: the space file (errors name the line), variants (types, depth, invalid ones skipped
and counted), a study whose trials are runs, two processes on one SQLite study, resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("optuna")

from engine import cli
from engine.project import save_architecture
from engine.runs import RunStore
from engine.sweep.space import SpaceError, load_space
from engine.sweep.study import SweepSetup, open_study, run_sweep, sweep_results
from engine.sweep.variant import InvalidVariant, apply_values
from engine.zoo.examples import load_example
from tests.engine.test_train import tiny_graph, toy_data

ROOT = Path(__file__).resolve().parents[2]

SPACE = """\
hyperparameters:
  lr: {low: 0.001, high: 0.02, log: true}
layers:
  conv1:
    out_channels: [2, 4]
    kernel_size: [3, 7]       # 7 does not fit the 6x6 input: those trials are skipped
  pool:
    type: [MaxPool2d, GeometricPool2d, HarmonicPool2d]
"""


@pytest.fixture
def sweep_files(tmp_path):
    model = tmp_path / "tiny.json"
    save_architecture(model, tiny_graph(bn=False))
    x, y = toy_data(n=120)
    xt, yt = toy_data(n=40, seed=1)
    data = tmp_path / "toy.npz"
    np.savez(data, x=x[:, 0], y=y, x_test=xt[:, 0], y_test=yt)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return model, data, space


def setup_for(tmp_path, model, data, space, trials, **kw) -> SweepSetup:
    return SweepSetup(model=str(model), data=str(data), space=str(space), trials=trials,
                      runs=str(tmp_path / "tiny.runs.sqlite"),
                      storage=f"sqlite:///{tmp_path / 'tiny.sweep.sqlite'}", study="s",
                      config={"epochs": 2, "batch_size": 16}, **kw)


@pytest.mark.parametrize("text, line, words", [
    ("layers:\n  conv1:\n    filters: [3]\n", 3, "conv1 (Conv2d) has no parameter 'filters'"),
    ("hyperparameters:\n  lr: {low: 1, hi: 2}\n", 2, "unknown key 'hi'"),
    ("hyperparameters:\n  lr: {low: 0.1, high: 0.01}\n", 2, "low 0.1 is above high 0.01"),
    ("hyperparameters:\n  gamma: [1]\n", 2, "unknown hyperparameter 'gamma'"),
    ("\n\nlayers:\n  conv9:\n    out_channels: [3]\n", 4, "the model has no layer 'conv9'"),
    ("layers:\n  pool1:\n    type: [MaxPool2d, Pool3]\n", 3, "unknown layer type 'Pool3'"),
    ("blocks:\n  - layers: [conv2]\n    repeat: [-1, 1]\n", 3, "whole numbers >= 0"),
    ("hyperparameters:\n  lr: [0.1,\n", 3, "not valid YAML"),
    ("trials: 3\n", 1, "unknown section 'trials'"),
])
def test_a_bad_space_file_names_the_line_and_the_problem(tmp_path, text, line, words):
    f = tmp_path / "space.yaml"
    f.write_text(text)
    with pytest.raises(SpaceError) as exc:
        load_space(f).check(load_example("lenet5"))
    assert f"line {line}" in str(exc.value) and words in str(exc.value)


def test_json_spaces_and_variants_types_and_depth(tmp_path):
    f = tmp_path / "space.json"
    f.write_text(json.dumps({"layers": {"pool1": {"type": ["GeometricPool2d"]}},
                             "blocks": [{"layers": ["conv2", "relu2"],
                                         "repeat": {"low": 0, "high": 2}}]}))
    space = load_space(f)
    g = load_example("lenet5")
    space.check(g)
    for k in (0, 1, 2):
        v = apply_values(g, space, {"pool1.type": "GeometricPool2d", "conv2+relu2.repeat": k})
        types = [v.nodes[n].type_name for n in v.topological_order()]
        assert types.count("Conv2d") == 1 + k and "GeometricPool2d" in types
        assert v.find("pool1").params["kernel_size"] == [2, 2]  # kept across the type change
    assert g.find("pool1").type_name == "MaxPool2d"  # the model itself is untouched
    space.layers["conv1"] = {"kernel_size": space.layers["pool1"]["type"].__class__(
        choices=(40,), integer=True, line=1)}
    with pytest.raises(InvalidVariant, match="conv1"):
        apply_values(g, space, {"pool1.type": "MaxPool2d", "conv1.kernel_size": 40,
                                "conv2+relu2.repeat": 1})


def test_a_sweep_records_every_trial_as_a_run_and_counts_invalid_ones(tmp_path, sweep_files,
                                                                      capsys):
    model, data, space = sweep_files
    out = tmp_path / "best.cnnd"
    rc = cli.main(["sweep", str(model), "--data", str(data), "--space", str(space), "--trials",
                   "8", "--epochs", "2", "--batch-size", "16", "--runs",
                   str(tmp_path / "r.runs.sqlite"), "--storage",
                   f"sqlite:///{tmp_path / 's.sqlite'}", "--format", "json", "--out", str(out)])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    states = [t["state"] for t in res["trials"]]
    assert len(states) == 8 and sorted(t["trial"] for t in res["trials"]) == list(range(8))
    invalid = [t for t in res["trials"] if t["state"] == "invalid"]
    assert all(t["params"]["conv1.kernel_size"] == 7 and "conv1" in t["note"] for t in invalid)
    assert res["counts"]["invalid"] == len(invalid)
    assert all(t["params"]["conv1.kernel_size"] == 3 for t in res["trials"]
               if t["state"] != "invalid")
    runs = RunStore(tmp_path / "r.runs.sqlite").list_runs()
    trained = [t for t in res["trials"] if t["state"] in ("complete", "pruned")]
    assert sorted(r["trial"] for r in runs) == sorted(t["trial"] for t in trained)
    assert {r["status"] for r in runs} <= {"finished", "pruned"}
    assert res["best"]["value"] == max(t["value"] for t in res["trials"]
                                       if t["state"] == "complete")
    assert out.exists()


def _worker(setup: SweepSetup, index: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.sweep.worker", setup.to_json(),
                             str(index)], cwd=ROOT, stderr=subprocess.DEVNULL)


def test_two_processes_on_one_sqlite_study_lose_and_duplicate_nothing(tmp_path, sweep_files):
    model, data, space = sweep_files
    setup = setup_for(tmp_path, model, data, space, trials=8)
    run_sweep(setup, jobs=2)
    res = sweep_results(setup)
    numbers = [t["trial"] for t in res["trials"]]
    # exactly 8: a trial started by a worker that raced the other past the count is surplus
    # (failed at once, untrained, not listed) and each listed trial has its own number
    assert len(numbers) == 8 and len(set(numbers)) == 8
    assert all(t["state"] in ("complete", "pruned", "invalid") for t in res["trials"])
    runs = RunStore(setup.runs).list_runs()
    trained = sorted(t["trial"] for t in res["trials"] if t["state"] != "invalid")
    assert sorted(r["trial"] for r in runs) == trained  # one run per trained trial, no twin
    assert len({r["id"] for r in runs}) == len(runs)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_started_past_the_count_is_surplus_and_not_listed(tmp_path, sweep_files):
    """The race the count before starting cannot close: two workers see room for one more
    trial and both ask. The storage numbers them apart; the later one is surplus, told FAIL
    untrained and left out of the trials; a failed trial frees its place (it is retried)."""
    from optuna.trial import TrialState

    from engine.sweep.study import is_surplus, trial_rows

    model, data, space = sweep_files
    setup = setup_for(tmp_path, model, data, space, trials=1)
    a, b = open_study(setup, 0), open_study(setup, 1)
    ta, tb = a.ask(), b.ask()  # both asked before either trained
    assert not is_surplus(ta, 1) and is_surplus(tb, 1)
    tb.set_user_attr("surplus", True)
    b.tell(tb, state=TrialState.FAIL)
    assert [r["trial"] for r in trial_rows(a)] == [ta.number]
    a.tell(ta, state=TrialState.FAIL)  # a dead worker's trial: the place is free again
    assert not is_surplus(a.ask(), 1)


def test_a_killed_sweep_resumes_from_storage(tmp_path, sweep_files):
    model, data, space = sweep_files
    setup = setup_for(tmp_path, model, data, space, trials=5, heartbeat=1, grace=2)
    setup.config["epochs"] = 30  # long enough to be killed in the middle of a trial
    open_study(setup)
    p = _worker(setup, 0)
    study = open_study(setup)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for a trial that trains (not a skipped one)
        if any(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False)) and any(
                r["status"] == "running" for r in RunStore(setup.runs).list_runs()):
            break
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    setup.config["epochs"] = 1
    while time.monotonic() < deadline:  # the heartbeat goes stale after the grace period
        time.sleep(0.5)
        from optuna.storages import fail_stale_trials
        fail_stale_trials(study)
        if not any(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False)):
            break
    run_sweep(setup)
    res = sweep_results(setup)
    finished = [t for t in res["trials"] if t["state"] in ("complete", "pruned", "invalid")]
    assert len(finished) == 5, res["trials"]
    assert [t["state"] for t in res["trials"]].count("fail") == 1  # the killed trial
