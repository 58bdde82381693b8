"""Acceptance (issue 13): the ONNX specification's semantics of the ops the importer maps hold
through import -> engine, attribute by attribute and opset form by opset form.

Each case is a tiny model of one node (or a few) written with onnx.helper as another tool would
write it, at the opset whose form it uses; the engine's output on the imported graph must equal
ONNX Runtime's on the original file within 1e-5 absolute. Files older than opset 7 are upgraded
by the importer (onnx.version_converter); where ONNX Runtime has no kernel of such an old op
version, ONNX's own reference implementation runs the original file instead. Where the engine
cannot represent a form, the import must refuse it with a message that names the node and says
why (asserted word for word where it matters).

Attributes already held elsewhere are not repeated here: Conv's auto_pad forms and the common
pool attributes (test_onnx.py), pooling with dilations / padding beyond half the kernel against
a loop reference (test_pooling_semantics.py), Conv / Relu / MaxPool / Gemm / BatchNormalization /
Reshape at opsets 1, 3, 6 (test_import_opsets_and_save_speed.py).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from engine.onnx.importer import OnnxImportError, import_onnx

ATOL = 1e-5
BATCH = 2


# ---- building, running, comparing ----------------------------------------------------------

def make(nodes, in_shape, opset: int, inits: dict | None = None, batch="N"):
    """A model of `nodes` reading "x" (batch × in_shape, the batch open unless given) and
    writing "y", at `opset`, with the oldest IR version that opset allows (IR 3 files list
    their initializers as inputs)."""
    inits = {k: np.asarray(v) for k, v in (inits or {}).items()}
    tensors = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    opsets = [helper.make_opsetid("", opset)]
    ir = max(3, helper.find_min_ir_version_for(opsets))
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *in_shape])]
    if ir < 4:
        ins += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in tensors]

    def build(out, ir_version):
        model = helper.make_model(helper.make_graph(nodes, "spec", ins, [out], tensors),
                                  opset_imports=opsets)
        model.ir_version = ir_version
        return model

    # the output's type as shape inference gives it (IR 3 requires a shape)
    unknown = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inferred = onnx.shape_inference.infer_shapes(build(unknown, max(ir, 4))).graph.value_info
    out = next((v for v in inferred if v.name == "y" and v.type.tensor_type.HasField("shape")),
               helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"]))
    model = build(out, ir)
    onnx.checker.check_model(model)
    return model


def node(op: str, inputs, **attrs):
    return helper.make_node(op, list(inputs), ["y"], name=f"the_{op.lower()}", **attrs)


def run_ort(model, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ORT warns about every opset < 7 file
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def reference(model, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime on the file's bytes. Where it has no kernel for an op version older than
    opset 7: ONNX's reference implementation (onnx.reference) on the same file, and where that
    has none either (Dropout-6), ONNX Runtime on the file upgraded to opset 7 by
    onnx.version_converter (the one step the importer's upgrade starts with)."""
    from onnx.reference import ReferenceEvaluator

    try:
        return run_ort(model, x)
    except Exception as exc:
        if "Could not find an implementation" not in str(exc):
            raise
    try:
        return np.asarray(ReferenceEvaluator(model).run(None, {"x": x})[0], np.float32)
    except RuntimeError as exc:
        if "No implementation for operator" not in str(exc):
            raise
    return run_ort(onnx.version_converter.convert_version(model, 7), x)


def check(model, in_shape, seed=0, types=None, batch=BATCH, keep_dropout=False):
    """Import `model`; the engine must compute what the reference computes on the file."""
    x = np.random.default_rng(seed).standard_normal((batch, *in_shape)).astype(np.float32)
    want = reference(model, x)
    imported = import_onnx(model.SerializeToString(), keep_dropout=keep_dropout)
    got = imported.network().forward(x)
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want))) <= ATOL
    if types is not None:
        assert [n.type_name for n in imported.graph.nodes.values()][1:] == types
    return imported


def refused(model, *fragments: str) -> str:
    """The import fails with one OnnxImportError whose text holds every fragment."""
    with pytest.raises(OnnxImportError) as err:
        import_onnx(model.SerializeToString())
    text = str(err.value)
    for f in fragments:
        assert f in text, text
    assert "nothing was imported" in text


def rand(*shape, seed=1, low=None):
    r = np.random.default_rng(seed)
    if low is not None:
        return r.uniform(low, low + 1.0, shape).astype(np.float32)
    return r.standard_normal(shape).astype(np.float32)


# ---- Conv ----------------------------------------------------------------------------------

CONV = [  # (attributes, weight shape (O, I/g, kh, kw), bias, input C×H×W)
    ({"pads": [3, 0, 2, 2]}, (4, 3, 3, 3), True, (3, 6, 7)),  # beyond half the kernel
    ({"group": 2, "pads": [1, 1, 1, 1]}, (6, 2, 3, 3), True, (4, 6, 6)),
    ({"group": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]}, (4, 1, 3, 3), True, (4, 7, 7)),
    ({"group": 3}, (6, 1, 3, 2), False, (3, 5, 6)),  # depthwise multiplier 2
    ({"dilations": [2, 3], "strides": [2, 1], "pads": [1, 2, 1, 2]}, (3, 3, 3, 3), True,
     (3, 9, 10)),
    ({"kernel_shape": [2, 2], "strides": [3, 3]}, (3, 3, 2, 2), True, (3, 8, 8)),
    ({}, (5, 3, 1, 1), False, (3, 4, 5)),
    ({"auto_pad": "SAME_UPPER"}, (3, 3, 2, 4), True, (3, 5, 7)),  # even kernel: odd cell last
    ({"auto_pad": "SAME_LOWER", "strides": [2, 3]}, (3, 3, 4, 2), True, (3, 7, 8)),
    ({"auto_pad": "VALID", "strides": [2, 2], "dilations": [2, 1]}, (3, 3, 3, 3), False,
     (3, 9, 8)),
]


@pytest.mark.parametrize("opset", [6, 11, 21])
@pytest.mark.parametrize("attrs,w_shape,bias,in_shape", CONV)
def test_conv(attrs, w_shape, bias, in_shape, opset):
    inits = {"w": rand(*w_shape), **({"b": rand(w_shape[0], seed=2)} if bias else {})}
    m = make([node("Conv", ["x", "w", "b"] if bias else ["x", "w"], **attrs)], in_shape, opset,
             inits)
    check(m, in_shape, types=["Conv2d"])


# ---- ConvTranspose -------------------------------------------------------------------------

CONV_T = [  # (attributes, weight shape (I, O/g, kh, kw), bias, input C×H×W)
    ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, (3, 4, 3, 3), True,
     (3, 4, 5)),
    ({"strides": [2, 3], "dilations": [2, 1]}, (3, 2, 3, 2), False, (3, 3, 4)),
    ({"group": 2, "strides": [2, 2]}, (4, 3, 2, 2), True, (4, 3, 3)),
    ({"pads": [2, 1, 1, 0], "strides": [2, 2]}, (2, 3, 4, 3), True, (2, 4, 4)),  # begin > end
    ({"auto_pad": "VALID", "strides": [3, 2]}, (2, 2, 3, 3), True, (2, 3, 3)),
    ({}, (2, 3, 1, 1), False, (2, 4, 4)),
]


@pytest.mark.parametrize("opset", [6, 11, 17])
@pytest.mark.parametrize("attrs,w_shape,bias,in_shape", CONV_T)
def test_conv_transpose(attrs, w_shape, bias, in_shape, opset):
    inits = {"w": rand(*w_shape), **({"b": rand(w_shape[1] * attrs.get("group", 1),
                                                 seed=2)} if bias else {})}
    m = make([node("ConvTranspose", ["x", "w", "b"] if bias else ["x", "w"], **attrs)],
             in_shape, opset, inits)
    check(m, in_shape, types=["ConvTranspose2d"])


@pytest.mark.parametrize("attrs,message", [
    ({"output_shape": [9, 9], "strides": [2, 2]}, "the output_shape attribute is not supported"),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, "auto_pad SAME_UPPER is not supported"),
    ({"pads": [0, 0, 1, 1], "strides": [2, 2]}, "crop more at the end than at the start"),
])
def test_conv_transpose_forms_the_engine_lacks_are_refused(attrs, message):
    m = make([node("ConvTranspose", ["x", "w"], **attrs)], (2, 4, 4), 11,
             {"w": rand(2, 3, 3, 3)})
    refused(m, "ConvTranspose node 'the_convtranspose'", message)


# ---- MaxPool, AveragePool, the global pools --------------------------------------------------

MAX_POOL = [  # (opset, attributes, input C×H×W)
    (6, {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}, (2, 7, 6)),
    (8, {"kernel_shape": [2, 2], "strides": [2, 2], "storage_order": 1}, (2, 6, 7)),
    (10, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, (2, 8, 8)),
    (10, {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 2]}, (2, 9, 8)),
    (11, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [2, 2, 2, 0], "ceil_mode": 1},
     (2, 7, 8)),  # pads beyond half; the last window starting in the end padding is dropped
    (12, {"kernel_shape": [3, 3], "strides": [1, 2], "auto_pad": "SAME_UPPER"}, (2, 6, 7)),
    (12, {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "VALID"}, (2, 7, 7)),
    (12, {"kernel_shape": [2, 3], "strides": [3, 1], "dilations": [1, 2],
          "pads": [1, 2, 0, 1]}, (2, 8, 9)),
]


@pytest.mark.parametrize("opset,attrs,in_shape", MAX_POOL)
def test_max_pool(opset, attrs, in_shape):
    m = make([node("MaxPool", ["x"], **attrs)], in_shape, opset)
    check(m, in_shape, types=["MaxPool2d"])


def test_max_pool_indices_output_is_refused():
    n = helper.make_node("MaxPool", ["x"], ["p", "idx"], name="pool", kernel_shape=[2, 2])
    m = make([n, helper.make_node("Cast", ["idx"], ["idx_f"], to=TensorProto.FLOAT),
              helper.make_node("Add", ["p", "idx_f"], ["y"])], (2, 4, 4), 12)
    refused(m, "MaxPool node 'pool'", "the Indices output of MaxPool is not supported")


AVG_POOL = [  # (opset, attributes, input C×H×W)
    (6, {"kernel_shape": [3, 2], "strides": [2, 1]}, (2, 7, 7)),  # padding: see below
    (7, {"kernel_shape": [3, 2], "pads": [2, 1, 0, 1], "count_include_pad": 1}, (2, 6, 6)),
    (7, {"kernel_shape": [3, 2], "pads": [2, 1, 0, 1], "count_include_pad": 0}, (2, 6, 6)),
    (10, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 0, 1, 0],
          "count_include_pad": 1}, (2, 8, 9)),
    (11, {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, (2, 5, 7)),
    (11, {"kernel_shape": [3, 3], "strides": [2, 1], "auto_pad": "SAME_UPPER",
          "count_include_pad": 1}, (2, 6, 5)),
    (19, {"kernel_shape": [2, 2], "dilations": [2, 3], "pads": [1, 1, 1, 1],
          "count_include_pad": 0}, (2, 7, 8)),
    (19, {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [2, 2], "ceil_mode": 1},
     (2, 9, 10)),
]


@pytest.mark.parametrize("opset,attrs,in_shape", AVG_POOL)
def test_average_pool(opset, attrs, in_shape):
    m = make([node("AveragePool", ["x"], **attrs)], in_shape, opset)
    check(m, in_shape, types=["AvgPool2d"])


def test_average_pool_before_opset_7_leaves_the_padding_out_as_its_spec_says():
    """AveragePool-1 "divides by the number of elements exclude pad" (its spec; opset 7 made
    that count_include_pad's default 0). ONNX Runtime 1.32 and onnx.reference both count the
    padding for opset < 7 files, so the engine is held to ONNX Runtime on the same node at
    opset 7, where both agree with the spec."""
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    old = make([node("AveragePool", ["x"], **attrs)], (2, 7, 7), 6)
    same = make([node("AveragePool", ["x"], count_include_pad=0, **attrs)], (2, 7, 7), 7)
    x = np.random.default_rng(0).standard_normal((BATCH, 2, 7, 7)).astype(np.float32)
    got = import_onnx(old.SerializeToString()).network().forward(x)
    assert float(np.max(np.abs(got - run_ort(same, x)))) <= ATOL


@pytest.mark.parametrize("op,layer", [("GlobalAveragePool", "GlobalAvgPool2d"),
                                      ("GlobalMaxPool", "GlobalMaxPool2d")])
@pytest.mark.parametrize("opset", [1, 13, 21])
def test_global_pools(op, layer, opset):
    m = make([node(op, ["x"])], (3, 5, 4), opset)
    check(m, (3, 5, 4), types=[layer])


# ---- BatchNormalization, LRN -----------------------------------------------------------------

def bn_stats(c=3):
    return {"s": rand(c, low=0.5), "b": rand(c, seed=2), "m": rand(c, seed=3),
            "v": rand(c, seed=4, low=0.5)}


@pytest.mark.parametrize("opset,attrs", [
    (6, {"is_test": 1, "spatial": 1, "epsilon": 1e-3}),
    (7, {"spatial": 1, "momentum": 0.8}),
    (9, {"epsilon": 0.01}),
    (14, {"training_mode": 0}),
    (15, {"epsilon": 1e-4, "momentum": 0.99}),
])
def test_batch_normalization(opset, attrs):
    m = make([node("BatchNormalization", ["x", "s", "b", "m", "v"], **attrs)], (3, 4, 5),
             opset, bn_stats())
    check(m, (3, 4, 5), types=["BatchNorm2d"])


def test_batch_normalization_forms_the_engine_lacks_are_refused():
    # spatial=0 (opset 7-8): statistics per value, not per channel
    stats = {k: np.broadcast_to(v[:, None, None], (3, 4, 5)).copy()
             for k, v in bn_stats().items()}
    m = make([node("BatchNormalization", ["x", "s", "b", "m", "v"], spatial=0)], (3, 4, 5), 7,
             stats)
    refused(m, "BatchNormalization node 'the_batchnormalization'", "spatial=0 is not supported")
    n = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"],
                         name="bn", training_mode=1)
    m = make([n], (3, 4, 5), 14, bn_stats())
    refused(m, "BatchNormalization node 'bn'", "training mode is not supported")


@pytest.mark.parametrize("opset", [6, 13])
@pytest.mark.parametrize("attrs", [
    {"size": 3},  # ONNX's defaults: alpha 1e-4, beta 0.75, bias 1
    {"size": 4, "alpha": 0.01, "beta": 0.5, "bias": 2.0},  # even: one more channel below
    {"size": 5, "alpha": 0.1, "beta": 1.5, "bias": 0.5},
])
def test_lrn(attrs, opset):
    m = make([node("LRN", ["x"], **attrs)], (6, 3, 3), opset)
    if attrs["size"] % 2:
        check(m, (6, 3, 3), types=["LocalResponseNorm"])
        return
    # ONNX Runtime 1.32 refuses an even size, which the spec defines, and onnx.reference's LRN
    # (onnx 1.23) loops over the batch axis instead of the channels: the spec's formula, looped
    x = np.random.default_rng(0).standard_normal((BATCH, 6, 3, 3)).astype(np.float32)
    got = import_onnx(m.SerializeToString()).network().forward(x)
    assert float(np.max(np.abs(got - spec_lrn(x, **attrs)))) <= ATOL


def spec_lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    """ONNX's LRN, float64: square_sum over channels max(0, c - floor((size - 1) / 2)) ..
    min(C - 1, c + ceil((size - 1) / 2)); y = x / (bias + alpha / size · square_sum)^beta."""
    x = np.asarray(x, np.float64)
    y = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - (size - 1) // 2), min(channels - 1, c + size // 2)
        square_sum = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        y[:, c] = x[:, c] / (bias + alpha / size * square_sum) ** beta
    return y


# ---- Flatten, Reshape, Gemm, MatMul, Softmax --------------------------------------------------

@pytest.mark.parametrize("opset", [6, 9, 11, 13, 21])
@pytest.mark.parametrize("attrs", [{}, {"axis": 1}])
def test_flatten(attrs, opset):
    m = make([node("Flatten", ["x"], **attrs)], (3, 2, 4), opset)
    check(m, (3, 2, 4), types=["Flatten"])


def test_flatten_negative_axis_from_opset_11():
    m = make([node("Flatten", ["x"], axis=-3)], (3, 2, 4), 11)
    check(m, (3, 2, 4), types=["Flatten"])


@pytest.mark.parametrize("op,attrs,target,says", [
    ("Flatten", {"axis": 0}, None,
     "Flatten at axis 0 folds the batch axis into the features (N×3×2×4 -> 1×(N·24))"),
    ("Flatten", {"axis": -4}, None, "Flatten at axis 0 folds the batch axis into the features"),
    ("Flatten", {"axis": 2}, None,
     "Flatten at axis 2 folds the batch axis into the first axis (N×3×2×4 -> (N·3)×8)"),
    ("Reshape", {}, [-1], "Reshape of N×3×2×4 to [-1] folds the batch axis into the features"),
    ("Reshape", {}, [1, -1], "folds the batch axis into the other axes"),
])
def test_flattening_the_batch_into_the_features_is_declined(op, attrs, target, says):
    inits = {} if target is None else {"shape": np.array(target, np.int64)}
    m = make([node(op, ["x"] if target is None else ["x", "shape"], **attrs)], (3, 2, 4), 13,
             inits)
    refused(m, f"{op} node 'the_{op.lower()}'", says, "which no per-sample layer graph can "
            "express")


GEMM = [  # (opset, attributes, B transposed in the file, C's shape or None)
    (6, {"transB": 1, "broadcast": 1}, False, (5,)),  # the batch open
    (6, {"transB": 1, "broadcast": 1}, False, (1, 5)),  # batch 1, as most files then had
    (7, {"transB": 1, "alpha": 0.5}, False, (1, 5)),
    (9, {"beta": 2.0}, True, (5,)),
    (11, {"transB": 1}, False, None),  # C optional from opset 11
    (13, {"transB": 1, "alpha": 1.5, "beta": 0.25}, False, (1,)),  # a scalar C broadcast
    (13, {}, True, (1, 5)),
]


@pytest.mark.parametrize("opset,attrs,b_t,c_shape", GEMM)
def test_gemm(opset, attrs, b_t, c_shape):
    w = rand(5, 12)
    inits = {"w": w.T.copy() if b_t else w}
    ins = ["f", "w"]
    if c_shape is not None:
        inits["c"] = rand(*c_shape, seed=3)
        ins.append("c")
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ins, ["y"], name="gemm", **attrs)]
    batch = 1 if c_shape == (1, 5) and opset == 6 else "N"
    m = make(nodes, (3, 2, 2), opset, inits, batch=batch)
    check(m, (3, 2, 2), types=["Flatten", "Linear"], batch=1 if batch == 1 else BATCH)


@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_per_channel_broadcast_before_opset_7(op):
    """Add / Mul with broadcast=1, axis=1 of a (C,) constant: the per-channel bias or scale of
    files before opset 7 (Caffe2's Scale layer as Mul + Add). ONNX Runtime has no Add-6 /
    Mul-6 kernel, so the reference is the same graph at opset 7 with the constant shaped
    (C, 1, 1), which is what broadcast=1, axis=1 means."""
    w, b = rand(4, 3, 3, 3), rand(4, seed=2, low=0.5)
    conv = helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3])
    old = make([conv, helper.make_node(op, ["c", "b"], ["y"], broadcast=1, axis=1)],
               (3, 6, 6), 6, {"w": w, "b": b}, batch=1)
    same = make([conv, helper.make_node(op, ["c", "b"], ["y"])], (3, 6, 6), 7,
                {"w": w, "b": b.reshape(4, 1, 1)}, batch=1)
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    got = import_onnx(old.SerializeToString()).network().forward(x)
    assert float(np.max(np.abs(got - run_ort(same, x)))) <= ATOL


def test_gemm_with_the_batch_transposed_is_refused():
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="gemm", transA=1)]
    m = make(nodes, (3, 2, 2), 13, {"w": rand(5, 12)})
    refused(m, "Gemm node 'gemm'", "transA=1 (the batch transposed) is not supported")


@pytest.mark.parametrize("flat,bias", [(True, False), (True, True), (False, True),
                                       (False, False)])
@pytest.mark.parametrize("opset", [9, 13])
def test_matmul_by_a_constant(flat, bias, opset):
    """N×F by (F, 7), or N×C×H×W by (W, 7) (numpy's matmul over the last axis)."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"])] if flat else []
    nodes.append(helper.make_node("MatMul", ["f" if flat else "x", "w"], ["mm" if bias else "y"],
                                  name="mm"))
    inits = {"w": rand(60 if flat else 5, 7)}
    if bias:
        nodes.append(helper.make_node("Add", ["mm", "b"], ["y"], name="bias"))
        inits["b"] = rand(7, seed=2)
    m = make(nodes, (3, 4, 5), opset, inits)
    check(m, (3, 4, 5), types=["Flatten", "Linear"] if flat else ["Linear"])


def test_matmul_by_a_3d_constant_is_refused():
    m = make([node("MatMul", ["x", "w"])], (3, 4, 5), 13, {"w": rand(3, 5, 2)})
    refused(m, "MatMul node 'the_matmul'", "MatMul with a 3-D right-hand side is not supported")


@pytest.mark.parametrize("opset,attrs,flat", [
    (6, {}, True),
    (11, {"axis": 1}, True),
    (11, {"axis": -1}, True),
    (11, {}, False),  # the 2-D coercion of a C×1×1 map is over its channels
    (13, {}, True),
    (13, {"axis": 1}, False),
    (13, {"axis": -3}, False),
])
def test_softmax(opset, attrs, flat):
    nodes = [helper.make_node("Flatten", ["x"], ["f"])] if flat else []
    nodes.append(node("Softmax", ["f" if flat else "x"], **attrs))
    m = make(nodes, (7, 1, 1), opset)
    check(m, (7, 1, 1), types=["Flatten", "Softmax"] if flat else ["Softmax"])


def test_softmax_over_the_channels_of_a_map():
    m = make([node("Softmax", ["x"], axis=1)], (4, 3, 5), 13)  # each position on its own
    check(m, (4, 3, 5), types=["Softmax"])


@pytest.mark.parametrize("opset,attrs", [(11, {"axis": 1}), (13, {}), (13, {"axis": 2})])
def test_softmax_over_another_axis_is_refused(opset, attrs):
    m = make([node("Softmax", ["x"], **attrs)], (4, 3, 5), opset)
    refused(m, "Softmax node 'the_softmax'", "only the class / channel axis 1 is")


# ---- Resize and Upsample -----------------------------------------------------------------------

def resize(opset: int, attrs: dict, scales=None, sizes=None):
    """Resize nodes in the form of `opset`: (X, scales) at 10; (X, roi, scales[, sizes]) at 11
    with roi required; roi and scales optional ("") from 13. Sizes (H', W') as PyTorch writes
    them: N×C read by Shape and joined to them, or from opset 18 alone with axes [2, 3].
    Returns (nodes, initializers)."""
    inits, nodes = {}, []
    if opset == 10:
        inits["scales"] = np.array(scales, np.float32)
        return [node("Resize", ["x", "scales"], **attrs)], inits
    ins = ["x", "roi" if opset == 11 else ""]
    if opset == 11:
        inits["roi"] = np.array([], np.float32)
    if sizes is None:
        ins.append("scales")
        inits["scales"] = np.array(scales, np.float32)
    elif opset >= 18:
        ins += ["", "sizes"]
        inits["sizes"] = np.array(sizes, np.int64)
        attrs = {"axes": [2, 3], **attrs}
    else:
        if opset == 11:
            inits["scales"] = np.array([], np.float32)
        ins += ["scales" if opset == 11 else "", "sizes"]
        inits.update(start=np.array([0], np.int64), end=np.array([2], np.int64),
                     hw=np.array(sizes, np.int64))
        nodes = [helper.make_node("Shape", ["x"], ["shape"]),
                 helper.make_node("Slice", ["shape", "start", "end"], ["nc"]),
                 helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0)]
    return [*nodes, node("Resize", ins, **attrs)], inits


RESIZE = [  # (opset, attributes, scales or None, sizes or None)
    (10, {"mode": "nearest"}, [1, 1, 2, 2], None),
    (11, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
          "nearest_mode": "floor"}, [1, 1, 3, 3], None),
    (11, {"mode": "nearest"}, [1, 1, 2, 2], None),  # half_pixel, round_prefer_floor
    (11, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 2, 2],
     None),  # round_prefer_floor: o / 2 rounds as floor does (not at factor 3: refused below)
    (11, {"mode": "nearest", "coordinate_transformation_mode": "pytorch_half_pixel",
          "nearest_mode": "round_prefer_ceil"}, [1, 1, 3, 3], None),
    (11, {"mode": "linear"}, [1, 1, 2, 2], None),  # half_pixel
    (11, {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, None,
     [7, 9]),  # to a size, not a multiple
    (13, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
          "nearest_mode": "floor"}, None, [6, 7]),
    (13, {"mode": "nearest", "coordinate_transformation_mode": "half_pixel"}, None, [8, 15]),
    (13, {"mode": "linear"}, [1, 1, 3, 3], None),
    (18, {"mode": "linear"}, None, [8, 10]),
    (19, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
          "nearest_mode": "floor"}, [1, 1, 4, 4], None),
]


@pytest.mark.parametrize("opset,attrs,scales,sizes", RESIZE)
def test_resize(opset, attrs, scales, sizes):
    nodes, inits = resize(opset, attrs, scales, sizes)
    m = make(nodes, (3, 4, 5), opset, inits)
    check(m, (3, 4, 5), types=["Upsample"])


@pytest.mark.parametrize("opset,attrs,scales,message", [
    (10, {"mode": "linear"}, [1, 1, 2, 2],
     "Resize mode 'linear' (opset 10) maps coordinates asymmetrically"),
    (11, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 2, 2],
     "coordinate_transformation_mode 'align_corners' is not supported"),
    (11, {"mode": "cubic"}, [1, 1, 2, 2], "Resize mode 'cubic'"),
    (11, {"mode": "nearest", "nearest_mode": "ceil"}, [1, 1, 2, 2], "nearest_mode 'ceil'"),
    (11, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 3, 3],
     "nearest_mode 'round_prefer_floor'"),
    (13, {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
          "nearest_mode": "floor"}, [1, 1, 2, 2], "nearest_mode 'floor'"),
    (13, {"mode": "linear"}, [1, 1, 1.5, 1.5], "not one whole-number factor"),
    (13, {"mode": "linear"}, [1, 2, 2, 2], "resize the batch or channels"),
    (18, {"mode": "linear", "antialias": 1}, [1, 1, 2, 2], "antialias"),
    (19, {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
     [1, 1, 2, 2], "'half_pixel_symmetric' is not supported"),
])
def test_resize_forms_the_engine_lacks_are_refused(opset, attrs, scales, message):
    nodes, inits = resize(opset, attrs, scales)
    m = make(nodes, (3, 4, 5), opset, inits)
    refused(m, "Resize node 'the_resize'", message)


@pytest.mark.parametrize("opset,factor", [(7, [1.0, 1.0, 2.0, 2.0]), (9, [1.0, 1.0, 3.0, 3.0])])
def test_upsample(opset, factor):
    if opset == 7:  # scales an attribute
        m = make([node("Upsample", ["x"], mode="nearest", scales=factor)], (3, 4, 5), opset)
    else:  # an input from opset 9
        m = make([node("Upsample", ["x", "s"], mode="nearest")], (3, 4, 5), opset,
                 {"s": np.array(factor, np.float32)})
    check(m, (3, 4, 5), types=["Upsample"])


def test_upsample_linear_is_refused():
    m = make([node("Upsample", ["x"], mode="linear", scales=[1.0, 1.0, 2.0, 2.0])], (3, 4, 5), 7)
    refused(m, "Upsample node 'the_upsample'", "only 'nearest' is supported")


# ---- activations and Dropout -------------------------------------------------------------------

ACTIVATIONS = [  # (op, attributes, layer, opsets)
    ("Relu", {}, "ReLU", [6, 13, 14]),
    ("LeakyRelu", {}, "LeakyReLU", [6, 16]),
    ("LeakyRelu", {"alpha": 0.3}, "LeakyReLU", [6, 16]),
    ("Elu", {}, "ELU", [6]),
    ("Elu", {"alpha": 0.7}, "ELU", [6]),
    ("Sigmoid", {}, "Sigmoid", [6, 13]),
    ("Tanh", {}, "Tanh", [6, 13]),
    ("HardSigmoid", {}, "HardSigmoid", [6]),  # ONNX's α 0.2, β 0.5
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, "HardSigmoid", [6]),
    ("HardSwish", {}, "HardSwish", [14, 22]),
    ("Gelu", {}, "GELU", [20]),
    ("Gelu", {"approximate": "tanh"}, "GELU", [20]),
]


@pytest.mark.parametrize("op,attrs,layer,opset", [
    (op, attrs, layer, opset) for op, attrs, layer, opsets in ACTIVATIONS for opset in opsets])
def test_activation(op, attrs, layer, opset):
    m = make([node(op, ["x"], **attrs)], (3, 4, 5), opset)
    check(m, (3, 4, 5), types=[layer])


@pytest.mark.parametrize("opset,slope_shape", [(6, (1,)), (9, (3, 1, 1)), (16, (3, 1, 1)),
                                               (16, (1,))])
def test_prelu(opset, slope_shape):
    m = make([node("PRelu", ["x", "a"])], (3, 4, 5), opset,
             {"a": rand(*slope_shape, seed=5, low=0.0)})
    check(m, (3, 4, 5), types=["PReLU"])


def test_prelu_slope_per_value_is_refused():
    m = make([node("PRelu", ["x", "a"])], (3, 4, 5), 16, {"a": rand(4, 5)})
    refused(m, "PRelu node 'the_prelu'", "only one slope or one per channel")


@pytest.mark.parametrize("opset,attrs,bounds,layer", [
    (6, {"min": 0.0, "max": 6.0}, None, "ReLU6"),  # attributes up to opset 10
    (6, {"min": 0.0}, None, "ReLU"),  # max defaults to +inf
    (11, {}, (0.0, 6.0), "ReLU6"),  # inputs from opset 11
    (11, {}, (0.0, None), "ReLU"),
    (13, {}, (0.0, 6.0), "ReLU6"),
])
def test_clip(opset, attrs, bounds, layer):
    ins, inits = ["x"], {}
    if bounds is not None:
        ins += ["lo", "hi" if bounds[1] is not None else ""]
        inits["lo"] = np.array(bounds[0], np.float32)
        if bounds[1] is not None:
            inits["hi"] = np.array(bounds[1], np.float32)
    m = make([node("Clip", ins, **attrs)], (3, 4, 5), opset, inits)
    check(m, (3, 4, 5), types=[layer])


def test_clip_to_other_bounds_is_refused():
    m = make([node("Clip", ["x"], min=-1.0, max=1.0)], (3, 4, 5), 6)
    refused(m, "Clip node 'the_clip'", "Clip(-1, 1) is not supported")


@pytest.mark.parametrize("opset,attrs,ratio", [(6, {"is_test": 1, "ratio": 0.3}, None),
                                               (7, {"ratio": 0.2}, None), (10, {}, None),
                                               (12, {}, 0.25), (13, {}, 0.4)])
def test_dropout_is_the_identity_at_inference(opset, attrs, ratio):
    ins, inits = ["x"], {}
    if ratio is not None:
        ins.append("r")
        inits["r"] = np.array(ratio, np.float32)
    m = make([helper.make_node("Dropout", ins, ["d"], name="the_dropout", **attrs),
              node("Relu", ["d"])], (3, 4, 5), opset, inits)
    check(m, (3, 4, 5), types=["ReLU"])  # removed: it does nothing at inference
    kept = check(m, (3, 4, 5), types=["Dropout", "ReLU"], keep_dropout=True)
    assert kept.graph.nodes[next(iter(list(kept.graph.nodes)[1:]))].params["p"] == \
        pytest.approx(ratio if ratio is not None else attrs.get("ratio", 0.5))


def test_dropout_in_training_mode_is_refused():
    m = make([node("Dropout", ["x", "r", "t"])], (3, 4, 5), 13,
             {"r": np.array(0.5, np.float32), "t": np.array(True)})
    refused(m, "Dropout node 'the_dropout'", "training mode at inference is not supported")
