"""The 21-cm study's networks (seed 003): the convolutional autoencoder, a small CNN on top of its encoder and
the dense baseline on raw crops.

``autoencoder21``
    The seed's autoencoder.  Backbone = the encoder: conv 3×3 16 → max-pool 2 → conv 8 → max-pool → conv 8 →
    max-pool (200×200×1 → 25×25×8 on the seed's slices; ``pooling=None`` gives that map, ``"avg"`` its
    channel means).  Head = :func:`decoder`, the mirror image: conv 8 → up-sample 2 → conv 8 → up → conv 16 →
    up → conv 1 (linear), output layer ``reconstruction`` (the image shape).  4,385 parameters at the seed's
    defaults, as in its model summary.  Pooling pads ("same"), so any side works: a side not divisible by
    ``2 ** len(filters)`` is rounded up on the way down and the reconstruction cropped back to it.
    :func:`autoencoder` builds the whole model (what the ``autoencode`` task trains).
``cnn21``
    A classifier: the **same encoder** (layer names ``enc_conv1`` …, so ``train.start_from: AE_RUN_DIR`` copies
    the trained encoder and ``train.freeze: ["enc_*"]`` freezes it: the seed's "CNN on the encoded images")
    followed by convolutions ``cls_conv1`` … (3×3, ReLU, max-pool 2), global average pooling, a dense layer and the
    K-class softmax head.  Trained from scratch it is the seed's "CNN without the encoder".
``dense21``
    The seed's dense baseline: flatten → dense ``hidden`` (350, ReLU) → head: 2500–350–17 on 50×50 crops
    (``task.params.crop: 50``).

All take channels-last ``(H, W, 1)`` slices and use "same" padding, ReLU and ``he_normal`` initialisation.
Every registered function builds the **backbone** (``fn(input_shape, pooling="avg", **hparams)``,
:mod:`lenshpc.models`); :func:`lenshpc.models.build` puts the K-class head on ``cnn21`` / ``dense21``.
"""

from __future__ import annotations

from typing import Any, Sequence

from lenshpc.models._params import fraction, positive_ints


def _conv(x: Any, filters: int, name: str, activation: str = "relu") -> Any:
    from keras import layers

    return layers.Conv2D(filters, 3, padding="same", activation=activation, kernel_initializer="he_normal",
                         name=name)(x)


def encoder(x: Any, filters: Sequence[int]) -> Any:
    """The seed's encoder: per level conv 3×3 (``enc_conv<i>``) → max-pool 2 (``enc_pool<i>``)."""
    from keras import layers

    for i, width in enumerate(filters, start=1):
        x = _conv(x, width, f"enc_conv{i}")
        # "same": odd sides round up (101 → 51 → 26 → 13); on the seed's 200 it equals "valid"
        x = layers.MaxPooling2D(2, padding="same", name=f"enc_pool{i}")(x)
    return x


# ------------------------------------------------------------------ autoencoder
def check_autoencoder(model: str, input_shape: tuple | None, *, filters: Any, bottleneck: Any) -> dict[str, Any]:
    filters = positive_ints("filters", model, filters)
    return {"filters": filters, "bottleneck": positive_ints("bottleneck", model, bottleneck, length=1)[0]}


def autoencoder21(input_shape: tuple, pooling: str | None = "avg", *, filters: Sequence[int] = (16, 8, 8),
                  bottleneck: int = 8) -> Any:
    """The seed's encoder (the autoencoder's backbone; module docstring).

    Parameters
    ----------
    filters : sequence of int
        Encoder widths, one per conv + max-pool level (seed: 16, 8, 8); :func:`decoder` mirrors them.
    bottleneck : int
        Width of the decoder's first convolution on the encoded map (seed: 8).
    """
    import keras
    from keras import layers

    hp = check_autoencoder("autoencoder21", input_shape, filters=filters, bottleneck=bottleneck)
    inputs = keras.Input(shape=input_shape, name="image")
    x = encoder(inputs, hp["filters"])
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, x, name="autoencoder21")
    model.decoder_params = hp  # what decoder() mirrors
    return model


def decoder(backbone: Any, num_outputs: int = 1) -> Any:
    """The seed's decoder head on an :func:`autoencoder21` encoder map (``pooling=None``): the image again."""
    from keras import layers

    hp = backbone.decoder_params
    x = _conv(backbone.output, hp["bottleneck"], "dec_conv0")
    for i, width in enumerate(reversed(hp["filters"][:-1]), start=1):  # seed: up → 8, up → 16
        x = layers.UpSampling2D(2, name=f"dec_up{i}")(x)
        x = _conv(x, width, f"dec_conv{i}")
    x = layers.UpSampling2D(2, name=f"dec_up{len(hp['filters'])}")(x)
    out = layers.Conv2D(backbone.input.shape[-1], 3, padding="same", name="reconstruction_conv")(x)
    h, w = backbone.input.shape[1:3]
    extra_h, extra_w = out.shape[1] - h, out.shape[2] - w  # a side not divisible by 2**levels was rounded up
    if extra_h or extra_w:
        out = layers.Cropping2D(((0, extra_h), (0, extra_w)), name="reconstruction_crop")(out)
    return layers.Activation("linear", dtype="float32", name="reconstruction")(out)


def autoencoder(input_shape: tuple, **hparams: Any) -> Any:
    """The whole autoencoder: the :func:`autoencoder21` encoder (its feature map) + the :func:`decoder` head."""
    from lenshpc import models

    return models.build("autoencoder21", input_shape, head=decoder, pooling=None, **hparams)


# ------------------------------------------------------------------ classifier on the encoder
def check_cnn(model: str, input_shape: tuple | None, *, encoder_filters: Any, filters: Any, dense: Any,
              dropout: Any) -> dict[str, Any]:
    enc = positive_ints("encoder_filters", model, encoder_filters)
    conv = positive_ints("filters", model, filters)
    return {"encoder_filters": enc, "filters": conv, "dense": positive_ints("dense", model, dense, length=1)[0],
            "dropout": fraction("dropout", model, dropout)}


def cnn21(input_shape: tuple, pooling: str | None = "avg", *, encoder_filters: Sequence[int] = (16, 8, 8),
          filters: Sequence[int] = (16, 32), dense: int = 64, dropout: float = 0.2) -> Any:
    """The seed's encoder (``enc_*``) + a small CNN (``cls_*``): the classifier's backbone (the head is K-class).

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
        x = layers.MaxPooling2D(2, padding="same", name=f"cls_pool{i}")(x)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(hp["dense"], activation="relu", kernel_initializer="he_normal", name="cls_dense")(x)
        if hp["dropout"]:
            x = layers.Dropout(hp["dropout"], name="cls_dropout")(x)
    model = keras.Model(inputs, x, name="cnn21")
    model.head_initializer = "he_normal"
    return model


# ------------------------------------------------------------------ dense baseline
def check_dense(model: str, input_shape: tuple | None, *, hidden: Any, dropout: Any) -> dict[str, Any]:
    return {"hidden": positive_ints("hidden", model, hidden), "dropout": fraction("dropout", model, dropout)}


def dense21(input_shape: tuple, pooling: str | None = "avg", *, hidden: Sequence[int] = (350,), dropout: float = 0.0) -> Any:
    """The seed's fully connected baseline: flatten → dense ``hidden`` (ReLU); with the head 2500–350–K on 50×50
    crops.  ``pooling`` is accepted for the common signature (there is no feature map: the trunk is dense)."""
    import keras
    from keras import layers

    hp = check_dense("dense21", input_shape, hidden=hidden, dropout=dropout)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(hp["hidden"], start=1):
        x = layers.Dense(width, activation="relu", kernel_initializer="he_normal", name=f"dense{i}")(x)
        if hp["dropout"]:
            x = layers.Dropout(hp["dropout"], name=f"dropout{i}")(x)
    return keras.Model(inputs, x, name="dense21")
