"""Benchmark the 21-cm simulation path: 21cmFAST itself, lenshpc's driver around it, and slice writing.

Prints, with one core (N_THREADS=1, one process at a time):

1. initial conditions per minute and (z, F_ESC10) boxes per minute (ICs reused) at 64³ / 96 Mpc, plus 128³ /
   192 Mpc with ``--big`` (slow: ~40 s per IC), with the peak resident memory of the process;
2. ``lenshpc simulate21cm`` end to end (worker process per realisation, slicing, part files, merge) on a small
   64³ grid, against the bare 21cmFAST calls for the same boxes measured in the same run (the driver's overhead);
3. slices/s into the slice dataset (``SliceWriter``: pre-sized HDF5, finite check, labels, split, content
   digest) against a plain ``numpy.save`` of the same array (baseline).

    python benchmarks/sim21cm.py            # ~1.5 min on an idle core
    python benchmarks/sim21cm.py --big      # + 128³ (~2 min more, ~2 GB RSS)
    python benchmarks/sim21cm.py --seed-scale   # + 200³ / 300 Mpc, the seed's boxes (~2 min more, ~6 GB RSS)
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")

import numpy as np  # noqa: E402

import lenshpc  # noqa: E402,F401 - the project's runtime settings first
from lenshpc.data.cosmo21cm import slices  # noqa: E402
from lenshpc.data.cosmo21cm.params import TEMPLATE, Grid, require_21cmfast  # noqa: E402
from lenshpc.data.cosmo21cm.simulate import simulate21cm  # noqa: E402


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bare_boxes(grid: Grid) -> tuple[float, float, int, int, list[np.ndarray], float]:
    """Time the 21cmFAST calls alone: (IC seconds, box seconds, n ICs, n boxes, the δT_b boxes, wall seconds).

    CPU seconds of this process (N_THREADS=1: one core), so other jobs on the machine barely change them.
    """
    p21c = require_21cmfast()
    t_ic = t_box = 0.0
    cubes = []
    wall = time.perf_counter()
    for r in range(grid.realisations):
        ic = None
        for z, f in grid.boxes:
            inputs = p21c.InputParameters.from_template(TEMPLATE, **grid.input_kwargs(f, r))
            if ic is None:
                start = time.process_time()
                ic = p21c.compute_initial_conditions(inputs=inputs)
                t_ic += time.process_time() - start
            start = time.process_time()
            c = p21c.run_coeval(inputs=inputs, out_redshifts=[z], write=False, initial_conditions=ic)[0]
            cubes.append(np.asarray(c.brightness_temp, dtype=np.float32))
            t_box += time.process_time() - start
    return t_ic, t_box, grid.realisations, grid.realisations * len(grid.boxes), cubes, time.perf_counter() - wall


def rates(label: str, grid: Grid) -> tuple[float, list[np.ndarray]]:
    t_ic, t_box, n_ic, n_box, cubes, wall = bare_boxes(grid)
    print(f"{label} (CPU time): {60 * n_ic / t_ic:6.1f} ICs/min/core ({t_ic / n_ic:5.1f} s each), "
          f"{60 * n_box / t_box:6.1f} boxes/min/core ({t_box / n_box:5.2f} s each, ICs reused); "
          f"peak RSS {rss_gb():.2f} GB")
    return wall, cubes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2, help="realisations (ICs) per size (default 2)")
    parser.add_argument("--redshifts", type=float, nargs="+", default=[8.0, 9.0])
    parser.add_argument("--fesc", type=float, nargs="+", default=[-1.3, -0.7])
    parser.add_argument("--big", action="store_true", help="also 128³ / 192 Mpc (slow)")
    parser.add_argument("--seed-scale", action="store_true",
                        help="also the seed's 200³ / 300 Mpc (one IC + one box: ~2 min, ~6 GB)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"load average before: {os.getloadavg()[0]:.2f} (numbers assume an idle core)")
    grid64 = Grid.checked(args.redshifts, args.fesc, max(3, args.seeds), hii_dim=64, box_len=96.0, seed=0)
    bare64, cubes = rates("64³ / 96 Mpc ", dataclass_replace(grid64, realisations=args.seeds))
    if args.big:
        rates("128³ / 192 Mpc", Grid.checked(args.redshifts[:1], args.fesc, 1, hii_dim=128, box_len=192.0, seed=0))
    if args.seed_scale:
        rates("200³ / 300 Mpc", Grid.checked(args.redshifts[:1], args.fesc[:1], 1, hii_dim=200, box_len=300.0, seed=0))

    with tempfile.TemporaryDirectory() as tmp:
        small = dataclass_replace(grid64, realisations=args.seeds)
        bare = bare64
        # simulate21cm refuses fewer than 3 realisations for a realisation split: a slice split is fine here
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simulate21cm(small, Path(tmp) / "sim.h5", split_by="slice")
        driver = time.perf_counter() - start
        print(f"simulate21cm end to end ({small.realisations} realisations × {len(small.boxes)} boxes, 64³, "
              f"{small.n_slices} slices): {driver:.1f} s vs the bare 21cmFAST calls {bare:.1f} s (both wall "
              f"time) → x{driver / bare:.2f} (worker processes, slicing, part files, merge)")

        images = np.concatenate([slices.cut_slices(c, np.arange(64))[0] for c in cubes])
        n = len(images)
        meta = {"realisation": np.repeat(np.arange(len(cubes)), n // len(cubes)) % 3,
                "redshift": np.full(n, args.redshifts[0]), "f_esc10": np.full(n, args.fesc[0])}
        start = time.perf_counter()
        slices.write_slices(Path(tmp) / "w.h5", images, meta, classes={"redshift": args.redshifts[:1],
                                                                       "escape_fraction": args.fesc[:1]})
        t_write = time.perf_counter() - start
        start = time.perf_counter()
        np.save(Path(tmp) / "w.npy", images)
        os.sync()
        t_npy = time.perf_counter() - start
        mb = images.nbytes / 2**20
        print(f"slice writing ({n} slices of 64×64, {mb:.0f} MB): SliceWriter {n / t_write:8.0f} slices/s "
              f"({mb / t_write:5.0f} MB/s) vs numpy.save {n / t_npy:8.0f} slices/s → x{t_npy / t_write:.2f} of the "
              "baseline's throughput")


def dataclass_replace(grid: Grid, **changes) -> Grid:
    import dataclasses

    return dataclasses.replace(grid, **changes)


if __name__ == "__main__":
    main()
