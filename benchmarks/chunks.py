"""Chunk synthesis speed: images/s on one core for 4096-image chunks of 101×101 images.

Compares, in one run on the same data:

(a) baseline   — the thesis way: a per-image Python loop (numpy merge/normalise/√ and
                 ``scipy.ndimage.affine_transform`` nearest-neighbour, as Keras's
                 ImageDataGenerator does per image);
(b) numpy      — the vectorised numpy reference (``ChunkEngine.reference_chunk``: one
                 index map and one gather for the whole batch);
(c) fused      — the engine (``ChunkEngine.chunk``): compiled merge→normalise→√→gather;
(d) with ``--normalisations``: the engine with another ``data.normalisation`` (numpy/astropy/skimage
                 normalisation of the merged mock lenses, then the compiled gather).

and prints the per-stage split of (c), thread scaling and the numba compile time.
Figures are best-of-``--repeats`` (the machine may be shared); ratios are against (a).

Usage::

    python benchmarks/chunks.py                       # random population, 101×101
    python benchmarks/chunks.py --dataset DATA.h5     # a real (e.g. simulated) dataset
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("LENSHPC_NO_PROGRESS", "1")

from lenshpc.config import load_config  # noqa: E402
from lenshpc.data import augment as aug  # noqa: E402
from lenshpc.data.chunks import ChunkEngine  # noqa: E402
from lenshpc.data.format import write_population  # noqa: E402
from lenshpc.utils import rng_for  # noqa: E402


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_dataset(path: Path, size: int, n_lenses: int, n_sources: int, n_negatives: int) -> None:
    rng = np.random.default_rng(0)
    shape = (size, size, 1)
    # Content does not change the speed; a sky-like noise field plus a positive blob is enough.
    write_population(path, rng.normal(0, 1, (n_lenses, *shape)).astype(np.float32) + 3,
                     (rng.random((n_sources, *shape), dtype=np.float32) ** 6),
                     rng.normal(0, 1, (n_negatives, *shape)).astype(np.float32))


def baseline_chunk(engine: ChunkEngine, index: int, limit: int) -> int:
    """``limit`` images of chunk ``index`` (half positives, half negatives), one at a time (thesis-style)."""
    from scipy import ndimage

    rng = rng_for(engine.cfg.seed, "chunk", index, engine.rank, engine.size)
    n_pos, n_neg = engine._chunk_counts()
    pos = engine._draw_positives(rng, n_pos)
    neg = engine._draw_negatives(rng, n_neg)
    params = aug.draw_params(rng, n_pos + n_neg, engine.cfg.augment)
    h, w, c = engine.image_shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    out = np.empty((limit, h, w, c), dtype=np.float32)
    rows = np.r_[0 : limit // 2, n_pos : n_pos + limit - limit // 2]
    for j, i in enumerate(rows):
        if i < n_pos:
            lens = pos.lenses.images[pos.lens_rows[i]].reshape(h, w, c)
            src = pos.sources.images[pos.source_rows[i]].reshape(h, w, c)
            image = lens + src * (lens.max() * pos.alpha[i] / src.max())
            image = np.sqrt((image - image.min()) / (image.max() - image.min()))
        else:
            image = neg.pool.images[neg.rows[i - n_pos]].reshape(h, w, c)
        cs, sn, z = np.cos(params.theta[i]), np.sin(params.theta[i]), params.zoom[i]
        matrix = np.array([[cs, sn], [-sn, cs]]) / z
        offset = centre - matrix @ (centre + [params.shift_y[i], params.shift_x[i]])
        for ch in range(c):
            res = ndimage.affine_transform(image[:, :, ch], matrix, offset, order=0, mode="constant", cval=0.0)
            out[j, :, :, ch] = res[:, ::-1] if params.flip[i] else res
    return limit


def stage_split(engine: ChunkEngine, repeats: int) -> dict[str, float]:
    """Seconds per chunk of each stage of the fused path (one thread)."""
    h, w, c = engine.image_shape
    n_pos, n_neg = engine._chunk_counts()
    n = n_pos + n_neg
    state = {}

    def draw():
        rng = rng_for(engine.cfg.seed, "chunk", 0, 0, 1)
        state["pos"] = engine._draw_positives(rng, n_pos)
        state["neg"] = engine._draw_negatives(rng, n_neg)
        state["perm"] = rng.permutation(n)
        state["coef"] = aug.affine_coefficients(aug.draw_params(rng, n, engine.cfg.augment), h, w)

    out = np.empty((n, h * w * c), dtype=np.float32)

    def render(which: str, augment: bool):
        draw_ = state[which]
        sl = slice(0, n_pos) if which == "pos" else slice(n_pos, n)
        for job in draw_.render(state["coef"][sl], state["perm"][sl], out, engine.image_shape, augment):
            job()

    t_draw = best(draw, repeats)
    t_merge = best(lambda: render("pos", False), repeats)
    t_pos = best(lambda: render("pos", True), repeats)
    t_copy = best(lambda: render("neg", False), repeats)
    t_neg = best(lambda: render("neg", True), repeats)
    t_alloc = best(lambda: np.empty((n, h * w * c), dtype=np.float32).fill(0), repeats)
    return {"draw indices + affine parameters": t_draw,
            "positives: merge+normalise+√ (no augmentation)": t_merge,
            "positives: augment gather (difference)": t_pos - t_merge,
            "negatives: copy of prepared images (no augmentation)": t_copy,
            "negatives: augment gather (difference)": t_neg - t_copy,
            "(for scale: allocate+touch one output chunk)": t_alloc}


def compile_seconds() -> tuple[float, float]:
    """(fresh compile, load from numba's cache) of the kernels, each in a new interpreter."""
    code = "from lenshpc.data import augment; print(augment.warm_up())"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        first = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
        second = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    return first, second


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", help="population/labelled HDF5 (default: a random one in a temp dir)")
    ap.add_argument("--size", type=int, default=101, help="image side for the random dataset (default 101)")
    ap.add_argument("--lenses", type=int, default=2500)
    ap.add_argument("--sources", type=int, default=12000)
    ap.add_argument("--negatives", type=int, default=2500)
    ap.add_argument("--chunk", type=int, default=4096, help="chunk size (default 4096)")
    ap.add_argument("--repeats", type=int, default=5, help="best of N timings (default 5)")
    ap.add_argument("--baseline-images", type=int, default=400, help="images timed for the slow baseline")
    ap.add_argument("--threads", type=int, nargs="*", default=[2], help="extra thread counts to time")
    ap.add_argument("--normalisations", nargs="*", default=[], metavar="NAME",
                    help="also time the engine (1 thread) with these data.normalisation choices, e.g. asinh zscale "
                         "histogram_template (template: the dataset's pooled histogram)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.dataset) if args.dataset else Path(tmp) / "bench.h5"
        if not args.dataset:
            make_dataset(path, args.size, args.lenses, args.sources, args.negatives)
        cfg = load_config(None, [f"data.path={path}", f"data.chunk_size={args.chunk}", "data.threads=1"])
        t0 = time.perf_counter()
        engine = ChunkEngine(cfg)
        t_init = time.perf_counter() - t0
        n = engine.per_rank_chunk_size
        h, w, c = engine.image_shape
        print(f"dataset: {engine.kind}, image {h}×{w}×{c}, chunk {n}, cores {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}, engine init (load + prepare + kernel warm-up) {t_init:.2f} s")

        t_base = best(lambda: baseline_chunk(engine, 0, args.baseline_images), max(1, args.repeats // 2))
        rate_base = args.baseline_images / t_base
        t_ref = best(lambda: engine.reference_chunk(0), max(1, args.repeats // 2))
        engine.chunk(0)
        t_fused = best(lambda: engine.chunk(0), args.repeats)
        rows = [("(a) baseline: per-image numpy + scipy.ndimage loop", rate_base),
                ("(b) vectorised numpy reference", n / t_ref),
                ("(c) fused numba kernels, 1 thread", n / t_fused)]
        for threads in args.threads:
            eng_t = ChunkEngine(cfg.replace(**{"data.threads": threads}))
            eng_t.chunk(0)
            rows.append((f"(c) fused numba kernels, {threads} threads", n / best(lambda: eng_t.chunk(0), args.repeats)))
            eng_t.close()
        for name in args.normalisations:
            params = {"template": str(path), "template_count": 64} if name == "histogram_template" else {}
            eng_n = ChunkEngine(cfg.replace(**{"data.normalisation": name, "data.normalisation_params": params}))
            eng_n.chunk(0)
            rows.append((f"(d) engine, data.normalisation={name}, 1 thread",
                         n / best(lambda: eng_n.chunk(0), max(1, args.repeats // 2))))
            eng_n.close()
        print(f"\n{'path':<52} {'images/s':>10} {'× baseline':>11}")
        for name, rate in rows:
            print(f"{name:<52} {rate:>10,.0f} {rate / rate_base:>10.1f}×")

        print(f"\nper-stage split of (c), ms per {n}-image chunk (1 thread):")
        for name, seconds in stage_split(engine, args.repeats).items():
            print(f"  {name:<56} {1000 * seconds:8.1f}")
    first, cached = compile_seconds()
    print(f"\nnumba kernels: first compile {first:.2f} s, later processes load the cache in {cached:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
