"""The (redshift × F_ESC10 × realisation) grid of a 21-cm slice dataset, and its checks.

One place for 21cmFAST's parameter ranges and for how a grid turns into boxes, seeds and slices; both
``lenshpc simulate21cm`` and ``lenshpc stack21cm`` check their inputs here before any long work starts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

from lenshpc.errors import UserError
from lenshpc.utils import rng_for

#: The extra that installs the simulator (pyproject.toml) and the one-line instruction every 21-cm command gives.
INSTALL_HINT = ("21cmFAST is not installed: pip install -e '.[cosmo21cm]' (needs Debian's libfftw3-dev and "
                "libgsl-dev and a C compiler), or `bash containers/install-21cmfast.sh` (builds and caches the "
                "wheels); the Apptainer images already contain it")
SIMULATOR_VERSION = "4.1.1"

#: Redshifts: 21cmFAST evolves the IGM from Z_HEAT_MAX (py21cmfast SimulationOptions.Z_HEAT_MAX = 35) down, and
#: its evolution templates place node redshifts "between z=5.5 and Z_HEAT_MAX" (InputParameters.node_redshifts);
#: below z≈5.5 reionisation is complete in its models (δT_b ≡ 0: nothing to classify).
REDSHIFT_RANGE = (5.5, 35.0)
#: F_ESC10 = log10 of the escape fraction of 10^10 Msun haloes (AstroParams.F_ESC10, default -1.0, applied as
#: 10**F_ESC10).  It is a fraction, so F_ESC10 ≤ 0; -3 is the lower edge of the 21CMMC prior (Park et al. 2019).
F_ESC10_RANGE = (-3.0, 0.0)
#: AstroParams.R_BUBBLE_MAX default (Mpc); with the sharp-k filter of the "simple" template 21cmFAST refuses
#: R_BUBBLE_MAX > BOX_LEN/3.
R_BUBBLE_MAX_DEFAULT = 15.0
TEMPLATE = "simple"
MIN_HII_DIM = 8


def require_21cmfast():
    """Import and return ``py21cmfast``, or raise :class:`UserError` with :data:`INSTALL_HINT`."""
    try:
        import py21cmfast
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return py21cmfast


def check_values(values: Iterable[float], name: str, where: str, bounds: tuple[float, float]) -> list[float]:
    """Finite values inside ``bounds`` (inclusive), else :class:`UserError` naming ``where``."""
    lo, hi = bounds
    out = []
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise UserError(f"{where}: {name} {v!r} is not a number") from None
        if not math.isfinite(v) or not lo <= v <= hi:
            raise UserError(f"{where}: {name} {v:g} is outside 21cmFAST's range [{lo:g}, {hi:g}]"
                            + ("; F_ESC10 is log10 of the escape fraction (e.g. -1.3, -1.0, -0.7)"
                               if name == "F_ESC10" else ""))
        out.append(v)
    return out


def check_redshifts(values: Iterable[float], where: str = "--redshifts") -> list[float]:
    return check_values(values, "redshift", where, REDSHIFT_RANGE)


def check_f_esc10(values: Iterable[float], where: str = "--fesc") -> list[float]:
    return check_values(values, "F_ESC10", where, F_ESC10_RANGE)


def _distinct(values: list[float], flag: str) -> tuple[float, ...]:
    if not values:
        raise UserError(f"{flag}: give at least one value")
    if len({round(v, 6) for v in values}) != len(values):
        raise UserError(f"{flag}: values repeat ({', '.join(f'{v:g}' for v in values)}); give each once")
    return tuple(sorted(values))


def check_slicing(n: int, slices_per_axis: int | None, stride: int | None, what: str = "--hii-dim") -> None:
    """:class:`UserError` for a slice selection that a cube of side ``n`` cannot give."""
    if slices_per_axis is not None and stride is not None:
        raise UserError("give --slices-per-axis or --stride, not both")
    if slices_per_axis is not None and not 1 <= slices_per_axis <= n:
        raise UserError(f"--slices-per-axis must be in 1..{n} ({what}), got {slices_per_axis}")
    if stride is not None and not 1 <= stride <= n:
        raise UserError(f"--stride must be in 1..{n} ({what}), got {stride}")


def slice_positions(n: int, slices_per_axis: int | None = None, stride: int | None = None) -> np.ndarray:
    """Slice indices along an axis of ``n`` cells: all; or ``slices_per_axis`` evenly spaced; or every ``stride``."""
    if slices_per_axis is not None:
        return np.unique(np.linspace(0, n, slices_per_axis, endpoint=False).astype(np.int64))
    return np.arange(0, n, stride or 1, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Grid:
    """What ``lenshpc simulate21cm`` makes: boxes for every (realisation, redshift, F_ESC10), sliced.

    Realisation ``r`` is one set of initial conditions, with 21cmFAST ``random_seed`` :meth:`box_seed` (``r``);
    every (redshift, F_ESC10) box of that realisation reuses them (template ``"simple"``: no redshift
    evolution, so each redshift is an independent box).
    """

    redshifts: tuple[float, ...]
    f_esc10: tuple[float, ...]
    realisations: int
    hii_dim: int = 32
    box_len: float = 48.0
    seed: int = 0
    slices_per_axis: int | None = None
    stride: int | None = None
    r_bubble_max: float | None = None

    @classmethod
    def checked(cls, redshifts: Sequence[float], f_esc10: Sequence[float], realisations: int, *, hii_dim: int = 32,
                box_len: float = 48.0, seed: int = 0, slices_per_axis: int | None = None, stride: int | None = None,
                r_bubble_max: float | None = None) -> "Grid":
        """A grid whose every value 21cmFAST accepts (:class:`UserError` naming the flag otherwise)."""
        z = _distinct(check_redshifts(redshifts), "--redshifts")
        f = _distinct(check_f_esc10(f_esc10), "--fesc")
        if isinstance(realisations, bool) or int(realisations) != realisations or realisations < 1:
            raise UserError(f"--realisations must be a positive integer, got {realisations!r}")
        if int(hii_dim) != hii_dim or hii_dim < MIN_HII_DIM:
            raise UserError(f"--hii-dim must be an integer ≥ {MIN_HII_DIM} cells, got {hii_dim!r}")
        if not math.isfinite(box_len) or box_len <= 0:
            raise UserError(f"--box-len must be a positive length in Mpc, got {box_len!r}")
        if seed < 0:
            raise UserError(f"--seed must be ≥ 0, got {seed}")
        check_slicing(int(hii_dim), slices_per_axis, stride)
        rb = R_BUBBLE_MAX_DEFAULT if r_bubble_max is None else float(r_bubble_max)
        if not math.isfinite(rb) or rb <= 0:
            raise UserError(f"--r-bubble-max must be a positive length in Mpc, got {r_bubble_max!r}")
        if rb > box_len / 3:
            raise UserError(f"R_BUBBLE_MAX {rb:g} Mpc is larger than BOX_LEN/3 = {box_len / 3:g} Mpc (21cmFAST refuses "
                            f"it with the sharp-k filter): pass --r-bubble-max {math.floor(box_len / 3 * 100) / 100:g} "
                            f"or less, or a --box-len of at least {3 * rb:g} Mpc")
        return cls(z, f, int(realisations), int(hii_dim), float(box_len), int(seed), slices_per_axis, stride,
                   None if r_bubble_max is None else rb)

    # boxes --------------------------------------------------------------
    def box_seed(self, realisation: int) -> int:
        """21cmFAST ``random_seed`` of realisation ``r``: depends only on (``seed``, ``r``)."""
        return int(rng_for(self.seed, "21cmfast", int(realisation)).integers(1, 2**31 - 1))

    @property
    def boxes(self) -> list[tuple[float, float]]:
        """The (redshift, F_ESC10) boxes of one realisation, in file order."""
        return [(z, f) for z in self.redshifts for f in self.f_esc10]

    def positions(self) -> np.ndarray:
        """Slice indices along each axis (all cells; or evenly spaced ``slices_per_axis``; or every ``stride``)."""
        return slice_positions(self.hii_dim, self.slices_per_axis, self.stride)

    @property
    def slices_per_box(self) -> int:
        return 3 * len(self.positions())

    @property
    def slices_per_realisation(self) -> int:
        return len(self.boxes) * self.slices_per_box

    @property
    def n_slices(self) -> int:
        return self.realisations * self.slices_per_realisation

    # records ------------------------------------------------------------
    def as_dict(self) -> dict:
        """Everything that determines the data (the part files' and the merged file's fingerprint)."""
        return {"redshifts": list(self.redshifts), "f_esc10": list(self.f_esc10), "realisations": self.realisations,
                "hii_dim": self.hii_dim, "box_len": self.box_len, "seed": self.seed,
                "positions": self.positions().tolist(), "r_bubble_max": self.r_bubble_max,
                "template": TEMPLATE, "simulator_version": SIMULATOR_VERSION}

    def input_kwargs(self, f_esc10: float, realisation: int) -> dict:
        """Keyword arguments of ``py21cmfast.InputParameters.from_template`` for one box."""
        kw = dict(random_seed=self.box_seed(realisation), HII_DIM=self.hii_dim, BOX_LEN=self.box_len,
                  F_ESC10=float(f_esc10), N_THREADS=1)
        if self.r_bubble_max is not None:
            kw["R_BUBBLE_MAX"] = self.r_bubble_max
        return kw

    def simulator(self, version: str) -> dict:
        """The merged file's ``simulator`` attribute."""
        return {"code": "21cmFAST", "version": version, "template": TEMPLATE, "HII_DIM": self.hii_dim,
                "BOX_LEN": self.box_len, "cell_mpc": self.box_len / self.hii_dim, "N_THREADS": 1,
                "R_BUBBLE_MAX": self.r_bubble_max if self.r_bubble_max is not None else R_BUBBLE_MAX_DEFAULT,
                "field": "brightness_temp (mK)", "seed": self.seed,
                "box_seed": "rng_for(seed, '21cmfast', realisation).integers(1, 2**31 - 1)",
                "slice_positions": self.positions().tolist()}
