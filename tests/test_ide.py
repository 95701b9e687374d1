"""The input-dependent ensemble (thesis Sec 3.6.2): targets, a real dynamic-ensembler run, exact resume, errors.

Members are the seed-0 runs of three groups of the ``tiny_sweep`` fixture (a real finished sweep of tiny
ResNets on 64×64 simulated images).  The dynamic ensembler is a ``tiny_resnet`` with a 3-way softmax head,
trained for a few chunks of 64 images through the ordinary run loop.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lenshpc.errors import Preempted, UserError
from test_train import preempt_at

GROUPS = ("bce", "fbeta_soft", "f1_soft")
RUN_FILES = ("config.yaml", "train.log", "history.csv", "model.keras", "predictions.h5", "metrics.json", "DONE",
             "ensemble.json", "checkpoint/state.json", "checkpoint/best.weights.h5")


def ide_cfg(tiny_sweep, *overrides):
    """The DE's config: the members' own (same data and seed → the same validation/test sets), shortened."""
    from lenshpc.config import load_config

    return load_config(tiny_sweep / "bce" / "seed0" / "config.yaml", overrides=[
        "name=ide", "data.chunk_size=64", "train.chunks=4", "train.checkpoint_every=2", "train.patience=0",
        "train.batch_size=32", "selection.metric=val_auroc", *overrides])


def members_of(root, groups=GROUPS):
    return [root / g / "seed0" for g in groups]


def strip_timings(metrics: dict) -> dict:
    """metrics.json without what legitimately differs between invocations: timings and provenance (times, hosts)."""
    return {k: v for k, v in metrics.items() if k not in ("timings", "provenance")}


def history_without_seconds(path):
    from lenshpc.train import read_history

    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(path)]


@pytest.fixture(scope="module")
def ide_run(tiny_sweep, tmp_path_factory):
    """An uninterrupted 4-chunk IDE run over 3 members (the reference for the checks and the resume test)."""
    from lenshpc.analysis.ensembles.ide import train_ide

    cfg = ide_cfg(tiny_sweep)
    out = tmp_path_factory.mktemp("ide") / "straight"
    metrics = train_ide(members_of(tiny_sweep), cfg, out, show_progress=False)
    return cfg, out, metrics


# ----------------------------------------------------------------------- targets
def test_ide_targets_pick_the_member_closest_to_the_label():
    from lenshpc.analysis.ensembles.ide import ide_targets

    scores = np.array([
        [0.2, 0.9, 0.5],   # y=1 → highest: member 1
        [0.2, 0.9, 0.5],   # y=0 → lowest: member 0
        [0.7, 0.7, 0.1],   # y=1, tie of members 0 and 1 → the lower index, 0
        [0.3, 0.05, 0.05],  # y=0, tie of members 1 and 2 → 1
        [0.4, 0.4, 0.4],   # all tied → 0 for either label
        [0.4, 0.4, 0.4],
        [0.0, 1.0, 0.99],  # exact extremes
    ])
    labels = np.array([1, 0, 1, 0, 1, 0, 1])
    expected = np.zeros((7, 3), np.float32)
    expected[np.arange(7), [1, 0, 0, 1, 0, 0, 1]] = 1
    targets = ide_targets(scores, labels)
    assert targets.dtype == np.float32 and targets.shape == (7, 3)
    np.testing.assert_array_equal(targets, expected)
    # Float labels and float32 scores give the same; every row is one-hot.
    np.testing.assert_array_equal(ide_targets(scores.astype(np.float32), labels.astype(np.float32)), expected)
    assert np.all(targets.sum(axis=1) == 1)


@pytest.mark.parametrize("scores,labels,message", [
    (np.zeros(3), np.zeros(3), "must be"),
    (np.zeros((3, 2)), np.zeros(2), "3 rows"),
    (np.array([[0.1, np.nan]]), np.array([1]), "NaN"),
    (np.array([[0.1, 0.2]]), np.array([0.5]), "0 or 1"),
])
def test_ide_targets_reject_bad_input(scores, labels, message):
    from lenshpc.analysis.ensembles.ide import ide_targets

    with pytest.raises(ValueError, match=message):
        ide_targets(scores, labels)


# ----------------------------------------------------------------------- a real run
def test_ide_run_dir_is_complete_and_scores_are_the_gated_members(ide_run, tiny_sweep):
    """predictions.h5 holds ŷ = Σ g·p recomputed here from the saved gating model and the members' models."""
    import keras

    from lenshpc.data.chunks import ChunkEngine
    from lenshpc.metrics import auroc
    from lenshpc.train import read_history, read_predictions
    from lenshpc.train.evaluate import load_model

    cfg, out, metrics = ide_run
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    members = [str(p.resolve()) for p in members_of(tiny_sweep)]
    assert metrics["ensemble"] == {"method": "input_dependent", "members": members}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["chunks_trained"] == 4 and metrics["config"]["train.chunks"] == 4
    info = json.loads((out / "ensemble.json").read_text())
    assert info["method"] == "input_dependent" and info["members"] == members
    assert info["member_names"] == [f"{g}/seed0" for g in GROUPS]
    assert info["members_test_set_matches"] == [True, True, True]  # same seed + data: the members' test set
    for split in ("test", "val"):
        assert sum(info["gate_mean"][split]) == pytest.approx(1, abs=1e-5)
        assert sum(info["target_share"][split]) == pytest.approx(1)

    gating = load_model(out / "model.keras")
    assert gating.output_shape == (None, 3) and gating.get_layer("prediction").get_config()["activation"] == "softmax"
    engine = ChunkEngine(cfg, load_train=False)
    x_test, y_test, meta = engine.test()
    x_val, y_val = engine.validation()
    engine.close()
    stored = read_predictions(out / "predictions.h5", "test")
    np.testing.assert_array_equal(stored["labels"], y_test)
    assert set(stored["meta"]) == set(meta)

    def ensemble(x):
        g = np.asarray(gating(x, training=False))
        p = np.stack([np.asarray(load_model(m / "model.keras")(x, training=False)).reshape(-1)
                      for m in members_of(tiny_sweep)], axis=1)
        return np.sum(g * p, axis=1), g, p

    y_hat, g, p = ensemble(x_test)
    np.testing.assert_allclose(stored["scores"], y_hat, rtol=0, atol=1e-6)
    assert np.all((stored["scores"] >= 0) & (stored["scores"] <= 1))
    np.testing.assert_allclose(g.sum(axis=1), 1, atol=1e-6)
    # A convex combination lies between the members' scores.
    assert np.all(stored["scores"] >= p.min(axis=1) - 1e-6) and np.all(stored["scores"] <= p.max(axis=1) + 1e-6)
    assert metrics["auroc"] == pytest.approx(auroc(y_test, stored["scores"]), abs=1e-9)
    # The member metrics in ensemble.json are the members' own test scores.
    for i, g_name in enumerate(GROUPS):
        own = json.loads((tiny_sweep / g_name / "seed0" / "metrics.json").read_text())
        assert info["member_test_metrics"][f"{g_name}/seed0"]["auroc"] == pytest.approx(own["auroc"], abs=1e-6)
    assert info["oracle_test_metrics"]["auroc"] >= max(m["auroc"] for m in info["member_test_metrics"].values())

    # Model selection on the ensemble's validation AUROC: the saved gating model reproduces the selected score,
    # and history's val_loss is the DE's cross-entropy on the validation targets (ide_targets of the members).
    from lenshpc.analysis.ensembles.ide import ide_targets

    rows = read_history(out / "history.csv")
    best = metrics["selection"]["best_chunk"]
    val = read_predictions(out / "predictions.h5", "val")
    assert metrics["selection"]["best_score"] == pytest.approx(auroc(y_val, val["scores"]), abs=1e-9)
    assert rows[best]["val_auroc"] == metrics["selection"]["best_score"]
    y_val_hat, g_val, p_val = ensemble(x_val)
    np.testing.assert_allclose(val["scores"], y_val_hat, atol=1e-6)
    cce = float(np.mean(keras.losses.categorical_crossentropy(ide_targets(p_val, y_val), g_val)))
    assert rows[best]["val_loss"] == pytest.approx(cce, rel=1e-5)


def test_load_ide_scorer_reproduces_the_stored_scores(ide_run):
    from lenshpc.analysis.ensembles.ide import load_ide_scorer
    from lenshpc.analysis.ensembles.scorer import load_scorer
    from lenshpc.data.chunks import ChunkEngine
    from lenshpc.train import read_predictions

    cfg, out, _ = ide_run
    engine = ChunkEngine(cfg, load_train=False)
    x_test, _, _ = engine.test()
    engine.close()
    scorer = load_ide_scorer(out)
    assert scorer.image_shape == tuple(x_test.shape[1:]) and scorer.name == f"{out.parent.name}/{out.name}"
    stored = read_predictions(out / "predictions.h5", "test")["scores"]
    np.testing.assert_allclose(scorer.score(x_test), stored, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scorer.score(x_test, batch_size=7), stored, rtol=0, atol=1e-6)
    assert type(load_scorer(out)).__name__ == "IDEScorer"  # H1's entry point delegates here
    with pytest.raises(UserError, match="shape"):
        scorer.score(x_test[:, :32])


def test_finished_ide_is_skipped(ide_run, tiny_sweep):
    from lenshpc.analysis.ensembles.ide import train_ide

    cfg, out, metrics = ide_run
    before = (out / "metrics.json").stat().st_mtime_ns
    assert train_ide(members_of(tiny_sweep), cfg, out, show_progress=False) == metrics
    assert (out / "metrics.json").stat().st_mtime_ns == before
    with pytest.raises(UserError, match="other members"):
        train_ide(members_of(tiny_sweep)[::-1], cfg, out, show_progress=False)


# ----------------------------------------------------------------------- resume
def test_preempted_ide_resumes_to_the_uninterrupted_result(ide_run, tiny_sweep, tmp_path):
    """SIGUSR1 after chunk 0 (not a checkpoint boundary), then resume: identical history, metrics and scores."""
    from lenshpc.analysis.ensembles.ide import train_ide
    from lenshpc.train import read_predictions
    from lenshpc.train.evaluate import load_model

    cfg, straight, straight_metrics = ide_run
    out = tmp_path / "resumed"

    with pytest.raises(Preempted):
        train_ide(members_of(tiny_sweep), cfg, out, show_progress=False, on_chunk_end=preempt_at(0))
    assert json.loads((out / "checkpoint" / "state.json").read_text())["next_chunk"] == 1
    assert not (out / "DONE").exists()
    with pytest.raises(UserError, match="other members"):  # a checkpoint of other members is never resumed
        train_ide(members_of(tiny_sweep, GROUPS[:2]), cfg, out, show_progress=False)

    resumed = train_ide(members_of(tiny_sweep), cfg, out, show_progress=False)
    assert strip_timings(resumed) == strip_timings(straight_metrics)
    assert history_without_seconds(out / "history.csv") == history_without_seconds(straight / "history.csv")
    for a, b in zip(load_model(out / "model.keras").get_weights(), load_model(straight / "model.keras").get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(read_predictions(out / "predictions.h5")["scores"],
                                  read_predictions(straight / "predictions.h5")["scores"])
    assert "resuming" in (out / "train.log").read_text()


# ----------------------------------------------------------------------- errors
def _copy_member(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint", "tensorboard"))
    return dst


def test_member_with_another_image_shape_is_refused(tiny_sweep, tmp_path):
    """A member whose model takes 48×48 images cannot score the ensembler's 64×64 images."""
    from lenshpc import models
    from lenshpc.analysis.ensembles.ide import train_ide
    from lenshpc.train.rundir import save_model

    odd = _copy_member(tiny_sweep / "f1_soft" / "seed0", tmp_path / "small" / "seed0")
    save_model(models.build("tiny_resnet", (48, 48, 1)), odd / "model.keras")
    out = tmp_path / "ide"
    with pytest.raises(UserError, match=r"images of shape \(48, 48, 1\).*\(64, 64, 1\)"):
        train_ide([tiny_sweep / "bce" / "seed0", odd], ide_cfg(tiny_sweep), out, show_progress=False)
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("case,message", [
    ("one", "at least 2 members"),
    ("twice", "given twice"),
    ("unfinished", "has not finished"),
    ("missing", "does not exist"),
    ("segmented", "data.preprocess = 'maxtree'"),
])
def test_bad_members_are_clear_user_errors(tiny_sweep, tmp_path, case, message):
    import yaml

    from lenshpc.analysis.ensembles.ide import train_ide

    good = [tiny_sweep / "bce" / "seed0", tiny_sweep / "f1_soft" / "seed0"]
    if case == "one":
        members = good[:1]
    elif case == "twice":
        members = [good[0], good[0]]
    elif case == "missing":
        members = [good[0], tmp_path / "nothing" / "seed0"]
    else:
        bad = _copy_member(good[1], tmp_path / case / "seed0")
        if case == "unfinished":
            (bad / "DONE").unlink()
        else:
            cfg = yaml.safe_load((bad / "config.yaml").read_text())
            cfg["data"].update(preprocess="maxtree", segmented_path="seg.h5")
            (bad / "config.yaml").write_text(yaml.safe_dump(cfg))
        members = [good[0], bad]
    with pytest.raises(UserError, match=message):
        train_ide(members, ide_cfg(tiny_sweep), tmp_path / "ide", show_progress=False)


def test_resolve_members_takes_a_bare_path_as_one_member(tiny_sweep):
    """A str is one run dir, not a list of its letters ("given twice: /cwd/e, /cwd/s" was the message)."""
    from lenshpc.analysis.ensembles.ide import resolve_members

    with pytest.raises(UserError, match=r"at least 2 members, got 1: \[.*bce/seed0'\]"):
        resolve_members(str(tiny_sweep / "bce" / "seed0"))


def test_load_ide_scorer_errors(ide_run, tiny_sweep, tmp_path):
    from lenshpc.analysis.ensembles.ide import load_ide_scorer

    with pytest.raises(UserError, match="not an input-dependent ensemble"):
        load_ide_scorer(tiny_sweep / "bce" / "seed0")
    _, out, _ = ide_run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("checkpoint"))
    info = json.loads((moved / "ensemble.json").read_text())
    info["members"] = [str(tmp_path / "gone" / n) for n in info["member_names"]]
    info["members_relative"] = ["../gone/x"] * len(info["members"])
    (moved / "ensemble.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="not found"):
        load_ide_scorer(moved)
    (moved / "DONE").unlink()
    with pytest.raises(UserError, match="not finished"):
        load_ide_scorer(moved)


def test_an_ide_run_is_an_ordinary_run_of_task_ide(ide_run, tiny_sweep):
    """The run dir records task ide with its members (config.yaml, metrics.json): `lenshpc train` / a sweep's
    TrainRun reproduce it from the config alone; bad task.params are config errors at load."""
    import yaml

    from lenshpc.config import from_dict
    from lenshpc.errors import ConfigError

    cfg, out, metrics = ide_run
    saved = yaml.safe_load((out / "config.yaml").read_text())
    members = [str(p.resolve()) for p in members_of(tiny_sweep)]
    assert saved["task"] == {"name": "ide", "params": {"members": members}}
    assert metrics["task"]["name"] == "ide" and "val_loss" in metrics["task"]["val_metrics"]
    with pytest.raises(ConfigError, match="members must be a list"):
        from_dict({**saved, "task": {"name": "ide", "params": {"members": "bce/seed0"}}})
    with pytest.raises(ConfigError, match="no parameter 'member'"):
        from_dict({**saved, "task": {"name": "ide", "params": {"member": members}}})
