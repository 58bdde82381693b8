"""Summary: LeNet-5's figures worked out by hand, every format parses, problems are listed."""

import csv
import io
import json

import pytest

from engine.graph import sequential
from engine.summary import FORMATS, format_summary, summarize
from engine.zoo.examples import load_example

# LeNet-5 by hand (1×28×28 input):
#   conv1 6@5×5 p2: weights 6·1·5·5 + 6 bias = 156;  out 6×28×28, MACs 6·28·28·25 = 117,600
#   conv2 16@5×5:   16·6·5·5 + 16 = 2,416;           out 16×10×10, MACs 16·10·10·(6·25) = 240,000
#   fc1 400->120:   400·120 + 120 = 48,120;          MACs 48,000
#   fc2 120->84:    120·84 + 84 = 10,164;            MACs 10,080
#   fc3 84->10:     84·10 + 10 = 850;                MACs 840
LENET_PARAMS = {"conv1": 156, "conv2": 2416, "fc1": 48120, "fc2": 10164, "fc3": 850}
LENET_MACS = {"conv1": 117600, "conv2": 240000, "fc1": 48000, "fc2": 10080, "fc3": 840}
LENET_SHAPES = {"conv1": (6, 28, 28), "pool1": (6, 14, 14), "conv2": (16, 10, 10),
                "pool2": (16, 5, 5), "flatten": (400,), "fc1": (120,), "fc3": (10,)}
# receptive field r_out = r_in + (k-1)·j_in, jump j_out = j_in·s
LENET_RF = {"conv1": (5, 1), "pool1": (6, 2), "conv2": (6 + 4 * 2, 2), "pool2": (14 + 1 * 2, 4)}


@pytest.fixture(scope="module")
def lenet():
    return summarize(load_example("lenet5"))


def test_lenet_rows_by_hand(lenet):
    rows = {r.name: r for r in lenet.rows}
    for name, n in LENET_PARAMS.items():
        assert rows[name].params == n, name
    for name, m in LENET_MACS.items():
        assert rows[name].macs == m, name
    for name, shape in LENET_SHAPES.items():
        assert rows[name].output_shape == shape, name
    for name, (rf, jump) in LENET_RF.items():
        assert rows[name].receptive_field == (rf, rf), name
        assert rows[name].jump == (jump, jump), name
    assert lenet.rows[0].name == "input"


def test_lenet_totals_by_hand(lenet):
    assert lenet.total_params == 61706 == sum(LENET_PARAMS.values())
    assert lenet.trainable_params == 61706 and lenet.non_trainable_params == 0
    assert lenet.macs == sum(LENET_MACS.values()) == 416520
    assert lenet.weight_bytes == 61706 * 4
    # every layer output, input included, one sample
    acts = (784 + 2 * 6 * 28 * 28 + 6 * 14 * 14 + 2 * 16 * 10 * 10 + 16 * 5 * 5 + 400
            + 2 * 120 + 2 * 84 + 2 * 10)
    assert lenet.activation_bytes == 4 * acts
    assert lenet.ok and lenet.sequential


def test_text_is_aligned_and_has_totals(lenet):
    text = format_summary(lenet, "text")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Layer"))
    rows = [line for line in lines if line.split(" ")[0] in LENET_PARAMS]
    assert len(rows) == 5
    col = header.index("Output shape")
    for line in rows:  # the shape column starts at the same offset in every row
        assert line[col - 2:col] == "  " and line[col] != " "
    assert "61,706" in text and "416,520" in text
    assert "Non-trainable params" in text


def test_markdown_table_has_one_row_per_layer(lenet):
    md = format_summary(lenet, "markdown")
    table = [line for line in md.splitlines() if line.startswith("| ") and "Output shape" not in
             line and "Total" not in line and "params" not in line.lower() and "MACs (" not in
             line and "memory" not in line]
    assert len(table) == len(lenet.rows)
    ncols = md.splitlines()[2].count("|")
    assert all(line.count("|") == ncols for line in table)


def test_csv_parses(lenet):
    rows = list(csv.DictReader(io.StringIO(format_summary(lenet, "csv"))))
    assert [r["name"] for r in rows] == [r.name for r in lenet.rows]
    by = {r["name"]: r for r in rows}
    assert int(by["conv2"]["params"]) == 2416
    assert by["conv2"]["output_shape"] == "16×10×10"
    assert sum(int(r["params"]) for r in rows) == 61706


def test_json_parses(lenet):
    data = json.loads(format_summary(lenet, "json"))
    assert data["total_params"] == 61706
    assert data["trainable_params"] == 61706 and data["non_trainable_params"] == 0
    assert data["macs"] == 416520
    layer = next(x for x in data["layers"] if x["name"] == "conv1")
    assert layer["type"] == "Conv2d" and layer["output_shape"] == [6, 28, 28]
    assert layer["params"] == 156


def test_batchnorm_counts_as_non_trainable():
    g = sequential([("Input", "in", {"channels": 3, "height": 8, "width": 8}),
                    ("Conv2d", "c", {"out_channels": 4, "kernel_size": 3, "bias": False}),
                    ("BatchNorm2d", "bn", {})])
    s = summarize(g)
    # conv 4·3·3·3 = 108; BN: γ, β trainable (8), running mean / var non-trainable (8)
    assert (s.trainable_params, s.non_trainable_params, s.total_params) == (116, 8, 124)
    data = json.loads(format_summary(s, "json"))
    assert (data["trainable_params"], data["non_trainable_params"]) == (116, 8)


def test_invalid_graph_lists_every_problem():
    g = sequential([("Input", "in", {"channels": 1, "height": 4, "width": 4}),
                    ("Conv2d", "big", {"out_channels": 2, "kernel_size": 7}),
                    ("Flatten", "f", {}),
                    ("Linear", "fc", {"out_features": 3})])
    g.add_node("Linear", "orphan", {"out_features": 2}, node_id="orphan")  # no input
    g.add_node("Conv2d", "badparam", {"out_channels": -1}, node_id="badparam")
    s = summarize(g)
    assert not s.ok
    assert len(s.errors) >= 3
    text = format_summary(s, "text")
    for p in s.errors:
        assert p.text in text
    assert "big" in text and "orphan" in text and "badparam" in text
    assert "unknown shape (?) are not counted" in text
    data = json.loads(format_summary(s, "json"))
    assert data["valid"] is False
    assert len([p for p in data["problems"] if p["severity"] == "error"]) == len(s.errors)
    rows = {r["name"]: r for r in data["layers"]}
    assert rows["fc"]["output_shape"] is None  # downstream of the error: unknown, not stale
    for fmt in FORMATS:
        assert format_summary(s, fmt)


def test_branching_graph_shows_inputs():
    s = summarize(load_example("small_resnet"))
    assert not s.sequential
    text = format_summary(s, "text")
    assert "Inputs" in text.splitlines()[2]
    add = next(r for r in s.rows if r.name == "block2_add")
    assert sorted(add.inputs) == ["block2_bn2", "block2_proj_bn"]


def test_unknown_format(lenet):
    with pytest.raises(ValueError, match="unknown summary format"):
        format_summary(lenet, "xml")


def test_frozen_layers_count_as_non_trainable_and_are_marked():
    # conv 1->4, 3×3: 36 + 4 = 40; BN: 4 + 4 trainable, 8 statistics; fc 4*4*4=64 -> 2: 130
    g = sequential([("Input", "in", {"channels": 1, "height": 4, "width": 4}),
                    ("Conv2d", "conv", {"out_channels": 4, "kernel_size": 3, "padding": "same"}),
                    ("BatchNorm2d", "bn", {}),
                    ("Flatten", "flat", {}),
                    ("Linear", "fc", {"out_features": 2})])
    g.nodes["conv"].trainable = False
    g.nodes["bn"].trainable = False
    s = summarize(g)
    assert s.trainable_params == 130
    assert s.non_trainable_params == 40 + 16
    assert s.frozen_params == 40 + 16
    assert [r.name for r in s.rows if r.frozen] == ["conv", "bn"]
    text = format_summary(s, "text")
    header = next(ln for ln in text.splitlines() if ln.startswith("Layer"))
    assert "Frozen" in header
    conv_line = next(ln for ln in text.splitlines() if ln.startswith("conv "))
    fc_line = next(ln for ln in text.splitlines() if ln.startswith("fc "))
    assert conv_line.rstrip().endswith("frozen") and not fc_line.rstrip().endswith("frozen")
    assert "56 (56 in frozen layers)" in text
    data = json.loads(format_summary(s, "json"))
    assert [x["frozen"] for x in data["layers"]] == [False, True, True, False, False]
    assert data["frozen_params"] == 56
    rows = list(csv.DictReader(io.StringIO(format_summary(s, "csv"))))
    assert [r["frozen"] for r in rows] == ["no", "yes", "yes", "no", "no"]
    # unfrozen: the marks and the column disappear, the BN statistics stay non-trainable
    g.nodes["conv"].trainable = g.nodes["bn"].trainable = True
    s = summarize(g)
    assert (s.trainable_params, s.non_trainable_params, s.frozen_params) == (178, 8, 0)
    assert "Frozen" not in format_summary(s, "text")


def test_json_is_indented_by_two_and_sizes_are_human(lenet):
    text = format_summary(lenet, "json")
    assert text.splitlines()[1].startswith('  "name"')
    from engine.summary import fmt_accuracy, human_bytes

    assert human_bytes(512) == "512 B"
    assert human_bytes(45_700_000) == "45.7 MB"
    assert human_bytes(246_824) == "246.8 KB"
    assert fmt_accuracy(0.738) == "73.80%"
