"""Ensemble weights: Nelder–Mead weighted average (thesis Eq 3.22, Sec 3.6.1 and 4.6) and the plain average.

``ŷ = X·w`` with ``X`` the ``(N, M)`` member scores; the weights minimise the validation MSE
``mean((y − X·g(θ))²)`` with :func:`scipy.optimize.minimize` (Nelder–Mead, ``xatol = fatol = 1e-6``,
``maxiter = 200·M``) from a seeded start θ₀ ~ U[0, 1)ᴹ (``rng_for(seed, "ensemble", name)``).

Variants
--------
``thesis``
    What the thesis code did: θ = w fitted unconstrained (g = identity), ``softmax(θ)`` applied afterwards —
    positive weights summing to one, but not the minimiser (``mse_applied`` > ``fun``).
``simplex``
    θ are logits and w = softmax(θ) inside the objective (g = softmax): the applied weights are the fitted ones.

Details and consequences: ``docs/ensembles.md`` ("Nelder–Mead").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lenshpc.errors import UserError
from lenshpc.utils import rng_for

VARIANTS = ("thesis", "simplex")
#: Nelder–Mead tolerances (xatol and fatol) and iterations per member.
TOLERANCE = 1e-6
ITERATIONS_PER_MEMBER = 200


def softmax(v: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a vector."""
    v = np.asarray(v, dtype=np.float64)
    e = np.exp(v - v.max())
    return e / e.sum()


def mse(y: np.ndarray, X: np.ndarray, w: np.ndarray) -> float:
    """Mean squared error of the weighted average ``X·w`` against labels ``y``."""
    r = np.asarray(y, dtype=np.float64) - np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64)
    return float(np.mean(r * r))


@dataclass
class FitResult:
    """Weights of a weighted-average ensemble and how they were found.

    ``weights`` are the applied weights (ŷ = X·weights); ``theta`` the optimiser's solution and
    ``theta0`` its start; ``fun`` the objective at ``theta``; ``mse_applied`` the validation MSE of
    ``weights`` (differs from ``fun`` only for the ``thesis`` variant).
    """

    method: str
    variant: str
    weights: list[float]
    theta: list[float] = field(default_factory=list)
    theta0: list[float] = field(default_factory=list)
    fun: float | None = None
    mse_applied: float | None = None
    iterations: int = 0
    nfev: int = 0
    success: bool = True
    message: str = ""
    options: dict = field(default_factory=dict)


def _check_matrix(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0 or X.shape[1] == 0:
        raise UserError(f"prediction matrix of shape {X.shape} does not match {y.shape[0]} labels")
    if not np.all(np.isfinite(X)):
        raise UserError("a member's scores contain NaN or inf; re-train or re-evaluate that member")
    return X, y


def fit_nelder_mead(X: np.ndarray, y: np.ndarray, *, variant: str = "thesis", seed: int = 0, name: str = "",
                    tol: float = TOLERANCE, maxiter: int | None = None) -> FitResult:
    """Fit ensemble weights by Nelder–Mead on the MSE (see the module docstring for the variants).

    Parameters
    ----------
    X : (N, M) array
        Member scores on the validation set.
    y : (N,) array
        Validation labels (0/1).
    variant : {"thesis", "simplex"}
    seed, name
        Select the random start ``rng_for(seed, "ensemble", name).random(M)``: the same seed and
        ensemble name always start from the same point.
    tol : float
        ``xatol`` and ``fatol`` of scipy's Nelder–Mead.
    maxiter : int, optional
        Default ``200·M``.
    """
    from scipy.optimize import minimize

    if variant not in VARIANTS:
        raise UserError(f"unknown Nelder–Mead variant {variant!r}; use one of {', '.join(VARIANTS)}")
    X, y = _check_matrix(X, y)
    m = X.shape[1]
    theta0 = rng_for(int(seed), "ensemble", str(name)).random(m)
    transform = softmax if variant == "simplex" else (lambda t: t)
    options = {"xatol": float(tol), "fatol": float(tol), "maxiter": int(maxiter or ITERATIONS_PER_MEMBER * m)}
    res = minimize(lambda t: mse(y, X, transform(t)), theta0, method="Nelder-Mead", options=options)
    weights = softmax(res.x)  # thesis: applied after an unconstrained fit; simplex: the fitted weights
    return FitResult(method="nelder_mead", variant=variant, weights=weights.tolist(), theta=res.x.tolist(),
                     theta0=theta0.tolist(), fun=float(res.fun), mse_applied=mse(y, X, weights),
                     iterations=int(res.nit), nfev=int(res.nfev), success=bool(res.success),
                     message=str(res.message), options=options)


def average_weights(X: np.ndarray, y: np.ndarray | None = None) -> FitResult:
    """The plain average (seed committee): w = 1/M, nothing fitted."""
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[1]
    w = np.full(m, 1.0 / m)
    return FitResult(method="average", variant="", weights=w.tolist(),
                     mse_applied=mse(y, X, w) if y is not None and len(y) else None, message="plain mean")


def apply_weights(X: np.ndarray, weights) -> np.ndarray:
    """Ensemble scores ``X·w`` as float32 (Eq 3.22)."""
    return (np.asarray(X, dtype=np.float64) @ np.asarray(weights, dtype=np.float64)).astype(np.float32)


__all__ = ["FitResult", "ITERATIONS_PER_MEMBER", "TOLERANCE", "VARIANTS", "apply_weights", "average_weights",
           "fit_nelder_mead", "mse", "softmax"]
