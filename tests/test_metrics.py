"""Metrics against scikit-learn and hand-computed cases (thesis Eq 3.6–3.8, 3.18–3.21)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from lenshpc import metrics
from lenshpc.errors import ConfigError, DataError


def _random_case(seed: int, n: int = 300):
    """Labels and scores rounded to 0.05 so many scores tie with thresholds (0.5 included)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(np.round((0.35 * y + rng.uniform(0, 0.65, n)) * 20) / 20, 0, 1)
    return y, p


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.75])
def test_thresholded_metrics_match_sklearn(seed, threshold):
    y, p = _random_case(seed)
    assert np.any(p == threshold)  # ties at the threshold are exercised
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert metrics.confusion(y, p, threshold) == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert metrics.accuracy(y, p, threshold) == pytest.approx(skm.accuracy_score(y, pred))
    assert metrics.precision(y, p, threshold) == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert metrics.recall(y, p, threshold) == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    for beta in (0.17, 1.0, 2.0):
        expected = skm.fbeta_score(y, pred, beta=beta, zero_division=0)
        assert metrics.fbeta(y, p, beta=beta, threshold=threshold) == pytest.approx(expected)


def test_fbeta_curve_matches_sklearn_at_every_threshold():
    y, p = _random_case(3)
    curve = metrics.fbeta_curve(y, p, beta=0.17, steps=20)
    assert curve["thresholds"] == pytest.approx(np.linspace(0, 1, 21))
    for t, f, pr, rc in zip(curve["thresholds"], curve["fbeta"], curve["precision"], curve["recall"]):
        pred = (p >= t).astype(int)
        assert f == pytest.approx(skm.fbeta_score(y, pred, beta=0.17, zero_division=0))
        assert pr == pytest.approx(skm.precision_score(y, pred, zero_division=0))
        assert rc == pytest.approx(skm.recall_score(y, pred, zero_division=0))


def test_zero_denominators_give_zero():
    y = [1, 1, 0]
    p = [0.1, 0.2, 0.3]  # nothing predicted positive at 0.5
    assert metrics.precision(y, p) == 0.0 and metrics.recall(y, p) == 0.0 and metrics.fbeta(y, p) == 0.0
    assert metrics.recall([0, 0], [0.9, 0.1]) == 0.0  # no lenses at all
    assert metrics.accuracy([], []) == 0.0


def test_i_auc_on_a_hand_case():
    # S = 4: thresholds 0, .25, .5, .75 (t = 1 excluded).  y = [1, 0], p = [0.8, 0.3]:
    # t = 0, .25: both positive -> P = 1/2, R = 1;  t = .5, .75: only the lens -> P = R = 1.
    beta = 1.0
    f_low = (1 + beta**2) * 0.5 * 1 / (beta**2 * 0.5 + 1)  # = 2/3
    expected = (2 * f_low + 2 * 1.0) / 4  # = 0.8333...
    assert metrics.i_auc([1, 0], [0.8, 0.3], beta=beta, steps=4) == pytest.approx(expected)
    assert expected == pytest.approx(5 / 6)
    beta = 0.17
    f_low = (1 + beta**2) * 0.5 / (beta**2 * 0.5 + 1)
    assert metrics.i_auc([1, 0], [0.8, 0.3], beta=beta, steps=4) == pytest.approx((2 * f_low + 2) / 4)


def test_i_auc_is_the_mean_of_the_curve_below_one():
    y, p = _random_case(4)
    curve = metrics.fbeta_curve(y, p, steps=100)
    assert metrics.i_auc(y, p, steps=100) == pytest.approx(np.mean(curve["fbeta"][:100]))
    assert 0.0 <= metrics.i_auc(y, p) <= 1.0
    # A perfect, polarised model (scores exactly 0 or 1) has I_AUC just below 1.
    y = np.array([1, 0] * 10)
    assert metrics.i_auc(y, y.astype(float), steps=100) > 0.99


def test_soft_fbeta_by_hand():
    y = [1, 1, 0, 0, 1, 0]
    p = [0.9, 0.6, 0.2, 0.4, 0.3, 0.1]
    precision, recall = 1.8 / 2.5, 1.8 / 3.0
    b2 = 0.17**2
    assert metrics.soft_fbeta(y, p) == pytest.approx((1 + b2) * precision * recall / (b2 * precision + recall))


def test_tpr_at_fp_hand_cases():
    y = [1, 1, 1, 1, 0, 0, 0]
    p = [0.95, 0.9, 0.6, 0.3, 0.8, 0.5, 0.2]
    # Highest non-lens 0.8: only 0.95 and 0.9 are above it without a false positive.
    assert metrics.tpr_at_fp(y, p, 0) == pytest.approx(2 / 4)
    assert metrics.tpr_at_fp(y, p, 1) == pytest.approx(3 / 4)  # cut above 0.5
    assert metrics.tpr_at_fp(y, p, 2) == pytest.approx(4 / 4)  # cut above 0.2
    assert metrics.tpr_at_fp(y, p, 10) == 1.0  # fewer than 11 non-lenses
    # A lens tied with the highest non-lens cannot be recovered without that false positive.
    assert metrics.tpr_at_fp([1, 1, 0], [0.9, 0.7, 0.7], 0) == pytest.approx(0.5)
    assert metrics.tpr_at_fp([0, 1], [0.1, 0.2], 0) == 1.0
    assert metrics.tpr_at_fp([0, 0], [0.1, 0.2], 0) == 0.0  # no lenses


def test_tpr10_counts_ten_false_positives():
    # 20 non-lenses at 0.50..0.69, lenses spread above and between them.
    neg = np.linspace(0.69, 0.50, 20)
    pos = np.array([0.99, 0.9, 0.695, 0.685, 0.605, 0.585, 0.1])
    y = np.r_[np.ones_like(pos), np.zeros_like(neg)]
    p = np.r_[pos, neg]
    # <= 10 FPs: cut above the 11th highest non-lens (0.59) -> lenses 0.99, 0.9, 0.695, 0.685, 0.605.
    assert metrics.tpr_at_fp(y, p, 10) == pytest.approx(5 / 7)
    assert metrics.tpr_at_fp(y, p, 0) == pytest.approx(3 / 7)
    # Cross-check against the ROC curve: max TPR over points with FP <= 10.
    fpr, tpr, _ = skm.roc_curve(y, p)
    assert metrics.tpr_at_fp(y, p, 10) == pytest.approx(tpr[np.round(fpr * 20) <= 10].max())


def test_auroc_and_roc_curve_match_sklearn():
    y, p = _random_case(5)
    assert metrics.auroc(y, p) == pytest.approx(skm.roc_auc_score(y, p))
    fpr, tpr, thr = metrics.roc_curve(y, p)
    ref = skm.roc_curve(y, p)
    assert np.allclose(fpr, ref[0]) and np.allclose(tpr, ref[1])
    assert math.isnan(metrics.auroc([1, 1], [0.2, 0.3]))
    with pytest.raises(DataError, match="both"):
        metrics.roc_curve([1, 1], [0.2, 0.3])


def test_summary_is_json_ready_and_consistent():
    y, p = _random_case(6)
    s = metrics.summary(y, p, beta=0.17, threshold=0.5, steps=50)
    json.dumps(s, allow_nan=False)  # strict JSON: no NaN/inf, only built-in types
    assert s["fbeta"] == pytest.approx(metrics.fbeta(y, p))
    assert s["i_auc"] == pytest.approx(metrics.i_auc(y, p, steps=50))
    assert s["auroc"] == pytest.approx(metrics.auroc(y, p))
    assert s["tpr0"] == metrics.tpr_at_fp(y, p, 0) and s["tpr10"] == metrics.tpr_at_fp(y, p, 10)
    assert s["confusion"] == metrics.confusion(y, p)
    assert len(s["curves"]["thresholds"]) == 51 and len(s["curves"]["roc_fpr"]) == len(s["curves"]["roc_tpr"])
    single = metrics.summary([0, 0, 0], [0.1, 0.6, 0.2])
    json.dumps(single, allow_nan=False)
    assert single["auroc"] is None and single["curves"]["roc_fpr"] == []


def test_selection_scores_and_directions():
    """The lens task's per-chunk selection values are this module's metrics (they replaced
    ``metrics.selection_score``/``SELECTION_METRICS``: the vocabulary now lives in the task)."""
    from lenshpc.config import load_config
    from lenshpc.tasks.lens import LensTask

    y, p = _random_case(7)
    row = LensTask(load_config(overrides=["loss.name=fbeta_soft"])).chunk_metrics(y, p)
    assert row["val_fbeta_auc"] == pytest.approx(metrics.i_auc(y, p))
    assert row["val_soft_fbeta"] == pytest.approx(metrics.soft_fbeta(y, p))
    assert row["val_accuracy"] == pytest.approx(metrics.accuracy(y, p))
    assert row["val_auroc"] == pytest.approx(metrics.auroc(y, p))
    assert row["val_loss"] == pytest.approx(1 - metrics.soft_fbeta(y, p), abs=1e-5)  # the fbeta_soft loss
    assert list(row) == list(LensTask.val_metrics())
    assert not LensTask.higher_is_better("val_loss")
    assert all(LensTask.higher_is_better(m) for m in LensTask.val_metrics() if m != "val_loss")
    with pytest.raises(ConfigError, match="Did you mean 'val_auroc'"):
        load_config(overrides=["selection.metric=val_auc"])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(DataError, match="length"):
        metrics.accuracy([1, 0], [0.5])
    with pytest.raises(DataError, match="0 or 1"):
        metrics.precision([2, 0], [0.5, 0.1])
    with pytest.raises(DataError, match="NaN"):
        metrics.auroc([1, 0], [np.nan, 0.1])
    # (N, 1) columns are flattened like (N,) vectors; booleans are labels too.
    assert metrics.accuracy(np.array([[1], [0]]), np.array([[0.7], [0.2]])) == 1.0
    assert metrics.recall(np.array([True, False]), [0.7, 0.2]) == 1.0


def test_roc_curve_in_the_summary_is_thinned_to_real_vertices():
    rng = np.random.default_rng(8)
    n = 20_000
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    full_fpr, full_tpr, _ = skm.roc_curve(y, p)
    assert full_fpr.size > 1000
    s = metrics.summary(y, p, roc_points=200)
    fpr, tpr = np.array(s["curves"]["roc_fpr"]), np.array(s["curves"]["roc_tpr"])
    assert 2 <= fpr.size <= 201
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    full = set(zip(full_fpr.tolist(), full_tpr.tolist()))
    assert all(pt in full for pt in zip(fpr.tolist(), tpr.tolist()))  # vertices of the real curve
    assert np.trapezoid(tpr, fpr) == pytest.approx(s["auroc"], abs=0.01)
    assert s["auroc"] == pytest.approx(skm.roc_auc_score(y, p))  # from the full data


# ----------------------------------------------------------------------- validation-tuned threshold
def _brute_best_fbeta(y, p, beta):
    """Fβ at every distinct score by direct counting (independent of sklearn's precision_recall_curve)."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    best = (-1.0, None)
    for t in np.unique(p):
        pred = p >= t
        tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
        prec, rec = tp / (tp + fp), tp / int((y == 1).sum())
        f = (1 + beta**2) * prec * rec / (beta**2 * prec + rec) if prec + rec else 0.0
        if f > best[0]:
            best = (f, t)
    return best


def test_best_fbeta_threshold_is_the_exact_maximum_over_the_scores():
    rng = np.random.default_rng(14)
    for _ in range(40):
        n = int(rng.integers(6, 200))
        y = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        p = np.round(rng.random(n) * 0.45, 2)  # ties and every score below 0.5
        t, f = metrics.best_fbeta_threshold(y, p, beta=0.17)
        f_brute, t_brute = _brute_best_fbeta(y, p, 0.17)
        assert f == pytest.approx(f_brute, abs=1e-12)
        # the midpoint cut classifies the validation set exactly like the maximising score
        np.testing.assert_array_equal(p >= t, p >= t_brute)
        assert metrics.fbeta(y, p, beta=0.17, threshold=t) == pytest.approx(f_brute, abs=1e-12)


def test_tuned_summary_rescues_a_model_that_scores_everything_below_one_half():
    # A perfectly ranking model whose scores never reach 0.5: Fβ = 0 at t = 0.5, 1 at the tuned cut.
    y = np.array([0, 0, 0, 1, 1, 1])
    p_val, p_test = np.array([0.1, 0.12, 0.2, 0.3, 0.35, 0.4]), np.array([0.05, 0.15, 0.22, 0.28, 0.33, 0.45])
    assert metrics.fbeta(y, p_test, threshold=0.5) == 0.0
    out = metrics.tuned_summary(y, p_val, y, p_test, beta=0.17)
    assert out["threshold_tuned"] == pytest.approx((0.2 + 0.3) / 2)  # midpoint of the last non-lens and first lens
    assert out["fbeta_tuned"] == out["accuracy_tuned"] == out["precision_tuned"] == out["recall_tuned"] == 1.0
    assert out["confusion_tuned"] == {"tp": 3, "fp": 0, "fn": 0, "tn": 3}
    assert out["threshold_tuning"]["val_fbeta"] == 1.0 and out["threshold_tuning"]["n_val"] == 6
    # the test metrics at t* are the module's own thresholded metrics at that threshold
    at = metrics.at_threshold(y, p_test, out["threshold_tuned"], beta=0.17)
    assert {k: out[f"{k}_tuned"] for k in metrics.TUNED_METRICS} == {k: at[k] for k in metrics.TUNED_METRICS}


def test_tuned_summary_of_a_single_class_validation_set_is_null():
    assert metrics.best_fbeta_threshold([1, 1], [0.3, 0.4]) is None
    out = metrics.tuned_summary([1, 1], [0.3, 0.4], [0, 1], [0.2, 0.6])
    assert out["threshold_tuned"] is None and out["fbeta_tuned"] is None and out["threshold_tuning"]["n_val"] == 2
    json.dumps(out)  # JSON-ready
