"""The 21-cm task through the same HPC machinery as the lens task, on the real local SLURM cluster and a real
(tiny) 21cmFAST dataset (``c21_dataset``):

* a 21-cm sweep (CNN and dense baseline × 2 seeds) as one submitit job array, then ``lenshpc reduce`` with the
  21-cm sections (per-class recall, confusion matrix, PCA baseline);
* ``sbatch jobs/train_array.sh configs/cosmo21cm/classify.yaml`` unchanged, with 2 Horovod ranks per array task
  (each rank holds its own share of the train split).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lenshpc.cli import main

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SMALL = {"data.chunk_size": 64, "data.prefetch": 0, "train.chunks": 3, "train.batch_size": 32,
         "train.patience": 0, "train.checkpoint_every": 1, "distributed.backend": "none"}


def test_cosmo21cm_sweep_on_slurm_reduces_with_its_sections(slurm_sweep, c21_dataset, capsys):
    base = REPO / "configs" / "cosmo21cm" / "classify.yaml"
    lines = ["name: c21_slurm", f"base: {base}", "seeds: 0-1", "set:",
             *(f"  {k}: {json.dumps(v)}" for k, v in SMALL.items()), f"  data.path: {c21_dataset}", "grid:",
             "  - name: cnn", "  - name: dense", "    model.name: dense21", "    task.params.crop: 16",
             "hpc: {time_min: 15, cpus_per_task: 1, mem_gb: 2, array_parallelism: 4}"]
    out, record, _ = slurm_sweep("c21_slurm", lines)
    assert len({r["jobs"][0]["job_id"].split("_")[0] for r in record["runs"]}) == 1, "one job array"
    for r in record["runs"]:
        run_dir = out / r["run_dir"]
        assert (run_dir / "DONE").exists(), (out / r["jobs"][0]["log"]).read_text()[-2000:]
        assert json.loads((run_dir / "metrics.json").read_text())["task"]["name"] == "cosmo21cm"
    assert main(["status", str(out)]) == 0
    assert "4 runs: 4 done" in capsys.readouterr().out
    assert main(["reduce", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| cnn |" in report and "| dense |" in report and "macro-F1" in report
    assert "Per-class recall" in report and "| PCA + logistic regression (redshift, global) | 0-1 |" in report
    assert (out / "confusion_matrix.png").stat().st_size > 0


def test_train_array_runs_cosmo21cm_with_two_horovod_ranks(slurm, horovod, job_env, c21_dataset, tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "logs").mkdir()
    sets = [a for k, v in {**SMALL, "data.chunk_size": 128, "distributed.backend": "auto"}.items()
            for a in ("--set", f"{k}={v}")]
    job = slurm.sbatch("--array=0", "--ntasks-per-node=2", "--cpus-per-task=1", str(REPO / "jobs" / "train_array.sh"),
                       "configs/cosmo21cm/classify.yaml", "--set", f"data.path={c21_dataset}", *sets,
                       cwd=tmp_path, env=job_env)
    slurm.wait(job, timeout=400)
    log = (tmp_path / "logs" / f"lenshpc-train-{job}_0.out").read_text()
    assert set(slurm.states(job).values()) == {"COMPLETED"}, log[-4000:]
    run = tmp_path / "runs" / "cosmo21cm_cnn" / "seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "DONE").is_file() and metrics["world_size"] == 2 and metrics["chunks_trained"] == 3
    assert metrics["task"]["name"] == "cosmo21cm" and 0 <= metrics["accuracy"] <= 1
