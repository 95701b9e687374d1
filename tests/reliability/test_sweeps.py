"""Sweeps as a new user runs them: bad grid points refused up front (dry run and real submit alike),
a partly failed sweep reduced by its own row names with real seeds and real logs, Ctrl-C and resume.

Issue 11, items 2.5 and 2.7.  Real sweeps, real run directories, a real SIGINT to a real
``lenshpc sweep`` subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lenshpc.cli import main

REPO = Path(__file__).resolve().parents[2]


def sweep_file(tmp: Path, bad: dict, data: str = "missing.h5", model: str = "tiny_resnet") -> Path:
    """A sweep: variant ``good`` and variant ``bad`` (its dotted overrides ``bad``) × seeds 0-1."""
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "base": str(REPO / "configs" / "tiny.yaml"), "seeds": "0-1",
        "set": {"data.path": data, "model.name": model},
        "grid": [{"name": "good"}, {"name": "bad", **bad}]}, sort_keys=False))
    return path


@pytest.mark.parametrize("bad, message", [
    ({"model.params": {"widths": [8, 16, 32]}}, r"no hyper-parameter 'widths'.*Did you mean 'filters'"),
    ({"model.params": {"filters": [8, 16]}}, r"blocks needs 2 entries"),
    ({"model.params": {"blocks": [1, 1]}}, r"blocks needs 3 entries"),
    ({"model.params": {"l2": -1}}, r"l2 must be a number ≥ 0"),
    ({"model.name": "tiny_resnett"}, r"unknown model 'tiny_resnett'.*Did you mean 'tiny_resnet'"),
])
@pytest.mark.parametrize("how", [["--dry-run"], ["--executor", "local"]])
def test_bad_model_params_refused_by_dry_run_and_by_a_real_submit(tmp_path, capsys, bad, message, how):
    path = sweep_file(tmp_path, bad)
    out = tmp_path / "out"
    rc = main(["sweep", str(path), "--out", str(out), *how])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"{path}: grid variant 'bad'" in err and re.search(message, err), err
    assert not out.exists(), "nothing may be submitted or written for a sweep with a bad grid point"


def test_model_too_big_for_the_data_is_refused(tmp_path, capsys, small_population):
    """64×64 images: lastro_cnn needs 69×69 (checked against the data file's image shape, without Keras)."""
    path = sweep_file(tmp_path, {"model.name": "lastro_cnn"}, data=str(small_population))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "grid variant 'bad'" in err and "at least 69×69" in err and "(64, 64, 1)" in err
    assert main(["sweep", str(sweep_file(tmp_path, {}, data=str(small_population))), "--dry-run"]) == 0


def test_reduce_of_a_partly_failed_sweep_uses_its_rows_real_seeds_and_real_logs(tiny_sweep, tmp_path, capsys):
    """A copy of the session's finished sweep gets a variant whose runs fail before writing config.yaml
    or train.log (its data file does not exist); the report must keep the sweep's rows."""
    root = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, root)
    spec = yaml.safe_load((root / "sweep.yaml").read_text())
    spec["out"] = str(root)
    spec["grid"].append({"name": "late", "data.path": str(tmp_path / "not-yet.h5")})
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["sweep", str(root / "sweep.yaml"), "--executor", "debug"]) == 1
    swept = capsys.readouterr()
    assert sorted(p.name for p in (root / "late").glob("seed*")) == ["seed0", "seed1"], swept

    assert main(["reduce", str(root), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    report = (root / "report.md").read_text()
    groups = json.loads((root / "sweep.json").read_text())["groups"]
    assert groups == ["bce", "fbeta_soft", "f1_soft", "late"]
    first_table = report.split("\n\n|", 1)[1].split("\n\n", 1)[0]  # t = 0.5; the t* table repeats the rows
    rows = [line.split("|")[1].strip() for line in ("|" + first_table).splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ") and "---" not in line]
    assert rows[1:] == groups, rows  # rows[0] is the header; no "all runs" row
    assert "seed None" not in report and "seed None" not in printed
    for seed in (0, 1):
        line = next(li for li in report.splitlines() if li.startswith(f"- **late** seed {seed}: failed"))
        assert "data file not found" in line
        logs = re.findall(r"log: `([^`]+)`", line)
        if logs:
            assert Path(logs[0]).is_file(), line
        else:
            assert "no log" in line and "train.log" in line, line
        assert f"late seed {seed}: failed" in printed


def test_ctrl_c_on_a_local_sweep_then_the_same_command_resumes(small_population, tmp_path):
    """Ctrl-C as a terminal sends it (SIGINT to the foreground process group) while the second run trains:
    exit 130, one clear message, no traceback, nothing left running; the same command then skips the
    finished run and resumes the stopped one from its checkpoint."""
    tiny = {"data.path": str(small_population), "data.chunk_size": 32, "data.val_size": 32, "data.test_size": 0,
            "data.prefetch": 0, "train.batch_size": 16, "train.patience": 0, "train.checkpoint_every": 1,
            "augment.enabled": False, "selection.metric": "val_loss"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": str(REPO / "configs" / "tiny.yaml"), "seeds": [0],
                                    "set": tiny, "grid": [{"name": "short", "train.chunks": 2},
                                                          {"name": "long", "train.chunks": 20}]}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lenshpc", "sweep", str(path), "--executor", "local", "--out", str(out)]
    env = {**os.environ, "LENSHPC_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}
    # A terminal's foreground job has SIGINT at its default; a suite started as `cmd &` by a shell without job
    # control inherits it ignored, and Python then never raises KeyboardInterrupt: give the sweep the terminal's.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = out / "long" / "seed0" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 180
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists() and proc.poll() is None, "the long run should be training by now"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "interrupted" in stderr and "re-run the same command to resume" in stderr and "long/seed0" in stderr
    assert (out / "short" / "seed0" / "DONE").is_file() and not (out / "long" / "seed0" / "DONE").exists()
    assert not (out / "long" / "seed0" / "FAILED").exists()
    stopped_at = state.stat().st_mtime_ns
    time.sleep(2.0)
    assert state.stat().st_mtime_ns == stopped_at, "a run kept training after the sweep said it stopped"
    short_metrics = (out / "short" / "seed0" / "metrics.json").stat().st_mtime_ns

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 done" in rerun.stdout and "1 submitted (1 new" in rerun.stdout, rerun.stdout
    assert (out / "long" / "seed0" / "DONE").is_file()
    assert (out / "short" / "seed0" / "metrics.json").stat().st_mtime_ns == short_metrics
    log = (out / "long" / "seed0" / "train.log").read_text()
    resumed = re.search(r"resuming \S+ at chunk (\d+)", log)
    assert resumed and int(resumed.group(1)) >= 1, log[-2000:]
    from lenshpc.train.rundir import read_history

    assert [r["chunk"] for r in read_history(out / "long" / "seed0" / "history.csv")] == list(range(20))
    record = {r["id"]: r["jobs"] for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert len(record["short/seed0"]) == 1 and len(record["long/seed0"]) == 2
    assert record["long/seed0"][0].get("interrupted") and not record["long/seed0"][1].get("interrupted")
