"""CPU cost of a tiny_resnet training step: the quickstart's recipe against the old one, and 1 vs 2 threads.

Builds the real model (``lenshpc.models``), loss and Adam step as ``tf.function`` for each case and times
steps on random images; the cases are interleaved and each figure is the best of ``--rounds`` (robust against
other jobs on a shared machine).  Ratios are against the old quickstart's step (64×64 px, filters 8/16/32,
batch 32) in the same run.  ``--threads`` sets TensorFlow's intra-op threads (a process-wide setting: run the
script once per thread count to compare).

Usage::

    python benchmarks/tiny_step.py                 # 1 thread (the quickstart runs one run per core)
    python benchmarks/tiny_step.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: (label, image side, filters, batch); the first is the baseline.
CASES = (
    ("old quickstart: 64 px, 8/16/32, batch 32", 64, (8, 16, 32), 32),
    ("new quickstart: 48 px, 8/16/32, batch 32", 48, (8, 16, 32), 32),
    ("64 px, 2× width 16/32/64, batch 32", 64, (16, 32, 64), 32),
    ("64 px, 8/16/32, batch 64", 64, (8, 16, 32), 64),
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("Usage::")[1])
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (default 1)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed block (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best is reported (default 5)")
    return p.parse_args()


def build_step(side: int, filters: tuple, batch: int):
    import keras
    import tensorflow as tf

    from lenshpc import losses, models

    model = models.build("tiny_resnet", (side, side, 1), num_outputs=1, filters=list(filters), bn_momentum=0.9)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = losses.get("bce", beta=0.17)

    @tf.function(input_signature=[tf.TensorSpec([None, side, side, 1]), tf.TensorSpec([None])])
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.reshape(model(x, training=True), [-1])) + tf.add_n(model.losses)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    x = tf.random.uniform([batch, side, side, 1], seed=1)
    y = tf.cast(tf.random.uniform([batch], seed=2) > 0.5, tf.float32)
    step(x, y)  # trace
    return lambda: step(x, y).numpy()


def main() -> None:
    args = parse_args()
    import lenshpc  # noqa: F401  (before TensorFlow: the oneDNN policy)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    steps = [build_step(side, filters, batch) for _, side, filters, batch in CASES]
    best = [float("inf")] * len(CASES)
    for _ in range(args.rounds):
        for i, run in enumerate(steps):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                run()
            best[i] = min(best[i], (time.perf_counter() - t0) / args.steps)
    print(f"intra-op threads {args.threads}; load average {os.getloadavg()[0]:.1f}; best of {args.rounds} × {args.steps} steps")
    print("| case | ms/step | images/s | per-image cost vs old |")
    print("|---|---:|---:|---:|")
    base = best[0] / CASES[0][3]
    for (label, _, _, batch), t in zip(CASES, best):
        print(f"| {label} | {t * 1e3:.1f} | {batch / t:,.0f} | {t / batch / base:.2f}× |")


if __name__ == "__main__":
    main()
