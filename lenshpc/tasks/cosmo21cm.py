"""The ``cosmo21cm`` task: classify 21-cm brightness-temperature slices by redshift, escape fraction or both.

Seed 003 (the 21-cm study): slices of 21cmFAST ``delta_T`` boxes are labelled by the parameters that made them.
Data: a ``slices21cm`` dataset (``lenshpc simulate21cm``; :mod:`lenshpc.data.cosmo21cm.slices`), split by
realisation.  Training chunks are class-balanced and augmented with periodic rolls, rot90 and flips
(:class:`lenshpc.data.slice_source.SliceSource`); the model ends in a K-way softmax; the loss is categorical
cross-entropy of (optionally smoothed) one-hot targets; the metrics are sklearn's
(:mod:`lenshpc.metrics_multiclass`).

``task.params``: defaults in :attr:`Cosmo21cmTask.params`, meanings in ``docs/cosmo21cm.md``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from lenshpc.errors import ConfigError
from lenshpc.tasks.base import Metric, Task

#: Per-chunk selection candidates and the test metrics (the reducer's mean ± std table).
METRICS = (
    Metric("accuracy", True, "accuracy", per_chunk=True, required=True),
    Metric("macro_f1", True, "macro-F1", per_chunk=True, required=True),
    Metric("top2_accuracy", True, "top-2 accuracy"),
    Metric("auroc_ovr", True, "AUROC (one-vs-rest)"),
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(params: Mapping[str, Any], key: str, ok: bool, what: str) -> None:
    """ConfigError ``task.params.<key> = <value>: <what>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"task.params.{key} = {params[key]!r}: {what}")


class _SliceTask(Task):
    """What the 21-cm tasks share: the slice source and its checks."""

    #: ``y`` of the source: class indices or the images.
    labels_kind = "class"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict:
        """The parameter checks shared by the 21-cm tasks (classification and autoencoder)."""
        from lenshpc.data.cosmo21cm.slices import TARGETS
        from lenshpc.data.slice_source import AUGMENTATIONS, NORMALISATIONS

        out = super().check_params(params)
        _require(out, "target", out["target"] in TARGETS, f"use one of {', '.join(TARGETS)}")
        _require(out, "normalisation", out["normalisation"] in NORMALISATIONS,
                 "use one of " + ", ".join(f"{k} ({v})" for k, v in NORMALISATIONS.items()))
        _require(out, "mk_scale", _number(out["mk_scale"]) and out["mk_scale"] > 0, "a positive number of mK (e.g. 20)")
        _require(out, "crop", _number(out["crop"]) and isinstance(out["crop"], int) and out["crop"] >= 0,
                 "0 (whole slice) or a positive side in pixels")
        ops = out["augment"]
        _require(out, "augment", isinstance(ops, (list, tuple)) and all(o in AUGMENTATIONS for o in ops),
                 f"a list of {', '.join(AUGMENTATIONS)} ([] = none)")
        out["augment"] = [o for o in AUGMENTATIONS if o in ops]
        _require(out, "allow_slice_split", isinstance(out["allow_slice_split"], bool), "true or false")
        return out

    def data_source(self, *, rank: int, size: int, run_dir=None, write: bool = False):
        from lenshpc.data.slice_source import SliceSource

        self._probe = SliceSource(self.cfg, self.options, rank=rank, size=size, labels=self.labels_kind)
        return self._probe

    def check_data(self) -> None:
        self._info()

    def _info(self):
        """The run's source (:meth:`data_source`); before it one without the train split (num_outputs …)."""
        if getattr(self, "_probe", None) is None:
            from lenshpc.data.slice_source import SliceSource

            self._probe = SliceSource(self.cfg, self.options, labels=self.labels_kind, load_train=False)
        return self._probe

    def extra_metrics(self) -> dict:
        info = self._info()
        return {"class_names": info.class_names, "warnings": info.warnings}


class Cosmo21cmTask(_SliceTask):
    """K-class classification of 21-cm slices (module docstring)."""

    name = "cosmo21cm"
    description = "classify 21-cm slices by redshift / escape fraction (seed 003; K-way softmax, sklearn metrics)"
    metrics = METRICS
    losses = ("cce",)
    params = {"target": "redshift", "normalisation": "global", "mk_scale": 20.0, "crop": 0,
              "augment": ["roll", "rot90", "flip"], "label_smoothing": 0.0, "allow_slice_split": False,
              "pca_baseline": True}

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict:
        out = super().check_params(params)
        eps = out["label_smoothing"]
        _require(out, "label_smoothing", _number(eps) and 0 <= eps < 1, "a number in [0, 1)")
        _require(out, "pca_baseline", isinstance(out["pca_baseline"], bool), "true or false")
        return out

    # ------------------------------------------------------------------ model, loss, targets
    def num_outputs(self) -> int:
        return int(self._info().n_classes)

    def loss(self):
        from lenshpc.losses import categorical_crossentropy

        return categorical_crossentropy

    def targets(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """One-hot class targets, smoothed: ``(1-ε)·onehot + ε/K`` (the one place of label smoothing)."""
        k, eps = self.num_outputs(), float(self.options["label_smoothing"])
        onehot = np.eye(k, dtype=np.float32)[np.asarray(y, dtype=np.int64).reshape(-1)]
        return onehot * np.float32(1.0 - eps) + np.float32(eps / k) if eps else onehot

    def target_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.num_outputs(),)

    def outputs(self, predict, x: np.ndarray) -> np.ndarray:
        return np.asarray(predict(x), dtype=np.float32).reshape(len(x), -1)

    # ------------------------------------------------------------------ metrics
    def chunk_metrics(self, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
        from lenshpc import metrics_multiclass as mm

        return {"val_loss": mm.cross_entropy(self.targets(None, y), out), "val_accuracy": mm.accuracy(y, out),
                "val_macro_f1": mm.macro_f1(y, out)}

    def summary(self, y: np.ndarray, out: np.ndarray, *, val=None) -> dict:
        from lenshpc import metrics_multiclass as mm

        result = {**mm.summary(y, out), "seed": int(self.cfg.seed), "n_test": int(len(y)), "test_loss": mm.cross_entropy(self.targets(None, y), out)}
        if val is not None:
            result["val"] = {k: v for k, v in mm.summary(*val).items() if k not in ("confusion",)}
        return result

    def predictions(self, out: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        from lenshpc import metrics_multiclass as mm

        return {"scores": np.asarray(out, np.float32), "labels": np.asarray(y, np.int64),
                "predicted": mm.predicted(out).astype(np.int64)}

    # ------------------------------------------------------------------ reduce
    @classmethod
    def report_sections(cls, groups: Mapping[str, Sequence], out_dir) -> list[str]:
        from lenshpc.tasks import cosmo21cm_report

        return cosmo21cm_report.sections(groups, out_dir, cls)
