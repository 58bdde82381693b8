"""Transfer learning: head replacement, freezing, fine-tuning with the ONNX Runtime feature cache."""
