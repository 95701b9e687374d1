"""The 21-cm study's networks (seed 003): the convolutional autoencoder, a small CNN on top of its encoder and
the dense baseline on raw crops.

``autoencoder21``
    The seed's autoencoder: encoder conv 3×3 16 → max-pool 2 → conv 8 → max-pool → conv 8 → max-pool (200×200×1 →
    25×25×8 on the seed's slices), mirrored decoder conv 8 → up-sample 2 → conv 8 → up → conv 16 → up → conv 1
    (linear).  4,385 parameters at the seed's defaults, as in its model summary.  The output layer is
    ``reconstruction`` (the image shape), not a class head.  The input side must be divisible by
    ``2 ** len(filters)``.
``cnn21``
    A classifier: the **same encoder** (layer names ``enc_conv1`` …, so ``train.start_from: AE_RUN_DIR`` copies
    the trained encoder and ``train.freeze: ["enc_*"]`` freezes it: the seed's "CNN on the encoded images")
    followed by convolutions ``cls_conv1`` … (3×3, ReLU, max-pool 2), global average pooling, a dense layer and the
    K-class softmax head.  Trained from scratch it is the seed's "CNN without the encoder".
``dense21``
    The seed's dense baseline: flatten → dense ``hidden`` (350, ReLU) → head: 2500–350–17 on 50×50 crops
    (``task.params.crop: 50``).

All take channels-last ``(H, W, 1)`` slices and use "same" padding, ReLU and ``he_normal`` initialisation.
"""

from __future__ import annotations

from typing import Any, Sequence

from lenshpc.errors import ConfigError
from lenshpc.models._head import fraction, output_head, positive_ints


def _conv(x: Any, filters: int, name: str, activation: str = "relu") -> Any:
    from keras import layers

    return layers.Conv2D(filters, 3, padding="same", activation=activation, kernel_initializer="he_normal",
                         name=name)(x)


def _check_divisible(model: str, input_shape: tuple | None, levels: int) -> None:
    if input_shape is None:
        return
    step = 2 ** levels
    if input_shape[0] % step or input_shape[1] % step:
        raise ConfigError(f"model '{model}': {levels} max-pool/up-sample levels need a slice side divisible by "
                          f"{step}, got input_shape {tuple(input_shape)}; simulate with HII_DIM a multiple of "
                          f"{step}, crop (task.params.crop) to one, or use fewer encoder filters")


def encoder(x: Any, filters: Sequence[int]) -> Any:
    """The seed's encoder: per level conv 3×3 (``enc_conv<i>``) → max-pool 2 (``enc_pool<i>``)."""
    from keras import layers

    for i, width in enumerate(filters, start=1):
        x = _conv(x, width, f"enc_conv{i}")
        x = layers.MaxPooling2D(2, name=f"enc_pool{i}")(x)
    return x


# ------------------------------------------------------------------ autoencoder
def check_autoencoder(model: str, input_shape: tuple | None, *, filters: Any, bottleneck: Any) -> dict[str, Any]:
    filters = positive_ints("filters", model, filters)
    _check_divisible(model, input_shape, len(filters))
    return {"filters": filters, "bottleneck": positive_ints("bottleneck", model, bottleneck, length=1)[0]}


def autoencoder21(input_shape: tuple, num_outputs: int = 1, *, filters: Sequence[int] = (16, 8, 8),
                  bottleneck: int = 8) -> Any:
    """The seed's convolutional autoencoder (module docstring); ``num_outputs`` is unused (the output is the image).

    Parameters
    ----------
    filters : sequence of int
        Encoder widths, one per conv + max-pool level (seed: 16, 8, 8); the decoder mirrors them.
    bottleneck : int
        Width of the decoder's first convolution on the encoded map (seed: 8).
    """
    import keras
    from keras import layers

    hp = check_autoencoder("autoencoder21", input_shape, filters=filters, bottleneck=bottleneck)
    inputs = keras.Input(shape=input_shape, name="image")
    x = encoder(inputs, hp["filters"])
    x = _conv(x, hp["bottleneck"], "dec_conv0")
    for i, width in enumerate(reversed(hp["filters"][:-1]), start=1):  # seed: up → 8, up → 16
        x = layers.UpSampling2D(2, name=f"dec_up{i}")(x)
        x = _conv(x, width, f"dec_conv{i}")
    x = layers.UpSampling2D(2, name=f"dec_up{len(hp['filters'])}")(x)
    out = layers.Conv2D(input_shape[-1], 3, padding="same", name="reconstruction_conv")(x)
    out = layers.Activation("linear", dtype="float32", name="reconstruction")(out)
    return keras.Model(inputs, out, name="autoencoder21")


# ------------------------------------------------------------------ classifier on the encoder
def check_cnn(model: str, input_shape: tuple | None, *, encoder_filters: Any, filters: Any, dense: Any,
              dropout: Any) -> dict[str, Any]:
    enc = positive_ints("encoder_filters", model, encoder_filters)
    conv = positive_ints("filters", model, filters)
    _check_divisible(model, input_shape, len(enc) + len(conv))
    return {"encoder_filters": enc, "filters": conv, "dense": positive_ints("dense", model, dense, length=1)[0],
            "dropout": fraction("dropout", model, dropout)}


def cnn21(input_shape: tuple, num_outputs: int, *, encoder_filters: Sequence[int] = (16, 8, 8),
          filters: Sequence[int] = (16, 32), dense: int = 64, dropout: float = 0.2) -> Any:
    """The seed's encoder (``enc_*``) + a small CNN classifier (``cls_*``) + the K-class head.

    Parameters
    ----------
    encoder_filters : sequence of int
        As :func:`autoencoder21`'s ``filters`` (must match for ``train.start_from`` an autoencoder run).
    filters : sequence of int
        Classifier convolutions, each followed by a 2×2 max-pool.
    dense : int
        Width of the dense layer before the head.
    dropout : float
        Dropout before the head.
    """
    import keras
    from keras import layers

    hp = check_cnn("cnn21", input_shape, encoder_filters=encoder_filters, filters=filters, dense=dense, dropout=dropout)
    inputs = keras.Input(shape=input_shape, name="image")
    x = encoder(inputs, hp["encoder_filters"])
    for i, width in enumerate(hp["filters"], start=1):
        x = _conv(x, width, f"cls_conv{i}")
        x = layers.MaxPooling2D(2, name=f"cls_pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(hp["dense"], activation="relu", kernel_initializer="he_normal", name="cls_dense")(x)
    if hp["dropout"]:
        x = layers.Dropout(hp["dropout"], name="cls_dropout")(x)
    return keras.Model(inputs, output_head(x, num_outputs, kernel_initializer="he_normal"), name="cnn21")


# ------------------------------------------------------------------ dense baseline
def check_dense(model: str, input_shape: tuple | None, *, hidden: Any, dropout: Any) -> dict[str, Any]:
    return {"hidden": positive_ints("hidden", model, hidden), "dropout": fraction("dropout", model, dropout)}


def dense21(input_shape: tuple, num_outputs: int, *, hidden: Sequence[int] = (350,), dropout: float = 0.0) -> Any:
    """The seed's fully connected baseline: flatten → dense ``hidden`` (ReLU) → head (2500–350–K on 50×50 crops)."""
    import keras
    from keras import layers

    hp = check_dense("dense21", input_shape, hidden=hidden, dropout=dropout)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(hp["hidden"], start=1):
        x = layers.Dense(width, activation="relu", kernel_initializer="he_normal", name=f"dense{i}")(x)
        if hp["dropout"]:
            x = layers.Dropout(hp["dropout"], name=f"dropout{i}")(x)
    return keras.Model(inputs, output_head(x, num_outputs), name="dense21")
