"""Classification metrics on test/validation predictions (numpy in, Python floats out).

Conventions
-----------
* ``y`` are labels in {0, 1} (bool, int or float), ``p`` predicted lens probabilities;
  both are flattened, so ``(N,)`` and ``(N, 1)`` are equivalent.
* **Predicted positive iff p ≥ threshold** (default 0.5), everywhere in this module.
* Precision, recall, accuracy and Fβ are **0 when their denominator is 0** (e.g. no
  predicted positives), as in scikit-learn with ``zero_division=0``.
* Fβ = (1 + β²)·P·R / (β²·P + R) (thesis Eq 3.18), β = 0.17 by default (thesis Sec 3.5.1).

Threshold grid and I_AUC (thesis Eq 3.21)
-----------------------------------------
:func:`fbeta_curve` evaluates the thresholded metrics on ``thresholds = linspace(0, 1, S + 1)``
(t_i = i/S, i = 0…S, both ends included so plots span [0, 1]).
:func:`i_auc` is the rectangle-rule area under that Fβ curve,

    I_AUC = (1/S) · Σ_{i=0}^{S-1} Fβ(t_i),

i.e. the mean over the S thresholds in [0, 1).  Eq 3.21 as printed sums i = 0…S but divides
by S; the thesis code (``f_beta_metric.py``) sums over ``range(S)`` like we do.  Dropping the
t = 1 term (the degenerate "p ≥ 1" classifier) keeps I_AUC in [0, 1]; it would shift every
model by the same factor at most and never changes which model is selected.  (The thesis
code also nudged every threshold up by 1e-4/S; we do not, so "p ≥ t" means the same in every
metric here.)

Soft Fβ (thesis Sec 3.5.2) uses the soft counts of Eq 3.9–3.12 and the same ε as the
``fbeta_soft`` loss (:data:`SOFT_EPS`), so ``soft_fbeta(y, p) == 1 - fbeta_soft(y, p)``.
The soft-count and soft-Fβ formulas below use only arithmetic operators and a pluggable
``reduce_sum``, so :mod:`lenshpc.losses` evaluates the very same code on Keras tensors.

Validation-tuned threshold: :func:`tuned_summary` finds the threshold that maximises Fβ on the
validation scores (:func:`best_fbeta_threshold`) and reports the test metrics at it, beside those
at the fixed ``threshold`` (``metrics.json``: ``<metric>_tuned`` keys), so a model whose scores
all fall below 0.5 is not reported as Fβ = 0.

Challenge metrics (Metcalf et al. 2019): TPR0 is the highest TPR reachable with zero false
positives, TPR10 the highest with at most ten (:func:`tpr_at_fp`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from lenshpc.errors import ConfigError, DataError

#: ε added to every soft denominator (losses and the soft-Fβ metric).  The thesis's 1e-16
#: is lost when added to a float32 sum and, added to an exact 0 (an all-negative batch
#: predicted perfectly), gives quotients and gradients of order 1e16 that overflow float16.
#: 1e-7 (Keras's ``epsilon()``) is representable in float32 and float16, negligible against
#: any non-empty soft count, and keeps every quotient and gradient finite.
SOFT_EPS = 1e-7


# ====================================================================== input checks
def binary_labels(y: Any) -> np.ndarray:
    """0/1 lens labels as ``predictions.h5`` stores them: ``(N,)`` uint8."""
    return np.asarray(y).reshape(-1).astype(np.uint8)


def _as_arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flatten and validate labels and scores; raise :class:`DataError` on bad input."""
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise DataError(f"labels and predictions differ in length ({y.size} vs {p.size}); "
                        "pass one score per labelled image")
    if y.dtype == bool:
        y = y.astype(np.int64)
    elif y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise DataError(f"labels must be 0 or 1, found {bad.tolist()}; threshold or re-map the labels first")
    y = y.astype(np.int64)
    if not np.isfinite(p).all():
        n_bad = int((~np.isfinite(p)).sum())
        raise DataError(f"{n_bad} prediction(s) are NaN or infinite; the model diverged or the input had NaNs")
    return y, p


def _safe_div(num: Any, den: Any) -> Any:
    """num / den with 0 where den == 0 (scalars or arrays)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
    return out if out.ndim else float(out)


# ====================================================================== shared formulas
def fbeta_from_pr(precision: Any, recall: Any, beta: float, eps: float = 0.0) -> Any:
    """Fβ from precision and recall (Eq 3.18); the one implementation of the formula.

    With ``eps = 0`` (hard metrics, numpy) the result is 0 where β²P + R = 0; with
    ``eps > 0`` it is ``(1+β²)PR / (β²P + R + eps)`` using operators only, so it also works
    on Keras/TensorFlow tensors (the soft loss).
    """
    b2 = float(beta) ** 2
    if eps:
        return (1.0 + b2) * precision * recall / (b2 * precision + recall + eps)
    return _safe_div((1.0 + b2) * np.asarray(precision) * np.asarray(recall),
                     b2 * np.asarray(precision) + np.asarray(recall))


def soft_counts(y: Any, p: Any, reduce_sum: Callable = np.sum) -> tuple[Any, Any, Any, Any]:
    """Soft TP, FP, FN, TN over a batch (thesis Eq 3.9–3.12).

    TP = Σ ŷ·y, FP = Σ ŷ·(1−y), FN = Σ (1−ŷ)·y, TN = Σ (1−ŷ)·(1−y).  ``reduce_sum`` is
    ``np.sum`` for metrics and ``keras.ops.sum`` for losses.
    """
    return (reduce_sum(p * y), reduce_sum(p * (1 - y)), reduce_sum((1 - p) * y), reduce_sum((1 - p) * (1 - y)))


def soft_fbeta_from_counts(tp: Any, fp: Any, fn: Any, beta: float, eps: float = SOFT_EPS) -> Any:
    """Soft Fβ score (Eq 3.18 with soft P = TP/(TP+FP+ε), R = TP/(TP+FN+ε))."""
    precision = tp / (tp + fp + eps)
    recall = tp / (tp + fn + eps)
    return fbeta_from_pr(precision, recall, beta, eps=eps)


# ====================================================================== thresholded
def confusion(y: Any, p: Any, threshold: float = 0.5) -> dict[str, int]:
    """Confusion matrix at ``threshold``: ``dict(tp, fp, fn, tn)`` (positive iff p ≥ threshold)."""
    y, p = _as_arrays(y, p)
    pred = p >= threshold
    pos = y == 1
    return {"tp": int((pred & pos).sum()), "fp": int((pred & ~pos).sum()),
            "fn": int((~pred & pos).sum()), "tn": int((~pred & ~pos).sum())}


def accuracy(y: Any, p: Any, threshold: float = 0.5) -> float:
    """(TP + TN) / N (Eq 3.20); 0 for an empty set."""
    return at_threshold(y, p, threshold)["accuracy"]


def precision(y: Any, p: Any, threshold: float = 0.5) -> float:
    """TP / (TP + FP) (Eq 3.6); 0 when nothing is predicted positive."""
    return at_threshold(y, p, threshold)["precision"]


def recall(y: Any, p: Any, threshold: float = 0.5) -> float:
    """TP / (TP + FN) (Eq 3.7); 0 when there are no positives."""
    return at_threshold(y, p, threshold)["recall"]


def fbeta(y: Any, p: Any, beta: float = 0.17, threshold: float = 0.5) -> float:
    """Fβ at ``threshold`` (Eq 3.18); 0 when precision and recall are both 0."""
    return at_threshold(y, p, threshold, beta)["fbeta"]


def _counts_at(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP counts for every threshold at once (O((N + T) log N))."""
    pos = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    # side="left": scores equal to the threshold count as predicted positive (p >= t).
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return tp.astype(np.float64), fp.astype(np.float64)


def fbeta_curve(y: Any, p: Any, beta: float = 0.17, steps: int = 100) -> dict[str, np.ndarray]:
    """Fβ, precision and recall on the threshold grid ``linspace(0, 1, steps + 1)``.

    Returns
    -------
    dict
        ``thresholds``, ``fbeta``, ``precision``, ``recall``: arrays of length ``steps + 1``.
    """
    if int(steps) < 1:
        raise ConfigError(f"steps = {steps}: the threshold grid needs at least 1 step (thesis: 100)")
    y, p = _as_arrays(y, p)
    thresholds = np.linspace(0.0, 1.0, int(steps) + 1)
    tp, fp = _counts_at(y, p, thresholds)
    prec = _safe_div(tp, tp + fp)
    rec = _safe_div(tp, float((y == 1).sum()))
    rec = np.broadcast_to(rec, thresholds.shape).astype(np.float64)
    return {"thresholds": thresholds, "fbeta": np.asarray(fbeta_from_pr(prec, rec, beta), dtype=np.float64),
            "precision": np.asarray(prec, dtype=np.float64), "recall": rec}


def i_auc(y: Any, p: Any, beta: float = 0.17, steps: int = 100, *, curve: dict | None = None) -> float:
    """Fβ-curve area indicator I_AUC (Eq 3.21): mean Fβ over thresholds i/S, i = 0…S−1.

    See the module docstring for how this relates to the printed equation.  ``curve``: the
    :func:`fbeta_curve` of the same ``y, p, beta, steps`` when the caller has it already.
    """
    if curve is None:
        curve = fbeta_curve(y, p, beta=beta, steps=steps)
    return float(np.mean(curve["fbeta"][:-1]))


def soft_fbeta(y: Any, p: Any, beta: float = 0.17) -> float:
    """Soft Fβ score (Sec 3.5.2, Eq 3.19 as a score: higher is better); equals 1 − fbeta_soft loss."""
    y, p = _as_arrays(y, p)
    tp, fp, fn, _ = soft_counts(y.astype(np.float64), p)
    return float(soft_fbeta_from_counts(tp, fp, fn, beta))


# ====================================================================== ranking metrics
def auroc(y: Any, p: Any) -> float:
    """Area under the ROC curve (scikit-learn); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, p = _as_arrays(y, p)
    if np.unique(y).size < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def roc_curve(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` from scikit-learn (``thresholds[0]`` is +inf)."""
    from sklearn.metrics import roc_curve as _roc_curve

    y, p = _as_arrays(y, p)
    if np.unique(y).size < 2:
        raise DataError("the ROC curve needs both lenses and non-lenses in the labels")
    return _roc_curve(y, p)


def tpr_at_fp(y: Any, p: Any, max_fp: int) -> float:
    """Highest true-positive rate over all thresholds with at most ``max_fp`` false positives.

    A threshold admitting ≤ k false positives must lie above the (k+1)-th highest
    non-lens score s; every lens scored strictly above s is then recovered, and lenses tied
    with s cannot be (taking them would take that non-lens too).  0 when there are no lenses.

    Notes
    -----
    Metcalf et al. (2019) define TPR0 as the highest TPR "before a single false positive
    occurs" (``max_fp=0``) and TPR10 as the TPR "where less than ten false positives are
    made"; we follow this project's definition TPR10 = ``tpr_at_fp(y, p, 10)`` (≤ 10 FPs).
    """
    if int(max_fp) < 0:
        raise ConfigError(f"max_fp = {max_fp}: the number of allowed false positives cannot be negative")
    y, p = _as_arrays(y, p)
    pos = p[y == 1]
    neg = np.sort(p[y == 0])[::-1]
    if pos.size == 0:
        return 0.0
    if neg.size <= max_fp:
        return 1.0
    cut = neg[int(max_fp)]
    return float((pos > cut).sum() / pos.size)


# ====================================================================== reports
def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def thin_curve(x: np.ndarray, y: np.ndarray, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``max_points + 1`` of a curve's own vertices, evenly spaced along its length.

    A vertex is kept where the cumulative L1 path length crosses a multiple of
    (total length / ``max_points``); the first and last vertices are always kept, so the
    drawn curve deviates from the full one by at most one such step.  Used to keep the ROC
    curve of a 100,000-image test set (~10,000 vertices) small in ``metrics.json``.
    """
    if x.size <= max_points + 1:
        return x, y
    step = np.abs(np.diff(x)) + np.abs(np.diff(y))
    length = np.concatenate([[0.0], np.cumsum(step)])
    bins = np.floor(length / (length[-1] / max_points)).astype(np.int64)
    keep = np.flatnonzero(np.diff(bins, prepend=-1) != 0)
    keep = np.union1d(keep, [x.size - 1])
    return x[keep], y[keep]


def at_threshold(y: Any, p: Any, threshold: float, beta: float = 0.17) -> dict:
    """Accuracy, precision, recall, Fβ and the confusion matrix at one ``threshold`` (one pass)."""
    y, p = _as_arrays(y, p)
    c = confusion(y, p, threshold)
    prec = _safe_div(c["tp"], c["tp"] + c["fp"])
    rec = _safe_div(c["tp"], c["tp"] + c["fn"])
    return {"accuracy": _safe_div(c["tp"] + c["tn"], y.size), "precision": prec, "recall": rec,
            "fbeta": float(fbeta_from_pr(prec, rec, beta)), "confusion": c}


def best_fbeta_threshold(y: Any, p: Any, beta: float = 0.17) -> tuple[float, float] | None:
    """The threshold that maximises Fβ on labelled scores (the validation set) and that Fβ.

    Every distinct score is a candidate (``sklearn.metrics.precision_recall_curve``; exact,
    no grid), so a model whose scores all lie below 0.5 still gets its best cut.  The returned
    threshold is the midpoint between the Fβ-maximising score and the next lower distinct
    score (the lowest score itself when there is none): it classifies the validation set exactly
    like the maximising score but leaves a margin on both sides for unseen (test) scores, as a
    decision stump does.  Among equal maxima the first (lowest threshold, highest recall) wins.

    Returns
    -------
    (threshold, fbeta) or None
        None when the set has no lenses or no non-lenses (Fβ cannot be traded off).
    """
    from sklearn.metrics import precision_recall_curve

    y, p = _as_arrays(y, p)
    if np.unique(y).size < 2:
        return None
    prec, rec, thr = precision_recall_curve(y, p, drop_intermediate=False)
    f = np.asarray(fbeta_from_pr(prec[:-1], rec[:-1], beta), dtype=np.float64)  # the last point has no threshold
    k = int(np.argmax(f))
    lower = np.unique(p)
    below = lower[lower < thr[k]]
    t = float(thr[k]) if below.size == 0 else float((thr[k] + below[-1]) / 2.0)
    return t, float(f[k])


#: metrics.json keys measured at the validation-tuned threshold: ``<name>_tuned`` (plus ``threshold_tuned``).
TUNED_METRICS = ("accuracy", "fbeta", "precision", "recall")
TUNED_SUFFIX = "_tuned"


def tuned_summary(y_val: Any, p_val: Any, y_test: Any, p_test: Any, beta: float = 0.17) -> dict:
    """Test metrics at the threshold that maximises Fβ on the validation set (:func:`best_fbeta_threshold`).

    Returns
    -------
    dict
        ``threshold_tuned``, ``accuracy_tuned``, ``fbeta_tuned``, ``precision_tuned``,
        ``recall_tuned`` (test set), ``confusion_tuned`` and ``threshold_tuning``
        (``rule``, ``val_fbeta``, ``n_val``); every value None when the validation set has a
        single class.
    """
    found = best_fbeta_threshold(y_val, p_val, beta)
    n_val = int(np.asarray(y_val).size)
    rule = f"maximises Fβ (β = {float(beta):g}) on the validation set; applied to the test set"
    if found is None:
        out = {f"{k}{TUNED_SUFFIX}": None for k in ("threshold", *TUNED_METRICS, "confusion")}
        return {**out, "threshold_tuning": {"rule": rule, "val_fbeta": None, "n_val": n_val}}
    t, val_f = found
    test = at_threshold(y_test, p_test, t, beta)
    out = {f"threshold{TUNED_SUFFIX}": t, **{f"{k}{TUNED_SUFFIX}": test[k] for k in (*TUNED_METRICS, "confusion")}}
    return {**out, "threshold_tuning": {"rule": rule, "val_fbeta": val_f, "n_val": n_val}}


def summary(y: Any, p: Any, beta: float = 0.17, threshold: float = 0.5, steps: int = 100,
            roc_points: int = 1000) -> dict:
    """Every metric of this module in one JSON-ready dict (the body of ``metrics.json``).

    Returns
    -------
    dict
        ``n_test``, ``n_positive``, ``threshold``, ``beta``, ``steps``, ``accuracy``,
        ``precision``, ``recall``, ``fbeta`` (at ``threshold``), ``i_auc``, ``soft_fbeta``,
        ``auroc`` (None with a single class), ``tpr0``, ``tpr10``, ``confusion`` (tp/fp/fn/tn)
        and ``curves``: ``thresholds``, ``fbeta``, ``precision``, ``recall`` (length
        ``steps + 1``) and ``roc_fpr``, ``roc_tpr`` (at most ``roc_points + 1`` vertices of
        the ROC curve, see :func:`thin_curve`; empty with a single class), all lists.
        AUROC and TPR0/TPR10 are computed from the full data, never from the thinned curve.
    """
    y, p = _as_arrays(y, p)
    at = at_threshold(y, p, threshold, beta)
    curve = fbeta_curve(y, p, beta=beta, steps=steps)
    two_classes = np.unique(y).size == 2
    fpr, tpr = thin_curve(*roc_curve(y, p)[:2], max_points=roc_points) if two_classes else (np.array([]),) * 2
    return {
        "n_test": int(y.size),
        "n_positive": int((y == 1).sum()),
        "threshold": float(threshold),
        "beta": float(beta),
        "steps": int(steps),
        "accuracy": at["accuracy"],
        "precision": at["precision"],
        "recall": at["recall"],
        "fbeta": at["fbeta"],
        "i_auc": i_auc(y, p, beta=beta, steps=steps, curve=curve),
        "soft_fbeta": soft_fbeta(y, p, beta),
        "auroc": _json_float(auroc(y, p)),
        "tpr0": tpr_at_fp(y, p, 0),
        "tpr10": tpr_at_fp(y, p, 10),
        "confusion": at["confusion"],
        "curves": {
            **{k: v.tolist() for k, v in curve.items()},
            "roc_fpr": fpr.tolist(),
            "roc_tpr": tpr.tolist(),
        },
    }


