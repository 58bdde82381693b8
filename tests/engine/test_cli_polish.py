"""Command line polish (issue 16): exit codes as the README says, messages that name the flag
or the parameter at fault, a stratified --limit, --input scaled as --data, the PyTorch export's
README without weights, and the GUI launcher's own name in its messages."""

import sys

import numpy as np
import pytest

from engine import cli
from engine.data import load_dataset, stratified
from engine.project import load_project, save_project

from .test_cli import run
from .test_data import make_image_folder


@pytest.mark.parametrize("argv", [
    ["summary", "{m}"], ["train", "{m}", "--data", "mnist", "--out", "{t}/o.cnnd"],
    ["export", "{m}", "--out", "{t}/o.onnx"], ["infer", "{m}", "--data", "mnist"],
    ["import", "{m}", "--out", "{t}/o.cnnd"], ["export-pytorch", "{m}", "--out", "{t}/pt"],
    ["explain", "{m}", "--image", "{t}/a.png", "--out", "{t}/h.png"],
    ["finetune", "{m}", "--data", "mnist", "--freeze-up-to", "x", "--out", "{t}/o.cnnd"],
    ["sweep", "{m}", "--data", "mnist", "--space", "{t}/s.json"],
])
def test_a_missing_model_is_a_usage_error_for_every_command(tmp_path, capsys, argv):
    missing = str(tmp_path / "nosuch.onnx")
    rc, out, err = run([a.format(m=missing, t=tmp_path) for a in argv], capsys)
    assert rc == 2, err
    assert "nosuch.onnx" in err and "no such file" in err.replace("neither a file", "no such file")
    assert "Traceback" not in err and out == ""


def test_an_unknown_option_is_a_usage_error_not_the_gui(monkeypatch, capsys):
    import main as main_py  # the repository's main.py (tests/ is a package under the root)

    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):  # the GUI path would say 1
        monkeypatch.delenv(var, raising=False)
    assert main_py.main(["--bogus"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized option --bogus" in err and "usage: python main.py [FILE]" in err


def test_the_gui_command_names_itself(monkeypatch, capsys):
    import designer.launch

    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "argv", ["cnn-designer-gui"])
    assert designer.launch.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("cnn-designer-gui: No display found")
    assert "`cnn-designer --help`" in err and "main.py" not in err
    monkeypatch.setattr(sys, "argv", ["cnn-designer-gui", "--nope"])
    assert designer.launch.main() == 2
    assert "cnn-designer-gui: error: unrecognized option --nope" in capsys.readouterr().err


def test_import_of_an_open_size_names_the_input_shape_flag(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
              tmp_path / "open.onnx")
    rc, _, err = run(["import", str(tmp_path / "open.onnx"), "--out", str(tmp_path / "o.cnnd")],
                     capsys)
    assert rc == 1 and "open size" in err and "--input-shape C H W" in err
    rc, _, err = run(["import", str(tmp_path / "open.onnx"), "--out", str(tmp_path / "o.cnnd"),
                      "--input-shape", "3", "8", "8", "--no-parity"], capsys)
    assert rc == 0, err


def test_stratified_takes_each_class_in_its_share():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)  # sorted by class, as folders are read
    for n in (10, 20, 50):
        counts = np.bincount(y[stratified(y, n)], minlength=3)
        assert counts.sum() == n
        np.testing.assert_allclose(counts, n * np.array([0.6, 0.3, 0.1]), atol=1)
    assert len(set(stratified(y, 100).tolist())) == 100


def test_limit_on_an_image_folder_samples_every_class(tmp_path):
    root = make_image_folder(tmp_path / "pets", classes=("cat", "dog", "owl"), n=5)
    ds = load_dataset(root, (3, 8, 8), limit=6).train
    assert len(ds.x) == 6 and np.bincount(ds.y).tolist() == [2, 2, 2]
    whole = load_dataset(root, (3, 8, 8)).train  # the sample is images of the folder, not copies
    for img, label in zip(ds.x, ds.y):
        assert any(np.array_equal(img, w) for w in whole.x[whole.y == label])


def test_limit_on_a_sorted_npz_samples_every_class(tmp_path):
    x = np.random.default_rng(0).random((40, 1, 4, 4), dtype=np.float32)
    y = np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(tmp_path / "d.npz", (1, 4, 4), limit=8).train
    assert np.bincount(ds.y).tolist() == [2, 2, 2, 2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "l5.cnnd"
    assert cli.main(["train", "lenet5", "--data", "mnist", "--limit", "64", "--epochs", "1",
                     "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize("command", [["export", "--out", "{t}/x.onnx"],
                                     ["train", "--data", "mnist", "--out", "{t}/x.cnnd"],
                                     ["export-pytorch", "--out", "{t}/pt"]])
def test_an_invalid_parameter_is_reported_as_itself(trained, tmp_path, capsys, command):
    p = load_project(trained)
    p.graph.nodes["conv1"].params["out_channels"] = -3
    bad = save_project(tmp_path / "bad.cnnd", p.graph, p.weights)
    argv = [command[0], str(bad), *[a.format(t=tmp_path) for a in command[1:]]]
    rc, _, err = run(argv, capsys)
    assert rc == 1
    assert "'conv1' parameter 'out_channels' must be at least 1; got -3" in err
    assert "do not match the architecture" not in err and "has no weight" not in err


def test_infer_input_of_uint8_pixels_is_scaled_as_data_scales_it(trained, tmp_path, capsys):
    from engine.data import load_mnist

    x = load_mnist("test", 6).x
    u8 = np.round(x * 255).astype(np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    np.save(tmp_path / "f.npy", u8.astype(np.float32) / np.float32(255))
    outs = []
    for name in ("u8", "f"):
        rc, _, err = run(["infer", str(trained), "--input", str(tmp_path / f"{name}.npy"),
                          "--output", str(tmp_path / f"{name}.out.npy"), "--backend", "engine"],
                         capsys)
        assert rc == 0, err
        assert ("holds uint8 pixels; scaled to 0..1" in err) == (name == "u8")
        outs.append(np.load(tmp_path / f"{name}.out.npy"))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_export_pytorch_readme_loads_only_what_it_wrote(trained, tmp_path, capsys):
    assert run(["export-pytorch", "lenet5", "--out", str(tmp_path / "bare")], capsys)[0] == 0
    assert not (tmp_path / "bare" / "weights.npz").exists()
    readme = (tmp_path / "bare" / "README.md").read_text()
    assert "weights.npz\")" not in readme and "model = LeNet5().eval()" in readme
    assert run(["export-pytorch", str(trained), "--out", str(tmp_path / "w")], capsys)[0] == 0
    assert (tmp_path / "w" / "weights.npz").exists()
    assert 'load_npz(LeNet5(), "weights.npz")' in (tmp_path / "w" / "README.md").read_text()
