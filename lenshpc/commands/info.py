"""``lenshpc info DATA.h5``: summarise a dataset file."""

from __future__ import annotations

import argparse

HELP = "summarise a lenshpc HDF5 dataset (kinds, sizes, splits, metadata, provenance)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="dataset file written by `lenshpc simulate`, `stack` or `maxtree`")


def run(args: argparse.Namespace) -> int:
    from lenshpc.data.format import describe

    print(describe(args.path))
    return 0
