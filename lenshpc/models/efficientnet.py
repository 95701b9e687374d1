"""EfficientNet-B0 backbone (Tan & Le 2019): global average pooling and dropout before the head.

Seed 001 trained ``keras.applications.EfficientNetB0(include_top=False, weights=None)`` on
the Lens Finding Challenge images (AUROC 0.96 ± 0.01).  Weights are always random
(``weights=None``): nothing is ever downloaded, and with random weights any channel count
works, so 101×101×1 images go in as they are (no resizing, no channel copying).
"""

from __future__ import annotations

from typing import Any

from lenshpc.models._params import fraction


def check_params(model: str, input_shape: tuple | None, *, dropout: Any) -> dict[str, Any]:
    """Validated hyper-parameters (no Keras; the signature every model's check shares)."""
    return {"dropout": fraction("dropout", model, dropout)}


def efficientnet_b0(input_shape: tuple, pooling: str | None = "avg", *, dropout: float = 0.2) -> Any:
    """EfficientNet-B0 → global average pooling → dropout (``pooling=None``: the last feature map).

    Parameters
    ----------
    dropout : float
        Dropout rate before the head (Keras's own top uses 0.2).

    Notes
    -----
    Keras's EfficientNet starts with ``Rescaling(1/255)`` for 8-bit images.  Our images are
    already normalised floats; scaled by 1/255 their first-convolution responses would be
    ~1e-5 in variance, below BatchNormalization's ε = 1e-3, which would squash the signal.
    A ``Rescaling(255)`` in front cancels that built-in step exactly.
    """
    import keras
    from keras import layers

    rate = check_params("efficientnet_b0", input_shape, dropout=dropout)["dropout"]
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(255.0, name="undo_builtin_rescaling")(inputs)
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=x, pooling=None)
    x = backbone.output
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(rate, name="head_dropout")(x)
    return keras.Model(inputs, x, name="efficientnet_b0")
