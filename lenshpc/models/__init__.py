"""Model registry: every architecture behind one builder signature (Keras 3, channels-last).

.. code-block:: python

    build(name: str, input_shape=(101, 101, 1), num_outputs: int = 1, **hparams) -> keras.Model
    available() -> list[str]
    default_hparams(name) -> dict      # the hyper-parameters a model accepts, with defaults
    check(name, hparams, input_shape=None) -> dict   # validate model.params without Keras

``config.yaml``'s ``model.name`` / ``model.params`` map onto ``name`` / ``hparams``.
Every model ends in a Dense layer named ``logits`` and an activation named ``prediction``:
**sigmoid** for ``num_outputs == 1`` (a lens probability), **softmax** for ``> 1`` (the
dynamic ensembler, thesis Sec 3.6).  The activation is float32 even under a
``mixed_float16`` policy.  The input layer is named ``image``.  Weights are random (seed
them with ``keras.utils.set_random_seed`` before building); nothing is ever downloaded.

Models
------
``resnet18`` (:func:`lenshpc.models.resnet.resnet18`)
    The thesis's network (Sec 4.3): conv 7×7/2 (64) → BN → ReLU → max-pool 3/2;
    pre-activation basic blocks [2, 2, 2, 2] of 64/128/256/512 filters, stride 2 at the
    start of stages 2–4, 1×1 projection shortcuts; he_normal, L2 1e-4 on convolutions;
    final BN-ReLU → global average pooling → head.  Residual additions are named
    ``add_1`` … ``add_8`` (Grad-CAM targets).  ~11.2 M parameters.
    hparams: ``l2=1e-4``, ``filters=(64, 128, 256, 512)``, ``blocks=(2, 2, 2, 2)``.
``tiny_resnet`` (:func:`lenshpc.models.resnet.tiny_resnet`)
    Same blocks, 3×3/2 stem, 3 stages of 8/16/32 filters, one block each (``add_1`` …
    ``add_3``); trains in seconds on a CPU on 64×64 images (CI, quickstart).
    hparams: ``l2=1e-4``, ``filters=(8, 16, 32)``, ``blocks=(1, 1, 1)``.
``efficientnet_b0`` (:func:`lenshpc.models.efficientnet.efficientnet_b0`)
    ``keras.applications.EfficientNetB0(include_top=False, weights=None)`` on the raw
    channel count (seed 001) → global average pooling → dropout → head.  ~4.0 M parameters.
    hparams: ``dropout=0.2``.
``lastro_cnn`` (:func:`lenshpc.models.challenge.lastro_cnn`)
    The 2017 Lens Finding Challenge winner (LASTRO EPFL; Schaefer et al. 2018) as in seed
    000: conv 16-16/32-32/64-64/128-128, max-pool + BN, dropout, FC 1024×3 + 64 → head.
    Needs inputs of at least 69×69 ("valid" convolutions).
    hparams: ``dropout=0.2``, ``dense_activation="relu"`` (``"linear"`` = seed 000's code).
``lensflow_cnn`` (:func:`lenshpc.models.challenge.lensflow_cnn`)
    LensFlow (seed 004): conv 30/60/90 5×5 tanh + 2×2 max-pool each, flatten, dense
    1000/800/600 ReLU + dropout 0.5 → head.  Needs inputs of at least 36×36.
    hparams: ``dropout=0.5``, ``filters=(30, 60, 90)``, ``dense=(1000, 800, 600)``,
    ``kernel_size=5``.

Errors
------
An unknown model name, an unknown hyper-parameter, a bad hyper-parameter value, a bad
``input_shape``/``num_outputs`` or an input too small for the architecture raise
:class:`lenshpc.errors.ConfigError` naming the closest valid choice.

This module imports Keras only inside :func:`build` / :func:`default_hparams`, so listing
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
    "efficientnet_b0": "lenshpc.models.efficientnet:efficientnet_b0",
    "lastro_cnn": "lenshpc.models.challenge:lastro_cnn",
    "lensflow_cnn": "lenshpc.models.challenge:lensflow_cnn",
    "resnet18": "lenshpc.models.resnet:resnet18",
    "tiny_resnet": "lenshpc.models.resnet:tiny_resnet",
}
#: name -> "module:function" checking a full hyper-parameter set without Keras
#: (``check(model, input_shape_or_None, **hparams) -> validated hparams``); the builders call the same function.
_CHECKS = {
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


def build(name: str, input_shape: tuple = (101, 101, 1), num_outputs: int = 1, **hparams: Any) -> Any:
    """Build model ``name`` (see the module docstring for each architecture).

    Parameters
    ----------
    name : str
        One of :func:`available`.
    input_shape : tuple of int
        ``(height, width, channels)``; the thesis's KiDS cutouts are ``(101, 101, 1)``.
    num_outputs : int
        1 → sigmoid lens probability; > 1 → softmax over ``num_outputs`` classes.
    **hparams
        Architecture hyper-parameters (``model.params`` in the config).

    Returns
    -------
    keras.Model
        Uncompiled, with random weights.

    Raises
    ------
    ConfigError
        Unknown name or hyper-parameter, bad value, or an input too small for the model.
    """
    builder = _builder(name)
    shape = _check_input_shape(name, input_shape)
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ConfigError(f"model '{name}': num_outputs must be a positive integer, got {num_outputs!r}")
    check(name, hparams, shape)
    try:
        return builder(shape, num_outputs, **hparams)
    except ValueError as exc:
        # Keras reports feature maps shrinking past zero as a ValueError; that is a shape
        # problem the user fixes in the config (the builders check the known cases first).
        if "zero or negative" in str(exc):
            raise ConfigError(f"model '{name}' cannot be built on input_shape {shape} with {hparams or 'default'} "
                              "hyper-parameters: its feature maps shrink to nothing. Use larger images, "
                              "fewer stages or another model") from None
        raise
