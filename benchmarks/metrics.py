"""Benchmark: the test-set metric summary (``lenshpc.metrics.summary``) against the obvious loop.

Scores a synthetic test set the size of the Lens Finding Challenge's (100,000 images) and
prints seconds per call and the speed-up over a baseline measured in the same run: one
scikit-learn ``precision_score``/``recall_score``/``fbeta_score`` call per threshold of the
101-point grid (how the thesis code and most notebooks compute Fβ curves), plus AUROC and
TPR0/TPR10 from ``roc_curve``.  Also checks that both give the same numbers.

Usage: ``python benchmarks/metrics.py [--n 100000] [--steps 100] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def baseline(y: np.ndarray, p: np.ndarray, beta: float, steps: int) -> dict:
    from sklearn import metrics as skm

    thresholds = np.linspace(0, 1, steps + 1)
    curve = {"fbeta": [], "precision": [], "recall": []}
    for t in thresholds:
        pred = (p >= t).astype(int)
        curve["fbeta"].append(skm.fbeta_score(y, pred, beta=beta, zero_division=0))
        curve["precision"].append(skm.precision_score(y, pred, zero_division=0))
        curve["recall"].append(skm.recall_score(y, pred, zero_division=0))
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    n_neg = int((y == 0).sum())
    fps = np.round(fpr * n_neg)
    return {"i_auc": float(np.mean(curve["fbeta"][:-1])), "auroc": float(skm.roc_auc_score(y, p)),
            "tpr0": float(tpr[fps == 0].max()), "tpr10": float(tpr[fps <= 10].max()), "curve": curve}


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="test-set size (challenge: 100,000)")
    parser.add_argument("--steps", type=int, default=100, help="threshold steps S (thesis: 100)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    from lenshpc import metrics

    rng = np.random.default_rng(0)
    y = (rng.uniform(size=args.n) < 0.5).astype(np.int64)
    p = np.where(y == 1, rng.beta(4, 1, args.n), rng.beta(1, 4, args.n)).astype(np.float32)

    ours = metrics.summary(y, p, beta=0.17, steps=args.steps)
    ref = baseline(y, p, 0.17, args.steps)
    for key in ("i_auc", "auroc", "tpr0", "tpr10"):
        assert abs(ours[key] - ref[key]) < 1e-9, (key, ours[key], ref[key])
    assert np.allclose(ours["curves"]["fbeta"], ref["curve"]["fbeta"])

    t_base = best_of(lambda: baseline(y, p, 0.17, args.steps), args.repeat)
    t_summary = best_of(lambda: metrics.summary(y, p, beta=0.17, steps=args.steps), args.repeat)
    t_curve = best_of(lambda: metrics.fbeta_curve(y, p, beta=0.17, steps=args.steps), args.repeat)
    print(f"n = {args.n:,} test scores, S = {args.steps}, best of {args.repeat}")
    print("| method | seconds | vs baseline |")
    print("|---|---:|---:|")
    print(f"| baseline (sklearn per threshold + roc_curve) | {t_base:.3f} | 1.0× |")
    print(f"| `metrics.summary` (everything in metrics.json) | {t_summary:.3f} | {t_base / t_summary:.0f}× |")
    print(f"| `metrics.fbeta_curve` (the Fβ grid behind I_AUC) | {t_curve:.4f} | {t_base / t_curve:.0f}× |")


if __name__ == "__main__":
    main()
