"""`lenshpc stack` on real FITS files written with astropy (no mocks).

The fixture writes a small challenge-style set: 30 cutouts 33×33 named like the Lens Finding
Challenge (``imageEUC_VIS-<ID>.fits``) and the same catalogue as CSV and as a FITS table.
Bad files (truncated, NaN-filled, wrong shape) are added per test in a copy of the set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lenshpc.cli import main
from lenshpc.data.format import open_dataset
from lenshpc.data.stack import normalise_id, parse_bands, parse_id, compile_id_pattern, read_cutout, CutoutError

N, SIZE = 30, 33
IDS = np.arange(100000, 100000 + N)


def _image(cid: int, band: int = 0) -> np.ndarray:
    # Values encode (ID, band) so a test can tell which file landed in which row/channel.
    rng = np.random.default_rng(cid)
    return (rng.normal(size=(SIZE, SIZE)) + 1000 * band + (cid - 100000)).astype(np.float32)


def _catalogue(ids=IDS) -> Table:
    ids = np.asarray(ids)
    return Table({
        "ID": ids,
        "is_lens": (ids % 3 == 0).astype(int),
        "Einstein_area": (ids - 100000) * 0.5,
        "numb_pix_lensed_image": (ids % 7).astype(int),
        "flux_lensed_image_in_sigma": (ids % 11) * 1.5,
    })


@pytest.fixture(scope="module")
def fits_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fits")
    (root / "vis").mkdir()
    for cid in IDS:
        fits.PrimaryHDU(_image(cid)).writeto(root / "vis" / f"imageEUC_VIS-{cid}.fits")
    cat = _catalogue()
    cat.write(root / "cat.csv", format="ascii.csv")
    cat.write(root / "cat.fits")
    return root


@pytest.fixture()
def bad_set(fits_set, tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy of the set with three bad files; returns the directory and {file name: reason keyword}."""
    d = tmp_path / "vis"
    shutil.copytree(fits_set / "vis", d)
    good = (d / f"imageEUC_VIS-{IDS[3]}.fits").read_bytes()
    (d / f"imageEUC_VIS-{IDS[3]}.fits").write_bytes(good[: len(good) // 2])  # truncated data
    (d / f"imageEUC_VIS-{IDS[5]}.fits").write_bytes(b"garbage" * 300)  # not FITS at all
    fits.PrimaryHDU(np.full((SIZE, SIZE), np.nan, np.float32)).writeto(d / f"imageEUC_VIS-{IDS[7]}.fits", overwrite=True)
    fits.PrimaryHDU(np.zeros((SIZE - 2, SIZE), np.float32)).writeto(d / f"imageEUC_VIS-{IDS[9]}.fits", overwrite=True)
    return d, {f"imageEUC_VIS-{IDS[3]}.fits": "truncated", f"imageEUC_VIS-{IDS[5]}.fits": "unreadable",
               f"imageEUC_VIS-{IDS[7]}.fits": "NaN", f"imageEUC_VIS-{IDS[9]}.fits": "wrong shape"}


def _stack(*args: str) -> int:
    return main(["stack", *args, "--workers", "1", "--pixel-scale", "0.1"])


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("catalogue", ["cat.csv", "cat.fits"])
def test_labelled_round_trip(fits_set, tmp_path, capsys, catalogue):
    out = tmp_path / "challenge.h5"
    assert _stack("--images", str(fits_set / "vis"), "--catalogue", str(fits_set / catalogue), "--out", str(out)) == 0
    assert "stacked 30 cutouts" in capsys.readouterr().out
    cat = _catalogue()
    with open_dataset(out) as ds:
        assert ds.kind == "labelled" and ds.image_shape == (SIZE, SIZE, 1)
        assert ds.attrs["pixel_scale"] == pytest.approx(0.1) and ds.attrs["bands"] == ["r"]
        meta = ds.meta("images")
        images, labels = ds.read("images"), ds.labels()
    assert meta["id"].tolist() == cat["ID"].tolist()  # catalogue order
    for row, cid in enumerate(meta["id"]):
        np.testing.assert_array_equal(images[row, :, :, 0], _image(int(cid)))
    np.testing.assert_array_equal(labels, np.asarray(cat["is_lens"]))
    assert set(meta) == {"id", "Einstein_area", "numb_pix_lensed_image", "flux_lensed_image_in_sigma"}
    np.testing.assert_allclose(meta["Einstein_area"], np.asarray(cat["Einstein_area"]))
    np.testing.assert_array_equal(meta["numb_pix_lensed_image"], np.asarray(cat["numb_pix_lensed_image"]))


def test_rerun_skips_and_force_rebuilds(fits_set, tmp_path, capsys):
    out = tmp_path / "d.h5"
    args = ["--images", str(fits_set / "vis"), "--catalogue", str(fits_set / "cat.csv"), "--out", str(out)]
    assert _stack(*args) == 0
    mtime = out.stat().st_mtime_ns
    capsys.readouterr()
    assert _stack(*args) == 0
    assert "nothing to do" in capsys.readouterr().out and out.stat().st_mtime_ns == mtime
    assert _stack(*args, "--force") == 0 and "wrote" in capsys.readouterr().out


# ------------------------------------------------------------------ bad inputs
def test_bad_files_write_nothing_and_list_every_problem(bad_set, fits_set, tmp_path, capsys):
    d, expected = bad_set
    out = tmp_path / "d.h5"
    assert _stack("--images", str(d), "--catalogue", str(fits_set / "cat.csv"), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".d.h5*")), "no output and no temp file left behind"
    assert "nothing written" in err and "--skip-bad" in err and "Traceback" not in err
    for name, keyword in expected.items():
        line = next((ln for ln in err.splitlines() if name in ln), None)
        assert line is not None, f"{name} not reported"
        assert str(d / name) in line and keyword in line, line


def test_skip_bad_writes_the_rest_and_records_skipped(bad_set, fits_set, tmp_path, capsys):
    d, expected = bad_set
    out = tmp_path / "d.h5"
    assert _stack("--images", str(d), "--catalogue", str(fits_set / "cat.csv"), "--out", str(out), "--skip-bad") == 0
    stdout = capsys.readouterr().out
    assert f"stacked {N - 4} cutouts" in stdout
    for name in expected:
        assert f"skipped {d / name}" in stdout
    bad_ids = {int(name.split("-")[1].split(".")[0]) for name in expected}
    with open_dataset(out) as ds:
        ids = ds.meta("images")["id"]
        assert set(ids.tolist()) == set(IDS.tolist()) - bad_ids
        images = ds.read("images")
        for row, cid in enumerate(ids):  # compaction kept rows aligned with IDs
            np.testing.assert_array_equal(images[row, :, :, 0], _image(int(cid)))
        np.testing.assert_array_equal(ds.labels(), (ids % 3 == 0).astype(np.uint8))
        skipped = ds.logs()["skipped"]
        assert ds.attrs["provenance"]["images"]["skipped"] == 4
    assert len(skipped) == 4 and all(any(name in s for s in skipped) for name in expected)


def test_missing_and_extra_catalogue_ids(fits_set, tmp_path, capsys):
    cat_path = tmp_path / "cat.csv"
    # Catalogue drops the first two IDs (their files are "extra") and adds two IDs without files ("missing").
    _catalogue(list(IDS[2:]) + [999001, 999002]).write(cat_path, format="ascii.csv")
    out = tmp_path / "d.h5"
    assert _stack("--images", str(fits_set / "vis"), "--catalogue", str(cat_path), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert not out.exists()
    for cid in IDS[:2]:
        assert f"imageEUC_VIS-{cid}.fits: ID {cid} is not in catalogue" in err
    for cid in (999001, 999002):
        assert f"{cat_path}: catalogue ID {cid}: no image file" in err
    assert _stack("--images", str(fits_set / "vis"), "--catalogue", str(cat_path), "--out", str(out), "--skip-bad") == 0
    with open_dataset(out) as ds:
        assert ds.meta("images")["id"].tolist() == IDS[2:].tolist()


def test_catalogue_errors_are_clear(fits_set, tmp_path, capsys):
    out = str(tmp_path / "d.h5")
    base = ["--images", str(fits_set / "vis"), "--out", out]
    assert _stack(*base, "--catalogue", str(fits_set / "cat.csv"), "--label-column", "is_len") == 2
    assert "did you mean 'is_lens'" in capsys.readouterr().err
    assert _stack(*base, "--catalogue", str(tmp_path / "none.csv")) == 2
    assert "catalogue not found" in capsys.readouterr().err
    dup = tmp_path / "dup.csv"
    _catalogue(list(IDS) + [IDS[0]]).write(dup, format="ascii.csv")
    assert _stack(*base, "--catalogue", str(dup)) == 2
    assert "duplicate ID" in capsys.readouterr().err
    bad_labels = tmp_path / "labels.csv"
    cat = _catalogue()
    cat["is_lens"][4] = 7
    cat.write(bad_labels, format="ascii.csv")
    assert _stack(*base, "--catalogue", str(bad_labels)) == 2
    assert f"ID {IDS[4]}=7" in capsys.readouterr().err
    assert _stack("--images", str(tmp_path / "nowhere"), "--catalogue", str(fits_set / "cat.csv"), "--out", out) == 2
    assert "images not found" in capsys.readouterr().err


# ------------------------------------------------------------------ multi-band
def test_multiband_subdirectories_channel_order(tmp_path, capsys):
    """Challenge layout: Band1/imageSDSS_R-<ID>.fits, Band2/imageSDSS_I-…, names map to directories."""
    ids = IDS[:6]
    for band, (sub, prefix) in enumerate([("Band1", "imageSDSS_R"), ("Band2", "imageSDSS_I"), ("Band3", "imageSDSS_G")]):
        (tmp_path / sub).mkdir()
        for cid in ids:
            fits.PrimaryHDU(_image(cid, band)).writeto(tmp_path / sub / f"{prefix}-{cid}.fits")
    _catalogue(ids).write(tmp_path / "cat.csv", format="ascii.csv")
    out = tmp_path / "rgi.h5"
    # Channel order is the --bands order, not the directory order: G (Band3) first.
    assert _stack("--images", str(tmp_path), "--bands", "G=Band3,R=Band1,I=Band2",
                  "--catalogue", str(tmp_path / "cat.csv"), "--out", str(out)) == 0
    with open_dataset(out) as ds:
        assert ds.attrs["bands"] == ["G", "R", "I"]
        images = ds.read("images")
    assert images.shape == (6, SIZE, SIZE, 3)
    for row, cid in enumerate(ids):
        for channel, band in enumerate([2, 0, 1]):
            np.testing.assert_array_equal(images[row, :, :, channel], _image(cid, band))
    # A file missing in one band is reported with the band name.
    (tmp_path / "Band2" / f"imageSDSS_I-{ids[1]}.fits").unlink()
    assert _stack("--images", str(tmp_path), "--bands", "R=Band1,I=Band2,G=Band3", "--catalogue",
                  str(tmp_path / "cat.csv"), "--out", str(tmp_path / "x.h5")) == 2
    assert f"catalogue ID {ids[1]}: no image file in band(s) I" in capsys.readouterr().err


def test_multiband_template_and_multi_hdu(tmp_path):
    ids = IDS[:4]
    for band, name in enumerate("gri"):
        (tmp_path / name).mkdir()
        for cid in ids:
            fits.PrimaryHDU(_image(cid, band)).writeto(tmp_path / name / f"{cid}.fits")
    (tmp_path / "mhdu").mkdir()
    for cid in ids:  # one file per cutout, one image HDU per band (g in the primary HDU)
        hdus = [fits.PrimaryHDU(_image(cid, 0)), fits.ImageHDU(_image(cid, 1)), fits.ImageHDU(_image(cid, 2))]
        fits.HDUList(hdus).writeto(tmp_path / "mhdu" / f"cut_{cid}.fits")
    _catalogue(ids).write(tmp_path / "cat.csv", format="ascii.csv")
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert _stack("--images", str(tmp_path / "{band}" / "*.fits"), "--bands", "g,r,i",
                  "--catalogue", str(tmp_path / "cat.csv"), "--out", str(a)) == 0
    assert _stack("--images", str(tmp_path / "mhdu"), "--bands", "g,r,i",
                  "--catalogue", str(tmp_path / "cat.csv"), "--out", str(b)) == 0
    with open_dataset(a) as da, open_dataset(b) as db:
        np.testing.assert_array_equal(da.read("images"), db.read("images"))
        assert da.read("images")[2, 5, 5, 1] == _image(ids[2], 1)[5, 5]
    # --hdu picks one plane of the multi-HDU files.
    c = tmp_path / "c.h5"
    assert _stack("--images", str(tmp_path / "mhdu"), "--hdu", "2", "--catalogue", str(tmp_path / "cat.csv"),
                  "--out", str(c)) == 0
    with open_dataset(c) as dc:
        np.testing.assert_array_equal(dc.read("images")[:, :, :, 0], np.stack([_image(cid, 2) for cid in ids]))


# ------------------------------------------------------------------ population mode
def test_population_mode(tmp_path, capsys):
    for pop, offset in (("lenses", 0), ("sources", 100), ("negatives", 200)):
        (tmp_path / pop).mkdir()
        for cid in range(offset, offset + 10):
            fits.PrimaryHDU(_image(100000 + cid)).writeto(tmp_path / pop / f"{pop}_{cid:05d}.fits")
    Table({"ID": np.arange(100, 110), "theta_E": np.linspace(0.5, 2.0, 10), "kind": ["sie"] * 10}).write(
        tmp_path / "sources.fits")
    out = tmp_path / "pop.h5"
    args = ["--population", f"lenses={tmp_path / 'lenses'}", "--population", f"sources={tmp_path / 'sources' / '*.fits'}",
            "--population", f"negatives={tmp_path / 'negatives'}", "--catalogue", f"sources={tmp_path / 'sources.fits'}",
            "--out", str(out)]
    assert _stack(*args) == 0
    with open_dataset(out) as ds:
        assert ds.kind == "population"
        assert [ds.count(p) for p in ("lenses", "sources", "negatives")] == [10, 10, 10]
        assert ds.meta("lenses")["id"].tolist() == list(range(10))  # sorted numerically, leading zeros gone
        src = ds.meta("sources")
        np.testing.assert_allclose(src["theta_E"], np.linspace(0.5, 2.0, 10))
        assert src["kind"].tolist() == ["sie"] * 10
        np.testing.assert_array_equal(ds.read("negatives", [3])[0, :, :, 0], _image(100203))
    capsys.readouterr()
    assert _stack(*args[:4], "--out", str(tmp_path / "x.h5")) == 2
    assert "missing --population negatives=DIR_OR_GLOB" in capsys.readouterr().err
    assert _stack("--population", "lens=x", "--out", str(tmp_path / "x.h5")) == 2
    assert "unknown population(s) lens" in capsys.readouterr().err


# ------------------------------------------------------------------ parallel path and helpers
def test_parallel_workers_match_serial(bad_set, fits_set, tmp_path):
    d, _ = bad_set
    serial, parallel = tmp_path / "s.h5", tmp_path / "p.h5"
    common = ["--images", str(d), "--catalogue", str(fits_set / "cat.csv"), "--skip-bad", "--pixel-scale", "0.1"]
    assert main(["stack", *common, "--out", str(serial), "--workers", "1"]) == 0
    assert main(["stack", *common, "--out", str(parallel), "--workers", "2"]) == 0
    with open_dataset(serial) as a, open_dataset(parallel) as b:
        np.testing.assert_array_equal(a.read("images"), b.read("images"))
        assert a.logs() == b.logs()


def test_majority_shape_wins_even_if_the_sample_is_unlucky(tmp_path):
    """Every file the shape sample reads is 21×21, but most files are 33×33: the minority is reported."""
    from lenshpc.data.stack import SHAPE_SAMPLE, stack_set

    n = 40
    sampled = set(np.linspace(0, n - 1, SHAPE_SAMPLE).astype(int).tolist())
    for cid in range(n):
        size = 21 if cid in sampled else SIZE
        fits.PrimaryHDU(np.ones((size, size), np.float32) * cid).writeto(tmp_path / f"{cid}.fits")
    result = stack_set(str(tmp_path), workers=1)
    assert result.images.shape == (n - len(sampled), SIZE, SIZE, 1)
    assert result.images[:, 0, 0, 0].tolist() == [c for c in range(n) if c not in sampled]
    assert sorted(int(Path(p.path).stem) for p in result.problems) == sorted(sampled)
    assert all("wrong shape 21×21" in p.reason for p in result.problems)


def test_helpers():
    regex = compile_id_pattern(r"(\d+)(?!.*\d)")
    assert parse_id("imageEUC_VIS-100123.fits", regex) == "100123"
    assert parse_id("/a/b2/000123.fits.gz", regex) == "123"
    assert parse_id("noid.fits", regex) is None
    assert parse_id("tile7_obj42_v2.fits", compile_id_pattern(r"obj(?P<id>\d+)")) == "42"
    assert normalise_id(np.int64(7)) == normalise_id(7.0) == normalise_id("007") == "7"
    assert normalise_id(b"KIDS_J1") == "KIDS_J1"
    assert [(b.name, b.token) for b in parse_bands("R=Band1, g")] == [("R", "Band1"), ("g", "g")]
    assert parse_bands(None) is None


def test_read_cutout_reasons(tmp_path):
    good = tmp_path / "g.fits"
    fits.PrimaryHDU(np.ones((5, 6), np.float32)).writeto(good)
    assert read_cutout(str(good)).shape == (5, 6, 1)
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.ones((3, 5, 6), np.int16)).writeto(cube)
    assert read_cutout(str(cube)).shape == (5, 6, 3) and read_cutout(str(cube)).dtype == np.float32
    trunc = tmp_path / "t.fits"
    trunc.write_bytes(good.read_bytes()[:2880 + 10])
    with pytest.raises(CutoutError, match="truncated"):
        read_cutout(str(trunc))
    empty = tmp_path / "e.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(CutoutError, match="no image data"):
        read_cutout(str(empty))
    with pytest.raises(CutoutError, match="no HDU 4"):
        read_cutout(str(good), hdu=4)


def test_stack_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["stack", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--skip-bad" in out and "--population" in out and "{band}" in out


def test_skipped_list_is_not_limited_by_attribute_size(tmp_path):
    """Thousands of skipped entries go to log/skipped (a dataset), not to a 64 KiB-limited attribute."""
    from lenshpc.data.format import write_labelled

    lines = [f"/very/long/path/to/some/cutout/directory/imageEUC_VIS-{i}.fits: truncated file" for i in range(5000)]
    out = tmp_path / "big.h5"
    write_labelled(out, np.zeros((2, 4, 4, 1)), np.array([0, 1]), logs={"skipped": lines})
    with open_dataset(out) as ds:
        assert ds.logs()["skipped"] == lines
    with h5py.File(out) as fh:
        assert "log/skipped" in fh
