"""``lenshpc ensemble SPEC.yaml``: Nelder–Mead, committee and input-dependent ensembles + Table 5.2 report."""

from __future__ import annotations

import argparse
import os

from lenshpc.commands import add_hpc_flags, hpc_changes

HELP = "ensembles of finished runs (Nelder–Mead weights, seed committees, input-dependent) and their report"
DESCRIPTION = """\
Combine finished training runs into ensembles as described by an ensemble spec (see
docs/ensembles.md) and write one ensemble run directory per ensemble and seed,
OUT/<ensemble>/seed<k> (config.yaml, metrics.json, predictions.h5, ensemble.json, DONE), laid
out like a training run so `lenshpc reduce`, `status` and `infocontent` work on it. Then write
OUT/report.md/.csv/.tex in the thesis Table 5.2 layout (ensembles + their members, mean ± std
over the ensemble runs, std with ddof = 1) and Fβ-vs-threshold plots (Figs 5.15–5.18).

Methods:
  nelder_mead      weights minimising the validation MSE (Eq 3.22), scipy Nelder–Mead,
                   xatol = fatol = 1e-6, 200·M iterations, seeded random start; variant
                   'thesis' (unconstrained fit, softmax applied afterwards) or 'simplex'
                   (weights = softmax(v), fitted as applied)
  average          plain mean; 'committee: GROUP' = every seed of one sweep group, one run
  input_dependent  a dynamic ensembler network (Sec 3.6.2) trained on the members' outputs;
                   runs through --executor (debug = in this process)

Ensemble run k combines each member group's seed<k> run. Members are scored on the same
validation/test sets: their own predictions.h5 when they share seed and data, otherwise their
model.keras is re-scored on the common sets (cached in OUT/<ensemble>/seed<k>/members/).
Finished ensemble runs (DONE) are skipped unless --force. A run whose members are not all
finished is skipped and listed (exit code 2); the others still run.

examples:
  lenshpc ensemble lenshpc/resources/quickstart_ensembles.yaml --runs lenshpc-quickstart/runs
  lenshpc ensemble configs/ensembles/thesis_table52.yaml --dry-run
  lenshpc ensemble configs/ensembles/thesis_table52.yaml --only NM3 NM6 --seeds 0-4
  lenshpc ensemble configs/ensembles/thesis_table52.yaml --executor slurm --partition gpu
  lenshpc ensemble my.yaml --runs runs/thesis_table51 --out runs/my_ensembles --force
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="ensemble spec YAML (e.g. configs/ensembles/thesis_table52.yaml)")
    p.add_argument("--runs", default=None, metavar="ROOT",
                   help="directory holding the member groups (<ROOT>/<group>/seed<k>); default: the spec's runs:")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: the spec's out:)")
    p.add_argument("--seeds", default=None, help="ensemble runs, e.g. 0-9 or 0,3,5 (default: the spec's seeds:)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="only these ensembles of the spec")
    p.add_argument("--executor", choices=("debug", "local", "slurm"), default="debug",
                   help="where input-dependent ensembles train: debug = in this process (default), local = "
                        "background processes, slurm = job array (returns at once)")
    p.add_argument("--parallel", type=int, default=1, help="local executor: trainings at once (default 1)")
    p.add_argument("--force", action="store_true", help="recompute finished ensemble runs (cached member scores stay valid and are reused)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (members, states); compute nothing")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    add_hpc_flags(p.add_argument_group("SLURM resources of the input-dependent jobs (override the spec's hpc:)"))


def run(args: argparse.Namespace) -> int:
    from lenshpc.analysis.ensembles.ensemble import plan_ensemble_runs, run_spec
    from lenshpc.analysis.ensembles.spec import load_ensemble_spec

    spec = load_ensemble_spec(args.spec, runs=args.runs, out=args.out, seeds=args.seeds)
    if args.dry_run:
        print(_plan_text(spec, plan_ensemble_runs(spec, spec.select(args.only)), args.force))
        return 0
    outcome = run_spec(spec, only=args.only, executor=args.executor, force=args.force, parallel=args.parallel,
                       plots=not args.no_plots, show_progress=not os.environ.get("LENSHPC_NO_PROGRESS"),
                       hpc_overrides=hpc_changes(args))
    if not args.quiet:
        print(outcome.report.table)
        print()
    print(f"{len(outcome.computed)} ensemble run(s) computed, {len(outcome.done_before)} already done (skipped), "
          f"{len(outcome.submitted)} job(s) submitted, {len(outcome.skipped)} skipped, {len(outcome.failed)} failed")
    for rid, why in outcome.skipped:
        print(f"skipped {rid}: {why}")
    for rid, why in outcome.failed:
        print(f"FAILED  {rid}: {why}")
    print(f"report: {outcome.report.files['md']} (+ .csv, .tex)")
    if outcome.failed:
        return 1
    return 2 if any("still " not in why for _, why in outcome.skipped) else 0


def _plan_text(spec, runs, force: bool) -> str:
    lines = [f"ensemble spec {spec.path}: {len(runs)} ensemble run(s) → {spec.out}",
             f"members from {spec.runs}; seeds {','.join(map(str, spec.seeds))}", ""]
    for r in runs:
        e = r.entry
        what = e.method + (f" ({e.variant})" if e.method == "nelder_mead" else "")
        state = ("done" + (" → recompute (--force)" if force else " → skip") if r.done
                 else f"cannot run: {r.problem}" if r.problem else "to compute")
        lines.append(f"{r.id:<28} {what:<22} {state}")
        for m in r.members:
            lines.append(f"    {m.label:<24} {m.run_dir}")
        if e.method == "input_dependent" and not r.problem:
            from lenshpc.analysis.ensembles.ensemble import ide_config

            cfg = ide_config(r)
            lines.append(f"    dynamic ensembler: model {cfg.model.name}, {cfg.train.chunks} chunks of "
                         f"{cfg.data.chunk_size}, lr {cfg.train.learning_rate:g}, {cfg.train.optimizer}, "
                         f"selection {cfg.selection.metric}")
    return "\n".join(lines)
