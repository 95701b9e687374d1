"""One writer per output directory: an OS lock plus an ownership record with a heartbeat.

``DIR/.lock``
    An empty file that the writer holds ``fcntl.flock(LOCK_EX)`` on for its whole life.  The
    kernel drops the lock when the process ends in any way (exit, exception, SIGKILL, out of
    memory), so a dead writer never blocks the next one.  The file itself is never removed or
    replaced (that would let two processes lock two different files).
``DIR/.owner.json``
    Who holds it: ``host``, ``pid``, ``since`` (UTC), ``heartbeat`` (Unix time, refreshed
    every :data:`HEARTBEAT_SECONDS` by a daemon thread), ``command`` and the SLURM job.  Removed
    on release.  ``lenshpc status`` reads it to show a live run as *running* even where
    ``flock`` is not coherent across nodes (some parallel file systems): there a record whose
    heartbeat is younger than :data:`STALE_AFTER` heartbeats counts as alive.

Used by ``lenshpc train`` for run directories (``docs/reliability.md`` lists what is locked).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import threading
import time
from pathlib import Path

from lenshpc.errors import UserError
from lenshpc.provenance import now
from lenshpc.utils import atomic_write_json, read_json_object

LOCK_FILE = ".lock"
OWNER_FILE = ".owner.json"
#: Seconds between heartbeats of the ownership record (``LENSHPC_HEARTBEAT_SECONDS`` overrides it).
HEARTBEAT_SECONDS = 60.0
#: A record not refreshed for this many heartbeats belongs to a dead writer (used only across hosts).
STALE_AFTER = 3
#: How long a writer retries a lock that is briefly held by a reader (``lenshpc status`` probing it).
_RETRY_SECONDS = 1.0


def _heartbeat_seconds() -> float:
    try:
        return max(0.05, float(os.environ.get("LENSHPC_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)))
    except ValueError:
        return HEARTBEAT_SECONDS


def _slurm_job() -> str | None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task and os.environ.get("SLURM_ARRAY_JOB_ID") else job


def read_owner(directory: str | os.PathLike) -> dict | None:
    """The ownership record of ``directory`` (None when absent or unreadable)."""
    return read_json_object(Path(directory) / OWNER_FILE) or None


def describe_owner(record: dict | None) -> str:
    """``host H, pid P, since T, heartbeat N s ago, SLURM job J`` (what is known)."""
    if not record:
        return "owner unknown"
    parts = [f"host {record.get('host', '?')}", f"pid {record.get('pid', '?')}", f"since {record.get('since', '?')}"]
    if isinstance(record.get("heartbeat"), (int, float)):
        parts.append(f"heartbeat {max(0, time.time() - record['heartbeat']):.0f} s ago")
    if record.get("slurm_job"):
        parts.append(f"SLURM job {record['slurm_job']}")
    return ", ".join(parts)


def _flock_held(directory: Path) -> bool | None:
    """True when another process holds ``.lock`` (None: no lock file)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases the probe's shared lock
    return False


def live_owner(directory: str | os.PathLike) -> dict | None:
    """The record of a writer that is alive now, else None (also when the directory was never locked).

    Alive: the ``flock`` is held, or — the lock free as seen from here but the record written on another host (a
    file system whose ``flock`` is not coherent across nodes) — the record's heartbeat is fresh.  On this host
    the ``flock`` alone decides.
    """
    directory = Path(directory)
    held = _flock_held(directory)
    record = read_owner(directory)
    if held:
        return record or {"host": "?", "pid": "?"}
    if held is None or record is None:
        return None
    if record.get("host") == socket.gethostname():
        return None  # same host: flock is authoritative, and it is free
    beat = record.get("heartbeat")
    fresh = isinstance(beat, (int, float)) and time.time() - beat < STALE_AFTER * _heartbeat_seconds()
    return record if fresh else None


class DirLock:
    """Exclusive ownership of ``directory`` for one process; a context manager.

    Raises
    ------
    UserError
        When another live process holds it; the message says who (host, pid, since, SLURM job).
    """

    def __init__(self, directory: str | os.PathLike, what: str = "lenshpc train"):
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._record: dict = {}

    def acquire(self) -> "DirLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + _RETRY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                os.close(fd)
                owner = read_owner(self.directory)
                stop = (f"scancel {owner['slurm_job']}" if owner and owner.get("slurm_job")
                        else f"kill {owner.get('pid')}" if owner else "stop it")
                raise UserError(f"{self.directory} is in use by another {self.what} ({describe_owner(owner)}); "
                                "two writers would mix their checkpoints and logs. Wait for it to finish "
                                f"(`lenshpc status {self.directory.parent}`), {stop} first, or choose another "
                                "--run-dir") from None
        self._fd = fd
        self._record = {"host": socket.gethostname(), "pid": os.getpid(), "since": now(), "heartbeat": time.time(),
                        "command": " ".join(sys.argv), "slurm_job": _slurm_job()}
        self._beat()
        self._thread = threading.Thread(target=self._heartbeat, name="lenshpc-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        self._record["heartbeat"] = time.time()
        with contextlib.suppress(OSError, UserError):  # a full disk must not kill the run over its heartbeat
            atomic_write_json(self.directory / OWNER_FILE, self._record)

    def _heartbeat(self) -> None:
        while not self._stop.wait(_heartbeat_seconds()):
            self._beat()

    def release(self) -> None:
        if self._fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / OWNER_FILE).unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["DirLock", "HEARTBEAT_SECONDS", "LOCK_FILE", "OWNER_FILE", "describe_owner", "live_owner", "read_owner"]
