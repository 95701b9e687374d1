"""Start from a finished run (``train.start_from``), freezing and per-layer learning-rate multipliers.

All real: a 2-chunk ``tiny_resnet`` source run on the project's simulated ``small_population``, then
runs that start from it.  Checks which weights moved (frozen: bit-equal to the source), the update
ratio of a 0.1 multiplier against 1, head re-initialisation, exact resume and the bad-input errors.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lenshpc.errors import Preempted, UserError
from test_train import preempt_at, strip_timings, tiny_cfg


def layer_weights(path) -> dict:
    from lenshpc.train.evaluate import load_model

    model = load_model(path)
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def source_run(tiny_run):
    """The session's finished 2-chunk run (conftest ``tiny_run``)."""
    return tiny_run


def test_start_from_copies_freezes_and_records(repo_root, small_population, source_run, tmp_path):
    from lenshpc.train import run_training
    from lenshpc.train.transfer import sha256_file

    cfg = tiny_cfg(repo_root, small_population, "train.chunks=1", "seed=5", f"train.start_from={source_run}",
                   "train.freeze=[stem_*]", "train.lr_multipliers={stage1_*: 0.1}")
    metrics = run_training(cfg, tmp_path / "ft", show_progress=False)
    src, new = layer_weights(source_run / "model.keras"), layer_weights(tmp_path / "ft" / "model.keras")
    rec = metrics["start_from"]
    assert rec["model_sha256"] == sha256_file(source_run / "model.keras")
    assert rec["metrics_sha256"] == sha256_file(source_run / "metrics.json")
    assert sorted(rec["copied"]) == sorted(src) and rec["reset"] == []
    assert rec["frozen"] == ["stem_conv", "stem_bn"]
    assert set(rec["lr_multipliers"]) == {n for n in src if n.startswith("stage1_")}
    for name in src:
        same = all(np.array_equal(a, b) for a, b in zip(src[name], new[name]))
        assert same == name.startswith("stem_"), name  # frozen layers bit-equal, every other layer moved
    assert json.loads((tmp_path / "ft" / "start_from.json").read_text())["model_sha256"] == rec["model_sha256"]
    assert metrics["config"]["train.start_from"] == str(source_run)


def _trainer(cfg, run_dir):
    from lenshpc import distributed as dist
    from lenshpc.train.loop import Trainer
    from lenshpc.train.rundir import RunDir

    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, RunDir(run_dir), dist.init("none"))
    trainer.build()
    return trainer


def test_lr_multiplier_scales_the_update(repo_root, small_population, source_run, tmp_path):
    """One identical training step from identical weights: a 0.1 layer moves 0.1× as far as with factor 1."""
    import tensorflow as tf

    common = ["train.chunks=1", f"train.start_from={source_run}", "augment.enabled=false"]
    plain = _trainer(tiny_cfg(repo_root, small_population, *common), tmp_path / "a")
    scaled = _trainer(tiny_cfg(repo_root, small_population, *common, "train.lr_multipliers={stage1_*: 0.1}"),
                      tmp_path / "b")
    x, y = plain.engine.chunk(0)
    deltas = []
    for t in (plain, scaled):
        before = {v.path: np.array(v.numpy()) for v in t.model.trainable_variables}
        t.optimizer.learning_rate = 1e-3
        t.train_step(tf.constant(x[:32]), tf.constant(y[:32]))
        deltas.append({v.path: np.array(v.numpy()) - before[v.path] for v in t.model.trainable_variables})
    for path, d_plain in deltas[0].items():
        d_scaled = deltas[1][path]
        if np.abs(d_plain).max() == 0:
            continue
        if path.startswith("stage1_"):
            np.testing.assert_allclose(d_scaled, 0.1 * d_plain, rtol=1e-3, atol=1e-9)
        else:
            np.testing.assert_array_equal(d_scaled, d_plain)
    assert any(p.startswith("stage1_") for p in deltas[0])


def test_head_of_another_shape_is_reinitialised(repo_root, small_population, tmp_path):
    import keras

    from lenshpc import models

    keras.utils.set_random_seed(3)
    three = models.build("tiny_resnet", (64, 64, 1), num_outputs=3)
    three.save(tmp_path / "three.keras")
    cfg = tiny_cfg(repo_root, small_population, f"train.start_from={tmp_path / 'three.keras'}")
    trainer = _trainer(cfg, tmp_path / "run")
    assert trainer.transfer.reset == ["logits"]
    assert "stem_conv" in trainer.transfer.copied
    np.testing.assert_array_equal(trainer.model.get_layer("stem_conv").get_weights()[0],
                                  three.get_layer("stem_conv").get_weights()[0])


def test_killed_fine_tune_resumes_to_the_same_result(repo_root, small_population, source_run, tmp_path):
    from lenshpc.train import run_training

    cfg = tiny_cfg(repo_root, small_population, "train.chunks=2", "train.checkpoint_every=2",
                   f"train.start_from={source_run}", "train.freeze=[stem_*]", "train.lr_multipliers={stage1_*: 0.1}")
    straight = run_training(cfg, tmp_path / "straight", show_progress=False)

    with pytest.raises(Preempted):
        run_training(cfg, tmp_path / "killed", on_chunk_end=preempt_at(0), show_progress=False)
    resumed = run_training(cfg, tmp_path / "killed", show_progress=False)
    assert strip_timings(resumed) == strip_timings(straight)
    a, b = layer_weights(tmp_path / "straight" / "model.keras"), layer_weights(tmp_path / "killed" / "model.keras")
    assert all(np.array_equal(x, y) for n in a for x, y in zip(a[n], b[n]))


def test_resume_refuses_a_changed_source(repo_root, small_population, source_run, tmp_path):
    from lenshpc.train import run_training

    src = tmp_path / "src"
    shutil.copytree(source_run, src)
    cfg = tiny_cfg(repo_root, small_population, "train.chunks=1", f"train.start_from={src}")

    with pytest.raises(Preempted):  # train.chunks=1: after its only chunk
        run_training(cfg, tmp_path / "run", on_chunk_end=preempt_at(0), show_progress=False)
    import keras

    from lenshpc import models

    keras.utils.set_random_seed(9)
    models.build("tiny_resnet", (64, 64, 1)).save(src / "model.keras")
    with pytest.raises(UserError, match="has changed since"):
        run_training(cfg, tmp_path / "run", show_progress=False)


def test_bad_start_from_inputs(repo_root, small_population, source_run, tmp_path):
    import h5py
    import keras

    from lenshpc import models
    from lenshpc.train import run_training

    def fails(match, *overrides, data=small_population):
        run_dir = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        with pytest.raises(UserError, match=match):
            run_training(tiny_cfg(repo_root, data, *overrides), run_dir, show_progress=False)
        assert not (run_dir / "model.keras").exists() and not (run_dir / "start_from.json").exists()

    fails("no such run directory", f"train.start_from={tmp_path / 'nope'}")
    keras.utils.set_random_seed(0)
    models.build("tiny_resnet", (32, 32, 1)).save(tmp_path / "small.keras")
    fails(r"shape \(32, 32, 1\)", f"train.start_from={tmp_path / 'small.keras'}")
    other = tmp_path / "g_band.h5"
    shutil.copy(small_population, other)
    with h5py.File(other, "r+") as fh:
        fh.attrs["bands"] = json.dumps(["g"])
    fails(r"bands \['r'\]", f"train.start_from={source_run}", data=other)
    fails("matches no layer", "train.freeze=[stage9_*]")
    fails("must be a number", "train.lr_multipliers={stem_*: fast}")
