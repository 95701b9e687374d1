"""``lenshpc rank`` on the real local SLURM cluster (tests/cluster/slurm-local.sh), as CI runs it (root).

* ``jobs/rank_array.sh`` (plain sbatch): a 2-task shard array + the ``afterok`` merge job;
* ``lenshpc rank --executor slurm --shards 2`` (a submitit array, waited for, then merged);

both write a ``ranked.csv`` byte-identical to a 1-shard ranking in this process.  The catalogue is a
mock survey (``lenshpc.data.survey.mock_survey``: held-out negatives + tracer mock lenses) and the
model a ``tiny_sweep`` run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--tracers", "is_tracer", "--top", "9", "--batch-size", "16"]


@pytest.fixture(scope="module")
def survey(analysis_population, tmp_path_factory) -> Path:
    from lenshpc.data.survey import mock_survey

    out = tmp_path_factory.mktemp("survey") / "survey.h5"
    mock_survey(analysis_population, out, n_tracers=12, alpha_min=0.3, alpha_max=0.8, seed=4)
    return out


@pytest.fixture(scope="module")
def reference(tiny_sweep, survey, tmp_path_factory) -> str:
    from lenshpc.cli import main

    out = tmp_path_factory.mktemp("rank_ref") / "rank"
    assert main(["rank", str(tiny_sweep / "bce" / "seed0"), str(survey), "--out", str(out), *ARGS]) == 0
    return (out / "ranked.csv").read_text()


def test_sbatch_array_and_merge_job(job_env, slurm, tiny_sweep, survey, reference, tmp_path):
    out = tmp_path / "rank"
    env = job_env | {"RANK_SHARDS": "2", "RANK_SBATCH": "--cpus-per-task=1 --mem=2G --time=00:10:00"}
    proc = subprocess.run(["bash", str(REPO / "jobs" / "rank_array.sh"), str(tiny_sweep / "bce" / "seed0"),
                           str(survey), "--out", str(out), *ARGS],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    array_id = re.search(r"^rank shards (\d+)", proc.stdout, re.M).group(1)
    merge_id = re.search(r"^rank merge (\d+)", proc.stdout, re.M).group(1)
    slurm.wait(array_id, merge_id, timeout=400)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*.out")))
    assert set(slurm.states(array_id).values()) == {"COMPLETED"}, logs
    assert slurm.states(merge_id) == {merge_id: "COMPLETED"}, logs
    assert (out / "ranked.csv").read_text() == reference
    assert len(list((out / "shards").glob("scores-*-of-0002.h5"))) == 2
    metrics = json.loads((out / "rank_metrics.json").read_text())
    assert metrics["n_tracers"] == 12 and (out / "top.png").is_file()


def test_submitit_slurm_executor(job_env, slurm, tiny_sweep, survey, reference, tmp_path):
    out = tmp_path / "rank"
    proc = subprocess.run([sys.executable, "-m", "lenshpc", "rank", str(tiny_sweep / "bce" / "seed0"), str(survey),
                           "--out", str(out), "--executor", "slurm", "--shards", "2", "--cpus-per-task", "1",
                           "--mem-gb", "2", "--time", "10", "--gpus-per-node", "0", *ARGS],
                          cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "ranked.csv").read_text() == reference
