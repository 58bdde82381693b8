"""The shipped example networks: valid, parameter counts worked out by hand, readable layout."""

import itertools
import json

import numpy as np
import pytest

from engine.errors import ProjectError
from engine.nn.network import Network
from engine.validate import validate
from engine.zoo.examples import EXAMPLES, EXAMPLES_DIR, example_path, load_example


def conv(cin, cout, k, bias=True):
    return cout * cin * k * k + (cout if bias else 0)


def fc(fin, fout):
    return fin * fout + fout


def bn(c):  # (trainable γ, β; non-trainable running mean, var)
    return 2 * c, 2 * c


LENET = conv(1, 6, 5) + conv(6, 16, 5) + fc(16 * 5 * 5, 120) + fc(120, 84) + fc(84, 10)
VGG_CONV = conv(3, 32, 3, False) + conv(32, 32, 3, False) + conv(32, 64, 3, False) + \
    conv(64, 64, 3, False)
VGG_BN = [bn(32), bn(32), bn(64), bn(64)]
VGG = (VGG_CONV + sum(t for t, _ in VGG_BN) + fc(64 * 8 * 8, 128) + fc(128, 10),
       sum(n for _, n in VGG_BN))
RES_CONV = (conv(3, 16, 3, False)  # stem
            + 2 * conv(16, 16, 3, False)  # block 1 (identity shortcut)
            + conv(16, 32, 3, False) + conv(32, 32, 3, False) + conv(16, 32, 1, False)  # block 2
            + 2 * conv(32, 32, 3, False))  # block 3
RES_BN = [bn(16)] * 3 + [bn(32)] * 5
RES = (RES_CONV + sum(t for t, _ in RES_BN) + fc(32, 10), sum(n for _, n in RES_BN))


def dw(c, k):  # depthwise: one k×k filter per channel, no bias
    return c * k * k


def mbblock(cin, exp, cout, squeeze):  # 1×1 expand, depthwise 3×3, SE (two 1×1 with bias), project
    weights = conv(cin, exp, 1, False) + dw(exp, 3) + conv(exp, squeeze, 1) + \
        conv(squeeze, exp, 1) + conv(exp, cout, 1, False)
    bns = [bn(exp), bn(exp), bn(cout)]
    return weights + sum(t for t, _ in bns), sum(n for _, n in bns)


MOBILE_BLOCKS = [mbblock(16, 32, 16, 8), mbblock(16, 64, 24, 16), mbblock(24, 96, 24, 24)]
MOBILE = (conv(1, 16, 3, False) + bn(16)[0] + sum(t for t, _ in MOBILE_BLOCKS)
          + conv(24, 96, 1, False) + bn(96)[0] + fc(96, 10),
          bn(16)[1] + sum(n for _, n in MOBILE_BLOCKS) + bn(96)[1])
EXPECTED = {"lenet5": (LENET, 0), "small_vgg": VGG, "small_resnet": RES, "mobile_se": MOBILE}


def test_lenet_is_the_classic_size():
    assert LENET == 61706


@pytest.mark.parametrize("name", [e.name for e in EXAMPLES])
def test_example_is_valid_with_hand_counted_params(name):
    g = load_example(name)
    v = validate(g)
    assert v.ok, [m.text for m in v.errors]
    assert (v.trainable_params, v.non_trainable_params) == EXPECTED[name]
    assert v.nodes[v.output_id].out_shape == (10,)
    inp = next(n for n in g.nodes.values() if n.type_name == "Input")
    net = Network.compile(g, np.random.default_rng(0))
    y = net.forward(np.zeros((2, *v.nodes[inp.id].out_shape), np.float32))
    assert y.shape == (2, 10)


@pytest.mark.parametrize("name", [e.name for e in EXAMPLES])
def test_example_layout_reads_top_to_bottom(name):
    g = load_example(name)
    assert all(nid == n.name for nid, n in g.nodes.items())  # readable ids
    for e in g.edges:  # data flows downwards on the canvas
        assert g.nodes[e.dst].position[1] > g.nodes[e.src].position[1], e
    positions = [n.position for n in g.nodes.values()]
    assert len(set(positions)) == len(positions)  # no two nodes on top of each other
    ys = sorted({p[1] for p in positions})
    assert all(80 <= b - a <= 140 for a, b in itertools.pairwise(ys))


def test_resnet_has_a_projection_shortcut():
    g = load_example("small_resnet")
    adds = [n for n in g.nodes.values() if n.type_name == "Add"]
    assert len(adds) >= 2
    proj = [n for n in g.nodes.values() if n.type_name == "Conv2d"
            and n.params["kernel_size"] == [1, 1] and n.params["stride"] == [2, 2]]
    assert len(proj) == 1
    # the projection sits beside the main path, not on it
    main_x = g.nodes["block2_conv1"].position[0]
    assert proj[0].position[0] != main_x


def test_example_files_are_plain_graph_json():
    for e in EXAMPLES:
        data = json.loads(example_path(e.name).read_text(encoding="utf-8"))
        assert data["format"] == "cnn-designer-graph"
    assert sorted(p.stem for p in EXAMPLES_DIR.glob("*.json")) == sorted(e.name for e in EXAMPLES)


def test_unknown_example_lists_the_known_ones():
    with pytest.raises(ProjectError, match="lenet5"):
        example_path("alexnet9000")
