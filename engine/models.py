"""Open a MODEL: a project file, a bare architecture .json, an .onnx file (imported on the fly),
an example or a template name; what every command and the fine-tuning path start from."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import ModelNotFoundError
from .project import Project, load_project
from .zoo.examples import example_names, load_example


def load_model(spec: str, strict: bool = True, keep_dropout: bool = False) -> Project:
    """A project file, a bare architecture .json, an .onnx file (imported on the fly), an
    example or a template name. strict=False: weights that do not fit the graph are dropped and
    listed in Project.warnings (load_project). keep_dropout: an .onnx file's Dropout nodes
    become layers (fine-tuning), else they are removed as the no-ops they are at inference."""
    from .zoo.templates import TEMPLATES, build_template

    path = Path(spec)
    if path.is_file() and _is_onnx(path):
        from .onnx.importer import import_onnx

        imp = import_onnx(path, keep_dropout=keep_dropout)
        for w in imp.warnings:
            print(f"note: {w}", file=sys.stderr)
        return Project(imp.graph, imp.weights, {"imported_from": path.name}, path)
    if path.exists():
        return load_project(path, strict=strict)
    if spec in example_names():
        return Project(load_example(spec))
    if spec in TEMPLATES:
        return Project(build_template(spec))
    raise ModelNotFoundError(f"MODEL {spec!r} is neither a file, an example "
                             f"({', '.join(example_names())}) nor a template "
                             f"({', '.join(TEMPLATES)})")


def _is_onnx(path: Path) -> bool:
    """An .onnx name, or (whatever the name) not a project zip nor JSON but ONNX's protobuf."""
    if path.suffix.lower() == ".onnx":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    # ModelProto starts with field 1 (ir_version, varint: 0x08) and names a producer soon
    return head[:1] == b"\x08" and path.suffix.lower() not in (".cnnd", ".json")
