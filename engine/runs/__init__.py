"""Every training run remembered: an embedded SQLite run store (store.py), the recorder the
training loop writes through (recorder.py) and readable diffs of two runs (diff.py)."""

from .diff import RunDiff, diff_runs
from .recorder import RunRecorder
from .store import RunStore, RunStoreError, runs_path

__all__ = ["RunDiff", "RunRecorder", "RunStore", "RunStoreError", "diff_runs", "runs_path"]
