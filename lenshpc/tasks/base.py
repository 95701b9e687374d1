"""The Task interface: what one science task supplies to the task-agnostic training machinery.

A *task* is everything about a run that depends on the science: its data source, the model's head, the
loss and training targets, what ``predictions.h5`` stores and its metric vocabulary; the chunk loop,
resume, selection, Horovod, sweeps, ``status`` and ``reduce`` are shared.  Tasks are registered in
:mod:`lenshpc.tasks` and import TensorFlow only inside their methods, so validating configs stays fast.
Who calls each member, and the recipe "add a task": ``docs/architecture.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Protocol, Sequence

import numpy as np

from lenshpc.errors import ConfigError
from lenshpc.utils import did_you_mean


@dataclass(frozen=True)
class Metric:
    """One entry of a task's metric vocabulary.

    Parameters
    ----------
    name : str
        Key in ``metrics.json``; with ``per_chunk``, ``val_<name>`` is a ``history.csv`` column.
    higher_is_better : bool
        Direction (selection, significance marks, "best" in tables).
    title, tex : str
        Column title in the reducer's tables and in ``report.tex`` (default: ``title``, LaTeX-escaped).
    per_chunk : bool
        Computed on the validation set after every chunk (a selection candidate ``val_<name>``).
    required : bool
        A finished run whose ``metrics.json`` lacks it is reported as corrupt by the reducer.
    table : bool
        A column of the reducer's tables (false: a per-chunk selection criterion only).
    """

    name: str
    higher_is_better: bool = True
    title: str = ""
    per_chunk: bool = False
    required: bool = False
    table: bool = True
    tex: str = ""


class ChunkSource(Protocol):
    """The data side of a task (lens: :class:`lenshpc.data.chunks.ChunkEngine`).  Chunk ``i`` depends only on
    ``(cfg, seed, i, rank, size)`` (exact resume); validation and test sets are fixed, the same on every rank."""

    image_shape: tuple[int, ...]

    def iter_chunks(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(chunk, x, y)`` for ``chunk in range(start, stop)`` (this rank's share)."""

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """The fixed validation set ``(x, y)``."""

    def test(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The fixed test set ``(x, y, meta)``; ``meta`` columns go into ``predictions.h5``."""

    def describe(self) -> dict:
        """JSON-able facts recorded in ``metrics.json`` (e.g. the normalisation)."""

    def close(self) -> None:
        """Stop background synthesis threads."""


class Task(ABC):
    """One science task, made per run as ``tasks.get(cfg.task.name)(cfg)``; ``options`` = ``task.params`` with
    defaults (validated by :meth:`check_params` when the config is loaded)."""

    #: Registry name (``task.name`` in the config).
    name: ClassVar[str]
    #: One-line description (docs).
    description: ClassVar[str] = ""
    #: The metric vocabulary, in table order (:class:`Metric`).
    metrics: ClassVar[tuple[Metric, ...]]
    #: Loss names this task accepts (``loss.name``); the first is the default.
    losses: ClassVar[tuple[str, ...]]
    #: Runs hold one lens score per image with 0/1 labels (``predictions.h5``): the reducer's score histograms apply.
    lens_scores: ClassVar[bool] = False
    #: ``model.keras`` is itself a lens scorer that ``lenshpc evaluate`` / ``gradcam`` can re-score.
    rescorable: ClassVar[bool] = False
    #: ``task.params`` accepted, with defaults.
    params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, cfg):
        self.cfg = cfg
        self.options = {**self.params, **dict(getattr(getattr(cfg, "task", None), "params", {}) or {})}

    # ------------------------------------------------------------------ config
    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict:
        """``task.params`` with defaults filled in (no TensorFlow); ConfigError for an unknown key or bad value."""
        for key in params:
            if key not in cls.params:
                raise ConfigError(f"task '{cls.name}' has no parameter '{key}'.{did_you_mean(key, cls.params)} "
                                  f"Valid (with defaults): {dict(cls.params) or 'none'}")
        return {**cls.params, **params}

    def check_loss(self) -> None:
        """Refuse a ``loss.name`` not in :attr:`losses` (every task; the loop calls it before any data is made)."""
        name = self.cfg.loss.name
        if name not in self.losses:
            raise ConfigError(f"unknown loss {name!r} for task '{self.name}' (loss.name = {name!r})."
                              f"{did_you_mean(name, self.losses, cutoff=0.4)} Its losses: {', '.join(self.losses)}; "
                              f"e.g. set loss.name: {self.losses[0]}")

    @classmethod
    def val_metrics(cls) -> tuple[str, ...]:
        """``history.csv`` validation columns, in order: ``val_loss`` then ``val_<m>`` per per-chunk metric."""
        return ("val_loss",) + tuple(f"val_{m.name}" for m in cls.metrics if m.per_chunk)

    @classmethod
    def higher_is_better(cls, name: str) -> bool:
        """Direction of a metric (``val_`` prefix allowed; losses are minimised)."""
        base = name[4:] if name.startswith("val_") else name
        if base == "loss":
            return False
        for m in cls.metrics:
            if m.name == base:
                return m.higher_is_better
        raise KeyError(name)

    @classmethod
    def vocabulary(cls) -> dict:
        """What ``metrics.json["task"]`` records, so the reducer reads metric names from the runs."""
        return {"name": cls.name,
                "metrics": [m.name for m in cls.metrics],
                "higher_is_better": {m.name: m.higher_is_better for m in cls.metrics},
                "titles": {m.name: m.title or m.name for m in cls.metrics},
                "titles_tex": {m.name: m.tex for m in cls.metrics if m.tex},
                "table": [m.name for m in cls.metrics if m.table],
                "required": [m.name for m in cls.metrics if m.required],
                "val_metrics": list(cls.val_metrics()),
                "lens_scores": cls.lens_scores}

    # ------------------------------------------------------------------ data
    @abstractmethod
    def data_source(self, *, rank: int, size: int, run_dir, write: bool) -> ChunkSource:
        """The run's chunk source; ``write``: this rank (the root) may write run-dir files (e.g. a template)."""

    def check_data(self) -> None:
        """Raise :class:`lenshpc.errors.UserError` before any work when the configured data is missing."""

    @classmethod
    def input_shape(cls, cfg) -> tuple[int, ...] | None:
        """The model's input shape known from the config's data without building the source (sweeps check
        ``model.params`` against it); None when it is not known cheaply."""
        return None

    # ------------------------------------------------------------------ model
    @abstractmethod
    def num_outputs(self) -> int:
        """Width of the model's output (1 for a sigmoid score, K for a K-class softmax)."""

    def head(self):
        """The model head ``head(backbone, num_outputs) -> KerasTensor`` (:mod:`lenshpc.models.heads`); None:
        the default classifier (sigmoid for 1 output, softmax for K)."""
        return None

    def build_model(self, input_shape: tuple[int, ...]):
        """The task's model: the ``cfg.model`` backbone + :meth:`head` (:func:`lenshpc.models.build`)."""
        from lenshpc import models

        return models.build(self.cfg.model.name, tuple(input_shape), num_outputs=self.num_outputs(),
                            head=self.head(), **self.cfg.model.params)

    # ------------------------------------------------------------------ loss and targets
    @abstractmethod
    def loss(self):
        """The training loss ``fn(targets, model_output) -> scalar`` (TF ops) on the raw ``(N, num_outputs)``
        output (the task reshapes as it needs)."""

    def targets(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Training targets of a chunk ``x`` with labels ``y`` (default: the labels as float32)."""
        return np.asarray(y, dtype=np.float32)

    def target_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one training target: ``()`` for a score, ``(K,)`` one-hot, ``image_shape`` a reconstruction."""
        return ()

    def outputs(self, predict, x: np.ndarray) -> np.ndarray:
        """Model outputs on ``x``: ``predict(x)`` is the batched inference step (``(N, num_outputs)`` float32)."""
        out = predict(x)
        return out.reshape(-1) if self.num_outputs() == 1 else out

    # ------------------------------------------------------------------ metrics
    @abstractmethod
    def chunk_metrics(self, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
        """Every :meth:`val_metrics` value (``val_loss`` included) of labels ``y`` and :meth:`outputs` ``out``."""

    @abstractmethod
    def summary(self, y: np.ndarray, out: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
        """``metrics.json`` test metrics (every :attr:`metrics` name it can compute, plus ``seed``, ``n_test`` …)."""

    # ------------------------------------------------------------------ run-dir files
    def predictions(self, out: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays of one ``predictions.h5`` group (beside its ``meta``): default ``scores`` and ``labels``."""
        return {"scores": np.asarray(out, np.float32), "labels": np.asarray(y)}

    def extra_metrics(self) -> dict:
        """Further ``metrics.json`` keys (none by default)."""
        return {}

    def write_extra_files(self, run_dir, result: dict) -> None:
        """Further run-dir files, written by the root after ``metrics.json`` and before ``DONE``."""

    # ------------------------------------------------------------------ reduce
    @classmethod
    def report_sections(cls, groups: Mapping[str, Sequence], out_dir) -> list[str]:
        """Task-specific parts of ``lenshpc reduce``'s report beyond the mean ± std table of :attr:`metrics`.

        Parameters
        ----------
        groups : mapping
            Group name → the finished runs of this task in it (``report.collect.RunRecord``: ``path``,
            ``seed``, ``metrics``, ``config``).
        out_dir : path
            The report directory; figures go here (atomically, ``report.plots.save_png``).

        Returns
        -------
        list of str
            Markdown lines appended to ``report.md`` (e.g. a per-class recall table, a confusion-matrix figure).
        """
        return []


__all__ = ["ChunkSource", "Metric", "Task"]
