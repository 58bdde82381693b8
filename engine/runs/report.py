"""Runs as tables: the columns a listing shows (shared by `python main.py runs` and the GUI's
Runs panel), a one-line summary of a run's changes, and the comparison of two runs."""

from __future__ import annotations

import csv
import io
import json

from ..summary import human_count
from .diff import RunDiff, diff_runs
from .store import RunStore

# (key, heading); the figures of one run as list_runs() returns it
COLUMNS = (("id", "run"), ("best_val_accuracy", "best val"), ("test_accuracy", "test"),
           ("params", "params"), ("macs", "MACs"), ("seconds", "time"), ("epochs", "epochs"),
           ("images_per_s", "img/s"), ("status", "status"), ("changes", "changes"),
           ("tags", "tags"), ("notes", "notes"), ("source", "from"), ("created", "created"))


def change_summary(diff: dict | None, width: int = 60) -> str:
    """'lr 0.001 → 0.003; conv1 out_channels 6 → 8' (the first run: 'first run')."""
    if diff is None:
        return "first run"
    d = RunDiff.from_json(diff)
    if d.empty:
        return "same as previous"
    parts = [f"+{n['name']}" for n in d.added] + [f"-{n['name']}" for n in d.removed]
    for n in d.changed:
        parts += [f"{n['name']} {k} {_v(a)}→{_v(b)}" for k, (a, b) in n["changes"].items()]
    if d.edges_added or d.edges_removed:
        parts.append("edges")
    parts += [f"{k} {_v(a)}→{_v(b)}" for k, (a, b) in d.config.items()]
    text = "; ".join(parts)
    return text if len(text) <= width else text[:width - 1] + "…"


def _v(v) -> str:
    return "default" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def cell(run: dict, key: str) -> str:
    """The text of one table cell."""
    v = run.get(key)
    if key == "epochs":
        return f"{run['epochs_done']}/{run['epochs_planned']}"
    if key in ("best_val_accuracy", "test_accuracy"):
        return _pct(v)
    if key in ("params", "macs"):
        return "" if v is None else human_count(int(v))
    if key == "seconds":
        return "" if v is None else (f"{v:.1f}s" if v >= 1 else f"{v:.2f}s")
    if key == "images_per_s":
        return "" if v is None else f"{v:,.0f}"
    if key == "tags":
        return ", ".join(v or [])
    if key == "created":
        return (v or "").replace("T", " ")
    if key == "notes":
        text = (v or "").replace("\n", " ")
        return text if len(text) <= 40 else text[:39] + "…"
    return "" if v is None else str(v)


def runs_with_changes(store: RunStore) -> list[dict]:
    """list_runs() plus each run's `changes` (summary of its diff to the previous run)."""
    diffs = {r["id"]: r["diff"] for r in store.read("SELECT id, diff FROM runs")}
    out = []
    for r in store.list_runs():
        d = diffs.get(r["id"])
        r["changes"] = change_summary(json.loads(d) if d else None)
        out.append(r)
    return out


def format_runs(runs: list[dict], fmt: str = "table") -> str:
    """The runs as an aligned "table", "csv" (raw figures) or "json" (raw figures)."""
    if fmt == "json":
        return json.dumps(runs, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        keys = [k for k in runs[0] if k != "tags"] + ["tags"] if runs else [k for k, _ in COLUMNS]
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(keys)
        for r in runs:
            w.writerow([";".join(r[k]) if k == "tags" else ("" if r.get(k) is None else r[k])
                        for k in keys])
        return buf.getvalue()
    rows = [[h for _, h in COLUMNS]] + [[cell(r, k) for k, _ in COLUMNS] for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    right = {"id", "epochs", "best_val_accuracy", "test_accuracy", "params", "macs", "seconds",
             "images_per_s"}
    lines = []
    for row in rows:
        cells = [c.rjust(w) if k in right else c.ljust(w)
                 for c, w, (k, _) in zip(row, widths, COLUMNS)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


METRICS = (("best_val_accuracy", "best validation accuracy"), ("test_accuracy", "test accuracy"),
           ("best_epoch", "best epoch"), ("epochs_done", "epochs"), ("params", "parameters"),
           ("macs", "MACs"), ("seconds", "duration (s)"), ("images_per_s", "images/s"))


def compare(store: RunStore, a: int, b: int) -> dict:
    """Run a against run b: the architecture/hyperparameter diff (a → b) and their figures."""
    ra, rb = store.get_run(a), store.get_run(b)
    d = diff_runs(ra["graph"], rb["graph"], ra["config"], rb["config"])
    return {"a": a, "b": b, "diff": d.to_json(), "lines": d.lines(),
            "metrics": {k: [ra.get(k), rb.get(k)] for k, _ in METRICS}}


def format_compare(c: dict) -> str:
    out = [f"run {c['a']} → run {c['b']}:"] + [f"  {line}" for line in c["lines"]] + [""]
    rows = [("", f"run {c['a']}", f"run {c['b']}")]
    for k, label in METRICS:
        va, vb = c["metrics"][k]
        fmt = _pct if "accuracy" in k else (lambda v: "" if v is None else (
            f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"))
        rows.append((label, fmt(va), fmt(vb)))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    out += [f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}".rstrip() for r in rows]
    return "\n".join(out) + "\n"
