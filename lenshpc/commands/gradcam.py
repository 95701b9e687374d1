"""``lenshpc gradcam RUN_DIR``: Grad-CAM panels of TP/FP/FN/TN test images (thesis Sec 3.7, Figs 5.3–5.8)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Grad-CAM heatmaps (Eq 3.24-3.25) of a run's TP/FP/FN/TN test images: PNG panels + heatmaps.h5"

DESCRIPTION = """\
Explain a finished run's lens calls with Grad-CAM (thesis Sec 3.7, Eq 3.24-3.25): for chosen layers,
the gradient of the pre-sigmoid output (Dense layer 'logits') with respect to each feature map,
averaged over the map, weights the maps; ReLU of the weighted sum shows where in the image the
evidence FOR a lens sits.  One compiled TensorFlow function computes every layer's map for a whole batch.

The run's fixed test set is rebuilt from its config (same order as predictions.h5; the labels are
checked, and a changed data file is an error) and split into true/false positives/negatives at the
run's decision threshold.  By default the most confident images of each case are shown (TP/FP highest
score first, FN/TN lowest first).  A case with no member (e.g. no false positive) is reported, not an
error.  A run whose predictions.h5 is missing has its test set scored by model.keras, as --data does.

Default layers: the last four add_<i> (ResNet18: add_5..add_8 = the thesis's add_4..add_7;
tiny_resnet: add_1..add_3), else the last four Conv2D layers.

Writes OUT/gradcam/ (OUT defaults to RUN_DIR):
  <case>_<i>.png   one row: input | heatmap per layer | overlay per layer (R = input, B = heatmap);
                   heatmaps upscaled by nearest neighbour (no bicubic smoothing), scaled per map
  <case>.png       all images of the case, one row each
  heatmaps.h5      raw heatmaps per layer at native size, images, scores, labels, case, test index
  summary.json     counts per case, chosen test indices, layer sizes, timings
A re-run with the same request is skipped (--force recomputes).  docs/gradcam.md has the details.

examples:
  lenshpc gradcam runs/bce/seed0
  lenshpc gradcam runs/bce/seed0 --layers add_7,add_8 --cases fp,fn --n 8
  lenshpc gradcam runs/fbeta_soft/seed3 --threshold 0.9 --seed 1 --out results/fbeta_seed3
  lenshpc gradcam runs/bce/seed0 --data data/other_population.h5 --out results/bce_other
"""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (model.keras, predictions.h5, DONE)")
    p.add_argument("--layers", type=_csv, default=None, metavar="L1,L2,...",
                   help="feature-map layers to explain (default: the model's last four add_<i> layers)")
    p.add_argument("--cases", type=_csv, default=["tp", "fp", "fn", "tn"], metavar="C1,C2,...",
                   help="confusion-matrix cases among tp,fp,fn,tn (default all four)")
    p.add_argument("--n", type=int, default=4, metavar="N", help="images per case (default 4)")
    p.add_argument("--out", default=None, metavar="DIR", help="output root; files go to DIR/gradcam (default RUN_DIR)")
    p.add_argument("--data", default=None, metavar="DATA.h5",
                   help="explain another dataset's fixed test set (scored by the model; default the run's own)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="decision threshold of the cases (default the run's selection.threshold)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seeded random choice per case (default: the most confident images first)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="images per Grad-CAM call (default 64)")
    p.add_argument("--force", action="store_true", help="recompute even if OUT/gradcam/summary.json is up to date")


def run(args: argparse.Namespace) -> int:
    from lenshpc.analysis.inspect.gradcam import run_gradcam

    summary = run_gradcam(args.run_dir, layers=args.layers, cases=args.cases, n=args.n, out=args.out,
                          data=args.data, threshold=args.threshold, seed=args.seed, batch_size=args.batch_size,
                          force=args.force)
    out = Path(args.out if args.out is not None else args.run_dir) / "gradcam"
    state = "up to date" if summary.get("skipped") else "written"
    shown = ", ".join(f"{c} {v['shown']}/{v['available']}" for c, v in summary["cases"].items())
    print(f"{out}: {state} ({shown}; layers {', '.join(summary['layers'])}; threshold {summary['threshold']:g})")
    if summary.get("missing_cases"):
        print(f"no test image in case(s): {', '.join(summary['missing_cases'])}")
    return 0
