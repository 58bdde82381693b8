"""The training session without its panel: quick fixes built from the data mismatches' fields,
and a run that stores its weights and history in the document."""

from dataclasses import asdict

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from designer.document import Document
from designer.training_session import DataRequest, TrainingSession, mismatch_fix
from engine.data import DataBundle, Dataset, Mismatch, check_data, load_mnist
from engine.nn.train import TrainConfig
from engine.zoo.examples import load_example

TIMEOUT = 120_000  # ms; the machine is shared


class Form:
    """The fields a panel would show."""

    def __init__(self, config: TrainConfig):
        self.cfg = config

    def data_request(self) -> DataRequest:
        return DataRequest("mnist", "mnist", 0)

    def config(self) -> TrainConfig:
        return self.cfg

    def watched_node(self) -> str | None:
        return None


def toy(c=3, size=32, classes=12, n=24):
    x = np.random.default_rng(0).uniform(size=(n, c, size, size)).astype(np.float32)
    return DataBundle(Dataset(x, np.arange(n) % classes, [f"c{i}" for i in range(classes)]))


def test_fixes_are_built_from_the_mismatch_fields_not_its_words():
    graph = load_example("lenet5")
    by_kind = {m.kind: m for m in check_data(graph, toy())}
    for kind in ("channels", "size"):  # either one sets the whole C×H×W: one undo step
        fix = mismatch_fix(by_kind[kind], graph)
        assert fix.label == "set the Input to 3×32×32" and fix.node_id == "input"
        assert fix.params == {"channels": 3, "height": 32, "width": 32}
    fix = mismatch_fix(by_kind["classes"], graph)
    assert (fix.label, fix.params, fix.node_id) == ("set fc3's out_features to 12",
                                                    {"out_features": 12}, "fc3")
    # the words play no part: a mismatch with other text gets the same fix
    other = Mismatch("anything", kind="classes", node_id="fc3", params={"out_features": 12},
                     expected=10, actual=12)
    assert mismatch_fix(other, graph) == fix
    assert mismatch_fix(Mismatch("no Input", kind="graph"), graph) is None


def test_a_session_checks_fixes_and_trains_without_a_panel(qtbot):
    doc = Document(load_example("lenet5"))
    session = TrainingSession(doc, Form(TrainConfig(epochs=1, batch_size=64)))
    session.set_dataset(toy())
    assert [m.severity for m in session.messages] == ["error"] * 3 and not session.data_fits
    assert session.start() is False  # the data does not fit
    assert session.apply_fix() and session.apply_fix()  # the Input, then the class count
    assert session.data_fits
    mnist = DataBundle(load_mnist("train", limit=256), load_mnist("test", limit=64))
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    session.set_dataset(mnist, key=("mnist", None, 256))
    assert session.messages == [] and session.data_current
    with qtbot.waitSignal(session.run_finished, timeout=TIMEOUT) as sig:
        assert session.start()
        assert session.training and doc.locked_reason is not None
    qtbot.waitUntil(lambda: not session.training, timeout=TIMEOUT)
    result = sig.args[0]
    assert doc.locked_reason is None and doc.weights is not None
    assert doc.history["eval_accuracy"] == result.eval_accuracy
    assert doc.history["config"] == asdict(session.run.config)
    session.shutdown()


def test_a_gui_run_is_recorded_in_the_project_run_store(qtbot, tmp_path):
    from engine.project import save_project
    from engine.runs import RunStore

    doc = Document(load_example("lenet5"))
    project = tmp_path / "net.cnnd"
    save_project(project, doc.graph)
    doc.set_path(project)
    session = TrainingSession(doc, Form(TrainConfig(epochs=2, batch_size=64)))
    session.set_dataset(DataBundle(load_mnist("train", limit=200), load_mnist("test", limit=50)),
                        key=("mnist", None, 200))
    with qtbot.waitSignal(session.run_recorded, timeout=TIMEOUT) as sig:
        assert session.start()
    path, run_id = sig.args
    assert path == tmp_path / "net.runs.sqlite"
    run = RunStore(path).get_run(run_id)
    assert run["source"] == "gui" and run["status"] == "finished" and run["epochs_done"] == 2
    assert run["test_accuracy"] == doc.history["eval_accuracy"]
    assert run["config"] == doc.history["config"]
    epoch, weights = RunStore(path).best_weights(run_id)
    assert epoch == run["best_epoch"] and set(weights) == set(doc.weights)
    session.shutdown()
