"""Which groups of a report are statistically distinguishable from the best group of a column.

Test
----
For every metric column, the **best group** is the one with the highest mean over its seeds
(the lowest for a metric the task marks lower-is-better: ``metrics.json["task"]["higher_is_better"]``).  Each other group is compared with it by
**Welch's two-sided t-test** over the per-seed values (``scipy.stats.ttest_ind(equal_var=False)``)
and marked (:data:`MARK`) when p < :data:`ALPHA` = 0.05.

Why Welch and not a bootstrap: a report row has typically 3–10 seeds.  A bootstrap of the
difference of means over so few values resamples a handful of distinct numbers, its
percentile interval is too narrow (under-covers) and is itself random unless seeded; Welch's
test is exact under normality, robust to unequal spreads between losses (the thesis's stds
differ by 3× between rows) and deterministic, so the same runs always give the same marks.
It is a per-column, per-pair test with no correction for multiple comparisons: a mark says
"this difference is unlikely to be seed noise alone", not a ranking of all rows.

Groups with fewer than :data:`MIN_SEEDS` finite values get no mark (a t-test needs a variance);
when the best group itself has fewer, nothing in that column is marked.  Two groups whose
values are all identical give no p-value (no mark); two constant but different groups have p = 0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from lenshpc.report.stats import GroupSummary, metric_matrix

#: Significance level of the test.
ALPHA = 0.05
#: Fewest finite per-seed values a group needs to be tested.
MIN_SEEDS = 2
#: Marker of a group distinguishable from the column's best group.
MARK = "†"
MARK_TEX = r"^{\dagger}"
TEST_NAME = "Welch's t-test"
TEST_CALL = "scipy.stats.ttest_ind(equal_var=False)"


@dataclass
class ColumnTest:
    """The comparisons of one column: best group index, p-values and marks per group index."""

    best: int | None
    pvalue: dict[int, float] = field(default_factory=dict)
    differs: dict[int, bool] = field(default_factory=dict)
    untested: list[int] = field(default_factory=list)  # groups with < MIN_SEEDS values (best excluded)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test of equal means; NaN when both samples are constant and equal."""
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():  # "catastrophic cancellation" for (nearly) constant samples: p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False).pvalue)


def compare_to_best(samples: list[np.ndarray], alpha: float = ALPHA, higher: bool = True) -> ColumnTest:
    """Compare every sample (one per group: its finite per-seed values) with the highest-mean one
    (lowest-mean when not ``higher``)."""
    means = [float(np.mean(s)) if len(s) else math.nan for s in samples]
    finite = [i for i, m in enumerate(means) if math.isfinite(m)]
    if not finite:
        return ColumnTest(best=None)
    best = (max if higher else min)(finite, key=lambda i: means[i])
    out = ColumnTest(best=best)
    for i in finite:
        if i == best:
            continue
        if len(samples[i]) < MIN_SEEDS or len(samples[best]) < MIN_SEEDS:
            out.untested.append(i)
            continue
        p = welch_p(samples[best], samples[i])
        if math.isfinite(p):
            out.pvalue[i] = p
            out.differs[i] = p < alpha
        else:
            out.untested.append(i)
    return out


def annotate(groups: list[GroupSummary], columns: tuple[str, ...], alpha: float = ALPHA,
             vocab=None) -> dict[str, ColumnTest]:
    """Fill ``g.pvalue``/``g.differs`` of every group for every column; returns the tests by column.

    ``vocab`` (:class:`lenshpc.report.collect.Vocabulary`) gives each column's direction (default: higher is better).
    """
    tests: dict[str, ColumnTest] = {}
    if len(groups) < 2:
        return tests
    matrices = [metric_matrix(g.runs, columns) for g in groups]
    for j, name in enumerate(columns):
        samples = [m[:, j][np.isfinite(m[:, j])] for m in matrices]
        test = compare_to_best(samples, alpha, higher=vocab is None or vocab.higher_is_better(name))
        tests[name] = test
        for i, g in enumerate(groups):
            if i in test.pvalue:
                g.pvalue[name], g.differs[name] = test.pvalue[i], test.differs[i]
    return tests


def untested_groups(groups: list[GroupSummary], columns: tuple[str, ...]) -> list[str]:
    """Labels of groups with finished runs but fewer than :data:`MIN_SEEDS` of them in some column."""
    return [g.label for g in groups
            if any(0 < g.count.get(c, 0) < MIN_SEEDS for c in columns)]


def footnote(groups: list[GroupSummary], columns: tuple[str, ...], alpha: float = ALPHA, vocab=None) -> str:
    """One plain-text sentence: the test, α, and which groups could not be tested."""
    lower = [c for c in columns if vocab is not None and not vocab.higher_is_better(c)]
    best = "highest mean" + (f"; lowest for {', '.join(lower)}" if lower else "")
    text = (f"{MARK} = distinguishable from the column's best group ({best}): {TEST_NAME} over seeds, "
            f"two-sided, α = {alpha:g} ({TEST_CALL}); no mark = not distinguishable or not tested.")
    few = untested_groups(groups, columns)
    if few:
        text += f" Not tested (fewer than {MIN_SEEDS} seeds): {', '.join(few)}."
    return text


__all__ = ["ALPHA", "MARK", "MIN_SEEDS", "TEST_NAME", "ColumnTest", "annotate", "compare_to_best", "footnote",
           "untested_groups", "welch_p"]
