"""The fault-injection matrix (issue 11, §3): every ``lenshpc`` verb × the bad inputs a new user hits.

Families: a missing input path, a junk (non-HDF5 / non-YAML) file, a foreign HDF5 file (valid HDF5, not
lenshpc's), an unknown option value, a read-only output folder.  Each case must exit 2 (user error) with
one ``lenshpc VERB: error:`` (or argparse ``error:``) message that names the offending file or option, and no
traceback.  The verbs come from ``lenshpc.cli.COMMANDS``: a new verb without a row here fails
:func:`test_every_verb_has_a_row`.  A family that cannot apply to a verb is listed in ``NOT_APPLICABLE``
with the reason.

The read-only folder is a real read-only tmpfs mount (the tests run as root, for whom permission bits do
not stop writes); without root it falls back to ``chmod 555`` and is skipped only where neither works.
Inputs are tiny files written here plus (read-only) the session's ``tiny_sweep`` for verbs that need
finished runs; nothing trains.
"""

from __future__ import annotations

import os
import sys
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from lenshpc.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("missing", "junk", "foreign", "option", "readonly")

#: (verb, family) → why the family cannot apply.
NOT_APPLICABLE = {
    ("quickstart", "missing"): "reads no input file (it simulates its own data)",
    ("quickstart", "foreign"): "reads no input file",
    ("simulate", "missing"): "reads no input file",
    ("simulate21cm", "missing"): "reads no input file (it runs 21cmFAST)",
    ("info", "option"): "has no option taking a value",
    ("info", "readonly"): "writes nothing",
    ("status", "foreign"): "reads no HDF5 file (markers and JSON only)",
    ("status", "readonly"): "writes nothing",
    ("reduce", "foreign"): "reads no HDF5 input of its own (predictions of runs are covered by their writers)",
    ("sweep", "readonly"): "covered: the debug executor's first write is sweep.json under --out",
    ("inspect", "foreign"): "reads only the catalogue named in rank.json; a catalogue changed since the ranking is "
                            "refused in tests/test_inspect.py::test_inspect_refuses_bad_rank_dirs",
}


@dataclass
class World:
    """The files every case builds on."""

    tmp: Path
    junk: Path
    foreign: Path
    missing: Path
    ro: Path
    config: Path
    run: Path          # a copy of a finished tiny_sweep run (free to damage)
    catalogue: Path    # a labelled (unlabelled-catalogue) dataset of three cutouts
    sweep_root: Path   # the session's tiny_sweep (read only)
    population: Path


def _readonly_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
        if out.returncode == 0:
            return path
    path.chmod(0o555)
    try:
        (path / ".probe").touch()
    except OSError:
        return path
    (path / ".probe").unlink()
    reason = "cannot make a read-only folder here (no tmpfs mount and permission bits do not apply)"
    if os.environ.get("CI", "").lower() == "true":  # CI runs as root and mounts tmpfs (as faults.small_fs): never skip
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def world(tiny_sweep, analysis_population, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    junk = tmp / "junk.h5"
    junk.write_bytes(b"\x00\x01not an HDF5 file, not YAML either: \xff\xfe\n" * 4)
    foreign = tmp / "foreign.h5"
    with h5py.File(foreign, "w") as fh:
        fh["x"] = np.arange(10)
        fh.attrs["written_by"] = "someone else"
    config = tmp / "cfg.yaml"
    config.write_text(yaml.safe_dump({"extends": str(REPO / "configs" / "tiny.yaml"),
                                      "data": {"path": str(analysis_population)}}))
    run = tmp / "run"
    shutil.copytree(tiny_sweep / "bce" / "seed0", run, ignore=shutil.ignore_patterns("checkpoint"))
    from astropy.io import fits

    cutouts = tmp / "cutouts"
    cutouts.mkdir()
    for i in range(3):
        fits.PrimaryHDU(np.random.default_rng(i).normal(size=(64, 64)).astype(np.float32)).writeto(
            cutouts / f"c{i}.fits")
    catalogue = tmp / "catalogue.h5"
    assert main(["stack", "--images", str(cutouts), "--label-column", "none", "--out", str(catalogue)]) == 0
    ro = _readonly_dir(tmp / "ro")
    yield World(tmp, junk, foreign, tmp / "missing.h5", ro, config, run, catalogue, tiny_sweep, analysis_population)
    subprocess.run(["umount", str(ro)], capture_output=True)
    ro.chmod(0o755)


def _sweep_file(w: World, data: Path, name: str) -> Path:
    path = w.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": str(REPO / "configs" / "tiny.yaml"), "seeds": [0],
                                    "set": {"data.path": str(data), "train.chunks": 1}}))
    return path


def _ensemble_spec(w: World, name: str, runs: Path | None = None) -> Path:
    path = w.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "runs": str(runs or w.sweep_root), "seeds": [0],
                                    "ensembles": [{"name": "avg", "members": ["bce", "f1_soft"],
                                                   "method": "average"}]}))
    return path


def _junk_copy(w: World, name: str) -> Path:
    """A copy of the finished run with ``name`` replaced by junk bytes."""
    run = w.tmp / f"run-junk-{name.replace('.', '_')}"
    if not run.exists():
        shutil.copytree(w.run, run)
        (run / name).write_bytes(w.junk.read_bytes())
    return run


def _rank_dir(w: World) -> Path:
    """A real ranking of the three-cutout catalogue by the copied run (made once)."""
    out = w.tmp / "rankdir"
    if not (out / "ranked.csv").exists():
        assert main(["rank", str(w.run), str(w.catalogue), "--out", str(out)]) == 0
    return out


def _junk_rank_copy(w: World, name: str) -> Path:
    out = w.tmp / f"rankdir-junk-{name.replace('.', '_')}"
    if not out.exists():
        shutil.copytree(_rank_dir(w), out)
        (out / name).write_bytes(w.junk.read_bytes())
    return out


def _rounds_spec(w: World, name: str, catalogue: Path | None = None, out: Path | None = None) -> Path:
    path = w.tmp / f"rounds-{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "out": str(out or w.tmp / f"rounds-{name}"),
                                    "config": str(w.config), "catalogue": str(catalogue or w.catalogue),
                                    "rounds": 2, "mine_top": 1, "set": {"train.chunks": 1}}))
    return path


def _stack_images(w: World, junk: bool) -> Path:
    d = w.tmp / ("fits-junk" if junk else "fits-empty")
    d.mkdir(exist_ok=True)
    if junk:
        (d / "c0.fits").write_bytes(w.junk.read_bytes())
    return d


def _c21_catalogue(w: World) -> Path:
    """Three realisations of 8³ .npy cubes (z 8, 9) and their catalogue: a valid stack21cm input."""
    root = w.tmp / "c21cubes"
    if not root.exists():
        root.mkdir()
        lines = ["file,redshift,f_esc10,realisation"]
        for r in range(3):
            for z in (8, 9):
                np.save(root / f"c{r}_{z}.npy", np.random.default_rng(r).normal(size=(8, 8, 8)).astype(np.float32))
                lines.append(f"c{r}_{z}.npy,{z},-1.0,{r}")
        (root / "cat.csv").write_text("\n".join(lines) + "\n")
    return root / "cat.csv"


C21_GRID = ["--redshifts", "8", "--fesc", "-1", "--realisations", "3"]


#: verb → family → (argv builder, text that must appear in the message)
def cases(w: World) -> dict[str, dict[str, tuple[list[str], str]]]:
    run, ro = str(w.run), w.ro
    return {
        "quickstart": {
            "junk": (["quickstart", "--out", str(w.junk)], str(w.junk)),
            "option": (["quickstart", "--executor", "bogus"], "--executor"),
            "readonly": (["quickstart", "--out", str(ro / "qs")], str(ro)),
        },
        "simulate": {
            "junk": (["simulate", "--out", str(w.junk), "--lenses", "2", "--sources", "2", "--negatives", "2"],
                     str(w.junk)),
            "foreign": (["simulate", "--out", str(w.foreign), "--lenses", "2", "--sources", "2", "--negatives", "2"],
                        str(w.foreign)),
            "option": (["simulate", "--out", str(w.tmp / "s.h5"), "--lenses", "2", "--sources", "2",
                        "--negatives", "2", "--size", "big"], "--size"),
            "readonly": (["simulate", "--out", str(ro / "s.h5"), "--lenses", "2", "--sources", "2",
                          "--negatives", "2"], str(ro)),
        },
        "simulate21cm": {
            "junk": (["simulate21cm", "--out", str(w.junk), *C21_GRID], str(w.junk)),
            "foreign": (["simulate21cm", "--out", str(w.foreign), *C21_GRID], str(w.foreign)),
            "option": (["simulate21cm", "--out", str(w.tmp / "c21.h5"), *C21_GRID, "--executor", "bogus"],
                       "--executor"),
            "readonly": (["simulate21cm", "--out", str(ro / "c21.h5"), *C21_GRID], str(ro)),
        },
        "stack21cm": {
            "missing": (["stack21cm", "--catalogue", str(w.missing), "--out", str(w.tmp / "s21.h5")], str(w.missing)),
            "junk": (["stack21cm", str(w.junk), "--out", str(w.tmp / "s21.h5")], str(w.junk)),
            "foreign": (["stack21cm", str(w.foreign), "--out", str(w.tmp / "s21.h5")], str(w.foreign)),
            "option": (["stack21cm", "--catalogue", str(_c21_catalogue(w)), "--out", str(w.tmp / "s21.h5"),
                        "--split-by", "bogus"], "--split-by"),
            "readonly": (["stack21cm", "--catalogue", str(_c21_catalogue(w)), "--out", str(ro / "s21.h5")], str(ro)),
        },
        "stack": {
            "missing": (["stack", "--images", str(w.tmp / "no-such-dir"), "--label-column", "none", "--out", str(w.tmp / "st.h5")],
                        str(w.tmp / "no-such-dir")),
            "junk": (["stack", "--images", str(_stack_images(w, True)), "--label-column", "none", "--out",
                      str(w.tmp / "st.h5")], "c0.fits"),
            "foreign": (["stack", "--images", str(_stack_images(w, True)), "--catalogue", str(w.foreign),
                         "--out", str(w.tmp / "st.h5")], str(w.foreign)),
            "option": (["stack", "--images", str(_stack_images(w, True)), "--split", "a,b,c",
                        "--out", str(w.tmp / "st.h5")], "--split"),
            "readonly": (["stack", "--images", str(w.catalogue.parent / "cutouts"), "--label-column", "none", "--out",
                          str(ro / "st.h5")], str(ro)),
        },
        "info": {
            "missing": (["info", str(w.missing)], str(w.missing)),
            "junk": (["info", str(w.junk)], str(w.junk)),
            "foreign": (["info", str(w.foreign)], str(w.foreign)),
        },
        "train": {
            "missing": (["train", str(w.tmp / "no.yaml")], str(w.tmp / "no.yaml")),
            "junk": (["train", str(w.junk)], str(w.junk)),
            "foreign": (["train", str(w.config), "--set", f"data.path={w.foreign}", "--run-dir",
                         str(w.tmp / "t-foreign")], str(w.foreign)),
            "option": (["train", str(w.config), "--distributed", "bogus"], "--distributed"),
            "readonly": (["train", str(w.config), "--run-dir", str(ro / "run")], str(ro)),
        },
        "evaluate": {
            "missing": (["evaluate", str(w.tmp / "no-run")], str(w.tmp / "no-run")),
            "junk": (["evaluate", run, "--data", str(w.junk)], str(w.junk)),
            "foreign": (["evaluate", run, "--data", str(w.foreign)], str(w.foreign)),
            "option": (["evaluate", run, "--split", "bogus"], "--split"),
            "readonly": (["evaluate", run, "--out", str(ro / "eval")], str(ro)),
        },
        "sweep": {
            "missing": (["sweep", str(w.tmp / "no-sweep.yaml"), "--dry-run"], str(w.tmp / "no-sweep.yaml")),
            "junk": (["sweep", str(w.junk), "--dry-run"], str(w.junk)),
            "foreign": (["sweep", str(_sweep_file(w, w.foreign, "foreign_data")), "--dry-run"], str(w.foreign)),
            "option": (["sweep", str(_sweep_file(w, w.population, "ok")), "--executor", "bogus"], "--executor"),
        },
        "status": {
            "missing": (["status", str(w.tmp / "no-sweep-dir")], str(w.tmp / "no-sweep-dir")),
            "junk": (["status", str(w.junk)], str(w.junk)),
            "option": (["status", str(w.sweep_root), "--only", "bogus"], "--only"),
        },
        "reduce": {
            "missing": (["reduce", str(w.tmp / "no-sweep-dir")], str(w.tmp / "no-sweep-dir")),
            "junk": (["reduce", str(w.junk)], str(w.junk)),
            "option": (["reduce", str(w.sweep_root), "--group-by", "no.such_key", "--out", str(w.tmp / "r"),
                        "--no-plots"], "no.such_key"),
            "readonly": (["reduce", str(w.sweep_root), "--out", str(ro / "report"), "--no-plots"], str(ro)),
        },
        "maxtree": {
            "missing": (["maxtree", str(w.missing), "--out", str(w.tmp / "seg.h5")], str(w.missing)),
            "junk": (["maxtree", str(w.junk), "--out", str(w.tmp / "seg.h5")], str(w.junk)),
            "foreign": (["maxtree", str(w.foreign), "--out", str(w.tmp / "seg.h5")], str(w.foreign)),
            "option": (["maxtree", str(w.population), "--out", str(w.tmp / "seg.h5"), "--executor", "bogus"],
                       "--executor"),
            "readonly": (["maxtree", str(w.population), "--out", str(ro / "seg.h5")], str(ro)),
        },
        "ensemble": {
            "missing": (["ensemble", str(w.tmp / "no-spec.yaml")], str(w.tmp / "no-spec.yaml")),
            "junk": (["ensemble", str(w.junk)], str(w.junk)),
            "foreign": (["ensemble", str(_ensemble_spec(w, "foreign_runs", runs=w.foreign))], str(w.foreign)),
            "option": (["ensemble", str(_ensemble_spec(w, "ok")), "--executor", "bogus"], "--executor"),
            "readonly": (["ensemble", str(_ensemble_spec(w, "ro")), "--out", str(ro / "ens")], str(ro)),
        },
        "gradcam": {
            "missing": (["gradcam", str(w.tmp / "no-run")], str(w.tmp / "no-run")),
            "junk": (["gradcam", str(_junk_copy(w, "model.keras"))], "model.keras"),
            "foreign": (["gradcam", run, "--data", str(w.foreign)], str(w.foreign)),
            "option": (["gradcam", run, "--cases", "tp,bogus"], "bogus"),
            "readonly": (["gradcam", run, "--out", str(ro / "cam")], str(ro)),
        },
        "infocontent": {
            "missing": (["infocontent", str(w.tmp / "no-run")], str(w.tmp / "no-run")),
            "junk": (["infocontent", str(_junk_copy(w, "predictions.h5"))], "predictions.h5"),
            "foreign": (["infocontent", run, "--data", str(w.foreign)], str(w.foreign)),
            "option": (["infocontent", run, "--bins", "alpha=bogus"], "bogus"),
            "readonly": (["infocontent", run, "--out", str(ro / "info")], str(ro)),
        },
        "rank": {
            "missing": (["rank", run, str(w.missing)], str(w.missing)),
            "junk": (["rank", run, str(w.junk)], str(w.junk)),
            "foreign": (["rank", run, str(w.foreign)], str(w.foreign)),
            "option": (["rank", run, str(w.catalogue), "--executor", "bogus"], "--executor"),
            "readonly": (["rank", run, str(w.catalogue), "--out", str(ro / "rank")], str(ro)),
        },
        "survey": {
            "missing": (["survey", str(w.missing), "--out", str(w.tmp / "s.h5")], str(w.missing)),
            "junk": (["survey", str(w.junk), "--out", str(w.tmp / "s.h5")], str(w.junk)),
            "foreign": (["survey", str(w.foreign), "--out", str(w.tmp / "s.h5")], str(w.foreign)),
            "option": (["survey", str(w.population), "--out", str(w.tmp / "s.h5"), "--contaminants", "bogus=0.1"],
                       "bogus"),
            "readonly": (["survey", str(w.population), "--out", str(ro / "s.h5")], str(ro)),
        },
        "inspect": {
            "missing": (["inspect", str(w.tmp / "no-rank")], str(w.tmp / "no-rank")),
            "junk": (["inspect", str(_junk_rank_copy(w, "ranked.csv"))], "ranked.csv"),
            "option": (["inspect", str(_rank_dir(w)), "--top", "0"], "--top"),
            "readonly": (["inspect", str(_rank_dir(w)), "--out", str(ro / "page.html")], str(ro)),
        },
        "mine": {
            "missing": (["mine", str(w.tmp / "no-rank"), "--top", "1", "--out", str(w.tmp / "hn.h5")],
                        str(w.tmp / "no-rank")),
            "junk": (["mine", str(_rank_dir(w)), "--labels", str(w.junk), "--out", str(w.tmp / "hn.h5")],
                     str(w.junk)),
            "foreign": (["mine", str(_rank_dir(w)), "--top", "1", "--catalogue", str(w.foreign), "--out",
                         str(w.tmp / "hn.h5")], str(w.foreign)),
            "option": (["mine", str(_rank_dir(w)), "--top", "bogus", "--out", str(w.tmp / "hn.h5")], "--top"),
            "readonly": (["mine", str(_rank_dir(w)), "--top", "1", "--out", str(ro / "hn.h5")], str(ro)),
        },
        "rounds": {
            "missing": (["rounds", str(w.tmp / "no-rounds.yaml")], str(w.tmp / "no-rounds.yaml")),
            "junk": (["rounds", str(w.junk)], str(w.junk)),
            "foreign": (["rounds", str(_rounds_spec(w, "foreign", catalogue=w.foreign))], str(w.foreign)),
            "option": (["rounds", str(_rounds_spec(w, "ok")), "--executor", "bogus"], "--executor"),
            "readonly": (["rounds", str(_rounds_spec(w, "ro", out=ro / "rounds"))], str(ro)),
        },
    }


def test_every_verb_has_a_row():
    """Each verb of the CLI registry has every family covered or explicitly excused."""
    covered = {f"{v}-{f}" for v, fams in _TABLE_SHAPE.items() for f in fams}
    for verb in COMMANDS:
        for family in FAMILIES:
            assert f"{verb}-{family}" in covered or (verb, family) in NOT_APPLICABLE, \
                f"lenshpc {verb}: no fault-injection case for '{family}' in tests/reliability/test_commands.py"


#: The shape of :func:`cases` without building files (verb → families); kept equal by test_table_shape.
_TABLE_SHAPE = {
    "quickstart": ("junk", "option", "readonly"),
    "simulate": ("junk", "foreign", "option", "readonly"),
    "simulate21cm": ("junk", "foreign", "option", "readonly"),
    "stack21cm": FAMILIES,
    "stack": FAMILIES,
    "info": ("missing", "junk", "foreign"),
    "train": FAMILIES,
    "evaluate": FAMILIES,
    "sweep": ("missing", "junk", "foreign", "option"),
    "status": ("missing", "junk", "option"),
    "reduce": ("missing", "junk", "option", "readonly"),
    "maxtree": FAMILIES,
    "ensemble": FAMILIES,
    "gradcam": FAMILIES,
    "infocontent": FAMILIES,
    "rank": FAMILIES,
    "survey": FAMILIES,
    "inspect": ("missing", "junk", "option", "readonly"),
    "mine": FAMILIES,
    "rounds": FAMILIES,
}


def test_table_shape(world):
    assert {v: tuple(f) for v, f in cases(world).items()} == {v: tuple(f) for v, f in _TABLE_SHAPE.items()}


@pytest.mark.parametrize("verb, family", [(v, f) for v, fams in _TABLE_SHAPE.items() for f in fams],
                         ids=[f"{v}-{f}" for v, fams in _TABLE_SHAPE.items() for f in fams])
def test_bad_input_is_a_clear_user_error(world, capsys, verb, family):
    argv, named = cases(world)[verb][family]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejects option values itself (exit 2, usage + "error:")
        rc = exc.code
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err and "Traceback" not in captured.out, err
    assert rc == 2, f"lenshpc {' '.join(argv)} → exit {rc}\n{err}\n{captured.out[-2000:]}"
    assert "error:" in err and named in err, f"the message must name {named!r}:\n{err}"
    if os.environ.get("RELB_SHOW"):
        print(f"\n@@ {verb}-{family}: {err.strip().splitlines()[-1][:400]}", file=sys.__stderr__)
