"""The ensemble report: thesis Table 5.2 layout and Figs 5.15–5.18, built on :mod:`lenshpc.report`.

Rows are the spec's ensembles (mean ± std over the ensemble runs, std with ddof = 1) followed by
the member groups' own rows over the same seeds, for comparison; columns Accuracy, Fβ, Precision,
Recall at the decision threshold, then AUROC, TPR0, TPR10; a second table at each run's
validation-tuned threshold t* (:func:`lenshpc.metrics.tuned_summary`); † marks rows distinguishable
from a column's best row (:mod:`lenshpc.report.significance`).  Writes ``OUT/report.{md,csv,tex}``,
``OUT/plots/fbeta_curves.*`` (all ensembles), ``OUT/plots/<ensemble>/fbeta_curves.*`` (one
ensemble with its std band, recall and precision: Figs 5.15–5.18), ``OUT/plots/members/…``,
ROC curves and prediction histograms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lenshpc.analysis.ensembles.members import ENSEMBLE_JSON
from lenshpc.analysis.ensembles.spec import EnsembleEntry, EnsembleSpec
from lenshpc.hpc.spec import slug
from lenshpc.report.collect import CORRUPT, FAILED, INCOMPLETE, OK, RunRecord, load_run
from lenshpc.report.stats import GroupSummary, summarise_group
from lenshpc.report import common_value, plot_lines, provenance as code_provenance
from lenshpc.report import significance
from lenshpc.report.tables import (STD_NOTE, TESTED_COLUMNS, csv_text, gaps_text, markdown_tables, tex_escape,
                                   tex_tables, write_tables)
from lenshpc.train.rundir import RunDir
from lenshpc.utils import read_json_object

#: Extra columns of report.csv (the row's description).
CSV_KEYS = ["kind", "method", "variant", "members", "weights_mean", "weights_std"]


@dataclass
class EnsembleReport:
    groups: list[GroupSummary]
    table: str
    files: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    weights: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = field(default_factory=dict)


def _group(label: str, values: dict, dirs: dict[int, Path]) -> GroupSummary:
    """Summarise the run directories ``{seed: dir}`` of one row (absent dirs are missing seeds)."""
    g = GroupSummary(label=label, values=values)
    for seed, path in sorted(dirs.items()):
        if not path.is_dir():
            g.missing_seeds.append(seed)
            continue
        rec: RunRecord = load_run(path)
        rec.seed = seed if rec.seed is None else rec.seed
        {OK: g.runs, FAILED: g.failed, INCOMPLETE: g.incomplete, CORRUPT: g.corrupt}[rec.status].append(rec)
    g.seeds = g._seeds(g.runs)
    summarise_group(g)
    return g


def _weights(g: GroupSummary) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Member names and mean / std (ddof 1) of the weights over the row's finished runs."""
    rows, names = [], None
    for rec in g.runs:
        info = read_json_object(rec.path / ENSEMBLE_JSON)
        w = info.get("weights")
        if isinstance(w, list) and w:
            rows.append(np.asarray(w, dtype=float))
            names = names or info.get("member_names")
    if not rows or any(r.shape != rows[0].shape for r in rows):
        return None
    stack = np.vstack(rows)
    std = stack.std(axis=0, ddof=1) if len(rows) > 1 else np.full(stack.shape[1], np.nan)
    return list(names or [str(i) for i in range(stack.shape[1])]), stack.mean(axis=0), std


def member_groups(spec: EnsembleSpec, entries: list[EnsembleEntry]) -> list[str]:
    """Member groups used by the entries (first appearance order) that exist under ``spec.runs``."""
    if spec.runs is None:
        return []
    names: list[str] = []
    for e in entries:
        for m in e.member_entries:
            if m not in names and (spec.runs / m).is_dir() and not RunDir(spec.runs / m).is_done():
                names.append(m)
    return names


def build_groups(spec: EnsembleSpec) -> tuple[list[GroupSummary], list[GroupSummary], dict]:
    """Ensemble rows, member rows and the weight summaries."""
    rows, weights = [], {}
    for e in spec.ensembles:
        seeds = spec.seeds[:1] if e.is_committee else spec.seeds
        g = _group(e.label or e.name, {"kind": "committee" if e.is_committee else "ensemble", "method": e.method,
                                       "variant": e.variant if e.method == "nelder_mead" else "",
                                       "members": "+".join(e.member_entries)},
                   {k: spec.out / e.name / f"seed{k}" for k in seeds})
        w = _weights(g)
        if w is not None:
            weights[g.label] = w
            g.values["weights_mean"] = " ".join(f"{v:.4f}" for v in w[1])
            g.values["weights_std"] = " ".join(f"{v:.4f}" for v in w[2])
        rows.append(g)
    members = []
    if spec.members_in_report:
        for name in member_groups(spec, spec.ensembles):
            members.append(_group(f"{name} (member)", {"kind": "member", "members": name},
                                  {k: spec.runs / name / f"seed{k}" for k in spec.seeds}))
    return rows, members, weights


def write_report(spec: EnsembleSpec, *, plots: bool = True) -> EnsembleReport:
    """Write ``report.{md,csv,tex}`` and the plots under ``spec.out``; returns what was written."""
    ens, members, weights = build_groups(spec)
    groups = ens + members
    significance.annotate(groups, TESTED_COLUMNS)
    threshold = _common(groups, "threshold")
    report = EnsembleReport(groups=groups, table=markdown_tables(groups, threshold), weights=weights)
    out = spec.out
    problems: list[str] = []
    if plots:
        report.plots, problems = _plots(ens, members, out / "plots")
    md = _markdown(spec, report, threshold, problems)
    caption = (f"Ensembles (rows 1--{len(ens)}) and their members: mean $\\pm$ std over the ensemble runs at decision "
               f"threshold {threshold} ({tex_escape(STD_NOTE)}).")
    report.files = write_tables(out, md, csv_text(groups, CSV_KEYS), tex_tables(groups, caption))
    return report


def _common(groups: list[GroupSummary], key: str) -> str:
    return common_value([r for g in groups for r in g.runs], key)


def _plots(ens: list[GroupSummary], members: list[GroupSummary], plot_dir: Path) -> tuple[list[Path], list[str]]:
    from lenshpc.report import plots as figures

    beta = _common(ens + members, "beta")
    beta_value = float(beta) if beta not in ("?", "varies") else None
    paths = figures.plot_fbeta_curves(ens, plot_dir, beta=beta_value)
    for g in ens:  # Figs 5.15–5.18: one ensemble, its std band, recall and precision
        paths += figures.plot_fbeta_curves([g], plot_dir / slug(g.label), beta=beta_value)
    if members:
        paths += figures.plot_fbeta_curves(members, plot_dir / "members", beta=beta_value)
    paths += figures.plot_roc_curves(ens + members, plot_dir)
    hists, problems = figures.score_histograms(ens + members)
    paths += figures.plot_histograms(hists, plot_dir)
    return paths, problems


def _markdown(spec: EnsembleSpec, r: EnsembleReport, threshold: str, problems: list[str]) -> str:
    beta = _common(r.groups, "beta")
    lines = [f"# Ensemble report: {spec.name}", "",
             f"Spec: `{spec.path}`; ensemble runs in `{spec.out}`; members from `{spec.runs}`; seeds "
             f"{', '.join(map(str, spec.seeds))}.",
             f"Test-set metrics (β = {beta}); mean ± std over the ensemble runs "
             f"(a committee is one run), {STD_NOTE}. Member rows: the members' own runs over the same seeds.", ""]
    warnings = code_provenance.mixing_warnings(r.groups)
    if warnings:
        lines += ["## Warnings", "", *(f"- **warning**: {w}" for w in warnings), ""]
    lines += [r.table, ""]
    if r.weights:
        lines += ["## Weights (mean ± std over the ensemble runs)", ""]
        for label, (names, mean, std) in r.weights.items():
            parts = [f"{n} {m:.3f}" + (f" ± {s:.3f}" if math.isfinite(s) else "") for n, m, s in zip(names, mean, std)]
            lines.append(f"- **{label}**: " + ", ".join(parts))
        lines.append("")
    gaps = [g for g in r.groups if gaps_text(g)]
    if gaps:
        lines += ["## Missing, failed and unfinished runs", ""]
        for g in gaps:
            lines.append(f"- **{g.label}**: {gaps_text(g)}")
            for rec in g.failed + g.corrupt:
                lines.append(f"  - seed {rec.seed}: {rec.problem} (`{rec.path}`)")
        lines.append("")
    if problems:
        lines += ["## Problems", "", *(f"- {p}" for p in problems), ""]
    lines += plot_lines(r.plots, spec.out, folder=True)
    lines += code_provenance.markdown_lines(r.groups)
    lines += ["Files: `report.csv` (all numbers, full precision, mean weights), `report.tex` (booktabs table). "
              "Each ensemble run directory holds `ensemble.json` (members, weights, optimiser result).", ""]
    return "\n".join(lines)


__all__ = ["CSV_KEYS", "EnsembleReport", "build_groups", "member_groups", "write_report"]
