"""Shared pieces of the KiDS-like simulator: options, observing conditions, PSF, canvas, noise.

Units: pixel values are electrons collected in the whole (co-added) exposure, sky-subtracted.
A magnitude ``m`` (AB, r band) corresponds to ``10**(-0.4 (m - zero_point)) * exposure``
electrons, i.e. an effective zero point of ``zero_point + 2.5 log10(exposure)`` ≈ 32.9 for
the defaults below.  Coordinates are arcseconds relative to the image centre, ``x`` along
columns and ``y`` along rows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve

from lenshpc.errors import UserError


# ------------------------------------------------------------------------- options
@dataclass(frozen=True)
class SimOptions:
    """Every knob of the simulator (all recorded in the file's provenance).

    The defaults describe KiDS DR3 r-band cutouts: 0.2″/px, VST/OmegaCAM r-band zero point
    ≈ 24.8 mag for 1 e⁻/s, 5 × 360 s exposures, dark-sky r ≈ 21.2 mag/arcsec², seeing
    FWHM ≈ 0.7″ (Kuijken et al. 2019; thesis Sec. 4.1).
    """

    size: int = 101
    pixel_scale: float = 0.2
    #: sub-pixels per pixel side used to integrate light over each pixel
    supersampling: int = 3
    # -- observing conditions
    zero_point: float = 24.8
    exposure: float = 1800.0
    n_exposures: int = 5
    read_noise: float = 4.0
    sky_mag_range: tuple[float, float] = (20.8, 21.6)
    psf: str = "moffat"  # "moffat" or "gaussian"
    psf_fwhm_mean: float = 0.7
    psf_fwhm_sigma: float = 0.07
    psf_fwhm_range: tuple[float, float] = (0.5, 1.0)
    psf_beta_range: tuple[float, float] = (2.5, 4.5)
    # -- lens galaxies (LRGs) and field objects
    lens_mag_range: tuple[float, float] = (17.0, 20.0)
    #: field galaxies (r < 24.5) per arcmin²; a 20″×20″ cutout gets ~2.8 on average
    field_galaxy_density: float = 25.0
    #: stars per arcmin² (bright enough to matter)
    field_star_density: float = 4.0
    # -- lensed sources (SIE + external shear, elliptical Sérsic + clumps)
    theta_E_range: tuple[float, float] = (0.8, 3.0)
    #: e-folding scale of the truncated exponential θ_E distribution (arcsec)
    theta_E_scale: float = 0.7
    shear_max: float = 0.05
    source_mag_range: tuple[float, float] = (21.0, 24.0)
    source_R_eff_range: tuple[float, float] = (0.1, 0.5)
    source_n_range: tuple[float, float] = (0.5, 3.0)
    #: source centre offsets are uniform in a disc of this radius, in units of θ_E
    source_offset_max: float = 0.6
    max_clumps: int = 4
    #: a lensed pixel is one brighter than this fraction of the source's peak
    lensed_threshold: float = 0.1
    # -- negatives
    contaminant_fraction: float = 0.8
    # -- execution
    block_size: int = 64

    @classmethod
    def from_kwargs(cls, **kwargs) -> "SimOptions":
        """Build options from keyword arguments; unknown names and bad values raise :class:`UserError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            from lenshpc.utils import did_you_mean

            hints = [f"{key!r}" + did_you_mean(key, names, template=" (did you mean {!r}?)") for key in unknown]
            raise UserError(f"unknown simulation option(s): {', '.join(hints)}; valid options: {', '.join(sorted(names))}")
        fixed = {k: tuple(float(x) for x in v) if isinstance(v, list) else v for k, v in kwargs.items()}
        opts = cls(**fixed)
        opts.validate()
        return opts

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UserError(f"simulation option {msg}")

        need(isinstance(self.size, (int, np.integer)) and self.size >= 16, f"size must be an integer ≥ 16 pixels, got {self.size!r}")
        need(self.pixel_scale > 0, f"pixel_scale must be > 0 arcsec/px, got {self.pixel_scale!r}")
        need(isinstance(self.supersampling, (int, np.integer)) and 1 <= self.supersampling <= 8,
             f"supersampling must be an integer in 1..8, got {self.supersampling!r}")
        need(self.psf in ("moffat", "gaussian"), f"psf must be 'moffat' or 'gaussian', got {self.psf!r}")
        for name in ("sky_mag_range", "psf_fwhm_range", "psf_beta_range", "lens_mag_range", "theta_E_range",
                     "source_mag_range", "source_R_eff_range", "source_n_range"):
            lo, hi = getattr(self, name)
            need(lo <= hi, f"{name} must be (low, high) with low ≤ high, got {(lo, hi)}")
        need(self.theta_E_range[0] > 0, f"theta_E_range must be positive, got {self.theta_E_range}")
        need(self.theta_E_scale > 0, f"theta_E_scale must be > 0, got {self.theta_E_scale}")
        need(self.psf_fwhm_range[0] > 0, f"psf_fwhm_range must be positive, got {self.psf_fwhm_range}")
        need(self.source_R_eff_range[0] > 0, f"source_R_eff_range must be positive, got {self.source_R_eff_range}")
        need(0 <= self.contaminant_fraction <= 1, f"contaminant_fraction must be in [0, 1], got {self.contaminant_fraction}")
        need(0 < self.lensed_threshold < 1, f"lensed_threshold must be in (0, 1), got {self.lensed_threshold}")
        need(isinstance(self.block_size, int) and self.block_size >= 1, f"block_size must be ≥ 1, got {self.block_size!r}")
        need(self.max_clumps >= 0, f"max_clumps must be ≥ 0, got {self.max_clumps}")

    @property
    def field_of_view(self) -> float:
        """Side of the cutout in arcsec."""
        return self.size * self.pixel_scale

    def counts(self, mag: float) -> float:
        """Electrons in the whole exposure from an object of AB magnitude ``mag``."""
        return 10.0 ** (-0.4 * (mag - self.zero_point)) * self.exposure

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------- observing conditions
@dataclass(frozen=True)
class Conditions:
    """Per-image seeing and sky (drawn, recorded as metadata)."""

    psf_fwhm: float
    psf_beta: float
    sky_mag: float

    @classmethod
    def draw(cls, rng: np.random.Generator, opts: SimOptions) -> "Conditions":
        lo, hi = opts.psf_fwhm_range
        fwhm = float(np.clip(rng.normal(opts.psf_fwhm_mean, opts.psf_fwhm_sigma), lo, hi))
        beta = float(rng.uniform(*opts.psf_beta_range))
        sky = float(rng.uniform(*opts.sky_mag_range))
        return cls(fwhm, beta, sky)

    def meta(self) -> dict[str, float]:
        return {"psf_fwhm": self.psf_fwhm, "psf_beta": self.psf_beta, "sky_mag": self.sky_mag}


def psf_kernel(fwhm: float, beta: float, pixel_scale: float, kind: str = "moffat", max_half_width: int | None = None,
               sub: int = 5) -> np.ndarray:
    """Pixel-integrated PSF kernel (odd square, sums to 1).

    Moffat ``(1 + (r/a)²)^-β`` with ``a = FWHM / (2 √(2^{1/β} − 1))`` or a Gaussian of the
    same FWHM; integrated over each pixel by ``sub × sub`` sampling and cut at 4 FWHM.
    """
    half = int(math.ceil(4.0 * fwhm / pixel_scale))
    if max_half_width is not None:
        half = max(1, min(half, max_half_width))
    n = 2 * half + 1
    c = (np.arange(n * sub) - (n * sub - 1) / 2.0) * (pixel_scale / sub)
    r2 = c[None, :] ** 2 + c[:, None] ** 2
    if kind == "moffat":
        a = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        profile = (1.0 + r2 / a**2) ** (-beta)
    else:
        sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        profile = np.exp(-0.5 * r2 / sigma**2)
    kernel = profile.reshape(n, sub, n, sub).sum(axis=(1, 3))
    return kernel / kernel.sum()


def convolve_psf(image: np.ndarray, conditions: Conditions, opts: SimOptions) -> np.ndarray:
    """PSF-convolved copy of ``image`` (same shape; light beyond the edge is lost, as in a cutout)."""
    kernel = psf_kernel(conditions.psf_fwhm, conditions.psf_beta, opts.pixel_scale, opts.psf,
                        max_half_width=(image.shape[0] - 1) // 2)
    out = fftconvolve(image, kernel, mode="same")
    # FFT round-off leaves ±1e-12 ringing around zero; light is never negative.
    return np.maximum(out, 0.0)


def sky_level(conditions: Conditions, opts: SimOptions) -> float:
    """Sky electrons per pixel (what sky subtraction removed)."""
    return opts.counts(conditions.sky_mag) * opts.pixel_scale**2


def add_noise(image: np.ndarray, conditions: Conditions, opts: SimOptions, rng: np.random.Generator) -> np.ndarray:
    """Sky-subtracted image with Poisson noise of (object + sky) and Gaussian read noise."""
    sky = sky_level(conditions, opts)
    noisy = rng.poisson(image + sky).astype(np.float64) - sky
    noisy += rng.normal(0.0, opts.read_noise * math.sqrt(opts.n_exposures), size=image.shape)
    return noisy


# ------------------------------------------------------------------------- canvas
@lru_cache(maxsize=8)
def pixel_axis(size: int, pixel_scale: float, sub: int) -> np.ndarray:
    """Read-only pixel-centre coordinates (arcsec) of ``size × sub`` sub-pixels, centred on 0."""
    ns = size * sub
    axis = (np.arange(ns) - (ns - 1) / 2.0) * (pixel_scale / sub)
    axis.flags.writeable = False
    return axis


@lru_cache(maxsize=8)
def light_model(name: str):
    """A lenstronomy ``LightModel`` of one profile ``name`` (cached: building one is slow)."""
    from lenstronomy.LightModel.light_model import LightModel

    return LightModel([name])


@lru_cache(maxsize=64)
def _flux_per_amp(name: str, n_sersic: float) -> float:
    # lenstronomy's R_sersic is the geometric-mean radius, so total flux does not depend on q.
    return float(light_model(name).total_flux([{"amp": 1.0, "R_sersic": 1.0, "n_sersic": n_sersic}])[0])


def sersic_amp(flux: float, R_eff: float, n_sersic: float) -> float:
    """lenstronomy ``amp`` (surface brightness at R_eff) giving total ``flux`` for a Sérsic profile."""
    return flux / (_flux_per_amp("SERSIC", float(n_sersic)) * R_eff**2)


def ellipticity(phi: float, q: float) -> tuple[float, float]:
    """lenstronomy (e1, e2) from position angle ``phi`` (rad) and axis ratio ``q``."""
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    e1, e2 = phi_q2_ellipticity(phi, q)
    return float(e1), float(e2)


class Canvas:
    """A super-sampled image on which light is accumulated (electrons per sub-pixel).

    Profiles are evaluated only on a square stamp around each object, which keeps many
    small field galaxies cheap.  :meth:`pixels` integrates the sub-pixels into pixels.
    """

    def __init__(self, opts: SimOptions):
        self.opts = opts
        self.sub = opts.supersampling
        self.axis = pixel_axis(opts.size, opts.pixel_scale, self.sub)
        self.step = opts.pixel_scale / self.sub
        self.data = np.zeros((len(self.axis), len(self.axis)))

    def stamp(self, x: float, y: float, radius: float) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Row/column slices and coordinate grids of the sub-pixels within ``radius`` of (x, y)."""
        ns, origin = len(self.axis), self.axis[0]
        j0 = max(0, int(math.floor((x - radius - origin) / self.step)))
        j1 = min(ns, int(math.ceil((x + radius - origin) / self.step)) + 1)
        i0 = max(0, int(math.floor((y - radius - origin) / self.step)))
        i1 = min(ns, int(math.ceil((y + radius - origin) / self.step)) + 1)
        if j0 >= j1 or i0 >= i1:
            return None
        xx, yy = np.meshgrid(self.axis[j0:j1], self.axis[i0:i1])
        return slice(i0, i1), slice(j0, j1), xx, yy

    def add_sersic(self, flux: float, R_eff: float, n_sersic: float, q: float = 1.0, phi: float = 0.0,
                   x: float = 0.0, y: float = 0.0, extent: float = 12.0) -> None:
        """Add an elliptical Sérsic galaxy of total ``flux`` (lenstronomy ``SERSIC_ELLIPSE``).

        It is evaluated out to ``extent`` effective radii (at least 1″) around its centre.
        """
        box = self.stamp(x, y, max(extent * R_eff / math.sqrt(q), 1.0))
        if box is None:
            return
        rows, cols, xx, yy = box
        e1, e2 = ellipticity(phi, q)
        kwargs = {"amp": sersic_amp(flux, R_eff, n_sersic), "R_sersic": R_eff, "n_sersic": n_sersic,
                  "e1": e1, "e2": e2, "center_x": x, "center_y": y}
        sb = light_model("SERSIC_ELLIPSE").surface_brightness(xx.ravel(), yy.ravel(), [kwargs])
        self.data[rows, cols] += sb.reshape(xx.shape) * self.step**2

    def add_map(self, flux: float, x: float, y: float, radius: float, shape) -> None:
        """Add ``shape(dx, dy)`` (any non-negative surface brightness, evaluated on the stamp of
        ``radius`` around (x, y) with offsets from the centre) scaled to total ``flux``."""
        box = self.stamp(x, y, radius)
        if box is None:
            return
        rows, cols, xx, yy = box
        sb = shape(xx - x, yy - y)
        total = sb.sum()
        if total > 0:
            self.data[rows, cols] += sb * (flux / total)

    def add_point(self, flux: float, x: float, y: float) -> None:
        """Add a point source (star) by bilinear splitting over the four nearest sub-pixels."""
        fx = (x - self.axis[0]) / self.step
        fy = (y - self.axis[0]) / self.step
        j, i = int(math.floor(fx)), int(math.floor(fy))
        tx, ty = fx - j, fy - i
        ns = len(self.axis)
        for di, dj, w in ((0, 0, (1 - ty) * (1 - tx)), (0, 1, (1 - ty) * tx), (1, 0, ty * (1 - tx)), (1, 1, ty * tx)):
            if 0 <= i + di < ns and 0 <= j + dj < ns:
                self.data[i + di, j + dj] += flux * w

    def pixels(self) -> np.ndarray:
        """The image integrated over pixels, ``(size, size)`` electrons."""
        n, s = self.opts.size, self.sub
        return self.data.reshape(n, s, n, s).sum(axis=(1, 3))


def elliptical_radius(dx: np.ndarray, dy: np.ndarray, q: float, phi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates in a galaxy's frame: (major-axis coordinate, minor-axis coordinate / q, radius).

    The radius is the de-projected (circularised) distance used by discs, arms and rings.
    """
    c, s = math.cos(phi), math.sin(phi)
    u = c * dx + s * dy
    v = (-s * dx + c * dy) / q
    return u, v, np.hypot(u, v)


def finish(canvas: Canvas, conditions: Conditions, rng: np.random.Generator | None) -> np.ndarray:
    """Pixel-integrate, PSF-convolve and (when ``rng`` is given) add sky + noise; float32 result."""
    image = convolve_psf(canvas.pixels(), conditions, canvas.opts)
    if rng is not None:
        image = add_noise(image, conditions, canvas.opts, rng)
    return image.astype(np.float32)
