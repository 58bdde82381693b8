"""Run a sweep: an Optuna study (TPE sampler; median or successive-halving pruning on each
epoch's validation accuracy) whose trials train variants of one model; every trial is also a run
in the run store.

    setup = SweepSetup(model="lenet5", data="mnist", space="space.yaml", trials=20, limit=2000)
    run_sweep(setup, jobs=2)          # worker processes against the study's storage
    summary = sweep_results(setup)    # best trial, table, importances

The study lives in Optuna's RDB storage (SQLite by default, any SQLAlchemy URL for many
machines); a killed sweep resumes from it: run the same command again and only the missing
trials run (a trial whose process died is failed after its heartbeat's grace period and
retried once with the same parameters).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..nn.train import TrainConfig

HEARTBEAT_S = 10  # a running trial writes a heartbeat this often
GRACE_S = 40  # a trial without a heartbeat for this long belonged to a dead process
PRUNERS = ("median", "halving", "none")


@dataclass
class SweepSetup:
    model: str
    data: str
    space: str
    trials: int
    runs: str  # run store path
    storage: str  # RDB URL
    study: str
    limit: int | None = None
    config: dict = field(default_factory=lambda: asdict(TrainConfig()))
    timeout: float | None = None  # seconds, per worker, from its start
    seed: int = 0
    heartbeat: int = HEARTBEAT_S
    grace: int = GRACE_S
    pruner: str = "median"  # one of PRUNERS

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SweepSetup:
        return cls(**json.loads(text))


def default_paths(model: str, space: str) -> tuple[Path, str, str]:
    """(run store, storage URL, study name) for MODEL: beside a project file, else in the
    current folder, named after the model."""
    from ..runs import runs_path

    p = Path(model)
    runs = runs_path(p) if p.suffix in (".cnnd", ".json", ".onnx") else Path(
        f"{p.name}.runs.sqlite")
    storage = runs.with_name(runs.name.replace(".runs.sqlite", ".sweep.sqlite"))
    return runs, f"sqlite:///{storage}", f"{p.stem}-{Path(space).stem}"


def open_study(setup: SweepSetup, worker: int = 0):
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs = {"connect_args": {"timeout": 60}} if setup.storage.startswith("sqlite") else {}
    storage = RDBStorage(setup.storage, engine_kwargs=kwargs,
                         heartbeat_interval=setup.heartbeat, grace_period=setup.grace,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                             max_retry=1))
    # each worker its own sampler seed: the same seed would draw the same random start trials
    sampler = optuna.samplers.TPESampler(seed=setup.seed + 1000 * worker,
                                         n_startup_trials=min(8, max(2, setup.trials // 3)))
    return optuna.create_study(study_name=setup.study, storage=storage, sampler=sampler,
                               pruner=make_pruner(setup.pruner), direction="maximize",
                               load_if_exists=True)


def make_pruner(name: str):
    """median: stop a trial whose validation accuracy is below the median of earlier trials'
    at the same epoch (after 3 trials). halving: asynchronous successive halving, rungs at
    epochs 1, 3, 9, …; a trial goes on past a rung only when it is in the best third of the
    trials that reached it, so with more epochs per trial most stop after 1 or 3 of them.
    none: every trial trains its epochs."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner '{name}' (choose {', '.join(PRUNERS)})")


class SurplusTrial(Exception):
    """A trial started when the study already held its trials (a worker racing another)."""


LIVE = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # trials that count towards setup.trials


def is_surplus(trial, trials: int) -> bool:
    """True when `trials` live trials were created before this one. The storage numbers trials
    in one transaction each, so two workers that both saw room for one more trial get
    different numbers and only the later one is surplus: the check is atomic where the count
    before starting is not. Failed trials do not count (a dead worker's is retried)."""
    from optuna.trial import TrialState

    live = tuple(TrialState[s] for s in LIVE)
    before = sum(t.number < trial.number
                 for t in trial.study.get_trials(deepcopy=False, states=live))
    return before >= trials


def counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


class Objective:
    """One worker's trial function: the model, data and space are loaded once."""

    def __init__(self, setup: SweepSetup, log=None, should_stop=None):
        from ..data import check_data, load_dataset
        from ..models import load_model
        from ..validate import validate
        from .space import load_space

        self.setup = setup
        self.should_stop = should_stop or (lambda: False)
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.graph = load_model(setup.model).graph
        self.space = load_space(setup.space)
        self.space.check(self.graph)
        v = validate(self.graph)
        shape = next(v.nodes[n].out_shape for n in v.order
                     if self.graph.nodes[n].type_name == "Input")
        self.data = load_dataset(setup.data, shape, setup.limit)
        self.check_data = check_data
        self.base = TrainConfig(**setup.config)

    def values(self, trial) -> dict[str, Any]:
        out = {name: d.suggest(trial, name) for name, d in self.space.hyper.items()}
        for lname, params in self.space.layers.items():
            for pname, d in params.items():
                out[f"{lname}.{pname}"] = d.suggest(trial, f"{lname}.{pname}")
        for b in self.space.blocks:
            out[b.name] = b.repeat.suggest(trial, b.name)
        return out

    def __call__(self, trial) -> float:
        import numpy as np
        import optuna

        from ..nn.network import Network
        from ..nn.train import evaluate, train
        from ..runs import RunRecorder
        from .variant import InvalidVariant, apply_values

        if is_surplus(trial, self.setup.trials):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: the study already holds "
                               f"{self.setup.trials} trials")
        values = self.values(trial)
        hyper = {k: v for k, v in values.items() if k in self.space.hyper}
        try:
            graph = apply_values(self.graph, self.space, values)
            config = replace(self.base, **hyper)
            config.check()
            fatal = [m.text for m in self.check_data(graph, self.data) if m.fatal]
            if fatal:
                raise InvalidVariant(fatal[0])
        except ValueError as exc:  # InvalidVariant, a config the TrainConfig refuses
            trial.set_user_attr("invalid", str(exc))
            self.log(f"trial {trial.number}: skipped, invalid variant: {exc}")
            raise optuna.TrialPruned(f"invalid: {exc}") from None
        net = Network.compile(graph, np.random.default_rng(config.seed))
        tr = self.data.train
        info = {"source": self.setup.data, "name": tr.name, "classes": list(self.data.classes),
                "limit": self.setup.limit, "sweep_values": values}
        rec = RunRecorder(self.setup.runs, graph, info, source="sweep", study=self.setup.study,
                          trial=trial.number, on_message=self.log)
        pruned = []

        def on_epoch(rep):
            trial.report(rep.val_accuracy if rep.val_accuracy is not None else
                         rep.train_accuracy, rep.epoch)
            if rep.epoch < config.epochs and trial.should_prune():
                pruned.append(rep.epoch)

        t0 = time.perf_counter()
        hist = train(net, tr.x, tr.y, config, on_epoch=on_epoch,
                     should_stop=lambda: bool(pruned) or self.should_stop(), recorder=rec)
        trial.set_user_attr("run", rec.run_id)
        trial.set_user_attr("epochs_trained", len(hist.epochs))
        trial.set_user_attr("epochs_planned", config.epochs)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        if self.should_stop() and not pruned:
            trial.set_user_attr("cancelled", True)
            raise optuna.TrialPruned("cancelled")
        if pruned:
            rec.set_status("pruned")
            self.log(f"trial {trial.number}: pruned after epoch {pruned[0]} "
                     f"(val {100 * (hist.epochs[-1].val_accuracy or 0):.2f}%)")
            raise optuna.TrialPruned()
        if hist.stopped or not hist.epochs:
            trial.set_user_attr("invalid", hist.stopped or "no epoch")
            raise optuna.TrialPruned(f"stopped: {hist.stopped}")
        last = hist.epochs[-1]
        value = last.val_accuracy if last.val_accuracy is not None else last.train_accuracy
        if self.data.test is not None and len(self.data.test):
            loss, acc, _ = evaluate(net, self.data.test.x, self.data.test.y)
            rec.set_test(loss, acc)
            trial.set_user_attr("test_accuracy", acc)
        self.log(f"trial {trial.number}: val {100 * value:.2f}%"
                 + (f", test {100 * trial.user_attrs['test_accuracy']:.2f}%"
                    if "test_accuracy" in trial.user_attrs else "")
                 + f" ({time.perf_counter() - t0:.1f}s) {values}")
        return value


def run_worker(setup: SweepSetup, worker: int = 0, log=None, should_stop=None) -> None:
    """Run trials until the study holds setup.trials (finished or running), the timeout, or
    should_stop() (checked between trials and batches)."""
    from optuna.storages import fail_stale_trials

    study = open_study(setup, worker)
    _quiet_surplus()
    objective = Objective(setup, log, should_stop)
    t0 = time.perf_counter()
    while not objective.should_stop():
        fail_stale_trials(study)
        c = counts(study)
        if c["complete"] + c["pruned"] + c["running"] + c["waiting"] >= setup.trials:
            return
        if setup.timeout is not None and time.perf_counter() - t0 >= setup.timeout:
            return
        study.optimize(objective, n_trials=1, catch=(SurplusTrial,))


def _quiet_surplus() -> None:
    """Optuna warns of every failed trial; a surplus one (told FAIL, not trained) is no failure."""
    import logging

    log = logging.getLogger("optuna.study._optimize")
    if not any(getattr(f, "surplus", False) for f in log.filters):
        f = logging.Filter()
        f.filter = lambda rec: "SurplusTrial" not in rec.getMessage()
        f.surplus = True
        log.addFilter(f)


def blas_env(jobs: int) -> dict[str, str]:
    """The environment of one of `jobs` worker processes: the cores split between them."""
    n = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[k] = n
    return env


def run_sweep(setup: SweepSetup, jobs: int = 1, log=None, should_stop=None) -> None:
    """Run the sweep here (jobs 1) or in `jobs` worker processes sharing the cores;
    should_stop() (the GUI's Cancel) ends it after the current batch, or terminates the
    workers (their running trials are failed and retried when the sweep resumes)."""
    open_study(setup)  # create the study (and its tables) once, before the workers race
    if jobs <= 1:
        run_worker(setup, 0, log, should_stop)
        return
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-m", "engine.sweep.worker", setup.to_json(),
                               str(i)], env=blas_env(jobs), cwd=root) for i in range(jobs)]

    def end_all() -> None:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()

    try:
        while should_stop is not None and any(p.poll() is None for p in procs):
            if should_stop():
                end_all()
                return
            time.sleep(0.2)
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        end_all()
        raise
    bad = [c for c in codes if c]
    if bad:
        from ..errors import EngineError

        raise EngineError(f"{len(bad)} of {jobs} sweep workers failed (exit codes "
                          f"{', '.join(map(str, bad))}); run the command again to resume")


def trial_rows(study) -> list[dict]:
    """One plain dict per trial of the study: number, state (complete, pruned, invalid,
    cancelled, fail, running), value, last (the last epoch's reported value, pruned trials'
    too), test accuracy, epochs, seconds, run id, params, axes (per param: its choices, or
    "log" / "linear" for a range), note."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if "surplus" in t.user_attrs:  # never trained: not one of the study's trials
            continue
        state = t.state.name.lower()
        if "invalid" in t.user_attrs:
            state = "invalid"
        elif "cancelled" in t.user_attrs:
            state = "cancelled"
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values \
            else t.value
        rows.append({"trial": t.number, "state": state, "value": t.value, "last": last,
                     "test_accuracy": t.user_attrs.get("test_accuracy"),
                     "epochs": t.user_attrs.get("epochs_trained"),
                     "epochs_planned": t.user_attrs.get("epochs_planned"),
                     "seconds": t.user_attrs.get("seconds"), "run": t.user_attrs.get("run"),
                     "params": t.params, "axes": {k: _axis(d) for k, d in
                                                  t.distributions.items()},
                     "note": t.user_attrs.get("invalid")})
    return rows


def _axis(dist):
    """How a plot lays out a searched value: the choices in their order, or a log / linear
    range."""
    choices = getattr(dist, "choices", None)
    if choices is not None:
        return list(choices)
    return "log" if getattr(dist, "log", False) else "linear"


def sweep_results(setup: SweepSetup) -> dict:
    """The study's best trial, a table of trials, parameter importances and the cost."""
    import optuna
    from optuna.trial import TrialState

    study = open_study(setup)
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(study)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if done:
        b = study.best_trial
        best = {"trial": b.number, "value": b.value, "params": b.params,
                "test_accuracy": b.user_attrs.get("test_accuracy"), "run": b.user_attrs.get("run")}
    importances = {}
    if len(done) >= 2:
        import warnings

        try:
            with warnings.catch_warnings():  # "importances will be equal": few trials
                warnings.simplefilter("ignore", UserWarning)
                importances = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError):  # too few distinct values to tell
            importances = {}
    # cost in epochs of the unchanged model: each trial's epochs weighted by its MACs (forward
    # multiply-adds per image, recorded with its run) over the model's; timing-noise free
    from ..models import load_model
    from ..runs import RunStore
    from ..validate import validate

    base_macs = validate(load_model(setup.model).graph).macs or 1
    macs = {r["id"]: r["macs"] for r in RunStore(setup.runs).list_runs()}
    equivalents = sum((r["epochs"] or 0) * (macs.get(r["run"]) or base_macs) / base_macs
                      for r in rows)
    # the same trials without pruning: each trained to its planned epochs
    unpruned = sum((r["epochs_planned"] or 0) * (macs.get(r["run"]) or base_macs) / base_macs
                   for r in rows if r["run"] is not None and r["state"] != "invalid")
    trained = sum(r["epochs"] or 0 for r in rows)
    planned = sum(r["epochs_planned"] or 0 for r in rows if r["state"] != "invalid")
    return {"study": setup.study, "storage": setup.storage, "trials": rows, "best": best,
            "importances": {k: float(v) for k, v in importances.items()},
            "counts": {s: sum(r["state"] == s for r in rows)
                       for s in ("complete", "pruned", "invalid", "fail", "running")},
            "epochs_trained": trained, "epochs_planned": planned,
            "model_epoch_equivalents": equivalents, "unpruned_equivalents": unpruned,
            "seconds": sum(r["seconds"] or 0 for r in rows)}
