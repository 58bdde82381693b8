"""The input spec: JSON, fitting the Input layer, any photo mode converted (and said), the
torchvision preprocessing reproduced, the exported ONNX preprocessing, infer --image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.errors import DataError, GraphError, ParamError
from engine.graph import Graph, sequential
from engine.inputspec import (
    IMAGENET,
    InputSpec,
    fit,
    imagenet,
    model_spec,
    normalise,
    photo_pixels,
    photo_to_array,
    spec_note,
)
from engine.nn.network import Network
from engine.predict import class_names, imagenet_classes, photo_batch, probabilities, top_k
from engine.project import load_project, save_project

SPEC = InputSpec((16, 16), resize=20, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def rgb(h=30, w=40, seed=1) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def net(n_out=1000, c=3, spec=SPEC) -> tuple[Graph, dict]:
    g = sequential([("Input", "in", {"channels": c, "height": 16, "width": 16}),
                    ("Conv2d", "c", {"out_channels": 4, "kernel_size": 3}), ("ReLU", "r", {}),
                    ("Flatten", "f", {}), ("Linear", "fc", {"out_features": n_out})])
    g.input_spec = spec
    return g, Network.compile(g, np.random.default_rng(0)).state_dict()


# ---- the spec --------------------------------------------------------------------------------

def test_json_round_trip_and_bad_fields():
    for s in (IMAGENET, SPEC, InputSpec((28, 28), channels="L"), imagenet(299),
              InputSpec((8, 8), channels="BGR", value_range=(-1, 1), interpolation="bicubic")):
        assert InputSpec.from_json(json.loads(s.to_string())) == s
    assert imagenet(299).resize == 342  # torchvision's Inception-v3 preprocessing
    bad = [({"size": [0, 4]}, "size"), ({"size": [4, 4], "channels": "RGBA"}, "channels"),
           ({"size": [224, 224], "resize": 200}, "resize 200"),
           ({"size": [4, 4], "mean": [0.1, 0.2]}, "mean has 2 values"),
           ({"size": [4, 4], "std": [1, 0, 1]}, "std must not be 0"),
           ({"size": [4, 4], "value_range": [1, 1]}, "value_range"),
           ({"size": [4, 4], "colour": 1}, "unknown field(s) colour")]
    for d, words in bad:
        with pytest.raises(ParamError, match="input spec: .*" + words.split()[0]) as e:
            InputSpec.from_json(d)
        assert words in str(e.value)


def test_spec_travels_with_the_graph_and_the_project(tmp_path):
    g, w = net()
    assert Graph.from_json(json.loads(g.dumps())).input_spec == SPEC
    save_project(tmp_path / "m.cnnd", g, w)
    assert load_project(tmp_path / "m.cnnd").graph.input_spec == SPEC
    plain, _ = net(spec=None)
    assert "input_spec" not in plain.to_json()  # files without a spec read as before
    with pytest.raises(GraphError, match="std must not be 0"):
        Graph.from_json(dict(g.to_json(), input_spec={"size": [16, 16], "std": [0]}))


def test_default_follows_the_input_layer_and_the_input_owns_the_size():
    g, _ = net(c=1, spec=None)
    assert model_spec(g) == InputSpec((16, 16), channels="L")  # MNIST-like: grey, 0..1
    g, _ = net(spec=IMAGENET)
    assert model_spec(g) == InputSpec((16, 16), resize=18, mean=IMAGENET.mean, std=IMAGENET.std)
    g.nodes["in"].params["channels"] = 1
    assert model_spec(g).channels == "L" and "the default for 1 channel" in spec_note(g)
    g.nodes["in"].params["channels"] = 4
    with pytest.raises(DataError, match="Input has 4 channels"):
        model_spec(g)


# ---- photos ----------------------------------------------------------------------------------

def test_any_photo_mode_is_converted_and_said(tmp_path):
    base = rgb()
    a16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50)
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    cases = {"grey.png": (base.convert("L"), "converted from grayscale to RGB"),
             "cmyk.jpg": (base.convert("CMYK"), "converted from CMYK to RGB"),
             "rgba.png": (rgba, "transparency flattened onto white"),
             "pal.png": (base.convert("P"), "converted from palette colours"),
             "16bit.png": (Image.fromarray(a16), "16-bit grey scaled to 8 bits")}
    for name, (im, note) in cases.items():
        im.save(tmp_path / name)
        x, notes = photo_to_array(tmp_path / name, SPEC)
        assert x.shape == (3, 16, 16) and x.dtype == np.float32, name
        assert any(note in n for n in notes), (name, notes)
    assert photo_to_array(rgb(), SPEC)[1] == []  # nothing to say about a plain RGB photo
    # 16-bit: 65535 is white, not clipped at 255
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "white16.png")
    px, _ = photo_pixels(tmp_path / "white16.png", InputSpec((4, 4), channels="L"))
    assert (px == 255).all()
    # transparent black on white: white
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (photo_pixels(clear, InputSpec((4, 4)))[0] == 255).all()
    # colour to a grey model
    x, notes = photo_to_array(base, InputSpec((16, 16), channels="L"))
    assert x.shape == (1, 16, 16) and notes == ["converted from RGB to grayscale"]
    for bad in (tmp_path / "none.png", b"not an image"):
        with pytest.raises(DataError, match="no such file|unreadable image"):
            photo_to_array(bad, SPEC)


def test_resize_crop_normalise_by_hand():
    # a 40×20 photo: shorter side 20 -> 20 (no resize), crop the centre 16×16 of a 20×40
    a = np.random.default_rng(2).integers(0, 256, (20, 40, 3), np.uint8)
    px, _ = photo_pixels(Image.fromarray(a), SPEC)
    np.testing.assert_array_equal(px, a[2:18, 12:28])
    x = normalise(px, SPEC)
    want = ((a[2:18, 12:28].transpose(2, 0, 1) / 255.0 - np.array(SPEC.mean)[:, None, None])
            / np.array(SPEC.std)[:, None, None])
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)
    bgr, _ = photo_pixels(Image.fromarray(a), InputSpec((16, 16), 20, channels="BGR"))
    np.testing.assert_array_equal(bgr, px[:, :, ::-1])
    assert fit(Image.fromarray(a), InputSpec((10, 30))).size == (30, 10)  # no resize: stretch
    x = normalise(px, InputSpec((16, 16), 20, value_range=(-1, 1)))
    assert x.min() >= -1 and x.max() <= 1 and np.isclose(x.max(), px.max() / 127.5 - 1)


@pytest.mark.parametrize("size", [(300, 400), (401, 299), (224, 224), (100, 150)])
def test_same_arrays_as_torchvision_transforms(size):
    from tests.engine.test_templates_torchvision import torchvision_models

    torchvision_models()  # skips without torch / torchvision
    import torchvision.transforms as T

    im = rgb(*size[::-1], seed=3)
    ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                     T.Normalize(IMAGENET.mean, IMAGENET.std)])(im).numpy()
    np.testing.assert_array_equal(photo_to_array(im, IMAGENET)[0], ref)


# ---- predictions -----------------------------------------------------------------------------

def test_class_names_and_top_k():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    assert class_names(1000) == names and class_names(10) is None
    assert class_names(3, ["a", "b", "c"]) == ("a", "b", "c")
    assert class_names(1000, ["a"]) == names  # own names that do not fit are not used
    p = probabilities(np.array([1.0, 3.0, 2.0, 3.0]))
    assert np.isclose(p.sum(), 1) and np.isclose(p[1] / p[2], np.e)
    assert [r.index for r in top_k(p, 3)] == [1, 3, 2]  # ties: lower index first
    assert top_k(p, 1, ["w", "x", "y", "z"])[0].name == "x"
    assert np.array_equal(probabilities(np.array([0.2, 0.8]), already=True), [0.2, 0.8])


def test_same_photo_same_answer_cli_engine_and_onnx_preprocessing(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx.preprocess import INPUT_SPEC_KEY, stored_spec

    g, w = net()
    save_project(tmp_path / "m.cnnd", g, w)
    photo = tmp_path / "p.jpg"
    rgb(37, 53).convert("CMYK").save(photo)
    capsys.readouterr()
    top = {}
    for backend in ("engine", "onnxruntime"):
        assert main(["infer", str(tmp_path / "m.cnnd"), "--image", str(photo), "--top", "5",
                     "--backend", backend]) == 0
        out = capsys.readouterr()
        assert "converted from CMYK to RGB" in out.err and "resize 20, crop 16×16" in out.err
        rows = [line.split("\t") for line in out.out.splitlines()]
        assert len(rows) == 5
        top[backend] = [(int(i), float(p), name) for i, p, name in rows]
    # the inspector's path (engine.predict on the engine) gives the same
    x, _, _ = photo_batch(g, photo)
    probs = probabilities(Network.compile(g, weights=w).forward(x))[0]
    want = top_k(probs, 5, imagenet_classes())
    # the exported ONNX with preprocessing, fed the resized-and-cropped uint8 pixels
    for layout in ("NHWC", "NCHW"):
        onnx_path = tmp_path / f"m_{layout}.onnx"
        assert main(["export", str(tmp_path / "m.cnnd"), "--out", str(onnx_path),
                     "--preprocess", layout]) == 0
        import onnx

        model = onnx.load(onnx_path)
        assert stored_spec(model) == SPEC and INPUT_SPEC_KEY in {p.key for p in
                                                                 model.metadata_props}
        px, _ = photo_pixels(photo, SPEC)
        px = px[None] if layout == "NHWC" else px.transpose(2, 0, 1)[None]
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        onnx_probs = probabilities(sess.run(None, {"pixels": np.ascontiguousarray(px)})[0])[0]
        got = top_k(onnx_probs, 5, imagenet_classes())
        assert [r.index for r in got] == [r.index for r in want]
        np.testing.assert_allclose([r.probability for r in got],
                                   [r.probability for r in want], atol=1e-5)
    for rows in top.values():
        assert [i for i, _, _ in rows] == [r.index for r in want]
        np.testing.assert_allclose([p for _, p, _ in rows], [r.probability for r in want],
                                   atol=1e-5)
        assert rows[0][2] == want[0].name == imagenet_classes()[want[0].index]


def test_plain_export_carries_the_spec_and_import_reads_it(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    g, w = net()
    save_project(tmp_path / "m.cnnd", g, w)
    assert main(["export", str(tmp_path / "m.cnnd"), "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["import", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "back.cnnd")]) == 0
    assert load_project(tmp_path / "back.cnnd").graph.input_spec == SPEC
    rgb().save(tmp_path / "p.png")
    capsys.readouterr()
    assert main(["infer", str(tmp_path / "m.onnx"), "--image", str(tmp_path / "p.png"),
                 "--top", "2"]) == 0
    assert "resize 20, crop 16×16" in capsys.readouterr().err  # the file's own spec


def test_infer_image_errors(tmp_path, capsys):
    g, w = net()
    save_project(tmp_path / "m.cnnd", g, w)
    (tmp_path / "bad.png").write_bytes(b"no")
    assert main(["infer", str(tmp_path / "m.cnnd"), "--image", str(tmp_path / "bad.png")]) == 1
    assert "unreadable image" in capsys.readouterr().err
    assert main(["infer", str(tmp_path / "m.cnnd"), "--image", "x.png", "--top", "0"]) == 2


def test_image_folders_are_prepared_by_the_models_spec(tmp_path):
    from engine.data import load_dataset
    from engine.inputspec import data_spec

    for k, cls in enumerate(("cat", "dog")):
        (tmp_path / cls).mkdir()
        rgb(24 + k, 33, seed=k).convert("CMYK" if k else "RGB").save(tmp_path / cls / "a.jpg")
    g, _ = net(n_out=2)
    bundle = load_dataset(tmp_path, (3, 16, 16), input_spec=data_spec(g))
    assert bundle.train.classes == ["cat", "dog"]
    for i, cls in enumerate(("cat", "dog")):
        np.testing.assert_array_equal(bundle.train.x[i],
                                      photo_to_array(tmp_path / cls / "a.jpg", SPEC)[0])
    assert bundle.train.x.min() < 0  # mean / std applied, not 0..1
    with pytest.raises(DataError, match="input spec makes 3×16×16 images but the network's "
                                        "Input is 3×8×8"):
        load_dataset(tmp_path, (3, 8, 8), input_spec=SPEC)


def test_infer_data_of_an_onnx_file_uses_the_files_spec(tmp_path, capsys):
    """An image folder fed to an exported .onnx goes through the spec in its metadata, as it
    does for the project: the same predictions from both."""
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "photos"
    for k, cls in enumerate(("a", "b", "c")):
        (folder / cls).mkdir(parents=True)
        for j in range(3):
            rgb(22 + j, 31 + k, seed=10 * k + j).save(folder / cls / f"{j}.png")
    g, w = net(n_out=3)
    save_project(tmp_path / "m.cnnd", g, w)
    assert main(["export", str(tmp_path / "m.cnnd"), "--out", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    got = {}
    for model in ("m.cnnd", "m.onnx"):
        assert main(["infer", str(tmp_path / model), "--data", str(folder)]) == 0
        out, err = capsys.readouterr()
        assert "resized (shorter side 20)" in err or "resize 20" in err, err
        got[model] = out
    assert got["m.cnnd"] == got["m.onnx"]
