"""Block detection (engine.blocks): from names, from structure, and the collapsed node's summary;
checked against the templates' own block membership and on imported ONNX models."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.blocks import (
    block_summary,
    blocks_from_names,
    blocks_from_structure,
    detect_blocks,
    display_name,
    module_path,
)
from engine.graph import Graph, sequential
from engine.onnx.importer import import_onnx
from engine.validate import validate
from engine.zoo.templates import make_template

DATA = Path(__file__).resolve().parents[1] / "data"


def anonymous(graph: Graph) -> Graph:
    """The same graph with names that say nothing (as some exporters write them)."""
    g = graph.copy()
    for i, node in enumerate(g.nodes.values()):
        node.name = f"node{i}"
    return g


@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1", "densenet121", "googlenet",
                                  "mobilenet_v2", "vgg11"])
def test_named_blocks_match_the_templates(name):
    t = make_template(name, 10)
    found = detect_blocks(t.graph)
    for block, ids in t.blocks.items():
        if len(ids) < 2:
            continue  # a one-layer block collapses nothing
        assert block in found, block
        assert set(found[block]) == set(ids), block


def test_module_paths():
    assert module_path("layer2.0.conv1") == (["layer2", "0", "conv1"], False)
    assert module_path("/layer2/layer2.0/conv1/Conv") == (["layer2", "0", "conv1"], True)
    assert module_path("/features/features.0/Conv") == (["features", "0"], True)
    assert module_path("/Flatten") == ([], True)
    assert module_path("sequential/conv2d/Conv2D") == (["sequential", "conv2d"], True)


def test_raw_onnx_names_make_blocks():
    g = sequential([
        ("Input", "input", {"channels": 1, "height": 8, "width": 8}),
        ("Conv2d", "/layer1/layer1.0/conv1/Conv", {"out_channels": 2, "kernel_size": 3}),
        ("ReLU", "/layer1/layer1.0/Relu", {}),
        ("Conv2d", "/layer1/layer1.1/conv1/Conv", {"out_channels": 2, "kernel_size": 3}),
        ("ReLU", "/layer1/layer1.1/Relu", {}),
        ("Flatten", "/Flatten", {}),
        ("Linear", "/fc/Gemm", {"out_features": 3}),
    ])
    blocks = blocks_from_names(g)
    assert set(blocks) == {"layer1", "layer1.0", "layer1.1"}
    assert blocks["layer1.0"] == ["/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/Relu"]
    assert len(blocks["layer1"]) == 4


def test_unconnected_layers_sharing_a_name_prefix_are_no_block():
    g = sequential([
        ("Input", "input", {"channels": 1, "height": 8, "width": 8}),
        ("Conv2d", "c1.conv", {"out_channels": 2, "kernel_size": 3}),
        ("ReLU", "relu", {}),
        ("Conv2d", "c1.conv_1", {"out_channels": 2, "kernel_size": 3}),
    ])
    assert blocks_from_names(g) == {}


def test_structure_finds_resnet_blocks_without_names():
    t = make_template("resnet18", 10)
    g = anonymous(t.graph)
    blocks = blocks_from_structure(g)
    singles = {k: v for k, v in blocks.items() if k.startswith("block ")}
    assert len(singles) == 8  # eight BasicBlocks
    residual = [set(t.blocks[f"layer{s}.{i}"]) for s in range(1, 5) for i in range(2)]
    assert sorted(map(sorted, residual)) == sorted(map(sorted, map(set, singles.values())))
    assert "block 1 (residual, 7 layers)" in blocks
    assert "block 3 (residual, 9 layers)" in blocks  # with the projection shortcut
    # layer1.0 and layer1.1 have the same structure and follow each other
    assert set(blocks["blocks 1-2 (2 × residual)"]) == set(t.blocks["layer1"])


def test_structure_finds_fire_modules_without_names():
    t = make_template("squeezenet1_1", 10)
    blocks = blocks_from_structure(anonymous(t.graph))
    fires = [set(v) for k, v in blocks.items() if k.startswith("block ")]
    want = [set(t.blocks[f"features.{i}"]) for i in (3, 4, 6, 7, 9, 10, 11, 12)]
    assert fires == want  # squeeze conv + ReLU, both expands, the concat: 7 layers each
    assert all(len(f) == 7 for f in fires)


def test_structure_finds_dense_layers_and_inception_modules():
    d = blocks_from_structure(anonymous(make_template("densenet121", 10).graph))
    dense = [k for k in d if k.startswith("block ")]
    assert len(dense) == 6 + 12 + 24 + 16 and all("dense, 7 layers" in k for k in dense)
    assert "blocks 19-42 (24 × dense)" in d  # dense block 3
    g = blocks_from_structure(anonymous(make_template("googlenet", 10).graph))
    assert len([k for k in g if k.startswith("block ")]) == 9  # nine inception modules


def test_a_chain_has_no_structural_blocks():
    assert blocks_from_structure(make_template("vgg11", 10).graph) == {}


def test_blocks_nest_and_come_outer_first():
    found = detect_blocks(make_template("resnet50", 10).graph)
    names = list(found)
    assert names.index("layer2") < names.index("layer2.0") < names.index("layer2.1")
    sets = [set(v) for v in found.values()]
    for a in sets:
        for b in sets:
            assert a <= b or b <= a or not (a & b)


def test_imported_onnx_gets_blocks_from_names_and_structure():
    imp = import_onnx(DATA / "torch_resnet_small.onnx")
    g = imp.graph
    blocks = detect_blocks(g)
    assert blocks["stem"] == ["stem.0", "stem.2"]
    # the import keeps PyTorch's module paths, so the blocks are the model's own modules
    first, second = blocks["layer1"], blocks["layer2"]
    assert "layer1.add" in first and "layer1.relu_1" in first and len(first) == 5
    assert "layer2.short.0" in second and "layer2.add" in second and len(second) == 6
    v = validate(g)
    info = block_summary(g, v, second)
    assert info.in_shapes == [(8, 16, 16)] and info.out_shapes == [(16, 8, 8)]
    # conv 8->16 3×3 (BN folded: with bias), conv 16->16 3×3, 1×1 projection 8->16
    assert info.params == (16 * 8 * 9 + 16) + (16 * 16 * 9 + 16) + (16 * 8 + 16)


def test_block_summary_of_a_resnet_stage():
    t = make_template("resnet18", 10)
    v = validate(t.graph)
    info = block_summary(t.graph, v, t.blocks["layer2"], "layer2")
    assert info.name == "layer2" and info.n_layers == len(t.blocks["layer2"]) == 16
    assert info.in_shapes == [(64, 56, 56)]
    assert info.out_shapes == [(128, 28, 28)]
    # torchvision's layer2: 3×3 convs 64->128, 3 × 128->128, 1×1 projection, 5 BatchNorms
    trainable = 9 * 64 * 128 + 3 * 9 * 128 * 128 + 64 * 128 + 5 * 2 * 128
    assert info.trainable_params == trainable
    assert info.params == trainable + 5 * 2 * 128  # running mean and variance
    text = info.describe()
    assert "layer 2 (16 layers)" in text and "64×56×56 → 128×28×28" in text


def test_block_summary_of_a_block_with_two_inputs_and_the_output():
    t = make_template("resnet18", 10)
    v = validate(t.graph)
    ids = ["layer1.0.add", "layer1.0.relu2"]  # the add reads the block's main path and input
    info = block_summary(t.graph, v, ids)
    assert info.in_shapes == [(64, 56, 56), (64, 56, 56)] and info.params == 0
    assert info.name == "layer1.0"
    head = block_summary(t.graph, v, ["flatten", "fc"])
    assert head.out_shapes == [(10,)] and head.params == 512 * 10 + 10


def test_block_summary_of_a_broken_graph_shows_unknown_shapes():
    g = sequential([
        ("Input", "input", {"channels": 1, "height": 4, "width": 4}),
        ("Conv2d", "a.conv", {"out_channels": 2, "kernel_size": 9}),  # larger than the image
        ("ReLU", "a.relu", {}),
        ("Flatten", "flat", {}),
    ])
    v = validate(g)
    assert not v.ok
    info = block_summary(g, v, detect_blocks(g)["a"], "a")
    assert info.n_layers == 2 and info.in_shapes == [(1, 4, 4)]
    assert info.out_shapes == [None] and "?" in info.describe()


def test_titles_count_the_blocks_inside():
    t = make_template("densenet121", 10)
    v = validate(t.graph)
    blocks = detect_blocks(t.graph)
    info = block_summary(t.graph, v, blocks["features.denseblock3"], "features.denseblock3",
                         blocks)
    assert info.n_blocks == 24  # dense layers
    assert info.n_layers == 24 * 7  # BN-ReLU-conv-BN-ReLU-conv and a concat, per dense layer
    assert info.title == "dense block 3 (24 blocks, 168 layers)"
    assert info.in_shapes == [(256, 14, 14)] and info.out_shapes == [(256 + 24 * 32, 14, 14)]


@pytest.mark.parametrize("name, label", [
    ("features.denseblock3", "dense block 3"), ("layer2.0", "layer 2.0"), ("layer2", "layer 2"),
    ("Mixed_5b", "Mixed 5b"), ("features.transition2", "transition 2"), ("conv1", "conv1"),
    ("inception3a", "inception 3a"), ("/layer2/layer2.0/Relu", "layer 2.0")])
def test_display_names(name, label):
    assert display_name(name) == label
