"""Small shared helpers: atomic writes, deterministic random streams, progress bars."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


# ---------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Readers never see a half-written file and a killed writer leaves the old file (or no
    file) in place.  The temporary file is removed when the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; results on a shared cluster file system must be readable by the group.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (numpy scalars/arrays converted)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json_object(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; ``{}`` when the file is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------- random streams
def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """A ``numpy`` generator determined only by ``seed`` and the ``keys``.

    Streams for different keys are statistically independent (``SeedSequence`` spawning
    keyed by the integers), so e.g. ``rng_for(seed, "chunk", 17, rank)`` gives the same
    numbers whether chunk 17 is drawn in a fresh or in a resumed run.
    """
    words: list[int] = []
    for key in keys:
        if isinstance(key, str):
            # Stable across processes (unlike hash()): fold the UTF-8 bytes into 32-bit words.
            data = key.encode()
            words.extend(int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data), 4))
            words.append(len(data))
        else:
            words.append(int(key) & 0xFFFFFFFF)
            words.append((int(key) >> 32) & 0xFFFFFFFF)
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


# ---------------------------------------------------------------- progress
def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", disable: bool | None = None):
    """A ``tqdm`` progress bar on stderr; quiet when ``LENSHPC_NO_PROGRESS`` is set.

    In batch jobs (no TTY) tqdm still prints, but updates at most every 10 s so SLURM log
    files stay readable.
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = bool(os.environ.get("LENSHPC_NO_PROGRESS"))
    mininterval = 0.1 if sys.stderr.isatty() else 10.0
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, mininterval=mininterval, file=sys.stderr, dynamic_ncols=True)
