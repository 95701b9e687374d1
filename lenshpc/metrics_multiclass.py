"""Categorical (K-class) metrics, backed by :mod:`sklearn.metrics`.

The binary thesis metrics live in :mod:`lenshpc.metrics`; these are their multi-class lifts, done the
sklearn way (macro averages over classes, one-vs-rest AUROC) rather than by hand:

``accuracy``        fraction of argmax predictions equal to the label (``accuracy_score``)
``macro_f1``        unweighted mean of the per-class F1 (``f1_score(average="macro")``)
``top2_accuracy``   label among the two highest probabilities (``top_k_accuracy_score(k=2)``)
``auroc_ovr``       macro one-vs-rest AUROC of the probabilities (``roc_auc_score(multi_class="ovr")``)
``per_class_recall``  recall of each class (``recall_score(average=None)``)
``confusion``       counts, rows = true class, columns = predicted (``confusion_matrix``)

``probs`` are ``(N, K)`` class probabilities (a softmax output), ``y`` integer labels in ``0..K-1``.
A metric that is undefined on the given set (AUROC with a class absent) is ``None`` in JSON.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score,
                             top_k_accuracy_score)


def _check(y: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(y):
        raise ValueError(f"expected probabilities of shape (N={len(y)}, K), got {probs.shape}")
    if len(y) and (y.min() < 0 or y.max() >= probs.shape[1]):
        raise ValueError(f"labels outside 0..{probs.shape[1] - 1}")
    return y, probs


def predicted(probs: Any) -> np.ndarray:
    """Argmax class of each row."""
    return np.asarray(probs).argmax(axis=1)


def accuracy(y: Any, probs: Any) -> float:
    y, probs = _check(y, probs)
    return float(accuracy_score(y, predicted(probs)))


def macro_f1(y: Any, probs: Any) -> float:
    y, probs = _check(y, probs)
    return float(f1_score(y, predicted(probs), labels=np.arange(probs.shape[1]), average="macro", zero_division=0))


def top_k_accuracy(y: Any, probs: Any, k: int = 2) -> float:
    y, probs = _check(y, probs)
    if probs.shape[1] <= k:  # sklearn warns and returns 1: every label is in the top k
        return 1.0
    return float(top_k_accuracy_score(y, probs, k=k, labels=np.arange(probs.shape[1])))


def auroc_ovr(y: Any, probs: Any) -> float | None:
    """Macro one-vs-rest AUROC; ``None`` when a class is absent from ``y`` (undefined)."""
    y, probs = _check(y, probs)
    k = probs.shape[1]
    if len(np.unique(y)) < k:
        return None
    if k == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    rows = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)  # sklearn requires rows summing to 1
    return float(roc_auc_score(y, rows, multi_class="ovr", average="macro", labels=np.arange(k)))


def per_class_recall(y: Any, probs: Any) -> list[float]:
    y, probs = _check(y, probs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = recall_score(y, predicted(probs), labels=np.arange(probs.shape[1]), average=None, zero_division=0)
    return [float(v) for v in values]


def confusion(y: Any, probs: Any) -> list[list[int]]:
    """Confusion counts ``[true][predicted]`` over all K classes."""
    y, probs = _check(y, probs)
    return confusion_matrix(y, predicted(probs), labels=np.arange(probs.shape[1])).astype(int).tolist()


def cross_entropy(onehot: Any, probs: Any, eps: float = 1e-7) -> float:
    """Mean categorical cross-entropy of (possibly smoothed) one-hot targets under ``probs``.

    The same clipping as Keras's ``categorical_crossentropy`` on probabilities (normalise rows, then clip at ``eps = 1e-7``),
    so the validation loss equals the training loss on the same targets.
    """
    t = np.asarray(onehot, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    p = np.clip(p / p.sum(axis=1, keepdims=True), eps, 1.0 - eps)
    return float(-(t * np.log(p)).sum(axis=1).mean()) if len(t) else float("nan")


def summary(y: Any, probs: Any) -> dict:
    """Every metric above for one set (``metrics.json``)."""
    return {"accuracy": accuracy(y, probs), "macro_f1": macro_f1(y, probs), "top2_accuracy": top_k_accuracy(y, probs, 2),
            "auroc_ovr": auroc_ovr(y, probs), "per_class_recall": per_class_recall(y, probs),
            "confusion": confusion(y, probs)}


__all__ = ["accuracy", "auroc_ovr", "confusion", "cross_entropy", "macro_f1", "per_class_recall", "predicted",
           "summary", "top_k_accuracy"]
