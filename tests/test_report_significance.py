"""The reducer's significance marks, validation-tuned-threshold table and provenance warnings.

Run directories are synthetic (:mod:`lenshpc.report.synthetic`: the documented layout, no model
trained); the per-seed values of the tested column are then set to constructed numbers whose
Welch's t-test p-values are computed here from the formula (Welch–Satterthwaite degrees of
freedom, Student-t tail), independently of ``scipy.stats.ttest_ind`` that the reducer calls.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lenshpc.cli import main
from lenshpc.config import load_config
from lenshpc.report import reduce_runs, significance
from lenshpc.report.synthetic import make_run

#: Constructed accuracies per group (one value per seed).
VALUES = {
    "bce": [0.90, 0.92, 0.91, 0.93],             # the best mean
    "f1_soft": [0.80, 0.82, 0.81, 0.79],          # far below: distinguishable
    "fbeta_soft": [0.88, 0.93, 0.89, 0.94],       # overlaps the best: not distinguishable
    "f1_double_soft": [0.50],                     # one seed: never tested
}


def welch_p_by_hand(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(2 * stats.t.sf(abs(t), df))


def write_sweep(root: Path, values: dict[str, list[float]], *, tuned: bool = True, column: str = "accuracy") -> Path:
    base = load_config()
    for loss, vals in values.items():
        for seed, v in enumerate(vals):
            run = root / loss / f"seed{seed}"
            cfg = base.replace(**{"loss.name": loss, "seed": seed, "name": f"t/{loss}"})
            metrics = make_run(run, cfg, skill=4.0 + seed, predictions=False, tuned=tuned)
            metrics[column] = v
            (run / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_marks_equal_an_independent_welch_test(tmp_path):
    root = write_sweep(tmp_path / "sweep", VALUES)
    result = reduce_runs(root, plots=False)
    by = {g.label: g for g in result.groups}
    best = VALUES["bce"]
    p_far, p_near = welch_p_by_hand(best, VALUES["f1_soft"]), welch_p_by_hand(best, VALUES["fbeta_soft"])
    assert p_far < 1e-4 and p_near > 0.5  # the construction does what it says
    assert by["f1_soft"].pvalue["accuracy"] == pytest.approx(p_far, rel=1e-9)
    assert by["fbeta_soft"].pvalue["accuracy"] == pytest.approx(p_near, rel=1e-9)
    assert by["f1_soft"].differs["accuracy"] is True and by["fbeta_soft"].differs["accuracy"] is False
    assert "accuracy" not in by["bce"].pvalue and "accuracy" not in by["f1_double_soft"].pvalue

    md = (root / "report.md").read_text()
    fixed = md.split("validation-tuned threshold", 1)[0]  # the first table: at t = 0.5
    row = {line.split(" | ")[0].strip("| "): line for line in fixed.splitlines() if line.startswith("| ")}
    acc = lambda label: row[label].split(" | ")[1]  # noqa: E731 - the accuracy cell of a row
    assert acc("f1_soft").endswith(significance.MARK) and significance.MARK not in acc("fbeta_soft")
    assert significance.MARK not in acc("f1_double_soft") and acc("bce").startswith("**")
    assert "Welch's t-test" in md and "α = 0.05" in md and "Not tested (fewer than 2 seeds): f1_double_soft" in md

    rows = {r["group"]: r for r in csv.DictReader((root / "report.csv").open())}
    assert float(rows["f1_soft"]["accuracy_p_vs_best"]) == pytest.approx(p_far, rel=1e-9)
    assert rows["bce"]["accuracy_p_vs_best"] == "" and rows["f1_double_soft"]["accuracy_p_vs_best"] == ""
    assert "Welch" in rows["bce"]["significance_test"] and "alpha=0.05" in rows["bce"]["significance_test"]

    tex = (root / "report.tex").read_text()
    assert r"^{\dagger}" in tex and "Welch" in tex and r"$\alpha$ = 0.05" in tex


def test_best_group_with_one_seed_marks_nothing(tmp_path):
    values = {"bce": [0.99], "f1_soft": [0.80, 0.82, 0.81], "fbeta_soft": [0.70, 0.71, 0.72]}
    root = write_sweep(tmp_path / "sweep", values)
    result = reduce_runs(root, plots=False)
    assert not any("accuracy" in g.pvalue for g in result.groups)
    assert "Not tested (fewer than 2 seeds): bce" in (root / "report.md").read_text()


def test_constant_samples():
    same = significance.compare_to_best([np.array([0.5, 0.5]), np.array([0.5, 0.5])])
    assert same.pvalue == {} and same.untested == [1]  # no variance, no difference: no p-value, no mark
    apart = significance.compare_to_best([np.array([0.4, 0.4]), np.array([0.5, 0.5])])
    assert apart.best == 1 and apart.pvalue == {0: 0.0} and apart.differs == {0: True}


def test_tuned_table_says_its_threshold_and_matches_the_runs(tmp_path):
    root = write_sweep(tmp_path / "sweep", {k: v for k, v in VALUES.items() if len(v) > 1})
    result = reduce_runs(root, plots=False)
    md = (root / "report.md").read_text()
    assert "At the fixed decision threshold t = 0.5" in md and "At the validation-tuned threshold t\\*" in md
    assert "| Model | Accuracy | Fβ | Precision | Recall | t* | n |" in md
    for g in result.groups:
        runs = [json.loads((r.path / "metrics.json").read_text()) for r in g.runs]
        for key in ("fbeta_tuned", "threshold_tuned"):
            values = np.array([r[key] for r in runs])
            assert g.mean[key] == pytest.approx(values.mean()) and g.std[key] == pytest.approx(values.std(ddof=1))
    assert "threshold_tuned_mean" in (root / "report.csv").read_text().splitlines()[0]
    assert r"$t^*$" in (root / "report.tex").read_text()


def test_old_runs_without_tuned_keys_or_provenance_still_reduce(tmp_path, capsys):
    root = write_sweep(tmp_path / "sweep", {"bce": [0.9, 0.91], "f1_soft": [0.8, 0.81]}, tuned=False)
    assert main(["reduce", str(root), "--no-plots"]) == 0
    md = (root / "report.md").read_text()
    assert "validation-tuned" not in md and "| t* |" not in md  # the table is left out, not filled with dashes
    rows = list(csv.DictReader((root / "report.csv").open()))
    assert all(r["fbeta_tuned_mean"] == "" and r["fbeta_tuned_n"] == "0" for r in rows)
    assert "unknown ×2" in md and "warning" not in capsys.readouterr().err
    # a new run next to old ones: the tuned table appears, the old-only group shows "–"
    cfg = load_config().replace(**{"loss.name": "fbeta_soft", "seed": 0, "name": "t/fbeta_soft"})
    make_run(root / "fbeta_soft" / "seed0", cfg, predictions=False)
    reduce_runs(root, plots=False)
    tuned = (root / "report.md").read_text().split("validation-tuned threshold", 1)[1]
    bce_row = next(line for line in tuned.splitlines() if line.startswith("| bce |"))
    assert bce_row.count("| – |") >= 4


def _set_code(run: Path, commit: str, tf: str, dirty: bool = False) -> None:
    m = json.loads((run / "metrics.json").read_text())
    m["provenance"] = {"lenshpc": {"version": "0.1.0", "commit": commit, "dirty": dirty},
                       "packages": {"tensorflow": tf, "lenshpc": "0.1.0"}}
    (run / "metrics.json").write_text(json.dumps(m))


def test_reduce_warns_when_a_group_mixes_code_versions(tmp_path, capsys):
    root = write_sweep(tmp_path / "sweep", {"bce": [0.9, 0.91, 0.92], "f1_soft": [0.8, 0.81]})
    _set_code(root / "bce" / "seed0", "a" * 40, "2.21.0")
    _set_code(root / "bce" / "seed1", "b" * 40, "2.21.0")
    _set_code(root / "bce" / "seed2", "b" * 40, "2.20.0")
    for s in (0, 1):
        _set_code(root / "f1_soft" / f"seed{s}", "c" * 40, "2.21.0")
    assert main(["reduce", str(root), "--no-plots", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "group 'bce' mixes lenshpc versions (0.1.0 @bbbbbbb ×2, 0.1.0 @aaaaaaa ×1)" in err
    assert "group 'bce' mixes tensorflow versions" in err and "f1_soft" not in err
    md = (root / "report.md").read_text()
    assert "## Warnings" in md and "group 'bce' mixes lenshpc versions" in md
    assert "| f1_soft | 0.1.0 @ccccccc ×2 | 2.21.0 ×2 |" in md
    # a dirty tree is not its clean commit
    _set_code(root / "f1_soft" / "seed1", "c" * 40, "2.21.0", dirty=True)
    result = reduce_runs(root, plots=False)
    assert any("f1_soft" in w and "(dirty) ×1" in w for w in result.warnings)
