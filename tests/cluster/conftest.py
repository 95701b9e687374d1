"""Fixtures for tests that need the real local SLURM cluster, Horovod or MPI.

``slurm`` starts the single-node cluster of ``tests/cluster/slurm-local.sh`` once per session (idempotent: an already
running cluster is reused).  Where a prerequisite is missing, the test is SKIPPED with the reason — except in CI
(``CI=true``), where ``tests/setup.sh`` must have provided everything and a missing piece is a FAILURE, so the cluster
layer can never silently go untested.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SLURM_LOCAL = HERE / "slurm-local.sh"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip (outside CI) or fail (in CI) unless ``condition``."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test but: {reason} (tests/setup.sh should have provided it)")
    pytest.skip(reason)


def horovod_ok() -> bool:
    return importlib.util.find_spec("horovod") is not None and shutil.which("horovodrun") is not None


@pytest.fixture(scope="session")
def horovod() -> None:
    """Horovod built by containers/install-horovod.sh."""
    require(horovod_ok(), "Horovod is not installed (bash containers/install-horovod.sh)")


@pytest.fixture(scope="session")
def mpirun() -> list[str]:
    """The OpenMPI launcher as a command prefix (root and 2-core oversubscription allowed)."""
    require(shutil.which("mpirun") is not None, "mpirun not found (apt-get install openmpi-bin libopenmpi-dev)")
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")  # OpenMPI refuses root otherwise; CI runs as root
    return cmd


@pytest.fixture()
def job_env() -> dict:
    """Environment for a job submitted from a test: no SLURM/LENSHPC/PYTEST variables leak in from the test
    process, one compute thread, no progress bars, and the job scripts call this interpreter's lenshpc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LENSHPC_", "PYTEST_"))}
    env.update(OMP_NUM_THREADS="1", LENSHPC_NO_PROGRESS="1", LENSHPC_CMD=f"{sys.executable} -m lenshpc")
    return env


class Slurm:
    """Thin helpers around the SLURM client commands of the running local cluster."""

    def sbatch(self, *args: str, cwd: Path, env: dict | None = None) -> str:
        """Submit and return the job id (``sbatch --parsable``)."""
        out = subprocess.run(["sbatch", "--parsable", *args], cwd=cwd, env=env, capture_output=True, text=True)
        assert out.returncode == 0, f"sbatch {' '.join(args)} failed: {out.stderr}"
        return out.stdout.strip().split(";")[0]

    def active(self, job_id: str) -> bool:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i %T"], capture_output=True, text=True)
        return bool(out.stdout.strip())

    def wait(self, *job_ids: str, timeout: float = 300) -> None:
        """Wait until none of the jobs (array jobs included) is pending or running."""
        end = time.monotonic() + timeout
        while any(self.active(j) for j in job_ids):
            if time.monotonic() > end:
                subprocess.run(["scancel", *job_ids])
                pytest.fail(f"jobs {job_ids} still queued/running after {timeout} s: {self.squeue()}")
            time.sleep(1)

    def states(self, job_id: str) -> dict[str, str]:
        """Final state of every job (array task) of ``job_id`` from accounting: ``{"12_0": "COMPLETED", ...}``."""
        for _ in range(20):  # the controller sends records to slurmdbd asynchronously
            out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"],
                                 capture_output=True, text=True).stdout
            rows = dict(line.split("|", 1) for line in out.strip().splitlines() if "|" in line)
            if rows and not any(s in ("PENDING", "RUNNING", "REQUEUED") for s in rows.values()):
                return rows
            time.sleep(0.5)
        return rows

    def squeue(self) -> str:
        return subprocess.run(["squeue"], capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def slurm() -> Slurm:
    """A running single-node SLURM cluster (started idempotently; stopped at the end if this session started it)."""
    require(sys.platform.startswith("linux"), "SLURM tests need Linux")
    require(shutil.which("slurmctld") is not None and shutil.which("sbatch") is not None,
            "SLURM is not installed (as root: bash tests/setup.sh)")
    was_up = subprocess.run(["bash", str(SLURM_LOCAL), "status"], capture_output=True).returncode == 0
    if not was_up:
        require(os.geteuid() == 0, "starting the local SLURM cluster needs root (bash tests/cluster/slurm-local.sh start)")
        out = subprocess.run(["bash", str(SLURM_LOCAL), "start"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"slurm-local.sh start failed:\n{out.stdout}\n{out.stderr}"
    yield Slurm()
    if not was_up and not os.environ.get("LENSHPC_KEEP_SLURM"):
        subprocess.run(["bash", str(SLURM_LOCAL), "stop"], capture_output=True, timeout=120)


#: Files a finished run dir holds (docs/run-dir.md); nothing else may appear (e.g. files from non-root ranks).
#: ``.lock`` stays after the run: the flock file is never unlinked (unlinking a lock file races with a new holder).
RUN_FILES = {"config.yaml", "train.log", "history.csv", "checkpoint", "model.keras", "predictions.h5", "metrics.json",
             ".lock", "DONE"}


@pytest.fixture(scope="session")
def run_files() -> set[str]:
    return set(RUN_FILES)


@pytest.fixture
def tiny_config(small_population, tmp_path):
    """``tiny_config(chunks=3, name="tiny")`` → a YAML extending configs/tiny.yaml, sized for seconds per run."""

    def make(chunks: int = 3, name: str = "tiny") -> Path:
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(f"""extends: {REPO / 'configs' / 'tiny.yaml'}
name: {name}
data: {{path: {small_population}, chunk_size: 64, val_size: 32, test_size: 0, prefetch: 0}}
augment: {{enabled: false}}
train: {{chunks: {chunks}, batch_size: 16, patience: 0, checkpoint_every: 1}}
""")
        return cfg

    return make


@pytest.fixture
def slurm_sweep(slurm, tmp_path, capsys):
    """``slurm_sweep(name, lines) -> (out, sweep.json record)``: write the sweep file ``lines``, run it with
    ``lenshpc sweep --executor slurm --wait`` into ``tmp_path/out`` and assert it succeeded."""
    import json

    from lenshpc.cli import main

    def run(name: str, lines: list[str]):
        sweep = tmp_path / f"{name}.yaml"
        sweep.write_text("\n".join(lines) + "\n")
        out = tmp_path / "out"
        rc = main(["sweep", str(sweep), "--executor", "slurm", "--out", str(out), "--wait"])
        text = capsys.readouterr().out
        assert rc == 0, text
        return out, json.loads((out / "sweep.json").read_text()), text

    return run
