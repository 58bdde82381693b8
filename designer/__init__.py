"""The Qt designer: a drag-and-drop canvas over the engine's graph, with live validation."""
