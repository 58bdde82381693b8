"""The engine's import boundaries: it never loads Qt, and library modules never load the CLI."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[2]


def engine_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine."))


def _loaded_after_importing(modules: list[str]) -> set[str]:
    """sys.modules after importing `modules` in a fresh interpreter (nothing from this one)."""
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    return set(json.loads(out.stdout))


def test_the_engine_package_list_is_complete():
    names = engine_modules()
    for expected in ("engine.onnx.export", "engine.onnx.importer", "engine.nn.network",
                     "engine.zoo.templates", "engine.transfer.finetune", "engine.cli.main"):
        assert expected in names
    # every package says in one line what it owns
    for pkg in ("engine.onnx", "engine.nn", "engine.zoo", "engine.transfer", "engine.cli",
                "engine.layers"):
        doc = __import__(pkg, fromlist=["_"]).__doc__
        assert doc and doc.strip(), f"{pkg} has no docstring"


def test_importing_all_of_the_engine_loads_no_qt_and_no_plots():
    loaded = _loaded_after_importing(engine_modules())
    gui = sorted(m for m in loaded if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph",
                                                           "designer"))
    assert not gui, f"importing engine loaded {gui[:5]}"


def test_library_modules_do_not_import_the_cli():
    library = [m for m in engine_modules() if not m.startswith("engine.cli")]
    loaded = _loaded_after_importing(library)
    cli = sorted(m for m in loaded if m.startswith("engine.cli"))
    assert not cli, f"a library module imports the command line: {cli}"
