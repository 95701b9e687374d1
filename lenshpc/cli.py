"""The ``lenshpc`` command line: one entry point, thin subcommands.

Each verb lives in ``lenshpc/commands/<verb>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``.  Command modules import heavy
libraries (TensorFlow, lenstronomy) inside ``run`` so ``lenshpc --help`` stays fast.

Exit codes: 0 ok, 1 failure (a bug or the environment), 2 user error (message on stderr,
no traceback unless ``--debug``), 3 preempted after a checkpoint (job scripts requeue).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import contextlib
import os
import signal
import sys
import threading
import traceback

from lenshpc import __version__
from lenshpc.errors import EXIT_PREEMPTED, Preempted, Terminated, UserError
from lenshpc.utils import error_path, os_error_code, storage_error

#: Verbs in the order ``--help`` lists them (pipeline order).
COMMANDS = (
    "quickstart",
    "simulate",
    "simulate21cm",
    "survey",
    "stack",
    "stack21cm",
    "info",
    "train",
    "evaluate",
    "sweep",
    "status",
    "reduce",
    "maxtree",
    "ensemble",
    "gradcam",
    "infocontent",
    "rank",
    "inspect",
    "mine",
    "rounds",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lenshpc",
        description="Train and evaluate CNN strong-gravitational-lens finders on a laptop or a SLURM cluster.",
        epilog="Run 'lenshpc VERB --help' for the options of one command. Docs: README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"lenshpc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="VERB")
    for verb in COMMANDS:
        module = importlib.import_module(f"lenshpc.commands.{verb}")
        p = sub.add_parser(verb, help=module.HELP, description=module.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _raise_terminated(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises :class:`Terminated` while a command runs, so atomic writers remove their temp files.

    Python's default for SIGTERM is to die at once, leaving every ``.X.tmp`` behind.  ``lenshpc train`` installs
    its own handler (checkpoint, exit 3) for the training loop; it restores this one afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    try:
        with _sigterm_raises():
            return int(args._module.run(args) or 0)
    except Terminated as exc:
        print(f"lenshpc {args.command}: stopped by {exc}; unfinished outputs were removed (finished ones are kept); "
              "re-run the same command to continue", file=sys.stderr)
        return 128 + signal.SIGTERM
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"lenshpc {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Preempted as exc:
        print(f"lenshpc {args.command}: {exc or 'preempted'}; checkpoint written, exit {EXIT_PREEMPTED} (requeue me)", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print(f"lenshpc {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last-resort reporting for the CLI
        # A full/read-only disk hit outside an atomic writer (e.g. train.log; HDF5's own ENOSPC error is not even
        # an OSError): the storage wording (size, free space) first, then the other path conditions a user can fix.
        clear = storage_error(error_path(exc) or "the output", exc)
        message = str(clear) if clear is not None else filesystem_error(exc)
        if message is None:
            return _report_failure(args.command, exc, debug)
        if debug:
            traceback.print_exc()
        print(f"lenshpc {args.command}: error: {message}", file=sys.stderr)
        return 2


def _report_failure(command: str, exc: BaseException, debug: bool) -> int:
    """A bug or an environment failure: exit 1, the traceback only with --debug."""
    if debug:
        traceback.print_exc()
    else:
        print(f"lenshpc {command}: failed: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)",
              file=sys.stderr)
    return 1


#: errno → how the user fixes it: the path conditions a user causes and can change, beyond the storage ones
#: (full, quota, read-only, permission) that :func:`lenshpc.utils.storage_error` words.
_FS_FIXES = {
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another output path",
    errno.EISDIR: "this is a folder where a file was expected; pass a file path",
}


def filesystem_error(exc: BaseException) -> str | None:
    """A user-facing message (path, cause, fix) for a wrong kind of path, else None."""
    code = os_error_code(exc)
    if code not in _FS_FIXES:
        return None
    path = str(error_path(exc) or "?")
    name = os.path.basename(path)
    if name.startswith(".") and name.endswith(".tmp"):  # an atomic write's temporary file: name its folder
        path = f"{os.path.dirname(path) or '.'} (writing {name[1:].rsplit('.', 2)[0]})"
    return f"{path}: {os.strerror(code)}; {_FS_FIXES[code]}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
