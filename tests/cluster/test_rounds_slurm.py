"""``lenshpc rounds`` on the real local SLURM cluster: a tiny 2-round loop as SLURM jobs.

Each round's training is a submitit SLURM job and each ranking a 2-shard SLURM array; mining runs in the
driver.  Data: the project's simulated ``small_population`` and a mock survey with tracers made from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_two_rounds_as_slurm_jobs(job_env, slurm, small_population, tmp_path):
    from lenshpc.data.survey import mock_survey

    survey = tmp_path / "survey.h5"
    mock_survey(small_population, survey, n_tracers=6, seed=0)
    spec = tmp_path / "rounds.yaml"
    spec.write_text(yaml.safe_dump({
        "out": "out", "config": str(REPO / "configs" / "tiny.yaml"), "catalogue": str(survey),
        "tracers": "is_tracer", "rounds": 2, "mine_top": 8, "fraction": 0.5, "shards": 2,
        "set": {"data.path": str(small_population), "data.chunk_size": 64, "data.val_size": 32, "train.chunks": 2,
                "train.batch_size": 32, "train.patience": 0, "data.prefetch": 0},
        "fine_tune": {"train.chunks": 1, "train.lr_multipliers": {"stem_*": 0.1}}}))
    cmd = [sys.executable, "-m", "lenshpc", "rounds", str(spec), "--executor", "slurm", "--cpus-per-task", "1",
           "--mem-gb", "2", "--time", "10", "--gpus-per-node", "0"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    jobs = sorted(p.name for p in (out / "round1" / "submitit").iterdir() if p.is_dir())
    assert jobs and all(slurm.states(j)[j] == "COMPLETED" for j in jobs)
    assert len(list((out / "round2" / "rank-mined" / "shards").glob("scores-*-of-0002.h5"))) == 2
    r2 = json.loads((out / "round2" / "run" / "metrics.json").read_text())
    assert r2["start_from"]["path"] == str(out / "round1" / "run")
    assert r2["config"]["data.extra_negatives"][0]["path"] == str(out / "round1" / "hardneg.h5")
    rows = (out / "rounds.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("round,arm,catalogue,ranking_performance")
    again = subprocess.run(cmd, cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("skipping") == 2, again.stderr[-2000:]
