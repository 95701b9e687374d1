"""Job templates and Apptainer recipes, checked without a scheduler.

Apptainer cannot be installed on these machines (not in Debian 12 or PyPI), so the images are never built here: the
recipes are parsed (bootstrap/from, %files sources exist, %post calls install-horovod.sh, %runscript calls lenshpc),
and the exact `srun … apptainer exec … lenshpc train …` line the job script would run is checked via LENSHPC_DRY_RUN.
The scripts %post calls are the ones CI itself runs (tests/setup.sh → containers/install-horovod.sh).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
SCRIPTS = [JOBS / "train_array.sh", JOBS / "reduce.sh", JOBS / "submit_study.sh", JOBS / "_lib.sh",
           JOBS / "simulate21cm_array.sh", REPO / "containers" / "install-21cmfast.sh",
           REPO / "containers" / "install-horovod.sh", REPO / "containers" / "build.sh", REPO / "tests" / "setup.sh",
           REPO / "tests" / "cluster" / "slurm-local.sh"]


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LENSHPC_"))}
    env.update(extra)
    return env


def _dry_run(*args: str, cwd: Path = REPO, **env) -> list[str]:
    out = subprocess.run(["bash", str(JOBS / "train_array.sh"), *args], cwd=cwd, capture_output=True, text=True,
                         env=_clean_env(LENSHPC_DRY_RUN="1", **env))
    assert out.returncode == 0, out.stderr
    return shlex.split(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_are_strict(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    if script.name != "_lib.sh":
        assert "set -euo pipefail" in script.read_text(), f"{script.name} must stop on the first error"


def test_sbatch_defaults_are_overridable_and_site_neutral():
    text = (JOBS / "train_array.sh").read_text()
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    for expected in ("--array=0-9", "--output=logs/%x-%A_%a.out", "--signal=USR1@120", "--requeue"):
        assert any(expected in d for d in directives), expected
    # no partition/account/module paths baked in: those are site specific and given on the sbatch command line
    assert not any(k in text for k in ("--partition", "--account", "module load", "/home/", "/scratch/"))


def test_dry_run_bare_command_line():
    cmd = _dry_run("configs/tiny.yaml", "--chunks", "3", SLURM_ARRAY_TASK_ID="2", LENSHPC_RESULTS="out")
    assert cmd[:3] == ["srun", "--mpi=pmix", "--wait=120"]
    i = cmd.index("train")
    assert cmd[i - 1] == "lenshpc" or cmd[i - 3:i] == ["python3", "-m", "lenshpc"]
    assert cmd[i + 1:] == ["configs/tiny.yaml", "--seed", "2", "--run-dir", "out/tiny/seed2", "--distributed", "auto",
                           "--chunks", "3"]
    assert "apptainer" not in cmd


def test_run_dir_follows_the_name_lenshpc_resolves():
    """`--set name=…` after the config wins, as in `lenshpc train` (issue 11, 2.11); so does a --run-dir."""
    cmd = _dry_run("configs/tiny.yaml", "--set", "train.chunks=6", "--set", "name=hvd2", SLURM_ARRAY_TASK_ID="0")
    assert cmd[cmd.index("--run-dir") + 1] == "runs/hvd2/seed0"
    cmd = _dry_run("configs/tiny.yaml", "--run-dir", "elsewhere/x", SLURM_ARRAY_TASK_ID="1", LENSHPC_RESULTS="out")
    assert cmd[cmd.index("--run-dir") + 1] == "elsewhere/x" and cmd[-1] == "elsewhere/x"


def test_dry_run_inside_apptainer_with_configurable_mpi():
    cmd = _dry_run("configs/tiny.yaml", SLURM_ARRAY_TASK_ID="7", LENSHPC_IMAGE="/images/lenshpc.sif",
                   LENSHPC_BIND="/data,/scratch/x:/x", LENSHPC_SRUN_MPI="pmix_v4", LENSHPC_SRUN_ARGS="--cpu-bind=cores")
    a = cmd.index("apptainer")
    assert cmd[:a] == ["srun", "--mpi=pmix_v4", "--wait=120", "--cpu-bind=cores"]
    assert cmd[a:a + 3] == ["apptainer", "exec", "--nv"]
    assert cmd[cmd.index("--bind") + 1] == f"{REPO},/data,/scratch/x:/x"
    assert cmd[cmd.index("--pwd") + 1] == str(REPO)
    img = cmd.index("/images/lenshpc.sif")
    assert cmd[img + 1:img + 3] == ["lenshpc", "train"] and "--seed" in cmd and cmd[cmd.index("--seed") + 1] == "7"
    # no srun at all when asked to launch directly (e.g. an interactive node), no --mpi with "none"
    assert _dry_run("configs/tiny.yaml", LENSHPC_LAUNCHER="none", LENSHPC_CMD="lenshpc")[:2] == ["lenshpc", "train"]
    assert "--mpi" not in " ".join(_dry_run("configs/tiny.yaml", LENSHPC_SRUN_MPI="none"))


def test_done_seed_is_left_to_lenshpc_and_bad_config_is_a_clear_error(tmp_path):
    """A DONE seed is not skipped by the script (issue 11, 2.11): `lenshpc train` compares the configs and decides."""
    (tmp_path / "runs" / "tiny" / "seed4").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "seed4" / "DONE").touch()
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("name: tiny\n")
    out = subprocess.run(["bash", str(JOBS / "train_array.sh"), str(cfg)], cwd=tmp_path, capture_output=True,
                         text=True, env=_clean_env(SLURM_ARRAY_TASK_ID="4", LENSHPC_DRY_RUN="1"))
    assert out.returncode == 0 and "already complete" not in out.stderr
    assert "--run-dir runs/tiny/seed4" in out.stdout
    out = subprocess.run(["bash", str(JOBS / "train_array.sh"), str(cfg), "--set", "trian.chunks=3"], cwd=tmp_path,
                         capture_output=True, text=True, env=_clean_env(LENSHPC_DRY_RUN="1"))
    assert out.returncode == 2 and "Did you mean 'train'" in out.stderr and out.stdout == "", out.stderr
    out = subprocess.run(["bash", str(JOBS / "train_array.sh"), "missing.yaml"], cwd=tmp_path, capture_output=True,
                         text=True, env=_clean_env())
    assert out.returncode == 2 and "config file not found: missing.yaml" in out.stderr
    for script in ("train_array.sh", "reduce.sh", "submit_study.sh"):
        out = subprocess.run(["bash", str(JOBS / script), "--help"], capture_output=True, text=True, env=_clean_env())
        assert out.returncode == 0 and "sbatch" in out.stdout, script


def test_reduce_fallback_collates_mean_and_sample_std(tmp_path):
    """The minimal collation used when `lenshpc reduce` is unavailable (forced here with LENSHPC_REDUCE_FALLBACK)."""
    for seed, acc in enumerate([0.8, 0.9, 1.0]):
        run = tmp_path / "tiny" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"seed": seed, "accuracy": acc, "auroc": 0.5}))
        (run / "DONE").touch()
    unfinished = tmp_path / "tiny" / "seed3"
    unfinished.mkdir()
    (unfinished / "metrics.json").write_text(json.dumps({"seed": 3, "accuracy": 0.0}))  # no DONE: ignored
    out = subprocess.run(["bash", str(JOBS / "reduce.sh"), str(tmp_path)], capture_output=True, text=True,
                         env=_clean_env(LENSHPC_REDUCE_FALLBACK="1"))
    assert out.returncode == 0, out.stderr
    report = (tmp_path / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| tiny "))
    assert "| 3 | 0,1,2 |" in row and "0.9000 ± 0.1000" in row and "0.5000 ± 0.0000" in row


def _parse_def(path: Path) -> tuple[dict, dict]:
    """Apptainer definition file → (header, {section: body})."""
    header, sections, current = {}, {}, None
    for line in path.read_text().splitlines():
        if line.startswith("%"):
            current = line.split()[0][1:]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif ":" in line and not line.lstrip().startswith("#"):
            key, value = line.split(":", 1)
            header[key.strip().lower()] = value.strip()
    return header, {k: "\n".join(v) for k, v in sections.items()}


@pytest.mark.parametrize("name, base", [("lenshpc.def", "nvidia/cuda:"), ("lenshpc-cpu.def", "python:3.11")])
def test_apptainer_recipe_structure(name, base):
    header, sec = _parse_def(REPO / "containers" / name)
    assert header["bootstrap"] == "docker" and header["from"].startswith(base)
    assert "bash containers/install-horovod.sh" in sec["post"]
    assert "bash containers/install-21cmfast.sh" in sec["post"] and "import py21cmfast" in sec["post"]  # .[cosmo21cm]
    assert "lenshpc" in sec["runscript"] and "exec lenshpc" in sec["runscript"]
    for line in sec["files"].splitlines():
        if line.strip() and not line.strip().startswith("#"):
            src = line.split()[0]
            assert (REPO / src).exists(), f"{name}: %files source {src} missing"
    if name == "lenshpc.def":
        assert 'tensorflow[and-cuda]==2.21.*' in sec["post"] and "libpmix-dev" in sec["post"]
        assert "NCCL" in sec["test"]


def test_build_script_explains_missing_apptainer():
    out = subprocess.run(["bash", str(REPO / "containers" / "build.sh"), "cpu"], capture_output=True, text=True,
                         env=_clean_env(LENSHPC_APPTAINER="apptainer-not-installed-here"))
    assert out.returncode == 2 and "not found" in out.stderr
