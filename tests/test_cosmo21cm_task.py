"""The 21-cm tasks end to end on a real (tiny) 21cmFAST dataset (``c21_dataset``, tests/conftest.py): the
classifier learns and resumes exactly, the autoencoder trains and its encoder starts a classifier, the reduce
sections (per-class recall, mean confusion matrix, learning curves, PCA baseline) and the slice-split warning."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import lenshpc  # noqa: F401  (runtime caps before TensorFlow)
from lenshpc.errors import Preempted, UserError
from test_train import preempt_at

REPO_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "cosmo21cm")


def c21_cfg(data, name="classify.yaml", *overrides):
    from lenshpc.config import load_config

    return load_config(os.path.join(REPO_CONFIGS, name),
                       [f"data.path={data}", "data.chunk_size=96", "data.prefetch=1", "train.chunks=6",
                        "train.batch_size=32", "train.checkpoint_every=4", "train.patience=0",
                        "distributed.backend=none", *overrides])


def strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("timings", "provenance", "runtime")}


@pytest.fixture(scope="module")
def c21_runs(c21_dataset, tmp_path_factory):
    """A small study tree: autoencoder (seed 0), CNN on the frozen encoder and from scratch (seeds 0–1), dense
    baseline (seed 0); 12 chunks of 96 slices each."""
    from lenshpc.train import run_training

    root = tmp_path_factory.mktemp("c21runs")
    ae = root / "autoencoder" / "seed0"
    run_training(c21_cfg(c21_dataset, "autoencoder.yaml", "train.chunks=12"), ae, show_progress=False)
    for name, config, extra in (("cnn_encoder", "encoder_classifier.yaml", [f"train.start_from={ae}"]),
                                ("cnn", "classify.yaml", []), ("dense", "dense.yaml", ["task.params.crop=16"])):
        for seed in ((0,) if name == "dense" else (0, 1)):
            cfg = c21_cfg(c21_dataset, config, "train.chunks=12", f"seed={seed}", *extra)
            run_training(cfg, root / "study" / name / f"seed{seed}", show_progress=False)
    return root


def test_classifier_learns_and_records_the_categorical_metrics(c21_runs):
    m = json.loads((c21_runs / "study" / "cnn" / "seed0" / "metrics.json").read_text())
    assert m["task"]["name"] == "cosmo21cm" and m["class_names"] == ["z=8", "z=9", "z=10"]
    for key in ("accuracy", "macro_f1", "top2_accuracy", "auroc_ovr"):
        assert 0 <= m[key] <= 1
    assert len(m["per_class_recall"]) == 3 and np.asarray(m["confusion"]).sum() == m["n_test"]
    assert m["data"]["split_by"] == "realisation" and m["warnings"] == []
    assert m["accuracy"] > 1 / 3 + 0.1  # above chance (3 redshifts) after 12 chunks of real 21cmFAST slices
    header = (c21_runs / "study" / "cnn" / "seed0" / "history.csv").read_text().splitlines()[0]
    assert header.split(",")[2:5] == ["val_loss", "val_accuracy", "val_macro_f1"]


def test_preempted_classifier_resumes_exactly(c21_dataset, tmp_path):
    """SIGUSR1 after chunk 2, resume: the same history, metrics and weights as a straight run."""
    from lenshpc.train import run_training
    from lenshpc.train.evaluate import load_model

    cfg = c21_cfg(c21_dataset, "classify.yaml", "task.params.label_smoothing=0.1", "selection.metric=val_macro_f1")
    straight = run_training(cfg, tmp_path / "straight", show_progress=False)

    with pytest.raises(Preempted):
        run_training(cfg, tmp_path / "resumed", on_chunk_end=preempt_at(2), show_progress=False)
    resumed = run_training(cfg, tmp_path / "resumed", show_progress=False)
    assert strip(resumed) == strip(straight)
    assert ((tmp_path / "resumed" / "history.csv").read_text().count("\n")
            == (tmp_path / "straight" / "history.csv").read_text().count("\n"))
    for a, b in zip(load_model(tmp_path / "resumed" / "model.keras").get_weights(),
                    load_model(tmp_path / "straight" / "model.keras").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_autoencoder_and_encoder_transfer(c21_runs):
    from lenshpc.train import read_predictions
    from lenshpc.train.evaluate import load_model

    ae = c21_runs / "autoencoder" / "seed0"
    m = json.loads((ae / "metrics.json").read_text())
    assert m["task"]["name"] == "autoencode" and m["mse"] > 0 and np.isfinite(m["mse"])
    assert (ae / "reconstructions.png").stat().st_size > 1000
    test = read_predictions(ae / "predictions.h5")
    assert test["scores"].shape == (m["n_test"],) and set(test["labels"].tolist()) == {0, 1, 2}
    enc = c21_runs / "study" / "cnn_encoder" / "seed0"
    record = json.loads((enc / "metrics.json").read_text())["start_from"]
    assert record["frozen"] == ["enc_conv1", "enc_conv2", "enc_conv3"] == record["copied"][:3]
    src, dst = load_model(ae / "model.keras"), load_model(enc / "model.keras")
    for name in record["frozen"]:  # frozen: still bit-equal to the autoencoder's encoder after training
        for a, b in zip(src.get_layer(name).get_weights(), dst.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_report_sections(c21_runs, tmp_path):
    from lenshpc.report.collect import find_run_dirs, load_run
    from lenshpc.tasks.cosmo21cm import Cosmo21cmTask

    groups: dict[str, list] = {}
    for path in find_run_dirs(c21_runs / "study"):
        groups.setdefault(path.parent.name, []).append(load_run(path))
    lines = Cosmo21cmTask.report_sections(groups, tmp_path)
    text = "\n".join(lines)
    assert "Per-class recall" in text and "| z=8 | z=9 | z=10 |" in text
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "learning_curves.png").is_file()
    pca = [line for line in lines if line.startswith("| PCA + logistic regression")]
    assert len(pca) == 2  # whole slices (the CNNs: seeds 0-1) and 16×16 crops (the dense baseline: seed 0)
    assert "| 0-1 |" in pca[0] and "±" in pca[0] and "crop 16" in pca[1]
    cached = json.loads((tmp_path / "pca_baseline.json").read_text())
    assert len(cached) == 3 and all(0 <= v["metrics"]["accuracy"] <= 1 for v in cached.values())
    assert Cosmo21cmTask.report_sections(groups, tmp_path) == lines  # second reduce: from the cache, same


def test_slice_split_only_with_the_flag_and_warned(c21_dataset, tmp_path):
    from lenshpc.data.cosmo21cm.slices import open_slices, write_slices
    from lenshpc.report.collect import load_run
    from lenshpc.tasks.cosmo21cm import Cosmo21cmTask
    from lenshpc.train import run_training

    with open_slices(c21_dataset) as ds:
        images, meta, classes = ds.images(), ds.meta(), ds._classes
    path = tmp_path / "by_slice.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_slices(path, images, meta, classes=classes, seed=0, split_by="slice")
    cfg = c21_cfg(path, "classify.yaml", "train.chunks=1")
    with pytest.raises(UserError, match="allow_slice_split"):
        run_training(cfg, tmp_path / "refused", show_progress=False)
    assert not (tmp_path / "refused" / "metrics.json").exists()
    run_training(cfg.replace(**{"task.params.allow_slice_split": True}), tmp_path / "run", show_progress=False)
    text = "\n".join(Cosmo21cmTask.report_sections({"slice": [load_run(tmp_path / "run")]}, tmp_path))
    assert "**Warning**: split by slice" in text


def test_bad_task_config_is_named(c21_dataset):
    from lenshpc.config import ConfigError

    with pytest.raises(ConfigError, match="selection.metric.*val_macro_f1"):
        c21_cfg(c21_dataset, "classify.yaml", "selection.metric=val_auroc")
    with pytest.raises(ConfigError, match="label_smoothing"):
        c21_cfg(c21_dataset, "classify.yaml", "task.params.label_smoothing=1.5")
    from lenshpc.train import run_training

    with pytest.raises(UserError, match="loss.name = 'bce'.*cce"):
        run_training(c21_cfg(c21_dataset, "classify.yaml", "loss.name=bce"), None, show_progress=False)


def test_quickstart_and_study_sweeps_load(c21_dataset):
    """The embedded 21-cm quickstart sweeps and the shipped central-comparison sweep validate (every grid point)."""
    from lenshpc.commands.quicksweep import resource
    from lenshpc.hpc.spec import load_sweep

    sets = [f"data.path={c21_dataset}"]
    ae = load_sweep(resource("quickstart_cosmo21cm_autoencoder.yaml"), overrides=sets)
    assert [p.config.task.name for p in ae.points] == ["autoencode"]
    qs = load_sweep(resource("quickstart_cosmo21cm.yaml"), overrides=sets)
    assert sorted({p.group for p in qs.points}) == ["cnn", "cnn_encoder", "dense"] and len(qs.points) == 9
    dense = next(p for p in qs.points if p.group == "dense").config
    assert dense.model.name == "dense21" and dense.task.params["crop"] == 16 and dense.task.params["target"] == "redshift"
    central = load_sweep(os.path.join(REPO_CONFIGS, "..", "sweeps", "cosmo21cm_central.yaml"), overrides=sets)
    assert len(central.points) == 30 and {p.config.task.name for p in central.points} == {"cosmo21cm"}
    enc = next(p for p in central.points if p.group == "cnn_encoder").config
    assert enc.train.freeze == ["enc_*"] and enc.train.start_from.endswith("cosmo21cm_autoencoder/seed0")


def test_lens_only_rescoring_commands_refuse_a_21cm_run_clearly(c21_runs, capsys):
    """`evaluate` / `gradcam` re-score lens finders: on a cosmo21cm run they say so (exit 2, no traceback)."""
    from lenshpc.cli import main

    run = c21_runs / "study" / "cnn" / "seed0"
    for verb in ("evaluate", "gradcam"):
        assert main([verb, str(run)]) == 2
        err = capsys.readouterr().err
        assert "is a run of task 'cosmo21cm'" in err and "lenshpc reduce" in err and "Traceback" not in err
