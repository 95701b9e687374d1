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
from lenshpc.preprocess import maxtree as mt

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
