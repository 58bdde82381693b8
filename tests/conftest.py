"""Test set-up shared by the engine and designer suites."""

import os
import sys
from pathlib import Path

# Qt tests run without a display; the engine tests never import Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path_factory, monkeypatch):
    """Runs of unsaved documents (engine.runs.store.runs_dir) go to a temporary folder, never
    to the user's ~/.cnn-designer."""
    monkeypatch.setenv("CNN_DESIGNER_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
