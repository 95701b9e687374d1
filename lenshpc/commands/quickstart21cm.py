"""``lenshpc quickstart --task cosmo21cm``: the 21-cm study (seed 003) end to end on the toy :data:`GRID` (the
steps: ``lenshpc quickstart --help``); the sweeps are ``resources/quickstart_cosmo21cm*.yaml``."""

from __future__ import annotations

from pathlib import Path

#: The toy grid (about 30 s of 21cmFAST on 2 cores; 1,440 slices of 32×32).
GRID = dict(redshifts=(7.0, 8.0, 9.0), f_esc10=(-1.3, -0.7), realisations=5, hii_dim=32, box_len=48.0, seed=0,
            slices_per_axis=16)
#: The placeholder of the sweep file replaced by the autoencoder run directory.
AUTOENCODER = "@AUTOENCODER@"


def run(args) -> int:
    from lenshpc.commands.quicksweep import report, resource, run_quick_sweep
    from lenshpc.data.cosmo21cm.params import Grid
    from lenshpc.data.cosmo21cm.simulate import simulate21cm
    from lenshpc.hpc.spec import load_sweep
    from lenshpc.utils import atomic_write_text

    out = Path(args.out).resolve()
    data = out / "data" / "cosmo21cm.h5"
    grid = Grid.checked(**GRID)
    print(f"[1/4] 21cmFAST: {len(grid.redshifts)} redshifts × {len(grid.f_esc10)} F_ESC10 × {grid.realisations} "
          f"realisations at {grid.hii_dim}³ → {data}", flush=True)
    result = simulate21cm(grid, data, workers=max(1, args.workers))
    if result["status"] == "current":
        print("      exists, skipped", flush=True)

    overrides = [f"data.path={data}", *args.overrides]
    ae_spec = load_sweep(resource("quickstart_cosmo21cm_autoencoder.yaml"), overrides=overrides, out=out / "encoder")
    print(f"[2/4] autoencoder → {ae_spec.out}", flush=True)
    failed = run_quick_sweep(ae_spec, args).failed_after
    if failed:
        print(f"the autoencoder failed; see {ae_spec.out}/autoencoder/seed0/train.log and re-run")
        return 1
    encoder = ae_spec.points[0].run_dir

    # the sweep file with the encoder's run dir filled in (kept beside the runs: what was run)
    text = resource("quickstart_cosmo21cm.yaml").read_text().replace(AUTOENCODER, str(encoder))
    sweep_file = out / "quickstart_cosmo21cm.yaml"
    atomic_write_text(sweep_file, text)
    spec = load_sweep(sweep_file, overrides=overrides, out=out / "runs")
    print(f"[3/4] sweep {spec.name}: {len(spec.groups)} models × {len(spec.seeds)} seeds → {spec.out}", flush=True)
    failed = run_quick_sweep(spec, args).failed_after

    reduced = report(spec, out, "4/4", f"on the test set (one held-out realisation; chance = "
                                       f"{1 / len(grid.redshifts):.3f})")
    print(f"report: {reduced.files['md']}  (per-class recall, confusion matrix, learning curves, PCA baseline)")
    print(f"runs:   {spec.out}/<model>/seed<k>/  (lenshpc status {spec.out}); encoder: {encoder}")
    if failed:
        print(f"{len(failed)} run(s) failed; see {spec.out}/<model>/seed<k>/train.log, then re-run "
              "`lenshpc quickstart --task cosmo21cm` (it retries failed runs and skips finished ones)")
        return 1
    return 0
