"""The chunk training loop: run dirs, learning, exact resume, selection, early stopping, seeds, CLI errors.

Everything runs for real on the CPU: the project's simulator makes the data (``small_population``,
64×64 px), the chunk engine synthesises chunks, ``tiny_resnet`` trains with a real optimizer.
Sizes are small so the whole module takes about a minute or two on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from lenshpc.config import load_config
from lenshpc.errors import Preempted, UserError

LOSSES = ("bce", "f1_soft", "f1_double_soft", "fbeta_soft")
SELECTIONS = ("val_loss", "val_fbeta_auc", "val_soft_fbeta", "val_accuracy", "val_auroc")
RUN_FILES = ("config.yaml", "train.log", "history.csv", "model.keras", "predictions.h5", "metrics.json", "DONE",
             "checkpoint/state.json", "checkpoint/weights.weights.h5", "checkpoint/optimizer.npz",
             "checkpoint/best.weights.h5")


def tiny_cfg(repo_root, data, *overrides, **dotted):
    """configs/tiny.yaml shrunk for unit tests (chunks of 128, validation 64, checkpoint every 2, val_loss)."""
    base = [f"data.path={data}", "data.chunk_size=128", "data.val_size=64", "data.test_size=0", "train.chunks=4",
            "train.checkpoint_every=2", "train.patience=0", "train.batch_size=32", "selection.metric=val_loss",
            "data.alpha_min=0.02", "data.alpha_max=0.3"]
    return load_config(repo_root / "configs" / "tiny.yaml", overrides=[*base, *overrides], **dotted)


def strip_timings(metrics: dict) -> dict:
    """metrics.json without what legitimately differs between invocations: timings and provenance (times, hosts)."""
    return {k: v for k, v in metrics.items() if k not in ("timings", "provenance")}


def model_weights(path):
    from lenshpc.train.evaluate import load_model

    return load_model(path).get_weights()


def history_without_seconds(path):
    from lenshpc.train import read_history

    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(path)]


@pytest.fixture(scope="session")
def straight_run(repo_root, small_population, tmp_path_factory):
    """An uninterrupted 6-chunk run (the reference for resume, selection, seeds and evaluate tests)."""
    from lenshpc.train import run_training

    cfg = tiny_cfg(repo_root, small_population, "train.chunks=6")
    run_dir = tmp_path_factory.mktemp("runs") / "straight"
    metrics = run_training(cfg, run_dir, show_progress=False)
    return cfg, run_dir, metrics


# ----------------------------------------------------------------------- the run directory
def test_run_dir_is_complete(straight_run):
    from lenshpc.train import read_history, read_predictions

    cfg, run_dir, metrics = straight_run
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing"
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == metrics
    for key in ("accuracy", "precision", "recall", "fbeta", "auroc", "tpr0", "tpr10", "i_auc", "soft_fbeta",
                "confusion", "curves", "seed", "selection", "chunks_trained", "stopped_early", "timings", "versions",
                "world_size", "config", "provenance", "threshold_tuned", "accuracy_tuned", "fbeta_tuned",
                "precision_tuned", "recall_tuned", "confusion_tuned", "threshold_tuning"):
        assert key in metrics, key
    assert metrics["chunks_trained"] == 6 and metrics["stopped_early"] is False and metrics["world_size"] == 1
    assert metrics["config"]["train.chunks"] == 6 and metrics["seed"] == cfg.seed
    rows = read_history(run_dir / "history.csv")
    assert [r["chunk"] for r in rows] == list(range(6))
    test = read_predictions(run_dir / "predictions.h5", "test")
    val = read_predictions(run_dir / "predictions.h5", "val")
    assert len(test["scores"]) == len(test["labels"]) == metrics["n_test"]
    assert len(val["scores"]) == metrics["n_val"] == cfg.data.val_size
    assert set(np.unique(test["labels"])) == {0, 1}
    assert all(len(v) == len(test["scores"]) for v in test["meta"].values())
    assert "chunk 6/6" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["next_chunk"] == 6


def test_metrics_carry_the_tuned_threshold_and_provenance(straight_run):
    """t* is the validation set's Fβ maximiser applied to the test set; provenance describes this run."""
    import tensorflow as tf

    import lenshpc
    from lenshpc import metrics as M
    from lenshpc.train import read_predictions

    cfg, run_dir, metrics = straight_run
    val = read_predictions(run_dir / "predictions.h5", "val")
    test = read_predictions(run_dir / "predictions.h5", "test")
    found = M.best_fbeta_threshold(val["labels"], val["scores"], beta=cfg.selection.beta)
    if found is None:
        assert metrics["threshold_tuned"] is None
    else:
        assert metrics["threshold_tuned"] == pytest.approx(found[0], abs=1e-7)
        at = M.at_threshold(test["labels"], test["scores"], metrics["threshold_tuned"], beta=cfg.selection.beta)
        for key in M.TUNED_METRICS:
            assert metrics[f"{key}_tuned"] == pytest.approx(at[key]), key
        assert metrics["threshold_tuning"]["val_fbeta"] == pytest.approx(found[1], abs=1e-6)
    prov = metrics["provenance"]
    assert prov["lenshpc"]["version"] == lenshpc.__version__ and prov["packages"]["tensorflow"] == tf.__version__
    assert prov["packages"] == metrics["versions"] and prov["runtime"] == metrics["runtime"]
    assert prov["world_size"] == 1 and prov["started"] <= prov["ended"] and prov["host"]["hostname"]
    assert prov["data"]["file"]["path"] == str(Path(cfg.data.path).resolve())
    assert prov["data"]["file"]["size"] == Path(cfg.data.path).stat().st_size
    assert prov["data"]["signature"]["seed"] == cfg.seed
    assert prov["data"]["signature"]["data.val_size"] == cfg.data.val_size


def test_done_run_is_skipped(straight_run):
    from lenshpc.train import run_training

    cfg, run_dir, metrics = straight_run
    before = (run_dir / "metrics.json").stat().st_mtime_ns
    assert run_training(cfg, run_dir, show_progress=False) == metrics
    assert (run_dir / "metrics.json").stat().st_mtime_ns == before


def preempt_at(n: int):
    """An ``on_chunk_end`` hook that sends this process SIGUSR1 (what SLURM sends before a time limit) after chunk n."""
    def hook(chunk, _row):
        if chunk == n:
            os.kill(os.getpid(), signal.SIGUSR1)
    return hook


# ----------------------------------------------------------------------- resume
def test_preempt_and_resume_equals_uninterrupted_run(straight_run, tmp_path):
    """SIGUSR1 (what SLURM sends) after chunk 2, then resume: same weights, history and metrics as straight through.

    The signal is real: the chunk hook sends it to this process; the loop's handler must finish the chunk,
    checkpoint (chunk 3 is not a checkpoint_every boundary) and raise Preempted.
    """
    from lenshpc.train import run_training

    cfg, straight_dir, straight_metrics = straight_run
    run_dir = tmp_path / "resumed"

    with pytest.raises(Preempted, match="SIGUSR1"):
        run_training(cfg, run_dir, on_chunk_end=preempt_at(2), show_progress=False)
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["next_chunk"] == 3
    assert not (run_dir / "DONE").exists() and not (run_dir / "FAILED").exists()
    assert signal.getsignal(signal.SIGUSR1) is not None  # handler restored (pytest's default)

    resumed = run_training(cfg, run_dir, show_progress=False)
    assert strip_timings(resumed) == strip_timings(straight_metrics)
    assert history_without_seconds(run_dir / "history.csv") == history_without_seconds(straight_dir / "history.csv")
    for a, b in zip(model_weights(run_dir / "model.keras"), model_weights(straight_dir / "model.keras")):
        np.testing.assert_array_equal(a, b)
    assert "resuming" in (run_dir / "train.log").read_text()


def test_resume_from_periodic_checkpoint_after_a_crash(straight_run, tmp_path):
    """A crash between checkpoints (no signal): the chunks after the last checkpoint are redone identically.

    Resuming with a changed config is refused in between (it would not be the same run).
    """
    from lenshpc.train import run_training

    cfg, straight_dir, straight_metrics = straight_run
    run_dir = tmp_path / "crashed"

    def crash_in_chunk_4(chunk, row):
        if chunk == 4:
            raise RuntimeError("node died")

    with pytest.raises(RuntimeError, match="node died"):
        run_training(cfg, run_dir, on_chunk_end=crash_in_chunk_4, show_progress=False)
    assert (run_dir / "FAILED").read_text().startswith("RuntimeError: node died")
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["next_chunk"] == 4
    with pytest.raises(UserError, match="different config.*learning_rate"):
        run_training(cfg.replace(**{"train.learning_rate": 0.01}), run_dir, show_progress=False)
    resumed = run_training(cfg, run_dir, show_progress=False)
    assert not (run_dir / "FAILED").exists()
    assert strip_timings(resumed) == strip_timings(straight_metrics)


# ----------------------------------------------------------------------- selection and early stopping
def test_model_selection_keeps_the_best_chunk(straight_run):
    from lenshpc import losses
    from lenshpc.train import read_history, read_predictions

    cfg, run_dir, metrics = straight_run
    rows = read_history(run_dir / "history.csv")
    best = None
    for row in rows:  # val_loss: a row is selected iff it is strictly below every earlier one
        improved = best is None or row["val_loss"] < best
        assert row["selected"] == improved, row
        best = row["val_loss"] if improved else best
    best_row = min(rows, key=lambda r: (r["val_loss"], r["chunk"]))
    assert metrics["selection"]["best_chunk"] == best_row["chunk"]
    assert metrics["selection"]["best_score"] == best_row["val_loss"]
    # The saved model is the best chunk's: its validation predictions reproduce that chunk's validation loss.
    val = read_predictions(run_dir / "predictions.h5", "val")
    loss = float(losses.get(cfg.loss.name)(val["labels"].astype(np.float32), val["scores"]))
    assert loss == pytest.approx(best_row["val_loss"], rel=1e-6)


def test_early_stopping_stops(repo_root, small_population, tmp_path):
    """With lr = 0 nothing improves after the first chunk: patience 2 stops the run after chunk 2."""
    from lenshpc.train import read_history, run_training

    cfg = tiny_cfg(repo_root, small_population, "train.chunks=12", "train.patience=2", "train.learning_rate=0",
                   "selection.metric=val_accuracy", "model.name=tiny_resnet")
    metrics = run_training(cfg, tmp_path / "early", show_progress=False)
    rows = read_history(tmp_path / "early" / "history.csv")
    assert metrics["stopped_early"] is True
    assert metrics["chunks_trained"] == len(rows) == metrics["selection"]["best_chunk"] + 1 + 2 < 12
    assert [r["selected"] for r in rows][-2:] == [False, False]
    assert "early stopping" in (tmp_path / "early" / "train.log").read_text()


def test_selector_direction_and_patience():
    from lenshpc.train import Selector

    s = Selector(metric="val_loss", patience=2, maximise=False)
    assert [s.update(i, v) for i, v in enumerate([0.5, 0.4, 0.4, float("nan"), 0.3])] == [True, True, False, False,
                                                                                            True]
    assert (s.best_chunk, s.best_score, s.since_best, s.should_stop) == (4, 0.3, 0, False)
    s.update(5, 0.9)
    s.update(6, 0.9)
    assert s.should_stop
    m = Selector(metric="val_auroc", patience=0, maximise=True)
    assert m.update(0, 0.7) and not m.update(1, 0.6) and m.update(2, 0.8)
    for _ in range(100):
        m.update(3, 0.1)
    assert not m.should_stop  # patience 0 = off
    assert Selector.from_state(m.state()) == m


# ----------------------------------------------------------------------- seeds
def test_same_seed_same_metrics_different_seed_different(straight_run, tmp_path):
    from lenshpc.train import run_training

    cfg, _, straight_metrics = straight_run
    again = run_training(cfg, tmp_path / "again", show_progress=False)
    assert strip_timings(again) == strip_timings(straight_metrics)
    other = run_training(cfg.replace(seed=cfg.seed + 1, **{"train.chunks": 2}), tmp_path / "other",
                         show_progress=False)
    assert other["seed"] == cfg.seed + 1
    first_two = history_without_seconds(tmp_path / "again" / "history.csv")[:2]
    assert [r["train_loss"] for r in history_without_seconds(tmp_path / "other" / "history.csv")] != \
        [r["train_loss"] for r in first_two]


# ----------------------------------------------------------------------- learning
@pytest.mark.slow
def test_tiny_resnet_learns_to_find_lenses(repo_root, tmp_path):
    """A short CPU run separates mock lenses from hard non-lenses on the fixed test set (AUROC > 0.9).

    Needs more distinct galaxies than ``small_population`` (with 100 lenses the network memorises galaxy
    identities instead of arcs), so it simulates 800 of each at 48×48 px; brighter arcs (α 0.3–0.8) and
    selection on validation AUROC keep the run to ~80 small chunks (about 20 s of training on 2 cores).
    """
    from lenshpc.data.simulate import simulate_population
    from lenshpc.train import run_training

    data = simulate_population(tmp_path / "population.h5", n_lenses=800, n_sources=800, n_negatives=800, seed=4,
                               workers=2, size=48, progress=False)
    # configs/tiny.yaml as shipped, but for the data path and fewer checkpoints.
    cfg = load_config(repo_root / "configs" / "tiny.yaml", overrides=[f"data.path={data}", "train.checkpoint_every=20",
                                                                      "train.patience=0"])
    metrics = run_training(cfg, tmp_path / "learn", show_progress=False)
    assert metrics["n_test"] >= 150
    assert metrics["auroc"] > 0.9, metrics["auroc"]
    assert metrics["accuracy"] > 0.7, metrics["accuracy"]


# ----------------------------------------------------------------------- every loss, selection metric and model
@pytest.mark.parametrize("loss,selection", list(zip(LOSSES + ("bce",), SELECTIONS)))
def test_every_loss_and_selection_metric_makes_a_complete_run(repo_root, small_population, tmp_path, loss, selection):
    from lenshpc.train import read_history, run_training

    cfg = tiny_cfg(repo_root, small_population, "train.chunks=2", f"loss.name={loss}",
                   f"selection.metric={selection}")
    metrics = run_training(cfg, tmp_path / "run", show_progress=False)
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    rows = read_history(tmp_path / "run" / "history.csv")
    assert rows[0]["selected"] and all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert metrics["selection"]["metric"] == selection
    assert metrics["selection"]["best_score"] == rows[metrics["selection"]["best_chunk"]][selection]
    assert metrics["config"]["loss.name"] == loss


def _models():
    from lenshpc import models

    return sorted(models.available())


@pytest.fixture(scope="module")
def population_72(tmp_path_factory):
    """A few 72×72 images: lastro_cnn's valid convolutions need at least 69 px."""
    from lenshpc.data.simulate import simulate_population

    return simulate_population(tmp_path_factory.mktemp("data72") / "population.h5", n_lenses=30, n_sources=50,
                               n_negatives=30, seed=2, workers=1, size=72, progress=False)


#: Every registered model trains one chunk of the lens task here (the 21-cm models too: a backbone serves any task).
TRAINED = ["tiny_resnet", "resnet18", "lastro_cnn", "lensflow_cnn", "cnn21", "dense21", "autoencoder21"]


@pytest.mark.parametrize("name", [*TRAINED, pytest.param("efficientnet_b0", marks=pytest.mark.slow)])
def test_every_registered_model_trains_one_chunk(repo_root, population_72, tmp_path, name):
    from lenshpc.train import run_training

    assert name in _models()
    cfg = tiny_cfg(repo_root, population_72, "train.chunks=1", "data.chunk_size=64", "data.val_size=32",
                   f"model.name={name}")
    metrics = run_training(cfg, tmp_path / name, show_progress=False)
    assert metrics["chunks_trained"] == 1 and (tmp_path / name / "DONE").is_file()
    assert metrics["config"]["model.name"] == name


def test_registry_is_covered():
    assert set(_models()) <= {*TRAINED, "efficientnet_b0"}


# ----------------------------------------------------------------------- command line
def test_cli_trains_and_prints_a_summary(repo_root, small_population, tmp_path, capsys):
    from lenshpc.cli import main

    run_dir = tmp_path / "cli"
    code = main(["train", str(repo_root / "configs" / "tiny.yaml"), "--set", f"data.path={small_population}",
                 "--set", "data.chunk_size=64", "--set", "data.val_size=32",
                 "--chunks", "1", "--seed", "5", "--run-dir", str(run_dir)])
    assert code == 0
    assert "test accuracy" in capsys.readouterr().out  # the task's table metrics (lens: accuracy … tpr10)
    assert json.loads((run_dir / "metrics.json").read_text())["seed"] == 5
    assert main(["train", str(repo_root / "configs" / "tiny.yaml"), "--set", f"data.path={small_population}",
                 "--run-dir", str(run_dir), "--resume", "--force"]) == 2


@pytest.mark.parametrize("args,message", [
    (["--set", "data.path=does/not/exist.h5"], "data file not found: does/not/exist.h5"),
    (["--set", "train.chunkz=3"], "unknown key 'train.chunkz'"),
    (["--set", "loss.name=focal"], "unknown loss 'focal'"),
    (["--set", "model.name=resnet19"], "Did you mean 'resnet18'"),
    (["--resume", "--run-dir", "{tmp}/nothing"], "holds no checkpoint"),
])
def test_cli_user_errors_exit_2_without_traceback(repo_root, small_population, tmp_path, capsys, args, message):
    from lenshpc.cli import main

    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["train", str(repo_root / "configs" / "tiny.yaml"), "--set", f"data.path={small_population}", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_configs_resolve(repo_root):
    """Every shipped training config loads; the thesis rows differ from base only where Table 5.1 says."""
    base = load_config(repo_root / "configs" / "base.yaml")
    assert (base.train.chunks, base.data.chunk_size, base.train.batch_size, base.train.learning_rate,
            base.train.patience, base.data.val_size, base.model.name) == (8000, 4096, 64, 1e-4, 1200, 1102, "resnet18")
    rows = {}
    table_51 = ("bce", "bce_fbeta_metric", "bce_soft_fbeta_metric", "fbeta_soft", "f1_soft", "f1_double_soft")
    for row in table_51:
        cfg = load_config(repo_root / "configs" / "thesis" / f"{row}.yaml")
        rows[cfg.name] = (cfg.loss.name, cfg.selection.metric)
        assert cfg.train == base.train and cfg.model == base.model and cfg.data == base.data
    assert rows == {"bce": ("bce", "val_loss"), "bce_fbeta_metric": ("bce", "val_fbeta_auc"),
                    "bce_soft_fbeta_metric": ("bce", "val_soft_fbeta"), "fbeta_soft": ("fbeta_soft", "val_loss"),
                    "f1_soft": ("f1_soft", "val_loss"), "f1_double_soft": ("f1_double_soft", "val_loss")}
    challenge = load_config(repo_root / "configs" / "challenge" / "efficientnet_b0.yaml")
    assert (challenge.model.name, challenge.selection.metric) == ("efficientnet_b0", "val_auroc")
    tiny = load_config(repo_root / "configs" / "tiny.yaml")
    assert (tiny.model.name, tiny.train.chunks, tiny.data.chunk_size) == ("tiny_resnet", 80, 256)
