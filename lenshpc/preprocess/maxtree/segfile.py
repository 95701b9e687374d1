"""The segmented dataset file ``SEG.h5`` written by ``lenshpc maxtree`` (layout: docs/data-format.md).

One HDF5 group per image set (``lenses``/``negatives`` or ``images``, ``pool``, ``val``, ``test``), each with
``images``, ``labels`` (val/test) and ``meta/<col>``; ``content_sha256`` is equal for any shard count and executor.
Shard files (``SEG.h5.shards/shard-0003-of-0008.h5``) have the same layout restricted to the shard's rows, each
group with the attribute ``first`` (the shard's first row in the merged group).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Iterable, Mapping

import h5py
import numpy as np

from lenshpc import __version__
from lenshpc.data.format import (H5Reader, H5Writer, _image_chunks, _write_meta_column, create_h5, decode_attr,
                                 hdf5_digest, read_column, read_in_order, set_attrs)
from lenshpc.errors import DataError
from lenshpc.utils import atomic_path

FORMAT = "segmented"
SCHEMA_VERSION = 1


# ---------------------------------------------------------------------- shards
class ShardWriter(H5Writer):
    """Write one shard file incrementally and atomically (renamed into place when the ``with`` block ends).

    A block that raises leaves no shard file behind, so an interrupted shard is simply redone on the next run.
    """

    def __init__(self, path: str | Path, attrs: Mapping):
        self.path = Path(path)
        self._attrs = dict(attrs)

    def add(self, group: str, first: int, n: int, image_shape: tuple[int, ...]) -> None:
        """Declare rows ``first .. first+n-1`` of ``group`` (images are filled by :meth:`write`)."""
        g = self._fh.create_group(group)
        g.attrs["first"] = int(first)
        g.create_dataset("images", shape=(n, *image_shape), dtype=np.float32)
        g.create_group("meta")

    def write(self, group: str, offset: int, images: np.ndarray) -> None:
        """Store ``images`` at rows ``offset..`` of this shard's piece of ``group``."""
        self._fh[group]["images"][offset:offset + len(images)] = images

    def column(self, group: str, name: str, values: np.ndarray) -> None:
        """Store a whole column: ``labels`` or a metadata column."""
        _write_column(self._fh[group], name, values)

    def _finish(self) -> None:
        set_attrs(self._fh, {"lenshpc_format": "segmented-shard", "schema_version": SCHEMA_VERSION, **self._attrs})


def _write_column(group: h5py.Group, name: str, values: np.ndarray) -> None:
    """``labels`` (uint8) or the metadata column ``meta/<name>`` of ``group``."""
    if name == "labels":
        group.create_dataset("labels", data=np.asarray(values, dtype=np.uint8))
    else:
        _write_meta_column(group.require_group("meta"), name, values)


def merge_shards(shard_paths: Iterable[str | Path], out: str | Path, sizes: Mapping[str, int], attrs: Mapping,
                 image_shape: tuple[int, ...]) -> str:
    """Concatenate shards into ``out`` (atomically) and return its content digest.

    ``sizes[group]`` is the merged length of each group; every row must come from exactly
    one shard (checked).  Images are copied shard by shard, never all in memory.
    """
    shard_paths = [Path(p) for p in shard_paths]
    with atomic_path(out) as tmp, create_h5(tmp) as dst:
        filled = {g: np.zeros(n, dtype=bool) for g, n in sizes.items()}
        for group, n in sizes.items():
            g = dst.create_group(group)
            shape = (n, *image_shape)
            g.create_dataset("images", shape=shape, dtype=np.float32, chunks=_image_chunks(shape) if n else None)
        columns: dict[str, dict[str, list]] = {g: {} for g in sizes}
        for path in shard_paths:
            with h5py.File(path, "r") as src:
                for group in src:
                    if group not in sizes:
                        raise DataError(f"{path}: unexpected group '{group}' (shard from another plan?)")
                    piece = src[group]
                    first, images = int(piece.attrs["first"]), piece["images"]
                    stop = first + len(images)
                    if stop > sizes[group] or filled[group][first:stop].any():
                        raise DataError(f"{path}: rows {first}:{stop} of '{group}' overlap another shard")
                    filled[group][first:stop] = True
                    dst[group]["images"][first:stop] = images[()]
                    if "labels" in piece:
                        columns[group].setdefault("labels", []).append((first, piece["labels"][()]))
                    for col, ds in piece["meta"].items():  # never named "labels" (ShardWriter.column)
                        columns[group].setdefault(col, []).append((first, read_column(ds)))
        for group, mask in filled.items():
            if not mask.all():
                raise DataError(f"merge: rows of '{group}' are missing ({int((~mask).sum())} of {len(mask)}); "
                                "a shard is incomplete — re-run the command")
        for group, cols in columns.items():
            for name, parts in cols.items():
                parts.sort(key=lambda p: p[0])
                _write_column(dst[group], name, np.concatenate([p[1] for p in parts]))
            dst[group].require_group("meta")
        digest = hdf5_digest(dst)
        set_attrs(dst, {"lenshpc_format": FORMAT, "schema_version": SCHEMA_VERSION, "lenshpc_version": __version__,
                        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        **attrs, "content_sha256": digest})
    return digest


# ---------------------------------------------------------------------- digest
def content_digest(path: str | Path) -> str:
    """SHA-256 over every dataset (name, dtype, shape, bytes): equal ⇔ same content."""
    with h5py.File(path, "r") as fh:
        return hdf5_digest(fh)


# ---------------------------------------------------------------------- reading
class SegmentedDataset(H5Reader):
    """Reader for ``SEG.h5``.

    Parameters
    ----------
    path : str or Path
        A file written by ``lenshpc maxtree``.

    Raises
    ------
    DataError
        When the file is missing, unreadable or not a segmented dataset.
    """

    JSON_ATTRS = ("maxtree", "data", "source", "provenance")

    def __init__(self, path: str | Path):
        self._open(path, "segmented dataset", "; create it with `lenshpc maxtree DATA.h5 --out SEG.h5`")

    def _check(self) -> None:
        kind = decode_attr(self._fh.attrs.get("lenshpc_format"))
        if kind != FORMAT:
            raise DataError(f"{self.path}: not a segmented dataset (lenshpc_format={kind!r}); "
                            "create one with `lenshpc maxtree DATA.h5 --out SEG.h5`")

    @property
    def groups(self) -> list[str]:
        return list(self._fh.keys())

    def _group(self, group: str) -> h5py.Group:
        if group not in self._fh:
            raise DataError(f"{self.path}: no set '{group}' (has: {', '.join(self.groups)})")
        return self._fh[group]

    def count(self, group: str) -> int:
        return len(self._group(group)["images"])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._fh[self.groups[0]]["images"].shape[1:])

    def read(self, group: str, indices: np.ndarray | None = None) -> np.ndarray:
        """Images of ``group`` at ``indices`` (all when None), in the given order."""
        return read_in_order(self._group(group)["images"], indices, self.path, f"{group}/images")

    def labels(self, group: str) -> np.ndarray:
        g = self._group(group)
        if "labels" not in g:
            raise DataError(f"{self.path}: set '{group}' has no labels")
        return g["labels"][()]

    def meta(self, group: str) -> dict[str, np.ndarray]:
        g = self._group(group)
        return {col: read_column(g["meta"][col]) for col in sorted(g.get("meta", {}))}


def describe(path: str | Path) -> str:
    """A human-readable summary of a segmented dataset."""
    with SegmentedDataset(path) as seg:
        a = seg.attrs
        lines = [f"{seg.path}: lenshpc segmented dataset, schema v{a.get('schema_version')}",
                 f"  from {a.get('source', {}).get('path')}, {a.get('shards')} shard(s) via {a.get('executor')}, "
                 f"created {a.get('created')} by lenshpc {a.get('lenshpc_version')} ({a.get('code_version')})",
                 f"  max-tree: {json.dumps(a.get('maxtree'))}",
                 f"  content sha256 {a.get('content_sha256')}"]
        for group in seg.groups:
            cols = ", ".join(seg.meta(group)) or "-"
            lines.append(f"  {group}: {seg.count(group)} images {seg.image_shape}; metadata: {cols}")
        return "\n".join(lines)
