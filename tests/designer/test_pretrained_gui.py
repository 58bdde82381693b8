"""File ▸ New from Pretrained…: the catalogue in a dialog, the download from a local server in a
worker with progress and Cancel, and the template with the weights and their input spec as the
new document. Nothing touches the internet."""

from __future__ import annotations

import numpy as np
import pytest

from designer.pretrained_dialog import COLUMNS, PretrainedDialog, display_name
from engine.nn.network import Network
from engine.transfer import download
from engine.zoo import pretrained as catalogue
from engine.zoo.templates import make_template
from tests.engine.weights_server import WeightsServer, free_port_url, weights_entry


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "pretrained"


@pytest.fixture
def squeeze(tmp_path, monkeypatch):
    """A catalogue entry for squeezenet1_1 whose file is seeded random weights (.npz bytes)."""
    weights = Network.compile(make_template("squeezenet1_1").graph,
                              np.random.default_rng(5)).state_dict()
    np.savez(tmp_path / "w.npz", **weights)
    data = (tmp_path / "w.npz").read_bytes()
    w = weights_entry(data, stem="squeezenet1_1")
    monkeypatch.setitem(catalogue.PRETRAINED, w.name, w)
    return w, data, weights


def test_menu_and_dialog_list_the_catalogue(qtbot, window, cache, squeeze):
    fc = window.file_controller
    file_menu = window.menuBar().actions()[0].menu()
    assert fc.act_new_pretrained in file_menu.actions()
    w, data, _ = squeeze
    cache.mkdir(parents=True)
    (cache / w.file_name).write_bytes(data)
    dialog = PretrainedDialog(window)
    qtbot.addWidget(dialog)
    t = dialog.table
    assert t.rowCount() == len(catalogue.PRETRAINED)
    assert [t.horizontalHeaderItem(c).text() for c in range(t.columnCount())] == list(COLUMNS)
    rows = {t.item(r, 0).text(): [t.item(r, c).text() for c in range(t.columnCount())]
            for r in range(t.rowCount())}
    assert rows["resnet18"][1:4] == ["ResNet-18", "44.7 MB", ""]
    assert rows["resnet50.IMAGENET1K_V1"][4] == "76.13 %"
    assert rows[display_name(w)][3] == "yes"
    dialog.select("resnet18.IMAGENET1K_V1")
    assert dialog.weights().file_name == "resnet18-f37072fd.pth"
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert ok.text() == "Download 45 MB and Open"
    assert "resnet18-f37072fd.pth" in dialog.details.text()
    assert str(cache) in dialog.details.text()
    dialog.select(w.name)
    assert ok.text() == "Open"


def test_download_opens_the_template_with_weights(qtbot, window, cache, squeeze, monkeypatch):
    w, data, weights = squeeze
    with WeightsServer() as server:
        monkeypatch.setenv(download.URL_ENV, server.url)
        server.files[w.file_name] = data
        server.cut_after, server.cuts = len(data) // 3, 1  # resumed within the fetch
        steps = []
        fc = window.file_controller
        assert fc.open_pretrained(w)
        fc.pretrained_opener._worker.stepped.connect(lambda *a: steps.append(a))
        with qtbot.waitSignal(window.doc.graph_reset, timeout=30000):
            pass
    doc = window.doc
    assert (cache / w.file_name).read_bytes() == data
    assert server.ranges[0] is None and server.ranges[1] == f"bytes={len(data) // 3}-"
    assert len(doc.graph.nodes) == len(make_template("squeezenet1_1").graph.nodes)
    assert doc.graph.input_spec == w.input_spec()
    assert set(doc.weights) == set(weights)
    assert all(np.array_equal(doc.weights[k], v) for k, v in weights.items())
    assert doc.blocks
    assert f"New {w.name}" in window.statusBar().currentMessage()
    assert fc.pretrained_opener.dialog is None and not fc.pretrained_opener.running


def test_offline_shows_url_and_folder(qtbot, window, cache, squeeze, monkeypatch):
    w, _, _ = squeeze
    url = free_port_url()
    monkeypatch.setenv(download.URL_ENV, url)
    before = window.doc.graph.dumps()
    fc = window.file_controller
    assert fc.open_pretrained(w)
    with qtbot.waitSignal(fc.pretrained_opener.failed, timeout=30000):
        pass
    text = window.shown_messages[-1]
    assert f"{url}/{w.file_name}" in text and str(cache) in text
    assert window.doc.graph.dumps() == before


def test_hash_mismatch_is_told_and_nothing_kept(qtbot, window, cache, squeeze, monkeypatch):
    w, data, _ = squeeze
    with WeightsServer() as server:
        monkeypatch.setenv(download.URL_ENV, server.url)
        server.files[w.file_name] = data[:-10] + b"0123456789"
        fc = window.file_controller
        assert fc.open_pretrained(w)
        with qtbot.waitSignal(fc.pretrained_opener.failed, timeout=30000):
            pass
    assert "deleted" in window.shown_messages[-1]
    assert not any(cache.iterdir())


def test_cancel_keeps_the_document_and_the_part(qtbot, window, cache, squeeze, monkeypatch):
    w, data, _ = squeeze
    before = window.doc.graph.dumps()
    with WeightsServer() as server:
        monkeypatch.setenv(download.URL_ENV, server.url)
        server.files[w.file_name] = data
        fc = window.file_controller
        fc.open_pretrained(w)
        fc.pretrained_opener.cancel()  # before the first block arrives
        with qtbot.waitSignal(fc.pretrained_opener.opened, timeout=30000) as blocker:
            pass
    assert blocker.args[0] is None
    assert window.doc.graph.dumps() == before
    assert "cancelled" in window.statusBar().currentMessage()
    assert not (cache / w.file_name).exists()
