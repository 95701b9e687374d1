"""Re-score a finished run without training (``lenshpc evaluate``).

The run's ``model.keras`` (the selected weights) is applied to

* the run's own fixed test set (no ``data_path``): reproduces the run's ``metrics.json``;
* another **population** dataset: its fixed test set, built by the chunk engine exactly as
  a training run on that file would build it;
* another **labelled** dataset (challenge style): its ``test`` split, or ``split="all"``
  (every image; e.g. a separate challenge test file) or ``"val"``/``"train"``.

Outputs go to ``RUN_DIR/eval-<data file stem>/`` by default: ``metrics.json`` (same keys as
a run's, plus ``data``/``split``/``run_dir``) and ``predictions.h5`` (one group named after
the split).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from lenshpc import provenance
from lenshpc.errors import UserError
from lenshpc.metrics import binary_labels
from lenshpc.train.rundir import (METRICS_FILE, MODEL_FILE, PREDICT_BATCH, PREDICTIONS_FILE, RunDir, read_predictions,
                                  run_metrics, run_normaliser, unfinished_run_advice, write_predictions)
from lenshpc.utils import atomic_write_json, json_safe, read_json_object

log = logging.getLogger("lenshpc.train")

SPLITS = ("test", "val", "train", "all")


def evaluate_run(run_dir: str | Path, data_path: Optional[str | Path] = None, *, split: str = "test",
                 out: Optional[str | Path] = None, batch_size: int = PREDICT_BATCH) -> dict:
    """Score a run's selected model on a dataset and write metrics + predictions.

    Parameters
    ----------
    run_dir : path
        A finished run directory (holds ``config.yaml`` and ``model.keras``).
    data_path : path, optional
        Dataset to score; default the run's own ``data.path``.
    split : {"test", "val", "train", "all"}
        Which images of a labelled dataset; population datasets support only ``"test"``
        (their fixed, balanced test set of mock lenses and negatives).
    out : path, optional
        Output directory; default ``RUN_DIR/eval-<data file stem>``.
    batch_size : int
        Inference batch size (the training loop scores in batches of 256 too).

    Returns
    -------
    dict
        The written ``metrics.json``.
    """
    from lenshpc.data.format import open_dataset

    if split not in SPLITS:
        raise UserError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    rd, cfg, data = open_run(run_dir, data_path)
    with open_dataset(data) as ds:
        kind = ds.kind
    if kind == "population" and split != "test":
        raise UserError(f"{data} is a population dataset: only its fixed test set can be scored (--split test)")

    started = provenance.now()
    x, y, meta = _load_split(cfg, kind, split, rd.path)
    model = load_model(rd.model)
    scores = predict_scores(model, x, batch_size)

    result = run_metrics(cfg, y, scores, val=run_validation_scores(rd))
    result.update({"run_dir": str(rd.path), "data": str(data), "split": split, "data_kind": kind,
                   "provenance": provenance.collect(cfg, started=started, data_path=data, command="evaluate",
                                                    source_run=run_provenance(rd))})
    result = json_safe(result)
    out_dir = Path(out) if out is not None else rd.path / f"eval-{data.stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / PREDICTIONS_FILE, {split: {"scores": scores, "labels": binary_labels(y), "meta": meta}})
    atomic_write_json(out_dir / METRICS_FILE, result)
    log.info("evaluated %s on %s (%s, %d images): auroc %s, accuracy %.4f → %s", rd.path, data, split, len(y),
             result.get("auroc"), result.get("accuracy", float("nan")), out_dir)
    return result


def open_run(run_dir: str | Path, data_path: Optional[str | Path] = None, *, require_done: bool = False):
    """Check a run directory with a model and return ``(RunDir, config, data file)``.

    The config is the run's ``config.yaml`` with ``data.path`` replaced by ``data_path`` when
    given; every command that re-scores a run (``evaluate``, ``gradcam``) starts here, so they
    all explain a wrong directory, an unfinished run or a moved dataset the same way.

    Raises
    ------
    UserError
        No such directory, no ``config.yaml``, no ``model.keras`` (or no ``DONE`` with
        ``require_done``), or the data file does not exist.
    """
    from lenshpc import tasks
    from lenshpc.config import load_config

    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise UserError(f"{rd.path}: no such directory; pass a run directory written by `lenshpc train`")
    if not rd.config.is_file():
        raise UserError(f"{rd.path}: not a run directory (no config.yaml); pass a directory `lenshpc train` wrote, "
                        "e.g. runs/<name>/seed<k>")
    if not rd.model.is_file() or (require_done and not rd.is_done()):
        raise UserError(unfinished_run_advice(rd.path, MODEL_FILE))
    cfg = load_config(rd.config)
    if not tasks.get(cfg.task.name).rescorable:
        # A lens scorer's model.keras is what these commands re-score; other tasks' test metrics are in their run dir.
        raise UserError(f"{rd.path} is a run of task '{cfg.task.name}': `lenshpc evaluate` and `gradcam` re-score "
                        f"lens finders (task lens); its test metrics are in "
                        f"{rd.metrics.name} and {rd.predictions.name}, and `lenshpc reduce` tabulates them")
    if data_path is not None:
        cfg = cfg.replace(**{"data.path": str(data_path)})
    data = Path(cfg.data.path)
    if not data.is_file():
        raise UserError(f"data file not found: {data}" + ("" if data_path is not None else
                        " (the run's data.path; pass --data to use another copy)"))
    return rd, cfg, data


def run_validation_scores(rd: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
    """``(labels, scores)`` of the run's own validation set (``predictions.h5`` group ``val``), or None.

    ``evaluate`` applies the threshold tuned on these (the run's t*, :func:`lenshpc.metrics.tuned_summary`)
    to whatever set it scores, so a re-scored run reports the same t* as the run itself.
    """
    try:
        val = read_predictions(rd.predictions, "val")
    except (OSError, KeyError):
        return None
    return (val["labels"], val["scores"]) if len(val["labels"]) else None


def run_provenance(rd: RunDir) -> dict | None:
    """The ``lenshpc``/``packages`` provenance of the run that trained the scored model (None for old runs)."""
    prov = read_json_object(rd.metrics).get("provenance") or {}
    return {k: prov.get(k) for k in ("lenshpc", "packages", "started", "ended")} if prov else None


def load_model(path: Path):
    """``keras.models.load_model`` with the lenshpc model registry imported (its custom layers registered)."""
    import zipfile

    import keras

    import lenshpc.models  # noqa: F401 - registers custom layers for deserialisation

    if Path(path).is_file() and not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise UserError(f"{path}: not a Keras model archive (a .keras file is a zip; this one is damaged or "
                        f"truncated); re-train the run with `lenshpc train {Path(path).parent / 'config.yaml'} "
                        f"--run-dir {Path(path).parent} --force`")

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad archive
        raise UserError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None


def predict_outputs(model, x: np.ndarray, batch_size: int = PREDICT_BATCH, jit_compile: bool = False) -> np.ndarray:
    """Raw outputs ``(N, *output_shape)`` float32 of ``model`` on images ``x`` in inference mode, in batches.

    The compiled inference step is built once per model, image shape and ``jit_compile`` and kept on the
    model, so calling this per block of a large catalogue (``lenshpc rank``) never retraces.
    """
    step = _predict_step(model, tuple(np.shape(x)[1:]), jit_compile)
    return run_batches(step, x, batch_size, model.output_shape[1:])


def run_batches(step, x: np.ndarray, batch_size: int, row_shape: tuple) -> np.ndarray:
    """``step`` (a compiled inference step) over ``x`` in batches of float32 tensors; its outputs as float32,
    concatenated (``(0, *row_shape)`` for no images)."""
    import tensorflow as tf

    out = [np.asarray(step(tf.constant(x[i:i + batch_size], tf.float32)), dtype=np.float32)
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.empty((0, *row_shape), np.float32)


def predict_scores(model, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Sigmoid scores ``(N,)`` float32 of a lens scorer ``model`` on images ``x`` (:func:`predict_outputs`)."""
    return predict_outputs(model, x, batch_size).reshape(-1)


def _predict_step(model, image_shape: tuple, jit_compile: bool = False):
    """The cached ``tf.function`` of ``model(x, training=False)`` for images of ``image_shape``."""
    import tensorflow as tf

    cache = model.__dict__.setdefault("_lenshpc_predict_steps", {})
    key = (image_shape, bool(jit_compile))
    if key not in cache:
        spec = tf.TensorSpec([None, *image_shape], tf.float32)
        cache[key] = tf.function(lambda b: model(b, training=False), input_signature=[spec],
                                 jit_compile=bool(jit_compile))
    return cache[key]


def _load_split(cfg, kind: str, split: str, run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images, labels and metadata to score, prepared as the training loop saw them (the run's own normalisation)."""
    from lenshpc.data.chunks import ChunkEngine

    normaliser = run_normaliser(run_dir)
    engine = ChunkEngine(cfg, rank=0, size=1, normaliser=normaliser, load_train=False)  # test/val/labelled only
    if split == "test":
        x, y, meta = engine.test()
        return np.asarray(x), np.asarray(y).reshape(-1), dict(meta)
    # Labelled data, another split: the run's normalisation applied to that split's images.
    from lenshpc.data.format import open_dataset

    with open_dataset(cfg.data.path) as ds:
        idx = ds.split("images", split)
        x = normaliser(ds.read("images", idx))
        return x, ds.labels(idx).astype(np.uint8), ds.meta("images", idx)


__all__ = ["SPLITS", "evaluate_run", "load_model", "open_run", "predict_outputs", "predict_scores"]
