"""``lenshpc simulate21cm``: 21cmFAST brightness-temperature boxes on a grid → one HDF5 slice dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenshpc.commands import add_shard_options, reuse_out, shard_done
from lenshpc.errors import UserError

HELP = "simulate 21-cm δT_b boxes with 21cmFAST on a (redshift × F_ESC10 × realisation) grid → slice dataset"

DESCRIPTION = """\
Run 21cmFAST (template "simple": each redshift an independent box) for every
(redshift, F_ESC10) of every realisation, cut 2-D slices along all three axes and
write one slice dataset (HDF5, docs/data-format.md "21-cm slice datasets") with
class labels (redshift, escape_fraction; joint is derived), metadata (realisation,
random seed, z, F_ESC10, axis, slice, neutral fraction, mean δT_b) and a train/val/test
split BY REALISATION (slices of one box never straddle splits).

Realisation r = one set of initial conditions (21cmFAST random_seed derived from --seed
and r), computed once, then all its boxes; each realisation runs in a fresh worker
process and writes OUT.parts/real-RRRRR.h5 atomically.  A re-run skips finished
realisations (a killed run resumes); the merge gives a byte-identical OUT for any
--shards / --executor, then removes OUT.parts.

Needs the optional extra: pip install -e '.[cosmo21cm]' (or containers/install-21cmfast.sh).

Examples:
  lenshpc simulate21cm --out data/c21.h5 --redshifts 8 9 10 --fesc -1.3 -0.7 --realisations 4
  lenshpc simulate21cm --out data/c21.h5 --redshifts 8 9 10 --fesc -1.3 -0.7 --realisations 40 \\
      --hii-dim 64 --box-len 96 --shards 8 --executor slurm --partition cpu
  bash jobs/simulate21cm_array.sh data/c21.h5 --redshifts 8 9 10 --fesc -1.3 -0.7 --realisations 40  # sbatch array
The seed's scale (200^3 cells over 300 Mpc, 17 redshifts): docs/cosmo21cm.md.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DATA.h5", help="slice dataset to write")
    p.add_argument("--redshifts", type=float, nargs="+", required=True, metavar="Z",
                   help="redshift classes (21cmFAST range 5.5–35), e.g. 8 9 10")
    p.add_argument("--fesc", type=float, nargs="+", required=True, metavar="F_ESC10",
                   help="escape-fraction classes as F_ESC10 = log10 f_esc (range -3–0), e.g. -1.3 -1.0 -0.7")
    p.add_argument("--realisations", type=int, required=True, metavar="N",
                   help="random realisations (initial conditions) per grid point; ≥ 3 for a train/val/test split")
    p.add_argument("--hii-dim", type=int, default=32, metavar="CELLS", help="cells per box side (default 32)")
    p.add_argument("--box-len", type=float, default=48.0, metavar="MPC", help="box side in Mpc (default 48)")
    p.add_argument("--r-bubble-max", type=float, metavar="MPC",
                   help="21cmFAST R_BUBBLE_MAX (default 15; must be ≤ BOX_LEN/3)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="master seed: realisation seeds and the split derive from it (default 0)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--slices-per-axis", type=int, metavar="S", help="evenly spaced slices per axis (default: all)")
    group.add_argument("--stride", type=int, metavar="K", help="every K-th slice along each axis (default 1 = all)")
    p.add_argument("--split-by", choices=("realisation", "slice"), default="realisation",
                   help="split whole realisations (default) or single slices (optimistic scores; warned)")
    p.add_argument("--shards", type=int, default=1, metavar="K",
                   help="jobs the realisations are grouped into (shard k: realisations k, k+K, ...; default 1)")
    p.add_argument("--executor", choices=("inline", "local", "slurm"), default="inline",
                   help="inline: here; local: a submitit array on this machine; slurm: a submitit array on SLURM, "
                        "waited for, then merged (default inline)")
    p.add_argument("--workers", type=int, default=1, metavar="W",
                   help="realisations computed at once per shard (one process each; default 1)")
    add_shard_options(p, "compute", "realisations")
    p.add_argument("--keep-parts", action="store_true", help="keep OUT.parts/ after the merge")
    p.add_argument("--partition", default="", help="SLURM partition (--executor slurm)")
    p.add_argument("--time-min", type=int, default=240, metavar="MIN", help="time limit per shard job (default 240)")
    p.add_argument("--mem-gb", type=int, metavar="GB",
                   help="memory per shard job (default: what --workers realisations need at --hii-dim, measured "
                        "0.9 GB at 64^3, 2 GB at 128^3, 6 GB at 200^3, + 1 GB)")
    p.add_argument("--image", default="", metavar="SIF", help="Apptainer image the SLURM jobs run in")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists and was made from another grid")


def run(args: argparse.Namespace) -> int:
    from lenshpc.data.cosmo21cm.params import Grid
    from lenshpc.data.cosmo21cm.simulate import Resources, simulate21cm
    from lenshpc.data.cosmo21cm.slices import describe, open_slices

    grid = Grid.checked(args.redshifts, args.fesc, args.realisations, hii_dim=args.hii_dim, box_len=args.box_len,
                        seed=args.seed, slices_per_axis=args.slices_per_axis, stride=args.stride,
                        r_bubble_max=args.r_bubble_max)
    out = Path(args.out)
    if reuse_out(args, "c21.h5", opener=open_slices, key="grid", request=grid.as_dict(), made="simulated"):
        return 0  # also for an array task: its realisations are merged already
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.time_min < 1 or (args.mem_gb is not None and args.mem_gb < 1):
        raise UserError("--time-min and --mem-gb must be positive")
    result = simulate21cm(grid, out, shards=args.shards, executor=args.executor, workers=args.workers,
                          shard_index=args.shard_index, merge_only=args.merge_only, split_by=args.split_by,
                          keep_parts=args.keep_parts,
                          resources=Resources(args.partition, args.time_min, args.mem_gb, args.image))
    if result["status"] == "shard":
        return shard_done(args, args.shards, f"{result['done']} realisation(s) computed, "
                                             f"{result['skipped']} already done")
    print(f"wrote {out}: {grid.n_slices} slices ({result['done']} realisation(s) computed, {result['skipped']} "
          f"reused); content sha256 {result['digest'][:16]}…")
    print(describe(out))
    return 0
