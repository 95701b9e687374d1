"""``lenshpc ensemble`` with input-dependent ensembles on the real local SLURM (tests/cluster/slurm-local.sh).

The dynamic ensemblers train as SLURM jobs (``--executor slurm``: submitit, checkpointable); the command
returns after submitting, ``lenshpc status`` follows the jobs, and running the same command again once
they are done skips them and writes the full report.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_input_dependent_ensembles_train_as_slurm_jobs(job_env, slurm, tiny_sweep, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "slurm_ide", "runs": str(tiny_sweep), "out": str(tmp_path / "out"), "seeds": [0, 1],
        "hpc": {"cpus_per_task": 1, "mem_gb": 2, "time_min": 10, "gpus_per_node": 0},
        "ensembles": [
            {"name": "NM2", "method": "nelder_mead", "members": ["bce", "f1_soft"]},
            {"name": "IDE2", "method": "input_dependent", "members": ["bce", "f1_soft"],
             "train": {"chunks": 2, "checkpoint_every": 1, "patience": 0}},
        ]}, sort_keys=False))
    cmd = [sys.executable, "-m", "lenshpc", "ensemble", str(spec), "--quiet"]
    first = subprocess.run([*cmd, "--executor", "slurm"], cwd=tmp_path, env=job_env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert "submitted 2 input-dependent ensemble job(s) to SLURM" in first.stdout + first.stderr
    out = tmp_path / "out"
    assert (out / "NM2" / "seed0" / "DONE").is_file()  # cheap methods run at once
    record = json.loads((out / "sweep.json").read_text())
    job_ids = [r["jobs"][-1]["job_id"] for r in record["runs"] if r["group"] == "IDE2"]
    assert len(job_ids) == 2 and all(j["executor"] == "slurm" for r in record["runs"] for j in r["jobs"])

    slurm.wait(*job_ids, timeout=500)
    for job_id in job_ids:
        assert set(slurm.states(job_id).values()) == {"COMPLETED"}, (out / ".submitit").as_posix()
    for seed in (0, 1):
        run = out / "IDE2" / f"seed{seed}"
        assert (run / "DONE").is_file() and (run / "model.keras").is_file()
        ens = json.loads((run / "ensemble.json").read_text())
        assert ens["method"] == "input_dependent" and len(ens["members"]) == 2

    status = subprocess.run([sys.executable, "-m", "lenshpc", "status", str(out)], cwd=tmp_path, env=job_env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "IDE2" in status.stdout, status.stdout + status.stderr

    again = subprocess.run(cmd, cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 ensemble run(s) computed" in again.stdout or "already done" in again.stdout
    report = (out / "report.md").read_text()
    assert "| IDE2 |" in report and "| NM2 |" in report
