"""Write the reduced table as Markdown, CSV and LaTeX (thesis Table 5.1 layout, extended).

Columns: accuracy, Fβ, precision, recall at the run's decision threshold (0.5 by default),
then AUROC, TPR0, TPR10, the number of finished runs and which seeds are missing or failed.
Values are ``mean ± std`` with std the sample std over seeds (see :mod:`lenshpc.report.stats`).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from lenshpc.report.collect import METRICS
from lenshpc.report.stats import STD_DDOF, GroupSummary
from lenshpc.utils import atomic_write_text

TITLES_MD = {"accuracy": "Accuracy", "fbeta": "Fβ", "precision": "Precision", "recall": "Recall",
             "auroc": "AUROC", "tpr0": "TPR0", "tpr10": "TPR10"}
TITLES_TEX = {"accuracy": "Accuracy", "fbeta": r"$F_\beta$-score", "precision": "Precision", "recall": "Recall",
              "auroc": "AUROC", "tpr0": r"TPR$_0$", "tpr10": r"TPR$_{10}$"}
STD_NOTE = f"std = sample standard deviation over seeds (ddof = {STD_DDOF})"


def fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def fmt_pm(mean: float, std: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {fmt(std, digits)}"


def seeds_text(seeds: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"`` (compact ranges)."""
    if not seeds:
        return ""
    seeds = sorted(set(seeds))
    parts, start, prev = [], seeds[0], seeds[0]
    for s in seeds[1:] + [None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ",".join(parts)


def gaps_text(g: GroupSummary) -> str:
    """Missing/failed/running seeds of a row, e.g. ``missing 3; failed 7``."""
    parts = []
    for word, seeds in (("missing", g.missing_seeds), ("failed", g.failed_seeds),
                        ("running", g.incomplete_seeds), ("corrupt", g.corrupt_seeds)):
        if seeds:
            parts.append(f"{word} {seeds_text(seeds)}")
    unknown = sum(r.seed is None for r in g.failed + g.incomplete + g.corrupt)
    if unknown:
        parts.append(f"{unknown} run(s) of unknown seed")
    return "; ".join(parts)


def best_rows(groups: list[GroupSummary]) -> dict[str, int]:
    """Index of the row with the highest mean per metric (bold in the tables); only with ≥ 2 rows."""
    best: dict[str, int] = {}
    if len(groups) < 2:
        return best
    for name in METRICS:
        means = [(g.mean.get(name, math.nan), i) for i, g in enumerate(groups)]
        means = [(m, i) for m, i in means if math.isfinite(m)]
        if len(means) >= 2:
            top = max(m for m, _ in means)
            winners = [i for m, i in means if round(m, 3) == round(top, 3)]
            if len(winners) == 1:  # a tie at the shown precision marks nothing
                best[name] = winners[0]
    return best


def markdown_table(groups: list[GroupSummary]) -> str:
    best = best_rows(groups)
    head = ["Model", *(TITLES_MD[m] for m in METRICS), "n", "missing / failed seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, g in enumerate(groups):
        cells = [g.label.replace("|", "\\|")]
        for name in METRICS:
            text = fmt_pm(g.mean[name], g.std[name])
            cells.append(f"**{text}**" if best.get(name) == i else text)
        cells += [str(g.n_runs), gaps_text(g) or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(groups: list[GroupSummary], keys: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", *keys, "n_runs", "seeds", "missing_seeds", "failed_seeds", "running_seeds",
                     "corrupt_seeds", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std", "n"))])
    for g in groups:
        row = [g.label, *(g.values.get(k, "") for k in keys), g.n_runs, seeds_text(g.seeds),
               seeds_text(g.missing_seeds), seeds_text(g.failed_seeds), seeds_text(g.incomplete_seeds),
               seeds_text(g.corrupt_seeds)]
        for name in METRICS:
            row += [_num(g.mean[name]), _num(g.std[name]), g.count[name]]
        writer.writerow(row)
    return buf.getvalue()


def _num(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def tex_table(groups: list[GroupSummary], caption: str) -> str:
    """A booktabs table; ``caption`` is LaTeX already (escape user text with :func:`tex_escape`)."""
    best = best_rows(groups)
    cols = "l" + "c" * len(METRICS) + "r"
    lines = [f"% generated by `lenshpc reduce`; mean $\\pm$ {STD_NOTE}; needs \\usepackage{{booktabs}}",
             r"\begin{table}[ht]", r"\centering", r"\small", f"\\begin{{tabular}}{{{cols}}}", r"\toprule",
             "Model & " + " & ".join(TITLES_TEX[m] for m in METRICS) + r" & $n$ \\", r"\midrule"]
    for i, g in enumerate(groups):
        cells = [tex_escape(g.label)]
        for name in METRICS:
            mean, std = g.mean[name], g.std[name]
            if not math.isfinite(mean):
                cells.append("--")
                continue
            body = f"{mean:.3f} \\pm {fmt(std)}" if math.isfinite(std) else f"{mean:.3f}"
            cells.append(f"$\\boldsymbol{{{body}}}$" if best.get(name) == i else f"${body}$")
        cells.append(str(g.n_runs))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{caption}}}", r"\end{table}", ""]
    return "\n".join(lines)


def write_tables(out: Path, md: str, csv_body: str, tex: str) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` and ``report.tex`` atomically under ``out``."""
    paths = {"md": out / "report.md", "csv": out / "report.csv", "tex": out / "report.tex"}
    atomic_write_text(paths["md"], md)
    atomic_write_text(paths["csv"], csv_body)
    atomic_write_text(paths["tex"], tex)
    return paths
