"""torchvision's ConvNeXt-Tiny and ShuffleNetV2 ×1.0 as both PyTorch exporters write them
import into the layers our templates use (engine/zoo/templates.py), and compute what ONNX
Runtime computes on the original file.

Weights re-drawn so that every layer matters (BatchNorm statistics random, ConvNeXt's layer
scale far from its 1e-6), a 3×64×64 input, the TorchScript exporter at opset 17 (dynamic batch)
and the dynamo exporter. Checked: relative error ≤ 1e-4 of the largest output, the imported
parameter count equal to the file's, and per layer type the template's count (BatchNorm aside
where the exporter folded it into the convolutions, which the import reports). Skipped without
torch / torchvision, the dynamo files without onnxscript."""

from __future__ import annotations

import io
import warnings
from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from engine.onnx.importer import import_onnx
from engine.onnx.runtime import CPU, OnnxModel
from tests.engine.test_import_torchvision_zoo import file_parameter_count
from tests.engine.test_templates_torchvision import (
    redraw_torch,
    rel_err,
    small_graph,
    torchvision_models,
)

RTOL = 1e-4
SIDE = 64
# the layer types the template and the import must have as many of
SHARED = {
    "convnext_tiny": ["Conv2d", "LayerNorm2d", "Linear", "GELU", "Scale", "Add", "Flatten"],
    "shufflenet_v2_x1_0": ["Conv2d", "ReLU", "MaxPool2d", "ChannelSplit", "ChannelShuffle",
                           "Concat", "ReduceMean", "Linear"],
}


def exported(name: str, form: str) -> bytes:
    torch, models = torchvision_models()
    model = getattr(models, name)(weights=None).eval()
    redraw_torch(torch, model)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, SIDE, SIDE))
                         .astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if form == "dynamo":
            return torch.onnx.export(model, (x,), dynamo=True,
                                     verbose=False).model_proto.SerializeToString()
        f = io.BytesIO()
        torch.onnx.export(model, (x,), f, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
        return f.getvalue()


@pytest.mark.parametrize("form", ["opset17", "dynamo"])
@pytest.mark.parametrize("name", ["convnext_tiny", "shufflenet_v2_x1_0"])
def test_imports_into_the_template_layers_and_matches_onnx_runtime(name, form):
    torchvision_models()
    if form == "dynamo":
        pytest.importorskip("onnxscript")
    data = exported(name, form)
    imp = import_onnx(data)
    x = np.random.default_rng(1).standard_normal((1, 3, SIDE, SIDE)).astype(np.float32)
    net = imp.network()
    assert rel_err(net.forward(x), OnnxModel(data, providers=[CPU]).run(x)) <= RTOL
    assert sum(p.value.size for p in net.parameters()) == file_parameter_count(
        onnx.load_from_string(data))
    ours = Counter(n.type_name for n in imp.graph.nodes.values())
    template = Counter(n.type_name for n in small_graph(name).nodes.values())
    assert {t: ours[t] for t in SHARED[name]} == {t: template[t] for t in SHARED[name]}
    if name == "shufflenet_v2_x1_0":  # both exporters fold BatchNorm into the convolutions
        assert ours["BatchNorm2d"] == 0 < template["BatchNorm2d"]
        assert any("folded BatchNorm into 56 convolution" in w for w in imp.warnings)
    else:  # no BatchNorm: nothing to report
        assert not any("BatchNorm" in w for w in imp.warnings)
