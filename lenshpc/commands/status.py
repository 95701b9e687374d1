"""``lenshpc status DIR``: table of a sweep's runs (done / running / pending / failed)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "table of a sweep's runs: done / running / pending / failed (error and log path)"
DESCRIPTION = """\
Show the state of every run under DIR (a `lenshpc sweep` output directory, or any tree of run
directories): done, running, pending, failed (with the error's last line and the log to read)
or not started. States come from sweep.json, the run directories' DONE/FAILED markers and,
when available, the scheduler (squeue/sacct) or the local job processes.

examples:
  lenshpc status runs/thesis_table51
  lenshpc status runs/thesis_table51 --only failed
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="sweep output directory")
    p.add_argument("--only", choices=("done", "running", "pending", "failed", "not started"), default=None,
                   help="list only runs in this state")
    p.add_argument("--width", type=int, default=100, help="cut details to this many characters (default 100)")


def run(args: argparse.Namespace) -> int:
    from lenshpc.hpc.status import collect_status, format_status

    rows = collect_status(args.dir)
    shown = [r for r in rows if args.only is None or r.state == args.only]
    print(format_status(shown, Path(args.dir), width=max(20, args.width)) if shown else f"no runs in state {args.only!r} ({len(rows)} runs)")
    return 0
