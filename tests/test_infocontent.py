"""Information content (thesis Sec 5.3): noise, source area, binned rates, thresholds, and the CLI.

The library tests use hand-built arrays whose answers are known by construction; the CLI
tests run ``lenshpc infocontent`` on a copy of a real run of the ``tiny_sweep`` fixture.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from lenshpc.analysis.inspect import infocontent as ic
from lenshpc.cli import main


# ------------------------------------------------------------------ hand-built images
def checkerboard(h: int, w: int, amp: float) -> np.ndarray:
    """±amp in a checkerboard: mean 0, standard deviation exactly amp."""
    return np.where(np.indices((h, w)).sum(0) % 2, amp, -amp).astype(np.float64)


def lens_image(noise: float = 1.0) -> np.ndarray:
    """10×10 ±noise sky with a 2×2 "galaxy" of 100: peak 100, RMS noise = noise."""
    img = checkerboard(10, 10, noise)
    img[4:6, 4:6] = 100.0
    return img


def source_image() -> np.ndarray:
    """10×10 source, peak 50: 5 px of 50 (A), 3 px of 10 (B), 4 px of 2 (C), the rest 0."""
    s = np.zeros((10, 10))
    s[0, :5] = 50.0
    s[1, :3] = 10.0
    s[2, :4] = 2.0
    return s


def test_rms_noise_clips_the_galaxy():
    img = lens_image(1.0)
    # plain std is dominated by the galaxy; the clipped estimate is the sky's ±1 exactly
    assert np.std(img) > 19
    assert ic.rms_noise(img) == 1.0
    assert ic.rms_noise(lens_image(2.5)) == 2.5
    assert ic.rms_noise(np.full((5, 5), 3.0)) == 0.0
    # Gaussian sky σ = 0.5 under a bright galaxy (exponential profile, scale 2.5 px): recovered to a few per
    # cent (its faint wings below 3σ stay in and bias it up slightly: +1.5 % here, +11 % at scale 4 px)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:101, :101] - 50
    galaxy = 200.0 * np.exp(-np.hypot(xx, yy) / 2.5)
    noisy = galaxy + rng.normal(0.0, 0.5, (101, 101))
    assert np.std(noisy) > 5
    assert ic.rms_noise(noisy) == pytest.approx(0.5, rel=0.04)
    batch = np.stack([lens_image(1.0), lens_image(3.0), np.full((10, 10), 7.0)])
    np.testing.assert_array_equal(ic.rms_noise_batch(batch), [1.0, 3.0, 0.0])


def test_fast_clipping_equals_the_masked_reference():
    """astropy's σ-clip (sigma_clipped_stats) equals the textbook masked-median loop (NaNs, constants, galaxies)."""

    def reference(flat, sigma=3.0):
        keep = np.isfinite(flat)
        while True:
            data = np.where(keep, flat, np.nan)
            centre = np.nanmedian(data, axis=1, keepdims=True)
            spread = np.nanstd(data, axis=1, keepdims=True)
            new = keep & (np.abs(flat - centre) <= sigma * spread)
            if np.array_equal(new, keep):
                return np.nanstd(np.where(keep, flat, np.nan), axis=1)
            keep = new

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:33, :33] - 16
    flat = (1000.0 + 300.0 * np.exp(-np.hypot(xx, yy) / rng.uniform(1, 6, (40, 1, 1)))
            + rng.normal(0.0, rng.uniform(0.1, 3.0, (40, 1, 1)), (40, 33, 33))).reshape(40, -1)
    flat[0, :50] = np.nan
    flat[1] = 7.0
    flat[2, ::3] = rng.standard_cauchy(len(flat[2, ::3]))
    np.testing.assert_allclose(ic.rms_noise_batch(flat.reshape(40, 33, 33)), reference(flat), rtol=1e-9)
    for sigma in (2.0, 4.0):
        np.testing.assert_allclose(ic.rms_noise_batch(flat, sigma=sigma), reference(flat, sigma), rtol=1e-9)
    assert np.isnan(ic.rms_noise(np.full(4, np.nan)))


def test_source_area_fraction_known_by_construction():
    lens, source = lens_image(1.0), source_image()
    # α = 0.5: k = max(l)·α/max(s) = 100·0.5/50 = 1, s' = s; threshold 2·1 = 2.
    # A (50) and B (10) are above; C (exactly 2.0) is not ("above" is strict): 8 of 100 px.
    assert ic.source_area_fraction(source, 0.5, lens) == pytest.approx(0.08)
    # α = 0.04: k = 0.08: A → 4 (above 2), B → 0.8, C → 0.16: 5 of 100 px
    assert ic.source_area_fraction(source, 0.04, lens) == pytest.approx(0.05)
    # a noisier lens (RMS 4, threshold 8) at α = 0.5: only A (50) and B (10) > 8 → 0.08; at α = 0.1: A → 10 only
    assert ic.source_area_fraction(source, 0.5, lens_image(4.0)) == pytest.approx(0.08)
    assert ic.source_area_fraction(source, 0.1, lens_image(4.0)) == pytest.approx(0.05)
    # factor 1 at α = 0.5: C (2) > 1 counts too: 12 px
    assert ic.source_area_fraction(source, 0.5, lens, factor=1.0) == pytest.approx(0.12)
    # two bands: noise 1 and 5 (thresholds 2 and 10); band 0: A+B = 8 px, band 1: A only (B = 10 is a tie) = 5 px
    lens2 = np.stack([lens_image(1.0), lens_image(5.0)], axis=-1)
    src2 = np.stack([source, source], axis=-1)
    fractions, noise = ic.source_area_fractions(src2[None], [0.5], lens2[None])
    assert fractions[0] == pytest.approx(13 / 200)
    np.testing.assert_array_equal(noise, [[1.0, 5.0]])


def test_scaled_source_is_the_eq_4_2_term():
    from lenshpc.data import transforms

    rng = np.random.default_rng(1)
    lenses = rng.gamma(2.0, 1.0, (4, 8, 8, 1)).astype(np.float32)
    sources = rng.gamma(1.0, 1.0, (4, 8, 8, 1)).astype(np.float32)
    alpha = np.array([0.02, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(lenses + ic.scaled_sources(sources, alpha, lenses),
                                  transforms.merge(lenses, sources, alpha))


def test_binned_rates_known_counts():
    values = [0.05, 0.06, 0.07, 0.12, 0.18, 0.25, 0.30, 0.31, np.nan]
    pred = [False, False, True, True, False, True, True, True, True]
    r = ic.binned_rates(values, pred, [0.0, 0.1, 0.2, 0.3])
    # 0.30 sits on the last edge (closed), 0.31 and NaN are outside
    assert r.n.tolist() == [3, 2, 2]
    assert r.tp.tolist() == [1, 1, 2]
    assert r.fn.tolist() == [2, 1, 0]
    np.testing.assert_allclose(r.tpr, [1 / 3, 0.5, 1.0])
    np.testing.assert_allclose(r.fnr, [2 / 3, 0.5, 0.0])
    assert r.n_outside == 2
    # an integer gives equal-width bins over the finite data range; an empty bin has NaN rates
    r2 = ic.binned_rates([0.0, 0.1, 0.9, 1.0], [True, False, True, True], 4)
    np.testing.assert_allclose(r2.edges, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert r2.n.tolist() == [2, 0, 0, 2]
    assert np.isnan(r2.tpr[1]) and np.isnan(r2.fnr[2])
    d = r2.to_dict()
    assert d["tpr"][1] is None and d["tpr"][0] == 0.5
    json.dumps(d)  # JSON-ready


def test_tpr_reaches_one_threshold():
    edges = np.arange(0.0, 0.71, 0.1)  # 7 bins
    # per bin: [0,.1) 1 of 2 found; [.1,.2) empty; [.2,.3) 2/2; [.3,.4) 3/4; [.4,.5) 1/1; [.5,.6) empty; [.6,.7] 2/2
    values = [0.02, 0.08, 0.21, 0.22, 0.31, 0.32, 0.33, 0.38, 0.45, 0.61, 0.7]
    pred = [True, False, True, True, True, True, True, False, True, True, True]
    t = ic.tpr_reaches_one(values, pred, edges)
    assert t.bin == 4 and t.edge == pytest.approx(0.4)   # empty bin 5 does not break the tail
    assert t.n_tail == 3
    assert t.exact == 0.38 and t.n_above_exact == 3 and t.n_missed == 2
    # nothing missed: the tail is every bin, from the lowest non-empty one
    t_all = ic.tpr_reaches_one([0.15, 0.5], [True, True], edges)
    assert t_all.edge == pytest.approx(0.1) and t_all.exact is None and t_all.n_above_exact == 2
    # the top bin misses: TPR never reaches 1
    t_none = ic.tpr_reaches_one([0.1, 0.65], [True, False], edges)
    assert t_none.edge is None and t_none.bin is None and t_none.exact == 0.65 and t_none.n_above_exact == 0


def test_hexbin_cells_hold_counts_and_tpr():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    # two well-separated clusters: 3 points all found, 4 points with 1 found
    x = np.array([0.0, 0.01, 0.02, 1.0, 1.01, 1.02, 0.99])
    y = np.array([0.0, 0.0, 0.01, 1.0, 1.0, 1.01, 0.99])
    pred = np.array([1, 1, 1, 0, 1, 0, 0], bool)
    fig, ax = plt.subplots()
    try:
        _, cells = ic.hexbin_tpr(ax, x, y, pred, gridsize=4)
    finally:
        plt.close(fig)
    got = sorted((c["n"], c["tpr"]) for c in cells)
    assert got == [(3, 1.0), (4, 0.25)]


def test_parse_bins():
    b = ic.parse_bins(["12", "alpha=0.02,0.05,0.3", "theta_E=5"])
    assert b["*"] == 12 and b["theta_E"] == 5
    np.testing.assert_allclose(b["alpha"], [0.02, 0.05, 0.3])
    assert ic.parse_bins(None) == {"*": ic.DEFAULT_BINS}
    for bad in (["0"], ["alpha=0.3,0.1"], ["x=a,b"], ["2.5"]):
        with pytest.raises(ic.UserError):
            ic.parse_bins(bad)


# ------------------------------------------------------------------ CLI on a real run
@pytest.fixture()
def run_copy(tiny_sweep, tmp_path) -> Path:
    dest = tmp_path / "bce" / "seed0"
    shutil.copytree(tiny_sweep / "bce" / "seed0", dest)
    return dest


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_command_writes_figures_and_consistent_summary(run_copy, capsys):
    from lenshpc.data.format import open_dataset
    from lenshpc.train import read_predictions

    assert main(["infocontent", str(run_copy), "--gridsize", "6", "--bins", "5"]) == 0
    out = run_copy / "infocontent"
    for name in ("tpr_hexbin.png", "tpr_alpha.png", "tpr_theta_E.png", "source_area.png", "summary.json",
                 "summary.md", "positives.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "tpr_hexbin.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    metrics = json.loads((run_copy / "metrics.json").read_text())
    pred = read_predictions(run_copy / "predictions.h5")
    n_pos = int((pred["labels"] == 1).sum())
    # overall TPR = the run's own recall (same threshold, same predictions)
    assert s["threshold"] == metrics["threshold"]
    assert s["tpr"] == pytest.approx(metrics["recall"])
    assert s["confusion"] == metrics["confusion"]
    assert s["n_positives"] == n_pos == s["tp"] + s["fn"]
    # every positive is in exactly one α bin and one hexagon; the bins' TPs add up to the run's TP
    alpha = s["binned"]["alpha"]
    assert sum(alpha["n"]) == n_pos and alpha["n_outside"] == 0 and sum(alpha["tp"]) == metrics["confusion"]["tp"]
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    np.testing.assert_allclose(alpha["edges"], np.linspace(cfg["data"]["alpha_min"], cfg["data"]["alpha_max"], 6))
    cells = s["hexbin"]["cells"]
    assert sum(c["n"] for c in cells) == n_pos
    assert sum(c["n"] * c["tpr"] for c in cells) == pytest.approx(metrics["confusion"]["tp"])
    assert set(s["tpr_reaches_one"]) == {"alpha", "theta_E", "area_fraction"}
    # the per-positive table: one row each, area fractions recomputed independently for every positive
    rows = _read_csv(out / "positives.csv")
    assert len(rows) == n_pos
    with open_dataset(cfg["data"]["path"]) as ds:
        for row in rows:
            lens = ds.read("lenses", [int(row["lens_index"])])[0]
            source = ds.read("sources", [int(row["source_index"])])[0]
            want = ic.source_area_fraction(source, float(pred["meta"]["alpha"][int(row["row"])]), lens)
            assert float(row["area_fraction"]) == pytest.approx(want, abs=1e-6)
            assert 0.0 <= want <= 1.0
    fr = np.array([float(r["area_fraction"]) for r in rows])
    assert fr.max() > 0  # bright arcs (α 0.3–0.8) clear the noise somewhere
    found = np.array([int(r["predicted"]) for r in rows], bool)
    t = s["tpr_reaches_one"]["area_fraction"]
    if (~found).any():
        assert t["exact"] == pytest.approx(fr[~found].max(), abs=1e-6)
        assert found[fr > t["exact"] + 1e-9].all()
    md = (out / "summary.md").read_text()
    assert "Where the TPR reaches 1" in md and "| alpha bin |" in md
    printed = capsys.readouterr().out
    assert f"TPR {metrics['recall']:.4f}" in printed

    # re-run: up to date, nothing rewritten; a new threshold recomputes
    mtime = (out / "summary.json").stat().st_mtime_ns
    assert main(["infocontent", str(run_copy), "--gridsize", "6", "--bins", "5"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "summary.json").stat().st_mtime_ns == mtime
    other = run_copy.parent / "t0"
    assert main(["infocontent", str(run_copy), "--threshold", "0", "--out", str(other)]) == 0
    s0 = json.loads((other / "summary.json").read_text())
    assert s0["tpr"] == 1.0 and s0["fn"] == 0
    assert all(r["n_missed"] == 0 and r["exact"] is None for r in s0["tpr_reaches_one"].values())


def test_command_bad_inputs(run_copy, tmp_path, capsys):
    from lenshpc.train.rundir import read_predictions, write_predictions

    # not a run directory / missing directory
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["infocontent", str(empty)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["infocontent", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err

    # unfinished run (no DONE)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_copy, unfinished)
    (unfinished / "DONE").unlink()
    assert main(["infocontent", str(unfinished)]) == 2
    assert "not finished" in capsys.readouterr().err

    # the run's dataset moved: a clear pointer to --data
    moved = tmp_path / "moved"
    shutil.copytree(run_copy, moved)
    cfg = yaml.safe_load((moved / "config.yaml").read_text())
    data_path = cfg["data"]["path"]
    cfg["data"]["path"] = str(tmp_path / "gone.h5")
    (moved / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["infocontent", str(moved)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["infocontent", str(moved), "--data", data_path, "--gridsize", "4"]) == 0  # …which fixes it
    capsys.readouterr()

    # a dataset that is not the one the run was tested on: too few images, or other source parameters
    import h5py

    from lenshpc.data.format import write_population

    small = tmp_path / "small.h5"
    imgs = np.ones((3, 8, 8), np.float32)
    write_population(small, imgs, imgs, imgs, meta={"sources": {"theta_E": np.ones(3)}})
    assert main(["infocontent", str(run_copy), "--data", str(small), "--out", str(tmp_path / "x")]) == 2
    assert "not the dataset the run was tested on" in capsys.readouterr().err
    other = tmp_path / "other.h5"
    shutil.copyfile(data_path, other)
    with h5py.File(other, "r+") as fh:
        fh["meta/sources/theta_E"][...] = fh["meta/sources/theta_E"][()] + 0.1
    assert main(["infocontent", str(run_copy), "--data", str(other), "--out", str(tmp_path / "x")]) == 2
    assert "'theta_E' differs" in capsys.readouterr().err

    # an ensemble-style run directory (no model, no checkpoint: predictions + metrics + config + DONE) works
    ens = tmp_path / "ens"
    shutil.copytree(run_copy, ens, ignore=shutil.ignore_patterns("model.keras", "checkpoint", "history.csv",
                                                                  "train.log"))
    assert main(["infocontent", str(ens), "--gridsize", "4", "--bins", "3"]) == 0
    assert (ens / "infocontent" / "source_area.png").is_file()
    capsys.readouterr()

    # predictions without alpha / theta_E (e.g. a labelled dataset): exit 2 naming the way out
    bare = tmp_path / "bare"
    shutil.copytree(run_copy, bare)
    groups = {}
    for g in ("test", "val"):
        p = read_predictions(bare / "predictions.h5", g)
        p["meta"] = {k: v for k, v in p["meta"].items() if k not in ("alpha", "theta_E")}
        groups[g] = p
    write_predictions(bare / "predictions.h5", groups)
    assert main(["infocontent", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "alpha" in err and "--x" in err and "source_mag" in err
    # naming two columns gives the hexbin and per-column rates, without the source-area part
    assert main(["infocontent", str(bare), "--x", "source_mag", "--y", "magnification", "--gridsize", "4"]) == 0
    s = json.loads((bare / "infocontent" / "summary.json").read_text())
    assert set(s["binned"]) == {"source_mag", "magnification"}
    assert "source_area" not in s and s["source_area_skipped"]
    assert {"tpr_hexbin.png", "tpr_source_mag.png", "tpr_magnification.png"} <= set(s["figures"])
    capsys.readouterr()
    assert main(["infocontent", str(bare), "--x", "nonsense", "--y", "magnification"]) == 2
    assert "nonsense" in capsys.readouterr().err
