"""Max-Tree segmentation (thesis Sec 4.7): the filter, its parameters, the flood modes, sharded runs.

Synthetic scenes are built here from closed-form profiles (a central galaxy, an arc, small and
large off-centre blobs, a thin diagonal streak), so every expectation is exact and fast.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lenshpc.config import MaxTreeConfig
from lenshpc.errors import DataError
from lenshpc.preprocess.maxtree import segmentation as mt

SIZE = 101
CENTRE = 50
SMALL_BLOBS = [(15, 80), (85, 20), (78, 86)]
BIG_BLOB = (20, 18)


def _scene(seed: int | None = None, noise: float = 0.0):
    """A 101×101 scene: galaxy + arc + small blobs + one big blob + a thin diagonal streak.

    Returns the image (normalised to [0, 1]) and boolean masks of each component's support.
    """
    yy, xx = np.indices((SIZE, SIZE))
    r = np.hypot(yy - CENTRE, xx - CENTRE)
    theta = np.arctan2(yy - CENTRE, xx - CENTRE)
    galaxy = np.exp(-r**2 / (2 * 5.0**2))
    arc = 0.35 * np.exp(-(r - 14) ** 2 / (2 * 1.2**2)) * np.exp(-(theta - 0.5) ** 2 / (2 * 0.6**2))
    small = sum(0.3 * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * 0.7**2)) for by, bx in SMALL_BLOBS)
    big = 0.4 * np.exp(-((yy - BIG_BLOB[0]) ** 2 + (xx - BIG_BLOB[1]) ** 2) / (2 * 2.5**2))
    image = galaxy + arc + small + big
    if noise:
        image = image + np.random.default_rng(seed).normal(0, noise, image.shape)
    image = (image - image.min()) / (image.max() - image.min())
    return image, {"galaxy": r <= 3, "arc": arc > 0.15, "big": big > 0.2}


# ------------------------------------------------------------------ an independent reference
def _skimage_filter(u8: np.ndarray, p: MaxTreeConfig) -> np.ndarray:
    """The same attribute filter written on scikit-image's max-tree (parent array + traversal order).

    Independent of higra: node attributes are accumulated leaf-to-root along skimage's
    ``traverser``; the direct rule is applied root-to-leaf.
    """
    from skimage.morphology import max_tree

    parent, order = max_tree(u8, connectivity=2)
    parent, values = parent.ravel(), u8.ravel()
    rows, cols = np.divmod(np.arange(u8.size), u8.shape[1])
    area = np.ones(u8.size, np.int64)
    rmin, rmax, cmin, cmax = rows.copy(), rows.copy(), cols.copy(), cols.copy()
    root = order[0]
    for q in order[::-1]:
        if q == root:
            continue
        t = parent[q]
        area[t] += area[q]
        rmin[t], rmax[t] = min(rmin[t], rmin[q]), max(rmax[t], rmax[q])
        cmin[t], cmax[t] = min(cmin[t], cmin[q]), max(cmax[t], cmax[q])
    dx, dy = cmax - cmin + 1.0, rmax - rmin + 1.0
    keep = ((area >= p.min_area) & (dx >= p.min_extent) & (dx <= p.max_extent) & (dy >= p.min_extent)
            & (dy <= p.max_extent) & (area / (dx * dy) >= p.min_rectangularity))
    out = values.copy()
    for q in order:
        if q == root:
            continue
        canonical = values[parent[q]] != values[q]
        if canonical and keep[q]:
            out[q] = values[q]  # a kept node keeps its own level
        else:
            out[q] = out[parent[q]]  # direct rule: the closest kept ancestor's level
    return out.reshape(u8.shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_matches_independent_skimage_implementation(seed):
    image, _ = _scene(seed, noise=0.03)
    p = MaxTreeConfig()
    smoothed = mt.smooth_uint8(mt.to_uint8(image))
    ours = mt.tree_filter(smoothed, p)
    assert np.array_equal(ours, _skimage_filter(smoothed, p))
    assert not np.array_equal(ours, smoothed)  # the filter did something on this image


def test_smoothing_is_opencv_binomial_gaussian():
    # OpenCV's GaussianBlur(u8, (5, 5), 0) = separable [1,4,6,4,1]/16, reflect-101 borders, round half up.
    u8 = np.random.default_rng(3).integers(0, 256, (9, 11)).astype(np.uint8)
    padded = np.pad(u8.astype(np.int64), 2, mode="reflect")  # numpy "reflect" = OpenCV BORDER_REFLECT_101
    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])
    direct = np.array([[(padded[i:i + 5, j:j + 5] * k).sum() for j in range(11)] for i in range(9)])
    assert np.array_equal(mt.smooth_uint8(u8), ((direct + 128) >> 8).astype(np.uint8))


def test_eight_bit_conversion_rounds():
    x = np.array([[0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 1.0]])
    assert mt.to_uint8(x).tolist() == [[0, 0, 1, 2, 255]]  # rint, not truncation (0.5 → 0: round half even)


# ------------------------------------------------------------------ what the pipeline keeps
def test_tree_filter_removes_small_blobs_keeps_galaxy_arc_and_big_blob():
    image, parts = _scene()
    steps = mt.segment_steps(image, MaxTreeConfig(flood="off"))
    kept = steps.tree_mask[0]
    assert kept[parts["galaxy"]].all() and kept[parts["arc"]].all()
    for by, bx in SMALL_BLOBS:
        assert not kept[by - 2:by + 3, bx - 2:bx + 3].any(), "small blob survived the area filter"
        assert steps.smoothed[0][by, bx] > 0  # it was there before the filter
    assert kept[parts["big"]].all()  # big enough to pass: only the decay + flood remove it
    assert np.array_equal(steps.mask, steps.tree_mask)  # flood off: the tree decides alone


def test_flood_corner_erases_background_blob_and_faint_arc():
    image, parts = _scene()
    steps = mt.segment_steps(image, MaxTreeConfig(flood="corner"))
    mask, flooded = steps.mask[0], steps.flooded[0]
    assert np.array_equal(mask, ~flooded)
    assert flooded[2, 2] and not mask[0, 0] and not mask[-1, -1]
    assert mask[parts["galaxy"]].all()
    assert not mask[parts["big"]].any()  # decayed far from the centre, then flooded
    # The thesis's flood also erases most of the faint arc (it concluded segmentation can remove lensing features).
    assert mask[parts["arc"]].mean() < 0.5
    out = steps.output[0, ..., 0]
    assert np.array_equal(out[mask], image[mask].astype(np.float32)) and not out[~mask].any()


def test_flood_centre_keeps_only_the_central_region():
    image, parts = _scene()
    steps = mt.segment_steps(image, MaxTreeConfig(flood="centre"))
    mask = steps.mask[0]
    assert np.array_equal(mask, steps.flooded[0]) and mask[CENTRE, CENTRE]
    assert mask[CENTRE - 1:CENTRE + 2, CENTRE - 1:CENTRE + 2].all()
    assert not mask[parts["big"]].any() and not mask[0, 0]
    from scipy import ndimage as ndi

    assert ndi.label(mask, structure=np.ones((3, 3)))[1] == 1  # one connected region


def test_flood_matches_skimage_flood():
    from skimage.segmentation import flood

    image, _ = _scene(4, noise=0.03)
    weighted = mt.segment_steps(image).weighted[0]
    for seed in [(2, 2), (50, 50)]:
        assert np.array_equal(mt.flood_region(weighted, seed, 20.0),
                              flood(weighted, seed, connectivity=2, tolerance=20.0))


# ------------------------------------------------------------------ every parameter matters
def _bar_scene():
    """Shapes that each fail exactly one criterion of the defaults, on a black background."""
    img = np.zeros((SIZE, SIZE))
    img[10:12, 10:60] = 1.0  # "thin": 2 px high → fails min_extent (area 100, rectangularity 1)
    img[30:35, 15:90] = 1.0  # "wide": 75 px wide → fails max_extent
    for k in range(40):  # "diagonal": 3 px thick diagonal → fails rectangularity (~0.08)
        img[50 + k, 20 + k:23 + k] = 1.0
    img[60:66, 70:76] = 1.0  # "square": 36 px → fails min_area only
    return img


_REGIONS = {"thin": (slice(10, 12), slice(20, 50)), "wide": (slice(31, 34), slice(20, 80)),
            "diagonal": (slice(60, 61), slice(31, 32)), "square": (slice(61, 65), slice(71, 75))}


@pytest.mark.parametrize("field,value,shape", [
    ("min_extent", 1, "thin"), ("max_extent", 101, "wide"), ("min_rectangularity", 0.0, "diagonal"),
    ("min_area", 30, "square"),
])
def test_each_filter_parameter_matters(field, value, shape):
    img = _bar_scene()
    base = MaxTreeConfig(smoothing=False, flood="off")
    region = _REGIONS[shape]
    assert not mt.segment_steps(img, base).tree_mask[0][region].any(), f"{shape} should fail the default {field}"
    relaxed = dataclasses.replace(base, **{field: value})
    assert mt.segment_steps(img, relaxed).tree_mask[0][region].all(), f"{field}={value} should keep {shape}"


def test_decay_and_tolerance_matter():
    image, parts = _scene()
    base = MaxTreeConfig()
    steps = mt.segment_steps(image, base)
    slower = mt.segment_steps(image, dataclasses.replace(base, decay=200.0))
    assert slower.weighted[0][parts["big"]].min() > steps.weighted[0][parts["big"]].max()
    assert slower.mask[0][parts["big"]].all()  # a slow decay lets the big blob stand out of the flood
    loose = mt.segment_steps(image, dataclasses.replace(base, flood_tolerance=60))
    assert loose.mask[0].sum() < steps.mask[0].sum()


def test_smoothing_changes_the_tree():
    image, _ = _scene(5, noise=0.05)
    on = mt.segment_steps(image, MaxTreeConfig(smoothing=True, flood="off"))
    off = mt.segment_steps(image, MaxTreeConfig(smoothing=False, flood="off"))
    assert not np.array_equal(on.smoothed, on.u8)
    assert np.array_equal(off.smoothed, off.u8)
    assert not np.array_equal(on.filtered, off.filtered)


# ------------------------------------------------------------------ API contract
def test_batch_shapes_bands_and_determinism():
    images = np.stack([_scene(s, noise=0.02)[0] for s in range(3)]).astype(np.float32)
    out3 = mt.segment(images)
    assert out3.shape == images.shape and out3.dtype == np.float32
    two_bands = np.stack([images, images], axis=-1)
    out4 = mt.segment(two_bands)
    assert out4.shape == two_bands.shape and np.array_equal(out4[..., 0], out3)  # same mask on every band
    assert np.array_equal(mt.segment(images[1]), out3[1])  # one (H, W) image
    assert np.array_equal(mt.segment(images), out3)  # deterministic
    assert mt.segment(np.zeros((2, 16, 16))).sum() == 0  # constant images are fine


def test_bad_input_names_the_image():
    images = np.stack([_scene()[0]] * 4)
    images[2, 5, 5] = np.nan
    with pytest.raises(DataError, match=r"lenses: image 12 contains NaN"):
        mt.segment(images, offset=10, where="lenses")
    with pytest.raises(DataError, match=r"expected images of shape"):
        mt.segment(np.zeros((2, 3, 16, 16, 1)))
    with pytest.raises(DataError, match=r"at least 5×5"):
        mt.segment(np.zeros((2, 3, 3)))


# ------------------------------------------------------------------ lenshpc maxtree: shards, executors, resume
@pytest.fixture(scope="module")
def seg_config(small_population):
    from lenshpc.config import load_config

    return load_config(None, overrides=[f"data.path={small_population}", "data.val_size=32", "data.test_size=24",
                                        "preprocess.maxtree.pool_size=48", "seed=3"])


def _cli(*argv) -> int:
    from lenshpc.cli import main

    return main(["maxtree", *map(str, argv)])


def _set_args(cfg) -> list[str]:
    return ["--set", f"data.path={cfg.data.path}", "--set", "data.val_size=32", "--set", "data.test_size=24",
            "--set", "seed=3", "--pool", "48"]


@pytest.fixture(scope="module")
def one_shard(seg_config, small_population, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg1") / "seg.h5"
    assert _cli(small_population, "--out", out, "--executor", "inline", *_set_args(seg_config)) == 0
    return out


def test_one_shard_output(one_shard, small_population, seg_config):
    from lenshpc.data.format import open_dataset
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset
    from lenshpc.preprocess.maxtree.shards import montage_path

    with SegmentedDataset(one_shard) as seg, open_dataset(small_population) as ds:
        a = seg.attrs
        assert a["shards"] == 1 and a["maxtree"]["min_area"] == 45 and a["data"]["seed"] == 3
        assert a["content_sha256"] and a["code_version"].startswith("0.")
        assert seg.count("lenses") == ds.count("lenses") and seg.count("negatives") == ds.count("negatives")
        assert seg.count("pool") == 48 and seg.count("val") == 32
        pool, meta = seg.read("pool"), seg.meta("pool")
        assert {"lens_index", "source_index", "alpha", "theta_E"} <= set(meta)
        assert np.all((meta["alpha"] >= 0.02) & (meta["alpha"] <= 0.30))
        assert set(meta["lens_index"]) <= set(ds.split("lenses", "train"))
        # the pool row is the segmentation of exactly that merge
        from lenshpc.data import transforms

        i = 5
        original = transforms.mock_lenses(ds.read("lenses", meta["lens_index"][i:i + 1]),
                                          ds.read("sources", meta["source_index"][i:i + 1]), meta["alpha"][i:i + 1])
        expected = mt.segment(original, seg_config.preprocess.maxtree)
        assert np.array_equal(pool[i:i + 1], expected)
        kept = pool[i] != 0
        assert 0 < kept.mean() < 1 and np.array_equal(pool[i][kept], original[0][kept])
        assert set(np.unique(seg.labels("val"))) == {0, 1}
    png = montage_path(one_shard)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_val_test_are_the_plain_sets_segmented(one_shard, seg_config):
    from lenshpc.data.chunks import ChunkEngine
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset

    engine = ChunkEngine(seg_config, dataset_path=seg_config.data.path)
    x_val, y_val = engine.validation()
    x_test, y_test, meta = engine.test()
    with SegmentedDataset(one_shard) as seg:
        assert np.array_equal(seg.read("val"), mt.segment(x_val, seg_config.preprocess.maxtree))
        assert np.array_equal(seg.labels("val"), y_val.astype(np.uint8))
        assert np.array_equal(seg.labels("test"), y_test.astype(np.uint8))
        assert np.array_equal(seg.read("test"), mt.segment(x_test, seg_config.preprocess.maxtree))


def test_three_local_shards_are_byte_identical(one_shard, small_population, seg_config, tmp_path):
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset, content_digest

    out = tmp_path / "seg.h5"
    assert _cli(small_population, "--out", out, "--executor", "local", "--shards", 3, *_set_args(seg_config)) == 0
    assert content_digest(out) == content_digest(one_shard)
    with SegmentedDataset(out) as seg:
        assert seg.attrs["shards"] == 3 and seg.attrs["executor"] == "local"
        assert seg.attrs["content_sha256"] == content_digest(one_shard)
    assert len(list((tmp_path / "seg.h5.shards").glob("shard-*-of-0003.h5"))) == 3


@pytest.mark.mpi
def test_two_mpi_ranks_are_byte_identical(one_shard, small_population, seg_config, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset, content_digest

    mpirun = shutil.which("mpirun")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpirun = None
    if mpirun is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mpirun and mpi4py are required in CI (tests/setup.sh installs them)")
        pytest.skip("mpirun or mpi4py missing (apt install openmpi-bin libopenmpi-dev; pip install mpi4py)")
    out = tmp_path / "seg.h5"
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable, "-m", "lenshpc", "maxtree",
           str(small_population), "--out", str(out), "--executor", "mpi", *_set_args(seg_config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert content_digest(out) == content_digest(one_shard)
    with SegmentedDataset(out) as seg:
        assert seg.attrs["shards"] == 2 and seg.attrs["executor"] == "mpi"


def test_interrupted_run_resumes_and_skips_finished_shards(one_shard, small_population, seg_config, tmp_path,
                                                           monkeypatch):
    from lenshpc.preprocess.maxtree import shards
    from lenshpc.preprocess.maxtree.segfile import content_digest

    out = tmp_path / "seg.h5"
    calls = {"n": 0}
    real = shards.segment_block

    def dies_in_the_last_shard(args):
        images, params, offset, where = args
        if where == "test":  # the last rows: shard 3 of 3 dies half-way
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(args)

    monkeypatch.setattr(shards, "segment_block", dies_in_the_last_shard)
    assert _cli(small_population, "--out", out, "--executor", "inline", "--shards", 3, *_set_args(seg_config)) == 130
    done = sorted(p.name for p in (tmp_path / "seg.h5.shards").glob("*.h5"))
    assert done == ["shard-0000-of-0003.h5", "shard-0001-of-0003.h5"]  # the killed shard left no file
    assert not out.exists()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "seg.h5.shards").glob("*.h5")}
    monkeypatch.setattr(shards, "segment_block", real)
    plan = shards.make_plan(small_population, out, seg_config, 3)
    assert plan.pending() == [2]
    from lenshpc.preprocess.maxtree.executors import run_plan

    result = run_plan(plan, "inline")
    assert result["done"] == 1 and result["skipped"] == 2
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert content_digest(out) == content_digest(one_shard)
    assert run_plan(plan, "inline")["status"] == "current"  # a second re-run does nothing


def test_nan_image_in_dataset_is_a_clear_error(small_population, seg_config, tmp_path, capsys):
    import shutil

    import h5py

    from lenshpc.data.format import open_dataset

    bad = tmp_path / "bad.h5"
    shutil.copy(small_population, bad)
    with open_dataset(bad) as ds:
        victim = int(ds.split("negatives", "train")[3])
    with h5py.File(bad, "r+") as fh:
        fh["negatives"][victim, 10, 10, 0] = np.nan
    rc = _cli(bad, "--out", tmp_path / "seg.h5", "--executor", "inline", *_set_args(seg_config)[2:],
              "--set", f"data.path={bad}")
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"image {victim} contains NaN" in err, err


def test_not_a_segmented_file(small_population):
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset

    with pytest.raises(DataError, match="not a segmented dataset"):
        SegmentedDataset(small_population)


# ------------------------------------------------------------------ training integration (data.preprocess: maxtree)
def _maxtree_cfg(seg_config, seg_path, **more):
    return seg_config.replace(**{"data.preprocess": "maxtree", "data.segmented_path": str(seg_path),
                                 "data.chunk_size": 64, "augment.enabled": False, **more})


def test_chunk_engine_draws_from_the_segmented_arrays(one_shard, seg_config):
    from lenshpc.data.chunks import ChunkEngine
    from lenshpc.preprocess.maxtree.segfile import SegmentedDataset

    cfg = _maxtree_cfg(seg_config, one_shard)
    engine = ChunkEngine(cfg)
    x, y = engine.chunk(0)
    with SegmentedDataset(one_shard) as seg:
        pool = seg.read("pool").reshape(seg.count("pool"), -1)
        negatives = seg.read("negatives").reshape(seg.count("negatives"), -1)
        assert np.array_equal(engine.validation()[0], seg.read("val"))
        x_test, y_test, meta = engine.test()
        assert np.array_equal(x_test, seg.read("test")) and "alpha" in meta and len(meta["label"]) == len(y_test)
    rows = x.reshape(len(x), -1)
    # without augmentation every positive is a pool row and every negative a segmented train negative
    assert all((pool == r).all(axis=1).any() for r in rows[y == 1])
    assert all((negatives == r).all(axis=1).any() for r in rows[y == 0])
    assert np.array_equal(ChunkEngine(cfg).chunk(0)[0], x)  # deterministic
    aug = ChunkEngine(_maxtree_cfg(seg_config, one_shard, **{"augment.enabled": True})).chunk(0)[0]
    assert aug.shape == x.shape and not np.array_equal(aug, x)


def test_chunk_engine_refuses_a_mismatched_segmented_file(one_shard, seg_config):
    from lenshpc.data.chunks import ChunkEngine
    from lenshpc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.val_size: file 32, config 64.*lenshpc maxtree"):
        ChunkEngine(_maxtree_cfg(seg_config, one_shard, **{"data.val_size": 64}))
    with pytest.raises(ConfigError, match=r"preprocess.maxtree.flood: file 'corner', config 'centre'"):
        ChunkEngine(_maxtree_cfg(seg_config, one_shard, **{"preprocess.maxtree.flood": "centre"}))
    with pytest.raises(ConfigError, match="segmented_path is empty"):
        ChunkEngine(seg_config.replace(**{"data.preprocess": "maxtree"}))


def test_tiny_training_run_on_segmented_data(one_shard, seg_config, repo_root, tmp_path):
    from lenshpc.config import load_config
    from lenshpc.train import run_training

    cfg = load_config(repo_root / "configs" / "tiny.yaml", overrides=[
        f"data.path={seg_config.data.path}", "data.preprocess=maxtree", f"data.segmented_path={one_shard}",
        "data.val_size=32", "data.test_size=24", "seed=4", "data.chunk_size=64", "train.chunks=2",
        "train.batch_size=32", "preprocess.maxtree.pool_size=999",  # pool_size: the file's pool is used
        # the SEG file was made with seg_config's merge settings (tiny.yaml uses brighter arcs)
        f"data.alpha_min={seg_config.data.alpha_min}", f"data.alpha_max={seg_config.data.alpha_max}",
        f"data.positive_fraction={seg_config.data.positive_fraction}"])
    metrics = run_training(cfg, tmp_path / "run", show_progress=False)
    assert (tmp_path / "run" / "DONE").exists()
    assert metrics["n_test"] == 24 and metrics["chunks_trained"] == 2
