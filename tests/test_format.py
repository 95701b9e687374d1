"""The HDF5 dataset format: round trips, versioning, clear errors, splits and (rank, size) shards."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from lenshpc.cli import main
from lenshpc.data.format import (SCHEMA_VERSION, open_dataset, shard_indices, split_indices, write_labelled,
                                 write_population)
from lenshpc.errors import DataError


def _images(n: int, seed: int, size: int = 8, channels: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, channels)).astype(np.float32)


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    path = tmp_path_factory.mktemp("fmt") / "pop.h5"
    arrays = {"lenses": _images(50, 1), "sources": _images(120, 2), "negatives": _images(40, 3)}
    meta = {"sources": {"theta_E": np.linspace(0.5, 2.5, 120), "n_clumps": np.arange(120) % 3},
            "negatives": {"kind": np.array(["spiral", "ring", "merger", "lrg"] * 10)}}
    write_population(path, **arrays, meta=meta, pixel_scale=0.2, bands=["r"], seed=7,
                     provenance={"command": "test", "n": 3})
    return path, arrays, meta


def test_population_round_trip(population):
    path, arrays, meta = population
    with open_dataset(path) as ds:
        assert ds.kind == "population" and ds.schema_version == SCHEMA_VERSION
        assert ds.attrs["pixel_scale"] == 0.2 and ds.attrs["bands"] == ["r"] and ds.attrs["seed"] == 7
        assert ds.attrs["provenance"] == {"command": "test", "n": 3}
        assert ds.image_shape == (8, 8, 1) and len(ds) == 210
        for name, images in arrays.items():
            np.testing.assert_array_equal(ds.read(name), images)
            assert ds.read(name).dtype == np.float32
        src = ds.meta("sources")
        np.testing.assert_allclose(src["theta_E"], meta["sources"]["theta_E"])
        np.testing.assert_array_equal(src["n_clumps"], meta["sources"]["n_clumps"])
        assert ds.meta("negatives")["kind"].tolist() == meta["negatives"]["kind"].tolist()
        assert ds.meta("lenses") == {}
        np.testing.assert_allclose(ds.meta("sources", [5, 1])["theta_E"], meta["sources"]["theta_E"][[5, 1]])
        with pytest.raises(DataError, match="no labels"):
            ds.labels()


def test_read_keeps_requested_order_and_duplicates(population):
    path, arrays, _ = population
    idx = np.array([9, 2, 9, 0, 33])
    with open_dataset(path) as ds:
        np.testing.assert_array_equal(ds.read("sources", idx), arrays["sources"][idx])
        assert ds.read("sources", np.array([], dtype=int)).shape == (0, 8, 8, 1)
        with pytest.raises(DataError, match="no array 'images'"):
            ds.read("images")


def test_labelled_round_trip(tmp_path):
    path = tmp_path / "lab.h5"
    images, labels = _images(30, 4, channels=3), np.arange(30) % 2
    write_labelled(path, images, labels, ids=np.arange(1000, 1030), meta={"Einstein_area": np.arange(30) * 0.1},
                   bands=["g", "r", "i"], pixel_scale=0.1)
    with open_dataset(path) as ds:
        assert ds.kind == "labelled" and ds.names == ("images",) and ds.image_shape == (8, 8, 3)
        np.testing.assert_array_equal(ds.read("images"), images)
        np.testing.assert_array_equal(ds.labels(), labels)
        np.testing.assert_array_equal(ds.labels([3, 4]), [1, 0])
        assert ds.meta("images")["id"].tolist() == list(range(1000, 1030))
        assert ds.attrs["bands"] == ["g", "r", "i"]


def test_splits_80_10_10_disjoint_covering_and_deterministic(population):
    path, arrays, _ = population
    with open_dataset(path) as ds:
        for name, images in arrays.items():
            parts = {s: ds.split(name, s) for s in ("train", "val", "test")}
            n = len(images)
            assert len(parts["val"]) == int(0.1 * n) and len(parts["test"]) == int(0.1 * n)
            assert len(parts["train"]) == n - 2 * int(0.1 * n)
            joined = np.concatenate(list(parts.values()))
            assert np.array_equal(np.sort(joined), np.arange(n)), "disjoint and covering"
            assert all(np.all(np.diff(p) > 0) for p in parts.values()), "sorted"
            np.testing.assert_array_equal(ds.split(name, "all"), np.arange(n))
    a, b = split_indices(1000, seed=3, key="x"), split_indices(1000, seed=3, key="x")
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert not np.array_equal(a["val"], split_indices(1000, seed=4, key="x")["val"])
    assert not np.array_equal(a["val"], split_indices(1000, seed=3, key="y")["val"])
    assert [len(v) for v in split_indices(1000, 0).values()] == [800, 100, 100]
    assert [len(v) for v in split_indices(10, 0, (0.5, 0.3, 0.2)).values()] == [5, 3, 2]
    with pytest.raises(DataError, match="sum to 1"):
        split_indices(10, 0, (0.5, 0.5, 0.5))


def test_explicit_splits_are_kept(tmp_path):
    path = tmp_path / "s.h5"
    splits = {"train": np.array([0, 1]), "val": np.array([2]), "test": np.array([3])}
    write_labelled(path, _images(4, 0), np.array([0, 1, 0, 1]), splits=splits)
    with open_dataset(path) as ds:
        assert {s: ds.split("images", s).tolist() for s in splits} == {"train": [0, 1], "val": [2], "test": [3]}


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_and_cover(population, size):
    path, arrays, _ = population
    with open_dataset(path) as ds:
        for name in arrays:
            for split in ("train", "val", "test"):
                full = ds.split(name, split)
                shards = [ds.shard(name, split, rank, size) for rank in range(size)]
                joined = np.concatenate(shards)
                assert len(joined) == len(full) and np.array_equal(np.sort(joined), full)
                assert max(map(len, shards)) - min(map(len, shards)) <= 1, "balanced"
                # Each rank reads only its own rows, and they are the right ones.
                np.testing.assert_array_equal(ds.read(name, shards[-1]), arrays[name][shards[-1]])
    with pytest.raises(ValueError, match="bad shard"):
        shard_indices(np.arange(5), 2, 2)


def test_newer_schema_version_is_a_clear_error(population, tmp_path):
    path = tmp_path / "future.h5"
    path.write_bytes(population[0].read_bytes())
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(DataError, match=f"schema version {SCHEMA_VERSION + 1} is newer.*upgrade lenshpc"):
        open_dataset(path)
    with h5py.File(path, "a") as fh:
        del fh.attrs["schema_version"]
    with pytest.raises(DataError, match="without a 'schema_version'"):
        open_dataset(path)


def test_float_schema_version_and_float_split(population, tmp_path):
    """The lens and 21-cm readers share one check (format.H5Reader): an integral float ``schema_version`` (1.0, as
    some tools write it) reads as the integer, a fractional one (1.5) is an error, and so is a float split index
    array in both readers (the 21-cm reader used to truncate float indices silently)."""
    path = tmp_path / "float.h5"
    path.write_bytes(population[0].read_bytes())
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = float(SCHEMA_VERSION)
    with open_dataset(path) as ds:
        assert ds.schema_version == SCHEMA_VERSION and isinstance(ds.schema_version, int)
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = SCHEMA_VERSION + 0.5
    with pytest.raises(DataError, match=rf"'schema_version' is {SCHEMA_VERSION + 0.5} \(float\), expected an integer"):
        open_dataset(path)
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = SCHEMA_VERSION
        val = fh["splits/lenses/val"][()]
        del fh["splits/lenses/val"]
        fh["splits/lenses/val"] = val + 0.5
    with open_dataset(path) as ds, pytest.raises(DataError, match="splits/lenses/val must be a 1-D integer"):
        ds.split("lenses", "val")


def test_foreign_files_are_clear_errors(tmp_path):
    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as fh:
        fh["images"] = np.zeros((2, 4, 4))
    with pytest.raises(DataError, match="not a lenshpc dataset"):
        open_dataset(foreign)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        open_dataset(text)
    with pytest.raises(DataError, match="dataset not found"):
        open_dataset(tmp_path / "missing.h5")


def test_invalid_data_writes_nothing(tmp_path):
    path = tmp_path / "bad.h5"
    images = _images(5, 0)
    images[2, 1, 1, 0] = np.nan
    with pytest.raises(DataError, match="1 image\\(s\\) contain NaN"):
        write_labelled(path, images, np.zeros(5))
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        write_labelled(path, _images(5, 0), np.full(5, 2))
    with pytest.raises(DataError, match="metadata column images/x has 3 rows, expected 5"):
        write_labelled(path, _images(5, 0), np.zeros(5), meta={"x": np.zeros(3)})
    with pytest.raises(DataError, match="expected images of shape"):
        write_labelled(path, np.zeros((5, 4)), np.zeros(5))
    assert list(tmp_path.iterdir()) == [], "atomic: no partial or temporary file"


def test_images_are_chunked_along_n(tmp_path):
    path = tmp_path / "c.h5"
    write_labelled(path, _images(300, 0, size=101), np.zeros(300))
    with h5py.File(path) as fh:
        chunks = fh["images"].chunks
    assert chunks[1:] == (101, 101, 1) and 1 < chunks[0] < 300
    assert 1 << 20 <= np.prod(chunks) * 4 <= 4 << 20


def test_info_cli(population, tmp_path, capsys):
    path = population[0]
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "lenshpc population dataset, schema v1" in out
    assert "sources: 120 images (train 96, val 12, test 12); metadata: n_clumps, theta_E" in out
    assert "negatives: 40 images" in out and "kind" in out and "provenance" in out
    assert main(["info", "--tree", str(path)]) == 0
    assert "splits/lenses/val  (5,) int64" in capsys.readouterr().out

    lab = tmp_path / "lab.h5"
    write_labelled(lab, _images(4, 0), np.array([1, 0, 0, 0]), logs={"skipped": ["/x/a.fits: truncated file"]})
    assert main(["info", str(lab)]) == 0
    out = capsys.readouterr().out
    assert "labels: 1 positive, 3 negative" in out and "log/skipped: 1 entry" in out and "/x/a.fits: truncated" in out

    seg = tmp_path / "seg.h5"  # another lenshpc file kind (e.g. from `lenshpc maxtree`) is listed generically
    with h5py.File(seg, "w") as fh:
        fh.attrs["lenshpc_format"] = "segmented"
        fh["lenses"] = np.zeros((3, 4, 4, 1), np.float32)
    assert main(["info", str(seg)]) == 0
    out = capsys.readouterr().out
    assert "lenshpc segmented file" in out and "lenses  (3, 4, 4, 1) float32" in out

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as fh:
        fh["x"] = 1
    assert main(["info", str(foreign)]) == 2
    assert "not a lenshpc dataset" in capsys.readouterr().err
