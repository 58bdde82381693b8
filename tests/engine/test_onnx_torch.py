"""Models made by PyTorch's torch.onnx.export import and run here like in ONNX Runtime.

The committed files under tests/data/ (written by tests/data/make_torch_models.py) always run;
fresh exports run where torch is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine.onnx.export import export_onnx
from engine.onnx.importer import import_onnx
from engine.onnx.runtime import CPU as CPU_PROVIDER
from engine.onnx.runtime import OnnxModel, parity_report

DATA = Path(__file__).resolve().parent.parent / "data"
ATOL, RTOL = 1e-5, 1e-4
CPU = [CPU_PROVIDER]  # float32 reference (an accelerator may use TF32)


def close(a, b, atol=ATOL, rtol=RTOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, atol=atol, rtol=rtol)


def check_imported(source, x, torch_y=None):
    """Engine on the imported graph == ONNX Runtime on the original file (== torch), and our
    re-export runs the same in ONNX Runtime."""
    imp = import_onnx(source)
    ours = imp.network().forward(x)
    close(ours, OnnxModel(source, providers=CPU).run(x))
    if torch_y is not None:
        close(ours, torch_y, atol=1e-4)
    again = export_onnx(imp.graph, imp.weights)
    close(OnnxModel(again, providers=CPU).run(x), ours)
    assert all(r.ok for r in parity_report(imp.graph, imp.weights, x[:2]))
    return imp


@pytest.mark.parametrize("name", ["vgg_small", "resnet_small"])
def test_committed_torch_files_import(name):
    io = np.load(DATA / "torch_models_io.npz")
    path = DATA / f"torch_{name}.onnx"
    assert path.stat().st_size < 200_000
    imp = check_imported(path, io[f"{name}_x"], io[f"{name}_y"])
    types = [n.type_name for n in imp.graph.nodes.values()]
    if name == "vgg_small":
        # PyTorch's x.view(x.size(0), -1) (a Shape/Gather/Unsqueeze/Concat/Reshape chain) is one
        # Flatten; Clip(0, 6) is ReLU6; the divisible adaptive pooling an AveragePool
        assert types.count("Flatten") == 1 and "ReLU6" in types and "Softmax" in types
        assert "features.0" in {n.name for n in imp.graph.nodes.values()}
    else:
        assert types.count("Add") == 2 and "GlobalAvgPool2d" in types


def test_committed_file_through_the_command_line(tmp_path):
    from engine.cli.main import main
    from engine.project import load_project

    out = tmp_path / "resnet.cnnd"
    assert main(["import", str(DATA / "torch_resnet_small.onnx"), "--out", str(out)]) == 0
    project = load_project(out)
    io = np.load(DATA / "torch_models_io.npz")
    from engine.nn.network import Network

    net = Network.compile(project.graph)
    net.load_state_dict(project.weights)
    close(net.forward(io["resnet_small_x"]), io["resnet_small_y"], atol=1e-4)


HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name,opset", [("lenet5", 17), ("vgg_small", 17),
                                        ("resnet_small", 17), ("vgg_small", 13)])
def test_fresh_torch_exports_import(name, opset):
    torch = pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(DATA))
    try:
        import make_torch_models as mtm
    finally:
        sys.path.remove(str(DATA))
    model = mtm.build(name, seed=1)
    shape = mtm.MODELS[name][1]
    data = mtm.export_bytes(model, shape, opset)
    x = np.random.default_rng(2).standard_normal((3, *shape)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    check_imported(data, x, want)
