"""Normalisation as a per-run choice (``data.normalisation``; ``lenshpc/data/normalise.py``).

Real data (the project's simulated ``small_population``), real runs of ``tiny_resnet``: each normaliser
against its library (astropy, scikit-image), the chunk engine's fast path against its numpy reference,
and every scorer (``evaluate``, ``rank``, ``gradcam``'s test set, ensemble re-scoring) applying the run's
OWN normalisation read from its run directory.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lenshpc.errors import ConfigError, UserError
from test_train import tiny_cfg


@pytest.fixture(scope="module")
def raw_images(small_population):
    from lenshpc.data.format import open_dataset

    with open_dataset(small_population) as ds:
        return ds.read("negatives", np.arange(6))


def test_default_is_the_thesis_transform(raw_images):
    from lenshpc.data import normalise, transforms

    assert normalise.available() == ["minmax_sqrt", "histogram_template", "asinh", "zscale"]
    out = normalise.REGISTRY["minmax_sqrt"]()(raw_images)
    np.testing.assert_array_equal(out, transforms.prepare(raw_images))


def test_asinh_and_zscale_are_astropys(raw_images):
    from astropy.visualization import AsinhStretch, ZScaleInterval

    from lenshpc.data import normalise, transforms

    a = normalise.REGISTRY["asinh"]({"a": 0.05})(raw_images)
    np.testing.assert_allclose(a, AsinhStretch(0.05)(transforms.normalise(raw_images)), rtol=1e-6)
    z = normalise.REGISTRY["zscale"]()(raw_images)
    lo, hi = ZScaleInterval().get_limits(raw_images[2])
    np.testing.assert_allclose(z[2], np.clip((raw_images[2] - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-7)
    assert z.min() >= 0 and z.max() <= 1 and not np.array_equal(z, a)


def test_histogram_template_matches_the_template(small_population, raw_images, tmp_path):
    from lenshpc.config import load_config
    from lenshpc.data import normalise

    template = raw_images[0, :, :, 0] ** 2  # a cutout of the right shape, another histogram
    np.save(tmp_path / "t.npy", template)
    cfg = load_config(overrides=[f"data.path={small_population}", "data.normalisation=histogram_template",
                                 f"data.normalisation_params={{template: {tmp_path / 't.npy'}}}"])
    norm = normalise.for_config(cfg, run_dir=tmp_path / "run")
    assert (tmp_path / "run" / normalise.TEMPLATE_FILE).is_file()
    out = norm(raw_images)
    ref = np.sort(norm.template.ravel())
    for img in out[1:]:  # each image now has (almost exactly) the template's pixel distribution
        np.testing.assert_allclose(np.quantile(img, [0.1, 0.5, 0.9]), np.quantile(ref, [0.1, 0.5, 0.9]), atol=0.02)
    pooled = normalise.for_config(cfg.replace(**{"data.normalisation_params": {"template": str(small_population),
                                                                                "template_count": 16}}))
    assert pooled.template.shape == (normalise.POOLED_QUANTILES, 1, 1)
    assert pooled.describe()["template_sha256"] != norm.describe()["template_sha256"]


def test_non_default_engine_matches_its_reference(repo_root, small_population):
    """The non-fused path (merge → normalise → augment kernel) equals the numpy reference chunk."""
    from lenshpc.data.chunks import ChunkEngine

    cfg = tiny_cfg(repo_root, small_population, "data.normalisation=asinh", "data.chunk_size=32")
    with ChunkEngine(cfg) as engine:
        x, y = engine.chunk(3)
        xr, yr = engine.reference_chunk(3)
        np.testing.assert_array_equal(y, yr)
        np.testing.assert_allclose(x, xr, atol=1e-6)
        with ChunkEngine(tiny_cfg(repo_root, small_population, "data.chunk_size=32")) as default:
            x0, y0 = default.chunk(3)
            np.testing.assert_array_equal(y0, y)  # the same draws, other pixels
            assert not np.allclose(x0, x)


@pytest.fixture(scope="module")
def asinh_run(repo_root, small_population, tmp_path_factory):
    from lenshpc.train import run_training

    run_dir = tmp_path_factory.mktemp("norm") / "asinh"
    run_training(tiny_cfg(repo_root, small_population, "train.chunks=1", "data.normalisation=asinh"), run_dir,
                 show_progress=False)
    return run_dir


def test_scorers_use_the_runs_own_normalisation(asinh_run, small_population, tmp_path):
    from lenshpc.analysis.inspect.gradcam import _load_test_set
    from lenshpc.analysis.ranking.report import rank_catalogue
    from lenshpc.data import normalise
    from lenshpc.data.format import open_dataset
    from lenshpc.data.survey import mock_survey
    from lenshpc.train.evaluate import evaluate_run, load_model, predict_scores
    from lenshpc.train.rundir import read_predictions

    metrics = json.loads((asinh_run / "metrics.json").read_text())
    assert metrics["normalisation"] == {"name": "asinh", "params": {"a": 0.1}}
    own = read_predictions(asinh_run / "predictions.h5", "test")["scores"]
    again = evaluate_run(asinh_run, out=tmp_path / "eval")
    np.testing.assert_array_equal(read_predictions(tmp_path / "eval" / "predictions.h5", "test")["scores"], own)
    assert again["auroc"] == metrics["auroc"]

    from lenshpc.config import load_config

    x, _, _ = _load_test_set(load_config(asinh_run / "config.yaml"), asinh_run)
    model = load_model(asinh_run / "model.keras")
    np.testing.assert_array_equal(predict_scores(model, x), own)

    survey = tmp_path / "survey.h5"
    mock_survey(small_population, survey, n_tracers=4, seed=0)
    result = rank_catalogue(asinh_run, survey, tmp_path / "rank", top=0, tracers="is_tracer", show_progress=False)
    from lenshpc.analysis.ranking.shards import read_scores, make_plan

    scores = read_scores(make_plan(asinh_run, survey, tmp_path / "rank"))
    with open_dataset(survey) as ds:
        raw = ds.read("images")
    np.testing.assert_allclose(scores, predict_scores(model, normalise.REGISTRY["asinh"]()(raw)), atol=1e-6)
    assert not np.allclose(scores, predict_scores(model, normalise.REGISTRY["minmax_sqrt"]()(raw)), atol=1e-4)
    assert result["metrics"]["n_tracers"] == 4


def test_ensemble_members_are_rescored_with_their_own_normalisation(asinh_run, tiny_run):
    """A minmax member and an asinh member on common sets: each gets its own pixels (never the other's)."""
    from lenshpc.analysis.ensembles.members import Member, prediction_matrices
    from lenshpc.data import normalise
    from lenshpc.train.rundir import read_predictions

    plain = tiny_run  # seed 1, default normalisation
    preds = prediction_matrices([Member("plain", plain), Member("asinh", asinh_run)], show_progress=False)
    assert preds.sources == ["predictions", "rescored"]  # asinh's own run used seed 0: re-scored on seed 1's sets
    # Scoring asinh's member on the (default) minmax images would give other numbers:
    from lenshpc.analysis.ensembles.members import ModelScorer, _common_sets
    from lenshpc.train.rundir import run_normaliser
    from lenshpc.config import load_config

    cfg = load_config(plain / "config.yaml")
    xv_minmax = _common_sets(cfg)[0]
    xv_asinh = _common_sets(cfg, run_normaliser(asinh_run))[0]
    scorer = ModelScorer(asinh_run)
    np.testing.assert_array_equal(preds.X_val[:, 1].astype(np.float32), scorer.score(xv_asinh))
    assert not np.allclose(preds.X_val[:, 1], scorer.score(xv_minmax), atol=1e-4)
    np.testing.assert_array_equal(preds.X_val[:, 0].astype(np.float32),
                                  read_predictions(plain / "predictions.h5", "val")["scores"])


def test_bad_normalisation_inputs(repo_root, small_population, asinh_run, tmp_path):
    from lenshpc.analysis.ensembles.scorer import model_normaliser
    from lenshpc.data import normalise
    from lenshpc.train import run_training
    from lenshpc.train.rundir import run_normaliser

    with pytest.raises(ConfigError, match="did you mean 'asinh'"):
        tiny_cfg(repo_root, small_population, "data.normalisation=asinhh")
    with pytest.raises(ConfigError, match="has no parameter 'b'"):
        tiny_cfg(repo_root, small_population, "data.normalisation=asinh", "data.normalisation_params={b: 1}")
    np.save(tmp_path / "wrong.npy", np.ones((10, 12), np.float32))
    cfg = tiny_cfg(repo_root, small_population, "data.normalisation=histogram_template",
                   f"data.normalisation_params={{template: {tmp_path / 'wrong.npy'}}}")
    with pytest.raises(UserError, match=r"template image of shape \(10, 12, 1\).*\(64, 64, 1\)"):
        run_training(cfg, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / normalise.TEMPLATE_FILE).exists()
    assert not (tmp_path / "run" / "model.keras").exists()
    cfg = tiny_cfg(repo_root, small_population, "data.normalisation=histogram_template")
    with pytest.raises(ConfigError, match="needs data.normalisation_params.template"):
        run_training(cfg, tmp_path / "run2", show_progress=False)
    # A histogram-template run copied without its template cannot score silently with another one.
    copy = tmp_path / "copied"
    shutil.copytree(asinh_run, copy)
    text = (copy / "config.yaml").read_text().replace("normalisation: asinh", "normalisation: histogram_template")
    (copy / "config.yaml").write_text(text.replace("normalisation_params: {}",
                                                   f"normalisation_params: {{template: {tmp_path / 'wrong.npy'}}}"))
    with pytest.raises(UserError, match="template.npy is missing"):
        run_normaliser(copy)
    # An average ensemble of members with different normalisations cannot rank one input for both.
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "ensemble.json").write_text(json.dumps({"method": "average", "members": [str(asinh_run), str(copy)],
                                                   "weights": [0.5, 0.5]}))
    (copy / "template.npy").write_bytes(b"")
    np.save(copy / "template.npy", np.ones((64, 64, 1), np.float32))
    with pytest.raises(UserError, match="members use different normalisations"):
        model_normaliser(ens)


def test_ide_members_must_share_the_ensemblers_normalisation(tmp_path):
    from lenshpc.analysis.ensembles.ide import check_members, _Member

    member = _Member(path=tmp_path, name="a", preprocess="none", normalisation={"name": "asinh", "params": {"a": 0.1}})
    check_members([member], "none", None, {"name": "asinh", "params": {"a": 0.1}})
    with pytest.raises(UserError, match="trained with normalisation"):
        check_members([member], "none", None, {"name": "minmax_sqrt", "params": {}})
