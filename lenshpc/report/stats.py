"""Group runs by their varied config keys and summarise each group over seeds.

Std convention
--------------
``std`` is the **sample standard deviation over seeds (ddof = 1, divisor n − 1)**, the usual
reading of "mean ± std of 10 runs" (thesis Table 5.1).  A group with a single finished run
has no std (reported as NaN / "–").  :data:`STD_DDOF` is the one place this is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lenshpc.errors import UserError
from lenshpc.report.collect import CORRUPT, FAILED, INCOMPLETE, OK, RunRecord, Vocabulary, is_number

#: Degrees of freedom of the reported std (1 = sample std over seeds).
STD_DDOF = 1

#: Keys never used to group runs: the seed (averaged over), the run's name, and resources.
IGNORED_KEYS = frozenset({"seed", "name"})
IGNORED_PREFIXES = ("hpc.",)


@dataclass
class GroupSummary:
    """One row of the report: a configuration averaged over its seeds."""

    label: str
    values: dict[str, Any]
    runs: list[RunRecord] = field(default_factory=list)  # finished runs (status ok)
    seeds: list[int] = field(default_factory=list)
    failed: list[RunRecord] = field(default_factory=list)
    incomplete: list[RunRecord] = field(default_factory=list)
    corrupt: list[RunRecord] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    #: Per column: p-value of the test against the column's best group, and whether it differs at α
    #: (:mod:`lenshpc.report.significance`; absent for the best group and for untested groups).
    pvalue: dict[str, float] = field(default_factory=dict)
    differs: dict[str, bool] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @staticmethod
    def _seeds(records: list[RunRecord]) -> list[int]:
        return sorted(r.seed for r in records if r.seed is not None)

    @property
    def failed_seeds(self) -> list[int]:
        return self._seeds(self.failed)

    @property
    def incomplete_seeds(self) -> list[int]:
        return self._seeds(self.incomplete)

    @property
    def corrupt_seeds(self) -> list[int]:
        return self._seeds(self.corrupt)


def _hashable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _groupable(key: str) -> bool:
    return key not in IGNORED_KEYS and not key.startswith(IGNORED_PREFIXES)


def varied_keys(records: Iterable[RunRecord]) -> list[str]:
    """Config keys whose values differ between runs (seed, name and ``hpc.*`` excluded)."""
    seen: dict[str, set] = {}
    configs = [r.config for r in records if r.config]
    for cfg in configs:
        for key, value in cfg.items():
            seen.setdefault(key, set()).add(_hashable(value))
    varied = [k for k, vals in seen.items() if _groupable(k) and (len(vals) > 1 or any(k not in c for c in configs))]
    return sorted(varied)


def summarise(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, std (ddof = :data:`STD_DDOF`) and count of the finite entries of ``values``."""
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = float(finite.mean())
    std = float(finite.std(ddof=STD_DDOF)) if n > STD_DDOF else float("nan")
    return mean, std, n


def metric_matrix(runs: list[RunRecord], metrics: tuple[str, ...]) -> np.ndarray:
    """``(n_runs, n_metrics)`` float array; a missing or null metric is NaN."""
    out = np.full((len(runs), len(metrics)), np.nan)
    for i, run in enumerate(runs):
        m = run.metrics or {}
        for j, name in enumerate(metrics):
            if is_number(m.get(name)):
                out[i, j] = m[name]
    return out


def summarise_group(g: GroupSummary, columns: tuple[str, ...] | None = None) -> None:
    """Fill ``g.mean``/``g.std``/``g.count`` for every column (default: those of the group's runs,
    :class:`~lenshpc.report.collect.Vocabulary`) from the group's finished runs (NaN/0 when none)."""
    columns = Vocabulary.of(g.runs).columns if columns is None else columns
    matrix = metric_matrix(g.runs, columns)
    for j, name in enumerate(columns):
        g.mean[name], g.std[name], g.count[name] = summarise(matrix[:, j])


def group_runs(records: list[RunRecord], group_by: list[str] | None = None,
               sweep: dict | None = None, columns: tuple[str, ...] | None = None
               ) -> tuple[list[GroupSummary], list[str]]:
    """Group ``records`` and compute mean ± std per metric.

    Parameters
    ----------
    records : list of RunRecord
        Every run found (any status).
    group_by : list of str, optional
        Flattened config keys; default: all varied keys (:func:`varied_keys`).
    sweep : dict, optional
        The parsed ``sweep.json`` of the directory: gives row labels and order, the expected
        seeds per row and the runs that never started.
    columns : tuple of str, optional
        The summarised columns (default: ``Vocabulary.of(records).columns``).

    Returns
    -------
    groups, keys
        One :class:`GroupSummary` per row and the grouping keys used.
    """
    columns = Vocabulary.of(records).columns if columns is None else columns
    keys = list(group_by) if group_by else varied_keys(records)
    if group_by:
        known = set().union(*(r.config for r in records if r.config))
        unknown = [k for k in keys if known and k not in known]
        if unknown:
            raise UserError(f"--group-by: unknown config key(s) {', '.join(unknown)}; varied keys here: "
                            f"{', '.join(varied_keys(records)) or '(none)'}")
    buckets: dict[tuple, list[RunRecord]] = {}
    for rec in records:  # a sweep's row is its group (sweep.json), whatever its runs managed to record
        key = ("sweep group", rec.group) if rec.group else tuple(_hashable(rec.config.get(k)) for k in keys)
        buckets.setdefault(key, []).append(rec)

    sweep_points = _sweep_points(sweep)
    by_dir = {p["dir"]: p for p in sweep_points}
    groups: list[GroupSummary] = []
    for key, recs in buckets.items():
        first = next((r for r in recs if r.config), recs[0])
        values = {k: first.config.get(k) for k in keys}
        names = {r.group for r in recs if r.group} or {by_dir[_norm(r.path)]["group"] for r in recs
                                                        if _norm(r.path) in by_dir}
        label = names.pop() if len(names) == 1 else _label(values)
        g = GroupSummary(label=label, values=values)
        for rec in recs:
            {OK: g.runs, FAILED: g.failed, INCOMPLETE: g.incomplete, CORRUPT: g.corrupt}[rec.status].append(rec)
        g.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
        g.seeds = g._seeds(g.runs)
        summarise_group(g, columns)
        groups.append(g)

    _attach_expected_seeds(groups, records, sweep_points, columns)
    order = {name: i for i, name in enumerate(dict.fromkeys(p["group"] for p in sweep_points))}
    groups.sort(key=lambda g: (order.get(g.label, len(order)), g.label))
    return groups, keys


def _norm(path: str | Path) -> str:
    return str(Path(path).resolve())


def _label(values: dict[str, Any]) -> str:
    if not values:
        return "all runs"
    if len(values) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _sweep_points(sweep: dict | None) -> list[dict]:
    """``[{"group", "seed", "dir"}]`` from a sweep.json (run dirs resolved against its folder)."""
    if not sweep:
        return []
    root = Path(sweep.get("_path", ".")).parent
    points = []
    for run in sweep.get("runs", []):
        try:
            points.append({"group": str(run["group"]), "seed": int(run["seed"]), "dir": _norm(root / run["run_dir"])})
        except (KeyError, TypeError, ValueError):
            continue
    return points


def _attach_expected_seeds(groups: list[GroupSummary], records: list[RunRecord], sweep_points: list[dict],
                           columns: tuple[str, ...]) -> None:
    """Fill ``missing_seeds``: expected (from sweep.json, else the union of all seeds) minus seen."""
    if sweep_points:
        present = {_norm(r.path) for r in records}
        by_label = {g.label: g for g in groups}
        for p in sweep_points:
            if p["dir"] in present:
                continue
            g = by_label.get(p["group"])
            if g is None:  # a whole row that never started
                g = GroupSummary(label=p["group"], values={})
                summarise_group(g, columns)
                by_label[p["group"]] = g
                groups.append(g)
            g.missing_seeds.append(p["seed"])
        for g in groups:
            g.missing_seeds.sort()
        return
    expected = {r.seed for r in records if r.seed is not None}
    for g in groups:
        seen = set(g.seeds) | set(g.failed_seeds) | set(g.incomplete_seeds) | set(g.corrupt_seeds)
        g.missing_seeds = sorted(expected - seen)


def mean_curve(x_list: list[np.ndarray], y_list: list[np.ndarray], grid: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std (ddof = :data:`STD_DDOF`) of curves ``y(x)`` on a common grid.

    Curves sharing one ``x`` are stacked directly; otherwise each is linearly interpolated onto
    ``grid`` (default: the first curve's ``x``).  ``x`` must be non-decreasing per curve (true for
    thresholds and for ROC false-positive rates).
    """
    if not x_list:
        empty = np.array([])
        return empty, empty, empty
    xs = [np.asarray(x, dtype=float) for x in x_list]
    ys = [np.asarray(y, dtype=float) for y in y_list]
    if grid is None:
        grid = xs[0]
        if all(x.shape == grid.shape and np.array_equal(x, grid) for x in xs):
            stack = np.vstack(ys)
            return grid, stack.mean(axis=0), _std_rows(stack)
    stack = np.vstack([np.interp(grid, x, y) for x, y in zip(xs, ys)])
    return np.asarray(grid, dtype=float), stack.mean(axis=0), _std_rows(stack)


def _std_rows(stack: np.ndarray) -> np.ndarray:
    if stack.shape[0] <= STD_DDOF:
        return np.zeros(stack.shape[1])  # one curve: no spread to draw
    return stack.std(axis=0, ddof=STD_DDOF)
