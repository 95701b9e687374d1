"""Horovod through lenshpc.distributed with 2 real CPU ranks (horovodrun --gloo and mpirun).

The worker (this file run as a script) trains a small Keras CNN with data parallelism and checks, on rank 0:
  * weights are identical on all ranks after every step (they start DIFFERENT: each rank seeds its own init, so the
    broadcast from rank 0 is what makes them equal);
  * 2 ranks × batch b give the same update as 1 rank × batch 2b (gradient averaging of batch-mean losses);
  * allreduce_mean / allgather (uneven lengths, rank order) / barrier / learning_rate with size 2.
Only rank 0 writes the result file; every other check is an assert inside the worker (non-zero exit on failure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.horovod, pytest.mark.mpi]

STEPS, HALF_BATCH = 4, 8


def _worker(out_dir: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import lenshpc  # noqa: F401 - first: takes the oneDNN choice (lenshpc/runtime.py) before TensorFlow loads
    import keras
    import numpy as np
    import tensorflow as tf

    from lenshpc import distributed
    from lenshpc.config import DistributedConfig

    ctx = distributed.init("horovod")
    assert ctx.backend == "horovod" and ctx.size == 2, (ctx.backend, ctx.size)

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)])
        opt = keras.optimizers.Adam(1e-2)
        opt.build(model.trainable_variables)
        return model, opt

    def make_step(model, opt, reduce):
        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, model(x, training=True), from_logits=True))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(reduce(grads), model.trainable_variables))
            return loss
        return step

    data_rng = np.random.default_rng(0)  # same global data on every rank
    xs = data_rng.normal(size=(STEPS, 2 * HALF_BATCH, 8, 8, 1)).astype("float32")
    ys = (data_rng.random((STEPS, 2 * HALF_BATCH, 1)) > 0.5).astype("float32")

    model, opt = build(100 + ctx.rank)  # rank-dependent init: the broadcast must fix it
    ctx.broadcast_variables(list(model.variables) + list(opt.variables))
    step = make_step(model, opt, ctx.allreduce_gradients)
    flat = lambda m: np.concatenate([np.ravel(w) for w in m.get_weights()])  # noqa: E731
    max_rank_diff = []
    for s in range(STEPS):
        lo = ctx.rank * HALF_BATCH
        step(xs[s, lo:lo + HALF_BATCH], ys[s, lo:lo + HALF_BATCH])
        everyone = ctx.allgather(flat(model)[None, :])
        max_rank_diff.append(float(np.abs(everyone - everyone[0]).max()))

    # collectives on metrics / data
    assert ctx.allreduce_mean(float(ctx.rank)) == pytest.approx(0.5)
    np.testing.assert_allclose(ctx.allreduce_mean(np.full(3, ctx.rank + 1.0)), np.full(3, 1.5))
    gathered = ctx.allgather(np.full(ctx.rank + 1, ctx.rank, dtype=np.int64))  # lengths 1 and 2
    np.testing.assert_array_equal(gathered, [0, 1, 1])
    ctx.barrier()
    assert ctx.learning_rate(1e-3, 5, DistributedConfig(scale_lr=True, warmup_chunks=5)) == pytest.approx(2e-3)

    if ctx.is_root:
        # the same training, one process, full batches, from rank 0's initial weights
        ref, ref_opt = build(100)
        ref_step = make_step(ref, ref_opt, lambda g: g)
        for s in range(STEPS):
            ref_step(xs[s], ys[s])
        result = {"size": ctx.size, "max_rank_diff": max_rank_diff,
                  "max_diff_vs_single": float(np.abs(flat(ref) - flat(model)).max()),
                  "max_weight": float(np.abs(flat(model)).max())}
        Path(out_dir, "result.json").write_text(json.dumps(result))
    ctx.barrier()


def _check(out_dir: Path, log: str) -> None:
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["result.json"], f"only rank 0 writes: {files}\n{log[-3000:]}"
    r = json.loads((out_dir / "result.json").read_text())
    assert r["size"] == 2
    assert len(r["max_rank_diff"]) == STEPS and max(r["max_rank_diff"]) == 0.0, r
    # fp32 reduction order differs (two half-batch means averaged vs one full mean): ~1e-7 relative after 4 steps
    assert r["max_diff_vs_single"] < 1e-5 * max(1.0, r["max_weight"]), r


def _run(cmd: list[str], tmp_path: Path, env_extra: dict | None = None) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run([*cmd, sys.executable, __file__, "worker", str(out_dir)], env=env, capture_output=True,
                          text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    _check(out_dir, log)


def test_two_ranks_horovodrun_gloo(horovod, tmp_path):
    _run(["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo"], tmp_path)


def test_two_ranks_mpirun(horovod, mpirun, tmp_path):
    _run([*mpirun, "-np", "2"], tmp_path)


@pytest.mark.slow
def test_two_rank_lenshpc_train_gives_a_normal_run_dir(horovod, tiny_config, run_files, tmp_path):
    """`horovodrun -np 2 lenshpc train`: a complete run dir written by rank 0 alone, nothing else anywhere."""
    cfg = tiny_config(chunks=2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "LENSHPC_NO_PROGRESS": "1"}
    proc = subprocess.run(["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m", "lenshpc",
                           "train", str(cfg), "--seed", "0", "--run-dir", "run", "--distributed", "horovod"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cfg.name, "run"])
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == run_files
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["chunks_trained"] == 2 and 0.0 <= metrics["auroc"] <= 1.0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    _worker(sys.argv[2])
