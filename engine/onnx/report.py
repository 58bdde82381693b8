"""The import report: what became of each ONNX node (noted by the importer as it maps them),
the opset conversion, and the numeric parity of the imported network against ONNX Runtime
running the original file.

    imp = import_onnx("model.onnx")
    print(imp.record.text())                  # op table, conversion, warnings
    parity = check_parity("model.onnx", imp)  # engine vs ONNX Runtime on seeded inputs
    print(parity.text())

Parity: `samples` inputs drawn from N(0, 1) with a fixed seed (the scale of normalised
images), at the imported Input's size. The relative error of a sample is its largest
|engine − ONNX Runtime| divided by its largest |ONNX Runtime| output: an element-wise ratio
would explode wherever an output is near zero, and a logit's error matters against the size of
the logits. The reported figure is the worst sample's. Top-1 agreement is the fraction of
samples (of pixels, for an N×C×H×W output) whose largest output along axis 1 is the same.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PARITY_RTOL = 1e-4  # the relative error an import must stay within (issue 13's acceptance)
PARITY_SAMPLES = 4
PARITY_SEED = 0
MAX_FIXED_BATCH = 64  # a file whose input batch is fixed is run in whole batches up to this

# what became of a node
LAYER = "layer"  # it is a layer
PATTERN = "pattern"  # it anchors a multi-node pattern that is one layer (SiLU, GELU, ...)
ABSORBED = "absorbed"  # part of another node's layer (a bias Add, a pattern's later nodes)
FOLDED = "folded"  # a constant expression (shape arithmetic), evaluated at import
REMOVED = "removed"  # wired through (Identity)
VIEW = "view"  # a channels-last transpose, read as a layout rather than a layer
CLEANED = "cleaned"  # not in the graph that was mapped (opset conversion / clean-up)
LEFT_OUT = "left out"  # became a layer that does not reach the output


def node_key(node) -> str:
    """A node's name, or its first output where it has none."""
    return node.name or (node.output[0] if node.output else "?")


@dataclass
class NodeMapping:
    """What one ONNX node became."""

    op_type: str
    node: str  # the node's name (its first output's where it has none)
    outcome: str  # LAYER, PATTERN, ABSORBED, FOLDED, REMOVED, VIEW, CLEANED or LEFT_OUT
    layer: str | None = None  # the layer it became or is part of
    layer_type: str | None = None
    detail: str = ""  # a pattern's size, a removed op's name, ...

    def became(self) -> str:
        """What the node became, in words: "Conv2d 'layer1.0.conv1'", "absorbed into 'fc'
        (Linear)", "pattern SiLU (2 nodes) 'act'", "part of pattern SiLU 'act'", "folded
        (constant)"."""
        if self.outcome == LAYER:
            return f"{self.layer_type} '{self.layer}'"
        if self.outcome == PATTERN:
            return f"pattern {self.layer_type} ({self.detail}) '{self.layer}'"
        if self.outcome == ABSORBED:
            if self.detail.startswith("pattern"):
                return f"part of {self.detail} '{self.layer}'"
            into = f"'{self.layer}' ({self.layer_type})" if self.layer else "its neighbour"
            return f"absorbed into {into}"
        if self.outcome == FOLDED:
            return "folded (constant)"
        if self.outcome == REMOVED:
            return f"removed ({self.detail or self.op_type})"
        if self.outcome == VIEW:
            return f"layout view ({self.detail})"
        if self.outcome == CLEANED:
            return self.detail or "removed before mapping"
        if self.outcome == LEFT_OUT:
            return f"left out: {self.layer_type} '{self.layer}' does not reach the output"
        return self.outcome

    def kind(self) -> str:
        """The node's outcome without names, for the op table: "Conv2d", "SiLU (pattern)",
        "absorbed into Linear", "folded"."""
        if self.outcome == LAYER:
            return self.layer_type or "?"
        if self.outcome == PATTERN:
            return f"{self.layer_type} (pattern)"
        if self.outcome == ABSORBED:
            if self.detail.startswith("pattern"):
                return f"part of {self.layer_type} (pattern)"
            return f"absorbed into {self.layer_type}" if self.layer_type else "absorbed"
        if self.outcome == VIEW:
            return "layout view"
        if self.outcome == CLEANED:
            return "removed before mapping"
        return self.outcome


@dataclass
class OpRow:
    """One line of the op table: an ONNX op type, how many nodes of it, what they became."""

    op_type: str
    count: int
    mapped_to: str  # "Conv2d ×5, absorbed into Linear ×1"
    nodes: list[NodeMapping]


@dataclass
class ImportRecord:
    """How a file was imported: every node's fate, the opsets, the producer, the warnings."""

    source: str  # the file's name ("the model" for bytes)
    producer: str
    producer_version: str
    ir_version: int
    opset: int  # the file's (default domain)
    mapped_opset: int  # the opset of the graph that was mapped (== opset unless upgraded)
    nodes: list[NodeMapping] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    channels_last_input: bool = False  # the file's input is N×H×W×C (ours N×C×H×W)
    layers: int = 0  # the imported graph's nodes, the Input included
    parameters: int = 0  # imported weight elements

    @property
    def upgraded(self) -> bool:
        return self.mapped_opset != self.opset

    def ops(self) -> list[OpRow]:
        """The op table, op types in order of first appearance."""
        groups: dict[str, list[NodeMapping]] = {}
        for m in self.nodes:
            groups.setdefault(m.op_type, []).append(m)
        rows = []
        for op, ms in groups.items():
            kinds = Counter(m.kind() for m in ms)
            mapped = ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in kinds.items())
            rows.append(OpRow(op, len(ms), mapped, ms))
        return rows

    def conversion(self) -> str:
        """The opset line: "opset 17, mapped as it is" or "opset 3, upgraded to 13 ..."."""
        if self.upgraded:
            return (f"opset {self.opset}, upgraded to opset {self.mapped_opset} by ONNX's "
                    f"version converter before mapping")
        return f"opset {self.opset}, mapped as it is (no conversion)"

    def producer_text(self) -> str:
        return " ".join(p for p in (self.producer, self.producer_version) if p) or "unknown"

    def counts(self) -> str:
        """"16 ONNX nodes -> 16 layers + input, 2,218 parameters"."""
        n = Counter(m.outcome for m in self.nodes)
        made = n[LAYER] + n[PATTERN]
        extra = [f"{n[k]} {w}" for k, w in ((ABSORBED, "absorbed"), (FOLDED, "folded"),
                                             (REMOVED, "removed"), (VIEW, "layout views"),
                                             (CLEANED, "removed before mapping"),
                                             (LEFT_OUT, "left out")) if n[k]]
        return (f"{len(self.nodes)} ONNX nodes -> {made} layers + input, "
                f"{self.parameters:,} parameters" + (f" ({', '.join(extra)})" if extra else ""))

    def text(self, nodes: bool = False, warnings: bool = True) -> str:
        """The report as plain text (the command line's, the dialog's Copy): header, op table,
        conversion, warnings; every node's fate as well with `nodes`."""
        lines = [f"import report: {self.source}",
                 f"  producer    {self.producer_text()} (IR version {self.ir_version})",
                 f"  opset       {self.conversion()}",
                 f"  result      {self.counts()}"]
        if self.channels_last_input:
            lines.append("  input       channels-last (N×H×W×C) in the file, N×C×H×W here")
        rows = self.ops()
        w = max([len("ONNX op")] + [len(r.op_type) for r in rows])
        lines.append(f"  {'ONNX op':<{w}}  {'nodes':>5}  mapped to")
        lines += [f"  {r.op_type:<{w}}  {r.count:>5}  {r.mapped_to}" for r in rows]
        if nodes:
            lines.append("  nodes:")
            lines += [f"    {m.op_type} '{m.node}' -> {m.became()}" for m in self.nodes]
        if warnings:
            lines += [f"  warning: {x}" for x in self.warnings]
        return "\n".join(lines)


class Trail:
    """The importer's notes on each node of the model it maps, taken as it goes, and the
    file's own nodes before any conversion; `record()` makes the ImportRecord."""

    def __init__(self, model=None):
        self.original = ([(n.op_type, node_key(n)) for n in model.graph.node]
                         if model is not None else [])
        self._events: dict[int, dict] = {}  # id(node) -> facts; the node kept alive inside
        self.channels_last_input = False

    def _note(self, node, **facts) -> dict:
        ev = self._events.setdefault(id(node), {"node": node})
        ev.update(facts)
        return ev

    def layer(self, node, name: str, type_name: str) -> None:
        """`node` became (or anchors the pattern that became) layer `name`."""
        self._note(node, layer=name, type=type_name)
        self._events[id(node)].setdefault("outcome", LAYER)

    def pattern(self, anchor, nodes: list, type_name: str) -> None:
        """`nodes` (anchor first) matched one pattern of `type_name`."""
        self._note(anchor, outcome=PATTERN, detail=f"{len(nodes)} nodes", type=type_name)
        for n in nodes[1:]:
            self._note(n, outcome=ABSORBED, by=anchor, detail=f"pattern {type_name}")

    def absorbed(self, node, by) -> None:
        """`node` became part of the layer `by` (the node being converted; None: no layer)."""
        if "outcome" not in self._events.get(id(node), {}):
            if by is None:
                self._note(node, outcome=VIEW, detail="channels-last input read as N×C×H×W")
            else:
                self._note(node, outcome=ABSORBED, by=by)

    def folded(self, node) -> None:
        self._note(node, outcome=FOLDED)

    def removed(self, node) -> None:
        self._note(node, outcome=REMOVED, detail=node.op_type)

    def view(self, node) -> None:
        self._note(node, outcome=VIEW, detail="channels-last transpose, read by the flattening")

    def record(self, model, graph, warnings: list[str], opset: int, mapped_opset: int,
               source: str, weights: dict | None = None) -> ImportRecord:
        """The record of an import that succeeded: `model` is the graph that was mapped,
        `graph` the imported one (layers missing from it were left out)."""
        out = []
        seen = set()
        for node in model.graph.node:
            key = node_key(node)
            seen.add(key)
            ev = self._events.get(id(node), {})
            m = NodeMapping(node.op_type, key, ev.get("outcome", "not mapped"),
                            detail=ev.get("detail", ""))
            by = ev.get("by")
            src = self._events.get(id(by), {}) if by is not None else ev
            m.layer, m.layer_type = src.get("layer"), src.get("type")
            if m.outcome in (LAYER, PATTERN) and m.layer not in graph.nodes:
                m.outcome = LEFT_OUT
            out.append(m)
        why = ("replaced by the opset conversion" if mapped_opset != opset else
               "removed by the graph clean-up before mapping")
        gone = [NodeMapping(op, key, CLEANED, detail=why) for op, key in self.original
                if key not in seen]
        params = sum(int(np.size(a)) for a in (weights or {}).values())
        producer = model.producer_name or "unknown"
        return ImportRecord(source, producer, model.producer_version or "",
                            int(model.ir_version), opset, mapped_opset, gone + out,
                            list(warnings), self.channels_last_input, len(graph.nodes), params)


# ---- parity against ONNX Runtime ----------------------------------------------------------

@dataclass
class Parity:
    """The imported network against ONNX Runtime on the original file, on seeded inputs."""

    against: str  # what ONNX Runtime ran: "'model.onnx'" or the upgraded model, and why
    samples: int = 0
    input_shape: tuple = ()  # (C, H, W), as the engine takes it
    output_shape: tuple = ()  # per sample
    max_abs: float | None = None
    max_rel: float | None = None  # worst sample's max|diff| / max|ORT output|
    top1: float | None = None  # fraction of samples (pixels) with the same top class
    top1_of: int = 0  # how many samples (pixels) top1 is over
    rtol: float = PARITY_RTOL
    seconds: float = 0.0
    error: str | None = None  # why it could not be computed (then the figures are None)
    mismatch: str | None = None  # a failure beyond the figures (output shapes, NaN)

    @property
    def ok(self) -> bool | None:
        """True within tolerance, False beyond it (or a mismatch), None when not computed."""
        if self.error is not None:
            return None
        if self.mismatch is not None:
            return False
        return bool(self.max_rel is not None and np.isfinite(self.max_rel)
                    and self.max_rel <= self.rtol)

    def verdict(self) -> str:
        if self.ok is None:
            return f"not checked: {self.error}"
        if self.ok:
            return f"matches ONNX Runtime (relative error within {tolerance(self.rtol)})"
        if self.mismatch is not None:
            return f"DIFFERS from ONNX Runtime: {self.mismatch}"
        return (f"DIFFERS from ONNX Runtime: relative error {self.max_rel:.3g} is beyond the "
                f"tolerance {tolerance(self.rtol)}")

    def figures(self) -> str:
        """"max abs error 2.4e-07, max rel error 1.1e-07, top-1 agreement 4/4 (100%)"."""
        if self.max_abs is None:
            return ""
        top = ("top-1 agreement n/a (one output value)" if self.top1 is None else
               f"top-1 agreement {round(self.top1 * self.top1_of)}/{self.top1_of} "
               f"({self.top1:.0%})")
        return (f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g}, {top}")

    def text(self) -> str:
        """"parity: <verdict>" and, when computed, a second line with the figures, the inputs
        and what ONNX Runtime ran."""
        if self.ok is None or self.max_abs is None:
            return f"parity: {self.verdict()}"
        shape = "×".join(map(str, self.input_shape))
        return (f"parity: {self.verdict()}\n  {self.figures()}\n  on {self.samples} seeded "
                f"N(0, 1) inputs {shape}, ONNX Runtime (CPU) running {self.against}, "
                f"{self.seconds:.1f} s")


def parity_inputs(input_shape: tuple, samples: int = PARITY_SAMPLES,
                  seed: int = PARITY_SEED) -> np.ndarray:
    """(samples, C, H, W) float32 from N(0, 1), the same for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples,) + tuple(input_shape)).astype(np.float32)


def compare_outputs(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, float | None,
                                                                    int]:
    """(max abs error, max relative error, top-1 agreement or None, count it is over) of two
    (N, ...) outputs of one shape; relative to each sample's largest |theirs|."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    diff = np.abs(a - b).reshape(len(a), -1)
    scale = np.abs(b).reshape(len(b), -1).max(axis=1) if b.size else np.zeros(len(b))
    worst = diff.max(axis=1) if diff.size else np.zeros(len(a))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(worst == 0, 0.0, worst / scale)
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        rel = np.full(len(a), np.inf)
    max_abs = float(worst.max()) if len(worst) else 0.0
    max_rel = float(rel.max()) if len(rel) else 0.0
    if a.ndim < 2 or a.shape[1] < 2:
        return max_abs, max_rel, None, 0
    same = a.argmax(axis=1) == b.argmax(axis=1)
    return max_abs, max_rel, float(same.mean()), int(same.size)


def check_parity(source, imported, samples: int = PARITY_SAMPLES, seed: int = PARITY_SEED,
                 rtol: float = PARITY_RTOL,
                 progress: Callable[[str, int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Parity | None:
    """Run ONNX Runtime (CPU) on the original file `source` (path, bytes or ModelProto) and
    the imported network (`imported`: ImportedModel, with its `record`) on the same seeded
    inputs and compare the outputs. `progress(text, done, total)` reports each step;
    `should_stop()` true between steps cancels (returns None). A file ONNX Runtime cannot run
    gives a Parity with `error` saying why (an opset-upgraded file is then compared with the
    upgraded model, and `against` says so); nothing raises for a bad file."""
    from ..errors import EngineError
    from .runtime import CPU, OnnxModel, cached_model

    t0 = time.perf_counter()
    record = imported.record
    name = f"'{Path(source).name}'" if isinstance(source, (str, Path)) else "the original model"
    steps = 3 + samples
    done = 0

    def step(text: str) -> bool:
        nonlocal done
        if progress is not None:
            progress(text, done, steps)
        done += 1
        return should_stop is not None and should_stop()

    if step("loading the original file in ONNX Runtime…"):
        return None
    against = name
    try:
        original = source.SerializeToString() if hasattr(source, "SerializeToString") else (
            bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else str(source))
        ort_model = cached_model(original, providers=[CPU])  # kept for Check Again
    except EngineError as exc:
        if record is None or not record.upgraded:
            return Parity(name, rtol=rtol, error=f"ONNX Runtime cannot run {name} "
                          f"({_first_line(exc)})", seconds=time.perf_counter() - t0)
        try:  # ONNX Runtime runs opset 7 and on: compare with the file as it was upgraded
            from .importer import _upgrade, read_model

            upgraded = _upgrade(read_model(source), record.opset, name)
            ort_model = OnnxModel(upgraded, providers=[CPU])
        except EngineError as exc2:
            return Parity(name, rtol=rtol, error=f"ONNX Runtime cannot run {name} "
                          f"({_first_line(exc)}) nor its upgrade ({_first_line(exc2)})",
                          seconds=time.perf_counter() - t0)
        against = (f"{name} upgraded to opset {record.mapped_opset} (it cannot run the "
                   f"file's opset {record.opset} itself)")
    batch = ort_model.session.get_inputs()[0].shape[0]
    chunk = batch if isinstance(batch, int) and batch > 0 else None  # the file's fixed batch
    if chunk is not None:
        if chunk > MAX_FIXED_BATCH:
            return Parity(against, rtol=rtol, error=f"the file's input has a fixed batch size "
                          f"of {chunk}", seconds=time.perf_counter() - t0)
        samples = -(-samples // chunk) * chunk  # whole batches of the file's size
    steps = 3 + samples
    if step("compiling the imported network…"):
        return None
    net = imported.network()
    x = parity_inputs(net.input_shape, samples, seed)
    ours = []
    for i in range(samples):  # one at a time: progress, and a cancel waits for one sample
        if step(f"engine: sample {i + 1} of {samples}…"):
            return None
        ours.append(net.forward(x[i:i + 1], training=False))
    if step("ONNX Runtime…"):
        return None
    feed = x.transpose(0, 2, 3, 1) if record is not None and record.channels_last_input else x
    size = chunk or samples
    try:
        theirs = [ort_model.run(np.ascontiguousarray(feed[i:i + size]))
                  for i in range(0, samples, size)]
    except EngineError as exc:
        return Parity(against, samples, tuple(net.input_shape), rtol=rtol,
                      error=f"ONNX Runtime failed on {name}: {_first_line(exc)}",
                      seconds=time.perf_counter() - t0)
    a, b = np.concatenate(ours), np.concatenate(theirs)
    result = Parity(against, samples, tuple(net.input_shape), tuple(a.shape[1:]), rtol=rtol)
    if a.size != b.size:
        result.mismatch = (f"the outputs differ in shape: engine N×{_fmt(a.shape[1:])}, ONNX "
                           f"Runtime N×{_fmt(b.shape[1:])}")
    else:
        b = b.reshape(a.shape)  # same values, possibly other singleton axes (N×K×1×1)
        result.max_abs, result.max_rel, result.top1, result.top1_of = compare_outputs(a, b)
        for who, y in (("the engine's", a), ("ONNX Runtime's", b)):
            if not np.all(np.isfinite(y)):
                result.mismatch = f"{who} output holds NaN or infinity"
                break
    if progress is not None:
        progress("done", steps, steps)
    result.seconds = time.perf_counter() - t0
    return result


def tolerance(x: float) -> str:
    """1e-4 as "1e-4" (not 0.0001 nor 1e-04)."""
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


def _fmt(shape) -> str:
    return "×".join(map(str, shape)) or "1"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
