"""Single-process behaviour of lenshpc.distributed (multi-rank Horovod runs are in tests/cluster/)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lenshpc import distributed
from lenshpc.config import DistributedConfig
from lenshpc.errors import UserError


@pytest.fixture
def clean_launch_env(monkeypatch):
    """Remove launcher variables so tests see a plain single process even inside a SLURM/MPI job."""
    for var in (*distributed._SIZE_VARS, "SLURM_NTASKS", "SLURM_STEP_ID", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(var, raising=False)


def test_none_backend_is_identity():
    ctx = distributed.init("none")
    assert (ctx.backend, ctx.rank, ctx.size, ctx.local_rank, ctx.local_size) == ("none", 0, 1, 0, 1)
    assert ctx.is_root and not ctx.distributed
    grads = [np.ones(3), None, np.zeros((2, 2))]
    out = ctx.allreduce_gradients(grads)
    assert out[1] is None and out[0] is grads[0] and out[2] is grads[2]
    assert ctx.allreduce_mean(2.5) == 2.5
    arr = np.arange(6).reshape(3, 2)
    np.testing.assert_array_equal(ctx.allgather(arr), arr)
    ctx.barrier()
    ctx.broadcast_variables([object()])  # never touched with one rank


def test_auto_without_launcher_is_single_process(clean_launch_env):
    ctx = distributed.init("auto")
    assert ctx.backend == "none" and ctx.size == 1


def test_unknown_backend_is_user_error():
    with pytest.raises(UserError, match="choose one of auto, horovod, none"):
        distributed.init("mpi")


def test_horovod_missing_is_user_error_with_install_hint(monkeypatch, clean_launch_env):
    # Simulates an environment without Horovod (None in sys.modules makes the import fail).
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)
    with pytest.raises(UserError, match="install-horovod.sh"):
        distributed.init("horovod")
    # auto + launched with 2 ranks but no Horovod must not silently train two independent models
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(UserError, match="one of 2 ranks"):
        distributed.init("auto")


@pytest.mark.parametrize(
    "env, size",
    [
        ({}, 1),
        ({"HOROVOD_SIZE": "4"}, 4),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, 2),
        ({"PMI_SIZE": "8"}, 8),
        # the batch script's own shell: SLURM_NTASKS is set but only one process runs
        ({"SLURM_NTASKS": "4", "SLURM_STEP_ID": "4294967294"}, 1),
        ({"SLURM_NTASKS": "4"}, 1),
        # inside `srun -n 4`
        ({"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_ID": "0"}, 4),
        ({"SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_ID": "4294967294"}, 1),
    ],
)
def test_launched_world_size(env, size):
    assert distributed.launched_world_size(env) == size


def test_learning_rate_scaling_and_warmup():
    cfg = DistributedConfig(scale_lr=True, warmup_chunks=4)
    single = distributed.Context()
    assert [single.learning_rate(1e-3, c, cfg) for c in range(6)] == [1e-3] * 6
    four = distributed.Context(backend="horovod", size=4)
    lrs = [four.learning_rate(1e-3, c, cfg) for c in range(6)]
    np.testing.assert_allclose(lrs, [1e-3, 1.75e-3, 2.5e-3, 3.25e-3, 4e-3, 4e-3])
    assert four.learning_rate(1e-3, 0, DistributedConfig(scale_lr=True, warmup_chunks=0)) == pytest.approx(4e-3)
    assert four.learning_rate(1e-3, 0, DistributedConfig(scale_lr=False, warmup_chunks=4)) == pytest.approx(1e-3)


def test_backing_variable_of_keras_and_tf_variables():
    import keras
    import tensorflow as tf

    kv = keras.Variable(np.ones(3, dtype="float32"))
    tv = tf.Variable([1.0])
    assert distributed._backing_tf_variable(kv) is kv.value
    assert distributed._backing_tf_variable(tv) is tv
    with pytest.raises(TypeError, match="keras.Variable or tf.Variable"):
        distributed._backing_tf_variable(np.ones(2))
