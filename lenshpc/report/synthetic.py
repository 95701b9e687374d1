"""Synthetic run directories with self-consistent metrics (for the reducer's tests and benchmark).

Each run gets test scores drawn from two Beta distributions (lenses / non-lenses); its
``metrics.json`` (:mod:`lenshpc.metrics`, as a trained run writes it: thresholded metrics, curves, ROC, TPR0/TPR10),
``predictions.h5``, ``config.yaml`` and ``DONE`` follow docs/run-dir.md, so the reducer reads
them exactly like real runs.  Nothing here trains a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenshpc.config import Config, flatten
from lenshpc.metrics import binary_labels
from lenshpc.utils import atomic_write_json, atomic_write_text, rng_for


def synthetic_metrics(cfg: Config, scores: np.ndarray, labels: np.ndarray, val: np.ndarray | None = None) -> dict:
    """``metrics.json`` of a synthetic run: :func:`lenshpc.train.rundir.run_metrics` (the one metric definition,
    :mod:`lenshpc.metrics`; with validation scores ``val`` also the tuned-threshold keys) plus the training keys."""
    from lenshpc.train.rundir import run_metrics

    return {**run_metrics(cfg, labels, scores, None if val is None else (labels, val)),
            "selection": {"metric": cfg.selection.metric, "best_chunk": 0, "best_score": 0.0},
            "chunks_trained": cfg.train.chunks, "stopped_early": False, "world_size": 1,
            "config": flatten(cfg.to_dict())}


def make_run(run_dir: str | Path, cfg: Config, skill: float = 4.0, n_test: int = 200,
             predictions: bool = True, tuned: bool = True) -> dict:
    """Write one finished synthetic run to ``run_dir``; returns its metrics.

    ``skill`` shapes the score distributions (Beta(skill, 1) for lenses, Beta(1, skill) for
    non-lenses); the seed and ``skill`` fully determine the run.  ``tuned`` adds the metrics at
    the validation-tuned threshold (drawn validation scores; False = a run from before they existed).
    """
    from lenshpc.train.rundir import RunDir, write_predictions

    rd = RunDir(run_dir)
    rd.path.mkdir(parents=True, exist_ok=True)
    rng = rng_for(cfg.seed, "synthetic-run", str(rd.path.name), int(skill * 1000))
    labels = (np.arange(n_test) % 2).astype(np.uint8)
    scores = np.where(labels == 1, rng.beta(skill, 1.0, n_test), rng.beta(1.0, skill, n_test)).astype(np.float32)
    # tuned: a validation set of the same size and skill (the t* metrics of real runs)
    val = np.where(labels == 1, rng.beta(skill, 1.0, n_test), rng.beta(1.0, skill, n_test)).astype(np.float32)
    metrics = synthetic_metrics(cfg, scores, labels, val if tuned else None)
    atomic_write_text(rd.config, cfg.to_yaml())
    if predictions:
        write_predictions(rd.predictions, {"test": {"scores": scores, "labels": binary_labels(labels)}})
    atomic_write_json(rd.metrics, metrics)
    rd.mark_done()
    return metrics
