"""Training losses by name, written in ``keras.ops`` (backend-agnostic).

Every loss is callable as ``fn(y_true, y_pred) -> scalar`` over a batch of **probabilities**; the binary
ones (:class:`keras.losses.Loss` subclasses) take the sigmoid output, shape ``(B,)`` or ``(B, 1)`` (both
flattened).  The soft losses are batch-level ("macro") quantities, as in the thesis:

================== ==================================================================
``bce``            binary cross-entropy (Eq 3.5), ŷ clipped to [ε, 1 − ε]
``f1_soft``        1 − 2TP / (2TP + FN + FP + ε)                         (Eq 3.13–3.14)
``f1_double_soft`` mean of the positive-class loss above and the negative-class loss
                   1 − 2TN / (2TN + FN + FP + ε)                         (Eq 3.15–3.17)
``fbeta_soft``     1 − (1+β²)PR / (β²P + R + ε), P = TP/(TP+FP+ε), R = TP/(TP+FN+ε)
                   (Eq 3.18–3.19; ``beta`` default 0.17)
``categorical_crossentropy``  of K-class softmax outputs (:func:`categorical_crossentropy`; 21-cm, IDE gates)
================== ==================================================================

with the soft counts TP = Σŷy, FP = Σŷ(1−y), FN = Σ(1−ŷ)y, TN = Σ(1−ŷ)(1−y) (Eq 3.9–3.12).

ε = :data:`lenshpc.metrics.SOFT_EPS` = 1e-7, not the thesis's 1e-16: 1e-16 vanishes in a
float32 sum and leaves 0/0 (NaN) or 1e16-sized gradients for empty classes.  With 1e-7 in
every denominator (also inside P and R, where the thesis had none) the losses and their
gradients are finite for all-positive, all-negative and perfectly predicted batches.
The formulas are shared with :mod:`lenshpc.metrics` (one implementation, evaluated there on
numpy arrays), so ``metrics.soft_fbeta(y, p) == 1 − get("fbeta_soft")(y, p)``.

Losses compute in float32 even under a ``mixed_float16`` policy (``Loss`` casts its inputs).

Example
-------
>>> loss = get("fbeta_soft", beta=0.17)
>>> float(loss([1, 0], [0.9, 0.2]))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable

import keras
from keras import ops

from lenshpc.errors import ConfigError
from lenshpc.metrics import SOFT_EPS, soft_counts, soft_fbeta_from_counts
from lenshpc.utils import did_you_mean

_PACKAGE = "lenshpc"


def _flat(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    y_pred = ops.reshape(y_pred, (-1,))
    y_true = ops.cast(ops.reshape(y_true, (-1,)), y_pred.dtype)
    return y_true, y_pred


def _f1_soft_loss(tp: Any, fp: Any, fn: Any) -> Any:
    """Eq 3.14 (and Eq 3.15 when called with TN in place of TP)."""
    return 1.0 - 2.0 * tp / (2.0 * tp + fn + fp + SOFT_EPS)


class _BatchLoss(keras.losses.Loss):
    """Base: a scalar per batch; ``name`` is the registry name (shown in logs)."""

    registry_name = ""

    def __init__(self, name: str | None = None, reduction: str = "sum_over_batch_size", dtype: Any = None):
        super().__init__(name=name or self.registry_name, reduction=reduction, dtype=dtype)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BinaryCrossentropy(_BatchLoss):
    """Binary cross-entropy on probabilities (Eq 3.5), ŷ clipped to [ε, 1 − ε] with ε = 1e-7."""

    registry_name = "bce"

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y, p = _flat(y_true, y_pred)
        p = ops.clip(p, SOFT_EPS, 1.0 - SOFT_EPS)
        return -ops.mean(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class F1Soft(_BatchLoss):
    """Macro soft-F1 loss of the positive class (Eq 3.13–3.14)."""

    registry_name = "f1_soft"
    double = False  # F1DoubleSoft: averaged with the negative class's loss

    def call(self, y_true: Any, y_pred: Any) -> Any:
        tp, fp, fn, tn = soft_counts(*_flat(y_true, y_pred), reduce_sum=ops.sum)
        positive = _f1_soft_loss(tp, fp, fn)
        return 0.5 * (positive + _f1_soft_loss(tn, fp, fn)) if self.double else positive


@keras.saving.register_keras_serializable(package=_PACKAGE)
class F1DoubleSoft(F1Soft):
    """Mean of the positive- and negative-class soft-F1 losses (Eq 3.15–3.17)."""

    registry_name = "f1_double_soft"
    double = True


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FBetaSoft(_BatchLoss):
    """1 − soft Fβ (Eq 3.18–3.19); β < 1 weighs precision above recall (thesis: 0.17)."""

    registry_name = "fbeta_soft"

    def __init__(self, beta: float = 0.17, **kw: Any):
        super().__init__(**kw)
        self.beta = float(beta)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        tp, fp, fn, _ = soft_counts(*_flat(y_true, y_pred), reduce_sum=ops.sum)
        return 1.0 - soft_fbeta_from_counts(tp, fp, fn, self.beta, eps=SOFT_EPS)

    def get_config(self) -> dict:
        return {**super().get_config(), "beta": self.beta}


def categorical_crossentropy(targets: Any, probs: Any) -> Any:
    """Mean categorical cross-entropy of (possibly smoothed) one-hot ``targets`` under softmax ``probs`` ``(B, K)``:
    the one Keras definition (the K-class tasks' loss; :func:`lenshpc.metrics_multiclass.cross_entropy` in numpy)."""
    return ops.mean(keras.losses.categorical_crossentropy(targets, probs))


#: name -> (factory, keyword arguments it accepts besides ``beta``)
_REGISTRY: dict[str, tuple[Callable[..., Callable], tuple[str, ...]]] = {
    "bce": (BinaryCrossentropy, ()),
    "f1_soft": (F1Soft, ()),
    "f1_double_soft": (F1DoubleSoft, ()),
    "fbeta_soft": (FBetaSoft, ("beta",)),
    "categorical_crossentropy": (lambda: categorical_crossentropy, ()),
}


def available() -> list[str]:
    """Names accepted by :func:`get` (and by ``loss.name`` in the config)."""
    return sorted(_REGISTRY)


def get(name: str, **kw: Any) -> Callable[[Any, Any], Any]:
    """The loss called ``name``, configured with ``kw``.

    Parameters
    ----------
    name : str
        One of :func:`available`.
    **kw
        ``beta`` (used by ``fbeta_soft``; accepted and ignored by the others so callers can
        pass ``beta=cfg.loss.beta`` whatever the loss).

    Raises
    ------
    ConfigError
        Unknown loss name (with the closest valid one) or unknown keyword.
    """
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY, cutoff=0.4)
        raise ConfigError(f"unknown loss '{name}'.{hint} Available losses: {', '.join(available())}")
    factory, accepted = _REGISTRY[name]
    unknown = [k for k in kw if k not in accepted and k != "beta"]
    if unknown:
        valid = ", ".join(sorted({*accepted, "beta"}))
        raise ConfigError(f"loss '{name}' has no option '{unknown[0]}' (valid: {valid})")
    if "beta" in kw and not float(kw["beta"]) > 0:
        raise ConfigError(f"loss.beta = {kw['beta']}: β must be positive (thesis: 0.17)")
    return factory(**{k: v for k, v in kw.items() if k in accepted})
