"""Fault injection, files and datasets: full and read-only disks, SIGTERM/SIGKILL mid-write, debris, junk,
corrupt and foreign outputs and inputs, non-finite pixels (issue 11 §2.1, 2.2, 2.8, 2.9, 2.10; docs/reliability.md).

Everything is real: ``python -m lenshpc`` subprocesses (or ``lenshpc.cli.main``), real tmpfs mounts (the suite runs
as root in CI; skipped with a reason elsewhere), real signals, real HDF5/FITS files.  Each test asserts the user's
view: exit code, a message naming what/where/fix, no traceback, no temp files left, good outputs untouched.
"""

from __future__ import annotations

import logging
import random
import signal
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from faults import assert_clean_failure, debris, fill, h5_content, lenshpc, send, small_fs, start, wait_for
from lenshpc.cli import main
from lenshpc.data.format import open_dataset, write_population

SIM = ("--lenses", "20", "--sources", "40", "--negatives", "20", "--size", "32")
#: ~2.3 MB of images at 64×64 px: more than the 2 MB test file system holds.
SIM_TOO_BIG = ("--lenses", "80", "--sources", "40", "--negatives", "60", "--size", "64")
#: A few seconds of simulation: long enough to be hit by a signal mid-write.
SIM_SLOW = ("--lenses", "40", "--sources", "240", "--negatives", "40", "--size", "64")


def _temps(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f".{name}.*.tmp"))


# ------------------------------------------------------------------ full / read-only disks (§2.1)
def test_simulate_onto_a_full_disk_says_so_and_leaves_the_old_file(tmp_path):
    """A subprocess: before the fix this segfaulted (exit 139) after hundreds of h5py __dealloc__ tracebacks."""
    with small_fs(tmp_path / "fs", "2m") as fs:
        good = fs / "pop.h5"
        assert main(["simulate", "--out", str(good), *SIM]) == 0
        before = good.read_bytes()
        proc = lenshpc("simulate", "--out", str(good), *SIM_TOO_BIG, "--force")
        err = assert_clean_failure(proc, 2, "no space left", str(good), "another --out")
        assert "MB file system" in err
        assert debris(fs) == [] and good.read_bytes() == before  # the previous good output is intact
        assert main(["simulate", "--out", str(fs / "new.h5"), *SIM_TOO_BIG]) == 2
        assert not (fs / "new.h5").exists() and debris(fs) == []


def test_stack_and_text_files_on_a_full_disk(tmp_path, fits_dir, capsys):
    with small_fs(tmp_path / "fs", "1m") as fs:
        fill(fs, 20_000)
        rc = main(["stack", "--images", str(fits_dir), "--catalogue", str(fits_dir / "cat.csv"),
                   "--out", str(fs / "d.h5")])
        assert_clean_failure((rc, capsys.readouterr().err), 2, "no space left", "d.h5")
        assert debris(fs) == [] and not (fs / "d.h5").exists()
        from lenshpc.errors import StorageError
        from lenshpc.utils import atomic_write_json

        with pytest.raises(StorageError, match="metrics.json: no space left"):
            atomic_write_json(fs / "run" / "metrics.json", {"x": "y" * 100_000})
        assert debris(fs) == []


def test_read_only_output_is_refused_clearly(tmp_path, capsys):
    with small_fs(tmp_path / "ro", "1m", readonly=True) as ro:
        rc = main(["simulate", "--out", str(ro / "pop.h5"), *SIM])
        assert_clean_failure((rc, capsys.readouterr().err), 2, "read-only file system", "pop.h5", "elsewhere")


# ------------------------------------------------------------------ signals (§2.1)
def test_sigterm_during_simulate_removes_its_temp_file(tmp_path):
    out = tmp_path / "pop.h5"
    proc = start("simulate", "--out", str(out), *SIM_SLOW, log=tmp_path / "log")
    wait_for(lambda: _temps(tmp_path, out.name), what="the temp file", proc=proc)
    rc = send(proc, signal.SIGTERM)
    err = (tmp_path / "log").read_text()
    assert_clean_failure((rc, err), 143, "stopped by SIGTERM", "re-run")
    assert debris(tmp_path) == [] and not out.exists()


def test_sigkill_debris_is_cleaned_and_the_rerun_equals_a_fresh_run(tmp_path, caplog, capsys):
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    killed.mkdir()
    out = killed / "pop.h5"
    proc = start("simulate", "--out", str(out), *SIM_SLOW, log=tmp_path / "log")
    wait_for(lambda: _temps(killed, out.name), what="the temp file", proc=proc)
    random.seed()
    import time

    time.sleep(random.uniform(0, 0.5))  # a random point of the write
    send(proc, signal.SIGKILL)
    left = _temps(killed, out.name)
    assert left, "SIGKILL cannot be caught: its temp file is what the next run must clean"
    with caplog.at_level(logging.INFO, logger="lenshpc"):
        assert main(["simulate", "--out", str(out), *SIM_SLOW]) == 0
    assert "left by a killed writer" in caplog.text and debris(killed) == []
    assert main(["simulate", "--out", str(fresh / "pop.h5"), *SIM_SLOW]) == 0
    assert h5_content(out) == h5_content(fresh / "pop.h5")  # byte-identical datasets and attributes


def test_a_live_writers_temp_file_is_not_touched(tmp_path):
    """Debris cleaning removes only files of dead writers (this process is alive, another host's fresh file too)."""
    import os
    import socket

    from lenshpc.utils import remove_stale_temps

    target = tmp_path / "x.h5"
    mine = tmp_path / f".x.h5.{os.getpid()}@{socket.gethostname().split('.')[0]}.abc12345.tmp"
    other_host = tmp_path / ".x.h5.123@elsewhere.abc12345.tmp"
    dead = tmp_path / f".x.h5.{2 ** 22 + 7}@{socket.gethostname().split('.')[0]}.abc12345.tmp"
    old_style = tmp_path / ".x.h5.mo3d0yxo.tmp"
    for p in (mine, other_host, dead, old_style):
        p.write_bytes(b"partial")
    os.utime(old_style, (0, 0))  # an old lenshpc's temp name, untouched for decades
    removed = remove_stale_temps(target)
    assert sorted(removed) == sorted([dead, old_style])
    assert mine.exists() and other_host.exists()


def test_stale_temps_need_one_listing_per_folder(tmp_path, monkeypatch):
    """Thousands of shards in one folder: the folder is listed once per process, not once per write, and every
    target's debris from before that listing is still removed at its own first write (a live writer's kept)."""
    import os
    import socket

    from lenshpc.utils import atomic_write_text

    host = socket.gethostname().split(".")[0]
    dead = {n: tmp_path / f".{n}.{2 ** 22 + 7}@{host}.abc12345.tmp" for n in ("s0.h5", "s1.h5", "s2.h5")}
    live = tmp_path / f".s1.h5.{os.getpid()}@{host}.live0000.tmp"
    for p in (*dead.values(), live):
        p.write_bytes(b"partial")
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: listed.append(p) or scandir(p))  # a spy: the real listing runs
    for k in range(40):
        atomic_write_text(tmp_path / f"s{k}.h5", "x")
        assert not dead.get(f"s{k}.h5", tmp_path / "none").exists()
    atomic_write_text(tmp_path / "sub" / "a.txt", "x")  # another folder: listed once of its own
    assert listed == [tmp_path, tmp_path / "sub"]
    assert live.exists() and debris(tmp_path) == [live]


def test_an_error_inside_an_atomic_write_keeps_its_own_message(tmp_path):
    """Only a failure of the write itself reads "cannot write TARGET"; an error about another file inside the
    block (here a real read-only file system) is raised unchanged, and the temp file is still removed."""
    from lenshpc.errors import StorageError
    from lenshpc.utils import atomic_path

    target = tmp_path / "out.txt"
    with small_fs(tmp_path / "ro", "1m", readonly=True) as ro:
        with pytest.raises(OSError) as info:
            with atomic_path(target) as tmp:
                tmp.write_text("partial")
                open(ro / "side.txt", "w")
        assert not isinstance(info.value, StorageError) and info.value.filename == str(ro / "side.txt")
        assert "Read-only file system" in str(info.value) and debris(tmp_path) == [] and not target.exists()
        with pytest.raises(StorageError, match=r"cannot write .*side\.txt: read-only file system"):
            with atomic_path(ro / "side.txt"):
                pass
        with pytest.raises(StorageError, match=r"cannot write .*out\.txt: read-only file system"):
            with atomic_path(target) as tmp:  # the block's own write failing (as a file object's write does)
                raise OSError(30, "Read-only file system", str(tmp))


def test_a_killed_model_save_is_cleaned_by_the_next(tmp_path):
    """``model.keras`` is saved via ``.model.tmpPID.keras`` (Keras insists on the suffix); a dead pid's is debris."""
    from lenshpc.train.rundir import save_model

    dead = tmp_path / f".model.tmp{2 ** 22 + 7}.keras"
    dead.write_bytes(b"half a model")

    class Model:  # the one method save_model calls (a Keras model's save)
        def save(self, path):
            Path(path).write_bytes(b"model")

    save_model(Model(), tmp_path / "model.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_sigterm_during_stack_leaves_nothing_and_the_rerun_completes(tmp_path, fits_dir):
    out = tmp_path / "d.h5"
    args = ("stack", "--images", str(fits_dir), "--catalogue", str(fits_dir / "cat.csv"), "--out", str(out),
            "--workers", "1")
    proc = start(*args, log=tmp_path / "log", LENSHPC_NO_PROGRESS="")
    wait_for(lambda: "stack images" in (tmp_path / "log").read_text(), what="stack to start", proc=proc)
    rc = send(proc, signal.SIGTERM)
    err = (tmp_path / "log").read_text()
    if rc != 0:  # (it may have finished first on a fast machine)
        assert_clean_failure((rc, err), 143, "stopped by SIGTERM")
        assert not out.exists()
    assert debris(tmp_path) == []
    assert main(list(args)) == 0
    with open_dataset(out) as ds:
        assert ds.count("images") == len(CAT_IDS)


# ------------------------------------------------------------------ existing outputs (§2.8)
def test_stack_onto_junk_foreign_or_other_inputs_is_refused(tmp_path, fits_dir, capsys):
    out = tmp_path / "d.h5"
    base = ["stack", "--images", str(fits_dir), "--catalogue", str(fits_dir / "cat.csv"), "--out", str(out)]
    out.write_bytes(b"junk1234")  # the 8-byte junk file of the issue
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "not a usable lenshpc dataset" in err and "--force" in err and "nothing to do" not in err
    assert out.read_bytes() == b"junk1234"
    with h5py.File(out, "w") as fh:  # a foreign HDF5 file
        fh["x"] = np.zeros(3)
    assert main(base) == 2 and "not a lenshpc dataset" in capsys.readouterr().err
    assert main([*base, "--force"]) == 0
    capsys.readouterr()
    assert main(base) == 0 and "nothing to do" in capsys.readouterr().out
    before = out.read_bytes()
    assert main([*base, "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "stacked from other inputs" in err and "seed: 0 -> 3" in err and out.read_bytes() == before
    simulated = tmp_path / "sim.h5"
    write_population(simulated, *(np.ones((4, 8, 8, 1), np.float32),) * 3)
    base[-1] = str(simulated)
    assert main(base) == 2 and "not written by `lenshpc stack`" in capsys.readouterr().err


def test_truncated_inputs_and_outputs_are_named(tmp_path, capsys):
    path = tmp_path / "pop.h5"
    write_population(path, *(np.ones((10, 8, 8, 1), np.float32),) * 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not a readable HDF5 file" in err


# ------------------------------------------------------------------ raw one-line exceptions (§2.9)
def test_text_schema_version_and_out_of_range_split(tmp_path, capsys):
    path = tmp_path / "pop.h5"
    write_population(path, *(np.ones((10, 8, 8, 1), np.float32),) * 3)
    with h5py.File(path, "r+") as fh:
        fh.attrs["schema_version"] = "one"
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "schema_version" in err and "'one'" in err and str(path) in err and "ValueError" not in err
    write_population(path, *(np.ones((10, 8, 8, 1), np.float32),) * 3)
    with h5py.File(path, "r+") as fh:
        test = fh["splits/lenses/test"][()]
        del fh["splits/lenses/test"]
        fh["splits/lenses/test"] = np.append(test, 99)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "splits/lenses/test" in err and "outside 0..9" in err and "first 99" in err and "IndexError" not in err


# ------------------------------------------------------------------ non-finite pixels (§2.2)
def test_nan_pixels_are_refused_where_the_pool_is_loaded(tmp_path, small_population, repo_root, capsys):
    data = tmp_path / "nan.h5"
    shutil.copy(small_population, data)
    with h5py.File(data, "r+") as fh:  # one NaN pixel in every lens, written "outside lenshpc"
        lenses = fh["lenses"][()]
        lenses[:, 5, 5, 0] = np.nan
        fh["lenses"][...] = lenses
    run_dir = tmp_path / "run"
    rc = main(["train", str(repo_root / "configs" / "tiny.yaml"), "--set", f"data.path={data}",
               "--set", "train.chunks=2", "--set", "data.chunk_size=64", "--set", "data.val_size=32",
               "--run-dir", str(run_dir)])
    err = assert_clean_failure((rc, capsys.readouterr().err), 2, str(data), "'lenses'", "NaN/Inf", "first: image")
    assert "image(s)" in err
    assert not (run_dir / "DONE").exists() and not (run_dir / "metrics.json").exists()


def test_every_image_reader_checks_finiteness(tmp_path):
    from lenshpc.data.chunks import read_rows
    from lenshpc.errors import DataError

    path = tmp_path / "pop.h5"
    write_population(path, *(np.ones((20, 8, 8, 1), np.float32),) * 3)
    with h5py.File(path, "r+") as fh:
        fh["negatives"][7, 1, 2, 0] = np.inf
        fh["negatives"][11, 0, 0, 0] = np.nan
    with open_dataset(path) as ds:
        assert ds.read("negatives", [0, 1, 2]).shape == (3, 8, 8, 1)  # clean rows read fine
        for read in (lambda: ds.read("negatives"), lambda: ds.read("negatives", [11, 3, 7]),
                     lambda: read_rows(ds, "negatives", np.arange(20))):
            with pytest.raises(DataError, match=r"'negatives' holds NaN/Inf pixels in 2 image\(s\) \(first: image 7 contains Inf\)"):
                read()


# ------------------------------------------------------------------ catalogue labels (§2.10)
def test_label_words_are_refused_unless_asked_for_and_anything_else_is_refused(tmp_path, fits_dir, capsys):
    """Issue 11 item 2.10: yes/no words were read as 1/0 silently; now only with --label-words."""
    words = Table({"ID": CAT_IDS, "is_lens": np.array(["yes" if i % 2 else "No " for i in range(len(CAT_IDS))], "U8")})
    words.write(tmp_path / "words.csv", format="ascii.csv")
    out = tmp_path / "w.h5"
    assert main(["stack", "--images", str(fits_dir), "--catalogue", str(tmp_path / "words.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "words.csv" in err and "--label-words" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["stack", "--images", str(fits_dir), "--catalogue", str(tmp_path / "words.csv"), "--out", str(out),
                 "--label-words"]) == 0
    with open_dataset(out) as ds:
        np.testing.assert_array_equal(ds.labels(), [i % 2 for i in range(len(CAT_IDS))])
    words["is_lens"][3] = "maybe"
    words.write(tmp_path / "bad.csv", format="ascii.csv", overwrite=True)
    assert main(["stack", "--images", str(fits_dir), "--catalogue", str(tmp_path / "bad.csv"),
                 "--out", str(tmp_path / "b.h5"), "--label-words"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "'is_lens'" in err and f"ID {CAT_IDS[3]}='maybe' (row 4)" in err
    assert not (tmp_path / "b.h5").exists()


# ------------------------------------------------------------------ fixtures
CAT_IDS = np.arange(500, 560)


@pytest.fixture(scope="module")
def fits_dir(tmp_path_factory) -> Path:
    """60 FITS cutouts 48×48 with a catalogue (ID, is_lens): a labelled `stack` input."""
    root = tmp_path_factory.mktemp("fits")
    rng = np.random.default_rng(0)
    for cid in CAT_IDS:
        fits.PrimaryHDU(rng.normal(size=(48, 48)).astype(np.float32)).writeto(root / f"cut-{cid}.fits")
    Table({"ID": CAT_IDS, "is_lens": CAT_IDS % 2}).write(root / "cat.csv", format="ascii.csv")
    return root
