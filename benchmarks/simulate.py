"""Benchmark ``lenshpc simulate``: ms/image per population on one core, and the speed-up with workers.

Prints, for 101×101 KiDS-like cutouts:

* ms/image (CPU time, and wall time) for lenses, sources and negatives, generated in-process
  on one core (``simulate_block``; no file I/O, after a warm-up block); CPU time is robust
  against other jobs sharing the machine, wall time is not;
* wall time of ``simulate_population`` for a mixed population with 1 and with W workers
  (including process start-up and the HDF5 write) and the ratio;
* the projected wall time of the thesis sizes (4,411 / 80,000 / 4,867) with W workers.

Run: ``python benchmarks/simulate.py [--n 60] [--workers 2] [--size 101]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")

def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


_BASELINE = """
import sys, time
from lenshpc.data.sim_common import SimOptions
from lenshpc.data.sim_sources import source_image
from lenshpc.utils import rng_for
opts = SimOptions.from_kwargs(size=int(sys.argv[1]))
n = int(sys.argv[2])
for i in range(4):
    source_image(rng_for(0, "sources", 10**6 + i), opts)
t = time.process_time()
for i in range(n):
    source_image(rng_for(0, "sources", i), opts)
print((time.process_time() - t) / n)
"""

THESIS = {"lenses": 4411, "sources": 80000, "negatives": 4867}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="images per population for the per-population timing")
    parser.add_argument("--workers", type=int, default=2, help="workers for the parallel run")
    parser.add_argument("--size", type=int, default=101, help="cutout side in pixels")
    parser.add_argument("--mixed", type=int, default=1200, help="images in the mixed-population end-to-end run")
    args = parser.parse_args()

    from lenshpc.data.sim_common import SimOptions
    from lenshpc.data.simulate import simulate_block, simulate_population

    opts = SimOptions.from_kwargs(size=args.size)
    per_image = {}
    print(f"simulate benchmark: {args.size}x{args.size} px, supersampling {opts.supersampling}, "
          f"{os.cpu_count()} CPU core(s)")
    for name in ("lenses", "sources", "negatives"):
        simulate_block(name, 10**6, 10**6 + 4, 0, opts)  # warm-up: imports, caches
        t, c = time.perf_counter(), time.process_time()
        simulate_block(name, 0, args.n, 0, opts)
        wall, per_image[name] = (time.perf_counter() - t) / args.n, (time.process_time() - c) / args.n
        print(f"  {name:<9} {1000 * per_image[name]:7.1f} ms/image CPU, {1000 * wall:7.1f} ms/image wall "
              f"(one process, {args.n} images)")
    # Baseline for the malloc tuning: the same image makers in a fresh interpreter with glibc's
    # default malloc (simulate_block, which tunes it, is bypassed).
    baseline = subprocess.run([sys.executable, "-c", _BASELINE, str(args.size), str(args.n)], check=True,
                              capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    base = float(baseline.stdout.strip().splitlines()[-1])
    print(f"  sources, glibc default malloc (baseline): {1000 * base:.1f} ms/image CPU "
          f"-> tuned is {base / per_image['sources']:.2f}x faster")
    thesis_core_s = sum(THESIS[k] * per_image[k] for k in THESIS)
    print(f"  thesis sizes {THESIS}: {thesis_core_s / 60:.1f} core-minutes")

    n = args.mixed
    counts = dict(n_lenses=n // 4, n_sources=n // 2, n_negatives=n - n // 4 - n // 2)
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        print(f"  load average before the parallel runs: {os.getloadavg()[0]:.2f} "
              f"(other processes on the machine reduce the speed-up)")
        for workers in (1, args.workers):
            cpu0 = _cpu_seconds()
            t = time.perf_counter()
            simulate_population(Path(tmp) / f"w{workers}.h5", **counts, seed=0, workers=workers, size=args.size,
                                progress=False)
            walls[workers] = time.perf_counter() - t
            cpu = _cpu_seconds() - cpu0
            print(f"  end-to-end {n} mixed images, {workers} worker(s): {walls[workers]:6.2f} s wall "
                  f"({1000 * walls[workers] / n:.1f} ms/image), {cpu:.2f} CPU-s, "
                  f"{cpu / walls[workers]:.2f} cores busy on average")
        same = (Path(tmp) / "w1.h5").read_bytes() == (Path(tmp) / f"w{args.workers}.h5").read_bytes()
        speedup = walls[1] / walls[args.workers]
        print(f"  speed-up with {args.workers} workers: {speedup:.2f}x")
        print(f"  thesis sizes with {args.workers} workers (projected): {thesis_core_s / speedup / 60:.1f} min")
        from lenshpc.data.format import open_dataset
        import numpy as np

        with open_dataset(Path(tmp) / "w1.h5") as a, open_dataset(Path(tmp) / f"w{args.workers}.h5") as b:
            identical = all(np.array_equal(a.read(k), b.read(k)) for k in a.names)
        print(f"  arrays identical for 1 and {args.workers} workers: {identical} (whole file bytes equal: {same})")


if __name__ == "__main__":
    main()
