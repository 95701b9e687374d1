"""Model registry: every architecture a backbone behind one builder signature, plus a head (Keras 3, channels-last).

.. code-block:: python

    build(name, input_shape=(101, 101, 1), num_outputs=1, head=None, **hparams) -> keras.Model
    backbone(name, input_shape=(101, 101, 1), pooling="avg", **hparams) -> keras.Model   # image → features
    available() -> list[str]
    default_hparams(name) -> dict      # the hyper-parameters a model accepts, with defaults
    check(name, hparams, input_shape=None) -> dict   # validate model.params without Keras

``config.yaml``'s ``model.name`` / ``model.params`` map onto ``name`` / ``hparams``; the task
(:meth:`lenshpc.tasks.base.Task.build_model`) chooses ``num_outputs`` and the head.

Backbone and head are separate (the Keras applications' ``include_top`` / ``pooling`` idea).
Every registered function has the one signature ``fn(input_shape, pooling="avg", *, **hparams)
-> keras.Model`` and builds the **backbone**: image (input layer ``image``) → features;
``pooling="avg"`` gives the feature vector a head reads, ``None`` the last feature map ``(B, h, w, C)``
(e.g. for a decoder head).  :func:`build` puts a **head** on it (default
:func:`lenshpc.models.heads.classifier`: Dense ``logits`` → sigmoid for one output, softmax for K) and
returns one flat ``keras.Model`` named like the architecture, so layer names (``logits``, ``add_1`` …) are
those Grad-CAM and saved models rely on.  Weights are random (seed them with
``keras.utils.set_random_seed`` before building); nothing is ever downloaded.

Models
------
Architectures, hyper-parameters and references are in the modules named here.

``resnet18`` (~11.2 M parameters), ``tiny_resnet``
    :mod:`lenshpc.models.resnet`: the thesis's pre-activation ResNet18 (Sec 4.3); the tiny one trains in
    seconds on a CPU (CI, quickstart).
``efficientnet_b0`` (~4.0 M)
    :mod:`lenshpc.models.efficientnet`: ``keras.applications.EfficientNetB0`` without top (seed 001).
``lastro_cnn``, ``lensflow_cnn``
    :mod:`lenshpc.models.challenge`: the 2017 challenge winner (seed 000; images ≥ 69×69) and LensFlow
    (seed 004; ≥ 36×36).
``cnn21``, ``dense21``, ``autoencoder21``
    :mod:`lenshpc.models.cosmo21cm`: the 21-cm study (seed 003); the autoencoder's decoder is a head.

Errors
------
An unknown model name, an unknown hyper-parameter, a bad hyper-parameter value, a bad
``input_shape``/``num_outputs``/``pooling`` or an input too small for the architecture raise
:class:`lenshpc.errors.ConfigError` naming the closest valid choice.

This module imports Keras only inside :func:`build` / :func:`backbone`, so listing
models (config validation, ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from lenshpc.errors import ConfigError
from lenshpc.utils import did_you_mean

#: name -> "module:function" (imported lazily: each module imports Keras).
_REGISTRY = {
    "autoencoder21": "lenshpc.models.cosmo21cm:autoencoder21",
    "cnn21": "lenshpc.models.cosmo21cm:cnn21",
    "dense21": "lenshpc.models.cosmo21cm:dense21",
    "efficientnet_b0": "lenshpc.models.efficientnet:efficientnet_b0",
    "lastro_cnn": "lenshpc.models.challenge:lastro_cnn",
    "lensflow_cnn": "lenshpc.models.challenge:lensflow_cnn",
    "resnet18": "lenshpc.models.resnet:resnet18",
    "tiny_resnet": "lenshpc.models.resnet:tiny_resnet",
}
#: name -> "module:function" checking a full hyper-parameter set without Keras
#: (``check(model, input_shape_or_None, **hparams) -> validated hparams``); the builders call the same function.
_CHECKS = {
    "autoencoder21": "lenshpc.models.cosmo21cm:check_autoencoder",
    "cnn21": "lenshpc.models.cosmo21cm:check_cnn",
    "dense21": "lenshpc.models.cosmo21cm:check_dense",
    "efficientnet_b0": "lenshpc.models.efficientnet:check_params",
    "lastro_cnn": "lenshpc.models.challenge:check_lastro",
    "lensflow_cnn": "lenshpc.models.challenge:check_lensflow",
    "resnet18": "lenshpc.models.resnet:check_params",
    "tiny_resnet": "lenshpc.models.resnet:check_tiny",
}


def available() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def _builder(name: str, registry: dict[str, str] = _REGISTRY) -> Callable[..., Any]:
    if name not in registry:
        hint = did_you_mean(name, registry, cutoff=0.4)
        raise ConfigError(f"unknown model '{name}'.{hint} Available models: {', '.join(available())}")
    module, func = registry[name].split(":")
    return getattr(importlib.import_module(module), func)


def default_hparams(name: str) -> dict[str, Any]:
    """The hyper-parameters model ``name`` accepts, with their defaults."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_input_shape(name: str, input_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in input_shape)
        ok = len(shape) == 3 and all(s > 0 for s in shape) and all(float(s) == int(s) for s in input_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"model '{name}': input_shape must be (height, width, channels) of positive integers, "
                          f"got {input_shape!r}")
    return shape


def check(name: str, hparams: dict[str, Any] | None = None, input_shape: tuple | None = None) -> dict[str, Any]:
    """Validate ``model.name`` / ``model.params`` without Keras (milliseconds; sweeps check every grid point).

    Parameters
    ----------
    name : str
        One of :func:`available`.
    hparams : dict, optional
        ``model.params``: unknown keys and bad values (types, ranges, per-stage list lengths) are errors.
    input_shape : tuple of int, optional
        ``(height, width, channels)`` when known: also checks that the model fits the images.

    Returns
    -------
    dict
        Every hyper-parameter (defaults filled in), validated.

    Raises
    ------
    ConfigError
        Naming the model, the parameter and the closest valid choice.
    """
    hparams = dict(hparams or {})
    accepted = default_hparams(name)
    for key in hparams:
        if key not in accepted:
            hint = did_you_mean(key, accepted, cutoff=0.4)
            valid = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
            raise ConfigError(f"model '{name}' has no hyper-parameter '{key}'.{hint} Valid (with defaults): {valid}")
    shape = _check_input_shape(name, input_shape) if input_shape is not None else None
    return _builder(name, _CHECKS)(name, shape, **{**accepted, **hparams})


#: ``pooling`` values every backbone accepts.
POOLING = ("avg", None)


def backbone(name: str, input_shape: tuple = (101, 101, 1), pooling: str | None = "avg", **hparams: Any) -> Any:
    """The backbone of model ``name`` (image → features; uncompiled, random weights, input layer ``image``).

    ``input_shape`` is ``(height, width, channels)`` (the thesis's KiDS cutouts: ``(101, 101, 1)``);
    ``pooling`` ``"avg"`` gives the feature vector ``(B, F)``, ``None`` the last feature map;
    ``hparams`` are ``model.params``.  Raises :class:`ConfigError` for an unknown name or
    hyper-parameter, a bad value or ``pooling``, or an input too small for the model.
    """
    builder = _builder(name)
    shape = _check_input_shape(name, input_shape)
    if pooling not in POOLING:
        raise ConfigError(f"model '{name}': pooling must be 'avg' (a feature vector) or None (the last feature map), "
                          f"got {pooling!r}")
    check(name, hparams, shape)
    try:
        return builder(shape, pooling, **hparams)
    except ValueError as exc:
        # Keras reports feature maps shrinking past zero as a ValueError; that is a shape
        # problem the user fixes in the config (the builders check the known cases first).
        if "zero or negative" in str(exc):
            raise ConfigError(f"model '{name}' cannot be built on input_shape {shape} with {hparams or 'default'} "
                              "hyper-parameters: its feature maps shrink to nothing. Use larger images, "
                              "fewer stages or another model") from None
        raise


def build(name: str, input_shape: tuple = (101, 101, 1), num_outputs: int = 1,
          head: Callable[[Any, int], Any] | None = None, **hparams: Any) -> Any:
    """Model ``name``: its :func:`backbone` with ``head(backbone, num_outputs)`` on top (one flat keras.Model).

    ``head`` defaults to :func:`lenshpc.models.heads.classifier` (1 output → sigmoid lens probability,
    > 1 → softmax); ``hparams`` go to :func:`backbone` (``pooling=None`` too, for a head that reads
    the feature map).  Raises :class:`ConfigError` as :func:`backbone` does, or for a bad ``num_outputs``.
    """
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ConfigError(f"model '{name}': num_outputs must be a positive integer, got {num_outputs!r}")
    import keras

    from lenshpc.models import heads

    trunk = backbone(name, input_shape, **hparams)
    return keras.Model(trunk.input, (head or heads.classifier)(trunk, num_outputs), name=trunk.name)
