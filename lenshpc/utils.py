"""Small shared helpers: atomic writes, deterministic random streams, progress bars."""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from lenshpc.errors import StorageError


# ---------------------------------------------------------------- atomic writes
#: A temp file of another host (whose writer this host cannot ask) counts as debris once untouched this long.
STALE_TEMP_SECONDS = 3600.0

#: ``errno`` values that mean "the file system cannot take this output" (not a bug): a clear message, exit 2.
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "operation not permitted"}


def _host() -> str:
    return socket.gethostname().split(".")[0] or "host"


def _temp_prefix(path: Path) -> str:
    # .NAME.PID@HOST.: the writer's pid and host let the next run tell a killed writer's debris from a live one.
    return f".{path.name}.{os.getpid()}@{_host()}."


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this host (also one of another user: PermissionError)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _stale_temp(path: Path, candidate: Path, now: float) -> bool:
    """True when ``candidate`` (a ``.NAME.*.tmp`` sibling of ``path``) was left by a writer that is gone."""
    rest = candidate.name[len(path.name) + 2 :]
    match = re.fullmatch(r"(\d+)@([^.]+)\.\w+\.tmp", rest)
    if match is None and not re.fullmatch(r"\w{8}\.tmp", rest):
        return False  # not a temp name of this target (e.g. one of a target named NAME.bak)
    if match and match.group(2) == _host():
        pid = int(match.group(1))
        return pid != os.getpid() and not pid_alive(pid)
    try:  # another host's writer (or a temp name of an older lenshpc): untouched for an hour = dead
        return now - candidate.stat().st_mtime > STALE_TEMP_SECONDS
    except FileNotFoundError:
        return False


#: (pid, folder) → the temp-file names (``.*.tmp``) one listing of the folder found that are not judged debris yet.
_TEMP_NAMES: dict[tuple[int, str], list[str]] = {}


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files of ``path`` that a killed writer left (SIGKILL, node crash, out of memory).

    A temp file ``.NAME.PID@HOST.XXXX.tmp`` is debris when its writer's process is gone (same host) or, written on
    another host, when it was not modified for :data:`STALE_TEMP_SECONDS`.  Called by :func:`atomic_path` before
    every write, so a re-run cleans what a killed run left.  Returns the removed paths.

    A process lists each folder once (listing a Lustre folder of thousands of shards for every shard written is
    what this avoids) and checks the temp names found then at each write of their target; a temp file made
    after that listing belongs to a writer that was alive while this process ran: the next run cleans it.
    """
    path = Path(path)
    key = (os.getpid(), os.path.abspath(path.parent))
    names = _TEMP_NAMES.get(key)
    if names is None:
        try:
            with os.scandir(path.parent) as entries:
                names = [e.name for e in entries if e.name.startswith(".") and e.name.endswith(".tmp")]
        except OSError:
            return []
        _TEMP_NAMES[key] = names
    removed: list[Path] = []
    now = time.time()
    for name in [n for n in names if n.startswith(f".{path.name}.")]:
        candidate = path.parent / name
        if _stale_temp(path, candidate, now):
            names.remove(name)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                size = candidate.stat().st_size
                candidate.unlink()
                removed.append(candidate)
                logging.getLogger("lenshpc").info("removed %s (%.1f MB) left by a killed writer", candidate, size / 1e6)
    return removed


def error_path(exc: BaseException) -> str | None:
    """The file ``exc`` names: its ``filename``, or the ``name = '…'`` in the text h5py gives HDF5's errors."""
    found = re.search(r"name = '([^']+)'", str(exc))
    return getattr(exc, "filename", None) or (found.group(1) if found else None)


def os_error_code(exc: BaseException) -> int | None:
    """The errno of ``exc``: its own, or the ``errno = N`` in the text h5py gives HDF5's failed writes."""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None and isinstance(exc, (OSError, RuntimeError)):
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    return code


def storage_error(path: str | os.PathLike, exc: BaseException) -> StorageError | None:
    """A clear :class:`~lenshpc.errors.StorageError` for an ``OSError`` that means the file system refused the
    output (full, quota, read-only, no permission); None for any other exception."""
    code = os_error_code(exc)
    if code not in _STORAGE_ERRNOS:
        return None
    path = Path(path)
    where = path.parent if path.parent != Path("") else Path(".")
    try:
        usage = shutil.disk_usage(where)
        free = f" ({where}: {usage.total / 1e6:.1f} MB file system, {usage.free / 1e6:.1f} MB free after cleaning up)"
    except OSError:
        free = ""
    fix = ("free some space (or raise the quota) or write it elsewhere" if code in (errno.ENOSPC, errno.EDQUOT)
           else "make the directory writable or write it elsewhere")
    return StorageError(f"cannot write {path}: {_STORAGE_ERRNOS[code]}{free}. Nothing was written (temporary files "
                        f"removed); {fix}, e.g. another --out/--run-dir, then re-run")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Readers never see a half-written file and a killed writer leaves the old file (or no
    file) in place.  The temporary file is removed when the block raises (any exception,
    also :class:`~lenshpc.errors.Terminated` from SIGTERM); one left by SIGKILL is removed by
    the next write of ``path`` (:func:`remove_stale_temps`).  A full, read-only or
    over-quota file system raises :class:`~lenshpc.errors.StorageError` naming ``path``; an error inside the
    block that names another file (e.g. an unreadable input) is raised as it is.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (storage_error(path, exc) or exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; results on a shared cluster file system must be readable by the group.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        named = error_path(exc)
        if named is None or os.path.abspath(named) in (os.path.abspath(tmp_path), os.path.abspath(path)):
            clear = storage_error(path, exc)
            if clear is not None:
                raise clear from None
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


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON values: NaN/Inf → None, numpy → Python, tuples → lists (``metrics.json``)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def did_you_mean(word: object, choices: Iterable[str], *, cutoff: float = 0.6,
                 template: str = " Did you mean '{}'?", otherwise: str = "") -> str:
    """The hint of an "unknown name" message: ``template`` filled with the choice closest to ``word``
    (:func:`difflib.get_close_matches` at ``cutoff``), or ``otherwise`` when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=cutoff)
    return template.format(close[0]) if close else otherwise


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
