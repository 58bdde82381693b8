"""The command line: summary in every format, exit codes, train on a tiny MNIST subset, Ctrl+C."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import cli
from engine.cli import common
from engine.graph import sequential
from engine.project import load_project, save_architecture
from engine.zoo.examples import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv", "json"])
@pytest.mark.parametrize("name", [e.name for e in EXAMPLES])
def test_summary_of_each_example(capsys, name, fmt):
    rc, out, err = run(["summary", name, "--format", fmt], capsys)
    assert rc == 0, err
    if fmt == "json":
        data = json.loads(out)
        assert data["total_params"] == data["trainable_params"] + data["non_trainable_params"]
        assert data["total_params"] == sum(x["params"] for x in data["layers"]) > 0
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rows[0]["type"] == "Input" and rows[-1]["output_shape"] == "10"
    else:
        assert "Total params" in out


def invalid_graph_file(tmp_path):
    g = sequential([("Input", "in", {"channels": 1, "height": 4, "width": 4}),
                    ("Conv2d", "huge", {"out_channels": 2, "kernel_size": 9}),
                    ("Flatten", "f", {}), ("Linear", "fc", {})])
    g.add_node("Add", "lonely_add", {}, node_id="lonely_add")
    return save_architecture(tmp_path / "bad.json", g)


@pytest.mark.parametrize("fmt", ["text", "json", "csv"])
def test_invalid_graph_exits_1_listing_every_problem(tmp_path, capsys, fmt):
    path = invalid_graph_file(tmp_path)
    rc, out, err = run(["summary", str(path), "-f", fmt], capsys)
    assert rc == 1
    shown = out + err
    assert "huge" in shown and "9×9 kernel does not fit" in shown
    assert "lonely_add" in shown and "needs at least 2 inputs" in shown


def test_training_option_defaults_are_train_configs():
    """One set of defaults: the options start from TrainConfig() (the training panel too)."""
    from dataclasses import replace

    from engine.cli.main import build_parser
    from engine.nn.train import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["train", "lenet5", "--data", "mnist", "--out", "x.cnnd"])
    assert common.train_config(args) == TrainConfig()
    args = parser.parse_args(["finetune", "m.onnx", "--data", "d", "--freeze-up-to", "x",
                              "--out", "x.cnnd"])
    # fine-tuning takes smaller batches on purpose (its help says why); all else is the same
    assert common.train_config(args) == replace(TrainConfig(), batch_size=32)


def test_train_tiny_mnist_writes_a_project(tmp_path, capsys):
    out_path = tmp_path / "lenet.cnnd"
    rc, out, err = run(["train", "lenet5", "--data", "mnist", "--limit", "600", "--epochs", "1",
                        "--batch-size", "100", "--seed", "1", "--out", str(out_path)], capsys)
    assert rc == 0, err
    assert "epoch 1/1" in out and "val_acc" in out
    assert "test  loss" in out and "(600 images)" in out
    assert "img/s" in err and "saved" in err
    # 600 images, 10 % held out: both counts are said
    assert "on 540 images (+60 held out for validation)" in err
    p = load_project(out_path)
    assert p.weights is not None and "conv1.weight" in p.weights
    assert len(p.meta["history"]["epochs"]) == 1 and p.meta["history"]["stopped"] is None
    assert p.meta["train_config"]["batch_size"] == 100
    assert 0 <= p.meta["test"]["accuracy"] <= 1 and p.meta["test"]["images"] == 600
    # the project is itself a MODEL: summary reads it, train continues from its weights
    rc, out, _ = run(["summary", str(out_path), "-f", "json"], capsys)
    assert rc == 0 and json.loads(out)["total_params"] == 61706
    rc, _, err = run(["train", str(out_path), "--data", "mnist", "--limit", "200", "--epochs",
                      "1", "--out", str(tmp_path / "again.cnnd")], capsys)
    assert rc == 0 and "continuing from the weights" in err


def test_ctrl_c_stops_and_saves(tmp_path, capsys, monkeypatch):
    """A real SIGINT during the first batch: training stops there, the weights are saved."""
    sent = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs under nohup

    def batch(self, r):
        if not sent:
            sent.append(r.batch)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(common.Progress, "batch", batch)
    out_path = tmp_path / "stopped.cnnd"
    rc, _, err = run(["train", "lenet5", "--data", "mnist", "--limit", "600", "--epochs", "3",
                      "--batch-size", "50", "--out", str(out_path)], capsys)
    assert rc == 130
    assert "stopped by Ctrl+C" in err
    p = load_project(out_path)
    assert p.meta["history"]["stopped"] == "cancelled" and p.meta["history"]["epochs"] == []
    assert p.weights is not None
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_data_that_does_not_fit_exits_1(tmp_path, capsys):
    rc, _, err = run(["train", "small_vgg", "--data", "mnist", "--limit", "10", "--out",
                      str(tmp_path / "x.cnnd")], capsys)
    assert rc == 1
    assert "1 channel (greyscale) but Input 'input' expects 3" in err
    assert not (tmp_path / "x.cnnd").exists()


def test_invalid_graph_cannot_train(tmp_path, capsys):
    rc, _, err = run(["train", str(invalid_graph_file(tmp_path)), "--data", "mnist", "--out",
                      str(tmp_path / "x.cnnd")], capsys)
    assert rc == 1 and "cannot be trained" in err and "huge" in err


def test_bad_data_file_exits_1(tmp_path, capsys):
    (tmp_path / "d.npz").write_bytes(b"junk")
    rc, _, err = run(["train", "lenet5", "--data", str(tmp_path / "d.npz"), "--out",
                      str(tmp_path / "x.cnnd")], capsys)
    assert rc == 1 and "d.npz: not an .npz file" in err


@pytest.mark.parametrize("argv, message", [
    (["summary", "lenet5", "--format", "xml"], "invalid choice: 'xml'"),
    (["summary", "no_such_model"], "neither a file, an example"),
    # an unknown MODEL is a usage error for every command that takes one
    (["train", "no_such_model", "--data", "mnist", "--out", "x.cnnd"], "neither a file"),
    (["export", "no_such_model", "--out", "x.onnx"], "neither a file"),
    (["export-pytorch", "no_such_model", "--out", "pt"], "neither a file, an example"),
    (["finetune", "no_such_model", "--out", "x.cnnd", "--data", "mnist", "--freeze-up-to",
      "conv1"], "neither a file"),
    (["summary"], "the following arguments are required: MODEL"),
    (["train", "lenet5", "--data", "mnist"], "required: --out"),
    (["train", "lenet5", "--data", "mnist", "--out", "x.cnnd", "--epochs", "0"],
     "--epochs: must be at least 1"),
    (["train", "lenet5", "--data", "mnist", "--out", "x.cnnd", "--lr", "-1"], "--lr: must be in"),
    (["train", "lenet5", "--data", "mnist", "--out", "x.cnnd", "--val-split", "1"],
     "--val-split: must be in"),
    (["train", "lenet5", "--data", "mnist", "--out", "/no/such/dir/x.cnnd"], "does not exist"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "usage:"),
])
def test_bad_arguments_exit_2(capsys, argv, message):
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert message in err


def test_help_everywhere(capsys):
    for argv in (["--help"], ["summary", "--help"], ["train", "--help"], ["export", "--help"],
                 ["infer", "--help"], ["finetune", "--help"]):
        rc, out, _ = run(argv, capsys)
        assert rc == 0 and "exit codes" in out and "usage:" in out, argv
        assert max(len(ln) for ln in out.splitlines()) <= 80, argv  # wrapped
        if argv[0] != "--help":
            flat = " ".join(out.split())
            assert re.search(r"MODEL (project|\.onnx file)[^:]*template name", flat), argv


@pytest.mark.parametrize("argv, prog", [(["summary"], "cnn-designer summary"),
                                        (["train", "lenet5", "--data", "mnist"],
                                         "cnn-designer train"),
                                        (["infer", "lenet5", "--bogus"], "cnn-designer infer")])
def test_usage_errors_are_short_and_name_the_subcommand(capsys, argv, prog):
    rc, out, err = run(argv, capsys)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{prog}: error: "), err
    assert "--help" in lines[1]


def test_summary_of_a_project_whose_weights_do_not_fit(tmp_path, capsys):
    """Like the designer, summary opens it: the weights are not needed, the mismatch is said."""
    import numpy as np

    from engine.project import save_project
    from engine.zoo.examples import load_example

    g = load_example("lenet5")
    path = save_project(tmp_path / "m.cnnd", g, {"fc1.weight": np.zeros((3, 3), np.float32)})
    rc, out, err = run(["summary", str(path), "-f", "json"], capsys)
    assert rc == 0 and json.loads(out)["total_params"] == 61706
    assert "warning: layer 'fc1'" in err and "3×3" in err


def test_main_py_dispatches_to_the_cli():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "main.py", "summary", "lenet5", "-f", "json"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_params"] == 61706
    r = subprocess.run([sys.executable, "main.py", "summary", "lenet5", "--format", "xml"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith("sudo apt-get")]
    assert len(commands) == 2  # one installs and starts the app, one installs and tests
    test_cmd = commands[1].split(" && ")
    assert test_cmd[-1] == "QT_QPA_PLATFORM=offscreen python -m pytest -q"
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip()
                and not line.startswith("#")]
    assert ci_lines[-1] == test_cmd[-1]
    assert "pip install -q -e '.[test]'" in ci_lines and "python3 -m venv .venv" in ci_lines
    for pkg in commands[1].split("install -y ")[1].split(" && ")[0].split():
        assert pkg in ci, pkg  # CI installs what the README tells a person to install
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


@pytest.fixture
def main_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cnn_main", ROOT / "main.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gui_without_display_says_so(main_py, monkeypatch, capsys):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main_py.main([]) == 1
    assert "No display found" in capsys.readouterr().err


def test_gui_missing_system_library_names_the_packages(main_py, monkeypatch, capsys):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    import designer.launch

    monkeypatch.setattr(designer.launch.ctypes.util, "find_library",
                        lambda name: None if name == "xcb-cursor" else f"lib{name}.so")
    assert main_py.main(["model.cnnd"]) == 1
    err = capsys.readouterr().err
    assert "libxcb-cursor" in err and "apt-get install" in err and "libxcb-cursor0" in err
    assert "Traceback" not in err


def test_main_py_sends_commands_to_the_cli(main_py, capsys):
    assert main_py.main(["summary", "lenet5", "-f", "csv"]) == 0
    assert capsys.readouterr().out.startswith("name,type,output_shape")


@pytest.mark.parametrize("word, hint", [("sumary", "did you mean 'summary'?"), ("bogus", None)])
def test_mistyped_command_is_an_error_not_the_gui(tmp_path, word, hint):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), word, "lenet5"], check=False,
                       cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 2
    assert f"unknown command '{word}'" in p.stderr
    assert (hint in p.stderr) if hint else "did you mean" not in p.stderr
    assert p.stdout == ""


def test_wheel_ships_resources_and_a_gui_command():
    """pyproject: the package data globs match the files engine.data / engine.zoo.examples read, and
    the GUI entry point names a callable that takes no argument."""
    import importlib
    import inspect
    import tomllib

    from engine.data import MNIST_DIR
    from engine.zoo.examples import EXAMPLES_DIR

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = conf["tool"]["setuptools"]["package-data"]["resources"]
    shipped = {p.resolve() for g in globs for p in (ROOT / "resources").glob(g)}
    needed = set(MNIST_DIR.glob("*.gz")) | set(EXAMPLES_DIR.glob("*.json"))
    assert len(needed) >= 5 and {p.resolve() for p in needed} <= shipped
    assert MNIST_DIR.parent.parent == ROOT  # ../resources from engine/: beside the packages
    target = conf["project"]["gui-scripts"]["cnn-designer-gui"]
    module, _, func = target.partition(":")
    fn = getattr(importlib.import_module(module), func)
    assert all(p.default is not inspect.Parameter.empty
               for p in inspect.signature(fn).parameters.values())
