"""PyTorch reference models for the import tests, and the script that wrote the committed
small .onnx files beside it (run: python tests/data/make_torch_models.py; needs torch).

LeNet-5, a VGG-style net (batch norm, ReLU6, ceil-mode pooling, grouped conv, LeakyReLU, adaptive
pooling, dropout, the view() flatten that exports as a Shape/Gather/Concat/Reshape chain,
softmax) and a residual net (projection shortcut, Add, global pooling).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10)
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class VGGish(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU6(),
            nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
            nn.Conv2d(16, 16, 3, padding=1, groups=4),
            nn.LeakyReLU(0.1),
            nn.AdaptiveAvgPool2d((2, 2)),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1)
        )

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.short(x))


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def randomize_bn(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
    return m.eval()


MODELS = {
    "lenet5": (LeNet5, (1, 28, 28)),
    "vgg_small": (VGGish, (3, 20, 20)),
    "resnet_small": (ResNetish, (3, 16, 16)),
}
COMMITTED = ("vgg_small", "resnet_small")  # small enough to commit (< 200 KB each)


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cls, _ = MODELS[name]
    return randomize_bn(cls(), seed)


def export_bytes(model: nn.Module, shape, opset: int = 17) -> bytes:
    """torch.onnx.export (TorchScript exporter, dynamo=False) with a dynamic batch axis."""
    f = io.BytesIO()
    torch.onnx.export(
        model,
        torch.randn(1, *shape),
        f,
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
    )
    return f.getvalue()


def main() -> None:
    io_arrays = {}
    for name in COMMITTED:
        model = build(name)
        shape = MODELS[name][1]
        (HERE / f"torch_{name}.onnx").write_bytes(export_bytes(model, shape))
        x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
        with torch.no_grad():
            io_arrays[f"{name}_x"] = x
            io_arrays[f"{name}_y"] = model(torch.from_numpy(x)).numpy()
    np.savez(HERE / "torch_models_io.npz", **io_arrays)
    print(f"torch {torch.__version__}: wrote", ", ".join(f"torch_{n}.onnx" for n in COMMITTED))


if __name__ == "__main__":
    main()
