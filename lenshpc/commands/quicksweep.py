"""Pieces the quickstarts share (``lenshpc quickstart`` and its ``--task cosmo21cm`` study): the embedded
recipes and the local sweep that runs them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lenshpc.errors import UserError


def resource(name: str) -> Path:
    """Path of a file shipped in ``lenshpc/resources`` (package data)."""
    import lenshpc

    path = Path(lenshpc.__file__).parent / "resources" / name
    if not path.is_file():  # pragma: no cover - a broken installation
        raise UserError(f"{path} is missing from the installation; reinstall lenshpc (pip install -e .)")
    return path


def run_quick_sweep(spec, args: argparse.Namespace):
    """Run a quickstart sweep with the local executor, one run per core, and say what was skipped or failed."""
    from lenshpc.hpc.sweep import run_sweep

    # One run per core: a tiny network's small steps use a second thread poorly (docs/science.md).
    parallel = args.parallel or min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                    else (os.cpu_count() or 1), len(spec.points))
    # retry_failed: a re-run after fixing the cause retries failed runs (finished ones stay skipped)
    outcome = run_sweep(spec, executor=args.executor, parallel=parallel, retry_failed=True)
    done = outcome.count("done")
    if done:
        print(f"      {done} run(s) already finished, skipped", flush=True)
    for point, error in outcome.failed_after:
        print(f"      failed: {point.id}: {error}", flush=True)
    return outcome


def report(spec, out: Path, step: str, note: str):
    """A quickstart's report step: reduce the sweep into OUT/report.md, print its table and how it reads."""
    from lenshpc.report import reduce_runs

    print(f"[{step}] report → {out}", flush=True)
    result = reduce_runs(spec.out, out=out)
    print(f"\n{result.table}\n")
    print(f"mean ± std over seeds (sample std, ddof = 1) {note}; {result.count('ok')} of {len(spec.points)} runs "
          "finished")
    return result
