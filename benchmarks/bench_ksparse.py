"""k-sparse autoencoder training step vs the same autoencoder without the top-k (dense codes).

Shapes are the paper's MNIST setting: 784 → 1000 → 784, batch 128, k = 25. Both models take one
SGD step on the mean squared reconstruction error through ``train_on_batch`` (the same compiled
Keras train function path). The tied baseline is the same linear tied autoencoder with the top-k
removed; the untied baseline is ``Sequential([Dense(1000), Dense(784)])`` (Keras built-ins).
Goal: the top-k costs at most 20 % over the dense step.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from benchmarks.common import Row, time_ratio_row
from layers import KSparseAutoencoder

INPUT_DIM, UNITS, K, BATCH = 784, 1000, 25, 128


class _DenseTiedAutoencoder(keras.Model):
    """x̂ = (x W + b) Wᵀ + b' — the k-sparse autoencoder minus its top-k."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], UNITS), name="kernel")
        self.bias = self.add_weight(shape=(UNITS,), initializer="zeros", name="bias")
        self.decoder_bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                            name="decoder_bias")

    def call(self, x):
        z = ops.matmul(x, self.kernel) + self.bias
        return ops.matmul(z, ops.transpose(self.kernel)) + self.decoder_bias


def _step(model: keras.Model, x: np.ndarray):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.train_on_batch(x, x)
    return lambda: model.train_on_batch(x, x)


def rows(quick: bool) -> list[Row]:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((BATCH, INPUT_DIM)).astype("float32")
    repeats = 7 if quick else 61  # many samples keep the medians steady on a shared machine
    out = []
    for tied in (True, False):
        sparse = KSparseAutoencoder(units=UNITS, k=K, tied_weights=tied)
        if tied:
            dense = _DenseTiedAutoencoder(name="dense_tied_autoencoder")
        else:
            dense = keras.Sequential([keras.Input((INPUT_DIM,)), keras.layers.Dense(UNITS),
                                      keras.layers.Dense(INPUT_DIM)])
        kind = "tied" if tied else "untied"
        out.append(time_ratio_row(
            f"k-sparse AE train step, {kind} 784-1000-784, k={K}, batch {BATCH}",
            ("KSparseAutoencoder", _step(sparse, x)),
            (f"dense {kind} autoencoder", _step(dense, x)),
            "<= 1.2",
            repeats=repeats,
        ))
    return out


if __name__ == "__main__":
    from benchmarks.common import markdown_table

    print(markdown_table("k-sparse autoencoder", rows(quick=False)))
