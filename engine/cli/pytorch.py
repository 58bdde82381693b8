"""The `export-pytorch` command: MODEL as PyTorch code (model.py, train.py, weights, README)."""

from __future__ import annotations

import sys

from ..models import load_model
from ..pytorch_export import export_pytorch
from .common import MODEL_HELP, check_out_folder, model_parser


def add_commands(subparsers) -> None:
    """Register `export-pytorch MODEL --out DIR` on the main CLI's subparsers."""
    p = model_parser(
        subparsers, "export-pytorch",
        help="write the design as PyTorch code (model.py, train.py, weights)",
        description="Write MODEL as a PyTorch module (model.py), its weights (weights.npz), a "
                    "training script for one CPU / GPU or torchrun (train.py) and a README.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--class-name", default=None, help="name of the nn.Module class")
    p.set_defaults(func=cmd_export_pytorch)


def _load(spec: str):
    """(graph, weights or None) for a project file, a bare .json, an .onnx, an example or a
    template name. An unknown MODEL is ModelNotFoundError: a usage error (exit code 2), as
    for every command."""
    project = load_model(spec)
    return project.graph, project.weights


def cmd_export_pytorch(args) -> int:
    check_out_folder(args.out)
    graph, weights = _load(args.model)
    paths = export_pytorch(graph, weights, args.out, args.class_name)
    for p in paths:  # messages on stderr (the command line's convention)
        print(f"wrote {p}", file=sys.stderr)
    return 0
