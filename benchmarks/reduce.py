"""Benchmark `lenshpc reduce`: runs reduced per second vs a naive baseline, measured in one run.

Generates N synthetic finished run directories (lenshpc.report.synthetic: real metrics.json with
curves, predictions.h5, config.yaml, DONE; G groups × N/G seeds), then times

* baseline — the obvious script: ``Path.rglob("metrics.json")`` (walks into every checkpoint
  folder), ``yaml.safe_load(config.yaml)`` per run to learn its grouping keys, per-group
  ``statistics.mean/stdev`` over Python lists (what interactive collation scripts do);
* reduce (tables) — :func:`lenshpc.report.reduce_runs` with ``plots=False``;
* reduce (tables + plots) — the full ``lenshpc reduce`` (3 figures × PNG + PDF, every
  ``predictions.h5`` read for the histograms).

Each timing is the best of ``--repeat`` runs (page cache warm after the first).

    python benchmarks/reduce.py --runs 1000 --groups 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")


def generate(root: Path, runs: int, groups: int) -> None:
    from lenshpc.config import load_config
    from lenshpc.report.synthetic import make_run

    base = load_config()
    per_group = runs // groups
    for g in range(groups):
        cfg_g = base.replace(**{"train.learning_rate": 1e-4 * (g + 1), "loss.name": ("bce", "f1_soft")[g % 2]})
        for s in range(per_group):
            run_dir = root / f"g{g}" / f"seed{s}"
            make_run(run_dir, cfg_g.replace(seed=s), skill=2.0 + g * 0.3 + s * 0.01, n_test=400)
            (run_dir / "checkpoint").mkdir()  # real run dirs have one (a naive rglob walks it)
            (run_dir / "checkpoint" / "state.json").write_text("{}")


def baseline(root: Path) -> int:
    import yaml

    from lenshpc.config import flatten

    rows = []
    for path in root.rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        config = flatten(yaml.safe_load((path.parent / "config.yaml").read_text()))
        rows.append((config, metrics))
    keys = [k for k in rows[0][0] if k not in ("seed", "name") and len({json.dumps(r[0].get(k)) for r in rows}) > 1]
    groups: dict = {}
    for config, metrics in rows:
        groups.setdefault(tuple(json.dumps(config.get(k)) for k in keys), []).append(metrics)
    table = {}
    for key, items in groups.items():
        table[key] = {m: (statistics.mean(x[m] for x in items), statistics.stdev(x[m] for x in items))
                      for m in ("accuracy", "fbeta", "precision", "recall", "auroc", "tpr0", "tpr10")}
    return len(rows)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--groups", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to generate the runs (default: a temporary directory)")
    args = p.parse_args(argv)

    from lenshpc.report import reduce_runs

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp) / "sweep"
        t0 = time.perf_counter()
        generate(root, args.runs, args.groups)
        print(f"generated {args.runs} synthetic runs in {args.groups} groups in {time.perf_counter() - t0:.1f} s")
        import matplotlib  # warm the import so the first timed plot run is not charged for it

        matplotlib.use("Agg")
        n = args.runs
        t_base = best_of(lambda: baseline(root), args.repeat)
        t_tables = best_of(lambda: reduce_runs(root, out=Path(tmp) / "r1", plots=False), args.repeat)
        t_full = best_of(lambda: reduce_runs(root, out=Path(tmp) / "r2", plots=True), args.repeat)
        result = reduce_runs(root, out=Path(tmp) / "r3", plots=False)
        assert sum(g.n_runs for g in result.groups) == n, "every run must be reduced"
        print(f"{'method':<28}{'seconds':>9}{'runs/s':>10}{'vs baseline':>13}")
        for name, t in (("baseline (rglob+yaml)", t_base), ("reduce, tables", t_tables),
                        ("reduce, tables + plots", t_full)):
            print(f"{name:<28}{t:>9.3f}{n / t:>10.0f}{t_base / t:>12.1f}x")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
