"""Mock survey catalogues: held-out negatives with a few mock lenses mixed in as *tracers*.

A ranking run (``lenshpc rank``) on a real survey has no labels; its quality is judged by
where a handful of known lenses — tracers — land in the ranking (LensFlow, seed 004).  A mock
survey reproduces that set-up from a population dataset, for demos (``lenshpc quickstart``),
tests and sanity checks of a trained model before it meets real data:

* the survey's "galaxies" are the population's negatives of the given splits (held out from
  training by default: ``val`` + ``test``), stored raw, as ``lenshpc stack`` would store cutouts;
* the tracers are mock lenses (Eq 4.2 merge of a lens and a source of the same splits with
  ``α ~ U(alpha_min, alpha_max)``), also stored raw;
* rows are shuffled; the file is an *unlabelled* catalogue (no ``labels`` array) whose metadata
  column ``is_tracer`` flags the tracers (``lenshpc rank … --tracers is_tracer``), next to ``id``
  and, for tracers, ``alpha`` and the ``lens_index``/``source_index`` they were made from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lenshpc.data import transforms
from lenshpc.data.format import open_dataset, write_labelled
from lenshpc.errors import DataError
from lenshpc.utils import rng_for


def mock_survey(population: str | Path, out: str | Path, *, n_tracers: int = 20, alpha_min: float = 0.02,
                alpha_max: float = 0.3, splits: Sequence[str] = ("val", "test"), seed: int = 0) -> dict:
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
        Seed of the tracer draws and the row order.

    Returns
    -------
    dict
        ``{"path", "n", "n_tracers", "n_negatives"}``.
    """
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
    alpha = rng.uniform(alpha_min, alpha_max, n_tracers).astype(np.float32)
    tracers = transforms.merge(lenses, sources, alpha)
    images = np.concatenate([negatives, tracers]).astype(np.float32)
    n_neg = len(negatives)
    is_tracer = np.r_[np.zeros(n_neg, np.uint8), np.ones(n_tracers, np.uint8)]
    nan = np.full(n_neg, np.nan, np.float32)
    none = np.full(n_neg, -1, np.int64)
    meta = {"is_tracer": is_tracer, "alpha": np.r_[nan, alpha],
            "lens_index": np.r_[none, lens_idx], "source_index": np.r_[none, source_idx],
            "negative_index": np.r_[rows["negatives"], np.full(n_tracers, -1, np.int64)]}
    perm = rng.permutation(len(images))
    write_labelled(out, images[perm], None, ids=np.arange(len(images), dtype=np.int64),
                   meta={k: v[perm] for k, v in meta.items()}, pixel_scale=pixel_scale, bands=bands, seed=seed,
                   provenance={"mock_survey": {"population": str(population), "splits": list(splits),
                                               "n_tracers": n_tracers, "alpha": [alpha_min, alpha_max],
                                               "seed": seed}})
    return {"path": str(out), "n": len(images), "n_tracers": n_tracers, "n_negatives": n_neg}


__all__ = ["mock_survey"]
