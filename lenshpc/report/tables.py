"""Write the reduced table as Markdown, CSV and LaTeX (thesis Table 5.1 layout, extended).

Columns: the table metrics of the runs' task with their titles and directions
(:class:`~lenshpc.report.collect.Vocabulary`, read from ``metrics.json["task"]``; lens: accuracy, Fβ,
precision, recall at the run's decision threshold, then AUROC, TPR0, TPR10), the number of finished
runs and which seeds are missing or failed.  A second table gives accuracy, Fβ, precision and recall
at the threshold t* tuned on each run's validation set (and t* itself) when the runs recorded it.  Values are ``mean ± std`` with std the
sample std over seeds (see :mod:`lenshpc.report.stats`); † marks groups distinguishable from the
column's best group (:mod:`lenshpc.report.significance`).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from pathlib import Path

from lenshpc.report import significance
from lenshpc.report.collect import TUNED_COLUMNS, Vocabulary, base_name
from lenshpc.report.stats import STD_DDOF, GroupSummary
from lenshpc.utils import atomic_write_text

STD_NOTE = f"std = sample standard deviation over seeds (ddof = {STD_DDOF})"
#: The lens vocabulary (runs without ``metrics.json["task"]``; the ensembles' reports).
LENS = Vocabulary.of([])
#: Columns the lens reports test for significance (every metric; the tuned threshold t* is a setting, not a score).
TESTED_COLUMNS = LENS.tested
TUNED_NOTE = ("t* = the threshold that maximises Fβ on each run's own validation set (exact over its scores), "
              "applied to its test set; the t* column is its mean ± std over seeds")


def title(column: str, vocab: Vocabulary, tex: bool = False) -> str:
    """Column title: the task's (``titles`` / ``titles_tex``), t* for the tuned threshold."""
    base = base_name(column)
    if base == "threshold":
        return r"$t^*$" if tex else "t*"
    text = vocab.titles.get(base, base)
    return vocab.titles_tex.get(base) or tex_escape(text) if tex else text


def has_tuned(groups: list[GroupSummary]) -> bool:
    """Whether any run of any group has the validation-tuned metrics (runs before they existed do not)."""
    return any(g.count.get(c, 0) for g in groups for c in TUNED_COLUMNS)


def fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def fmt_pm(mean: float, std: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {fmt(std, digits)}"


def seeds_text(seeds: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"`` (compact ranges)."""
    parts = []
    for _, run in itertools.groupby(enumerate(sorted(set(seeds))), key=lambda t: t[1] - t[0]):  # runs of +1 steps
        first, *rest = [s for _, s in run]
        parts.append(f"{first}-{rest[-1]}" if rest else str(first))
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


def best_rows(groups: list[GroupSummary], columns: tuple[str, ...], vocab: Vocabulary = LENS) -> dict[str, int]:
    """Index of the row with the best mean per metric (highest, or lowest where lower is better: bold in the
    tables); only with ≥ 2 rows."""
    best: dict[str, int] = {}
    if len(groups) < 2:
        return best
    for name in columns:
        if name not in vocab.tested:
            continue
        means = [(g.mean.get(name, math.nan), i) for i, g in enumerate(groups)]
        means = [(m, i) for m, i in means if math.isfinite(m)]
        if len(means) >= 2:
            top = (max if vocab.higher_is_better(name) else min)(m for m, _ in means)
            winners = [i for m, i in means if round(m, 3) == round(top, 3)]
            if len(winners) == 1:  # a tie at the shown precision marks nothing
                best[name] = winners[0]
    return best


def markdown_table(groups: list[GroupSummary], columns: tuple[str, ...], vocab: Vocabulary = LENS) -> str:
    """Rows ``mean ± std`` per column; bold = best mean, :data:`significance.MARK` = differs from the best."""
    best = best_rows(groups, columns, vocab)
    head = ["Model", *(title(m, vocab) for m in columns), "n", "missing / failed seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, g in enumerate(groups):
        cells = [g.label.replace("|", "\\|")]
        for name in columns:
            text = fmt_pm(g.mean.get(name, math.nan), g.std.get(name, math.nan))
            text = f"**{text}**" if best.get(name) == i else text
            cells.append(text + (f" {significance.MARK}" if g.differs.get(name) else ""))
        cells += [str(g.n_runs), gaps_text(g) or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_tables(groups: list[GroupSummary], threshold: str | None, vocab: Vocabulary = LENS) -> str:
    """The report body: the table at the fixed threshold (``threshold`` None: the runs have none), the t*
    table (when any run has it), the footnotes."""
    parts = [f"**At the fixed decision threshold t = {threshold}** (`selection.threshold`):", ""] if threshold else []
    parts += [markdown_table(groups, vocab.table, vocab), ""]
    columns = vocab.table
    if has_tuned(groups):
        columns = vocab.tested
        parts += [f"**At the validation-tuned threshold t\\*** ({TUNED_NOTE}):", "",
                  markdown_table(groups, TUNED_COLUMNS, vocab), ""]
    parts += [f"Bold: the best mean per column. {significance.footnote(groups, columns, vocab=vocab)}"]
    return "\n".join(parts)


def csv_text(groups: list[GroupSummary], keys: list[str], vocab: Vocabulary = LENS) -> str:
    """Every number at full precision; per tested column the p-value against the column's best group."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", *keys, "n_runs", "seeds", "missing_seeds", "failed_seeds", "running_seeds",
                     "corrupt_seeds", *(f"{m}_{s}" for m in vocab.columns for s in ("mean", "std", "n")),
                     *(f"{m}_p_vs_best" for m in vocab.tested), "significance_test"])
    test = (f"{significance.TEST_NAME} vs the column's best group, two-sided, alpha={significance.ALPHA:g}; "
            f"p < alpha: distinguishable; empty: best group or < {significance.MIN_SEEDS} seeds")
    for g in groups:
        row = [g.label, *(g.values.get(k, "") for k in keys), g.n_runs, seeds_text(g.seeds),
               seeds_text(g.missing_seeds), seeds_text(g.failed_seeds), seeds_text(g.incomplete_seeds),
               seeds_text(g.corrupt_seeds)]
        for name in vocab.columns:
            row += [_num(g.mean.get(name, math.nan)), _num(g.std.get(name, math.nan)), g.count.get(name, 0)]
        row += [_num(g.pvalue.get(name, math.nan)) for name in vocab.tested]
        writer.writerow([*row, test])
    return buf.getvalue()


def _num(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def tex_table(groups: list[GroupSummary], caption: str, columns: tuple[str, ...], vocab: Vocabulary = LENS) -> str:
    """A booktabs table; ``caption`` is LaTeX already (escape user text with :func:`tex_escape`)."""
    best = best_rows(groups, columns, vocab)
    cols = "l" + "c" * len(columns) + "r"
    lines = [f"% generated by `lenshpc reduce`; mean $\\pm$ {STD_NOTE}; needs \\usepackage{{booktabs}}",
             r"\begin{table}[ht]", r"\centering", r"\small", f"\\begin{{tabular}}{{{cols}}}", r"\toprule",
             "Model & " + " & ".join(title(m, vocab, tex=True) for m in columns) + r" & $n$ \\", r"\midrule"]
    for i, g in enumerate(groups):
        cells = [tex_escape(g.label)]
        for name in columns:
            mean, std = g.mean.get(name, math.nan), g.std.get(name, math.nan)
            if not math.isfinite(mean):
                cells.append("--")
                continue
            body = f"{mean:.3f} \\pm {fmt(std)}" if math.isfinite(std) else f"{mean:.3f}"
            body = f"\\boldsymbol{{{body}}}" if best.get(name) == i else body
            cells.append(f"${body}{significance.MARK_TEX if g.differs.get(name) else ''}$")
        cells.append(str(g.n_runs))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{caption}}}", r"\end{table}", ""]
    return "\n".join(lines)


def tex_tables(groups: list[GroupSummary], caption: str, vocab: Vocabulary = LENS) -> str:
    """The fixed-threshold table and (when any run has it) the t* table, captions ending in the test's footnote."""
    columns = vocab.tested if has_tuned(groups) else vocab.table
    note = tex_escape(significance.footnote(groups, columns, vocab=vocab)).replace(significance.MARK, f"${significance.MARK_TEX}$")
    note = note.replace("α", r"$\alpha$")
    tuned_note = tex_escape(TUNED_NOTE).replace("t*", "$t^*$").replace("Fβ", r"$F_\beta$").replace("±", r"$\pm$")
    out = tex_table(groups, f"{caption} Bold: best mean per column. {note}", vocab.table, vocab)
    if has_tuned(groups):
        out += "\n" + tex_table(groups, f"As above at the validation-tuned threshold $t^*$ "
                                         f"({tuned_note}). {note}", TUNED_COLUMNS, vocab)
    return out


def write_tables(out: Path, md: str, csv_body: str, tex: str) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` and ``report.tex`` atomically under ``out``."""
    paths = {}
    for ext, text in (("md", md), ("csv", csv_body), ("tex", tex)):
        paths[ext] = out / f"report.{ext}"
        atomic_write_text(paths[ext], text)
    return paths
