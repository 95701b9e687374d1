"""A sweep through submitit against the real local SLURM (tests/cluster/slurm-local.sh): a job
array of three tiny runs completes, a second sweep submits nothing, status and reduce collate it.
"""

from __future__ import annotations

import json

import pytest

from lenshpc.cli import main

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = {
    "data.chunk_size": 32, "data.val_size": 32, "data.test_size": 0, "data.prefetch": 0,
    "model.name": "tiny_resnet", "train.chunks": 2, "train.batch_size": 16, "train.patience": 0,
    "train.checkpoint_every": 1, "distributed.backend": "none", "augment.enabled": False,
}


def test_sweep_on_slurm_completes_and_reduces(slurm_sweep, small_population, tmp_path, capsys):
    lines = ["name: slurm_sweep", "seeds: 0-2", "set:", *(f"  {k}: {json.dumps(v)}" for k, v in TINY.items()),
             f"  data.path: {small_population}", "grid:", "  - name: tiny",
             "hpc: {time_min: 15, cpus_per_task: 1, mem_gb: 2, array_parallelism: 3}"]
    sweep = tmp_path / "slurm_sweep.yaml"
    out, record, text = slurm_sweep("slurm_sweep", lines)
    job_ids = [r["jobs"][0]["job_id"] for r in record["runs"]]
    assert len({j.split("_")[0] for j in job_ids}) == 1, "one job array"
    assert sorted(j.split("_")[1] for j in job_ids) == ["0", "1", "2"]
    assert "SLURM job array" in text
    for r in record["runs"]:
        run_dir = out / r["run_dir"]
        assert (run_dir / "DONE").exists(), (out / r["jobs"][0]["log"]).read_text()[-2000:]
        assert json.loads((run_dir / "metrics.json").read_text())["seed"] == r["seed"]

    # idempotent: nothing new is submitted
    assert main(["sweep", str(sweep), "--executor", "slurm", "--out", str(out)]) == 0
    assert "0 submitted" in capsys.readouterr().out

    assert main(["status", str(out)]) == 0
    assert "3 runs: 3 done" in capsys.readouterr().out
    assert main(["reduce", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| tiny |" in report and "3 finished" in report
    assert (out / "plots" / "fbeta_curves.png").stat().st_size > 0
