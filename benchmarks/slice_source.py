"""21-cm chunk source speed: slices/s of class-balanced, augmented chunks (``SliceSource.chunk``).

Compares, in one run on the same slices held in RAM:

(a) loop      — a per-slice Python loop (``np.roll`` by a random offset, ``np.rot90``, ``np.fliplr``, one slice
                at a time: the obvious way to write the augmentation);
(b) gather    — the floor: a plain un-augmented fancy-index gather of the same number of random slices;
(c) source    — the source (:class:`lenshpc.data.slice_source.SliceSource`): balanced class draw + one
                vectorised periodic-window gather + grouped rot90/flip for the whole chunk.

Figures are best-of-``--repeats`` (the machine may be shared); ratios are against (a) and (b).

Usage::

    python benchmarks/slice_source.py --data C21.h5                 # a slices21cm dataset (lenshpc simulate21cm)
    python benchmarks/slice_source.py                               # synthetic 64×64 slices
"""

from __future__ import annotations

import argparse
import os
import tempfile
import timeit
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")

import lenshpc  # noqa: E402,F401
from lenshpc.config import Config  # noqa: E402
from lenshpc.data.slice_source import SliceSource  # noqa: E402
from lenshpc.tasks.cosmo21cm import Cosmo21cmTask  # noqa: E402
from lenshpc.utils import rng_for  # noqa: E402


def best(fn, repeats: int) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def synthetic(path: Path, side: int) -> Path:
    from lenshpc.data.cosmo21cm.slices import write_slices

    rng = np.random.default_rng(0)
    n_real, z, f, per = 5, (7.0, 8.0, 9.0), (-1.3, -0.7), 48
    rows = [(r, a, b) for r in range(n_real) for a in z for b in f for _ in range(per)]
    meta = {"realisation": np.array([r[0] for r in rows]), "redshift": np.array([r[1] for r in rows]),
            "f_esc10": np.array([r[2] for r in rows])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_slices(path, rng.normal(10, 5, (len(rows), side, side)).astype(np.float32), meta,
                            classes={"redshift": list(z), "escape_fraction": list(f)}, seed=0)


def loop_chunk(images: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    h, w = images.shape[1:3]
    out = np.empty((n, *images.shape[1:]), np.float32)
    for i, row in enumerate(rng.integers(0, len(images), n)):
        img = np.roll(images[row], (int(rng.integers(0, h)), int(rng.integers(0, w))), axis=(0, 1))
        img = np.rot90(img, int(rng.integers(0, 4)))
        out[i] = img[:, ::-1] if rng.random() < 0.5 else img
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="slices21cm dataset (default: synthetic slices in a temp dir)")
    p.add_argument("--side", type=int, default=64, help="slice side of the synthetic data (default 64)")
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--crop", type=int, default=0, help="task.params.crop (0 = whole slice)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else synthetic(Path(tmp) / "slices.h5", args.side)
        cfg = Config()
        cfg.data.path, cfg.data.chunk_size = str(data), args.chunk_size
        source = SliceSource(cfg, Cosmo21cmTask.check_params({"crop": args.crop}))
        images = source._load_train()[0]
        n = source.per_rank_chunk_size
        counter = iter(range(10**9))
        t_source = best(lambda: source.chunk(next(counter)), args.repeats)
        t_gather = best(lambda: np.ascontiguousarray(images[rng_for(0, "g").integers(0, len(images), n)]),
                        args.repeats)
        t_loop = best(lambda: loop_chunk(images, n, rng_for(0, "l")), args.repeats)
    side = source.image_shape[0]
    print(f"21-cm chunk source: chunks of {n} slices of {side}×{side} (train pool {len(images)} slices of "
          f"{images.shape[1]}×{images.shape[2]}, {source.n_classes} classes), best of {args.repeats}, 1 core")
    print(f"{'method':<8} {'slices/s':>10} {'vs loop':>8} {'vs gather':>10}")
    for name, t in (("loop", t_loop), ("gather", t_gather), ("source", t_source)):
        print(f"{name:<8} {n / t:>10.0f} {t_loop / t:>8.2f} {t_gather / t:>10.3f}")


if __name__ == "__main__":
    main()
