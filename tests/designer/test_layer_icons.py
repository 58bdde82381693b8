"""Every registered layer type has the icon it declares (`Layer.icon`) drawn by the theme, not
the generic fallback; a type declaring none gets the neutral generic glyph, never another
type's picture."""

from __future__ import annotations

import numpy as np
import pytest

from designer import theme
from engine.layers import REGISTRY, Icon, Layer, register, unregister


def pixels(type_name: str, size: int = 24) -> bytes:
    img = theme.layer_pixmap(type_name, size, False).toImage()
    return bytes(img.constBits())


@pytest.mark.parametrize("type_name", sorted(REGISTRY))
def test_every_type_draws_its_declared_icon(qapp, type_name):
    assert theme.icon_glyph(type_name) is not None, f"{type_name}: generic fallback"
    assert pixels(type_name) != pixels("NoSuchLayerType")  # not the generic glyph


def test_curves_come_from_the_declaration(qapp, monkeypatch):
    curves = [t for t, cls in REGISTRY.items() if cls.icon.curve is not None]
    assert {"ReLU", "LeakyReLU", "ReLU6", "Tanh", "Sigmoid"} <= set(curves)
    before = pixels("ReLU")
    monkeypatch.setattr(REGISTRY["ReLU"], "icon", Icon.plot(lambda x: -np.abs(x)))
    assert pixels("ReLU") != before  # the theme plots what the layer declares


class _Plain(Layer):
    """An activation that declares no icon."""

    type_name = "PlainActivationForIconTest"
    label = "Plain"
    category = "Activation"


def test_a_type_without_an_icon_gets_the_generic_glyph(qapp):
    register(_Plain)
    try:
        assert theme.icon_glyph(_Plain.type_name) is None
        img = np.frombuffer(pixels(_Plain.type_name), np.uint8)
        assert img.any()  # the tile and its letters are drawn
    finally:
        unregister(_Plain.type_name)
