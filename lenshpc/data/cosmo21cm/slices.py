"""The ``slices21cm`` HDF5 format: 2-D slices of 21-cm brightness-temperature boxes with class labels.

Written by ``lenshpc simulate21cm`` (21cmFAST boxes) and ``lenshpc stack21cm`` (users' cubes); read by the 21-cm
classification and autoencoder tasks through :func:`open_slices`.  Layout and attributes: docs/data-format.md
("21-cm slice datasets"): ``images`` (δT_b, mK), ``labels/<target>``, ``meta/images/<column>``
(:data:`META_COLUMNS`), ``splits/images/{train,val,test}``.  There is no wall-clock attribute: the same inputs give a
byte-identical file.  Targets: :data:`TARGETS` (``joint`` derived, never stored: ``z_idx * n_f + f_idx``).  Slices
of one box are strongly correlated (CNNs learn box-specific features, Sooknunan et al. 2024), so the split is by
realisation: no realisation has slices in two splits.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import h5py
import numpy as np

from lenshpc import __version__
from lenshpc.data.format import (DEFAULT_FRACTIONS, SPLITS, H5Reader, H5Writer, _image_chunks, _write_meta_column,
                                 check_fractions, decode_attr, hdf5_digest, hdf5_tree, nonfinite_rows, read_in_order,
                                 shard_indices, split_indices)
from lenshpc.errors import DataError
from lenshpc.utils import rng_for

log = logging.getLogger(__name__)

FORMAT = "slices21cm"
SCHEMA_VERSION = 1
#: Stored targets → the metadata column holding their physical value.
STORED_TARGETS = {"redshift": "redshift", "escape_fraction": "f_esc10"}
TARGETS = (*STORED_TARGETS, "joint")
META_COLUMNS = ("realisation", "seed", "redshift", "f_esc10", "axis", "slice", "x_hi", "mean_dtb",
                "box_x_hi", "box_mean_dtb")
SPLIT_BY = ("realisation", "slice")
SLICE_SPLIT_WARNING = ("split by slice: slices of one box are in several splits, so validation/test scores are "
                       "optimistic (CNNs learn box-specific features); use the default split by realisation for "
                       "any reported result")
#: Class values are matched after rounding to this many decimals (redshift 8.0 == 8.000000001).
DECIMALS = 6


# --------------------------------------------------------------------------- classes and splits
def class_values(values: Iterable[float]) -> list[float]:
    """The sorted distinct class values of a parameter (rounded to :data:`DECIMALS`)."""
    return sorted({round(float(v), DECIMALS) for v in values})


def class_index(values: np.ndarray, classes: Sequence[float], what: str) -> np.ndarray:
    """Index of each value in ``classes`` (int16); :class:`DataError` for a value that is not a class."""
    values = np.round(np.asarray(values, dtype=np.float64), DECIMALS)
    table = np.round(np.asarray(classes, dtype=np.float64), DECIMALS)
    idx = np.searchsorted(table, values)
    ok = (idx < len(table)) & (table[np.minimum(idx, len(table) - 1)] == values)
    if not ok.all():
        bad = values[~ok][0]
        raise DataError(f"{what} value {bad:g} is not one of the classes {', '.join(f'{v:g}' for v in table)}")
    return idx.astype(np.int16)


def realisation_split(realisations: Iterable[int], seed: int, fractions: Iterable[float] = DEFAULT_FRACTIONS
                      ) -> dict[str, list[int]]:
    """Seeded split of the distinct realisation ids into train/val/test (each sorted; disjoint, covering).

    Depends only on the *set* of ids and ``seed``.  val and test get ``max(1, round(f·R))`` realisations each
    when there are at least 3, so every split holds whole boxes.
    """
    ids = sorted({int(r) for r in realisations})
    _, f_val, f_test = check_fractions(fractions)
    n = len(ids)
    if n < 3:
        raise DataError(f"a split by realisation needs at least 3 realisations (train, val, test), got {n}; "
                        "simulate more (--realisations 3 or more), or ask for a slice split explicitly "
                        "(--split-by slice; its scores are optimistic)")
    n_val = max(1, round(f_val * n)) if f_val > 0 else 0
    n_test = max(1, round(f_test * n)) if f_test > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(f"{n} realisations leave none for training with fractions {tuple(fractions)}")
    perm = [ids[i] for i in rng_for(seed, "split", "realisation").permutation(n)]
    return {"train": sorted(perm[n_val + n_test:]), "val": sorted(perm[:n_val]),
            "test": sorted(perm[n_val:n_val + n_test])}


def _split_rows(realisation: np.ndarray, split_by: str, seed: int, fractions, given: Mapping | None
                ) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    if split_by == "slice":
        return split_indices(len(realisation), seed, fractions, key="images"), {s: [] for s in SPLITS}
    parts = {s: sorted(int(r) for r in given[s]) for s in SPLITS} if given else \
        realisation_split(realisation, seed, fractions)
    seen: dict[int, str] = {}
    for s in SPLITS:
        for r in parts[s]:
            if r in seen:
                raise DataError(f"realisation {r} is in both the {seen[r]} and the {s} split; each realisation "
                                "must be in exactly one split")
            seen[r] = s
    missing = sorted(set(np.unique(realisation).tolist()) - set(seen))
    if missing:
        raise DataError(f"realisation(s) {missing} are in no split; list every realisation in the split")
    rows = {s: np.flatnonzero(np.isin(realisation, parts[s])).astype(np.int64) for s in SPLITS}
    return rows, parts


# --------------------------------------------------------------------------- cutting cubes
def cut_slices(cube: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices of a cube perpendicular to axes 0, 1, 2 at ``positions``: ``(images, axis, index)``."""
    cube = np.asarray(cube)
    images = np.concatenate([np.moveaxis(np.take(cube, positions, axis=a), a, 0) for a in range(3)])
    axis = np.repeat(np.arange(3, dtype=np.int64), len(positions))
    return images.astype(np.float32, copy=False), axis, np.tile(positions, 3)


def box_slices(dtb: np.ndarray, x_hi_box: np.ndarray | None, positions: np.ndarray, where: str, fix: str = ""
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A δT_b box's slices (:func:`cut_slices`) and their metadata columns: ``axis``, ``slice``, the per-slice and
    box means of δT_b and (when given, else NaN) of the neutral fraction.

    :class:`DataError` "``where`` holds NaN/Inf values (first in plane …)``fix``" when a pixel of the box is not
    finite (checked whole, so :meth:`SliceWriter.write` may skip its own check: ``finite=True``).
    """
    box_mean = float(np.mean(dtb, dtype=np.float64))
    if not np.isfinite(box_mean):  # NaN/Inf exactly when a pixel is (finite float32 cannot overflow float64)
        plane = int(nonfinite_rows(np.asarray(dtb))[0])
        raise DataError(f"{where} holds NaN/Inf values (first in plane {plane} of axis 0){fix}")
    images, axis, index = cut_slices(dtb, positions)
    meta = {"axis": axis, "slice": index, "mean_dtb": images.mean(axis=(1, 2), dtype=np.float64),
            "box_mean_dtb": np.full(len(axis), box_mean)}
    if x_hi_box is None:
        meta["x_hi"] = meta["box_x_hi"] = np.full(len(axis), np.nan)
    else:
        meta["x_hi"] = cut_slices(x_hi_box, positions)[0].mean(axis=(1, 2), dtype=np.float64)
        meta["box_x_hi"] = np.full(len(axis), float(np.mean(x_hi_box, dtype=np.float64)))
    return images, meta


# --------------------------------------------------------------------------- writing
class SliceWriter(H5Writer):
    """Write a ``slices21cm`` file block by block, atomically (the file appears only when the block ends cleanly).

    Parameters
    ----------
    path : path
        Output ``.h5``.
    n : int
        Number of slices (known up front: the array is pre-sized, so a dataset larger than RAM can be written).
    image_shape : (H, W)
        Slice shape.
    classes : dict
        ``{"redshift": [...], "escape_fraction": [...]}``; a target whose classes are ``None`` or absent is not
        stored (a catalogue without escape fractions).
    simulator, provenance : dict
        JSON attributes (keep wall-clock times and host names out of them: the file should depend only on inputs).
    seed, split_by, fractions, split_realisations
        The split: by realisation (default; seeded, or the explicit ``{"train": [...], "val": [...], "test":
        [...]}``) or by slice (explicit only: a warning is logged and stored in ``split_warning``).
    compression : str, optional
        HDF5 filter for ``images`` (e.g. ``"gzip"``); none by default (δT_b slices barely compress).

    Examples
    --------
    >>> with SliceWriter(path, 600, (64, 64), classes={"redshift": [8.0], "escape_fraction": [-1.0]}) as w:
    ...     w.write(0, images, {"realisation": r, "seed": s, "redshift": z, ...})  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, n: int, image_shape: Sequence[int], *, classes: Mapping[str, Sequence | None],
                 simulator: Mapping | None = None, provenance: Mapping | None = None, seed: int = 0,
                 split_by: str = "realisation", fractions: Iterable[float] = DEFAULT_FRACTIONS,
                 split_realisations: Mapping[str, Iterable[int]] | None = None, compression: str | None = None,
                 logs: Mapping[str, Iterable[str]] | None = None):
        if split_by not in SPLIT_BY:
            raise DataError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
        self.path, self.n, self.image_shape = Path(path), int(n), tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 2 or min(self.image_shape) < 1:
            raise DataError(f"slice shape must be (H, W), got {self.image_shape}")
        self.classes = {t: class_values(v) for t, v in classes.items() if t in STORED_TARGETS and v is not None}
        if "redshift" not in self.classes and "escape_fraction" not in self.classes:
            raise DataError("a slice dataset needs redshift and/or escape-fraction classes")
        self._attrs = dict(simulator=dict(simulator or {}), provenance=dict(provenance or {}), seed=int(seed),
                           split_by=split_by, fractions=tuple(float(f) for f in fractions),
                           split_realisations=split_realisations, compression=compression)
        self._logs = {k: [str(x) for x in v] for k, v in (logs or {}).items()}
        self._meta: dict[str, np.ndarray] = {}
        self._written = np.zeros(self.n, dtype=bool)

    def _start(self) -> None:
        shape = (self.n, *self.image_shape, 1)
        self._images = self._fh.create_dataset("images", shape=shape, dtype=np.float32,
                                               chunks=_image_chunks(shape) if self.n else None,
                                               compression=self._attrs["compression"])

    def write(self, start: int, images: np.ndarray, meta: Mapping[str, np.ndarray], finite: bool = False) -> None:
        """Slices ``start .. start+len(images)-1`` and their metadata columns (any of :data:`META_COLUMNS`);
        ``finite``: the caller checked their pixels already (:func:`box_slices`)."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[..., None]
        if images.shape[1:] != (*self.image_shape, 1):
            raise DataError(f"slices of shape {images.shape[1:3]} for a dataset of {self.image_shape} slices")
        stop = start + len(images)
        if start < 0 or stop > self.n:
            raise DataError(f"slices {start}..{stop - 1} outside 0..{self.n - 1}")
        bad = [] if finite else nonfinite_rows(images)
        if len(bad):
            raise DataError(f"slice {start + int(bad[0])} (and {len(bad) - 1} more) holds NaN/Inf values")
        for col, values in meta.items():
            if col not in META_COLUMNS:
                raise DataError(f"unknown metadata column {col!r}; known: {', '.join(META_COLUMNS)}")
            values = np.asarray(values)
            if values.shape != (len(images),):
                values = np.broadcast_to(values, (len(images),))
            if col not in self._meta:
                dtype = np.int64 if col in ("realisation", "seed", "axis", "slice") else np.float64
                self._meta[col] = np.full(self.n, -1 if dtype is np.int64 else np.nan, dtype=dtype)
            self._meta[col][start:stop] = values
        self._images[start:stop] = images
        self._written[start:stop] = True

    def _finish(self) -> None:
        fh, a = self._fh, self._attrs
        if not self._written.all():
            raise DataError(f"{int((~self._written).sum())} of {self.n} slices were never written")
        for col in ("realisation", *(STORED_TARGETS[t] for t in self.classes)):
            if col not in self._meta:
                raise DataError(f"metadata column {col!r} is missing (needed for the labels and the split)")
        for target, classes in self.classes.items():
            fh.create_dataset(f"labels/{target}", data=class_index(self._meta[STORED_TARGETS[target]], classes, target))
        group = fh.create_group("meta/images")
        for col in META_COLUMNS:
            if col in self._meta:
                _write_meta_column(group, col, self._meta[col])
        rows, parts = _split_rows(self._meta["realisation"], a["split_by"], a["seed"], a["fractions"],
                                  a["split_realisations"])
        for split in SPLITS:
            fh.create_dataset(f"splits/images/{split}", data=rows[split])
        for name, lines in self._logs.items():
            fh.create_dataset(f"log/{name}", data=lines, dtype=h5py.string_dtype())
        fh.attrs["lenshpc_format"] = FORMAT
        fh.attrs["schema_version"] = SCHEMA_VERSION
        fh.attrs["classes"] = json.dumps(self.classes)
        fh.attrs["split_by"] = a["split_by"]
        if a["split_by"] == "slice":
            warnings.warn(SLICE_SPLIT_WARNING, stacklevel=3)
            log.warning(SLICE_SPLIT_WARNING)
            fh.attrs["split_warning"] = SLICE_SPLIT_WARNING
        fh.attrs["split_realisations"] = json.dumps(parts)
        fh.attrs["split_seed"] = a["seed"]
        fh.attrs["split_fractions"] = json.dumps(list(a["fractions"]))
        fh.attrs["simulator"] = json.dumps(a["simulator"], sort_keys=True, default=str)
        fh.attrs["provenance"] = json.dumps(a["provenance"], sort_keys=True, default=str)
        fh.attrs["lenshpc_version"] = __version__
        fh.flush()
        fh.attrs["content_sha256"] = hdf5_digest(fh)


def write_slices(path: str | Path, images: np.ndarray, meta: Mapping[str, np.ndarray], **kwargs) -> Path:
    """Write an in-memory set of slices ``(N, H, W[, 1])`` with their metadata (keywords: :class:`SliceWriter`)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise DataError(f"expected slices of shape (N, H, W), got {images.shape}")
    with SliceWriter(path, len(images), images.shape[1:], **kwargs) as w:
        w.write(0, images, meta)
    return Path(path)


# --------------------------------------------------------------------------- reading
def is_slice_file(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file with ``lenshpc_format = "slices21cm"``."""
    try:
        with h5py.File(path, "r") as fh:
            return decode_attr(fh.attrs.get("lenshpc_format")) == FORMAT
    except (OSError, ValueError):
        return False


class SliceDataset(H5Reader):
    """A read-only view of a ``slices21cm`` file (use :func:`open_slices`).

    ``split`` arguments are ``"train"``, ``"val"``, ``"test"`` or ``"all"``; ``(rank, size)`` give a rank's
    strided share (disjoint, covering).  Targets: :data:`TARGETS`.
    """

    JSON_ATTRS = ("classes", "split_realisations", "split_fractions", "simulator", "provenance")

    def __init__(self, path: str | Path):
        self._open(path, "slice dataset", "; create one with `lenshpc simulate21cm` or `lenshpc stack21cm`")
        a = self.attrs
        self._classes: dict[str, list[float]] = {t: list(v) for t, v in a["classes"].items()}
        self.split_by: str = a.get("split_by", "realisation")
        self.split_realisations: dict[str, list[int]] = a.get("split_realisations") or {}
        self.simulator: dict = a.get("simulator") or {}
        #: Warnings a report should show (a slice-level split).
        self.warnings: list[str] = [a["split_warning"]] if a.get("split_warning") else []

    def _check(self) -> None:
        kind = decode_attr(self._fh.attrs.get("lenshpc_format"))
        if kind != FORMAT:
            hint = " (a lens dataset: use it with the lens task)" if kind in ("population", "labelled") else ""
            raise DataError(f"{self.path}: not a 21-cm slice dataset (lenshpc_format={kind!r}){hint}; create one "
                            "with `lenshpc simulate21cm` or `lenshpc stack21cm`")
        self._schema_version(SCHEMA_VERSION, "`lenshpc simulate21cm` or `lenshpc stack21cm`")
        for key in ("images", "meta/images/realisation", *(f"splits/images/{s}" for s in SPLITS)):
            if key not in self._fh:
                raise DataError(f"{self.path}: slice dataset lacks '{key}' (damaged or written by a foreign tool); "
                                "re-create it")
        if "classes" not in self._fh.attrs:
            raise DataError(f"{self.path}: slice dataset lacks the 'classes' attribute; re-create it")

    # shape ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._fh["images"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self._fh["images"].shape[1:])  # type: ignore[return-value]

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets this file supports (``joint`` needs both stored targets)."""
        stored = tuple(t for t in STORED_TARGETS if t in self._classes and f"labels/{t}" in self._fh)
        return stored + (("joint",) if len(stored) == len(STORED_TARGETS) else ())

    def _target(self, target: str) -> str:
        if target not in TARGETS:
            raise DataError(f"unknown 21-cm target {target!r}; use one of {', '.join(TARGETS)}")
        if target not in self.targets:
            raise DataError(f"{self.path}: target {target!r} is not in this dataset (it has: "
                            f"{', '.join(self.targets) or 'none'}); stack it with that column in the catalogue "
                            "or choose another target")
        return target

    # classes --------------------------------------------------------------
    def classes(self, target: str) -> list:
        """Class values: redshifts, F_ESC10 values, or ``(z, F_ESC10)`` pairs for ``joint`` (index order)."""
        self._target(target)
        if target == "joint":
            return [(z, f) for z in self._classes["redshift"] for f in self._classes["escape_fraction"]]
        return list(self._classes[target])

    def class_names(self, target: str) -> list[str]:
        """Labels for tables and figures: ``z=8``, ``F_ESC10=-1.3``, ``z=8 F_ESC10=-1.3``."""
        label = {"redshift": "z={:g}", "escape_fraction": "F_ESC10={:g}"}
        if target == "joint":
            z, f = label["redshift"], label["escape_fraction"]
            return [f"{z.format(a)} {f.format(b)}" for a, b in self.classes("joint")]
        return [label[target].format(v) for v in self.classes(target)]

    def n_classes(self, target: str) -> int:
        return len(self.classes(target))

    # indices --------------------------------------------------------------
    def indices(self, split: str = "all", rank: int = 0, size: int = 1) -> np.ndarray:
        """Sorted slice indices of ``split`` owned by ``rank`` of ``size``."""
        if split == "all":
            idx = np.arange(len(self), dtype=np.int64)
        elif split in SPLITS:
            idx = self._split_indices(f"splits/images/{split}", len(self))
        else:
            raise DataError(f"unknown split {split!r}; use train, val, test or all")
        return shard_indices(idx, rank, size)

    def _rows(self, split_or_indices, rank: int, size: int) -> np.ndarray:
        if isinstance(split_or_indices, str):
            return self.indices(split_or_indices, rank, size)
        return shard_indices(np.asarray(split_or_indices, dtype=np.int64), rank, size)

    # data -----------------------------------------------------------------
    def images(self, split="all", rank: int = 0, size: int = 1) -> np.ndarray:
        """Slices ``(n, H, W, 1)`` float32 (mK) of a split name or an index array, in the given order."""
        return read_in_order(self._fh["images"], self._rows(split, rank, size), self.path, "images")

    def labels(self, target: str, split="all", rank: int = 0, size: int = 1) -> np.ndarray:
        """Class indices (int64) of ``target`` for a split name or an index array."""
        self._target(target)
        rows = self._rows(split, rank, size)
        if target == "joint":
            n_f = len(self._classes["escape_fraction"])
            z = self._fh["labels/redshift"][()].astype(np.int64)
            f = self._fh["labels/escape_fraction"][()].astype(np.int64)
            return (z * n_f + f)[rows]
        return self._fh[f"labels/{target}"][()].astype(np.int64)[rows]

    def meta(self, split="all", rank: int = 0, size: int = 1) -> dict[str, np.ndarray]:
        """Metadata columns (:data:`META_COLUMNS` present in the file) for a split name or an index array."""
        rows = self._rows(split, rank, size)
        group = self._fh["meta/images"]
        return {col: group[col][()][rows] for col in META_COLUMNS if col in group}

    def check_classes(self, target: str, splits: Iterable[str] = SPLITS) -> None:
        """:class:`DataError` naming the split and class when a class of ``target`` has no slice in a split."""
        n = self.n_classes(target)
        names = self.class_names(target)
        for split in splits:
            counts = np.bincount(self.labels(target, split), minlength=n)
            empty = [names[k] for k in np.flatnonzero(counts == 0)]
            if empty:
                raise DataError(f"{self.path}: the {split} split has no slices of class(es) {', '.join(empty)} "
                                f"(target {target!r}; split by {self.split_by}); every (redshift, F_ESC10) must be "
                                "simulated for every realisation, or choose another target")


def open_slices(path: str | Path) -> SliceDataset:
    """Open a ``slices21cm`` file for reading (:class:`DataError` with the reason)."""
    return SliceDataset(path)


def describe(path: str | Path, tree: bool = False) -> str:
    """A human-readable summary (``lenshpc info``); ``tree`` adds every HDF5 object with its storage."""
    with open_slices(path) as ds:
        sim = ds.simulator
        lines = [f"{ds.path}: lenshpc 21-cm slice dataset, schema v{ds.attrs['schema_version']}",
                 f"  {len(ds)} slices of {ds.image_shape[0]}×{ds.image_shape[1]} (δT_b, mK); simulator "
                 + ", ".join(f"{k} {v}" for k, v in sim.items() if not isinstance(v, (dict, list)))]
        for target in ds.targets:
            if target != "joint":
                lines.append(f"  {target}: {ds.n_classes(target)} classes {ds.classes(target)}")
        sizes = ", ".join(f"{s} {len(ds.indices(s))}" for s in SPLITS)
        lines.append(f"  split by {ds.split_by} ({sizes})"
                     + (f"; realisations {ds.split_realisations}" if ds.split_by == "realisation" else ""))
        lines.extend(f"  WARNING: {w}" for w in ds.warnings)
        lines.append(f"  content sha256 {ds.attrs.get('content_sha256', '')[:16]}…")
        if tree:
            lines.append("  objects:")
            lines.extend(f"    {line}" for line in hdf5_tree(ds._fh))  # noqa: SLF001 - the reader's own file
        return "\n".join(lines)
