"""The job templates on the real local SLURM cluster (tests/cluster/slurm-local.sh), as CI runs them (root).

* `jobs/submit_study.sh` → a 3-task `train_array.sh` array + the dependent `reduce.sh`: three complete run dirs, the
  reducer's report;
* `srun -n 2 --mpi=pmix` Horovod inside a batch job (the lenshpc.distributed checks of test_horovod.py), and a 2-rank
  `lenshpc train` through `train_array.sh` (Horovod picked up from the srun step) giving a normal run dir;
* preemption: SIGUSR1 mid-run → checkpoint, exit 3, `scontrol requeue`, resume → the same metrics as an
  uninterrupted run of the same seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
# Keys that legitimately differ between an interrupted and an uninterrupted run.
VOLATILE = {"timings", "versions", "provenance"}


def _job_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LENSHPC_", "PYTEST_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1", LENSHPC_NO_PROGRESS="1", **extra)
    return env


def _log_tail(tmp_path: Path) -> str:
    logs = sorted((tmp_path / "logs").glob("*.out")) if (tmp_path / "logs").is_dir() else []
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in logs)


def _stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def test_study_array_and_dependent_reducer(slurm, tiny_config, run_files, tmp_path):
    cfg = tiny_config()
    out = subprocess.run(["bash", str(JOBS / "submit_study.sh"), "--array=0-2", "--cpus-per-task=1", "--time=00:15:00",
                          str(cfg)], cwd=tmp_path, env=_job_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    train_id = lines["train"].split()[-1]
    reduce_id = lines["reduce"]
    slurm.wait(train_id, reduce_id, timeout=400)

    states = slurm.states(train_id)
    assert sorted(states) == [f"{train_id}_{i}" for i in range(3)], states
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{_log_tail(tmp_path)}"
    for seed in range(3):
        run = tmp_path / "runs" / "tiny" / f"seed{seed}"
        assert run_files <= {p.name for p in run.iterdir()}, _log_tail(tmp_path)
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["seed"] == seed and metrics["world_size"] == 1
        slurm_ids = metrics["provenance"]["slurm"]  # `lenshpc train` under srun in an array task records its ids
        assert slurm_ids["array_job_id"] == train_id and slurm_ids["array_task_id"] == str(seed)
        assert slurm_ids["job_id"] and "step_id" in slurm_ids and slurm_ids["node"]
        assert (tmp_path / "logs" / f"train-tiny-{train_id}_{seed}.out").is_file()
    assert slurm.states(reduce_id) == {reduce_id: "COMPLETED"}, _log_tail(tmp_path)
    report = (tmp_path / "runs" / "report.md").read_text()
    assert "3 finished" in report or "| 3 |" in report, report
    assert "## Provenance" in report and "## Warnings" not in report  # one code version made all three


def test_srun_pmix_horovod_inside_batch_job(slurm, horovod, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = tmp_path / "hvd.sh"
    script.write_text(f"#!/bin/bash\nset -euo pipefail\nsrun --mpi=pmix {sys.executable} "
                      f"{REPO / 'tests' / 'cluster' / 'test_horovod.py'} worker {out_dir}\n")
    job = slurm.sbatch("--ntasks=2", "--cpus-per-task=1", f"--output={tmp_path}/hvd.out", str(script), cwd=tmp_path,
                       env=_job_env())
    slurm.wait(job, timeout=240)
    log = (tmp_path / "hvd.out").read_text()
    assert slurm.states(job) == {job: "COMPLETED"}, log[-4000:]
    from test_horovod import _check  # same directory: the worker's result checks

    _check(out_dir, log)


def test_two_rank_training_through_job_script(slurm, horovod, tiny_config, run_files, tmp_path):
    """train_array.sh with 2 tasks: srun --mpi=pmix starts 2 Horovod ranks; rank 0 alone writes a normal run dir."""
    cfg = tiny_config(chunks=2)
    (tmp_path / "logs").mkdir()
    job = slurm.sbatch("--array=0", "--ntasks-per-node=2", "--cpus-per-task=1", str(JOBS / "train_array.sh"), str(cfg),
                       cwd=tmp_path, env=_job_env())
    slurm.wait(job, timeout=300)
    assert set(slurm.states(job).values()) == {"COMPLETED"}, _log_tail(tmp_path)
    run = tmp_path / "runs" / "tiny" / "seed0"
    assert {p.name for p in run.iterdir()} == run_files, "rank 1 must not write into the run dir"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["chunks_trained"] == 2
    assert "Horovod: 2 ranks" in (run / "train.log").read_text() or metrics["world_size"] == 2


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def _history_rows(run: Path) -> int:
    try:
        return max(0, len((run / "history.csv").read_text().strip().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def test_preempted_task_requeues_and_resumes_to_identical_metrics(slurm, tiny_config, tmp_path):
    chunks = 6
    cfg = tiny_config(chunks=chunks)
    (tmp_path / "logs").mkdir()
    common = ["--array=0", "--cpus-per-task=1", str(JOBS / "train_array.sh"), str(cfg)]
    interrupted = slurm.sbatch(*common, cwd=tmp_path, env=_job_env(LENSHPC_RESULTS=str(tmp_path / "a")))
    straight = slurm.sbatch(*common, cwd=tmp_path, env=_job_env(LENSHPC_RESULTS=str(tmp_path / "b")))
    run_a = tmp_path / "a" / "tiny" / "seed0"

    # SIGUSR1 to the running step (what --signal=USR1@120 does before the time limit), after the first chunk so the
    # signal lands mid-run with lenshpc's handler installed.
    _wait_for(lambda: _history_rows(run_a) >= 1, 240, "the first chunk of the interrupted run")
    subprocess.run(["scancel", "--signal=USR1", f"{interrupted}_0"], check=True)
    slurm.wait(interrupted, straight, timeout=400)

    log = (tmp_path / "logs" / f"lenshpc-train-{interrupted}_0.out").read_text()
    assert "requeueing job" in log and "restart 1" in log, log[-4000:]
    assert (run_a / "DONE").exists(), _log_tail(tmp_path)
    a = json.loads((run_a / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "tiny" / "seed0" / "metrics.json").read_text())
    assert a["chunks_trained"] == b["chunks_trained"] == chunks
    assert _stable(a) == _stable(b)
