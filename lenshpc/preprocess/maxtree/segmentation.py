"""Max-Tree segmentation of lens cutouts (thesis seed 002, Sec 4.7 and 5.5), on higra.

The pipeline, for each image (all steps vectorised over pixels; the only Python loop is over
images, for the tree itself):

1. **Intensity plane.**  The (normalised) image; with several bands, their mean.  It is
   min–max normalised again (thesis Eq 4.1: a no-op for an image already in [0, 1] with
   min 0 and max 1) and converted to 8 bits by **rounding**, ``rint(255·x)`` (truncation
   would change about half the pixels by one grey level and with it the tree).
2. **Smoothing** (``smoothing``): the 5×5 binomial Gaussian ``[1,4,6,4,1]/16`` applied
   separably with reflect-101 borders and rounding to uint8 — exactly OpenCV's
   ``GaussianBlur(u8, (5, 5), 0)``.  The thesis code built the tree on the *unsmoothed*
   image by mistake; here smoothing is actually applied (``smoothing: false`` reproduces
   the thesis's behaviour).
3. **Max-Tree** of the smoothed 8-bit image, 8-connectivity (higra; the grid graph is built
   once per image shape).
4. **Attribute filter** (thesis's binary connected operators).  A node is *kept* when
   ``area ≥ min_area``, ``min_extent ≤ dx ≤ max_extent``, ``min_extent ≤ dy ≤ max_extent``
   and ``area / (dx·dy) ≥ min_rectangularity`` (``dx``, ``dy``: bounding-box width and
   height in pixels).  The root is always kept (it spans the image, so fails ``dx ≤ 60``
   on the thesis's 101 px cutouts).  **Direct rule**: every pixel takes the grey level of
   its closest kept ancestor node (iamxt/siamxt ``contractDR``, the thesis toolbox); a
   removed blob therefore sinks to the level of the component that surrounds it.
5. **Distance decay**: the filtered image times ``exp(−d / decay)``, ``d`` the Euclidean
   distance in pixels from the image centre ``((H−1)/2, (W−1)/2)`` (thesis Eq 4.3).
6. **Flood fill** (``flood``), tolerance ``flood_tolerance`` grey levels, 8-connected,
   fixed range around the seed's value (``|w − w[seed]| ≤ tolerance``, as
   ``skimage.segmentation.flood``):

   * ``corner`` (default, thesis fidelity): seed at pixel ``(2, 2)`` as in the thesis code;
     the flooded region is the *background* and is erased.
   * ``centre``: seed at the centre pixel ``(H//2, W//2)``; only the flooded region is kept.
   * ``off``: no flood; every pixel whose filtered level is above the root's (i.e. belongs
     to a kept non-root component) is kept.

7. **Output**: the ORIGINAL input pixels (float, all bands, the same normalisation as the
   plain experiment's images) where the mask is true, and 0 elsewhere.  This is what the
   thesis code did (it zeroed the flooded pixels of the original image): the tree, the decay
   and the flood only decide *which* pixels survive, never their values.

On synthetic lenses the ``corner`` flood erases most faint arc pixels (the thesis itself
concluded that segmentation can remove lensing features); the montage written by
``lenshpc maxtree`` shows what it removes.

Notes
-----
higra is told to use one thread (:func:`init_worker`); parallelism is over images, across
processes or MPI ranks (``lenshpc.preprocess.maxtree.shards``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from lenshpc.config import MaxTreeConfig
from lenshpc.data.format import nonfinite_rows
from lenshpc.errors import DataError

#: OpenCV's 5-tap Gaussian for sigma=0 (``cv2.getGaussianKernel(5, 0) * 16``).
BINOMIAL_5 = np.array([1, 4, 6, 4, 1], dtype=np.int32)
#: Flood seed of the thesis code (a pixel near the top-left corner).
CORNER_SEED = (2, 2)
#: 8-connectivity structuring element (scipy.ndimage).
EIGHT = np.ones((3, 3), dtype=bool)
#: Smallest image side the 5×5 kernel with reflect-101 borders supports.
MIN_SIDE = 5


# ---------------------------------------------------------------------- set-up
def init_worker() -> None:
    """Make higra single-threaded in this process (call once per worker process)."""
    import higra as hg

    hg.set_num_threads(1)


@functools.lru_cache(maxsize=16)
def _grid(shape: tuple[int, int]):
    """The 8-adjacency graph of a ``shape`` grid and its pixels' (row, column) numbers ``(H·W, 2)``."""
    import higra as hg

    graph = hg.get_8_adjacency_implicit_graph(shape)
    coords = np.indices(shape, dtype=np.int32).reshape(2, -1).T.copy()
    return graph, coords


@functools.lru_cache(maxsize=16)
def decay_weights(shape: tuple[int, int], decay: float) -> np.ndarray:
    """``exp(−d / decay)`` with ``d`` the distance from the centre ``((H−1)/2, (W−1)/2)``."""
    yy, xx = np.indices(shape, dtype=np.float64)
    d = np.hypot(yy - (shape[0] - 1) / 2.0, xx - (shape[1] - 1) / 2.0)
    weights = np.exp(-d / float(decay))
    weights.setflags(write=False)
    return weights


# ---------------------------------------------------------------------- validation
def _as_batch(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` view of ``images`` given as ``(H, W)`` (one image), ``(N, H, W)`` or ``(N, H, W, C)``."""
    arr = np.asarray(images)
    if arr.ndim == 2:
        return arr[None, :, :, None]
    if arr.ndim == 3:
        return arr[..., None]
    if arr.ndim == 4:
        return arr
    raise DataError(f"max-tree segmentation: expected images of shape (N, H, W, C), (N, H, W) or one (H, W) "
                    f"image, got an array of shape {arr.shape}")


def check_images(batch: np.ndarray, *, offset: int = 0, where: str = "input") -> None:
    """Raise :class:`DataError` naming the first bad image (index ``offset + i``) of ``batch``.

    ``batch`` is ``(N, H, W, C)``.  Bad: not real numbers, too small for the 5×5 kernel,
    or containing NaN/Inf.
    """
    if batch.dtype.kind not in "fiub":
        raise DataError(f"{where}: images must be real numbers, got dtype {batch.dtype}")
    _, h, w, _ = batch.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DataError(f"{where}: image {offset} has shape {batch.shape[1:]}; max-tree segmentation needs "
                        f"images of at least {MIN_SIDE}×{MIN_SIDE} pixels")
    bad = nonfinite_rows(batch) if batch.dtype.kind == "f" else []
    if len(bad):
        raise DataError(f"{where}: image {offset + int(bad[0])} contains NaN or Inf values "
                        f"({len(bad)} bad image(s) in this batch); fix or drop it before segmenting")


# ---------------------------------------------------------------------- steps
def intensity(batch: np.ndarray) -> np.ndarray:
    """The plane the tree is built on: the band mean of ``(N, H, W, C)``, float64 ``(N, H, W)``."""
    return batch.astype(np.float64).mean(axis=-1)


def to_uint8(planes: np.ndarray) -> np.ndarray:
    """Min–max normalise each ``(H, W)`` plane (Eq 4.1) and round to 8 bits: ``rint(255·x)``.

    A constant plane becomes all zeros.
    """
    planes = np.asarray(planes, dtype=np.float64)
    lo = planes.min(axis=(-2, -1), keepdims=True)
    span = planes.max(axis=(-2, -1), keepdims=True) - lo
    span[span == 0] = 1.0
    return np.rint(255.0 * ((planes - lo) / span)).astype(np.uint8)


def smooth_uint8(u8: np.ndarray) -> np.ndarray:
    """5×5 binomial Gaussian of 8-bit planes ``(..., H, W)``, bit-identical to ``cv2.GaussianBlur(u8, (5, 5), 0)``.

    Integer arithmetic: separable ``[1,4,6,4,1]`` correlation with reflect-101 borders
    (scipy ``mirror``), then ``(s + 128) >> 8`` (round half up of ``s / 256``).
    """
    s = u8.astype(np.int32)
    s = ndi.correlate1d(s, BINOMIAL_5, axis=-2, mode="mirror")
    s = ndi.correlate1d(s, BINOMIAL_5, axis=-1, mode="mirror")
    return ((s + 128) >> 8).astype(np.uint8)


def keep_nodes(area: np.ndarray, dx: np.ndarray, dy: np.ndarray, params: MaxTreeConfig) -> np.ndarray:
    """The attribute filter: True for nodes that pass every criterion of thesis Sec 4.7."""
    area = np.asarray(area, dtype=np.float64)
    dx = np.asarray(dx, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    return ((area >= params.min_area)
            & (dx >= params.min_extent) & (dx <= params.max_extent)
            & (dy >= params.min_extent) & (dy <= params.max_extent)
            & (area / (dx * dy) >= params.min_rectangularity))


def tree_filter(u8: np.ndarray, params: MaxTreeConfig) -> np.ndarray:
    """Max-Tree attribute filter of one 8-bit ``(H, W)`` plane with the direct rule → uint8 ``(H, W)``.

    Every pixel takes the level of its closest kept ancestor; the root is always kept.
    """
    import higra as hg

    shape = tuple(int(s) for s in u8.shape)
    graph, coords = _grid(shape)
    tree, altitudes = hg.component_tree_max_tree(graph, u8)
    area = hg.attribute_area(tree)
    # Bounding boxes: min and max of the pixels' (row, col) over each node's sub-tree.
    low = hg.accumulate_sequential(tree, coords, hg.Accumulators.min)
    high = hg.accumulate_sequential(tree, coords, hg.Accumulators.max)
    dy, dx = (high - low + 1).T
    keep = keep_nodes(area, dx, dy, params)
    keep[tree.root()] = True
    return hg.reconstruct_leaf_data(tree, altitudes, ~keep).reshape(shape).astype(np.uint8)


def flood_region(values: np.ndarray, seed: tuple[int, int], tolerance: float) -> np.ndarray:
    """Pixels 8-connected to ``seed`` whose value lies within ``[v − tol, v + tol]``, ``v = values[seed]``.

    Same semantics as ``skimage.segmentation.flood(values, seed, connectivity=2,
    tolerance=tol)``, computed with one ``scipy.ndimage.label`` call.
    """
    v = values[seed]
    within = (values >= v - tolerance) & (values <= v + tolerance)
    labels, _ = ndi.label(within, structure=EIGHT)
    return labels == labels[seed]


def flood_seed(shape: tuple[int, int], mode: str) -> tuple[int, int]:
    """The flood's seed pixel for ``mode`` (``corner``: the thesis's (2, 2); ``centre``: (H//2, W//2))."""
    if mode == "corner":
        return (min(CORNER_SEED[0], shape[0] - 1), min(CORNER_SEED[1], shape[1] - 1))
    return (shape[0] // 2, shape[1] // 2)


# ---------------------------------------------------------------------- pipeline
@dataclass
class Steps:
    """Every intermediate of one batch (``(N, H, W)`` unless noted), for figures and tests.

    Attributes
    ----------
    u8, smoothed : uint8
        The 8-bit plane before and after the 5×5 Gaussian (``smoothed is u8`` when off).
    filtered : uint8
        The tree-filtered plane (direct rule).
    weighted : float64
        ``filtered · exp(−d / decay)``.
    tree_mask : bool
        Pixels above the root level after filtering (what the tree alone keeps).
    flooded : bool
        The flood's region (all False when ``flood = off``).
    mask : bool
        The final mask applied to the original pixels.
    output : float32 ``(N, H, W, C)``
        The segmented images.
    """

    u8: np.ndarray
    smoothed: np.ndarray
    filtered: np.ndarray
    weighted: np.ndarray
    tree_mask: np.ndarray
    flooded: np.ndarray
    mask: np.ndarray
    output: np.ndarray


def segment_steps(images: np.ndarray, params: MaxTreeConfig | None = None, *, offset: int = 0,
                  where: str = "input") -> Steps:
    """Run the whole pipeline on a batch and return every intermediate (see :class:`Steps`).

    Parameters
    ----------
    images : ndarray
        ``(N, H, W, C)``, ``(N, H, W)`` or one ``(H, W)`` image, normalised.
    params : MaxTreeConfig, optional
        Filter parameters (``preprocess.maxtree`` of the config); defaults are the thesis's.
    offset, where : int, str
        Used only in error messages: index of the first image and the array's name.

    Raises
    ------
    DataError
        When an image has NaN/Inf values or a wrong shape (the message gives its index).
    """
    params = params or MaxTreeConfig()
    batch = _as_batch(images)
    check_images(batch, offset=offset, where=where)
    n, h, w, _ = batch.shape
    shape = (h, w)
    u8 = to_uint8(intensity(batch))
    smoothed = smooth_uint8(u8) if params.smoothing else u8
    filtered = np.empty_like(smoothed)
    for i in range(n):  # the tree is per image; everything else is whole-batch array code
        filtered[i] = tree_filter(smoothed[i], params)
    root_level = filtered.reshape(n, -1).min(axis=1)[:, None, None]
    tree_mask = filtered > root_level
    weighted = filtered * decay_weights(shape, params.decay)
    flooded = np.zeros((n, h, w), dtype=bool)
    if params.flood == "off":
        mask = tree_mask
    else:
        seed = flood_seed(shape, params.flood)
        for i in range(n):
            flooded[i] = flood_region(weighted[i], seed, float(params.flood_tolerance))
        mask = ~flooded if params.flood == "corner" else flooded
    output = np.where(mask[..., None], batch, 0).astype(np.float32)
    return Steps(u8, smoothed, filtered, weighted, tree_mask, flooded, mask, output)


def segment(images: np.ndarray, params: MaxTreeConfig | None = None, *, offset: int = 0,
            where: str = "input") -> np.ndarray:
    """Segment images: the original pixels inside the Max-Tree mask, 0 outside (float32).

    The output has the input's shape: ``(H, W)``, ``(N, H, W)`` or ``(N, H, W, C)``.  See the
    module docstring for the exact pipeline.
    """
    out = segment_steps(images, params, offset=offset, where=where).output
    return out.reshape(np.shape(images))
