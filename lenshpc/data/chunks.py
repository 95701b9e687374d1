"""The chunk engine: fast, deterministic synthesis of training, validation and test data.

A *chunk* (thesis Sec 4.2) is ``data.chunk_size`` images, a fraction ``data.positive_fraction``
of them positives, shuffled, labels 1/0.  Population dataset: positives are mock lenses made on
the fly (a lens and a source drawn with replacement from the train split, merged with
``α ~ U(alpha_min, alpha_max)``, Eq 4.2), negatives are contaminants/LRGs.  Labelled dataset:
both classes are drawn from its train split.  Every image is normalised (``data.normalisation``)
and every training image augmented (:mod:`lenshpc.data.augment`).

Determinism: chunk ``k`` of rank ``r`` of ``s`` uses only ``rng_for(seed, "chunk", k, r, s)``, so a
resumed run replays exactly the chunks a fresh run draws, whatever the thread count.  Each rank
samples only its own shard of the train split.  The validation chunk and the test set (val/test
splits, never augmented) are the same on every call and every rank.

Speed: the train pools live in RAM as flat float32 arrays (negatives and labelled images prepared
once at load); two compiled, GIL-free kernels write a chunk straight into its preallocated output
(``benchmarks/chunks.py``, ``docs/benchmarks.md``).  A draw (:class:`MergeDraw`, :class:`PoolDraw`)
describes pre-augmentation images lazily: it renders itself (kernel) or materialises itself (numpy
reference); a new pool source (e.g. :mod:`lenshpc.data.segsource`) hands the engine pools to draw from.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from lenshpc.config import AugmentConfig, Config
from lenshpc.data import augment as aug
from lenshpc.data import normalise as norm
from lenshpc.data import transforms
from lenshpc.data.format import Dataset, check_finite, open_dataset
from lenshpc.errors import ConfigError, DataError
from lenshpc.utils import progress, rng_for

#: Rows read per contiguous HDF5 slab when loading a split (h5py point selections are slow).
_READ_BLOCK = 2048
#: Images normalised + stretched per numpy call when preparing a pool (bounds temporaries).
_PREPARE_BLOCK = 1024


# ======================================================================= pools and draws
@dataclass
class Pool:
    """Images held in RAM for drawing: flat float32 ``(N, H·W·C)``.

    ``index`` maps pool rows to rows of its dataset array; ``peak`` (per-image maximum) is set
    for raw pools used in merging, ``None`` for prepared (normalised) pools.
    """

    images: np.ndarray
    index: np.ndarray
    peak: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def _jobs(kernel, pools: tuple, key: np.ndarray, rows: tuple, out: np.ndarray, shape: tuple[int, int, int],
          augment: bool, parts: int) -> list:
    """Closures that each run ``kernel`` on a share of the per-image arrays ``rows``, taken in ascending
    ``key`` order (pool addresses: cache/prefetch friendly)."""
    order = np.argsort(key, kind="stable")
    rows = tuple(r[order] for r in rows)
    bounds = np.linspace(0, len(order), max(1, parts) + 1).astype(int)
    return [(lambda s=slice(a, b): kernel(*pools, *(r[s] for r in rows), out, *shape, augment))
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


@dataclass
class PoolDraw:
    """``len(rows)`` prepared images ``pool.images[rows]`` (pool rows, with repeats)."""

    pool: Pool
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def images(self, shape: tuple[int, int, int]) -> np.ndarray:
        """Pre-augmentation images ``(n, H, W, C)`` (numpy reference path)."""
        return self.pool.images[self.rows].reshape(len(self.rows), *shape)

    def render(self, coef: np.ndarray, dest: np.ndarray, out: np.ndarray, shape: tuple[int, int, int],
               augment: bool, parts: int = 1) -> list:
        """Closures that each render a share of the draw into rows ``dest`` of flat ``out``."""
        return _jobs(aug.render_pool, (self.pool.images,), self.rows, (self.rows, coef, dest), out, shape, augment,
                     parts)

    def meta(self) -> dict[str, np.ndarray]:
        return {"index": self.pool.index[self.rows]}


@dataclass
class MergeDraw:
    """Mock lenses: raw ``lenses`` row ``lens_rows[i]`` + ``sources`` row ``source_rows[i]`` at ``alpha[i]``."""

    lenses: Pool
    sources: Pool
    lens_rows: np.ndarray
    source_rows: np.ndarray
    alpha: np.ndarray
    #: The run's normaliser; one the fused kernel does not implement (``fused`` False): merge, normalise, augment.
    normaliser: norm.Normaliser

    def __len__(self) -> int:
        return len(self.lens_rows)

    def scale(self) -> np.ndarray:
        return transforms.merge_scale(self.lenses.peak[self.lens_rows], self.sources.peak[self.source_rows], self.alpha)

    def images(self, shape: tuple[int, int, int]) -> np.ndarray:
        n = len(self)
        lenses = self.lenses.images[self.lens_rows].reshape(n, *shape)
        sources = self.sources.images[self.source_rows].reshape(n, *shape)
        return self.normaliser(transforms.merge(lenses, sources, self.alpha))

    def render(self, coef: np.ndarray, dest: np.ndarray, out: np.ndarray, shape: tuple[int, int, int],
               augment: bool, parts: int = 1) -> list:
        if not self.normaliser.fused:  # the fused kernel knows only Eq 4.1 + √: materialise, then augment
            pool = Pool(aug.flat(self.images(shape)), np.arange(len(self), dtype=np.int64))
            return PoolDraw(pool, np.arange(len(self), dtype=np.int64)).render(coef, dest, out, shape, augment, parts)
        return _jobs(aug.render_merged, (self.lenses.images, self.sources.images), self.source_rows,  # the big pool
                     (self.lens_rows, self.source_rows, self.scale(), coef, dest), out, shape, augment, parts)

    def meta(self) -> dict[str, np.ndarray]:
        return {"alpha": self.alpha.astype(np.float64), "lens_index": self.lenses.index[self.lens_rows],
                "source_index": self.sources.index[self.source_rows]}


@dataclass
class MixedDraw:
    """Consecutive :class:`PoolDraw` s (the main negatives, then each extra negative set)."""

    parts: list

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def images(self, shape: tuple[int, int, int]) -> np.ndarray:
        return np.concatenate([p.images(shape) for p in self.parts])

    def render(self, coef: np.ndarray, dest: np.ndarray, out: np.ndarray, shape: tuple[int, int, int],
               augment: bool, parts: int = 1) -> list:
        ends = np.cumsum([0] + [len(p) for p in self.parts])
        return [job for p, a, b in zip(self.parts, ends[:-1], ends[1:]) if b > a
                for job in p.render(coef[a:b], dest[a:b], out, shape, augment, parts)]

    def meta(self) -> dict[str, np.ndarray]:
        return {"index": np.concatenate([p.meta()["index"] for p in self.parts])}


#: The image array of an extra negative set (a labelled lenshpc dataset, e.g. ``lenshpc mine`` output).
_EXTRA_ARRAY = "images"


def _extra_specs(cfg: Config, image_shape: tuple, check_files: bool = True) -> list[tuple[str, float]]:
    """``data.extra_negatives`` checked: ``[(path, fraction)]`` of existing sets of this image shape.

    ``check_files`` False (an engine for validation/test sets only, e.g. a scorer) checks only the config:
    the sets enter training chunks alone."""
    out = []
    for i, entry in enumerate(cfg.data.extra_negatives):
        where = f"data.extra_negatives[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"path", "fraction"} or "path" not in entry:
            raise ConfigError(f"{where} = {entry!r}: expected a mapping {{path: HARDNEG.h5, fraction: 0.25}}")
        fraction = entry.get("fraction", 0.25)
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction <= 1:
            raise ConfigError(f"{where}.fraction = {fraction!r}: a number in [0, 1] (share of each chunk's negatives)")
        path = str(entry["path"])
        if not check_files:
            out.append((path, float(fraction)))
            continue
        if not Path(path).is_file():
            raise DataError(f"{where}.path = {path}: no such file; make it with `lenshpc mine RANK_DIR --out {path}`")
        with open_dataset(path) as ds:
            if _EXTRA_ARRAY not in ds.names or tuple(ds.image_shape) != tuple(image_shape):
                raise DataError(f"{where}.path = {path}: needs an '{_EXTRA_ARRAY}' array of {tuple(image_shape)} "
                                f"cutouts (this run's shape), has {', '.join(ds.names)} of {tuple(ds.image_shape)}")
        out.append((path, float(fraction)))
    if sum(f for _, f in out) > 1:
        raise ConfigError(f"data.extra_negatives: fractions add up to {sum(f for _, f in out):g} > 1")
    return out


# ======================================================================= loading helpers
def read_rows(ds: Dataset, name: str, indices: np.ndarray, desc: str = "") -> np.ndarray:
    """Rows ``indices`` (sorted, unique) of array ``name`` as float32 ``(n, H, W, C)``.

    Reads contiguous slabs and picks the rows in RAM: for a shard that is a sizeable
    fraction of the array this is ~20× faster than an h5py point selection.
    """
    indices = np.asarray(indices, dtype=np.int64)
    shape = ds.image_shape
    out = np.empty((len(indices), *shape), dtype=np.float32)
    if len(indices) == 0:
        return out
    arr = ds._array(name)  # the h5py dataset: slab reads are not part of Dataset's public API
    starts = np.arange(indices[0], indices[-1] + 1, _READ_BLOCK)
    bar = progress(total=len(indices), desc=desc or f"load {name}", unit="img", disable=None if len(indices) > 20000 else True)
    for lo in starts:
        hi = lo + _READ_BLOCK
        a, b = np.searchsorted(indices, [lo, hi])
        if a == b:
            continue
        wanted = indices[a:b]
        if (b - a) * 8 < wanted[-1] + 1 - wanted[0]:  # sparse: a point read is cheaper than the slab
            out[a:b] = ds.read(name, wanted)
        else:
            slab = arr[int(wanted[0]) : int(wanted[-1]) + 1]
            out[a:b] = check_finite(slab[wanted - wanted[0]], ds.path, name, wanted)
        bar.update(b - a)
    bar.close()
    return out


def prepare_in_place(images: np.ndarray, normaliser: norm.Normaliser | None = None,
                     shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Normalise a flat float32 pool block by block (no full-size temporaries).

    Default: Eq 4.1 + √ (per image over all pixels and channels, so the flat layout serves);
    another ``normaliser`` sees the images in their ``shape`` ``(H, W, C)``.
    """
    n = len(images)
    for lo in range(0, n, _PREPARE_BLOCK):
        block = images[lo : lo + _PREPARE_BLOCK]
        if normaliser is None or normaliser.fused:
            block[...] = transforms.prepare(block[:, :, None, None]).reshape(block.shape)
        else:
            block[...] = normaliser(block.reshape(len(block), *shape)).reshape(block.shape)
    return images


def per_rank_chunk_size(chunk_size: int, rank: int, size: int, unit: str = "image") -> int:
    """``chunk_size // size`` (this rank's share of a chunk), after checking ``rank`` and ``size``."""
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"bad rank/size: rank={rank}, size={size} (need 0 ≤ rank < size)")
    if chunk_size // size < 2:
        raise ConfigError(f"data.chunk_size = {chunk_size} leaves {chunk_size // size} {unit}(s) per rank for {size} "
                          f"ranks; use at least {2 * size}")
    return chunk_size // size


def _pick(rng: np.random.Generator, size: int, n: int, replace: bool) -> np.ndarray:
    """``n`` rows of a pool of ``size``: uniform with replacement, or a random subset without."""
    if replace:
        return rng.integers(0, size, n, dtype=np.int64)
    return rng.permutation(size)[:n].astype(np.int64)


def prefetched(make, start: int, stop: int, prefetch: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(index, *make(index))`` for ``index in range(start, stop)``, made ahead in a thread.

    ``prefetch`` chunks are made ahead of the consumer (0 = synchronous); an exception in the
    producer is re-raised in the consumer, and closing the generator stops the producer.  Shared by
    every chunk source (:class:`ChunkEngine`, :class:`lenshpc.data.slice_source.SliceSource`).
    """
    if prefetch <= 0:
        for index in range(start, stop):
            yield (index, *make(index))
        return
    executor = ThreadPoolExecutor(1, thread_name_prefix="lenshpc-prefetch")
    try:
        # prefetch made and waiting + one in the making (a bounded queue and its producer)
        ahead = deque(executor.submit(make, index) for index in range(start, min(stop, start + prefetch + 1)))
        for index in range(start, stop):
            item = ahead.popleft().result()
            if index + prefetch + 1 < stop:
                ahead.append(executor.submit(make, index + prefetch + 1))
            yield (index, *item)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


class StreamingSource:
    """What every chunk source shares: :meth:`iter_chunks` over its ``chunk(index)``, fixed sets made once
    (:meth:`_cached`, over the subclass's ``_lock`` and ``_cache``), and ``with`` closing it."""

    def iter_chunks(self, start: int, stop: int,
                    prefetch: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(index, x, y)`` for chunks ``start … stop−1``, made ahead in a thread.

        Parameters
        ----------
        prefetch : int, optional
            Chunks made ahead of the consumer (default ``data.prefetch``; 0 = synchronous).
            Memory: each chunk is ``chunk_size/size · H·W·C · 4`` bytes.
        """
        prefetch = self.cfg.data.prefetch if prefetch is None else int(prefetch)
        return prefetched(self.chunk, start, stop, prefetch)

    def _cached(self, key: str, make):
        """``make()`` once; its ``x`` and ``y`` are shared between callers, so read-only."""
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = make()
            for arr in cached[:2]:
                arr.setflags(write=False)
            with self._lock:
                cached = self._cache.setdefault(key, cached)
        return cached

    def close(self) -> None:
        """Stop background work (nothing runs between chunks here: ``iter_chunks`` stops its own thread)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ======================================================================= the engine
class ChunkEngine(StreamingSource):
    """Synthesises training chunks, the fixed validation chunk and the fixed test set.

    Parameters
    ----------
    cfg : Config
        Uses ``cfg.seed``, ``cfg.data`` and ``cfg.augment``.
    rank, size : int
        This process's rank and the world size (Horovod); each rank samples its own shard
        of the train split and makes ``chunk_size // size`` images per chunk.
    dataset_path : str, optional
        Overrides ``cfg.data.path``.
    load_train : bool
        Load this rank's train split now (default).  False defers it to the first chunk
        (``lenshpc maxtree`` only needs :meth:`validation` and :meth:`test`).
    normaliser : Normaliser, optional
        The pixel normalisation (:mod:`lenshpc.data.normalise`); default the config's
        ``data.normalisation``.  Scorers pass their run's own (:func:`lenshpc.train.rundir.run_normaliser`).

    ``data.extra_negatives`` (``[{path, fraction}]``, e.g. ``lenshpc mine`` output) replaces that
    fraction of each training chunk's negatives by images drawn from those sets (train chunks only;
    the validation and test sets stay those of ``data.path``).

    With ``data.preprocess: maxtree`` positives come from the segmented mock-lens pool and
    negatives, validation and test images from their segmented versions in
    ``data.segmented_path`` (:class:`lenshpc.data.segsource.SegmentedSource`).

    Raises
    ------
    ConfigError
        No dataset path, or a chunk too small for the world size.
    DataError
        Missing/unreadable file, inconsistent image shapes, or a split too small for this rank.

    Examples
    --------
    >>> engine = ChunkEngine(cfg, rank=0, size=1)
    >>> x, y = engine.chunk(17)          # (4096, 101, 101, 1) float32, (4096,) float32
    >>> for index, x, y in engine.iter_chunks(0, 100):   # synthesised ahead in the background
    ...     model.train_on_batch(x, y)
    """

    def __init__(self, cfg: Config, *, rank: int = 0, size: int = 1, dataset_path: str | None = None,
                 load_train: bool = True, normaliser: norm.Normaliser | None = None):
        self.per_rank_chunk_size = per_rank_chunk_size(cfg.data.chunk_size, rank, size)
        self.cfg = cfg
        self.rank, self.size = int(rank), int(size)
        self.path = str(dataset_path or cfg.data.path)
        if not self.path:
            raise ConfigError("no dataset given: set data.path in the config (or --set data.path=DATA.h5); "
                              "make one with `lenshpc simulate` or `lenshpc stack`")
        self._segmented = None
        if cfg.data.preprocess == "maxtree":
            from lenshpc.data.segsource import SegmentedSource

            self._segmented = SegmentedSource(cfg, self.path)
        with open_dataset(self.path) as ds:
            self.kind: str = ds.kind
            self.image_shape: tuple[int, int, int] = tuple(int(v) for v in ds.image_shape)  # type: ignore[assignment]
            shapes = {name: tuple(ds._array(name).shape[1:]) for name in ds.names}
        if len(set(shapes.values())) > 1:
            raise DataError(f"{self.path}: image arrays have different shapes {shapes}; mock lenses need lenses, "
                            "sources and negatives of one shape (re-make the dataset)")
        if cfg.data.preprocess == "maxtree" and cfg.data.normalisation != "minmax_sqrt":
            raise ConfigError(f"data.normalisation = {cfg.data.normalisation!r} with data.preprocess = maxtree: "
                              "segmented inputs are made with the thesis's min-max + sqrt; use one or the other")
        self.normaliser = normaliser if normaliser is not None else norm.for_config(cfg, self.image_shape)
        self._extra = _extra_specs(cfg, self.image_shape, check_files=load_train)
        self._pools: dict[str, dict[str, Pool]] = {}
        self._load_lock = threading.Lock()  # each split loads once, even when asked from two threads
        if load_train:
            self._load_pools("train", shard=True)
            aug.warm_up()
        self._executor: ThreadPoolExecutor | None = None
        self._cache: dict[str, tuple] = {}
        self._buffers: list[np.ndarray] = []  # recycled chunk outputs (see _output_buffer)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def _load_pools(self, split: str, shard: bool) -> dict[str, Pool]:
        """Read ``split`` into RAM (this rank's shard when ``shard``) and keep it as pools.

        Population: raw ``lenses`` and ``sources`` (with per-image peaks, for merging) and
        prepared ``negatives``.  Labelled: prepared ``positives`` and ``negatives``.
        """
        with self._load_lock:
            if split not in self._pools:
                self._pools[split] = self._read_pools(split, shard)
            return self._pools[split]

    def _read_pools(self, split: str, shard: bool) -> dict[str, Pool]:
        rank, size = (self.rank, self.size) if shard else (0, 1)
        pools: dict[str, Pool] = {}
        with open_dataset(self.path) as ds:
            if self._segmented is not None and split == "train":  # segmented "positives" + "negatives"
                pools = self._segmented.train_pools(ds, rank, size, Pool)
            elif ds.kind == "population":
                for name in ("lenses", "sources", "negatives"):
                    index = self._indices(ds, name, split, rank, size)
                    images = read_rows(ds, name, index, f"load {split} {name}").reshape(len(index), -1)
                    if name == "negatives":
                        pools[name] = Pool(prepare_in_place(images, self.normaliser, self.image_shape), index)
                    else:
                        pools[name] = Pool(images, index, transforms.image_max(images))
            else:
                index = self._indices(ds, "images", split, rank, size)
                labels = ds.labels(index).astype(bool)
                images = prepare_in_place(read_rows(ds, "images", index, f"load {split} images").reshape(len(index), -1),
                                          self.normaliser, self.image_shape)
                for name, mask in (("positives", labels), ("negatives", ~labels)):
                    if not mask.any():
                        where = f" of rank {rank}/{size}" if size > 1 else ""
                        raise DataError(f"{self.path}: the {split} split{where} has no "
                                        f"{'positive' if name == 'positives' else 'negative'} images "
                                        f"({len(index)} images in all); a labelled dataset needs both classes "
                                        "in every split (re-split it or use fewer ranks)")
                    pools[name] = Pool(np.ascontiguousarray(images[mask]), index[mask])
        if split == "train":
            for i, (path, _fraction) in enumerate(self._extra):
                with open_dataset(path) as extra:
                    index = np.sort(extra.shard(_EXTRA_ARRAY, "all", rank, size))
                    if len(index) == 0:
                        raise DataError(f"{path} (data.extra_negatives[{i}]): rank {rank} of {size} gets no images "
                                        f"({extra.count(_EXTRA_ARRAY)} in all); mine more or use fewer ranks")
                    images = read_rows(extra, _EXTRA_ARRAY, index, f"load {path}").reshape(len(index), -1)
                pools[f"extra{i}"] = Pool(prepare_in_place(images, self.normaliser, self.image_shape), index)
        return pools

    def _indices(self, ds: Dataset, name: str, split: str, rank: int, size: int) -> np.ndarray:
        index = np.sort(ds.shard(name, split, rank, size))
        if len(index) == 0:
            total = len(ds.split(name, split))
            who = f"rank {rank} of {size} gets" if size > 1 else "there are"
            raise DataError(f"{self.path}: {who} no '{name}' images in the {split} split ({total} in the split); "
                            "use a larger dataset" + (" or fewer ranks" if size > 1 else ""))
        return index

    # ------------------------------------------------------------------ the seam
    def _draw_positives(self, rng: np.random.Generator, n: int, split: str = "train",
                        replace: bool = True) -> MergeDraw | PoolDraw:
        """``n`` positives (pre-augmentation) from ``split``; lens/source draws with replacement."""
        pools = self._load_pools(split, shard=split == "train")
        if "positives" in pools:  # labelled dataset, or the Max-Tree segmented pool
            pool = pools["positives"]
            return PoolDraw(pool, _pick(rng, len(pool), n, replace or n > len(pool)))
        lenses, sources = pools["lenses"], pools["sources"]
        lens_rows = _pick(rng, len(lenses), n, replace or n > len(lenses))
        source_rows = _pick(rng, len(sources), n, replace or n > len(sources))
        alpha = rng.uniform(self.cfg.data.alpha_min, self.cfg.data.alpha_max, n)
        return MergeDraw(lenses, sources, lens_rows, source_rows, alpha, self.normaliser)

    def _draw_negatives(self, rng: np.random.Generator, n: int, split: str = "train",
                        replace: bool = True) -> PoolDraw:
        """``n`` negatives (pre-augmentation) from ``split``."""
        pools = self._load_pools(split, shard=split == "train")
        pool = pools["negatives"]
        if not replace and n > len(pool):
            raise DataError(f"{self.path}: asked for {n} distinct negatives from the {split} split, which has "
                            f"{len(pool)}; lower data.{'test_size' if split == 'test' else 'val_size'}")
        if split != "train" or not self._extra:
            return PoolDraw(pool, _pick(rng, len(pool), n, replace))
        counts = [int(round(n * fraction)) for _, fraction in self._extra]
        parts = [PoolDraw(pool, _pick(rng, len(pool), n - sum(counts), replace))]
        parts += [PoolDraw(pools[f"extra{i}"], _pick(rng, len(pools[f"extra{i}"]), k, True))
                  for i, k in enumerate(counts)]
        return MixedDraw(parts)

    # ------------------------------------------------------------------ synthesis
    def _assemble(self, rng: np.random.Generator, n_pos: int, n_neg: int, split: str,
                  augment: AugmentConfig | None = None, replace: tuple[bool, bool] = (True, True),
                  reference: bool = False):
        """Draw, shuffle and render one batch; ``augment`` None: a fixed set (un-augmented, in an array of its own).

        ``replace``: positives, negatives drawn with replacement. The order of random draws is part of the contract.
        """
        pos = self._draw_positives(rng, n_pos, split, replace[0])
        neg = self._draw_negatives(rng, n_neg, split, replace[1])
        n = n_pos + n_neg
        perm = rng.permutation(n)
        params = aug.AffineParams.identity(n) if augment is None else aug.draw_params(rng, n, augment)
        h, w, c = self.image_shape
        y = np.zeros(n, dtype=np.float32)
        y[perm[:n_pos]] = 1.0
        if reference:  # the numpy reference path: transforms + vectorised numpy augmentation
            x = np.empty((n, h, w, c), dtype=np.float32)
            x[perm[:n_pos]] = aug.apply_affine(pos.images(self.image_shape), params.take(slice(0, n_pos)))
            x[perm[n_pos:]] = aug.apply_affine(neg.images(self.image_shape), params.take(slice(n_pos, n)))
            return x, y, pos, neg, perm
        coef = aug.affine_coefficients(params, h, w)
        flat = np.empty((n, h * w * c), dtype=np.float32) if augment is None else self._output_buffer(n, h * w * c)
        threads, enabled = self.cfg.data.threads, augment is not None and augment.enabled
        jobs = (pos.render(coef[:n_pos], perm[:n_pos], flat, self.image_shape, enabled, threads)
                + neg.render(coef[n_pos:], perm[n_pos:], flat, self.image_shape, enabled, threads))
        if threads > 1:
            for future in [self._pool().submit(job) for job in jobs]:
                future.result()
        else:
            for job in jobs:
                job()
        return flat.reshape(n, h, w, c), y, pos, neg, perm

    def _output_buffer(self, n: int, npix: int) -> np.ndarray:
        """A ``(n, npix)`` float32 array for a chunk, recycled once nobody references it.

        A fresh 4096×101×101 chunk costs ~170 MB of page faults (the kernel zeroes every
        page) — a fifth of the synthesis time.  A buffer whose only references are this
        list is provably unused (numpy views keep their base alive), so it is reused.
        """
        with self._lock:
            for buf in self._buffers:
                # references: the list, the loop variable, getrefcount's argument
                if buf.shape == (n, npix) and sys.getrefcount(buf) <= 3:
                    return buf
            buf = np.empty((n, npix), dtype=np.float32)
            if len(self._buffers) < self.cfg.data.prefetch + 3:
                self._buffers.append(buf)
            return buf

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.cfg.data.threads, thread_name_prefix="lenshpc-chunk")
            return self._executor

    def _chunk_counts(self) -> tuple[int, int]:
        n = self.per_rank_chunk_size
        n_pos = int(round(n * self.cfg.data.positive_fraction))
        return n_pos, n - n_pos

    def chunk(self, index: int, reference: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """This rank's share of global chunk ``index``: ``x (n, H, W, C)``, ``y (n,)`` float32.

        Deterministic in ``(cfg.seed, index, rank, size)`` only; ``reference``: made by the numpy reference path.
        """
        rng = rng_for(self.cfg.seed, "chunk", int(index), self.rank, self.size)
        x, y, *_ = self._assemble(rng, *self._chunk_counts(), "train", self.cfg.augment, reference=reference)
        return x, y

    def reference_chunk(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``index`` made by the numpy reference path (slow; the kernels' oracle: equals :meth:`chunk`)."""
        return self.chunk(index, reference=True)

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """The fixed, balanced validation chunk (``data.val_size`` images, val split, no augmentation).

        Identical on every call and every rank (it uses the whole val split and a stream
        that depends on the seed only).  Where the val split has fewer negatives (or labelled
        positives) than needed they are drawn with replacement; otherwise each is used once.
        """
        return self._cached("validation", self._validation if self._segmented is None else self._segmented.validation)

    def _validation(self) -> tuple[np.ndarray, np.ndarray]:
        pools = self._load_pools("val", shard=False)
        n = self.cfg.data.val_size
        n_pos, n_neg = n // 2, n - n // 2
        replace = ("positives" in pools and n_pos > len(pools["positives"]), n_neg > len(pools["negatives"]))
        x, y, *_ = self._assemble(rng_for(self.cfg.seed, "validation"), n_pos, n_neg, "val", replace=replace)
        return x, y

    def test(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The fixed test set (test split, no augmentation) with per-image metadata.

        Size ``data.test_size``; 0 means as large as the split allows: for a population,
        ``2·min(test lenses, test negatives)`` (each lens and negative used once, each lens
        with a distinct source where there are enough); for a labelled dataset the whole
        test split.  Returns ``x``, ``y`` and ``meta``: ``label``, ``alpha``,
        ``lens_index``, ``source_index`` and every source metadata column for mock lenses;
        ``index``, ``kind`` and every negative metadata column for negatives (labelled:
        ``index`` and every image metadata column).  Every key has a value on every row:
        NaN for numbers, ``""`` for strings and −1 for indices where it does not apply.
        """
        return self._cached("test", self._test if self._segmented is None else self._segmented.test)

    def _test(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        pools = self._load_pools("test", shard=False)
        size = self.cfg.data.test_size
        if self.kind == "labelled" and size == 0:  # the whole split, every image once
            n_pos, n_neg = len(pools["positives"]), len(pools["negatives"])
        else:
            first = pools["lenses"] if self.kind == "population" else pools["positives"]
            n_pos = n_neg = (size // 2) if size else min(len(first), len(pools["negatives"]))
            # Mock lenses may reuse a lens (with another source); real images may not repeat.
            distinct = len(pools["negatives"]) if self.kind == "population" else min(len(first), len(pools["negatives"]))
            if n_neg > distinct:
                raise DataError(f"{self.path}: data.test_size = {size} needs {n_neg} distinct images per class, "
                                f"but the test split has {distinct}; set data.test_size ≤ {2 * distinct} "
                                "(or 0 for the largest balanced test set)")
        x, y, pos_draw, neg_draw, perm = self._assemble(rng_for(self.cfg.seed, "test"), n_pos, n_neg, "test",
                                                        replace=(False, False))
        meta = self._test_meta(pos_draw, neg_draw, perm, n_pos)
        meta["label"] = y.copy()
        return x, y, meta

    def _test_meta(self, pos: MergeDraw | PoolDraw, neg: PoolDraw, perm: np.ndarray, n_pos: int) -> dict[str, np.ndarray]:
        """Per-row metadata of the test set, rows placed like the images (``perm``)."""
        n = len(perm)
        with open_dataset(self.path) as ds:
            pos_cols = pos.meta()
            neg_cols = neg.meta()
            if isinstance(pos, MergeDraw):
                pos_cols.update(ds.meta("sources", pos_cols["source_index"]))
                neg_cols.update(ds.meta("negatives", neg_cols["index"]))
                neg_cols.setdefault("kind", np.full(len(neg), "", dtype=object))
            else:
                pos_cols.update(ds.meta("images", pos_cols["index"]))
                neg_cols.update(ds.meta("images", neg_cols["index"]))
        meta: dict[str, np.ndarray] = {}
        for key in dict.fromkeys([*pos_cols, *neg_cols]):
            parts = [pos_cols.get(key), neg_cols.get(key)]
            sample = next(p for p in parts if p is not None)
            if key in ("index", "lens_index", "source_index"):
                fill, dtype = -1, np.int64
            elif np.asarray(sample).dtype.kind in "USO":
                fill, dtype = "", object
            else:
                fill, dtype = np.nan, np.float64
            column = np.full(n, fill, dtype=dtype)
            for rows, part in ((perm[:n_pos], parts[0]), (perm[n_pos:], parts[1])):
                if part is not None:
                    column[rows] = np.asarray(part).astype(dtype)
            meta[key] = column.astype(str) if dtype is object else column
        return meta

    # ------------------------------------------------------------------ streaming
    def tf_dataset(self, start: int, stop: int, batch_size: int):
        """A ``tf.data.Dataset`` of ``(x, y)`` batches from chunks ``start … stop−1`` (prefetching).

        Batches do not straddle chunks (the last batch of a chunk may be smaller).
        """
        import tensorflow as tf

        h, w, c = self.image_shape

        def batches():
            for _, x, y in self.iter_chunks(start, stop):
                for lo in range(0, len(x), batch_size):
                    yield x[lo : lo + batch_size], y[lo : lo + batch_size]

        signature = (tf.TensorSpec((None, h, w, c), tf.float32), tf.TensorSpec((None,), tf.float32))
        return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(tf.data.AUTOTUNE)

    def describe(self) -> dict:
        """``metrics.json`` facts of this source (the chunk-source protocol of :mod:`lenshpc.tasks.base`)."""
        return {"normalisation": self.normaliser.describe()}

    def close(self) -> None:
        """Stop the synthesis threads and drop recycled buffers (the engine stays usable)."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._buffers = []
        if executor is not None:
            executor.shutdown(wait=True)
