"""Checkpoints: everything a run needs to continue exactly where it stopped (layout: ``docs/run-dir.md``).

``RUN_DIR/checkpoint/`` holds the current weights, the optimizer's variables as plain arrays (robust across
Keras 3 optimizer classes, ``LossScaleOptimizer`` included), the selected weights and ``state.json`` (next
chunk, selector, history rows, world size).  The data stream needs no saved state: chunk ``i``, its shuffle
and dropout seeds are pure functions of ``(seed, i, rank, size)``.  The directory is replaced as a whole
(``checkpoint.tmp/`` swapped in by renames; a crash between them leaves ``checkpoint.old/``, which
:func:`find` falls back to).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lenshpc.errors import UserError

STATE = "state.json"
WEIGHTS = "weights.weights.h5"
BEST = "best.weights.h5"
OPTIMIZER = "optimizer.npz"
FORMAT_VERSION = 1


def find(checkpoint_dir: Path) -> Optional[Path]:
    """The usable checkpoint directory (``checkpoint/`` or a left-over ``checkpoint.old/``), or None."""
    checkpoint_dir = Path(checkpoint_dir)
    for candidate in (checkpoint_dir, checkpoint_dir.with_name(checkpoint_dir.name + ".old")):
        if (candidate / STATE).is_file():
            return candidate
    return None


def save(checkpoint_dir: Path, model, optimizer, best_weights: Optional[Sequence[np.ndarray]], state: dict) -> None:
    """Write a complete checkpoint atomically.

    Parameters
    ----------
    checkpoint_dir : Path
        ``RUN_DIR/checkpoint``.
    model : keras.Model
        Its current weights are saved.
    optimizer : keras.optimizers.Optimizer
        Built; its ``variables`` are saved.
    best_weights : list of ndarray or None
        ``model.get_weights()`` of the selected chunk (None before any selection).
    state : dict
        JSON-serialisable loop state (written as ``state.json``, last).
    """
    checkpoint_dir = Path(checkpoint_dir)
    tmp = checkpoint_dir.with_name(checkpoint_dir.name + ".tmp")
    old = checkpoint_dir.with_name(checkpoint_dir.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    model.save_weights(tmp / WEIGHTS)
    values = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    names = np.array([v.path for v in optimizer.variables], dtype=str)
    np.savez(tmp / OPTIMIZER, __names__=names, **values)
    if best_weights is not None:
        current = model.get_weights()
        try:
            model.set_weights(best_weights)
            model.save_weights(tmp / BEST)
        finally:
            model.set_weights(current)
    with open(tmp / STATE, "w", encoding="utf-8") as fh:
        json.dump({"format_version": FORMAT_VERSION, **state}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())

    # Swap: checkpoint -> checkpoint.old, checkpoint.tmp -> checkpoint, drop old.  At every instant one complete
    # checkpoint exists under one of the two names (find() looks at both).
    shutil.rmtree(old, ignore_errors=True)
    if checkpoint_dir.exists():
        os.replace(checkpoint_dir, old)
    os.replace(tmp, checkpoint_dir)
    shutil.rmtree(old, ignore_errors=True)


def load(checkpoint_dir: Path, model, optimizer) -> tuple[dict, Optional[list[np.ndarray]]]:
    """Restore model and optimizer from a checkpoint; return ``(state, best_weights)``.

    The optimizer must already be built (``optimizer.build(model.trainable_variables)``) so
    its variables exist to be assigned.

    Raises
    ------
    UserError
        No checkpoint, or one written by an incompatible model/optimizer (different
        architecture or optimizer in the config).
    """
    found = find(checkpoint_dir)
    if found is None:
        raise UserError(f"{checkpoint_dir}: no checkpoint to resume from (state.json missing)")
    try:
        with open(found / STATE, encoding="utf-8") as fh:
            state = json.load(fh)
        if not isinstance(state, dict) or not isinstance(state.get("next_chunk", 0), int):
            raise ValueError("not a checkpoint state object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{found / STATE}: unreadable checkpoint state ({type(exc).__name__}: {exc}); it was "
                        "truncated or edited (lenshpc writes it atomically), so the run cannot resume from it: "
                        f"re-run with --force to start over, or delete {found} by hand") from None
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{found}: checkpoint format {state['format_version']} is newer than this lenshpc supports")
    try:
        model.load_weights(found / WEIGHTS)
    except Exception as exc:  # noqa: BLE001 - Keras raises ValueError/KeyError variants for mismatches
        raise UserError(f"{found / WEIGHTS}: does not fit this model ({exc}); the run dir was written by a "
                        "different model config: use another --run-dir or --force to start over") from None
    with np.load(found / OPTIMIZER, allow_pickle=False) as npz:
        keys = sorted(k for k in npz.files if k != "__names__")
        if len(keys) != len(optimizer.variables):
            raise UserError(f"{found / OPTIMIZER}: {len(keys)} optimizer variables saved, this optimizer has "
                            f"{len(optimizer.variables)}; the optimizer config changed: use --force to start over")
        for key, var in zip(keys, optimizer.variables):
            value = npz[key]
            if tuple(value.shape) != tuple(var.shape):
                raise UserError(f"{found / OPTIMIZER}: variable {var.path} has shape {tuple(var.shape)}, "
                                f"checkpoint holds {value.shape}; use --force to start over")
            var.assign(value)
    best = None
    if (found / BEST).is_file():
        current = model.get_weights()
        model.load_weights(found / BEST)
        best = model.get_weights()
        model.set_weights(current)
    return state, best


def remove(checkpoint_dir: Path) -> None:
    """Delete a checkpoint and any half-swapped leftovers (``--force``)."""
    checkpoint_dir = Path(checkpoint_dir)
    for suffix in ("", ".tmp", ".old"):
        shutil.rmtree(checkpoint_dir.with_name(checkpoint_dir.name + suffix), ignore_errors=True)


__all__ = ["find", "load", "remove", "save"]
