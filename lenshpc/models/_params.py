"""Hyper-parameter checks shared by every architecture (no Keras: config validation stays fast)."""

from __future__ import annotations

from typing import Any, Sequence

from lenshpc.errors import ConfigError


def positive_ints(name: str, model: str, values: Any, length: int | None = None) -> tuple[int, ...]:
    """Validate a hyper-parameter that is a list of positive integers (e.g. filters)."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ConfigError(f"model '{model}': {name} must be a non-empty list of positive integers, got {values!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConfigError(f"model '{model}': {name} must contain positive integers, got {list(values)!r}")
    if length is not None and len(values) != length:
        what = "one per stage" if name != "kernel_size" else "one size for every convolution"
        raise ConfigError(f"model '{model}': {name} needs {length} entr{'y' if length == 1 else 'ies'} ({what}), "
                          f"got {list(values)!r}")
    return tuple(int(v) for v in values)


def fraction(name: str, model: str, value: Any) -> float:
    """Validate a rate in [0, 1) (dropout, batch-norm momentum)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"model '{model}': {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def non_negative(name: str, model: str, value: Any) -> float:
    """Validate a non-negative number (regularisation strength)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"model '{model}': {name} must be a number ≥ 0, got {value!r}")
    return float(value)


def check_min_side(model: str, input_shape: tuple, min_side: int) -> None:
    """Raise if the image is too small for a model with "valid" convolutions and pooling."""
    if min(input_shape[0], input_shape[1]) < min_side:
        raise ConfigError(f"model '{model}' needs images of at least {min_side}×{min_side} pixels "
                          f"(its 'valid' convolutions and poolings shrink smaller ones to nothing); "
                          f"got input_shape {tuple(input_shape)}. Use larger cutouts or another model")
