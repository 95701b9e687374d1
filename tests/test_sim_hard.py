"""Hard contaminants (lenshpc.data.sim_hard) and the hard mock survey (mock_survey(contaminants=…), lenshpc survey)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lenshpc.cli import main
from lenshpc.data.format import open_dataset
from lenshpc.data.sim_common import Conditions, SimOptions
from lenshpc.data.sim_galaxies import negative_image
from lenshpc.data.sim_hard import HARD_KINDS, HARD_MIX, hard_image, saturate, saturation_level, sky_level
from lenshpc.data.survey import mock_survey
from lenshpc.errors import DataError
from lenshpc.utils import rng_for

OPTS = SimOptions(size=64)


def _base(kind: str, index: int) -> np.ndarray:
    """The population-like negative an artefact kind starts from (the first draws of the same stream)."""
    return negative_image(rng_for(0, "hard", kind, index), OPTS)[0]


def _noise(meta: dict) -> float:
    cond = Conditions(meta["psf_fwhm"], meta["psf_beta"], meta["sky_mag"])
    return math.sqrt(sky_level(cond, OPTS) + OPTS.read_noise**2 * OPTS.n_exposures)


def test_saturate_clips_and_bleeds_the_excess_along_the_column():
    image = np.zeros((21, 5))
    image[10, 2] = 10.5  # 9.5 units above the level 1: 10 more pixels, 5 above and 5 below
    out, n = saturate(image, 1.0)
    assert n == 11 and out.max() == 1.0
    np.testing.assert_array_equal(np.flatnonzero(out[:, 2] == 1.0), np.arange(5, 16))
    assert not out[:, [0, 1, 3, 4]].any()
    np.testing.assert_array_equal(saturate(image * 0.05, 1.0)[0], image * 0.05)  # nothing saturated: unchanged


def test_saturated_star_has_a_bleed_trail_and_four_fold_spikes():
    # a bright star alone, spikes away from the bleed column (the first such draw of seed 0)
    image, meta = next(im for im in (hard_image("saturated_star", 0, i, OPTS) for i in range(40))
                       if not im[1]["with_galaxy"] and im[1]["mag"] < 13.5 and 0.35 < im[1]["spike_angle"] < 1.2)
    level = saturation_level(Conditions(meta["psf_fwhm"], meta["psf_beta"], meta["sky_mag"]), OPTS)
    assert image.max() == np.float32(level) and meta["n_saturated"] == int((image == np.float32(level)).sum())
    sat = image == np.float32(level)
    col_run, row_run = sat.sum(axis=0).max(), sat.sum(axis=1).max()
    assert col_run > row_run + 2  # the bleed trail: a saturated run along a column, longer than the core is wide
    # spikes: along the four spike directions the flux beats the directions half-way between them, and is
    # well above the noise, in each of the four (distances 8–20 px, outside the saturated core)
    cy = (OPTS.size - 1) / 2 + meta["star_y"] / OPTS.pixel_scale
    cx = (OPTS.size - 1) / 2 + meta["star_x"] / OPTS.pixel_scale
    r = np.arange(8, 21)

    def arm(angle: float) -> float:
        rows = np.rint(cy + r * math.sin(angle)).astype(int)
        cols = np.rint(cx + r * math.cos(angle)).astype(int)
        return float(np.median(image[rows, cols]))

    spikes = [arm(meta["spike_angle"] + k * math.pi / 2) for k in range(4)]
    between = [arm(meta["spike_angle"] + math.pi / 4 + k * math.pi / 2) for k in range(4)]
    noise = _noise(meta)
    assert min(spikes) > 3 * noise and min(spikes) > 3 * max(between), (spikes, between, noise)
    assert max(spikes) / min(spikes) < 3  # 4-fold symmetric


def test_grand_design_fills_the_cutout_and_groups_have_several_members():
    from skimage.feature import peak_local_max

    for i in range(3):
        image, meta = hard_image("grand_design", 0, i, OPTS)
        assert (image > 3 * _noise(meta)).mean() > 0.4  # light over ≥ 40 % of the cutout
        image, meta = hard_image("group", 0, i, OPTS)
        assert 3 <= meta["n_members"] <= 6
        peaks = peak_local_max(image, min_distance=3, threshold_abs=20 * _noise(meta))
        assert len(peaks) >= 2


def test_artefacts_change_only_what_they_describe():
    for i in range(3):
        # satellite trail: extra light along a line that crosses the whole cutout
        image, meta = hard_image("satellite_trail", 0, i, OPTS)
        diff = image - _base("satellite_trail", i)
        angle, b = meta["trail_angle"], meta["trail_offset"] / OPTS.pixel_scale
        c = (OPTS.size - 1) / 2
        t = np.arange(-40, 41)
        rows = np.rint(c + b * math.cos(angle) + t * math.sin(angle)).astype(int)
        cols = np.rint(c - b * math.sin(angle) + t * math.cos(angle)).astype(int)
        inside = (rows >= 0) & (rows < OPTS.size) & (cols >= 0) & (cols < OPTS.size)
        on_line = diff[rows[inside], cols[inside]]
        assert inside.sum() >= OPTS.size and np.median(on_line) > 3 * np.sqrt(np.median(on_line) + 1)
        assert np.median(np.abs(diff)) < 0.05 * np.median(on_line)  # off the line, (almost) nothing
        # bad columns: only those columns, from first_row on
        image, meta = hard_image("bad_column", 0, i, OPTS)
        diff = image - _base("bad_column", i)
        cols = slice(meta["column"], meta["column"] + meta["n_columns"])
        changed = np.zeros(image.shape, bool)
        changed[meta["first_row"]:, cols] = True
        assert not diff[~changed].any()
        if meta["hot"]:
            assert np.ptp(diff[changed]) < 1e-3 * np.abs(diff[changed]).max() and diff[changed].min() >= 20
        else:
            cond = Conditions(meta["psf_fwhm"], meta["psf_beta"], meta["sky_mag"])
            np.testing.assert_allclose(image[changed], -sky_level(cond, OPTS), rtol=1e-6)
        # cosmic rays: a few sharp, unconvolved hits of 2,000–30,000 e⁻
        image, meta = hard_image("cosmic_rays", 0, i, OPTS)
        diff = image - _base("cosmic_rays", i)
        hits = diff != 0
        assert hits.sum() == meta["n_hit_pixels"] >= 1 and np.all((diff[hits] > 1990) & (diff[hits] < 30010))
        # edge of field: a zero-filled half-plane touching one side of the cutout, the rest untouched
        image, meta = hard_image("edge_of_field", 0, i, OPTS)
        base = _base("edge_of_field", i)
        zero = image == 0
        assert 0.1 < zero.mean() < 0.65 and np.isclose(zero.mean(), meta["zero_fraction"])
        np.testing.assert_array_equal(image[~zero], base[~zero])
        side = [zero[:, -1], zero[-1, :], zero[:, 0], zero[0, :]][meta["edge_side"]]
        assert side.all()


def test_hard_images_are_deterministic_per_seed():
    for kind in HARD_KINDS:
        a, meta_a = hard_image(kind, 5, 1, OPTS)
        b, meta_b = hard_image(kind, 5, 1, OPTS)
        np.testing.assert_array_equal(a, b)
        assert meta_a["kind"] == kind and a.shape == (64, 64) and a.dtype == np.float32 and np.isfinite(a).all()
        assert not np.array_equal(a, hard_image(kind, 6, 1, OPTS)[0])


def test_hard_mock_survey_mixes_the_asked_fractions(small_population, tmp_path):
    out = tmp_path / "hard.h5"
    mix = {"saturated_star": 0.25, "edge_of_field": 0.125, "group": 0.125}
    info = mock_survey(small_population, out, n_tracers=5, seed=1, contaminants=mix)
    plain = mock_survey(small_population, tmp_path / "plain.h5", n_tracers=5, seed=1)
    with open_dataset(out) as ds, open_dataset(tmp_path / "plain.h5") as ref:
        kind = ds.meta("images")["kind"]
        n_rows = len(ds) - 5
        for name, fraction in mix.items():
            assert (kind == name).sum() == info["contaminants"][name] == round(fraction * n_rows)
        assert (kind == "tracer").sum() == 5 and info["n_negatives"] == n_rows - sum(info["contaminants"].values())
        assert set(ref.meta("images")["kind"]) <= {"spiral", "ring", "merger", "edge_on", "star_blend", "lrg", "tracer"}
        # rows not replaced are the plain survey's rows, unchanged (same tracers, same order)
        keep = np.isin(kind, list(mix), invert=True)
        np.testing.assert_array_equal(ds.read("images")[keep], ref.read("images")[keep])
        assert ds.attrs["provenance"]["mock_survey"]["contaminants"]["counts"] == info["contaminants"]
    with pytest.raises(DataError, match="unknown hard contaminant kind.*known: saturated_star"):
        mock_survey(small_population, tmp_path / "x.h5", contaminants={"saturated": 0.1})
    with pytest.raises(DataError, match="sum to 1.2"):
        mock_survey(small_population, tmp_path / "x.h5", contaminants={"group": 0.6, "cosmic_rays": 0.6})
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        mock_survey(small_population, tmp_path / "x.h5", contaminants={"group": -0.1})
    assert not (tmp_path / "x.h5").exists()


def test_survey_command(small_population, tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert main(["survey", str(small_population), "--out", str(out), "--tracers", "3",
                 "--contaminants", "cosmic_rays=0.5"]) == 0
    assert "cosmic_rays" in capsys.readouterr().out
    with open_dataset(out) as ds:
        assert (ds.meta("images")["kind"] == "cosmic_rays").sum() == round(0.5 * (len(ds) - 3))
    assert main(["survey", str(small_population), "--out", str(out)]) == 2  # exists, no --force
    assert main(["survey", str(small_population), "--out", str(tmp_path / "t.h5"), "--contaminants", "group"]) == 2
    assert "KIND=FRACTION" in capsys.readouterr().err
    assert not (tmp_path / "t.h5").exists()


def test_a_model_trained_without_hard_contaminants_ranks_them_high(tiny_sweep, analysis_population, tmp_path,
                                                                 capsys):
    """Measure where a mock-trained model (tiny_sweep bce/seed0, never shown hard contaminants) ranks them.

    Recorded, not tuned: the printed table (``pytest -s``) goes into docs/ranking.md.
    """
    mock_survey(analysis_population, tmp_path / "mixed.h5", n_tracers=12, alpha_min=0.3, alpha_max=0.8, seed=4,
                contaminants=HARD_MIX)
    out = tmp_path / "rank"
    assert main(["rank", str(tiny_sweep / "bce" / "seed0"), str(tmp_path / "mixed.h5"), "--out", str(out),
                 "--tracers", "is_tracer", "--top", "0"]) == 0
    from lenshpc.analysis.ranking.report import read_ranked_csv

    ranked = read_ranked_csv(out / "ranked.csv")
    with open_dataset(tmp_path / "mixed.h5") as ds:
        kind = ds.meta("images")["kind"][ranked["row"]]
    hard = np.isin(kind, list(HARD_KINDS))
    plain = ~hard & (kind != "tracer")
    rr = ranked["relative_rank"]
    table = {name: (int((kind == name).sum()), float(np.mean(rr[kind == name]))) for name in sorted(set(kind))}
    print("\nkind: n, mean relative rank (tiny_sweep bce/seed0, analysis_population val+test, HARD_MIX seed 4)")
    for name, (n, mean) in table.items():
        print(f"  {name:16s} {n:3d}  {mean:.3f}")
    top = kind[:10]
    print("top 10:", ", ".join(top))
    # what the issue measured on real HST cutouts: hard contaminants rank above the plain negatives
    assert np.mean(rr[hard]) < np.mean(rr[plain]), table
