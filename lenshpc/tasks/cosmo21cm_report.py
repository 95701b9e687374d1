"""The ``cosmo21cm`` parts of ``lenshpc reduce``'s report (:meth:`Cosmo21cmTask.report_sections`).

Beyond the vocabulary's mean ± std table (accuracy, macro-F1, top-2, AUROC) the report gets:

* the data warnings the runs recorded (a slice-level split);
* the per-class recall table (mean ± std over seeds, one row per group);
* the confusion matrix averaged over seeds (rows normalised to the true class: each row is a recall
  distribution), one panel per group (``confusion_matrix.png``);
* learning curves: validation accuracy per chunk, mean ± std over seeds (``learning_curves.png``);
* the PCA + logistic-regression baseline on the same splits beside the groups (:mod:`lenshpc.tasks.pca_baseline`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

#: Columns of the baseline comparison table (also in the vocabulary table; repeated here beside the baseline).
COMPARE = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("top2_accuracy", "top-2"))
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "learning_curves.png"


def _pm(values: list[float]) -> str:
    from lenshpc.report.stats import summarise
    from lenshpc.report.tables import fmt_pm

    vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not len(vals):
        return "–"
    mean, std, _ = summarise(vals)
    return fmt_pm(mean, std)


def _seeds(runs) -> str:
    from lenshpc.report.tables import seeds_text

    return seeds_text([r.seed for r in runs if r.seed is not None])


def _class_names(runs) -> list[str]:
    for r in runs:
        names = r.metrics.get("class_names")
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    k = max((len(r.metrics.get("per_class_recall") or []) for r in runs), default=0)
    return [f"class {i}" for i in range(k)]


def recall_table(groups: Mapping[str, Sequence]) -> list[str]:
    lines: list[str] = []
    by_classes: dict[tuple, list] = {}
    for name, runs in groups.items():
        by_classes.setdefault(tuple(_class_names(runs)), []).append((name, runs))
    for classes, rows in by_classes.items():
        lines += ["", "### Per-class recall (test set, mean ± std over seeds)", "",
                  "| group | seeds | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
        for name, runs in rows:
            recalls = [r.metrics.get("per_class_recall") or [] for r in runs]
            cells = [_pm([v[k] if len(v) > k else None for v in recalls]) for k in range(len(classes))]
            lines.append(f"| {name} | {_seeds(runs)} | " + " | ".join(cells) + " |")
    return lines


def mean_confusion(runs) -> np.ndarray | None:
    """Row-normalised confusion matrices averaged over the runs (None without any)."""
    mats = []
    for r in runs:
        m = np.asarray(r.metrics.get("confusion") or [], dtype=float)
        if m.ndim == 2 and m.size:
            mats.append(m / np.clip(m.sum(axis=1, keepdims=True), 1, None))
    shapes = {m.shape for m in mats}
    return np.mean(mats, axis=0) if mats and len(shapes) == 1 else None


def confusion_figure(groups: Mapping[str, Sequence], out_dir: Path) -> Path | None:
    from lenshpc.report.plots import pyplot, save_png

    panels = [(name, mean_confusion(runs), _class_names(runs), len(runs)) for name, runs in groups.items()]
    panels = [p for p in panels if p[1] is not None]
    if not panels:
        return None
    plt = pyplot()
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    k = max(p[1].shape[0] for p in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (2.2 + 0.45 * k), rows * (1.9 + 0.45 * k)), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (name, mat, classes, n) in zip(axes.ravel(), panels):
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{name}\n(mean of {n} seed{'s' if n != 1 else ''})", fontsize=8)
        ax.set_xticks(range(len(classes)), classes, rotation=60, fontsize=6, ha="right")
        ax.set_yticks(range(len(classes)), classes, fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        if len(classes) <= 12:
            for i in range(mat.shape[0]):
                for j in range(mat.shape[1]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if mat[i, j] < 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_png(fig, Path(out_dir) / CONFUSION_PNG)


def _history(run, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    from lenshpc.train.rundir import HISTORY_FILE, read_history

    try:
        rows = [r for r in read_history(Path(run.path) / HISTORY_FILE) if r.get(column) is not None]
    except OSError:
        return None
    return (np.asarray([float(r["chunk"]) for r in rows]), np.asarray([r[column] for r in rows])) if rows else None


def curves_figure(groups: Mapping[str, Sequence], out_dir: Path) -> Path | None:
    from lenshpc.report.plots import pyplot, save_png
    from lenshpc.report.stats import mean_curve

    series = []
    for name, runs in groups.items():
        curves = [c for c in (_history(r, "val_accuracy") for r in runs) if c is not None]
        if curves:
            grid = np.arange(0, max(int(c[0].max()) for c in curves) + 1, dtype=float)
            # a run that stopped early holds its last value (np.interp's right edge) for the rest of the grid
            series.append((name, *mean_curve([c[0] for c in curves], [c[1] for c in curves], grid), len(curves)))
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, x, mean, std, n in series:
        line, = ax.plot(x + 1, mean, label=f"{name} ({n})")
        ax.fill_between(x + 1, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("chunk")
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, Path(out_dir) / CURVES_PNG)


def baseline_table(groups: Mapping[str, Sequence], out_dir: Path, task) -> list[str]:
    from lenshpc.tasks import pca_baseline

    base = pca_baseline.baselines([r.path for runs in groups.values() for r in runs], out_dir, task)
    if not base:
        return []
    lines = ["", "### Networks and the PCA + logistic-regression baseline (test set, mean ± std over seeds)", "",
             "| model | seeds | " + " | ".join(t for _, t in COMPARE) + " |", "|---|---|" + "---|" * len(COMPARE)]
    for name, runs in groups.items():
        lines.append(f"| {name} | {_seeds(runs)} | "
                     + " | ".join(_pm([r.metrics.get(m) for r in runs]) for m, _ in COMPARE) + " |")
    for label, results in base.items():
        from lenshpc.report.tables import seeds_text

        lines.append(f"| {label} | {seeds_text([m['seed'] for m in results])} | "
                     + " | ".join(_pm([m.get(k) for m in results]) for k, _ in COMPARE) + " |")
    first = next(iter(base.values()))[0]
    lines += ["", f"PCA baseline: {first['n_components']} components of the standardised pixels, multinomial "
                  f"logistic regression, fitted on ≤ {pca_baseline.MAX_TRAIN} un-augmented train slices of the same "
                  "split (sklearn; the seed sets the randomised SVD and the train subset)."]
    return lines


def sections(groups: Mapping[str, Sequence], out_dir, task) -> list[str]:
    """Markdown lines of the 21-cm sections (figures written into ``out_dir``)."""
    out_dir = Path(out_dir)
    groups = {name: [r for r in runs if isinstance(r.metrics, dict)] for name, runs in groups.items()}
    groups = {name: runs for name, runs in groups.items() if runs}
    if not groups:
        return []
    lines = ["", "## 21-cm classification"]
    warnings = sorted({w for runs in groups.values() for r in runs for w in (r.metrics.get("warnings") or [])})
    lines += [f"\n> **Warning**: {w}" for w in warnings]
    lines += recall_table(groups)
    fig = confusion_figure(groups, out_dir)
    if fig is not None:
        lines += ["", "### Confusion matrix (test set, rows normalised to the true class, mean over seeds)", "",
                  f"![confusion matrix]({fig.name})"]
    fig = curves_figure(groups, out_dir)
    if fig is not None:
        lines += ["", "### Learning curves (validation accuracy per chunk, mean ± std over seeds)", "",
                  f"![learning curves]({fig.name})"]
    lines += baseline_table(groups, out_dir, task)
    return lines
