"""The layer registry: every layer type, declared once. Import this package to fill REGISTRY."""

from . import (  # noqa: F401  (registers the types)
    activation,
    channels,
    conv,
    core,
    merge,
    norm,
    pool,
    reduce,
    upsample,
)
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
