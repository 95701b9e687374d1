"""The PCA + logistic-regression baseline of the 21-cm study (seed 003, Sec 2.1), with sklearn.

Fitted on the **same** splits and normalisation as the networks it is compared with (a run's config:
``data.path``, ``task.params``): the train split un-augmented (at most :data:`MAX_TRAIN` slices, a seeded
class-stratified subset), standardised per pixel, projected on :data:`N_COMPONENTS` principal components
(randomised SVD seeded by the run's seed), then a multinomial logistic regression; scored on the test split
with :mod:`lenshpc.metrics_multiclass`.  ``lenshpc reduce`` computes it once per (dataset, target,
normalisation, crop, seed) and caches it in the report directory (``pca_baseline.json``, keyed by the
dataset's content digest too).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lenshpc.errors import UserError
from lenshpc.train.rundir import CONFIG_FILE
from lenshpc.utils import atomic_write_json, read_json_object

N_COMPONENTS = 50
MAX_TRAIN = 5000
CACHE = "pca_baseline.json"
#: task.params that change the baseline (others, e.g. label smoothing or augmentation, do not).
KEY_PARAMS = ("target", "normalisation", "mk_scale", "crop")


def fit_score(cfg, options, n_components: int = N_COMPONENTS, max_train: int = MAX_TRAIN) -> dict:
    """Fit the baseline for one config (its ``seed``) and return the test metrics (``metrics_multiclass.summary``)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lenshpc import metrics_multiclass as mm
    from lenshpc.data.slice_source import SliceSource

    source = SliceSource(cfg, options)
    x_train, y_train = source.train_set(max_train)
    x_test, y_test, _ = source.test()
    flat = x_train.reshape(len(x_train), -1)
    k = int(min(n_components, len(flat) - 1, flat.shape[1]))
    model = make_pipeline(StandardScaler(), PCA(k, svd_solver="randomized", random_state=int(cfg.seed)),
                          LogisticRegression(max_iter=2000))
    model.fit(flat, y_train)
    probs = np.zeros((len(x_test), source.n_classes))
    probs[:, model.classes_] = model.predict_proba(x_test.reshape(len(x_test), -1))
    return {**mm.summary(y_test, probs), "n_components": k, "n_train": int(len(flat)), "n_test": int(len(y_test)),
            "seed": int(cfg.seed)}


def key_of(run_dir: Path, task) -> tuple[str, dict, object] | None:
    """``(cache key, baseline options, config)`` of a finished run of ``task`` (the cosmo21cm task class, which
    validates its ``task.params``), or None when it wants no baseline."""
    from lenshpc.config import load_config

    try:
        cfg = load_config(Path(run_dir) / CONFIG_FILE)
    except Exception:  # noqa: BLE001 - a run whose config no longer loads simply gets no baseline row
        return None
    options = task.check_params(dict(cfg.task.params or {}))
    if not options.get("pca_baseline", True):
        return None
    from lenshpc.data.cosmo21cm.slices import open_slices

    try:  # the content digest keys the cache: a dataset re-made under the same path is refitted
        with open_slices(cfg.data.path) as ds:
            digest = str(ds.attrs.get("content_sha256", ""))
    except UserError:
        return None  # the dataset is gone: no baseline row (the networks' rows stay)
    ident = {"data": str(Path(cfg.data.path).resolve()), "content_sha256": digest,
             **{p: options[p] for p in KEY_PARAMS}, "test_size": cfg.data.test_size}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return f"{digest}-seed{cfg.seed}", {**ident, "seed": cfg.seed}, (cfg, options)


def baselines(run_dirs, out_dir, task) -> dict[str, list[dict]]:
    """Baseline results grouped by setting label → one dict per seed (cached in ``out_dir/pca_baseline.json``)."""
    cache_path = Path(out_dir) / CACHE
    cache = read_json_object(cache_path)
    found: dict[str, dict] = {}
    for run_dir in run_dirs:
        item = key_of(run_dir, task)
        if item is None or item[0] in found:
            continue
        key, ident, (cfg, options) = item
        if key not in cache:
            cache[key] = {"setting": ident, "metrics": fit_score(cfg, options)}
            atomic_write_json(cache_path, cache)
        found[key] = cache[key]
    out: dict[str, list[dict]] = {}
    for entry in found.values():
        s = entry["setting"]
        label = (f"PCA + logistic regression ({s['target']}, {s['normalisation']}"
                 + (f", crop {s['crop']}" if s["crop"] else "") + ")")
        out.setdefault(label, []).append(entry["metrics"])
    return out
