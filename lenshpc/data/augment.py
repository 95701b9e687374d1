"""Data augmentation (thesis Sec 4.2.1) and the fused compiled chunk kernels.

Augmentation
------------
Each image gets its own random affine map, drawn vectorised over the batch by
:func:`draw_params`:

* isotropic zoom ``z ~ U(zoom_min, zoom_max)`` (thesis: 1.00–1.05); ``z > 1`` magnifies;
* rotation ``θ ~ U(0, 2π)`` about the image centre ``((H−1)/2, (W−1)/2)``;
* shift ``(t_y, t_x) ~ U(−shift, shift)²`` pixels (continuous; thesis: 4);
* horizontal flip (mirror of the columns) with probability ``flip`` (thesis: 0.5),
  applied after the rotation/zoom/shift.

Output pixel ``(r, c)`` takes the value of the *nearest* input pixel to the inverse-mapped
position ``centre + R(−θ)·(flip(r, c) − centre − t)/z`` (no interpolation: every output value
is an input value).  Positions outside the input are filled with **0**, the darkest sky after
normalisation + √-stretch, so a rotated corner looks like empty sky, not a bright edge.  The map
is evaluated in exact fixed-point integers (:func:`affine_coefficients`), so the numpy reference
:func:`apply_affine` and the compiled kernels pick the same input pixels (``tests/test_augment.py``).

Kernels
-------
:func:`render_merged` does, per mock lens, in one compiled pass over two RAM-resident pools:
merge (Eq 4.2) → min/max → normalise (Eq 4.1) → √ → affine gather, straight into its row of the
chunk; :func:`render_pool` gathers already-prepared images (negatives, labelled data).  Both
release the GIL (``data.threads`` threads run them on disjoint rows).  Formulas are those of
:mod:`lenshpc.data.transforms`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from lenshpc.config import AugmentConfig

# fastmath without 'contract' (no fused multiply-add), 'reassoc' or 'arcp': those would change
# float32 results relative to the numpy reference.  'nnan'/'ninf' let LLVM vectorise the
# min/max reductions; inputs are finite by the dataset contract (format._check_images).
_FASTMATH = {"nnan", "ninf", "nsz"}


# ======================================================================= parameters
@dataclass(frozen=True)
class AffineParams:
    """Per-image augmentation parameters, each an array of length n."""

    zoom: np.ndarray  # float64, > 0
    theta: np.ndarray  # float64 radians
    shift_y: np.ndarray  # float64 pixels
    shift_x: np.ndarray  # float64 pixels
    flip: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.zoom)

    @classmethod
    def identity(cls, n: int) -> "AffineParams":
        one, zero = np.ones(n), np.zeros(n)
        return cls(one, zero, zero, zero.copy(), np.zeros(n, dtype=bool))

    def take(self, rows: np.ndarray | slice) -> "AffineParams":
        return AffineParams(self.zoom[rows], self.theta[rows], self.shift_y[rows], self.shift_x[rows], self.flip[rows])


def draw_params(rng: np.random.Generator, n: int, cfg: AugmentConfig) -> AffineParams:
    """Draw augmentation parameters for ``n`` images (vectorised; fixed draw order).

    With ``cfg.enabled = False`` the identity is returned (and no random numbers are used).
    The five arrays are always drawn in the same order, whatever the switches, so turning
    e.g. rotation off does not change the zooms of the same seed.
    """
    if not cfg.enabled:
        return AffineParams.identity(n)
    zoom = rng.uniform(cfg.zoom_min, cfg.zoom_max, n)
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    shift = rng.uniform(-cfg.shift, cfg.shift, (2, n))
    flip = rng.random(n) < cfg.flip
    if not cfg.rotation:
        theta = np.zeros(n)
    return AffineParams(zoom, theta, shift[0], shift[1], flip)


#: Fixed-point fraction bits of the inverse map: positions are int64 multiples of 2**-32 px.
FRACTION_BITS = 32
_ONE = float(1 << FRACTION_BITS)


def affine_coefficients(params: AffineParams, height: int, width: int) -> np.ndarray:
    """Fixed-point inverse-map coefficients ``(n, 6)`` int64: ``a_r, b_r, e_r, a_c, b_c, e_c``.

    Output pixel ``(r, c)`` reads input pixel ``(Y >> 32, X >> 32)`` with
    ``Y = a_r + b_r·r + e_r·c`` and ``X = a_c + b_c·r + e_c·c`` (int64, units of 2⁻³² px,
    the +½ of nearest-neighbour rounding folded into ``a``).  Integer arithmetic is exact,
    so the numpy reference and the kernel agree bit for bit, and the kernel can solve for
    each row's in-image column range exactly instead of testing every pixel.
    """
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    cos, sin = np.cos(params.theta), np.sin(params.theta)
    inv_z = 1.0 / np.asarray(params.zoom, dtype=np.float64)
    sign = np.where(params.flip, -1.0, 1.0)
    # Flipped column c' = (W−1) − c = sign·c + (W−1); then dx = c' − cx − t_x = sign·c + off_x.
    off_x = np.where(params.flip, width - 1.0, 0.0) - cx - params.shift_x
    off_y = -cy - params.shift_y
    coef = np.empty((len(params), 6), dtype=np.float64)
    coef[:, 0] = cy + (cos * off_y + sin * off_x) * inv_z + 0.5
    coef[:, 1] = cos * inv_z
    coef[:, 2] = sin * sign * inv_z
    coef[:, 3] = cx + (-sin * off_y + cos * off_x) * inv_z + 0.5
    coef[:, 4] = -sin * inv_z
    coef[:, 5] = cos * sign * inv_z
    return np.round(coef * _ONE).astype(np.int64)


# ======================================================================= numpy reference
def source_indices(coef: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest input pixel for every output pixel: ``(iy, ix, valid)``, each ``(n, H, W)``."""
    r = np.arange(height, dtype=np.int64)[None, :, None]
    c = np.arange(width, dtype=np.int64)[None, None, :]
    a_r, b_r, e_r, a_c, b_c, e_c = (coef[:, j, None, None] for j in range(6))
    iy = ((a_r + b_r * r) + e_r * c) >> FRACTION_BITS  # arithmetic shift = floor
    ix = ((a_c + b_c * r) + e_c * c) >> FRACTION_BITS
    valid = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
    return np.where(valid, iy, 0), np.where(valid, ix, 0), valid


def apply_affine(images: np.ndarray, params: AffineParams, block: int = 128) -> np.ndarray:
    """Vectorised numpy augmentation of a batch ``(n, H, W, C)`` (the reference path).

    One index map and one fancy-indexing gather per ``block`` images (blocks keep the
    int64 index maps cache-sized); out-of-image → 0.
    """
    images = np.asarray(images, dtype=np.float32)
    n, height, width, _ = images.shape
    coef = affine_coefficients(params, height, width)
    out = np.empty_like(images)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        iy, ix, valid = source_indices(coef[lo:hi], height, width)
        part = images[np.arange(lo, hi)[:, None, None], iy, ix]
        part[~valid] = 0
        out[lo:hi] = part
    return out


# ======================================================================= compiled kernels
@numba.njit(nogil=True, cache=True, inline="always")
def _columns_inside(a, e, limit, c0, c1):
    """Narrow ``[c0, c1)`` to the columns ``c`` with ``0 ≤ a + e·c < limit`` (exact integers)."""
    if e > 0:
        c0 = max(c0, -(a // e))  # ceil(−a / e)
        c1 = min(c1, -((a - limit) // e))  # ceil((limit − a) / e)
    elif e < 0:
        c0 = max(c0, (a - limit) // (-e) + 1)
        c1 = min(c1, a // (-e) + 1)
    elif a < 0 or a >= limit:
        c1 = c0
    return c0, c1


@numba.njit(nogil=True, cache=True, inline="always")
def _gather(src, cf, dst, height, width, channels):
    """Nearest-neighbour affine gather of one prepared image ``src`` into ``dst`` (both flat).

    Each output row's in-image columns form one interval (the position is linear in c),
    found exactly by :func:`_columns_inside`; the pixels outside it are set to 0 without
    any per-pixel test.
    """
    a_r, b_r, e_r, a_c, b_c, e_c = cf[0], cf[1], cf[2], cf[3], cf[4], cf[5]
    lim_y = np.int64(height) << FRACTION_BITS
    lim_x = np.int64(width) << FRACTION_BITS
    zero = np.float32(0.0)
    for r in range(height):
        row_y = a_r + b_r * r
        row_x = a_c + b_c * r
        c0, c1 = _columns_inside(row_y, e_r, lim_y, 0, width)
        c0, c1 = _columns_inside(row_x, e_c, lim_x, c0, c1)
        if c1 <= c0:
            c0 = width
            c1 = width
        base = r * width * channels
        for o in range(base, base + c0 * channels):
            dst[o] = zero
        if channels == 1:
            for c in range(c0, c1):
                dst[base + c] = src[((row_y + e_r * c) >> FRACTION_BITS) * width + ((row_x + e_c * c) >> FRACTION_BITS)]
        else:
            for c in range(c0, c1):
                q = (((row_y + e_r * c) >> FRACTION_BITS) * width + ((row_x + e_c * c) >> FRACTION_BITS)) * channels
                for ch in range(channels):
                    dst[base + c * channels + ch] = src[q + ch]
        for o in range(base + c1 * channels, base + width * channels):
            dst[o] = zero


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def render_merged(lenses, sources, lens_idx, src_idx, scale, coef, dest, out, height, width, channels, augment):
    """Fused merge → normalise → √ → augment for mock lenses (rows ``dest`` of ``out``).

    Parameters
    ----------
    lenses, sources : float32 ``(N, H·W·C)``
        Raw pools (flattened images).
    lens_idx, src_idx : int64 ``(n,)``
        Rows of the pools to pair.
    scale : float32 ``(n,)``
        Merge multipliers ``k`` from :func:`lenshpc.data.transforms.merge_scale`.
    coef : int64 ``(n, 6)``
        :func:`affine_coefficients`; ignored when ``augment`` is False.
    dest : int64 ``(n,)``
        Output rows.
    out : float32 ``(n_out, H·W·C)``
        The chunk, written in place.
    """
    npix = height * width * channels
    buf = np.empty(npix, dtype=np.float32)
    zero = np.float32(0.0)
    for i in range(lens_idx.shape[0]):
        lens = lenses[lens_idx[i]]
        src = sources[src_idx[i]]
        k = scale[i]
        dst = out[dest[i]]
        target = buf if augment else dst
        lo = np.float32(np.inf)
        hi = np.float32(-np.inf)
        for p in range(npix):  # Eq 4.2 and the extremes in one streaming (vectorised) pass
            v = lens[p] + src[p] * k
            target[p] = v
            lo = min(lo, v)
            hi = max(hi, v)
        span = hi - lo
        if span > zero:
            for p in range(npix):  # Eq 4.1 then √, vectorised: cheaper than per gathered pixel
                target[p] = np.sqrt((target[p] - lo) / span)
        else:
            target[:] = zero
        if augment:
            _gather(buf, coef[i], dst, height, width, channels)


@numba.njit(nogil=True, cache=True)
def render_pool(pool, idx, coef, dest, out, height, width, channels, augment):
    """Augment prepared images ``pool[idx]`` into rows ``dest`` of ``out`` (all flat float32)."""
    buf = np.empty(pool.shape[1], dtype=np.float32)
    for i in range(idx.shape[0]):
        dst = out[dest[i]]
        if augment:
            # Stage the source with a sequential copy first: the rotated gather's access
            # pattern defeats the hardware prefetcher and would wait on RAM line by line.
            buf[:] = pool[idx[i]]
            _gather(buf, coef[i], dst, height, width, channels)
        else:
            dst[:] = pool[idx[i]]


def warm_up() -> float:
    """Compile (or load from numba's cache) both kernels; return the seconds it took."""
    t0 = time.perf_counter()
    h = w = 3
    pool = np.ones((2, h * w), dtype=np.float32)
    idx = np.zeros(1, dtype=np.int64)
    coef = affine_coefficients(AffineParams.identity(1), h, w)
    out = np.empty((1, h * w), dtype=np.float32)
    for augment in (True, False):
        render_merged(pool, pool, idx, idx, np.ones(1, np.float32), coef, idx, out, h, w, 1, augment)
        render_pool(pool, idx, coef, idx, out, h, w, 1, augment)
    return time.perf_counter() - t0


def flat(images: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 ``(n, H·W·C)`` view (copy only when needed) for the kernels."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    return images.reshape(len(images), -1)


__all__ = [
    "AffineParams", "FRACTION_BITS", "draw_params", "affine_coefficients", "source_indices", "apply_affine",
    "render_merged", "render_pool", "warm_up", "flat",
]
