"""The CPU-scale Table 5.1 study (configs/sweeps/cpu_table51.yaml, jobs/cpu_table51.sh): the sweep file parses,
has the thesis's six rows with each row's loss and model selection, × 10 seeds, and dry-runs; the study script
is valid bash and documents itself. The study itself (60 runs, ~30 min) is run by hand; docs/science.md has it."""

from __future__ import annotations

import subprocess

from lenshpc.cli import main
from lenshpc.config import load_config
from lenshpc.hpc.spec import load_sweep

ROWS = ("bce", "bce_fbeta_metric", "bce_soft_fbeta_metric", "fbeta_soft", "f1_soft", "f1_double_soft")


def test_cpu_table51_rows_seeds_and_selection(repo_root, tmp_path):
    spec = load_sweep(repo_root / "configs" / "sweeps" / "cpu_table51.yaml", out=tmp_path / "runs")
    assert spec.groups == list(ROWS) and spec.seeds == list(range(10)) and len(spec.points) == 60
    for point in spec.points:
        thesis = load_config(repo_root / "configs" / "thesis" / f"{point.group}.yaml")
        cfg = point.config
        # each row keeps the thesis's loss and model selection; only the scale differs
        assert (cfg.loss.name, cfg.loss.beta, cfg.selection.metric) == (
            thesis.loss.name, thesis.loss.beta, thesis.selection.metric), point.id
        assert cfg.model.name == "tiny_resnet" and cfg.seed == point.seed
        assert point.run_dir == tmp_path / "runs" / point.group / f"seed{point.seed}"


def test_cpu_table51_dry_run(repo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["sweep", str(repo_root / "configs" / "sweeps" / "cpu_table51.yaml"), "--executor", "local",
               "--dry-run", "--set", f"data.path={tmp_path / 'population.h5'}"])
    out = capsys.readouterr().out
    assert rc == 0 and "6 variant(s) × 10 seed(s) = 60 runs" in out and "nothing submitted" in out
    for row in ROWS:
        assert f"{row} " in out
    assert not (tmp_path / "runs").exists()


def test_cpu_table51_script_is_valid_and_documented(repo_root):
    script = repo_root / "jobs" / "cpu_table51.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "simulate" in proc.stdout and "skips finished work" in proc.stdout
