"""The input-dependent ensemble (thesis Sec 3.6.2, 4.6): a dynamic ensembler trained by the run loop.

A *dynamic ensembler* DE_M is a CNN whose M-way softmax head ``g(x)`` weights M finished lens finders (the
*members*) per image: the one-hot target (:func:`ide_targets`) marks the member closest to the label, the loss is
categorical cross-entropy, and the prediction is Eq 3.23, ``ŷ(x) = Σ_m g_m(x) · p_m(x)``.  Training is an
ordinary run of task ``ide`` (:class:`lenshpc.tasks.ide.IDETask`, which uses the pieces here) through
:func:`lenshpc.train.run_training`; :func:`load_ide_scorer` scores images with a finished one.  History columns,
selection and the config: ``docs/ensembles-ide.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lenshpc.analysis.ensembles.members import (ENSEMBLE_JSON, check_images, ensemble_member_dirs, load_member_config,
                                                read_ensemble_json, relpath, short_name)
from lenshpc.errors import UserError
from lenshpc.train.rundir import MODEL_FILE, PREDICTIONS_FILE, PREDICT_BATCH, RunDir, check_finished, read_predictions
from lenshpc.utils import read_json_object

#: ``task.name`` of a dynamic ensembler's run (:class:`lenshpc.tasks.ide.IDETask`).
TASK = "ide"
#: ``ensemble.json`` ``method`` of an input-dependent ensemble.
METHOD = "input_dependent"
#: Metrics of each member / the oracle stored in ``ensemble.json`` (keys of ``lenshpc.metrics.summary``).
SUMMARY_KEYS = ("auroc", "accuracy", "precision", "recall", "fbeta", "tpr0", "tpr10", "i_auc")


# ======================================================================= targets
def ide_targets(member_scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One-hot training targets of the dynamic ensembler: the member closest to the label.

    Parameters
    ----------
    member_scores : array (N, M)
        Member ``m``'s lens score of image ``i`` in column ``m``.
    labels : array (N,)
        0/1 labels.

    Returns
    -------
    ndarray (N, M) float32
        Row ``i`` is 1 at ``argmin_m |labels[i] − member_scores[i, m]|`` and 0 elsewhere: for a
        lens (y = 1) the member with the highest score, for a non-lens (y = 0) the lowest.
        Ties go to the **lowest member index** (``np.argmin`` returns the first minimum), so
        the targets — and hence training — are deterministic.

    Raises
    ------
    ValueError
        Wrong shapes, no members, non-finite scores or labels other than 0/1.
    """
    scores = np.asarray(member_scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"member_scores must be (N, M) with M ≥ 1, got shape {scores.shape}")
    if len(y) != len(scores):
        raise ValueError(f"{len(y)} labels for {len(scores)} rows of member scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError("member_scores holds NaN or Inf")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    closest = np.argmin(np.abs(y[:, None] - scores), axis=1)
    out = np.zeros(scores.shape, dtype=np.float32)
    out[np.arange(len(y)), closest] = 1.0
    return out


# ======================================================================= members
@dataclass
class _Member:
    """A finished run used as an ensemble member."""

    path: Path  # resolved run dir
    name: str  # "<group>/<seed dir>", for logs and ensemble.json
    preprocess: str
    model: Any = None  # keras.Model, loaded by load()
    normalisation: Optional[dict] = None  # lenshpc.data.normalise.config_key of the member's config

    def load(self) -> "_Member":
        from lenshpc.train.evaluate import load_model

        self.model = load_model(self.path / MODEL_FILE)
        outputs = tuple(self.model.output_shape)
        if outputs[1:] not in ((1,), ()):
            raise UserError(f"member {self.path}: its model has outputs of shape {outputs[1:]}, not one lens score; "
                            "members must be ordinary lens-finder runs (an input-dependent ensemble cannot be a "
                            "member)")
        return self

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.model.input_shape[1:])


def resolve_members(members: Sequence[str | os.PathLike]) -> list[_Member]:
    """Check that every member is a finished run dir (no TensorFlow yet); clear errors otherwise."""
    from lenshpc.data.normalise import config_key

    if isinstance(members, (str, os.PathLike)):  # one run dir given as a bare path: say "got 1", not its letters
        members = [members]
    paths = [Path(m).resolve() for m in members]
    if len(paths) < 2:
        raise UserError(f"an input-dependent ensemble needs at least 2 members, got {len(paths)}: "
                        f"{[str(p) for p in paths]}")
    dupes = sorted({str(p) for p in paths if paths.count(p) > 1})
    if dupes:
        raise UserError(f"ensemble members given twice: {', '.join(dupes)}; list each run dir once")
    out = []
    for path in paths:
        check_finished(path, f"input-dependent ensemble member {short_name(path)}")
        mcfg = load_member_config(path)
        out.append(_Member(path=path, name=short_name(path), preprocess=mcfg.data.preprocess,
                           normalisation=config_key(mcfg)))
    return out


def check_members(members: list[_Member], preprocess: str, image_shape: Optional[tuple],
                   normalisation: Optional[dict] = None) -> None:
    """Every member must see the images the DE sees: same preprocessing, normalisation and image shape."""
    for m in members:
        if normalisation is not None and m.normalisation is not None and m.normalisation != normalisation:
            raise UserError(f"member {m.path} was trained with normalisation {m.normalisation} but the dynamic "
                            f"ensembler's is {normalisation}: every member must score the images the ensembler "
                            "sees; set the ensembler's data.normalisation(_params) to the members' ones")
        if m.preprocess != preprocess:
            raise UserError(f"member {m.path} was trained on data.preprocess = {m.preprocess!r} images but the "
                            f"dynamic ensembler's data.preprocess is {preprocess!r}: every member must score the "
                            "images the ensembler sees (segmented members need a segmented ensembler, and vice "
                            "versa); choose members trained with the same preprocessing")
        if image_shape is not None and m.model is not None and m.image_shape != tuple(image_shape):
            raise UserError(f"member {m.path} takes images of shape {m.image_shape}, but the dynamic ensembler's "
                            f"data (data.path) has images of shape {tuple(image_shape)}; members must be trained on "
                            "cutouts of the ensembler's size and channels")


def make_member_step(models: Sequence[Any], image_shape: tuple, jit_compile: bool = False):
    """One compiled function ``x (B, H, W, C) → (B, M)`` float32 scores of all members (inference mode).

    ``jit_compile`` (the DE's ``train.jit_compile``) compiles it with XLA, which on GPUs speeds up the
    member inference that dominates a DE chunk.
    """
    import tensorflow as tf

    spec = tf.TensorSpec([None, *image_shape], tf.float32)

    def step(x):
        cols = [tf.reshape(tf.cast(m(x, training=False), tf.float32), [-1, 1]) for m in models]
        return tf.concat(cols, axis=1)

    return tf.function(step, input_signature=[spec], jit_compile=bool(jit_compile))


def batched(fn, x: np.ndarray, width: int, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """``fn`` over ``x`` in fixed-size batches (the loop's inference batch), stacked to ``(N, width)`` float32."""
    from lenshpc.train.evaluate import run_batches

    return run_batches(fn, x, batch_size, (width,)).reshape(-1, width)


def combine(gates: np.ndarray, member_scores: np.ndarray) -> np.ndarray:
    """Eq 3.23: ``ŷ = Σ_m g_m · p_m`` (float32), clipped to [0, 1] against rounding (Σ g = 1 ± 1 ulp)."""
    return np.clip(np.sum(gates * member_scores, axis=1, dtype=np.float32), 0.0, 1.0).astype(np.float32)


# ======================================================================= run-dir files (lenshpc.tasks.ide)
def definition(members: Sequence[_Member], out: Path) -> dict:
    """The part of ``ensemble.json`` that defines the ensemble (written at the start, checked on resume)."""
    out = Path(out).resolve()
    return {"method": METHOD, "members": [str(m.path) for m in members],
            "member_names": [m.name for m in members],
            # Relative paths let load_ide_scorer find members after the whole tree was moved.
            "members_relative": [relpath(m.path, out) for m in members]}


def same_test_set(member_dir: Path, scores: np.ndarray) -> Optional[bool]:
    """Whether the member's own stored test scores equal its scores on the DE's test set (same test set)."""
    try:
        stored = read_predictions(member_dir / PREDICTIONS_FILE, "test")["scores"]
    except (OSError, KeyError):
        return None
    return bool(len(stored) == len(scores) and np.allclose(stored, scores, rtol=0, atol=1e-5))


# ======================================================================= entry points
def with_members(cfg, members: Sequence[str | os.PathLike]):
    """``cfg`` as a run of task ``ide`` (:class:`lenshpc.tasks.ide.IDETask`) over ``members`` (absolute paths)."""
    if isinstance(members, (str, os.PathLike)):
        members = [members]
    return cfg.replace(**{"task.name": TASK, "task.params": {"members": [str(Path(m).resolve()) for m in members]}})


def train_ide(members: Sequence[str | os.PathLike], cfg, out: str | os.PathLike, *, resume: bool = True,
              force: bool = False, show_progress: bool = True, on_chunk_end=None) -> dict:
    """Train a dynamic ensembler over ``members`` and write its run directory at ``out``.

    :func:`lenshpc.train.run_training` of :func:`with_members` ``(cfg, members)`` (``resume``, ``force``,
    ``show_progress``, ``on_chunk_end`` as there), after checking that a checkpoint or finished run in ``out``
    is one of the same members.  ``cfg`` is the DE's run config (use the members' data and seed so the test
    set is theirs; ``loss`` is unused).

    Returns
    -------
    dict
        ``metrics.json``.

    Raises
    ------
    UserError
        Bad members (fewer than 2, duplicate, unfinished, other preprocessing or image shape), an ``out``
        holding an ensemble of other members, or any ``run_training`` error.
    """
    from lenshpc.train import run_training

    cfg = with_members(cfg, members)
    rd = RunDir(out)
    _check_same_members(rd, cfg.task.params["members"], resume=resume, force=force)
    return run_training(cfg, rd.path, resume=resume, force=force, show_progress=show_progress,
                        on_chunk_end=on_chunk_end)


def _check_same_members(rd: RunDir, members: Sequence[str], *, resume: bool, force: bool) -> None:
    """A checkpoint or finished run of other members is never resumed or returned silently."""
    old = read_json_object(rd.path / ENSEMBLE_JSON)  # {} when absent or unreadable: nothing to compare with
    if force or not old or not (rd.is_done() or (resume and rd.has_checkpoint())):
        return
    now = list(members)
    if old.get("method") != METHOD:
        raise UserError(f"{rd.path} holds a {old.get('method')!r} ensemble, not an input-dependent one; choose "
                        "another output directory")
    if old.get("members") != now:
        raise UserError(f"{rd.path} holds an input-dependent ensemble of other members ({old.get('members')}, "
                        f"now {now}); use the same members (same order) to resume, --force to start over, or "
                        "another output directory")


# ======================================================================= scoring with a finished IDE
class IDEScorer:
    """A finished input-dependent ensemble as a scorer of prepared images.

    Attributes
    ----------
    name : str
        ``"<parent>/<dir>"`` of the IDE run directory.
    image_shape : tuple
        ``(H, W, C)`` the gating network and every member take.
    members : list of str
        The members' run directories.
    """

    def __init__(self, path: Path, gating, members: list[_Member]):
        self.path = Path(path)
        self.name = short_name(self.path.resolve())
        self.gating = gating
        self.members = [str(m.path) for m in members]
        self.image_shape = tuple(int(s) for s in gating.input_shape[1:])
        self._member_step = make_member_step([m.model for m in members], self.image_shape)
        import tensorflow as tf

        spec = tf.TensorSpec([None, *self.image_shape], tf.float32)
        self._gate_step = tf.function(lambda x: gating(x, training=False), input_signature=[spec])
        self._width = len(members)

    def member_scores(self, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """``(N, M)`` member scores of prepared images ``x``."""
        return batched(self._member_step, check_images(x, self.image_shape, self.name), self._width, batch_size)

    def gates(self, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """``(N, M)`` softmax weights of the gating network."""
        return batched(self._gate_step, check_images(x, self.image_shape, self.name), self._width, batch_size)

    def score(self, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Ensemble scores ``ŷ = Σ_m g_m(x) p_m(x)`` ``(N,)`` float32 of prepared images ``x`` ``(N, H, W, C)``."""
        return combine(self.gates(x, batch_size), self.member_scores(x, batch_size))

    def __repr__(self) -> str:
        return f"IDEScorer({self.name!r}, members={len(self.members)})"


def load_ide_scorer(path: str | os.PathLike) -> IDEScorer:
    """Load a finished input-dependent ensemble (run dir of :func:`train_ide`) as a scorer.

    Members are found at their recorded absolute paths, else relative to the IDE directory
    (a moved tree).

    Raises
    ------
    UserError
        Not an IDE run dir, unfinished, or a member that cannot be found or loaded.
    """
    from lenshpc.train.evaluate import load_model

    rd = RunDir(path)
    if not (rd.path / ENSEMBLE_JSON).is_file():
        raise UserError(f"{rd.path}: not an input-dependent ensemble (no {ENSEMBLE_JSON}); make one with "
                        "`lenshpc ensemble` (method input_dependent)")
    info = read_ensemble_json(rd.path)
    if info.get("method") != METHOD:
        raise UserError(f"{rd.path}: a {info.get('method')!r} ensemble, not an input-dependent one")
    if not rd.is_done() or not rd.model.is_file():
        raise UserError(f"{rd.path}: the input-dependent ensemble has not finished training (no DONE); "
                        "run it to the end first")
    paths = ensemble_member_dirs(rd.path, info)  # recorded absolute paths, else relative (a moved tree)
    members = [_Member(path=p.resolve(), name=short_name(p.resolve()), preprocess="").load() for p in paths]
    gating = load_model(rd.model)
    width = int(gating.output_shape[-1])
    if width != len(members):
        raise UserError(f"{rd.model}: the gating network has {width} outputs for {len(members)} members")
    shape = tuple(int(s) for s in gating.input_shape[1:])
    for m in members:
        if m.image_shape != shape:
            raise UserError(f"member {m.path} takes images of shape {m.image_shape}, the gating network {shape}")
    return IDEScorer(rd.path, gating, members)


__all__ = ["IDEScorer", "METHOD", "TASK", "ide_targets", "load_ide_scorer", "train_ide", "with_members"]
