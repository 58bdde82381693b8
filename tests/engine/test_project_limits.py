"""The saver and the loader keep the same limits (engine.project.size_problem), and a long
run's history stays bounded, so the app always opens a project it saved (issue 16: a long run
saved a project the app then refused: "meta.json declares 134 MB, more than the 64 MiB
allowed")."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from engine import project
from engine.errors import ProjectError
from engine.nn.network import Network
from engine.project import load_project, save_project
from engine.zoo.examples import load_example


def _epochs(n: int) -> list[dict]:
    return [{"epoch": i + 1, "epochs": n, "train_loss": 1.0 / (i + 1), "train_accuracy": 0.5,
             "val_loss": 0.7, "val_accuracy": 0.6, "seconds": 0.01, "images_per_s": 1e4}
            for i in range(n)]


@pytest.fixture
def small_limits(monkeypatch):
    """meta.json / graph.json limited to 64 KiB (the real 64 MiB needs 600 k epochs), on both
    sides: the saver and the loader read the same constants."""
    monkeypatch.setattr(project, "MAX_JSON_BYTES", 64 << 10)
    return 64 << 10


def test_a_history_too_long_for_the_limit_is_thinned_and_the_file_opens(tmp_path,
                                                                          small_limits):
    g = load_example("lenet5")
    hist = {"epochs": _epochs(3000), "stopped": None, "seconds": 30.0}
    assert len(json.dumps(hist, indent=1)) > 4 * small_limits  # whole, it would be refused
    out = save_project(tmp_path / "long.cnnd", g, None, {"history": hist})
    with zipfile.ZipFile(out) as z:
        assert z.getinfo("meta.json").file_size <= small_limits
    p = load_project(out)  # the app opens what it saved
    epochs = p.history["epochs"]
    assert 2 < len(epochs) < 3000 and p.history["thinned"] == {"epochs": 3000}
    assert epochs[0]["epoch"] == 1 and epochs[-1]["epoch"] == 3000  # first and last kept
    assert [e["epoch"] for e in epochs] == sorted({e["epoch"] for e in epochs})


def test_per_batch_curves_are_thinned_per_epoch_records_kept_whole(tmp_path):
    g = load_example("lenet5")
    n = 3 * project.MAX_CURVE_POINTS + 7
    hist = {"epochs": _epochs(50), "batch_loss": [float(i) for i in range(n)]}
    p = load_project(save_project(tmp_path / "b.cnnd", g, None, {"history": hist}))
    curve = p.history["batch_loss"]
    assert len(curve) == project.MAX_CURVE_POINTS and curve[0] == 0.0 and curve[-1] == n - 1
    assert p.history["epochs"] == _epochs(50) and p.history["thinned"] == {"batch_loss": n}
    # a short run is saved exactly as it is
    short = {"epochs": _epochs(3), "batch_loss": [0.5, 0.25]}
    p = load_project(save_project(tmp_path / "s.cnnd", g, None, {"history": short}))
    assert p.history == short


def test_the_saver_refuses_what_the_loader_would_refuse(tmp_path, small_limits, monkeypatch):
    """A member beyond its limit: the saver says so and writes nothing (the previous file
    stays); the loader refuses a file holding it with the same numbers."""
    g = load_example("small_resnet")
    big = {"big": "x" * (2 * small_limits)}  # not a history: nothing to thin
    target = tmp_path / "p.cnnd"
    save_project(target, g)
    before = target.read_bytes()
    with pytest.raises(ProjectError, match=r"meta\.json declares .* than the 0\.0625 MiB allowed"):
        save_project(target, g, None, big)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.cnnd"]  # no temp file left
    # the same meta written past the saver (by hand) is refused by the loader
    with zipfile.ZipFile(tmp_path / "hand.cnnd", "w") as z:
        z.writestr("graph.json", json.dumps(g.to_json()))
        z.writestr("meta.json", json.dumps(big))
    with pytest.raises(ProjectError, match=r"refused: meta\.json declares .* more than the"):
        load_project(tmp_path / "hand.cnnd")
    # weights: beyond the limit the saver refuses too, within it the file opens
    w = Network.compile(g, np.random.default_rng(0)).state_dict()
    total = sum(a.nbytes for a in w.values())
    monkeypatch.setattr(project, "MAX_TOTAL_BYTES", total // 2)
    with pytest.raises(ProjectError, match=r"weights\.npz declares"):
        save_project(target, g, w)
    assert target.read_bytes() == before
    monkeypatch.setattr(project, "MAX_TOTAL_BYTES", 2 * total)
    assert load_project(save_project(target, g, w)).weights.keys() == w.keys()


def test_a_large_repetitive_member_is_stored_not_taken_for_a_zip_bomb(tmp_path):
    """Deflated beyond MAX_RATIO:1 the loader would refuse a member as a zip bomb: the saver
    stores such a member instead."""
    g = load_example("lenet5")
    meta = {"notes": "a" * (2 << 20)}  # 2 MiB of one letter: deflates ~1000:1
    p = load_project(save_project(tmp_path / "r.cnnd", g, None, meta))
    assert p.meta["notes"] == meta["notes"]
