"""What lenshpc's oneDNN choice costs on this CPU: training images/s for each oneDNN mode.

TensorFlow 2.21's oneDNN AVX-512 conv-gradient kernels corrupt the heap for small batches
(lenshpc/runtime.py), so on AVX-512 CPUs lenshpc caps oneDNN at AVX2 by default.  This measures,
in one run and in fresh processes (the mode is fixed when TensorFlow loads), a compiled training
step (Adam, BCE, batch ``--batch``) in three modes:

(a) off      — ``TF_ENABLE_ONEDNN_OPTS=0`` (Eigen kernels: the baseline)
(b) avx2     — ``ONEDNN_MAX_CPU_ISA=AVX2`` (lenshpc's default on AVX-512 CPUs)
(c) avx512   — TensorFlow's default (unsafe on AVX-512 CPUs; batch 64 happens not to crash)

and prints images/s best-of-``--repeats`` with ratios against (a).

Usage::

    python benchmarks/onednn.py                              # tiny_resnet 64² and resnet18 101²
    python benchmarks/onednn.py --models resnet18:101 --batch 64 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODES = {"off": {"TF_ENABLE_ONEDNN_OPTS": "0"}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
         "avx512": {"TF_ENABLE_ONEDNN_OPTS": "1"}}

STEP = r"""
import json, sys, time
import numpy as np, keras, tensorflow as tf
from lenshpc.models import build
name, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
m = build(name, (size, size, 1)); opt = keras.optimizers.Adam(1e-4)
rng = np.random.default_rng(0)
x = tf.constant(rng.random((batch, size, size, 1), dtype=np.float32))
y = tf.constant((rng.random((batch, 1)) > 0.5).astype(np.float32))
@tf.function
def step(x, y):
    with tf.GradientTape() as t:
        loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, m(x, training=True)))
    opt.apply_gradients(zip(t.gradient(loss, m.trainable_variables), m.trainable_variables))
    return loss
for _ in range(3): step(x, y).numpy()
t0 = time.perf_counter()
for _ in range(steps): step(x, y).numpy()
print(json.dumps({"img_s": batch * steps / (time.perf_counter() - t0)}))
"""


def measure(mode: str, model: str, size: int, batch: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "LENSHPC_ONEDNN")}
    env.update(MODES[mode], TF_CPP_MIN_LOG_LEVEL="3", LENSHPC_ONEDNN="on" if mode == "avx512" else "auto")
    out = subprocess.run([sys.executable, "-c", STEP, model, str(size), str(batch), str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["img_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny_resnet:64", "resnet18:101"], help="NAME:SIZE pairs")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30 tiny, 5 otherwise)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from lenshpc.runtime import cpu_info

    cpu = cpu_info()
    print(f"CPU: {cpu['model']} ({cpu['vendor']}), AVX-512 {cpu['avx512']}, BF16 {cpu['avx512_bf16']}, "
          f"AMX {cpu['amx']}; {os.cpu_count()} cores; batch {args.batch}")
    for spec in args.models:
        name, size = spec.split(":")
        steps = args.steps or (30 if name.startswith("tiny") else 5)
        best = {m: max(measure(m, name, int(size), args.batch, steps) for _ in range(args.repeats)) for m in MODES}
        row = "  ".join(f"{m} {v:8.1f} img/s ({v / best['off']:.2f}x)" for m, v in best.items())
        print(f"{name:12s} {size:>3s}²  {row}")


if __name__ == "__main__":
    main()
