"""The chunk engine: balance, determinism, resume replay, ranks, fixed val/test sets, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from lenshpc.config import load_config
from lenshpc.data import transforms as T
from lenshpc.data.chunks import ChunkEngine
from lenshpc.data.format import open_dataset, write_labelled, write_population
from lenshpc.errors import ConfigError, DataError
from lenshpc.utils import rng_for

S = 24  # image side: tiny hand-made datasets keep these tests fast


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("chunks") / "pop.h5"
    kinds = np.array(["spiral", "ring", "merger", "lrg"])[rng.integers(0, 4, 80)]
    write_population(path, rng.normal(size=(80, S, S, 1)) + 5, rng.random((150, S, S, 1)) ** 4,
                     rng.normal(size=(80, S, S, 1)),
                     meta={"sources": {"theta_E": rng.uniform(0.5, 3, 150), "magnitude": rng.uniform(20, 24, 150)},
                           "negatives": {"kind": kinds}}, seed=3)
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("chunks") / "lab.h5"
    labels = np.tile([0, 1], 60)
    images = rng.normal(size=(120, S, S, 1)) + labels[:, None, None, None]
    write_labelled(path, images, labels, ids=np.arange(1000, 1120), seed=2)
    return path


def _cfg(path, *overrides):
    return load_config(None, [f"data.path={path}", "data.chunk_size=64", "data.val_size=30", *overrides])


@pytest.fixture(scope="module")
def engine(population):
    return ChunkEngine(_cfg(population, "seed=7"))


# ---------------------------------------------------------------- training chunks
def test_chunk_balance_labels_and_range(engine):
    x, y = engine.chunk(0)
    assert x.shape == (64, S, S, 1) and x.dtype == np.float32 and y.dtype == np.float32
    assert engine.image_shape == (S, S, 1) and engine.per_rank_chunk_size == 64
    assert set(np.unique(y)) == {0.0, 1.0} and y.sum() == 32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert not np.array_equal(y[:32], np.ones(32))  # shuffled, not positives-first


def test_positive_fraction(population):
    _, y = ChunkEngine(_cfg(population, "data.positive_fraction=0.25")).chunk(0)
    assert y.sum() == 16


def test_chunk_equals_numpy_reference_path(engine):
    x, y = engine.chunk(5)
    xr, yr = engine.reference_chunk(5)
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(y, yr)


def test_determinism_and_resume_replay(population, engine):
    x3, y3 = engine.chunk(3)
    assert not np.array_equal(engine.chunk(4)[0], x3)  # another index, other data
    for k in range(3):  # a run that has already produced chunks 0..2 ...
        engine.chunk(k)
    again, _ = engine.chunk(3)
    fresh = ChunkEngine(_cfg(population, "seed=7"))  # ... and a resumed run starting at chunk 3
    xf, yf = fresh.chunk(3)
    np.testing.assert_array_equal(again, x3)
    np.testing.assert_array_equal(xf, x3)
    np.testing.assert_array_equal(yf, y3)
    other_seed = ChunkEngine(_cfg(population, "seed=8")).chunk(3)[0]
    assert not np.array_equal(other_seed, x3)


def test_thread_count_does_not_change_chunks(population, engine):
    threaded = ChunkEngine(_cfg(population, "seed=7", "data.threads=2"))
    np.testing.assert_array_equal(threaded.chunk(2)[0], engine.chunk(2)[0])
    threaded.close()


def test_augmentation_disabled_gives_unaugmented_mock_lenses(population):
    eng = ChunkEngine(_cfg(population, "augment.enabled=false"))
    rng = rng_for(eng.cfg.seed, "chunk", 0, 0, 1)
    pos = eng._draw_positives(rng, 32)  # the engine's first draws from chunk 0's stream
    x, y = eng.chunk(0)
    expected = T.mock_lenses(pos.lenses.images[pos.lens_rows].reshape(32, S, S, 1),
                             pos.sources.images[pos.source_rows].reshape(32, S, S, 1), pos.alpha)
    got = x[y == 1]
    # same multiset of images (the chunk is shuffled)
    key = lambda a: np.lexsort(a.reshape(len(a), -1).T)  # noqa: E731
    np.testing.assert_array_equal(got[key(got)], expected[key(expected)])
    assert pos.alpha.min() >= 0.02 and pos.alpha.max() <= 0.30


def test_iter_chunks_equals_chunk(engine):
    seen = [(i, x, y) for i, x, y in engine.iter_chunks(2, 5, prefetch=2)]
    assert [i for i, *_ in seen] == [2, 3, 4]
    for i, x, y in seen:
        xc, yc = engine.chunk(i)
        np.testing.assert_array_equal(x, xc)
        np.testing.assert_array_equal(y, yc)
    sync = list(engine.iter_chunks(0, 1, prefetch=0))
    np.testing.assert_array_equal(sync[0][1], engine.chunk(0)[0])
    for i, *_ in engine.iter_chunks(0, 100, prefetch=3):  # leaving early stops the producer
        if i == 1:
            break


def test_tf_dataset_batches(engine):
    batches = list(engine.tf_dataset(0, 2, batch_size=30).as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [30, 30, 4, 30, 30, 4]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches[:3]]), engine.chunk(0)[0])


# ---------------------------------------------------------------- ranks
def test_ranks_draw_disjoint_shards_that_cover_the_split(population):
    engines = [ChunkEngine(_cfg(population, "seed=7"), rank=r, size=2) for r in range(2)]
    assert all(e.per_rank_chunk_size == 32 for e in engines)
    with open_dataset(population) as ds:
        for name in ("lenses", "sources", "negatives"):
            shards = [e._pools["train"][name].index for e in engines]
            assert not set(shards[0]) & set(shards[1])
            np.testing.assert_array_equal(np.sort(np.concatenate(shards)), ds.split(name, "train"))
    for e in engines:  # draws come from the rank's own shard only
        pools = e._pools["train"]
        pos = e._draw_positives(np.random.default_rng(0), 500)
        assert set(pos.meta()["lens_index"]) <= set(pools["lenses"].index)
        assert set(pos.meta()["source_index"]) <= set(pools["sources"].index)
        assert set(e._draw_negatives(np.random.default_rng(0), 500).meta()["index"]) <= set(pools["negatives"].index)
    assert not np.array_equal(engines[0].chunk(0)[0], engines[1].chunk(0)[0])


# ---------------------------------------------------------------- validation and test
def test_validation_is_fixed_balanced_and_rank_independent(population, engine):
    x, y = engine.validation()
    assert x.shape == (30, S, S, 1) and y.sum() == 15
    x2, y2 = engine.validation()
    np.testing.assert_array_equal(x, x2)
    xr, yr = ChunkEngine(_cfg(population, "seed=7"), rank=1, size=2).validation()
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(y, yr)
    assert not x.flags.writeable
    assert x.min() >= 0 and x.max() <= 1
    # not augmented: no rotated-in zero corners, every image spans exactly [0, 1]
    flat = x.reshape(len(x), -1)
    np.testing.assert_array_equal(flat.min(axis=1), 0.0)
    np.testing.assert_array_equal(flat.max(axis=1), 1.0)


def test_test_set_and_metadata(population, engine):
    x, y, meta = engine.test()
    with open_dataset(population) as ds:
        n_half = min(len(ds.split("lenses", "test")), len(ds.split("negatives", "test")))
        test_neg = set(ds.split("negatives", "test"))
        theta = ds.meta("sources")["theta_E"]
        kinds = ds.meta("negatives")["kind"]
    assert len(x) == len(y) == 2 * n_half and y.sum() == n_half
    assert {"label", "alpha", "lens_index", "source_index", "theta_E", "magnitude", "index", "kind"} <= set(meta)
    assert all(len(v) == len(x) for v in meta.values())
    pos, neg = y == 1, y == 0
    np.testing.assert_array_equal(meta["label"], y)
    assert np.all((meta["alpha"][pos] >= 0.02) & (meta["alpha"][pos] <= 0.30)) and np.isnan(meta["alpha"][neg]).all()
    np.testing.assert_array_equal(meta["theta_E"][pos], theta[meta["source_index"][pos]])
    assert np.isnan(meta["theta_E"][neg]).all() and (meta["source_index"][neg] == -1).all()
    assert set(meta["index"][neg]) <= test_neg and len(set(meta["index"][neg])) == n_half  # each once
    np.testing.assert_array_equal(meta["kind"][neg], kinds[meta["index"][neg]])
    assert (meta["kind"][pos] == "").all() and (meta["index"][pos] == -1).all()
    x2, *_ = engine.test()
    np.testing.assert_array_equal(x, x2)


def test_test_size_too_large_is_a_data_error(population):
    with pytest.raises(DataError, match="test_size"):
        ChunkEngine(_cfg(population, "data.test_size=400")).test()


# ---------------------------------------------------------------- labelled datasets
def test_labelled_mode(labelled):
    eng = ChunkEngine(_cfg(labelled))
    x, y = eng.chunk(1)
    assert x.shape == (64, S, S, 1) and y.sum() == 32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(x, eng.reference_chunk(1)[0])
    xv, yv = eng.validation()
    assert len(xv) == 30 and yv.sum() == 15
    xt, yt, meta = eng.test()
    with open_dataset(labelled) as ds:
        split = ds.split("images", "test")
        labels = ds.labels()
        prepared = T.prepare(ds.read("images", meta["index"]))
    assert sorted(meta["index"]) == sorted(split)  # data.test_size = 0: the whole test split
    np.testing.assert_array_equal(yt, labels[meta["index"]])
    np.testing.assert_array_equal(meta["id"], meta["index"] + 1000)
    np.testing.assert_array_equal(xt, prepared)  # normalised + √, no augmentation


# ---------------------------------------------------------------- errors
def test_missing_file_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ChunkEngine(_cfg(tmp_path / "nope.h5"))
    with pytest.raises(ConfigError, match="data.path"):
        ChunkEngine(load_config(None))


def test_not_a_lenshpc_dataset(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(DataError, match="lenshpc"):
        ChunkEngine(_cfg(path))


def test_split_too_small_for_ranks(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "tiny.h5"
    write_population(path, rng.random((3, 8, 8, 1)), rng.random((10, 8, 8, 1)), rng.random((10, 8, 8, 1)))
    with pytest.raises(DataError, match="rank 3 of 4 .*lenses"):
        ChunkEngine(_cfg(path), rank=3, size=4)


def test_labelled_split_without_one_class(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "onesided.h5"
    labels = np.zeros(20, dtype=int)
    labels[:2] = 1
    splits = {"train": np.arange(2, 20), "val": np.arange(0, 1), "test": np.arange(1, 2)}
    write_labelled(path, rng.random((20, 8, 8, 1)), labels, splits=splits)
    with pytest.raises(DataError, match="no positive"):
        ChunkEngine(_cfg(path))


def test_chunk_too_small_for_world(population):
    with pytest.raises(ConfigError, match="chunk_size"):
        ChunkEngine(_cfg(population, "data.chunk_size=4"), rank=0, size=4)


def test_simulated_population_chunks(small_population):
    """End to end on the project's own simulated KiDS-like data."""
    eng = ChunkEngine(_cfg(small_population))
    x, y = eng.chunk(0)
    assert x.shape[1:] == eng.image_shape and y.sum() == 32
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    xt, yt, meta = eng.test()
    assert yt.sum() == len(yt) / 2 and "theta_E" in meta and np.isfinite(meta["theta_E"][yt == 1]).all()


def test_recycled_buffers_never_overwrite_held_chunks(engine):
    x0, _ = engine.chunk(0)
    kept = x0.copy()
    part = engine.chunk(1)[0][:3]  # a view keeps its chunk's buffer alive too
    part_copy = part.copy()
    for k in range(2, 8):  # chunks not held by anyone are recycled
        engine.chunk(k)
    np.testing.assert_array_equal(x0, kept)
    np.testing.assert_array_equal(part, part_copy)
    assert not np.shares_memory(x0, part)
    del x0
    reused, _ = engine.chunk(9)
    np.testing.assert_array_equal(reused, engine.reference_chunk(9)[0])


def test_deferred_train_loading(population, engine):
    lazy = ChunkEngine(_cfg(population, "seed=7"), load_train=False)
    assert "train" not in lazy._pools
    np.testing.assert_array_equal(lazy.validation()[0], engine.validation()[0])
    assert "train" not in lazy._pools
    np.testing.assert_array_equal(lazy.chunk(1)[0], engine.chunk(1)[0])  # loads on first use
