"""PyTorch export: generated module == engine (parameter counts, outputs with weights loaded),
clean code (py_compile, ruff), and a training script that runs under torchrun on the CPU."""

from __future__ import annotations

import argparse
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest

from engine.cli.pytorch import add_commands
from engine.graph import Graph, sequential
from engine.layers import REGISTRY
from engine.nn.network import Network
from engine.pytorch_export import (
    ExportError,
    class_name_for,
    export_pytorch,
    generate_model,
    python_name,
)
from engine.validate import validate
from engine.zoo.templates import build_template

# ---- without torch ------------------------------------------------------------------------


def test_every_layer_type_has_a_pytorch_mapping():
    from engine.layers import Layer

    for cls in REGISTRY.values():  # declared in the layer's own class, as its ONNX mapping is
        assert (cls.to_pytorch is not Layer.to_pytorch
                or cls.torch_module is not Layer.torch_module), cls.type_name


def test_python_names_are_identifiers_without_collisions():
    assert python_name("layer2.0.conv1") == "layer2_0_conv1"
    assert python_name("0conv") == "layer_0conv"
    assert python_name("training") == "training_"  # would shadow nn.Module.training
    assert python_name("class") == "class_"
    assert python_name("x") == "x_"  # forward's local variable
    assert class_name_for("LeNet-5") == "LeNet5"
    assert class_name_for("my net") == "MyNet"
    assert class_name_for("5") == "Net5"
    g = sequential([("Input", "in", {"channels": 1, "height": 4, "width": 4}),
                    ("Conv2d", "a.b", {"out_channels": 2}),
                    ("Conv2d", "a_b", {"out_channels": 2, "padding": 1}),
                    ("Flatten", "f", {}), ("Linear", "fc", {"out_features": 3})])
    code = generate_model(g)
    assert code.node_modules["a.b"] == "a_b" and code.node_modules["a_b"] == "a_b_2"


def test_invalid_design_is_refused_with_the_problem():
    g = sequential([("Input", "in", {"channels": 1, "height": 4, "width": 4}),
                    ("Conv2d", "c", {"out_channels": 2, "kernel_size": 9})])
    with pytest.raises(ExportError, match="kernel does not fit"):
        generate_model(g)
    with pytest.raises(ExportError, match="class name"):
        generate_model(build_template("lenet5", 10), class_name="2bad")


def test_missing_or_misshaped_weights_and_bad_folders_are_clear_errors(tmp_path):
    graph = build_template("lenet5", 10)
    state = Network.compile(graph, np.random.default_rng(0)).state_dict()
    partial = {k: v for k, v in state.items() if k != "fc2.bias"}
    with pytest.raises(ExportError, match="no 'bias' for layer 'fc2'"):
        export_pytorch(graph, partial, tmp_path / "a")
    state["conv1.weight"] = state["conv1.weight"][:3]
    with pytest.raises(ExportError, match="'conv1': 'weight' has shape"):
        export_pytorch(graph, state, tmp_path / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="cannot create the folder"):
        export_pytorch(graph, None, tmp_path / "file" / "sub")


def test_every_template_generates_compilable_code(tmp_path):
    from engine.zoo.templates import TEMPLATES
    for name in TEMPLATES:
        code = generate_model(build_template(name, 10))
        path = tmp_path / f"{name}.py"
        path.write_text(code.source)
        py_compile.compile(str(path), doraise=True)


# ---- with torch ---------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _import(path):
    name = f"exported_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _randomize(net: Network, rng):
    """Non-trivial weights everywhere, BatchNorm statistics included."""
    for layer in net.layers.values():
        for k, w in layer.weights.items():
            if k == "running_var":
                w[...] = rng.uniform(0.5, 2.0, w.shape)
            elif k in ("running_mean", "bias"):
                w[...] = rng.normal(0, 0.2, w.shape)
            elif layer.type_name == "BatchNorm2d":
                w[...] = rng.uniform(0.5, 1.5, w.shape)


def _export_and_compare(graph: Graph, tmp_path, batch=3, seed=0, atol=1e-4):
    torch = _torch()
    rng = np.random.default_rng(seed)
    v = validate(graph)
    assert v.ok, [m.text for m in v.errors]
    net = Network.compile(graph, rng)
    _randomize(net, rng)
    paths = export_pytorch(graph, net.state_dict(), tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["README.md", "model.py", "train.py", "weights.npz"]
    mod = _import(tmp_path / "out" / "model.py")
    cls = getattr(mod, generate_model(graph).class_name)
    model = cls()
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers()
                  if not n.endswith("num_batches_tracked"))
    assert trainable == v.trainable_params
    assert buffers == v.non_trainable_params
    mod.load_npz(model, str(tmp_path / "out" / "weights.npz"))
    model.eval()
    x = rng.standard_normal((batch,) + net.input_shape).astype(np.float32)
    want = net.forward(x)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol * scale)
    return mod, model, net


def test_lenet5_outputs_equal_the_engine(tmp_path):
    _export_and_compare(build_template("lenet5", 10), tmp_path)


def test_residual_net_with_add_and_batchnorm(tmp_path):
    g = Graph("tiny resnet")
    g.add_node("Input", "input", {"channels": 3, "height": 12, "width": 12}, node_id="input")
    g.add_node("Conv2d", "stem", {"out_channels": 8, "padding": 1, "bias": False}, node_id="stem")
    g.add_node("BatchNorm2d", "stem.bn", {"eps": 1e-3, "momentum": 0.05}, node_id="bn")
    g.add_node("ReLU", "relu", {}, node_id="relu")
    g.add_node("Conv2d", "block.conv", {"out_channels": 8, "padding": "same"}, node_id="c1")
    g.add_node("LeakyReLU", "block.act", {"negative_slope": 0.2}, node_id="a1")
    g.add_node("Add", "block.add", {}, node_id="add")
    g.add_node("GlobalAvgPool2d", "gap", {}, node_id="gap")
    g.add_node("Flatten", "flatten", {}, node_id="flat")
    g.add_node("Linear", "fc", {"out_features": 5}, node_id="fc")
    g.add_node("BatchNorm2d", "fc.bn", {}, node_id="bn1d")  # BatchNorm1d after Linear
    g.add_node("Softmax", "softmax", {}, node_id="sm")
    for a, b in [("input", "stem"), ("stem", "bn"), ("bn", "relu"), ("relu", "c1"), ("c1", "a1"),
                 ("a1", "add"), ("relu", "add"), ("add", "gap"), ("gap", "flat"),
                 ("flat", "fc"), ("fc", "bn1d"), ("bn1d", "sm")]:
        g.add_edge(a, b)
    torch = _torch()
    _, model, _ = _export_and_compare(g, tmp_path)
    x = torch.zeros((2, 3, 12, 12))
    with torch.no_grad():  # logits=True stops before the softmax, for the training loss
        assert torch.allclose(model(x, logits=True).softmax(1), model(x), atol=1e-6)


def test_concat_net_with_ceil_mode_pools(tmp_path):
    g = Graph("mini inception")
    g.add_node("Input", "input", {"channels": 4, "height": 15, "width": 15}, node_id="in")
    g.add_node("Conv2d", "b1", {"out_channels": 3, "kernel_size": 1}, node_id="b1")
    g.add_node("Conv2d", "b2", {"out_channels": 5, "kernel_size": [1, 7], "padding": [0, 3]},
               node_id="b2")  # Inception-v3's asymmetric kernels
    g.add_node("MaxPool2d", "b3.pool", {"kernel_size": 3, "stride": 1, "padding": 1,
                                        "ceil_mode": True}, node_id="b3")
    g.add_node("AvgPool2d", "b4.pool", {"kernel_size": 3, "stride": 1, "padding": 1},
               node_id="b4")  # F.avg_pool2d(x, 3, 1, 1): padding counts in the mean
    g.add_node("Concat", "cat", {}, node_id="cat")
    g.add_node("MaxPool2d", "pool", {"kernel_size": 3, "stride": 2, "ceil_mode": True},
               node_id="pool")
    g.add_node("AvgPool2d", "avg", {"kernel_size": 3, "stride": 2, "padding": 1,
                                    "ceil_mode": True, "count_include_pad": False},
               node_id="avg")
    g.add_node("Flatten", "flatten", {}, node_id="flat")
    g.add_node("Linear", "fc", {"out_features": 4, "bias": False}, node_id="fc")
    for a, b in [("in", "b1"), ("in", "b2"), ("in", "b3"), ("in", "b4"), ("b1", "cat"),
                 ("b2", "cat"), ("b3", "cat"), ("b4", "cat"), ("cat", "pool"), ("pool", "avg"), ("avg", "flat"),
                 ("flat", "fc")]:
        g.add_edge(a, b)
    _export_and_compare(g, tmp_path)


def test_asymmetric_padding_ceil_mode_groups_dilation_lrn(tmp_path):
    g = sequential([
        ("Input", "input", {"channels": 4, "height": 14, "width": 13}),
        # SAME_UPPER with stride 2 on 14×13: asymmetric padding -> ZeroPad2d
        ("Conv2d", "conv1", {"out_channels": 8, "kernel_size": 4, "stride": 2,
                             "padding": "same"}),
        ("LocalResponseNorm", "lrn_even", {"size": 4, "alpha": 0.01, "beta": 0.75, "k": 2.0}),
        ("Conv2d", "dw", {"out_channels": 8, "kernel_size": 3, "groups": 4, "padding": [0, 1, 2, 1],
                          "dilation": [1, 2]}),
        ("LocalResponseNorm", "lrn_odd", {"size": 5, "alpha": 0.01, "k": 1.5}),
        ("ReLU6", "relu6", {}),
        # explicit asymmetric padding with ceil mode: PyTorch's extra window is cropped
        ("MaxPool2d", "pool", {"kernel_size": 3, "stride": 2, "padding": [0, 0, 1, 1],
                               "ceil_mode": True}),
        ("AvgPool2d", "avg", {"kernel_size": 2, "stride": 2, "padding": [1, 0, 0, 1],
                              "ceil_mode": True}),
        ("Sigmoid", "sig", {}),
        ("AdaptiveAvgPool2d", "adapt", {"output_size": [2, 1]}),
        ("Flatten", "flatten", {}),
        ("Dropout", "drop", {"p": 0.3}),
        ("Linear", "fc", {"out_features": 3}),
        ("Tanh", "tanh", {}),
    ], name="odd corners")
    _export_and_compare(g, tmp_path)
    src = (tmp_path / "out" / "model.py").read_text()
    assert "nn.ZeroPad2d" in src and "OnnxLocalResponseNorm(" in src
    assert "nn.LocalResponseNorm(5" in src and "groups=4" in src


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v2", "squeezenet1_1"])
def test_template_outputs_equal_the_engine(tmp_path, name):
    # ceil-mode pools (GoogLeNet, SqueezeNet), depthwise convs + ReLU6 (MobileNetV2), residuals
    _export_and_compare(build_template(name, 10), tmp_path, batch=1)


@pytest.mark.parametrize("name", ["densenet121", "inception_v3", "resnet50"])
def test_template_parameter_counts_equal_the_engine(tmp_path, name):
    _torch()
    graph = build_template(name, 1000)
    v = validate(graph)
    export_pytorch(graph, None, tmp_path)
    mod = _import(tmp_path / "model.py")
    model = getattr(mod, class_name_for(graph.name))()
    assert sum(p.numel() for p in model.parameters()) == v.trainable_params
    # weights map back by name: torchvision-style module paths become submodule names
    node = "features.denseblock3.denselayer12.conv2" if name == "densenet121" else "fc"
    assert mod.NODE_MODULES.get(node, node) in dict(model.named_modules())
    if name == "densenet121":
        assert mod.NODE_MODULES[node] == "features_denseblock3_denselayer12_conv2"


def test_project_style_weights_load_and_save_round_trip(tmp_path):
    torch = _torch()
    graph = build_template("lenet5", 10)
    net = Network.compile(graph, np.random.default_rng(3))
    export_pytorch(graph, None, tmp_path)
    assert not (tmp_path / "weights.npz").exists()
    np.savez(tmp_path / "project_weights.npz", **net.state_dict())  # "node_id.name" keys
    mod = _import(tmp_path / "model.py")
    model = mod.load_npz(mod.LeNet5(), str(tmp_path / "project_weights.npz")).eval()
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), net.forward(x),
                                   rtol=1e-4, atol=1e-5)
    mod.save_npz(model, str(tmp_path / "back.npz"))
    with np.load(tmp_path / "back.npz") as back:
        assert set(back.files) == set(net.state_dict())
    with pytest.raises(KeyError, match="no values for"):
        np.savez(tmp_path / "partial.npz", **{"conv1.weight": net.state_dict()["conv1.weight"]})
        mod.load_npz(mod.LeNet5(), str(tmp_path / "partial.npz"))


def test_generated_code_passes_ruff(tmp_path):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    graph = build_template("googlenet", 10)
    net = Network.compile(graph, np.random.default_rng(0))
    export_pytorch(graph, net.state_dict(), tmp_path)
    g2 = sequential([("Input", "in", {"channels": 2, "height": 9, "width": 9}),
                     ("LocalResponseNorm", "lrn", {"size": 2}), ("Flatten", "f", {}),
                     ("Linear", "fc", {"out_features": 2}), ("Softmax", "sm", {})])
    export_pytorch(g2, None, tmp_path / "b")
    for f in ["model.py", "train.py", "b/model.py", "b/train.py"]:
        py_compile.compile(str(tmp_path / f), doraise=True)
    r = subprocess.run([ruff, "check", "--isolated", "--line-length", "100",
                        "--select", "E,F,W,I,UP,B", "--ignore", "I001", str(tmp_path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_subcommand_writes_the_folder(tmp_path):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export-pytorch", "squeezenet1_1", "--out", str(tmp_path / "sq"),
                              "--class-name", "Squeeze"])
    assert args.func(args) == 0
    src = (tmp_path / "sq" / "model.py").read_text()
    assert "class Squeeze(nn.Module)" in src
    assert (tmp_path / "sq" / "train.py").exists()
    assert not (tmp_path / "sq" / "weights.npz").exists()  # a template has no weights


def test_cli_exports_a_project_file_with_its_weights(tmp_path):
    project = pytest.importorskip("engine.project")
    graph = build_template("lenet5", 10)
    state = Network.compile(graph, np.random.default_rng(0)).state_dict()
    path = project.save_project(tmp_path / "lenet.cnnd", graph, state)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export-pytorch", str(path), "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    with np.load(tmp_path / "out" / "weights.npz") as w:
        np.testing.assert_array_equal(w["fc3.bias"], state["fc3.bias"])
    args = parser.parse_args(["export-pytorch", "no-such-model", "--out", str(tmp_path / "x")])
    with pytest.raises(Exception, match="no-such-model"):
        args.func(args)


def test_train_script_one_epoch_under_torchrun_two_cpu_processes(tmp_path):
    """The slow one (~10-20 s): two processes, gloo backend, DistributedSampler."""
    _torch()
    graph = sequential([("Input", "input", {"channels": 1, "height": 8, "width": 8}),
                        ("Conv2d", "conv", {"out_channels": 4, "padding": 1}),
                        ("BatchNorm2d", "bn", {}), ("ReLU", "relu", {}),
                        ("MaxPool2d", "pool", {"kernel_size": 2}),
                        ("Flatten", "flatten", {}), ("Linear", "fc", {"out_features": 3}),
                        ("Softmax", "softmax", {})], name="tiny")
    net = Network.compile(graph, np.random.default_rng(0))
    out = tmp_path / "export"
    export_pytorch(graph, net.state_dict(), out)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((48, 1, 8, 8), dtype=np.float32),
             y=rng.integers(0, 3, 48))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port", str(29500 + os.getpid() % 1000), str(out / "train.py"),
         "--data", str(tmp_path / "data.npz"), "--epochs", "1", "--batch-size", "8",
         "--device", "cpu", "--out", str(tmp_path / "ckpt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "epoch 1/1" in r.stdout and r.stdout.count("epoch 1/1") == 1  # rank 0 only
    with np.load(tmp_path / "ckpt.npz") as ck:  # keyed by node ids: loads back into the app
        back = Network.compile(graph, np.random.default_rng(1))
        back.load_state_dict({k: ck[k] for k in ck.files})


def _write_idx(path, arr: np.ndarray) -> None:
    """MNIST's IDX format: magic (0, 0, 8 = uint8, ndim), big-endian sizes, the bytes."""
    import gzip
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_train_script_reads_mnist_idx_on_one_process(tmp_path):
    _torch()
    graph = build_template("lenet5", 10)
    export_pytorch(graph, None, tmp_path / "export")
    rng = np.random.default_rng(0)
    idx = tmp_path / "mnist"
    idx.mkdir()
    _write_idx(idx / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28)))
    _write_idx(idx / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 40))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    r = subprocess.run(
        [sys.executable, str(tmp_path / "export" / "train.py"), "--mnist-idx", str(idx),
         "--epochs", "2", "--batch-size", "16", "--optimizer", "sgd", "--lr", "0.01",
         "--out", str(tmp_path / "ck")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "epoch 2/2" in r.stdout and (tmp_path / "ck.pt").exists()
