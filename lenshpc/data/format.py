"""The lenshpc HDF5 dataset format: layout, attributes and versioning in ``docs/data-format.md``.

A *population* file holds ``lenses``, ``sources`` and ``negatives``; a *labelled* one ``images`` and, unless it is
an unlabelled survey catalogue (:attr:`Dataset.has_labels`), 0/1 ``labels``.  Every image array ``X`` has
``meta/X/<column>`` and seeded ``splits/X/{train,val,test}``; readers read only their ``(rank, size)`` shard
(:meth:`Dataset.shard`).  What lenshpc's other HDF5 files share lives here too: the full-disk-safe writer
(:func:`create_h5`, :class:`H5Writer`) and the reader base :class:`H5Reader`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import h5py
import numpy as np

from lenshpc import __version__
from lenshpc.errors import DataError
from lenshpc.utils import atomic_path, rng_for

SCHEMA_VERSION = 1
POPULATIONS = ("lenses", "sources", "negatives")
LABELLED = ("images",)
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


# ----------------------------------------------------------------------- splits
def check_fractions(fractions: Iterable[float]) -> tuple[float, float, float]:
    """The (train, val, test) split fractions as floats; :class:`DataError` unless non-negative with sum 1."""
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0 or abs(f_train + f_val + f_test - 1.0) > 1e-6:
        raise DataError(f"split fractions must be non-negative and sum to 1, got {tuple(fractions)}")
    return f_train, f_val, f_test


def split_indices(n: int, seed: int, fractions: Iterable[float] = DEFAULT_FRACTIONS, key: str = "") -> dict[str, np.ndarray]:
    """Seeded random split of ``range(n)`` into train/val/test index arrays (each sorted).

    Sizes are ``floor(f·n)`` for val and test, the rest goes to train, so the three sets
    are disjoint and cover ``range(n)`` exactly.
    """
    f_train, f_val, f_test = check_fractions(fractions)
    perm = rng_for(seed, "split", key).permutation(n)
    n_val, n_test = int(f_val * n), int(f_test * n)
    n_train = n - n_val - n_test
    return {
        "train": np.sort(perm[:n_train]).astype(np.int64),
        "val": np.sort(perm[n_train : n_train + n_val]).astype(np.int64),
        "test": np.sort(perm[n_train + n_val :]).astype(np.int64),
    }


def shard_indices(indices: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Rank ``rank``'s share of ``indices`` (strided: disjoint, covering, sizes differ by ≤ 1)."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"bad shard rank={rank} size={size}")
    return np.asarray(indices)[rank::size]


# ----------------------------------------------------------------------- writing
class DiskGuard(io.RawIOBase):
    """The file under an HDF5 file being written, which turns a failed write into an error raised at close.

    HDF5 does not survive a write that fails (a full disk, a quota): its caches stay half-flushed, h5py prints a
    traceback per released object and closing the file can crash the interpreter.  Through this object
    HDF5 never sees the failure: the first ``OSError`` is recorded, later writes are only counted, and
    :func:`create_h5` raises the recorded error once HDF5 has closed the (doomed) temp file cleanly.
    """

    def __init__(self, path: Path):
        super().__init__()
        self._f = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed in close()
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = self._f.readinto(view)
        if self.error is not None and n < len(view):  # never-written bytes after a failure: zeros
            view[n:] = bytes(len(view) - n)
            self._f.seek(len(view) - n, 1)
            n = len(view)
        return n

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self._f.write(view[done:])
                return done
            except OSError as exc:
                self.error = exc
        self._f.seek(len(view), 1)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._f.truncate(size)
            except OSError as exc:
                self.error = exc
        return self._f.tell() if size is None else size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self._f.closed:
            try:
                if self.error is None:
                    os.fsync(self._f.fileno())
            except OSError as exc:
                self.error = exc
            finally:
                self._f.close()
        super().close()


@contextlib.contextmanager
def create_h5(tmp: str | Path | DiskGuard) -> Iterator[h5py.File]:
    """``h5py.File(tmp, "w")`` that fails cleanly on a full disk (use inside :func:`~lenshpc.utils.atomic_path`).

    A write the file system refuses (no space, quota, I/O error) is raised as that ``OSError`` when the block
    ends, after HDF5 closed the file; :func:`~lenshpc.utils.atomic_path` then removes the temp file and turns
    the error into a :class:`~lenshpc.errors.StorageError` naming the output.  ``tmp`` may be the
    :class:`DiskGuard` itself, for a writer that checks ``guard.error`` on the way.
    """
    guard = tmp if isinstance(tmp, DiskGuard) else DiskGuard(Path(tmp))
    try:
        with h5py.File(guard, "w") as fh:
            yield fh
    finally:
        guard.close()
    if guard.error is not None:
        raise guard.error


def _image_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    # ~1–4 MiB chunks along N: efficient shard reads without reading the whole array.
    per_image = int(np.prod(shape[1:])) * 4
    n = max(1, min(shape[0], (2 << 20) // max(per_image, 1)))
    return (n, *shape[1:])


def _write_meta_column(group: h5py.Group, name: str, values: np.ndarray) -> None:
    values = np.asarray(values)
    if values.dtype.kind in "UO":
        group.create_dataset(name, data=np.asarray(values, dtype=object).astype(str).tolist(), dtype=h5py.string_dtype())
    else:
        group.create_dataset(name, data=values)


def _write_meta_and_splits(fh: h5py.File, name: str, n: int, columns: Mapping[str, np.ndarray],
                           parts: Mapping[str, np.ndarray]) -> None:
    """``meta/<name>/<column>`` (each of ``n`` rows, checked) and ``splits/<name>/{train,val,test}``."""
    group = fh.create_group(f"meta/{name}")
    for col, values in columns.items():
        values = np.asarray(values)
        if len(values) != n:
            raise DataError(f"metadata column {name}/{col} has {len(values)} rows, expected {n}")
        _write_meta_column(group, col, values)
    for split in SPLITS:
        fh.create_dataset(f"splits/{name}/{split}", data=np.asarray(parts[split], dtype=np.int64))


def _check_images(name: str, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"{name}: expected images of shape (N, H, W, C), got {images.shape}")
    bad = nonfinite_rows(images)
    if len(bad):
        raise DataError(f"{name}: {len(bad)} image(s) contain NaN or Inf values (first: row {int(bad[0])})")
    return images


def nonfinite_rows(images: np.ndarray) -> np.ndarray:
    """Positions of the images (first axis) that hold any NaN/Inf pixel."""
    flat = images.reshape(len(images), -1) if images.ndim else images.reshape(1, -1)
    # In blocks: a whole-array isfinite() would need a bool copy of 1/4 the array's size.
    bad = [start + np.flatnonzero(~np.isfinite(flat[start : start + 1024]).all(axis=1))
           for start in range(0, len(flat), 1024)]
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def set_attrs(fh: h5py.File, attrs: Mapping) -> None:
    """Root attributes ``attrs`` of ``fh``, dicts and lists stored as JSON."""
    for key, value in attrs.items():
        fh.attrs[key] = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value


def _write_root_attrs(fh: h5py.File, kind: str, *, pixel_scale: float, bands: list[str], seed: int,
                      provenance: dict) -> None:
    set_attrs(fh, {"lenshpc_format": kind, "schema_version": SCHEMA_VERSION, "pixel_scale": float(pixel_scale),
                   "bands": list(bands), "seed": int(seed),
                   "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "lenshpc_version": __version__, "provenance": dict(provenance)})


def _write(path: str | Path, kind: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Mapping[str, np.ndarray]],
           extra: Mapping[str, np.ndarray], *, pixel_scale: float, bands: list[str], seed: int, provenance: dict,
           fractions: Iterable[float], splits: Mapping[str, Mapping[str, np.ndarray]] | None,
           logs: Mapping[str, Iterable[str]] | None = None) -> None:
    with atomic_path(path) as tmp, create_h5(tmp) as fh:
        _write_root_attrs(fh, kind, pixel_scale=pixel_scale, bands=bands, seed=seed, provenance=provenance)
        for name, images in arrays.items():
            images = _check_images(name, images)
            n = len(images)
            fh.create_dataset(name, data=images, chunks=_image_chunks(images.shape) if n else None)
            given = (splits or {}).get(name)
            _write_meta_and_splits(fh, name, n, meta.get(name) or {},
                                   given if given is not None else split_indices(n, seed, fractions, key=name))
        for name, values in extra.items():
            fh.create_dataset(name, data=values)
        # Full lists (e.g. every skipped file) go to datasets: attributes are limited to 64 KiB.
        fh.require_group("log")
        for name, lines in (logs or {}).items():
            fh.create_dataset(f"log/{name}", data=[str(line) for line in lines], dtype=h5py.string_dtype())


def write_population(path: str | Path, lenses: np.ndarray, sources: np.ndarray, negatives: np.ndarray, *,
                     meta: Mapping[str, Mapping[str, np.ndarray]] | None = None, pixel_scale: float = 0.2,
                     bands: list[str] | None = None, seed: int = 0, provenance: dict | None = None,
                     fractions: Iterable[float] = DEFAULT_FRACTIONS,
                     splits: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                     logs: Mapping[str, Iterable[str]] | None = None) -> None:
    """Write a population dataset atomically (temp file + rename).

    Parameters
    ----------
    lenses, sources, negatives : ndarray
        ``(N, H, W[, C])`` images; converted to float32; must be finite.
    meta : dict, optional
        ``{"sources": {"theta_E": array, ...}, "negatives": {"kind": array}, ...}``.
    splits : dict, optional
        Explicit ``{"lenses": {"train": idx, "val": idx, "test": idx}, ...}``; by default a
        seeded 80/10/10 split per population.
    logs : dict, optional
        ``{"skipped": ["path: reason", ...]}``: text lines stored as ``log/<name>``.
    """
    _write(path, "population", {"lenses": lenses, "sources": sources, "negatives": negatives}, meta or {}, {},
           pixel_scale=pixel_scale, bands=bands or ["r"], seed=seed, provenance=provenance or {},
           fractions=fractions, splits=splits, logs=logs)


def write_labelled(path: str | Path, images: np.ndarray, labels: np.ndarray | None, *, ids: np.ndarray | None = None,
                   meta: Mapping[str, np.ndarray] | None = None, pixel_scale: float = 0.2,
                   bands: list[str] | None = None, seed: int = 0, provenance: dict | None = None,
                   fractions: Iterable[float] = DEFAULT_FRACTIONS, splits: Mapping[str, np.ndarray] | None = None,
                   logs: Mapping[str, Iterable[str]] | None = None) -> None:
    """Write a labelled dataset (``images`` + ``labels`` + metadata) atomically.

    ``ids`` become the metadata column ``id``; ``labels`` must be 0/1, or ``None`` for an
    unlabelled catalogue (no ``labels`` array is written); other arguments as in
    :func:`write_population`.
    """
    images = np.asarray(images)
    extra: dict[str, np.ndarray] = {}
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(images):
            raise DataError(f"{len(labels)} labels for {len(images)} images")
        if not np.isin(labels, (0, 1)).all():
            raise DataError("labels must be 0 or 1")
        extra["labels"] = labels.astype(np.uint8)
    columns = dict(meta or {})
    if ids is not None:
        columns["id"] = np.asarray(ids)
    _write(path, "labelled", {"images": images}, {"images": columns}, extra,
           pixel_scale=pixel_scale, bands=bands or ["r"], seed=seed, provenance=provenance or {},
           fractions=fractions, splits={"images": splits} if splits is not None else None, logs=logs)


class H5Writer:
    """An HDF5 file written in a ``with`` block: atomically (:func:`~lenshpc.utils.atomic_path`) and through
    :func:`create_h5`.  Subclasses set ``path`` and fill in :meth:`_start` (create the arrays) and :meth:`_finish`
    (complete the file); it appears under ``path`` only when the block and :meth:`_finish` succeed."""

    path: Path
    _fh: h5py.File
    _guard: DiskGuard

    def _start(self) -> None:
        pass

    def _finish(self) -> None:
        pass

    def __enter__(self):
        stack = contextlib.ExitStack()
        try:
            tmp = stack.enter_context(atomic_path(self.path))
            self._guard = DiskGuard(tmp)
            self._fh = stack.enter_context(create_h5(self._guard))
            self._start()
        except BaseException as exc:
            stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack = stack
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        return bool(self._stack.__exit__(exc_type, exc, tb))


class PopulationWriter(H5Writer):
    """Write a population dataset block by block, atomically (``lenshpc simulate``).

    Images go straight into pre-sized HDF5 arrays, so a population larger than RAM can be
    written; metadata rows are kept (small) and written with the splits on success.

    Examples
    --------
    >>> with PopulationWriter(path, {"lenses": 10, "sources": 20, "negatives": 10}, (101, 101, 1)) as w:
    ...     w.write("lenses", 0, images, {"theta_E": values})        # doctest: +SKIP
    """

    def __init__(self, path: str | Path, counts: Mapping[str, int], image_shape: tuple[int, ...], *,
                 pixel_scale: float = 0.2, bands: list[str] | None = None, seed: int = 0,
                 provenance: dict | None = None, fractions: Iterable[float] = DEFAULT_FRACTIONS,
                 compression: Mapping[str, str | None] | None = None):
        missing = [name for name in POPULATIONS if name not in counts]
        if missing:
            raise DataError(f"population writer needs counts for {missing}")
        self.path, self.counts, self.image_shape = Path(path), {k: int(counts[k]) for k in POPULATIONS}, tuple(image_shape)
        self._attrs = dict(pixel_scale=pixel_scale, bands=bands or ["r"], seed=seed, provenance=provenance or {})
        self._fractions, self._compression = tuple(fractions), dict(compression or {})
        self._meta: dict[str, dict[str, dict[int, np.ndarray]]] = {name: {} for name in POPULATIONS}
        self._written = {name: np.zeros(n, dtype=bool) for name, n in self.counts.items()}

    def _start(self) -> None:
        _write_root_attrs(self._fh, "population", **self._attrs)
        for name, n in self.counts.items():
            shape = (n, *self.image_shape)
            comp = self._compression.get(name)
            self._fh.create_dataset(name, shape=shape, dtype=np.float32, chunks=_image_chunks(shape) if n else None,
                                    compression=comp if n else None, shuffle=bool(comp and n))

    def write(self, name: str, start: int, images: np.ndarray, meta: Mapping[str, np.ndarray] | None = None) -> None:
        """Store images ``start .. start+len(images)`` of ``name`` and their metadata rows."""
        images = _check_images(f"{name}[{start}:]", images)
        stop = start + len(images)
        if images.shape[1:] != self.image_shape or not 0 <= start <= stop <= self.counts[name]:
            raise DataError(f"{name}: block {start}:{stop} of shape {images.shape[1:]} does not fit "
                            f"{self.counts[name]} images of shape {self.image_shape}")
        self._fh[name][start:stop] = images
        if self._guard.error is not None:  # the disk is full: stop now, not after simulating the rest
            raise self._guard.error
        self._written[name][start:stop] = True
        for col, values in (meta or {}).items():
            values = np.asarray(values)
            if len(values) != len(images):
                raise DataError(f"metadata column {name}/{col}: {len(values)} rows for {len(images)} images")
            self._meta[name].setdefault(col, {})[start] = values

    def _finish(self) -> None:
        for name, done in self._written.items():
            if not done.all():
                raise DataError(f"{name}: {int((~done).sum())} of {len(done)} images were never written")
            n = self.counts[name]
            columns = {col: np.concatenate([blocks[k] for k in sorted(blocks)])
                       for col, blocks in self._meta[name].items()}
            parts = split_indices(n, self._attrs["seed"], self._fractions, key=name)
            _write_meta_and_splits(self._fh, name, n, columns, parts)


# ----------------------------------------------------------------------- reading
def check_finite(images: np.ndarray, path: str | Path, name: str, rows: np.ndarray | int = 0) -> np.ndarray:
    """Return ``images`` (read from array ``name`` of ``path``) or raise :class:`DataError` if any pixel is NaN/Inf.

    lenshpc never writes non-finite pixels (:func:`_check_images`), but a file edited or written by another tool
    may hold them, and a single NaN turns every score and metric into nonsense (AUROC 1.0 was seen).  ``rows``
    are the file rows of ``images`` (an index array, or the first row of a slab).  Costs one ``isfinite`` pass
    over data just read (``benchmarks/reliability.py``).
    """
    bad = nonfinite_rows(images)
    if not len(bad):
        return images
    where = np.asarray(rows)[bad] if np.ndim(rows) else int(rows) + bad
    kind = "NaN" if np.isnan(images[bad[0]]).any() else "Inf"
    raise DataError(f"{path}: array '{name}' holds NaN/Inf pixels in {len(bad)} image(s) (first: image "
                    f"{int(where[0])} contains {kind}); lenshpc never writes them, so the file was edited or written by "
                    "another tool. Re-create it (`lenshpc simulate` / `lenshpc stack`, which report bad inputs), or replace "
                    "the non-finite pixels (e.g. numpy.nan_to_num) and mask them yourself")


def read_in_order(arr: h5py.Dataset, indices: np.ndarray | None, path: str | Path, name: str) -> np.ndarray:
    """Rows ``indices`` of image array ``arr`` (all when None) in the order given, repeats allowed, checked by
    :func:`check_finite` (``name``: the array's name in ``path``, for its message)."""
    if indices is None:
        return check_finite(arr[()], path, name)
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return np.empty((0, *arr.shape[1:]), dtype=arr.dtype)
    uniq, inverse = np.unique(indices, return_inverse=True)  # h5py needs increasing, unique indices
    return check_finite(arr[uniq], path, name, uniq)[inverse]


def read_column(ds: h5py.Dataset) -> np.ndarray:
    """A whole 1-D dataset as an array, HDF5 strings decoded to ``str``."""
    return np.asarray(ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()])


def decode_attr(value):
    """An HDF5 attribute as a plain Python value (bytes → str, numpy scalar → Python scalar)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    return value


class H5Reader:
    """What lenshpc's HDF5 readers share: an open ``h5py.File`` in ``_fh``, context management, root
    attributes decoded (:func:`decode_attr`), the names in ``JSON_ATTRS`` parsed from their JSON strings, and the
    text logs stored with the data."""

    JSON_ATTRS: tuple[str, ...] = ()
    _fh: h5py.File

    def _open(self, path: str | Path, what: str, hint: str = "") -> None:
        """Open ``path`` read-only as ``self._fh`` and :meth:`_check` it (closed again if that raises);
        :class:`DataError` "``what`` not found: path``hint``" or "not a readable HDF5 file"."""
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{what} not found: {self.path}{hint}")
        try:
            self._fh = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        try:
            self._check()
        except BaseException:
            self._fh.close()
            raise

    def _check(self) -> None:
        """Raise :class:`DataError` when the open file is not of this reader's kind."""

    def _schema_version(self, supported: int, recreate: str) -> int:
        """The integer ``schema_version`` attribute (an integral float counts); :class:`DataError` when it is missing,
        not an integer or newer
        than ``supported`` (``recreate``: the commands that write such a file)."""
        attrs = self._fh.attrs
        if "schema_version" not in attrs:
            raise DataError(f"{self.path}: lenshpc file without a 'schema_version' attribute (damaged or written by a "
                            f"foreign tool); re-create it with {recreate}")
        version = decode_attr(attrs["schema_version"])
        if isinstance(version, float) and version.is_integer():  # 1.0 from a tool that writes floats: as before
            version = int(version)
        if isinstance(version, bool) or not isinstance(version, int):
            raise DataError(f"{self.path}: attribute 'schema_version' is {version!r} ({type(version).__name__}), "
                            f"expected an integer (this lenshpc writes {supported}); the file was edited or written "
                            f"by a foreign tool: re-create it with {recreate}, or fix the attribute "
                            f"(h5py: f.attrs['schema_version'] = {supported})")
        if version > supported:
            raise DataError(f"{self.path}: schema version {version} is newer than this lenshpc supports "
                            f"({supported}); upgrade lenshpc")
        return version

    def _split_indices(self, key: str, n: int) -> np.ndarray:
        """The index array ``key`` (int64), checked to be 1-D integers in ``0..n-1``."""
        indices = np.asarray(self._fh[key][()])
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise DataError(f"{self.path}: {key} must be a 1-D integer index array, got {indices.dtype} "
                            f"{indices.shape}; re-create the file or rewrite the split")
        bad = np.flatnonzero((indices < 0) | (indices >= n))
        if len(bad):
            raise DataError(f"{self.path}: {key} holds {len(bad)} index(es) outside 0..{n - 1} (the array has {n} "
                            f"rows), first {int(indices[bad[0]])} at position {int(bad[0])}; the file was edited "
                            "or its arrays truncated: re-create it or rewrite the split")
        return indices.astype(np.int64)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    @property
    def attrs(self) -> dict:
        out = {}
        for key, value in self._fh.attrs.items():
            value = decode_attr(value)
            if key in self.JSON_ATTRS and isinstance(value, str):
                value = json.loads(value)
            out[key] = value
        return out

    def logs(self) -> dict[str, list[str]]:
        """Text logs stored with the data (e.g. ``skipped``: the inputs `lenshpc stack` left out)."""
        if "log" not in self._fh:
            return {}
        return {name: [str(v) for v in ds.asstr()[()]] for name, ds in self._fh["log"].items()}


class Dataset(H5Reader):
    """A read-only view of a lenshpc HDF5 dataset.

    Use as a context manager or call :meth:`close`.  Image reads take sorted or unsorted
    index arrays and return rows in the order asked for.
    """

    JSON_ATTRS = ("bands", "provenance")

    def __init__(self, path: str | Path):
        self._open(path, "dataset")

    def _check(self) -> None:
        kind = decode_attr(self._fh.attrs.get("lenshpc_format"))
        if kind not in ("population", "labelled"):
            raise DataError(f"{self.path}: not a lenshpc dataset (missing 'lenshpc_format' attribute); "
                            "create one with `lenshpc simulate` or `lenshpc stack`")
        self.schema_version = self._schema_version(SCHEMA_VERSION, "`lenshpc simulate` or `lenshpc stack`")
        self.kind: str = kind
        self.names: tuple[str, ...] = POPULATIONS if kind == "population" else LABELLED
        for name in self.names:
            if name not in self._fh:
                raise DataError(f"{self.path}: {kind} dataset lacks the '{name}' array")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self._fh[self.names[0]].shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return sum(len(self._fh[n]) for n in self.names)

    def count(self, name: str) -> int:
        return len(self._array(name))

    def _array(self, name: str) -> h5py.Dataset:
        if name not in self._fh:
            raise DataError(f"{self.path}: no array '{name}' (has: {', '.join(self.names)})")
        return self._fh[name]

    # indices ------------------------------------------------------------------
    def split(self, name: str, split: str) -> np.ndarray:
        """Sorted indices of ``split`` (train/val/test) for array ``name``."""
        if split == "all":
            return np.arange(self.count(name), dtype=np.int64)
        key = f"splits/{name}/{split}"
        if key not in self._fh:
            raise DataError(f"{self.path}: no split '{split}' for '{name}'")
        return self._split_indices(key, self.count(name))

    def shard(self, name: str, split: str, rank: int = 0, size: int = 1) -> np.ndarray:
        """Indices of ``split`` owned by ``rank`` of ``size`` (disjoint and covering)."""
        return shard_indices(self.split(name, split), rank, size)

    # data ---------------------------------------------------------------------
    def read(self, name: str, indices: np.ndarray | None = None) -> np.ndarray:
        """Images ``(n, H, W, C)`` float32 at ``indices`` (all when None), in the given order."""
        return read_in_order(self._array(name), indices, self.path, name)

    @property
    def has_labels(self) -> bool:
        """True for a labelled dataset with a ``labels`` array (False: population or unlabelled catalogue)."""
        return self.kind == "labelled" and "labels" in self._fh

    def labels(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Labels of a labelled dataset (:class:`DataError` for a population or an unlabelled catalogue)."""
        if self.kind != "labelled":
            raise DataError(f"{self.path}: a population dataset has no labels (they are made by merging)")
        if "labels" not in self._fh:
            raise DataError(f"{self.path}: an unlabelled catalogue (no 'labels' array; written by `lenshpc stack "
                            "--label-column none`): training and evaluation need 0/1 labels. Rank it with "
                            "`lenshpc rank MODEL " + str(self.path) + "`, or re-stack it with --label-column COLUMN")
        labels = self._fh["labels"][()]
        return labels if indices is None else labels[np.asarray(indices, dtype=np.int64)]

    def meta_columns(self, name: str) -> list[str]:
        key = f"meta/{name}"
        return sorted(self._fh[key].keys()) if key in self._fh else []

    def meta(self, name: str, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Metadata columns of array ``name`` (strings decoded to ``str``)."""
        out: dict[str, np.ndarray] = {}
        for col in self.meta_columns(name):
            values = read_column(self._fh[f"meta/{name}/{col}"])
            out[col] = values if indices is None else values[np.asarray(indices, dtype=np.int64)]
        return out


def open_dataset(path: str | Path) -> Dataset:
    """Open a lenshpc HDF5 dataset for reading (raises :class:`DataError` with the reason)."""
    return Dataset(path)


#: ``lenshpc_format`` values with a schema of their own → ``"module:function"`` describing such a file (imported
#: by name: those schemas build on this module, so it must not import them).
DESCRIBERS = {"slices21cm": "lenshpc.data.cosmo21cm.slices:describe"}


def describe(path: str | Path, *, tree: bool = False) -> str:
    """A human-readable summary (``lenshpc info``); ``tree`` adds every HDF5 object with its storage."""
    import importlib

    kind = None
    with contextlib.suppress(OSError, ValueError), h5py.File(path, "r") as fh:
        kind = decode_attr(fh.attrs.get("lenshpc_format"))
    if kind in DESCRIBERS:
        module, func = DESCRIBERS[kind].split(":")
        return getattr(importlib.import_module(module), func)(path, tree=tree)
    with open_dataset(path) as ds:
        attrs = ds.attrs
        lines = [f"{ds.path}: lenshpc {ds.kind} dataset, schema v{ds.schema_version}",
                 f"  image shape {ds.image_shape}, pixel scale {attrs.get('pixel_scale')}\"/px, bands {attrs.get('bands')}",
                 f"  seed {attrs.get('seed')}, created {attrs.get('created')} by lenshpc {attrs.get('lenshpc_version')}"]
        for name in ds.names:
            sizes = ", ".join(f"{s} {len(ds.split(name, s))}" for s in SPLITS)
            cols = ", ".join(ds.meta_columns(name)) or "-"
            lines.append(f"  {name}: {ds.count(name)} images ({sizes}); metadata: {cols}")
        if ds.kind == "labelled" and not ds.has_labels:
            lines.append("  labels: none (unlabelled catalogue: for `lenshpc rank`, not for training)")
        elif ds.kind == "labelled":
            labels = ds.labels()
            lines.append(f"  labels: {int(labels.sum())} positive, {int(len(labels) - labels.sum())} negative")
        for name, entries in ds.logs().items():
            if entries:
                shown = "\n".join(f"    {e}" for e in entries[:10])
                more = f"\n    … {len(entries) - 10} more (read log/{name} with h5py)" if len(entries) > 10 else ""
                lines.append(f"  log/{name}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}\n{shown}{more}")
        prov = attrs.get("provenance") or {}
        if prov:
            text = json.dumps(prov)
            lines.append(f"  provenance: {text if tree else text[:300] + ('…' if len(text) > 300 else '')}")
        if tree:
            lines.append("  objects:")
            lines.extend(f"    {line}" for line in hdf5_tree(ds._fh))  # noqa: SLF001 - same module
        return "\n".join(lines)


def hdf5_digest(fh: h5py.File) -> str:
    """SHA-256 over every dataset of an open file (sorted names; name, dtype, shape, bytes), attributes left out:
    equal ⇔ same content (the ``content_sha256`` of slice and segmented files)."""
    h = hashlib.sha256()
    names: list[str] = []
    fh.visit(lambda name: names.append(name) if isinstance(fh[name], h5py.Dataset) else None)
    for name in sorted(names):
        ds = fh[name]
        h.update(f"{name}|{ds.dtype.str if not h5py.check_string_dtype(ds.dtype) else 'str'}|{ds.shape}|".encode())
        if h5py.check_string_dtype(ds.dtype):
            h.update("\x00".join(ds.asstr()[()].tolist()).encode())
        else:
            rows = max(1, (16 << 20) // max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
            for start in range(0, len(ds) if ds.shape else 1, rows):
                block = ds[start:start + rows] if ds.shape else ds[()]
                h.update(np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


def hdf5_tree(group: h5py.Group) -> list[str]:
    """One line per dataset: path, shape, dtype, chunk shape and compression filter."""
    out: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            storage = f"chunks {obj.chunks}" if obj.chunks else "contiguous"
            if obj.compression:
                storage += f", {obj.compression}"
            out.append(f"{name}  {obj.shape} {obj.dtype}  [{storage}]")

    group.visititems(visit)
    return out
