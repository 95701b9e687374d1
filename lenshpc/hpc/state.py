"""What a run directory says about its run (docs/run-dir.md): done, failed, started or absent.

Only marker files are read (``DONE``, ``FAILED``, ``config.yaml``, ``checkpoint/state.json``) and the
run-dir lock probed (``.lock``/``.owner.json``, :mod:`lenshpc.locking`), so checking thousands of runs
costs a few ``stat`` calls each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lenshpc.locking import LOCK_FILE, describe_owner, live_owner

#: Run-directory states, from the markers and the run-dir lock (job states are added by lenshpc.hpc.status).
DONE, FAILED, STARTED, ABSENT, RUNNING = "done", "failed", "started", "absent", "running"

#: Files whose presence makes a directory a run directory.
RUN_MARKERS = ("metrics.json", "config.yaml", "DONE", "FAILED", "train.log")


@dataclass(frozen=True)
class RunDirState:
    """The state of one run directory.

    Attributes
    ----------
    state : str
        ``done`` (``DONE`` exists), ``running`` (a live process holds the run-dir lock:
        :func:`lenshpc.locking.live_owner`), ``failed`` (``FAILED`` exists), ``started`` (the run
        wrote files but neither marker and nobody holds it: pending a requeue, or killed) or ``absent``.
    error : str
        The error's last line from ``FAILED`` (empty otherwise).
    log : Path or None
        ``train.log`` when it exists.
    checkpoint_chunk : int or None
        The chunk a resumed run continues from (``next_chunk`` of ``checkpoint/state.json``).
    """

    state: str
    error: str = ""
    log: Path | None = None
    checkpoint_chunk: int | None = None
    owner: dict | None = None

    def running_detail(self) -> str:
        """``running on host H, pid P, …; at chunk N`` for a live run."""
        detail = f"running: {describe_owner(self.owner)}"
        return detail + (f"; checkpoint at chunk {self.checkpoint_chunk}" if self.checkpoint_chunk is not None else "")


def read_run_dir(run_dir: str | Path) -> RunDirState:
    """Classify ``run_dir`` from its marker files (never raises on odd contents)."""
    run_dir = Path(run_dir)
    log = run_dir / "train.log"
    log_path = log if log.is_file() else None
    if (run_dir / "DONE").exists():
        return RunDirState(DONE, log=log_path)
    owner = live_owner(run_dir) if (run_dir / LOCK_FILE).exists() else None
    if owner is not None:
        return RunDirState(RUNNING, log=log_path, checkpoint_chunk=_checkpoint_chunk(run_dir), owner=owner)
    if (run_dir / "FAILED").exists():
        try:
            text = (run_dir / "FAILED").read_text(errors="replace").strip()
        except OSError as exc:
            text = f"(FAILED marker unreadable: {exc})"
        last = text.splitlines()[-1] if text else "(no message)"
        return RunDirState(FAILED, error=last, log=log_path, checkpoint_chunk=_checkpoint_chunk(run_dir))
    if run_dir.is_dir() and any((run_dir / m).exists() for m in RUN_MARKERS):
        return RunDirState(STARTED, log=log_path, checkpoint_chunk=_checkpoint_chunk(run_dir))
    return RunDirState(ABSENT)


def _checkpoint_chunk(run_dir: Path) -> int | None:
    path = run_dir / "checkpoint" / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for key in ("next_chunk", "chunk"):  # next_chunk: lenshpc.train's checkpoint format
        if isinstance(state.get(key), int):
            return int(state[key])
    return None


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds any of the run-directory marker files."""
    path = Path(path)
    return any((path / m).exists() for m in RUN_MARKERS)
