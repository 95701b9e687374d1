"""`lenshpc quickstart` end to end: simulate → local-executor sweep → reduce, then a re-run that skips everything.

Runs the real console command in a fresh working directory with no config files (as from a fresh clone).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_quickstart_end_to_end_and_rerun_skips(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "lenshpc", "quickstart", "--out", str(out), "--parallel", "2"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    first = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[1/3]" in proc.stdout and "[3/3]" in proc.stdout
    assert "| bce |" in proc.stdout and "| fbeta_soft |" in proc.stdout and "ddof = 1" in proc.stdout
    report = (out / "report.md").read_text()
    assert "6 finished, 0 failed" in report and "| Model | Accuracy | Fβ | Precision | Recall |" in report
    for stem in ("fbeta_curves", "prediction_histograms", "roc_curves"):
        for ext in ("png", "pdf"):
            assert (out / "plots" / f"{stem}.{ext}").stat().st_size > 5000
    for loss in ("bce", "fbeta_soft"):
        for seed in range(3):
            assert (out / "runs" / loss / f"seed{seed}" / "DONE").exists()
    assert (out / "report.csv").exists() and (out / "report.tex").exists()

    t0 = time.time()
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "exists, skipped" in again.stdout and "6 run(s) already finished" in again.stdout
    assert time.time() - t0 < first / 2
