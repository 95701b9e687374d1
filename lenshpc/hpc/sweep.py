"""Idempotent sweeps: plan what to submit, submit it with submitit, record it in ``sweep.json``.

A second ``lenshpc sweep`` of the same file submits nothing new: finished runs (``DONE``) are
skipped, runs whose recorded job is still alive (pending/running) are left alone, and failed
runs (``FAILED``, or a job that ended without ``DONE``) are only listed, unless
``retry_failed`` resubmits exactly those.

``sweep.json`` (in the output directory) records the grid and every job submitted for every
run, so ``lenshpc status`` and ``lenshpc reduce`` know the expected runs even before they start.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

from lenshpc.config import HpcConfig
from lenshpc.errors import UserError
from lenshpc.hpc import jobs as _jobs
from lenshpc.hpc.spec import GridPoint, SweepSpec
from lenshpc.provenance import now
from lenshpc.train.rundir import DONE, FAILED, FAILED_FILE, LOG_FILE, RUNNING, STARTED, read_run_dir
from lenshpc.utils import atomic_write_json, progress

SWEEP_JSON = "sweep.json"
SUBMITIT_DIR = ".submitit"

# Plan actions
SKIP_DONE, SKIP_ACTIVE, SUBMIT, RETRY, LIST_FAILED = "done", "active", "submit", "retry", "failed"


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a local/debug sweep; ``points`` were stopped unfinished (recorded as interrupted
    in ``sweep.json``: the same ``lenshpc sweep`` command resumes them from their checkpoints)."""

    def __init__(self, points: list[GridPoint]):
        super().__init__(f"{len(points)} run(s) stopped")
        self.points = points


@dataclass
class PlannedRun:
    point: GridPoint
    action: str
    reason: str = ""
    jobs: list[dict] = field(default_factory=list)


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did."""

    planned: list[PlannedRun]
    submitted: list[PlannedRun]
    job_ids: list[str]
    failed_after: list[tuple[GridPoint, str]] = field(default_factory=list)  # blocking executors only

    def count(self, action: str) -> int:
        return sum(p.action == action for p in self.planned)


# ------------------------------------------------------------------ sweep.json
def read_sweep_json(out: Path) -> dict:
    path = out / SWEEP_JSON
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); move it away to start the sweep's bookkeeping afresh "
                        "(finished runs are still skipped: they are recognised by their DONE files)") from None
    return data if isinstance(data, dict) else {}


def write_sweep_json(spec: SweepSpec, hpc: HpcConfig, executor: str, jobs_by_id: dict[str, list[dict]],
                     created: str | None = None, previous: dict | None = None) -> Path:
    """``OUT/sweep.json`` (docs/sweeps.md): the expected runs and every job submitted for them.

    An ensemble output (``spec.kind == "ensemble"``) keeps the ``previous`` record's runs that this
    invocation does not plan, so a narrowed re-run never makes them unknown to ``reduce``/``status``.
    """
    runs = []
    for p in spec.points:
        runs.append({"id": p.id, "group": p.group, "variant": p.variant, "seed": p.seed, "params": p.params,
                     "config_file": p.config_file, "run_dir": str(p.run_dir.relative_to(spec.out)),
                     "jobs": jobs_by_id.get(p.id, [])})
    planned = {r["id"] for r in runs}
    kept = [r for r in (previous or {}).get("runs", []) if isinstance(r, dict) and r.get("id") not in planned
            and spec.kind == "ensemble"]
    groups = spec.groups + [g for g in dict.fromkeys(r.get("group") for r in kept)
                            if isinstance(g, str) and g not in spec.groups]
    seeds = sorted({*spec.seeds, *(r["seed"] for r in kept if isinstance(r.get("seed"), int))})
    data = {"version": 1, "kind": spec.kind, "name": spec.name,
            "sweep_file": str(spec.path.resolve()) if spec.path else "",
            "out": str(spec.out), "created": created or (previous or {}).get("created") or now(), "updated": now(),
            "executor": executor,
            "hpc": hpc.__dict__ | {"extra": dict(hpc.extra)}, "groups": groups, "seeds": seeds,
            "varied_keys": spec.varied_keys, "runs": runs + kept}
    path = spec.out / SWEEP_JSON
    atomic_write_json(path, data)
    return path


def recorded_jobs(previous: dict) -> dict[str, list[dict]]:
    return {r["id"]: list(r.get("jobs") or []) for r in previous.get("runs", []) if isinstance(r, dict) and "id" in r}


# ------------------------------------------------------------------ planning
#: Run states shown by ``lenshpc status`` (and used to plan a sweep).
R_DONE, R_RUNNING, R_PENDING, R_FAILED, R_NOT_STARTED = "done", "running", "pending", "failed", "not started"
_PENDING_WORDS = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "POWER_UP_NODE")


def classify(run_dir: Path, history: list[dict], states: dict[str, "_jobs.JobState"]) -> tuple[str, str]:
    """``(state, detail)`` of one run from its directory markers and its latest job.

    ``failed`` covers a ``FAILED`` marker and a job that ended without ``DONE`` (killed, out of
    memory, time-out beyond the requeue budget); both are what ``--retry-failed`` resubmits.
    """
    rd = read_run_dir(run_dir)
    last = history[-1] if history else None
    job_state = states.get(last["job_id"]) if last else None
    resumes = f"; resumes at chunk {rd.checkpoint_chunk}" if rd.checkpoint_chunk is not None else ""
    if rd.state == DONE:
        return R_DONE, ""
    if job_state is not None and job_state.alive:
        pending = job_state.state in _PENDING_WORDS
        return (R_PENDING if pending else R_RUNNING), f"job {last['job_id']} {job_state.state.lower()}{resumes}"
    if rd.state == RUNNING:  # a live process holds the run dir (lenshpc train outside this sweep, or a lost job id)
        return R_RUNNING, rd.running_detail()
    if rd.state == FAILED:
        return R_FAILED, rd.error
    if last is not None and last.get("interrupted"):
        detail = f"interrupted (Ctrl-C) at {last['interrupted']}; the same lenshpc sweep command resumes it"
        if rd.checkpoint_chunk is not None:
            detail += f" at chunk {rd.checkpoint_chunk}"
        return R_FAILED, detail
    if last is not None or rd.state == STARTED:
        word = job_state.state if job_state is not None else "UNKNOWN"
        detail = (f"job {last['job_id']} ended ({word}) without DONE" if last
                  else "started outside this sweep, not finished")
        return R_FAILED, detail + resumes
    return R_NOT_STARTED, ""


def log_path(run_dir: Path, history: list[dict], out: Path) -> Path | None:
    """The log to read for a run: its ``train.log``, else (it never got that far) submitit's stderr log."""
    log = run_dir / LOG_FILE
    if log.exists():
        return log
    if history and history[-1].get("log") and (out / history[-1]["log"]).exists():
        return out / history[-1]["log"]
    return None


def plan(spec: SweepSpec, retry_failed: bool = False, only: Collection[str] | None = None) -> list[PlannedRun]:
    """Decide per grid point (``only``: those ids): skip (done / job alive), submit, list as failed or retry."""
    jobs_by_id = recorded_jobs(read_sweep_json(spec.out))
    states = _jobs.job_states([jl[-1] for jl in jobs_by_id.values() if jl])
    planned = []
    for point in spec.points:
        if only is not None and point.id not in only:
            continue
        history = jobs_by_id.get(point.id, [])
        state, detail = classify(point.run_dir, history, states)
        if state == R_DONE:
            planned.append(PlannedRun(point, SKIP_DONE, "finished (DONE)", history))
        elif state in (R_RUNNING, R_PENDING):
            planned.append(PlannedRun(point, SKIP_ACTIVE, detail, history))
        elif state == R_FAILED and history and history[-1].get("interrupted"):
            planned.append(PlannedRun(point, SUBMIT, detail, history))  # Ctrl-C is not a failure: resume
        elif state == R_FAILED:
            planned.append(PlannedRun(point, RETRY if retry_failed else LIST_FAILED, detail, history))
        else:
            planned.append(PlannedRun(point, SUBMIT, "not started", history))
    return planned


def describe_resources(kind: str, hpc: HpcConfig, n_runs: int) -> str:
    """One paragraph: what would be asked of the scheduler."""
    if kind != "slurm":
        return f"{kind} executor: {n_runs} run(s), one process each on this machine"
    parts = [f"partition={hpc.partition or '(default)'}", f"time={hpc.time_min} min", f"nodes={hpc.nodes}",
             f"tasks/node={hpc.tasks_per_node}", f"gpus/node={hpc.gpus_per_node}", f"cpus/task={hpc.cpus_per_task}",
             f"mem={hpc.mem_gb} GB", f"array %{hpc.array_parallelism}"]
    parts += [f"{key}={getattr(hpc, key)}" for key in ("account", "qos", "image", "extra") if getattr(hpc, key)]
    ranks = hpc.nodes * hpc.tasks_per_node
    launch = f"; each array task is one {ranks}-rank Horovod run (srun)" if ranks > 1 else ""
    if ranks > 1 and 0 < hpc.gpus_per_node < hpc.tasks_per_node:
        launch += f" (note: {hpc.tasks_per_node} ranks share {hpc.gpus_per_node} GPU(s) per node; usually one rank per GPU)"
    return f"SLURM job array of {n_runs} task(s): " + ", ".join(parts) + launch


# ------------------------------------------------------------------ submission
def run_sweep(spec: SweepSpec, executor: str = "slurm", hpc: HpcConfig | None = None, *, dry_run: bool = False,
              retry_failed: bool = False, parallel: int = 1, wait: bool | None = None,
              echo: Callable[[str], None] = print, poll_s: float = 1.0,
              only: Collection[str] | None = None) -> SweepOutcome:
    """Plan and submit a sweep.

    Parameters
    ----------
    executor : {"slurm", "local", "debug"}
        ``slurm`` submits one job array and returns (unless ``wait``); ``local`` runs at most
        ``parallel`` runs at a time as background processes and waits for them; ``debug``
        runs them one after the other in this process.
    hpc : HpcConfig, optional
        Resources (default: ``spec.hpc``).
    dry_run : bool
        Print the plan and resources; submit nothing, write nothing.
    retry_failed : bool
        Resubmit failed runs (and runs whose job ended without DONE).
    only : collection of str, optional
        Grid point ids to plan (``lenshpc ensemble``: its input-dependent runs); the others are only
        recorded in ``sweep.json``.
    """
    hpc = hpc or spec.hpc
    planned = plan(spec, retry_failed=retry_failed, only=only)
    todo = [p for p in planned if p.action in (SUBMIT, RETRY)]
    outcome = SweepOutcome(planned=planned, submitted=[], job_ids=[])
    if dry_run or not todo:
        return outcome
    spec.out.mkdir(parents=True, exist_ok=True)
    previous = read_sweep_json(spec.out)
    jobs_by_id = recorded_jobs(previous)
    folder = spec.out / SUBMITIT_DIR / "%j"

    def save() -> None:
        write_sweep_json(spec, hpc, executor, jobs_by_id, previous=previous)
    ex = _jobs.make_executor(executor, folder, hpc, job_name=f"lenshpc-{spec.name}")
    raise_errors = executor != "debug"

    def record(p: PlannedRun, job) -> None:
        entry = {"job_id": str(job.job_id), "executor": executor, "host": socket.gethostname(), "submitted": now(),
                 "log": str(_jobs.job_log(folder, str(job.job_id)).relative_to(spec.out))}
        jobs_by_id.setdefault(p.point.id, []).append(entry)
        outcome.job_ids.append(str(job.job_id))
        outcome.submitted.append(p)

    def run_for(p: PlannedRun) -> _jobs.TrainRun:
        if p.action == RETRY:  # the run restarts from its checkpoint; FAILED is cleared by the run itself
            (p.point.run_dir / FAILED_FILE).unlink(missing_ok=True)
        return _jobs.TrainRun(p.point.config.to_dict(), str(p.point.run_dir), raise_errors)

    if executor == "slurm":
        calls = [run_for(p) for p in todo]
        with ex.batch():
            submitted = [ex.submit(call) for call in calls]
        for p, job in zip(todo, submitted):
            record(p, job)
        save()
        if wait:  # until every array task has ended (its result written, or the scheduler says so)
            from submitit.helpers import as_completed

            with progress(total=len(submitted), desc="waiting for SLURM", unit="job") as bar:
                for _ in as_completed(submitted, poll_frequency=max(poll_s, 2.0)):
                    bar.update(1)
            outcome.failed_after = _failures(todo)
        return outcome

    # local / debug: run here, at most `parallel` at a time, with a progress bar
    save()
    bar = progress(total=len(todo), desc=f"sweep {spec.name}", unit="run")

    def submitted(p: PlannedRun, job) -> None:
        record(p, job)
        save()

    try:
        _jobs.run_limited(ex, todo, run_for, parallel=parallel, inline=executor == "debug", poll_s=poll_s,
                          on_submit=submitted, on_done=lambda p, job: bar.update(1))
    except _jobs.JobsInterrupted as interrupted:
        import signal

        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        started: list[PlannedRun] = []
        try:
            _jobs.stop_local_jobs(interrupted.jobs)
            started = [p for p in todo if p in outcome.submitted and read_run_dir(p.point.run_dir).state != DONE]
            for p in started:
                jobs_by_id[p.point.id][-1]["interrupted"] = now()
            save()
        finally:
            signal.signal(signal.SIGINT, handler)
        raise SweepInterrupted([p.point for p in started]) from None
    finally:
        bar.close()
    outcome.failed_after = _failures(todo)
    return outcome


def _failures(batch: list[PlannedRun]) -> list[tuple[GridPoint, str]]:
    states = [(p.point, read_run_dir(p.point.run_dir)) for p in batch]
    return [(point, rd.error or "ended without DONE") for point, rd in states if rd.state != DONE]
