"""``lenshpc reduce DIR``: collate a sweep's run directories into mean ± std reports and plots."""

from __future__ import annotations

import argparse
import sys

HELP = "mean ± std report (report.md/.csv/.tex) and plots from a directory of runs"
DESCRIPTION = """\
Collate every run directory under DIR (recursively) into a Table-5.1-style report.

Runs are grouped by every config key that differs between them, except the seed (or by
--group-by). For each group: mean ± std over seeds of accuracy, Fβ, precision and recall at
the decision threshold (0.5 by default), AUROC, TPR0 and TPR10, the number of finished runs
and which seeds are missing, failed or still running. std is the SAMPLE standard deviation
over seeds (ddof = 1). A second table repeats accuracy, Fβ, precision and recall at t*, the
threshold that maximises Fβ on each run's validation set (runs that recorded it).
† marks groups distinguishable from a column's best group (Welch's t-test over seeds,
two-sided, α = 0.05). A "Provenance" section lists the lenshpc version/commit and TensorFlow
version behind each group; a group mixing them is warned about (report and stderr).

Writes OUT/report.md, OUT/report.csv, OUT/report.tex and OUT/plots/{fbeta_curves,
prediction_histograms,roc_curves}.{png,pdf}. A partial sweep is fine; a corrupt metrics.json
is reported, never fatal. With a sweep.json in DIR (written by `lenshpc sweep`) rows are named
and ordered like the sweep file and never-started runs are listed as missing.

examples:
  lenshpc reduce runs/thesis_table51
  lenshpc reduce runs/thesis_table51 --out reports/t51 --group-by loss.name,selection.metric
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="directory holding run directories (a sweep's --out)")
    p.add_argument("--out", default=None, help="where to write the report (default: DIR)")
    p.add_argument("--group-by", default=None, metavar="KEY,…",
                   help="comma-separated flattened config keys to group by (default: all varied keys but the seed)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--quiet", action="store_true", help="do not print the table")


def run(args: argparse.Namespace) -> int:
    from lenshpc.report import gap_lines, reduce_runs

    group_by = [k.strip() for k in args.group_by.split(",") if k.strip()] if args.group_by else None
    result = reduce_runs(args.dir, out=args.out, group_by=group_by, plots=not args.no_plots)
    for warning in result.warnings:  # on stderr even with --quiet: these numbers mix code versions
        print(f"lenshpc reduce: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(result.table)
        print()
        missing = sum(len(g.missing_seeds) for g in result.groups)
        print(f"{result.count('ok')} finished, {result.count('failed')} failed, "
              f"{result.count('incomplete')} unfinished, {result.count('corrupt')} corrupt, {missing} missing runs; "
              "std = sample std over seeds (ddof = 1)")
        for line in gap_lines(result.groups):
            print("  " + line.replace("**", "").replace("`", ""))
        for problem in result.problems:
            print(f"problem: {problem}")
        print(f"report: {result.files['md']} (+ .csv, .tex)")
        if result.plots:
            print(f"plots:  {result.plots[0].parent}/ ({', '.join(sorted({p.stem for p in result.plots}))})")
    return 0
