"""What the reliability guards cost (docs/reliability.md): the NaN/Inf check on reads, the disk guard on writes.

Compares, in one run on the same files (best of ``--repeats``; the page cache is warm after the first read):

(a) pool load, plain   — ``lenshpc.data.chunks.read_rows`` of every image of a population with the finiteness check
                         switched off (the baseline: what the chunk engine did before);
(b) pool load, checked — the same with ``format.check_finite`` (what the engine does now);
(c) write, native      — ``PopulationWriter`` with h5py writing the file directly (the baseline);
(d) write, guarded     — ``PopulationWriter`` through ``format.DiskGuard`` (a full disk fails cleanly).

Usage::

    python benchmarks/reliability.py                      # 6,000 images of 101×101 (≈245 MB), 3 repeats
    python benchmarks/reliability.py --images 2000 --size 64
"""

from __future__ import annotations

import argparse
import os
import tempfile
import timeit
from pathlib import Path

import numpy as np

os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")

from lenshpc.data import chunks, format as fmt  # noqa: E402


def best(fn, repeats: int) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeats))


class _Plain(str):
    """Stands in for the disk guard: h5py opens the path itself (the baseline)."""

    error = None

    def close(self) -> None:
        pass


def write(path: Path, counts: dict, shape: tuple, blocks: dict, guarded: bool) -> None:
    guard = fmt.DiskGuard
    fmt.DiskGuard = guard if guarded else _Plain  # noqa: SLF001 - the switch being measured
    try:
        with fmt.PopulationWriter(path, counts, shape, compression={"sources": "gzip"}) as w:
            for name, n in counts.items():
                for start in range(0, n, 64):
                    w.write(name, start, blocks[name][: min(64, n - start)])
    finally:
        fmt.DiskGuard = guard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=6000, help="images per file, split 1:2:1 (default 6000)")
    ap.add_argument("--size", type=int, default=101, help="cutout side (default 101)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shape = (args.size, args.size, 1)
    counts = {"lenses": args.images // 4, "sources": args.images // 2, "negatives": args.images // 4}
    noise = rng.normal(size=(64, *shape)).astype(np.float32)
    sparse = np.where(noise > 1.5, noise, 0).astype(np.float32)  # sources: mostly exact zeros (gzip)
    blocks = {"lenses": noise, "sources": sparse, "negatives": noise}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pop.h5"
        t_native = best(lambda: write(path, counts, shape, blocks, guarded=False), args.repeats)
        t_guard = best(lambda: write(path, counts, shape, blocks, guarded=True), args.repeats)
        n_all = sum(counts.values())

        def load() -> None:
            with fmt.open_dataset(path) as ds:
                for name, n in counts.items():
                    chunks.read_rows(ds, name, np.arange(n))

        checker = chunks.check_finite
        chunks.check_finite = lambda images, *a, **k: images
        try:
            t_plain = best(load, args.repeats)
        finally:
            chunks.check_finite = checker
        t_check = best(load, args.repeats)
        pool = np.concatenate([np.resize(blocks[name], (n, *shape)) for name, n in counts.items()])
        t_alone = best(lambda: fmt.nonfinite_rows(pool), args.repeats)
        mb = n_all * int(np.prod(shape)) * 4 / 1e6
    print(f"{n_all} images {args.size}×{args.size} ({mb:.0f} MB), best of {args.repeats}")
    print("| step | seconds | MB/s | vs baseline |")
    print("|---|---:|---:|---:|")
    print(f"| pool load, no check (baseline) | {t_plain:.3f} | {mb / t_plain:.0f} | 1.00× |")
    print(f"| pool load, NaN/Inf check | {t_check:.3f} | {mb / t_check:.0f} | {t_check / t_plain:.2f}× |")
    print(f"| NaN/Inf check alone (in RAM) | {t_alone:.3f} | {mb / t_alone:.0f} | {t_alone / t_plain:.2f}× of (a) |")
    print(f"| write, h5py native (baseline) | {t_native:.3f} | {mb / t_native:.0f} | 1.00× |")
    print(f"| write, disk guard | {t_guard:.3f} | {mb / t_guard:.0f} | {t_guard / t_native:.2f}× |")


if __name__ == "__main__":
    main()
