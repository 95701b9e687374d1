"""``lenshpc evaluate RUN_DIR``: re-score a run's selected model without training."""

from __future__ import annotations

import argparse

from lenshpc.commands import thresholds_text

HELP = "re-score a finished run's model.keras on its test set or on another dataset (no training)"

DESCRIPTION = """\
Apply a run's selected model (RUN_DIR/model.keras) to a dataset and write metrics.json and
predictions.h5 (same format as the run's own; docs/run-dir.md).

Without --data the run's own fixed test set is scored, which reproduces RUN_DIR/metrics.json.
Metrics are given at selection.threshold and at t*, the threshold that maximises Fβ on the
run's own validation scores (RUN_DIR/predictions.h5), applied to the scored set.
A population dataset is scored on its fixed test set (mock lenses + negatives, as in training);
a labelled dataset on its test split, or on every image with --split all.

examples:
  lenshpc evaluate runs/bce/seed3
  lenshpc evaluate runs/bce/seed3 --data data/other_population.h5
  lenshpc evaluate runs/challenge/seed0 --data data/challenge_test.h5 --split all --out results/challenge
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (holds model.keras, config.yaml)")
    p.add_argument("--data", default=None, metavar="DATA.h5", help="dataset to score (default: the run's data.path)")
    p.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                   help="images of a labelled dataset to score (population datasets: test only; default test)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default RUN_DIR/eval-<data file name>)")


def run(args: argparse.Namespace) -> int:
    from lenshpc.train import evaluate_run

    result = evaluate_run(args.run_dir, args.data, split=args.split, out=args.out)
    auroc = result.get("auroc")
    print(f"{args.run_dir} on {result['data']} ({result['split']}, {result['n_test']} images): "
          f"auroc {auroc if auroc is None else round(auroc, 4)}, accuracy {round(result.get('accuracy', float('nan')), 4)}, "
          f"{thresholds_text(result)}")
    return 0
