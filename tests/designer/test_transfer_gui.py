"""Transfer learning on the canvas: freeze up to here, unfreeze all, replace the head for N
classes (Linear or SqueezeNet's conv classifier), all undoable; frozen layers read clearly."""

import numpy as np
import pytest
from PySide6.QtWidgets import QInputDialog

from designer.commands import FreezeUpToCommand, ReplaceHeadCommand, UnfreezeAllCommand
from engine.nn.network import Network
from engine.transfer.head import freeze_up_to
from engine.validate import validate
from engine.zoo.examples import load_example
from engine.zoo.templates import make_template


def ancestors(graph, nid):
    """nid and everything upstream, by a walk over the edge list (independent of the code)."""
    out, frontier = {nid}, {nid}
    while frontier:
        frontier = {e.src for e in graph.edges if e.dst in frontier} - out
        out |= frontier
    return out


def test_freeze_up_to_here_marks_exactly_the_ancestors_and_undo_restores(window):
    window.file_controller.load_template("resnet18")
    doc = window.doc
    before = doc.graph.dumps()
    target = "layer3.0.conv1"
    assert doc.push(FreezeUpToCommand(doc, target))
    frozen = {nid for nid, n in doc.graph.nodes.items() if not n.trainable}
    assert frozen == ancestors(doc.graph, target)
    assert "layer3.0.downsample.0" not in frozen and "fc" not in frozen
    assert frozen == {nid for nid, n in freeze_up_to(make_template("resnet18").graph,
                                                     target).nodes.items() if not n.trainable}
    assert doc.undo_stack.count() == 1  # one step
    assert window.scene.node_items[target].frozen
    assert not window.scene.node_items["fc"].frozen
    assert f"{len(frozen)} layers frozen" in window.lbl_frozen.text()
    doc.undo_stack.undo()
    assert doc.graph.dumps() == before
    assert not window.lbl_frozen.isVisible()
    doc.undo_stack.redo()
    assert {nid for nid, n in doc.graph.nodes.items() if not n.trainable} == frozen


def test_unfreeze_all(window):
    doc = window.doc
    doc.push(FreezeUpToCommand(doc, "conv2"))
    assert any(not n.trainable for n in doc.graph.nodes.values())
    assert doc.push(UnfreezeAllCommand(doc))
    assert all(n.trainable for n in doc.graph.nodes.values())
    doc.undo_stack.undo()
    assert {nid for nid, n in doc.graph.nodes.items() if not n.trainable} == \
        ancestors(doc.graph, "conv2")


def test_replace_head_changes_the_class_count_and_validates(window):
    window.file_controller.load_template("resnet18")
    doc = window.doc
    before = doc.graph.dumps()
    doc.push(FreezeUpToCommand(doc, "avgpool"))
    assert window.editor.replace_head(5)
    v = doc.validation
    assert v.ok and v.nodes[v.output_id].out_shape == (5,)
    assert doc.graph.nodes["fc"].params["out_features"] == 5 and doc.graph.nodes["fc"].trainable
    assert v.total_params == validate(make_template("resnet18", 5).graph).total_params
    assert window.scene.node_items["fc"].shape_text == "5"
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.graph.dumps() == before


def test_replace_head_of_a_conv_classifier(window):
    window.file_controller.load_template("squeezenet1_1")
    doc = window.doc
    assert doc.push(ReplaceHeadCommand(doc, 3))
    assert doc.graph.nodes["classifier.1"].params["out_channels"] == 3
    assert doc.validation.ok
    assert doc.validation.nodes[doc.validation.output_id].out_shape == (3,)


def test_replace_head_swaps_only_the_heads_weights_and_undo_brings_them_back():
    from designer.document import Document

    g = load_example("lenet5")
    doc = Document(g)
    state = Network.compile(g, np.random.default_rng(0)).state_dict()
    doc.set_weights(state)
    head = "fc3" if "fc3" in g.nodes else [n for n in g.nodes
                                           if g.nodes[n].type_name == "Linear"][-1]
    assert doc.push(ReplaceHeadCommand(doc, 4))
    assert doc.weights[f"{head}.weight"].shape[0] == 4
    assert doc.weights[f"{head}.bias"].shape == (4,)
    for k, a in state.items():
        if not k.startswith(head + "."):
            assert doc.weights[k] is a or np.array_equal(doc.weights[k], a)
    # the new weights load into the compiled network: training can start from them
    net = Network.compile(doc.graph, np.random.default_rng(1))
    net.load_state_dict(doc.weights)
    doc.undo_stack.undo()
    assert set(doc.weights) == set(state)
    for k, a in state.items():
        assert np.array_equal(doc.weights[k], a)


def test_replace_head_refusals(window):
    doc = window.doc
    refused = []
    doc.edit_refused.connect(refused.append)
    out = doc.validation.nodes[doc.validation.output_id].out_shape[0]
    assert not doc.push(ReplaceHeadCommand(doc, out))
    assert not doc.push(ReplaceHeadCommand(doc, 0))
    assert len(refused) == 2 and "at least 1 class" in refused[1]


def test_replace_head_dialog_asks_for_the_number(window, monkeypatch):
    window.file_controller.load_template("alexnet")
    asked = []

    def get_int(parent, title, label, value, lo, hi, *a, **k):
        asked.append(value)
        return 12, True

    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(get_int))
    window.editor.replace_head_dialog()
    assert asked == [1000]
    v = window.doc.validation
    assert v.nodes[v.output_id].out_shape == (12,)


@pytest.mark.parametrize("key", ["resnet18", "mobilenet_v2"])
def test_frozen_backbone_with_new_head_from_the_menu(window, key):
    window.file_controller.load_template(key)
    g = window.doc.graph
    last_pool = [n for n in g.topological_order() if "pool" in g.nodes[n].type_name.lower()][-1]
    menu = window.editor.context_menu_at(window.scene.node_items[last_pool].scenePos())
    act = next(a for a in menu.actions() if a.text().startswith("Freeze up to"))
    act.trigger()
    assert not window.doc.graph.nodes[last_pool].trainable
    assert window.editor.replace_head(2)
    assert window.doc.validation.ok


def test_imported_onnx_model_gets_blocks_a_frozen_backbone_and_a_new_head(window):
    """The whole flow on a PyTorch export: open, blocks detected, freeze, replace head."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "data" / "torch_resnet_small.onnx"
    assert window.file_controller.open_path(path, ask=False)
    doc, scene = window.doc, window.scene
    assert doc.blocks is None and doc.weights
    window.editor.collapse_all()
    assert {"layer1", "layer2"} <= set(scene.block_items)  # PyTorch's modules
    g = doc.graph
    pool = [n for n in g.topological_order() if "Pool" in g.nodes[n].type_name][-1]
    window.editor.freeze_up_to(pool)
    before = {k: a.copy() for k, a in doc.weights.items()}
    assert window.editor.replace_head(3)
    assert doc.validation.ok
    assert doc.validation.nodes[doc.validation.output_id].out_shape == (3,)
    head = [n for n in g.topological_order() if g.nodes[n].type_name == "Linear"][-1]
    assert g.nodes[head].trainable and doc.weights[f"{head}.weight"].shape[0] == 3
    for k, a in before.items():  # the backbone keeps its pretrained weights
        if k.rpartition(".")[0] != head:
            assert np.array_equal(doc.weights[k], a)
    assert all(b.frozen == "all" for b in scene.block_items.values())


def test_a_head_trained_after_its_replacement_survives_undo_and_redo():
    """Undo gives back the head weights the replacement took away, redo the ones the undo
    took away: training between the replacement and an undo + redo keeps its head."""
    from designer.document import Document

    g = load_example("lenet5")
    doc = Document(g)
    doc.set_weights(Network.compile(g, np.random.default_rng(0)).state_dict())
    assert doc.push(ReplaceHeadCommand(doc, 4))
    trained = Network.compile(doc.graph, np.random.default_rng(7)).state_dict()
    doc.set_weights(trained)  # what a finished training run does
    head = "fc3"
    doc.undo_stack.undo()
    assert doc.weights[f"{head}.weight"].shape[0] == 10
    doc.undo_stack.redo()
    for k in (f"{head}.weight", f"{head}.bias"):
        assert np.array_equal(doc.weights[k], trained[k])
    # the same without weights before the replacement: the trained head comes back too
    doc = Document(load_example("lenet5"))
    assert doc.push(ReplaceHeadCommand(doc, 4))
    trained = Network.compile(doc.graph, np.random.default_rng(7)).state_dict()
    doc.set_weights(trained)
    doc.undo_stack.undo()
    doc.undo_stack.redo()
    assert np.array_equal(doc.weights[f"{head}.weight"], trained[f"{head}.weight"])
