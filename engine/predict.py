"""A prediction on a photo: the photo through the model's input spec, the output as class
probabilities, the top k with class names (ImageNet-1k's for 1000-way heads without their own).

Every path that shows a prediction (infer --image, the feature-map inspector, tests against the
exported ONNX) uses these functions, so the same photo gives the same answer everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .data import RESOURCES
from .inputspec import InputSpec, model_spec, photo_to_array

IMAGENET_CLASSES_FILE = RESOURCES / "imagenet_classes.txt"  # torchvision's _IMAGENET_CATEGORIES
PROBABILITY_TYPES = ("Softmax",)  # output layers whose values are probabilities already


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in torchvision's order (index = class)."""
    names = IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise ValueError(f"{IMAGENET_CLASSES_FILE}: expected 1000 class names, found {len(names)}")
    return tuple(names)


def class_names(n_out: int, own: list[str] | tuple[str, ...] | None = None
                ) -> tuple[str, ...] | None:
    """The model's own names when they fit its outputs, else ImageNet's for 1000 outputs, else
    None (classes are shown by number)."""
    if own and len(own) == n_out:
        return tuple(str(c) for c in own)
    if n_out == 1000:
        return imagenet_classes()
    return None


def outputs_probabilities(graph) -> bool:
    """Whether the graph's output layer already gives probabilities (a Softmax)."""
    from .validate import validate

    out = validate(graph).output_id
    return out is not None and graph.nodes[out].type_name in PROBABILITY_TYPES


def probabilities(out: np.ndarray, already: bool = False) -> np.ndarray:
    """(N, K) or (K,) raw outputs -> softmax probabilities in float64 (the max subtracted, so
    large logits do not overflow); `already`: the outputs are probabilities, kept as they are."""
    z = np.asarray(out, np.float64)
    z = z.reshape(len(z), -1) if z.ndim > 1 else z[None]
    if not already:
        z = np.exp(z - z.max(axis=1, keepdims=True))
        z /= z.sum(axis=1, keepdims=True)
    return z if np.asarray(out).ndim > 1 else z[0]


@dataclass(frozen=True)
class Ranked:
    index: int
    name: str
    probability: float

    def line(self) -> str:
        return f"{self.probability:7.2%}  {self.name}"


def top_k(probs: np.ndarray, k: int = 5, names=None) -> list[Ranked]:
    """The k most probable classes of one (K,) probability vector, most probable first (ties:
    lower index first)."""
    p = np.asarray(probs, np.float64).ravel()
    order = np.argsort(-p, kind="stable")[:max(1, k)]
    return [Ranked(int(i), names[i] if names is not None else f"class {int(i)}", float(p[i]))
            for i in order]


def photo_batch(graph, source, spec: InputSpec | None = None
                ) -> tuple[np.ndarray, list[str], InputSpec]:
    """A photo as the (1, C, H, W) batch the graph takes, the conversion notes and the spec
    used (the model's, model_spec, unless given)."""
    spec = spec or model_spec(graph)
    x, notes = photo_to_array(source, spec)
    return x[None], notes, spec
