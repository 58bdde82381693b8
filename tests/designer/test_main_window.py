"""Main window: files (save/open round trips, corrupt files, recent, autosave and recovery),
undo/redo through the actions, clipboard, shortcuts, exports, status bar, clean close."""

import json
import zipfile

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from designer import files
from designer.canvas.view import READABLE_ZOOM
from designer.commands import AddNodeCommand, SetParamCommand
from designer.main_window import MainWindow
from engine.graph import Edge, Graph
from engine.zoo.examples import load_example


class Shown(list):
    """Texts of the message boxes shown; `answers["next"]` answers the next question."""


@pytest.fixture
def errors(monkeypatch):
    """Message boxes never block: warnings are recorded, questions answered 'Discard'/'No'."""
    shown = Shown()
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda parent, title, text, *a: shown.append(text)))
    answers = {"next": None}

    def question(parent, title, text, *a):
        shown.append(text)
        return answers["next"] or QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    shown.answers = answers
    return shown


@pytest.fixture
def win(qtbot, tmp_path, errors):
    w = MainWindow(settings=files.make_settings(tmp_path / "settings.ini"),
                   autosave_dir=tmp_path / "autosave")
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.doc.set_modified(False)
    w.close()


def test_opens_with_lenet_and_valid_status(win):
    assert win.doc.graph.name == "LeNet-5" or "lenet" in win.doc.graph.name.lower()
    assert "valid" in win.lbl_state.text()
    assert f"{win.doc.validation.total_params:,}" in win.lbl_totals.text()
    assert win.windowTitle().endswith("— CNN Designer")
    assert not win.isWindowModified()


def test_title_marks_unsaved_changes_and_undo_round_trip(win):
    before = win.doc.graph.dumps()
    win.doc.push(SetParamCommand(win.doc, "conv1", "out_channels", 12))
    win.doc.push(AddNodeCommand(win.doc, "Dropout", (400, 0)))
    assert win.isWindowModified()
    win.editor.act_undo.trigger()
    win.editor.act_undo.trigger()
    assert win.doc.graph.dumps() == before
    assert not win.isWindowModified()
    win.editor.act_redo.trigger()
    assert win.doc.graph.nodes["conv1"].params["out_channels"] == 12


def test_keyboard_shortcuts(win, qtbot):
    win.view.setFocus()
    before = win.doc.graph.dumps()
    win.scene.select_nodes(["relu1"])
    QTest.keyClick(win.view, Qt.Key.Key_Delete)
    assert "relu1" not in win.doc.graph.nodes
    QTest.keyClick(win.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.graph.dumps() == before
    QTest.keyClick(win.view, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert "relu1" not in win.doc.graph.nodes
    win.doc.undo_stack.undo()
    win.scene.select_nodes(["conv2"])
    n = len(win.doc.graph.nodes)
    QTest.keyClick(win.view, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert len(win.doc.graph.nodes) == n + 1
    win.view.set_zoom(2.0)
    QTest.keyClick(win.view, Qt.Key.Key_F)
    assert win.view.zoom() < 2.0


def test_delete_selected_edge_and_nodes_is_one_undo_step(win):
    before = win.doc.graph.dumps()
    edge = next(e for e in win.scene.edge_items.values() if e.edge.dst == "fc1")
    win.scene.select_nodes(["relu1", "pool1"])
    edge.setSelected(True)
    n = win.doc.undo_stack.count()
    win.editor.act_delete.trigger()
    assert not any(e.dst == "fc1" for e in win.doc.graph.edges)
    assert "pool1" not in win.doc.graph.nodes
    assert win.doc.undo_stack.count() == n + 1
    win.editor.act_undo.trigger()
    assert win.doc.graph.dumps() == before


@pytest.mark.parametrize("suffix", [".cnnd", ".json"])
def test_save_open_round_trip(win, tmp_path, suffix):
    win.doc.push(SetParamCommand(win.doc, "conv1", "out_channels", 9))
    path = tmp_path / f"net{suffix}"
    assert win.file_controller.save_to(path)
    assert not win.isWindowModified()
    assert win.doc.path == path
    saved = win.doc.graph.dumps()
    win.file_controller.new_file()
    assert len(win.doc.graph.nodes) == 1
    assert win.file_controller.open_path(path)
    assert win.doc.graph.dumps() == saved
    assert win.file_controller.recent.paths()[0] == path.resolve()
    assert path.name in win.windowTitle()


def test_corrupt_project_refused_graph_untouched(win, tmp_path, errors):
    before = win.doc.graph.dumps()
    bad = [tmp_path / "garbage.cnnd", tmp_path / "bad.json", tmp_path / "zip.cnnd",
           tmp_path / "missing.cnnd", tmp_path / "cycle.json"]
    bad[0].write_bytes(b"\x00\x01 not a project")
    bad[1].write_text('{"format": "cnn-designer-graph", "nodes": [{"type": "Nope"}]}')
    with zipfile.ZipFile(bad[2], "w") as z:
        z.writestr("graph.json", "{ truncated")
    for p in bad[:4]:
        assert not win.file_controller.open_path(p)
        assert win.doc.graph.dumps() == before
    assert len(errors) == 4 and all(isinstance(t, str) and t for t in errors)
    assert "Nope" in errors[1]


def test_cycle_in_file_opens_and_is_reported(win, tmp_path):
    g = Graph("cyc")
    g.add_node("Input", "x", {}, node_id="x")
    g.add_node("Add", "a", {}, node_id="a")
    g.add_node("ReLU", "r", {}, node_id="r")
    g.edges += [Edge(*e) for e in (("x", "a", 0), ("a", "r", 0), ("r", "a", 1))]
    p = tmp_path / "cycle.json"
    p.write_text(g.dumps())
    # opens so it can be repaired; validation names the cycle
    assert win.file_controller.open_path(p)
    cycle = [m for m in win.doc.validation.errors if "cycle" in m.text]
    assert cycle and cycle[0].node_id in ("a", "r")
    assert win.scene.node_items[cycle[0].node_id].severity == "error"


def test_copy_paste_between_windows_and_garbage(win, qtbot, tmp_path):
    win.scene.select_nodes(["conv1", "relu1"])
    win.editor.act_copy.trigger()
    data = QGuiApplication.clipboard().mimeData()
    assert data.hasFormat("application/x-cnn-designer-graph") and data.hasText()
    other = MainWindow(Graph("empty"), settings=files.make_settings(tmp_path / "s2.ini"),
                       autosave_dir=tmp_path / "a2")
    qtbot.addWidget(other)
    other.editor.act_paste.trigger()
    assert sorted(n.type_name for n in other.doc.graph.nodes.values()) == ["Conv2d", "ReLU"]
    assert len(other.doc.graph.edges) == 1
    assert len(other.scene.selected_node_ids()) == 2
    other.doc.set_modified(False)
    other.close()
    # garbage: plain text that is not a fragment
    before = win.doc.graph.dumps()
    for text in ["hello", '{"format": "cnn-designer-fragment", "nodes": 5}', "[" * 5000]:
        m = QMimeData()
        m.setText(text)
        QGuiApplication.clipboard().setMimeData(m)
        win.editor.act_paste.trigger()
        assert win.doc.graph.dumps() == before
        assert "cannot paste" in win.statusBar().currentMessage()


def test_refusal_shows_in_status_bar(win):
    win.doc.lock("training is running: stop it to edit")
    win.scene.select_nodes(["conv1"])
    win.editor.act_delete.trigger()
    assert "conv1" in win.doc.graph.nodes
    assert "training is running" in win.statusBar().currentMessage()
    win.doc.unlock()


def test_palette_request_adds_below_selection_connected(win):
    win.scene.select_nodes(["softmax"])
    win.editor.add_layer("Dropout")
    new = win.scene.selected_node_ids()[0]
    assert win.doc.graph.nodes[new].type_name == "Dropout"
    assert win.doc.graph.inputs_of(new) == ["softmax"]
    sy = win.doc.graph.nodes["softmax"].position[1]
    assert win.doc.graph.nodes[new].position[1] > sy
    win.editor.act_undo.trigger()
    assert new not in win.doc.graph.nodes


def test_auto_layout_is_undoable(win):
    before = win.doc.graph.dumps()
    for nid in win.doc.graph.nodes:
        win.doc.move_node(nid, (0, 0))
    win.doc.set_modified(False)
    stacked = win.doc.graph.dumps()
    win.editor.act_layout.trigger()
    ys = sorted(n.position[1] for n in win.doc.graph.nodes.values())
    assert len(set(ys)) == len(ys)
    win.editor.act_undo.trigger()
    assert win.doc.graph.dumps() == stacked
    del before


def test_export_png_and_svg(win, tmp_path):
    png, svg = tmp_path / "c.png", tmp_path / "c.svg"
    assert win.file_controller.export_canvas("png", str(png))
    assert win.file_controller.export_canvas("svg", str(svg))
    from PySide6.QtGui import QImage

    img = QImage(str(png))
    r = win.scene.content_rect()
    assert img.width() >= 2 * r.width() and img.height() >= 2 * r.height()  # 2× and complete
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for node in win.doc.graph.nodes.values():
        assert node.name in text  # every card's text is in the drawing


def test_export_to_unwritable_place_says_so(win, tmp_path, errors):
    for kind in ("png", "svg"):
        target = tmp_path / "no" / "such" / f"x.{kind}"
        assert not win.file_controller.export_canvas(kind, str(target))
    assert len(errors) == 2


def test_autosave_and_recovery(win, tmp_path, errors):
    path = tmp_path / "n.cnnd"
    win.file_controller.save_to(path)
    win.doc.push(SetParamCommand(win.doc, "conv1", "out_channels", 7))
    win.file_controller.autosave()
    auto = files.autosave_path(tmp_path / "autosave", path)
    assert auto.exists()
    edited = win.doc.graph.dumps()
    # a new window opening the same file is offered the newer autosave
    errors.answers["next"] = QMessageBox.StandardButton.Yes
    other = MainWindow(Graph("x"), settings=files.make_settings(tmp_path / "s3.ini"),
                       autosave_dir=tmp_path / "autosave")
    assert other.file_controller.open_path(path, ask=False)
    assert other.doc.graph.dumps() == edited
    assert other.isWindowModified()
    other.doc.set_modified(False)
    other.close()
    win.file_controller.save_to(path)
    assert not auto.exists()


def test_close_prompts_when_dirty(win, errors):
    win.doc.push(SetParamCommand(win.doc, "conv1", "out_channels", 7))
    errors.answers["next"] = QMessageBox.StandardButton.Cancel
    assert not win.close()
    assert win.isVisible()
    errors.answers["next"] = QMessageBox.StandardButton.Discard
    assert win.close()


def test_problems_click_selects_node(win):
    panel = win.panels.get("problems")
    if panel is None:
        pytest.skip("problems panel not built yet")
    win.doc.push(SetParamCommand(win.doc, "conv1", "kernel_size", [40, 40]))
    panel.node_activated.emit("conv1")
    assert win.scene.selected_node_ids() == ["conv1"]


def test_open_onnx(win, tmp_path):
    pytest.importorskip("onnx")
    try:
        from engine.onnx.export import export_onnx
    except ImportError:
        pytest.skip("ONNX export not available")
    path = tmp_path / "lenet.onnx"
    export_onnx(load_example("lenet5"), path=path)
    # runs in a worker thread behind a progress dialog
    assert win.file_controller.open_path(path, ask=False)
    types = sorted(n.type_name for n in win.doc.graph.nodes.values())
    assert "Conv2d" in types and "Linear" in types
    assert win.doc.path is None  # saving asks for a project name instead of overwriting
    convs = [n.id for n in win.doc.graph.nodes.values() if n.type_name == "Conv2d"]
    assert win.doc.weights and all(f"{c}.weight" in win.doc.weights for c in convs)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    before = win.doc.graph.dumps()
    assert not win.file_controller.open_path(bad, ask=False)
    assert win.doc.graph.dumps() == before


def test_example_menu_and_big_template(win):
    win.file_controller.open_example("small_resnet")
    assert any(n.type_name == "Add" for n in win.doc.graph.nodes.values())
    assert json.loads(win.doc.graph.dumps())["nodes"]


EXIT_SCRIPT = r"""
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import designer.app as app_mod

qapp = QApplication(sys.argv[:1])

def later():
    w = next(w for w in QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow")
    print("nodes", len(w.doc.graph.nodes), "title", w.windowTitle(), flush=True)
    for key in ("training", "feature_maps"):  # the pyqtgraph panels, built
        if key in w.docks:
            w.docks[key].show()
            w.docks[key].raise_()
            w.materialize(key)
    w.scene.select_nodes(list(w.doc.graph.nodes)[:2])
    w.editor.copy()  # leaves our data on the clipboard at exit
    w.doc.set_modified(False)
    w.close()

QTimer.singleShot(300, later)
sys.exit(app_mod.run(sys.argv))
"""


@pytest.mark.parametrize("with_file", [False, True])
def test_app_starts_and_exits_cleanly(tmp_path, with_file):
    """`run(argv)` in a fresh interpreter: LeNet-5 (or FILE), every panel built, clipboard
    used, window closed: exit code 0, no crash while Qt and Python tear down."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_DATA_HOME=str(tmp_path / "data"),
               PYTHONPATH=str(root))
    args = [sys.executable, "-c", EXIT_SCRIPT]
    if with_file:
        g = load_example("small_resnet")
        path = tmp_path / "net.json"
        path.write_text(g.dumps())
        args.append(str(path))
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = len(load_example("small_resnet" if with_file else "lenet5").nodes)
    assert f"nodes {want} " in proc.stdout


def test_context_menus(win):
    def labels(menu):
        return [a.text() for a in menu.actions() if a.text()]

    conv = win.scene.node_items["conv1"]
    menu = win.editor.context_menu_at(conv.pos())
    assert win.scene.selected_node_ids() == ["conv1"]
    freeze = next(a for a in menu.actions() if a.text().startswith("Freeze"))
    freeze.trigger()
    assert not win.doc.graph.nodes["conv1"].trainable
    assert win.scene.node_items["conv1"].frozen
    win.editor.act_undo.trigger()
    assert win.doc.graph.nodes["conv1"].trainable

    edge = next(e for e in win.scene.edge_items.values() if e.edge.dst == "conv2")
    menu = win.editor.context_menu_at(edge.path.pointAtPercent(0.5))
    sub = next(a.menu() for a in menu.actions() if a.text() == "Insert layer here")
    assert "Image input" not in labels(sub)  # an Input cannot sit on a connection
    next(a for a in sub.actions() if a.text() == "Batch normalization").trigger()
    bn = win.doc.graph.inputs_of("conv2")[0]
    assert win.doc.graph.nodes[bn].type_name == "BatchNorm2d"

    empty = win.scene.content_rect().topRight() + QPointF(400, 0)
    menu = win.editor.context_menu_at(empty)
    sub = next(a.menu() for a in menu.actions() if a.text() == "Add layer")
    next(a for a in sub.actions() if a.text() == "Dropout").trigger()
    new = win.scene.selected_node_ids()[0]
    assert win.doc.graph.nodes[new].type_name == "Dropout"
    assert win.doc.graph.nodes[new].position == (empty.x(), empty.y())


def test_theme_switch_restyles_canvas(win):
    from designer import theme

    light_card = win.scene.look.card.name()
    win.set_theme("dark")
    try:
        assert theme.is_dark()
        assert win.scene.look.dark and win.scene.look.card.name() != light_card
        assert win.settings.value("theme") == "dark"
    finally:
        win.set_theme("light")
    assert not win.scene.look.dark


def test_ctrl_f_focuses_palette_search(win, qtbot):
    pal = win.panels.get("palette")
    if pal is None or not hasattr(pal, "search"):
        pytest.skip("palette not built yet")
    win.view.setFocus()
    QTest.keyClick(win.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(pal.search.hasFocus, timeout=1000)


# ---- layout and polish ----------------------------------------------------------------------


def test_summary_row_click_selects_layer_and_canvas_selection_follows(win, qtbot):
    panel = win.panels.get("summary")
    if panel is None or not hasattr(panel, "table"):
        pytest.skip("summary panel not built")
    win.show_dock("summary")
    qtbot.wait(20)
    from designer.summary_view import ID_ROLE

    model = panel.table.model()
    row = next(r for r in range(model.rowCount())
               if model.index(r, 0).data(ID_ROLE) == "conv2")
    rect = panel.table.visualRect(model.index(row, 1))
    QTest.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert win.scene.selected_node_ids() == ["conv2"]
    # and back: selecting on the canvas highlights the summary row
    win.scene.select_nodes(["pool1"])
    assert panel.current_node() == "pool1"
    assert win.scene.selected_node_ids() == ["pool1"]  # no echo back to the canvas


def test_training_and_feature_maps_sit_below_the_canvas_and_layout_is_remembered(
        win, qtbot, tmp_path):
    bottom = Qt.DockWidgetArea.BottomDockWidgetArea
    for key in ("training", "feature_maps"):
        if key in win.docks:
            assert win.dockWidgetArea(win.docks[key]) == bottom
    assert win.dockWidgetArea(win.docks["history"]) == bottom
    assert win.dockWidgetArea(win.docks["inspector"]) == Qt.DockWidgetArea.RightDockWidgetArea
    assert win.docks["problems"].height() <= 130  # empty: the canvas keeps the room
    win.editor.add_layer("Linear")  # an unconnected layer: problems, and room for a few
    qtbot.waitUntil(lambda: win.docks["problems"].height() >= 145, timeout=2000)
    win.doc.undo_stack.undo()
    # the user's layout survives a restart
    win.docks["history"].setFloating(True)
    win.save_layout()
    other = MainWindow(settings=win.settings, autosave_dir=tmp_path / "autosave2")
    qtbot.addWidget(other)
    other.show()
    qtbot.waitExposed(other)
    assert other.docks["history"].isFloating()
    assert other.settings.value("window/geometry") is not None  # (offscreen clamps sizes)
    other.doc.set_modified(False)
    other.close()
    win.docks["history"].setFloating(False)


def test_opening_view_fits_small_nets_and_reveal_zooms_in(win, qtbot):
    win.resize(1600, 1000)
    qtbot.wait(30)
    win.file_controller.new_file()
    for t in ("Conv2d", "ReLU", "MaxPool2d"):
        win.editor.add_layer(t)
    win.initial_view()
    visible = win.view.mapToScene(win.view.viewport().rect()).boundingRect()
    assert visible.contains(win.scene.content_rect())  # every layer of a small net in view
    assert win.view.zoom() >= READABLE_ZOOM  # cards show their parameters
    assert not win.view.minimap.isVisible()  # nothing to navigate to
    win.view.set_zoom(0.05)
    win.editor.reveal_node("input")
    assert win.view.zoom() >= 0.8 - 1e-6
    centre = win.view.mapToScene(win.view.viewport().rect().center())
    card = win.scene.node_items["input"].sceneBoundingRect()
    assert card.adjusted(-20, -20, 20, 20).contains(centre)
    assert win.scene.selected_node_ids() == ["input"]


def test_deep_net_opens_at_its_top_readable(win, qtbot):
    win.file_controller.load_template("resnet18")
    qtbot.wait(30)
    r = win.scene.content_rect()
    visible = win.view.mapToScene(win.view.viewport().rect()).boundingRect()
    assert not visible.contains(r)
    assert win.view.zoom() >= READABLE_ZOOM
    assert visible.top() <= r.top() + 5  # the input is in view


def test_minimap_toggle_is_remembered(win, qtbot, tmp_path):
    win.view.set_zoom(1.5)
    win.view.minimap.refresh()
    assert win.view.minimap.isVisible()
    mm = win.view.minimap
    assert mm.width() <= 170 and mm.height() <= 210  # small
    win.act_minimap.setChecked(False)
    assert not win.view.minimap.isVisible()
    win.view.minimap.refresh()
    assert not win.view.minimap.isVisible()
    other = MainWindow(settings=win.settings, autosave_dir=tmp_path / "autosave2")
    qtbot.addWidget(other)
    assert not other.act_minimap.isChecked() and not other.view.minimap.enabled
    other.close()


def test_status_totals_human_and_partial_with_errors(win):
    from engine.summary import human_count

    v = win.doc.validation
    assert f"{human_count(v.macs)} MACs" in win.lbl_totals.text()
    assert "unknown" not in win.lbl_totals.text()
    win.doc.push(SetParamCommand(win.doc, "conv2", "kernel_size", [30, 30]))
    text = win.lbl_totals.text()
    assert "unknown" in text and ("≥" in text or "?" in text)
    n_unknown = sum(1 for r in win.doc.validation.nodes.values() if r.out_shape is None)
    assert f"({n_unknown} layers unknown)" in text


def test_toolbar_has_icons_and_shortcut_tooltips(win):
    acts = [a for a in win.toolbar.actions() if not a.isSeparator()]
    assert len(acts) >= 10
    for a in acts:
        assert not a.icon().isNull(), a.text()
        assert not a.icon().pixmap(20, 20).toImage().isNull()
    save_tip = win.file_controller.act_save.toolTip()
    assert "Ctrl+S" in save_tip or "⌘S" in save_tip
    assert "F" in win.editor.act_fit.toolTip()


def test_failed_png_export_leaves_target_untouched(win, tmp_path, errors, monkeypatch):
    from PySide6.QtGui import QImage

    target = tmp_path / "c.png"
    target.write_bytes(b"old picture")
    monkeypatch.setattr(QImage, "save", lambda self, *a, **k: False)
    assert not win.file_controller.export_canvas("png", str(target))
    assert target.read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".c.png")) == []
    assert errors  # the user was told


def test_toolbar_icons_follow_the_theme(win):
    def ink_lightness():
        img = win.file_controller.act_save.icon().pixmap(24, 24).toImage()
        ink = [img.pixelColor(x, y) for x in range(24) for y in range(24)]
        ink = [c.lightness() for c in ink if c.alpha() > 200]
        return sum(ink) / len(ink)

    win.set_theme("light")
    light = ink_lightness()
    win.set_theme("dark")
    dark = ink_lightness()
    win.set_theme("light")
    assert light < 128 < dark  # dark ink on a light bar, light ink on a dark one


def test_feature_maps_dock_grows_to_a_usable_height(win, qtbot):
    if "feature_maps" not in win.docks:
        pytest.skip("feature map panel not available")
    before = win.docks["problems"].height()
    win.show_dock("feature_maps")
    qtbot.waitUntil(lambda: win.docks["feature_maps"].height() >= 280, timeout=3000)
    assert win.docks["feature_maps"].height() > before
    assert win.view.viewport().height() >= 300  # the canvas keeps room


def test_export_pytorch_from_the_window_writes_the_code(window, tmp_path):
    file_menu = window.menuBar().actions()[0].menu()
    assert window.file_controller.act_export_pytorch in file_menu.actions()
    paths = window.file_controller.export_pytorch(tmp_path / "torch_code")
    assert {"model.py", "train.py", "README.md"} <= {p.name for p in paths}  # untrained: no npz
    import numpy as np

    from engine.nn.network import Network

    window.doc.set_weights(Network.compile(window.doc.graph, np.random.default_rng(0)).state_dict())
    paths = window.file_controller.export_pytorch(tmp_path / "torch_code")
    assert "weights.npz" in {p.name for p in paths}
    src = (tmp_path / "torch_code" / "model.py").read_text()
    compile(src, "model.py", "exec")  # valid Python
    assert "class " in src and "nn.Module" in src and "conv1" in src


def test_kernel_lesson_in_the_bottom_dock_settles_its_layout(window, qtbot):
    """Switching to the lesson once fed its resize handler back into itself (a frozen app)."""
    from PySide6.QtWidgets import QApplication

    window.show_dock("feature_maps")
    qtbot.wait(300)
    panel = window.panels["feature_maps"]
    panel.tabs.setCurrentIndex(panel.tabs.indexOf(panel.lesson))
    for _ in range(50):
        QApplication.processEvents()
    assert panel.lesson._cols in (2, 4)
    assert len(panel.lesson._flips) < 3  # it settled; no flip-flopping between arrangements


def test_closing_or_opening_during_training_asks_first(window, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda parent, title, text, *a: asked.append(text) or QMessageBox.StandardButton.Cancel))
    window.doc.lock("training is running: stop it to edit the graph")
    assert window.file_controller.maybe_save() is False  # cancelled: keep training, keep the window
    assert asked and "Training is running" in asked[-1]
    window.doc.unlock()
    asked.clear()
    # nothing running, nothing unsaved
    assert window.file_controller.maybe_save() is True and not asked


# ---- document state by signals; trained weights are unsaved changes ---------------------------


def test_title_follows_the_documents_path_name_and_modified_signals(win, tmp_path):
    win.doc.reset(Graph("Net A"))
    assert win.windowTitle() == "Net A[*] — CNN Designer" and not win.isWindowModified()
    win.doc.set_network_name("Net B")
    assert win.windowTitle().startswith("Net B[*]")
    win.doc.set_path(tmp_path / "b.cnnd")
    assert win.windowTitle().startswith("b.cnnd[*]")
    win.doc.set_history({"epochs": []})
    assert win.isWindowModified()
    win.doc.set_modified(False)
    assert not win.isWindowModified()
    assert win.file_controller.save_to(tmp_path / "c.cnnd")
    assert win.windowTitle().startswith("c.cnnd[*]") and not win.isWindowModified()


def _train(win):
    """What the training panel does when a run ends (designer/training_panel.py)."""
    from engine.nn.network import Network

    win.doc.set_weights(Network.compile(win.doc.graph, np.random.default_rng(0)).state_dict())
    win.doc.set_history({"epochs": [{"epoch": 1, "loss": 0.5}]})


@pytest.mark.parametrize("how", ["new", "open", "example", "template", "close"])
def test_trained_weights_are_not_discarded_without_asking(win, tmp_path, errors, how):
    other = tmp_path / "other.json"
    other.write_text(load_example("small_resnet").dumps())
    fc = win.file_controller
    replace = {"new": fc.new_file, "open": lambda: fc.open_path(other),
               "example": lambda: fc.open_example("small_resnet"),
               "template": lambda: fc.load_template("lenet5"), "close": win.close}[how]
    _train(win)
    assert win.isWindowModified() and win.doc.undo_stack.isClean()
    weights = win.doc.weights
    errors.answers["next"] = QMessageBox.StandardButton.Cancel
    replace()
    assert errors and "Save the changes" in errors[-1]
    assert win.doc.weights is weights and win.isVisible()  # cancelled: nothing discarded
    errors.answers["next"] = QMessageBox.StandardButton.Discard
    errors.clear()
    replace()
    assert errors and (how == "close" or win.doc.weights is not weights)


def test_saving_trained_weights_makes_the_document_clean(win, tmp_path, errors):
    _train(win)
    assert win.file_controller.save_to(tmp_path / "trained.cnnd")
    assert not win.isWindowModified()
    errors.clear()
    win.file_controller.new_file()
    assert not errors  # nothing unsaved: no question
    assert win.file_controller.open_path(tmp_path / "trained.cnnd")
    assert win.doc.weights and win.doc.history["epochs"][0]["epoch"] == 1
    assert not win.isWindowModified()


def test_undo_to_the_saved_graph_after_training_still_asks(win, errors):
    win.doc.push(SetParamCommand(win.doc, "fc1", "out_features", 100))
    win.doc.undo_stack.undo()
    _train(win)
    win.doc.push(SetParamCommand(win.doc, "fc1", "out_features", 100))
    win.editor.act_undo.trigger()
    assert win.doc.undo_stack.isClean() and win.isWindowModified()
    errors.answers["next"] = QMessageBox.StandardButton.Cancel
    assert not win.file_controller.maybe_save()


def test_a_broken_panel_module_is_an_import_error_not_a_missing_dock(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "designer.summary_view", None)  # "import fails"
    monkeypatch.delitem(sys.modules, "designer.main_window")
    with pytest.raises(ImportError, match="summary_view"):
        importlib.import_module("designer.main_window")


def test_every_dock_is_there(win):
    assert set(win.docks) == {"palette", "problems", "history", "inspector", "summary",
                              "training", "feature_maps", "runs"}
    assert win.file_controller.act_export_onnx.isEnabled()


def test_saving_trained_weights_as_architecture_json_keeps_them_unsaved(win, tmp_path, errors):
    """A .json file holds the architecture only: after saving trained weights into one the
    document stays modified, and the close prompt's Save does not close and lose them."""
    _train(win)
    assert win.file_controller.save_to(tmp_path / "arch.json")
    assert win.doc.undo_stack.isClean() and win.isWindowModified()
    errors.answers["next"] = QMessageBox.StandardButton.Save
    assert not win.file_controller.maybe_save()  # saved the .json again, weights still unsaved
    assert win.file_controller.save_to(tmp_path / "all.cnnd")
    assert not win.isWindowModified()
    # without weights or history a .json save is a full save
    win.doc.reset(load_example("lenet5"))
    win.doc.push(SetParamCommand(win.doc, "fc1", "out_features", 100))
    assert win.file_controller.save_to(tmp_path / "plain.json")
    assert not win.isWindowModified()
