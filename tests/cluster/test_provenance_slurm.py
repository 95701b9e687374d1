"""Provenance inside a real SLURM job: ``provenance.collect()`` in each task of a 2-task array job, one ``srun`` step.

The recorded ids must equal what the scheduler itself reports for the job (``sbatch --parsable``, ``sacct``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slurm

SCRIPT = """#!/bin/bash
set -euo pipefail
srun -n 1 {python} -c 'import json, sys; import lenshpc; from lenshpc import provenance; \
json.dump(provenance.collect(world_size=1, command="slurm-test"), open(sys.argv[1], "w"))' \
"{out}/prov-$SLURM_ARRAY_TASK_ID.json"
"""


def _accounting(job_id: str) -> dict[str, tuple[str, str]]:
    """``{"<array job>_<task>": (raw job id, node)}`` from sacct (records reach slurmdbd asynchronously)."""
    rows: dict[str, tuple[str, str]] = {}
    for _ in range(20):
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,JobIDRaw,NodeList"],
                             capture_output=True, text=True).stdout
        rows = {a: (b, c) for a, b, c in (line.split("|") for line in out.strip().splitlines() if line.count("|") == 2)}
        if len(rows) >= 2:
            return rows
        time.sleep(0.5)
    return rows


def test_collect_records_the_jobs_own_slurm_ids(slurm, job_env, tmp_path):
    script = tmp_path / "prov.sh"
    script.write_text(SCRIPT.format(python=sys.executable, out=tmp_path))
    array_id = slurm.sbatch("--array=0-1", "--job-name=lenshpc-prov", "--ntasks=1", "--time=5",
                            f"--output={tmp_path}/%A_%a.out", str(script), cwd=tmp_path, env=job_env)
    slurm.wait(array_id, timeout=180)
    states = slurm.states(array_id)
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.out"))
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{logs}"
    accounting = _accounting(array_id)
    for task in (0, 1):
        prov = json.loads((tmp_path / f"prov-{task}.json").read_text())
        s = prov["slurm"]
        raw_id, node = accounting[f"{array_id}_{task}"]
        assert s["array_job_id"] == array_id and s["array_task_id"] == str(task)
        assert s["job_id"] == raw_id and s["node"] == node and s["step_id"] == "0"  # the srun step
        assert s["job_name"] == "lenshpc-prov" and s["ntasks"] == "1" and s["procid"] == "0"
        assert prov["host"]["hostname"] and prov["command"] == "slurm-test" and prov["started"] <= prov["ended"]
