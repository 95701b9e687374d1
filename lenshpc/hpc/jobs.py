"""The submitit side of sweeps: the checkpointable run, executors, job states.

:class:`TrainRun` is what every array task executes: a ``submitit.helpers.Checkpointable`` that resumes its run
directory after a time-out or preemption requeue (docs/sweeps.md, "Preemption and time limits").  With
``hpc.tasks_per_node > 1`` (or ``nodes > 1``) one array task is one multi-rank run: submitit starts the tasks
through ``srun`` and :mod:`lenshpc.distributed` picks Horovod up from the SLURM environment.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from lenshpc.config import HpcConfig, from_dict
from lenshpc.errors import Preempted, UserError
from lenshpc.train.rundir import RunDir
from lenshpc.utils import progress

EXECUTORS = ("slurm", "local", "debug")

#: SLURM job states in which a job may still write to its run directory.
SLURM_ALIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                         "COMPLETING", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED",
                         "RESV_DEL_HOLD", "SPECIAL_EXIT", "POWER_UP_NODE"})

try:  # submitit is a hard dependency, but keep `lenshpc --help` independent of it
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover
    _Checkpointable = object  # type: ignore[misc,assignment]


class TrainRun(_Checkpointable):
    """One grid point as a submitit job: train (or resume) a run directory.

    Parameters
    ----------
    config : dict
        The run's resolved config (``Config.to_dict()``; plain data pickles robustly).
    run_dir : str
        The run directory.
    raise_errors : bool
        Re-raise training errors (the job then shows as failed in SLURM/submitit).  The debug
        executor runs jobs in-process and would drop into pdb on an exception, so it passes
        False and the failure is read from the run directory's ``FAILED`` marker instead.
    """

    def __init__(self, config: dict, run_dir: str, raise_errors: bool = True):
        self.config = config
        self.run_dir = str(run_dir)
        self.raise_errors = raise_errors

    def __call__(self) -> dict:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if RunDir(self.run_dir).done.exists():  # finished before a requeue caught up with it
            return {"status": "done", "run_dir": self.run_dir, "skipped": True}
        forward = TimeoutForwarder()
        try:
            from lenshpc.train import run_training

            cfg = from_dict(self.config, source=f"{self.run_dir}/config")
            with forward:
                try:
                    result = run_training(cfg, self.run_dir, resume=True, distributed="auto", show_progress=False)
                except Preempted:
                    # The loop finished its chunk and checkpointed.  If submitit's time-out signal
                    # caused it, let submitit's own handler requeue us (it calls self.checkpoint()).
                    forward.requeue_if_signalled()
                    raise
        except Preempted as exc:
            if self.raise_errors:
                raise  # checkpointed, not failed: a requeue (or --retry-failed) resumes it
            return {"status": "preempted", "run_dir": self.run_dir, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - reported through FAILED and (optionally) re-raised
            mark_failed(self.run_dir, exc)
            if self.raise_errors:
                raise
            return {"status": "failed", "run_dir": self.run_dir, "error": f"{type(exc).__name__}: {exc}"}
        return {"status": "done", "run_dir": self.run_dir, "metrics": result}

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on time-out/preemption: resubmit this run; it resumes from its checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TrainRun(self.config, self.run_dir, self.raise_errors))

    def __repr__(self) -> str:
        return f"TrainRun({self.run_dir!r})"


def mark_failed(run_dir: str | Path, exc: BaseException) -> None:
    """Write ``FAILED`` when the run failed before its own writer could (e.g. a missing data file).

    Only rank 0 writes (``SLURM_PROCID``/``SUBMITIT_LOCAL_GLOBALID`` unset or 0).
    """
    rank = os.environ.get("SLURM_PROCID") or os.environ.get("SUBMITIT_LOCAL_GLOBALID") or "0"
    rd = RunDir(run_dir)
    if rank == "0" and not rd.failed.exists():
        rd.mark_failed(exc)


class TimeoutForwarder:
    """Route submitit's time-out signal (USR2) through the training loop's graceful stop.

    submitit's own handler would requeue immediately and lose the chunks since the last
    periodic checkpoint.  Inside a submitit job we swap it for a handler that sends the
    training loop SIGUSR1 (finish the chunk, checkpoint, raise ``Preempted``); then
    :meth:`requeue_if_signalled` hands over to submitit's handler, which calls
    :meth:`TrainRun.checkpoint` and requeues (``scontrol requeue`` on SLURM, exit 144 locally).
    Outside submitit (debug executor, plain calls) or off the main thread this does nothing.
    """

    def __init__(self):
        self.signum: int | None = None
        self.submitit_handler = None
        self.signalled = False

    def __enter__(self) -> "TimeoutForwarder":
        if threading.current_thread() is not threading.main_thread() or "SUBMITIT_FOLDER" not in os.environ:
            return self
        name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
        signum = getattr(signal, name, None)
        if signum is None or signum in (signal.SIGUSR1, signal.SIGTERM):
            return self  # the training loop already handles that signal itself
        handler = signal.getsignal(signum)
        if callable(handler):
            self.signum, self.submitit_handler = signum, handler
            signal.signal(signum, self._forward)
        return self

    def _forward(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.signalled = True
        if callable(signal.getsignal(signal.SIGUSR1)):  # the training loop is listening
            os.kill(os.getpid(), signal.SIGUSR1)
        else:  # not training yet (imports, data checks): nothing to save, requeue right away
            self.requeue_if_signalled()

    def requeue_if_signalled(self) -> None:
        if self.signalled and self.submitit_handler is not None:
            signal.signal(self.signum, self.submitit_handler)
            self.submitit_handler(self.signum, None)  # checkpoint() + requeue + exit (rank 0)

    def __exit__(self, *exc) -> None:
        if self.submitit_handler is not None:
            signal.signal(self.signum, self.submitit_handler)


# ------------------------------------------------------------------ executors
def slurm_parameters(hpc: HpcConfig, job_name: str) -> dict[str, Any]:
    """submitit AutoExecutor parameters for ``hpc`` (``slurm_*`` ones only apply on SLURM)."""
    params: dict[str, Any] = {
        "name": job_name,
        "timeout_min": int(hpc.time_min),
        "nodes": int(hpc.nodes),
        "tasks_per_node": int(hpc.tasks_per_node),
        "cpus_per_task": int(hpc.cpus_per_task),
        "mem_gb": int(hpc.mem_gb),
        "slurm_array_parallelism": int(hpc.array_parallelism),
        "slurm_signal_delay_s": 120,  # USR2 this long before the time limit: checkpoint + requeue
    }
    if hpc.gpus_per_node:
        params["gpus_per_node"] = int(hpc.gpus_per_node)
    for key in ("partition", "account", "qos"):
        if getattr(hpc, key):
            params[f"slurm_{key}"] = getattr(hpc, key)
    for key, value in (hpc.extra or {}).items():
        params[key if key.startswith("slurm_") else f"slurm_{key}"] = value
    return params


def make_executor(kind: str, folder: Path, hpc: HpcConfig, job_name: str):
    """A submitit ``AutoExecutor`` for ``kind`` (slurm / local / debug) configured from ``hpc``."""
    import submitit

    if kind not in EXECUTORS:
        raise UserError(f"unknown executor {kind!r}; use one of {', '.join(EXECUTORS)}")
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--executor slurm: 'sbatch' is not on PATH; run from a SLURM login node, or use "
                        "--executor local")
    kwargs = {}
    if kind == "slurm" and hpc.image:  # the jobs' interpreter runs inside the Apptainer image
        kwargs["slurm_python"] = f"apptainer exec{' --nv' if hpc.gpus_per_node else ''} {hpc.image} python3"
    executor = submitit.AutoExecutor(folder=str(folder), cluster=kind, **kwargs)
    if kind == "local":
        executor._executor.__class__ = _detached_local_executor()
    params = slurm_parameters(hpc, job_name)
    if kind != "slurm":
        # One process per run locally: several ranks would need a launcher (use SLURM or
        # `lenshpc train --distributed` under mpirun for multi-rank runs).
        params.update(nodes=1, tasks_per_node=1)
        params.pop("gpus_per_node", None)
    try:
        executor.update_parameters(**params)
    except (NameError, ValueError) as exc:
        raise UserError(f"bad SLURM parameters (hpc section / hpc.extra): {exc}") from None
    return executor


def _detached_local_executor() -> type:
    """submitit's ``LocalExecutor`` whose job controllers run in their own session, output to a file.

    A Ctrl-C in the terminal then reaches only ``lenshpc sweep``, which stops its runs itself
    (:func:`stop_local_jobs`): without this the terminal's SIGINT also hits every controller,
    each printing a ``KeyboardInterrupt`` traceback over the sweep's own message.
    """
    import functools
    import types

    from submitit.local import local

    class DetachedLocalExecutor(local.LocalExecutor):
        def _submit_command(self, command: str):
            log_dir = Path(str(self.folder)).parent  # folder is …/.submitit/%j
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_dir / "controllers.log", "ab") as sink:
                popen = functools.partial(subprocess.Popen, start_new_session=True, stdout=sink, stderr=sink,
                                          stdin=subprocess.DEVNULL)
                shim = types.SimpleNamespace(Popen=popen)
                real, local.subprocess = local.subprocess, shim  # start_controller looks `subprocess` up here
                try:
                    return super()._submit_command(command)
                finally:
                    local.subprocess = real

    return DetachedLocalExecutor


class JobsInterrupted(KeyboardInterrupt):
    """Ctrl-C while :func:`run_limited` waited; ``jobs`` are the submitted jobs still running."""

    def __init__(self, jobs: list):
        super().__init__()
        self.jobs = jobs


def run_limited(executor, items: Iterable, call_for: Callable[[Any], Any], *, parallel: int = 1,
                inline: bool = False, poll_s: float = 1.0, on_submit: Callable[[Any, Any], None] = lambda i, j: None,
                on_done: Callable[[Any, Any], None] = lambda i, j: None) -> None:
    """The one job-polling loop: submit ``call_for(item)`` per item, at most ``parallel`` running at a time,
    until every job has ended (waiting with :func:`submitit.helpers.as_completed`).

    ``call_for`` runs just before its item is submitted; ``on_submit(item, job)`` records a submitted job and
    ``on_done(item, job)`` sees it end (finished, failed or cancelled: read its result or its run directory).
    ``inline`` (the debug executor) runs each job in this process as soon as it is submitted.

    Raises
    ------
    JobsInterrupted
        On Ctrl-C, with the jobs still running (the caller stops them and records what happened).
    """
    from submitit.helpers import as_completed

    todo, active = list(items), []
    try:
        while todo or active:
            while todo and (inline or len(active) < max(1, parallel)):
                item = todo.pop(0)
                job = executor.submit(call_for(item))
                on_submit(item, job)
                if inline:
                    job.result()
                    on_done(item, job)
                else:
                    active.append((item, job))
            if active:
                ended = next(as_completed([job for _, job in active], poll_frequency=poll_s))
                item = next(i for i, job in active if job is ended)
                active = [(i, job) for i, job in active if job is not ended]
                on_done(item, ended)
    except KeyboardInterrupt:
        raise JobsInterrupted([job for _, job in active]) from None


def stop_local_jobs(jobs: list, grace_s: float = 10.0) -> None:
    """Stop local jobs now (SIGINT to their controllers, which stop their task and clean up) and wait
    for them, so no run writes after the sweep says it was interrupted; SIGKILL after ``grace_s``."""
    for job in jobs:
        job.cancel(check=False)
    deadline = time.monotonic() + grace_s
    for job in jobs:
        process = getattr(job, "_process", None)
        if process is None:
            continue
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()


# ------------------------------------------------------------------ job states
@dataclass(frozen=True)
class JobState:
    """What the scheduler says about a job: ``alive`` (may still write), ``state`` (its word)."""

    alive: bool
    state: str


def run_array_and_wait(kind: str, folder: Path, hpc: HpcConfig, job_name: str, fn, items: list[tuple],
                       labels: list[Any], what: str, log=None) -> None:
    """Submit ``fn(*item)`` for every item as one submitit array, wait for all, report failures together.

    The sharded batch commands (``lenshpc maxtree``, ``lenshpc rank``) use this: their shard jobs
    write their own files atomically and skip finished work, so after a failure the user fixes the
    cause and re-runs the same command.

    Parameters
    ----------
    kind, folder, hpc, job_name
        As :func:`make_executor`.
    fn : callable
        Module-level function (pickled by reference).
    items : list of tuple
        The positional arguments of each job.
    labels : list
        One label per item for messages (e.g. the shard index).
    what : str
        What a job is, for messages (``"max-tree shard"``).

    Raises
    ------
    UserError
        One or more jobs failed: each with its last error line and its log file.
    """
    executor = make_executor(kind, folder, hpc, job_name=job_name)
    jobs = executor.map_array(fn, *zip(*items)) if items else []
    if log is not None:
        log.info("submitted %d %s job(s) (%s executor): %s", len(jobs), what, kind, ", ".join(j.job_id for j in jobs))
    failures = []
    with progress(total=len(jobs), desc=f"{what}s", unit="job") as bar:
        for label, job in zip(labels, jobs):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - reported per job below
                last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
                failures.append(f"{what} {label} (job {job.job_id}): {last} — log: {job.paths.stderr}")
            bar.update(1)
    if failures:
        raise UserError(f"{what} job(s) failed:\n  " + "\n  ".join(failures)
                        + f"\nfinished {what}s are kept; fix the cause and re-run the same command")


def job_log(folder: Path, job_id: str) -> Path:
    """submitit's stderr log of task 0 of ``job_id`` (``folder`` may contain ``%j``)."""
    from submitit.core.utils import JobPaths

    return JobPaths(folder, job_id=job_id, task_id=0).stderr


def local_job_state(job: dict) -> JobState:
    """A local-executor job is alive while its controller process (pid = job id) runs on this host."""
    if job.get("host") and job["host"] != socket.gethostname():
        return JobState(False, f"UNKNOWN (submitted on {job['host']})")
    try:
        pid = int(job["job_id"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (KeyError, ValueError, OSError):
        return JobState(False, "ENDED")
    if b"submitit" in cmdline:
        return JobState(True, "RUNNING")
    return JobState(False, "ENDED")


def slurm_job_states(job_ids: list[str]) -> dict[str, JobState]:
    """States of SLURM jobs (``123`` or array tasks ``123_4``): ``squeue`` for live ones, ``sacct`` for the rest.

    Jobs that neither command knows are absent from the result.  Never raises: without SLURM
    commands the result is empty.
    """
    wanted = set(job_ids)
    if not wanted or shutil.which("squeue") is None:
        return {}
    user = os.environ.get("USER") or getpass.getuser()
    out = {jid: JobState(state in SLURM_ALIVE, state)
           for jid, state in _listed(["squeue", "-h", "-r", "-o", "%i|%T", "-u", user]) if jid in wanted}
    rest = wanted - set(out)
    if rest and shutil.which("sacct"):
        masters = sorted({j.split("_")[0] for j in rest})
        for jid, state in _listed(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(masters)]):
            if jid in rest:
                out[jid] = JobState(state in SLURM_ALIVE, state)
    return out


def _listed(command: list[str]) -> list[tuple[str, str]]:
    """``(job id, state)`` per ``ID|STATE`` line of ``squeue``/``sacct`` (none when the command fails)."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = [line.partition("|")[::2] for line in proc.stdout.splitlines()] if proc.returncode == 0 else []
    return [(jid, (state.split() or ["UNKNOWN"])[0]) for jid, state in rows]  # "CANCELLED by 0" → CANCELLED


def job_states(jobs: list[dict]) -> dict[str, JobState]:
    """States for recorded jobs (``{"job_id", "executor", "host"}``), keyed by job id."""
    out: dict[str, JobState] = {}
    slurm_ids = [j["job_id"] for j in jobs if j.get("executor") == "slurm"]
    out.update(slurm_job_states(slurm_ids))
    for j in jobs:
        if j.get("executor") == "local":
            out[j["job_id"]] = local_job_state(j)
        elif j.get("executor") == "debug":
            out[j["job_id"]] = JobState(False, "ENDED")
    return out
