"""The layer registry: every layer type, declared once. Import this package to fill REGISTRY."""

from . import activation, conv, core, merge, norm, pool  # noqa: F401  (registers the types)
from .base import (
    CATEGORIES,
    REGISTRY,
    Icon,
    Layer,
    Param,
    Shape,
    fmt_shape,
    layer_class,
    register,
    unregister,
)

__all__ = ["CATEGORIES", "REGISTRY", "Icon", "Layer", "Param", "Shape", "fmt_shape",
           "layer_class", "register", "unregister"]
