"""Hard contaminants: what put real survey cutouts at the top of a mock-trained lens finder.

Ranked with a model trained on the simulator's population (``sim_galaxies``), real HST cutouts put
saturated stars with diffraction spikes, bright face-on spirals, close groups and image artefacts at
the top (issue 15).  The population's negatives have none of them.  This module draws them, each as a
complete cutout ``(size, size)`` float32 in sky-subtracted electrons, observed like every other image
(``sim_common``: Moffat PSF, sky, Poisson + read noise), from one generator only (deterministic per
seed).  :data:`HARD_KINDS` is the registry; ``lenshpc.data.survey.mock_survey(..., contaminants=…)``
mixes them into a mock survey.

Models
------
``saturated_star``
    A star of r = 11.5–15.5 mag (half of the time next to a central galaxy, 2–7″ away; else the
    catalogued object itself, near the centre).  **Diffraction spikes**: two perpendicular lines through
    the star (four spikes; the spider of the telescope; position angle U(0, 90°), as a cutout is rotated
    by the field orientation), surface brightness along each ∝ 1/(s² + s₀²) (straight-vane diffraction;
    s₀ = 0.5″), 2–6 % of the star's flux, then seeing-convolved with everything else.  **Saturation
    and bleeding**: after noise, a pixel cannot hold more than ``n_exposures × full_well − sky`` (full
    well 70,000 e⁻ per exposure); the excess charge of each column bleeds along the column (the CCD's
    read-out direction), filling saturated pixels symmetrically above and below the saturated core
    until the charge is conserved (clipped at the cutout's edge) — a vertical run of saturated pixels.
``grand_design``
    A bright (r = 14.5–17) face-on (q = 0.75–1) two-armed spiral filling the cutout: disc scale length
    12–22 % of the cutout side, pitch 12–25°, 50–70 % of the light in sharp arms (width exponent 2–4)
    with 4–12 HII knots (the ``sim_galaxies`` spiral model with other ranges).
``group``
    A compact group (Hickson-like): 3–6 galaxies of r = 17–20 (Sérsic n = 1–4.5, R_eff 0.3–1.2″),
    one at the centre (70 %) and the others 1–4.5″ from it — multiple-image configurations to a CNN.
``satellite_trail``
    A population-like negative crossed by a straight trail through the cutout (any angle, impact
    parameter within 40 % of the half-side), linear density 19–22 mag per arcsec, seeing-wide, with
    its own Poisson noise.
``bad_column``
    A population-like negative with 1–3 adjacent defective columns, from a random row to the edge
    (half) or the whole column: hot (a constant 20–300 e⁻ added) or dead (no charge: −sky after sky
    subtraction).
``cosmic_rays``
    A population-like negative with 1–8 cosmic-ray hits not seen through the atmosphere (not
    PSF-convolved): tracks 1–6 px long at random angles, 2,000–30,000 e⁻ per pixel.
``edge_of_field``
    A population-like negative cut at the edge of the survey footprint or a chip: beyond a straight
    edge (along the rows or columns, tilted by N(0, 2°); 15–60 % of the cutout) the pixels are 0.0
    (zero-filled, as cutout tools pad missing data).

Every maker returns ``(image, meta)`` with ``meta["kind"]`` and the drawn parameters.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from lenshpc.data.sim_common import Canvas, Conditions, SimOptions, finish, sky_level
from lenshpc.data.sim_galaxies import add_field, add_lrg, add_spiral, draw_lrg, negative_image
from lenshpc.utils import rng_for

#: Full-well depth of one exposure (electrons); a co-added pixel saturates at n_exposures × this.
FULL_WELL = 70_000.0


# ------------------------------------------------------------------------ shared pieces
def _line(canvas: Canvas, x0: float, y0: float, angle: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """On the whole canvas: distance along a line through (x0, y0) at ``angle`` and its normalised
    Gaussian cross-section (1/arcsec; integrates to 1 across the line)."""
    xx, yy = np.meshgrid(canvas.axis - x0, canvas.axis - y0)
    along = math.cos(angle) * xx + math.sin(angle) * yy
    across = -math.sin(angle) * xx + math.cos(angle) * yy
    return along, np.exp(-0.5 * (across / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def saturation_level(conditions: Conditions, opts: SimOptions) -> float:
    """Highest sky-subtracted value a pixel can hold."""
    return opts.n_exposures * FULL_WELL - sky_level(conditions, opts)


def saturate(image: np.ndarray, level: float) -> tuple[np.ndarray, int]:
    """Clip ``image`` at ``level`` and bleed each column's excess charge along the column.

    The excess of column j, ``E_j = Σ_i max(image_ij − level, 0)``, fills ``ceil(E_j / level)`` more
    pixels at ``level``, half above and half below the column's saturated core (clipped at the edge).
    Returns the new image and the number of saturated pixels.
    """
    excess = np.maximum(image - level, 0.0)
    over = excess > 0
    out = np.minimum(image, level)
    if not over.any():
        return out, 0
    rows = np.arange(image.shape[0])[:, None]
    has = over.any(axis=0)
    top = np.where(has, np.argmax(over, axis=0), 0)
    bottom = np.where(has, image.shape[0] - 1 - np.argmax(over[::-1], axis=0), -1)
    extra = np.ceil(excess.sum(axis=0) / level)
    up = np.ceil(extra / 2)
    run = has[None, :] & (rows >= top - up) & (rows <= bottom + (extra - up))
    out[run] = level
    return out, int(run.sum())


def _offset(rng: np.random.Generator, r_min: float, r_max: float) -> tuple[float, float]:
    r, a = rng.uniform(r_min, r_max), rng.uniform(0.0, 2 * math.pi)
    return float(r * math.cos(a)), float(r * math.sin(a))


# ------------------------------------------------------------------------ astrophysical look-alikes
def saturated_star(rng: np.random.Generator, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """A saturated star with diffraction spikes and a bleed trail (module docstring)."""
    conditions = Conditions.draw(rng, opts)
    canvas = Canvas(opts)
    mag = float(rng.uniform(11.5, 15.5))
    with_galaxy = bool(rng.uniform() < 0.5)
    if with_galaxy:
        add_lrg(canvas, draw_lrg(rng, opts))
        x, y = _offset(rng, 2.0, min(7.0, 0.45 * opts.field_of_view))
    else:
        x, y = _offset(rng, 0.0, 0.5)
    flux = opts.counts(mag)
    spike_fraction = float(rng.uniform(0.02, 0.06))
    spike_angle = float(rng.uniform(0.0, math.pi / 2))
    canvas.add_point(flux * (1 - spike_fraction), x, y)
    s0, spikes = 0.5, 0.0
    for angle in (spike_angle, spike_angle + math.pi / 2):  # each line = two opposite spikes
        along, across = _line(canvas, x, y, angle, sigma=0.5 * canvas.step)
        spikes = spikes + across / (along**2 + s0**2)
    spikes = spikes * (flux * spike_fraction / spikes.sum())
    canvas.data += spikes
    field = add_field(canvas, rng, opts, keep_clear=0.0)
    image = finish(canvas, conditions, rng).astype(np.float64)
    image, n_saturated = saturate(image, saturation_level(conditions, opts))
    return image.astype(np.float32), {"kind": "saturated_star", "mag": mag, "star_x": x, "star_y": y,
                                      "spike_angle": spike_angle, "spike_fraction": spike_fraction,
                                      "with_galaxy": with_galaxy, "n_saturated": n_saturated,
                                      **field, **conditions.meta()}


def grand_design(rng: np.random.Generator, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """A bright face-on grand-design spiral filling the cutout (module docstring)."""
    conditions = Conditions.draw(rng, opts)
    canvas = Canvas(opts)
    mag = float(rng.uniform(14.5, 17.0))
    h = float(rng.uniform(0.12, 0.22)) * opts.field_of_view
    x, y = _offset(rng, 0.0, 0.3)
    add_spiral(canvas, rng, opts, opts.counts(mag), x=x, y=y, q=float(rng.uniform(0.75, 1.0)),
               phi=float(rng.uniform(0.0, math.pi)), h=h, bulge_fraction=float(rng.uniform(0.05, 0.25)),
               arm_fraction=float(rng.uniform(0.5, 0.7)), m=2, pitch=math.radians(rng.uniform(12.0, 25.0)),
               width=float(rng.uniform(2.0, 4.0)), knots=(4, 13))
    field = add_field(canvas, rng, opts, keep_clear=0.3 * opts.field_of_view)
    image = finish(canvas, conditions, rng)
    return image, {"kind": "grand_design", "mag": mag, "h": h, **field, **conditions.meta()}


def group(rng: np.random.Generator, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """A compact group of 3–6 galaxies around the centre (module docstring)."""
    conditions = Conditions.draw(rng, opts)
    canvas = Canvas(opts)
    n = int(rng.integers(3, 7))
    central = bool(rng.uniform() < 0.7)
    mags = rng.uniform(17.0, 20.0, n)
    for k in range(n):
        x, y = _offset(rng, 0.0, 0.3) if (k == 0 and central) else _offset(rng, 1.0, 4.5)
        canvas.add_sersic(opts.counts(float(mags[k])), float(rng.uniform(0.3, 1.2)), float(rng.uniform(1.0, 4.5)),
                          float(rng.uniform(0.4, 1.0)), float(rng.uniform(0.0, math.pi)), x, y)
    field = add_field(canvas, rng, opts, keep_clear=min(5.0, 0.4 * opts.field_of_view))  # < the half-diagonal
    image = finish(canvas, conditions, rng)
    return image, {"kind": "group", "mag": float(mags.min()), "n_members": n, **field, **conditions.meta()}


# ------------------------------------------------------------------------ artefacts on a population-like negative
def _satellite_trail(image, conditions, rng, opts) -> dict:
    canvas = Canvas(opts)
    angle = float(rng.uniform(0.0, math.pi))
    b = float(rng.uniform(-0.4, 0.4)) * opts.field_of_view / 2
    mag_per_arcsec = float(rng.uniform(19.0, 22.0))
    _, across = _line(canvas, -b * math.sin(angle), b * math.cos(angle), angle, sigma=0.5 * canvas.step)
    canvas.data += opts.counts(mag_per_arcsec) * across * canvas.step**2
    trail = finish(canvas, conditions, None).astype(np.float64)
    image += rng.poisson(trail)  # the trail's own shot noise
    return {"trail_angle": angle, "trail_offset": b, "trail_mag_per_arcsec": mag_per_arcsec}


def _bad_column(image, conditions, rng, opts) -> dict:
    width = int(rng.integers(1, 4))
    col = int(rng.integers(0, opts.size - width + 1))
    start = int(rng.integers(0, opts.size)) if rng.uniform() < 0.5 else 0
    hot = bool(rng.uniform() < 0.5)
    region = (slice(start, None), slice(col, col + width))
    if hot:
        image[region] += float(rng.uniform(20.0, 300.0))
    else:
        image[region] = -sky_level(conditions, opts)
    return {"column": col, "n_columns": width, "first_row": start, "hot": hot}


def _cosmic_rays(image, conditions, rng, opts) -> dict:
    n = int(rng.integers(1, 9))
    length = rng.uniform(1.0, 6.0, n)
    angle = rng.uniform(0.0, math.pi, n)
    start = rng.uniform(0.0, opts.size - 1, (n, 2))
    t = np.linspace(0.0, 1.0, 13)  # ≥ 2 samples per pixel of the longest track
    rows = np.rint(start[:, :1] + np.sin(angle)[:, None] * length[:, None] * t).astype(int).ravel()
    cols = np.rint(start[:, 1:] + np.cos(angle)[:, None] * length[:, None] * t).astype(int).ravel()
    keep = (rows >= 0) & (rows < opts.size) & (cols >= 0) & (cols < opts.size)
    hit = np.zeros(image.shape, bool)
    hit[rows[keep], cols[keep]] = True
    image[hit] += rng.uniform(2_000.0, 30_000.0, int(hit.sum()))
    return {"n_cosmic_rays": n, "n_hit_pixels": int(hit.sum())}


def _edge_of_field(image, conditions, rng, opts) -> dict:
    side = int(rng.integers(0, 4))  # which side of the cutout lies off the field
    covered = float(rng.uniform(0.15, 0.6))
    tilt = float(rng.normal(0.0, math.radians(2.0)))
    axis = (np.arange(opts.size) + 0.5) / opts.size - 0.5  # fractional coordinate, centre 0
    xx, yy = np.meshgrid(axis, axis)
    normal = side * math.pi / 2 + tilt
    outside = math.cos(normal) * xx + math.sin(normal) * yy > 0.5 - covered
    image[outside] = 0.0
    return {"edge_side": side, "edge_tilt": tilt, "zero_fraction": float(outside.mean())}


def _artefact(name: str, add: Callable) -> Callable[[np.random.Generator, SimOptions], tuple[np.ndarray, dict]]:
    def make(rng: np.random.Generator, opts: SimOptions) -> tuple[np.ndarray, dict]:
        image, meta = negative_image(rng, opts)
        image = image.astype(np.float64)
        conditions = Conditions(float(meta["psf_fwhm"]), float(meta["psf_beta"]), float(meta["sky_mag"]))
        extra = add(image, conditions, rng, opts)
        return image.astype(np.float32), {**meta, "base_kind": meta["kind"], "kind": name, **extra}

    make.__name__ = name
    make.__doc__ = f"A population-like negative with the {name.replace('_', ' ')} artefact (module docstring)."
    return make


#: The hard-contaminant makers, ``kind -> maker(rng, opts) -> (image, meta)``.
HARD_KINDS: dict[str, Callable[[np.random.Generator, SimOptions], tuple[np.ndarray, dict]]] = {
    "saturated_star": saturated_star,
    "grand_design": grand_design,
    "group": group,
    "satellite_trail": _artefact("satellite_trail", _satellite_trail),
    "bad_column": _artefact("bad_column", _bad_column),
    "cosmic_rays": _artefact("cosmic_rays", _cosmic_rays),
    "edge_of_field": _artefact("edge_of_field", _edge_of_field),
}

#: The "hard" survey mix (fractions of the survey's non-tracer rows): half hard contaminants.
HARD_MIX: dict[str, float] = {"saturated_star": 0.1, "grand_design": 0.1, "group": 0.1, "satellite_trail": 0.05,
                              "bad_column": 0.05, "cosmic_rays": 0.05, "edge_of_field": 0.05}


def hard_image(kind: str, seed: int, index: int, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """Image ``index`` of hard kind ``kind``, from its own stream ``rng_for(seed, "hard", kind, index)``."""
    return HARD_KINDS[kind](rng_for(seed, "hard", kind, index), opts)


__all__ = ["FULL_WELL", "HARD_KINDS", "HARD_MIX", "hard_image", "saturate", "saturation_level", "sky_level"]
