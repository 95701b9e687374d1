"""Mock survey catalogues: held-out negatives with a few mock lenses mixed in as *tracers* (docs/ranking.md).

A ranking run on a real survey has no labels; it is judged by where a handful of known lenses — tracers — land
(LensFlow, seed 004).  :func:`mock_survey` reproduces that from a population dataset: its held-out negatives and
Eq 4.2 mock lenses, stored raw and shuffled as an unlabelled catalogue whose ``is_tracer`` column flags the
tracers; optionally part of the negatives replaced by hard contaminants (:mod:`lenshpc.data.sim_hard`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lenshpc.data import sim_hard, transforms
from lenshpc.data.sim_common import SimOptions
from lenshpc.data.format import open_dataset, write_labelled
from lenshpc.errors import DataError
from lenshpc.utils import progress, rng_for


def mock_survey(population: str | Path, out: str | Path, *, n_tracers: int = 20, alpha_min: float = 0.02,
                alpha_max: float = 0.3, splits: Sequence[str] = ("val", "test"), seed: int = 0,
                contaminants: Mapping[str, float] | None = None) -> dict:
    """Write a mock survey catalogue (unlabelled labelled-kind dataset) with tracer mock lenses.

    Parameters
    ----------
    population : path
        A population dataset (``lenshpc simulate`` / ``stack --population``).
    out : path
        The catalogue to write (atomically).
    n_tracers : int
        Number of mock lenses mixed in (each from a distinct lens when the splits have enough).
    alpha_min, alpha_max : float
        Range of the source brightness α of the tracers (Eq 4.2).
    splits : sequence of str
        Population splits the negatives, lenses and sources are taken from.
    seed : int
        Seed of the tracer draws, the row order and the hard contaminants.
    contaminants : mapping of str to float, optional
        ``{kind: fraction}`` of the survey's non-tracer rows that are hard contaminants of each kind
        (:data:`lenshpc.data.sim_hard.HARD_KINDS`; fractions sum to at most 1).  ``round(fraction × n)``
        held-out negatives, chosen at random, are replaced.  Image ``i`` of a kind is drawn from
        ``rng_for(seed, "hard", kind, i)``.

    Returns
    -------
    dict
        ``{"path", "n", "n_tracers", "n_negatives", "contaminants"}`` (the last: ``{kind: count}``).
    """
    counts_wanted = _check_mix(contaminants)
    if n_tracers < 1:
        raise DataError(f"n_tracers must be at least 1, got {n_tracers}")
    rng = rng_for(seed, "mock-survey")
    with open_dataset(population) as ds:
        if ds.kind != "population":
            raise DataError(f"{ds.path}: a mock survey needs a population dataset (lenses, sources, negatives), "
                            f"not a {ds.kind} one")
        rows = {name: np.concatenate([ds.split(name, s) for s in splits]) for name in ("lenses", "sources", "negatives")}
        if min(len(v) for v in rows.values()) == 0:
            raise DataError(f"{ds.path}: splits {', '.join(splits)} hold no "
                            + ", ".join(k for k, v in rows.items() if len(v) == 0))
        lens_idx = np.sort(rng.choice(rows["lenses"], n_tracers, replace=n_tracers > len(rows["lenses"])))
        source_idx = np.sort(rng.choice(rows["sources"], n_tracers, replace=n_tracers > len(rows["sources"])))
        negatives = ds.read("negatives", rows["negatives"])
        lenses = ds.read("lenses", lens_idx)
        sources = ds.read("sources", source_idx)
        pixel_scale = float(ds.attrs.get("pixel_scale", 0.2))
        bands = list(ds.attrs.get("bands") or ["r"])
        kinds = ds.meta("negatives", rows["negatives"]).get("kind")
        options = (ds.attrs.get("provenance") or {}).get("options") if counts_wanted else None
        where = ds.path
    alpha = rng.uniform(alpha_min, alpha_max, n_tracers).astype(np.float32)
    tracers = transforms.merge(lenses, sources, alpha)
    images = np.concatenate([negatives, tracers]).astype(np.float32)
    n_neg = len(negatives)
    is_tracer = np.r_[np.zeros(n_neg, np.uint8), np.ones(n_tracers, np.uint8)]
    nan = np.full(n_neg, np.nan, np.float32)
    none = np.full(n_neg, -1, np.int64)
    negative_index = rows["negatives"].astype(np.int64)
    kind = np.r_[np.asarray(kinds, dtype=object) if kinds is not None else np.full(n_neg, "negative", object),
                 np.full(n_tracers, "tracer", object)]
    made = {}
    if counts_wanted:
        made = _add_hard(images, kind, negative_index, counts_wanted, n_neg, seed,
                         _sim_options(options, images.shape, pixel_scale, where))
    meta = {"is_tracer": is_tracer, "alpha": np.r_[nan, alpha], "kind": kind,
            "lens_index": np.r_[none, lens_idx], "source_index": np.r_[none, source_idx],
            "negative_index": np.r_[negative_index, np.full(n_tracers, -1, np.int64)]}
    provenance = {"population": str(population), "splits": list(splits), "n_tracers": n_tracers,
                  "alpha": [alpha_min, alpha_max], "seed": seed}
    if counts_wanted:
        provenance["contaminants"] = {"fractions": dict(contaminants), "counts": made,
                                      "generator": "lenshpc.data.sim_hard", "full_well": sim_hard.FULL_WELL}
    perm = rng.permutation(len(images))
    write_labelled(out, images[perm], None, ids=np.arange(len(images), dtype=np.int64),
                   meta={k: v[perm] for k, v in meta.items()}, pixel_scale=pixel_scale, bands=bands, seed=seed,
                   provenance={"mock_survey": provenance})
    return {"path": str(out), "n": len(images), "n_tracers": n_tracers, "n_negatives": n_neg - sum(made.values()),
            "contaminants": made}


def _check_mix(contaminants: Mapping[str, float] | None) -> dict[str, float]:
    """Validated ``{kind: fraction}`` (empty for none)."""
    if not contaminants:
        return {}
    unknown = sorted(set(contaminants) - set(sim_hard.HARD_KINDS))
    if unknown:
        raise DataError(f"unknown hard contaminant kind(s) {', '.join(unknown)}; known: {', '.join(sim_hard.HARD_KINDS)}")
    mix = {}
    for kind, fraction in contaminants.items():
        try:
            value = float(fraction)
        except (TypeError, ValueError):
            raise DataError(f"contaminant fraction of {kind!r} must be a number in [0, 1], got {fraction!r}") from None
        if not 0.0 <= value <= 1.0:
            raise DataError(f"contaminant fraction of {kind!r} must be in [0, 1], got {fraction!r}")
        mix[kind] = value
    if sum(mix.values()) > 1.0 + 1e-9:
        raise DataError(f"contaminant fractions sum to {sum(mix.values()):g} > 1: they are fractions of the "
                        "survey's non-tracer rows")
    return mix


def _sim_options(options: dict | None, shape: tuple, pixel_scale: float, where) -> SimOptions:
    """The population's simulator options (its provenance), or defaults for its cutout size."""
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
        raise DataError(f"{where}: hard contaminants are single-band square cutouts; this population's images "
                        f"are {tuple(shape[1:])}")
    if options:
        opts = SimOptions.from_kwargs(**options)
        if opts.size != shape[1]:
            raise DataError(f"{where}: provenance options say size {opts.size} but the images are {shape[1]} px")
        return opts
    return SimOptions(size=int(shape[1]), pixel_scale=pixel_scale)


def _add_hard(images: np.ndarray, kind: np.ndarray, negative_index: np.ndarray, mix: dict[str, float], n_neg: int,
              seed: int, opts) -> dict[str, int]:
    """Replace ``round(f × n_neg)`` random negatives (rows ``< n_neg``) by hard contaminants, in place."""
    counts = {k: int(np.rint(f * n_neg)) for k, f in mix.items()}
    total = sum(counts.values())
    if total > n_neg:  # only rounding of fractions summing to 1 gets here
        counts[max(counts, key=counts.get)] -= total - n_neg
        total = n_neg
    # own stream: the default survey's draws (tracers, row order) do not move
    rows = rng_for(seed, "mock-survey", "hard").permutation(n_neg)[:total]
    with progress(total=total, desc="hard contaminants", unit="img") as bar:
        start = 0
        for name, n in counts.items():
            for i, row in enumerate(rows[start:start + n]):
                image, _ = sim_hard.hard_image(name, seed, i, opts)
                images[row, :, :, 0] = image
                kind[row] = name
                negative_index[row] = -1
                bar.update(1)
            start += n
    return counts


__all__ = ["mock_survey"]
