"""CNNs from the lens-finding literature: the 2017 challenge winner and LensFlow.

``lastro_cnn``
    The LASTRO EPFL network that won the 2017 Strong Gravitational Lens Finding Challenge
    (Schaefer et al. 2018; described in Metcalf et al. 2019), as reimplemented in seed 000
    (AUROC 0.92, the paper's 0.93): convolutions 16-16 / 32-32 / 64-64 (ReLU, "valid"
    padding, the first 4×4, the rest 3×3), each pair followed by 2×2 max-pooling and
    BatchNormalization; dropout 0.2; two 128-filter convolutions with dropout and BN; three
    fully connected layers of 1024 with dropout, BN and a 64-unit layer (the backbone's features).
    Seed 000 left the three 1024-unit layers without an activation, which collapses them
    into a single linear map; by default we apply ReLU to them like to every other layer
    (``dense_activation="linear"`` reproduces seed 000's code exactly).
``lensflow_cnn``
    LensFlow (Pourrahmani et al. 2018; seed 004): convolutions of 30/60/90 filters 5×5
    ("valid"), each with tanh and 2×2 max-pooling; flatten; dense 1000/800/600 with ReLU
    and dropout 0.5 (the backbone's features; LensFlow's 2-way softmax is our 1-unit sigmoid head).

With ``pooling=None`` both backbones end at their last convolutional feature map (before the flatten).
"""

from __future__ import annotations

from typing import Any, Sequence

from lenshpc.errors import ConfigError
from lenshpc.models._params import check_min_side, fraction, positive_ints

#: Smallest image side lastro_cnn accepts: 1 pixel left after conv4b, traced back through
#: its layers (3×3 convs −2, 2×2 pools ×2, the 4×4 conv −3).
LASTRO_MIN_SIDE = 69


def check_lastro(model: str, input_shape: tuple | None, *, dropout: Any, dense_activation: Any) -> dict[str, Any]:
    """Validated :func:`lastro_cnn` hyper-parameters, without Keras (``input_shape`` None: size not checked)."""
    if dense_activation not in ("relu", "linear"):
        raise ConfigError(f"model '{model}': dense_activation must be 'relu' or 'linear', got {dense_activation!r}")
    if input_shape is not None:
        check_min_side(model, input_shape, LASTRO_MIN_SIDE)
    return {"dropout": fraction("dropout", model, dropout), "dense_activation": dense_activation}


def check_lensflow(model: str, input_shape: tuple | None, *, dropout: Any, filters: Any, dense: Any,
                   kernel_size: Any) -> dict[str, Any]:
    """Validated :func:`lensflow_cnn` hyper-parameters, without Keras (``input_shape`` None: size not checked)."""
    hp = {"dropout": fraction("dropout", model, dropout), "filters": positive_ints("filters", model, filters),
          "dense": positive_ints("dense", model, dense),
          "kernel_size": positive_ints("kernel_size", model, kernel_size, length=1)[0]}
    if input_shape is not None:
        min_side = 1
        for _ in hp["filters"]:  # undo pool (×2) then the "valid" convolution (+ kernel − 1), last stage first
            min_side = 2 * min_side + hp["kernel_size"] - 1
        check_min_side(model, input_shape, min_side)
    return hp


def lastro_cnn(input_shape: tuple, pooling: str | None = "avg", *, dropout: float = 0.2,
               dense_activation: str = "relu") -> Any:
    """The LASTRO EPFL challenge-winning CNN (see the module docstring).

    Parameters
    ----------
    dropout : float
        Rate of every dropout layer (seed 000: 0.2).
    dense_activation : {"relu", "linear"}
        Activation of the three 1024-unit layers ("linear" = seed 000's code).
    """
    import keras
    from keras import layers

    rate = check_lastro("lastro_cnn", input_shape, dropout=dropout, dense_activation=dense_activation)["dropout"]

    def conv(x: Any, filters: int, kernel: int, name: str) -> Any:
        return layers.Conv2D(filters, kernel, activation="relu", name=name)(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for stage, (width, first_kernel) in enumerate(((16, 4), (32, 3), (64, 3)), start=1):
        x = conv(x, width, first_kernel, f"conv{stage}a")
        x = conv(x, width, 3, f"conv{stage}b")
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
        x = layers.BatchNormalization(name=f"bn{stage}")(x)
    x = layers.Dropout(rate, name="drop3")(x)
    x = conv(x, 128, 3, "conv4a")
    x = layers.Dropout(rate, name="drop4a")(x)
    x = conv(x, 128, 3, "conv4b")
    x = layers.BatchNormalization(name="bn4")(x)
    x = layers.Dropout(rate, name="drop4b")(x)
    if pooling is None:
        return keras.Model(inputs, x, name="lastro_cnn")
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2, 3):
        x = layers.Dense(1024, activation=dense_activation, name=f"fc{i}")(x)
        if i < 3:
            x = layers.Dropout(rate, name=f"fc{i}_drop")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.Dense(64, activation="relu", name="fc4")(x)
    return keras.Model(inputs, x, name="lastro_cnn")


def lensflow_cnn(input_shape: tuple, pooling: str | None = "avg", *, dropout: float = 0.5,
                 filters: Sequence[int] = (30, 60, 90), dense: Sequence[int] = (1000, 800, 600),
                 kernel_size: int = 5) -> Any:
    """LensFlow's CNN (see the module docstring).

    Parameters
    ----------
    dropout : float
        Dropout after each dense layer (LensFlow: 0.5).
    filters, dense : sequence of int
        Convolution widths (each tanh + 2×2 max-pool) and dense widths (each ReLU + dropout).
    kernel_size : int
        Convolution kernel size (LensFlow: 5).
    """
    import keras
    from keras import layers

    hp = check_lensflow("lensflow_cnn", input_shape, dropout=dropout, filters=filters, dense=dense,
                        kernel_size=kernel_size)
    rate, filters, dense, kernel_size = hp["dropout"], hp["filters"], hp["dense"], hp["kernel_size"]
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, kernel_size, activation="tanh", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    if pooling is None:
        return keras.Model(inputs, x, name="lensflow_cnn")
    x = layers.Flatten(name="flatten")(x)
    for i, width in enumerate(dense, start=1):
        x = layers.Dense(width, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(rate, name=f"fc{i}_drop")(x)
    return keras.Model(inputs, x, name="lensflow_cnn")
