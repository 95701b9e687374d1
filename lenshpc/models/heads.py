"""Heads: what a task puts on a backbone (:func:`lenshpc.models.build`'s ``head``).

A head is a callable ``head(backbone, num_outputs) -> KerasTensor``: it reads the backbone's
output (``backbone.output``, the features; ``backbone.input`` is the image) and returns the
model's output tensor.  :func:`lenshpc.models.build` wraps ``keras.Model(backbone.input, head(…))``,
so the whole model is one flat graph (layer names unchanged, Grad-CAM finds ``logits``).
"""

from __future__ import annotations

from typing import Any

#: Kernel initialiser of a head's Dense layer when the backbone names none (``backbone.head_initializer``).
DEFAULT_INITIALIZER = "glorot_uniform"


def classifier(backbone: Any, num_outputs: int) -> Any:
    """Dense logits → sigmoid (1 output: a lens probability) or softmax (> 1: K classes, IDE gates).

    The logits layer is named ``logits`` (what Grad-CAM differentiates) and the activation
    ``prediction``; ``dtype="float32"`` keeps probabilities and losses in float32 under a
    ``mixed_float16`` policy, where a float16 sigmoid would round scores near 0 and 1.  The Dense
    kernel starts from the backbone's ``head_initializer`` (``he_normal`` for the ResNets, as in
    the thesis code), else :data:`DEFAULT_INITIALIZER`.
    """
    from keras import layers

    init = getattr(backbone, "head_initializer", DEFAULT_INITIALIZER)
    logits = layers.Dense(num_outputs, kernel_initializer=init, name="logits")(backbone.output)
    activation = "sigmoid" if num_outputs == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name="prediction")(logits)


#: The head :func:`lenshpc.models.build` attaches when a task passes none.
DEFAULT = classifier
