"""The 21-cm chunk source (class balance, determinism, physics-preserving augmentation, splits, bad input) and
the categorical metrics against sklearn.

The slice files here are small *synthetic* arrays written with the real ``slices21cm`` writer
(:func:`lenshpc.data.cosmo21cm.slices.write_slices`): these tests are about the source's bookkeeping, not
about 21cmFAST (the 21cmFAST-made dataset is tested in test_cosmo21cm_task.py / the sim21 tests).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lenshpc  # noqa: F401  (runtime caps before numpy-heavy imports)
from lenshpc import metrics_multiclass as mm
from lenshpc.config import Config
from lenshpc.data.cosmo21cm.slices import write_slices
from lenshpc.data.slice_source import SliceSource, augment_batch, augment_batch_reference
from lenshpc.errors import UserError
from lenshpc.utils import rng_for

REDSHIFTS = (8.0, 9.0, 10.0)
FESC = (-1.3, -0.7)


def synthetic_slices(path, *, realisations=4, per_box=6, side=16, split_by="realisation", drop=None):
    """``realisations × |z| × |F|`` boxes of ``per_box`` random slices whose mean encodes the class."""
    rng = rng_for(0, "synthetic21")
    images, meta = [], {k: [] for k in ("realisation", "seed", "redshift", "f_esc10", "axis", "slice")}
    for r in range(realisations):
        for z in REDSHIFTS:
            for f in FESC:
                if drop is not None and drop(r, z, f):
                    continue
                images.append(rng.normal(z + 3 * f, 1.0, (per_box, side, side)).astype(np.float32))
                for key, value in (("realisation", r), ("seed", 100 + r), ("redshift", z), ("f_esc10", f)):
                    meta[key] += [value] * per_box
                meta["axis"] += [0] * per_box
                meta["slice"] += list(range(per_box))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_slices(path, np.concatenate(images), {k: np.asarray(v) for k, v in meta.items()},
                            classes={"redshift": list(REDSHIFTS), "escape_fraction": list(FESC)}, seed=0,
                            split_by=split_by)


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    return synthetic_slices(tmp_path_factory.mktemp("c21") / "slices.h5")


def cfg_for(path, seed=0, chunk_size=24, **data):
    cfg = Config()
    cfg.seed = seed
    cfg.data.path = str(path)
    cfg.data.chunk_size = chunk_size
    cfg.data.prefetch = 0
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def options(**kw):
    from lenshpc.tasks.cosmo21cm import Cosmo21cmTask

    return Cosmo21cmTask.check_params(kw)


def test_chunks_are_class_balanced_and_deterministic(slices):
    src = SliceSource(cfg_for(slices, chunk_size=26), options(target="joint"))
    x, y = src.chunk(3)
    assert x.shape == (26, 16, 16, 1) and src.n_classes == 6
    counts = np.bincount(y, minlength=6)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 26
    again = SliceSource(cfg_for(slices, chunk_size=26), options(target="joint"))
    x2, y2 = again.chunk(3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(src.chunk(4)[0], x)
    # iter_chunks (threaded prefetch) yields exactly chunk(i): resume from any chunk replays the same data
    src.cfg.data.prefetch = 2
    for i, xi, yi in src.iter_chunks(2, 5):
        np.testing.assert_array_equal(xi, src.chunk(i)[0])
        np.testing.assert_array_equal(yi, src.chunk(i)[1])


def test_ranks_draw_from_disjoint_train_shards(slices):
    from lenshpc.data.cosmo21cm.slices import open_slices

    shares = [SliceSource(cfg_for(slices), options(), rank=r, size=2) for r in range(2)]
    assert [s.per_rank_chunk_size for s in shares] == [12, 12]
    with open_slices(slices) as ds:
        train = ds.indices("train")
        parts = [ds.indices("train", r, 2) for r in range(2)]
    assert not set(parts[0]) & set(parts[1]) and set(parts[0]) | set(parts[1]) == set(train)
    assert not np.array_equal(shares[0].chunk(0)[0], shares[1].chunk(0)[0])


def test_augmentation_preserves_values_and_periodicity():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(5, 12, 12, 1)).astype(np.float32)
    rows = np.array([4, 0, 2, 2, 1])
    out = augment_batch(img, rows, rng_for(0, "t"), ("roll", "rot90", "flip"), None)
    for a, b in zip(img[rows], out):  # a permutation of the pixels: the value set is unchanged
        np.testing.assert_array_equal(np.sort(a.ravel()), np.sort(b.ravel()))
    # the compiled kernel equals the numpy reference (np.roll window, np.rot90, flip), with and without crops
    for ops in (("roll", "rot90", "flip"), ("rot90",), ("flip",), ("roll",), ()):
        for crop in (None, 5):
            np.testing.assert_array_equal(augment_batch(img, rows, rng_for(3, "k"), ops, crop),
                                          augment_batch_reference(img, rows, rng_for(3, "k"), ops, crop))
    # roll alone is np.roll by the drawn offsets (the box is periodic)
    r = rng_for(0, "t2")
    dy, dx = r.integers(0, 12, 5), r.integers(0, 12, 5)
    rolled = augment_batch(img, np.arange(5), rng_for(0, "t2"), ("roll",), None)
    for i in range(5):
        np.testing.assert_array_equal(rolled[i], np.roll(img[i], (-dy[i], -dx[i]), axis=(0, 1)))
    # a crop of a rolled slice is a periodic window: it wraps around the edge
    crop = augment_batch(img, np.arange(5), rng_for(0, "t2"), ("roll",), 5)
    for i in range(5):
        np.testing.assert_array_equal(crop[i], rolled[i][:5, :5])
    # rot90 alone is np.rot90 of the slice
    r = rng_for(0, "t4")
    r.integers(0, 12, 5), r.integers(0, 12, 5)
    k = r.integers(0, 4, 5)
    turned = augment_batch(img, np.arange(5), rng_for(0, "t4"), ("rot90",), None)
    for i in range(5):
        np.testing.assert_array_equal(turned[i], np.rot90(img[i], k[i]))
    # no augmentation: the origin crop, untouched
    np.testing.assert_array_equal(augment_batch(img, np.arange(5), rng_for(0, "t3"), (), 4), img[:, :4, :4])


def test_fixed_sets_follow_the_realisation_split(slices):
    from lenshpc.data.cosmo21cm.slices import open_slices

    src = SliceSource(cfg_for(slices), options(crop=8))
    x_val, y_val = src.validation()
    x_test, y_test, meta = src.test()
    assert x_val.shape[1:] == (8, 8, 1) and src.image_shape == (8, 8, 1)
    with open_slices(slices) as ds:
        reals = ds.split_realisations
        train_real = set(ds.meta("train")["realisation"].tolist())
    assert set(meta["realisation"].tolist()) <= set(reals["test"])
    assert not set(meta["realisation"].tolist()) & train_real
    np.testing.assert_array_equal(meta["label"], y_test)
    assert not x_val.flags.writeable and np.array_equal(x_test, src.test()[0])
    desc = src.describe()["data"]
    assert desc["split_by"] == "realisation" and desc["warnings"] == [] and desc["crop"] == 8


def test_slice_split_needs_the_flag_and_warns(tmp_path):
    path = synthetic_slices(tmp_path / "by_slice.h5", split_by="slice")
    with pytest.raises(UserError, match="allow_slice_split"):
        SliceSource(cfg_for(path), options())
    src = SliceSource(cfg_for(path), options(allow_slice_split=True))
    assert src.describe()["data"]["split_by"] == "slice" and src.warnings and "optimistic" in src.warnings[0]


def test_bad_input_is_named(tmp_path, slices):
    from lenshpc.errors import ConfigError

    # a class with no slices in a split: redshift 10 missing from realisation 0 and 1 (one of them in val/test)
    from lenshpc.data.cosmo21cm.slices import open_slices

    with open_slices(slices) as ds:
        held = ds.split_realisations["val"] + ds.split_realisations["test"]
    gap = synthetic_slices(tmp_path / "gap.h5", drop=lambda r, z, f: r in held and z == 10.0)
    with pytest.raises(UserError, match=r"no slices of class\(es\) z=10"):
        SliceSource(cfg_for(gap), options(target="redshift"))
    # a target absent from the dataset
    only_z = tmp_path / "only_z.h5"
    with open_slices(slices) as ds:
        images, meta = ds.images(), ds.meta()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_slices(only_z, images, {k: meta[k] for k in ("realisation", "redshift")},
                     classes={"redshift": list(REDSHIFTS)}, seed=0)
    with pytest.raises(UserError, match="target 'escape_fraction' is not in this dataset"):
        SliceSource(cfg_for(only_z), options(target="escape_fraction"))
    with pytest.raises(ConfigError, match="task.params.target"):
        options(target="mass")
    with pytest.raises(ConfigError, match="crop"):
        SliceSource(cfg_for(slices), options(crop=64))
    with pytest.raises(ConfigError, match="augment"):
        options(augment=["zoom"])
    with pytest.raises(UserError, match="not found"):
        SliceSource(cfg_for(tmp_path / "nope.h5"), options())


def test_normalisations(slices):
    raw = SliceSource(cfg_for(slices), options(normalisation="none")).validation()[0]
    glob = SliceSource(cfg_for(slices), options(normalisation="global", mk_scale=4.0)).validation()[0]
    np.testing.assert_allclose(glob, raw / 4.0, rtol=1e-6)
    std = SliceSource(cfg_for(slices), options(normalisation="standardise")).validation()[0]
    np.testing.assert_allclose(std.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(std.std(axis=(1, 2, 3)), 1, atol=1e-4)


def test_lens_normalisation_keys_are_refused_not_ignored(slices):
    """data.normalisation (the lens-image registry) would be silently ignored by a slice run: it is refused."""
    for key, value in (("normalisation", "asinh"), ("normalisation_params", {"a": 0.2})):
        refused = r"data\.normalisation.*task\.params\.normalisation.*global.*standardise.*none"
        with pytest.raises(UserError, match=refused):
            SliceSource(cfg_for(slices, **{key: value}), options())
    explicit_default = SliceSource(cfg_for(slices, normalisation="minmax_sqrt"), options()).validation()[0]
    np.testing.assert_array_equal(explicit_default, SliceSource(cfg_for(slices), options()).validation()[0])


def test_metrics_match_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = probs.argmax(1)
    s = mm.summary(y, probs)
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert s["top2_accuracy"] == pytest.approx(np.mean([y[i] in np.argsort(probs[i])[-2:] for i in range(200)]))
    assert s["auroc_ovr"] == pytest.approx(np.mean([skm.roc_auc_score(y == k, probs[:, k]) for k in range(4)]))
    np.testing.assert_allclose(s["per_class_recall"], [np.mean(pred[y == k] == k) for k in range(4)])
    assert np.asarray(s["confusion"]).sum() == 200 and np.trace(s["confusion"]) == (pred == y).sum()
    onehot = np.eye(4)[y]
    assert mm.cross_entropy(onehot, probs) == pytest.approx(skm.log_loss(y, probs))
    # a class absent from y: AUROC undefined (None), recall 0 for it, no crash
    assert mm.auroc_ovr(y[y != 3], probs[y != 3]) is None
    assert mm.per_class_recall(y[y != 3], probs[y != 3])[3] == 0.0
