"""The NumPy network: compiled graph (forward, backward), ops, losses, optimisers, training loop."""
