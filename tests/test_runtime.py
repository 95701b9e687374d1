"""The oneDNN runtime choice (lenshpc/runtime.py): taken before TensorFlow loads, safe on AVX-512 CPUs.

The regression test runs TensorFlow in subprocesses, since the choice is fixed when TensorFlow is
imported and the failure it prevents is a heap corruption that kills the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lenshpc import runtime

#: The issue's reproduction: conv gradients of a tiny ResNet for batches of 1 and 3, compiled and eager.
SMALL_BATCH_GRADIENTS = r"""
import sys
import numpy as np
import lenshpc  # first, as every lenshpc entry point does
import keras, tensorflow as tf
from lenshpc.models import build
from lenshpc import runtime
keras.utils.set_random_seed(0)
m = build("tiny_resnet", (32, 32, 1))
@tf.function
def g(x):
    with tf.GradientTape() as t:
        y = tf.reduce_sum(m(x, training=True))
    return t.gradient(y, [v.value for v in m.trainable_variables])
out = {}
for b in (1, 3):
    x = tf.constant(np.random.default_rng(3).random((b, 32, 32, 1), dtype=np.float32))
    for _ in range(20):
        grads = g(x)
    with tf.GradientTape() as t:
        y = tf.reduce_sum(m(x, training=True))
    t.gradient(y, m.trainable_variables)
    out[f"b{b}"] = np.concatenate([np.ravel(v.numpy()) for v in grads])
np.savez(sys.argv[1], **out)
print(runtime.describe()["isa_cap"], runtime.describe()["onednn"])
"""


def _run(tmp_path, name, **env_over):
    env = {k: v for k, v in os.environ.items()
           if k not in (runtime.ONEDNN_OPTS_ENV, runtime.ONEDNN_ISA_ENV, runtime.POLICY_ENV)}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", **env_over)
    out = tmp_path / f"{name}.npz"
    proc = subprocess.run([sys.executable, "-c", SMALL_BATCH_GRADIENTS, str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    return proc, out


def test_small_batch_conv_gradients_survive_and_match_eigen(tmp_path):
    """Default policy: the small-batch gradients that crash TensorFlow's AVX-512 oneDNN kernels run, and equal the
    Eigen kernels' gradients (oneDNN off), so a corrupted heap cannot hide as wrong numbers either."""
    proc, got = _run(tmp_path, "default")
    assert proc.returncode == 0, f"default policy crashed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    if runtime.affected():
        assert proc.stdout.split()[-2:] == ["AVX2", "True"], proc.stdout
    ref_proc, ref = _run(tmp_path, "eigen", TF_ENABLE_ONEDNN_OPTS="0")
    assert ref_proc.returncode == 0, ref_proc.stderr[-3000:]
    a, b = np.load(got), np.load(ref)
    for key in ("b1", "b3"):
        assert np.all(np.isfinite(a[key]))
        np.testing.assert_allclose(a[key], b[key], rtol=2e-3, atol=1e-5 * float(np.abs(b[key]).max()))


AVX512 = {"machine": "x86_64", "vendor": "AuthenticAMD", "model": "AMD EPYC 9654", "avx512": True,
          "avx512_bf16": True, "amx": False}
AVX2_ONLY = {**AVX512, "model": "AMD EPYC 7742", "avx512": False, "avx512_bf16": False}


@pytest.mark.parametrize("cpu, env, set_vars, safe", [
    (AVX512, {}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),                      # auto caps affected CPUs
    (AVX2_ONLY, {}, {}, True),                                                # and leaves others alone
    (AVX512, {"LENSHPC_ONEDNN": "off"}, {"TF_ENABLE_ONEDNN_OPTS": "0"}, True),
    (AVX2_ONLY, {"LENSHPC_ONEDNN": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),
    (AVX512, {"LENSHPC_ONEDNN": "on"}, {}, False),                            # an explicit opt-in is unsafe there
    (AVX512, {"TF_ENABLE_ONEDNN_OPTS": "0"}, {}, True),                       # the user's own variables win
    (AVX512, {"TF_ENABLE_ONEDNN_OPTS": "1"}, {}, False),
    (AVX512, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, {}, False),               # an AVX-512 cap still crashes
    (AVX512, {"ONEDNN_MAX_CPU_ISA": "avx2"}, {}, True),
])
def test_decision_table(cpu, env, set_vars, safe):
    got_vars, decision = runtime.decide(env, cpu)
    assert got_vars == set_vars
    assert decision["safe"] is safe
    assert decision["cpu"]["model"] == cpu["model"]
    if env.keys() & {"TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA"}:
        assert decision["source"] == "user"


def test_unknown_policy_warns_and_falls_back_to_auto():
    with pytest.warns(UserWarning, match="LENSHPC_ONEDNN"):
        got_vars, decision = runtime.decide({"LENSHPC_ONEDNN": "fast"}, AVX512)
    assert decision["policy"] == "auto" and got_vars == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_unsafe_opt_in_is_warned_about_in_a_fresh_process():
    code = "import warnings; warnings.simplefilter('always'); import lenshpc"
    env = {**os.environ, "LENSHPC_ONEDNN": "on"}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert ("corrupt the heap" in proc.stderr) == runtime.affected()


def test_run_records_and_logs_the_choice(tiny_sweep):
    """Every training run's metrics.json carries the decision, and train.log says it."""
    run = tiny_sweep / "bce" / "seed0"
    recorded = json.loads((run / "metrics.json").read_text())["runtime"]
    assert recorded == runtime.describe()
    assert "oneDNN " in (run / "train.log").read_text()


MIXED_PRECISION_RUN = r"""
import sys
import lenshpc
from lenshpc.cli import main
sys.exit(main(["train", sys.argv[1], "--run-dir", sys.argv[2], "--set", "train.mixed_precision=true",
               "--set", "train.chunks=1"]))
"""


@pytest.mark.skipif(not runtime.affected(), reason="only AVX-512 CPUs get the AVX2 cap")
def test_mixed_precision_under_the_cap_is_a_clear_user_error(tmp_path, small_population, repo_root):
    """Under the AVX2 cap a CPU has no float16 convolution kernel: ``lenshpc train`` says so (exit 2, the fix, no
    traceback) instead of TensorFlow's AbortedError from inside the first convolution."""
    cfg = tmp_path / "mp.yaml"
    cfg.write_text(f"extends: {repo_root / 'configs' / 'tiny.yaml'}\ndata:\n  path: {small_population}\n")
    env = {k: v for k, v in os.environ.items()
           if k not in (runtime.ONEDNN_OPTS_ENV, runtime.ONEDNN_ISA_ENV, runtime.POLICY_ENV)}
    proc = subprocess.run([sys.executable, "-c", MIXED_PRECISION_RUN, str(cfg), str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "mixed_precision" in proc.stderr and "LENSHPC_ONEDNN=off" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_float16_check_passes_under_a_user_cap_on_a_cpu_without_avx512(monkeypatch):
    """Without AVX-512, TensorFlow keeps float16 convolutions on Eigen, so an AVX2 cap the user exported is no
    reason to refuse mixed precision. The CPU is a hardware boundary: its flags are patched, nothing else."""
    monkeypatch.setattr(runtime, "describe", lambda: {"onednn": True, "isa_cap": "AVX2", "reason": "user"})
    monkeypatch.setattr(runtime, "cpu_info", lambda: {"avx512": False, "machine": "x86_64"})
    assert runtime.check_float16_convolutions() is None
    import tensorflow as tf

    from lenshpc.errors import UserError

    monkeypatch.setattr(runtime, "cpu_info", lambda: {"avx512": True, "machine": "x86_64"})
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # a CPU-only process
    with pytest.raises(UserError, match="needs a GPU here"):
        runtime.check_float16_convolutions()
