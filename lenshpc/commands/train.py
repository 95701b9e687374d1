"""``lenshpc train CONFIG``: train one model and write its run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenshpc.commands import add_set, thresholds_text
from lenshpc.errors import UserError

HELP = "train one lens finder (chunk loop, model selection, early stopping, resumable checkpoints)"

DESCRIPTION = """\
Train one CNN as configured and write a run directory (docs/run-dir.md):
config.yaml, train.log, history.csv, checkpoint/, model.keras, predictions.h5, metrics.json, DONE.

A run directory that holds a checkpoint is resumed (the result equals an uninterrupted run);
one marked DONE is skipped unless --force.
SIGTERM or SIGUSR1 (what SLURM sends before a preemption or the time limit) finish the current
chunk, write a checkpoint and exit with code 3 so the job script can requeue.

examples:
  lenshpc train configs/tiny.yaml --set data.path=data/tiny.h5
  lenshpc train configs/thesis/fbeta_soft.yaml --seed 3
  srun -n 4 lenshpc train configs/thesis/bce.yaml --seed 0 --distributed horovod
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (e.g. configs/thesis/bce.yaml); keys in docs and configs/base.yaml")
    add_set(p, "override one config key, e.g. --set train.chunks=100 (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (overrides the config's 'seed')")
    p.add_argument("--chunks", type=int, default=None, metavar="N", help="number of chunks (train.chunks)")
    p.add_argument("--run-dir", default=None, metavar="DIR", help="output directory (default runs/<name>/seed<seed>)")
    p.add_argument("--runs-root", default=None, metavar="ROOT",
                   help="root of the default run directory: ROOT/<name>/seed<seed> (default runs)")
    p.add_argument("--print-run-dir", action="store_true",
                   help="print the run directory this command would use (name and seed as resolved from the config, "
                        "--set and --seed) and exit without training; job scripts ask this instead of parsing YAML")
    p.add_argument("--resume", action="store_true",
                   help="require a checkpoint in the run dir and continue from it (without this flag a checkpoint "
                        "is still resumed when present)")
    p.add_argument("--force", action="store_true", help="start over: delete the run dir's checkpoint and DONE marker")
    p.add_argument("--distributed", choices=("auto", "horovod", "none"), default=None,
                   help="data-parallel backend (default: the config's distributed.backend, 'auto' = Horovod when "
                        "launched with several ranks)")


def run(args: argparse.Namespace) -> int:
    from lenshpc import tasks
    from lenshpc.config import load_config
    from lenshpc.train import RunDir, default_run_dir, run_training
    from lenshpc.train import checkpoint as ckpt

    flags = {"seed": args.seed, "train.chunks": args.chunks, "distributed.backend": args.distributed}
    overrides = [*args.overrides, *(f"{k}={v}" for k, v in flags.items() if v is not None)]
    cfg = load_config(args.config, overrides=overrides)
    run_dir = args.run_dir or Path(args.runs_root or "runs") / default_run_dir(cfg).relative_to("runs")
    if args.print_run_dir:
        print(run_dir)
        return 0
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: --force starts over")
    if args.resume and ckpt.find(RunDir(run_dir).checkpoint) is None and not RunDir(run_dir).is_done():
        raise UserError(f"--resume: {run_dir} holds no checkpoint; drop --resume to start the run")
    metrics = run_training(cfg, run_dir, resume=not args.force, force=args.force)
    vocab = tasks.recorded_vocabulary(metrics)
    shown = ", ".join(f"{m} {'–' if metrics.get(m) is None else round(metrics[m], 4)}" for m in vocab["table"])
    print(f"{run_dir}: test {shown}; chunks {metrics.get('chunks_trained')}, best chunk "
          f"{metrics.get('selection', {}).get('best_chunk')}" + (f"; {thresholds_text(metrics)}"
                                                               if "threshold" in metrics else ""))
    return 0
