"""``lenshpc maxtree`` on the real local SLURM cluster (tests/cluster/slurm-local.sh), as CI runs it (root).

* ``jobs/maxtree_array.sh`` (plain sbatch): a 2-task shard array + the ``afterok`` merge job;
* ``lenshpc maxtree --executor slurm --shards 2`` (a submitit array, waited for, then merged);

both give a SEG.h5 whose content digest equals a 1-shard run in this process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--set", "data.val_size=32", "--set", "data.test_size=24", "--set", "seed=3", "--pool", "48"]


@pytest.fixture(scope="module")
def reference(small_population, tmp_path_factory) -> str:
    from lenshpc.cli import main
    from lenshpc.preprocess.maxtree.segfile import content_digest

    out = tmp_path_factory.mktemp("ref") / "seg.h5"
    assert main(["maxtree", str(small_population), "--out", str(out), "--executor", "inline",
                 "--set", f"data.path={small_population}", *ARGS]) == 0
    return content_digest(out)


def test_sbatch_array_and_merge_job(job_env, slurm, small_population, reference, tmp_path):
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset, content_digest

    out = tmp_path / "seg.h5"
    env = job_env | {"MAXTREE_SHARDS": "2", "MAXTREE_SBATCH": "--cpus-per-task=1 --mem=2G --time=00:10:00"}
    proc = subprocess.run(["bash", str(REPO / "jobs" / "maxtree_array.sh"), str(small_population), str(out),
                           "--set", f"data.path={small_population}", *ARGS],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    array_id = re.search(r"^maxtree shards (\d+)", proc.stdout, re.M).group(1)
    merge_id = re.search(r"^maxtree merge (\d+)", proc.stdout, re.M).group(1)
    slurm.wait(array_id, merge_id, timeout=400)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*.out")))
    assert set(slurm.states(array_id).values()) == {"COMPLETED"}, logs
    assert slurm.states(merge_id) == {merge_id: "COMPLETED"}, logs
    assert content_digest(out) == reference
    with SegmentedDataset(out) as seg:
        assert seg.attrs["shards"] == 2
    assert out.with_name("seg.montage.png").is_file()


def test_submitit_slurm_executor(job_env, slurm, small_population, reference, tmp_path):
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset, content_digest

    out = tmp_path / "seg.h5"
    proc = subprocess.run([sys.executable, "-m", "lenshpc", "maxtree", str(small_population), "--out", str(out),
                           "--executor", "slurm", "--shards", "2", "--set", f"data.path={small_population}",
                           "--set", "hpc.cpus_per_task=1", "--set", "hpc.mem_gb=2", "--set", "hpc.time_min=10", *ARGS],
                          cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert content_digest(out) == reference
    with SegmentedDataset(out) as seg:
        assert seg.attrs["executor"] == "slurm" and seg.attrs["shards"] == 2
