"""Gather run directories under a root: metrics, flattened configs, states, problems.

The walk stops at a run directory (it never descends into ``checkpoint/`` or similar) and
skips hidden directories (``.submitit`` logs).  A run's config is taken from the flattened
``config`` block of ``metrics.json`` (JSON: fast); ``config.yaml`` is parsed only for runs
without a usable ``metrics.json`` (failed, running), so reducing 1,000 finished runs never
touches YAML.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenshpc.metrics import TUNED_METRICS, TUNED_SUFFIX
from lenshpc.train.rundir import RUN_MARKERS, RunDir, failure_reason

#: Columns of the validation-tuned-threshold table (metrics.json keys, :func:`lenshpc.metrics.tuned_summary`);
#: runs written before they existed (and tasks without a threshold) lack them: the table is left out.
TUNED_COLUMNS = (*(f"{m}{TUNED_SUFFIX}" for m in TUNED_METRICS), f"threshold{TUNED_SUFFIX}")

OK, FAILED, CORRUPT, INCOMPLETE = "ok", "failed", "corrupt", "incomplete"


@dataclass
class RunRecord:
    """One run directory as the reducer sees it.

    ``status`` is ``ok`` (DONE + readable metrics), ``failed`` (FAILED marker), ``corrupt``
    (metrics.json unreadable or lacking metrics; ``problem`` says why) or ``incomplete``
    (no DONE yet: running, pending or killed).
    """

    path: Path
    status: str
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    problem: str = ""
    group: str | None = None  # the sweep's row name (sweep.json), when the run belongs to one
    log: Path | None = None  # failed/unfinished runs: the log to read (None: none was written)


@dataclass(frozen=True)
class Vocabulary:
    """The metric names, titles and directions of the reduced runs, read from their ``metrics.json["task"]``
    (:meth:`lenshpc.tasks.base.Task.vocabulary`; runs before the key are lens runs)."""

    table: tuple[str, ...]
    titles: dict[str, str]
    titles_tex: dict[str, str]
    higher: dict[str, bool]

    @classmethod
    def of(cls, records: list["RunRecord"]) -> "Vocabulary":
        """The union of the finished runs' vocabularies, in first-seen order (the lens one when none finished)."""
        from lenshpc import tasks

        vocabs = [tasks.recorded_vocabulary(r.metrics) for r in records if r.status == OK] or \
            [tasks.recorded_vocabulary({})]
        table: dict[str, None] = {}
        titles, tex, higher = {}, {}, {}
        for v in vocabs:
            table.update(dict.fromkeys(v.get("table", v["metrics"])))
            for src, dst in ((v.get("titles", {}), titles), (v.get("titles_tex", {}), tex),
                             (v.get("higher_is_better", {}), higher)):
                for k, val in src.items():
                    dst.setdefault(k, val)
        return cls(tuple(table), titles, tex, higher)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every summarised column: the table metrics, then the tuned-threshold ones."""
        return (*self.table, *TUNED_COLUMNS)

    @property
    def tested(self) -> tuple[str, ...]:
        """Columns tested for significance (the tuned threshold t* itself is a setting, not a score)."""
        return tuple(c for c in self.columns if c != f"threshold{TUNED_SUFFIX}")

    def higher_is_better(self, column: str) -> bool:
        return bool(self.higher.get(base_name(column), True))


def base_name(column: str) -> str:
    """``accuracy_tuned`` → ``accuracy`` (the metric a tuned column belongs to)."""
    return column[:-len(TUNED_SUFFIX)] if column.endswith(TUNED_SUFFIX) else column


def find_run_dirs(root: str | Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """All run directories under ``root`` (``root`` itself included), sorted by path."""
    excluded = {p.resolve() for p in exclude}
    found: list[Path] = []
    for d, dirs, files in os.walk(root):  # unreadable folders are skipped, links to folders not followed
        if any(m in files or m in dirs for m in RUN_MARKERS):
            found.append(Path(d))
            dirs.clear()  # a run directory's children (checkpoint/, plots) are not runs
        else:  # hidden folders (.submitit logs) and the excluded ones are not searched
            dirs[:] = [n for n in dirs if not n.startswith(".") and Path(d, n).resolve() not in excluded]
    return sorted(found)


def load_run(path: Path) -> RunRecord:
    """Read one run directory; never raises (problems end up in ``RunRecord.problem``)."""
    rd = RunDir(path)
    done = rd.done.exists()
    if rd.failed.exists() and not done:
        return _with_config(RunRecord(path, FAILED, problem=failure_reason(path)))
    if not done:
        return _with_config(RunRecord(path, INCOMPLETE))
    try:
        metrics = json.loads(rd.metrics.read_bytes())
    except FileNotFoundError:
        return _with_config(RunRecord(path, CORRUPT, problem="DONE but no metrics.json"))
    except (OSError, ValueError) as exc:
        return _with_config(RunRecord(path, CORRUPT, problem=f"metrics.json unreadable: {exc}"))
    if not isinstance(metrics, dict):
        return _with_config(RunRecord(path, CORRUPT, problem="metrics.json is not a JSON object"))
    from lenshpc import tasks

    missing = [m for m in tasks.recorded_vocabulary(metrics).get("required", []) if not is_number(metrics.get(m))]
    if missing:
        return _with_config(RunRecord(path, CORRUPT, problem=f"metrics.json lacks {', '.join(missing)}"))
    config = metrics.get("config")
    record = RunRecord(path, OK, metrics=metrics, config=_with_defaults(config) if isinstance(config, dict) else {})
    if not record.config:
        _with_config(record)
    seed = metrics.get("seed", record.config.get("seed"))
    record.seed = int(seed) if is_number(seed) else record.seed
    return record


def load_runs(paths: list[Path], threads: int = 8) -> list[RunRecord]:
    """Load many run directories; I/O-bound on shared filesystems, so a few threads help."""
    if len(paths) < 64 or threads <= 1:
        return [load_run(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(load_run, paths, chunksize=32))


def attach_sweep(records: list[RunRecord], sweep: dict | None) -> None:
    """Fill in what only ``sweep.json`` knows: each run's row name and seed, and a failed or unfinished
    run's log.

    A run that failed before writing ``config.yaml`` (e.g. a bad ``model.params``) has neither
    config nor seed of its own; the sweep recorded both.  Its log is ``train.log`` or, when the
    run never got that far, the job's submitit log (:func:`lenshpc.hpc.sweep.log_path`).
    """
    from lenshpc.hpc.sweep import log_path

    runs: dict[str, dict] = {}
    root = Path(sweep["_path"]).parent if sweep and sweep.get("_path") else None
    for run in (sweep or {}).get("runs", []):
        if isinstance(run, dict) and isinstance(run.get("run_dir"), str) and root is not None:
            runs[str((root / run["run_dir"]).resolve())] = run
    for rec in records:
        run = runs.get(str(rec.path.resolve()), {})
        if isinstance(run.get("group"), str):
            rec.group = run["group"]
        if rec.seed is None and is_number(run.get("seed")):
            rec.seed = int(run["seed"])
        if rec.status in (FAILED, INCOMPLETE):
            jobs = run.get("jobs") if isinstance(run.get("jobs"), list) else []
            rec.log = log_path(rec.path, [j for j in jobs if isinstance(j, dict)], root or rec.path)


# ------------------------------------------------------------------ helpers
def is_number(value: Any) -> bool:
    """A JSON number (``True``/``False`` are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _with_defaults(flat: dict) -> dict:
    """A run's flattened config with keys it predates filled in (an old run is a lens run: no group split)."""
    from lenshpc.config import LEGACY_DEFAULTS

    return {**LEGACY_DEFAULTS, **flat}


def _with_config(record: RunRecord) -> RunRecord:
    """Fill ``config``/``seed`` from ``config.yaml`` (slow path: only for runs without metrics)."""
    import yaml

    from lenshpc.config import flatten

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(RunDir(record.path).config.read_text(), Loader=loader)
    except (OSError, yaml.YAMLError):
        return record
    if isinstance(data, dict):
        record.config = _with_defaults(flatten(data))
        seed = record.config.get("seed")
        if is_number(seed):
            record.seed = int(seed)
    return record
