"""Sweeps: grid expansion and naming, resources, idempotency, failures and --retry-failed, status.

Training runs use submitit's debug executor (in this process) and once the local executor
(background processes), on the tiny session population; SLURM is covered by
tests/cluster/test_sweep_slurm.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lenshpc.cli import main
from lenshpc.config import HpcConfig
from lenshpc.errors import ConfigError
from lenshpc.hpc.jobs import slurm_parameters
from lenshpc.hpc.spec import load_sweep, parse_seeds, slug
from lenshpc.hpc.status import collect_status, format_status
from lenshpc.hpc.sweep import LIST_FAILED, RETRY, SKIP_ACTIVE, SKIP_DONE, plan, run_sweep

TINY = {  # a few seconds per run on one CPU core
    "data.chunk_size": 32, "data.val_size": 32, "data.test_size": 0, "data.prefetch": 0,
    "model.name": "tiny_resnet", "train.chunks": 2, "train.batch_size": 16, "train.patience": 0,
    "train.checkpoint_every": 1, "distributed.backend": "none", "augment.enabled": False,
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def tiny_sweep(tmp: Path, data: Path, broken: Path | None = None, name: str = "t") -> Path:
    """A sweep file: variant `good` on ``data`` (+ variant `late` on ``broken``) × seeds 0-1."""
    lines = [f"name: {name}", "seeds: 0-1", "set:"] + [f"  {k}: {json.dumps(v)}" for k, v in TINY.items()]
    lines += [f"  data.path: {data}", "grid:", "  - name: good"]
    if broken is not None:
        lines += ["  - name: late", f"    data.path: {broken}"]
    return write(tmp / f"{name}.yaml", "\n".join(lines) + "\n")


# ------------------------------------------------------------------ grid expansion
@pytest.fixture()
def configs(tmp_path) -> Path:
    write(tmp_path / "cfg" / "base.yaml", """\
        name: base
        data: {path: data/pop.h5}
        model: {name: tiny_resnet}
        hpc: {partition: cpu, time_min: 30, mem_gb: 8}
    """)
    write(tmp_path / "cfg" / "soft.yaml", """\
        extends: base.yaml
        loss: {name: fbeta_soft}
        selection: {metric: val_soft_fbeta}
    """)
    write(tmp_path / "cfg" / "sweeps" / "s.yaml", """\
        name: study
        base: ../base.yaml
        out: results/study
        seeds: 0-1,3
        set: {train.chunks: 7}
        grid:
          - name: bce
          - name: soft
            config: ../soft.yaml
            train.patience: 3
        product:
          train.learning_rate: [1.0e-4, 0.001]
        hpc: {gpus_per_node: 2, time_min: 90}
    """)
    return tmp_path


def test_grid_expansion_and_naming(configs):
    spec = load_sweep(configs / "cfg" / "sweeps" / "s.yaml", cwd=configs)
    assert spec.name == "study" and spec.out == configs / "results" / "study"
    assert len(spec.points) == 2 * 2 * 3
    assert spec.groups == ["bce__train.learning_rate-0.0001", "bce__train.learning_rate-0.001",
                           "soft__train.learning_rate-0.0001", "soft__train.learning_rate-0.001"]
    assert spec.seeds == [0, 1, 3]
    p = next(p for p in spec.points if p.group == "soft__train.learning_rate-0.001" and p.seed == 3)
    assert p.run_dir == spec.out / "soft__train.learning_rate-0.001" / "seed3"
    assert p.id == "soft__train.learning_rate-0.001/seed3"
    assert p.params == {"train.patience": 3, "train.learning_rate": 0.001}
    cfg = p.config
    assert (cfg.seed, cfg.loss.name, cfg.selection.metric, cfg.train.patience, cfg.train.chunks) == \
        (3, "fbeta_soft", "val_soft_fbeta", 3, 7)
    assert cfg.train.learning_rate == 0.001
    assert cfg.data.path == str(configs / "data" / "pop.h5"), "relative data paths are made absolute"
    assert spec.varied_keys == ["loss.name", "selection.metric", "train.learning_rate", "train.patience", "seed"]
    # hpc: the base config's section, then the sweep file's
    assert (spec.hpc.partition, spec.hpc.mem_gb, spec.hpc.gpus_per_node, spec.hpc.time_min) == ("cpu", 8, 2, 90)
    # deterministic: expanding twice gives identical points
    again = load_sweep(configs / "cfg" / "sweeps" / "s.yaml", cwd=configs)
    assert [(q.id, q.config) for q in again.points] == [(q.id, q.config) for q in spec.points]


def test_cli_overrides_win_and_out_flag(configs, tmp_path):
    spec = load_sweep(configs / "cfg" / "sweeps" / "s.yaml", overrides=["train.chunks=11"], out=tmp_path / "o")
    assert {p.config.train.chunks for p in spec.points} == {11}
    assert spec.out == tmp_path / "o" and spec.points[0].run_dir.parent.parent == tmp_path / "o"


@pytest.mark.parametrize("value, seeds", [("0-9", list(range(10))), ("0-2,7", [0, 1, 2, 7]), ([3, 1, 1], [1, 3]),
                                          (3, [0, 1, 2]), ("5", [5])])
def test_parse_seeds(value, seeds):
    assert parse_seeds(value, "x") == seeds


@pytest.mark.parametrize("value", ["3-1", "a", -1, 0, [], True, "1-"])
def test_parse_seeds_rejects(value):
    with pytest.raises(ConfigError):
        parse_seeds(value, "x")


def test_slug_is_filesystem_safe():
    assert slug(1e-4) == "0.0001" and slug("a b/c") == "a-b-c" and slug([1, 2]) == "1-2" and slug("") == "empty"


@pytest.mark.parametrize("body, message", [
    ("grd: []\n", "Did you mean 'grid'"),
    ("grid:\n  - name: a b\n", "needs a 'name'"),
    ("grid:\n  - name: a\n  - name: a\n", "duplicate variant name"),
    ("grid:\n  - name: a\n    selection.metric: val_f1\n", "grid variant .a..*selection.metric"),
    ("grid:\n  - name: a\n    train.chunkz: 3\n", "train.chunks"),
    ("seeds: 2-1\n", "bad seed"),
    ("hpc: {gpus_per_nod: 1}\n", "gpus_per_node"),
    ("base: nope.yaml\n", "config file not found"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, body, message):
    path = write(tmp_path / "bad.yaml", body)
    with pytest.raises(ConfigError, match=message):
        load_sweep(path, cwd=tmp_path)


def test_slurm_parameters_from_hpc():
    hpc = HpcConfig(partition="gpu", time_min=60, gpus_per_node=4, tasks_per_node=4, cpus_per_task=6, mem_gb=90,
                    array_parallelism=8, account="proj", qos="normal", extra={"constraint": "a100"})
    p = slurm_parameters(hpc, "job")
    assert p["slurm_partition"] == "gpu" and p["timeout_min"] == 60 and p["gpus_per_node"] == 4
    assert p["tasks_per_node"] == 4 and p["slurm_array_parallelism"] == 8 and p["slurm_account"] == "proj"
    assert p["slurm_constraint"] == "a100" and p["mem_gb"] == 90


def test_dry_run_prints_grid_and_resources(configs, capsys, monkeypatch):
    monkeypatch.chdir(configs)
    rc = main(["sweep", str(configs / "cfg" / "sweeps" / "s.yaml"), "--dry-run", "--partition", "gpu-long",
               "--tasks-per-node", "4"])
    out = capsys.readouterr().out
    assert rc == 0 and "2 variant(s)" not in out and "4 variant(s) × 3 seed(s) = 12 runs" in out
    assert re.search(r"bce__train.learning_rate-0.0001 +submit seeds 0-1,3", out)
    assert "partition=gpu-long" in out and "gpus/node=2" in out and "4-rank Horovod run" in out
    assert "nothing submitted" in out and not (configs / "results").exists()


# ------------------------------------------------------------------ running sweeps
def test_failing_point_reported_others_finish_then_retry_only_it(small_population, tmp_path, capsys):
    late = tmp_path / "late.h5"  # does not exist yet: passes validation, fails at run time
    sweep = tiny_sweep(tmp_path, small_population, broken=late)
    out = tmp_path / "out"
    rc = main(["sweep", str(sweep), "--executor", "debug", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1, text
    assert "2 run(s) failed" in text and "late/seed0" in text and "data file not found" in text
    for seed in (0, 1):
        assert (out / "good" / f"seed{seed}" / "DONE").exists()
        assert (out / "late" / f"seed{seed}" / "FAILED").exists()
    record = json.loads((out / "sweep.json").read_text())
    assert [r["id"] for r in record["runs"]] == ["good/seed0", "good/seed1", "late/seed0", "late/seed1"]
    assert all(len(r["jobs"]) == 1 for r in record["runs"])

    # idempotent: a second sweep submits nothing (done skipped, failed only listed)
    spec = load_sweep(sweep, out=out)
    outcome = run_sweep(spec, executor="debug")
    assert outcome.submitted == [] and outcome.count(SKIP_DONE) == 2 and outcome.count(LIST_FAILED) == 2

    rows = {r.id: r for r in collect_status(out)}
    assert rows["late/seed1"].state == "failed" and "data file not found" in rows["late/seed1"].detail
    assert rows["good/seed0"].state == "done"
    table = format_status(list(rows.values()), out)
    assert "4 runs: 2 failed, 2 done" in table and "--retry-failed" in table

    # fix the cause, --retry-failed resubmits exactly the failed runs
    shutil.copy(small_population, late)
    done_mtime = (out / "good" / "seed0" / "metrics.json").stat().st_mtime_ns
    outcome = run_sweep(load_sweep(sweep, out=out), executor="debug", retry_failed=True)
    assert sorted(p.point.id for p in outcome.submitted) == ["late/seed0", "late/seed1"]
    assert outcome.failed_after == []
    assert (out / "good" / "seed0" / "metrics.json").stat().st_mtime_ns == done_mtime
    assert all((out / g / f"seed{s}" / "DONE").exists() for g in ("good", "late") for s in (0, 1))
    record = json.loads((out / "sweep.json").read_text())
    assert [len(r["jobs"]) for r in record["runs"]] == [1, 1, 2, 2]

    # and the reducer collates it, rows named after the sweep's variants
    assert main(["reduce", str(out), "--no-plots"]) == 0
    report = (out / "report.md").read_text()
    assert "| good |" in report and "| late |" in report and "4 finished, 0 failed" in report


def test_running_jobs_are_not_resubmitted(small_population, tmp_path):
    sweep = tiny_sweep(tmp_path, small_population)
    out = tmp_path / "out"
    spec = load_sweep(sweep, out=out)
    # A live process that looks like a submitit job controller stands in for a running local job.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "submitit"])
    try:
        import socket

        from lenshpc.hpc.sweep import write_sweep_json

        jobs = {"good/seed0": [{"job_id": str(proc.pid), "executor": "local", "host": socket.gethostname()}],
                "good/seed1": [{"job_id": "999999999", "executor": "local", "host": socket.gethostname()}]}
        write_sweep_json(spec, spec.hpc, "local", jobs)
        actions = {p.point.id: p.action for p in plan(spec)}
        assert actions == {"good/seed0": SKIP_ACTIVE, "good/seed1": LIST_FAILED}
        assert {p.point.id: p.action for p in plan(spec, retry_failed=True)}["good/seed1"] == RETRY
        rows = {r.id: r for r in collect_status(out)}
        assert rows["good/seed0"].state == "running" and rows["good/seed0"].job == str(proc.pid)
        assert rows["good/seed1"].state == "failed" and "ended" in rows["good/seed1"].detail
    finally:
        proc.kill()
        proc.wait()
    assert {p.point.id: p.action for p in plan(spec)}["good/seed0"] == LIST_FAILED


@pytest.mark.slow
def test_local_executor_runs_in_background_processes(small_population, tmp_path, capsys):
    sweep = tiny_sweep(tmp_path, small_population)
    out = tmp_path / "out"
    rc = main(["sweep", str(sweep), "--executor", "local", "--parallel", "2", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    record = json.loads((out / "sweep.json").read_text())
    pids = [r["jobs"][0]["job_id"] for r in record["runs"]]
    assert len(set(pids)) == 2 and all(p.isdigit() and int(p) != os.getpid() for p in pids)
    for r in record["runs"]:
        assert (out / r["run_dir"] / "DONE").exists()
        assert (out / r["jobs"][0]["log"]).exists(), "submitit log recorded"
    assert main(["status", str(out)]) == 0
    assert "2 runs: 2 done" in capsys.readouterr().out
    assert plan(load_sweep(sweep, out=out))[0].action == SKIP_DONE


def test_status_of_plain_run_dirs_without_sweep_json(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "DONE").write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "FAILED").write_text("ValueError: boom\n")
    (tmp_path / "b" / "train.log").write_text("…\n")
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ValueError: boom" in out and "b/train.log" in out and "2 runs: 1 failed, 1 done" in out
    assert main(["status", str(tmp_path / "empty")]) == 2
