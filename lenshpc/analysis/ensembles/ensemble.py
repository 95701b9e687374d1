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
    a dynamic ensembler: an ordinary training run of task ``ide`` (:mod:`lenshpc.tasks.ide`),
    submitted like a sweep's runs (``--executor``: inline, local processes or SLURM).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lenshpc.analysis.ensembles.fit import FitResult, apply_weights, average_weights, fit_nelder_mead
from lenshpc.analysis.ensembles.spec import EnsembleEntry, EnsembleSpec, load_ensemble_spec
from lenshpc.analysis.ensembles.members import (ENSEMBLE_JSON, Member, load_member_config, member_for_seed,
                                      prediction_matrices, relpath, resolve_entry)
from lenshpc.config import Config, dump_config, flatten, merge_hpc
from lenshpc.errors import UserError
from lenshpc.hpc.spec import GridPoint, SweepSpec
from lenshpc.metrics import binary_labels
from lenshpc.provenance import now
from lenshpc.train.rundir import RunDir, failure_reason, run_metrics, versions, write_predictions
from lenshpc.utils import atomic_write_json, json_safe, progress

log = logging.getLogger("lenshpc.analysis")

#: Sub-folder of an ensemble run holding the re-scored members' cached scores.
MEMBER_CACHE = "members"


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
    entry, rd = run.entry, RunDir(run.run_dir)
    if rd.is_done() and not force:
        return rd.read_metrics()
    if run.problem:
        raise UserError(run.problem)
    start, started = time.perf_counter(), now()
    rd.clear_markers()
    data_cfg = load_member_config(run.members[0].run_dir).replace(seed=run.seed)
    cfg = data_cfg.replace(name=entry.name)
    dump_config(cfg, rd.config)  # first file: marks the run as started for `lenshpc status`
    try:
        ps = prediction_matrices(run.members, data_cfg, cache_dir=rd.path / MEMBER_CACHE, show_progress=show_progress)
        if entry.method == "nelder_mead":
            fit = fit_nelder_mead(ps.X_val, ps.y_val, variant=entry.variant, seed=run.seed, name=entry.name)
        else:
            fit = average_weights(ps.X_val, ps.y_val)
        s_val, s_test = apply_weights(ps.X_val, fit.weights), apply_weights(ps.X_test, fit.weights)
        metrics = {**run_metrics(cfg, ps.y_test, s_test, val=(ps.y_val, s_val)), "n_val": len(ps.y_val)}
        info = _ensemble_info(run, fit, ps.sources)
        metrics["ensemble"] = {k: info[k] for k in ("name", "method", "variant", "member_names", "weights", "members")}
        metrics["config"] = {**flatten(cfg.to_dict()), **_ensemble_keys(entry)}
        metrics["timings"] = {"total_s": time.perf_counter() - start}
        metrics["versions"] = versions()
        metrics["provenance"] = _provenance(data_cfg, started, run)
        write_predictions(rd.predictions, {"val": {"scores": s_val, "labels": binary_labels(ps.y_val)},
                                           "test": {"scores": s_test, "labels": binary_labels(ps.y_test), "meta": ps.test_meta}})
        atomic_write_json(rd.path / ENSEMBLE_JSON, info)
        atomic_write_json(rd.metrics, json_safe(metrics))
        rd.mark_done()
    except BaseException as exc:
        rd.mark_failed(exc)
        raise
    log.info("%s: %s weights %s, test fbeta %.4f auroc %s", run.id, entry.method,
             np.round(fit.weights, 3).tolist(), metrics["fbeta"], metrics.get("auroc"))
    return metrics


def _provenance(data_cfg, started: str, run: EnsembleRun) -> dict:
    """``metrics.json["provenance"]`` of a weighted ensemble run, with each member's lenshpc/package versions."""
    from lenshpc import provenance
    from lenshpc.train.evaluate import run_provenance

    return provenance.collect(data_cfg, started=started, command="ensemble",
                              members={m.label: run_provenance(RunDir(m.run_dir)) for m in run.members})


def _ensemble_info(run: EnsembleRun, fit: FitResult, sources: list[str]) -> dict:
    """``ensemble.json``: what the ensemble is (members, weights) and how it was fitted."""
    entry = run.entry
    optimiser = {k: getattr(fit, k) for k in ("iterations", "nfev", "fun", "success", "message", "options", "theta",
                                              "theta0", "mse_applied")}
    return {"version": 1, "name": entry.name, "method": entry.method,
            "variant": entry.variant if entry.method == "nelder_mead" else "",
            "seed": int(run.seed), "committee": entry.committee,
            "members": [str(m.run_dir.resolve()) for m in run.members],
            "member_names": [m.label for m in run.members],
            "members_relative": [relpath(m.run_dir.resolve(), run.run_dir.resolve()) for m in run.members],
            "member_sources": sources, "weights": [float(w) for w in fit.weights], "optimiser": optimiser,
            "created": now()}


def _ensemble_keys(entry: EnsembleEntry) -> dict:
    """Extra flattened 'config' keys that make `lenshpc reduce` tell ensembles apart."""
    return {"ensemble.name": entry.name, "ensemble.method": entry.method,
            "ensemble.variant": entry.variant if entry.method == "nelder_mead" else "",
            "ensemble.members": "+".join(entry.member_entries)}


# ====================================================================== input-dependent ensembles
def ide_config(run: EnsembleRun):
    """The dynamic ensembler's config: member 0's config + the entry's overrides, the run's seed and name, and
    task ``ide`` over the run's members (an ordinary training run, :class:`lenshpc.tasks.ide.IDETask`)."""
    from lenshpc.analysis.ensembles.ide import with_members

    cfg = load_member_config(run.members[0].run_dir)
    try:
        cfg = cfg.replace(**run.entry.overrides(), seed=run.seed, name=run.entry.name)
    except UserError as exc:
        raise UserError(f"ensemble '{run.entry.name}': bad train/model/set override: {exc}") from None
    return with_members(cfg, [m.run_dir for m in run.members])


def _hpc(spec: EnsembleSpec, base_cfg, overrides: dict | None = None):
    return merge_hpc(base_cfg.hpc, spec.hpc, overrides, source=str(spec.path))


def _as_sweep(spec: EnsembleSpec, trained: list[EnsembleRun], hpc):
    """Every run of ``spec`` as a sweep grid point (``sweep.json``, :func:`lenshpc.hpc.sweep.run_sweep`);
    the ``trained`` (input-dependent) ones carry their config, the others are computed in this process."""
    configs = {r.id: ide_config(r) for r in trained}
    source = str(spec.path.resolve()) if spec.path else ""
    points = [GridPoint(group=e.name, variant=e.name, seed=k, params=_ensemble_keys(e), config_file=source,
                        run_dir=spec.out / e.name / f"seed{k}", config=configs.get(f"{e.name}/seed{k}"))
              for e in spec.ensembles for k in (spec.seeds[:1] if e.is_committee else spec.seeds)]
    return SweepSpec(path=spec.path, name=spec.name, out=spec.out, points=points, hpc=hpc,
                     varied_keys=["ensemble.name"], kind="ensemble")


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
    ones are ordinary training runs (task ``ide``) submitted like a sweep's
    (:func:`lenshpc.hpc.sweep.run_sweep` through ``executor``; ``debug`` = in this process), and
    ``OUT/sweep.json`` records them all.  A run whose members are not all finished is skipped and
    listed; an error in one run does not stop the others.
    """
    from lenshpc.analysis.ensembles.report import write_report
    from lenshpc.hpc import sweep as _sweep
    from lenshpc.train import checkpoint as ckpt

    runs = plan_ensemble_runs(spec, spec.select(only))
    outcome = EnsembleOutcome(runs=runs)
    weighted = [r for r in runs if r.entry.method != "input_dependent"]
    for run in runs:
        if run.done and not force:
            outcome.done_before.append(run.id)
        elif run.problem:
            outcome.skipped.append((run.id, run.problem))
    todo = [r for r in runs if r.entry.method == "input_dependent" and not r.problem and (force or not r.done)]
    try:
        sweep = _as_sweep(spec, todo, _hpc(spec, ide_config(todo[0]) if todo else Config(), hpc_overrides))
    except UserError as exc:  # a bad override: no input-dependent run can start
        outcome.failed += [(r.id, str(exc)) for r in todo]
        todo, sweep = [], _as_sweep(spec, [], _hpc(spec, Config(), hpc_overrides))
    spec.out.mkdir(parents=True, exist_ok=True)
    previous = _sweep.read_sweep_json(spec.out)
    _sweep.write_sweep_json(sweep, sweep.hpc, executor, _sweep.recorded_jobs(previous), previous.get("created"),
                            previous=previous)  # status and reduce know every run from the start
    bar = progress([r for r in weighted if r.id not in outcome.done_before and not r.problem], desc="ensembles",
                   unit="run", disable=None if show_progress else True)
    for run in bar:
        try:
            run_weighted(run, force=force, show_progress=show_progress)
            outcome.computed.append(run.id)
        except UserError as exc:
            outcome.failed.append((run.id, str(exc)))
            log.error("%s failed: %s", run.id, exc)
    if force:  # start these over (a DONE run or a checkpoint would otherwise be kept)
        for run in todo:
            RunDir(run.run_dir).clear_markers()
            ckpt.remove(RunDir(run.run_dir).checkpoint)
    done = _sweep.run_sweep(sweep, executor, sweep.hpc, retry_failed=True, parallel=parallel, echo=echo,
                            only={r.id for r in todo}) if todo else None
    for p in done.planned if done else []:
        if p.action == _sweep.SKIP_ACTIVE:
            outcome.skipped.append((p.point.id, f"still {p.reason}"))
    if executor == "slurm":
        outcome.submitted = list(done.job_ids) if done else []
        if outcome.submitted:
            echo(f"submitted {len(outcome.submitted)} input-dependent ensemble job(s) to SLURM; re-run this command "
                 "when they have finished to update the report (`lenshpc status` shows their state)")
    else:
        submitted = {p.point.id for p in done.submitted} if done else set()
        for run in todo:
            if run.done:
                outcome.computed.append(run.id)
            elif run.id in submitted:
                why = failure_reason(run.run_dir) if RunDir(run.run_dir).failed.is_file() else "ended without DONE"
                outcome.failed.append((run.id, why))
    outcome.report = write_report(spec, plots=plots)
    return outcome


__all__ = ["EnsembleOutcome", "EnsembleRun", "ide_config", "load_ensemble_spec",
           "plan_ensemble_runs", "run_spec", "run_weighted"]
