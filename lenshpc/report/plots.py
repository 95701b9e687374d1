"""Report figures (matplotlib Agg; each written as PNG and PDF, atomically).

* ``fbeta_curves`` — thesis Fig 5.1: mean Fβ vs decision threshold per group with a ±1 std
  band, recall long-dashed and precision short-dashed in the same colour.
* ``prediction_histograms`` — thesis Fig 5.2: distribution of test-set scores per group
  (all seeds pooled), lenses and non-lenses separately, from each run's ``predictions.h5``.
* ``roc_curves`` — mean ROC per group, each run's TPR interpolated on a common FPR grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenshpc.report.stats import GroupSummary, mean_curve
from lenshpc.tasks import recorded_vocabulary
from lenshpc.train.rundir import PREDICTIONS_FILE
from lenshpc.utils import atomic_path

#: Common false-positive-rate grid for mean ROC curves.
ROC_GRID = np.linspace(0.0, 1.0, 201)
#: Score bins of the prediction histograms.
HIST_BINS = np.linspace(0.0, 1.0, 41)
#: Panels beyond this many groups are left out of the histogram figure (noted in the report).
MAX_HIST_PANELS = 36


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (batch jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, *, dpi: int = 110, tight: bool = False, close: bool = True) -> Path:
    """Write ``fig`` to ``path`` as a PNG atomically (temp file + rename), then close it.

    Every figure of lenshpc goes through here (or :func:`_save` for PNG + PDF), so a reader never
    sees half a PNG and long batch jobs do not accumulate open figures.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        if close:
            pyplot().close(fig)
    return path


def _save(fig, out: Path, stem: str) -> list[Path]:
    """``out/stem.png`` and ``out/stem.pdf``, each written atomically; then ``fig`` is closed."""
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=130 if ext == "png" else None, bbox_inches="tight")
        paths.append(path)
    pyplot().close(fig)
    return paths


def _curves(run, *names: str) -> list[np.ndarray] | None:
    curves = (run.metrics or {}).get("curves") or {}
    try:
        arrays = [np.asarray(curves[n], dtype=float) for n in names]
    except (KeyError, TypeError, ValueError):
        return None
    if not arrays[0].size or any(a.shape != arrays[0].shape for a in arrays):
        return None
    return arrays


def _with_curves(groups: list[GroupSummary], *names: str) -> list[tuple[GroupSummary, list, str]]:
    """``(group, its runs' curves `names`, colour)`` of every group whose runs recorded those curves (a group
    keeps its colour whichever groups before it are left out)."""
    colours = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    out = []
    for i, g in enumerate(groups):
        series = [c for c in (_curves(r, *names) for r in g.runs) if c]
        if series:
            out.append((g, series, colours[i % len(colours)]))
    return out


def plot_fbeta_curves(groups: list[GroupSummary], out: Path, beta: float | None = None) -> list[Path]:
    drawn = _with_curves(groups, "thresholds", "fbeta", "precision", "recall")
    if not drawn:
        return []
    fig, ax = pyplot().subplots(figsize=(7.5, 5))
    for g, series, colour in drawn:
        t, f_mean, f_std = mean_curve([s[0] for s in series], [s[1] for s in series])
        _, p_mean, _ = mean_curve([s[0] for s in series], [s[2] for s in series], grid=t)
        _, r_mean, _ = mean_curve([s[0] for s in series], [s[3] for s in series], grid=t)
        ax.plot(t, f_mean, color=colour, lw=1.8, label=f"{g.label} (n={len(series)})")
        ax.fill_between(t, f_mean - f_std, f_mean + f_std, color=colour, alpha=0.2, lw=0)
        ax.plot(t, r_mean, color=colour, lw=1.0, ls=(0, (8, 4)))  # long dashes: recall (Fig 5.1)
        ax.plot(t, p_mean, color=colour, lw=1.0, ls=(0, (2, 2)))  # short dashes: precision
    beta_txt = f" (β = {beta:g})" if beta else ""
    ax.set(xlabel="p-threshold", ylabel=f"Fβ-score{beta_txt}", xlim=(0, 1),
           title="Mean Fβ over seeds ± 1 std; long dashes: recall, short dashes: precision")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    return _save(fig, out, "fbeta_curves")


def plot_roc_curves(groups: list[GroupSummary], out: Path) -> list[Path]:
    drawn = _with_curves(groups, "roc_fpr", "roc_tpr")
    if not drawn:
        return []
    fig, ax = pyplot().subplots(figsize=(5.5, 5))
    for g, series, colour in drawn:
        fpr, tpr, std = mean_curve([s[0] for s in series], [s[1] for s in series], grid=ROC_GRID)
        auc = g.mean.get("auroc", float("nan"))
        ax.plot(fpr, tpr, color=colour, lw=1.6, label=f"{g.label} (AUROC {auc:.3f})")
        ax.fill_between(fpr, np.clip(tpr - std, 0, 1), np.clip(tpr + std, 0, 1), color=colour, alpha=0.15, lw=0)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title="Mean ROC over seeds (±1 std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out, "roc_curves")


def score_histograms(groups: list[GroupSummary]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per group: ``(2, bins)`` counts of test scores (row 0 non-lenses, row 1 lenses), pooled over seeds.

    Returns the histograms and the problems met (unreadable ``predictions.h5``).
    """
    import h5py

    hists: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for g in groups[:MAX_HIST_PANELS]:
        counts = np.zeros((2, len(HIST_BINS) - 1), dtype=np.int64)
        for run in g.runs:
            path = run.path / PREDICTIONS_FILE
            if not path.exists() or not recorded_vocabulary(run.metrics).get("lens_scores", True):
                continue  # not one lens score per image (a K-class or reconstruction task): no score histogram
            try:
                with h5py.File(path, "r") as fh:
                    scores = np.asarray(fh["test/scores"][()], dtype=float)
                    labels = np.asarray(fh["test/labels"][()]).astype(bool)
            except (OSError, KeyError) as exc:
                problems.append(f"{path}: unreadable ({exc})")
                continue
            counts[0] += np.histogram(scores[~labels], HIST_BINS)[0]
            counts[1] += np.histogram(scores[labels], HIST_BINS)[0]
        if counts.sum():
            hists[g.label] = counts
    return hists, problems


def plot_histograms(hists: dict[str, np.ndarray], out: Path) -> list[Path]:
    if not hists:
        return []
    n = len(hists)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = pyplot().subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (label, counts) in zip(axes.ravel(), hists.items()):
        # stairs: one artist per class (bar() makes one patch per bin: 10x slower to save)
        ax.stairs(counts[0], HIST_BINS, fill=True, color="tab:blue", alpha=0.6, label="non-lenses")
        ax.stairs(counts[1], HIST_BINS, fill=True, color="tab:orange", alpha=0.6, label="lenses")
        ax.set(title=label, xlabel="prediction", ylabel="count (all seeds)", xlim=(0, 1))
        ax.title.set_fontsize(9)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Prediction distributions on the test set")
    fig.tight_layout()
    return _save(fig, out, "prediction_histograms")
