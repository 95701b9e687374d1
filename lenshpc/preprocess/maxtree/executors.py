"""Running the shards of a :class:`~lenshpc.preprocess.maxtree.shards.Plan`, then merging them.

``inline``
    Shards one after another in this process (each with ``workers`` processes).
``local``
    A submitit array on this machine: one process per pending shard (``--workers`` each).
``slurm``
    A submitit array on SLURM (resources from the config's ``hpc`` section, GPUs none); this
    command waits for it, then merges.  ``jobs/maxtree_array.sh`` does the same with sbatch.
``mpi``
    Started under ``mpirun -np K`` / ``srun -n K``: rank ``r`` of ``size`` runs shards
    ``r, r+size, …``; rank 0 merges after a barrier.  Errors on any rank fail every rank.

Finished shard files are skipped by every executor, so a re-run after an interruption
resumes where it stopped; the merged file is byte-identical whatever the executor and K.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lenshpc.errors import UserError
from lenshpc.hpc import shards as sh
from lenshpc.preprocess.maxtree.shards import Plan, merge, run_shard, shards_dir

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "mpi", "inline")


def run_plan(plan: Plan, executor: str, workers: int = 1, shard_index: int | None = None,
             merge_only: bool = False) -> dict:
    """Compute the pending shards with ``executor`` and merge them (unless ``shard_index`` is given).

    Returns a summary ``{"status", "digest", "done", "skipped"}`` (``status``: ``current`` when
    the output was already up to date, ``merged``, ``shard`` or ``worker`` for MPI ranks ≠ 0).
    """
    sh.check_request(executor, EXECUTORS, plan.shards, None if executor == "mpi" else shard_index)
    if executor == "mpi":
        return _run_mpi(plan, workers, merge_only)
    if shard_index is not None:
        return {"status": "shard", "result": run_shard(plan, shard_index, workers=workers)}
    if plan.output_is_current():
        return {"status": "current", "digest": _digest(plan), "done": 0, "skipped": plan.shards}
    pending = [] if merge_only else plan.pending()
    sh.run_pending(pending, executor, lambda k: run_shard(plan, k, workers=workers), parts=shards_dir(plan.out),
                   hpc=lambda: dataclasses.replace(plan.cfg.hpc, gpus_per_node=0, nodes=1, tasks_per_node=1,
                                                   cpus_per_task=max(int(workers), 1)),
                   job_name=f"maxtree-{Path(plan.out).stem}", fn=run_shard, args=lambda k: (plan, k, workers),
                   what="max-tree shard", log=log)
    digest = merge(plan, executor)
    return {"status": "merged", "digest": digest, "done": len(pending), "skipped": plan.shards - len(pending)}


def _digest(plan: Plan) -> str:
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset

    with SegmentedDataset(plan.out) as seg:
        return seg.attrs.get("content_sha256", "")


def mpi_world() -> tuple[object, int, int]:
    """``(comm, rank, size)`` of MPI.COMM_WORLD (clear error without mpi4py)."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise UserError("--executor mpi needs mpi4py: pip install mpi4py (with an MPI library, e.g. Debian "
                        "libopenmpi-dev), then start with `mpirun -np K lenshpc maxtree ... --executor mpi`") from None
    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


def _run_mpi(plan: Plan, workers: int, merge_only: bool) -> dict:
    comm, rank, size = mpi_world()
    current = plan.output_is_current() if rank == 0 else None
    current = comm.bcast(current, root=0)
    if current:
        return {"status": "current" if rank == 0 else "worker", "digest": _digest(plan) if rank == 0 else "",
                "done": 0, "skipped": plan.shards}
    error, done = None, 0
    if not merge_only:
        try:
            for k in range(rank, plan.shards, size):
                done += run_shard(plan, k, workers=workers, show_progress=rank == 0) == "done"
        except Exception as exc:  # noqa: BLE001 - every rank must reach the collective below
            error = f"rank {rank}: {type(exc).__name__}: {exc}"
    errors = [e for e in comm.allgather(error) if e]
    total_done = sum(comm.allgather(done))
    if errors:
        raise UserError("max-tree MPI run failed:\n  " + "\n  ".join(errors)
                        + "\nfinished shards are kept; fix the cause and re-run the same command")
    result: dict = {"status": "worker"}
    if rank == 0:
        try:
            digest = merge(plan, "mpi")
            result = {"status": "merged", "digest": digest, "done": total_done, "skipped": plan.shards - total_done}
        except Exception as exc:  # noqa: BLE001
            error = f"merge on rank 0: {type(exc).__name__}: {exc}"
    error = comm.bcast(error, root=0)
    if error:
        raise UserError(error)
    return result
