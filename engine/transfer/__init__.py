"""Transfer learning: head replacement, freezing, fine-tuning with ONNX Runtime features."""
