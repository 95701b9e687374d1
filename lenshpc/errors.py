"""Exception types that map to the CLI's exit codes (``lenshpc.cli``): anything the user can fix raises a
:class:`UserError` (exit 2, the message without a traceback); any other exception is a bug or an environment
failure (exit 1)."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; the message says what, where and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """Invalid configuration (unknown key, wrong type, out-of-range value)."""


class DataError(UserError):
    """Invalid or unreadable input data (FITS, HDF5, catalogue)."""


class StorageError(UserError):
    """An output could not be written: disk full, quota exceeded, read-only file system, no permission."""


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (``scancel``, a SLURM time-out) outside training.

    A ``BaseException`` like ``KeyboardInterrupt``, so no ``except Exception`` swallows it: every
    ``with`` block and atomic writer on the way up removes its temporary files, then the CLI
    exits with ``128 + SIGTERM`` (143).
    """


class Preempted(Exception):
    """Raised inside a run when SIGTERM/SIGUSR1 asked it to checkpoint and stop.

    The CLI exits with :data:`EXIT_PREEMPTED` so job scripts can requeue the task.
    """


#: Exit code used after a signal-triggered checkpoint (SLURM job scripts requeue on it).
EXIT_PREEMPTED = 3
