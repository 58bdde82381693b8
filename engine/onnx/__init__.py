"""ONNX: export of a graph with weights, import of any ONNX model, ONNX Runtime sessions."""
