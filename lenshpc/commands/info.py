"""``lenshpc info DATA.h5``: summarise a dataset file."""

from __future__ import annotations

import argparse

from lenshpc.errors import DataError

HELP = "summarise a lenshpc HDF5 dataset (kinds, sizes, splits, metadata, skipped inputs, provenance)"
DESCRIPTION = """Summarise a lenshpc HDF5 dataset: kind, schema version, image shape, pixel scale, bands,
per-array sizes and split sizes, metadata columns, labels, inputs skipped by `lenshpc stack`, provenance.

Examples:
  lenshpc info data/population.h5
  lenshpc info --tree data/challenge.h5     # also every HDF5 object with shape, dtype, chunks
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="dataset file written by `lenshpc simulate`, `stack`, `maxtree`, `simulate21cm` or `stack21cm`")
    p.add_argument("--tree", action="store_true", help="also list every HDF5 dataset with shape, dtype and storage")


def run(args: argparse.Namespace) -> int:
    import h5py

    from lenshpc.data.format import decode_attr, describe, hdf5_tree

    try:
        print(describe(args.path, tree=args.tree))
    except DataError:
        # Other lenshpc files (e.g. SEG.h5 from `lenshpc maxtree`) have their own layout: list them generically.
        kind = _other_lenshpc_kind(args.path)
        if kind is None:
            raise
        with h5py.File(args.path, "r") as fh:
            print(f"{args.path}: lenshpc {kind} file")
            for key, value in fh.attrs.items():
                print(f"  {key}: {str(decode_attr(value))[:300]}")
            for line in hdf5_tree(fh):
                print(f"  {line}")
    return 0


def _other_lenshpc_kind(path: str) -> str | None:
    import h5py

    from lenshpc.data.format import decode_attr

    try:
        with h5py.File(path, "r") as fh:
            kind = decode_attr(fh.attrs.get("lenshpc_format"))
    except OSError:
        return None
    return kind if kind and kind not in ("population", "labelled") else None
