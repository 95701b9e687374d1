"""Ensembles of trained runs: Nelder–Mead weighted averages, seed committees, input-dependent ensembles.

``lenshpc ensemble SPEC.yaml`` (see docs/ensembles.md) reads an ensemble spec
(:mod:`lenshpc.analysis.ensembles.spec`), and for every ensemble and every seed k writes one
**ensemble run directory** ``OUT/<name>/seed<k>`` laid out like a training run (``config.yaml``,
``metrics.json``, ``predictions.h5``, ``ensemble.json``, ``DONE``), so ``lenshpc reduce``,
``status``, ``infocontent`` and :func:`lenshpc.analysis.ensembles.scorer.load_scorer` work on it
unchanged.  Then it writes ``OUT/report.{md,csv,tex}`` in the thesis Table 5.2 layout
(:mod:`lenshpc.analysis.ensembles.report`).

Methods
-------
``nelder_mead``
    weights fitted on the members' validation scores (:func:`~lenshpc.analysis.ensembles.fit.fit_nelder_mead`).
``average``
    plain mean; with ``committee: GROUP`` every seed of one sweep group in one run.
``input_dependent``
    a dynamic ensembler trained by :func:`lenshpc.analysis.ensembles.ide.train_ide` (a network: runs inline
    or as submitit jobs, ``--executor``).

Public API
----------
plan_ensemble_runs(spec, entries) -> list[EnsembleRun]
run_weighted(run, *, force=False, show_progress=True) -> dict       # nelder_mead / average
ide_config(run) -> Config                                           # the DE's config of an IDE run
run_spec(spec, ...) -> EnsembleOutcome                              # everything + the report
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lenshpc.analysis.ensembles.fit import apply_weights, average_weights, fit_nelder_mead
from lenshpc.analysis.ensembles.spec import EnsembleEntry, EnsembleSpec, load_ensemble_spec
from lenshpc.analysis.ensembles.members import (ENSEMBLE_JSON, Member, load_member_config, member_for_seed,
                                      prediction_matrices, relpath, resolve_entry)
from lenshpc.errors import Preempted, UserError
from lenshpc.provenance import now
from lenshpc.train.rundir import RunDir, failure_reason, run_metrics, versions, write_predictions
from lenshpc.utils import atomic_write_json, json_safe, progress, read_json_object

log = logging.getLogger("lenshpc.analysis")

#: Sub-folder of an ensemble run holding the re-scored members' cached scores.
MEMBER_CACHE = "members"
SWEEP_JSON = "sweep.json"
SUBMITIT_DIR = ".submitit"


# ====================================================================== planning
@dataclass
class EnsembleRun:
    """One ensemble run: an entry, the seed k, its directory and its members (or why it cannot run)."""

    entry: EnsembleEntry
    seed: int
    run_dir: Path
    members: list[Member] = field(default_factory=list)
    problem: str = ""

    @property
    def id(self) -> str:
        return f"{self.entry.name}/seed{self.seed}"

    @property
    def done(self) -> bool:
        return RunDir(self.run_dir).is_done()


def plan_ensemble_runs(spec: EnsembleSpec, entries: list[EnsembleEntry] | None = None) -> list[EnsembleRun]:
    """Resolve every entry's members for every seed.

    A member that does not exist at all (a typo, a wrong ``runs``) raises a UserError with the
    closest group name; a single unfinished or failed member run only marks that ensemble run
    with a ``problem`` (the others still run).  A committee is one run (seed = the first seed)
    over the group's runs at every seed of the spec.
    """
    out: list[EnsembleRun] = []
    for entry in entries if entries is not None else spec.ensembles:
        where = f"{spec.path}: ensemble '{entry.name}'"
        resolved = [resolve_entry(spec.runs, e, where) for e in entry.member_entries]
        if entry.is_committee:
            label, path, is_group = resolved[0]
            if not is_group:
                raise UserError(f"{where}: committee '{label}' must be a sweep group (a folder of seed<k> runs), "
                                f"but {path} is a single run directory")
            run = EnsembleRun(entry, spec.seeds[0], spec.out / entry.name / f"seed{spec.seeds[0]}")
            problems = []
            for k in spec.seeds:
                try:
                    m = member_for_seed(label, path, True, k, where)
                    run.members.append(Member(f"{label}/seed{k}", m.run_dir))
                except UserError as exc:
                    problems.append(str(exc))
            if len(run.members) < 2 and not problems:
                problems.append(f"{where}: a committee needs at least 2 seeds; pass --seeds 0-9")
            run.problem = "; ".join(problems)
            out.append(run)
            continue
        for k in spec.seeds:
            run = EnsembleRun(entry, k, spec.out / entry.name / f"seed{k}")
            try:
                run.members = [member_for_seed(label, path, is_group, k, where) for label, path, is_group in resolved]
            except UserError as exc:
                run.problem = str(exc)
            out.append(run)
    return out


# ====================================================================== weighted ensembles
def run_weighted(run: EnsembleRun, *, force: bool = False, show_progress: bool = True) -> dict:
    """Fit (or average) and write one ``nelder_mead``/``average`` ensemble run directory.

    Returns the ``metrics.json`` written (or the existing one when ``DONE`` and not ``force``).
    """
    from lenshpc.config import flatten

    entry, rd = run.entry, RunDir(run.run_dir)
    if rd.is_done() and not force:
        return rd.read_metrics()
    if run.problem:
        raise UserError(run.problem)
    start, started = time.perf_counter(), now()
    rd.clear_markers()
    data_cfg = load_member_config(run.members[0].run_dir).replace(seed=run.seed)
    cfg = data_cfg.replace(name=entry.name)
    from lenshpc.config import dump_config

    dump_config(cfg, rd.config)  # first file: marks the run as started for `lenshpc status`
    try:
        ps = prediction_matrices(run.members, data_cfg, cache_dir=rd.path / MEMBER_CACHE, show_progress=show_progress)
        if entry.method == "nelder_mead":
            fit = fit_nelder_mead(ps.X_val, ps.y_val, variant=entry.variant, seed=run.seed, name=entry.name)
        else:
            fit = average_weights(ps.X_val, ps.y_val)
        s_val, s_test = apply_weights(ps.X_val, fit.weights), apply_weights(ps.X_test, fit.weights)
        metrics = _metrics(cfg, ps.y_test, s_test, n_val=len(ps.y_val), val=(ps.y_val, s_val))
        info = _ensemble_info(run, fit.to_dict(), ps.sources)
        metrics["ensemble"] = {k: info[k] for k in ("name", "method", "variant", "member_names", "weights")}
        metrics["ensemble"]["members"] = info["members"]
        metrics["config"] = {**flatten(cfg.to_dict()), **_ensemble_keys(entry)}
        metrics["timings"] = {"total_s": time.perf_counter() - start}
        metrics["versions"] = versions()
        metrics["provenance"] = _provenance(data_cfg, started, run)
        write_predictions(rd.predictions, {"val": {"scores": s_val, "labels": ps.y_val},
                                           "test": {"scores": s_test, "labels": ps.y_test, "meta": ps.test_meta}})
        atomic_write_json(rd.path / ENSEMBLE_JSON, info)
        atomic_write_json(rd.metrics, json_safe(metrics))
        rd.mark_done()
    except BaseException as exc:
        rd.mark_failed(exc)
        raise
    log.info("%s: %s weights %s, test fbeta %.4f auroc %s", run.id, entry.method,
             np.round(fit.weights, 3).tolist(), metrics["fbeta"], metrics.get("auroc"))
    return metrics


def _metrics(cfg, y: np.ndarray, scores: np.ndarray, n_val: int, val=None) -> dict:
    return {**run_metrics(cfg, y, scores, val=val), "n_val": int(n_val)}


def _provenance(data_cfg, started: str, run: EnsembleRun) -> dict:
    """``metrics.json["provenance"]`` of a weighted ensemble run, with each member's lenshpc/package versions."""
    from lenshpc import provenance
    from lenshpc.train.evaluate import run_provenance

    return provenance.collect(data_cfg, started=started, command="ensemble",
                              members={m.label: run_provenance(RunDir(m.run_dir)) for m in run.members})


def _ensemble_info(run: EnsembleRun, fit: dict, sources: list[str]) -> dict:
    """``ensemble.json``: what the ensemble is (members, weights) and how it was fitted."""
    entry = run.entry
    optimiser = {k: fit[k] for k in ("iterations", "nfev", "fun", "success", "message", "options", "theta",
                                     "theta0", "mse_applied")}
    return {"version": 1, "name": entry.name, "method": entry.method,
            "variant": entry.variant if entry.method == "nelder_mead" else "",
            "seed": int(run.seed), "committee": entry.committee,
            "members": [str(m.run_dir.resolve()) for m in run.members],
            "member_names": [m.label for m in run.members],
            "members_relative": [relpath(m.run_dir.resolve(), run.run_dir.resolve()) for m in run.members],
            "member_sources": sources, "weights": [float(w) for w in fit["weights"]], "optimiser": optimiser,
            "created": now()}


def _ensemble_keys(entry: EnsembleEntry) -> dict:
    """Extra flattened 'config' keys that make `lenshpc reduce` tell ensembles apart."""
    return {"ensemble.name": entry.name, "ensemble.method": entry.method,
            "ensemble.variant": entry.variant if entry.method == "nelder_mead" else "",
            "ensemble.members": "+".join(entry.member_entries)}


# ====================================================================== input-dependent ensembles
def ide_config(run: EnsembleRun):
    """The dynamic ensembler's config: member 0's config + the entry's overrides, the run's seed and name."""
    cfg = load_member_config(run.members[0].run_dir)
    try:
        return cfg.replace(**run.entry.overrides(), seed=run.seed, name=run.entry.name)
    except UserError as exc:
        raise UserError(f"ensemble '{run.entry.name}': bad train/model/set override: {exc}") from None


try:  # submitit is a hard dependency; keep imports cheap when it is absent
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover
    _Checkpointable = object  # type: ignore[misc,assignment]


class IdeJob(_Checkpointable):
    """One input-dependent ensemble run as a submitit job (resumes from its checkpoint when requeued)."""

    def __init__(self, members: list[str], config: dict, run_dir: str, raise_errors: bool = True,
                 force: bool = False):
        self.members, self.config, self.run_dir = list(members), config, str(run_dir)
        self.raise_errors, self.force = raise_errors, force

    def __call__(self) -> dict:
        from lenshpc.analysis.ensembles.ide import train_ide
        from lenshpc.config import from_dict
        from lenshpc.hpc.jobs import TimeoutForwarder, mark_failed

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        forward = TimeoutForwarder()
        try:
            cfg = from_dict(self.config, source=f"{self.run_dir}/config")
            with forward:
                try:
                    result = train_ide(self.members, cfg, self.run_dir, resume=True, force=self.force,
                                       show_progress=False)
                except Preempted:
                    forward.requeue_if_signalled()
                    raise
        except Preempted as exc:
            if self.raise_errors:
                raise
            return {"status": "preempted", "run_dir": self.run_dir, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - reported through FAILED (and re-raised for submitit)
            mark_failed(self.run_dir, exc)
            if self.raise_errors:
                raise
            return {"status": "failed", "run_dir": self.run_dir, "error": f"{type(exc).__name__}: {exc}"}
        return {"status": "done", "run_dir": self.run_dir, "metrics": result}

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(IdeJob(self.members, self.config, self.run_dir, self.raise_errors, False))

    def __repr__(self) -> str:
        return f"IdeJob({self.run_dir!r})"


def _hpc(spec: EnsembleSpec, base_cfg, overrides: dict | None = None):
    from lenshpc.config import from_dict

    merged = {**base_cfg.hpc.__dict__, **spec.hpc, **(overrides or {})}
    return from_dict({"hpc": merged}, source=str(spec.path)).hpc


def _run_ide(spec: EnsembleSpec, runs: list[EnsembleRun], executor: str, *, force: bool, parallel: int,
             show_progress: bool, hpc_overrides: dict | None, jobs_by_id: dict[str, list[dict]],
             save: Callable[[], None], echo: Callable[[str], None]) -> list[str]:
    """Train (debug: inline) or submit (local/slurm) the IDE runs; returns the submitted job ids."""
    from lenshpc.hpc import jobs as _jobs

    if not runs:
        return []
    if executor == "debug":  # inline, in this process, one after the other
        from lenshpc.analysis.ensembles.ide import train_ide

        for run in runs:
            echo(f"training input-dependent ensemble {run.id} …")
            train_ide([str(m.run_dir) for m in run.members], ide_config(run), run.run_dir, resume=True, force=force,
                      show_progress=show_progress)
        return []
    folder = spec.out / SUBMITIT_DIR / "%j"
    hpc = _hpc(spec, ide_config(runs[0]), hpc_overrides)
    ex = _jobs.make_executor(executor, folder, hpc, job_name=f"lenshpc-{spec.name}-ide")
    calls = [IdeJob([str(m.run_dir) for m in r.members], ide_config(r).to_dict(), str(r.run_dir), True, force)
             for r in runs]
    submitted: list[tuple[EnsembleRun, object]] = []

    def record(run: EnsembleRun, job) -> None:
        jobs_by_id.setdefault(run.id, []).append(
            {"job_id": str(job.job_id), "executor": executor, "host": socket.gethostname(), "submitted": now(),
             "log": str(_jobs.job_log(folder, str(job.job_id)).relative_to(spec.out))})
        submitted.append((run, job))

    if executor == "slurm":
        with ex.batch():
            jobs = [ex.submit(c) for c in calls]
        for run, job in zip(runs, jobs):
            record(run, job)
        save()
        echo(f"submitted {len(jobs)} input-dependent ensemble job(s) to SLURM; re-run this command when they have "
             "finished to update the report (`lenshpc status` shows their state)")
        return [str(j.job_id) for j in jobs]
    pending, active = list(zip(runs, calls)), []
    bar = progress(total=len(pending), desc="input-dependent ensembles", unit="run",
                   disable=None if show_progress else True)
    try:
        while pending or active:
            while pending and len(active) < max(1, parallel):
                run, call = pending.pop(0)
                job = ex.submit(call)
                record(run, job)
                save()
                active.append(job)
            still = [j for j in active if not j.done()]
            bar.update(len(active) - len(still))
            active = still
            if active:
                time.sleep(1.0)
    except KeyboardInterrupt:
        for job in active:
            job.cancel(check=False)
        raise
    finally:
        bar.close()
    return [str(j.job_id) for _, j in submitted]


# ====================================================================== the whole spec
@dataclass
class EnsembleOutcome:
    """What :func:`run_spec` did."""

    runs: list[EnsembleRun]
    done_before: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    failed: list[tuple[str, str]] = field(default_factory=list)
    report: object = None


def run_spec(spec: EnsembleSpec, *, only: list[str] | None = None, executor: str = "debug", force: bool = False,
             parallel: int = 1, plots: bool = True, show_progress: bool = True, hpc_overrides: dict | None = None,
             echo: Callable[[str], None] = print) -> EnsembleOutcome:
    """Compute every ensemble run of ``spec`` (skipping finished ones) and write the report.

    Weighted ensembles (``nelder_mead``, ``average``) run in this process; ``input_dependent``
    ones go through ``executor`` (``debug`` = in this process).  A run whose members are not all
    finished is skipped and listed; an error in one run does not stop the others.
    """
    from lenshpc.analysis.ensembles.report import write_report
    from lenshpc.hpc import jobs as _jobs
    from lenshpc.hpc.sweep import classify

    entries = spec.select(only)
    runs = plan_ensemble_runs(spec, entries)
    outcome = EnsembleOutcome(runs=runs)
    spec.out.mkdir(parents=True, exist_ok=True)
    previous = read_json_object(spec.out / SWEEP_JSON)
    jobs_by_id = {r["id"]: list(r.get("jobs") or []) for r in previous.get("runs", []) if isinstance(r, dict)}
    created = previous.get("created") or now()

    def save() -> None:
        write_sweep_json(spec, jobs_by_id, executor, created, previous=previous)

    save()
    states = _jobs.job_states([jl[-1] for jl in jobs_by_id.values() if jl])
    weighted, ide = [], []
    for run in runs:
        if run.done and not force:
            outcome.done_before.append(run.id)
        elif run.problem:
            outcome.skipped.append((run.id, run.problem))
        elif run.entry.method == "input_dependent":
            state, detail = classify(run.run_dir, jobs_by_id.get(run.id, []), states)
            if state in ("running", "pending") and not force:
                outcome.skipped.append((run.id, f"still {state} ({detail})"))
            else:
                ide.append(run)
        else:
            weighted.append(run)
    bar = progress(weighted, desc="ensembles", unit="run", disable=None if show_progress else True)
    for run in bar:
        try:
            run_weighted(run, force=force, show_progress=show_progress)
            outcome.computed.append(run.id)
        except UserError as exc:
            outcome.failed.append((run.id, str(exc)))
            log.error("%s failed: %s", run.id, exc)
    try:
        outcome.submitted = _run_ide(spec, ide, executor, force=force, parallel=parallel, show_progress=show_progress,
                                     hpc_overrides=hpc_overrides, jobs_by_id=jobs_by_id, save=save, echo=echo)
    except UserError as exc:
        outcome.failed += [(r.id, str(exc)) for r in ide if not r.done]
    if executor != "slurm":
        for run in ide:
            if run.done:
                outcome.computed.append(run.id)
            elif not any(run.id == f for f, _ in outcome.failed):
                why = failure_reason(run.run_dir) if RunDir(run.run_dir).failed.is_file() else "ended without DONE"
                outcome.failed.append((run.id, why))
    save()
    outcome.report = write_report(spec, plots=plots)
    return outcome


def write_sweep_json(spec: EnsembleSpec, jobs_by_id: dict[str, list[dict]], executor: str, created: str,
                     previous: dict | None = None) -> Path:
    """``OUT/sweep.json`` in the sweep format (docs/sweeps.md), so `status`/`reduce` name and order the rows.

    Runs of an earlier invocation that this one does not plan (``--seeds``/``--only`` narrowed it) are kept, so
    a partial re-run never makes the output's other runs unknown to ``reduce`` and ``status``.
    """
    runs = []
    for entry in spec.ensembles:
        seeds = spec.seeds[:1] if entry.is_committee else spec.seeds
        for k in seeds:
            rid = f"{entry.name}/seed{k}"
            runs.append({"id": rid, "group": entry.name, "variant": entry.name, "seed": k,
                         "params": _ensemble_keys(entry), "config_file": str(spec.path.resolve()) if spec.path else "",
                         "run_dir": rid, "jobs": jobs_by_id.get(rid, [])})
    planned = {r["id"] for r in runs}
    old_runs = [r for r in (previous or {}).get("runs", []) if isinstance(r, dict) and r.get("id") not in planned]
    runs += old_runs
    groups = [e.name for e in spec.ensembles]
    groups += [g for g in dict.fromkeys(r.get("group") for r in old_runs) if isinstance(g, str) and g not in groups]
    seeds = sorted({*spec.seeds, *(r["seed"] for r in old_runs if isinstance(r.get("seed"), int))})
    data = {"version": 1, "kind": "ensemble", "name": spec.name,
            "sweep_file": str(spec.path.resolve()) if spec.path else "", "out": str(spec.out), "created": created,
            "updated": now(), "executor": executor, "hpc": dict(spec.hpc), "groups": groups,
            "seeds": seeds, "varied_keys": ["ensemble.name"], "runs": runs}
    path = spec.out / SWEEP_JSON
    atomic_write_json(path, data)
    return path


__all__ = ["EnsembleOutcome", "EnsembleRun", "IdeJob", "ide_config", "load_ensemble_spec",
           "plan_ensemble_runs", "run_spec", "run_weighted", "write_sweep_json"]
