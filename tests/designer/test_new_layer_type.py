"""A layer type is declared once: a new activation defined only here (Softplus) works in the
palette, icon, formulas, default names, validation, the network's forward and backward, ONNX
export / import and PyTorch code, with no other file edited."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from designer import theme
from designer.palette import PalettePanel
from engine.formulas import node_formulas
from engine.graph import Graph, sequential
from engine.layers import REGISTRY, Icon, Layer, register, unregister
from engine.nn.network import Network
from engine.onnx.export import export_onnx
from engine.validate import validate
from tests.engine.test_gradients import check_layer, randn
from tests.engine.test_onnx import check_round_trip, comparable
from tests.engine.test_registry import assert_pytorch_matches


class Softplus(Layer):
    """log(1 + exp(x)): a smooth ReLU."""

    type_name = "Softplus"
    label = "Softplus"
    category = "Activation"
    doc = "A smooth ReLU: log(1 + eˣ), never quite zero."
    short_name = "splus"
    icon = Icon.plot(lambda x: np.logaddexp(0.0, 4 * x) / 4, -0.2, 1.0)
    onnx_ops = ("Softplus",)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        return shape

    def torch_module(self, in_shapes):
        return "nn.Softplus()"

    def forward(self, xs, training=False):
        (x,) = xs
        if training:
            self._cache = x
        return np.logaddexp(x.dtype.type(0), x)

    def backward(self, dy):
        x, self._cache = self._cache, None
        return [dy * 0.5 * (1 + np.tanh(x / 2))]  # the sigmoid, without overflow

    def to_onnx(self, ctx, inputs, output):
        ctx.node("Softplus", inputs, [output], self.name)

    @classmethod
    def from_onnx(cls, node, ctx):
        return ctx.imported(cls, {}, {}, [node.input[0]])


@pytest.fixture
def softplus():
    assert "Softplus" not in REGISTRY
    generic = bytes(theme.layer_pixmap("Softplus", 24).toImage().constBits())
    register(Softplus)
    yield generic
    unregister("Softplus")


def graph() -> Graph:
    return sequential([("Input", "input", {"channels": 2, "height": 6, "width": 6}),
                       ("Conv2d", "conv", {"out_channels": 3, "kernel_size": 3}),
                       ("Softplus", "softplus", {}),
                       ("Flatten", "flatten", {}),
                       ("Linear", "fc", {"out_features": 4})])


def test_palette_lists_it_under_its_family(qtbot, softplus):
    panel = PalettePanel()
    qtbot.addWidget(panel)
    assert "Softplus" in panel.visible_types()
    idx = panel.index_of("Softplus")
    assert idx.data(Qt.ItemDataRole.DisplayRole) == "Softplus"
    assert Softplus.doc in idx.data(Qt.ItemDataRole.ToolTipRole)
    assert not idx.data(Qt.ItemDataRole.DecorationRole).isNull()
    assert idx.parent().data(Qt.ItemDataRole.DisplayRole) == "Activation"


def test_icon_draws_its_own_curve(qapp, softplus):
    assert theme.icon_glyph("Softplus") is not None
    drawn = bytes(theme.layer_pixmap("Softplus", 24).toImage().constBits())
    assert drawn != softplus  # not the generic glyph it had before it was declared
    assert drawn != bytes(theme.layer_pixmap("ReLU", 24).toImage().constBits())


def test_name_validation_and_formulas(softplus):
    named = Graph()
    assert [named.add_node("Softplus").name for _ in range(2)] == ["splus1", "splus2"]
    g = graph()
    v = validate(g)
    assert v.ok, [m.text for m in v.errors]
    assert v.nodes["softplus"].out_shape == (3, 4, 4)
    f = node_formulas(g, v, "softplus")
    assert f.output_size == ["same shape as the input: 3×4×4"]
    assert f.params.text == "0 (no weights)"
    assert f.flow == "3×4×4 → 3×4×4"


def test_forward_and_backward(softplus):
    layer = Softplus("s")
    check_layer(layer, [randn((2, 3, 4, 4), scale=3.0)])  # float64 finite differences
    net = Network.compile(graph(), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    y = net.forward(x, training=True)
    assert y.shape == (2, 4)
    dx = net.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    assert all(p.grad is not None for p in net.parameters())


def test_onnx_export_import_and_runtime_parity(softplus):
    g = graph()
    rng = np.random.default_rng(2)
    weights = Network.compile(g, rng).state_dict()
    assert "Softplus" in [n.op_type for n in export_onnx(g, weights).graph.node]
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    _, imp = check_round_trip(g, weights, x)
    assert comparable(imp.graph) == comparable(g)


def test_pytorch_code(softplus, tmp_path):
    assert "nn.Softplus()" in assert_pytorch_matches(graph(), tmp_path)
