"""Simulated KiDS-like r-band populations: lens galaxies, lensed sources and negatives.

:func:`simulate_population` writes a *population* dataset (``docs/data-format.md``) with
three image arrays, each ``(N, size, size, 1)`` float32 in sky-subtracted electrons
(``lenshpc.data.sim_common`` explains units and observing conditions):

``lenses``
    Luminous red galaxies — elliptical Sérsic, n ≈ 4 — plus random faint field galaxies and
    stars, Moffat PSF (FWHM ≈ 0.7″, varying per image), sky, Poisson and read noise.
``sources``
    Lensed images made with lenstronomy (SIE + external shear; elliptical Sérsic source with
    0–4 clumps), PSF-convolved, *without* lens light or noise: the chunk engine merges them
    into lenses with ``m = l + α·s·max(l)/max(s)`` (thesis Eq. 4.2).  PSF wings fainter than
    1e-6 of the peak are stored as exact zeros (gzip then shrinks the array ~4×).
``negatives``
    80 % contaminants (spirals with arms, ring galaxies, mergers with tidal tails, edge-on
    discs, star + galaxy blends; equally likely) and 20 % plain LRGs, observed like lenses.

Every image is drawn from its own stream ``rng_for(seed, population, index)``, so a file
is byte-identical whatever the number of workers, and the first k images do not depend
on how many were asked for.

Metadata columns (``meta/<population>/<column>``, one value per image)
-----------------------------------------------------------------------
=========  ==================  ================================================================
all        psf_fwhm            PSF FWHM (arcsec), N(0.7, 0.07) clipped to [0.5, 1.0]
all        psf_beta            Moffat β, U(2.5, 4.5)
all        sky_mag             sky surface brightness (mag/arcsec²), U(20.8, 21.6)
lenses     R_eff               LRG effective (geometric-mean) radius, arcsec, 0.3–3
lenses     n_sersic            LRG Sérsic index, N(4, 0.6) clipped to [2.5, 6]
lenses     q, phi              LRG axis ratio (0.45–1) and position angle (rad, 0–π)
lenses     mag, flux           LRG r magnitude U(17, 20) and total electrons
lenses,    n_field_galaxies,   numbers of field galaxies (~2.8) and stars added to the cutout
negatives  n_field_stars
negatives  kind                spiral | ring | merger | edge_on | star_blend | lrg
negatives  mag                 magnitude of the main object
sources    theta_E             Einstein radius (arcsec): truncated exponential on [0.8, 3.0],
                               e-folding 0.7″ (small radii most common)
sources    lens_q, lens_phi    SIE axis ratio U(0.5, 1) and position angle (rad)
sources    lens_x, lens_y      SIE centre (arcsec; sub-pixel jitter)
sources    shear_g1, shear_g2  external shear components, |γ| ≤ 0.05
sources    source_mag,         source r magnitude U(21, 24) and intrinsic total electrons
           source_flux
sources    source_R_eff        source effective radius, log-uniform on [0.1, 0.5]″
sources    source_n            source Sérsic index U(0.5, 3)
sources    source_q,           source axis ratio U(0.3, 1) and position angle (rad)
           source_phi
sources    source_x, source_y  source-plane position (arcsec), uniform in a disc of radius 0.6 θ_E
sources    n_clumps            star-forming clumps (0 for half the sources, else 1–4)
sources    magnification       lensed flux in the cutout / intrinsic source flux
sources    n_pix_lensed,       number / fraction of pixels brighter than 10 % of the lensed
           frac_pix_lensed     image's peak (a noise-independent information-content proxy)
=========  ==================  ================================================================

All ranges are the defaults of :class:`~lenshpc.data.sim_common.SimOptions`; pass any of its
fields as keyword ``options`` to change them.  They are recorded in the provenance attribute.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lenshpc.data.sim_common import SimOptions
from lenshpc.errors import UserError
from lenshpc.utils import progress as progress_bar
from lenshpc.utils import rng_for

log = logging.getLogger(__name__)

GENERATOR = "lenshpc.simulate/1"


def _makers() -> dict[str, Callable]:
    from lenshpc.data.sim_galaxies import lens_image, negative_image
    from lenshpc.data.sim_sources import source_image

    return {"lenses": lens_image, "sources": source_image, "negatives": negative_image}


@lru_cache(maxsize=1)
def _keep_freed_memory() -> bool:
    """Stop glibc from returning freed heap to the OS after every image.

    Each image allocates and frees a few MB of numpy temporaries (ray-shooting grids,
    profiles).  With glibc's defaults the heap top is trimmed and re-faulted every image:
    ~2,500 page faults per image made *half* of the run system time (measured: 6.4 →
    2.4 ms per lensed source).  Keeping up to 256 MB of freed memory (and serving arrays
    below 32 MB from the heap, not from fresh mmaps) removes that.  No-op off glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20))
    except (OSError, AttributeError):
        return False


def simulate_block(population: str, start: int, stop: int, seed: int, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """Images ``start .. stop-1`` of ``population`` and their metadata columns.

    Image ``i`` depends only on ``(seed, population, i)`` and ``opts``.
    """
    _keep_freed_memory()
    make = _makers()[population]
    images = np.empty((stop - start, opts.size, opts.size, 1), dtype=np.float32)
    rows: list[dict] = []
    for k, index in enumerate(range(start, stop)):
        image, meta = make(rng_for(seed, population, index), opts)
        images[k, :, :, 0] = image
        rows.append(meta)
    columns = {key: np.asarray([row[key] for row in rows]) for key in rows[0]} if rows else {}
    return images, columns


def _blocks(counts: dict[str, int], block_size: int) -> list[tuple[str, int, int]]:
    return [(name, start, min(start + block_size, n)) for name, n in counts.items() for start in range(0, n, block_size)]


def _pool_context() -> multiprocessing.context.BaseContext:
    """The process start method for the worker pool.

    "fork" starts workers at once with everything imported, but forking a parent that runs
    native thread pools (TensorFlow) can deadlock; then a "forkserver" whose server has
    imported the simulator once is used (the calling script needs the usual
    ``if __name__ == "__main__":`` guard).  "spawn" would re-import lenstronomy in every
    worker (~2.5 s each).
    """
    if "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lenshpc.data.sim_galaxies", "lenshpc.data.sim_sources",
                                "lenstronomy.LensModel.lens_model", "lenstronomy.LightModel.light_model"])
    return ctx


def _run_blocks(blocks: list[tuple[str, int, int]], seed: int, opts: SimOptions, workers: int
                ) -> Iterator[tuple[tuple[str, int, int], tuple[np.ndarray, dict]]]:
    """Yield ``(block, result)`` as blocks finish (any order); at most ~2 blocks per worker in flight."""
    if workers <= 1:
        for block in blocks:
            yield block, simulate_block(*block, seed, opts)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        pending: dict = {}
        queue = iter(blocks)
        for block in queue:
            pending[pool.submit(simulate_block, *block, seed, opts)] = block
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                block = pending.pop(future)
                yield block, future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(simulate_block, *nxt, seed, opts)] = nxt


def _check_counts(**counts: int) -> dict[str, int]:
    out = {}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise UserError(f"{name} must be a non-negative integer, got {value!r}")
        out[name] = int(value)
    return out


def simulate_population(out, n_lenses: int, n_sources: int, n_negatives: int, seed: int = 0, workers: int = 1,
                        size: int = 101, pixel_scale: float = 0.2, progress: bool = True, **options) -> Path:
    """Simulate a KiDS-like population dataset and write it atomically to ``out``.

    Parameters
    ----------
    out : path
        Destination ``.h5`` file (replaced atomically if it exists; the CLI refuses without ``--force``).
    n_lenses, n_sources, n_negatives : int
        Population sizes (the thesis: 4,411 / 80,000 / 4,867).
    seed : int
        Master seed; image ``i`` of population ``p`` uses ``rng_for(seed, p, i)``.
    workers : int
        Processes; the output does not depend on it.
    size, pixel_scale : int, float
        Cutout side in pixels (≥ 16) and arcsec per pixel (KiDS: 101, 0.2).
    progress : bool
        Show a progress bar.
    **options
        Any field of :class:`~lenshpc.data.sim_common.SimOptions` (e.g. ``theta_E_range=(1, 2)``,
        ``supersampling=2``, ``psf="gaussian"``).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import lenstronomy

    from lenshpc.data.format import PopulationWriter

    counts = _check_counts(lenses=n_lenses, sources=n_sources, negatives=n_negatives)
    opts = SimOptions.from_kwargs(size=size, pixel_scale=float(pixel_scale), **options)
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise UserError(f"workers must be a positive integer, got {workers!r}")
    # CPUs this process may use (a SLURM allocation, not the whole node), and no idle workers.
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(int(workers), available, max(1, len(_blocks(counts, opts.block_size))))
    out = Path(out)
    provenance = {
        "generator": GENERATOR,
        "lenstronomy_version": lenstronomy.__version__,
        "counts": counts,
        "seed": int(seed),
        "options": opts.as_dict(),
        "units": "sky-subtracted electrons; mag = zero_point + 2.5 log10(exposure) - 2.5 log10(counts)",
        "lens_model": ["SIE", "SHEAR"],
        "source_light": ["SERSIC_ELLIPSE", "SERSIC (clumps)"],
    }
    blocks = _blocks(counts, opts.block_size)
    started = time.perf_counter()
    # Sources are noise-free and mostly exact zeros: gzip makes them ≈4× smaller at ~160 MB/s.
    with PopulationWriter(out, counts, (opts.size, opts.size, 1), pixel_scale=opts.pixel_scale, bands=["r"],
                          seed=seed, provenance=provenance, compression={"sources": "gzip"}) as writer:
        with progress_bar(total=sum(counts.values()), desc="simulate", unit="img", disable=not progress or None) as bar:
            for (name, start, stop), (images, columns) in _run_blocks(blocks, seed, opts, workers):
                writer.write(name, start, images, columns)
                bar.update(stop - start)
    elapsed = time.perf_counter() - started
    log.info("simulated %d images in %.1f s with %d worker(s)", sum(counts.values()), elapsed, workers)
    return out
