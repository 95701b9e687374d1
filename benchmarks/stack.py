"""Benchmark `lenshpc stack` and the HDF5 storage choice for stacked cutouts.

Prints
1. cutouts/s of ``stack_labelled`` with 1 and W worker processes, against a naive serial
   baseline measured in the same run (``fits.getdata`` per file into a list, ``np.stack``,
   the thesis's load-everything-from-FITS approach, without any validation);
2. for the stacked image array: file size and full-read throughput of HDF5 storage without
   compression (what ``write_labelled`` does), with lzf and with gzip-4 + shuffle.

The cutouts are 101×101 float32 with sky noise plus a Sérsic-like galaxy, like sky-subtracted
survey cutouts (noise-dominated pixels are what decides compressibility).

    python benchmarks/stack.py --files 4000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits
from astropy.table import Table

os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")

from lenshpc.data.stack import stack_labelled  # noqa: E402


def make_cutouts(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:size, :size] - size // 2
    r = np.hypot(x, y)
    (root / "vis").mkdir()
    for i in range(n):
        galaxy = rng.uniform(50, 500) * np.exp(-7.67 * ((r / rng.uniform(3, 10)) ** 0.25 - 1))
        image = (galaxy + rng.normal(0, 10, (size, size))).astype(np.float32)
        fits.PrimaryHDU(image).writeto(root / "vis" / f"imageEUC_VIS-{100000 + i}.fits")
    Table({"ID": np.arange(100000, 100000 + n), "is_lens": np.arange(n) % 2}).write(root / "cat.csv", format="ascii.csv")
    return root


def naive(files: list[Path]) -> np.ndarray:
    return np.stack([fits.getdata(f).astype(np.float32) for f in files])


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--size", type=int, default=101)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = make_cutouts(Path(tmp), args.files, args.size)
        files = sorted((root / "vis").glob("*.fits"))
        naive(files[:200])  # warm the page cache and imports equally for every contender
        t_naive, ref = timed(naive, files)
        print(f"{args.files} cutouts {args.size}×{args.size}, {len(os.sched_getaffinity(0))} CPUs")
        print(f"  naive serial getdata + np.stack : {args.files / t_naive:8.0f} cutouts/s  (1.00×)")
        for workers in sorted({1, args.workers}):
            out = root / f"w{workers}.h5"
            t, _ = timed(stack_labelled, out, str(root / "vis"), root / "cat.csv", workers=workers, pixel_scale=0.1)
            with h5py.File(out) as fh:
                assert np.array_equal(fh["images"][:, :, :, 0], ref)
            print(f"  lenshpc stack, {workers} worker(s)      : {args.files / t:8.0f} cutouts/s  "
                  f"({t_naive / t:.2f}× naive; validated, written to HDF5)")

        images = ref[..., None]
        chunks = (max(1, (2 << 20) // (images[0].nbytes)), *images.shape[1:])
        print(f"  HDF5 storage of the {images.nbytes / 2**20:.0f} MiB image array (chunks {chunks}):")
        base = None
        for label, kw in [("none", {}), ("lzf", {"compression": "lzf", "shuffle": True}),
                          ("gzip-4+shuffle", {"compression": "gzip", "compression_opts": 4, "shuffle": True})]:
            path = root / f"c_{label}.h5"
            with h5py.File(path, "w") as fh:
                t_write, _ = timed(fh.create_dataset, "x", data=images, chunks=chunks, **kw)
            with h5py.File(path) as fh:
                t_read, _ = timed(lambda: fh["x"][()])
            size = path.stat().st_size
            base = base or (size, t_read)
            print(f"    {label:15s} size {size / base[0]:.2f}×  write {images.nbytes / 2**20 / t_write:6.0f} MiB/s  "
                  f"read {images.nbytes / 2**20 / t_read:6.0f} MiB/s ({base[1] / t_read:.2f}× uncompressed)")


if __name__ == "__main__":
    main()
