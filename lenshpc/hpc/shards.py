"""The skeleton the sharded batch commands share (``lenshpc rank``, ``maxtree``, ``simulate21cm``).

Each plans K shards over N items, writes one part file per shard atomically into a folder next to its
output, skips finished parts on a re-run (a part is finished when its HDF5 attributes match the plan),
runs the pending shards inline or as a submitit array (:func:`lenshpc.hpc.jobs.run_array_and_wait`)
and merges the parts in a fixed order.  What a shard computes and how parts merge stays with each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

from lenshpc.errors import UserError


def check_request(executor: str | None, executors: Iterable[str], shards: int | None = None,
                  shard_index: int | None = None, error: type[UserError] = UserError) -> None:
    """Refuse an unknown executor, ``shards < 1`` (raised as ``error``) and a ``shard_index`` outside the shards."""
    if executor is not None and executor not in executors:
        raise UserError(f"unknown executor {executor!r}; use one of {', '.join(executors)}")
    if shards is not None and (isinstance(shards, bool) or shards < 1):
        raise error(f"--shards must be at least 1, got {shards}")
    if shard_index is not None and not 0 <= shard_index < shards:
        raise UserError(f"--shard-index {shard_index} is outside 0..{shards - 1} (--shards {shards})")


def sibling_dir(out: str | Path, suffix: str) -> Path:
    """The parts folder next to ``out``: ``OUT`` + ``suffix`` (``SEG.h5`` → ``SEG.h5.shards``)."""
    return Path(out).with_name(Path(out).name + suffix)


def part_name(prefix: str, k: int, shards: int) -> str:
    """``PREFIX-KKKK-of-NNNN.h5``: the part file of shard ``k`` of ``shards``."""
    return f"{prefix}-{k:04d}-of-{shards:04d}.h5"


def contiguous(n: int, k: int, shards: int) -> tuple[int, int]:
    """``[⌊n·k/K⌋, ⌊n·(k+1)/K⌋)``: shard ``k``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    return n * k // shards, n * (k + 1) // shards


def part_is_complete(path: str | Path, expected: Mapping, check: Callable | None = None, log=None) -> bool:
    """True when ``path`` is an HDF5 part file whose attributes equal ``expected`` (and ``check(fh)`` holds).

    A dict or list value is compared as its JSON text.  An unreadable file is not finished (it is
    recomputed; with ``log``, a warning says so).
    """
    import json

    import h5py

    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as fh:
            for key, value in expected.items():
                have = fh.attrs.get(key)
                have = have.decode() if isinstance(have, bytes) else have
                if have != (json.dumps(value, default=str) if isinstance(value, (dict, list)) else value):
                    return False
            return check is None or bool(check(fh))
    except (OSError, KeyError) as exc:
        if log is not None:
            log.warning("ignoring unreadable shard file %s (%s); it will be recomputed", path, exc)
        return False


def run_pending(todo: list, executor: str, run_inline: Callable, *, parts: str | Path, hpc: Callable,
                job_name: str, fn: Callable, args: Callable, what: str, log=None) -> None:
    """Run the pending shards ``todo``: ``run_inline(k)`` one after another for ``inline``, else one submitit
    array of ``fn(*args(k))`` (resources ``hpc()``, logs in ``parts/submitit``) waited for and failures reported
    together (:func:`lenshpc.hpc.jobs.run_array_and_wait`)."""
    from lenshpc.hpc.jobs import run_array_and_wait

    if executor == "inline":
        for k in todo:
            run_inline(k)
    elif todo:
        run_array_and_wait(executor, Path(parts) / "submitit" / "%j", hpc(), job_name, fn, [args(k) for k in todo],
                           todo, what, log=log)


def require_finished(missing: list, message: str, error: type[UserError] = UserError) -> None:
    """Raise ``error(message)`` (formatted with ``missing``) when parts are missing before a merge."""
    if missing:
        raise error(message.format(missing=missing))

