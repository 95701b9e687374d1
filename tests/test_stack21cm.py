"""``lenshpc stack21cm``: users' own cubes → the slice dataset simulate21cm writes.

The first test saves REAL 21cmFAST boxes (the ``c21_tiny`` grid, recomputed with the same seeds) as 21cmFAST HDF5
outputs, .npy, FITS and raw ``delta_T*`` files and checks that stacking them gives simulate21cm's slices; the
bad-input tests use small synthetic cubes (no 21cmFAST needed).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest

from lenshpc.cli import main
from lenshpc.data.cosmo21cm import slices


def _catalogue(path: Path, rows: list[tuple], header=("file", "redshift", "f_esc10", "realisation")) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def saved_boxes(c21_tiny, tmp_path_factory):
    """The boxes of ``c21_tiny``, saved by 21cmFAST itself (Coeval.save) and as .npy / FITS / raw delta_T."""
    import py21cmfast as p21c
    from astropy.io import fits

    from lenshpc.data.cosmo21cm.params import TEMPLATE, Grid

    with slices.open_slices(c21_tiny) as ds:
        g = dict(ds.attrs["provenance"]["grid"])
    grid = Grid.checked(g["redshifts"], g["f_esc10"], g["realisations"], hii_dim=g["hii_dim"], box_len=g["box_len"],
                        seed=g["seed"], slices_per_axis=len(g["positions"]), r_bubble_max=g["r_bubble_max"])
    root = tmp_path_factory.mktemp("cubes")
    (root / "h5").mkdir()
    rows = []
    kinds = ("npy", "fits", "legacy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(grid.realisations):
            ic = None
            for z, f in grid.boxes:
                inputs = p21c.InputParameters.from_template(TEMPLATE, **grid.input_kwargs(f, r))
                if ic is None:
                    ic = p21c.compute_initial_conditions(inputs=inputs)
                coeval = p21c.run_coeval(inputs=inputs, out_redshifts=[z], write=False, initial_conditions=ic)[0]
                coeval.save(str(root / "h5" / f"coeval_r{r}_z{z:g}.h5"))
                cube = np.asarray(coeval.brightness_temp, dtype=np.float32)
                kind = kinds[r]
                if kind == "npy":
                    name = f"r{r}_z{z:g}.npy"
                    np.save(root / name, cube)
                elif kind == "fits":
                    name = f"r{r}_z{z:g}.fits"
                    fits.PrimaryHDU(cube).writeto(root / name)
                else:
                    name = f"delta_T_v3_z{z:06.2f}_nf{float(coeval.neutral_fraction.mean()):.6f}_useTs0_16_24Mpc"
                    cube.astype("<f4").tofile(root / name)
                rows.append((name, z, f, r))
    return grid, root, _catalogue(root / "params.csv", rows)


def test_stacked_cubes_equal_simulated_slices(c21_tiny, saved_boxes, tmp_path):
    grid, root, catalogue = saved_boxes
    out = tmp_path / "cat.h5"
    assert main(["stack21cm", "--catalogue", str(catalogue), "--out", str(out), "--slices-per-axis", "4",
                 "--seed", str(grid.seed)]) == 0
    with slices.open_slices(out) as got, slices.open_slices(c21_tiny) as ref:
        np.testing.assert_array_equal(got.images("all"), ref.images("all"))  # .npy, FITS and raw δT_b boxes alike
        for target in ref.targets:
            np.testing.assert_array_equal(got.labels(target), ref.labels(target))
        assert got.split_realisations == ref.split_realisations
        np.testing.assert_allclose(got.meta()["mean_dtb"], ref.meta()["mean_dtb"])
        legacy = got.meta()["realisation"] == 2  # x_HI of the raw boxes comes from their names (_nf)
        np.testing.assert_allclose(got.meta()["box_x_hi"][legacy], ref.meta()["box_x_hi"][legacy], atol=1e-6)

    # 21cmFAST's own HDF5 outputs need no catalogue: z, F_ESC10 and random_seed (= realisation) come from the files
    out2 = tmp_path / "h5.h5"
    assert main(["stack21cm", str(root / "h5"), "--out", str(out2), "--slices-per-axis", "4"]) == 0
    with slices.open_slices(out2) as got, slices.open_slices(c21_tiny) as ref:
        assert got.classes("redshift") == ref.classes("redshift") and got.classes("escape_fraction") == [-1.0]
        gm, rm = got.meta(), ref.meta()
        assert sorted(set(gm["realisation"].tolist())) == sorted(set(rm["seed"].tolist()))
        for seed in set(rm["seed"].tolist()):
            for z in grid.redshifts:
                a, b = ((m["seed"] == seed) & (m["redshift"] == z) for m in (gm, rm))
                np.testing.assert_array_equal(got.images(np.flatnonzero(a)), ref.images(np.flatnonzero(b)))
                np.testing.assert_allclose(gm["x_hi"][a], rm["x_hi"][b])  # from the file's IonizedBox


def _cubes(root: Path, n_real=3, shape=(8, 8, 8), zs=(8.0, 9.0), fs=(-1.3, -0.7)) -> list[tuple]:
    rng = np.random.default_rng(0)
    rows = []
    for r in range(n_real):
        for z in zs:
            for f in fs:
                name = f"c{r}_{z:g}_{f:g}.npy"
                np.save(root / name, rng.normal(size=shape).astype(np.float32))
                rows.append((name, z, f, r))
    return rows


def _run(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case, message", [
    ("rank", "has rank 2 (shape (8, 8)); expected a 3-D box"),
    ("noncubic", "has shape (8, 8, 4); slices along all three axes need a cubic box"),
    ("redshift", "line 2: redshift 99 is outside 21cmFAST's range [5.5, 35]"),
    ("fesc", "line 2: F_ESC10 1.5 is outside 21cmFAST's range [-3, 0]"),
    ("column", "no 'realisation' column (columns: file, redshift, f_esc10)"),
    ("empty", "line 3: missing redshift value"),
    ("missing_file", "line 2: cube file not found"),
    ("duplicate", "realisation 0, z=8, F_ESC10=-1.3 twice"),
    ("class_gap", "has no cube with redshift 9"),
    ("two_realisations", "at least 3 realisations"),
])
def test_bad_cubes_and_catalogues_are_clear_errors(tmp_path, capsys, case, message):
    rows = _cubes(tmp_path)
    header = ("file", "redshift", "f_esc10", "realisation")
    if case == "rank":
        np.save(tmp_path / rows[0][0], np.zeros((8, 8), np.float32))
    elif case == "noncubic":
        np.save(tmp_path / rows[0][0], np.zeros((8, 8, 4), np.float32))
    elif case == "redshift":
        rows[0] = (rows[0][0], 99, *rows[0][2:])
    elif case == "fesc":
        rows[0] = (rows[0][0], rows[0][1], 1.5, rows[0][3])
    elif case == "column":
        header, rows = header[:3], [row[:3] for row in rows]
    elif case == "empty":
        rows[1] = (rows[1][0], "", *rows[1][2:])
    elif case == "missing_file":
        rows[0] = ("nope.npy", *rows[0][1:])
    elif case == "duplicate":
        rows[1] = (rows[1][0], *rows[0][1:])
    elif case == "class_gap":
        rows = [row for row in rows if not (row[3] >= 1 and row[1] == 9.0)]
    elif case == "two_realisations":
        rows = [row for row in rows if row[3] < 2]
    cat = _catalogue(tmp_path / "cat.csv", rows, header)
    err = _run(capsys, ["stack21cm", "--catalogue", str(cat), "--out", str(tmp_path / "out.h5")])
    assert message in err
    assert not (tmp_path / "out.h5").exists()


def test_nan_cube_aborts_without_a_file(tmp_path, capsys):
    rows = _cubes(tmp_path)
    bad = np.zeros((8, 8, 8), np.float32)
    bad[3, 1, 1] = np.nan
    np.save(tmp_path / rows[-1][0], bad)  # the last cube: found after the others were stacked
    err = _run(capsys, ["stack21cm", "--catalogue", str(_catalogue(tmp_path / "cat.csv", rows)), "--out",
                        str(tmp_path / "out.h5")])
    assert f"cube {tmp_path / rows[-1][0]} holds NaN/Inf values" in err and "Nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".h5", ".tmp")) == []
    assert not list(tmp_path.glob(".*"))


def test_linear_f_esc_and_slice_split(tmp_path, capsys):
    rows = [(n, z, 10 ** f, r) for n, z, f, r in _cubes(tmp_path)]
    cat = _catalogue(tmp_path / "cat.csv", rows, ("file", "z", "f_esc", "realisation"))
    with pytest.warns(UserWarning, match="optimistic"):
        assert main(["stack21cm", "--catalogue", str(cat), "--out", str(tmp_path / "o.h5"), "--split-by", "slice",
                     "--stride", "4"]) == 0
    assert "WARNING: split by slice" in capsys.readouterr().out
    with slices.open_slices(tmp_path / "o.h5") as ds:
        assert ds.classes("escape_fraction") == [-1.3, -0.7] and len(ds) == 12 * 3 * 2
        assert sorted(set(ds.meta()["slice"].tolist())) == [0, 4]


def test_catalogue_headers_match_in_any_case(tmp_path, capsys):
    """Column names match whatever their case (``File,Redshift,…`` as spreadsheets write them), the file column too;
    a file listed twice is refused as by ``lenshpc stack``."""
    rows = _cubes(tmp_path)
    cat = _catalogue(tmp_path / "cat.csv", rows, ("File", "Redshift", "F_ESC10", "Realisation"))
    assert main(["stack21cm", "--catalogue", str(cat), "--out", str(tmp_path / "o.h5"), "--stride", "4"]) == 0
    with slices.open_slices(tmp_path / "o.h5") as ds:
        assert ds.classes("escape_fraction") == [-1.3, -0.7]
    twice = _catalogue(tmp_path / "twice.csv", [rows[0], rows[0]], ("File", "Redshift", "F_ESC10", "Realisation"))
    err = _run(capsys, ["stack21cm", "--catalogue", str(twice), "--out", str(tmp_path / "t.h5")])
    assert "1 duplicate ID(s) in column 'File'" in err and not (tmp_path / "t.h5").exists()


def test_rerun_skips_the_same_request_and_refuses_another(tmp_path, capsys):
    """Like ``stack`` and ``simulate21cm``: the same command again is a no-op (exit 0), other options need --force."""
    cat = _catalogue(tmp_path / "cat.csv", _cubes(tmp_path))
    out = tmp_path / "out.h5"
    argv = ["stack21cm", "--catalogue", str(cat), "--out", str(out), "--stride", "4"]
    assert main(argv) == 0
    capsys.readouterr()
    before = out.stat().st_mtime_ns
    assert main(argv) == 0 and "nothing to do" in capsys.readouterr().out
    assert out.stat().st_mtime_ns == before
    err = _run(capsys, [*argv, "--seed", "3"])
    assert "stacked from other inputs" in err and "seed: 0 -> 3" in err and "--force" in err
    assert out.stat().st_mtime_ns == before
    assert main([*argv, "--seed", "3", "--force"]) == 0 and out.stat().st_mtime_ns != before
    (tmp_path / "junk.h5").write_bytes(b"junk1234")
    err = _run(capsys, [*argv, "--out", str(tmp_path / "junk.h5")])  # the last --out wins
    assert "not a usable lenshpc dataset" in err and (tmp_path / "junk.h5").read_bytes() == b"junk1234"
    err = _run(capsys, [*argv, "--out", str(tmp_path)])
    assert "is a directory" in err
