"""``lenshpc sweep SWEEP.yaml``: submit a grid of runs with submitit (idempotent)."""

from __future__ import annotations

import argparse
import sys

from lenshpc.commands import add_hpc_flags, add_set, hpc_changes
from lenshpc.errors import UserError

HELP = "run a grid of configs × seeds via submitit (SLURM job arrays, local processes or in-process debug)"
DESCRIPTION = """\
Expand a sweep file (base config × named variants × seeds × optional product dims; see
docs/sweeps.md) and submit every run that is not finished yet.

Idempotent: finished runs (DONE) are skipped, runs whose job is still pending/running are
left alone, failed runs are listed and only resubmitted with --retry-failed. Ctrl-C on a local
or debug sweep stops its runs (exit 130); the same command then resumes them from their
checkpoints, as a SLURM time-out/preemption requeues them (submitit). Each grid point writes
OUT/<variant>[__key-value…]/seed<k>; the sweep writes OUT/sweep.json (grid, run directories, job ids)
and submitit logs to OUT/.submitit/.

executors:
  slurm  one job array per call (array parallelism from hpc.array_parallelism); returns at once
         unless --wait. Run it on a login node.
  local  background processes on this machine, --parallel at a time; waits for them.
  debug  in this process, one after the other (for debugging a config).

examples:
  lenshpc sweep configs/sweeps/thesis_table51.yaml --dry-run
  lenshpc sweep configs/sweeps/thesis_table51.yaml --executor slurm --partition gpu --gpus-per-node 1
  lenshpc sweep configs/sweeps/thesis_table51.yaml --executor slurm --retry-failed
  lenshpc sweep my_sweep.yaml --executor local --parallel 2 --set data.path=data/kids.h5
"""

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep YAML file (e.g. configs/sweeps/thesis_table51.yaml)")
    p.add_argument("--executor", choices=("slurm", "local", "debug"), default="slurm",
                   help="where runs execute (default: slurm)")
    p.add_argument("--out", default=None, help="output directory (default: the sweep file's out: or runs/<name>)")
    p.add_argument("--dry-run", action="store_true", help="print the grid, the plan and the resources; submit nothing")
    p.add_argument("--retry-failed", action="store_true", help="resubmit failed runs (only those)")
    add_set(p, "config override for every run (repeatable), e.g. --set data.path=data/kids.h5")
    p.add_argument("--parallel", type=int, default=1, help="local executor: runs at once (default 1)")
    p.add_argument("--wait", action="store_true", help="slurm executor: wait until every submitted task has ended")
    add_hpc_flags(p.add_argument_group("SLURM resources (override the base config's, then the sweep file's hpc)"))


def hpc_from_args(base, args: argparse.Namespace):
    """``base`` HpcConfig with the flags given on the command line applied (validated)."""
    from lenshpc.config import merge_hpc

    changes = hpc_changes(args)
    return merge_hpc(base, changes, source="command line") if changes else base


def print_plan(spec, planned, executor: str, hpc) -> None:
    """The grid (one line per variant: its distinguishing values and its seeds per action) and resources."""
    from lenshpc.hpc.spec import group_values
    from lenshpc.hpc.sweep import describe_resources
    from lenshpc.report.tables import seeds_text

    values = group_values(spec)
    print(f"sweep {spec.name}: {len(spec.groups)} variant(s) × {len(spec.seeds)} seed(s) = {len(spec.points)} runs "
          f"→ {spec.out}")
    print(f"varied keys: {', '.join(spec.varied_keys) or '(none)'}")
    width = max(len(g) for g in spec.groups)
    for group in spec.groups:
        mine = [p for p in planned if p.point.group == group]
        actions = {}
        for p in mine:
            actions.setdefault(p.action, []).append(p.point.seed)
        text = "; ".join(f"{a} seeds {seeds_text(s)}" for a, s in actions.items())
        vals = ", ".join(f"{k}={v}" for k, v in values[group].items())
        print(f"  {group:<{width}}  {text}" + (f"  [{vals}]" if vals else ""))
    for p in planned:
        if p.action in ("failed", "retry", "active"):
            print(f"    {p.point.id}: {p.action}: {p.reason}")
    n_todo = sum(p.action in ("submit", "retry") for p in planned)
    print(describe_resources(executor, hpc, n_todo))


def run(args: argparse.Namespace) -> int:
    from lenshpc.hpc.spec import load_sweep
    from lenshpc.hpc.sweep import (LIST_FAILED, RETRY, SKIP_ACTIVE, SKIP_DONE, SUBMIT, SweepInterrupted, log_path, plan,
                                   read_sweep_json, recorded_jobs, run_sweep)

    if args.parallel < 1:
        raise UserError(f"--parallel {args.parallel}: must be at least 1")
    spec = load_sweep(args.sweep, overrides=args.overrides, out=args.out)
    hpc = hpc_from_args(spec.hpc, args)
    if args.dry_run:
        print_plan(spec, plan(spec, retry_failed=args.retry_failed), args.executor, hpc)
        print("dry run: nothing submitted")
        return 0
    try:
        outcome = run_sweep(spec, executor=args.executor, hpc=hpc, retry_failed=args.retry_failed,
                            parallel=args.parallel, wait=args.wait)
    except SweepInterrupted as stop:
        stopped = ", ".join(p.id for p in stop.points) or "none"
        print(f"lenshpc sweep: interrupted; stopped unfinished run(s): {stopped}. Finished runs are kept; re-run the "
              "same command to resume (stopped runs continue from their last checkpoint)", file=sys.stderr)
        return 130
    c = outcome.count
    print(f"sweep {spec.name}: {len(spec.points)} runs: {c(SKIP_DONE)} done, {c(SKIP_ACTIVE)} pending/running, "
          f"{len(outcome.submitted)} submitted ({c(SUBMIT)} new, {c(RETRY)} retried), {c(LIST_FAILED)} failed (not retried)")
    if outcome.job_ids and args.executor == "slurm":
        array = sorted({j.split("_")[0] for j in outcome.job_ids})
        print(f"SLURM job array {', '.join(array)} ({len(outcome.job_ids)} tasks); logs in {spec.out}/.submitit/")
    failed = [p for p in outcome.planned if p.action == LIST_FAILED]
    for p in failed:
        print(f"  failed: {p.point.id}: {p.reason}")
    if failed:
        print("  resubmit them with --retry-failed")
    history = recorded_jobs(read_sweep_json(spec.out)) if outcome.failed_after else {}
    for point, error in outcome.failed_after:
        log = log_path(point.run_dir, history.get(point.id, []), spec.out)
        print(f"  failed: {point.id}: {error}" + (f"  (log: {log})" if log else ""))
    print(f"status: lenshpc status {spec.out}    report: lenshpc reduce {spec.out}")
    if outcome.failed_after:
        print(f"{len(outcome.failed_after)} run(s) failed; fix the cause and rerun with --retry-failed")
        return 1
    return 0
