"""Grad-CAM (thesis Eq 3.24–3.25): shapes, one trace, hand-computed references, a planted arc, the CLI."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import yaml

from lenshpc.analysis.inspect.gradcam import (GradCAM, case_of, default_layers, display_normalise, overlay, select_cases,
                                      upscale_nearest)
from lenshpc.errors import UserError

S = 32  # side of the synthetic images


# ---------------------------------------------------------------- helpers
def _cam_model(seed: int = 0):
    """conv (relu) 'feat' → global average pool → Dense 'logits' → sigmoid: Grad-CAM is analytic here."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 2), name="image")
    a = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="feat")(inp)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(a)
    logits = keras.layers.Dense(1, name="logits")(g)
    out = keras.layers.Activation("sigmoid", name="prediction")(logits)
    return keras.Model(inp, out)


def _arc_images(n: int, rng: np.random.Generator):
    """Noise + a central 'lens' blob; positives add a bright arc (radius 9 px, 80° wide) at a random angle."""
    yy, xx = np.mgrid[:S, :S] - (S - 1) / 2
    r, th = np.hypot(yy, xx), np.arctan2(yy, xx)
    x = rng.normal(0, 0.05, (n, S, S)).astype(np.float32) + 0.8 * np.exp(-r**2 / 8.0)[None].astype(np.float32)
    y = rng.integers(0, 2, n).astype(np.float32)
    masks = np.zeros((n, S, S), bool)
    for i, angle in enumerate(rng.uniform(-np.pi, np.pi, n)):
        masks[i] = (np.abs(r - 9) < 1.5) & (np.abs(np.angle(np.exp(1j * (th - angle)))) < 0.7)
        if y[i]:
            x[i][masks[i]] += 0.6
    return x[..., None], y, masks


def _inside_outside(heatmaps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    up = upscale_nearest(heatmaps, (S, S))
    inside = np.array([u[m].mean() for u, m in zip(up, masks)])
    outside = np.array([u[~m].mean() for u, m in zip(up, masks)])
    return inside, outside


# ---------------------------------------------------------------- library
def test_shapes_nonnegative_finite_and_one_trace():
    from lenshpc.models import build

    model = build("tiny_resnet", (S, S, 1))
    cam = GradCAM(model)
    assert cam.layers == ["add_1", "add_2", "add_3"] == default_layers(model)
    rng = np.random.default_rng(0)
    for n, batch in ((5, 2), (7, 64), (1, 1), (33, 16)):  # many batches of different sizes, incl. a ragged tail
        res = cam.compute(rng.random((n, S, S, 1), dtype=np.float32), batch_size=batch)
        assert res.logits.shape == res.scores.shape == (n,)
        np.testing.assert_allclose(res.scores, 1 / (1 + np.exp(-res.logits)), rtol=1e-5, atol=1e-6)
        for name, maps in res.heatmaps.items():
            assert maps.shape == (n, *cam.shapes[name])
            assert np.isfinite(maps).all() and (maps >= 0).all()
    assert cam.shapes == {"add_1": (16, 16), "add_2": (8, 8), "add_3": (4, 4)}
    assert cam.tracing_count == 1  # traced once, reused for every batch (the thesis's code retraced per image)


def test_default_and_bad_layers():
    from lenshpc.models import build

    assert default_layers(build("resnet18", (64, 64, 1))) == ["add_5", "add_6", "add_7", "add_8"]
    lensflow = build("lensflow_cnn", (40, 40, 1), dense=(8,), filters=(4, 4, 4))
    assert default_layers(lensflow) == ["conv1", "conv2", "conv3"]  # no add_<i>: the last Conv2D layers
    model = build("tiny_resnet", (S, S, 1))
    with pytest.raises(UserError, match=r"add_9.*Valid layers.*add_3"):
        GradCAM(model, ["add_1", "add_9"])
    with pytest.raises(UserError, match="no feature-map layer 'avg_pool'"):  # exists, but is not spatial
        GradCAM(model, ["avg_pool"])
    with pytest.raises(UserError, match="class index 1"):
        GradCAM(model, class_index=1)


def test_matches_analytic_cam_and_a_separate_tape():
    """Two independent references on one image at a time.

    (a) For conv → GAP → Dense, ∂y/∂A^k_ij = w_k / Z, so α_k = w_k / Z and Grad-CAM is the
        original CAM, ReLU(Σ_k w_k A^k) / Z, computed here from the weights with numpy alone.
    (b) A GradientTape per image on a residual model (eager, no tf.function, no batching).
    """
    import keras
    import tensorflow as tf

    from lenshpc.models import build

    rng = np.random.default_rng(3)
    model = _cam_model()
    x = rng.random((6, 12, 12, 2), dtype=np.float32)
    res = GradCAM(model, ["feat"]).compute(x, batch_size=4)
    feats = keras.Model(model.inputs[0], model.get_layer("feat").output)(x).numpy()
    w = model.get_layer("logits").get_weights()[0][:, 0]
    z = feats.shape[1] * feats.shape[2]
    expected = np.maximum(feats @ w / z, 0)
    assert expected.max() > 0
    np.testing.assert_allclose(res.heatmaps["feat"], expected, rtol=1e-5, atol=1e-7)

    keras.utils.set_random_seed(1)
    model = build("tiny_resnet", (S, S, 1))
    x = rng.random((3, S, S, 1), dtype=np.float32)
    layers = ["add_2", "add_3"]
    res = GradCAM(model, layers).compute(x, batch_size=3)
    sub = keras.Model(model.inputs[0], [model.get_layer(n).output for n in layers] + [model.get_layer("logits").output])
    peak = 0.0
    for i in range(len(x)):
        with tf.GradientTape() as tape:
            *acts, logit = sub(x[i:i + 1], training=False)
            y = logit[0, 0]
        grads = tape.gradient(y, acts)
        assert float(y) == pytest.approx(float(res.logits[i]), rel=1e-5, abs=1e-6)
        for name, a, g in zip(layers, acts, grads):
            alpha = g.numpy()[0].mean(axis=(0, 1))                      # Eq 3.24
            ref = np.maximum(np.tensordot(a.numpy()[0], alpha, axes=([2], [0])), 0)   # Eq 3.25
            peak = max(peak, ref.max())  # a map may be empty (Σ α_k A^k ≤ 0 everywhere: Fig 5.5), not all of them
            np.testing.assert_allclose(res.heatmaps[name][i], ref, rtol=1e-4, atol=1e-6 * max(ref.max(), 1e-3))
    assert peak > 0


def test_highlights_a_planted_arc():
    """A tiny ResNet trained (~100 steps) to detect an arc at a random angle looks at the arc."""
    import keras
    import tensorflow as tf

    from lenshpc.models import build

    rng = np.random.default_rng(0)
    x_train, y_train, _ = _arc_images(1024, rng)
    x_test, y_test, masks = _arc_images(96, rng)
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()  # as the training loop does
    model = build("tiny_resnet", (S, S, 1))
    for layer in model.layers:  # short training: let batch-norm statistics keep up with the weights
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    cam = GradCAM(model, ["add_3"])
    untrained = cam.compute(x_test).heatmaps["add_3"]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(x_train, y_train, batch_size=32, epochs=3, verbose=0, shuffle=True)

    res = GradCAM(model).compute(x_test)
    pos = y_test == 1
    assert ((res.scores >= 0.5) == pos).mean() > 0.95  # the model did learn the task
    for name, maps in res.heatmaps.items():
        inside, outside = _inside_outside(maps[pos], masks[pos])
        assert inside.mean() > 1.5 * outside.mean(), name
        assert (inside > outside).mean() > 0.9, name
    # The deepest map points at the arc only after training (an untrained net does not).
    trained_in, trained_out = _inside_outside(res.heatmaps["add_3"][pos], masks[pos])
    raw_in, raw_out = _inside_outside(untrained[pos], masks[pos])
    assert trained_in.mean() / trained_out.mean() > raw_in.mean() / max(raw_out.mean(), 1e-12)


def test_display_helpers():
    h = np.array([[0.0, 2.0], [1.0, 0.5]], np.float32)
    up = upscale_nearest(h, (5, 4))  # uneven ratio: cell i covers rows floor(i·h/H)
    assert up.shape == (5, 4)
    np.testing.assert_array_equal(up[:, 0], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(up[0], [0, 0, 2, 2])
    assert set(np.unique(up)) <= set(np.unique(h))  # no interpolated values
    np.testing.assert_allclose(display_normalise(h), h / 2)
    assert (display_normalise(np.zeros((3, 3))) == 0).all()  # an empty map stays empty, no NaN
    img = np.linspace(2, 4, 16, dtype=np.float32).reshape(4, 4, 1)
    rgb = overlay(img, h)
    assert rgb.shape == (4, 4, 3)
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 1 and (rgb[..., 1] == 0).all()
    np.testing.assert_allclose(rgb[..., 2], upscale_nearest(h, (4, 4)) / 2)


def test_case_selection():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.95, 0.7])
    assert case_of(labels, scores, 0.5).tolist() == ["tp", "tp", "fn", "fp", "tn", "tn", "tp", "fp"]
    assert case_of(labels, scores, 0.7)[3] == "fp"  # positive iff score ≥ threshold (metrics.confusion)
    chosen = select_cases(labels, scores, 0.5, n=2)
    assert chosen["tp"].tolist() == [6, 0]           # most confident lens calls first
    assert chosen["fp"].tolist() == [3, 7]           # tie at 0.7 broken by test index
    assert chosen["fn"].tolist() == [2]              # fewer than n: all of them
    assert chosen["tn"].tolist() == [4, 5]           # lowest scores first
    assert select_cases(labels, scores, 0.99, cases=["tp", "fp"])["tp"].size == 0  # empty case, no error
    a = select_cases(labels, scores, 0.5, n=2, seed=7)
    assert {k: v.tolist() for k, v in a.items()} == {k: v.tolist() for k, v in
                                                     select_cases(labels, scores, 0.5, n=2, seed=7).items()}
    assert set(a["tp"]) <= {0, 1, 6} and len(a["tp"]) == 2
    with pytest.raises(UserError, match="unknown case"):
        select_cases(labels, scores, 0.5, cases=["tp", "xx"])


# ---------------------------------------------------------------- CLI
def test_cli_on_a_sweep_run(tiny_sweep, tmp_path, capsys):
    from lenshpc.cli import main
    from lenshpc.train import read_predictions

    run = tmp_path / "bce_seed0"
    shutil.copytree(tiny_sweep / "bce" / "seed0", run)
    assert main(["gradcam", str(run), "--n", "2", "--cases", "tp,fp,fn,tn"]) == 0
    out = run / "gradcam"
    summary = json.loads((out / "summary.json").read_text())
    pred = read_predictions(run / "predictions.h5")
    counts = json.loads((run / "metrics.json").read_text())["confusion"]
    assert summary["layers"] == {"add_1": [32, 32], "add_2": [16, 16], "add_3": [8, 8]}
    assert summary["tracing_count"] == 1 and summary["max_score_difference"] < 1e-3
    shown = 0
    for case, info in summary["cases"].items():
        assert info["available"] == counts[case]
        assert info["shown"] == min(2, counts[case]) == len(info["files"])
        for f in info["files"]:
            assert (out / f).stat().st_size > 5000
        shown += info["shown"]
    assert summary["missing_cases"] == [c for c in ("tp", "fp", "fn", "tn") if counts[c] == 0]
    with h5py.File(out / "heatmaps.h5", "r") as fh:
        idx = fh["test_index"][()]
        assert len(idx) == shown and fh["images"].shape == (shown, 64, 64, 1)
        np.testing.assert_array_equal(fh["labels"][()], pred["labels"][idx])
        np.testing.assert_allclose(fh["scores"][()], pred["scores"][idx])
        np.testing.assert_allclose(fh["model_scores"][()], pred["scores"][idx], atol=1e-3)
        for name, shape in summary["layers"].items():
            maps = fh["heatmaps"][name][()]
            assert maps.shape == (shown, *shape) and (maps >= 0).all() and np.isfinite(maps).all()
        cases = fh["case"].asstr()[()]
        assert all(c == ("tp" if l and s >= 0.5 else "fn" if l else "fp" if s >= 0.5 else "tn")
                   for c, l, s in zip(cases, fh["labels"][()], fh["scores"][()]))
    capsys.readouterr()
    # the same request again is skipped; fewer images and one layer remove the stale panels
    assert main(["gradcam", str(run), "--n", "2"]) == 0
    assert "up to date" in capsys.readouterr().out
    # --data: the test set of a dataset (here the run's own), scored by the model instead of predictions.h5
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]["path"]
    assert main(["gradcam", str(run), "--n", "1", "--layers", "add_3", "--cases", "tp,tn", "--data", data,
                 "--out", str(tmp_path / "o")]) == 0
    small = json.loads((tmp_path / "o" / "gradcam" / "summary.json").read_text())
    assert list(small["layers"]) == ["add_3"] and set(small["cases"]) == {"tp", "tn"}
    assert small["scores_from"] == "model (--data)"
    assert {c: v["available"] for c, v in small["cases"].items()} == {c: counts[c] for c in ("tp", "tn")}
    assert sorted(p.name for p in (tmp_path / "o" / "gradcam").glob("*.png")) == sorted(
        f for f in small["files"] if f.endswith(".png"))


def test_cli_errors(tiny_sweep, tmp_path, capsys):
    from lenshpc.cli import main

    assert main(["gradcam", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    run = tmp_path / "run"
    shutil.copytree(tiny_sweep / "bce" / "seed1", run, ignore=shutil.ignore_patterns("checkpoint"))
    assert main(["gradcam", str(run), "--layers", "add_4"]) == 2
    err = capsys.readouterr().err
    assert "no feature-map layer 'add_4'" in err and "add_3" in err and "Traceback" not in err
    assert main(["gradcam", str(run), "--cases", "tp,bad"]) == 2
    assert "choose one or more of tp,fp,fn,tn" in capsys.readouterr().err
    with h5py.File(run / "predictions.h5", "r+") as fh:  # the data no longer matches the stored predictions
        fh["test/labels"][0] = 1 - fh["test/labels"][0]
    assert main(["gradcam", str(run)]) == 2
    assert "does not describe the rebuilt test set" in capsys.readouterr().err
    (run / "DONE").unlink()
    assert main(["gradcam", str(run)]) == 2
    assert "has not finished" in capsys.readouterr().err
