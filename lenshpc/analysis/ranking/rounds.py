"""Hard-negative rounds (``lenshpc rounds ROUNDS.yaml``): train → rank → mine, N times (LensFlow phase 2, seed 004).

Round 1 trains the base config; round ``k ≥ 2`` fine-tunes round ``k−1``'s model (``train.start_from``) with the
``fine_tune`` overrides and the hard negatives mined so far (``data.extra_negatives``), ranks the catalogue and
mines the next set; ``control: true`` adds the same fine-tuning without mined negatives.  Tracer metrics
(:func:`lenshpc.analysis.ranking.metrics.rank_metrics`, not redefined here) of every round go to ``rounds.md``,
``rounds.csv`` and ``rounds.png``.  Spec keys, executors and resume: ``docs/ranking.md`` ("Hard negatives").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lenshpc.config import load_config, read_yaml_mapping
from lenshpc.errors import ConfigError, UserError
from lenshpc.hpc.shards import check_request
from lenshpc.train.rundir import RunDir
from lenshpc.utils import atomic_write_json, atomic_write_text, did_you_mean

log = logging.getLogger("lenshpc.analysis")

EXECUTORS = ("inline", "local", "slurm")
#: Columns of the round table: keys of ``rank_metrics.json`` (lenshpc.analysis.ranking.metrics.rank_metrics).
METRICS = ("ranking_performance", "classification_efficiency", "fraction_of_tracers_in_top_1pct",
           "fraction_of_tracers_in_top_10pct", "mean_relative_tracer_rank")
ROUND_FILE = "round.json"
_KEYS = {"out", "config", "set", "fine_tune", "catalogue", "eval_catalogue", "tracers", "rounds", "mine_top",
         "fraction", "control", "shards", "seed", "name"}


@dataclass
class RoundsSpec:
    """A parsed ``ROUNDS.yaml``."""

    path: Path
    out: Path
    config: Path
    catalogue: Path
    rounds: int = 2
    set: dict = field(default_factory=dict)
    fine_tune: dict = field(default_factory=dict)
    eval_catalogue: Path | None = None
    tracers: str | None = None
    mine_top: int = 50
    fraction: float = 0.25
    control: bool = False
    shards: int = 1
    seed: int = 0
    name: str = "rounds"

    def round_dir(self, k: int) -> Path:
        return self.out / f"round{k}"

    def config_for(self, k: int, arm: str = "mined"):
        """The resolved training config of round ``k`` (``arm``: ``mined`` or ``control``)."""
        over = dict(self.set)
        if k >= 2:
            over.update(self.fine_tune)
            over["train.start_from"] = str(self.round_dir(k - 1) / "run")
            mined = [self.round_dir(j) / "hardneg.h5" for j in range(1, k)]
            over["data.extra_negatives"] = ([] if arm == "control" else
                                            [{"path": str(p), "fraction": self.fraction / len(mined)} for p in mined])
        over["seed"] = self.seed
        over["name"] = f"{self.name}-round{k}" + ("-control" if arm == "control" else "")
        return load_config(self.config, **{k_.replace(".", "__"): v for k_, v in over.items()})


def load_rounds(path: str | Path) -> RoundsSpec:
    """Read and check ``ROUNDS.yaml`` (unknown keys, missing files, bad numbers: ConfigError with the key)."""
    path = Path(path)
    data = read_yaml_mapping(path, "rounds spec")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}" + did_you_mean(
            unknown[0], sorted(_KEYS), template="; did you mean {!r}?", otherwise=f"; valid keys: {', '.join(sorted(_KEYS))}"))
    for key in ("config", "catalogue"):
        if not data.get(key):
            raise ConfigError(f"{path}: '{key}' is required (the base training config and the catalogue to rank)")
    base = path.parent

    def rel(value) -> Path:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    def number(key, kind, lo, hi=None):
        value = data.get(key, getattr(RoundsSpec, key))
        if not isinstance(value, kind) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
            raise ConfigError(f"{path}: {key} = {value!r} must be a {'number' if kind != int else 'whole number'} ≥ {lo}"
                              + (f" and ≤ {hi}" if hi is not None else ""))
        return value

    for key in ("set", "fine_tune"):
        if not isinstance(data.get(key, {}), dict):
            raise ConfigError(f"{path}: '{key}' must be a mapping of dotted config keys to values")
    spec = RoundsSpec(path=path, out=rel(data.get("out", path.stem)), config=rel(data["config"]),
                      catalogue=rel(data["catalogue"]), rounds=number("rounds", int, 1),
                      set=_paths(dict(data.get("set") or {}), base), fine_tune=_paths(dict(data.get("fine_tune") or {}), base),
                      eval_catalogue=rel(data["eval_catalogue"]) if data.get("eval_catalogue") else None,
                      tracers=data.get("tracers"), mine_top=number("mine_top", int, 1),
                      fraction=float(number("fraction", (int, float), 0, 1)),
                      control=bool(data.get("control", False)), shards=number("shards", int, 1),
                      seed=number("seed", int, 0), name=str(data.get("name", path.stem)))
    for what, p in (("config", spec.config), ("catalogue", spec.catalogue), ("eval_catalogue", spec.eval_catalogue)):
        if p is not None and not p.is_file():
            raise ConfigError(f"{path}: {what} = {p}: no such file")
    for key in ("train.start_from", "data.extra_negatives"):
        if key in spec.fine_tune or key in spec.set:
            raise ConfigError(f"{path}: {key} is set by the driver (previous round, mined sets); remove it")
    spec.config_for(1)  # every config key checked now, before any job
    if spec.rounds > 1:
        spec.config_for(2)
    return spec


def _paths(over: dict, base: Path) -> dict:
    """Relative data paths in overrides are relative to the spec file, like every path in it."""
    for key in ("data.path", "data.segmented_path"):
        if isinstance(over.get(key), str) and over[key] and not Path(over[key]).is_absolute():
            over[key] = str((base / over[key]).resolve())
    return over


# ====================================================================== running
def _train(spec: RoundsSpec, runs: list[tuple[Any, Path]], executor: str) -> None:
    """Train (or resume, or skip when DONE) the given ``(config, run_dir)`` pairs."""
    from lenshpc.train import run_training

    todo = [(cfg, rd) for cfg, rd in runs if not RunDir(rd).is_done()]
    if not todo:
        return
    if executor == "inline":
        for cfg, rd in todo:
            run_training(cfg, rd, show_progress=False)
        return
    from lenshpc.hpc.jobs import TrainRun, make_executor

    folder = todo[0][1].parent / "submitit" / "%j"
    ex = make_executor(executor, folder, todo[0][0].hpc, job_name=f"{spec.name}-{todo[0][1].parent.name}")
    # The checkpointable job itself (not a function calling it): submitit requeues it on preemption/time-out.
    jobs = [(rd, ex.submit(TrainRun(cfg.to_dict(), str(rd)))) for cfg, rd in todo]
    log.info("submitted %d training job(s): %s", len(jobs), ", ".join(j.job_id for _, j in jobs))
    failures = []
    for rd, job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(f"{rd} (job {job.job_id}): {(str(exc).strip().splitlines() or ['?'])[-1][:300]} — log: "
                            f"{job.paths.stderr}")
    if failures:
        raise UserError("round training failed:\n  " + "\n  ".join(failures) + "\nfix it and re-run the same command")


def _rank(spec: RoundsSpec, run_dir: Path, catalogue: Path, out: Path, executor: str) -> dict:
    from lenshpc.analysis.ranking.report import rank_catalogue

    result = rank_catalogue(run_dir, catalogue, out, executor=executor, shards=spec.shards, top=25,
                            tracers=spec.tracers, show_progress=False)
    if not result.get("metrics"):
        raise UserError(f"{catalogue}: no tracers selected by tracers = {spec.tracers!r}; the rounds report needs "
                        "tracer lenses in the catalogue (set 'tracers:' in the spec)")
    return {k: result["metrics"][k] for k in (*METRICS, "n", "n_tracers")}


def run_rounds(spec: RoundsSpec, executor: str = "local", echo: Callable[[str], None] = print) -> list[dict]:
    """Run every unfinished round of ``spec``; write and return the per-round table rows."""
    from lenshpc.analysis.ranking.mine import mine

    check_request(executor, EXECUTORS)
    spec.out.mkdir(parents=True, exist_ok=True)
    for k in range(1, spec.rounds + 1):
        rdir = spec.round_dir(k)
        if (rdir / ROUND_FILE).is_file():
            echo(f"round {k}: done ({rdir / ROUND_FILE}); skipping")
            continue
        rdir.mkdir(parents=True, exist_ok=True)
        arms = [("mined", rdir / "run")] + ([("control", rdir / "control")] if spec.control and k >= 2 else [])
        echo(f"round {k}: training {', '.join(str(p) for _, p in arms)} ({executor})")
        _train(spec, [(spec.config_for(k, arm), path) for arm, path in arms], executor)
        record: dict = {"round": k, "arms": {}}
        for arm, path in arms:
            metrics = RunDir(path).read_metrics()
            entry = {"run_dir": str(path), "test_auroc": metrics.get("auroc"),
                     "start_from": (metrics.get("start_from") or {}).get("path"),
                     "survey": _rank(spec, path, spec.catalogue, path.parent / f"rank-{arm}", executor)}
            if spec.eval_catalogue is not None:
                entry["eval"] = _rank(spec, path, spec.eval_catalogue, path.parent / f"rank-eval-{arm}", executor)
            record["arms"][arm] = entry
        hardneg = rdir / "hardneg.h5"
        if k < spec.rounds and not hardneg.is_file():
            mined = mine(rdir / "rank-mined", hardneg, top=spec.mine_top)
            echo(f"round {k}: mined {mined['n']} hard negatives → {hardneg}")
        record["mined"] = str(hardneg) if hardneg.is_file() else None
        atomic_write_json(rdir / ROUND_FILE, record)
    rows = collect(spec)
    write_report(spec, rows)
    return rows


# ====================================================================== report
def collect(spec: RoundsSpec) -> list[dict]:
    """One row per (round, arm, catalogue) from the finished ``round.json`` files."""
    rows = []
    for k in range(1, spec.rounds + 1):
        path = spec.round_dir(k) / ROUND_FILE
        if not path.is_file():
            continue
        rec = json.loads(path.read_text())
        for arm, entry in rec["arms"].items():
            for which in ("survey", "eval"):
                if which in entry:
                    rows.append({"round": k, "arm": arm, "catalogue": which, "test_auroc": entry.get("test_auroc"),
                                 **{m: entry[which][m] for m in METRICS}, "n": entry[which]["n"],
                                 "n_tracers": entry[which]["n_tracers"]})
    return rows


def write_report(spec: RoundsSpec, rows: list[dict]) -> dict[str, Path]:
    """``rounds.csv``, ``rounds.md`` and ``rounds.png`` in ``spec.out``."""
    import csv
    import io

    cols = ["round", "arm", "catalogue", *METRICS, "test_auroc", "n", "n_tracers"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{c: r.get(c) for c in cols} for r in rows])
    atomic_write_text(spec.out / "rounds.csv", buf.getvalue())

    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [f"# Hard-negative rounds: {spec.name}", "",
             f"spec `{spec.path}`, seed {spec.seed}, catalogue `{spec.catalogue}`"
             + (f", held-out catalogue `{spec.eval_catalogue}`" if spec.eval_catalogue else "")
             + f", {spec.mine_top} hard negatives mined per round, fraction {spec.fraction:g}.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    atomic_write_text(spec.out / "rounds.md", "\n".join(lines) + "\n")

    from lenshpc.report.plots import pyplot, save_png

    plt = pyplot()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.0), squeeze=False)
    for ax, metric in zip(axes[0], METRICS):
        for key in sorted({(r["arm"], r["catalogue"]) for r in rows}):
            pts = sorted((r["round"], r[metric]) for r in rows if (r["arm"], r["catalogue"]) == key)
            if key[0] == "control":  # a control arm starts where the mined arm's round 1 ended
                pts = [(r["round"], r[metric]) for r in rows if (r["round"], r["arm"], r["catalogue"]) == (
                    1, "mined", key[1])] + pts
            style = "--" if key[0] == "control" else "-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=f"{key[0]} / {key[1]}")
        ax.set_title(metric.replace("_", " "), fontsize=8)
        ax.set_xlabel("round")
        ax.set_xticks(range(1, spec.rounds + 1))
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, spec.out / "rounds.png", dpi=110)
    return {"csv": spec.out / "rounds.csv", "md": spec.out / "rounds.md", "png": spec.out / "rounds.png"}


__all__ = ["EXECUTORS", "METRICS", "RoundsSpec", "collect", "load_rounds", "run_rounds", "write_report"]
