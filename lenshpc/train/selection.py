"""Model selection and early stopping on the fixed validation chunk (thesis Sec 3.5, 4.4).

After every chunk the loop scores the model on the same validation data and asks a
:class:`Selector` whether the score is the best so far.  "Best" is strict: a score equal to
the best one does not select the new weights and counts towards the patience, so a metric
that plateaus (e.g. accuracy on a small validation set) stops the run instead of churning.

The selector is plain data (no TensorFlow) so its state goes into ``checkpoint/state.json``
and a resumed run makes exactly the decisions an uninterrupted one would have made.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

@dataclass
class Selector:
    """Keeps the best validation score, its chunk and the early-stopping counter.

    Parameters
    ----------
    metric : str
        One of the task's :meth:`~lenshpc.tasks.base.Task.val_metrics` (``cfg.selection.metric``).
    patience : int
        Chunks without a strict improvement before :attr:`should_stop` turns true;
        0 disables early stopping (``cfg.train.patience``).
    maximise : bool
        Direction; taken from the task's :meth:`~lenshpc.tasks.base.Task.higher_is_better` by :meth:`for_config`.
    """

    metric: str
    patience: int
    maximise: bool
    best_score: Optional[float] = None
    best_chunk: int = -1
    since_best: int = 0  # chunks trained since the best one (the patience counter)

    @classmethod
    def for_config(cls, cfg, task) -> "Selector":
        """A fresh selector for a :class:`lenshpc.config.Config` and its task (the metric's direction)."""
        metric = cfg.selection.metric
        return cls(metric=metric, patience=int(cfg.train.patience), maximise=bool(task.higher_is_better(metric)))

    def is_improvement(self, score: float) -> bool:
        """True when ``score`` is strictly better than the best so far (NaN never is)."""
        if score is None or not math.isfinite(float(score)):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.maximise else score < self.best_score

    def update(self, chunk: int, score: float) -> bool:
        """Record chunk ``chunk``'s validation score; return True if it becomes the selected model."""
        if self.is_improvement(score):
            self.best_score = float(score)
            self.best_chunk = int(chunk)
            self.since_best = 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` chunks in a row brought no improvement (never when patience is 0)."""
        return self.patience > 0 and self.since_best >= self.patience

    # -- (de)serialisation for checkpoint/state.json -------------------------------
    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "Selector":
        return cls(**state)


__all__ = ["Selector"]
