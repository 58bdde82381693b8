"""Feature maps of big networks from ONNX Runtime: one session per document revision, kept
while nothing changes and rebuilt after an edit or new weights; the maps equal the engine's."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("onnxruntime")

import designer.feature_maps as fm
from designer.document import Document
from engine.nn.network import Network
from engine.onnx import layer_outputs as lo
from engine.onnx import runtime
from engine.zoo.examples import load_example


def test_revision_follows_graph_and_weight_changes_not_moves(qtbot):
    doc, other = Document(load_example("lenet5")), Document(load_example("lenet5"))
    assert doc.revision[0] != other.revision[0]  # owners apart
    seen = [doc.revision]
    doc.move_node("conv1", (5.0, 5.0))
    assert doc.revision == seen[-1]
    doc.set_params("conv1", {"out_channels": 7})
    assert doc.revision not in seen
    seen.append(doc.revision)
    net = Network.compile(doc.graph, np.random.default_rng(0))
    doc.set_weights(net.state_dict())
    assert doc.revision not in seen


@pytest.fixture
def panel(qtbot, monkeypatch):
    monkeypatch.setattr(fm, "BIG_NET_MACS", 1)  # LeNet-5 counts as big: the worker path
    runtime.clear_sessions()
    doc = Document(load_example("lenet5"))
    p = fm.FeatureMapPanel(doc)
    qtbot.addWidget(p)
    p.show()
    # the panel's own first refresh (a 30 ms timer, then a worker) settles before the test
    # counts: on a loaded machine it would otherwise land inside the test's first computation
    qtbot.waitUntil(lambda: not p._timer.isActive() and p._thread is None and not p._pending,
                    timeout=30_000)
    runtime.clear_sessions()  # the test counts the sessions its own computations build
    yield p
    p.shutdown()
    runtime.clear_sessions()


def computed(qtbot, p):
    with qtbot.waitSignal(p.computed, timeout=30_000):
        p.refresh()
    qtbot.waitUntil(lambda: p._thread is None, timeout=10_000)


def test_maps_come_from_one_session_per_revision(qtbot, panel, monkeypatch):
    builds, by = [], []
    real_model, real_outputs = runtime.OnnxModel, fm.layer_outputs

    def counting_model(*args, **kwargs):
        builds.append(1)
        return real_model(*args, **kwargs)

    def recording_outputs(*args, **kwargs):
        result = real_outputs(*args, **kwargs)
        by.append(result[1])
        return result

    monkeypatch.setattr(runtime, "OnnxModel", counting_model)
    monkeypatch.setattr(fm, "layer_outputs", recording_outputs)
    panel.set_node("conv2")
    computed(qtbot, panel)
    assert by == [lo.ORT] and len(builds) == 1
    x = panel._x[None]
    ref = panel.network().forward(x, keep=True)
    np.testing.assert_allclose(panel.selected_maps(), ref["conv2"][0], rtol=1e-4, atol=1e-5)

    panel.sample.setValue(panel.sample.value() + 1)  # a new input, the same revision
    computed(qtbot, panel)
    assert len(builds) == 1 and by[-1] == lo.ORT

    doc = panel.doc  # new weights: a new revision, a new session that uses them
    state = panel.network().state_dict()
    state["conv2.weight"] = -state["conv2.weight"]
    doc.set_weights(state)
    computed(qtbot, panel)
    assert len(builds) == 2
    ref = panel.network().forward(panel._x[None], keep=True)
    np.testing.assert_allclose(panel.selected_maps(), ref["conv2"][0], rtol=1e-4, atol=1e-5)
