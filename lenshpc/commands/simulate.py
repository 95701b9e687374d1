"""``lenshpc simulate``: write a simulated KiDS-like population dataset (lenses, lensed sources, negatives)."""

from __future__ import annotations

import argparse

from lenshpc.commands import reuse_out
from lenshpc.errors import UserError

HELP = "simulate a KiDS-like r-band population (LRG lenses, lenstronomy lensed sources, contaminant negatives)"

DESCRIPTION = """\
Simulate a KiDS-like r-band population dataset (HDF5, see docs/data-format.md):

  lenses     LRGs (elliptical Sérsic, n≈4) + faint field galaxies and stars, Moffat PSF
             (FWHM≈0.7"), sky + Poisson + read noise
  sources    lensed images from lenstronomy (SIE + external shear, elliptical Sérsic source
             with clumps), Einstein radius 0.8–3.0" (truncated exponential), PSF-convolved,
             no lens light and no noise (merged into lenses later, thesis Eq. 4.2)
  negatives  80 % contaminants (spirals, rings, mergers, edge-on discs, star blends)
             + 20 % plain LRGs

Thesis sizes:
  lenshpc simulate --out data/kids.h5 --lenses 4411 --sources 80000 --negatives 4867 --workers 8
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DATA.h5", help="output HDF5 file")
    p.add_argument("--lenses", type=int, required=True, metavar="N", help="number of lens galaxies (thesis: 4411)")
    p.add_argument("--sources", type=int, required=True, metavar="N", help="number of lensed sources (thesis: 80000)")
    p.add_argument("--negatives", type=int, required=True, metavar="N", help="number of negatives (thesis: 4867)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="master random seed (default 0)")
    p.add_argument("--workers", type=int, default=1, metavar="W",
                   help="worker processes (default 1; capped at the CPU count; output does not depend on it)")
    p.add_argument("--size", type=int, default=101, metavar="PX", help="cutout side in pixels (default 101 = 20.2\")")
    p.add_argument("--pixel-scale", type=float, default=0.2, metavar="ARCSEC",
                   help="arcsec per pixel (default 0.2, KiDS)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def run(args: argparse.Namespace) -> int:
    reuse_out(args, "population.h5")  # an existing OUT is refused without --force
    for flag, value in (("--lenses", args.lenses), ("--sources", args.sources), ("--negatives", args.negatives)):
        if value < 0:
            raise UserError(f"{flag} must be a non-negative number of images, got {value}")
    if args.size < 16:
        raise UserError(f"--size must be at least 16 pixels, got {args.size}")
    if args.pixel_scale <= 0:
        raise UserError(f"--pixel-scale must be positive, got {args.pixel_scale}")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")

    from lenshpc.data.format import describe
    from lenshpc.data.simulate import simulate_population

    simulate_population(args.out, n_lenses=args.lenses, n_sources=args.sources, n_negatives=args.negatives,
                        seed=args.seed, workers=args.workers, size=args.size, pixel_scale=args.pixel_scale,
                        progress=True)
    print(describe(args.out))
    return 0
