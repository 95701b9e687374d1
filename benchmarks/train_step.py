"""Training-step throughput with the real chunk pipeline vs. with the same kind of tensors already in memory.

For each model the script builds the real training loop (:class:`lenshpc.train.loop.Trainer`: the
``tf.function`` step, Adam, the per-chunk shuffle) and times ``Trainer.fit_chunk`` over N chunks

* **memory**: the chunks were synthesised beforehand (``ChunkEngine.chunk(i)``), so the step never waits;
* **pipeline**: the chunks come from ``ChunkEngine.iter_chunks`` (background synthesis of chunk i+1 while
  chunk i trains); the time includes every wait for data.

The ratio pipeline/memory is the fraction of the step's speed that survives the data pipeline
(target ≥ 0.95: the device never waits).  The two phases alternate (memory, pipeline, memory,
pipeline) and each figure is the total over both rounds, so drift (thermal, caches) hits both.

Usage::

    python benchmarks/train_step.py                       # tiny_resnet and resnet18, 64×64, 4 chunks of 256
    python benchmarks/train_step.py --size 101 --chunk-size 512 --chunks 3 --models resnet18
    python benchmarks/train_step.py --data data/kids_population.h5
    python benchmarks/train_step.py --config configs/cosmo21cm/classify.yaml --data C21.h5 --models cnn21 \
        --chunk-size 128 --batch-size 32                 # the 21-cm task's source (a slices21cm dataset)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("Usage::")[1])
    p.add_argument("--data", default=None, help="population dataset (default: simulate a small one in a temp dir)")
    p.add_argument("--size", type=int, default=64, help="image size when simulating (default 64)")
    p.add_argument("--models", nargs="+", default=["tiny_resnet", "resnet18"])
    p.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"),
                   help="run config (its task's chunk source is timed; default configs/tiny.yaml, the lens task)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="further config overrides (repeatable), e.g. task.params.crop=16")
    p.add_argument("--chunks", type=int, default=4, help="chunks per timed phase and round (default 4)")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    return p.parse_args()


def simulate(tmp: Path, size: int) -> Path:
    from lenshpc.data.simulate import simulate_population

    print(f"simulating a small population ({size}×{size} px) …", flush=True)
    return simulate_population(tmp / "bench_population.h5", n_lenses=200, n_sources=400, n_negatives=200, seed=0,
                               workers=max(1, (os.cpu_count() or 1)), size=size, progress=False)


def bench_model(name: str, data: Path, args: argparse.Namespace, tmp: Path) -> dict:
    from lenshpc import distributed
    from lenshpc.config import load_config
    from lenshpc.train.loop import Trainer
    from lenshpc.train.rundir import RunDir

    cfg = load_config(args.config, overrides=[
        f"data.path={data}", f"data.chunk_size={args.chunk_size}", f"model.name={name}",
        f"train.batch_size={args.batch_size}", "data.val_size=64", "distributed.backend=none", *args.overrides])
    trainer = Trainer(cfg, RunDir(tmp / name), distributed.init("none"))
    trainer.build()
    engine = trainer.engine
    trainer.fit_chunk(0, *engine.chunk(0))  # trace and warm up

    n = args.chunks
    totals = {"memory": 0.0, "pipeline": 0.0, "synthesis": 0.0}
    images = {"memory": 0, "pipeline": 0}
    next_chunk = 1
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        ready = [engine.chunk(i) for i in range(next_chunk, next_chunk + n)]
        totals["synthesis"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(ready):
            trainer.fit_chunk(next_chunk + i, x, y)
            images["memory"] += len(x)
        totals["memory"] += time.perf_counter() - t0
        next_chunk += n

        t0 = time.perf_counter()
        for i, x, y in engine.iter_chunks(next_chunk, next_chunk + n):
            trainer.fit_chunk(i, x, y)
            images["pipeline"] += len(x)
        totals["pipeline"] += time.perf_counter() - t0
        next_chunk += n
    return {
        "model": name,
        "memory": images["memory"] / totals["memory"],
        "pipeline": images["pipeline"] / totals["pipeline"],
        "synthesis": images["memory"] / totals["synthesis"],
    }


def main() -> None:
    args = parse_args()
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = Path(args.data) if args.data else simulate(tmp, args.size)
        rows = [bench_model(name, data, args, tmp) for name in args.models]
    print()
    print(f"train step, {args.chunks}×{args.rounds} chunks of {args.chunk_size} per phase, batch {args.batch_size}, "
          f"data {data.name}; TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"{'model':<14} {'memory img/s':>13} {'pipeline img/s':>15} {'ratio':>7} {'synthesis img/s':>16}")
    for r in rows:
        print(f"{r['model']:<14} {r['memory']:>13.1f} {r['pipeline']:>15.1f} {r['pipeline'] / r['memory']:>7.3f} "
              f"{r['synthesis']:>16.1f}")


if __name__ == "__main__":
    main()
