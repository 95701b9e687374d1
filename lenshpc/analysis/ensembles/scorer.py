"""Scorers of prepared images: a run, a weighted ensemble or an input-dependent ensemble.

:func:`load_scorer` is the top of the ensemble family: it turns a run directory or an ensemble run directory into
a :class:`Scorer` (what ``lenshpc rank`` and other consumers call), delegating input-dependent ensembles to
:mod:`lenshpc.analysis.ensembles.ide`.  Importing this module is cheap; TensorFlow is imported when a model is
first used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lenshpc.analysis.ensembles.members import (ENSEMBLE_JSON, ModelScorer, Scorer, ensemble_member_dirs, member_names,
                                                read_ensemble_json, short_name)
from lenshpc.errors import UserError
from lenshpc.train.rundir import CONFIG_FILE, DONE_FILE, MODEL_FILE, run_normaliser

if TYPE_CHECKING:
    from lenshpc.data.normalise import Normaliser

log = logging.getLogger("lenshpc.analysis")


class WeightedScorer:
    """A fixed weighted sum of member scorers: ``ŷ = X·w`` (Eq 3.22; the plain average has w = 1/M)."""

    def __init__(self, members: Sequence[Scorer], weights: Sequence[float], name: str = "ensemble"):
        if len(members) != len(weights) or not members:
            raise UserError(f"{name}: {len(members)} members but {len(weights)} weights")
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.name = name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        shapes = {tuple(m.image_shape) for m in self.members}
        if len(shapes) > 1:
            raise UserError(f"{self.name}: members expect different image shapes {sorted(shapes)}")
        return shapes.pop()  # type: ignore[return-value]

    def score(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        matrix = np.stack([m.score(x, batch_size) for m in self.members], axis=1).astype(np.float64)
        return (matrix @ self.weights).astype(np.float32)

    def __repr__(self) -> str:
        return f"WeightedScorer({self.name!r}, {len(self.members)} members)"


def load_scorer(path: str | Path) -> Scorer:
    """A :class:`Scorer` for a finished run directory or a finished ensemble run directory.

    Parameters
    ----------
    path : path
        A run directory (holds ``model.keras``) or an ensemble run directory (holds
        ``ensemble.json``; see ``docs/ensembles.md``).  Input-dependent ensembles are loaded by
        :func:`lenshpc.analysis.ensembles.ide.load_ide_scorer`.

    Raises
    ------
    UserError
        When ``path`` is neither, or is not finished.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a directory; pass a finished run directory (with model.keras) or an ensemble "
                        f"run directory (with {ENSEMBLE_JSON})")
    if (path / ENSEMBLE_JSON).is_file():
        info = read_ensemble_json(path)
        if not (path / DONE_FILE).is_file():
            raise UserError(f"{path}: the ensemble run has not finished (no DONE); run `lenshpc ensemble` again")
        method = info.get("method")
        if method == "input_dependent":
            from lenshpc.analysis.ensembles.ide import load_ide_scorer

            return load_ide_scorer(path)
        if method not in ("nelder_mead", "average"):
            raise UserError(f"{path / ENSEMBLE_JSON}: unknown ensemble method {method!r}")
        runs = ensemble_member_dirs(path, info)
        weights = info.get("weights")
        if not isinstance(weights, list) or len(weights) != len(runs):
            raise UserError(f"{path / ENSEMBLE_JSON}: 'weights' must list one number per member")
        labels = member_names(info)
        return WeightedScorer([ModelScorer(r, name=lab) for r, lab in zip(runs, labels)], weights,
                              name=short_name(path))
    if (path / MODEL_FILE).is_file():
        if not (path / DONE_FILE).is_file():
            log.warning("%s has model.keras but no DONE; scoring with it anyway", path)
        return ModelScorer(path)
    raise UserError(f"{path}: neither a finished run directory (no model.keras) nor an ensemble run directory "
                    f"(no {ENSEMBLE_JSON}); wait for the run to finish or check the path")


# ====================================================================== what a scorer reads
def run_configs(model: str | Path) -> list[Path]:
    """``config.yaml`` of the run(s) behind ``model`` (a run or an ensemble run directory)."""
    model = Path(model)
    runs = ensemble_member_dirs(model) if (model / ENSEMBLE_JSON).is_file() else [model]
    return [r / CONFIG_FILE for r in runs if (r / CONFIG_FILE).is_file()]


def model_normaliser(path: str | Path) -> Normaliser:
    """The one normaliser of a run, or of every member of an ensemble run directory.

    Raises
    ------
    UserError
        When ensemble members were trained with different normalisations (one input cannot serve them all).
    """
    from lenshpc.data.normalise import MinMaxSqrt

    path = Path(path)
    dirs = sorted({Path(p).parent for p in run_configs(path)})
    if (path / ENSEMBLE_JSON).is_file() and read_ensemble_json(path).get("method") == "input_dependent":
        dirs.append(path)  # the gating network saw the images with the ensembler's own normalisation
    norms = [(d, run_normaliser(d)) for d in dirs] or [(Path(path), MinMaxSqrt())]
    first_dir, first = norms[0]
    for d, n in norms[1:]:
        if n != first:
            raise UserError(f"{path}: members use different normalisations ({first_dir}: {first.describe()}, {d}: "
                            f"{n.describe()}); one catalogue input cannot serve both — score each member on its own")
    return first


__all__ = ["WeightedScorer", "load_scorer", "model_normaliser", "run_configs"]
