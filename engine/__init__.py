"""CNN Designer engine: layer registry, graph model, validation, NumPy network, training, ONNX.

Nothing below this package imports Qt: the engine runs headless (CLI, tests, benchmarks).
"""

__version__ = "0.1.0"
