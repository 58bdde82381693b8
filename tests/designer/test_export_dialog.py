"""Export dialog: the ONNX export check passes on a trained net; bad paths are refused."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("onnxruntime")

from designer.document import Document
from designer.export_dialog import ExportDialog
from engine.data import load_mnist
from engine.nn.network import Network
from engine.nn.train import TrainConfig, train
from engine.zoo.examples import load_example


@pytest.fixture(scope="module")
def trained():
    graph = load_example("lenet5")
    net = Network.compile(graph, np.random.default_rng(0))
    d = load_mnist("train", limit=1024)
    train(net, d.x, d.y, TrainConfig(epochs=1, batch_size=64, val_split=0))
    return graph, net.state_dict()


def make_dialog(qtbot, doc):
    dlg = ExportDialog(doc)
    qtbot.addWidget(dlg)
    return dlg


def test_export_check_passes_on_a_trained_net(qtbot, trained, tmp_path):
    graph, state = trained
    doc = Document(graph.copy())
    doc.set_weights(state)
    dlg = make_dialog(qtbot, doc)
    assert dlg.notice.text() == ""
    dlg.path.setText(str(tmp_path / "lenet.onnx"))
    dlg.opset.setValue(17)
    with qtbot.waitSignal(dlg.check_finished, timeout=120_000) as sig:
        assert dlg.start_export()
    rep = sig.args[0]
    assert rep is not None and rep.passed, [(i.title, i.detail) for i in rep.items]
    assert (tmp_path / "lenet.onnx").is_file()
    titles = [i.title for i in rep.items]
    assert titles[:2] == ["Export", "onnx.checker (full check)"]
    assert dlg.checklist.topLevelItemCount() == len(rep.items) >= 6
    # one parity row per layer of LeNet-5, all within tolerance
    assert len(rep.parity) == len(graph.nodes)
    assert all(r.ok for r in rep.parity) and dlg.parity.rowCount() == len(rep.parity)
    # the trained net is better than chance on MNIST and ONNX Runtime agrees with the engine
    assert rep.engine_accuracy > 0.5
    assert rep.agreement >= 0.99
    assert abs(rep.engine_accuracy - rep.ort_accuracy) <= 0.01
    assert rep.ort_ms > 0 and rep.engine_ms > 0
    qtbot.waitUntil(lambda: dlg._thread is None, timeout=10_000)


def test_untrained_notice_and_bad_folder(qtbot, tmp_path):
    doc = Document(load_example("lenet5"))
    dlg = make_dialog(qtbot, doc)
    assert "no trained weights" in dlg.notice.text()
    dlg.path.setText(str(tmp_path / "missing" / "x.onnx"))
    assert dlg.start_export() is False
    assert "no such folder" in dlg.status.text()


def test_export_check_compares_the_engine_itself(trained, tmp_path, monkeypatch):
    """The check's 'engine' predictions come from the engine's own forward, not from ONNX
    Runtime (which Network.predict uses): a wrong engine output must show as disagreement."""
    from designer.export_dialog import export_and_check

    graph, state = trained
    real = Network.forward

    def wrong(self, x, *args, **kwargs):
        out = real(self, x, *args, **kwargs)
        return out[:, ::-1].copy() if isinstance(out, np.ndarray) and out.ndim == 2 else out

    monkeypatch.setattr(Network, "forward", wrong)
    rep = export_and_check(graph, state, tmp_path / "lenet.onnx", 17)
    assert rep.agreement < 0.5
