"""``lenshpc simulate21cm`` with REAL (tiny) 21cmFAST boxes: shards, resume, split by realisation, bad input.

Skips without 21cmFAST, except in CI (CI=true), where it fails (fixture ``cosmo21cm``, tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lenshpc.cli import main
from lenshpc.data.cosmo21cm import slices

def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fixture_dataset_is_real_21cmfast_split_by_realisation(c21_dataset):
    with slices.open_slices(c21_dataset) as ds:
        grid = ds.attrs["provenance"]["grid"]
        assert len(ds) == 4 * 3 * 2 * 3 * 32 and ds.image_shape == (32, 32, 1)
        assert ds.simulator["code"] == "21cmFAST" and ds.simulator["version"] == "4.1.1"
        assert ds.classes("redshift") == grid["redshifts"]
        splits = {s: set(ds.meta(s)["realisation"].tolist()) for s in ("train", "val", "test")}
        assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"] or splits["val"] & splits["test"])
        assert set().union(*splits.values()) == {0, 1, 2, 3}
        for target in ds.targets:
            ds.check_classes(target)
        meta = ds.meta("all")
        assert len(set(meta["seed"].tolist())) == 4  # one 21cmFAST random seed per realisation
        # Physics, not tuning: at fixed z and seed, a larger escape fraction ionises more (issue 13's measured facts).
        for z in grid["redshifts"]:
            lo = meta["box_x_hi"][(meta["redshift"] == z) & (meta["f_esc10"] == -1.3)]
            hi = meta["box_x_hi"][(meta["redshift"] == z) & (meta["f_esc10"] == -0.7)]
            assert lo.mean() > hi.mean()
        # The stored slices are the box's planes: a slice's mean equals the recorded mean_dtb.
        images = ds.images(np.arange(0, len(ds), 97))
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), meta["mean_dtb"][::97], rtol=1e-4, atol=1e-4)


def test_one_and_three_shards_give_byte_identical_files(c21_tiny, c21_tiny_args, tmp_path):
    out = tmp_path / "k3.h5"
    assert main(["simulate21cm", "--out", str(out), *c21_tiny_args, "--shards", "3", "--executor", "local"]) == 0
    assert _md5(out) == _md5(c21_tiny)
    assert not (tmp_path / "k3.h5.parts").exists()  # parts removed after the merge
    # a re-run is a no-op
    assert main(["simulate21cm", "--out", str(out), *c21_tiny_args]) == 0


def test_killed_run_resumes_and_skips_finished_realisations(c21_tiny, c21_tiny_args, tmp_path):
    out = tmp_path / "r.h5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "lenshpc", "simulate21cm", "--out", str(out), *c21_tiny_args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    first = tmp_path / "r.h5.parts" / "real-00000.h5"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, worker included, mid-way: no clean-up at all
    proc.wait()
    assert first.exists() and not out.exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    reused = int(rerun.stdout.split(" reused")[0].rsplit(", ", 1)[-1])
    assert reused >= 1, rerun.stdout
    assert _md5(out) == _md5(c21_tiny)
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "r.h5.parts").exists()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_killed_worker_is_a_clear_error(cosmo21cm, c21_tiny_args, tmp_path):
    """SIGKILL of one worker process (what the kernel's OOM killer does) → exit 2 naming the memory need."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "w.h5"
    # 32³ boxes: a worker lives for seconds, not the fraction of one a 16³ box takes (no race with its exit)
    longer = ["--hii-dim", "32", "--box-len", "48", "--r-bubble-max", "15"]
    proc = subprocess.Popen([sys.executable, "-m", "lenshpc", "simulate21cm", "--out", str(out), *c21_tiny_args,
                             *longer],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, workers = time.monotonic() + 120, []
    while not workers and proc.poll() is None and time.monotonic() < deadline:
        # main → forkserver → worker: the workers are the grandchildren
        workers = [g for c in _children(proc.pid) for g in _children(c)]
        time.sleep(0.05)
    assert workers, "no worker process appeared"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "died (killed: out of memory?" in err and "re-run the same command" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--redshifts", "4"], "redshift 4 is outside 21cmFAST's range [5.5, 35]"),
    (["--redshifts", "8", "8"], "values repeat"),
    (["--fesc", "0.3"], "F_ESC10 0.3 is outside 21cmFAST's range [-3, 0]"),
    (["--box-len", "30"], "R_BUBBLE_MAX 15 Mpc is larger than BOX_LEN/3 = 10 Mpc"),
    (["--realisations", "2"], "at least 3 realisations"),
    (["--hii-dim", "4"], "--hii-dim must be an integer ≥ 8"),
    (["--slices-per-axis", "99"], "--slices-per-axis must be in 1..32"),
])
def test_bad_grid_is_a_user_error_before_any_work(tmp_path, capsys, args, message):
    base = {"--redshifts": ["8"], "--fesc": ["-1"], "--realisations": ["3"], "--box-len": ["48"]}
    base[args[0]] = args[1:]
    argv = ["simulate21cm", "--out", str(tmp_path / "x.h5")] + [a for k, v in base.items() for a in (k, *v)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the parts folder


def test_without_21cmfast_the_command_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "py21cmfast", None)  # import py21cmfast → ImportError
    assert main(["simulate21cm", "--out", str(tmp_path / "x.h5"), "--redshifts", "8", "--fesc", "-1",
                 "--realisations", "3"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[cosmo21cm]'" in err and "install-21cmfast.sh" in err
    assert list(tmp_path.iterdir()) == []


def test_existing_foreign_output_needs_force(tmp_path, capsys):
    out = tmp_path / "x.h5"
    out.write_text("not mine")
    assert main(["simulate21cm", "--out", str(out), "--redshifts", "8", "--fesc", "-1", "--realisations", "3"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "not mine"
