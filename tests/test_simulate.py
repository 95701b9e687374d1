"""Tests for ``lenshpc simulate`` (lenshpc.data.simulate and its sim_* modules).

Everything runs the real simulator (lenstronomy ray shooting, Sérsic profiles, PSF, noise)
on small cutouts (32–48 px) so the whole file stays within a few seconds per test.
"""

from __future__ import annotations


import h5py
import numpy as np
import pytest
from scipy.stats import spearmanr

from lenshpc.cli import main
from lenshpc.data.format import PopulationWriter, open_dataset
from lenshpc.data.sim_common import SimOptions, psf_kernel
from lenshpc.data.sim_galaxies import CONTAMINANTS, NEGATIVE_KINDS
from lenshpc.data.simulate import simulate_population
from lenshpc.errors import UserError

COUNTS = dict(n_lenses=20, n_sources=60, n_negatives=30)
SIZE = 48

SOURCE_COLUMNS = {"theta_E", "source_mag", "source_flux", "source_R_eff", "source_x", "source_y", "source_q",
                  "source_phi", "source_n", "shear_g1", "shear_g2", "lens_q", "lens_phi", "n_clumps",
                  "magnification", "n_pix_lensed", "frac_pix_lensed", "psf_fwhm"}
LENS_COLUMNS = {"R_eff", "n_sersic", "q", "phi", "mag", "flux", "n_field_galaxies", "psf_fwhm", "sky_mag"}
NEGATIVE_COLUMNS = {"kind", "mag", "n_field_galaxies", "psf_fwhm"}


def _read_all(path):
    with open_dataset(path) as ds:
        return {name: ds.read(name) for name in ds.names}, {name: ds.meta(name) for name in ds.names}


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "pop.h5"
    simulate_population(path, **COUNTS, seed=7, workers=1, size=SIZE, progress=False)
    return path


@pytest.fixture(scope="module")
def pop_data(pop):
    return _read_all(pop)


# ------------------------------------------------------------------ determinism
def test_same_seed_and_any_worker_count_give_identical_data(pop, pop_data, tmp_path):
    again = tmp_path / "again.h5"
    simulate_population(again, **COUNTS, seed=7, workers=2, size=SIZE, progress=False)
    images, meta = _read_all(again)
    for name in images:
        np.testing.assert_array_equal(images[name], pop_data[0][name])
        assert meta[name].keys() == pop_data[1][name].keys()
        for col in meta[name]:
            np.testing.assert_array_equal(meta[name][col], pop_data[1][name][col])
    with open_dataset(pop) as a, open_dataset(again) as b:
        for name in a.names:
            for split in ("train", "val", "test"):
                np.testing.assert_array_equal(a.split(name, split), b.split(name, split))


def test_different_seed_differs_and_prefix_is_stable(pop_data, tmp_path):
    other = tmp_path / "other.h5"
    simulate_population(other, n_lenses=3, n_sources=3, n_negatives=3, seed=8, size=SIZE, progress=False)
    images, _ = _read_all(other)
    for name in images:
        assert not np.array_equal(images[name], pop_data[0][name][:3])
    # image i depends on (seed, population, i) only, not on how many were requested
    prefix = tmp_path / "prefix.h5"
    simulate_population(prefix, n_lenses=2, n_sources=3, n_negatives=1, seed=7, size=SIZE, progress=False)
    images, _ = _read_all(prefix)
    for name, n in (("lenses", 2), ("sources", 3), ("negatives", 1)):
        np.testing.assert_array_equal(images[name], pop_data[0][name][:n])


# ------------------------------------------------------------------ structure
def test_sizes_splits_and_attributes(pop):
    with open_dataset(pop) as ds:
        assert ds.kind == "population"
        assert ds.image_shape == (SIZE, SIZE, 1)
        attrs = ds.attrs
        assert attrs["pixel_scale"] == pytest.approx(0.2) and attrs["bands"] == ["r"] and attrs["seed"] == 7
        prov = attrs["provenance"]
        assert prov["generator"].startswith("lenshpc.simulate") and prov["lenstronomy_version"] == "1.14.2"
        assert prov["options"]["theta_E_range"] == [0.8, 3.0] and prov["counts"]["sources"] == 60
        for name, n in (("lenses", 20), ("sources", 60), ("negatives", 30)):
            assert ds.count(name) == n
            parts = [ds.split(name, s) for s in ("train", "val", "test")]
            assert [len(p) for p in parts] == [n - 2 * (n // 10), n // 10, n // 10]
            assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
            assert ds.read(name).dtype == np.float32


def test_metadata_columns_present_with_one_row_per_image(pop_data):
    _, meta = pop_data
    for name, cols, n in (("sources", SOURCE_COLUMNS, 60), ("lenses", LENS_COLUMNS, 20),
                          ("negatives", NEGATIVE_COLUMNS, 30)):
        assert cols <= set(meta[name]), cols - set(meta[name])
        assert all(len(v) == n for v in meta[name].values())
    assert set(meta["negatives"]["kind"]) <= set(NEGATIVE_KINDS)
    src = meta["sources"]
    assert np.all((src["n_clumps"] >= 0) & (src["n_clumps"] <= 4))
    assert np.all(np.hypot(src["shear_g1"], src["shear_g2"]) <= 0.05 + 1e-12)
    assert np.all((src["frac_pix_lensed"] > 0) & (src["frac_pix_lensed"] < 1))
    np.testing.assert_allclose(src["frac_pix_lensed"], src["n_pix_lensed"] / SIZE**2)
    lens = meta["lenses"]
    assert np.all((lens["n_sersic"] >= 2.5) & (lens["n_sersic"] <= 6.0))
    assert np.all((lens["mag"] >= 17) & (lens["mag"] <= 20))


def test_theta_E_in_documented_range_and_small_radii_most_common(pop_data):
    theta = pop_data[1]["sources"]["theta_E"]
    assert theta.min() >= 0.8 and theta.max() <= 3.0
    # truncated exponential with scale 0.7″: median ≈ 1.26″, well below the range midpoint 1.9″
    assert np.median(theta) < 1.6


# ------------------------------------------------------------------ physics / realism
def test_images_are_finite_and_sky_subtracted(pop_data):
    images, meta = pop_data
    for name in images:
        assert np.isfinite(images[name]).all()
    assert images["sources"].min() >= 0.0  # noise-free lensed light
    for name in ("lenses", "negatives"):
        x = images[name][..., 0]
        border = np.concatenate([x[:, :3].ravel(), x[:, -3:].ravel()])
        sigma = 1.4826 * np.median(np.abs(border - np.median(border)))
        # sky-subtracted: the background sits near 0 and nothing falls far below the noise
        assert abs(np.median(border)) < sigma
        assert x.min() > -8 * sigma
        # the target galaxy is at the centre and well above the noise
        centre = x[:, SIZE // 2 - 2 : SIZE // 2 + 3, SIZE // 2 - 2 : SIZE // 2 + 3].max(axis=(1, 2))
        assert np.all(centre > 10 * sigma)


def test_lensed_flux_sits_near_the_einstein_ring(pop_data):
    images, meta = pop_data
    src = meta["sources"]
    s = images["sources"][..., 0].astype(np.float64)
    c = (SIZE - 1) / 2.0
    yy, xx = np.mgrid[:SIZE, :SIZE]
    r = np.hypot(xx - c - src["lens_x"][:, None, None] / 0.2, yy - c - src["lens_y"][:, None, None] / 0.2) * 0.2
    radius = (s * r).sum(axis=(1, 2)) / s.sum(axis=(1, 2))  # flux-weighted radius, arcsec
    rho, _ = spearmanr(radius, src["theta_E"])
    assert rho > 0.8
    assert np.median(np.abs(radius / src["theta_E"] - 1)) < 0.3
    # lensing magnifies: most sources are brighter than intrinsically
    assert np.median(src["magnification"]) > 2


def test_negative_kinds_are_80_percent_contaminants(tmp_path):
    path = tmp_path / "neg.h5"
    simulate_population(path, n_lenses=0, n_sources=0, n_negatives=400, seed=3, size=24, progress=False)
    with open_dataset(path) as ds:
        kinds = ds.meta("negatives")["kind"]
        assert ds.count("lenses") == 0 and ds.count("sources") == 0
    assert len(kinds) == 400
    frac_lrg = np.mean(kinds == "lrg")
    assert abs(frac_lrg - 0.2) < 0.07  # binomial σ = 0.02
    for kind in CONTAMINANTS:
        assert abs(np.mean(kinds == kind) - 0.16) < 0.07


def test_psf_kernel_has_requested_fwhm():
    for kind in ("moffat", "gaussian"):
        kernel = psf_kernel(0.7, 3.0, 0.05, kind)  # fine pixels to measure the width
        assert kernel.sum() == pytest.approx(1.0)
        row = kernel[kernel.shape[0] // 2]
        above = np.flatnonzero(row >= row.max() / 2)
        fwhm = (above[-1] - above[0] + 1) * 0.05
        assert fwhm == pytest.approx(0.7, abs=0.06)


# ------------------------------------------------------------------ errors and writer
def test_bad_arguments_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="n_lenses|lenses"):
        simulate_population(tmp_path / "x.h5", -1, 1, 1, progress=False)
    with pytest.raises(UserError, match="size"):
        simulate_population(tmp_path / "x.h5", 1, 1, 1, size=8, progress=False)
    with pytest.raises(UserError, match="did you mean 'supersampling'"):
        simulate_population(tmp_path / "x.h5", 1, 1, 1, supersampling_factor=2, progress=False)
    with pytest.raises(UserError, match="theta_E_range"):
        SimOptions.from_kwargs(theta_E_range=(3.0, 1.0))
    assert not (tmp_path / "x.h5").exists()


def test_population_writer_is_atomic(tmp_path):
    path = tmp_path / "w.h5"
    with pytest.raises(RuntimeError):
        with PopulationWriter(path, {"lenses": 2, "sources": 1, "negatives": 1}, (4, 4, 1)) as w:
            w.write("lenses", 0, np.zeros((2, 4, 4, 1)), {"a": np.arange(2)})
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="never written"):
        with PopulationWriter(path, {"lenses": 2, "sources": 0, "negatives": 0}, (4, 4, 1)) as w:
            w.write("lenses", 0, np.zeros((1, 4, 4, 1)))
    assert list(tmp_path.iterdir()) == []
    with PopulationWriter(path, {"lenses": 2, "sources": 0, "negatives": 0}, (4, 4, 1), seed=5) as w:
        w.write("lenses", 1, np.ones((1, 4, 4, 1)), {"a": [1.5]})
        w.write("lenses", 0, np.zeros((1, 4, 4, 1)), {"a": [0.5]})
    with open_dataset(path) as ds:
        assert ds.read("lenses")[:, 0, 0, 0].tolist() == [0.0, 1.0]
        assert ds.meta("lenses")["a"].tolist() == [0.5, 1.5]
    with h5py.File(path) as fh:
        assert fh.attrs["seed"] == 5


# ------------------------------------------------------------------ CLI
def test_cli_end_to_end_and_overwrite_refusal(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    argv = ["simulate", "--out", str(out), "--lenses", "3", "--sources", "4", "--negatives", "3", "--seed", "2",
            "--size", "32", "--workers", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lenses: 3 images" in printed and "sources: 4 images" in printed and "theta_E" in printed
    first = out.stat().st_mtime_ns
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert out.stat().st_mtime_ns == first
    assert main([*argv, "--force"]) == 0
    with open_dataset(out) as ds:
        assert ds.image_shape == (32, 32, 1)
    for bad in (["--lenses", "-2"], ["--size", "8"], ["--workers", "0"]):
        args = list(argv)
        flag = bad[0]
        args[args.index(flag) + 1] = bad[1]
        args[args.index("--out") + 1] = str(tmp_path / "bad.h5")
        assert main(args) == 2
        assert flag in capsys.readouterr().err
    assert not (tmp_path / "bad.h5").exists()
