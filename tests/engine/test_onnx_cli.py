"""The export / infer / import commands (through the app's command line, engine.cli.main.main)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cli.main import main


def test_export_import_infer_round_trip(tmp_path, capsys):
    onnx_path, project = tmp_path / "lenet.onnx", tmp_path / "lenet.cnnd"
    assert main(["export", "lenet5", "--out", str(onnx_path)]) == 0
    assert "13 nodes" in capsys.readouterr().err  # messages on stderr, data on stdout
    assert main(["import", str(onnx_path), "--out", str(project)]) == 0
    assert project.exists()
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for model in (onnx_path, project):
        for backend in ("engine", "onnxruntime"):
            y = tmp_path / f"y_{backend}_{model.suffix[1:]}.npy"
            assert main(["infer", str(model), "--input", str(tmp_path / "x.npy"), "--output",
                         str(y), "--backend", backend]) == 0
            outs[(model.suffix, backend)] = np.load(y)
    ref = outs[(".cnnd", "engine")]
    assert ref.shape == (3, 10)
    for k, v in outs.items():
        np.testing.assert_allclose(v, ref, atol=1e-5, rtol=1e-4, err_msg=str(k))
    # a single C×H×W image gives one output without the batch axis
    np.save(tmp_path / "one.npy", x[0])
    assert main(["infer", str(onnx_path), "--input", str(tmp_path / "one.npy"), "--output",
                 str(tmp_path / "one_y.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "one_y.npy"), ref[0], atol=1e-5, rtol=1e-4)


def test_infer_reports_accuracy_on_labelled_data(tmp_path, capsys):
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "lenet5", "--out", str(onnx_path)]) == 0
    capsys.readouterr()
    assert main(["infer", str(onnx_path), "--data", "mnist", "--limit", "64"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "/64" in out


@pytest.mark.parametrize("argv,code", [
    (["export", "lenet5", "--out", "{tmp}/m.onnx", "--opset", "5"], 2),
    (["infer", "lenet5", "--input", "{tmp}/x.npy"], 2),
    (["infer", "lenet5"], 2),
    (["import", "{tmp}/bad.onnx", "--out", "{tmp}/p.cnnd"], 1),
    (["infer", "{tmp}/bad.onnx", "--data", "mnist"], 1),
    (["export", "lenet5", "--out", "{tmp}/no/such/dir/m.onnx"], 2),
])
def test_bad_usage_and_bad_files(tmp_path, argv, code, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage" * 20)
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == code
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "p.cnnd").exists()


def test_help_texts(capsys):
    for cmd in ("export", "infer", "import"):
        assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--opset" in out and "--backend" in out and "--input-shape" in out


def test_infer_runs_a_channels_last_file_on_channels_first_data(tmp_path):
    import onnx

    from tests.engine.test_onnx import keras_style_model

    path = tmp_path / "keras.onnx"
    onnx.save_model(keras_style_model(), str(path))
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    outs = []
    for backend in ("engine", "onnxruntime"):
        y = tmp_path / f"{backend}.npy"
        assert main(["infer", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(y),
                     "--backend", backend]) == 0
        outs.append(np.load(y))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["engine", "onnxruntime"])
def test_infer_refuses_a_wrongly_shaped_array_in_one_line(tmp_path, capsys, backend):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 32, 32), np.float32))
    rc = main(["infer", "lenet5", "--input", str(tmp_path / "x.npy"), "--output",
               str(tmp_path / "y.npy"), "--backend", backend])
    err = capsys.readouterr().err
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "1×28×28" in errors[0] and "2×3×32×32" in errors[0]
    assert "Traceback" not in err and not (tmp_path / "y.npy").exists()


def test_infer_refuses_nan_input(tmp_path, capsys):
    x = np.zeros((2, 1, 28, 28), np.float32)
    x[1, 0, 3, 3] = np.nan
    np.save(tmp_path / "x.npy", x)
    rc = main(["infer", "lenet5", "--input", str(tmp_path / "x.npy"), "--output",
               str(tmp_path / "y.npy"), "--backend", "engine"])
    assert rc == 1
    assert "1 of 1,568 values are NaN" in capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()


def test_infer_on_a_mismatched_image_folder_warns(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    rc = main(["infer", "lenet5", "--data", str(tmp_path / "imgs"), "--backend", "engine"])
    out, err = capsys.readouterr()
    assert rc == 0 and "/6) [engine]" in out
    assert "RGB 40×48" in err and "greyscale" in err and "resized to 28×28" in err
    assert "3 classes (a, b, c) but the model outputs 10 values" in err


def test_accuracy_is_a_percentage(tmp_path, capsys):
    assert main(["infer", "lenet5", "--data", "mnist", "--limit", "20",
                 "--backend", "engine"]) == 0
    out = capsys.readouterr().out
    import re

    assert re.search(r"accuracy \d{1,3}\.\d\d% \(\d+/20\)", out), out


def test_onnx_file_works_as_model_and_import_names_a_project(tmp_path, capsys):
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "lenet5", "--out", str(onnx_path)]) == 0
    assert main(["summary", str(onnx_path), "-f", "json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["total_params"] == 61706
    assert main(["new", "lenet5", "--out", str(tmp_path / "p.cnnd")]) == 0
    capsys.readouterr()
    assert main(["import", str(tmp_path / "p.cnnd"), "--out", str(tmp_path / "q.cnnd")]) == 1
    err = capsys.readouterr().err
    assert "CNN Designer project" in err and "needs no import" in err
    assert "Wire format" not in err
