"""Model summary (like Keras' model.summary() or torchinfo): one row per layer, totals, problems.

    s = summarize(graph)                 # reads engine.validate.validate(graph)
    print(format_summary(s, "text"))     # "text" | "markdown" | "csv" | "json"

Per layer: name, type, output shape (C×H×W), parameters, MACs, receptive field and effective
stride (in input pixels). Totals: trainable / non-trainable / total parameters, forward MACs,
weight memory and activation memory per sample in float32. An invalid graph still gets a summary
(unknown shapes show as "?") followed by every problem validation found.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from .graph import Graph
from .layers import Shape, fmt_shape
from .validate import BYTES_PER_VALUE, Validation, validate

FORMATS = ("text", "markdown", "csv", "json")
INCOMPLETE = "Layers with an unknown shape (?) are not counted: fix the problems below first."


@dataclass
class LayerRow:
    id: str
    name: str
    type: str
    details: str  # the layer's describe(), e.g. "5×5, 6 filters, s1, p2"
    inputs: list[str]  # names of the layers feeding this one, in port order
    output_shape: Shape | None
    trainable_params: int
    non_trainable_params: int
    macs: int
    receptive_field: tuple[int, int] | None
    jump: tuple[int, int] | None  # effective stride relative to the input
    frozen: bool = False  # the node's trainable flag is off: its weights count as non-trainable
    # every output's shape, by port; more than one only for a layer with several outputs
    output_shapes: list[Shape] | None = None

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def shape_text(self) -> str:
        """'C×H×W', or 'C×H×W, C×H×W' for every output of a layer with several."""
        if self.output_shapes and len(self.output_shapes) > 1:
            return ", ".join(fmt_shape(o) for o in self.output_shapes)
        return fmt_shape(self.output_shape)


@dataclass
class Problem:
    severity: str  # "error" | "warning"
    layer: str | None  # layer name, None for graph-level problems
    text: str
    fix: str | None = None


@dataclass
class Summary:
    name: str
    rows: list[LayerRow]
    trainable_params: int
    non_trainable_params: int
    macs: int
    activation_values: int  # every layer's output values (input included), one sample
    problems: list[Problem] = field(default_factory=list)
    sequential: bool = True  # each layer reads the previous row only

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def weight_bytes(self) -> int:
        return self.total_params * BYTES_PER_VALUE

    @property
    def activation_bytes(self) -> int:
        return self.activation_values * BYTES_PER_VALUE

    @property
    def frozen_params(self) -> int:
        """Parameters of the frozen layers (part of non_trainable_params)."""
        return sum(r.params for r in self.rows if r.frozen)

    @property
    def any_frozen(self) -> bool:
        return any(r.frozen for r in self.rows)

    @property
    def incomplete(self) -> bool:
        """Some layers have unknown shapes: the totals leave them out."""
        return any(r.output_shape is None for r in self.rows)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def summarize(graph: Graph, validation: Validation | None = None) -> Summary:
    """Collect the per-layer figures and totals of `graph` from its validation."""
    v = validation or validate(graph)
    ids = list(v.order) + [nid for nid in graph.nodes if nid not in v.order]  # cycles last
    rows: list[LayerRow] = []
    sequential = True
    preds: dict[str, list[str]] = {}  # graph.inputs_of for every node in one pass over edges
    labels: dict[str, list[str]] = {}  # the inputs' names, "split1:1" for output 1 of split1
    for e in sorted(graph.edges, key=lambda e: e.port):
        preds.setdefault(e.dst, []).append(e.src)
        if e.src in graph.nodes:
            name = graph.nodes[e.src].name
            labels.setdefault(e.dst, []).append(f"{name}:{e.src_port}" if e.src_port else name)
    for k, nid in enumerate(ids):
        node, res = graph.nodes[nid], v.nodes[nid]
        srcs = preds.get(nid, [])
        if srcs != ([ids[k - 1]] if k else []) or (res.out_shapes and len(res.out_shapes) > 1):
            sequential = False
        details = ""
        if res.layer is not None:
            try:
                details = res.layer.describe(res.in_shapes or None)
            except Exception:  # noqa: BLE001 - a describe() bug must not break the summary
                details = ""
        rows.append(LayerRow(nid, node.name, node.type_name, details, labels.get(nid, []),
                             res.out_shape, res.trainable_params, res.non_trainable_params,
                             res.macs, res.receptive_field, res.jump, not node.trainable,
                             res.out_shapes))
    problems = []
    for m in v.messages:
        layer = graph.nodes[m.node_id].name if m.node_id in graph.nodes else None
        problems.append(Problem(m.severity, layer, m.text, m.fix.label if m.fix else None))
    problems.sort(key=lambda p: p.severity != "error")  # errors first, order kept otherwise
    return Summary(graph.name, rows, v.trainable_params, v.non_trainable_params, v.macs,
                   v.activation_values, problems, sequential)


# ---- formatting ---------------------------------------------------------------------------

def human_count(n: int) -> str:
    """61706 -> '61.7K', 2_300_000 -> '2.3M' (for MACs)."""
    for unit, div in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """File and memory sizes in one style everywhere: 512 -> '512 B', 45_700_000 -> '45.7 MB'
    (decimal units, as file managers show them)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 999.95 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def fmt_accuracy(acc: float) -> str:
    """An accuracy in [0, 1] the way every command prints it: 0.738 -> '73.80%'."""
    return f"{100 * acc:.2f}%"


def _pair(p: tuple[int, int] | None) -> str:
    if p is None:
        return "?"
    return str(p[0]) if p[0] == p[1] else f"{p[0]}×{p[1]}"


def _table(s: Summary) -> tuple[list[str], list[list[str]]]:
    head = ["Layer", "Type", "Output shape", "Params", "MACs", "RF", "Stride"]
    if s.any_frozen:
        head.append("Frozen")
    if not s.sequential:
        head.append("Inputs")
    body = []
    for r in s.rows:
        typ = f"{r.type} ({r.details})" if r.details else r.type
        cells = [r.name, typ, r.shape_text, f"{r.params:,}", human_count(r.macs),
                 _pair(r.receptive_field), _pair(r.jump)]
        if s.any_frozen:
            cells.append("frozen" if r.frozen else "")
        if not s.sequential:
            cells.append(", ".join(r.inputs))
        body.append(cells)
    return head, body


def _totals(s: Summary) -> list[tuple[str, str]]:
    return [("Total params", f"{s.total_params:,}"),
            ("Trainable params", f"{s.trainable_params:,}"),
            ("Non-trainable params", f"{s.non_trainable_params:,}"
             + (f" ({s.frozen_params:,} in frozen layers)" if s.frozen_params else "")),
            ("Forward MACs (per sample)",
             f"{s.macs:,}" + (f" ({human_count(s.macs)})" if s.macs >= 1000 else "")),
            ("Weight memory (float32)", human_bytes(s.weight_bytes)),
            ("Activation memory (per sample, float32)", human_bytes(s.activation_bytes))]


def _problem_lines(s: Summary) -> list[str]:
    out = []
    for p in s.problems:
        where = f"'{p.layer}': " if p.layer and f"'{p.layer}'" not in p.text else ""
        fix = f" (fix: {p.fix})" if p.fix else ""
        out.append(f"{p.severity}: {where}{p.text}{fix}")
    return out


def to_text(s: Summary) -> str:
    head, body = _table(s)
    numeric = {3, 4}  # right-aligned columns
    widths = [max(len(c) for c in col) for col in zip(head, *body)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "=" * len(line(head))
    out = [f'Model: "{s.name}"', rule, line(head), "-" * len(rule)]
    out += [line(c) for c in body]
    out.append(rule)
    width = max(len(k) for k, _ in _totals(s))
    out += [f"{k + ':':<{width + 1}} {v}" for k, v in _totals(s)]
    out.append("RF = receptive field and Stride = effective stride, in input pixels.")
    if s.incomplete:
        out.append(INCOMPLETE)
    if s.problems:
        n_err = len(s.errors)
        n_warn = len(s.problems) - n_err
        out += [rule, f"{n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}:"]
        out += [f"  - {p}" for p in _problem_lines(s)]
    return "\n".join(out) + "\n"


def to_markdown(s: Summary) -> str:
    head, body = _table(s)

    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = [f"### {esc(s.name)}", "", "| " + " | ".join(head) + " |",
           "|" + "|".join("---:" if i in (3, 4) else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in body]
    out += ["", "| Total | |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in _totals(s)]
    if s.incomplete:
        out += ["", f"*{INCOMPLETE}*"]
    if s.problems:
        out += ["", "**Problems**", ""] + [f"- {esc(p)}" for p in _problem_lines(s)]
    return "\n".join(out) + "\n"


CSV_COLUMNS = ["name", "type", "output_shape", "params", "trainable_params",
               "non_trainable_params", "macs", "receptive_field", "effective_stride", "inputs",
               "frozen"]


def to_csv(s: Summary) -> str:
    """One row per layer; shapes as 'C×H×W' strings ('' when unknown). Problems are not part of
    the CSV (the CLI prints them on stderr)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in s.rows:
        w.writerow([r.name, r.type, r.shape_text if r.output_shape else "",
                    r.params, r.trainable_params, r.non_trainable_params, r.macs,
                    _pair(r.receptive_field) if r.receptive_field else "",
                    _pair(r.jump) if r.jump else "", ";".join(r.inputs),
                    "yes" if r.frozen else "no"])
    return buf.getvalue()


def to_json(s: Summary) -> dict:
    return {
        "name": s.name,
        "valid": s.ok,
        "complete": not s.incomplete,
        "layers": [{"id": r.id, "name": r.name, "type": r.type, "details": r.details,
                    "inputs": r.inputs,
                    "output_shape": list(r.output_shape) if r.output_shape else None,
                    **({"output_shapes": [list(o) for o in r.output_shapes]}
                       if r.output_shapes and len(r.output_shapes) > 1 else {}),
                    "params": r.params, "trainable_params": r.trainable_params,
                    "non_trainable_params": r.non_trainable_params, "macs": r.macs,
                    "receptive_field": list(r.receptive_field) if r.receptive_field else None,
                    "effective_stride": list(r.jump) if r.jump else None,
                    "frozen": r.frozen} for r in s.rows],
        "total_params": s.total_params,
        "trainable_params": s.trainable_params,
        "non_trainable_params": s.non_trainable_params,
        "frozen_params": s.frozen_params,
        "macs": s.macs,
        "weight_bytes": s.weight_bytes,
        "activation_bytes": s.activation_bytes,
        "problems": [{"severity": p.severity, "layer": p.layer, "text": p.text, "fix": p.fix}
                     for p in s.problems],
    }


def format_summary(s: Summary, fmt: str = "text") -> str:
    """Render a summary as "text" (aligned table), "markdown", "csv" or "json"."""
    if fmt == "text":
        return to_text(s)
    if fmt == "markdown":
        return to_markdown(s)
    if fmt == "csv":
        return to_csv(s)
    if fmt == "json":
        return json.dumps(to_json(s), indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown summary format {fmt!r}; choose one of {', '.join(FORMATS)}")
