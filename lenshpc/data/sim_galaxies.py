"""Lens galaxies (LRGs), field objects and the contaminants used as negatives.

Every function takes a ``numpy`` generator and draws *all* its randomness from it, so an
image is fixed by its generator alone (``rng_for(seed, population, index)``).
Sérsic components are lenstronomy ``SERSIC_ELLIPSE`` profiles (:class:`Canvas.add_sersic`);
spiral arms, rings, tidal tails and dust lanes are numpy surface-brightness maps.
"""

from __future__ import annotations

import math

import numpy as np

from lenshpc.data.sim_common import Canvas, Conditions, SimOptions, elliptical_radius, finish

#: Negative kinds: five contaminant families (equally likely) and plain LRGs.
CONTAMINANTS = ("spiral", "ring", "merger", "edge_on", "star_blend")
NEGATIVE_KINDS = (*CONTAMINANTS, "lrg")


# ------------------------------------------------------------------------ building blocks
def _jitter(rng: np.random.Generator, opts: SimOptions) -> tuple[float, float]:
    # Cutouts are centred on the catalogue position: sub-pixel offsets only.
    return tuple(float(v) for v in rng.uniform(-0.5, 0.5, 2) * opts.pixel_scale)  # type: ignore[return-value]


def draw_lrg(rng: np.random.Generator, opts: SimOptions) -> dict[str, float]:
    """Parameters of a luminous red galaxy: de Vaucouleurs-like Sérsic (n ≈ 4).

    Brighter LRGs are larger (log R_eff falls 0.12 dex per magnitude), with 0.12 dex scatter.
    """
    mag = float(rng.uniform(*opts.lens_mag_range))
    R_eff = float(np.clip(10 ** (-0.12 * (mag - 18.5) + rng.normal(0.0, 0.12)), 0.3, 3.0))
    n = float(np.clip(rng.normal(4.0, 0.6), 2.5, 6.0))
    q = float(np.clip(rng.normal(0.78, 0.13), 0.45, 1.0))
    phi = float(rng.uniform(0.0, math.pi))
    x, y = _jitter(rng, opts)
    return {"mag": mag, "flux": opts.counts(mag), "R_eff": R_eff, "n_sersic": n, "q": q, "phi": phi, "x": x, "y": y}


def add_lrg(canvas: Canvas, p: dict[str, float]) -> None:
    canvas.add_sersic(p["flux"], p["R_eff"], p["n_sersic"], p["q"], p["phi"], p["x"], p["y"])


def add_field(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, keep_clear: float = 1.0) -> dict[str, int]:
    """Random faint field galaxies and stars over the cutout (Poisson numbers from the densities).

    Galaxy magnitudes follow counts ``dN/dm ∝ 10^{0.3 m}`` on 20.5–24.5 (most are faint);
    nothing is put within ``keep_clear`` arcsec of the centre, where the target sits.
    """
    area_arcmin2 = (opts.field_of_view / 60.0) ** 2
    n_gal = int(rng.poisson(opts.field_galaxy_density * area_arcmin2))
    n_star = int(rng.poisson(opts.field_star_density * area_arcmin2))
    half = opts.field_of_view / 2.0

    def position() -> tuple[float, float]:
        while True:
            x, y = rng.uniform(-half, half, 2)
            if math.hypot(x, y) >= keep_clear:
                return float(x), float(y)

    k = 0.3 * math.log(10.0)
    lo, hi = 20.5, 24.5
    for _ in range(n_gal):
        x, y = position()
        u = rng.uniform()
        mag = math.log(math.exp(k * lo) + u * (math.exp(k * hi) - math.exp(k * lo))) / k  # inverse CDF
        R_eff = float(np.clip(10 ** (-0.1 * (mag - 22.0) + rng.normal(-0.45, 0.15)), 0.1, 1.5))
        canvas.add_sersic(opts.counts(mag), R_eff, float(rng.uniform(0.7, 2.5)), float(rng.uniform(0.3, 1.0)),
                          float(rng.uniform(0.0, math.pi)), x, y, extent=8.0)
    for _ in range(n_star):
        x, y = position()
        canvas.add_point(opts.counts(float(rng.uniform(17.0, 23.0))), x, y)
    return {"n_field_galaxies": n_gal, "n_field_stars": n_star}


def _bulge_disc(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, flux: float, x: float, y: float,
                q: float, phi: float, R_disc: float, bulge_fraction: float) -> None:
    """An exponential disc plus a compact bulge (both Sérsic)."""
    canvas.add_sersic(flux * (1 - bulge_fraction), R_disc, 1.0, q, phi, x, y)
    canvas.add_sersic(flux * bulge_fraction, R_disc * rng.uniform(0.15, 0.35), float(rng.uniform(2.0, 4.0)),
                      min(1.0, q + 0.3), phi, x, y)


# ------------------------------------------------------------------------ contaminants
def _spiral(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, flux: float) -> None:
    """Bulge + disc whose light is partly in logarithmic spiral arms with star-forming knots.

    Arms are ``((1 + cos(m(θ − ln(r/r₀)/tan p) ))/2)^w`` modulating an exponential disc:
    m ∈ {1,2,3} arms, pitch angle p ∈ [10°, 30°], width exponent w ∈ [2, 8].
    """
    x, y = _jitter(rng, opts)
    q, phi = float(rng.uniform(0.35, 1.0)), float(rng.uniform(0.0, math.pi))
    h = float(rng.uniform(0.5, 1.5))  # disc scale length, arcsec
    bulge_fraction = float(rng.uniform(0.1, 0.4))
    arm_fraction = float(rng.uniform(0.3, 0.7))
    m = int(rng.choice([1, 2, 2, 2, 3]))
    pitch = math.radians(rng.uniform(10.0, 30.0))
    width = float(rng.uniform(2.0, 8.0))
    add_spiral(canvas, rng, opts, flux, x=x, y=y, q=q, phi=phi, h=h, bulge_fraction=bulge_fraction,
               arm_fraction=arm_fraction, m=m, pitch=pitch, width=width, knots=(0, 7))


def add_spiral(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, flux: float, *, x: float, y: float,
               q: float, phi: float, h: float, bulge_fraction: float, arm_fraction: float, m: int, pitch: float,
               width: float, knots: tuple[int, int]) -> None:
    """Paint a spiral of the given shape (``_spiral`` draws it; ``sim_hard`` draws grand-design ones).

    Parameters are those of :func:`_spiral` (``h`` disc scale length in arcsec, ``pitch`` in rad);
    the arm phase ``θ₀``, the bulge and the number of HII knots (``rng.integers(*knots)``) are drawn here.
    """
    theta0 = float(rng.uniform(0.0, 2 * math.pi))
    _bulge_disc(canvas, rng, opts, flux * (1 - arm_fraction), x, y, q, phi, 1.678 * h, bulge_fraction)

    def arms(dx, dy):
        u, v, r = elliptical_radius(dx, dy, q, phi)
        theta = np.arctan2(v, u)
        phase = m * (theta - theta0 - np.log(np.maximum(r, 1e-3) / h) / math.tan(pitch))
        inner = 1.0 - np.exp(-((r / (0.6 * h)) ** 2))  # arms start outside the bulge
        return np.exp(-r / h) * inner * ((1.0 + np.cos(phase)) / 2.0) ** width

    canvas.add_map(flux * arm_fraction * 0.8, x, y, 6 * h, arms)
    # HII-region knots strung along the arms
    for _ in range(int(rng.integers(*knots))):
        r = h * rng.uniform(0.8, 2.5)
        theta = theta0 + math.log(r / h) / math.tan(pitch) + 2 * math.pi * rng.integers(0, m) / m
        u, v = r * math.cos(theta), r * math.sin(theta) * q
        kx = x + u * math.cos(phi) - v * math.sin(phi)
        ky = y + u * math.sin(phi) + v * math.cos(phi)
        canvas.add_sersic(flux * arm_fraction * 0.2 / 3, float(rng.uniform(0.05, 0.15)), 1.0, 1.0, 0.0, kx, ky)


def _ring(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, flux: float) -> None:
    """A red central galaxy inside a (possibly lopsided or broken) stellar ring — an Einstein-ring look-alike."""
    lrg = draw_lrg(rng, opts)
    ring_fraction = float(rng.uniform(0.1, 0.35))
    add_lrg(canvas, {**lrg, "flux": flux * (1 - ring_fraction)})
    radius = float(rng.uniform(1.2, 4.0))
    width = float(rng.uniform(0.12, 0.4))
    q, phi = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.0, math.pi))
    lopsided = float(rng.uniform(0.0, 1.0))
    theta0 = float(rng.uniform(0.0, 2 * math.pi))

    def ring(dx, dy):
        u, v, r = elliptical_radius(dx, dy, q, phi)
        azimuth = 1.0 + lopsided * np.cos(np.arctan2(v, u) - theta0)
        return np.exp(-0.5 * ((r - radius) / width) ** 2) * azimuth

    canvas.add_map(flux * ring_fraction, lrg["x"], lrg["y"], radius / q + 4 * width, ring)


def _merger(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, flux: float) -> None:
    """Two or three interacting galaxies, one with a curved tidal tail (an arc look-alike)."""
    x, y = _jitter(rng, opts)
    n_comp = int(rng.integers(1, 3))
    tail_fraction = float(rng.uniform(0.05, 0.2))
    weights = rng.dirichlet(np.full(n_comp + 1, 2.0))
    R0 = float(rng.uniform(0.4, 1.2))
    canvas.add_sersic(flux * (1 - tail_fraction) * weights[0], R0, float(rng.uniform(1.0, 4.5)),
                      float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, math.pi)), x, y)
    for w in weights[1:]:
        sep, ang = rng.uniform(1.0, 4.0), rng.uniform(0, 2 * math.pi)
        canvas.add_sersic(flux * (1 - tail_fraction) * w, float(rng.uniform(0.3, 1.0)), float(rng.uniform(1.0, 4.0)),
                          float(rng.uniform(0.4, 1.0)), float(rng.uniform(0, math.pi)),
                          x + sep * math.cos(ang), y + sep * math.sin(ang))
    radius = float(rng.uniform(1.5, 4.0))
    start, span = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(math.radians(60), math.radians(180)))
    width = float(rng.uniform(0.15, 0.5))
    sense = 1.0 if rng.uniform() < 0.5 else -1.0

    def tail(dx, dy):
        r = np.hypot(dx, dy)
        along = np.mod(sense * (np.arctan2(dy, dx) - start), 2 * math.pi)  # angle travelled along the tail
        inside = along < span
        # the tail winds outwards a little and fades along its length
        r_tail = radius * (1.0 + 0.3 * along / span)
        return np.where(inside, np.exp(-0.5 * ((r - r_tail) / width) ** 2) * np.exp(-2.0 * along / span), 0.0)

    canvas.add_map(flux * tail_fraction, x, y, 1.3 * radius + 4 * width, tail)


def _edge_on(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, flux: float) -> None:
    """A thin edge-on disc (q ≈ 0.1–0.25) with a small bulge and, often, a dust lane."""
    x, y = _jitter(rng, opts)
    q, phi = float(rng.uniform(0.08, 0.25)), float(rng.uniform(0.0, math.pi))
    R_disc = float(rng.uniform(1.0, 3.0))
    canvas.add_sersic(flux * 0.8, R_disc, float(rng.uniform(0.7, 1.3)), q, phi, x, y)
    canvas.add_sersic(flux * 0.2, R_disc * 0.2, float(rng.uniform(2.0, 4.0)), float(rng.uniform(0.5, 0.8)), phi, x, y)
    if rng.uniform() < 0.6:
        depth, lane = float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.05, 0.15))
        box = canvas.stamp(x, y, 3 * R_disc / math.sqrt(q))
        if box is not None:
            rows, cols, xx, yy = box
            minor = -math.sin(phi) * (xx - x) + math.cos(phi) * (yy - y)
            canvas.data[rows, cols] *= 1.0 - depth * np.exp(-0.5 * (minor / lane) ** 2)


def _star_blend(canvas: Canvas, rng: np.random.Generator, opts: SimOptions, flux: float) -> None:
    """An early- or late-type galaxy with one to three stars projected 0.8–5″ away."""
    if rng.uniform() < 0.5:
        add_lrg(canvas, {**draw_lrg(rng, opts), "flux": flux})
    else:
        x, y = _jitter(rng, opts)
        _bulge_disc(canvas, rng, opts, flux, x, y, float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, math.pi)),
                    float(rng.uniform(0.6, 2.0)), float(rng.uniform(0.1, 0.5)))
    for _ in range(int(rng.integers(1, 4))):
        sep, ang = rng.uniform(0.8, 5.0), rng.uniform(0, 2 * math.pi)
        star_flux = flux * 10 ** (-0.4 * rng.uniform(-1.0, 3.0))  # from 2.5× brighter to 16× fainter
        canvas.add_point(star_flux, sep * math.cos(ang), sep * math.sin(ang))


_CONTAMINANT_MAKERS = {"spiral": _spiral, "ring": _ring, "merger": _merger, "edge_on": _edge_on,
                       "star_blend": _star_blend}


# ------------------------------------------------------------------------ images
def lens_image(rng: np.random.Generator, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """One lens-galaxy cutout: LRG + field objects, PSF, sky and noise; with its metadata."""
    conditions = Conditions.draw(rng, opts)
    canvas = Canvas(opts)
    lrg = draw_lrg(rng, opts)
    add_lrg(canvas, lrg)
    field = add_field(canvas, rng, opts)
    image = finish(canvas, conditions, rng)
    meta = {k: lrg[k] for k in ("R_eff", "n_sersic", "q", "phi", "mag", "flux")}
    return image, {**meta, **field, **conditions.meta()}


def negative_image(rng: np.random.Generator, opts: SimOptions) -> tuple[np.ndarray, dict]:
    """One negative: a contaminant (probability ``contaminant_fraction``, kinds equally likely) or a plain LRG."""
    conditions = Conditions.draw(rng, opts)
    canvas = Canvas(opts)
    if rng.uniform() < opts.contaminant_fraction:
        kind = CONTAMINANTS[int(rng.integers(len(CONTAMINANTS)))]
        mag = float(rng.uniform(*opts.lens_mag_range))
        _CONTAMINANT_MAKERS[kind](canvas, rng, opts, opts.counts(mag))
    else:
        kind = "lrg"
        lrg = draw_lrg(rng, opts)
        add_lrg(canvas, lrg)
        mag = lrg["mag"]
    field = add_field(canvas, rng, opts)
    image = finish(canvas, conditions, rng)
    return image, {"kind": kind, "mag": mag, **field, **conditions.meta()}
