"""The input spec editor: the Input layer's "Input spec…" button opens a dialog whose result is
one undoable command through the document (modified mark, undo restores the graph JSON)."""

import numpy as np
import pytest
from PySide6.QtWidgets import QDialog

from designer.input_spec_dialog import InputSpecDialog, imagenet_for
from designer.inspector import InspectorPanel
from engine.graph import Graph
from engine.inputspec import IMAGENET, InputSpec, model_spec, photo_to_array


@pytest.fixture
def panel(doc, qtbot):
    p = InspectorPanel(doc)
    qtbot.addWidget(p)
    p.resize(360, 900)
    p.show()
    return p


def _colour_doc(doc):
    """The document's Input made 3×224×224 (a colour photo network), saved state."""
    doc.set_params("input", {"channels": 3, "height": 224, "width": 224})
    doc.undo_stack.clear()
    doc.set_modified(False)


def _run_dialog(monkeypatch, edit):
    """Make the inspector's dialog call `edit(dialog)` and return accepted (or rejected when
    edit returns False) instead of waiting for a user."""
    def exec_(self):
        return QDialog.DialogCode.Rejected if edit(self) is False else QDialog.DialogCode.Accepted
    monkeypatch.setattr(InputSpecDialog, "exec", exec_)


def test_imagenet_preset_is_one_undoable_step(doc, panel, monkeypatch):
    _colour_doc(doc)
    panel.set_node("input")
    assert panel.spec_button is not None and panel.spec_button.isEnabled()
    assert "(the default)" in panel.spec_text.text()
    before = doc.graph.dumps()
    _run_dialog(monkeypatch, lambda d: d.imagenet_button.click())
    panel.spec_button.click()
    assert doc.graph.input_spec == IMAGENET
    assert doc.is_modified() and doc.undo_stack.count() == 1
    assert "mean 0.485" in panel.spec_text.text() and "stored" in panel.spec_text.text()
    # a photo now goes through ImageNet's preprocessing
    photo = np.random.default_rng(0).integers(0, 256, (300, 260, 3), np.uint8)
    from PIL import Image
    x, _ = photo_to_array(Image.fromarray(photo), model_spec(doc.graph))
    ref, _ = photo_to_array(Image.fromarray(photo), IMAGENET)
    assert np.array_equal(x, ref)
    doc.undo_stack.undo()
    assert doc.graph.dumps() == before and doc.graph.input_spec is None
    assert not doc.is_modified()
    assert "(the default)" in panel.spec_text.text()
    doc.undo_stack.redo()
    assert Graph.loads(doc.graph.dumps()).input_spec == IMAGENET


def test_fields_make_the_spec_and_default_resets(doc, panel, monkeypatch):
    _colour_doc(doc)
    panel.set_node("input")

    def edit(d):
        d.crop.setChecked(True)
        d.resize.setValue(240)
        d.interpolation.setCurrentIndex(d.interpolation.findData("bicubic"))
        d.channels.setCurrentIndex(d.channels.findData("BGR"))
        d.low.setValue(-1.0)
        d.high.setValue(1.0)
        d.normalise.setChecked(True)
        for box, v in zip(d.means, (0.1, 0.2, 0.3)):
            box.setValue(v)
        for box, v in zip(d.stds, (0.5, 0.25, 2.0)):
            box.setValue(v)
    _run_dialog(monkeypatch, edit)
    panel.spec_button.click()
    assert doc.graph.input_spec == InputSpec((224, 224), resize=240, channels="BGR",
                                             value_range=(-1.0, 1.0), mean=(0.1, 0.2, 0.3),
                                             std=(0.5, 0.25, 2.0), interpolation="bicubic")
    # "Default" stores no spec at all; Cancel and an unchanged OK push nothing
    _run_dialog(monkeypatch, lambda d: d.default_button.click())
    panel.spec_button.click()
    assert doc.graph.input_spec is None and doc.undo_stack.count() == 2
    _run_dialog(monkeypatch, lambda d: d.imagenet_button.click() or False)
    panel.spec_button.click()
    _run_dialog(monkeypatch, lambda d: None)
    panel.spec_button.click()
    assert doc.graph.input_spec is None and doc.undo_stack.count() == 2
    doc.undo_stack.undo()
    assert doc.graph.input_spec.channels == "BGR"


def test_invalid_fields_disable_ok_with_the_reason(qtbot):
    d = InputSpecDialog(InputSpec.for_shape((3, 32, 48)), (3, 32, 48))
    qtbot.addWidget(d)
    assert d.resize.minimum() == 48  # the crop must fit in the resized photo
    assert d.ok_button.isEnabled()
    d.high.setValue(0.0)  # 0..0: no range
    assert not d.ok_button.isEnabled() and "value_range" in d.summary.text()
    assert d.current_spec() is None
    d.high.setValue(255.0)
    assert d.ok_button.isEnabled() and d.current_spec().value_range == (0.0, 255.0)
    d.imagenet_button.click()  # ImageNet's ratio on the shorter side, at least the longer one
    assert d.current_spec() == imagenet_for((32, 48)) and d.current_spec().resize == 48


def test_grey_input_offers_grey_only(qtbot, doc, panel):
    panel.set_node("input")  # LeNet-5: 1×28×28
    d = InputSpecDialog(model_spec(doc.graph), (1, 28, 28))
    qtbot.addWidget(d)
    assert not d.channels.isEnabled() and d.channels.currentData() == "L"
    assert not d.imagenet_button.isEnabled() and len(d.means) == 1
    assert d.result_spec() is None  # the default: nothing stored


def test_only_the_input_layer_has_the_button(doc, panel):
    panel.set_node("conv1")
    assert panel.spec_button is None
    doc.set_params("input", {"channels": 2})
    panel.set_node("input")
    assert not panel.spec_button.isEnabled() and "2 channels" in panel.spec_text.text()
