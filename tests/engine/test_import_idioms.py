"""Exporter idioms import as the layers a designer shows (issue 13's list): SiLU, HardSwish,
GELU (Erf and tanh forms), the squeeze-and-excitation Mul gate, layer scale, channel shuffle,
chunk / split, ConvNeXt's LayerNorm between two Transposes and its channels-last block, global
pooling written as ReduceMean, Clip -> ReLU6, Gemm / MatMul + Add, and the geometric / harmonic
pooling our own export writes.

Each idiom is built twice where it can be: by hand with onnx.helper, in the form the exporter
writes (always runs), and as a tiny torch module exported by the TorchScript exporter at opsets
17 and 13 and by the dynamo exporter (skipped without torch / onnxscript). The engine on the
imported graph must match ONNX Runtime on the original file within 1e-5 (max abs), and the
layer types it became are checked."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from onnx import helper

from engine.onnx.importer import import_onnx
from engine.onnx.runtime import CPU, OnnxModel
from tests.engine.test_onnx import make_model

ATOL = 1e-5
SQRT2 = float(np.sqrt(2.0))


def f32(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def layer_types(imp) -> list[str]:
    return [n.type_name for n in imp.graph.nodes.values() if n.type_name != "Input"]


def check(model, in_shape, n=2):
    """The import of `model` (ModelProto or bytes) against ONNX Runtime on it; returns it."""
    x = np.random.default_rng(1).standard_normal((n, *in_shape)).astype(np.float32)
    want = OnnxModel(model, providers=[CPU]).run(x)
    data = model if isinstance(model, bytes) else model.SerializeToString()
    imp = import_onnx(data)
    got = imp.network().forward(x)
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want))) <= ATOL
    return imp


# ---- by hand, in the exporters' forms ----------------------------------------------------------

def gelu_erf(x: str, out: str) -> list:
    """PyTorch's Erf form (TorchScript exporter below opset 20)."""
    return [helper.make_node("Div", [x, "sqrt2"], [f"{out}/d"]),
            helper.make_node("Erf", [f"{out}/d"], [f"{out}/e"]),
            helper.make_node("Add", [f"{out}/e", "one"], [f"{out}/p"]),
            helper.make_node("Mul", [x, f"{out}/p"], [f"{out}/m"]),
            helper.make_node("Mul", [f"{out}/m", "half"], [out])]


GELU_CONSTS = {"sqrt2": np.array(SQRT2, np.float32), "one": np.array(1.0, np.float32),
               "half": np.array(0.5, np.float32)}


def gelu_tanh_nodes():
    k, b = 0.044715, float(np.sqrt(2 / np.pi))
    nodes = [helper.make_node("Mul", ["x", "x"], ["x2"]),
             helper.make_node("Mul", ["x", "x2"], ["x3"]),
             helper.make_node("Mul", ["x3", "k"], ["kx3"]),
             helper.make_node("Add", ["x", "kx3"], ["inner"]),
             helper.make_node("Mul", ["inner", "b"], ["scaled"]),
             helper.make_node("Tanh", ["scaled"], ["t"]),
             helper.make_node("Add", ["t", "one"], ["p"]),
             helper.make_node("Mul", ["x", "p"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    return nodes, {"k": np.array(k, np.float32), "b": np.array(b, np.float32),
                   "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32)}


def convnext_block(opset: int, c: int = 8, act: str = "gelu"):
    """torchvision's CNBlock as PyTorch writes it: depthwise Conv -> Transpose to channels-last
    -> LayerNorm (LayerNormalization from opset 17, its decomposed form below) -> MatMul + Add
    -> GELU -> MatMul + Add -> Transpose back -> layer scale Mul -> residual Add."""
    r = np.random.default_rng(3)
    inits = {"dw": f32(r, c, 1, 7, 7), "dwb": f32(r, c), "ln_w": 0.5 + f32(r, c) ** 2,
             "ln_b": f32(r, c), "w1": f32(r, c, 4 * c), "b1": f32(r, 4 * c),
             "w2": f32(r, 4 * c, c), "b2": f32(r, c), "gamma": 0.2 + f32(r, c, 1, 1) ** 2,
             **GELU_CONSTS}
    nodes = [helper.make_node("Conv", ["x", "dw", "dwb"], ["c"], group=c, kernel_shape=[7, 7],
                              pads=[3, 3, 3, 3], name="block.0"),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1], name="block.1")]
    if opset >= 17:
        nodes.append(helper.make_node("LayerNormalization", ["t", "ln_w", "ln_b"], ["ln"],
                                      axis=-1, epsilon=1e-6, name="block.2"))
    else:
        inits.update(eps=np.array(1e-6, np.float32), two=np.array(2.0, np.float32))
        nodes += [helper.make_node("ReduceMean", ["t"], ["mu"], axes=[-1], name="block.2/mean"),
                  helper.make_node("Sub", ["t", "mu"], ["d"]),
                  helper.make_node("Pow", ["d", "two"], ["sq"]),
                  helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
                  helper.make_node("Add", ["var", "eps"], ["ve"]),
                  helper.make_node("Sqrt", ["ve"], ["sd"]),
                  helper.make_node("Div", ["d", "sd"], ["xh"]),
                  helper.make_node("Mul", ["xh", "ln_w"], ["xw"]),
                  helper.make_node("Add", ["xw", "ln_b"], ["ln"], name="block.2")]
    nodes += [helper.make_node("MatMul", ["ln", "w1"], ["m1"], name="block.3"),
              helper.make_node("Add", ["b1", "m1"], ["h"], name="block.3/bias")]
    nodes += gelu_erf("h", "g") if act == "gelu" else [helper.make_node("Relu", ["h"], ["g"])]
    nodes += [helper.make_node("MatMul", ["g", "w2"], ["m2"], name="block.5"),
              helper.make_node("Add", ["b2", "m2"], ["o"], name="block.5/bias"),
              helper.make_node("Transpose", ["o"], ["back"], perm=[0, 3, 1, 2], name="block.6"),
              helper.make_node("Mul", ["gamma", "back"], ["s"], name="layer_scale"),
              helper.make_node("Add", ["s", "x"], ["y"], name="add")]
    return make_model(nodes, inits, (c, 6, 5), opset=opset)


CONVNEXT_BLOCK = ["Conv2d", "LayerNorm2d", "Linear", "GELU", "Linear", "Scale", "Add"]


@pytest.mark.parametrize("opset", [17, 13])
def test_convnext_block_in_channels_last_form(opset):
    imp = check(convnext_block(opset), (8, 6, 5))
    assert layer_types(imp) == CONVNEXT_BLOCK
    nodes = {n.type_name: n for n in imp.graph.nodes.values()}
    assert nodes["LayerNorm2d"].params == {"eps": 1e-6}
    assert all(n.params["over"] == "channels" for n in imp.graph.nodes.values()
               if n.type_name == "Linear")


def test_a_per_value_activation_inside_the_channels_last_block():
    imp = check(convnext_block(17, act="relu"), (8, 6, 5))
    assert layer_types(imp) == ["Conv2d", "LayerNorm2d", "Linear", "ReLU", "Linear", "Scale",
                                "Add"]


def test_layer_norm_between_two_transposes():
    r = np.random.default_rng(4)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["t", "w", "b"], ["n"], axis=-1,
                              epsilon=1e-5),
             helper.make_node("Transpose", ["n"], ["y"], perm=[0, 3, 1, 2], name="ln")]
    imp = check(make_model(nodes, {"w": f32(r, 6), "b": f32(r, 6)}, (6, 3, 4), opset=17),
                (6, 3, 4))
    assert layer_types(imp) == ["LayerNorm2d"]


def test_gelu_erf_and_tanh_forms():
    m = make_model(gelu_erf("x", "y"), GELU_CONSTS, (3, 4, 4))
    imp = check(m, (3, 4, 4))
    assert layer_types(imp) == ["GELU"]
    (gelu,) = [n for n in imp.graph.nodes.values() if n.type_name == "GELU"]
    assert gelu.params == {"approximate": "none"}
    nodes, consts = gelu_tanh_nodes()
    imp = check(make_model(nodes, consts, (3, 4, 4)), (3, 4, 4))
    assert layer_types(imp) == ["GELU"]
    (gelu,) = [n for n in imp.graph.nodes.values() if n.type_name == "GELU"]
    assert gelu.params == {"approximate": "tanh"}


def test_silu_and_hardswish_with_the_attribute_pytorch_leaves_out():
    """x·Sigmoid(x) is SiLU; x·HardSigmoid(x, alpha 1/6) is HardSwish, beta at its ONNX default
    0.5 (PyTorch's TorchScript exporter below opset 14 does not write it)."""
    imp = check(make_model([helper.make_node("Sigmoid", ["x"], ["s"]),
                            helper.make_node("Mul", ["x", "s"], ["y"])], {}, (3, 4, 4)),
                (3, 4, 4))
    assert layer_types(imp) == ["SiLU"]
    nodes = [helper.make_node("HardSigmoid", ["x"], ["h"], alpha=1 / 6),
             helper.make_node("Mul", ["x", "h"], ["y"])]
    assert layer_types(check(make_model(nodes, {}, (3, 4, 4)), (3, 4, 4))) == ["HardSwish"]
    # another beta is not HardSwish
    nodes[0] = helper.make_node("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.4)
    assert layer_types(check(make_model(nodes, {}, (3, 4, 4)), (3, 4, 4))) == [
        "HardSigmoid", "Multiply"]


def test_squeeze_excitation_gate_clip_relu6_and_reduce_mean_pooling():
    """ReduceMean over H, W (the dynamo exporter's global pooling) -> 1×1 Conv -> Relu -> 1×1
    Conv -> Clip(0, 6) -> Mul with the map: GlobalAvgPool2d, ReLU6 and a Multiply gate."""
    r = np.random.default_rng(6)
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["p"], keepdims=1),
             helper.make_node("Conv", ["p", "w1", "b1"], ["f1"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["f1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["f2"], kernel_shape=[1, 1]),
             helper.make_node("Clip", ["f2", "lo", "hi"], ["gate"]),
             helper.make_node("Mul", ["gate", "x"], ["y"], name="scale")]
    inits = {"axes": np.array([2, 3], np.int64), "w1": f32(r, 2, 8, 1, 1), "b1": f32(r, 2),
             "w2": f32(r, 8, 2, 1, 1), "b2": f32(r, 8), "lo": np.array(0.0, np.float32),
             "hi": np.array(6.0, np.float32)}
    imp = check(make_model(nodes, inits, (8, 5, 5), opset=18), (8, 5, 5))
    assert layer_types(imp) == ["GlobalAvgPool2d", "Conv2d", "ReLU", "Conv2d", "ReLU6",
                                "Multiply"]


def test_matmul_add_and_gemm_on_features():
    r = np.random.default_rng(7)
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["h"]),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], transB=1, alpha=0.5)]
    inits = {"w": f32(r, 12, 6), "b": f32(r, 6), "w2": f32(r, 4, 6), "b2": f32(r, 4)}
    imp = check(make_model(nodes, inits, (3, 2, 2)), (3, 2, 2))
    assert layer_types(imp) == ["Flatten", "Linear", "Linear"]


@pytest.mark.parametrize("type_name", ["GeometricPool2d", "HarmonicPool2d"])
def test_our_geometric_and_harmonic_pooling_forms(type_name):
    from engine.graph import Graph
    from engine.onnx.export import export_onnx

    g = Graph("m")
    g.add_node("Input", "input", {"channels": 3, "height": 6, "width": 6}, node_id="input")
    g.add_node("Sigmoid", "act", {}, node_id="act")  # positive inputs, as these pools expect
    g.add_node(type_name, "pool", {"kernel_size": 2}, node_id="pool")
    g.add_edge("input", "act")
    g.add_edge("act", "pool")
    imp = check(export_onnx(g), (3, 6, 6))
    assert layer_types(imp) == ["Sigmoid", type_name]


# ---- tiny torch modules, as PyTorch's two exporters write them -----------------------------------

FORMS = ["opset17", "opset13", "dynamo"]


def torch_cases():
    """name -> (module factory, input C×H×W, expected layer types)."""
    import torch
    from torch import nn

    from tests.engine.test_templates_torchvision import torchvision_models

    torchvision_models()  # declares the operator schemas torchvision's import needs
    from torchvision.models.convnext import CNBlock, LayerNorm2d
    from torchvision.ops import SqueezeExcitation

    class Shuffle(nn.Module):
        def forward(self, x):
            n, c, h, w = x.size()
            return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

    class Chunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            return torch.cat((a, self.conv(b)), 1)

    class Mean(nn.Module):
        def forward(self, x):
            return x.mean((2, 3), keepdim=True)

    class LayerScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(8, 1, 1))

        def forward(self, x):
            return self.gamma * x

    return {
        "silu": (nn.SiLU, (4, 5, 5), ["SiLU"]),
        "hardswish": (nn.Hardswish, (4, 5, 5), ["HardSwish"]),
        "gelu": (nn.GELU, (4, 5, 5), ["GELU"]),
        "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), (4, 5, 5), ["GELU"]),
        "relu6": (nn.ReLU6, (4, 5, 5), ["ReLU6"]),
        "squeeze_excitation": (lambda: SqueezeExcitation(8, 4), (8, 5, 5),
                               ["GlobalAvgPool2d", "Conv2d", "ReLU", "Conv2d", "Sigmoid",
                                "Multiply"]),
        "layer_scale": (LayerScale, (8, 5, 5), ["Scale"]),
        "channel_shuffle": (Shuffle, (8, 5, 5), ["ChannelShuffle"]),
        "chunk": (Chunk, (8, 5, 5), ["ChannelSplit", "Conv2d", "Concat"]),
        "mean_pooling": (Mean, (8, 5, 5), ["GlobalAvgPool2d"]),
        "layer_norm_2d": (lambda: LayerNorm2d(8, eps=1e-6), (8, 5, 5), ["LayerNorm2d"]),
        "convnext_block": (lambda: CNBlock(8, 0.5, 0.0), (8, 5, 5), CONVNEXT_BLOCK),
        "linear": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(8 * 25, 7)), (8, 5, 5),
                   ["Flatten", "Linear"]),
    }


TORCH_NAMES = ["silu", "hardswish", "gelu", "gelu_tanh", "relu6", "squeeze_excitation",
               "layer_scale", "channel_shuffle", "chunk", "mean_pooling", "layer_norm_2d",
               "convnext_block", "linear"]


def export_torch(module, shape, form: str) -> bytes:
    import torch

    x = torch.randn(1, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        if form == "dynamo":
            return torch.onnx.export(module, (x,), dynamo=True,
                                     verbose=False).model_proto.SerializeToString()
        f = io.BytesIO()
        torch.onnx.export(module, (x,), f, dynamo=False, opset_version=int(form[5:]),
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
        return f.getvalue()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", TORCH_NAMES)
def test_torch_idiom_imports_as_its_layer(name, form):
    torch = pytest.importorskip("torch")
    if form == "dynamo":
        pytest.importorskip("onnxscript")
    factory, shape, want = torch_cases()[name]
    torch.manual_seed(0)
    module = factory().eval()
    with torch.no_grad():  # every weight matters (no identity-like initial values)
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) * 0.5 + (0.5 if p.ndim == 1 else 0.0))
    data = export_torch(module, shape, form)
    batch = 1 if form == "dynamo" else 2  # the dynamo exporter fixes the example's batch
    imp = check(data, shape, n=batch)
    assert layer_types(imp) == want
    if name == "gelu_tanh":
        (gelu,) = [n for n in imp.graph.nodes.values() if n.type_name == "GELU"]
        assert gelu.params == {"approximate": "tanh"}

