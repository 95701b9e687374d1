"""The Task seam (issue 12): one training machine for every science task.

* A toy third task written only here (:data:`TOYMOD`: 3 classes of Gaussian blobs, softmax head,
  categorical cross-entropy, sklearn accuracy / macro-F1) trains, sweeps (local executor) and reduces
  through the ordinary CLI — ``task.name: "toymod:BlobsTask"`` on ``PYTHONPATH`` — with no change to
  the training loop.
* A run tree written by the code before the seam (``tests/fixtures/old_run_tree``, commit 850f14a)
  reduces to identical tables, is recognised as finished lens runs and its configs resume unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
OLD_TREE = REPO / "tests" / "fixtures" / "old_run_tree"

#: The toy task module (written to a temporary directory, imported by the CLI through PYTHONPATH).
TOYMOD = textwrap.dedent('''
    """Three classes of Gaussian blobs on 16x16 noise: a task the lens code knows nothing about."""
    import numpy as np

    from lenshpc.tasks.base import Metric, Task

    CENTRES = ((4.0, 4.0), (4.0, 11.0), (11.0, 7.5))


    class BlobSource:
        """Chunk i depends only on (seed, i, rank): exact resume, like the lens chunk engine."""

        image_shape = (16, 16, 1)

        def __init__(self, cfg, rank, size, noise):
            self.cfg, self.rank, self.size, self.noise = cfg, rank, size, noise

        def _make(self, key, n):
            rng = np.random.default_rng([int(self.cfg.seed), *key])
            y = rng.integers(0, 3, n)
            centre = np.asarray(CENTRES)[y] + rng.uniform(-1.5, 1.5, (n, 2))
            yy, xx = np.mgrid[0:16, 0:16]
            d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
            x = rng.uniform(0.6, 1.0, (n, 1, 1)) * np.exp(-d2 / 4.0) + rng.normal(0, self.noise, (n, 16, 16))
            return x[..., None].astype(np.float32), y

        def iter_chunks(self, start, stop):
            for i in range(start, stop):
                yield (i, *self._make((1, i, self.rank), self.cfg.data.chunk_size // self.size))

        def validation(self):
            return self._make((2,), self.cfg.data.val_size)

        def test(self):
            x, y = self._make((3,), 300)
            return x, y, {"index": np.arange(len(y))}

        def describe(self):
            return {"source": "blobs", "noise": self.noise}

        def close(self):
            pass


    class BlobsTask(Task):
        name = "blobs"
        summary = "3-class Gaussian blobs (a test's toy task)"
        metrics = (Metric("accuracy", title="Blob accuracy", per_chunk=True, required=True),
                   Metric("macro_f1", title="Macro F1", per_chunk=True))
        losses = ("categorical_crossentropy",)
        params = {"noise": 0.3}

        def data_source(self, *, rank, size, run_dir, write):
            return BlobSource(self.cfg, rank, size, float(self.options["noise"]))

        def num_outputs(self):
            return 3

        def loss(self):
            import keras

            return keras.losses.CategoricalCrossentropy()

        def targets(self, x, y):
            return np.eye(3, dtype=np.float32)[y]

        def target_shape(self, image_shape):
            return (3,)

        def _scores(self, y, out):
            from sklearn.metrics import accuracy_score, f1_score

            pred = np.argmax(out, axis=1)
            return float(accuracy_score(y, pred)), float(f1_score(y, pred, average="macro"))

        def chunk_metrics(self, y, out):
            acc, f1 = self._scores(y, out)
            loss = float(self.loss()(self.targets(None, y), out))
            return {"val_loss": loss, "val_accuracy": acc, "val_macro_f1": f1}

        def summary(self, y, out, *, val=None):
            acc, f1 = self._scores(y, out)
            return {"accuracy": acc, "macro_f1": f1, "seed": int(self.cfg.seed), "n_test": int(len(y))}
''')

TOY_CONFIG = {
    "name": "blobs",
    "task": {"name": "toymod:BlobsTask", "params": {"noise": 0.3}},
    "data": {"chunk_size": 128, "val_size": 96, "prefetch": 0},
    "model": {"name": "tiny_resnet", "params": {"filters": [8, 16], "blocks": [1, 1], "bn_momentum": 0.9}},
    "loss": {"name": "categorical_crossentropy"},
    "selection": {"metric": "val_macro_f1"},
    "train": {"chunks": 20, "batch_size": 32, "learning_rate": 0.01, "patience": 0, "checkpoint_every": 4},
    "distributed": {"backend": "none"},
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A directory holding ``toymod.py`` and ``blobs.yaml``, and the environment that imports it."""
    root = tmp_path_factory.mktemp("toy")
    (root / "toymod.py").write_text(TOYMOD)
    (root / "blobs.yaml").write_text(yaml.safe_dump(TOY_CONFIG, sort_keys=False))
    pythonpath = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", ""), str(REPO)])
    env = {**os.environ, "PYTHONPATH": pythonpath, "LENSHPC_NO_PROGRESS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return root, env


def _cli(args, env, cwd, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "lenshpc", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"lenshpc {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_toy_task_trains_through_the_cli(toy):
    root, env = toy
    out = _cli(["train", "blobs.yaml", "--run-dir", "run"], env, root)
    run = root / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.8 and metrics["macro_f1"] > 0.8, metrics  # chance is 1/3
    assert metrics["task"]["name"] == "blobs" and metrics["task"]["table"] == ["accuracy", "macro_f1"]
    assert metrics["source"] == "blobs" and metrics["selection"]["metric"] == "val_macro_f1"
    assert "test accuracy" in out and "macro_f1" in out
    header = (run / "history.csv").read_text().splitlines()[0]
    assert header == "chunk,train_loss,val_loss,val_accuracy,val_macro_f1,selected,lr,seconds"
    import h5py

    with h5py.File(run / "predictions.h5") as fh:  # the task's default predictions: (N, 3) softmax + labels
        assert fh["test/scores"].shape == (300, 3) and fh["test/labels"].shape == (300,)
        assert np.allclose(fh["test/scores"][()].sum(axis=1), 1.0, atol=1e-4)
    assert "val_macro_f1" in (run / "train.log").read_text()
    # DONE: asking again skips the run (the task's config is compared like any other).
    assert "test accuracy" in _cli(["train", "blobs.yaml", "--run-dir", "run"], env, root)


def test_toy_task_sweeps_and_reduces_through_the_cli(toy):
    root, env = toy
    sweep = {"name": "blobs_sweep", "base": "blobs.yaml", "out": "sweep", "seeds": "0-1",
             "set": {"train.chunks": 15},
             "grid": [{"name": "lr10", "train.learning_rate": 0.01}, {"name": "lr3", "train.learning_rate": 0.003}]}
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    _cli(["sweep", "sweep.yaml", "--executor", "local", "--parallel", "2"], env, root, timeout=600)
    assert len(list((root / "sweep").glob("*/seed*/DONE"))) == 4
    _cli(["reduce", "sweep"], env, root)
    md = (root / "sweep" / "report.md").read_text()
    assert "| Model | Blob accuracy | Macro F1 | n |" in md, md
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| (lr\d+) \| \**(\d\.\d+) ±", md, re.M)}
    assert set(rows) == {"lr10", "lr3"} and all(v > 0.6 for v in rows.values()), md  # accuracy, chance 1/3
    assert "## Problems" not in md, md
    assert "Macro F1" in (root / "sweep" / "report.tex").read_text()
    assert "accuracy_mean" in (root / "sweep" / "report.csv").read_text()


def _normalise(text: str) -> str:
    """Nothing in the compared reports is time-dependent; keep the hook for paths."""
    return text


def test_old_run_tree_reduces_to_identical_tables(tmp_path):
    """Runs written by the code before the Task seam (850f14a) reduce to the very tables that code wrote."""
    from lenshpc.report import reduce_runs

    shutil.copytree(OLD_TREE / "runs", tmp_path / "runs")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        reduce_runs("runs", out="report")
    finally:
        os.chdir(cwd)
    for name in ("report.md", "report.csv", "report.tex"):
        old = (OLD_TREE / "report" / name).read_text()
        assert _normalise((tmp_path / "report" / name).read_text()) == _normalise(old), name


def test_old_run_dir_is_a_finished_lens_run_and_its_config_resumes(tmp_path):
    """An old config.yaml (no ``task`` key) loads as the lens task, shows no difference to the same config
    today (resume and the DONE check) and the DONE run is skipped, not retrained."""
    from lenshpc.config import load_config
    from lenshpc.train import run_training
    from lenshpc.train.rundir import RESUMABLE_CHANGES, config_differences

    run = tmp_path / "seed0"
    shutil.copytree(OLD_TREE / "runs" / "bce" / "seed0", run)
    old = yaml.safe_load((run / "config.yaml").read_text())
    assert "task" not in old
    cfg = load_config(run / "config.yaml")
    assert cfg.task.name == "lens" and cfg.task.params == {}
    assert config_differences(old, cfg.to_dict(), allowed=RESUMABLE_CHANGES) == []
    assert config_differences(old, cfg.replace(**{"task.name": "lens"}).to_dict()) == []
    before = (run / "metrics.json").read_bytes()
    metrics = run_training(cfg, run, show_progress=False)
    assert (run / "metrics.json").read_bytes() == before and "task" not in metrics
    assert not (run / "model.keras").exists()  # skipped: nothing was trained


def test_task_registry_errors_are_clear(toy):
    from lenshpc import tasks
    from lenshpc.config import load_config
    from lenshpc.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot import module 'no_such_mod'"):
        tasks.get("no_such_mod:Task")
    with pytest.raises(ConfigError, match="has no class 'Nope'"):
        tasks.get("lenshpc.tasks.lens:Nope")
    with pytest.raises(ConfigError, match="not a lenshpc.tasks.base.Task subclass"):
        tasks.get("lenshpc.tasks.base:Metric")
    with pytest.raises(ConfigError, match=r"task\.params|no parameter 'nois'.*Did you mean 'noise'"):
        sys.path.insert(0, str(toy[0]))
        try:
            load_config(toy[0] / "blobs.yaml", overrides=["task.params={nois: 1}"])
        finally:
            sys.path.remove(str(toy[0]))
    with pytest.raises(ConfigError, match="validation metrics of task 'lens'.*Did you mean 'val_auroc'"):
        load_config(overrides=["selection.metric=val_aurc"])


def test_every_task_refuses_a_loss_it_does_not_declare(toy, tmp_path):
    """``Task.losses`` is enforced for every task, a plug-in included, before any data is made (a UserError)."""
    from lenshpc.config import load_config
    from lenshpc.errors import UserError
    from lenshpc.train import run_training

    sys.path.insert(0, str(toy[0]))
    try:
        cfg = load_config(toy[0] / "blobs.yaml", overrides=["loss.name=categorical_crossentropi"])
        with pytest.raises(UserError, match="unknown loss 'categorical_crossentropi' for task 'blobs'.*"
                                            "Did you mean 'categorical_crossentropy'"):
            run_training(cfg, tmp_path / "run", show_progress=False)
    finally:
        sys.path.remove(str(toy[0]))
    assert not (tmp_path / "run").exists()  # refused before the run dir or any data was made
    from lenshpc import tasks

    for name, loss, declared in (("cosmo21cm", "bce", "cce"), ("autoencode", "cce", "mse"), ("lens", "mse", "bce")):
        task = tasks.get(name)(load_config(overrides=[f"task.name={name}", f"loss.name={loss}"]))
        with pytest.raises(UserError, match=f"unknown loss '{loss}' for task '{name}'.*Its losses: {declared}"):
            task.check_loss()
