"""File > New from Template: the dialog lists every template with its figures, builds the chosen
net with the chosen class count, and the document keeps the template's blocks (also in a saved
project)."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from designer.template_dialog import DETAIL_ROLE, KEY_ROLE, TemplateDialog
from engine.validate import validate
from engine.zoo.templates import TEMPLATES, make_template


@pytest.fixture
def dialog(qtbot):
    d = TemplateDialog()
    qtbot.addWidget(d)
    d.show()
    qtbot.waitExposed(d)
    return d


def test_lists_every_template_and_fills_in_their_figures(dialog, qtbot):
    keys = [dialog.list.item(i).data(KEY_ROLE) for i in range(dialog.list.count())]
    assert keys == list(TEMPLATES)
    row = keys.index("resnet18")
    qtbot.waitUntil(lambda: dialog.list.item(row).data(DETAIL_ROLE) is not None, timeout=5000)
    g = make_template("resnet18").graph
    assert f"{len(g.nodes)} layers" in dialog.list.item(row).data(DETAIL_ROLE)
    assert "11.7M params" in dialog.list.item(row).data(DETAIL_ROLE)


def test_figures_follow_the_class_count(dialog):
    dialog.set_choice("vgg11", 7)
    want = validate(make_template("vgg11", 7).graph).total_params
    assert f"{want:,}" in dialog.params.text()
    dialog.classes.setValue(3)
    want3 = validate(make_template("vgg11", 3).graph).total_params
    assert want3 != want and f"{want3:,}" in dialog.params.text()


def test_class_count_follows_the_template_until_the_user_sets_it(dialog):
    dialog.set_choice("lenet5")
    assert dialog.num_classes() == 10
    dialog.set_choice("alexnet")
    assert dialog.num_classes() == 1000
    dialog.classes.setValue(5)
    dialog.set_choice("resnet18")
    assert dialog.num_classes() == 5


def test_enter_in_the_list_creates(dialog):
    dialog.set_choice("squeezenet1_1", 4)
    dialog.list.setFocus()
    QTest.keyClick(dialog.list, Qt.Key.Key_Return)
    assert dialog.result() == TemplateDialog.DialogCode.Accepted
    t = dialog.template()
    assert validate(t.graph).nodes[validate(t.graph).output_id].out_shape == (4,)


def test_window_creates_the_chosen_net_with_its_blocks(window, monkeypatch):
    def fake_exec(self):
        self.set_choice("resnet18", 7)
        return TemplateDialog.DialogCode.Accepted

    monkeypatch.setattr(TemplateDialog, "exec", fake_exec)
    assert window.file_controller.new_from_template()
    doc = window.doc
    want = make_template("resnet18", 7)
    v = validate(want.graph)
    assert doc.validation.ok
    assert doc.validation.nodes[doc.validation.output_id].out_shape == (7,)
    assert doc.validation.total_params == v.total_params
    assert doc.graph.dumps() == want.graph.dumps()
    assert doc.blocks == want.blocks
    assert len(window.scene.node_items) == len(want.graph.nodes)
    assert "7 classes" in window.statusBar().currentMessage()


def test_cancel_keeps_the_network(window, monkeypatch):
    before = window.doc.graph.dumps()
    monkeypatch.setattr(TemplateDialog, "exec", lambda self: TemplateDialog.DialogCode.Rejected)
    assert not window.file_controller.new_from_template()
    assert window.doc.graph.dumps() == before


def test_blocks_survive_save_and_open(window, tmp_path):
    window.file_controller.load_template("squeezenet1_0", 3)
    blocks = dict(window.doc.blocks)
    path = tmp_path / "sq.cnnd"
    assert window.file_controller.save_to(path)
    window.file_controller.load_template("lenet5")
    assert not window.doc.blocks  # LeNet-5 has none
    assert window.file_controller.open_path(path, ask=False)
    assert window.doc.blocks == blocks
