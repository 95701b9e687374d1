"""Horovod overhead per training step (measured on CPU ranks) and a ring-allreduce scaling model for GPU clusters.

Part 1 — measured, in one run, for ``tiny_resnet`` and ``resnet18`` (101×101×1 inputs, per-rank batch ``--batch``):

* gradient size (bytes of all trainable variables, fp32);
* 1 rank, no Horovod: step time (the baseline);
* 2 Horovod ranks (``horovodrun -np 2 --gloo``), each with the same per-rank batch (weak scaling): step time with the
  gradient allreduce, the same step WITHOUT the allreduce in the same processes (isolates communication from the
  two ranks competing for cores), and the grouped allreduce alone; overhead = allreduce step / local step − 1.

Every process uses one compute thread so the 2-rank run and the baseline see the same per-rank compute.

Part 2 — model (printed as a table): with Horovod's tensor fusion the gradients travel as one buffer of S bytes per
step; a ring allreduce over n GPUs costs

    T_ar(n) = 2 (n − 1) / n · S / B  +  2 (n − 1) · α

(each GPU sends and receives 2(n−1)/n of the buffer; 2(n−1) latency-bound hops).  B is the bus bandwidth of the
slowest link in the ring: NVLink inside a node, the node's InfiniBand NIC once the ring spans nodes.  The compute per
step T_c (per-GPU batch fixed, weak scaling) comes from the model's forward FLOPs × 3 (forward + backward) × batch at
an assumed sustained throughput.  Efficiency without overlap: T_c / (T_c + T_ar); Horovod overlaps the allreduce with
the backward pass, so the real figure lies between that and T_c / max(T_c, T_ar) (also printed).

Run:  python benchmarks/allreduce.py [--batch 32] [--steps 10] [--models tiny_resnet,resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INPUT_SHAPE = (101, 101, 1)

# Assumed hardware figures for the model (sources: NVIDIA V100/A100 datasheets; nccl-tests bus bandwidths reported
# for DGX-1V / DGX A100; EDR/HDR InfiniBand line rates).  Sustained training throughput: 40 % of the V100's fp32 peak
# (15.7 TFLOP/s) and 20 % of the A100's TF32 tensor-core peak (156 TFLOP/s) — small 101×101 images keep tensor
# cores far from peak.  These are assumptions; pass your own by editing GPUS.
GPUS = {
    "V100": {"sustained_tflops": 0.4 * 15.7, "nvlink_gbs": 130.0, "ib_gbs": 12.5, "gpus_per_node": 4,
             "ib": "EDR 100 Gb/s"},
    "A100": {"sustained_tflops": 0.2 * 156.0, "nvlink_gbs": 230.0, "ib_gbs": 25.0, "gpus_per_node": 4,
             "ib": "HDR 200 Gb/s"},
}
ALPHA_NVLINK_S, ALPHA_IB_S = 5e-6, 10e-6  # per-hop latency (NCCL small-message latency)


# ------------------------------------------------------------------------------------------------ measurement
def _worker(model_name: str, batch: int, steps: int, out: str) -> None:
    """One rank (or the single-process baseline): time local steps, allreduce steps and the allreduce alone."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import numpy as np

    from lenshpc import distributed, models

    ctx = distributed.init("auto")
    keras.utils.set_random_seed(0)
    model = models.build(model_name, input_shape=INPUT_SHAPE, num_outputs=1)
    opt = keras.optimizers.Adam(1e-4)
    opt.build(model.trainable_variables)
    ctx.broadcast_variables(list(model.variables) + list(opt.variables))
    rng = np.random.default_rng(ctx.rank)
    x = tf.constant(rng.normal(size=(batch, *INPUT_SHAPE)).astype("float32"))
    y = tf.constant((rng.random((batch, 1)) > 0.5).astype("float32"))

    def make(reduce):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, model(x, training=True)))
            grads = reduce(tape.gradient(loss, model.trainable_variables))
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss
        return step

    grads_only = [tf.zeros_like(v.value) for v in model.trainable_variables]

    @tf.function
    def allreduce_only():
        return ctx.allreduce_gradients(grads_only)

    def timed(fn) -> float:
        for _ in range(2):  # trace + warm-up
            fn()
        ctx.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            out_ = fn()
        np.asarray(out_[0] if isinstance(out_, list) else out_)  # wait for the last step
        return (time.perf_counter() - t0) / steps

    result = {"size": ctx.size, "grad_bytes": int(sum(np.prod(v.shape) * 4 for v in model.trainable_variables)),
              "params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
              "local_step_s": timed(make(lambda g: g))}
    if ctx.size > 1:
        result["allreduce_step_s"] = timed(make(ctx.allreduce_gradients))
        result["allreduce_only_s"] = timed(allreduce_only)
    result = {k: (ctx.allreduce_mean(v) if k.endswith("_s") else v) for k, v in result.items()}
    if ctx.is_root:
        result["forward_flops"] = forward_flops(model)
        Path(out).write_text(json.dumps(result))


def forward_flops(model) -> float:
    """Multiply-adds ×2 of the Conv2D/Dense layers for one image (BN, activations and pooling ignored: < 5 %)."""
    import numpy as np

    total = 0.0
    for layer in _layers(model):
        kind = type(layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D"):
            h, w, cout = layer.output.shape[1:4]
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            per_out = kh * kw * (cin if kind == "Conv2D" else 1)
            total += 2.0 * per_out * h * w * (cout if kind == "Conv2D" else cin)
        elif kind == "Dense":
            total += 2.0 * float(np.prod(layer.kernel.shape))
    return total


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _layers(layer)
        else:
            yield layer


def measure(model_name: str, batch: int, steps: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        single, double = Path(tmp, "1.json"), Path(tmp, "2.json")
        worker = [sys.executable, __file__, "--worker", model_name, "--batch", str(batch), "--steps", str(steps)]
        subprocess.run([*worker, "--out", str(single)], env=env, check=True, capture_output=True)
        hvd = subprocess.run(["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", *worker, "--out", str(double)],
                             env=env, capture_output=True, text=True)
        if hvd.returncode != 0:
            raise SystemExit(f"horovodrun failed:\n{hvd.stdout[-3000:]}\n{hvd.stderr[-3000:]}")
        return {"single": json.loads(single.read_text()), "double": json.loads(double.read_text())}


# ------------------------------------------------------------------------------------------------ model
def ring_allreduce_s(n: int, nbytes: float, bandwidth_gbs: float, alpha_s: float) -> float:
    """Ring allreduce time: 2(n−1)/n · S/B + 2(n−1)·α (0 for one GPU)."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / (bandwidth_gbs * 1e9) + 2.0 * (n - 1) * alpha_s


def scaling_table(nbytes: float, flops_per_image: float, batch: int, gpu: str, counts=(4, 8, 16, 32, 64)) -> list[dict]:
    hw = GPUS[gpu]
    t_c = 3.0 * flops_per_image * batch / (hw["sustained_tflops"] * 1e12)
    rows = []
    for n in counts:
        inter = n > hw["gpus_per_node"]
        bw = hw["ib_gbs"] if inter else hw["nvlink_gbs"]
        t_ar = ring_allreduce_s(n, nbytes, bw, ALPHA_IB_S if inter else ALPHA_NVLINK_S)
        rows.append({"gpus": n, "nodes": max(1, n // hw["gpus_per_node"]), "link": hw["ib"] if inter else "NVLink",
                     "t_compute_ms": 1e3 * t_c, "t_allreduce_ms": 1e3 * t_ar,
                     "eff_no_overlap": t_c / (t_c + t_ar), "eff_full_overlap": t_c / max(t_c, t_ar)})
    return rows


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="tiny_resnet,resnet18")
    p.add_argument("--batch", type=int, default=32, help="per-rank batch for the CPU measurement")
    p.add_argument("--gpu-batch", type=int, default=64, help="per-GPU batch in the model (thesis: 64)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        _worker(a.worker, a.batch, a.steps, a.out)
        return
    if shutil.which("horovodrun") is None:
        raise SystemExit("horovodrun not found: bash containers/install-horovod.sh")

    print(f"Part 1 — measured on this machine ({os.cpu_count()} CPUs), per-rank batch {a.batch}, 101×101×1, "
          f"1 thread per rank, {a.steps} timed steps")
    print(f"{'model':<12} {'params':>10} {'grad MB':>8} {'1 rank ms':>10} {'2r local ms':>12} {'2r +AR ms':>10} "
          f"{'AR only ms':>10} {'overhead':>9} {'eff. GB/s':>9}")
    measured = {}
    for name in a.models.split(","):
        m = measure(name, a.batch, a.steps)
        s, d = m["single"], m["double"]
        overhead = d["allreduce_step_s"] / d["local_step_s"] - 1
        bus_gbs = (2 * (2 - 1) / 2) * d["grad_bytes"] / d["allreduce_only_s"] / 1e9
        measured[name] = m
        print(f"{name:<12} {s['params']:>10,} {s['grad_bytes'] / 1e6:>8.2f} {1e3 * s['local_step_s']:>10.1f} "
              f"{1e3 * d['local_step_s']:>12.1f} {1e3 * d['allreduce_step_s']:>10.1f} "
              f"{1e3 * d['allreduce_only_s']:>10.2f} {100 * overhead:>8.1f}% {bus_gbs:>9.2f}")

    print(f"\nPart 2 — ring-allreduce model, per-GPU batch {a.gpu_batch} (weak scaling), fused fp32 gradients;"
          f" T_ar = 2(n-1)/n·S/B + 2(n-1)·α")
    for name, m in measured.items():
        s = m["single"]
        for gpu in GPUS:
            print(f"\n{name} on {gpu} ({GPUS[gpu]['gpus_per_node']} GPUs/node, NVLink {GPUS[gpu]['nvlink_gbs']:.0f} GB/s, "
                  f"{GPUS[gpu]['ib']} = {GPUS[gpu]['ib_gbs']:.1f} GB/s per node; "
                  f"{s['forward_flops'] / 1e9:.2f} GFLOP forward/image)")
            print(f"{'GPUs':>5} {'nodes':>5} {'link':>14} {'compute ms':>10} {'allreduce ms':>12} {'eff (no overlap)':>17} "
                  f"{'eff (overlap)':>14}")
            for r in scaling_table(s["grad_bytes"], s["forward_flops"], a.gpu_batch, gpu):
                print(f"{r['gpus']:>5} {r['nodes']:>5} {r['link']:>14} {r['t_compute_ms']:>10.2f} "
                      f"{r['t_allreduce_ms']:>12.2f} {100 * r['eff_no_overlap']:>16.1f}% {100 * r['eff_full_overlap']:>13.1f}%")


if __name__ == "__main__":
    main()
