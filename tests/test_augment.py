"""Pixel transforms (Eq 4.1, 4.2, √) and augmentation: formulas, invariants, kernel = reference."""

from __future__ import annotations

import numpy as np
import pytest

from lenshpc.config import AugmentConfig
from lenshpc.data import augment as aug
from lenshpc.data import transforms as T

H = W = 21


# ---------------------------------------------------------------- transforms
def test_merge_formula_on_hand_computed_values():
    lens = np.array([[1.0, 2.0], [4.0, -1.0]], dtype=np.float32)[None, :, :, None]  # max 4
    source = np.array([[0.0, 0.5], [2.0, 1.0]], dtype=np.float32)[None, :, :, None]  # max 2
    # k = max(l)·α/max(s) = 4·0.25/2 = 0.5  →  m = l + 0.5·s
    merged = T.merge(lens, source, np.array([0.25]))
    np.testing.assert_array_equal(merged[0, :, :, 0], [[1.0, 2.25], [5.0, -0.5]])
    assert merged.dtype == np.float32
    # the source peak becomes α × the lens peak
    assert T.merge_scale([4.0], [2.0], [0.25])[0] * 2.0 == pytest.approx(0.25 * 4.0)


def test_merge_with_blank_source_is_the_lens():
    lens = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)
    blank = np.zeros_like(lens)
    np.testing.assert_array_equal(T.merge(lens, blank, np.array([0.3])), lens)


def test_normalise_and_sqrt_stretch_values():
    x = np.array([[2.0, 4.0], [6.0, 10.0]], dtype=np.float32)[None, :, :, None]
    norm = T.normalise(x)
    np.testing.assert_allclose(norm[0, :, :, 0], [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(T.sqrt_stretch(norm)[0, :, :, 0], [[0.0, 0.5], [np.sqrt(0.5), 1.0]])
    np.testing.assert_array_equal(T.prepare(x), T.sqrt_stretch(norm))
    # per image: a second image with another range is scaled independently
    two = np.concatenate([x, 3 * x - 7])
    np.testing.assert_allclose(T.normalise(two)[1], norm[0], rtol=1e-6)
    # a constant image is all zeros, not NaN
    assert np.all(T.normalise(np.full((1, 2, 2, 1), 5.0)) == 0)


def test_mock_lens_range_is_unit_interval():
    rng = np.random.default_rng(0)
    m = T.mock_lenses(rng.normal(size=(5, H, W, 1)), rng.random((5, H, W, 1)), rng.uniform(0.02, 0.3, 5))
    assert m.dtype == np.float32 and m.min() == 0.0 and m.max() == 1.0


# ---------------------------------------------------------------- augmentation invariants
def _images(n=40, seed=0):
    return T.prepare(np.random.default_rng(seed).normal(size=(n, H, W, 1)))


def test_shape_dtype_and_nearest_neighbour_values():
    images = _images()
    params = aug.draw_params(np.random.default_rng(1), len(images), AugmentConfig())
    out = aug.apply_affine(images, params)
    assert out.shape == images.shape and out.dtype == np.float32
    for img, res in zip(images, out):  # nearest neighbour: no new values, only input values or the fill 0
        assert np.isin(res, np.append(img.ravel(), 0.0)).all()


def test_flip_fraction_is_about_half():
    params = aug.draw_params(np.random.default_rng(2), 20000, AugmentConfig())
    assert abs(params.flip.mean() - 0.5) < 0.02
    assert params.zoom.min() >= 1.0 and params.zoom.max() <= 1.05
    assert np.abs(params.shift_x).max() <= 4 and np.abs(params.shift_y).max() <= 4
    assert params.theta.min() >= 0 and params.theta.max() < 2 * np.pi


def test_identity_when_disabled():
    images = _images(5)
    params = aug.draw_params(np.random.default_rng(3), 5, AugmentConfig(enabled=False))
    np.testing.assert_array_equal(aug.apply_affine(images, params), images)


def test_zoom_and_rotation_keep_centre_pixel_of_symmetric_image():
    r = np.hypot(*np.mgrid[:H, :W] - (H - 1) / 2)
    image = np.exp(-r / 3.0).astype(np.float32)[None, :, :, None]  # rotationally symmetric, peak at centre
    cfg = AugmentConfig(shift=0.0, flip=0.5)
    params = aug.draw_params(np.random.default_rng(4), 200, cfg)
    out = aug.apply_affine(np.repeat(image, 200, axis=0), params)
    c = (H - 1) // 2
    np.testing.assert_array_equal(out[:, c, c, 0], image[0, c, c, 0])


def test_pure_flip_and_quarter_turn_are_exact():
    image = _images(1)
    flip = aug.AffineParams(np.ones(1), np.zeros(1), np.zeros(1), np.zeros(1), np.ones(1, dtype=bool))
    np.testing.assert_array_equal(aug.apply_affine(image, flip), image[:, :, ::-1])
    quarter = aug.AffineParams(np.ones(1), np.full(1, np.pi / 2), np.zeros(1), np.zeros(1), np.zeros(1, dtype=bool))
    turned = aug.apply_affine(image, quarter)[0, :, :, 0]
    # a quarter turn is a permutation of the pixels (no fill, nothing lost)
    np.testing.assert_array_equal(np.sort(turned.ravel()), np.sort(image.ravel()))
    assert any(np.array_equal(turned, np.rot90(image[0, :, :, 0], k)) for k in (1, 3))


def test_integer_shift_moves_content():
    image = _images(1)
    shift = aug.AffineParams(np.ones(1), np.zeros(1), np.full(1, 2.0), np.full(1, -3.0), np.zeros(1, dtype=bool))
    out = aug.apply_affine(image, shift)[0, :, :, 0]
    np.testing.assert_array_equal(out[2:, : W - 3], image[0, : H - 2, 3:, 0])
    assert np.all(out[:2] == 0) and np.all(out[:, W - 3 :] == 0)  # uncovered pixels get the fill value 0


# ---------------------------------------------------------------- kernel == reference
@pytest.mark.parametrize("channels", [1, 3])
def test_fused_kernels_equal_numpy_reference(channels):
    rng = np.random.default_rng(5)
    lenses = rng.normal(size=(7, H, W, channels)).astype(np.float32)
    sources = rng.random((9, H, W, channels)).astype(np.float32)
    n = 30
    li, si, alpha = rng.integers(0, 7, n), rng.integers(0, 9, n), rng.uniform(0.02, 0.3, n)
    # big shifts and zooms on both sides of 1 exercise the row-interval logic at every edge
    params = aug.draw_params(rng, n, AugmentConfig(zoom_min=0.7, zoom_max=1.4, shift=8.0))
    dest = rng.permutation(n)
    out = np.full((n, H * W * channels), np.nan, dtype=np.float32)
    k = T.merge_scale(T.image_max(lenses)[li], T.image_max(sources)[si], alpha)
    coef = aug.affine_coefficients(params, H, W)
    aug.render_merged(aug.flat(lenses), aug.flat(sources), li, si, k, coef, dest, out, H, W, channels, True)
    expected = aug.apply_affine(T.mock_lenses(lenses[li], sources[si], alpha), params)
    np.testing.assert_array_equal(out[dest].reshape(expected.shape), expected)

    pool = T.prepare(rng.normal(size=(6, H, W, channels)))
    pi = rng.integers(0, 6, n)
    out[:] = np.nan
    aug.render_pool(aug.flat(pool), pi, coef, dest, out, H, W, channels, True)
    np.testing.assert_array_equal(out[dest].reshape(expected.shape), aug.apply_affine(pool[pi], params))

    out[:] = np.nan  # augmentation off: the prepared images themselves
    aug.render_merged(aug.flat(lenses), aug.flat(sources), li, si, k, coef, dest, out, H, W, channels, False)
    np.testing.assert_array_equal(out[dest].reshape(expected.shape), T.mock_lenses(lenses[li], sources[si], alpha))


def test_fixed_point_rows_match_float_positions():
    """The exact integer map agrees with the real-valued inverse map away from rounding ties."""
    rng = np.random.default_rng(6)
    params = aug.draw_params(rng, 20, AugmentConfig())
    iy, ix, valid = aug.source_indices(aug.affine_coefficients(params, H, W), H, W)
    r, c = np.mgrid[:H, :W].astype(float)
    cy = cx = (H - 1) / 2
    for i in range(20):
        cs, sn, z = np.cos(params.theta[i]), np.sin(params.theta[i]), params.zoom[i]
        cf = (W - 1 - c) if params.flip[i] else c
        dy, dx = r - cy - params.shift_y[i], cf - cx - params.shift_x[i]
        y = cy + (cs * dy + sn * dx) / z
        x = cx + (-sn * dy + cs * dx) / z
        clear = (np.abs(y + 0.5 - np.round(y + 0.5)) > 1e-6) & (np.abs(x + 0.5 - np.round(x + 0.5)) > 1e-6)
        inside = (np.floor(y + 0.5) >= 0) & (np.floor(y + 0.5) < H) & (np.floor(x + 0.5) >= 0) & (np.floor(x + 0.5) < W)
        assert np.array_equal(valid[i][clear], inside[clear])
        ok = clear & inside
        assert np.array_equal(iy[i][ok], np.floor(y + 0.5)[ok]) and np.array_equal(ix[i][ok], np.floor(x + 0.5)[ok])
