"""ResNet18 as in the thesis code, and a tiny ResNet for CI and the quickstart.

Both follow the thesis's Keras ResNet (seed 002, Sec 4.3; the ``resnet.py`` of its code,
itself after raghakot/keras-resnet): a stem conv → BN → ReLU → max-pool, stages of
*pre-activation* basic blocks (He et al. 2016b: BN → ReLU → conv 3×3, twice, plus the
shortcut), a final BN → ReLU and global average pooling (the backbone; the head, in
:mod:`lenshpc.models.heads`, starts its Dense kernel ``he_normal`` too).  The first block
of a stage after the first one strides by 2; a 1×1 convolution projects the shortcut
whenever the spatial size or the channel count changes.  Convolutions use ``he_normal``
initialisation and an L2 penalty (1e-4), with "same" padding.

Layer names are set explicitly, so they do not depend on what else was built in the
process.  The residual additions are ``add_1`` … ``add_N`` in network order (``add_1`` …
``add_8`` for ResNet18).  Grad-CAM in the thesis (Sec 4.6) targeted Keras's automatic names
``add_4`` … ``add_7``, which counted from ``add`` (0-based) in a fresh session, i.e. our
``add_5`` … ``add_8`` (stages 3 and 4).
"""

from __future__ import annotations

from typing import Any, Sequence

from lenshpc.models._params import fraction, non_negative, positive_ints


def _conv(x: Any, filters: int, kernel: int, strides: int, l2: float, name: str) -> Any:
    from keras import layers, regularizers

    return layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
                         kernel_regularizer=regularizers.L2(l2) if l2 else None, name=name)(x)


def _bn_relu(x: Any, name: str, momentum: float = 0.99) -> Any:
    from keras import layers

    x = layers.BatchNormalization(axis=-1, momentum=momentum, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _basic_block(x: Any, filters: int, strides: int, l2: float, name: str, add_name: str,
                 preactivated: bool, bn_momentum: float = 0.99) -> Any:
    """Pre-activation basic block; ``preactivated`` skips the first BN-ReLU after the stem."""
    from keras import layers

    residual = x if preactivated else _bn_relu(x, f"{name}_pre", bn_momentum)
    residual = _conv(residual, filters, 3, strides, l2, f"{name}_conv1")
    residual = _bn_relu(residual, f"{name}_mid", bn_momentum)
    residual = _conv(residual, filters, 3, 1, l2, f"{name}_conv2")
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        # 1×1 projection; "same" and "valid" padding agree for a 1×1 kernel (ceil(n / stride)).
        shortcut = _conv(x, filters, 1, strides, l2, f"{name}_shortcut")
    return layers.Add(name=add_name)([shortcut, residual])


def build_resnet(input_shape: tuple, pooling: str | None, *, filters: Sequence[int], blocks: Sequence[int],
                 l2: float, stem_filters: int, stem_kernel: int, stem_strides: int, stem_pool: bool,
                 name: str, bn_momentum: float = 0.99) -> Any:
    """Generic pre-activation ResNet backbone; :func:`resnet18` and :func:`tiny_resnet` configure it.

    ``pooling="avg"`` ends in global average pooling (the feature vector), ``None`` in the final
    BN-ReLU feature map.  ``bn_momentum`` is the batch-norm moving-average momentum (Keras
    default 0.99: the inference statistics average over the last ~100 steps)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(inputs, stem_filters, stem_kernel, stem_strides, l2, "stem_conv")
    x = _bn_relu(x, "stem", bn_momentum)
    if stem_pool:
        x = layers.MaxPooling2D(pool_size=3, strides=2, padding="same", name="stem_pool")(x)
    n_add = 0
    for stage, (width, repeats) in enumerate(zip(filters, blocks), start=1):
        for block in range(1, repeats + 1):
            n_add += 1
            strides = 2 if (block == 1 and stage > 1) else 1
            x = _basic_block(x, width, strides, l2, name=f"stage{stage}_block{block}", add_name=f"add_{n_add}",
                             preactivated=(stage == 1 and block == 1), bn_momentum=bn_momentum)
    x = _bn_relu(x, "final", bn_momentum)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, x, name=name)
    model.head_initializer = "he_normal"  # the thesis code's Dense layer (lenshpc.models.heads)
    return model


def check_params(model: str, input_shape: tuple | None, *, filters: Any, blocks: Any, l2: Any) -> dict[str, Any]:
    """Validated hyper-parameters of a ResNet (no Keras: sweeps check every grid point with it).

    ``input_shape`` is unused (ResNets pad "same"); it is part of every model's check signature.
    """
    filters = positive_ints("filters", model, filters)
    return {"filters": filters, "blocks": positive_ints("blocks", model, blocks, length=len(filters)),
            "l2": non_negative("l2", model, l2)}


def check_tiny(model: str, input_shape: tuple | None, *, filters: Any, blocks: Any, l2: Any,
               bn_momentum: Any) -> dict[str, Any]:
    """:func:`check_params` plus the tiny ResNet's batch-norm momentum (in [0, 1))."""
    return {**check_params(model, input_shape, filters=filters, blocks=blocks, l2=l2),
            "bn_momentum": fraction("bn_momentum", model, bn_momentum)}


def resnet18(input_shape: tuple, pooling: str | None = "avg", *, l2: float = 1e-4,
             filters: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2)) -> Any:
    """ResNet18 of the thesis (Sec 4.3): 7×7/2 stem (64), max-pool 3/2, blocks [2, 2, 2, 2].

    Parameters
    ----------
    l2 : float
        L2 penalty on every convolution kernel (thesis: 1e-4; 0 disables).
    filters, blocks : sequence of int
        Width and number of basic blocks per stage (same length).
    """
    hp = check_params("resnet18", input_shape, filters=filters, blocks=blocks, l2=l2)
    return build_resnet(input_shape, pooling, **hp, stem_filters=64, stem_kernel=7, stem_strides=2,
                        stem_pool=True, name="resnet18")


def tiny_resnet(input_shape: tuple, pooling: str | None = "avg", *, l2: float = 1e-4,
                filters: Sequence[int] = (8, 16, 32), blocks: Sequence[int] = (1, 1, 1),
                bn_momentum: float = 0.99) -> Any:
    """A small ResNet (3×3/2 stem, no max-pool, 3 stages of 8/16/32 filters, ``add_1`` … ``add_3``).

    Same block structure as :func:`resnet18` with about 30k parameters: trains in seconds
    on a CPU on 64×64 images (CI, quickstart).  ``bn_momentum`` (default 0.99, as Keras):
    runs of a few hundred steps need a shorter batch-norm memory (0.9), or the inference-mode
    statistics still describe the first steps' activations (docs/science.md).
    """
    hp = check_tiny("tiny_resnet", input_shape, filters=filters, blocks=blocks, l2=l2, bn_momentum=bn_momentum)
    return build_resnet(input_shape, pooling, **hp, stem_filters=hp["filters"][0], stem_kernel=3,
                        stem_strides=2, stem_pool=False, name="tiny_resnet")
