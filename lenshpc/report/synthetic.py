"""Synthetic run directories with self-consistent metrics (for the reducer's tests and benchmark).

Each run gets test scores drawn from two Beta distributions (lenses / non-lenses); its
``metrics.json`` (thresholded metrics at t = 0.5, Fβ/precision/recall curves, ROC, TPR0/TPR10),
``predictions.h5``, ``config.yaml`` and ``DONE`` follow docs/run-dir.md, so the reducer reads
them exactly like real runs.  Nothing here trains a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lenshpc.config import Config, flatten
from lenshpc.utils import rng_for


def _thresholded(scores: np.ndarray, labels: np.ndarray, t: np.ndarray, beta: float) -> dict[str, np.ndarray]:
    pred = scores[None, :] >= t[:, None]
    pos = labels.astype(bool)[None, :]
    tp = (pred & pos).sum(1).astype(float)
    fp = (pred & ~pos).sum(1).astype(float)
    fn = (~pred & pos).sum(1).astype(float)
    tn = (~pred & ~pos).sum(1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        b2 = beta * beta
        fbeta = np.where(b2 * precision + recall > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall, "fbeta": fbeta,
            "accuracy": (tp + tn) / len(labels)}


def _roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    order = np.argsort(-scores, kind="stable")
    y = labels[order].astype(float)
    tps = np.concatenate([[0.0], np.cumsum(y)])
    fps = np.concatenate([[0.0], np.cumsum(1 - y)])
    tpr, fpr = tps / max(tps[-1], 1), fps / max(fps[-1], 1)
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def synthetic_metrics(cfg: Config, scores: np.ndarray, labels: np.ndarray, steps: int = 101) -> dict:
    beta, threshold = cfg.selection.beta, cfg.selection.threshold
    grid = np.linspace(0.0, 1.0, steps)
    curve = _thresholded(scores, labels, grid, beta)
    at = _thresholded(scores, labels, np.array([threshold]), beta)
    fpr, tpr, auc = _roc(scores, labels)
    fp_counts = np.round(fpr * (labels == 0).sum())
    tpr0 = float(tpr[fp_counts == 0].max())
    tpr10 = float(tpr[fp_counts < 10].max())
    return {
        "seed": cfg.seed, "threshold": threshold, "beta": beta,
        **{k: float(at[k][0]) for k in ("accuracy", "precision", "recall", "fbeta")},
        "auroc": auc, "tpr0": tpr0, "tpr10": tpr10, "i_auc": float(np.trapezoid(curve["fbeta"], grid)),
        "confusion": {k: int(at[k][0]) for k in ("tp", "fp", "fn", "tn")}, "n_test": int(len(labels)),
        "curves": {"thresholds": grid.tolist(), "fbeta": curve["fbeta"].tolist(),
                   "precision": curve["precision"].tolist(), "recall": curve["recall"].tolist(),
                   "roc_fpr": fpr.tolist(), "roc_tpr": tpr.tolist()},
        "selection": {"metric": cfg.selection.metric, "best_chunk": 0, "best_score": 0.0},
        "chunks_trained": cfg.train.chunks, "stopped_early": False, "world_size": 1,
        "config": flatten(cfg.to_dict()),
    }


def make_run(run_dir: str | Path, cfg: Config, skill: float = 4.0, n_test: int = 200,
             predictions: bool = True, tuned: bool = True) -> dict:
    """Write one finished synthetic run to ``run_dir``; returns its metrics.

    ``skill`` shapes the score distributions (Beta(skill, 1) for lenses, Beta(1, skill) for
    non-lenses); the seed and ``skill`` fully determine the run.  ``tuned`` adds the metrics at
    the validation-tuned threshold (drawn validation scores; False = a run from before they existed).
    """
    import h5py

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = rng_for(cfg.seed, "synthetic-run", str(run_dir.name), int(skill * 1000))
    labels = (np.arange(n_test) % 2).astype(np.uint8)
    scores = np.where(labels == 1, rng.beta(skill, 1.0, n_test), rng.beta(1.0, skill, n_test)).astype(np.float32)
    metrics = synthetic_metrics(cfg, scores, labels)
    if tuned:  # a validation set of the same size and skill: the t* metrics of real runs
        from lenshpc.metrics import tuned_summary

        val = np.where(labels == 1, rng.beta(skill, 1.0, n_test), rng.beta(1.0, skill, n_test)).astype(np.float32)
        metrics.update(tuned_summary(labels, val, labels, scores, beta=cfg.selection.beta))
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    if predictions:
        with h5py.File(run_dir / "predictions.h5", "w") as fh:
            fh["test/scores"] = scores
            fh["test/labels"] = labels
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "DONE").write_text("")
    return metrics
