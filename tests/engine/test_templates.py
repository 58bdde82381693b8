"""Classic-architecture templates: valid graphs, torchvision's exact parameter counts and shapes."""

from __future__ import annotations

from itertools import pairwise

import pytest

from engine.graph import Graph
from engine.validate import validate
from engine.zoo.templates import TEMPLATES, build_template, make_template

# Trainable parameter counts of torchvision's models (1000 classes), as published in
# torchvision's model docs ("num_params" in each weights' meta, torchvision/models/*.py).
# torchvision counts BatchNorm running mean/var as buffers, not parameters.
# inception_v3's published 27,161,264 includes the auxiliary head (BasicConv2d 768->128 1×1:
# 98,560; BasicConv2d 128->768 5×5: 2,459,136; Linear 768->1000: 769,000 = 3,326,696), which the
# template leaves out, as torchvision does at inference.
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "googlenet": 6_624_904,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "densenet121": 7_978_856,
    "densenet201": 20_013_928,
    "inception_v3": 27_161_264 - (98_560 + 2_459_136 + 769_000),
    "mobilenet_v2": 3_504_872,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
    "efficientnet_b0": 5_288_548,
    "shufflenet_v2_x1_0": 2_278_604,
    "mnasnet1_0": 4_383_312,
    "regnet_x_400mf": 5_495_976,
    "regnet_y_400mf": 4_344_144,
    "convnext_tiny": 28_589_128,
}

# BatchNorm buffers (running mean + var = 2 per BN channel), counted by hand from torchvision's
# definitions. ResNet-18: stem 64; layer1 4·64; layer2 4·128 + 128 (downsample); layer3
# 4·256 + 256; layer4 4·512 + 512 -> 4,800 channels. ResNet-50: stem 64; layer1 3·384 + 256;
# layer2 4·768 + 512; layer3 6·1536 + 1024; layer4 3·3072 + 2048 -> 26,560 channels.
TORCHVISION_BUFFERS = {
    "resnet18": 2 * 4800,
    "resnet50": 2 * 26560,
    # the rest as torchvision's state_dicts count them (running_mean + running_var elements;
    # tests/engine/test_templates_torchvision.py compares the keys themselves)
    "resnext50_32x4d": 68_224,
    "wide_resnet50_2": 68_224,
    "mobilenet_v3_small": 12_112,
    "mobilenet_v3_large": 24_400,
    "efficientnet_b0": 42_016,
    "shufflenet_v2_x1_0": 16_180,
    "mnasnet1_0": 37_920,
    "regnet_x_400mf": 37_856,
    "regnet_y_400mf": 27_152,
    "convnext_tiny": 0,  # LayerNorm only: no running statistics
}

# Output of key stages (C, H, W), from torchvision's architecture definitions.
STAGES = {
    "lenet5": {"pool1": (6, 14, 14), "pool2": (16, 5, 5), "fc1": (120,), "fc3": (10,)},
    "alexnet": {"features.2": (64, 27, 27), "features.5": (192, 13, 13),
                "features.12": (256, 6, 6), "flatten": (9216,)},
    "vgg11": {"features.2": (64, 112, 112), "features.20": (512, 7, 7), "flatten": (25088,)},
    "vgg16": {"features.4": (64, 112, 112), "features.9": (128, 56, 56),
              "features.16": (256, 28, 28), "features.23": (512, 14, 14),
              "features.30": (512, 7, 7)},
    "googlenet": {"maxpool1": (64, 56, 56), "maxpool2": (192, 28, 28),
                  "inception3a.cat": (256, 28, 28), "inception3b.cat": (480, 28, 28),
                  "maxpool3": (480, 14, 14), "inception4a.cat": (512, 14, 14),
                  "inception4e.cat": (832, 14, 14), "maxpool4": (832, 7, 7),
                  "inception5b.cat": (1024, 7, 7)},
    "squeezenet1_0": {"features.0": (96, 109, 109), "features.2": (96, 54, 54),
                      "features.3.cat": (128, 54, 54), "features.6": (256, 27, 27),
                      "features.11": (512, 13, 13), "features.12.cat": (512, 13, 13),
                      "classifier.3": (1000, 1, 1)},
    "squeezenet1_1": {"features.0": (64, 111, 111), "features.2": (64, 55, 55),
                      "features.5": (128, 27, 27), "features.8": (256, 13, 13),
                      "features.12.cat": (512, 13, 13)},
    "resnet18": {"maxpool": (64, 56, 56), "layer1.1.relu2": (64, 56, 56),
                 "layer2.1.relu2": (128, 28, 28), "layer3.1.relu2": (256, 14, 14),
                 "layer4.1.relu2": (512, 7, 7)},
    "resnet50": {"maxpool": (64, 56, 56), "layer1.2.relu3": (256, 56, 56),
                 "layer2.3.relu3": (512, 28, 28), "layer3.5.relu3": (1024, 14, 14),
                 "layer4.2.relu3": (2048, 7, 7)},
    "densenet121": {"features.pool0": (64, 56, 56), "features.denseblock1.cat": (256, 56, 56),
                    "features.transition1.pool": (128, 28, 28),
                    "features.denseblock2.cat": (512, 28, 28),
                    "features.transition2.pool": (256, 14, 14),
                    "features.denseblock3.cat": (1024, 14, 14),
                    "features.transition3.pool": (512, 7, 7),
                    "features.denseblock4.cat": (1024, 7, 7)},
    "densenet201": {"features.denseblock3.cat": (1792, 14, 14),
                    "features.transition3.pool": (896, 7, 7),
                    "features.denseblock4.cat": (1920, 7, 7),
                    "features.denseblock3.denselayer12.conv2": (32, 14, 14)},
    "inception_v3": {"Conv2d_1a_3x3.relu": (32, 149, 149), "Conv2d_2b_3x3.relu": (64, 147, 147),
                     "maxpool1": (64, 73, 73), "Conv2d_4a_3x3.relu": (192, 71, 71),
                     "maxpool2": (192, 35, 35), "Mixed_5b.cat": (256, 35, 35),
                     "Mixed_5d.cat": (288, 35, 35), "Mixed_6a.cat": (768, 17, 17),
                     "Mixed_6e.cat": (768, 17, 17), "Mixed_7a.cat": (1280, 8, 8),
                     "Mixed_7c.cat": (2048, 8, 8)},
    "mobilenet_v2": {"features.0.2": (32, 112, 112), "features.1.conv.2": (16, 112, 112),
                     "features.3.add": (24, 56, 56), "features.6.add": (32, 28, 28),
                     "features.13.add": (96, 14, 14), "features.16.add": (160, 7, 7),
                     "features.17.conv.3": (320, 7, 7), "features.18.2": (1280, 7, 7)},
    "resnext50_32x4d": {"maxpool": (64, 56, 56), "layer1.0.conv2": (128, 56, 56),
                        "layer1.2.relu3": (256, 56, 56), "layer2.3.relu3": (512, 28, 28),
                        "layer3.5.relu3": (1024, 14, 14), "layer4.2.relu3": (2048, 7, 7)},
    "wide_resnet50_2": {"layer1.0.conv2": (128, 56, 56), "layer4.2.relu3": (2048, 7, 7)},
    "mobilenet_v3_small": {"features.0.2": (16, 112, 112), "features.1.block.1.mul": (16, 56, 56),
                           "features.1.block.2.1": (16, 56, 56),
                           "features.3.block.2.1": (24, 28, 28), "features.6.add": (40, 14, 14),
                           "features.11.add": (96, 7, 7), "features.12.2": (576, 7, 7)},
    "mobilenet_v3_large": {"features.0.2": (16, 112, 112), "features.1.add": (16, 112, 112),
                           "features.3.add": (24, 56, 56), "features.4.block.2.fc1": (24, 1, 1),
                           "features.6.add": (40, 28, 28), "features.15.add": (160, 7, 7),
                           "features.16.2": (960, 7, 7)},
    "efficientnet_b0": {"features.0.2": (32, 112, 112), "features.1.0.block.2.1": (16, 112, 112),
                        "features.2.1.add": (24, 56, 56), "features.3.1.add": (40, 28, 28),
                        "features.5.2.add": (112, 14, 14),
                        "features.7.0.block.3.1": (320, 7, 7), "features.8.2": (1280, 7, 7)},
    "shufflenet_v2_x1_0": {"maxpool": (24, 56, 56), "stage2.0.shuffle": (116, 28, 28),
                           "stage3.7.shuffle": (232, 14, 14), "stage4.3.chunk": (232, 7, 7),
                           "stage4.3.shuffle": (464, 7, 7), "conv5.2": (1024, 7, 7),
                           "mean": (1024,)},
    "mnasnet1_0": {"layers.7": (16, 112, 112), "layers.8.2.add": (24, 56, 56),
                   "layers.10.2.add": (80, 14, 14), "layers.13.0.layers.7": (320, 7, 7),
                   "layers.16": (1280, 7, 7), "mean": (1280,)},
    "regnet_x_400mf": {"stem.2": (32, 112, 112),
                       "trunk_output.block1.block1-0.activation": (32, 56, 56),
                       "trunk_output.block2.block2-1.activation": (64, 28, 28),
                       "trunk_output.block3.block3-6.activation": (160, 14, 14),
                       "trunk_output.block4.block4-11.activation": (400, 7, 7)},
    "regnet_y_400mf": {"trunk_output.block1.block1-0.f.se.fc1": (8, 1, 1),
                       "trunk_output.block2.block2-2.activation": (104, 28, 28),
                       "trunk_output.block3.block3-5.activation": (208, 14, 14),
                       "trunk_output.block4.block4-5.activation": (440, 7, 7)},
    "convnext_tiny": {"features.0.1": (96, 56, 56), "features.1.0.block.3": (384, 56, 56),
                      "features.1.2.add": (96, 56, 56), "features.2.1": (192, 28, 28),
                      "features.3.2.add": (192, 28, 28), "features.5.8.add": (384, 14, 14),
                      "features.7.2.add": (768, 7, 7), "classifier.1": (768,)},
}

INPUT_SIZES = {"lenet5": (1, 28, 28), "inception_v3": (3, 299, 299)}


@pytest.fixture(scope="module")
def built():
    cache: dict = {}

    def get(name):
        if name not in cache:
            t = make_template(name, 10 if name == "lenet5" else 1000)
            cache[name] = (t, validate(t.graph))
        return cache[name]
    return get


def test_every_architecture_of_the_issue_is_registered():
    assert set(TEMPLATES) == set(TORCHVISION_PARAMS) | {"lenet5"}
    assert set(STAGES) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_is_valid_with_torchvision_shapes(built, name):
    _, v = built(name)
    assert v.ok, [m.text for m in v.errors]
    assert v.nodes["input"].out_shape == INPUT_SIZES.get(name, (3, 224, 224))
    assert TEMPLATES[name].input_shape == v.nodes["input"].out_shape
    for node_id, shape in STAGES[name].items():
        assert v.nodes[node_id].out_shape == shape, node_id
    assert v.nodes[v.output_id].out_shape == ((10,) if name == "lenet5" else (1000,))


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_trainable_params_equal_torchvision(built, name):
    _, v = built(name)
    assert v.trainable_params == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TORCHVISION_BUFFERS))
def test_batchnorm_buffers_are_non_trainable(built, name):
    _, v = built(name)
    assert v.non_trainable_params == TORCHVISION_BUFFERS[name]


def test_num_classes_changes_only_the_classifier():
    a = validate(build_template("resnet18", 1000))
    b = validate(build_template("resnet18", 10))
    # only fc changes: 512·1000 + 1000 -> 512·10 + 10
    assert a.trainable_params - b.trainable_params == 513 * 990
    assert b.nodes[b.output_id].out_shape == (10,)
    sq = validate(build_template("squeezenet1_1", 7))
    assert sq.ok and sq.nodes[sq.output_id].out_shape == (7,)


def test_unknown_template_and_bad_class_count_are_clear_errors():
    with pytest.raises(ValueError, match="unknown template 'resnet19'.*resnet18"):
        build_template("resnet19")
    with pytest.raises(ValueError, match="at least 1"):
        build_template("lenet5", 0)


def test_node_names_mirror_torchvision_modules(built):
    t, _ = built("densenet201")
    g = t.graph
    assert g.nodes["features.denseblock3.denselayer12.conv2"].type_name == "Conv2d"
    assert g.nodes["features.denseblock3.denselayer12.conv2"].params["out_channels"] == 32
    for nid, node in g.nodes.items():
        assert node.name == nid
    t, _ = built("resnet18")
    assert t.graph.nodes["layer2.0.downsample.0"].params["stride"] == 2
    assert "layer1.0.downsample.0" not in t.graph.nodes


def test_googlenet_follows_torchvision_quirks(built):
    t, _ = built("googlenet")
    g = t.graph
    # the "5×5" branch uses 3×3 convs; BasicConv2d's BN eps is 0.001; pools in ceil mode
    assert g.nodes["inception3a.branch3.1.conv"].params["kernel_size"] == 3
    assert g.nodes["inception3a.branch3.1.bn"].params["eps"] == 0.001
    assert g.nodes["maxpool1"].params["ceil_mode"] is True
    assert g.nodes["inception3a.branch4.0"].params["ceil_mode"] is True


def test_blocks_record_membership(built):
    t, _ = built("resnet18")
    assert t.blocks["layer1.0"] == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu1",
                                    "layer1.0.conv2", "layer1.0.bn2", "layer1.0.add",
                                    "layer1.0.relu2"]
    assert set(t.blocks["layer1.0"]) < set(t.blocks["layer1"])
    for name in sorted(TEMPLATES):
        t, _ = built(name)
        for block, ids in t.blocks.items():
            assert ids, block
            assert all(i in t.graph.nodes for i in ids), block
    t, _ = built("densenet121")
    assert len([b for b in t.blocks if b.count("denselayer") and b.count(".") == 2]) == 58
    assert "features.denseblock1.denselayer2.cat" in t.blocks["features.denseblock1.denselayer2"]


def test_layout_is_top_to_bottom_with_side_by_side_branches(built):
    t, _ = built("inception_v3")
    g = t.graph
    order = g.topological_order()
    for e in g.edges:  # every edge points down the canvas
        assert g.nodes[e.dst].position[1] > g.nodes[e.src].position[1], e
    xs = {g.nodes[s].position[0] for s in g.inputs_of("Mixed_5b.cat")}
    assert len(xs) == 4  # four branches in four columns
    assert order[0] == "input"


def test_graph_json_round_trip_keeps_counts(built):
    t, v = built("mobilenet_v2")
    g2 = Graph.loads(t.graph.dumps())
    v2 = validate(g2)
    assert v2.ok and v2.trainable_params == v.trainable_params


def test_lenet5_matches_the_same_net_built_in_torch(built):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    ref = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
                        nn.Linear(84, 10))
    _, v = built("lenet5")
    assert v.trainable_params == sum(p.numel() for p in ref.parameters())


def test_densenet201_has_about_700_nodes_and_validates(built):
    t, v = built("densenet201")
    assert 650 <= len(t.graph.nodes) <= 750
    assert v.ok and len(v.order) == len(t.graph.nodes)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_no_two_nodes_overlap_on_the_canvas(built, name):
    """Nodes on one row stay at least a card apart (the canvas draws cards 196 px wide)."""
    t, _ = built(name)
    rows: dict[float, list[float]] = {}
    for node in t.graph.nodes.values():
        rows.setdefault(node.position[1], []).append(node.position[0])
    for xs in rows.values():
        xs.sort()
        assert all(b - a >= 200 for a, b in pairwise(xs))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_edges_point_down_and_blocks_nest(built, name):
    t, _ = built(name)
    g = t.graph
    for e in g.edges:
        assert g.nodes[e.dst].position[1] > g.nodes[e.src].position[1], e
    sets = {b: set(ids) for b, ids in t.blocks.items()}
    for a, sa in sets.items():  # two blocks are nested or disjoint
        for b, sb in sets.items():
            assert not (sa & sb) or sa <= sb or sb <= sa, (a, b)


def test_modern_templates_use_the_modern_layers(built):
    t, _ = built("mobilenet_v3_large")
    g, se = t.graph, "features.4.block.2"  # squeeze-and-excitation, gated by a hard sigmoid
    assert g.nodes[f"{se}.scale_activation"].type_name == "HardSigmoid"
    assert g.nodes[f"{se}.scale_activation"].params["alpha"] == pytest.approx(1 / 6)
    assert g.nodes["features.7.block.0.2"].type_name == "HardSwish"
    assert g.nodes["features.4.block.0.1"].params["eps"] == 0.001
    assert f"{se}.mul" in t.blocks[se] and set(t.blocks[se]) < set(t.blocks["features.4"])
    t, _ = built("shufflenet_v2_x1_0")  # x.chunk(2): half passes, half goes through branch2
    assert [tuple(r) for r in t.graph.input_refs("stage2.1.cat")] == [
        ("stage2.1.chunk", 0), ("stage2.1.branch2.7", 0)]
    assert [tuple(r) for r in t.graph.input_refs("stage2.1.branch2.0")] == [("stage2.1.chunk", 1)]
    assert t.graph.nodes["stage2.1.shuffle"].params["groups"] == 2
    t, _ = built("resnext50_32x4d")
    assert t.graph.nodes["layer1.0.conv2"].params["groups"] == 32
    t, _ = built("efficientnet_b0")
    assert t.graph.nodes["features.2.0.block.2.activation"].type_name == "SiLU"


def test_convnext_maps_its_layer_scale_to_torchvision_keys(built):
    """The layer scale is a Scale node; its γ (C,) is torchvision's block parameter
    `<block>.layer_scale` (C, 1, 1), through the template's torch_keys."""
    import numpy as np

    t, _ = built("convnext_tiny")
    g = t.graph
    assert g.nodes["features.1.0.block.3"].params["over"] == "channels"
    assert g.nodes["features.1.0.layer_scale"].type_name == "Scale"
    assert len(t.torch_keys) == 18 and all(v.endswith(".layer_scale") and k == v + ".weight"
                                           for k, v in t.torch_keys.items())
    assert {"features.5.8.block.0", "features.5.8.layer_scale", "features.5.8.add"} <= set(
        t.blocks["features.5.8"])
    assert set(t.blocks["features.5.8"]) < set(t.blocks["features.5"])
    gamma = np.arange(96, dtype=np.float32)
    torch_state = t.to_torch({"features.1.0.layer_scale.weight": gamma, "classifier.2.bias": gamma},
                             {"features.1.0.layer_scale": (96, 1, 1)})
    assert torch_state["features.1.0.layer_scale"].shape == (96, 1, 1)
    assert "classifier.2.bias" in torch_state
    back = t.from_torch(torch_state, {"features.1.0.layer_scale.weight": (96,)})
    np.testing.assert_array_equal(back["features.1.0.layer_scale.weight"], gamma)
    with pytest.raises(ValueError, match="96 values"):
        t.from_torch(torch_state, {"features.1.0.layer_scale.weight": (95,)})
