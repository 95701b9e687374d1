"""`lenshpc stack --label-column none`: unlabelled survey catalogues for `lenshpc rank` (real FITS files)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lenshpc.cli import main
from lenshpc.data.format import describe, open_dataset, write_labelled
from lenshpc.errors import DataError

N, SIZE = 12, 21
IDS = np.arange(700, 700 + N)


def _image(cid: int) -> np.ndarray:
    return (np.random.default_rng(cid).normal(size=(SIZE, SIZE)) + cid).astype(np.float32)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    (root / "cutouts").mkdir()
    for cid in IDS:
        fits.PrimaryHDU(_image(cid)).writeto(root / "cutouts" / f"KIDS_{cid:06d}.fits")
    order = IDS[::-1]  # the catalogue's order, not the files' order
    Table({"ID": order, "is_lens": (order % 4 == 0).astype(int), "mag_r": order * 0.01,
           "tile": [f"KIDS_{i % 3}" for i in order]}).write(root / "cat.csv", format="ascii.csv")
    return root


def _stack(*args: str) -> int:
    return main(["stack", *args, "--workers", "1", "--pixel-scale", "0.2"])


def test_unlabelled_round_trip_with_catalogue(survey, tmp_path, capsys):
    out = tmp_path / "survey.h5"
    assert _stack("--images", str(survey / "cutouts"), "--catalogue", str(survey / "cat.csv"),
                  "--label-column", "none", "--out", str(out)) == 0
    assert f"stacked {N} cutouts" in capsys.readouterr().out
    with h5py.File(out) as fh:
        assert "labels" not in fh and fh.attrs["lenshpc_format"] == "labelled" and fh.attrs["schema_version"] == 1
    with open_dataset(out) as ds:
        assert ds.kind == "labelled" and not ds.has_labels
        order = IDS[::-1]
        meta = ds.meta("images")
        assert meta["id"].tolist() == order.tolist()  # rows follow the catalogue
        # Every catalogue column but the ID is metadata — a label-like column too (a --tracers candidate).
        assert sorted(meta) == ["id", "is_lens", "mag_r", "tile"]
        assert meta["is_lens"].tolist() == (order % 4 == 0).astype(int).tolist()
        assert np.array_equal(ds.read("images")[..., 0], np.stack([_image(c) for c in order]))
        assert ds.attrs["provenance"]["mode"] == "unlabelled" and ds.attrs["provenance"]["label_column"] is None
        with pytest.raises(DataError, match="unlabelled catalogue .*lenshpc rank"):
            ds.labels()
    assert "labels: none (unlabelled catalogue" in describe(out)
    assert main(["info", str(out)]) == 0
    assert "labels: none" in capsys.readouterr().out


def test_unlabelled_without_catalogue_sorts_by_id(survey, tmp_path):
    out = tmp_path / "bare.h5"
    assert _stack("--images", str(survey / "cutouts"), "--label-column", "None", "--out", str(out)) == 0
    with open_dataset(out) as ds:
        assert not ds.has_labels
        assert ds.meta_columns("images") == ["id"]
        assert ds.meta("images")["id"].tolist() == IDS.tolist()  # leading zeros dropped, sorted by ID
        assert np.array_equal(ds.read("images", [3])[0, ..., 0], _image(IDS[3]))
        assert ds.attrs["provenance"]["id_column"] is None


def test_labelled_mode_still_needs_a_catalogue_and_a_label(survey, tmp_path, capsys):
    assert _stack("--images", str(survey / "cutouts"), "--out", str(tmp_path / "x.h5")) == 2
    assert "--catalogue" in capsys.readouterr().err
    cat = str(survey / "cat.csv")
    assert _stack("--images", str(survey / "cutouts"), "--catalogue", cat, "--catalogue", cat,
                  "--label-column", "none", "--out", str(tmp_path / "y.h5")) == 2
    assert "at most one" in capsys.readouterr().err
    # A labelled stack of the same files keeps the labels array (the default path is unchanged).
    out = tmp_path / "labelled.h5"
    assert _stack("--images", str(survey / "cutouts"), "--catalogue", str(survey / "cat.csv"),
                  "--label-column", "is_lens", "--out", str(out)) == 0
    with open_dataset(out) as ds:
        assert ds.has_labels and ds.labels().tolist() == (IDS[::-1] % 4 == 0).astype(int).tolist()
        assert "is_lens" not in ds.meta_columns("images")


def test_write_labelled_without_labels_and_readers_that_need_them(tmp_path):
    path = tmp_path / "cat.h5"
    write_labelled(path, np.ones((5, 8, 8, 1), np.float32), None, ids=np.arange(5))
    with open_dataset(path) as ds:
        assert not ds.has_labels and len(ds) == 5 and len(ds.split("images", "test")) == 0
        with pytest.raises(DataError, match="no 'labels' array"):
            ds.labels(np.arange(2))
    with pytest.raises(DataError, match="labels for"):
        write_labelled(tmp_path / "bad.h5", np.ones((5, 8, 8, 1), np.float32), np.zeros(4))
