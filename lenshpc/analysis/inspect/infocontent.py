"""Information content of mock lenses vs detection (thesis Sec 5.3, Figs 5.9, 5.10, 7.22).

Which lensing parameters explain a model's false negatives?  For the positives of a run's fixed
test set (mock lenses ``m = l + α·s·max(l)/max(s)``, Eq 4.2) this module computes the TPR per
hexagon over (θ_E, α) (Fig 5.9), TPR and FNR per bin of α, θ_E or any numeric metadata column
(Fig 5.10), the fraction of the cutout where the α-scaled source exceeds 2× the raw lens's RMS
noise (Fig 7.22), and the value of each quantity above which the TPR reaches 1 and stays there.

docs/infocontent.md defines each quantity (the thesis text leaves them open) and says why:
RMS noise = astropy's σ-clipped std at 3σ (:func:`rms_noise`), area fraction over the whole cutout
and all bands with a strict ``>`` (:func:`source_area_fractions`), predicted positive iff
``score ≥ threshold``, ``numpy.histogram`` bins (:func:`binned_rates`) and the binned and exact
"TPR reaches 1" (:func:`tpr_reaches_one`).  ``lenshpc infocontent`` is :func:`analyse`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lenshpc.analysis.inspect import SUMMARY_JSON, current_summary
from lenshpc.errors import DataError, UserError
from lenshpc.train.rundir import METRICS_FILE, PREDICTIONS_FILE, RunDir, read_predictions, unfinished_run_advice
from lenshpc.utils import atomic_write_json, atomic_write_text, json_safe, progress

log = logging.getLogger("lenshpc.analysis")

#: Multiple of the lens's RMS noise a source pixel must exceed (thesis: "2x the RMS").
NOISE_FACTOR = 2.0
#: σ-clipping threshold of :func:`rms_noise`.
CLIP_SIGMA = 3.0
#: Cap on σ-clipping iterations (convergence takes 2–6 on real cutouts).
CLIP_MAX_ITERS = 50
#: Images per block when estimating noise and reading cutouts (bounds memory).
BLOCK = 256
#: Default number of equal-width bins per quantity.
DEFAULT_BINS = 10
#: Default hexagons across the x axis of the hexbin (the thesis code used 10–15).
DEFAULT_GRIDSIZE = 10
#: Default hexbin axes (thesis Fig 5.9: Einstein radius vs source brightness).
DEFAULT_X, DEFAULT_Y = "theta_E", "alpha"
#: Name of the computed area-fraction column (usable with ``--x/--y/--bins``).
AREA = "area_fraction"

#: Integer index columns of the test metadata (kept as integers; −1 where they do not apply).
_INDEX_COLUMNS = ("lens_index", "source_index", "index")

LABELS = {"alpha": "α (source peak / lens peak)", "theta_E": "Einstein radius θ_E (″)",
          AREA: "fraction of the cutout where α-scaled source > 2× lens RMS noise", "score": "model score"}


# =========================================================================== noise
def rms_noise(image: Any, *, sigma: float = CLIP_SIGMA, max_iters: int = CLIP_MAX_ITERS) -> float:
    """Background RMS noise of one image: ``astropy.stats.sigma_clipped_stats`` std of its pixels.

    Pixels with ``|x − median| > sigma·std`` of the pixels still kept are dropped until nothing
    changes: bright objects (the lens galaxy, field stars) are clipped, the sky noise remains.

    Parameters
    ----------
    image : array_like
        Any shape; all finite pixels form one sample (:func:`source_area_fractions` handles
        bands separately).
    sigma : float
        Clipping threshold in standard deviations.
    max_iters : int
        Iteration cap.

    Returns
    -------
    float
        The RMS noise (0 for a constant image; NaN when no pixel is finite).

    Examples
    --------
    >>> img = np.where(np.indices((10, 10)).sum(0) % 2, 1.0, -1.0)   # ±1 checkerboard
    >>> img[:2, :2] = 100.0                                          # a bright "galaxy"
    >>> rms_noise(img)
    1.0
    """
    return float(rms_noise_batch(np.asarray(image)[None], sigma=sigma, max_iters=max_iters)[0])


def rms_noise_batch(images: Any, *, sigma: float = CLIP_SIGMA, max_iters: int = CLIP_MAX_ITERS) -> np.ndarray:
    """:func:`rms_noise` of each image of a batch ``(n, ...)`` → ``(n,)`` float64 (vectorised)."""
    from astropy.stats import sigma_clipped_stats

    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    out = np.empty(len(flat))
    with warnings.catch_warnings():  # NaN pixels are clipped on purpose; an all-NaN image gives NaN
        warnings.simplefilter("ignore")
        for start in range(0, len(flat), BLOCK):  # bounded temporaries
            out[start:start + BLOCK] = sigma_clipped_stats(flat[start:start + BLOCK], sigma=sigma,
                                                           maxiters=max_iters, axis=1)[2]
    return out


# =========================================================================== source area
def _as_batch(images: Any) -> np.ndarray:
    """``(n, H, W, C)`` float32 from ``(n, H, W)`` or ``(n, H, W, C)``."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"expected a batch of images (n, H, W) or (n, H, W, C), got shape {arr.shape}")
    return arr


def scaled_sources(sources: Any, alphas: Any, lenses: Any) -> np.ndarray:
    """The source term of Eq 4.2, ``s·max(l)·α/max(s)``, per image ``(n, H, W, C)`` float32.

    Uses :func:`lenshpc.data.transforms.merge_scale` (the one implementation of the factor),
    so ``lens + scaled_sources(...)`` is exactly :func:`lenshpc.data.transforms.merge`.
    """
    from lenshpc.data import transforms

    sources, lenses = _as_batch(sources), _as_batch(lenses)
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if sources.shape != lenses.shape or len(alphas) != len(sources):
        raise DataError(f"sources {sources.shape}, lenses {lenses.shape} and alphas ({len(alphas)},) do not match")
    k = transforms.merge_scale(transforms.image_max(lenses), transforms.image_max(sources), alphas)
    return sources * k[:, None, None, None]


def source_area_fractions(sources: Any, alphas: Any, lenses: Any, *, factor: float = NOISE_FACTOR,
                          sigma: float = CLIP_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each cutout where the α-scaled source exceeds ``factor`` × the lens's RMS noise.

    Parameters
    ----------
    sources, lenses : array_like ``(n, H, W)`` or ``(n, H, W, C)``
        Raw (un-normalised) lensed sources and lens cutouts, paired row by row (the pairs the
        test mock lenses were merged from).
    alphas : array_like ``(n,)``
        The α each mock lens was merged with.
    factor : float
        Noise multiple (2 in the thesis).
    sigma : float
        σ-clipping threshold of the noise estimate (:func:`rms_noise`).

    Returns
    -------
    fractions : ndarray ``(n,)``
        ``#{s' > factor·σ_l} / #pixels`` over all pixels and bands, in [0, 1].
    noise : ndarray ``(n, C)``
        The lens RMS noise ``σ_l`` per image and band (raw data units).
    """
    scaled = scaled_sources(sources, alphas, lenses)
    lenses = _as_batch(lenses)
    n, h, w, c = lenses.shape
    # one noise estimate per (image, band): bands of a multi-band cutout have different noise
    per_band = np.moveaxis(lenses, 3, 1).reshape(n * c, h * w)
    noise = rms_noise_batch(per_band, sigma=sigma).reshape(n, c)
    above = scaled > (factor * noise)[:, None, None, :]
    return above.reshape(n, -1).mean(axis=1), noise


def source_area_fraction(source: Any, alpha: float, lens: Any, *, factor: float = NOISE_FACTOR,
                         sigma: float = CLIP_SIGMA) -> float:
    """:func:`source_area_fractions` of one ``(H, W)`` or ``(H, W, C)`` source/lens pair at ``alpha``."""
    source, lens = np.asarray(source), np.asarray(lens)
    fractions, _ = source_area_fractions(source[None], [alpha], lens[None], factor=factor, sigma=sigma)
    return float(fractions[0])


# =========================================================================== binned rates
def make_edges(values: Any, bins: int | Sequence[float], lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Bin edges: explicit (checked: ≥ 2, finite, strictly increasing) or ``bins`` equal bins over [lo, hi].

    ``lo``/``hi`` default to the finite data range; a zero-width range is widened by ±0.5 so
    one value still gets a bin.
    """
    if np.ndim(bins) == 0:
        n = int(bins)
        if n < 1:
            raise UserError(f"number of bins must be ≥ 1, got {bins}")
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if lo is None:
            lo = float(v.min()) if v.size else 0.0
        if hi is None:
            hi = float(v.max()) if v.size else 1.0
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, n + 1)
    edges = np.asarray(bins, dtype=np.float64).reshape(-1)
    if edges.size < 2 or not np.isfinite(edges).all() or np.any(np.diff(edges) <= 0):
        raise UserError(f"bin edges must be ≥ 2 finite, strictly increasing numbers, got {edges.tolist()}")
    return edges


@dataclass
class BinnedRates:
    """TPR/FNR of positives per bin of one quantity.

    Attributes
    ----------
    edges : ndarray (B+1,)
    n, tp, fn : ndarray (B,) int
        Positives, detected (score ≥ threshold) and missed positives per bin.
    tpr, fnr : ndarray (B,) float
        ``tp/n`` and ``fn/n``; NaN where ``n = 0``.
    n_outside : int
        Values outside the edges (or non-finite), not in any bin.
    """

    edges: np.ndarray
    n: np.ndarray
    tp: np.ndarray
    fn: np.ndarray
    tpr: np.ndarray
    fnr: np.ndarray
    n_outside: int

    def to_dict(self) -> dict:
        """JSON-ready: lists, NaN → None."""
        return json_safe(asdict(self))


def binned_rates(values: Any, predicted: Any, bins: int | Sequence[float]) -> BinnedRates:
    """TPR and FNR of positives per bin of ``values``.

    Parameters
    ----------
    values : array_like (N,)
        The quantity (e.g. α) of each *positive*.
    predicted : array_like (N,) bool
        Whether each positive was predicted positive (score ≥ threshold).
    bins : int or sequence of float
        Edges, or a number of equal-width bins over the finite data range (:func:`make_edges`).

    Returns
    -------
    BinnedRates

    Examples
    --------
    >>> r = binned_rates([0.05, 0.07, 0.15, 0.25], [False, True, True, True], [0.0, 0.1, 0.2, 0.3])
    >>> r.n.tolist(), r.tpr.tolist()
    ([2, 1, 1], [0.5, 1.0, 1.0])
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted).reshape(-1).astype(bool)
    if values.shape != predicted.shape:
        raise DataError(f"values ({values.size}) and predicted ({predicted.size}) differ in length")
    edges = make_edges(values, bins)
    finite = np.isfinite(values)
    n = np.histogram(values[finite], edges)[0]
    tp = np.histogram(values[finite & predicted], edges)[0]
    tpr = np.where(n > 0, tp / np.maximum(n, 1), np.nan)
    fnr = np.where(n > 0, 1.0 - tpr, np.nan)
    return BinnedRates(edges, n, tp, n - tp, tpr, fnr, int(values.size - n.sum()))


@dataclass
class TprOne:
    """Where the TPR reaches 1 and stays there (see :func:`tpr_reaches_one`).

    Attributes
    ----------
    edge : float or None
        Lower edge of the first bin of the all-TPR-1 tail (None: the last non-empty bin misses).
    bin : int or None
        That bin's index.
    n_tail : int
        Positives in the tail bins (all detected).
    exact : float or None
        Largest value of a missed positive; every positive strictly above it was detected
        (None: nothing missed, TPR = 1 everywhere).
    n_above_exact : int
        Positives strictly above ``exact`` (all of them when ``exact`` is None).
    n_missed : int
        Missed positives in all.
    """

    edge: float | None
    bin: int | None
    n_tail: int
    exact: float | None
    n_above_exact: int
    n_missed: int

    def to_dict(self) -> dict:
        return asdict(self)


def tpr_reaches_one(values: Any, predicted: Any, bins: int | Sequence[float]) -> TprOne:
    """The value above which the TPR of positives is 1 and stays 1.

    Parameters
    ----------
    values, predicted, bins
        As :func:`binned_rates`.

    Returns
    -------
    TprOne
        ``edge``: the lower edge of the first bin from which every non-empty bin (to the last
        one) has TPR 1 — the thesis's "mistakes can be avoided if α is higher than 0.043" read
        off a bar chart; ``exact``: the largest value among the misses (bin-free).

    Examples
    --------
    >>> t = tpr_reaches_one([0.05, 0.07, 0.15, 0.25], [False, True, True, True], [0.0, 0.1, 0.2, 0.3])
    >>> t.edge, t.n_tail, t.exact, t.n_above_exact
    (0.1, 2, 0.05, 3)
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted).reshape(-1).astype(bool)
    rates = binned_rates(values, predicted, bins)
    edge = first = None
    n_tail = 0
    for b in range(len(rates.n) - 1, -1, -1):  # walk down from the top bin while TPR stays 1
        if rates.n[b] == 0:
            continue
        if rates.tp[b] != rates.n[b]:
            break
        first = b
        n_tail += int(rates.n[b])
    if first is not None:
        edge = float(rates.edges[first])
    finite = np.isfinite(values)
    missed = finite & ~predicted
    exact = float(values[missed].max()) if missed.any() else None
    n_above = int((finite & (values > exact)).sum()) if exact is not None else int(finite.sum())
    return TprOne(edge, first, n_tail, exact, n_above, int(missed.sum()))


# =========================================================================== hexbin
def _hex_extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    return (*make_edges(x, 1).tolist(), *make_edges(y, 1).tolist())  # the data range, widened when zero


def hexbin_tpr(ax, x: Any, y: Any, predicted: Any, gridsize: int = DEFAULT_GRIDSIZE, extent=None, **kwargs):
    """Draw the TPR hexbin on ``ax`` (thesis Fig 5.9) and return ``(collection, cells)``.

    ``C`` = predicted positive (0/1), ``reduce_C_function = numpy.mean``: a hexagon's value
    is the TPR of the positives in it; hexagons without points are not drawn.  ``cells`` is
    a list of ``{"x", "y", "n", "tpr"}`` (hexagon centre, positives, TPR), one per drawn
    hexagon, from a second, identical hexbin that sums ones (same grid, so same cells).
    """
    from matplotlib.figure import Figure

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    extent = extent or _hex_extent(x, y)
    kwargs.setdefault("cmap", "copper")
    coll = ax.hexbin(x, y, C=pred, reduce_C_function=np.mean, gridsize=gridsize, extent=extent, mincnt=1,
                     vmin=0.0, vmax=1.0, **kwargs)
    # counts on a throw-away axes (no pyplot figure to close) with the same grid: identical cell order and mincnt
    counts = Figure().subplots().hexbin(x, y, C=np.ones_like(x), reduce_C_function=np.sum, gridsize=gridsize,
                                        extent=extent, mincnt=1)
    n = np.asarray(counts.get_array(), dtype=np.float64)
    offsets = np.asarray(coll.get_offsets())
    tpr = np.asarray(coll.get_array(), dtype=np.float64)
    if len(n) != len(tpr):  # would mean matplotlib changed how mincnt filters cells
        raise RuntimeError(f"hexbin cells differ between TPR ({len(tpr)}) and count ({len(n)}) passes")
    cells = [{"x": float(cx), "y": float(cy), "n": int(round(k)), "tpr": float(t)}
             for (cx, cy), k, t in zip(offsets, n, tpr)]
    return coll, cells


# =========================================================================== run inputs
@dataclass
class RunInputs:
    """What :func:`analyse` reads from a run directory."""

    run_dir: Path
    scores: np.ndarray
    labels: np.ndarray
    meta: dict[str, np.ndarray]
    threshold: float
    threshold_source: str
    config: dict = field(default_factory=dict)

    @property
    def positives(self) -> np.ndarray:
        return np.flatnonzero(self.labels == 1)


def _nested(d: Mapping, dotted: str, default=None):
    for key in dotted.split("."):
        if not isinstance(d, Mapping) or key not in d:
            return default
        d = d[key]
    return d


def load_run(run_dir: str | os.PathLike, threshold: float | None = None, group: str = "test") -> RunInputs:
    """Read ``predictions.h5`` (one group), ``metrics.json`` and ``config.yaml`` of a finished run.

    Raises
    ------
    UserError
        Not a run directory, an unfinished run, or a predictions file without ``group``.
    """
    import yaml

    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise UserError(f"{rd.path}: no such directory; pass a run directory written by `lenshpc train` "
                        "(e.g. runs/<name>/seed0) or an ensemble run directory")
    if rd.config.is_file() and not (rd.predictions.is_file() and rd.is_done()):
        raise UserError(unfinished_run_advice(rd.path, PREDICTIONS_FILE))
    if not rd.predictions.is_file():
        if rd.has_checkpoint():
            raise UserError(f"{rd.path}: the run has not finished (no predictions.h5) and has no config.yaml to "
                            "resume it from; re-run `lenshpc train CONFIG --run-dir "
                            f"{rd.path}` with the config it was started with")
        raise UserError(f"{rd.path}: not a run directory (no predictions.h5); pass a directory written by "
                        "`lenshpc train`, `lenshpc sweep` (…/<group>/seed<k>) or `lenshpc ensemble`")
    if not rd.is_done():
        raise UserError(f"{rd.path}: the run has not finished (no DONE marker next to predictions.h5); "
                        "wait for it or resume it with `lenshpc train CONFIG --run-dir RUN`")
    try:
        pred = read_predictions(rd.predictions, group)
    except KeyError:
        raise UserError(f"{rd.predictions}: no '{group}' group with scores/labels/meta "
                        "(see docs/run-dir.md)") from None
    except OSError as exc:
        raise UserError(f"{rd.predictions}: unreadable ({exc})") from None
    config = {}
    if rd.config.is_file():
        config = yaml.safe_load(rd.config.read_text()) or {}
    metrics = rd.read_metrics() if rd.metrics.is_file() else {}
    if threshold is not None:
        thr, source = float(threshold), "--threshold"
    elif isinstance(metrics.get("threshold"), (int, float)):
        thr, source = float(metrics["threshold"]), METRICS_FILE
    elif isinstance(_nested(config, "selection.threshold"), (int, float)):
        thr, source = float(_nested(config, "selection.threshold")), "config.yaml selection.threshold"
    else:
        thr, source = 0.5, "default"
    if not 0.0 <= thr <= 1.0:
        raise UserError(f"--threshold {thr}: must be in [0, 1]")
    labels = np.asarray(pred["labels"]).astype(np.int64)
    scores = np.asarray(pred["scores"], dtype=np.float64)
    if not (labels == 1).any():
        raise DataError(f"{rd.predictions}: the {group} set has no positives; nothing to analyse")
    return RunInputs(rd.path, scores, labels, pred["meta"], thr, source, config)


def resolve_data(inputs: RunInputs, data: str | os.PathLike | None) -> Path | None:
    """The dataset the test mock lenses were merged from: ``--data`` or the run's ``data.path``."""
    if data is not None:
        path = Path(data)
        if not path.is_file():
            raise UserError(f"--data {path}: file not found")
        return path
    value = _nested(inputs.config, "data.path")
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise UserError(f"{path}: the run's data.path (config.yaml) does not exist here; pass the population "
                        "dataset with --data DATA.h5")
    return path


def _numeric(values: np.ndarray) -> bool:
    return np.asarray(values).dtype.kind in "fiub"


def read_pairs(data: Path, lens_index: np.ndarray, source_index: np.ndarray, meta: Mapping[str, np.ndarray],
               *, factor: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Area fractions and lens noise of the positives, reading their raw lens/source pairs block by block.

    Checks that ``data`` is the population the run was tested on: indices in range, and every
    source metadata column present in ``meta`` equal to the dataset's for those sources.
    """
    from lenshpc.data.format import open_dataset

    alpha = np.asarray(meta["alpha"], dtype=np.float64)
    with open_dataset(data) as ds:
        if ds.kind != "population":
            raise UserError(f"{data}: a {ds.kind} dataset has no raw lenses and sources; the source-area "
                            "analysis needs the population dataset the run was trained on (--data)")
        for name, idx in (("lenses", lens_index), ("sources", source_index)):
            count = ds.count(name)
            if idx.size and (idx.min() < 0 or idx.max() >= count):
                raise DataError(f"{data}: predictions refer to {name} row {int(idx.max())}, but the file has "
                                f"{count} {name}; this is not the dataset the run was tested on (pass --data)")
        src_meta = ds.meta("sources", source_index)
        for col, values in src_meta.items():
            if col in meta and _numeric(values) and _numeric(meta[col]):
                a, b = np.asarray(values, dtype=np.float64), np.asarray(meta[col], dtype=np.float64)
                if not np.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True):
                    raise DataError(f"{data}: source column '{col}' differs from the run's test metadata; this is "
                                    "not the dataset the run was tested on (pass the right one with --data)")
        fractions, noise = [], []
        with progress(total=len(alpha), desc="source area", unit="img") as bar:
            for start in range(0, len(alpha), BLOCK):
                sl = slice(start, start + BLOCK)
                frac, rms = source_area_fractions(ds.read("sources", source_index[sl]), alpha[sl],
                                                  ds.read("lenses", lens_index[sl]), factor=factor, sigma=sigma)
                fractions.append(frac)
                noise.append(rms)
                bar.update(len(frac))
    return np.concatenate(fractions), np.concatenate(noise)


# =========================================================================== bins option
def parse_bins(specs: Sequence[str] | None) -> dict[str, Any]:
    """``--bins`` values → ``{"*": N, "alpha": edges or N, ...}``.

    Each spec is ``N`` (equal bins for every quantity), ``NAME=N`` or ``NAME=E0,E1,...``
    (explicit edges for one quantity).
    """
    out: dict[str, Any] = {"*": DEFAULT_BINS}
    for spec in specs or []:
        name, _, value = spec.rpartition("=") if "=" in spec else ("*", "", spec)
        name = name.strip() or "*"
        try:
            parts = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--bins {spec!r}: expected N, NAME=N or NAME=E0,E1,... (numbers)") from None
        if len(parts) == 1:
            if parts[0] != int(parts[0]) or parts[0] < 1:
                raise UserError(f"--bins {spec!r}: a number of bins must be a positive integer")
            out[name] = int(parts[0])
        elif len(parts) >= 2:
            out[name] = make_edges([], parts)
        else:
            raise UserError(f"--bins {spec!r}: no value")
    return out


def _edges_for(name: str, values: np.ndarray, bins: Mapping[str, Any], config: Mapping) -> np.ndarray:
    spec = bins.get(name, bins.get("*", DEFAULT_BINS))
    if np.ndim(spec) == 0 and name == "alpha":
        # α ~ U(alpha_min, alpha_max): bin the configured range so edges are round numbers
        lo, hi = _nested(config, "data.alpha_min"), _nested(config, "data.alpha_max")
        finite = values[np.isfinite(values)]
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and hi > lo and finite.size \
                and finite.min() >= lo and finite.max() <= hi:
            return make_edges(values, spec, float(lo), float(hi))
    if np.ndim(spec) == 0 and name == AREA:
        return make_edges(values, spec, 0.0, max(float(np.nanmax(values)) if values.size else 1.0, 1e-12))
    return make_edges(values, spec)


# =========================================================================== plots
def _figure(figsize: tuple[float, float], **subplots):
    """A figure and its axes outside pyplot's registry: nothing to close, whatever happens while drawing."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(**subplots)


def _save(fig, path: Path) -> Path:
    from lenshpc.report.plots import save_png

    return save_png(fig, path, dpi=130, tight=True, close=False)


def _rate_bars(ax, rates: BinnedRates, name: str, reach: TprOne | None) -> None:
    """TPR (bottom, green) and FNR (top, red) stacked per bin, n above each bar (Fig 5.10 style)."""
    left, width = rates.edges[:-1], np.diff(rates.edges)
    has = rates.n > 0
    tpr = np.where(has, rates.tpr, 0.0)
    fnr = np.where(has, rates.fnr, 0.0)
    ax.bar(left[has], tpr[has], width=width[has], align="edge", color="tab:green", edgecolor="white", label="TPR")
    ax.bar(left[has], fnr[has], width=width[has], bottom=tpr[has], align="edge", color="tab:red",
           edgecolor="white", label="FNR")
    for l, w_, k in zip(left[has], width[has], rates.n[has]):
        ax.text(l + w_ / 2, 1.01, str(int(k)), ha="center", va="bottom", fontsize=7)
    if reach is not None and reach.edge is not None:
        ax.axvline(reach.edge, color="k", ls="--", lw=1, label=f"TPR = 1 from {reach.edge:.4g}")
    ax.set_xlim(rates.edges[0], rates.edges[-1])
    ax.set_ylim(0, 1.12)
    ax.set_xlabel(LABELS.get(name, name))
    ax.set_ylabel("fraction of positives in bin")
    # below the axes: inside it would hide bars
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)


def plot_rates(rates: BinnedRates, name: str, reach: TprOne | None, title: str, path: Path) -> Path:
    """``tpr_<name>.png``: TPR and FNR per bin of one quantity (thesis Fig 5.10)."""
    fig, ax = _figure((7, 4.2))
    _rate_bars(ax, rates, name, reach)
    ax.set_title(f"{title}\nTPR / FNR per bin (number of positives above each bar)", fontsize=9)
    return _save(fig, path)


def plot_hexbin(x: np.ndarray, y: np.ndarray, predicted: np.ndarray, xname: str, yname: str, gridsize: int,
                title: str, path: Path) -> tuple[Path, list[dict]]:
    """``tpr_hexbin.png``: TPR per hexagon (left) and positives per hexagon (right)."""
    fig, (ax, axn) = _figure((12, 4.8), ncols=2, sharex=True, sharey=True)
    extent = _hex_extent(np.asarray(x, float), np.asarray(y, float))
    coll, cells = hexbin_tpr(ax, x, y, predicted, gridsize=gridsize, extent=extent, edgecolors="face")
    fig.colorbar(coll, ax=ax, label="TPR per hexagon")
    if len(cells) <= 80:  # small sets: write n into each hexagon (readable up to ~80 cells)
        for c in cells:
            ax.text(c["x"], c["y"], str(c["n"]), ha="center", va="center", fontsize=6,
                    color="white" if c["tpr"] < 0.6 else "black")
    counts = axn.hexbin(x, y, gridsize=gridsize, extent=extent, mincnt=1, cmap="viridis", edgecolors="face")
    fig.colorbar(counts, ax=axn, label="positives per hexagon")
    for a in (ax, axn):
        a.set_xlabel(LABELS.get(xname, xname))
    ax.set_ylabel(LABELS.get(yname, yname))
    ax.set_title("TPR (colour); empty = no data", fontsize=9)
    axn.set_title("positives per hexagon", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path), cells


def plot_source_area(fraction: np.ndarray, scores: np.ndarray, predicted: np.ndarray, threshold: float,
                     rates: BinnedRates, reach: TprOne, factor: float, title: str, path: Path) -> Path:
    """``source_area.png``: score vs area fraction (thesis Fig 7.22) and binned TPR/FNR."""
    fig, (ax, axb) = _figure((12, 4.6), ncols=2)
    ax.scatter(fraction[predicted], scores[predicted], s=10, c="tab:blue", alpha=0.7,
               label=f"detected (TP) {int(predicted.sum())}")
    ax.scatter(fraction[~predicted], scores[~predicted], s=12, c="tab:red", marker="x",
               label=f"missed (FN) {int((~predicted).sum())}")
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"threshold {threshold:g}")
    if reach.exact is not None:
        ax.axvline(reach.exact, color="k", ls="--", lw=1, label=f"all detected above {reach.exact:.4g}")
    ax.set_xlabel(f"fraction of the cutout where α-scaled source > {factor:g}× lens RMS noise")
    ax.set_ylabel("model score")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("score vs source area above the noise", fontsize=9)
    _rate_bars(axb, rates, AREA, reach)
    axb.set_xlabel("area fraction")
    axb.set_title("TPR / FNR per area-fraction bin", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# =========================================================================== the analysis
def _fingerprint(inputs: RunInputs, data: Path | None, options: Mapping) -> dict:
    def stat(p: Path | None):
        if p is None:
            return None
        st = p.stat()
        return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    return {"predictions": stat(inputs.run_dir / PREDICTIONS_FILE), "data": stat(data), "options": dict(options)}


def _fmt(v: float | None, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}g}"


def _rates_table(name: str, rates: BinnedRates) -> str:
    lines = [f"| {name} bin | positives | TP | FN | TPR | FNR |", "|---|---:|---:|---:|---:|---:|"]
    for i in range(len(rates.n)):
        lo, hi = rates.edges[i], rates.edges[i + 1]
        bracket = "]" if i == len(rates.n) - 1 else ")"
        lines.append(f"| [{lo:.4g}, {hi:.4g}{bracket} | {rates.n[i]} | {rates.tp[i]} | {rates.fn[i]} | "
                     f"{_fmt(float(rates.tpr[i]), 3)} | {_fmt(float(rates.fnr[i]), 3)} |")
    if rates.n_outside:
        lines.append(f"\n{rates.n_outside} value(s) outside the bin edges are not in the table.")
    return "\n".join(lines)


def _reach_text(name: str, r: TprOne, rates: BinnedRates) -> str:
    if r.n_missed == 0:
        return f"- **{name}**: no positive was missed (TPR = 1 in every bin)."
    binned = (f"TPR = 1 in every bin from **{name} ≥ {r.edge:.4g}** (bin {r.bin + 1} of {len(rates.n)}, "
              f"edges {r.edge:.4g}–{rates.edges[-1]:.4g}; {r.n_tail} positives)" if r.edge is not None
              else "the highest non-empty bin still misses lenses (TPR never reaches 1)")
    exact = (f"every positive with {name} > {r.exact:.4g} was found ({r.n_above_exact} positives)"
             if r.n_above_exact else f"the positive with the largest {name} ({r.exact:.4g}) was missed")
    return f"- **{name}**: {binned}; exactly: {exact}; {r.n_missed} missed in all."


def _summary_md(s: dict, tables: dict[str, BinnedRates], reach: dict[str, TprOne]) -> str:
    out = [f"# Information content: {s['run_dir']}", "",
           f"Test set: {s['n_test']} images, {s['n_positives']} positives (mock lenses). "
           f"Decision threshold {s['threshold']:g} ({s['threshold_source']}); predicted positive iff score ≥ threshold.",
           f"Overall TPR (recall) of the positives: **{s['tpr']:.4f}** ({s['tp']} detected, {s['fn']} missed).", ""]
    if s.get("source_area"):
        sa = s["source_area"]
        out += [f"Source area: fraction of the cutout where α·s·max(l)/max(s) > {sa['factor']:g} × the lens's RMS "
                f"noise (σ-clipped std at {sa['clip_sigma']:g}σ of the raw lens cutout), data {s['data']}. "
                f"Median fraction {_fmt(sa['median'])}, range {_fmt(sa['min'])}–{_fmt(sa['max'])}.", ""]
    elif s.get("source_area_skipped"):
        out += [f"Source area: not computed ({s['source_area_skipped']}).", ""]
    out += ["## Where the TPR reaches 1", ""]
    out += [_reach_text(name, reach[name], tables[name]) for name in reach]
    for name, rates in tables.items():
        out += ["", f"## TPR / FNR per {name} bin", "", _rates_table(name, rates)]
    hx = s.get("hexbin")
    if hx:
        out += ["", f"## Hexbin ({hx['x']} × {hx['y']}, gridsize {hx['gridsize']})", "",
                f"{len(hx['cells'])} non-empty hexagons; {sum(c['tpr'] < 1 for c in hx['cells'])} with TPR < 1 "
                "(cell centres, counts and TPR in summary.json → hexbin.cells)."]
    out += ["", "Figures: " + ", ".join(s["figures"]) + ".", ""]
    return "\n".join(out)


def _positives_csv(columns: Mapping[str, np.ndarray]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    names = list(columns)
    w.writerow(names)
    for row in zip(*(columns[n] for n in names)):
        # floats in full (round-trip) precision: the table is for re-analysis, not for reading
        w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return buf.getvalue()


def analyse(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, data: str | os.PathLike | None = None,
            threshold: float | None = None, bins: Mapping[str, Any] | None = None,
            gridsize: int = DEFAULT_GRIDSIZE, x: str | None = None, y: str | None = None,
            factor: float = NOISE_FACTOR, sigma: float = CLIP_SIGMA, force: bool = False) -> dict:
    """Run the information-content analysis of one run directory and write its outputs.

    Parameters
    ----------
    run_dir : path
        A finished run (or ensemble run) directory with ``predictions.h5`` (test group).
    out : path, optional
        Output directory (default ``RUN_DIR/infocontent``).
    data : path, optional
        The population dataset the test mock lenses were merged from (default the run's
        ``data.path``); needed for the source-area analysis only.
    threshold : float, optional
        Decision threshold (default: the run's, from ``metrics.json``).
    bins : dict, optional
        From :func:`parse_bins`: ``{"*": N, NAME: N or edges}``.
    gridsize : int
        Hexagons across the x axis of the hexbin.
    x, y : str, optional
        Hexbin axes: test metadata columns (or ``area_fraction``); default ``theta_E`` / ``alpha``.
    factor, sigma : float
        Noise multiple and σ-clip threshold of the source-area analysis.
    force : bool
        Recompute even when ``OUT/summary.json`` matches the inputs.

    Returns
    -------
    dict
        The written ``summary.json`` (plus ``"skipped": True`` when it was up to date).
    """
    if gridsize < 1:
        raise UserError(f"--gridsize {gridsize}: must be ≥ 1")
    if factor <= 0 or sigma <= 0:
        raise UserError("--noise-factor and --clip-sigma must be positive")
    bins = dict(bins or {"*": DEFAULT_BINS})
    inputs = load_run(run_dir, threshold)
    out_dir = Path(out) if out is not None else inputs.run_dir / "infocontent"
    meta = inputs.meta
    pos = inputs.positives
    population = "alpha" in meta and "theta_E" in meta
    x = x or (DEFAULT_X if population else None)
    y = y or (DEFAULT_Y if population else None)
    numeric = sorted(c for c, v in meta.items() if _numeric(v) and c not in ("label", *_INDEX_COLUMNS))
    if not population and (x is None or y is None):
        raise UserError(
            f"{inputs.run_dir / 'predictions.h5'}: the test metadata has no 'alpha'/'theta_E' columns (a labelled/"
            f"challenge dataset, or a run made before they were recorded), so the (θ_E, α) analysis does not apply. "
            f"Choose two numeric columns with --x COL --y COL; available: {', '.join(numeric) or 'none'}")
    pairs = population and {"lens_index", "source_index"} <= set(meta)
    data_path = resolve_data(inputs, data) if pairs else None
    options = {"threshold": inputs.threshold, "bins": {k: np.asarray(v).tolist() for k, v in bins.items()},
               "gridsize": gridsize, "x": x, "y": y, "factor": factor, "sigma": sigma, "version": 1}
    finger = _fingerprint(inputs, data_path, options)
    previous = None if force else current_summary(out_dir, "inputs", finger, "figures",
                                                  "same predictions, data and options")
    if previous is not None:
        return previous

    scores = inputs.scores[pos]
    predicted = scores >= inputs.threshold
    columns: dict[str, np.ndarray] = {"row": pos}
    for col in _INDEX_COLUMNS:
        if col in meta and np.asarray(meta[col])[pos].min(initial=0) >= 0:
            columns[col] = np.asarray(meta[col])[pos]
    for col in numeric:
        values = np.asarray(meta[col], dtype=np.float64)[pos]
        if col not in columns and np.isfinite(values).any():  # negatives-only columns are all NaN here
            columns[col] = values
    columns["score"] = scores
    columns["predicted"] = predicted.astype(np.int64)

    skipped_reason = None
    if pairs:
        if data_path is None:
            raise UserError(f"{inputs.run_dir}: no config.yaml data.path; pass the population dataset with --data")
        fractions, noise = read_pairs(data_path, np.asarray(meta["lens_index"], np.int64)[pos],
                                      np.asarray(meta["source_index"], np.int64)[pos],
                                      {k: np.asarray(v)[pos] for k, v in meta.items()}, factor=factor, sigma=sigma)
        columns[AREA] = fractions
        for c in range(noise.shape[1]):
            columns["lens_rms" if noise.shape[1] == 1 else f"lens_rms_{c}"] = noise[:, c]
    elif population:
        skipped_reason = "the test metadata has no lens_index/source_index to find the raw images"
    else:
        skipped_reason = "a labelled dataset has no separate lens and source images"

    for name in (x, y):
        if name not in columns or name in ("row", "predicted"):
            raise UserError(f"--x/--y {name!r}: not a numeric test-metadata column; available: "
                            f"{', '.join(c for c in columns if c not in ('row', 'predicted'))}")

    # what to bin: α, θ_E, area fraction for population runs; the hexbin axes otherwise
    binned_names = [n for n in ("alpha", "theta_E", AREA) if n in columns] if population else []
    binned_names += [n for n in (x, y) if n not in binned_names]
    binned_names += [n for n in bins if n != "*" and n in columns and n not in binned_names]
    tables: dict[str, BinnedRates] = {}
    reach: dict[str, TprOne] = {}
    for name in binned_names:
        values = np.asarray(columns[name], dtype=np.float64)
        edges = _edges_for(name, values, bins, inputs.config)
        tables[name] = binned_rates(values, predicted, edges)
        reach[name] = tpr_reaches_one(values, predicted, edges)

    from lenshpc import metrics as M

    conf = M.confusion(inputs.labels, inputs.scores, inputs.threshold)
    tpr = float(M.recall(inputs.labels, inputs.scores, inputs.threshold))
    title = (f"{'/'.join(inputs.run_dir.resolve().parts[-2:])} — {len(pos)} test positives, "  # e.g. bce/seed0
             f"threshold {inputs.threshold:g}, TPR {tpr:.3f}")

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    xs, ys = (np.asarray(columns[n], dtype=np.float64) for n in (x, y))
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        raise DataError(f"no test positive has finite values of both '{x}' and '{y}'; choose other --x/--y columns")
    _, cells = plot_hexbin(xs[ok], ys[ok], predicted[ok], x, y, gridsize, title, out_dir / "tpr_hexbin.png")
    figures.append("tpr_hexbin.png")
    for name in binned_names:
        if name != AREA:
            plot_rates(tables[name], name, reach[name], title, out_dir / f"tpr_{name}.png")
            figures.append(f"tpr_{name}.png")
    if AREA in columns:
        plot_source_area(columns[AREA], scores, predicted, inputs.threshold, tables[AREA], reach[AREA], factor,
                         title, out_dir / "source_area.png")
        figures.append("source_area.png")

    summary: dict[str, Any] = {
        "run_dir": str(inputs.run_dir), "data": str(data_path) if data_path else None, "group": "test",
        "threshold": inputs.threshold, "threshold_source": inputs.threshold_source,
        "n_test": int(len(inputs.labels)), "n_positives": int(len(pos)), "tp": conf["tp"], "fn": conf["fn"],
        "tpr": tpr, "confusion": conf,
        "tpr_reaches_one": {n: r.to_dict() for n, r in reach.items()},
        "binned": {n: t.to_dict() for n, t in tables.items()},
        "hexbin": {"x": x, "y": y, "gridsize": gridsize, "n_points": int(ok.sum()), "cells": cells},
    }
    if AREA in columns:
        fr = columns[AREA]
        summary["source_area"] = {"factor": factor, "clip_sigma": sigma, "estimator": "sigma-clipped std (median-"
                                  "centred, iterated to convergence) of the raw lens cutout, per band",
                                  "min": float(fr.min()), "median": float(np.median(fr)), "max": float(fr.max()),
                                  "mean": float(fr.mean())}
    else:
        summary["source_area_skipped"] = skipped_reason
    summary["figures"] = figures + ["positives.csv"]
    summary["inputs"] = finger

    atomic_write_text(out_dir / "positives.csv", _positives_csv(columns))
    atomic_write_text(out_dir / "summary.md", _summary_md(summary, tables, reach))
    atomic_write_json(out_dir / SUMMARY_JSON, summary)  # last: its presence means the set is complete
    return summary
