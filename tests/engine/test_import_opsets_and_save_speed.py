"""Files older than opset 7 are upgraded before import (and a failed upgrade names its node);
the checker reads the file's own bytes; project weights are stored, and old deflated projects
still load."""

from __future__ import annotations

import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.cli.onnx import main as onnx_main
from engine.graph import sequential
from engine.nn.network import Network
from engine.onnx.importer import UPGRADE_OPSET, OnnxImportError, _upgrade, import_onnx
from engine.project import GRAPH_MEMBER, META_MEMBER, WEIGHTS_MEMBER, load_project, save_project

RNG = np.random.default_rng(0)


def _w(name: str, *shape: int, positive: bool = False) -> onnx.TensorProto:
    a = RNG.standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(np.abs(a) + 0.5 if positive else a, name)


def _model(nodes, inits, opset: int, out_dims=None) -> onnx.ModelProto:
    # IR 3, as files of that time: every initializer is a graph input too
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    ins += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits]
    g = helper.make_graph(nodes, "old", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 3
    return m


def conv_relu_pool_gemm(opset: int) -> onnx.ModelProto:
    """Conv + Relu + MaxPool + Flatten + Gemm, valid at opset 1 and on."""
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], transB=1,
                              **({"broadcast": 1} if opset < 7 else {}))]
    inits = [_w("cw", 4, 3, 3, 3), _w("cb", 4), _w("gw", 5, 64), _w("gb", 5)]
    return _model(nodes, inits, opset, [1, 5])


def batchnorm_reshape(opset: int) -> onnx.ModelProto:
    """BatchNormalization in its old form (is_test, spatial; consumed_inputs before opset 6)
    and Reshape with its `shape` attribute (before opset 5)."""
    extra = {"consumed_inputs": [0, 0, 0, 1, 1]} if opset < 6 else {}
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"],
                              epsilon=1e-3, is_test=1, spatial=1, **extra),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Reshape", ["r"], ["y"], shape=[1, 144]) if opset < 5 else
             helper.make_node("Reshape", ["r", "shape"], ["y"])]
    inits = [_w("cw", 4, 3, 3, 3), _w("s", 4), _w("b", 4), _w("m", 4),
             _w("v", 4, positive=True)]
    if opset >= 5:
        inits.append(numpy_helper.from_array(np.array([1, 144], np.int64), "shape"))
    return _model(nodes, inits, opset, [1, 144])


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("opset", [1, 3, 6])
@pytest.mark.parametrize("build", [conv_relu_pool_gemm, batchnorm_reshape])
def test_old_opsets_are_upgraded_and_match_onnxruntime(tmp_path, build, opset):
    model = build(opset)
    onnx.checker.check_model(model)
    path = tmp_path / f"old{opset}.onnx"
    onnx.save(model, str(path))
    imp = import_onnx(path)
    assert imp.opset == opset  # the file's own opset, as the project's metadata records it
    assert f"upgraded from opset {opset} to {UPGRADE_OPSET}" in " ".join(imp.warnings)
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = _ort(_upgrade(model, opset, "the model"), x)  # ORT runs opset 7 and on
    got = imp.network().forward(x, training=False).reshape(ref.shape)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_cli_import_prints_the_upgrade_as_a_note(tmp_path, capsys):
    path = tmp_path / "old.onnx"
    onnx.save(conv_relu_pool_gemm(3), str(path))
    out = tmp_path / "old.cnnd"
    assert onnx_main(["import", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: upgraded from opset 3 to {UPGRADE_OPSET}" in err
    assert load_project(out).meta["onnx_opset"] == 3


def test_a_failed_upgrade_names_the_node_and_op(tmp_path):
    # Cast-1 (its `to` a string) is valid to the checker but has no adapter to Cast-6
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Cast", ["r"], ["y"], name="cast1", to="FLOAT")]
    model = _model(nodes, [], 1, [1, 3, 8, 8])
    onnx.checker.check_model(model)
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(OnnxImportError) as e:
        import_onnx(path)
    msg = str(e.value)
    assert "opset 1" in msg and "Cast node 'cast1'" in msg and "nothing was imported" in msg
    assert "/project/" not in msg  # the converter's source location is left out


def test_bad_files_are_still_refused_by_the_checker(tmp_path):
    m = conv_relu_pool_gemm(13)
    m.graph.node[1].input[0] = "nowhere"
    path = tmp_path / "bad.onnx"
    path.write_bytes(m.SerializeToString())
    for source in (path, path.read_bytes(), m):
        with pytest.raises(OnnxImportError, match="is not a valid ONNX model"):
            import_onnx(source)


# ---- project files ------------------------------------------------------------------------

def _net_and_weights():
    g = sequential([("Input", {"channels": 1, "height": 4, "width": 4}), ("Flatten", {}),
                    ("Linear", {"out_features": 300})])
    net = Network.compile(g, np.random.default_rng(1))
    return g, {k: np.asarray(v) for k, v in net.state_dict().items()}


def test_weights_are_stored_and_json_members_deflated(tmp_path):
    g, w = _net_and_weights()
    p = save_project(tmp_path / "p.cnnd", g, w)
    with zipfile.ZipFile(p) as z:
        kinds = {i.filename: i.compress_type for i in z.infolist()}
    assert kinds[WEIGHTS_MEMBER] == zipfile.ZIP_STORED
    assert kinds[GRAPH_MEMBER] == kinds[META_MEMBER] == zipfile.ZIP_DEFLATED
    back = load_project(p).weights
    assert all(np.array_equal(back[k], w[k]) for k in w)


def test_a_project_saved_deflated_the_old_way_loads_bit_for_bit(tmp_path):
    g, w = _net_and_weights()
    new = save_project(tmp_path / "new.cnnd", g, w)
    old = tmp_path / "old.cnnd"
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w", zipfile.ZIP_DEFLATED) as dst:
        for i in src.infolist():
            dst.writestr(i.filename, src.read(i))
    with zipfile.ZipFile(old) as z:
        assert z.getinfo(WEIGHTS_MEMBER).compress_type == zipfile.ZIP_DEFLATED
    back = load_project(old).weights
    assert set(back) == set(w)
    for k in w:
        assert back[k].dtype == np.float32
        assert back[k].tobytes() == w[k].astype(np.float32).tobytes()


def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    g, w = _net_and_weights()
    p = save_project(tmp_path / "p.cnnd", g, w)
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(Exception, match="unchanged"):
        save_project(p, g, {k: v + 1 for k, v in w.items()})
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["p.cnnd"]
