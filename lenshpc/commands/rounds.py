"""``lenshpc rounds ROUNDS.yaml``: hard-negative rounds train → rank → mine, locally or on SLURM."""

from __future__ import annotations

import argparse

from lenshpc.commands import add_hpc_flags, hpc_changes

HELP = "hard-negative mining rounds (train → rank → mine, N times) with a per-round tracer-metrics table + figure"

DESCRIPTION = """\
Run LensFlow's bootstrapping loop from one spec file: round 1 trains the base config, round
k ≥ 2 fine-tunes round k−1's model (train.start_from) with the hard negatives mined so far
mixed into every chunk (data.extra_negatives), and every round ranks the catalogue with
tracers and mines its top non-tracer cutouts. Writes OUT/round<k>/ (run, rank-mined,
hardneg.h5, round.json) and OUT/rounds.md, rounds.csv and rounds.png: ranking performance,
classification efficiency, fraction of tracers in the top 1 % / 10 %, mean relative tracer
rank per round (and per arm: 'control' = the same fine-tuning without mined negatives, with
control: true; and per catalogue: 'eval' = eval_catalogue, ranked but never mined).

A re-run skips finished rounds and, inside a round, finished runs, shards and mined sets.
Spec keys: out, config, set, fine_tune, catalogue, eval_catalogue, tracers, rounds, mine_top,
fraction, control, shards, seed, name (docs/ranking.md).

Examples:
  lenshpc rounds configs/rounds/tiny_hardneg.yaml --executor local
  lenshpc rounds ROUNDS.yaml --executor slurm --partition gpu
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="ROUNDS.yaml", help="rounds spec (see --help text above)")
    p.add_argument("--executor", choices=("inline", "local", "slurm"), default="local",
                   help="inline: this process; local: submitit jobs here; slurm: SLURM jobs (default: local)")
    add_hpc_flags(p.add_argument_group("SLURM resources of the training jobs (override the config's hpc section)"))


def run(args: argparse.Namespace) -> int:
    from lenshpc.analysis.ranking.rounds import load_rounds, run_rounds

    spec = load_rounds(args.spec)
    spec.set.update({f"hpc.{field}": value for field, value in hpc_changes(args).items()})
    rows = run_rounds(spec, args.executor)
    print(f"{len(rows)} row(s) → {spec.out / 'rounds.md'}, rounds.csv, rounds.png")
    print((spec.out / "rounds.md").read_text())
    return 0
