"""The import report: what became of each ONNX node, the opset conversion, and the parity of
the imported network against ONNX Runtime on the original file (engine.onnx.report), and the
`import` command's report and exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.cli.main import main
from engine.onnx import importer
from engine.onnx.importer import UPGRADE_OPSET, import_onnx
from engine.onnx.report import (
    ABSORBED,
    CLEANED,
    LAYER,
    PATTERN,
    REMOVED,
    VIEW,
    check_parity,
    compare_outputs,
    parity_inputs,
)

DATA = Path(__file__).resolve().parent.parent / "data"
RESNET = DATA / "torch_resnet_small.onnx"


def _w(rng, name, *shape):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)


def _i64(name, *values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def idioms_model(batch="N") -> onnx.ModelProto:
    """Conv, x·σ(x) (SiLU), Identity, PyTorch's Shape/Gather/Unsqueeze/Concat flattening chain,
    MatMul + Add, and a Conv nothing reads (left out)."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        helper.make_node("Mul", ["c", "s"], ["m"], name="mul"),
        helper.make_node("Identity", ["m"], ["i"], name="ident"),
        helper.make_node("Conv", ["i", "dw"], ["dead"], name="dead_conv", kernel_shape=[1, 1]),
        helper.make_node("Shape", ["i"], ["sh"], name="shape"),
        helper.make_node("Gather", ["sh", "zero"], ["g"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["g", "ax0"], ["u"], name="unsq"),
        helper.make_node("Concat", ["u", "minus1"], ["tgt"], name="cat", axis=0),
        helper.make_node("Reshape", ["i", "tgt"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "mw"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "mb"], ["y"], name="bias")]
    inits = [_w(rng, "cw", 4, 3, 3, 3), _w(rng, "cb", 4), _w(rng, "dw", 2, 4, 1, 1),
             _w(rng, "mw", 4 * 6 * 6, 5), _w(rng, "mb", 5),
             numpy_helper.from_array(np.array(0, np.int64), "zero"), _i64("ax0", 0),
             _i64("minus1", -1)]
    g = helper.make_graph(nodes, "idioms",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         [batch, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="handmade", producer_version="1.2")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def channels_last_model() -> onnx.ModelProto:
    """tf2onnx's layout: an N×H×W×C input read through Transpose(0, 3, 1, 2), features
    flattened channels-last through Transpose(0, 2, 3, 1)."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Transpose", ["r"], ["tl"], name="to_nhwc", perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["tl"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], name="dense")]
    inits = [_w(rng, "cw", 4, 3, 3, 3), _w(rng, "cb", 4), _w(rng, "gw", 4 * 5 * 6, 7),
             _w(rng, "gb", 7)]
    g = helper.make_graph(nodes, "nhwc",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 7, 8, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    return m


def old_model(opset: int = 3) -> onnx.ModelProto:
    """Conv + Relu + MaxPool + Flatten + Gemm written at an opset ONNX Runtime does not run."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], name="fc", transB=1,
                              broadcast=1)]
    inits = [_w(rng, "cw", 4, 3, 3, 3), _w(rng, "cb", 4), _w(rng, "gw", 5, 64), _w(rng, "gb", 5)]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    ins += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits]
    g = helper.make_graph(nodes, "old", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 3
    onnx.checker.check_model(m)
    return m


def _save(model, tmp_path, name="m.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


# ---- the record -------------------------------------------------------------------------------

def test_every_node_of_a_pytorch_file_is_one_layer():
    imp = import_onnx(RESNET)
    rec = imp.record
    model = onnx.load(str(RESNET))
    assert [m.node for m in rec.nodes] == [n.name for n in model.graph.node]
    assert {m.outcome for m in rec.nodes} == {LAYER}
    assert all(m.layer in imp.graph.nodes for m in rec.nodes)
    assert imp.graph.nodes[rec.nodes[0].layer].type_name == rec.nodes[0].layer_type == "Conv2d"
    assert (rec.producer, rec.producer_version) == (model.producer_name,
                                                    model.producer_version)
    assert rec.opset == rec.mapped_opset == 17 and not rec.upgraded
    assert rec.layers == len(imp.graph.nodes) == len(model.graph.node) + 1
    assert rec.parameters == sum(a.size for a in imp.weights.values())
    ops = {r.op_type: r for r in rec.ops()}
    counts = {op: sum(n.op_type == op for n in model.graph.node) for op in ops}
    assert {op: r.count for op, r in ops.items()} == counts
    assert ops["Conv"].mapped_to == f"Conv2d ×{counts['Conv']}"
    assert ops["Gemm"].mapped_to == "Linear"


def test_patterns_absorbed_folded_removed_and_left_out_nodes_are_named():
    imp = import_onnx(idioms_model())
    by = {m.node: m for m in imp.record.nodes}
    assert len(by) == 12
    assert by["conv"].outcome == LAYER and by["conv"].layer_type == "Conv2d"
    sig, mul = by["sig"], by["mul"]
    assert sig.outcome == PATTERN and sig.layer_type == "SiLU" and sig.detail == "2 nodes"
    assert mul.outcome == ABSORBED and mul.layer == sig.layer
    assert imp.graph.nodes[sig.layer].type_name == "SiLU"
    assert "pattern SiLU (2 nodes)" in sig.became()
    assert mul.became() == f"part of pattern SiLU '{sig.layer}'"
    assert by["ident"].outcome == REMOVED and by["ident"].became() == "removed (Identity)"
    # the clean-up (engine/onnx/cleanup.py) folds the shape arithmetic before mapping
    assert [by[k].outcome for k in ("shape", "gather", "unsq", "cat")] == [CLEANED] * 4
    assert by["reshape"].layer_type == "Flatten"
    assert by["matmul"].layer_type == "Linear" and by["matmul"].outcome == LAYER
    assert by["bias"].outcome == ABSORBED and by["bias"].layer == by["matmul"].layer
    assert by["bias"].became() == f"absorbed into '{by['matmul'].layer}' (Linear)"
    # a node the output does not depend on is dropped by the clean-up too
    assert by["dead_conv"].outcome == CLEANED and by["dead_conv"].layer not in imp.graph.nodes
    ops = {r.op_type: r.mapped_to for r in imp.record.ops()}
    assert ops["Conv"] == "removed before mapping, Conv2d"
    assert ops["Sigmoid"] == "SiLU (pattern)" and ops["Mul"] == "part of SiLU (pattern)"
    assert ops["Add"] == "absorbed into Linear"
    text = imp.record.text(nodes=True)
    assert "handmade 1.2" in text and "opset 13, mapped as it is" in text
    assert "12 ONNX nodes -> 4 layers + input" in text and "5 removed before mapping" in text
    assert len(imp.graph.nodes) == 5
    assert "Add 'bias' -> absorbed into" in text


def test_an_upgraded_file_reports_both_opsets():
    imp = import_onnx(old_model(3))
    rec = imp.record
    assert (rec.opset, rec.mapped_opset, rec.upgraded) == (3, UPGRADE_OPSET, True)
    assert f"opset 3, upgraded to opset {UPGRADE_OPSET}" in rec.text()
    assert [m.layer_type for m in rec.nodes] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten",
                                                 "Linear"]


def test_channels_last_transposes_are_reported_as_layout():
    imp = import_onnx(channels_last_model())
    rec = imp.record
    by = {m.node: m for m in rec.nodes}
    assert rec.channels_last_input
    assert by["to_nchw"].outcome == VIEW and by["to_nhwc"].outcome == VIEW
    assert "channels-last" in rec.text()


def test_nodes_removed_before_mapping_are_still_listed(monkeypatch):
    """A clean-up before mapping (here: the upgrade, stubbed to drop the Relu) leaves nodes of
    the file that the mapped graph lacks: they are reported, not forgotten."""
    real = importer._upgrade

    def upgrade_dropping_relu(model, opset, what):
        up = real(model, opset, what)
        relu = next(n for n in up.graph.node if n.op_type == "Relu")
        for n in up.graph.node:
            n.input[:] = [relu.input[0] if i == relu.output[0] else i for i in n.input]
        up.graph.node.remove(relu)
        return up

    monkeypatch.setattr(importer, "_upgrade", upgrade_dropping_relu)
    rec = import_onnx(old_model(3)).record
    gone = [m for m in rec.nodes if m.op_type == "Relu"]
    assert len(gone) == 1 and gone[0].node == "relu"
    assert "opset conversion" in gone[0].became()
    assert len(rec.nodes) == 5


# ---- parity ---------------------------------------------------------------------------------

def test_compare_outputs_is_relative_to_each_samples_largest_output():
    theirs = np.array([[10.0, -20.0, 5.0], [0.1, 0.2, 0.05]])
    ours = theirs + np.array([[0.002, 0, 0], [0, 0.0001, 0]])
    max_abs, max_rel, top1, n = compare_outputs(ours, theirs)
    assert max_abs == pytest.approx(0.002)
    assert max_rel == pytest.approx(max(0.002 / 20, 0.0001 / 0.2))  # per sample, worst kept
    assert (top1, n) == (1.0, 2)
    swapped = theirs.copy()
    swapped[1] = [0.1, 0.05, 0.2]
    assert compare_outputs(swapped, theirs)[2:] == (0.5, 2)
    # per pixel for N×C×H×W outputs; no top-1 for one value per sample
    maps = np.zeros((1, 3, 2, 2))
    maps[0, 1] = 1
    other = maps.copy()
    other[0, 2, 0, 0] = 2
    assert compare_outputs(maps, other)[2:] == (0.75, 4)
    assert compare_outputs(np.ones((3, 1)), np.ones((3, 1)))[2:] == (None, 0)


def test_parity_of_a_pytorch_file_is_within_tolerance():
    imp = import_onnx(RESNET)
    steps = []
    p = check_parity(RESNET, imp, progress=lambda text, done, total: steps.append((done, total)))
    assert p.ok is True and p.error is None and p.mismatch is None
    assert p.max_abs < 1e-5 and p.max_rel < 1e-4
    assert (p.top1, p.top1_of, p.samples) == (1.0, 4, 4)
    assert p.input_shape == (3, 16, 16) and p.output_shape == imp.network().output_shape
    assert p.against == "'torch_resnet_small.onnx'"
    assert [d for d, _ in steps] == list(range(len(steps))) and steps[-1][0] == steps[-1][1]
    assert "matches ONNX Runtime" in p.text() and "top-1 agreement 4/4 (100%)" in p.text()


def test_parity_inputs_are_seeded():
    a, b = parity_inputs((3, 4, 4)), parity_inputs((3, 4, 4))
    assert a.dtype == np.float32 and a.shape == (4, 3, 4, 4) and np.array_equal(a, b)
    assert not np.array_equal(a, parity_inputs((3, 4, 4), seed=1))


def test_a_mismatched_import_shows_a_large_error():
    imp = import_onnx(RESNET)
    key = next(k for k in imp.weights if k.endswith(".weight"))  # the stem conv
    imp.weights[key] = imp.weights[key] + 0.5
    p = check_parity(RESNET, imp)
    assert p.ok is False
    assert p.max_rel > 1e-2 and p.max_abs > 1e-2
    assert "DIFFERS from ONNX Runtime" in p.text()


def test_parity_feeds_a_channels_last_file_its_own_layout(tmp_path):
    path = _save(channels_last_model(), tmp_path)
    p = check_parity(path, import_onnx(path))
    assert p.ok is True and p.input_shape == (3, 7, 8), p.text()


def test_parity_of_an_upgraded_file_runs_the_upgrade_and_says_so(tmp_path):
    path = _save(old_model(3), tmp_path)
    p = check_parity(path, import_onnx(path))
    assert p.ok is True, p.text()
    assert f"upgraded to opset {UPGRADE_OPSET}" in p.against and "opset 3" in p.against
    # a file whose batch is fixed (1 here) runs one sample at a time, all of them
    assert p.samples == 4 and p.top1_of == 4


def test_a_fixed_batch_is_filled_with_whole_batches(tmp_path):
    path = _save(idioms_model(batch=2), tmp_path)
    p = check_parity(path, import_onnx(path), samples=3)
    assert p.ok is True and p.samples == 4


def test_parity_from_bytes_and_cancel():
    data = RESNET.read_bytes()
    imp = import_onnx(data)
    assert check_parity(data, imp).ok is True
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) >= 2

    assert check_parity(data, imp, should_stop=stop_after_two) is None
    assert len(calls) == 2


def test_a_file_onnx_runtime_cannot_run_is_not_checked_and_says_why():
    imp = import_onnx(RESNET)
    p = check_parity(b"not a model", imp)
    assert p.ok is None and "ONNX Runtime cannot run" in p.text()


# ---- the command line ---------------------------------------------------------------------

def test_import_command_prints_the_report_and_parity(tmp_path, capsys):
    out = tmp_path / "r.cnnd"
    assert main(["import", str(RESNET), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "import report: torch_resnet_small.onnx" in err
    assert "opset 17, mapped as it is" in err
    assert any(line.split()[:3] == ["Conv", "6", "Conv2d"] for line in err.splitlines())
    assert "parity: matches ONNX Runtime" in err and "top-1 agreement 4/4" in err
    assert out.is_file()


def test_import_command_no_parity_and_nodes(tmp_path, capsys):
    path = _save(idioms_model(), tmp_path)
    assert main(["import", str(path), "--out", str(tmp_path / "i.cnnd"), "--no-parity",
                 "--nodes"]) == 0
    err = capsys.readouterr().err
    assert "parity:" not in err
    assert "Sigmoid 'sig' -> pattern SiLU (2 nodes)" in err


def test_import_command_exits_3_when_the_import_differs(tmp_path, capsys, monkeypatch):
    real = importer.import_onnx

    def wrong(*args, **kwargs):
        imp = real(*args, **kwargs)
        key = next(k for k in imp.weights if k.endswith(".weight"))
        imp.weights[key] = -imp.weights[key]
        return imp

    monkeypatch.setattr(importer, "import_onnx", wrong)
    out = tmp_path / "w.cnnd"
    assert main(["import", str(RESNET), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "DIFFERS from ONNX Runtime" in err
    assert "does not match ONNX Runtime" in err and out.is_file()  # kept for inspection


def test_import_help_lists_the_exit_codes(capsys):
    assert main(["import", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--no-parity" in text and "\n  3 " in text
