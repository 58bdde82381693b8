"""The pretrained catalogue: an entry for every template but LeNet-5, torchvision's URLs and
hash prefixes, input specs that fit the templates, DenseNet's old key names; and, where
torchvision is installed, the table equal to its Weights enums."""

from __future__ import annotations

import re

import pytest

from engine.inputspec import InputSpec
from engine.transfer.checkpoint import design_shapes, match_weights
from engine.zoo.pretrained import BASE_URL, DEFAULTS, PRETRAINED, find_weights, hash_prefix
from engine.zoo.templates import TEMPLATES, make_template

NAME = re.compile(r"^[a-z0-9_.]+-([a-z]+-)?[a-f0-9]{8,10}\.pth$")


def test_every_template_has_default_weights():
    assert set(DEFAULTS) == set(TEMPLATES) - {"lenet5"}
    for template, name in DEFAULTS.items():
        assert PRETRAINED[name].template == template and PRETRAINED[name].default
    assert sum(w.default for w in PRETRAINED.values()) == len(DEFAULTS)


@pytest.mark.parametrize("name", list(PRETRAINED))
def test_entry_looks_like_torchvisions(name):
    w = PRETRAINED[name]
    assert w.url.startswith("https://download.pytorch.org/models/")
    assert w.url == BASE_URL + w.file_name
    assert NAME.match(w.file_name), w.file_name
    assert re.fullmatch(r"[a-f0-9]{8,10}", w.hash_prefix)
    assert w.file_name.endswith(f"-{w.hash_prefix}.pth")
    assert re.fullmatch(r"IMAGENET1K_V\d", w.weights)
    assert w.classes == 1000 and 50 < w.acc1 < w.acc5 < 100 and w.size_mb > 1
    # the input the weights expect is the template's input
    spec = w.input_spec()
    assert isinstance(spec, InputSpec)
    assert spec.shape == TEMPLATES[w.template].input_shape
    assert spec.resize > w.crop


def test_hash_prefix_parses_as_torch_hub_does():
    assert hash_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert hash_prefix("mnasnet1.0_top1_73.512-f206786ef8.pth") == "f206786ef8"
    with pytest.raises(ValueError, match="no hash prefix"):
        hash_prefix("resnet18.pth")


def test_find_weights_by_template_or_full_name():
    assert find_weights("resnet50").weights == "IMAGENET1K_V2"
    assert find_weights("resnet50.IMAGENET1K_V1").file_name == "resnet50-0676ba61.pth"
    with pytest.raises(ValueError, match="'lenet5'.*known: alexnet"):
        find_weights("lenet5")


def test_transform_input_models_want_half_normalisation():
    # torchvision builds GoogLeNet / Inception-v3 with transform_input=True for these weights:
    # ImageNet-normalised x becomes (pixel - 0.5) / 0.5 inside the model
    for key in ("googlenet", "inception_v3"):
        spec = find_weights(key).input_spec()
        assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)
    spec = find_weights("resnet18").input_spec()
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert spec.resize == 256 and spec.size == (224, 224)


@pytest.mark.parametrize("template", ["densenet121", "densenet201"])
def test_densenet_old_key_names_are_fixed(template):
    import numpy as np

    graph = make_template(template).graph
    shapes = design_shapes(graph)
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k):
           np.zeros(s, np.float32) for k, s in shapes.items()}
    assert sum(".norm.1." in k for k in old) > 50  # the file's old form
    assert not match_weights(graph, old).ok
    fixed = find_weights(template).fix_keys(old)
    assert set(fixed) == set(shapes)
    assert match_weights(graph, fixed).ok
    # other templates' keys are left alone
    assert find_weights("resnet18").fix_keys(old) == old


def test_table_equals_torchvisions_weights_enums():
    from .test_templates_torchvision import torchvision_models

    _, models = torchvision_models()
    seen = set()
    for template in DEFAULTS:
        enum = models.get_model_weights(template)
        for e in enum:
            if not e.meta["categories"]:  # vgg16's feature extractor: no classifier
                continue
            name = f"{template}.{e.name}"
            seen.add(name)
            w = PRETRAINED[name]
            t = e.transforms()
            assert w.url == e.url
            assert w.default == (e is enum.DEFAULT)
            assert w.classes == len(e.meta["categories"])
            assert [w.crop] == t.crop_size and [w.resize] == t.resize_size
            assert list(w.mean) == t.mean and list(w.std) == t.std
            assert w.interpolation == t.interpolation.value
            assert w.acc1 == e.meta["_metrics"]["ImageNet-1K"]["acc@1"]
            assert w.acc5 == e.meta["_metrics"]["ImageNet-1K"]["acc@5"]
            assert w.size_mb == e.meta["_file_size"]
    assert seen == set(PRETRAINED)
