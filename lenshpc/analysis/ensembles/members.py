"""Ensemble members: run directories, sweep groups, common prediction matrices, one run's scorer.

An ensemble combines *members*: finished training runs (``docs/run-dir.md``).  A member is named
either by a run directory or by a *sweep group* (``<runs>/<group>/seed<k>``), in which case an
ensemble run ``k`` takes the group's ``seed<k>`` run.

Fitting an ensemble needs every member's scores on the **same** validation and test images.
:func:`prediction_matrices` reads them from the members' ``predictions.h5`` when the members
were evaluated on the data the ensemble is evaluated on (same seed and same data keys, labels
checked), and otherwise re-scores the members' ``model.keras`` on the common validation / test
sets built by :class:`lenshpc.data.chunks.ChunkEngine`, caching each member's scores so a re-run
never re-scores.  Scoring new images is :mod:`lenshpc.analysis.ensembles.scorer`.

Importing this module is cheap; TensorFlow is imported when a model is first used.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from lenshpc.errors import UserError
from lenshpc.config import DATA_KEYS, INPUT_KEYS, data_fingerprint, flatten, load_config
from lenshpc.train.rundir import (CONFIG_FILE, MODEL_FILE, PREDICTIONS_FILE, check_finished, is_run_dir, read_predictions,
                                  run_normaliser, unfinished_run_advice)
from lenshpc.hpc.spec import slug
from lenshpc.utils import atomic_path, did_you_mean, progress

log = logging.getLogger("lenshpc.analysis")

#: Name of the file that makes a directory an ensemble run.
ENSEMBLE_JSON = "ensemble.json"
#: Version of the member score cache files (``seed<k>/members/<label>.h5``).
CACHE_VERSION = 1


# ====================================================================== scorers
@runtime_checkable
class Scorer(Protocol):
    """Something that turns prepared images into lens probabilities.

    Attributes
    ----------
    name : str
        Human-readable name (run or ensemble directory).
    image_shape : tuple of int
        ``(H, W, C)`` of the images it expects.
    """

    name: str
    image_shape: tuple[int, int, int]

    def score(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Scores ``(N,)`` float32 of prepared images ``x`` ``(N, H, W, C)`` float32."""
        ...


class ModelScorer:
    """The selected model (``model.keras``) of a finished run directory.

    The model is loaded on first use, so constructing many scorers is cheap.
    """

    def __init__(self, run_dir: str | Path, name: str | None = None):
        self.run_dir = Path(run_dir)
        self.name = name or short_name(self.run_dir)
        self._model = None
        path = self.run_dir / MODEL_FILE
        if not path.is_file():
            if not (self.run_dir / CONFIG_FILE).is_file():
                raise UserError(f"{self.run_dir}: no model.keras and no config.yaml: not a run directory; pass a "
                                "directory `lenshpc train` or `lenshpc sweep` wrote (…/<group>/seed<k>)")
            raise UserError(unfinished_run_advice(self.run_dir, MODEL_FILE) + ", or pass another run")

    @property
    def model(self):
        if self._model is None:
            from lenshpc.train.evaluate import load_model

            self._model = load_model(self.run_dir / MODEL_FILE)
        return self._model

    @property
    def image_shape(self) -> tuple[int, int, int]:
        shape = self.model.input_shape
        return tuple(int(v) for v in shape[1:])  # type: ignore[return-value]

    def score(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        from lenshpc.train.evaluate import predict_scores

        x = check_images(x, self.image_shape, self.name)
        return np.asarray(predict_scores(self.model, x, batch_size), dtype=np.float32)

    def __repr__(self) -> str:
        return f"ModelScorer({str(self.run_dir)!r})"


def read_ensemble_json(path: str | Path) -> dict:
    """The parsed ``ensemble.json`` of an ensemble run directory (UserError when unreadable)."""
    file = Path(path) / ENSEMBLE_JSON
    try:
        info = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{file}: unreadable ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("members"), list):
        raise UserError(f"{file}: not an ensemble description (needs 'method' and a 'members' list)")
    return info


def ensemble_member_dirs(path: str | Path, info: dict | None = None) -> list[Path]:
    """Member run directories of an ensemble run (``members`` absolute, ``members_relative`` fallback).

    ``members_relative`` (relative to the ensemble run directory) lets a whole results tree move.
    """
    path = Path(path)
    info = info if info is not None else read_ensemble_json(path)
    rel = info.get("members_relative") or [None] * len(info["members"])
    out = []
    for absolute, relative in zip(info["members"], rel):
        absolute = Path(absolute)
        candidate = path / relative if relative else None
        if (absolute / MODEL_FILE).is_file() or candidate is None:
            out.append(absolute)
        elif (candidate / MODEL_FILE).is_file():
            out.append(candidate.resolve())
        else:
            raise UserError(f"{path / ENSEMBLE_JSON}: member not found at {absolute} nor at {candidate} "
                            "(moved or deleted?)")
    return out


def member_names(info: dict) -> list[str]:
    """Display names of an ensemble's members (``member_names``, else from the run directories)."""
    names = info.get("member_names")
    if isinstance(names, list) and len(names) == len(info["members"]):
        return [str(n) for n in names]
    return [short_name(Path(m)) for m in info["members"]]


def check_images(x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``x`` as float32 ``(N, *shape)``; a UserError naming the scorer ``name`` otherwise."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise UserError(f"{name}: images of shape {x.shape} given, the model expects (N, {', '.join(map(str, shape))})")
    return x


def short_name(path: str | Path) -> str:
    """``…/bce/seed3`` → ``bce/seed3`` (a run's group and seed)."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


# ====================================================================== members
@dataclass(frozen=True)
class Member:
    """One member of one ensemble run: a label (the group name) and a finished run directory."""

    label: str
    run_dir: Path


def resolve_entry(runs_root: Path | None, entry: str, where: str) -> tuple[str, Path, bool]:
    """Resolve a spec's member entry to ``(label, path, is_group)``.

    ``entry`` is looked up as ``<runs_root>/<entry>`` (or as an absolute path).  A directory that
    is itself a run directory is a fixed member (the same run in every ensemble run); a directory
    holding ``seed<k>`` run directories is a sweep group.
    """
    candidate = Path(entry)
    if not candidate.is_absolute():
        if runs_root is None:
            raise UserError(f"{where}: member {entry!r} is relative but no runs directory is set; "
                            "set 'runs:' in the spec or pass --runs ROOT")
        candidate = runs_root / entry
    label = entry.rstrip("/")
    if is_run_dir(candidate):
        return label, candidate, False
    if candidate.is_dir() and any(p.name.startswith("seed") and p.is_dir() for p in candidate.iterdir()):
        return label, candidate, True
    near = ""
    if runs_root is not None and runs_root.is_dir():
        names = sorted(p.name for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        near = did_you_mean(entry, names, cutoff=0.5, otherwise=f" Groups under {runs_root}: {', '.join(names) or '(none)'}.")
    raise UserError(f"{where}: member '{entry}' not found: {candidate} is neither a run directory nor a sweep group "
                    f"(a folder of seed<k> run directories).{near}")


def member_for_seed(label: str, path: Path, is_group: bool, seed: int, where: str) -> Member:
    """The member of ensemble run ``seed``: the group's ``seed<k>`` run, or the fixed run directory."""
    run_dir = path / f"seed{seed}" if is_group else path
    check_finished(run_dir, f"{where}: member '{label}'" + (f" seed {seed}" if is_group else ""))
    return Member(label, run_dir)


# ====================================================================== prediction matrices
@dataclass
class PredictionSet:
    """Member scores on common validation and test sets.

    ``X_val``/``X_test`` are ``(N, M)`` float64 (column m = member m), ``y_*`` ``(N,)`` uint8,
    ``test_meta`` the test set's metadata columns, ``sources[m]`` ``"predictions"`` (read from the
    member's ``predictions.h5``), ``"cache"`` or ``"rescored"``.
    """

    members: list[Member]
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    test_meta: dict[str, np.ndarray] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def load_member_config(run_dir: Path):
    try:
        return load_config(run_dir / CONFIG_FILE)
    except UserError as exc:
        raise UserError(f"{run_dir}: unreadable config.yaml: {exc}") from None


def prediction_matrices(members: Sequence[Member], data_cfg=None, *, cache_dir: Path | None = None,
                        show_progress: bool = True) -> PredictionSet:
    """Every member's validation and test scores on one common pair of sets.

    Parameters
    ----------
    members : list of Member
        Finished runs (:func:`lenshpc.train.rundir.check_finished`).
    data_cfg : Config, optional
        The evaluation data (seed + data section).  Default: member 0's config.
    cache_dir : path, optional
        Where re-scored members' scores are cached (``<label>.h5``); None = no cache.
    show_progress : bool
        Progress bar while re-scoring.

    Notes
    -----
    A member whose data fingerprint (:func:`lenshpc.config.data_fingerprint` of ``DATA_KEYS``) equals
    ``data_cfg``'s contributes the scores of its own ``predictions.h5`` — after checking its labels equal the
    common labels.
    Every other member is re-scored on the sets built by ``ChunkEngine(data_cfg)``, which is only
    possible when its input preprocessing (:data:`INPUT_KEYS`) matches the data's.
    """
    if not members:
        raise UserError("an ensemble needs at least one member")
    cfgs = [load_member_config(m.run_dir) for m in members]
    data_cfg = data_cfg if data_cfg is not None else cfgs[0]
    target = data_fingerprint(data_cfg, DATA_KEYS)
    matches = [data_fingerprint(c, DATA_KEYS) == target for c in cfgs]

    preds: list[dict | None] = [{g: read_predictions(m.run_dir / PREDICTIONS_FILE, g) for g in ("val", "test")}
                                if ok else None for m, ok in zip(members, matches)]
    if all(matches):
        y_val, y_test = preds[0]["val"]["labels"], preds[0]["test"]["labels"]
        bad = [i for i, p in enumerate(preds) if not _same_labels(p, y_val, y_test)]
        if bad:
            log.warning("members %s have the same data config but different labels (data file changed?); "
                        "re-scoring every member on the common sets", ", ".join(members[i].label for i in bad))
            matches = [False] * len(members)
    if not all(matches):  # the common sets from the engine, built only when needed
        x_val, y_val, x_test, y_test, meta = _common_sets(data_cfg)
        for i, p in enumerate(preds):
            if p is not None and not _same_labels(p, y_val, y_test):
                preds[i], matches[i] = None, False
    else:
        meta = preds[0]["test"]["meta"]

    sources = ["predictions" if ok else "" for ok in matches]
    todo = [i for i, ok in enumerate(matches) if not ok]
    for i in todo:
        _check_rescorable(members[i], cfgs[i], data_cfg)
    cols_val: list[np.ndarray | None] = [p["val"]["scores"] if p else None for p in preds]
    cols_test: list[np.ndarray | None] = [p["test"]["scores"] if p else None for p in preds]
    if todo:
        from lenshpc.data import normalise

        common_norm = normalise.for_config(data_cfg)
        inputs = {common_norm.key(): (x_val, x_test)}  # the common images as each member's normalisation sees them
        bar = progress(todo, desc="re-scoring members", unit="model", disable=None if show_progress else True)
        for i in bar:
            m = members[i]
            own = run_normaliser(m.run_dir)
            fingerprint = _fingerprint({**target, "normalisation": own.describe()}, y_val, y_test)
            cache = cache_dir / f"{_safe(m.label)}.h5" if cache_dir is not None else None
            cached = _read_cache(cache, m.run_dir, fingerprint) if cache is not None else None
            if cached is not None:
                cols_val[i], cols_test[i] = cached
                sources[i] = "cache"
                continue
            if own.key() not in inputs:  # same images (normalisation draws no random numbers), its own pixels
                xv, _, xt, _, _ = _common_sets(data_cfg, own)
                inputs[own.key()] = (xv, xt)
            x_val, x_test = inputs[own.key()]
            scorer = ModelScorer(m.run_dir, name=m.label)
            if tuple(scorer.image_shape) != tuple(x_val.shape[1:]):
                raise UserError(f"member {m.label} ({m.run_dir}) expects images {scorer.image_shape} but the common "
                                f"data {data_cfg.data.path} has {tuple(x_val.shape[1:])}")
            cols_val[i], cols_test[i] = scorer.score(x_val), scorer.score(x_test)
            sources[i] = "rescored"
            if cache is not None:
                _write_cache(cache, m.run_dir, fingerprint, cols_val[i], cols_test[i])
        log.info("members re-scored on the common sets: %s", ", ".join(
            f"{members[i].label} ({sources[i]})" for i in todo))
    X_val = np.stack([np.asarray(c, dtype=np.float64) for c in cols_val], axis=1)
    X_test = np.stack([np.asarray(c, dtype=np.float64) for c in cols_test], axis=1)
    return PredictionSet(list(members), X_val, np.asarray(y_val).astype(np.uint8), X_test,
                         np.asarray(y_test).astype(np.uint8), dict(meta), sources)


def _same_labels(p: dict, y_val: np.ndarray, y_test: np.ndarray) -> bool:
    """Whether a member's ``predictions.h5`` groups ``p`` hold exactly the labels ``y_val`` and ``y_test``."""
    pairs = ((p["val"]["labels"], y_val), (p["test"]["labels"], y_test))
    return all(np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a).astype(np.uint8),
                                                             np.asarray(b).astype(np.uint8)) for a, b in pairs)


def _common_sets(data_cfg, normaliser=None):
    """Validation and test images, labels and test metadata of ``data_cfg`` (no train split loaded),
    normalised by ``normaliser`` (default ``data_cfg``'s)."""
    from lenshpc.data.chunks import ChunkEngine

    engine = ChunkEngine(data_cfg, rank=0, size=1, load_train=False, normaliser=normaliser)
    try:
        x_val, y_val = engine.validation()
        x_test, y_test, meta = engine.test()
    finally:
        engine.close()
    return (np.asarray(x_val), np.asarray(y_val).reshape(-1).astype(np.uint8), np.asarray(x_test),
            np.asarray(y_test).reshape(-1).astype(np.uint8), dict(meta))


def _check_rescorable(member: Member, cfg, data_cfg) -> None:
    a, b = flatten(cfg.to_dict()), flatten(data_cfg.to_dict())
    diff = [k for k in INPUT_KEYS if (a.get(k) or "") != (b.get(k) or "")]
    if diff:
        raise UserError(
            f"member {member.label} ({member.run_dir}) was trained on {a.get('data.preprocess')} inputs "
            f"({', '.join(f'{k}={a.get(k)!r}' for k in diff)}) but the ensemble's data uses "
            f"{', '.join(f'{k}={b.get(k)!r}' for k in diff)}; it cannot be re-scored on these images. "
            "Combine it only with members evaluated on the same seed and data (their predictions.h5 are used as "
            "they are), or put it first so its data becomes the common data")


def _fingerprint(target: dict, y_val: np.ndarray, y_test: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256(json.dumps(target, sort_keys=True, default=str).encode())
    h.update(np.asarray(y_val, np.uint8).tobytes())
    h.update(np.asarray(y_test, np.uint8).tobytes())
    return h.hexdigest()


def size_mtime(path: Path) -> str:
    """``size:mtime_ns`` of a file: changes when it is rewritten (score caches, rank plans)."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _safe(label: str) -> str:
    return slug(label.replace("/", "__"))


def _read_cache(path: Path, run_dir: Path, fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Cached (val, test) scores when the cache matches this data and this model file, else None."""
    import h5py

    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as fh:
            attrs = dict(fh.attrs)
            if (int(attrs.get("version", -1)) != CACHE_VERSION or attrs.get("fingerprint") != fingerprint
                    or attrs.get("model_stamp") != size_mtime(run_dir / MODEL_FILE)):
                return None
            return fh["val/scores"][()], fh["test/scores"][()]
    except (OSError, KeyError) as exc:
        log.warning("ignoring unreadable score cache %s (%s)", path, exc)
        return None


def _write_cache(path: Path, run_dir: Path, fingerprint: str, val: np.ndarray, test: np.ndarray) -> None:
    from lenshpc.data.format import create_h5

    with atomic_path(path) as tmp:
        with create_h5(tmp) as fh:
            fh.attrs.update({"version": CACHE_VERSION, "fingerprint": fingerprint, "run_dir": str(run_dir),
                             "model_stamp": size_mtime(run_dir / MODEL_FILE)})
            fh.create_dataset("val/scores", data=np.asarray(val, np.float32))
            fh.create_dataset("test/scores", data=np.asarray(test, np.float32))


def relpath(target: Path, start: Path) -> str:
    """``os.path.relpath`` that never raises (different drives → the absolute path)."""
    try:
        return os.path.relpath(target, start)
    except ValueError:
        return str(target)


__all__ = ["ENSEMBLE_JSON", "Member", "ModelScorer", "PredictionSet", "Scorer", "check_images",
           "ensemble_member_dirs", "load_member_config", "member_for_seed", "member_names",
           "prediction_matrices", "read_ensemble_json", "relpath", "resolve_entry", "short_name", "size_mtime"]
