"""Lensed sources with lenstronomy: SIE + external shear deflecting an elliptical Sérsic source with clumps.

The image is the lensed source alone — no lens light, no sky, no noise — PSF-convolved, as
the thesis stores its sources (Sec. 4.2); the chunk engine adds it to a real lens with
``m = l + α·s·max(l)/max(s)``.  Rays are shot from every sub-pixel (``supersampling``² per
pixel) with ``lenstronomy.LensModel`` and the source light is evaluated with
``lenstronomy.LightModel`` only where rays land near the source, which keeps this cheap.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from lenshpc.data.sim_common import (Canvas, Conditions, SimOptions, ellipticity, finish, light_model, pixel_axis,
                                     sersic_amp)


#: lensed-source pixels fainter than this fraction of the image's peak are stored as 0
ZERO_BELOW = 1e-6


@lru_cache(maxsize=1)
def _lens_model():
    from lenstronomy.LensModel.lens_model import LensModel

    return LensModel(["SIE", "SHEAR"])


@lru_cache(maxsize=8)
def _image_plane(size: int, pixel_scale: float, sub: int) -> tuple[np.ndarray, np.ndarray]:
    xx, yy = np.meshgrid(pixel_axis(size, pixel_scale, sub), pixel_axis(size, pixel_scale, sub))
    return xx.ravel(), yy.ravel()


def draw_theta_E(rng: np.random.Generator, opts: SimOptions) -> float:
    """Einstein radius from an exponential distribution truncated to ``theta_E_range``.

    Small radii are the most common (thesis Sec. 5.3, after Petrillo et al.): density
    ∝ exp(−θ_E / scale) on [low, high]; drawn by inverting the CDF (one uniform number).
    """
    lo, hi = opts.theta_E_range
    u = rng.uniform()
    return float(lo - opts.theta_E_scale * math.log1p(-u * (1.0 - math.exp(-(hi - lo) / opts.theta_E_scale))))


def draw_source(rng: np.random.Generator, opts: SimOptions) -> dict:
    """Lens-model and source parameters of one lensed source."""
    theta_E = draw_theta_E(rng, opts)
    lens_q, lens_phi = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.0, math.pi))
    lens_x, lens_y = (float(v) for v in rng.uniform(-0.5, 0.5, 2) * opts.pixel_scale)
    gamma, gamma_phi = float(rng.uniform(0.0, opts.shear_max)), float(rng.uniform(0.0, math.pi))
    r = opts.source_offset_max * theta_E * math.sqrt(rng.uniform())
    a = rng.uniform(0.0, 2 * math.pi)
    lo, hi = opts.source_R_eff_range
    p = {
        "theta_E": theta_E, "lens_q": lens_q, "lens_phi": lens_phi, "lens_x": lens_x, "lens_y": lens_y,
        "shear_g1": gamma * math.cos(2 * gamma_phi), "shear_g2": gamma * math.sin(2 * gamma_phi),
        "source_mag": float(rng.uniform(*opts.source_mag_range)),
        "source_R_eff": float(math.exp(rng.uniform(math.log(lo), math.log(hi)))),  # log-uniform
        "source_n": float(rng.uniform(*opts.source_n_range)),
        "source_q": float(rng.uniform(0.3, 1.0)), "source_phi": float(rng.uniform(0.0, math.pi)),
        "source_x": lens_x + r * math.cos(a), "source_y": lens_y + r * math.sin(a),
    }
    # Star-forming clumps: half the sources have none, the rest 1..max_clumps.
    n_clumps = 0 if opts.max_clumps == 0 or rng.uniform() < 0.5 else int(rng.integers(1, opts.max_clumps + 1))
    clumps = []
    for _ in range(n_clumps):
        dx, dy = rng.normal(0.0, p["source_R_eff"], 2)
        clumps.append({"x": p["source_x"] + float(dx), "y": p["source_y"] + float(dy),
                       "R_eff": float(rng.uniform(0.03, 0.1)), "weight": float(rng.uniform(0.05, 0.2))})
    p["n_clumps"] = n_clumps
    p["clumps"] = clumps
    return p


def _add_lensed(out: np.ndarray, bx: np.ndarray, by: np.ndarray, name: str, kwargs: dict, radius: float) -> None:
    # Evaluate the profile only for rays landing within `radius` of its centre (exact zero
    # beyond: ≲1e-5 of the peak for the Sérsic indices drawn here).
    near = np.flatnonzero((bx - kwargs["center_x"]) ** 2 + (by - kwargs["center_y"]) ** 2 < radius**2)
    if len(near):
        out[near] += light_model(name).surface_brightness(bx[near], by[near], [kwargs])


def lensed_source(p: dict, opts: SimOptions) -> tuple[np.ndarray, float]:
    """Super-sampled lensed-source surface brightness ``(size·s, size·s)`` and its intrinsic total flux."""
    xx, yy = _image_plane(opts.size, opts.pixel_scale, opts.supersampling)
    e1, e2 = ellipticity(p["lens_phi"], p["lens_q"])
    kwargs_lens = [{"theta_E": p["theta_E"], "e1": e1, "e2": e2, "center_x": p["lens_x"], "center_y": p["lens_y"]},
                   {"gamma1": p["shear_g1"], "gamma2": p["shear_g2"], "ra_0": p["lens_x"], "dec_0": p["lens_y"]}]
    bx, by = _lens_model().ray_shooting(xx, yy, kwargs_lens)

    total = opts.counts(p["source_mag"])
    clump_weight = sum(c["weight"] for c in p["clumps"])
    main_flux = total / (1.0 + clump_weight)
    sb = np.zeros(len(xx))
    se1, se2 = ellipticity(p["source_phi"], p["source_q"])
    R, n = p["source_R_eff"], p["source_n"]
    _add_lensed(sb, bx, by, "SERSIC_ELLIPSE",
                {"amp": sersic_amp(main_flux, R, n), "R_sersic": R, "n_sersic": n, "e1": se1, "e2": se2,
                 "center_x": p["source_x"], "center_y": p["source_y"]}, 12.0 * R / math.sqrt(p["source_q"]))
    for c in p["clumps"]:
        _add_lensed(sb, bx, by, "SERSIC", {"amp": sersic_amp(main_flux * c["weight"], c["R_eff"], 1.0),
                                           "R_sersic": c["R_eff"], "n_sersic": 1.0,
                                           "center_x": c["x"], "center_y": c["y"]}, 10.0 * c["R_eff"])
    side = opts.size * opts.supersampling
    return sb.reshape(side, side), total


def source_image(rng: np.random.Generator, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """One lensed-source image (noise-free, PSF-convolved) and its metadata."""
    conditions = Conditions.draw(rng, opts)
    p = draw_source(rng, opts)
    canvas = Canvas(opts)
    sb, intrinsic = lensed_source(p, opts)
    canvas.data += sb * canvas.step**2
    image = finish(canvas, conditions, rng=None)
    peak = float(image.max())
    # Far PSF wings below 1e-6 of the peak are set to exactly 0: after the merge they are
    # < 3e-7 of the lens peak (below float32 resolution of the lens pixels), and exact
    # zeros let the file compress ~4× (see docs/benchmarks.md).
    image[image < ZERO_BELOW * peak] = 0.0
    n_lensed = int((image > opts.lensed_threshold * peak).sum()) if peak > 0 else 0
    meta = {k: v for k, v in p.items() if k != "clumps"}
    meta.update({
        "source_flux": intrinsic,
        "magnification": float(image.sum(dtype=np.float64)) / intrinsic,
        "n_pix_lensed": n_lensed,
        "frac_pix_lensed": n_lensed / image.size,
        **conditions.meta(),
    })
    return image, meta
