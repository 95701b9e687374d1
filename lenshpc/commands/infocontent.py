"""``lenshpc infocontent RUN_DIR``: which lensing parameters explain the misses (thesis Sec 5.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "TPR over (θ_E, α), TPR/FNR per α bin, source area above the lens noise vs prediction (Figs 5.9, 5.10, 7.22)"

DESCRIPTION = """\
Information content of a run's test mock lenses vs what the model detected (thesis Sec 5.3).
For the positives of RUN_DIR/predictions.h5 (test group) it writes, to OUT (default RUN_DIR/infocontent/):

  tpr_hexbin.png     TPR per hexagon over (θ_E, α) (Fig 5.9; right panel: positives per hexagon)
  tpr_alpha.png      TPR and FNR per α bin (Fig 5.10); tpr_theta_E.png the same per θ_E bin
  source_area.png    score vs the fraction of the cutout where the α-scaled source exceeds 2× the
                     lens's RMS noise (Fig 7.22), and TPR/FNR per bin of that fraction
  summary.json/.md   per-bin TPR/FNR tables with their edges, the values above which the TPR reaches 1
                     and stays there (α, θ_E, area fraction), hexagon cells, overall TPR
  positives.csv      one row per test positive: indices, metadata, score, area fraction, lens RMS

The source area needs the raw lens and source images the mock lenses were merged from
(Eq 4.2: m = l + α·s·max(l)/max(s)): they are read from the run's population dataset
(config.yaml data.path, or --data). The lens RMS noise is the σ-clipped standard deviation
of the raw lens cutout (see docs/infocontent.md for the definitions and why).

Runs on a labelled (challenge) dataset have no α, θ_E or source images: name two numeric
test-metadata columns with --x/--y to get the hexbin and per-bin rates over them.

A re-run with the same predictions, data and options does nothing (--force recomputes).

examples:
  lenshpc infocontent runs/thesis_table51/bce/seed0
  lenshpc infocontent runs/thesis_table51/bce/seed0 --threshold 0.9 --out results/bce0_t09
  lenshpc infocontent runs/bce/seed0 --bins 14 --bins alpha=0.02,0.03,0.04,0.05,0.075,0.1,0.2,0.3 --gridsize 15
  lenshpc infocontent runs/bce/seed0 --data /scratch/me/kids_population.h5      # moved dataset
  lenshpc infocontent runs/ensembles/nm3 --data data/kids.h5                    # an ensemble run dir
  lenshpc infocontent runs/challenge/seed0 --x Einstein_area --y mag_lens       # labelled dataset
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run or ensemble directory (predictions.h5, DONE)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default RUN_DIR/infocontent)")
    p.add_argument("--data", default=None, metavar="DATA.h5",
                   help="population dataset the test mock lenses came from (default: config.yaml data.path)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="decision threshold: predicted positive iff score ≥ T (default: the run's, metrics.json)")
    p.add_argument("--bins", action="append", default=None, metavar="SPEC",
                   help="N (equal-width bins for every quantity, default 10), or NAME=N, or NAME=E0,E1,... "
                        "(explicit edges for one quantity: alpha, theta_E, area_fraction or a metadata column); "
                        "repeatable. α bins span data.alpha_min–alpha_max, area fractions 0–max")
    p.add_argument("--gridsize", type=int, default=10, metavar="G", help="hexagons across the hexbin's x axis (10)")
    p.add_argument("--x", default=None, metavar="COL", help="hexbin x column (default theta_E)")
    p.add_argument("--y", default=None, metavar="COL", help="hexbin y column (default alpha)")
    p.add_argument("--noise-factor", type=float, default=2.0, metavar="F",
                   help="source pixels must exceed F × the lens RMS noise (default 2, the thesis's)")
    p.add_argument("--clip-sigma", type=float, default=3.0, metavar="S",
                   help="σ-clipping threshold of the lens RMS noise estimate (default 3)")
    p.add_argument("--force", action="store_true", help="recompute even if OUT/summary.json is up to date")


def run(args: argparse.Namespace) -> int:
    from lenshpc.analysis.inspect.infocontent import analyse, parse_bins

    s = analyse(args.run_dir, args.out, data=args.data, threshold=args.threshold, bins=parse_bins(args.bins),
                gridsize=args.gridsize, x=args.x, y=args.y, factor=args.noise_factor, sigma=args.clip_sigma,
                force=args.force)
    out = Path(args.out) if args.out else Path(s["run_dir"]) / "infocontent"
    state = "up to date" if s.get("skipped") else "written"
    print(f"{s['run_dir']}: {s['n_positives']} test positives, threshold {s['threshold']:g}: "
          f"TPR {s['tpr']:.4f} ({s['tp']} found, {s['fn']} missed)")
    for name, r in s["tpr_reaches_one"].items():
        if r["n_missed"] == 0:
            print(f"  {name}: no misses")
        else:
            binned = (f"TPR = 1 in every bin from {name} ≥ {r['edge']:.4g}" if r["edge"] is not None
                      else "TPR < 1 in the top non-empty bin")
            exact = (f"all {r['n_above_exact']} positives above {r['exact']:.4g} found" if r["n_above_exact"]
                     else f"the positive with the largest {name} ({r['exact']:.4g}) was missed")
            print(f"  {name}: {binned}; {exact} ({r['n_missed']} missed)")
    if s.get("source_area_skipped"):
        print(f"  source area not computed: {s['source_area_skipped']}")
    print(f"{state}: {out}/ ({', '.join(s['figures'])}, summary.json, summary.md)")
    return 0
