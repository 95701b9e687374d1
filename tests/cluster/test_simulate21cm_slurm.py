"""``lenshpc simulate21cm`` on the real local SLURM cluster (tests/cluster/slurm-local.sh), as CI runs it (root).

* ``--executor slurm --shards 2``: a submitit array of realisation shards, waited for, then merged here;
* ``jobs/simulate21cm_array.sh`` (plain sbatch): a 3-task shard array + the ``afterok`` merge job;

both give a file byte-identical to the one-shard inline run of the same grid (``c21_tiny``), with real 21cmFAST.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _env(job_env: dict) -> dict:
    # The jobs import this checkout's lenshpc (a worktree or a clone without `pip install -e`).
    return job_env | {"PYTHONPATH": ":".join(p for p in (str(REPO), job_env.get("PYTHONPATH", "")) if p)}


def test_submitit_slurm_executor(job_env, slurm, c21_tiny, c21_tiny_args, tmp_path):
    out = tmp_path / "c21.h5"
    proc = subprocess.run([sys.executable, "-m", "lenshpc", "simulate21cm", "--out", str(out), *c21_tiny_args,
                           "--executor", "slurm", "--shards", "2", "--mem-gb", "2", "--time-min", "10"],
                          cwd=tmp_path, env=_env(job_env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _md5(out) == _md5(c21_tiny)
    assert "3 realisation(s) computed" in proc.stdout


def test_sbatch_array_and_merge_job(job_env, slurm, c21_tiny, c21_tiny_args, tmp_path):
    out = tmp_path / "c21.h5"
    env = _env(job_env) | {"SIM21_SHARDS": "3", "SIM21_SBATCH": "--cpus-per-task=1 --mem=2G --time=00:10:00"}
    proc = subprocess.run(["bash", str(REPO / "jobs" / "simulate21cm_array.sh"), str(out), *c21_tiny_args],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    array_id = re.search(r"^simulate21cm shards (\d+)", proc.stdout, re.M).group(1)
    merge_id = re.search(r"^simulate21cm merge (\d+)", proc.stdout, re.M).group(1)
    slurm.wait(array_id, merge_id, timeout=500)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*.out")))
    assert set(slurm.states(array_id).values()) == {"COMPLETED"}, logs
    assert slurm.states(merge_id) == {merge_id: "COMPLETED"}, logs
    assert _md5(out) == _md5(c21_tiny)
