"""Ranking survey catalogues: mid-ranks, tracer rank curves and LensFlow's ranking metrics (seed 004, Fig. 8).

A lens finder applied to a survey orders a catalogue so that people inspect the most lens-like cutouts first;
*tracers* (known lenses mixed into the catalogue) judge the order.  The exact definitions — mid-ranks for ties,
the tracer rank curve ``F(x) = (1/n) · Σ_i clip(N·x − R_i + 1, 0, 1)``, the ranking performance
``RP = (N + 1 − 2·mean(R)) / (N − n)`` (= 2·AUROC − 1) and its published ``lensflow`` variant, the
classification efficiency ``CE = 1 − 2·mean(r)`` — are in ``docs/ranking.md`` ("Definitions").
"""

from __future__ import annotations

import numpy as np

from lenshpc.errors import DataError

#: Fractions of the ranked catalogue for the "tracers in the top p" figures of rank_metrics.json.
TOP_FRACTIONS = (0.01, 0.1)


# ---------------------------------------------------------------------- ranks
def ranks(scores: np.ndarray) -> np.ndarray:
    """Mid-ranks of ``scores`` in decreasing order (1 = most lens-like).

    Parameters
    ----------
    scores : array_like, shape (N,)
        Finite scores (higher = more lens-like).

    Returns
    -------
    ndarray, shape (N,), float64
        Ranks ``1 … N``; tied scores share the mean of the positions they occupy
        (a multiple of ½).

    Raises
    ------
    DataError
        When a score is NaN or infinite (a broken model or input).
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(scores)
    if bad.any():
        raise DataError(f"{int(bad.sum())} of {len(scores)} scores are NaN/Inf (first at row {int(np.argmax(bad))}); "
                        "the model or its input is broken")
    return rankdata(-scores, method="average")


def relative_ranks(scores: np.ndarray) -> np.ndarray:
    """Relative ranks ``rank / N`` of ``scores`` (LensFlow): in ``[1/N, 1]``, small = lens-like.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Scores of the whole catalogue (tracers included).

    Returns
    -------
    ndarray, shape (N,), float64
        :func:`ranks` divided by ``N`` (ties: mid-ranks).
    """
    r = ranks(scores)
    return r / max(len(r), 1)


def ranking_order(scores: np.ndarray) -> np.ndarray:
    """Row indices from the most to the least lens-like; equal scores keep catalogue order.

    This is the row order of ``ranked.csv``.  The tie-break only orders rows on the page:
    tied rows share one mid-rank whatever their order.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.lexsort((np.arange(len(scores)), -scores))


def _tracer_ranks(relative: np.ndarray, n_total: int | None, need_total: bool) -> tuple[np.ndarray, int]:
    r = np.asarray(relative, dtype=np.float64).reshape(-1)
    if r.size == 0:
        raise DataError("no tracers: the ranking metrics need at least one tracer (known lens) in the catalogue")
    if not np.isfinite(r).all() or r.min() <= 0 or r.max() > 1:
        raise DataError("relative ranks must lie in (0, 1] (rank / N with rank 1 = best)")
    if n_total is None:
        if need_total:
            raise ValueError("n_total (the catalogue size N) is needed")
        return r, 0
    n_total = int(n_total)
    if n_total <= r.size:
        raise DataError(f"{r.size} tracers in a catalogue of {n_total}: ranking needs rows that are not tracers")
    if r.min() < 1 / n_total - 1e-12:
        raise DataError(f"relative rank {r.min():.3g} is below 1/N = {1 / n_total:.3g}: wrong n_total?")
    return r, n_total


# ---------------------------------------------------------------------- metrics
def classification_efficiency(relative_tracer_ranks: np.ndarray) -> float:
    """LensFlow's classification efficiency ``2·mean(1 − r) − 1`` of the tracers' relative ranks.

    Parameters
    ----------
    relative_tracer_ranks : array_like, shape (n,)
        Relative ranks ``rank / N`` of the tracers (:func:`relative_ranks`).

    Returns
    -------
    float
        ≈ 1 when the tracers are ranked first, ≈ 0 for a random order, ≈ −1 when they are
        ranked last; exactly ``1 − (n + 1)/N`` and ``−1 + (n − 1)/N`` at the extremes.
    """
    r, _ = _tracer_ranks(relative_tracer_ranks, None, need_total=False)
    return float(2.0 * np.mean(1.0 - r) - 1.0)


def tracer_rank_curve(relative_tracer_ranks: np.ndarray, n_total: int) -> tuple[np.ndarray, np.ndarray]:
    """The tracer rank curve (LensFlow Fig. 8) as the vertices of a piecewise-linear curve.

    Parameters
    ----------
    relative_tracer_ranks : array_like, shape (n,)
        Relative (mid-)ranks of the tracers.
    n_total : int
        Catalogue size ``N`` (tracers included).

    Returns
    -------
    x, y : ndarray
        Vertices from ``(0, 0)`` to ``(1, 1)``: ``x`` = fraction of the ranked catalogue
        inspected, ``y = F(x)`` = fraction of the tracers recovered, with
        ``F(x) = (1/n) Σ clip(N·x − R_i + 1, 0, 1)`` (``docs/ranking.md``).  Plot with
        ``plt.plot(x, y)``; ``np.trapezoid(y, x)`` is the exact area under the curve.
    """
    r, n_total = _tracer_ranks(relative_tracer_ranks, n_total, need_total=True)
    big_r = np.sort(r * n_total)  # (mid-)ranks R_i
    knots = np.unique(np.concatenate([[0.0, 1.0], (big_r - 1) / n_total, big_r / n_total]))
    knots = knots[(knots >= 0) & (knots <= 1)]
    y = _trc_values(big_r, n_total * knots)
    # Drop vertices in the middle of straight runs (flat stretches between tracers): same curve, smaller plots.
    keep = np.ones(len(knots), dtype=bool)
    if len(knots) > 2:
        dx1, dy1 = np.diff(knots)[:-1], np.diff(y)[:-1]
        dx2, dy2 = np.diff(knots)[1:], np.diff(y)[1:]
        keep[1:-1] = np.abs(dy1 * dx2 - dy2 * dx1) > 1e-15
    return knots[keep], y[keep]


def _trc_values(sorted_ranks: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(1/n) Σ clip(t − R_i + 1, 0, 1)`` at each ``t`` in O((n + len(t)) log n) memory-light steps.

    Tracers with ``R_i ≤ t`` count fully; those with ``t < R_i < t + 1`` count ``t − R_i + 1``
    (a prefix sum of the sorted ranks gives their sum).
    """
    n = len(sorted_ranks)
    prefix = np.concatenate([[0.0], np.cumsum(sorted_ranks)])
    full = np.searchsorted(sorted_ranks, t, side="right")
    upper = np.searchsorted(sorted_ranks, t + 1, side="left")
    upper = np.maximum(upper, full)
    partial = (upper - full) * (t + 1) - (prefix[upper] - prefix[full])
    return np.clip((full + partial) / n, 0.0, 1.0)


def ranking_performance(relative_tracer_ranks: np.ndarray, n_total: int | None = None, *,
                        method: str = "exact") -> float:
    """LensFlow's ranking performance: area between TRC and no discrimination over the perfect one.

    Parameters
    ----------
    relative_tracer_ranks : array_like, shape (n,)
        Relative (mid-)ranks of the tracers.
    n_total : int
        Catalogue size ``N``; required for ``method="exact"``.
    method : {"exact", "lensflow"}
        ``exact``: ``(N + 1 − 2·mean(R)) / (N − n)`` — exactly 1 (perfect), −1 (reversed),
        0 in expectation (random), equal to ``2·AUROC − 1`` of tracers vs the rest.
        ``lensflow``: the published code's ``2·(1/2 − ∫ Q)`` with the linearly interpolated
        quantile curve ``Q`` (for comparing with numbers in the paper).

    Returns
    -------
    float
    """
    if method == "lensflow":
        r, _ = _tracer_ranks(relative_tracer_ranks, None, need_total=False)
        return _lensflow_performance(np.sort(r))
    if method != "exact":
        raise ValueError(f"method must be 'exact' or 'lensflow', got {method!r}")
    r, n_total = _tracer_ranks(relative_tracer_ranks, n_total, need_total=True)
    mean_rank = float(np.mean(r)) * n_total
    return float((n_total + 1 - 2 * mean_rank) / (n_total - r.size))


def _lensflow_performance(r: np.ndarray) -> float:
    """``2·(1/2 − ∫₀¹ Q)``: Q linear through ``(i/n, r_(i))``, extrapolated linearly to 0 (Mathematica)."""
    n = r.size
    if n == 1:
        return float(1.0 - 2.0 * r[0])  # a constant interpolant
    x = np.arange(1, n + 1) / n
    inner = float(np.trapezoid(r, x))
    q0 = r[0] - (r[1] - r[0])  # the first segment continued down to x = 0
    return float(2.0 * (0.5 - (inner + 0.5 * (q0 + r[0]) / n)))


def rank_metrics(scores: np.ndarray, tracers: np.ndarray) -> dict:
    """Every ranking figure of ``rank_metrics.json`` for a scored catalogue with tracers.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Scores of every row.
    tracers : array_like of bool, shape (N,)
        True for the tracer rows.

    Returns
    -------
    dict
        ``n``, ``n_tracers``, ``ranking_performance``, ``ranking_performance_lensflow``,
        ``classification_efficiency``, ``auroc`` (tracers vs the rest, = (RP + 1)/2),
        ``mean_relative_tracer_rank``, ``median_relative_tracer_rank``,
        ``best_tracer_rank``, ``worst_tracer_rank`` and, for p in 1 % and 10 %,
        ``tracers_in_top_<p>pct`` (tracers with relative rank ≤ p) and its fraction.
    """
    from lenshpc.metrics import auroc

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tracers = np.asarray(tracers, dtype=bool).reshape(-1)
    if len(tracers) != len(scores):
        raise ValueError(f"{len(tracers)} tracer flags for {len(scores)} scores")
    rel = relative_ranks(scores)
    r = rel[tracers]
    n, n_tr = len(scores), int(tracers.sum())
    out = {
        "n": n,
        "n_tracers": n_tr,
        "ranking_performance": ranking_performance(r, n),
        "ranking_performance_lensflow": ranking_performance(r, method="lensflow"),
        "classification_efficiency": classification_efficiency(r),
        "auroc": auroc(tracers.astype(np.uint8), scores),
        "mean_relative_tracer_rank": float(np.mean(r)),
        "median_relative_tracer_rank": float(np.median(r)),
        "best_tracer_rank": float(np.min(r) * n),
        "worst_tracer_rank": float(np.max(r) * n),
    }
    for p in TOP_FRACTIONS:
        key = f"top_{p * 100:g}pct"
        count = int(np.sum(r <= p + 1e-12))
        out[f"tracers_in_{key}"] = count
        out[f"fraction_of_tracers_in_{key}"] = count / n_tr
    return out


__all__ = ["TOP_FRACTIONS", "classification_efficiency", "rank_metrics", "ranking_order", "ranking_performance",
           "ranks", "relative_ranks", "tracer_rank_curve"]
