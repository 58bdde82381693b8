"""Loss functions. Softmax cross-entropy works on logits: the gradient p − y is exact and stable."""

from __future__ import annotations

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of (N, K) logits against (N,) integer labels, and dL/dlogits."""
    n = logits.shape[0]
    logp = log_softmax(logits.reshape(n, -1))
    loss = -float(logp[np.arange(n), labels].mean())
    d = np.exp(logp)
    d[np.arange(n), labels] -= 1
    d /= n
    return loss, d.reshape(logits.shape).astype(np.float32, copy=False)
