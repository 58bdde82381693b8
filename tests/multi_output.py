"""A layer with several outputs, declared only for the tests (no such type ships yet).

`TestChunk` splits its input into `chunks` equal parts along the channel axis, as
torch.chunk(x, chunks, dim=1) and ONNX Split (opset 13-17: equal parts when no sizes are
given). The `chunk_layer` fixture registers it for one test and removes it afterwards, so the
registry the rest of the suite sees is unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ShapeError
from engine.layers import Layer, Param, fmt_shape, register, unregister
from engine.layers.torch_code import TorchCode

CHUNK = "TestChunk"


class TestChunk(Layer):
    """(C, H, W) -> `chunks` outputs of (C / chunks, H, W)."""

    __test__ = False  # not a pytest test class, despite the name
    type_name = CHUNK
    label = "Channel chunks (test)"
    category = "Core"
    doc = "Splits the channels into equal parts, one output each."
    params = (Param("chunks", "int", 2, "number of equal parts (outputs)", min=1),)
    onnx_ops = ("Split",)
    short_name = "chunk"

    def num_outputs(self) -> int:
        return self.chunks

    def output_shapes(self, in_shapes):
        (shape,) = in_shapes
        if shape[0] % self.chunks:
            raise ShapeError(f"{self.where}: {shape[0]} channels ({fmt_shape(shape)}) do not "
                             f"split into {self.chunks} equal parts", "chunks")
        return [(shape[0] // self.chunks, *shape[1:])] * self.chunks

    def output_shape(self, in_shapes):
        return self.output_shapes(in_shapes)[0]

    def forward(self, xs, training=False):
        return np.split(xs[0], self.chunks, axis=1)

    def backward(self, dys):
        return [np.concatenate(dys, axis=1)]

    def to_onnx(self, ctx, inputs, output):
        ctx.node("Split", inputs, list(ctx.out_names), self.name, axis=1)

    def to_pytorch(self, in_shapes, attr, names):
        return TorchCode(expr=f"torch.chunk({{0}}, {self.chunks}, dim=1)")


@pytest.fixture
def chunk_layer():
    """Register TestChunk for one test; the registry is restored afterwards."""
    register(TestChunk)
    try:
        yield TestChunk
    finally:
        unregister(CHUNK)
