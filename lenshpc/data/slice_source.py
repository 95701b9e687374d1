"""Class-balanced chunks of 21-cm slices (the data side of the ``cosmo21cm`` and ``autoencode`` tasks).

The source reads a ``slices21cm`` dataset (:mod:`lenshpc.data.cosmo21cm.slices`): this rank's share of the
**train** split is held in RAM, normalised once (``task.params.normalisation``, :data:`NORMALISATIONS`); a
training chunk draws the same number of slices from every class (with replacement; the remainder classes drawn
at random) and augments each with transformations that keep the physics of a periodic box slice:

``roll``    a periodic shift by ``(dy, dx)`` uniform over the whole slice (21cmFAST boxes are periodic);
``rot90``   a rotation by ``k·90°``, ``k ∈ {0, 1, 2, 3}`` (the box is statistically isotropic);
``flip``    a mirror image with probability ½.

Each is a permutation of the pixels (no interpolation).  With ``crop`` the model sees a ``crop × crop``
window: training chunks take it at a random periodic position (after the roll), validation and test at the
origin.

Determinism: chunk ``k`` of rank ``r`` of ``s`` uses only ``rng_for(seed, "chunk", k, r, s)``, as the lens
chunk engine.  The validation and test sets are the dataset's val/test splits (by realisation), un-augmented,
identical on every rank; ``data.val_size`` / ``data.test_size`` (when smaller than the split; 0 = all) take a
seeded class-stratified subset.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numba
import numpy as np

from lenshpc.config import DataConfig
from lenshpc.data.chunks import StreamingSource, per_rank_chunk_size
from lenshpc.errors import ConfigError, DataError
from lenshpc.utils import rng_for

#: Normalisations by name → what they do (one list: the task's parameter check reads it).
NORMALISATIONS = {"global": "divide by task.params.mk_scale (mK)", "standardise": "per-slice zero mean, unit variance",
                  "none": "raw mK"}
#: Augmentations a chunk may apply (``task.params.augment``), in the order they are applied.
AUGMENTATIONS = ("roll", "rot90", "flip")
#: Floor on a slice's standard deviation when standardising (a uniform, fully ionised slice).
_STD_FLOOR = 1e-6


def normalise(images: np.ndarray, how: str, mk_scale: float) -> np.ndarray:
    """Normalise slices ``(n, H, W, 1)`` in place (see the module docstring) and return them."""
    if how == "global":
        images /= np.float32(mk_scale)
    elif how == "standardise":
        mean = images.mean(axis=(1, 2, 3), keepdims=True)
        std = images.std(axis=(1, 2, 3), keepdims=True)
        images -= mean
        images /= np.maximum(std, _STD_FLOOR)
    elif how != "none":
        raise ConfigError(f"task.params.normalisation = {how!r}; use one of {', '.join(NORMALISATIONS)}")
    return images


def draw_augmentation(rng: np.random.Generator, n: int, h: int, w: int, ops, crop: int | None):
    """The output side ``(side_h, side_w)`` and per-slice ``(dy, dx, k, flip)``; the draw order is part of the
    contract (roll offsets, rot90 ``k``, flips — each drawn even when its operation is off, so switching one off does
    not change the others' draws)."""
    side_h, side_w = (crop, crop) if crop else (h, w)
    dy = rng.integers(0, h, n)
    dx = rng.integers(0, w, n)
    k = rng.integers(0, 4, n)
    flip = rng.random(n) < 0.5
    if "roll" not in ops:
        dy[:] = 0
        dx[:] = 0
    if "rot90" not in ops or side_h != side_w:
        k[:] = 0
    if "flip" not in ops:
        flip[:] = False
    return (side_h, side_w), (dy, dx, k, flip)


@numba.njit(nogil=True, cache=True)
def render_slices(pool, rows, dy, dx, k, flip, out):
    """``out[i] = flip(rot90(periodic window of pool[rows[i]] at (dy, dx), k))`` for every ``i`` (compiled).

    The same pixels as :func:`augment_batch_reference` (``np.rot90`` counter-clockwise, then a left-right flip).
    The periodic wrap is resolved once per image into a row and a column table (no modulo per pixel).
    """
    n, side_h, side_w, channels = out.shape
    height, width = pool.shape[1], pool.shape[2]
    last = side_h - 1
    ys = np.empty(max(side_h, side_w), np.int64)
    xs = np.empty(max(side_h, side_w), np.int64)
    cols = np.empty(side_w, np.int64)
    for i in range(n):
        src = pool[rows[i]]
        for t in range(ys.shape[0]):
            ys[t] = (dy[i] + t) % height
            xs[t] = (dx[i] + t) % width
        for b in range(side_w):
            cols[b] = side_w - 1 - b if flip[i] else b
        q = k[i]
        for a in range(side_h):
            for b in range(side_w):
                bb = cols[b]
                if q == 0:
                    y, x = ys[a], xs[bb]
                elif q == 1:
                    y, x = ys[bb], xs[last - a]
                elif q == 2:
                    y, x = ys[last - a], xs[last - bb]
                else:
                    y, x = ys[last - bb], xs[a]
                for c in range(channels):
                    out[i, a, b, c] = src[y, x, c]
    return out


def augment_batch(images: np.ndarray, rows: np.ndarray, rng: np.random.Generator, ops, crop: int | None) -> np.ndarray:
    """Augmented (and cropped) copies of ``images[rows]`` ``(n, side, side, C)`` (the compiled kernel)."""
    _, h, w, c = images.shape
    (side_h, side_w), draws = draw_augmentation(rng, len(rows), h, w, ops, crop)
    out = np.empty((len(rows), side_h, side_w, c), dtype=np.float32)
    return render_slices(images, np.asarray(rows, np.int64), *draws, out)


def augment_batch_reference(images: np.ndarray, rows: np.ndarray, rng: np.random.Generator, ops,
                            crop: int | None) -> np.ndarray:
    """:func:`augment_batch` in plain numpy (one vectorised window gather, grouped ``np.rot90``, flips): the
    reference the kernel is tested against."""
    images = images[np.asarray(rows, np.int64)]
    n, h, w, _ = images.shape
    (side_h, side_w), (dy, dx, k, flip) = draw_augmentation(rng, n, h, w, ops, crop)
    win_rows = (dy[:, None] + np.arange(side_h)[None, :]) % h  # (n, side_h): a periodic window
    win_cols = (dx[:, None] + np.arange(side_w)[None, :]) % w
    out = images[np.arange(n)[:, None, None], win_rows[:, :, None], win_cols[:, None, :]]
    for quarter in (1, 2, 3):
        sel = k == quarter
        if sel.any():
            out[sel] = np.rot90(out[sel], quarter, axes=(1, 2))
    out[flip] = out[flip][:, :, ::-1]
    return np.ascontiguousarray(out, dtype=np.float32)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel before the first chunk."""
    one = np.zeros(1, np.int64)
    render_slices(np.zeros((1, 2, 2, 1), np.float32), one, one, one, one, np.zeros(1, np.bool_),
                  np.empty((1, 2, 2, 1), np.float32))


def crop_origin(images: np.ndarray, crop: int | None) -> np.ndarray:
    """The ``crop × crop`` window at the origin (validation/test; the whole slice without ``crop``)."""
    return np.ascontiguousarray(images[:, :crop, :crop] if crop else images)


def stratified_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``n`` rows (≤ len) with the classes in their proportions (seeded; all when ``n ≥ len``)."""
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels,
                               random_state=int(rng.integers(0, 2**31 - 1)))
    return np.sort(keep)


class SliceSource(StreamingSource):
    """Training chunks, the fixed validation set and the test set of a 21-cm slice dataset.

    Parameters
    ----------
    cfg : Config
        Uses ``cfg.seed``, ``cfg.data.path``, ``chunk_size``, ``val_size``, ``test_size``, ``prefetch``.
    options : mapping
        The task's ``task.params`` (defaults filled in): ``target``, ``normalisation``, ``mk_scale``, ``crop``,
        ``augment``, ``allow_slice_split``.
    rank, size : int
        This rank and the world size: each rank holds its strided share of the train split and makes
        ``chunk_size // size`` slices per chunk.
    labels : {"class", "image"}
        What ``y`` is: the class index of ``target`` (classification) or the input itself (autoencoder).

    Raises
    ------
    ConfigError
        ``data.normalisation`` set (slices use ``task.params.normalisation``), a bad crop or rank/size.
    DataError
        The dataset is missing or not a slice dataset, the target is absent, a class has no slice in a split
        (or in this rank's share), or the dataset is split by slice without ``allow_slice_split``.
    """

    def __init__(self, cfg, options: Mapping[str, Any], *, rank: int = 0, size: int = 1, labels: str = "class",
                 load_train: bool = True):
        from lenshpc.data.cosmo21cm.slices import open_slices

        self.per_rank_chunk_size = per_rank_chunk_size(cfg.data.chunk_size, rank, size, "slice")
        if cfg.data.normalisation != DataConfig.normalisation or cfg.data.normalisation_params:
            raise ConfigError(f"data.normalisation = {cfg.data.normalisation!r} (params "
                              f"{cfg.data.normalisation_params or {}}): the lens-image normalisations do not apply to "
                              "21-cm slices (a per-slice min-max would drop the mean mK signal); remove "
                              "data.normalisation and data.normalisation_params and set task.params.normalisation "
                              "to one of " + ", ".join(f"{k} ({v})" for k, v in NORMALISATIONS.items()))
        self.cfg, self.options = cfg, dict(options)
        self.rank, self.size, self.labels_kind = int(rank), int(size), labels
        self.path = str(cfg.data.path)
        if not self.path:
            raise ConfigError("no dataset given: set data.path to a 21-cm slice dataset "
                              "(make one with `lenshpc simulate21cm`)")
        self.target = str(self.options["target"])
        self.crop = int(self.options["crop"]) if self.options.get("crop") else None
        self.ops = tuple(self.options.get("augment") or ())
        with open_slices(self.path) as ds:
            self.split_by = ds.split_by
            self.warnings = list(ds.warnings)
            if ds.split_by != "realisation" and not self.options.get("allow_slice_split"):
                raise DataError(f"{self.path}: the dataset is split by {ds.split_by}, not by realisation: slices of "
                                "one box are in several splits and scores would be optimistic. Re-make it split by "
                                "realisation (the default of `lenshpc simulate21cm`), or set "
                                "task.params.allow_slice_split: true to use it anyway (the report then carries a "
                                "warning)")
            if ds.split_by != "realisation" and not self.warnings:
                self.warnings.append(f"split by {ds.split_by}: validation/test scores are optimistic")
            ds.labels(self.target, np.zeros(0, dtype=np.int64))  # DataError naming the targets the file has
            ds.check_classes(self.target)
            self.class_names = ds.class_names(self.target)
            self.n_classes = len(self.class_names)
            h, w, c = ds.image_shape
            self.content_sha256 = str(ds.attrs.get("content_sha256", ""))
            self.split_sizes = {s: int(len(ds.indices(s))) for s in ("train", "val", "test")}
        if self.crop is not None and not 1 <= self.crop <= min(h, w):
            raise ConfigError(f"task.params.crop = {self.crop}: must be between 1 and the slice side {min(h, w)} "
                              f"({self.path} holds {h}×{w} slices)")
        self.image_shape = (self.crop or h, self.crop or w, c)
        self._train: tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None = None
        self._lock, self._cache = threading.Lock(), {}  # the fixed sets (StreamingSource._cached)
        if load_train:
            self._load_train()

    # ------------------------------------------------------------------ loading
    def _read(self, split: str, rank: int = 0, size: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from lenshpc.data.cosmo21cm.slices import open_slices

        with open_slices(self.path) as ds:
            index = ds.indices(split, rank, size)
            images = normalise(ds.images(index), self.options["normalisation"], float(self.options["mk_scale"]))
            labels = ds.labels(self.target, index)
        return index, images, labels

    def _load_train(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        if self._train is None:
            _, images, labels = self._read("train", self.rank, self.size)
            by_class = [np.flatnonzero(labels == k) for k in range(self.n_classes)]
            empty = [self.class_names[k] for k, rows in enumerate(by_class) if len(rows) == 0]
            if empty:
                raise DataError(f"{self.path}: rank {self.rank} of {self.size} holds no train slices of class(es) "
                                f"{', '.join(empty)} ({len(labels)} slices in its share); use fewer ranks or a "
                                "larger dataset")
            self._train = (images, labels, by_class)
            warm_up()
        return self._train

    # ------------------------------------------------------------------ chunks
    def chunk(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's share of chunk ``index``: ``x (n, h, w, 1)`` float32 and ``y`` (class indices or ``x``)."""
        images, labels, by_class = self._load_train()
        rng = rng_for(self.cfg.seed, "chunk", int(index), self.rank, self.size)
        n, k = self.per_rank_chunk_size, self.n_classes
        counts = np.full(k, n // k, dtype=np.int64)
        counts[rng.choice(k, n % k, replace=False)] += 1
        classes = np.repeat(np.arange(k), counts)[rng.permutation(n)]
        rows = np.empty(n, dtype=np.int64)
        for c in range(k):  # with replacement within each class
            slots = np.flatnonzero(classes == c)
            rows[slots] = by_class[c][rng.integers(0, len(by_class[c]), len(slots))]
        x = augment_batch(images, rows, rng, self.ops, self.crop)
        return x, self._y(x, labels[rows])

    def _y(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return x if self.labels_kind == "image" else labels.astype(np.int64)

    # ------------------------------------------------------------------ fixed sets
    def _fixed_set(self, split: str, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        from lenshpc.data.cosmo21cm.slices import open_slices

        index, images, labels = self._read(split)
        keep = stratified_subset(labels, size, rng_for(self.cfg.seed, "subset", split))
        index, labels = index[keep], labels[keep]
        x = crop_origin(images[keep], self.crop)
        with open_slices(self.path) as ds:
            meta = {col: np.asarray(v) for col, v in ds.meta(index).items()}
        meta["index"] = index
        meta["label"] = labels.astype(np.int64)
        return x, self._y(x, labels), meta

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """The fixed validation set (val split, un-augmented; ``data.val_size`` a stratified subset when smaller)."""
        return self.validation_set()[:2]

    def validation_set(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """:meth:`validation` with its per-slice metadata (read once, cached like :meth:`test`)."""
        return self._cached("val", lambda: self._fixed_set("val", self.cfg.data.val_size))

    def test(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The test set (test split, un-augmented; ``data.test_size`` 0 = all) and its per-slice metadata."""
        return self._cached("test", lambda: self._fixed_set("test", self.cfg.data.test_size))

    def train_set(self, max_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """This rank's train share un-augmented (origin crop), for the sklearn baselines; ``max_rows`` a seeded
        stratified subset (0 = all)."""
        images, labels, _ = self._load_train()
        keep = stratified_subset(labels, max_rows, rng_for(self.cfg.seed, "subset", "train"))
        return crop_origin(images[keep], self.crop), labels[keep].astype(np.int64)

    def describe(self) -> dict:
        """What ``metrics.json`` records under ``data``: dataset, target, classes, normalisation, crop, augmentation,
        split and its warnings."""
        return {"data": {"dataset": self.path, "content_sha256": self.content_sha256, "target": self.target,
                         "classes": self.class_names, "n_classes": self.n_classes,
                         "normalisation": self.options["normalisation"], "mk_scale": float(self.options["mk_scale"]),
                         "crop": self.crop, "augment": list(self.ops), "split_by": self.split_by,
                         "split_sizes": self.split_sizes, "warnings": self.warnings,
                         "image_shape": list(self.image_shape)}}
