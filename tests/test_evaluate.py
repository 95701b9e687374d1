"""``lenshpc evaluate``: re-scoring a run reproduces it; other datasets; errors.

Runs are real (tiny_resnet on the simulated ``small_population``, a couple of chunks).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenshpc.config import load_config

SCORED = ("accuracy", "precision", "recall", "fbeta", "auroc", "tpr0", "tpr10", "i_auc", "soft_fbeta", "confusion",
          "curves", "n_test", "seed", "threshold_tuned", "accuracy_tuned", "fbeta_tuned", "precision_tuned",
          "recall_tuned", "confusion_tuned", "threshold_tuning")


@pytest.fixture(scope="module")
def finished_run(repo_root, small_population, tmp_path_factory):
    from lenshpc.train import run_training

    cfg = load_config(repo_root / "configs" / "tiny.yaml",
                      overrides=[f"data.path={small_population}", "data.chunk_size=128", "data.val_size=64",
                                 "data.test_size=0", "train.chunks=2", "train.batch_size=32",
                                 "train.patience=0"])
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    return run_dir, run_training(cfg, run_dir, show_progress=False)


def test_evaluate_reproduces_the_runs_metrics(finished_run):
    from lenshpc.train import evaluate_run, read_predictions

    run_dir, metrics = finished_run
    result = evaluate_run(run_dir)
    out = run_dir / f"eval-{result['data'].rsplit('/', 1)[-1].removesuffix('.h5')}"
    assert json.loads((out / "metrics.json").read_text()) == result
    for key in SCORED:
        assert result[key] == metrics[key], key
    mine, theirs = read_predictions(out / "predictions.h5", "test"), read_predictions(run_dir / "predictions.h5")
    np.testing.assert_array_equal(mine["scores"], theirs["scores"])
    np.testing.assert_array_equal(mine["labels"], theirs["labels"])
    assert sorted(mine["meta"]) == sorted(theirs["meta"])


def test_evaluate_cli_on_another_population(finished_run, tmp_path, capsys):
    """Another population file: its own fixed test set is scored, output goes where --out says."""
    from lenshpc.cli import main
    from lenshpc.data.simulate import simulate_population

    run_dir, _ = finished_run
    other = simulate_population(tmp_path / "other.h5", n_lenses=40, n_sources=60, n_negatives=40, seed=7, workers=1,
                                size=64, progress=False)
    out = tmp_path / "scored"
    assert main(["evaluate", str(run_dir), "--data", str(other), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "auroc" in printed and "at t = 0.5" in printed
    result = json.loads((out / "metrics.json").read_text())
    assert result["data"] == str(other) and result["data_kind"] == "population" and result["n_test"] > 0
    assert (out / "predictions.h5").is_file()
    # the run's own t* (tuned on the run's validation set), applied to the other file's test set
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert result["threshold_tuned"] == run_metrics["threshold_tuned"]
    if result["threshold_tuned"] is not None:
        assert f"at t* = {result['threshold_tuned']:.4g}" in printed
    prov = result["provenance"]
    assert prov["command"] == "evaluate" and prov["data"]["file"]["path"] == str(other.resolve())
    assert prov["source_run"]["lenshpc"] == run_metrics["provenance"]["lenshpc"]


def test_labelled_dataset_trains_and_evaluates_through_the_same_loop(repo_root, small_population, tmp_path):
    """Challenge-style labelled data: train 2 chunks, then score the test split and every image (--split all)."""
    from lenshpc.data import transforms
    from lenshpc.data.format import open_dataset, write_labelled
    from lenshpc.train import evaluate_run, run_training

    with open_dataset(small_population) as ds:
        lenses, sources, negatives = ds.read("lenses")[:60], ds.read("sources")[:60], ds.read("negatives")[:60]
    positives = transforms.merge(lenses, sources, np.full(60, 0.5, np.float32))
    labelled = tmp_path / "labelled.h5"
    write_labelled(labelled, np.concatenate([positives, negatives]), np.r_[np.ones(60), np.zeros(60)].astype(np.uint8),
                   ids=np.arange(120), seed=3)
    cfg = load_config(repo_root / "configs" / "tiny.yaml",
                      overrides=[f"data.path={labelled}", "data.chunk_size=64", "data.val_size=12",
                                 "train.chunks=2", "selection.metric=val_auroc"])
    metrics = run_training(cfg, tmp_path / "run", show_progress=False)
    assert metrics["n_test"] == 12  # the 10 % test split
    again = evaluate_run(tmp_path / "run")
    assert again["auroc"] == metrics["auroc"] and again["split"] == "test"
    everything = evaluate_run(tmp_path / "run", labelled, split="all", out=tmp_path / "all")
    assert everything["n_test"] == 120 and everything["data_kind"] == "labelled"


@pytest.mark.parametrize("setup,args,message", [
    ("empty", [], "not a run directory"),
    ("unfinished", [], "no model.keras"),
    ("finished", ["--data", "{tmp}/missing.h5"], "data file not found"),
    ("finished", ["--split", "all"], "population dataset"),
])
def test_evaluate_user_errors_exit_2(finished_run, tmp_path, capsys, setup, args, message):
    from lenshpc.cli import main

    run_dir = {"empty": tmp_path, "finished": finished_run[0]}.get(setup)
    if setup == "unfinished":
        run_dir = tmp_path / "unfinished"
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text((finished_run[0] / "config.yaml").read_text())
    code = main(["evaluate", str(run_dir), *[a.replace("{tmp}", str(tmp_path)) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_predict_scores_compiles_once_per_model_and_shape():
    """Scoring block after block (lenshpc rank, gradcam) reuses one trace: no per-call retracing."""
    import lenshpc.models as models
    from lenshpc.train.evaluate import _predict_step, predict_scores

    model = models.build("tiny_resnet", (32, 32, 1))
    x = np.random.default_rng(0).random((10, 32, 32, 1), dtype=np.float32)
    full = predict_scores(model, x, batch_size=4)
    parts = np.concatenate([predict_scores(model, x[:7]), predict_scores(model, x[7:])])
    np.testing.assert_allclose(full, parts, rtol=1e-6, atol=1e-7)
    assert _predict_step(model, (32, 32, 1)).experimental_get_tracing_count() == 1
