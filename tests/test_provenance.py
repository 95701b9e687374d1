"""``lenshpc.provenance``: git commit, SLURM ids, container digest, data fingerprint; never failing.

The SLURM ids of a real job are tested in ``tests/cluster/test_provenance_slurm.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import lenshpc
from lenshpc import provenance

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fresh_git():
    provenance.git_info.cache_clear()
    yield
    provenance.git_info.cache_clear()


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_git_commit_and_dirty_flag_of_this_checkout(fresh_git):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True).stdout.strip()
    info = provenance.git_info()
    assert info == {"commit": head, "dirty": bool(status)}
    assert provenance.code_version().startswith(f"{lenshpc.__version__}+g{head[:7]}")


def test_without_git_there_is_no_commit_and_nothing_fails(fresh_git, monkeypatch):
    monkeypatch.setattr(provenance.shutil, "which", lambda _name: None)
    assert provenance.git_info() == {"commit": None, "dirty": None}
    assert provenance.code_version() == lenshpc.__version__
    prov = provenance.collect(data_path="/nonexistent/data.h5")
    assert prov["lenshpc"] == {"version": lenshpc.__version__, "commit": None, "dirty": None}
    assert "error" in prov["data"]["file"]  # a missing data file is recorded, not raised
    json.dumps(prov)


def test_slurm_ids_from_the_environment():
    env = {"SLURM_JOB_ID": "118", "SLURM_ARRAY_JOB_ID": "117", "SLURM_ARRAY_TASK_ID": "1", "SLURM_STEP_ID": "0",
           "SLURMD_NODENAME": "node7", "SLURM_CLUSTER_NAME": "c", "SLURM_PROCID": "3", "SLURM_NTASKS": "4"}
    assert provenance.slurm_info(env) == {"job_id": "118", "array_job_id": "117", "array_task_id": "1",
                                          "step_id": "0", "procid": "3", "ntasks": "4", "node": "node7",
                                          "cluster": "c"}
    assert provenance.slurm_info({"HOME": "/root"}) is None


def test_container_image_and_digest(tmp_path, monkeypatch):
    """Apptainer cannot be installed here, so the container is seen only through the variables Apptainer (and
    Singularity) set inside a container, pointing at a real file standing in for the ``.sif`` image."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    provenance._digests.clear()
    sif = tmp_path / "lenshpc.sif"
    sif.write_bytes(os.urandom(3 * (1 << 20) + 17))
    want = hashlib.sha256(sif.read_bytes()).hexdigest()
    info = provenance.container_info({"APPTAINER_CONTAINER": str(sif), "APPTAINER_NAME": "lenshpc.sif"})
    assert info == {"runtime": "apptainer", "image": str(sif), "name": "lenshpc.sif", "sha256": want}
    cached = json.loads((tmp_path / "cache" / "lenshpc" / "sif_digests.json").read_text())
    assert cached[str(sif.resolve())]["sha256"] == want

    # cached per (path, size, mtime): same size and mtime → not re-hashed, in this process or the next
    st = sif.stat()
    sif.write_bytes(b"\0" * st.st_size)
    os.utime(sif, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert provenance.image_digest(sif) == want
    provenance._digests.clear()
    assert provenance.image_digest(sif) == want  # from the on-disk cache
    os.utime(sif, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a rebuilt image: hashed again
    assert provenance.image_digest(sif) == hashlib.sha256(b"\0" * st.st_size).hexdigest()

    sing = provenance.container_info({"SINGULARITY_CONTAINER": str(tmp_path / "not-bound.sif")})
    assert sing == {"runtime": "singularity", "image": str(tmp_path / "not-bound.sif"), "name": None, "sha256": None}
    assert provenance.container_info({}) is None


def test_collect_has_every_field_and_is_json(tmp_path, monkeypatch):
    for var in ("SLURM_JOB_ID", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    started = provenance.now()
    prov = provenance.collect(started=started, world_size=4, command="test")
    assert set(prov) >= {"version", "lenshpc", "packages", "host", "slurm", "container", "world_size", "started",
                         "ended", "data", "runtime", "command"}
    assert prov["slurm"] is None and prov["container"] is None and prov["world_size"] == 4
    assert prov["started"] == started <= prov["ended"] and prov["started"].endswith("+00:00")
    assert prov["runtime"] == lenshpc.runtime.describe()
    assert prov["packages"]["lenshpc"] == lenshpc.__version__ and prov["packages"]["numpy"]
    json.dumps(prov)


def test_data_fingerprint_of_a_real_dataset(tmp_path):
    import numpy as np

    from lenshpc.config import load_config
    from lenshpc.data.format import SCHEMA_VERSION, write_labelled

    data = tmp_path / "cat.h5"
    write_labelled(data, np.zeros((10, 8, 8, 1), np.float32), np.arange(10) % 2, seed=5)
    cfg = load_config().replace(**{"data.path": str(data), "seed": 3})
    fp = provenance.data_provenance(cfg)
    assert fp["signature"]["seed"] == 3 and fp["signature"]["data.path"] == str(data.resolve())
    assert fp["file"]["path"] == str(data.resolve()) and fp["file"]["size"] == data.stat().st_size
    assert fp["file"]["mtime_ns"] == data.stat().st_mtime_ns and fp["file"]["lenshpc_format"] == "labelled"
    assert fp["file"]["schema_version"] == SCHEMA_VERSION and fp["file"]["seed"] == 5 and fp["file"]["created"]
    json.dumps(fp)
