"""Model registry: every architecture builds with the documented shapes, names and errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lenshpc import models  # noqa: E402
from lenshpc.errors import ConfigError  # noqa: E402

THESIS_SHAPE = (101, 101, 1)


@pytest.fixture(scope="module")
def built():
    """Each registered model built once on the thesis's 101×101×1 cutouts."""
    keras.utils.set_random_seed(0)
    return {name: models.build(name, THESIS_SHAPE) for name in models.available()}


def test_registry_lists_the_documented_models():
    assert models.available() == ["autoencoder21", "cnn21", "dense21", "efficientnet_b0", "lastro_cnn",
                                  "lensflow_cnn", "resnet18", "tiny_resnet"]


@pytest.mark.parametrize("name", ["efficientnet_b0", "lastro_cnn", "lensflow_cnn", "resnet18", "tiny_resnet"])
def test_each_model_maps_a_batch_of_cutouts_to_probabilities(built, name):
    model = built[name]
    assert model.input_shape == (None, *THESIS_SHAPE)
    assert model.output_shape == (None, 1)
    assert model.get_layer("prediction").get_config()["activation"] == "sigmoid"
    x = np.random.default_rng(0).normal(size=(2, *THESIS_SHAPE)).astype(np.float32)
    out = np.asarray(model(x, training=False))
    assert out.shape == (2, 1) and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))


def test_resnet18_matches_the_thesis_layout(built):
    model = built["resnet18"]
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert adds == [f"add_{i}" for i in range(1, 9)]
    # Feature-map sizes on 101×101: stem /2 -> 51, pool /2 -> 26, then 26, 13, 7, 4.
    sizes = {name: model.get_layer(name).output.shape[1:] for name in adds}
    assert sizes["add_1"] == (26, 26, 64) and sizes["add_3"] == (13, 13, 128)
    assert sizes["add_5"] == (7, 7, 256) and sizes["add_8"] == (4, 4, 512)
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (7, 7) and stem.strides == (2, 2) and stem.filters == 64
    assert stem.get_config()["kernel_initializer"]["class_name"] == "HeNormal"
    assert stem.kernel_regularizer.l2 == pytest.approx(1e-4)
    # 1×1 projection shortcuts exactly where the shape changes (first block of stages 2–4).
    shortcuts = sorted(layer.name for layer in model.layers if layer.name.endswith("_shortcut"))
    assert shortcuts == ["stage2_block1_shortcut", "stage3_block1_shortcut", "stage4_block1_shortcut"]
    assert 11_000_000 < model.count_params() < 11_300_000  # ResNet18 on one channel


def test_hparams_reach_the_architecture():
    keras.utils.set_random_seed(0)
    model = models.build("tiny_resnet", (64, 64, 1), filters=[4, 8], blocks=[2, 1], l2=0.0)
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert adds == ["add_1", "add_2", "add_3"]
    assert model.get_layer("add_3").output.shape[-1] == 8
    assert model.get_layer("stem_conv").kernel_regularizer is None
    lensflow = models.build("lensflow_cnn", (64, 64, 1), dropout=0.3, dense=[32, 16])
    assert lensflow.get_layer("fc1_drop").rate == pytest.approx(0.3)
    assert lensflow.get_layer("fc2").units == 16
    assert lensflow.get_layer("conv1").get_config()["activation"] == "tanh"
    assert models.default_hparams("lastro_cnn") == {"dropout": 0.2, "dense_activation": "relu"}
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(layer.momentum == pytest.approx(0.99) for layer in bn)  # Keras's default unless set
    fast = models.build("tiny_resnet", (48, 48, 1), bn_momentum=0.9)
    assert {layer.momentum for layer in fast.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}


def test_softmax_head_for_the_dynamic_ensembler():
    model = models.build("tiny_resnet", (32, 32, 1), num_outputs=6)
    assert model.output_shape == (None, 6)
    out = np.asarray(model(np.zeros((3, 32, 32, 1), np.float32)))
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


MIXED_PRECISION_OUTPUT = r"""
import numpy as np
import lenshpc, keras
from lenshpc import models
keras.config.set_dtype_policy("mixed_float16")
model = models.build("tiny_resnet", (32, 32, 1))
assert model.get_layer("stem_conv").compute_dtype == "float16"
out = model(np.zeros((2, 32, 32, 1), np.float32))
print(keras.backend.standardize_dtype(out.dtype))
"""


def test_output_stays_float32_under_mixed_precision():
    """In a subprocess with oneDNN off: under lenshpc's AVX2 cap of oneDNN (AVX-512 CPUs, lenshpc/runtime.py) a CPU
    has no float16 convolution kernel (lenshpc refuses mixed precision there, see test_runtime); mixed precision
    is for GPUs, which this machine lacks, so the float16 path is exercised on the CPU's Eigen kernels."""
    env = {**os.environ, "LENSHPC_ONEDNN": "off", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    proc = subprocess.run([sys.executable, "-c", MIXED_PRECISION_OUTPUT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "float32"


def test_same_seed_same_weights_different_seed_different():
    def weights(seed):
        keras.utils.set_random_seed(seed)
        return models.build("tiny_resnet", (32, 32, 1)).get_weights()

    a, b, c = weights(3), weights(3), weights(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_saved_model_round_trips(tmp_path):
    keras.utils.set_random_seed(1)
    model = models.build("tiny_resnet", (32, 32, 1))
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 1)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert np.allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
    assert [la.name for la in loaded.layers if la.name.startswith("add_")] == ["add_1", "add_2", "add_3"]


def test_tiny_resnet_learns_in_seconds_on_64px_images():
    """A ring (Einstein-ring-like) versus no ring in noise: separable after a few epochs."""
    rng = np.random.default_rng(0)
    n, size = 256, 64
    yy, xx = np.mgrid[:size, :size] - size / 2
    radius = np.hypot(xx, yy)
    labels = (np.arange(n) % 2).astype(np.float32)
    ring_r = rng.uniform(8, 16, n)
    rings = np.exp(-0.5 * ((radius[None] - ring_r[:, None, None]) / 1.5) ** 2)
    galaxy = np.exp(-0.5 * (radius / 4.0) ** 2)
    x = galaxy[None] + 0.8 * labels[:, None, None] * rings + rng.normal(0, 0.3, (n, size, size))
    x = x[..., None].astype(np.float32)
    keras.utils.set_random_seed(0)
    model = models.build("tiny_resnet", (size, size, 1))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    model.fit(x[:192], labels[:192], batch_size=32, epochs=6, verbose=0)
    from lenshpc.metrics import auroc

    assert auroc(labels[192:], model.predict(x[192:], verbose=0)) > 0.9


def test_unknown_names_and_bad_hparams_are_config_errors():
    with pytest.raises(ConfigError, match="Did you mean 'resnet18'"):
        models.build("resnet19")
    with pytest.raises(ConfigError, match="Did you mean 'l2'"):
        models.build("resnet18", l3=1e-4)
    with pytest.raises(ConfigError, match="one per stage"):
        models.build("tiny_resnet", (32, 32, 1), filters=[8, 16], blocks=[1])
    with pytest.raises(ConfigError, match=r"dropout must be a number in \[0, 1\)"):
        models.build("lensflow_cnn", dropout=1.5)
    with pytest.raises(ConfigError, match=r"bn_momentum must be a number in \[0, 1\)"):
        models.build("tiny_resnet", (48, 48, 1), bn_momentum=1.0)
    with pytest.raises(ConfigError, match="at least 69"):
        models.build("lastro_cnn", (64, 64, 1))
    with pytest.raises(ConfigError, match="height, width, channels"):
        models.build("resnet18", (101, 101))
    with pytest.raises(ConfigError, match="num_outputs"):
        models.build("resnet18", num_outputs=0)


#: Fingerprints of seeded builds (seed 7) recorded with the single-builder models (backbone and head in one
#: function, before models.backbone/heads existed): parameter count, Σ|w| and the outputs on a fixed input.
#: Splitting backbone and head must not move a weight: seeded runs give the numbers they gave before.
SEEDED_BEFORE_SPLIT = {
    ("tiny_resnet", 1): (19825, 2088.9123168719543, [[0.057275], [0.131566]]),
    ("tiny_resnet", 3): (19891, 2100.7526146743057, [[0.013453, 0.174013, 0.812534], [0.014687, 0.106234, 0.879079]]),
    ("lensflow_cnn", 1): (3353, 312.3670075647533, [[0.526218], [0.535651]]),
}
_SEEDED_SHAPES = {"tiny_resnet": ((32, 32, 1), {}), "lensflow_cnn": ((40, 40, 1), {"dense": [32, 16],
                                                                                     "filters": [4, 8, 8]})}


@pytest.mark.parametrize("name,k", sorted(SEEDED_BEFORE_SPLIT))
def test_seeded_builds_keep_the_weights_they_had_before_the_backbone_head_split(name, k):
    shape, hp = _SEEDED_SHAPES[name]
    keras.utils.set_random_seed(7)
    model = models.build(name, shape, num_outputs=k, **hp)
    params, total_abs, pred = SEEDED_BEFORE_SPLIT[(name, k)]
    assert model.name == name and model.count_params() == params
    assert [la.name for la in model.layers][-2:] == ["logits", "prediction"]
    assert sum(float(np.abs(np.asarray(w, np.float64)).sum()) for w in model.get_weights()) == pytest.approx(
        total_abs, rel=1e-9)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    assert np.allclose(np.asarray(model(x, training=False)), pred, atol=2e-6)


def test_backbone_gives_features_and_build_takes_a_task_head():
    from keras import layers

    feats = models.backbone("tiny_resnet", (32, 32, 1))
    assert feats.input.name == "image" and feats.output_shape == (None, 32)
    assert models.backbone("tiny_resnet", (32, 32, 1), pooling=None).output_shape == (None, 4, 4, 32)
    assert models.backbone("lensflow_cnn", (40, 40, 1), filters=[4, 8], pooling=None).output_shape[-1] == 8
    assert models.backbone("lensflow_cnn", (40, 40, 1), dense=[16]).output_shape == (None, 16)
    with pytest.raises(ConfigError, match="pooling"):
        models.backbone("tiny_resnet", (32, 32, 1), pooling="max")

    def upsampling_head(backbone, num_outputs):  # a decoder-like head on the feature map
        x = layers.UpSampling2D(8, name="up")(backbone.output)
        return layers.Conv2D(num_outputs, 1, name="decoded")(x)

    model = models.build("tiny_resnet", (32, 32, 1), num_outputs=2, head=upsampling_head, pooling=None)
    assert model.output_shape == (None, 32, 32, 2) and model.get_layer("add_3") is not None
    # The default head: the same Dense init the thesis code used (he_normal on ResNets, glorot elsewhere).
    assert models.build("tiny_resnet", (32, 32, 1)).get_layer("logits").get_config()["kernel_initializer"][
        "class_name"] == "HeNormal"


def test_a_task_supplies_its_head_through_build_model():
    """Task.build_model = the config's backbone + Task.head() (the lens task: the default classifier)."""
    from keras import layers

    from lenshpc.config import load_config
    from lenshpc.tasks.lens import LensTask

    class Regression(LensTask):
        def head(self):
            return lambda backbone, n: layers.Dense(n, name="value")(backbone.output)

    cfg = load_config(None, overrides=["model.name=tiny_resnet"])
    assert LensTask(cfg).build_model((32, 32, 1)).get_layer("prediction").get_config()["activation"] == "sigmoid"
    model = Regression(cfg).build_model((32, 32, 1))
    assert model.layers[-1].name == "value" and model.output_shape == (None, 1) and model.name == "tiny_resnet"
