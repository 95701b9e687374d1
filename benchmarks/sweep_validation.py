"""What validating every grid point of a sweep costs: ``models.check`` (no Keras) vs building each model.

``lenshpc sweep`` (dry run and real submit alike) checks each grid point's ``model.name`` /
``model.params`` with :func:`lenshpc.models.check`.  The alternative — building the Keras model of
every point — is the baseline here, measured in the same run on a few points and extrapolated.

Usage::

    python benchmarks/sweep_validation.py                  # 200-point grid of tiny_resnet + resnet18 variants
    python benchmarks/sweep_validation.py --points 1000 --build-sample 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lenshpc  # noqa: F401 - oneDNN choice before TensorFlow loads

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=200, help="grid points (variants × seeds, 2 seeds each)")
    ap.add_argument("--build-sample", type=int, default=3, help="models built per architecture for the baseline")
    args = ap.parse_args()

    import yaml

    from lenshpc import models
    from lenshpc.hpc.spec import load_sweep

    n_variants = max(1, args.points // 2)
    grid = [{"name": f"v{i}", "model.name": "resnet18" if i % 2 else "tiny_resnet",
             "model.params": {"l2": 1e-4 * (1 + i)}} for i in range(n_variants)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.yaml"
        path.write_text(yaml.safe_dump({"name": "bench", "base": str(REPO / "configs" / "tiny.yaml"),
                                        "seeds": [0, 1], "grid": grid}))
        t0 = time.perf_counter()
        spec = load_sweep(path, cwd=tmp)
        load_s = time.perf_counter() - t0
    points = spec.points
    t0 = time.perf_counter()
    for p in points:
        models.check(p.config.model.name, p.config.model.params, (101, 101, 1))
    check_s = time.perf_counter() - t0

    import keras

    build_s = {}
    for name in ("tiny_resnet", "resnet18"):
        t0 = time.perf_counter()
        for _ in range(args.build_sample):
            models.build(name, (101, 101, 1))
            keras.backend.clear_session()
        build_s[name] = (time.perf_counter() - t0) / args.build_sample
    per_build = sum(build_s[p.config.model.name] for p in points) / len(points)
    print(f"grid: {len(points)} points ({n_variants} variants × 2 seeds)")
    print(f"load_sweep (parse + validate every point): {load_s:.3f} s = {1e3 * load_s / len(points):.2f} ms/point")
    print(f"models.check alone: {1e6 * check_s / len(points):.1f} µs/point")
    print(f"baseline, building each model: tiny_resnet {build_s['tiny_resnet']:.2f} s, resnet18 "
          f"{build_s['resnet18']:.2f} s → {per_build * len(points):.0f} s for this grid "
          f"({per_build * len(points) / load_s:.0f}× the whole load_sweep)")


if __name__ == "__main__":
    main()
