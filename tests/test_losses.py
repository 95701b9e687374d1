"""Soft losses (thesis Eq 3.5, 3.13–3.19) against hand computation, edge cases and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from lenshpc import losses, metrics  # noqa: E402
from lenshpc.errors import ConfigError  # noqa: E402

Y = [1, 1, 0, 0, 1, 0]
P = [0.9, 0.6, 0.2, 0.4, 0.3, 0.1]
EPS = 1e-7
SOFT = ("f1_soft", "f1_double_soft", "fbeta_soft")


def _hand_counts(y, p):
    """Eq 3.9–3.12 with plain Python sums."""
    tp = sum(pi * yi for yi, pi in zip(y, p))
    fp = sum(pi * (1 - yi) for yi, pi in zip(y, p))
    fn = sum((1 - pi) * yi for yi, pi in zip(y, p))
    tn = sum((1 - pi) * (1 - yi) for yi, pi in zip(y, p))
    return tp, fp, fn, tn


def _value(name, y, p, **kw):
    return float(losses.get(name, **kw)(np.asarray(y, np.float32), np.asarray(p, np.float32)))


def test_counts_of_the_reference_batch_are_what_the_thesis_formulas_give():
    tp, fp, fn, tn = _hand_counts(Y, P)
    assert (tp, fp, fn, tn) == pytest.approx((1.8, 0.7, 1.2, 2.3))


def test_bce_matches_eq_3_5():
    expected = -sum(y * math.log(p) + (1 - y) * math.log(1 - p) for y, p in zip(Y, P)) / len(Y)
    assert _value("bce", Y, P) == pytest.approx(expected, rel=1e-5)


def test_f1_soft_matches_eq_3_14():
    tp, fp, fn, _ = _hand_counts(Y, P)
    expected = 1 - 2 * tp / (2 * tp + fn + fp)  # = 1 - 3.6 / 5.5
    assert expected == pytest.approx(0.345454545, rel=1e-6)
    assert _value("f1_soft", Y, P) == pytest.approx(expected, rel=1e-5)


def test_f1_double_soft_matches_eq_3_17():
    tp, fp, fn, tn = _hand_counts(Y, P)
    positive = 1 - 2 * tp / (2 * tp + fn + fp)
    negative = 1 - 2 * tn / (2 * tn + fn + fp)
    assert _value("f1_double_soft", Y, P) == pytest.approx((positive + negative) / 2, rel=1e-5)


@pytest.mark.parametrize("beta", [0.17, 1.0, 2.0])
def test_fbeta_soft_matches_eq_3_19(beta):
    tp, fp, fn, _ = _hand_counts(Y, P)
    precision, recall = tp / (tp + fp), tp / (tp + fn)  # 0.72, 0.6
    expected = 1 - (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
    assert _value("fbeta_soft", Y, P, beta=beta) == pytest.approx(expected, rel=1e-5)


def test_fbeta_soft_with_beta_one_equals_f1_soft():
    assert _value("fbeta_soft", Y, P, beta=1.0) == pytest.approx(_value("f1_soft", Y, P), rel=1e-5)


def test_shapes_b_and_b1_give_the_same_loss():
    for name in ("bce", *SOFT):
        fn = losses.get(name)
        flat = float(fn(np.asarray(Y, np.float32), np.asarray(P, np.float32)))
        column = float(fn(np.asarray(Y, np.float32)[:, None], np.asarray(P, np.float32)[:, None]))
        mixed = float(fn(np.asarray(Y, np.float32), np.asarray(P, np.float32)[:, None]))
        assert flat == pytest.approx(column) == pytest.approx(mixed)


def test_perfect_predictions_give_zero_soft_loss():
    y = [1, 0, 1, 0]
    assert _value("f1_soft", y, y) == pytest.approx(0.0, abs=1e-6)
    assert _value("f1_double_soft", y, y) == pytest.approx(0.0, abs=1e-6)
    assert _value("fbeta_soft", y, y) == pytest.approx(0.0, abs=1e-6)
    assert _value("bce", y, y) < 1e-6


def test_edge_batches_have_the_values_the_formulas_give_with_eps():
    # All-negative batch predicted perfectly: TP = FP = FN = 0, TN = 3.
    assert _value("f1_soft", [0, 0, 0], [0, 0, 0]) == pytest.approx(1.0)  # 1 - 0/ε
    assert _value("f1_double_soft", [0, 0, 0], [0, 0, 0]) == pytest.approx(0.5)  # (1 + 0) / 2
    # Everything wrong: loss 1 for every soft loss.
    for name in SOFT:
        assert _value(name, [1, 0], [0, 1]) == pytest.approx(1.0)


def test_soft_fbeta_metric_is_one_minus_the_loss():
    assert metrics.soft_fbeta(Y, P) == pytest.approx(1 - _value("fbeta_soft", Y, P), rel=1e-6)


EDGE_BATCHES = {
    "all_positive_right": ([1, 1, 1, 1], [1.0, 1.0, 1.0, 1.0]),
    "all_positive_wrong": ([1, 1, 1, 1], [0.0, 0.0, 0.0, 0.0]),
    "all_negative_right": ([0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0]),
    "all_negative_wrong": ([0, 0, 0, 0], [1.0, 1.0, 1.0, 1.0]),
    "perfect_mixed": ([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0]),
    "reference": (Y, P),
}


@pytest.mark.parametrize("name", ["bce", *SOFT])
@pytest.mark.parametrize("batch", sorted(EDGE_BATCHES))
def test_loss_and_gradient_are_finite(name, batch):
    y, p = EDGE_BATCHES[batch]
    fn = losses.get(name)
    # Also differentiate through a sigmoid: saturated probabilities from real (±30) logits.
    p_arr = np.asarray(p, np.float64)
    with np.errstate(divide="ignore"):
        logit = np.clip(np.log(p_arr) - np.log1p(-p_arr), -30.0, 30.0)
    logits = tf.Variable(logit, dtype=tf.float32)
    probs = tf.Variable(np.asarray(p, np.float32))
    with tf.GradientTape(persistent=True) as tape:
        direct = fn(tf.constant(y, tf.float32), probs)
        through_sigmoid = fn(tf.constant(y, tf.float32), tf.sigmoid(logits))
    for value, var in ((direct, probs), (through_sigmoid, logits)):
        grad = tape.gradient(value, var)
        assert np.isfinite(float(value))
        assert grad is not None and np.all(np.isfinite(grad.numpy())), (name, batch, grad)


def test_soft_loss_gradient_points_towards_the_labels():
    """A descent step on the reference batch lowers every soft loss."""
    for name in SOFT:
        fn = losses.get(name)
        p = tf.Variable(np.asarray(P, np.float32))
        with tf.GradientTape() as tape:
            before = fn(tf.constant(Y, tf.float32), p)
        grad = tape.gradient(before, p).numpy()
        # d loss / d ŷ is negative for lenses (raise ŷ) and positive for non-lenses.
        assert np.all(grad[np.asarray(Y) == 1] < 0) and np.all(grad[np.asarray(Y) == 0] > 0), (name, grad)
        after = fn(tf.constant(Y, tf.float32), tf.constant(np.clip(P - 0.05 * grad, 0, 1), tf.float32))
        assert float(after) < float(before)


def test_losses_stay_float32_under_mixed_precision_inputs():
    fn = losses.get("fbeta_soft")
    out = fn(tf.constant(Y, tf.float16), tf.constant(P, tf.float16))
    assert out.dtype == tf.float32


def test_registry_names_and_errors():
    assert losses.available() == ["bce", "categorical_crossentropy", "f1_double_soft", "f1_soft", "fbeta_soft"]
    with pytest.raises(ConfigError, match="Did you mean 'fbeta_soft'"):
        losses.get("fbeta_sof")
    with pytest.raises(ConfigError, match="no option 'gamma'"):
        losses.get("fbeta_soft", gamma=2)
    with pytest.raises(ConfigError, match="positive"):
        losses.get("fbeta_soft", beta=0)
    # beta is accepted by every loss so callers can pass cfg.loss.beta uniformly.
    assert _value("bce", Y, P, beta=0.5) == pytest.approx(_value("bce", Y, P))


def test_categorical_crossentropy_for_the_dynamic_ensembler():
    fn = losses.get("categorical_crossentropy")
    y = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    p = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], np.float32)
    assert float(fn(y, p)) == pytest.approx(-(math.log(0.7) + math.log(0.5)) / 2, rel=1e-5)


def test_losses_serialise_with_their_options():
    import keras

    loss = losses.get("fbeta_soft", beta=0.3)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, losses.FBetaSoft) and clone.beta == pytest.approx(0.3)
    assert float(clone(np.asarray(Y, np.float32), np.asarray(P, np.float32))) == pytest.approx(
        _value("fbeta_soft", Y, P, beta=0.3))


def test_keras_compile_and_fit_accept_the_losses():
    """The losses plug into ``model.compile`` (reduction of a batch scalar is a no-op)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    for name in ("bce", *SOFT):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.Adam(0.1), loss=losses.get(name))
        hist = model.fit(x, y, batch_size=32, epochs=5, verbose=0).history["loss"]
        assert hist[-1] < hist[0], (name, hist)


def test_losses_compile_under_xla_with_integer_labels():
    """The training step is an XLA-compiled tf.function fed uint8 labels and (B, 1) scores."""
    y = tf.constant([1, 0, 1, 0, 1], tf.uint8)
    p = tf.constant([[0.9], [0.2], [0.6], [0.1], [0.4]], tf.float32)
    for name in ("bce", *SOFT):
        fn = losses.get(name)
        compiled = tf.function(fn.__call__, jit_compile=True)
        assert float(compiled(y, p)) == pytest.approx(float(fn(y, p)), rel=1e-6)
