"""Tools of the fault-injection tests: run lenshpc as a user does, inject a fault, check what is left.

Imported by the ``tests/reliability/test_*.py`` modules (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

#: What must never reach a user's terminal.
NOT_FOR_USERS = ("Traceback", "__dealloc__", "Segmentation fault", "Fatal Python error")


def env(**extra: str) -> dict:
    """The environment of a lenshpc subprocess: this checkout first on the path, no progress bars."""
    out = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[2])
    out["PYTHONPATH"] = os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])
    out.setdefault("LENSHPC_NO_PROGRESS", "1")
    out.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out.update(extra)
    return out


def lenshpc(*args: str, cwd: Path | None = None, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """``python -m lenshpc ARGS`` in a subprocess; returns the finished process (text stdout/stderr)."""
    return subprocess.run([sys.executable, "-m", "lenshpc", *args], cwd=cwd, env=env(**extra_env), text=True,
                          capture_output=True, timeout=timeout)


def start(*args: str, cwd: Path | None = None, log: Path, **extra_env: str) -> subprocess.Popen:
    """Start ``python -m lenshpc ARGS`` in the background, stdout+stderr to ``log``."""
    fh = open(log, "w")  # noqa: SIM115 - the child owns it; closed when the test's tmp dir goes
    return subprocess.Popen([sys.executable, "-m", "lenshpc", *args], cwd=cwd, env=env(**extra_env), stdout=fh,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float = 120, what: str = "condition", proc: subprocess.Popen | None = None) -> None:
    """Poll ``predicate`` every 20 ms until true (fails the test after ``timeout`` s or when ``proc`` ends first)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_clean_failure(proc: subprocess.CompletedProcess | tuple[int, str], code: int, *words: str) -> str:
    """Exit ``code``, each of ``words`` in stderr, nothing for developers only; returns stderr."""
    rc, err = (proc.returncode, proc.stderr) if isinstance(proc, subprocess.CompletedProcess) else proc
    assert rc == code, f"exit {rc}, expected {code}; stderr:\n{err[-3000:]}"
    for bad in NOT_FOR_USERS:
        assert bad not in err, f"{bad!r} in stderr:\n{err[-3000:]}"
    for word in words:
        assert word in err, f"{word!r} missing from stderr:\n{err[-3000:]}"
    return err


def debris(root: Path) -> list[Path]:
    """Temporary files a writer left under ``root`` (``.X.*.tmp`` files, ``*.tmp`` dirs, Keras temp models)."""
    return sorted(p for p in Path(root).rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name and p.name.startswith("."))


@contextlib.contextmanager
def small_fs(path: Path, size: str = "2m", readonly: bool = False) -> Iterator[Path]:
    """A real, small tmpfs at ``path`` (needs root: the tests run as root in CI; skipped elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs the suite as root: mounting a tmpfs must work there")
        pytest.skip("needs root to mount a small tmpfs (CI runs the suite as root)")
    opts = f"size={size}" + (",ro" if readonly else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"mount tmpfs failed: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path, leave: int) -> Path:
    """Fill the file system ``fs`` with a ballast file, leaving about ``leave`` bytes free."""
    import shutil

    ballast = fs / "ballast.bin"
    free = shutil.disk_usage(fs).free
    with open(ballast, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return ballast


def h5_content(path: Path) -> dict:
    """Every dataset's bytes and every attribute (``created`` excepted) of an HDF5 file, for equality checks."""
    import h5py
    import numpy as np

    out: dict = {}
    with h5py.File(path, "r") as fh:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = np.asarray(obj[()]).tobytes() if obj.dtype.kind != "O" else list(obj.asstr()[()])
        fh.visititems(visit)
        out["attrs"] = {k: (v.tobytes() if hasattr(v, "tobytes") else v) for k, v in fh.attrs.items() if k != "created"}
    return out


def send(proc: subprocess.Popen, sig: signal.Signals, timeout: float = 60) -> int:
    """Send ``sig`` and wait for the process; returns its exit code."""
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)
