"""File helpers for the designer, no widgets: open and save a document's parts, recent files,
autosave paths. The file controller (designer/file_controller.py) drives them from the window;
the file formats themselves live in engine/project.py and engine/onnx/importer.py."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QStandardPaths

from engine.errors import EngineError, ProjectError
from engine.graph import Graph
from engine.project import load_project, save_architecture, save_project

from .canvas.layout import layered_layout, needs_layout

ORGANIZATION, APPLICATION = "CNN Designer", "CNN Designer"
APP_NAME = APPLICATION  # window titles and message boxes
PROJECT_FILTER = "CNN Designer projects (*.cnnd *.json)"
ONNX_FILTER = "ONNX models (*.onnx)"
OPEN_FILTERS = f"All supported (*.cnnd *.json *.onnx);;{PROJECT_FILTER};;{ONNX_FILTER};;" \
               "All files (*)"
SAVE_FILTERS = "CNN Designer project (*.cnnd);;Architecture only (*.json)"
MAX_RECENT = 10


@dataclass
class Opened:
    """What opening a file gives the window."""

    graph: Graph
    weights: dict[str, np.ndarray] | None = None
    history: dict | None = None
    path: Path | None = None  # None when the file is not ours to save over (ONNX)
    source: Path | None = None
    warnings: list[str] = field(default_factory=list)
    laid_out: bool = False
    blocks: dict[str, list[str]] | None = None  # a template's blocks, kept in the project
    # an ONNX file's ImportedModel (its graph a copy the document does not edit): the import
    # report and its parity check
    imported: object | None = None


def open_file(path: str | Path, report=None) -> Opened:
    """Read a project (.cnnd), a bare architecture (.json) or an ONNX model (.onnx).

    Raises ProjectError (or another EngineError) with a clear message; never a raw traceback.
    Graphs whose stored positions overlap (imports) are laid out here, off the GUI thread.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if report:
            report(f"Importing {path.name}…")
        try:
            from engine.onnx.importer import import_onnx
        except ImportError:
            raise ProjectError("ONNX import is not available in this installation") from None
        model = import_onnx(path)
        opened = Opened(model.graph, model.weights or None, None, None, path,
                        list(model.warnings),
                        imported=dataclasses.replace(model, graph=model.graph.copy()))
    else:
        try:
            proj = load_project(path, strict=False)
        except EngineError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:  # belt and braces
            raise ProjectError(f"{path.name}: cannot open it ({exc})") from None
        opened = Opened(proj.graph, proj.weights, proj.history, path, path, list(proj.warnings),
                        blocks=_blocks_from_meta(proj.meta.get("blocks"), proj.graph))
    if needs_layout(opened.graph):
        if report:
            report("Laying out…")
        apply_layout(opened.graph)
        opened.laid_out = True
    return opened


def _blocks_from_meta(data, graph: Graph) -> dict[str, list[str]] | None:
    """Block membership saved with a project ({name: [node ids]}); anything malformed is
    ignored (the canvas then detects blocks itself)."""
    if not isinstance(data, dict):
        return None
    out = {}
    for name, ids in data.items():
        if isinstance(name, str) and isinstance(ids, list):
            kept = [i for i in ids if isinstance(i, str) and i in graph.nodes]
            if len(kept) >= 2:
                out[name] = kept
    return out or None


def apply_layout(graph: Graph) -> None:
    for nid, pos in layered_layout(graph).items():
        graph.nodes[nid].position = pos


def save_file(path: str | Path, graph: Graph, weights=None, history: dict | None = None,
              blocks: dict[str, list[str]] | None = None) -> Path:
    """Save atomically: .json writes the architecture only, anything else a .cnnd project
    (with the training history and a template's blocks in its metadata)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return save_architecture(path, graph)
    if not path.suffix:
        path = path.with_suffix(".cnnd")
    meta = {}
    if history:
        meta["history"] = history
    if blocks:
        meta["blocks"] = {k: [i for i in v if i in graph.nodes] for k, v in blocks.items()}
    meta = meta or None
    return save_project(path, graph, weights or None, meta)


# ---- recent files -----------------------------------------------------------------------------


def make_settings(path: str | Path | None = None) -> QSettings:
    """The app's settings; tests pass an .ini path so the user's settings stay untouched."""
    if path is not None:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


class RecentFiles:
    """Most recent first, existing files only, at most MAX_RECENT."""

    KEY = "recent_files"

    def __init__(self, settings: QSettings):
        self.settings = settings

    def paths(self) -> list[Path]:
        raw = self.settings.value(self.KEY, [])
        if isinstance(raw, str):
            raw = [raw]
        out = []
        for p in raw or []:
            path = Path(str(p))
            if path.exists() and path not in out:
                out.append(path)
        return out[:MAX_RECENT]

    def add(self, path: str | Path) -> None:
        path = Path(path).resolve()
        items = [str(path)] + [str(p) for p in self.paths() if p.resolve() != path]
        self.settings.setValue(self.KEY, items[:MAX_RECENT])

    def clear(self) -> None:
        self.settings.setValue(self.KEY, [])


# ---- autosave ---------------------------------------------------------------------------------


def default_autosave_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".cnn-designer") / "autosave"


def autosave_path(folder: Path, source: Path | None) -> Path:
    """One autosave file per document: named after the file, or 'untitled'."""
    if source is None:
        return folder / "untitled.autosave.cnnd"
    digest = hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:10]
    return folder / f"{Path(source).stem}-{digest}.autosave.cnnd"


def write_autosave(folder: Path, source: Path | None, graph: Graph, weights=None,
                   history=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = autosave_path(folder, source)
    meta = {"autosave_of": str(source) if source else None}
    if history:
        meta["history"] = history
    return save_project(target, graph, weights or None, meta)


def recovery_for(folder: Path, source: Path | None) -> Path | None:
    """An autosave newer than `source` (or any untitled autosave), else None."""
    target = autosave_path(folder, source)
    if not target.exists():
        return None
    if source is not None and Path(source).exists() and \
            os.path.getmtime(source) >= os.path.getmtime(target):
        return None
    return target


def discard_autosave(folder: Path, source: Path | None) -> None:
    try:
        autosave_path(folder, source).unlink()
    except OSError:
        pass
