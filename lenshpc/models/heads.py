"""Heads: what a task puts on a backbone (:func:`lenshpc.models.build`'s ``head``).

A head is a callable ``head(backbone, num_outputs) -> KerasTensor`` reading ``backbone.output`` (the
features; ``backbone.input`` is the image); ``build`` wraps ``keras.Model(backbone.input, head(…))``.
"""

from __future__ import annotations

from typing import Any


def classifier(backbone: Any, num_outputs: int) -> Any:
    """Dense logits → sigmoid (1 output: a lens probability) or softmax (> 1: K classes, IDE gates).

    The logits layer is named ``logits`` (what Grad-CAM differentiates) and the activation
    ``prediction``; ``dtype="float32"`` keeps probabilities and losses in float32 under a
    ``mixed_float16`` policy, where a float16 sigmoid would round scores near 0 and 1.  The Dense
    kernel starts from ``backbone.head_initializer`` when set (the ResNets: ``he_normal``, as in the
    thesis code), else ``glorot_uniform``.
    """
    from keras import layers

    init = getattr(backbone, "head_initializer", "glorot_uniform")
    logits = layers.Dense(num_outputs, kernel_initializer=init, name="logits")(backbone.output)
    activation = "sigmoid" if num_outputs == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name="prediction")(logits)
