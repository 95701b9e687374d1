"""``lenshpc maxtree DATA.h5 --out SEG.h5``: Max-Tree segmentation as parallel preprocessing."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenshpc.commands import add_set, add_shard_options, shard_done
from lenshpc.errors import UserError

HELP = "segment a dataset with the thesis's Max-Tree filter (sharded: local, SLURM array or MPI) → SEG.h5"

DESCRIPTION = """\
Segment the lenses, negatives and the fixed validation and test sets of DATA.h5 with the
Max-Tree pipeline of thesis Sec 4.7 (lenshpc.preprocess.maxtree.segmentation), and build a pre-merged,
segmented pool of N mock lenses (Eq 4.2 merge with α and source metadata, seeded), so a
segmented training run draws from arrays instead of segmenting every chunk.

The work is split into K shards; each writes SEG.h5.shards/shard-KKKK-of-NNNN.h5 atomically,
finished shards are skipped on re-run, and a final merge writes SEG.h5 (with provenance and
a content digest equal for any K and executor) plus SEG.montage.png (before/after, Fig 5.19).

Parameters come from the config's preprocess.maxtree section; the validation/test sets and
the pool depend on seed, data.val_size, data.test_size, data.alpha_min/max and
data.positive_fraction: use the same config (and --set) as the training runs.

Examples:
  lenshpc maxtree data/kids.h5 --out data/kids_seg.h5 --config configs/thesis/maxtree.yaml
  lenshpc maxtree data/kids.h5 --out data/kids_seg.h5 --shards 8 --executor slurm
  mpirun -np 4 lenshpc maxtree data/kids.h5 --out data/kids_seg.h5 --executor mpi
  sbatch jobs/maxtree_array.sh data/kids.h5 data/kids_seg.h5      # plain sbatch: array + merge
Then train with: --set data.preprocess=maxtree --set data.segmented_path=data/kids_seg.h5
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA.h5", help="population or labelled dataset (lenshpc simulate / stack)")
    p.add_argument("--out", required=True, metavar="SEG.h5", help="segmented dataset to write")
    p.add_argument("--config", metavar="CFG", help="run config (YAML); its preprocess.maxtree, data and seed apply")
    add_set(p, "config override, repeatable (e.g. --set preprocess.maxtree.flood=centre)")
    p.add_argument("--pool", type=int, metavar="N", help="mock lenses in the pool (default preprocess.maxtree.pool_size)")
    p.add_argument("--executor", choices=("local", "slurm", "mpi", "inline"), default="local",
                   help="local: submitit processes here; slurm: submitit array; mpi: under mpirun/srun, one "
                        "shard set per rank; inline: this process, shard after shard (default: local)")
    p.add_argument("--shards", type=int, metavar="K", help="number of shards (default: 1; with mpi: the world size)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="processes per shard (default 1)")
    add_shard_options(p, "compute")


def run(args: argparse.Namespace) -> int:
    from lenshpc.config import load_config
    from lenshpc.preprocess.maxtree.executors import mpi_world, run_plan
    from lenshpc.preprocess.maxtree.shards import make_plan, montage_path

    overrides = list(args.overrides)
    if args.pool is not None:
        overrides.append(f"preprocess.maxtree.pool_size={args.pool}")
    cfg = load_config(args.config, overrides=overrides)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if Path(args.out).resolve() == Path(args.data).resolve():
        raise UserError("--out must differ from DATA.h5 (the input is never overwritten)")
    rank = 0
    shards = args.shards
    if args.executor == "mpi":
        _, rank, size = mpi_world()
        shards = shards or size
    plan = make_plan(args.data, args.out, cfg, shards or 1)
    result = run_plan(plan, args.executor, workers=args.workers, shard_index=args.shard_index,
                      merge_only=args.merge_only)
    if rank != 0:
        return 0
    status = result["status"]
    if status == "shard":
        return shard_done(args, plan.shards, result["result"])
    if status == "current":
        print(f"{args.out} is up to date (content sha256 {result['digest'][:16]}…); nothing to do")
    else:
        print(f"wrote {args.out}: {', '.join(f'{g} {n}' for g, n in plan.sizes.items())} images "
              f"({result['done']} shard(s) computed, {result['skipped']} reused); "
              f"content sha256 {result['digest'][:16]}…; montage {montage_path(args.out)}")
    return 0
