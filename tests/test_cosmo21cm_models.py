"""The 21-cm study's networks (seed 003): the autoencoder's size and shape as in the seed's model summary, the
encoder shared by name with the classifier (what train.start_from copies), the dense baseline, bad shapes."""

from __future__ import annotations

import pytest

import lenshpc  # noqa: F401  (runtime caps before TensorFlow)
from lenshpc import models
from lenshpc.errors import ConfigError


def test_autoencoder_is_the_seeds():
    from lenshpc.models.cosmo21cm import autoencoder

    ae = autoencoder((200, 200, 1))
    assert ae.count_params() == 4385  # the seed's summary: "Total params: 4,385"
    assert ae.output_shape == (None, 200, 200, 1) and ae.layers[-1].name == "reconstruction"
    assert ae.get_layer("enc_pool3").output.shape[1:] == (25, 25, 8)  # 200×200×1 → 25×25×8
    enc = models.backbone("autoencoder21", (200, 200, 1), pooling=None)
    assert enc.output_shape == (None, 25, 25, 8)


def test_classifier_shares_the_encoder_layers():
    from lenshpc.models.cosmo21cm import autoencoder

    ae = autoencoder((32, 32, 1))
    cnn = models.build("cnn21", (32, 32, 1), num_outputs=6)
    assert cnn.output_shape == (None, 6) and cnn.layers[-1].name == "prediction"
    enc = {l.name: [w.shape for w in l.weights] for l in ae.layers if l.name.startswith("enc_conv")}
    assert enc and all([w.shape for w in cnn.get_layer(n).weights] == s for n, s in enc.items())


def test_dense_baseline_and_bad_shapes():
    dense = models.build("dense21", (50, 50, 1), num_outputs=17)
    assert [l.units for l in dense.layers if l.name.startswith(("dense", "logits"))] == [350, 17]  # 2500–350–17
    assert dense.count_params() == 2500 * 350 + 350 + 350 * 17 + 17
    from lenshpc.models.cosmo21cm import autoencoder

    assert autoencoder((50, 50, 1)).output_shape == (None, 50, 50, 1)  # 50 → 25 → 13 → 7 → 56, cropped to 50
    with pytest.raises(ConfigError, match="filters"):
        models.check("cnn21", {"filters": [0]}, (48, 48, 1))
