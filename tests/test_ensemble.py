"""Ensembles: Nelder–Mead weights, averages/committees, ensemble run directories, the CLI and load_scorer.

Uses the session's ``tiny_sweep`` (a real finished sweep: bce / fbeta_soft / f1_soft × seeds 0–1).
Nothing here modifies it: ensemble outputs go to ``tmp_path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lenshpc.analysis.ensembles.fit import apply_weights, average_weights, fit_nelder_mead, mse, softmax


# ---------------------------------------------------------------------- weights on a fixed matrix
def _matrix(seed: int = 0, n: int = 3000, noise=(0.25, 0.45, 0.7)):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(float)
    X = np.stack([np.clip(y + rng.normal(0, s, n), 0, 1) for s in noise], axis=1)
    return X, y


def test_thesis_variant_fits_the_unconstrained_least_squares_optimum_then_applies_softmax():
    X, y = _matrix()
    fit = fit_nelder_mead(X, y, variant="thesis", seed=3, name="NM3")
    lstsq = np.linalg.lstsq(X, y, rcond=None)[0]  # the exact minimiser of MSE(y, X·w), w unconstrained
    assert fit.success and fit.iterations <= 200 * 3
    np.testing.assert_allclose(fit.theta, lstsq, atol=1e-4)
    np.testing.assert_allclose(fit.weights, softmax(lstsq), atol=1e-4)
    assert fit.fun == pytest.approx(mse(y, X, lstsq), abs=1e-9)
    # the documented consequence: softmax pulls the applied weights towards uniform and costs MSE
    assert np.ptp(fit.weights) < np.ptp(fit.theta)
    assert fit.mse_applied > fit.fun + 1e-4
    assert fit.options == {"xatol": 1e-6, "fatol": 1e-6, "maxiter": 600}


def test_simplex_variant_matches_an_independent_constrained_optimiser():
    from scipy.optimize import minimize

    X, y = _matrix(seed=1)
    fit = fit_nelder_mead(X, y, variant="simplex", seed=0, name="NM3_simplex")
    ref = minimize(lambda w: mse(y, X, w), np.full(3, 1 / 3), method="SLSQP", bounds=[(0, 1)] * 3,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-15})
    assert ref.success and fit.success
    assert np.all(np.asarray(fit.weights) >= 0) and sum(fit.weights) == pytest.approx(1.0)
    np.testing.assert_allclose(fit.weights, ref.x, atol=2e-3)
    assert fit.mse_applied == pytest.approx(ref.fun, rel=1e-5)
    assert fit.mse_applied == pytest.approx(fit.fun, abs=1e-12)  # fitted as applied


def test_seeded_start_is_reproducible_and_keyed_by_seed_and_name():
    X, y = _matrix(seed=2)
    a = fit_nelder_mead(X, y, variant="thesis", seed=4, name="NM3")
    b = fit_nelder_mead(X, y, variant="thesis", seed=4, name="NM3")
    assert a.theta0 == b.theta0 and a.theta == b.theta and a.weights == b.weights
    assert fit_nelder_mead(X, y, seed=5, name="NM3").theta0 != a.theta0
    assert fit_nelder_mead(X, y, seed=4, name="NM6").theta0 != a.theta0


def test_average_is_the_plain_mean():
    X, y = _matrix(seed=3)
    fit = average_weights(X, y)
    assert fit.weights == [1 / 3] * 3
    np.testing.assert_allclose(apply_weights(X, fit.weights), X.mean(axis=1), atol=1e-6)


# ---------------------------------------------------------------------- the CLI on a real sweep
def _spec(tmp_path: Path, runs: Path, ensembles: list[dict], seeds="0-1", name="spec.yaml", **top) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "t", "runs": str(runs), "out": str(tmp_path / "out"), "seeds": seeds,
                                    **top, "ensembles": ensembles}, sort_keys=False))
    return path


def _cli(*argv: str) -> int:
    from lenshpc.cli import main

    return main([*argv])


def _read(path: Path, group: str):
    from lenshpc.train import read_predictions

    return read_predictions(path / "predictions.h5", group)


ENSEMBLES = [
    {"name": "NM3", "method": "nelder_mead", "variant": "thesis", "members": ["bce", "fbeta_soft", "f1_soft"]},
    {"name": "NM2_simplex", "method": "nelder_mead", "variant": "simplex", "members": ["bce", "f1_soft"]},
    {"name": "avg3", "method": "average", "members": ["bce", "fbeta_soft", "f1_soft"]},
]


@pytest.fixture(scope="module")
def ensembled(tiny_sweep, tmp_path_factory):
    """The CLI run once over tiny_sweep (3 ensembles × seeds 0–1); returns (spec, out, console text)."""
    tmp = tmp_path_factory.mktemp("ens")
    spec = _spec(tmp, tiny_sweep, ENSEMBLES)
    assert _cli("ensemble", str(spec), "--quiet") == 0
    return spec, tmp / "out"


def test_cli_writes_complete_ensemble_run_dirs_with_scores_equal_to_X_w(ensembled, tiny_sweep):
    from lenshpc.metrics import at_threshold, best_fbeta_threshold, summary

    _, out = ensembled
    for e in ENSEMBLES:
        for k in (0, 1):
            rd = out / e["name"] / f"seed{k}"
            for f in ("config.yaml", "metrics.json", "predictions.h5", "ensemble.json", "DONE"):
                assert (rd / f).is_file(), (rd, f)
            info = json.loads((rd / "ensemble.json").read_text())
            metrics = json.loads((rd / "metrics.json").read_text())
            assert info["method"] == e["method"] and info["member_names"] == e["members"]
            assert info["members"] == [str((tiny_sweep / m / f"seed{k}").resolve()) for m in e["members"]]
            assert info["member_sources"] == ["predictions"] * len(e["members"])  # same seed + data: no re-scoring
            w = np.asarray(info["weights"])
            assert w.sum() == pytest.approx(1.0) and np.all(w > 0)
            if e["method"] == "nelder_mead":
                assert info["optimiser"]["iterations"] > 0 and info["optimiser"]["options"]["xatol"] == 1e-6
            for group in ("val", "test"):
                members = [_read(tiny_sweep / m / f"seed{k}", group) for m in e["members"]]
                X = np.stack([p["scores"] for p in members], axis=1).astype(np.float64)
                got = _read(rd, group)
                np.testing.assert_allclose(got["scores"], X @ w, atol=1e-6)
                np.testing.assert_array_equal(got["labels"], members[0]["labels"])
            test = _read(rd, "test")
            assert set(test["meta"]) == set(_read(tiny_sweep / "bce" / f"seed{k}", "test")["meta"])  # infocontent
            ref = summary(test["labels"], test["scores"], beta=metrics["beta"], threshold=metrics["threshold"])
            for key in ("accuracy", "fbeta", "precision", "recall", "auroc", "tpr0", "tpr10"):
                assert metrics[key] == pytest.approx(ref[key])
            assert metrics["seed"] == k and metrics["n_val"] == len(_read(rd, "val")["labels"])
            # the threshold tuned on the ensemble's own validation scores, applied to its test scores
            val = _read(rd, "val")
            t_star = best_fbeta_threshold(val["labels"], val["scores"], beta=metrics["beta"])[0]
            assert metrics["threshold_tuned"] == pytest.approx(t_star)
            at = at_threshold(test["labels"], test["scores"], metrics["threshold_tuned"], beta=metrics["beta"])
            assert metrics["fbeta_tuned"] == pytest.approx(at["fbeta"]) and metrics["confusion_tuned"] == at["confusion"]
            prov = metrics["provenance"]
            assert prov["command"] == "ensemble" and sorted(prov["members"]) == sorted(e["members"])
            assert all(p["lenshpc"]["version"] for p in prov["members"].values())
            assert metrics["config"]["ensemble.name"] == e["name"]
            assert yaml.safe_load((rd / "config.yaml").read_text())["name"] == e["name"]
            # the thesis variant's weights are softmax(theta): recompute from the optimiser's record
            if e.get("variant") == "thesis":
                np.testing.assert_allclose(w, softmax(info["optimiser"]["theta"]), atol=1e-12)


def test_report_has_mean_std_rows_for_ensembles_and_members(ensembled):
    import csv

    _, out = ensembled
    md = (out / "report.md").read_text()
    for label in ("NM3", "NM2_simplex", "avg3", "bce (member)", "fbeta_soft (member)", "f1_soft (member)"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        assert row.count("±") == 7, row  # 7 metrics, mean ± std over the 2 ensemble runs
    assert "## Weights" in md and "ddof = 1" in md
    rows = {r["group"]: r for r in csv.DictReader((out / "report.csv").open())}
    nm3 = [json.loads((out / "NM3" / f"seed{k}" / "metrics.json").read_text())["fbeta"] for k in (0, 1)]
    assert float(rows["NM3"]["fbeta_mean"]) == pytest.approx(np.mean(nm3))
    assert float(rows["NM3"]["fbeta_std"]) == pytest.approx(np.std(nm3, ddof=1))
    assert rows["NM3"]["n_runs"] == "2" and rows["bce (member)"]["kind"] == "member"
    assert len(rows["NM3"]["weights_mean"].split()) == 3
    assert (out / "report.tex").read_text().count(r"\pm") >= 6 * 7
    for plot in ("plots/fbeta_curves.png", "plots/NM3/fbeta_curves.png", "plots/members/fbeta_curves.png",
                 "plots/roc_curves.png"):
        assert (out / plot).is_file(), plot


def test_rerun_skips_and_force_recomputes(ensembled, capsys):
    spec, out = ensembled
    done = out / "NM3" / "seed0" / "DONE"
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/DONE")}
    capsys.readouterr()
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots") == 0
    assert "0 ensemble run(s) computed, 6 already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/DONE")} == before
    weights = json.loads((out / "NM3" / "seed0" / "ensemble.json").read_text())["weights"]
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots", "--force", "--only", "NM3", "--seeds", "0") == 0
    assert "1 ensemble run(s) computed" in capsys.readouterr().out
    assert done.stat().st_mtime_ns != before[done]
    assert json.loads((out / "NM3" / "seed0" / "ensemble.json").read_text())["weights"] == weights  # seeded


def test_reduce_and_status_work_on_the_ensemble_output(ensembled):
    from lenshpc.hpc.status import collect_status
    from lenshpc.report import reduce_runs

    _, out = ensembled
    result = reduce_runs(out, out=out / "reduced", plots=False)
    assert [g.label for g in result.groups] == ["NM3", "NM2_simplex", "avg3"]
    assert all(g.n_runs == 2 for g in result.groups)
    assert {r.state for r in collect_status(out)} == {"done"}


def test_bad_spec_key_suggests_the_nearest_and_exits_2(tiny_sweep, tmp_path, capsys):
    spec = _spec(tmp_path, tiny_sweep, [{"name": "NM3", "method": "nelder_mead", "membres": ["bce", "f1_soft"]}])
    assert _cli("ensemble", str(spec)) == 2
    err = capsys.readouterr().err
    assert "ensembles[0].membres" in err and "Did you mean 'ensembles[0].members'" in err
    top = _spec(tmp_path, tiny_sweep, ENSEMBLES[:1], name="top.yaml", seeeds="0-1")
    assert _cli("ensemble", str(top)) == 2
    assert "Did you mean 'seeds'" in capsys.readouterr().err
    bad = _spec(tmp_path, tiny_sweep, [{"name": "X", "method": "nelder_meed", "members": ["bce", "f1_soft"]}],
                name="bad.yaml")
    assert _cli("ensemble", str(bad)) == 2
    assert "nelder_mead" in capsys.readouterr().err


def test_missing_members_are_reported_clearly(tiny_sweep, tmp_path, capsys):
    typo = _spec(tmp_path, tiny_sweep, [{"name": "NM", "method": "nelder_mead", "members": ["bce", "f1_sof"]}])
    assert _cli("ensemble", str(typo)) == 2
    err = capsys.readouterr().err
    assert "member 'f1_sof' not found" in err and "Did you mean 'f1_soft'" in err
    # seed 2 was never trained: that ensemble run is skipped and named, seeds 0-1 still run
    spec = _spec(tmp_path, tiny_sweep, [{"name": "NM", "method": "average", "members": ["bce", "f1_soft"]}],
                 seeds="0-2", name="seeds.yaml")
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots") == 2
    text = capsys.readouterr().out
    assert "skipped NM/seed2" in text and "bce' seed 2" in text and "does not exist" in text
    assert (tmp_path / "out" / "NM" / "seed1" / "DONE").is_file()
    assert "missing 2" in (tmp_path / "out" / "report.md").read_text()


def test_committee_rescores_other_seeds_once_and_caches(tiny_sweep, tmp_path, capsys):
    spec = _spec(tmp_path, tiny_sweep, [{"name": "committee_bce", "method": "average", "committee": "bce"}])
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots") == 0
    rd = tmp_path / "out" / "committee_bce" / "seed0"
    info = json.loads((rd / "ensemble.json").read_text())
    assert info["member_names"] == ["bce/seed0", "bce/seed1"]
    assert info["member_sources"] == ["predictions", "rescored"]  # seed 1 scored on seed 0's val/test sets
    assert (rd / "members" / "bce__seed1.h5").is_file()
    own = _read(tiny_sweep / "bce" / "seed0", "test")
    got = _read(rd, "test")
    np.testing.assert_array_equal(got["labels"], own["labels"])
    import h5py

    with h5py.File(rd / "members" / "bce__seed1.h5") as fh:
        seed1 = fh["test/scores"][()]
    np.testing.assert_allclose(got["scores"], (own["scores"] + seed1.astype(np.float64)) / 2, atol=1e-6)
    # --force recomputes the committee but takes seed 1's scores from the cache (no model is loaded)
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots", "--force") == 0
    info2 = json.loads((rd / "ensemble.json").read_text())
    assert info2["member_sources"] == ["predictions", "cache"]
    np.testing.assert_array_equal(_read(rd, "test")["scores"], got["scores"])
    assert "committee_bce" in (tmp_path / "out" / "report.md").read_text()


def test_load_scorer_reproduces_predictions_of_a_run_and_an_nm_ensemble(ensembled, tiny_sweep):
    from lenshpc.analysis.ensembles.members import Scorer
    from lenshpc.analysis.ensembles.scorer import load_scorer
    from lenshpc.config import load_config
    from lenshpc.data.chunks import ChunkEngine
    from lenshpc.errors import UserError

    _, out = ensembled
    run = tiny_sweep / "bce" / "seed0"
    engine = ChunkEngine(load_config(run / "config.yaml"), load_train=False)
    x, y, _ = engine.test()
    for path in (run, out / "NM3" / "seed0"):
        scorer = load_scorer(path)
        assert isinstance(scorer, Scorer) and scorer.image_shape == tuple(x.shape[1:])
        got = scorer.score(x, batch_size=256)
        assert got.dtype == np.float32 and got.shape == (len(x),)
        np.testing.assert_allclose(got, _read(path, "test")["scores"], atol=1e-5)
    with pytest.raises(UserError, match="neither a finished run directory"):
        load_scorer(out)


def test_dry_run_shows_members_and_the_dynamic_ensembler_config(tiny_sweep, tmp_path, capsys):
    spec = _spec(tmp_path, tiny_sweep, [
        {"name": "IDE3", "method": "input_dependent", "members": ["bce", "fbeta_soft", "f1_soft"],
         "model": {"name": "tiny_resnet"}, "train": {"chunks": 7, "learning_rate": 3.0e-4},
         "set": {"data.chunk_size": 64}},
        {"name": "NM3", "method": "nelder_mead", "members": ["bce", "fbeta_soft", "f1_soft"]}])
    assert _cli("ensemble", str(spec), "--dry-run") == 0
    text = capsys.readouterr().out
    assert "IDE3/seed1" in text and "NM3/seed0" in text and "to compute" in text
    assert "model tiny_resnet, 7 chunks of 64, lr 0.0003" in text
    assert str(tiny_sweep / "f1_soft" / "seed1") in text
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_input_dependent_entry_trains_through_train_ide_with_the_spec_overrides(tiny_sweep, tmp_path):
    """The IDE dispatch (debug executor = in this process): member 0's config + overrides + seed + name."""
    from lenshpc.analysis.ensembles.scorer import load_scorer

    spec = _spec(tmp_path, tiny_sweep, [
        {"name": "IDE2", "method": "input_dependent", "members": ["bce", "f1_soft"],
         "model": {"name": "tiny_resnet"}, "train": {"chunks": 1, "checkpoint_every": 1},
         "set": {"data.chunk_size": 64}}], seeds=[1])
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots") == 0
    rd = tmp_path / "out" / "IDE2" / "seed1"
    assert (rd / "DONE").is_file()
    cfg = yaml.safe_load((rd / "config.yaml").read_text())
    assert (cfg["name"], cfg["seed"], cfg["train"]["chunks"], cfg["data"]["chunk_size"]) == ("IDE2", 1, 1, 64)
    assert json.loads((rd / "ensemble.json").read_text())["method"] == "input_dependent"
    assert "| IDE2 |" in (tmp_path / "out" / "report.md").read_text()
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [r["id"] for r in sweep["runs"]] == ["IDE2/seed1"]
    assert type(load_scorer(rd)).__name__ == "IDEScorer"  # load_scorer delegates to lenshpc.analysis.ensembles.ide


def test_shipped_ensemble_specs_parse(repo_root, tmp_path):
    """configs/ensembles/*.yaml are valid specs (unknown keys, bad methods or members would fail here)."""
    from lenshpc.analysis.ensembles.spec import load_ensemble_spec

    files = sorted((repo_root / "configs" / "ensembles").glob("*.yaml"))
    files.append(repo_root / "lenshpc" / "resources" / "quickstart_ensembles.yaml")
    assert {f.stem for f in files} >= {"thesis_table52", "quickstart_ensembles"}
    for path in files:
        spec = load_ensemble_spec(path, runs=tmp_path, out=tmp_path / "out")
        assert spec.ensembles and spec.seeds, path
        methods = {e.method for e in spec.ensembles}
        assert methods >= {"nelder_mead", "input_dependent", "average"}, (path, methods)


def test_status_suggests_rerunning_the_ensemble_for_failed_runs(ensembled, tmp_path):
    """`lenshpc status` on an ensemble output points at `lenshpc ensemble SPEC`, not at `lenshpc sweep`."""
    import shutil

    from lenshpc.hpc.status import collect_status, format_status

    spec, out = ensembled
    work = tmp_path / "out"
    shutil.copytree(out, work)
    run = work / "NM3" / "seed1"
    (run / "DONE").unlink()
    (run / "FAILED").write_text("UserError: a member vanished\n")
    text = format_status(collect_status(work), work)
    assert f"lenshpc ensemble {spec.resolve()}" in text and "--retry-failed" not in text


def test_input_dependent_rerun_skips_and_force_retrains_from_scratch(tiny_sweep, tmp_path, capsys):
    """IDE entries are ordinary sweep runs: a re-run skips the DONE one (no job), --force trains it again from
    chunk 0 to the same (deterministic) result; sweep.json keeps kind 'ensemble' and the job history."""
    spec = _spec(tmp_path, tiny_sweep, [
        {"name": "IDE2", "method": "input_dependent", "members": ["bce", "f1_soft"],
         "model": {"name": "tiny_resnet"}, "train": {"chunks": 1, "checkpoint_every": 1},
         "set": {"data.chunk_size": 32}}], seeds=[0])
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots") == 0
    rd, sweep_json = tmp_path / "out" / "IDE2" / "seed0", tmp_path / "out" / "sweep.json"
    first, done = json.loads((rd / "metrics.json").read_text()), (rd / "DONE").stat().st_mtime_ns
    capsys.readouterr()
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots") == 0
    assert "0 ensemble run(s) computed, 1 already done" in capsys.readouterr().out
    assert len(json.loads(sweep_json.read_text())["runs"][0]["jobs"]) == 1  # nothing submitted
    assert _cli("ensemble", str(spec), "--quiet", "--no-plots", "--force") == 0
    assert "1 ensemble run(s) computed" in capsys.readouterr().out
    again = json.loads((rd / "metrics.json").read_text())
    assert (rd / "DONE").stat().st_mtime_ns > done and "resuming" not in (rd / "train.log").read_text()
    assert {k: again[k] for k in ("auroc", "fbeta", "selection")} == {k: first[k] for k in ("auroc", "fbeta",
                                                                                          "selection")}
    record = json.loads(sweep_json.read_text())
    assert record["kind"] == "ensemble" and len(record["runs"][0]["jobs"]) == 2
