"""A photo dropped on the feature-map inspector goes through the model's input spec and gives
the same top-5 as `infer --image` (the command line)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from designer.document import Document
from designer.feature_maps import FeatureMapPanel
from engine.cli.main import main
from engine.project import save_project
from tests.engine.test_inputspec import SPEC, net


def drop(panel, path) -> QDropEvent:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(event)
    return event


def test_dropped_photo_gives_the_same_top5_as_infer_image(qtbot, tmp_path, capsys):
    g, w = net()
    save_project(tmp_path / "m.cnnd", g, w)
    photo = tmp_path / "grey.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (27, 45), np.uint8)).save(photo)
    doc = Document(g)
    doc.set_weights(w)
    panel = FeatureMapPanel(doc)
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    with qtbot.waitSignal(panel.computed, timeout=10000):
        event = drop(panel, photo)
    assert event.isAccepted()
    assert panel.source.currentIndex() == 1
    assert "converted from grayscale to RGB" in panel.input_caption.text()
    assert panel._x.shape == SPEC.shape and panel._x.min() < 0  # normalised by the spec
    capsys.readouterr()
    assert main(["infer", str(tmp_path / "m.cnnd"), "--image", str(photo), "--top", "5",
                 "--backend", "engine"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r.index for r in panel.top5] == [int(i) for i, _, _ in rows]
    np.testing.assert_allclose([r.probability for r in panel.top5],
                               [float(p) for _, p, _ in rows], atol=1e-5)
    assert panel.top5[0].name == rows[0][2] and rows[0][2] in panel.top_label.text()
    # a file that is no image: refused with the reason, the input kept
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"text")
    assert not drop(panel, bad).isAccepted()
    assert "unreadable image" in panel.notice.text()
    panel.shutdown()
