"""`lenshpc quickstart --task cosmo21cm` end to end, as a user runs it from a fresh clone: real 21cmFAST boxes →
autoencoder → CNN with / without the trained encoder and the dense baseline × 3 seeds → the reduce report with the
PCA baseline; then a re-run that skips the finished work.

The recipe is run unchanged (its figures are the ones README.md and docs/cosmo21cm.md quote); the assertion on
the ordering CNN > dense baseline > chance is the issue's "done when", checked on the seeded runs' own numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_quickstart_cosmo21cm_end_to_end(cosmo21cm, tmp_path):
    out = tmp_path / "qs21"
    cmd = [sys.executable, "-m", "lenshpc", "quickstart", "--task", "cosmo21cm", "--out", str(out), "--parallel", "2"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[4/4] report" in proc.stdout and "chance = 0.333" in proc.stdout

    def accuracies(group):
        return [json.loads((out / "runs" / group / f"seed{k}" / "metrics.json").read_text())["accuracy"]
                for k in range(3)]

    cnn, dense = np.mean(accuracies("cnn")), np.mean(accuracies("dense"))
    assert cnn > dense > 1 / 3, (cnn, dense)
    report = (out / "report.md").read_text()
    assert "PCA + logistic-regression baseline" in report and "9 finished, 0 failed" in report
    assert (out / "confusion_matrix.png").stat().st_size > 5000

    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "exists, skipped" in again.stdout and "9 run(s) already finished" in again.stdout
