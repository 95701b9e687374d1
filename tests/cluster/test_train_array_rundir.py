"""`jobs/train_array.sh` names run dirs as lenshpc resolves them and lets lenshpc decide about DONE runs
(issue 11, item 2.11), on the real local SLURM cluster with the issue's exact reproduction:

    sbatch --array=0 --ntasks-per-node=2 jobs/train_array.sh configs/tiny.yaml --set train.chunks=6 --set name=hvd2

after a finished 15-chunk run of configs/tiny.yaml used to answer "seed 0 already complete
(runs/tiny/seed0/DONE): nothing to do".  (The data-size overrides come first so the run takes seconds.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"


def test_set_name_names_the_run_dir_and_done_is_left_to_lenshpc(slurm, horovod, job_env, small_population, tmp_path):
    from lenshpc.config import load_config
    from lenshpc.train import run_training

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    small = [f"data.path={small_population}", "data.chunk_size=64", "data.val_size=32", "data.test_size=0",
             "data.prefetch=0", "augment.enabled=false", "train.batch_size=16", "train.patience=0"]
    first = tmp_path / "runs" / "tiny" / "seed0"
    run_training(load_config(tmp_path / "configs" / "tiny.yaml", overrides=[*small, "train.chunks=15"]), first,
                 show_progress=False)
    before = (first / "metrics.json").read_bytes()
    (tmp_path / "logs").mkdir()

    sets = [a for kv in small for a in ("--set", kv)]
    renamed = slurm.sbatch("--array=0", "--ntasks-per-node=2", "--cpus-per-task=1", str(JOBS / "train_array.sh"),
                           "configs/tiny.yaml", *sets, "--set", "train.chunks=6", "--set", "name=hvd2",
                           cwd=tmp_path, env=job_env)
    same_name = slurm.sbatch("--array=0", "--cpus-per-task=1", str(JOBS / "train_array.sh"), "configs/tiny.yaml",
                             *sets, "--set", "train.chunks=6", cwd=tmp_path, env=job_env)
    slurm.wait(renamed, same_name, timeout=400)

    log = (tmp_path / "logs" / f"lenshpc-train-{renamed}_0.out").read_text()
    assert set(slurm.states(renamed).values()) == {"COMPLETED"}, log[-4000:]
    assert "nothing to do" not in log and "runs/hvd2/seed0" in log, log[-4000:]
    run = tmp_path / "runs" / "hvd2" / "seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "DONE").is_file() and metrics["chunks_trained"] == 6 and metrics["world_size"] == 2
    assert (first / "metrics.json").read_bytes() == before, "the finished 15-chunk run must be untouched"

    # Same name, another config: the script no longer answers for lenshpc; lenshpc compares the configs.
    log = (tmp_path / "logs" / f"lenshpc-train-{same_name}_0.out").read_text()
    assert "nothing to do" not in log and "already complete" not in log, log[-4000:]
    assert "complete (DONE); skipping" in log or "different config" in log, log[-4000:]
    assert (first / "metrics.json").read_bytes() == before
