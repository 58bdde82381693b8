"""The GroupNormalization op (opset 21: γ, β per channel) imports as a GroupNorm layer that
computes what ONNX Runtime computes on the original file."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from engine.onnx.importer import import_onnx


def _model(opset: int, per_channel: bool, c=12, g=4):
    rng = np.random.default_rng(opset)
    n = c if per_channel else g
    inits = [numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "scale"),
             numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "bias")]
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"],
                            num_groups=g, epsilon=1e-3)
    graph = helper.make_graph(
        [node], "gn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 5, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("opset,per_channel", [(21, True)])
def test_group_normalization_imports_and_matches_onnx_runtime(opset, per_channel, tmp_path):
    model = _model(opset, per_channel)
    path = tmp_path / f"gn{opset}.onnx"
    onnx.save(model, path)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"this onnxruntime cannot run GroupNormalization-{opset}: {exc}")
    result = import_onnx(path)
    assert [n.type_name for n in result.graph.nodes.values()].count("GroupNorm") == 1
    x = np.random.default_rng(0).standard_normal((1, 12, 5, 6)).astype(np.float32)
    want = sess.run(None, {"x": x})[0]
    assert np.abs(result.network().forward(x) - want).max() <= 1e-5
