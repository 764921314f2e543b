"""Losses used by deepline pipelines that Keras lacks in this exact form."""

from __future__ import annotations

import keras

__all__ = ["SparseCategoricalCrossentropyWithSmoothing"]


@keras.saving.register_keras_serializable(package="deepline")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy of integer labels against probabilities, with label smoothing ε.

    ℓ = −Σ_k q_k log p_k,  q = (1 − ε)·onehot(y) + ε/K.  y_true: (batch,) or (batch, 1) ints;
    y_pred: (batch, K) probabilities.
    """

    def __init__(self, label_smoothing=0.0, name="sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), received {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        onehot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            onehot, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
