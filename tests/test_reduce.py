"""The reducer: numbers equal numpy, partial and corrupt inputs, tables, plots, the CLI.

Run directories are written by :mod:`lenshpc.report.synthetic` (self-consistent metrics from
drawn scores, the documented run-dir layout); no model is trained here.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lenshpc.cli import main
from lenshpc.config import load_config
from lenshpc.report import STD_DDOF, reduce_runs
from lenshpc.report.tables import LENS

METRICS = LENS.table  # the lens task's table metrics (runs of this file record no task: lens)
from lenshpc.report.collect import find_run_dirs
from lenshpc.report.stats import mean_curve
from lenshpc.report.synthetic import make_run

LOSSES = {"bce": 4.0, "f1_soft": 6.0, "fbeta_soft": 3.0}
SEEDS = range(4)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """3 losses × 4 seeds of synthetic finished runs, written once per module."""
    root = tmp_path_factory.mktemp("sweep")
    base = load_config()
    for loss, skill in LOSSES.items():
        for seed in SEEDS:
            cfg = base.replace(**{"loss.name": loss, "seed": seed, "name": f"t/{loss}"})
            make_run(root / loss / f"seed{seed}", cfg, skill=skill + 0.4 * seed)
    return root


@pytest.fixture()
def work(sweep_dir, tmp_path) -> Path:
    """A private copy the test may damage."""
    dst = tmp_path / "sweep"
    shutil.copytree(sweep_dir, dst)
    return dst


def _metrics(root: Path, loss: str) -> np.ndarray:
    rows = [json.loads((root / loss / f"seed{s}" / "metrics.json").read_text()) for s in SEEDS]
    return np.array([[r[m] for m in METRICS] for r in rows])


def test_numbers_equal_numpy(work):
    result = reduce_runs(work, plots=False)
    assert result.keys == ["loss.name"], "only the loss varies (seed and name are never grouping keys)"
    assert [g.label for g in result.groups] == sorted(LOSSES)
    for g in result.groups:
        expected = _metrics(work, g.label)
        assert g.n_runs == len(SEEDS) and g.seeds == list(SEEDS)
        for j, name in enumerate(METRICS):
            assert g.mean[name] == pytest.approx(expected[:, j].mean(), abs=1e-12)
            assert g.std[name] == pytest.approx(expected[:, j].std(ddof=1), abs=1e-12)
    assert STD_DDOF == 1


def test_csv_holds_full_precision_numbers(work):
    reduce_runs(work, plots=False)
    rows = list(csv.DictReader((work / "report.csv").open()))
    assert [r["group"] for r in rows] == sorted(LOSSES)
    for row in rows:
        expected = _metrics(work, row["group"])
        assert float(row["fbeta_mean"]) == pytest.approx(expected[:, 1].mean(), rel=1e-12)
        assert float(row["recall_std"]) == pytest.approx(expected[:, 3].std(ddof=1), rel=1e-12)
        assert row["n_runs"] == "4" and row["seeds"] == "0-3" and row["missing_seeds"] == ""


def test_markdown_and_tex_tables(work):
    result = reduce_runs(work, plots=False)
    md = (work / "report.md").read_text()
    tex = (work / "report.tex").read_text()
    g = result.groups[0]
    cell = f"{g.mean['accuracy']:.3f} ± {g.std['accuracy']:.3f}"
    assert cell in md and "ddof = 1" in md
    assert "| Model | Accuracy | Fβ | Precision | Recall | AUROC | TPR0 | TPR10 | n |" in md
    assert f"${g.mean['accuracy']:.3f} \\pm {g.std['accuracy']:.3f}$" in tex or "boldsymbol" in tex
    assert r"\begin{tabular}" in tex and r"f1\_soft" in tex and r"\toprule" in tex
    best = max(result.groups, key=lambda x: x.mean["fbeta"])
    assert f"**{best.mean['fbeta']:.3f} ± {best.std['fbeta']:.3f}**" in md


def test_partial_and_corrupt_inputs(work):
    expected = _metrics(work, "bce")[[0, 1, 3]]
    (work / "bce" / "seed2" / "metrics.json").write_text("{not json")
    shutil.rmtree(work / "f1_soft" / "seed3")
    failed = work / "fbeta_soft" / "seed1"
    (failed / "DONE").unlink()
    (failed / "FAILED").write_text("Traceback (most recent call last):\nDataError: data file not found: x.h5\n")
    (work / "fbeta_soft" / "seed0" / "DONE").unlink()  # still running
    result = reduce_runs(work, plots=False)
    by = {g.label: g for g in result.groups}
    assert by["bce"].n_runs == 3 and by["bce"].corrupt_seeds == [2]
    assert by["f1_soft"].missing_seeds == [3]
    assert by["fbeta_soft"].failed_seeds == [1] and by["fbeta_soft"].incomplete_seeds == [0]
    assert by["bce"].mean["fbeta"] == pytest.approx(expected[:, 1].mean())
    md = (work / "report.md").read_text()
    assert "metrics.json unreadable" in md and "DataError: data file not found: x.h5" in md
    assert "seeds 3 missing" in md and "corrupt 2" in md and "failed 1" in md and "running 0" in md


def test_single_run_group_has_no_std(work):
    for seed in (1, 2, 3):
        shutil.rmtree(work / "bce" / f"seed{seed}")
    result = reduce_runs(work, plots=False)
    bce = next(g for g in result.groups if g.label == "bce")
    assert bce.n_runs == 1 and np.isnan(bce.std["accuracy"])
    assert "0.9" in (work / "report.md").read_text()  # table still written


def test_sweep_json_names_rows_and_lists_never_started_runs(work):
    runs = [{"id": f"{loss}/seed{s}", "group": loss, "seed": s, "run_dir": f"{loss}/seed{s}"}
            for loss in ("f1_soft", "bce", "fbeta_soft", "never_ran") for s in range(5)]
    (work / "sweep.json").write_text(json.dumps({"name": "t", "runs": runs}))
    result = reduce_runs(work, plots=False)
    assert [g.label for g in result.groups] == ["f1_soft", "bce", "fbeta_soft", "never_ran"]
    assert all(g.missing_seeds == [4] for g in result.groups[:3])
    assert result.groups[3].n_runs == 0 and result.groups[3].missing_seeds == [0, 1, 2, 3, 4]


def test_group_by_override_and_unknown_key(work):
    result = reduce_runs(work, plots=False, group_by=["selection.metric"])
    assert len(result.groups) == 1 and result.groups[0].n_runs == 12
    from lenshpc.errors import UserError

    with pytest.raises(UserError, match="unknown config key"):
        reduce_runs(work, plots=False, group_by=["loss.nmae"])


def test_plots_written_and_non_empty(work, tmp_path):
    out = tmp_path / "report"
    result = reduce_runs(work, out=out)
    names = sorted(p.name for p in result.plots)
    assert names == sorted(f"{s}.{e}" for s in ("fbeta_curves", "prediction_histograms", "roc_curves")
                           for e in ("png", "pdf"))
    for p in result.plots:
        assert p.parent == out / "plots" and p.stat().st_size > 5000
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")
    assert (out / "report.md").exists() and not (work / "report.md").exists()


def test_mean_curve_interpolates_different_grids():
    x1, x2 = np.linspace(0, 1, 11), np.linspace(0, 1, 21)
    grid, mean, std = mean_curve([x1, x2], [x1 * 2, x2 * 4])
    assert np.allclose(mean, 3 * grid) and np.allclose(std, np.std([2 * grid, 4 * grid], axis=0, ddof=1))


def test_walk_skips_hidden_and_run_subdirs(work):
    (work / ".submitit" / "123").mkdir(parents=True)
    (work / ".submitit" / "123" / "config.yaml").write_text("seed: 0\n")
    (work / "bce" / "seed0" / "checkpoint").mkdir()
    (work / "bce" / "seed0" / "checkpoint" / "DONE").write_text("")
    assert len(find_run_dirs(work)) == 12


def test_cli_reduce(work, capsys):
    assert main(["reduce", str(work), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "fbeta_soft" in out and "ddof = 1" in out and "report:" in out


def test_cli_reduce_missing_dir(tmp_path, capsys):
    assert main(["reduce", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["reduce", str(tmp_path)]) == 2
    assert "no run directories" in capsys.readouterr().err
