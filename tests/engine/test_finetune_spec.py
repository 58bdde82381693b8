"""Pretrained → finetune → infer --image: the fine-tuned project keeps the template's input spec,
and `finetune --onnx --preprocess` exports it with the same preprocessing, so the same photo
gives the same answer through infer (project and ONNX) and the preprocessed ONNX fed pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.inputspec import photo_pixels, photo_to_array
from engine.nn.network import Network
from engine.predict import probabilities
from engine.project import load_project, save_project
from engine.transfer.pretrained import build_pretrained
from engine.zoo.pretrained import find_weights
from engine.zoo.templates import make_template


def _photos(root, classes=3, per_class=3):
    """Photos of several sizes and modes (the spec resizes and crops them), one colour per
    class."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = 230 + 17 * i, 300 - 11 * i
            a = rng.integers(0, 110, (h, w, 3)).astype(np.uint8)
            a[..., c] += 140
            Image.fromarray(a, "RGB").save(d / f"{i}.jpg", quality=95)


def _rows(text):
    return [(int(i), float(p)) for i, p, *_ in (line.split("\t") for line in text.splitlines())]


def test_pretrained_finetune_infer_and_preprocessed_onnx_agree(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    # "pretrained" SqueezeNet 1.1: the catalogue's entry (input spec: ImageNet's) with seeded
    # weights under torchvision's names, read as a downloaded file would be
    w = find_weights("squeezenet1_1")
    t = make_template("squeezenet1_1")
    state = Network.compile(t.graph, np.random.default_rng(3)).state_dict()
    names = {n.id: n.name for n in t.graph.nodes.values()}
    np.savez(tmp_path / "sq.npz", **{f"{names[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}":
                                     a for k, a in state.items()})
    p = build_pretrained(w, tmp_path / "sq.npz")
    spec = w.input_spec()
    assert p.graph.input_spec == spec and spec.mean and spec.resize == 256
    save_project(tmp_path / "pre.cnnd", p.graph, p.weights, p.meta)

    _photos(tmp_path / "photos")
    tuned, tuned_onnx = tmp_path / "tuned.cnnd", tmp_path / "tuned.onnx"
    assert main(["finetune", str(tmp_path / "pre.cnnd"), "--data", str(tmp_path / "photos"),
                 "--freeze-up-to", "features.12.cat", "--classes", "3", "--epochs", "1",
                 "--batch-size", "4", "--no-augment", "--out", str(tuned), "--onnx",
                 str(tuned_onnx), "--preprocess"]) == 0
    err = capsys.readouterr().err
    assert "preprocessing inside: pixels NHWC uint8" in err
    assert "centre-cropped to 224×224" in err and "silently" not in err  # the folder note
    project = load_project(tuned)
    assert project.graph.input_spec == spec  # the template's spec survives fine-tuning

    photo = tmp_path / "photos" / "class1" / "2.jpg"
    x, _ = photo_to_array(photo, spec)
    want = probabilities(Network.compile(project.graph, weights=project.weights)
                         .forward(x[None]))[0]
    for model in (tuned, tuned_onnx):
        assert main(["infer", str(model), "--image", str(photo), "--top", "3"]) == 0
        out = capsys.readouterr()
        assert "resize 256, crop 224×224" in out.err
        rows = _rows(out.out)
        assert [i for i, _ in rows] == list(np.argsort(-want)[:3])
        np.testing.assert_allclose([q for _, q in rows], np.sort(want)[::-1][:3], atol=1e-5)
    # the exported model fed the resized and cropped uint8 pixels, as its metadata says
    model = onnx.load(str(tuned_onnx))
    assert model.graph.input[0].name == "pixels"
    px, _ = photo_pixels(photo, spec)
    sess = ort.InferenceSession(str(tuned_onnx), providers=["CPUExecutionProvider"])
    got = probabilities(sess.run(None, {"pixels": px[None]})[0])[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_preprocess_needs_onnx(tmp_path, capsys):
    assert main(["finetune", "lenet5", "--data", "mnist", "--freeze-up-to", "conv1",
                 "--out", str(tmp_path / "t.cnnd"), "--preprocess"]) == 2
    assert "give --onnx" in capsys.readouterr().err


@pytest.mark.parametrize("layout,dtype", [("NHWC", "uint8"), ("NCHW", "float32")])
def test_infer_image_feeds_pixels_to_a_preprocessed_onnx(tmp_path, capsys, layout, dtype):
    """A file exported with --preprocess takes pixels (RGB, even for a BGR model, which reverses
    them inside): infer --image gives the project's answer."""
    pytest.importorskip("onnxruntime")
    from engine.graph import sequential
    from engine.inputspec import InputSpec

    g = sequential([("Input", "in", {"channels": 3, "height": 12, "width": 12}),
                    ("Conv2d", "c", {"out_channels": 4, "kernel_size": 3}), ("ReLU", "r", {}),
                    ("Flatten", "f", {}), ("Linear", "fc", {"out_features": 5})])
    g.input_spec = spec = InputSpec((12, 12), resize=14, channels="BGR", value_range=(-1, 1),
                                    mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    weights = Network.compile(g, np.random.default_rng(1)).state_dict()
    save_project(tmp_path / "m.cnnd", g, weights)
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (19, 23, 3), np.uint8)).save(tmp_path / "p.png")
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "m.cnnd"), "--out", str(out), "--preprocess", layout,
                 "--pixel-type", dtype]) == 0
    x, _ = photo_to_array(tmp_path / "p.png", spec)
    want = probabilities(Network.compile(g, weights=weights).forward(x[None]))[0]
    capsys.readouterr()
    assert main(["infer", str(out), "--image", str(tmp_path / "p.png"), "--top", "5"]) == 0
    got = capsys.readouterr()
    assert f"takes the pixels ({layout} {dtype})" in got.err
    rows = _rows(got.out)
    assert [i for i, _ in rows] == list(np.argsort(-want))
    np.testing.assert_allclose([q for _, q in rows], np.sort(want)[::-1], atol=1e-5)
    assert main(["infer", str(out), "--image", str(tmp_path / "p.png"), "--backend",
                 "engine"]) == 1
    assert "run it with --backend onnxruntime" in capsys.readouterr().err
