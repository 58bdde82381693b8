"""Sweeps: Optuna studies over hyperparameters and architecture variants of one model.

space.py parses the search space file (YAML or JSON), variant.py applies a trial's choices to
the graph (rejecting what validation refuses), study.py runs the study (TPE, median pruning,
RDB storage shared by worker processes), every trial recorded as a run (engine.runs)."""
