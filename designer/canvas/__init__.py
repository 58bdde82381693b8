"""The canvas: scene (mirror of the document), items (cards, ports, edges), collapsed block
cards, view (zoom, pan, minimap, drops) and the automatic layered layout."""

from .blocks import BlockItem
from .items import EdgeItem, NodeItem, PortItem
from .layout import layered_layout, needs_layout
from .scene import CanvasScene
from .view import LAYER_MIME, CanvasView

__all__ = ["LAYER_MIME", "BlockItem", "CanvasScene", "CanvasView", "EdgeItem", "NodeItem",
           "PortItem", "layered_layout", "needs_layout"]
