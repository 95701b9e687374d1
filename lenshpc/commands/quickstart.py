"""``lenshpc quickstart``: simulate → sweep → reduce on the embedded default, no config files needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenshpc.commands import add_set, quickstart21cm
from lenshpc.commands.quicksweep import report, resource, run_quick_sweep
from lenshpc.errors import UserError

HELP = "end-to-end demo: simulate → 2 losses × 3 seeds sweep → report → ensembles, Grad-CAM, info content, ranking"
DESCRIPTION = """\
The main job on the embedded default (lenshpc/resources/quickstart.yaml), from a fresh clone:

  1. simulate a KiDS-like population (3000 lenses, sources, negatives; 48×48 px) → OUT/data/population.h5
  2. sweep: BCE and F1-soft loss × seeds 0–2 of a tiny ResNet (local executor)  → OUT/runs/
  3. reduce: Table-5.1-style mean ± std report and plots                 → OUT/report.md, OUT/plots/
  4. analysis (skip with --no-analysis), each step the CLI command it prints:
     ensembles (Nelder–Mead, simplex, input-dependent, average, committee) → OUT/ensembles/report.md
     Grad-CAM panels of runs/bce/seed0                                      → OUT/runs/bce/seed0/gradcam/
     information content of runs/bce/seed0                                  → OUT/runs/bce/seed0/infocontent/
     ranking of a hard mock survey (held-out negatives, half of them replaced
       by hard contaminants — saturated stars, spirals, groups, artefacts —
       + 20 tracer lenses; lenshpc survey --contaminants hard)            → OUT/rank/
     an HTML page of its top 50 to look at and label (lenshpc inspect)      → OUT/rank/inspect.html

A few minutes on 2 CPU cores. Re-running skips finished work (the dataset, every finished run and
finished analysis outputs); an interrupted quickstart resumes from the runs' checkpoints.

With --task cosmo21cm, the 21-cm study instead (lenshpc/commands/quickstart21cm.py): 21cmFAST boxes
(3 redshifts × 2 F_ESC10 × 5 realisations, 32³) → OUT/data/cosmo21cm.h5, the seed's autoencoder → OUT/encoder/,
CNN on its frozen encoder vs the same CNN from scratch vs the dense baseline × 3 seeds → OUT/runs/, and
OUT/report.md with per-class recall, the mean confusion matrix, learning curves and the PCA baseline.

examples:
  lenshpc quickstart
  lenshpc quickstart --task cosmo21cm --out qs21
  lenshpc quickstart --out /scratch/$USER/qs --parallel 2
  lenshpc quickstart --set train.chunks=40      # a one-minute-shorter, weaker demo
"""

#: ``--task`` choices: the lens demo and the 21-cm study.
TASKS = ("lens", "cosmo21cm")
#: Population of the quickstart dataset: an 80/10/10 split, so the test set holds 300 held-out lenses (each with a
#: held-out source) and 300 held-out negatives, 600 images; 48×48 px keeps a CPU training step cheap
#: (docs/science.md).
POPULATION = {"n_lenses": 3000, "n_sources": 3000, "n_negatives": 3000, "size": 48, "seed": 0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="lenshpc-quickstart", help="output directory (default: ./lenshpc-quickstart)")
    p.add_argument("--executor", choices=("local", "debug"), default="local",
                   help="local: one background process per run (default); debug: in this process")
    p.add_argument("--parallel", type=int, default=None,
                   help="runs trained at once (default: one per CPU core this process may use, at most the 6 runs)")
    p.add_argument("--workers", type=int, default=2, help="simulation worker processes (default 2)")
    add_set(p, "config override for every run of the sweep (repeatable), e.g. --set train.chunks=40 for a shorter, "
               "weaker demo")
    p.add_argument("--no-analysis", action="store_true",
                   help="stop after the report (skip step 4: ensembles, Grad-CAM, information content, ranking)")
    p.add_argument("--task", choices=TASKS, default="lens",
                   help="lens: the lens-finding demo above (default); cosmo21cm: the 21-cm study described above "
                        "(needs the .[cosmo21cm] extra; a few minutes on 2 cores)")


def run(args: argparse.Namespace) -> int:
    from lenshpc.hpc.spec import load_sweep

    if args.parallel is not None and args.parallel < 1:
        raise UserError(f"--parallel {args.parallel}: must be at least 1")
    if getattr(args, "task", "lens") == "cosmo21cm":
        return quickstart21cm.run(args)
    out = Path(args.out).resolve()
    data = out / "data" / "population.h5"
    steps = 3 if args.no_analysis else 4
    print(f"[1/{steps}] population → {data}", flush=True)
    if data.exists():
        print("      exists, skipped", flush=True)
    else:
        from lenshpc.data.simulate import simulate_population

        simulate_population(data, workers=max(1, args.workers), progress=True, **POPULATION)

    spec = load_sweep(resource("quickstart.yaml"), overrides=[f"data.path={data}", *args.overrides], out=out / "runs")
    print(f"[2/{steps}] sweep {spec.name}: {len(spec.groups)} losses × {len(spec.seeds)} seeds → {spec.out}", flush=True)
    outcome = run_quick_sweep(spec, args)

    result = report(spec, out, f"3/{steps}", "at threshold 0.5 on the test set")
    print(f"report: {result.files['md']}  (+ report.csv, report.tex)")
    if result.plots:
        print(f"plots:  {result.plots[0].parent}/  (fbeta_curves, prediction_histograms, roc_curves; .png + .pdf)")
    print(f"runs:   {spec.out}/<loss>/seed<k>/  (lenshpc status {spec.out})")
    if outcome.failed_after:
        print(f"{len(outcome.failed_after)} run(s) failed; see {spec.out}/<loss>/seed<k>/train.log, then re-run "
              "`lenshpc quickstart` (it retries failed runs and skips finished ones)")
        return 1
    if args.no_analysis:
        return 0
    print("\n[4/4] analysis", flush=True)
    return _analysis(out, spec)


#: The ranked mock survey (hard mix; a new name, so an older quickstart's plain survey.h5 is not reused).
SURVEY = "survey_hard.h5"


#: The quickstart's analysis commands (step 4): (title, argv after ``lenshpc``), with OUT/… placeholders.
def _analysis_commands(out: Path, spec) -> list[tuple[str, list[str]]]:
    runs, bce0 = spec.out, spec.out / "bce" / "seed0"
    return [
        ("ensembles of the sweep's members",
         ["ensemble", str(resource("quickstart_ensembles.yaml")), "--runs", str(runs), "--out",
          str(out / "ensembles"), "--quiet"]),
        ("Grad-CAM of bce/seed0", ["gradcam", str(bce0), "--n", "2"]),
        ("information content of bce/seed0", ["infocontent", str(bce0)]),
        ("ranking a mock survey with the NM2 ensemble of seed 0",
         ["rank", str(out / "ensembles" / "NM2" / "seed0"), str(out / "data" / SURVEY), "--out",
          str(out / "rank"), "--tracers", "is_tracer", "--top", "16"]),
        ("a page to inspect and label the top of the ranking", ["inspect", str(out / "rank"), "--top", "50"]),
    ]


def _analysis(out: Path, spec) -> int:
    """Step 4: run the analysis verbs on the sweep's output, as a user would type them."""
    from lenshpc.cli import main

    survey = out / "data" / SURVEY
    failed = []
    if not survey.exists():
        cfg = spec.points[0].config
        argv = ["survey", str(cfg.data.path), "--out", str(survey), "--tracers", "20", "--alpha-min",
                str(cfg.data.alpha_min), "--alpha-max", str(cfg.data.alpha_max), "--contaminants", "hard", "--seed", "0"]
        print(f"\n--- a hard mock survey to rank\n$ lenshpc {' '.join(argv)}", flush=True)
        if main(argv) != 0:
            failed.append("lenshpc survey")
    for title, argv in _analysis_commands(out, spec):
        print(f"\n--- {title}\n$ lenshpc {' '.join(argv)}", flush=True)
        code = main(argv)
        if code != 0:
            failed.append(f"lenshpc {argv[0]} (exit {code})")
    print()
    if failed:
        print(f"analysis step(s) failed: {', '.join(failed)}; fix the cause (messages above) and re-run "
              "`lenshpc quickstart` (finished work is skipped)")
        return 1
    print(f"analysis: {out / 'ensembles' / 'report.md'}, {spec.out / 'bce' / 'seed0' / 'gradcam'}/, "
          f"{spec.out / 'bce' / 'seed0' / 'infocontent'}/, {out / 'rank'}/ (inspect.html)")
    return 0
