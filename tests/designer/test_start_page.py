"""The start page, File ▸ Import ONNX, the shortcut sheet and the guided first network."""


from PySide6.QtWidgets import QFileDialog

from designer import guide
from designer.shortcuts import ShortcutSheet, menu_shortcuts
from designer.start_page import Choice, StartPage, layer_strip, run_choice
from engine.validate import validate
from engine.zoo.examples import EXAMPLES, load_example
from engine.zoo.templates import TEMPLATES


def test_start_page_lists_everything_with_counts(qtbot, tmp_path):
    recent = [tmp_path / "a.cnnd"]
    page = StartPage(recent)
    qtbot.addWidget(page)
    page.fill_all()
    assert page.templates.count() == len(TEMPLATES)
    assert page.examples.count() == len(EXAMPLES)
    first = page.examples.item(0)
    total = validate(load_example(EXAMPLES[0].name)).total_params
    assert f"{total:,}" in first.text()  # its parameter count, from validation
    assert not first.icon().isNull()  # a preview
    assert page.recent.item(0).text() == "a.cnnd"
    for kind in ("blank", "guided", "open", "onnx", "pretrained"):
        assert kind in page.buttons


def test_layer_strip_draws_one_bar_per_layer():
    pm = layer_strip(load_example("lenet5"))
    img = pm.toImage()
    assert img.width() > 0 and not img.isNull()
    # some pixels are painted, and the left and right ends differ (funnel: input tall)
    painted = sum(img.pixelColor(x, img.height() // 2).alpha() > 0
                  for x in range(0, img.width(), 2))
    assert painted > 10


def test_picks_open_what_they_say(window, qtbot):
    page = StartPage([])
    qtbot.addWidget(page)
    page.fill_all()
    page.templates.itemClicked.emit(page.templates.item(1))  # AlexNet
    assert page.choice == Choice("template", list(TEMPLATES)[1])
    assert run_choice(window, page.choice)
    assert len(window.doc.graph.nodes) > 10
    run_choice(window, Choice("blank"))
    assert [n.type_name for n in window.doc.graph.nodes.values()] == ["Input"]
    run_choice(window, Choice("example", "small_vgg"))
    assert len(window.doc.graph.nodes) == len(load_example("small_vgg").nodes)


def test_import_onnx_menu_item_offers_onnx_only(window, monkeypatch):
    seen = {}

    def fake(parent, title, start, filters):
        seen["filters"] = filters
        return "", ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake))
    fc = window.file_controller
    file_menu = window.menuBar().actions()[0].menu()
    assert fc.act_import_onnx in file_menu.actions()
    fc.act_import_onnx.trigger()
    assert seen["filters"].startswith("ONNX models (*.onnx)")


def test_shortcut_sheet_reads_the_real_actions(window, qtbot):
    groups = dict(menu_shortcuts(window))
    edit = dict(groups["Edit"])
    assert edit["Undo"] == window.editor.act_undo.shortcut().toString(
        window.editor.act_undo.shortcut().SequenceFormat.NativeText)
    # a shortcut changed at run time shows up: the sheet cannot drift from the keys
    window.editor.act_layout.setShortcut("Ctrl+Alt+K")
    groups = dict(menu_shortcuts(window))
    assert dict(groups["Edit"])["Auto Layout"] == "Ctrl+Alt+K"
    sheet = ShortcutSheet(window)
    qtbot.addWidget(sheet)
    texts = [sheet.tree.topLevelItem(i).text(1) for i in range(sheet.tree.topLevelItemCount())]
    assert "Ctrl+Alt+K" in texts
    assert window.act_shortcuts in window.menuBar().actions()[-1].menu().actions()


def test_guided_first_net_builds_a_cnn_that_validates(window, qtbot):
    window.start_guide()
    panel = window.guide_dock.widget()
    assert panel.done == 1  # the blank network's input
    for k in range(len(guide.STEPS) - 1):
        panel.do_step()
        assert panel.done == k + 2
    types = [n.type_name for n in window.doc.graph.nodes.values()]
    assert types == [s.type_name for s in guide.STEPS]
    v = window.doc.validation
    assert not v.errors
    assert v.nodes[v.output_id].out_shape == (10,) or v.nodes[v.output_id].out_shape[0] == 10
    window.doc.undo_stack.undo()  # each step is one undoable edit
    assert panel.done == len(guide.STEPS) - 1


def test_progress_follows_manual_edits():
    g = load_example("lenet5")
    done, last = guide.progress(g)
    assert done >= 2 and last is not None  # Input → Conv2d
