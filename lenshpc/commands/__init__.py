"""One module per CLI verb (see ``lenshpc.cli``): ``HELP``, ``add_arguments``, ``run``; shared option helpers."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenshpc.errors import DataError, UserError


def thresholds_text(metrics: dict) -> str:
    """``fbeta 0.0 at t = 0.5; at t* = 0.31 (max val Fβ): fbeta 0.97, precision 0.98, recall 0.85`` for a summary line."""

    def num(key: str) -> str:
        value = metrics.get(key)
        return "–" if value is None else f"{value:.4g}"

    text = f"fbeta {num('fbeta')} at t = {num('threshold')}"
    if metrics.get("threshold_tuned") is not None:
        text += (f"; at t* = {num('threshold_tuned')} (max validation Fβ): fbeta {num('fbeta_tuned')}, "
                 f"precision {num('precision_tuned')}, recall {num('recall_tuned')}")
    return text


def add_set(p, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_shard_options(p, what: str, finished: str = "shards") -> None:
    """``--shard-index`` or ``--merge-only``: the two steps of a job array over a sharded verb's shards."""
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--shard-index", type=int, metavar="I",
                       help=f"{what} only shard I and exit without merging (job arrays: $SLURM_ARRAY_TASK_ID)")
    steps.add_argument("--merge-only", action="store_true",
                       help=f"only merge finished {finished} (the array's last step)")


def shard_done(args: argparse.Namespace, shards: int, text: str) -> int:
    """Say what array task ``--shard-index`` did (exit 0: the merge job comes next)."""
    print(f"shard {args.shard_index} of {shards}: {text}")
    return 0


#: The SLURM resource flags of the verbs that submit jobs: (flag, HpcConfig field, type, help).
HPC_FLAGS = (
    ("--partition", "partition", str, "SLURM partition"),
    ("--time", "time_min", int, "time limit per run in minutes"),
    ("--nodes", "nodes", int, "nodes per run"),
    ("--gpus-per-node", "gpus_per_node", int, "GPUs per node"),
    ("--tasks-per-node", "tasks_per_node", int, "tasks (Horovod ranks) per node; >1 = multi-rank runs"),
    ("--cpus-per-task", "cpus_per_task", int, "CPUs per task"),
    ("--mem-gb", "mem_gb", int, "memory per node in GB"),
    ("--array-parallelism", "array_parallelism", int, "max array tasks running at once"),
    ("--account", "account", str, "SLURM account"),
    ("--qos", "qos", str, "SLURM QoS"),
    ("--image", "image", str, "Apptainer image to run jobs in"),
)


def add_hpc_flags(group, skip: tuple[str, ...] = ()) -> None:
    """The :data:`HPC_FLAGS` (but ``skip``) as options of ``group`` (default None: not given)."""
    for flag, _field, typ, text in HPC_FLAGS:
        if flag not in skip:
            group.add_argument(flag, dest=_field, type=typ, default=None, metavar=_field.upper(), help=text)


def hpc_changes(args: argparse.Namespace) -> dict:
    """The HpcConfig fields given as :data:`HPC_FLAGS` on the command line."""
    return {field: getattr(args, field) for _f, field, *_ in HPC_FLAGS if getattr(args, field, None) is not None}


def reuse_out(args: argparse.Namespace, example: str, *, opener=None, key: str = "request", request=None,
              made: str = "made") -> bool:
    """Check the ``--out FILE`` a command is about to write; True when it already holds this very output (skip it).

    A folder is refused (suggesting ``--out FOLDER/example``).  An existing file is replaced with ``--force``.
    Without it the file is kept, and said so, only when it opens with ``opener`` and the ``key`` of its
    provenance equals ``request``; otherwise (no ``opener``, unreadable, written by something else, other
    inputs: the differing keys are named) it is refused with a :class:`~lenshpc.errors.UserError`, untouched.
    """
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / example}")
    if args.force or not out.exists():
        return False
    fix = "nothing was changed; pass --force to replace it, or choose another --out"
    if opener is None:
        raise UserError(f"{out} already exists; {fix}")
    try:
        with opener(out) as ds:
            stored = (ds.attrs.get("provenance") or {}).get(key)
    except (DataError, ValueError, OSError) as exc:
        raise UserError(f"--out {out} already exists but is not a usable lenshpc dataset ({exc}); {fix}") from None
    if stored is None:
        raise UserError(f"--out {out} already exists but was not written by `lenshpc {args.command}` (no {key} in its "
                        f"provenance); {fix}")
    diffs = [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in request.items() if stored.get(k) != v]
    if diffs:
        raise UserError(f"--out {out} already exists but was {made} from other inputs ({'; '.join(diffs)}); {fix}")
    print(f"{out} exists (a lenshpc dataset {made} from these inputs); nothing to do (use --force to rebuild it)")
    return True
