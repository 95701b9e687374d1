"""The reducer: collate many run directories into mean ± std tables and plots.

>>> result = reduce_runs("runs/thesis_table51")          # doctest: +SKIP
>>> print(result.table)                                   # doctest: +SKIP

Reads only the run-directory contract (docs/run-dir.md) plus an optional ``sweep.json``
(written by ``lenshpc sweep``: row names, order, expected seeds).  Grouping is by every
config key that varies between runs except the seed (override with ``group_by``).  Works on
partial sweeps: missing, failed, running and corrupt runs are listed, never fatal.  The std
is the sample std over seeds (ddof = 1, :data:`lenshpc.report.stats.STD_DDOF`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lenshpc.errors import ConfigError, UserError
from lenshpc.report.collect import (CORRUPT, FAILED, INCOMPLETE, OK, RunRecord, Vocabulary, attach_sweep,
                                    find_run_dirs, load_runs)
from lenshpc.report import provenance as code_provenance
from lenshpc.report import significance
from lenshpc.report.stats import STD_DDOF, GroupSummary, group_runs
from lenshpc.report.tables import STD_NOTE, csv_text, markdown_tables, tex_escape, tex_tables, write_tables

__all__ = ["STD_DDOF", "ReduceResult", "common_value", "gap_lines", "plot_lines", "reduce_runs"]


@dataclass
class ReduceResult:
    """What :func:`reduce_runs` produced."""

    groups: list[GroupSummary]
    keys: list[str]
    records: list[RunRecord]
    table: str  # the Markdown tables with their footnotes (also printed by the CLI)
    vocab: Vocabulary | None = None  # metric names, titles and directions of the runs' task(s)
    files: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Groups mixing lenshpc/TensorFlow versions (:mod:`lenshpc.report.provenance`); the CLI prints them on stderr.
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)


def load_sweep_json(root: Path) -> dict | None:
    """``root/sweep.json`` with its ``_path`` (None when absent or unreadable: a report never fails over it)."""
    from lenshpc.hpc.sweep import SWEEP_JSON, read_sweep_json

    try:
        data = read_sweep_json(root)
    except UserError:
        return None
    return {**data, "_path": str(root / SWEEP_JSON)} if data else None


def common_value(records: list[RunRecord], key: str) -> str:
    """``metrics[key]`` shared by the finished ``records``: its ``:g`` text, ``"varies"``, or ``"?"`` when none has it."""
    values = {(r.metrics or {}).get(key) for r in records if r.status == OK}
    values.discard(None)
    if not values:
        return "?"
    return f"{values.pop():g}" if len(values) == 1 else "varies"


def reduce_runs(root: str | Path, out: str | Path | None = None, group_by: list[str] | None = None,
                plots: bool = True, threads: int = 8) -> ReduceResult:
    """Collate every run under ``root`` and write ``report.{md,csv,tex}`` (+ ``plots/``) to ``out``.

    Parameters
    ----------
    root : path
        A sweep directory (or any tree of run directories).
    out : path, optional
        Where the report goes (default: ``root``).  Plots go to ``out/plots``.
    group_by : list of str, optional
        Flattened config keys to group by (default: all varied keys except the seed).
    plots : bool
        Draw the figures (the tables alone take a fraction of the time).

    Raises
    ------
    UserError
        When ``root`` is not a directory or holds no run directory at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory; pass a sweep output directory (e.g. runs/thesis_table51)")
    out = Path(out) if out is not None else root
    sweep = load_sweep_json(root)
    run_dirs = find_run_dirs(root, exclude=(out / "plots",))
    if not run_dirs and not sweep:
        raise UserError(f"{root}: no run directories found (a run directory holds metrics.json, config.yaml, "
                        "DONE or FAILED); is this the sweep's --out directory?")
    records = load_runs(run_dirs, threads=threads)
    attach_sweep(records, sweep)
    vocab = Vocabulary.of(records)
    groups, keys = group_runs(records, group_by=group_by, sweep=sweep, columns=vocab.columns)
    significance.annotate(groups, vocab.tested, vocab=vocab)
    problems = [f"{r.path}: {r.problem}" for r in records if r.status == CORRUPT]

    threshold = common_value(records, "threshold")
    table = markdown_tables(groups, threshold if threshold != "?" else None, vocab)
    table += "".join(f"\n\n{line}" if i == 0 else f"\n{line}"
                     for i, line in enumerate(_task_sections(groups, out, problems)))
    plot_paths: list[Path] = []
    if plots:
        from lenshpc.report import plots as figures

        plot_dir = out / "plots"
        beta = common_value(records, "beta")
        plot_paths += figures.plot_fbeta_curves(groups, plot_dir, beta=None if beta in ("?", "varies") else float(beta))
        hists, hist_problems = figures.score_histograms(groups)
        problems += hist_problems
        plot_paths += figures.plot_histograms(hists, plot_dir)
        plot_paths += figures.plot_roc_curves(groups, plot_dir)
        if len(groups) > figures.MAX_HIST_PANELS:
            problems.append(f"prediction histograms show the first {figures.MAX_HIST_PANELS} of {len(groups)} groups")

    result = ReduceResult(groups=groups, keys=keys, records=records, table=table, plots=plot_paths, problems=problems,
                          warnings=code_provenance.mixing_warnings(groups), vocab=vocab)
    md = _markdown_report(root, out, result)
    at = f" at decision threshold {threshold}" if threshold != "?" else ""
    caption = (f"Mean $\\pm$ std over seeds{at} ({tex_escape(STD_NOTE)}). "
               f"Grouped by {tex_escape(', '.join(keys)) or 'nothing (one group)'}.")
    result.files = write_tables(out, md, csv_text(groups, keys, vocab), tex_tables(groups, caption, vocab))
    return result


def _task_sections(groups: list[GroupSummary], out: Path, problems: list[str]) -> list[str]:
    """Markdown lines of each task's own report parts (:meth:`lenshpc.tasks.base.Task.report_sections`)."""
    from lenshpc import tasks

    by_task: dict[str, dict[str, list[RunRecord]]] = {}
    for g in groups:
        for run in g.runs:
            name = run.config.get("task.name") or tasks.DEFAULT  # as configured: a plug-in's import path
            by_task.setdefault(name, {}).setdefault(g.label, []).append(run)
    lines: list[str] = []
    for name, runs in by_task.items():
        try:
            lines += tasks.get(name).report_sections(runs, out)
        except ConfigError as exc:  # a plug-in task not importable here: its tables are still reported
            problems.append(f"task {name}: no task-specific report sections ({exc})")
    return lines


def gap_lines(groups: list[GroupSummary]) -> list[str]:
    """One line per missing, failed, unfinished or corrupt run: row, real seed, the error and its log."""
    lines = []
    for g in groups:
        if g.missing_seeds:
            lines.append(f"**{g.label}**: seeds {', '.join(map(str, g.missing_seeds))} missing (never started)")
        for rec in g.failed:
            lines.append(f"**{g.label}** seed {_seed(rec)}: failed: {rec.problem} ({_log_note(rec)})")
        for rec in g.incomplete:
            lines.append(f"**{g.label}** seed {_seed(rec)}: not finished (no DONE) in `{rec.path}` ({_log_note(rec)})")
        for rec in g.corrupt:
            lines.append(f"**{g.label}** seed {_seed(rec)}: corrupt: {rec.problem}")
    return lines


def _seed(rec: RunRecord) -> str:
    return str(rec.seed) if rec.seed is not None else f"unknown (`{rec.path.name}`)"


def _log_note(rec: RunRecord) -> str:
    if rec.log is not None:
        return f"log: `{rec.log}`"
    return (f"no log: the run stopped before writing `{rec.path / 'train.log'}` and no job log was recorded; "
            "the error above is the whole message (FAILED)" if rec.status == FAILED
            else f"no log yet: `{rec.path / 'train.log'}` does not exist")


def plot_lines(plots: list[Path], out: Path, folder: bool = False) -> list[str]:
    """The report's "Plots" section: one Markdown image per PNG of ``plots``, linked relative to ``out``
    (``folder``: the alt text names the PNG's folder too); no lines without plots."""
    if not plots:
        return []
    lines = ["## Plots", ""]
    for p in plots:
        if p.suffix == ".png":
            rel = p.relative_to(out) if p.is_relative_to(out) else p
            lines.append(f"![{rel.parent.name}/{p.stem}]({rel})" if folder else f"![{p.stem}]({rel})")
    return [*lines, ""]


def _markdown_report(root: Path, out: Path, r: ReduceResult) -> str:
    missing = sum(len(g.missing_seeds) for g in r.groups)
    beta = common_value(r.records, "beta")
    beta_note = f" (β = {beta})" if beta != "?" else ""
    lines = [f"# Report: {root}", "",
             f"Runs: {r.count(OK)} finished, {r.count(FAILED)} failed, {r.count(INCOMPLETE)} running or unfinished, "
             f"{r.count(CORRUPT)} corrupt, {missing} missing.",
             f"Metrics on the test set{beta_note}; values are mean ± std over seeds, {STD_NOTE}.",
             f"Grouped by: {', '.join(f'`{k}`' for k in r.keys) or 'nothing (one group)'}.", ""]
    if r.warnings:
        lines += ["## Warnings", "", *(f"- **warning**: {w}" for w in r.warnings), ""]
    lines += [r.table, ""]
    gaps = gap_lines(r.groups)
    if gaps:
        lines += ["## Missing, failed and unfinished runs", "", *(f"- {line}" for line in gaps), ""]
    if r.problems:
        lines += ["## Problems", "", *(f"- {p}" for p in r.problems), ""]
    lines += plot_lines(r.plots, out)
    lines += code_provenance.markdown_lines(r.groups)
    lines += ["Files: `report.csv` (all numbers, full precision, p-values against each column's best group), "
              "`report.tex` (booktabs tables).", ""]
    return "\n".join(lines)
