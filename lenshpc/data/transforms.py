"""Pixel transforms of the thesis (seed 002, Sec 4.2): the ONE place for their formulas.

These are the numpy reference versions, vectorised over a batch ``(n, H, W, C)``.  The
compiled chunk kernels in :mod:`lenshpc.data.augment` evaluate the very same expressions,
in the same order and in float32, and ``tests/test_augment.py`` checks that both paths give
bit-identical pixels.  Change a formula here and the kernel together.

Order of operations for a training image
----------------------------------------
positive (mock lens)
    ``m = l + s · k`` with ``k = max(l) · α / max(s)``  (Eq 4.2, :func:`merge`), then
    per-image min-max normalisation (Eq 4.1, :func:`normalise`), then the square-root
    stretch (:func:`sqrt_stretch`).
negative, or any image of a labelled dataset
    :func:`normalise` then :func:`sqrt_stretch` — the same two steps as a mock lens
    after merging, so positives and negatives share one intensity scale, ``[0, 1]``.

Maxima and minima are taken per image over all pixels *and* channels (one scale per
image keeps the colours of multi-band cutouts).  Degenerate inputs are defined, not NaN:
a constant image normalises to all zeros, and a source with ``max(s) ≤ 0`` (blank) gets
``k = 0``, i.e. the mock lens is the bare lens.
"""

from __future__ import annotations

import numpy as np

_F32 = np.float32


def image_max(images: np.ndarray) -> np.ndarray:
    """Per-image maximum over pixels and channels, float32 ``(n,)``."""
    images = np.asarray(images, dtype=_F32)
    return images.reshape(len(images), -1).max(axis=1)


def merge_scale(max_l: np.ndarray, max_s: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Source multiplier ``k = max(l) · α / max(s)`` of Eq 4.2, float32 ``(n,)``.

    Evaluated in float64 and rounded once to float32; ``k = 0`` where ``max(s) ≤ 0``.
    Both the numpy reference and the compiled kernel take ``k`` from here.
    """
    max_l = np.asarray(max_l, dtype=np.float64)
    max_s = np.asarray(max_s, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    safe = np.where(max_s > 0, max_s, 1.0)
    return np.where(max_s > 0, max_l * alpha / safe, 0.0).astype(_F32)


def merge(lenses: np.ndarray, sources: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Mock lenses ``m = l + s · max(l) · α / max(s)`` (thesis Eq 4.2).

    Parameters
    ----------
    lenses, sources : ndarray ``(n, H, W, C)``
        Raw (un-normalised) lens and lensed-source images, paired row by row.
    alpha : ndarray ``(n,)``
        Source peak brightness as a fraction of the lens peak (thesis: U(0.02, 0.30)).

    Returns
    -------
    ndarray ``(n, H, W, C)`` float32
    """
    lenses = np.asarray(lenses, dtype=_F32)
    sources = np.asarray(sources, dtype=_F32)
    k = merge_scale(image_max(lenses), image_max(sources), alpha)
    # float32 multiply, then float32 add: exactly what the kernel does (no fused multiply-add).
    return lenses + sources * k[:, None, None, None]


def normalise(images: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation ``(x − min x) / (max x − min x)`` (thesis Eq 4.1).

    Returns float32 in ``[0, 1]``; a constant image becomes all zeros.
    """
    images = np.asarray(images, dtype=_F32)
    flat = images.reshape(len(images), -1)
    lo = flat.min(axis=1)
    span = flat.max(axis=1) - lo
    safe = np.where(span > 0, span, _F32(1)).astype(_F32)
    out = (images - lo[:, None, None, None]) / safe[:, None, None, None]
    out[span <= 0] = 0
    return out


def sqrt_stretch(images: np.ndarray) -> np.ndarray:
    """Square-root stretch of normalised images (more contrast for faint arcs), float32."""
    return np.sqrt(np.asarray(images, dtype=_F32))


def prepare(images: np.ndarray) -> np.ndarray:
    """Normalise then √-stretch: a negative or labelled image ready for augmentation."""
    return sqrt_stretch(normalise(images))


def mock_lenses(lenses: np.ndarray, sources: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Merge, normalise and √-stretch: mock lenses ready for augmentation (reference path)."""
    return sqrt_stretch(normalise(merge(lenses, sources, alpha)))
