"""The ``slices21cm`` dataset format (lenshpc.data.cosmo21cm.slices): writer, reader, splits, errors.

Synthetic slices here (the format does not need 21cmFAST); the real-box files are tested in
tests/test_simulate21cm.py.
"""

from __future__ import annotations

import hashlib
import time

import h5py
import numpy as np
import pytest

from lenshpc.data.cosmo21cm import slices
from lenshpc.errors import DataError

Z, F = [8.0, 9.0, 10.0], [-1.3, -1.0]


def _meta(n_real: int, per_box: int = 2):
    """Rows of n_real realisations × 3 redshifts × 2 F_ESC10 × per_box slices, in file order."""
    rows = [(r, z, f) for r in range(n_real) for z in Z for f in F for _ in range(per_box)]
    r, z, f = (np.asarray(c) for c in zip(*rows))
    n = len(rows)
    return {"realisation": r, "seed": 100 + r, "redshift": z, "f_esc10": f, "axis": np.arange(n) % 3,
            "slice": np.arange(n) % 8, "mean_dtb": np.zeros(n), "x_hi": np.full(n, 0.5)}


def _write(path, n_real=5, **kw):
    meta = _meta(n_real)
    images = np.random.default_rng(0).normal(size=(len(meta["realisation"]), 8, 8)).astype(np.float32)
    slices.write_slices(path, images, meta, classes={"redshift": Z, "escape_fraction": F}, seed=3, **kw)
    return images, meta


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_roundtrip_labels_joint_and_shards(tmp_path):
    images, meta = _write(tmp_path / "s.h5")
    with slices.open_slices(tmp_path / "s.h5") as ds:
        assert ds.targets == ("redshift", "escape_fraction", "joint")
        assert ds.classes("redshift") == Z and ds.classes("escape_fraction") == F
        assert ds.classes("joint") == [(z, f) for z in Z for f in F]
        assert ds.class_names("joint")[1] == "z=8 F_ESC10=-1"
        assert ds.image_shape == (8, 8, 1) and len(ds) == len(images)
        np.testing.assert_array_equal(ds.images("all")[..., 0], images)
        z_idx = np.searchsorted(Z, meta["redshift"])
        f_idx = np.searchsorted(F, meta["f_esc10"])
        np.testing.assert_array_equal(ds.labels("redshift"), z_idx)
        np.testing.assert_array_equal(ds.labels("joint"), z_idx * len(F) + f_idx)
        # (rank, size) shards: disjoint, covering, in the same order as the split
        test = ds.indices("test")
        parts = [ds.indices("test", rank, 3) for rank in range(3)]
        assert sorted(np.concatenate(parts).tolist()) == test.tolist()
        np.testing.assert_array_equal(ds.images("test", 1, 3)[..., 0], images[parts[1]])
        np.testing.assert_array_equal(ds.labels("joint", "test", 1, 3), (z_idx * 2 + f_idx)[parts[1]])
        np.testing.assert_array_equal(ds.meta("val")["seed"], meta["seed"][ds.indices("val")])
        ds.check_classes("joint")
        assert ds.split_by == "realisation" and not ds.warnings


def test_split_is_by_realisation_and_reproducible(tmp_path):
    _write(tmp_path / "a.h5", n_real=10)
    time.sleep(1.1)  # a wall-clock attribute would differ now
    _write(tmp_path / "b.h5", n_real=10)
    assert _md5(tmp_path / "a.h5") == _md5(tmp_path / "b.h5")
    with slices.open_slices(tmp_path / "a.h5") as ds:
        owner = {}
        for split in ("train", "val", "test"):
            for r in np.unique(ds.meta(split)["realisation"]):
                assert owner.setdefault(int(r), split) == split, f"realisation {r} in {owner[int(r)]} and {split}"
            assert sorted(np.unique(ds.meta(split)["realisation"]).tolist()) == ds.split_realisations[split]
        assert [len(ds.split_realisations[s]) for s in ("train", "val", "test")] == [8, 1, 1]
        assert len(owner) == 10


def test_explicit_slice_split_is_warned(tmp_path):
    with pytest.warns(UserWarning, match="optimistic"):
        _write(tmp_path / "s.h5", split_by="slice")
    with slices.open_slices(tmp_path / "s.h5") as ds:
        assert ds.split_by == "slice" and "optimistic" in ds.warnings[0]
        sets = [set(ds.meta(s)["realisation"].tolist()) for s in ("train", "val", "test")]
        assert sets[0] & sets[1]  # a slice split mixes the boxes (which is why it is warned)
    from lenshpc.data.format import describe

    assert "WARNING: split by slice" in describe(tmp_path / "s.h5")


def test_reader_errors_name_the_target_and_the_class(tmp_path):
    meta = _meta(4)
    images = np.zeros((len(meta["realisation"]), 8, 8), np.float32)
    only_z = {k: v for k, v in meta.items() if k != "f_esc10"}
    slices.write_slices(tmp_path / "z.h5", images, only_z, classes={"redshift": Z})
    with slices.open_slices(tmp_path / "z.h5") as ds:
        assert ds.targets == ("redshift",)
        with pytest.raises(DataError, match="target 'escape_fraction' is not in this dataset"):
            ds.labels("escape_fraction")
        with pytest.raises(DataError, match="target 'joint' is not in this dataset"):
            ds.classes("joint")
        with pytest.raises(DataError, match="unknown 21-cm target 'mass'"):
            ds.labels("mass")
    # realisation 3 (the only one in some split) lacks z=10: that split has no slice of class z=10
    keep = ~((meta["realisation"] >= 2) & (meta["redshift"] == 10.0))
    slices.write_slices(tmp_path / "gap.h5", images[keep], {k: v[keep] for k, v in meta.items()},
                        classes={"redshift": Z, "escape_fraction": F})
    with slices.open_slices(tmp_path / "gap.h5") as ds:
        with pytest.raises(DataError, match=r"split has no slices of class\(es\) z=10"):
            ds.check_classes("redshift")
        ds.check_classes("escape_fraction")


def test_writer_refuses_bad_data_and_leaves_nothing(tmp_path):
    meta = _meta(4)
    images = np.zeros((len(meta["realisation"]), 8, 8), np.float32)
    images[5, 2, 2] = np.nan
    with pytest.raises(DataError, match="slice 5 .*NaN"):
        slices.write_slices(tmp_path / "nan.h5", images, meta, classes={"redshift": Z, "escape_fraction": F})
    with pytest.raises(DataError, match="at least 3 realisations"):
        slices.write_slices(tmp_path / "two.h5", np.zeros((len(_meta(2)["seed"]), 8, 8)), _meta(2),
                            classes={"redshift": Z, "escape_fraction": F})
    with pytest.raises(DataError, match="9 is not one of the classes"):
        slices.write_slices(tmp_path / "cls.h5", np.zeros((len(meta["seed"]), 8, 8)), meta,
                            classes={"redshift": [8.0, 10.0], "escape_fraction": F})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # atomic: no file, no temp file
    with pytest.raises(DataError, match="not a 21-cm slice dataset"):
        from lenshpc.data.format import write_labelled

        write_labelled(tmp_path / "lens.h5", np.zeros((3, 8, 8, 1)), np.array([0, 1, 0]))
        slices.open_slices(tmp_path / "lens.h5")


def test_fractional_schema_version_and_float_split_are_refused(tmp_path):
    """The same checks as the lens reader (format.H5Reader): a float split was truncated to integers before."""
    path = tmp_path / "s.h5"
    _write(path)
    with slices.open_slices(path) as ds:
        assert ds.attrs["schema_version"] == slices.SCHEMA_VERSION
    with h5py.File(path, "a") as fh:
        test = fh["splits/images/test"][()]
        del fh["splits/images/test"]
        fh["splits/images/test"] = test + 0.5
    with slices.open_slices(path) as ds, pytest.raises(DataError, match="splits/images/test must be a 1-D integer"):
        ds.indices("test")
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = 1.5
    with pytest.raises(DataError, match=r"'schema_version' is 1.5 \(float\), expected an integer"):
        slices.open_slices(path)
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = slices.SCHEMA_VERSION + 1
    with pytest.raises(DataError, match="newer than this lenshpc supports.*upgrade lenshpc"):
        slices.open_slices(path)
