"""``lenshpc rank MODEL CATALOGUE.h5``: rank a survey catalogue of cutouts by lens score."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenshpc.commands import add_hpc_flags, add_shard_options, hpc_changes, shard_done

HELP = "score and rank a survey catalogue (sharded; local/SLURM), top-N montage, tracer rank curve and metrics"

DESCRIPTION = """\
Score every cutout of CATALOGUE.h5 with a trained model (a finished run directory) or an
ensemble run directory, rank them from most to least lens-like and write, in --out
(default MODEL/rank-<catalogue name>/):

  ranked.csv              id, score, rank (1 = most lens-like; ties share their mid-rank),
                          relative_rank = rank/N, tracer (0/1), row (catalogue row)
  top.png                 the top --top cutouts (as the network sees them) with rank, id, score
  tracer_rank_curve.png   with tracers: LensFlow's tracer rank curve (Fig. 8), linear and log axes
  rank_metrics.json       with tracers: ranking performance (area between the curve and the line
                          of no discrimination / the perfect curve's area = 2·AUROC − 1),
                          classification efficiency 2·mean(1 − relative rank) − 1, mean relative
                          tracer rank, tracers in the top 1 % / 10 %, N, tracers
  rank.json               provenance (model, catalogue, plan, tracer selection, top 10)

CATALOGUE.h5 is a labelled lenshpc dataset (images + meta/images/id); a survey without labels
is stacked with `lenshpc stack --images … [--catalogue CAT] --label-column none`. Cutouts are
normalised exactly as the model was trained (its run's data.normalisation, default min–max + √);
their shape must match the model's input.

Tracers are known lenses mixed into the catalogue (--tracers).

Big catalogues: the rows are split into --shards contiguous, batch-aligned ranges, each
scored by one task (reading ~4096 rows at a time) into OUT/shards/scores-KKKK-of-NNNN.h5,
written atomically; finished shards are skipped on a re-run, then a merge writes the outputs.
The result is byte-identical for any shard count and executor. Re-running with other
--tracers or --top only re-merges.

Examples:
  lenshpc rank runs/thesis/fbeta_soft/seed0 data/kids_dr4.h5 --top 64
  lenshpc rank runs/ensembles/nm6/seed0 data/kids_dr4.h5 --tracers is_known_lens
  lenshpc rank RUN data/kids_dr4.h5 --tracers known_lenses.txt --shards 32 --executor slurm --partition gpu
  lenshpc rank RUN data/kids_dr4.h5 --shards 8 --executor local          # 8 processes here
  lenshpc rank RUN data/kids_dr4.h5 --shards 16 --shard-index 3         # one shard (an array task), no merge
  lenshpc rank RUN data/kids_dr4.h5 --shards 16 --merge-only             # after the array: merge + outputs
  bash jobs/rank_array.sh RUN data/kids_dr4.h5 --tracers is_lens         # the same with plain sbatch
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_OR_ENSEMBLE", help="finished run directory or ensemble run directory")
    p.add_argument("catalogue", metavar="CATALOGUE.h5", help="labelled lenshpc dataset (labels optional)")
    p.add_argument("--out", metavar="DIR", help="output directory (default MODEL/rank-<catalogue name>)")
    p.add_argument("--tracers", metavar="SPEC",
                   help="meta column (truthy rows, e.g. is_lens), file of IDs (one per line), 'labels' (labels == 1) "
                        "or 'none' (default: labels == 1 if the catalogue has labels, else none)")
    p.add_argument("--top", type=int, default=25, metavar="N", help="cutouts in top.png (default 25; 0: none)")
    p.add_argument("--batch-size", type=int, default=256, metavar="B",
                   help="cutouts per network batch (default 256; shards and reads hold whole batches)")
    g = p.add_argument_group("sharding")
    g.add_argument("--executor", choices=("inline", "local", "slurm"), default="inline",
                   help="inline: this process, shard after shard; local: submitit processes here; "
                        "slurm: a submitit array, waited for (default: inline)")
    g.add_argument("--shards", type=int, default=1, metavar="K", help="number of shards (default 1)")
    add_shard_options(g, "score")
    h = p.add_argument_group("SLURM resources of the shard tasks (default: the model run's hpc section, "
                             "one task, at most one GPU)")
    add_hpc_flags(h, skip=("--nodes", "--tasks-per-node"))  # one scoring process per shard


def run(args: argparse.Namespace) -> int:
    from lenshpc.analysis.ranking.report import rank_catalogue

    result = rank_catalogue(args.model, args.catalogue, args.out, executor=args.executor, shards=args.shards,
                            shard_index=args.shard_index, merge_only=args.merge_only, top=args.top,
                            tracers=args.tracers, batch_size=args.batch_size, hpc=_hpc(args))
    done, reused = len(result["shards_computed"]), len(result["shards_reused"])
    if result["status"] == "shard":
        return shard_done(args, result["shards"], f"{'scored' if done else 'already done'} ({result['out']}/shards)")
    print(f"ranked {result['n']} cutouts of {args.catalogue} with {args.model}: {done} shard(s) scored, "
          f"{reused} reused")
    for name, path in result["outputs"].items():
        print(f"  {name}: {path}")
    for i, row in enumerate(result["top"][:5], 1):
        print(f"  #{i}: id {row['id']} score {row['score']:.4g}")
    m = result.get("metrics")
    if m:
        print(f"  tracers: {m['n_tracers']} ({result['tracers']['source']}); ranking performance "
              f"{m['ranking_performance']:.4f}, classification efficiency {m['classification_efficiency']:.4f}, "
              f"mean relative rank {m['mean_relative_tracer_rank']:.4f}, in top 1% {m['tracers_in_top_1pct']}, "
              f"top 10% {m['tracers_in_top_10pct']}")
    else:
        print(f"  no tracers ({result['tracers']['source']}): no tracer rank curve or metrics")
    return 0


def _hpc(args: argparse.Namespace):
    """The HPC flags given on the command line applied to the model run's hpc section (None: none given)."""
    from lenshpc.commands.sweep import hpc_from_args

    if not hpc_changes(args):
        return None
    from lenshpc.analysis.ensembles.scorer import run_configs
    from lenshpc.config import HpcConfig, load_config

    configs = run_configs(args.model) if Path(args.model).is_dir() else []
    base = load_config(configs[0]).hpc if configs else HpcConfig()
    return hpc_from_args(base, args)
