"""Test set-up shared by the engine and designer suites."""

import os
import sys
from pathlib import Path

# Qt tests run without a display; the engine tests never import Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
