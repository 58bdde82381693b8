"""A template with its published pretrained weights: the graph, the weights and the input spec.

    w = find_weights("resnet18")
    path = fetch(w, progress)                     # engine.transfer.download
    p = build_pretrained(w, path)                 # p.graph (input spec attached), p.weights
    save_project(out, p.graph, p.weights, p.meta)

The file is read by engine.transfer.checkpoint (no torch; nothing in it is run), its old key
names fixed where torchvision's loader fixes them (DenseNet), and matched to the template as
strictly as load_state_dict: a published file that does not fit is an error naming the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..graph import Graph
from ..zoo.pretrained import PretrainedWeights
from ..zoo.templates import make_template
from .checkpoint import Checkpoint, CheckpointError, match_weights, read_checkpoint
from .torch_pickle import Progress


@dataclass
class Pretrained:
    graph: Graph  # the template, its input spec set to the weights'
    weights: dict[str, np.ndarray]
    blocks: dict[str, list[str]]
    meta: dict  # for save_project: template, blocks, pretrained (name, url, accuracy)
    notes: list[str]


def build_pretrained(w: PretrainedWeights, path: str | Path,
                     progress: Progress | None = None) -> Pretrained:
    """Template `w.template` with the weights in `path` (the verified file of `w`).
    CheckpointError when the file does not fit the template."""
    t = make_template(w.template, w.classes)
    ckpt = read_checkpoint(path, progress)
    ckpt = Checkpoint(ckpt.path, [w.fix_keys(r) for r in ckpt.readings], ckpt.notes)
    m = match_weights(t.graph, ckpt)
    if not m.ok:
        raise CheckpointError(f"{w.name}: {m.summary()}")
    t.graph.input_spec = w.input_spec()
    meta = {"template": w.template, "blocks": t.blocks,
            "pretrained": {"name": w.name, "url": w.url, "top1": w.acc1, "top5": w.acc5,
                           "interpolation": w.interpolation}}
    return Pretrained(t.graph, m.weights, t.blocks, meta, list(m.notes))


__all__ = ["Pretrained", "build_pretrained"]
