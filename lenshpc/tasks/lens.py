"""The lens-finding task (thesis, the default): one sigmoid lens score per cutout, labels 0/1.

Data: :class:`lenshpc.data.chunks.ChunkEngine` (mock lenses merged on the fly, extra negatives,
the run's normalisation :func:`lenshpc.data.normalise.for_config`).  Loss: ``loss.name`` from
:mod:`lenshpc.losses` on the flattened score.  Metrics: :mod:`lenshpc.metrics` (thesis Sec 3.5 and the
challenge's TPR0/TPR10); ``metrics.json`` holds :func:`lenshpc.train.rundir.run_metrics` (incl. the
``*_tuned`` keys), ``predictions.h5`` one score per image.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from lenshpc.errors import UserError
from lenshpc import metrics
from lenshpc.tasks.base import Metric, Task


class LensTask(Task):
    """Binary strong-lens finding: ``(N, 1)`` sigmoid output, 0/1 labels."""

    name = "lens"
    description = "strong-lens finding: one sigmoid lens score per cutout (thesis; default)"
    lens_scores = rescorable = True
    # Table order (thesis Table 5.1, then the challenge metrics); the per-chunk ones in history.csv order.
    metrics = (
        Metric("accuracy", title="Accuracy", per_chunk=True, required=True),
        Metric("fbeta_auc", title="I_AUC", per_chunk=True, table=False),  # Eq 3.21 (metrics.json: i_auc)
        Metric("soft_fbeta", title="soft Fβ", per_chunk=True, table=False),
        Metric("fbeta", title="Fβ", tex=r"$F_\beta$-score", required=True),
        Metric("precision", title="Precision", required=True),
        Metric("recall", title="Recall", required=True),
        Metric("auroc", title="AUROC", per_chunk=True),
        Metric("tpr0", title="TPR0", tex=r"TPR$_0$"),
        Metric("tpr10", title="TPR10", tex=r"TPR$_{10}$"),
    )
    losses = ("bce", "fbeta_soft", "f1_soft", "f1_double_soft")

    # ------------------------------------------------------------------ data
    def data_source(self, *, rank: int, size: int, run_dir, write: bool):
        from lenshpc.data import normalise
        from lenshpc.data.chunks import ChunkEngine

        # The run's own normalisation (a histogram template is stored in the run dir, for its scorers).
        normaliser = normalise.for_config(self.cfg, run_dir=run_dir, write=write)
        return ChunkEngine(self.cfg, rank=rank, size=size, normaliser=normaliser)

    @classmethod
    def input_shape(cls, cfg) -> tuple[int, ...] | None:
        """The dataset's image shape (the chunk engine's output), when the file exists."""
        from lenshpc.data.format import open_dataset

        if not cfg.data.path or not Path(cfg.data.path).is_file():
            return None
        with open_dataset(cfg.data.path) as ds:
            return tuple(int(v) for v in ds.image_shape)

    def check_data(self) -> None:
        data = self.cfg.data
        if not data.path:
            raise UserError("data.path is empty: set it in the config or with --set data.path=DATA.h5 (make one "
                            "with `lenshpc simulate --out DATA.h5 --lenses N --sources N --negatives N`)")
        if not Path(data.path).is_file():
            raise UserError(f"data file not found: {data.path} (data.path); create it with `lenshpc simulate --out "
                            f"{data.path} --lenses N --sources N --negatives N` (or `lenshpc stack` for survey/"
                            "challenge data), or point --set data.path=… at an existing dataset")
        if data.preprocess == "maxtree" and not Path(data.segmented_path).is_file():
            raise UserError(f"segmented data not found: {data.segmented_path} (data.segmented_path); "
                            f"create it with `lenshpc maxtree {data.path} --out {data.segmented_path}`")

    # ------------------------------------------------------------------ model, loss, targets
    def num_outputs(self) -> int:
        return 1

    @functools.cached_property
    def _base_loss(self):
        from lenshpc import losses

        return losses.get(self.cfg.loss.name, beta=self.cfg.loss.beta)

    def loss(self):
        import tensorflow as tf

        base = self._base_loss
        return lambda y, out: base(y, tf.reshape(out, [-1]))  # one score per image

    def targets(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float32).reshape(-1)

    # ------------------------------------------------------------------ metrics
    def chunk_metrics(self, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
        y = np.asarray(y).reshape(-1)
        sel = self.cfg.selection
        loss = float(np.asarray(self._base_loss(y.astype(np.float32), out.astype(np.float32))))
        # Per-chunk accuracy at 0.5 (the thesis's), whatever selection.threshold says for the test metrics.
        return {"val_loss": loss, "val_accuracy": float(metrics.accuracy(y, out)),
                "val_fbeta_auc": float(metrics.i_auc(y, out, beta=sel.beta, steps=sel.steps)),
                "val_soft_fbeta": float(metrics.soft_fbeta(y, out, beta=sel.beta)),
                "val_auroc": float(metrics.auroc(y, out))}  # NaN with a single class: never selected

    def summary(self, y: np.ndarray, out: np.ndarray, *, val=None) -> dict:
        from lenshpc.train.rundir import run_metrics

        val = None if val is None else (np.asarray(val[0]).reshape(-1), val[1])
        return run_metrics(self.cfg, np.asarray(y).reshape(-1), out, val=val)

    def predictions(self, out: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        return {"scores": out, "labels": metrics.binary_labels(y)}


__all__ = ["LensTask"]
