"""`lenshpc quickstart` end to end: simulate → local-executor sweep → reduce → analysis (ensembles, Grad-CAM,
information content, ranking), then a re-run that skips everything.

Runs the real console command in a fresh working directory with no config files (as from a fresh clone), with
``--set train.chunks=40`` (a fifth of the recipe's 200 chunks) to keep the test's time; the full recipe's figures
(test AUROC, time) are measured and recorded in docs/science.md and README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_quickstart_end_to_end_and_rerun_skips(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "lenshpc", "quickstart", "--out", str(out), "--parallel", "2", "--set", "train.chunks=40"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    first = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[1/4]" in proc.stdout and "[4/4] analysis" in proc.stdout
    assert "| bce |" in proc.stdout and "| f1_soft |" in proc.stdout and "ddof = 1" in proc.stdout
    report = (out / "report.md").read_text()
    assert "6 finished, 0 failed" in report and "| Model | Accuracy | Fβ | Precision | Recall |" in report
    for stem in ("fbeta_curves", "prediction_histograms", "roc_curves"):
        for ext in ("png", "pdf"):
            assert (out / "plots" / f"{stem}.{ext}").stat().st_size > 5000
    for loss in ("bce", "f1_soft"):
        for seed in range(3):
            assert (out / "runs" / loss / f"seed{seed}" / "DONE").exists()
    assert (out / "report.csv").exists() and (out / "report.tex").exists()
    # step 4: every analysis verb ran on the sweep's output
    ens = (out / "ensembles" / "report.md").read_text()
    for row in ("| NM2 |", "| NM2_simplex |", "| IDE2 |", "| average |", "| committee_bce |", "| bce (member) |"):
        assert row in ens, row
    for name, seeds in (("NM2", 3), ("IDE2", 3), ("committee_bce", 1)):
        assert len(list((out / "ensembles" / name).glob("seed*/DONE"))) == seeds, name
    bce0 = out / "runs" / "bce" / "seed0"
    assert list((bce0 / "gradcam").glob("*.png")) and (bce0 / "gradcam" / "heatmaps.h5").is_file()
    info = json.loads((bce0 / "infocontent" / "summary.json").read_text())
    metrics = json.loads((bce0 / "metrics.json").read_text())
    assert info["tp"] == metrics["confusion"]["tp"] and info["n_test"] == metrics["n_test"]
    ranked = (out / "rank" / "ranked.csv").read_text().splitlines()
    assert len(ranked) == 1 + 620  # header + 600 held-out negatives (val + test splits) + 20 tracers
    rank_metrics = json.loads((out / "rank" / "rank_metrics.json").read_text())
    assert rank_metrics["n_tracers"] == 20 and rank_metrics["ranking_performance"] > 0.2

    t0 = time.time()
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "exists, skipped" in again.stdout and "6 run(s) already finished" in again.stdout
    assert "0 ensemble run(s) computed, 13 already done" in again.stdout
    assert time.time() - t0 < first / 2
