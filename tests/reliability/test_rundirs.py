"""Fault injection, run directories: a finished run reused with another config, two writers on one run dir,
``lenshpc status`` of live and killed runs, corrupt checkpoints (issue 11 §2.3, 2.4, 2.9; docs/reliability.md).

Real training (``tiny_resnet`` on the session's ``small_population``, a few chunks of 64 images), real
subprocesses and signals, the real ``fcntl`` lock.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lenshpc.hpc.status  # noqa: F401 - imports submitit, which closes a capsys stream when first imported in a test
from faults import NOT_FOR_USERS, assert_clean_failure, env, send, start, wait_for
from lenshpc.cli import main
from lenshpc.errors import UserError
from lenshpc.locking import LOCK_FILE, OWNER_FILE, DirLock, live_owner, read_owner

BASE = ("data.chunk_size=64", "data.val_size=32", "data.test_size=0", "train.chunks=2", "train.checkpoint_every=2",
        "train.patience=0", "train.batch_size=32")


def _train_args(repo_root: Path, data: Path, run_dir: Path, *extra: str) -> list[str]:
    sets = [x for o in (f"data.path={data}", *BASE, *extra) for x in ("--set", o)]
    return ["train", str(repo_root / "configs" / "tiny.yaml"), *sets, "--run-dir", str(run_dir)]


@pytest.fixture(scope="module")
def done_run(repo_root, small_population, tmp_path_factory) -> Path:
    """A finished (DONE) 2-chunk bce run, trained through the CLI."""
    run_dir = tmp_path_factory.mktemp("rundirs") / "bce"
    assert main(_train_args(repo_root, small_population, run_dir)) == 0
    assert (run_dir / "DONE").is_file()
    return run_dir


def _copy(run_dir: Path, dest: Path, *drop: str) -> Path:
    shutil.copytree(run_dir, dest)
    for name in drop:
        (dest / name).unlink()
    return dest


# ------------------------------------------------------------------ config reuse (§2.3)
def test_a_finished_run_with_another_config_is_refused(done_run, repo_root, small_population, capsys, caplog):
    metrics = (done_run / "metrics.json").read_bytes()
    with caplog.at_level(logging.INFO, logger="lenshpc"):
        assert main(_train_args(repo_root, small_population, done_run)) == 0
    assert "complete (DONE); skipping" in caplog.text
    capsys.readouterr()
    for extra, key in (("loss.name=f1_soft", "loss.name: 'bce' -> 'f1_soft'"), ("train.chunks=3", "train.chunks: 2 -> 3")):
        rc = main(_train_args(repo_root, small_population, done_run, extra))
        assert_clean_failure((rc, capsys.readouterr().err), 2, "a finished run (DONE) of a different config", key,
                             "--force", "--run-dir")
    assert (done_run / "metrics.json").read_bytes() == metrics and (done_run / "DONE").is_file()
    # Where it ran may change (data moved, other threads): still the same finished run.
    moved = done_run.parent / "moved.h5"
    shutil.copy(small_population, moved)
    assert main([*_train_args(repo_root, moved, done_run), "--set", "data.threads=1"]) == 0


def test_a_resume_with_another_config_is_still_refused(done_run, repo_root, small_population, tmp_path, capsys):
    run_dir = _copy(done_run, tmp_path / "run", "DONE")
    rc = main(_train_args(repo_root, small_population, run_dir, "loss.name=f1_soft"))
    assert_clean_failure((rc, capsys.readouterr().err), 2, "holds a checkpoint of a different config", "loss.name")


def test_a_truncated_checkpoint_state_is_named(done_run, repo_root, small_population, tmp_path, capsys):
    run_dir = _copy(done_run, tmp_path / "run", "DONE")
    state = run_dir / "checkpoint" / "state.json"
    state.write_text(state.read_text()[:25])
    rc = main(_train_args(repo_root, small_population, run_dir))
    err = assert_clean_failure((rc, capsys.readouterr().err), 2, str(state), "unreadable checkpoint state", "--force")
    assert "JSONDecodeError" in err  # named as the cause, inside the message, not as a raw exception
    assert main(["status", str(tmp_path)]) == 0  # status still reads the run dir


# ------------------------------------------------------------------ locking and status (§2.4)
def test_two_trainings_on_one_run_dir_and_status_of_a_live_run(repo_root, small_population, tmp_path, capsys):
    runs = tmp_path / "runs"
    run_dir = runs / "live"
    holder = start(*_train_args(repo_root, small_population, run_dir, "train.chunks=100000",
                                "train.checkpoint_every=100000"),
                   log=tmp_path / "holder.log", LENSHPC_HEARTBEAT_SECONDS="0.3")
    try:
        wait_for(lambda: (run_dir / "history.csv").is_file(), timeout=300, what="the first chunk", proc=holder)
        owner = read_owner(run_dir)
        assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname()
        beat = owner["heartbeat"]
        wait_for(lambda: read_owner(run_dir)["heartbeat"] > beat, timeout=30, what="a heartbeat", proc=holder)

        rc = main(_train_args(repo_root, small_population, run_dir, "train.chunks=100000",
                              "train.checkpoint_every=100000"))
        err = assert_clean_failure((rc, capsys.readouterr().err), 2, "is in use by another lenshpc train",
                                   f"pid {holder.pid}", f"host {socket.gethostname()}", "since", f"kill {holder.pid}")
        assert "--run-dir" in err

        assert main(["status", str(runs)]) == 0
        out = capsys.readouterr().out
        assert "running" in out and f"pid {holder.pid}" in out
        assert "failed" not in out and "--retry-failed" not in out
    finally:
        rc = send(holder, signal.SIGTERM, timeout=300)
    assert rc == 3, (tmp_path / "holder.log").read_text()[-2000:]  # checkpointed on SIGTERM, as before
    assert not (run_dir / OWNER_FILE).exists() and live_owner(run_dir) is None
    with DirLock(run_dir):  # free again
        pass
    text = (run_dir / "train.log").read_text()
    assert all(bad not in text for bad in NOT_FOR_USERS)


def test_a_killed_holder_releases_the_lock(tmp_path):
    d = tmp_path / "run"
    code = (f"import time; from lenshpc.locking import DirLock; DirLock({str(d)!r}).acquire(); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert live_owner(d)["pid"] == proc.pid
        with pytest.raises(UserError, match=f"in use by another lenshpc train .*pid {proc.pid}"):
            DirLock(d).acquire()
    finally:
        send(proc, signal.SIGKILL)
    assert (d / OWNER_FILE).exists()  # SIGKILL leaves the record...
    assert live_owner(d) is None  # ...but the kernel released the lock: not alive
    from lenshpc.train.rundir import RUNNING, read_run_dir

    assert read_run_dir(d).state != RUNNING
    with DirLock(d) as lock:
        assert read_owner(d)["pid"] == os.getpid() and lock.directory == d


def test_a_run_on_another_node_is_live_while_its_heartbeat_is_fresh(tmp_path, monkeypatch):
    """Where flock is not coherent across nodes, the record's heartbeat decides (real files; the other node is
    simulated by the host name in the record: this machine has one node)."""
    monkeypatch.setenv("LENSHPC_HEARTBEAT_SECONDS", "10")
    d = tmp_path / "run"
    d.mkdir()
    (d / LOCK_FILE).touch()
    record = {"host": "node-elsewhere", "pid": 4242, "since": "2026-01-01T00:00:00+00:00", "heartbeat": time.time(),
              "slurm_job": "77_3"}
    (d / OWNER_FILE).write_text(json.dumps(record))
    assert live_owner(d)["slurm_job"] == "77_3"
    record["heartbeat"] = time.time() - 31
    (d / OWNER_FILE).write_text(json.dumps(record))
    assert live_owner(d) is None
