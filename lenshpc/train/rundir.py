"""The run directory contract (``docs/run-dir.md``): file names, markers, states, and the files a run writes.

Every other module names a run's files through this one (:class:`RunDir`, the ``*_FILE`` constants) and asks it
what state a run is in (:func:`read_run_dir`: only marker files are read and the run-dir lock probed, so checking
thousands of runs costs a few ``stat`` calls each).

Every writer here is atomic (temp file + rename), so a run killed at any moment leaves
either the previous version of a file or the new one, never half of one.  Only the root
rank calls these writers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import numpy as np

from lenshpc.errors import UserError
from lenshpc.locking import LOCK_FILE, describe_owner, live_owner
from lenshpc.utils import atomic_path, atomic_write_text, pid_alive, read_json_object

#: The files of a run directory (``docs/run-dir.md``); ``DONE`` is written last.
CONFIG_FILE, METRICS_FILE, PREDICTIONS_FILE = "config.yaml", "metrics.json", "predictions.h5"
HISTORY_FILE, MODEL_FILE, LOG_FILE = "history.csv", "model.keras", "train.log"
CHECKPOINT_DIR, TENSORBOARD_DIR = "checkpoint", "tensorboard"
DONE_FILE, FAILED_FILE = "DONE", "FAILED"
#: Files whose presence makes a directory a run directory.
RUN_MARKERS = (METRICS_FILE, CONFIG_FILE, DONE_FILE, FAILED_FILE, LOG_FILE)
#: Run-directory states, from the markers and the run-dir lock (job states are added by lenshpc.hpc.status).
DONE, FAILED, STARTED, ABSENT, RUNNING = "done", "failed", "started", "absent", "running"


#: Config keys that may differ between the run that wrote a checkpoint and the one resuming it: they change how
#: long or where a run goes, not what it computes per chunk.
RESUMABLE_CHANGES = ("train.chunks", "train.checkpoint_every", "train.log_every", "train.tensorboard",
                     "data.prefetch", "data.threads", "data.path", "data.segmented_path")
RESUMABLE_PREFIXES = ("hpc.", "distributed.backend")

#: Config keys that may differ when a finished (``DONE``) run is asked for again: where and how it ran, not what
#: it computed.  ``train.chunks`` is not among them: a finished run of 15 chunks is not one of 6.
FINISHED_CHANGES = tuple(k for k in RESUMABLE_CHANGES if k != "train.chunks")

#: Inference batch size of validation, test and `lenshpc evaluate` (one value, so re-scoring reproduces a run).
PREDICT_BATCH = 256


def default_run_dir(cfg) -> Path:
    """``runs/<cfg.name>/seed<cfg.seed>`` relative to the working directory."""
    return Path("runs") / cfg.name / f"seed{cfg.seed}"


class RunDir:
    """Paths and markers of one run directory.

    Parameters
    ----------
    path : str or Path
        The directory (created on first write).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- paths -----------------------------------------------------------------
    config = property(lambda self: self.path / CONFIG_FILE)
    metrics = property(lambda self: self.path / METRICS_FILE)
    predictions = property(lambda self: self.path / PREDICTIONS_FILE)
    history = property(lambda self: self.path / HISTORY_FILE)
    model = property(lambda self: self.path / MODEL_FILE)
    checkpoint = property(lambda self: self.path / CHECKPOINT_DIR)
    log = property(lambda self: self.path / LOG_FILE)
    done = property(lambda self: self.path / DONE_FILE)
    failed = property(lambda self: self.path / FAILED_FILE)
    tensorboard = property(lambda self: self.path / TENSORBOARD_DIR)

    def is_done(self) -> bool:
        return self.done.is_file()

    def read_metrics(self) -> dict:
        """``metrics.json`` of a finished run (UserError naming the file when it is unreadable)."""
        try:
            return json.loads(self.metrics.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path} is marked DONE but {self.metrics.name} is unreadable ({exc}); "
                            "re-run with --force") from None

    def has_checkpoint(self) -> bool:
        return (self.checkpoint / "state.json").is_file()

    # -- markers ----------------------------------------------------------------
    def mark_done(self) -> None:
        """Write ``DONE`` (last file of a run); clears a stale ``FAILED``."""
        with contextlib.suppress(FileNotFoundError):
            self.failed.unlink()
        atomic_write_text(self.done, "")

    def mark_failed(self, exc: BaseException) -> None:
        """Write ``FAILED`` with the error's one-line summary."""
        with contextlib.suppress(OSError):
            atomic_write_text(self.failed, f"{type(exc).__name__}: {exc}\n")

    def clear_markers(self) -> None:
        for marker in (self.done, self.failed):
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


# ----------------------------------------------------------------------- states
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
    log = run_dir / LOG_FILE
    log_path = log if log.is_file() else None
    if (run_dir / DONE_FILE).exists():
        return RunDirState(DONE, log=log_path)
    owner = live_owner(run_dir) if (run_dir / LOCK_FILE).exists() else None
    if owner is not None:
        return RunDirState(RUNNING, log=log_path, checkpoint_chunk=_checkpoint_chunk(run_dir), owner=owner)
    if (run_dir / FAILED_FILE).exists():
        return RunDirState(FAILED, error=failure_reason(run_dir), log=log_path,
                           checkpoint_chunk=_checkpoint_chunk(run_dir))
    if is_run_dir(run_dir):
        return RunDirState(STARTED, log=log_path, checkpoint_chunk=_checkpoint_chunk(run_dir))
    return RunDirState(ABSENT)


def check_finished(run_dir: str | Path, what: str) -> None:
    """Raise a clear UserError (``what`` names the caller) unless ``run_dir`` is a finished run with its config,
    predictions and model: the one "is this a finished run" check of the commands that read runs."""
    rd = RunDir(run_dir)
    run_dir = rd.path
    if not run_dir.is_dir():
        raise UserError(f"{what}: run directory {run_dir} does not exist (not trained yet? check --runs and --seeds)")
    if rd.failed.is_file() and not rd.is_done():
        raise UserError(f"{what}: run {run_dir} failed ({failure_reason(run_dir)}); retry it with "
                        "`lenshpc sweep … --retry-failed`")
    if not rd.is_done():
        raise UserError(f"{what}: run {run_dir} has not finished (no DONE); wait for it or resume it")
    for name in (CONFIG_FILE, PREDICTIONS_FILE, MODEL_FILE):
        if not (run_dir / name).is_file():
            raise UserError(f"{what}: run {run_dir} is DONE but lacks {name}; re-run it with --force")


def failure_reason(run_dir: str | Path) -> str:
    """The last line of a run's ``FAILED`` marker (the error's one-line summary)."""
    try:
        text = (Path(run_dir) / FAILED_FILE).read_text(errors="replace").strip()
    except OSError as exc:
        return f"(FAILED marker unreadable: {exc})"
    return text.splitlines()[-1] if text else "(no message)"


def _checkpoint_chunk(run_dir: Path) -> int | None:
    state = read_json_object(run_dir / CHECKPOINT_DIR / "state.json")
    for key in ("next_chunk", "chunk"):  # next_chunk: lenshpc.train's checkpoint format
        if isinstance(state.get(key), int):
            return int(state[key])
    return None


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds any of the run-directory marker files."""
    path = Path(path)
    return any((path / m).exists() for m in RUN_MARKERS)


def unfinished_run_advice(run_dir: str | Path, missing: str) -> str:
    """The message for a run directory without a usable ``missing`` file (``model.keras``, ``predictions.h5``).

    One wording for every command that reads a run (evaluate, gradcam, rank, ensemble,
    infocontent), with a command that really produces the file when run as printed: a run
    marked DONE is re-trained from its own ``config.yaml`` with ``--force`` (``lenshpc train``
    skips a DONE run otherwise); an unfinished one is resumed from its checkpoint.
    """
    import shlex

    rd = RunDir(run_dir)
    train = f"lenshpc train {shlex.quote(str(rd.config))} --run-dir {shlex.quote(str(rd.path))}"
    if rd.is_done():
        return (f"{rd.path} is marked DONE but has no {missing} (deleted, or not copied with the run); re-train "
                f"it from its own config with `{train} --force` (starts the run over)")
    absent = "" if (rd.path / missing).exists() else f", no {missing}"
    return (f"{rd.path}: the run has not finished (no DONE marker{absent}); wait for it if it is still running "
            f"(`lenshpc status {shlex.quote(str(rd.path.parent))}`), or resume it with `{train}`")


def config_differences(old: Mapping, new: Mapping, allowed: Iterable[str] = RESUMABLE_CHANGES) -> list[str]:
    """Flattened keys whose values differ between two config dicts, ignoring ``allowed`` (default
    :data:`RESUMABLE_CHANGES`; :data:`FINISHED_CHANGES` for a finished run) and :data:`RESUMABLE_PREFIXES`."""
    from lenshpc.config import LEGACY_DEFAULTS, flatten

    a, b = {**LEGACY_DEFAULTS, **flatten(dict(old))}, {**LEGACY_DEFAULTS, **flatten(dict(new))}
    allowed = set(allowed)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in allowed or key.startswith(RESUMABLE_PREFIXES):
            continue
        if a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


# ----------------------------------------------------------------------- history.csv
def history_columns(task) -> tuple[str, ...]:
    """Columns of ``history.csv`` in order (one row per trained chunk): the task's validation metrics
    (:meth:`lenshpc.tasks.base.Task.val_metrics`) between the loop's own columns."""
    return ("chunk", "train_loss", *task.val_metrics(), "selected", "lr", "seconds")


def _csv_rows(rows: Iterable[Mapping], columns: tuple[str, ...], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows({k: _csv_value(row.get(k)) for k in columns} for row in rows)
    return buf.getvalue()


def write_history(path: Path, rows: Iterable[Mapping], columns: tuple[str, ...]) -> None:
    """Rewrite ``history.csv`` atomically from the in-memory rows (floats with full precision);
    ``columns``: :func:`history_columns` of the run's task."""
    atomic_write_text(path, _csv_rows(rows, columns, header=True))


def append_history(path: Path, row: Mapping, columns: tuple[str, ...]) -> None:
    """Append one row to ``history.csv`` (cheap per chunk; :func:`write_history` rewrites it at checkpoints)."""
    if not path.is_file():
        write_history(path, [row], columns)
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(_csv_rows([row], columns, header=False))


def _csv_value(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return "" if value is None else value


def read_history(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``history.csv`` with numbers parsed (``selected`` as bool)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for raw in csv.DictReader(fh):
            row: dict = {}
            for key, value in raw.items():
                if key == "chunk":
                    row[key] = int(value)
                elif key == "selected":
                    row[key] = value == "1"
                else:
                    row[key] = float(value) if value not in ("", None) else None
            rows.append(row)
    return rows


# ----------------------------------------------------------------------- predictions.h5
def write_predictions(path: Path, groups: Mapping[str, Mapping]) -> None:
    """Write ``predictions.h5`` atomically.

    Parameters
    ----------
    groups : dict
        ``{"test": {"scores": (N, ...), "labels": (N,), "meta": {column: (N,)}}, "val": {...}}``: the arrays
        of :meth:`lenshpc.tasks.base.Task.predictions` (``scores`` stored as float32, 1-D ``labels`` as
        uint8, any further array as given) beside ``meta``.
    """
    import h5py

    from lenshpc.data.format import create_h5

    with atomic_path(path) as tmp:
        with create_h5(tmp) as fh:
            for name, data in groups.items():
                g = fh.create_group(name)
                scores = np.asarray(data["scores"], dtype=np.float32)
                for key, values in data.items():
                    if key == "meta":
                        continue
                    values = scores if key == "scores" else np.asarray(values)  # as the task gives them
                    g.create_dataset(key, data=values)
                m = g.create_group("meta")
                for col, values in (data.get("meta") or {}).items():
                    values = np.asarray(values)
                    if len(values) != len(scores):
                        continue  # a column that does not describe these rows (defensive: never written)
                    if values.dtype.kind in "UO":
                        m.create_dataset(col, data=values.astype(str).tolist(), dtype=h5py.string_dtype())
                    else:
                        m.create_dataset(col, data=values)


def read_predictions(path: str | os.PathLike, group: str = "test") -> dict:
    """``{"scores", "labels", "meta": {...}}`` of one group of a ``predictions.h5``."""
    import h5py

    with h5py.File(path, "r") as fh:
        g = fh[group]
        meta = {}
        for col, ds in g["meta"].items():
            meta[col] = np.asarray(ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()])
        return {"scores": g["scores"][()], "labels": g["labels"][()], "meta": meta}


# ----------------------------------------------------------------------- metrics.json
def run_metrics(cfg, y, scores, val=None) -> dict:
    """The metric keys every ``metrics.json`` shares (training runs, ``evaluate``, ensembles).

    :func:`lenshpc.metrics.summary` of test labels ``y`` and ``scores`` at the config's
    ``selection`` threshold, β and curve steps, plus ``seed``, ``threshold``, ``beta``, ``n_test``;
    with ``val = (y_val, scores_val)`` also the test metrics at the threshold that maximises Fβ
    on those validation scores (:func:`lenshpc.metrics.tuned_summary`: ``<metric>_tuned``).
    """
    from lenshpc import metrics

    sel = cfg.selection
    out = dict(metrics.summary(y, scores, beta=sel.beta, threshold=sel.threshold, steps=sel.steps))
    out.update({"seed": int(cfg.seed), "threshold": float(sel.threshold), "beta": float(sel.beta),
                "n_test": int(len(np.asarray(y).reshape(-1)))})
    if val is not None:
        out.update(metrics.tuned_summary(val[0], val[1], y, scores, beta=sel.beta))
    return out


# ----------------------------------------------------------------------- normalisation
def run_normaliser(run_dir: str | os.PathLike):
    """The normaliser a finished run was trained with (its ``config.yaml`` and stored template)."""
    from lenshpc.config import load_config
    from lenshpc.data import normalise

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / CONFIG_FILE)
    if cfg.data.normalisation == normalise.HistogramTemplate.name and not (run_dir / normalise.TEMPLATE_FILE).is_file():
        raise UserError(f"{run_dir}: trained with data.normalisation = histogram_template but "
                        f"{normalise.TEMPLATE_FILE} is missing from the run directory (copied without it?); copy it "
                        "back or re-train")
    return normalise.for_config(cfg, run_dir=run_dir, write=False)


# ----------------------------------------------------------------------- model.keras
def save_model(model, path: Path) -> None:
    """``model.save`` atomically (Keras insists on the ``.keras`` suffix, so the temp name keeps it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.stem}.tmp*.keras"):  # left by a killed run (SIGKILL, out of memory)
        pid = stale.name[len(path.stem) + 5 : -len(".keras")]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ----------------------------------------------------------------------- logging
@contextlib.contextmanager
def file_logging(path: Path | None, logger_names: Iterable[str] = ("lenshpc",)) -> Iterator[None]:
    """Append the run's log records to ``path`` (``train.log``) while the block runs; None = no file."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(n) for n in logger_names]
    old_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)  # the file gets INFO even when the console is quieter
    try:
        yield
    finally:
        for lg, level in zip(loggers, old_levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def versions() -> dict:
    """``metrics.json["versions"]`` (for old readers): :func:`lenshpc.provenance.package_versions`."""
    from lenshpc.provenance import package_versions

    return package_versions()


__all__ = ["ABSENT", "CHECKPOINT_DIR", "CONFIG_FILE", "DONE", "DONE_FILE", "FAILED", "FAILED_FILE",
           "FINISHED_CHANGES", "HISTORY_FILE", "LOG_FILE", "METRICS_FILE", "MODEL_FILE",
           "PREDICT_BATCH", "PREDICTIONS_FILE", "RUN_MARKERS", "RUNNING", "STARTED", "TENSORBOARD_DIR",
           "append_history", "check_finished", "config_differences", "default_run_dir", "failure_reason", "file_logging",
           "history_columns", "is_run_dir", "read_history", "read_predictions", "read_run_dir", "run_metrics",
           "run_normaliser", "RunDir", "RunDirState", "save_model", "unfinished_run_advice", "versions", "write_history",
           "write_predictions"]
