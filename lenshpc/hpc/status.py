"""``lenshpc status``: one line per run — done / running / pending / failed / not started.

Sources, in order: ``sweep.json`` (the expected runs and their job ids), each run directory's
markers (``DONE``, ``FAILED`` with the error's last line, ``checkpoint/``) and the scheduler
(``squeue``/``sacct`` for SLURM jobs, the controller process for local jobs).  Run directories
under DIR that the sweep does not know (e.g. single ``lenshpc train`` runs) are listed too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lenshpc.errors import UserError
from lenshpc.hpc import jobs as _jobs
from lenshpc.hpc.sweep import SWEEP_JSON, classify, log_path, read_sweep_json, recorded_jobs

ORDER = ("failed", "running", "pending", "not started", "done")


@dataclass
class RunStatus:
    id: str
    state: str
    job: str
    detail: str
    log: Path | None


def collect_status(root: str | Path) -> list[RunStatus]:
    """Status of every run under ``root`` (a sweep's output directory or any tree of runs)."""
    from lenshpc.report.collect import find_run_dirs

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory; pass a sweep output directory (e.g. runs/thesis_table51)")
    sweep = read_sweep_json(root)
    history = recorded_jobs(sweep)
    states = _jobs.job_states([jl[-1] for jl in history.values() if jl])
    out: list[RunStatus] = []
    known: set[Path] = set()
    for run in sweep.get("runs", []):
        run_dir = (root / run["run_dir"]).resolve()
        known.add(run_dir)
        out.append(_status(run["id"], run_dir, history.get(run["id"], []), states, root))
    for run_dir in find_run_dirs(root):
        if run_dir.resolve() in known:
            continue
        rel = str(run_dir.relative_to(root)) if run_dir != root else "."
        out.append(_status(rel, run_dir, [], {}, root))
    if not out:
        raise UserError(f"{root}: no {SWEEP_JSON} and no run directories; is this the sweep's --out directory?")
    return out


def _status(run_id: str, run_dir: Path, history: list[dict], states: dict, root: Path) -> RunStatus:
    state, detail = classify(run_dir, history, states)
    last = history[-1] if history else None
    return RunStatus(run_id, state, last["job_id"] if last else "-", detail, log_path(run_dir, history, root))


def format_status(rows: list[RunStatus], root: Path | None = None, width: int = 100) -> str:
    """A fixed-width table plus a one-line summary (details cut to ``width`` characters)."""
    def rel(p: Path | None) -> str:
        return "-" if p is None else str(p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p)

    head = ("RUN", "STATE", "JOB", "DETAIL", "LOG")
    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    body = [(r.id, r.state, r.job, cut(r.detail or "-"), rel(r.log) if r.state != "done" else "-") for r in rows]
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:4], widths)) + "  " + head[4]]
    for b in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(b[:4], widths)) + "  " + b[4])
    counts = {s: sum(r.state == s for r in rows) for s in ORDER}
    lines.append("")
    lines.append(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if counts["failed"]:
        record = read_sweep_json(root) if root else {}
        if record.get("kind") == "ensemble":  # written by `lenshpc ensemble`, which re-runs unfinished ensembles
            spec = record.get("sweep_file") or "SPEC.yaml"
            lines.append(f"re-run failed ensembles with: lenshpc ensemble {spec}" + (f" --out {root}" if root else ""))
        else:
            sweep_file = record.get("sweep_file") or "SWEEP.yaml"
            lines.append(f"resubmit failed runs with: lenshpc sweep {sweep_file} --retry-failed"
                         + (f" --out {root}" if root else ""))
    return "\n".join(lines)
