"""Convolution and pooling layers: one forward+backward training step vs the Keras built-ins.

Each row times a ``tf.function``-compiled GradientTape step (forward, loss = Σ y², gradients
w.r.t. the input and every trainable weight) of a deepline layer and of its Keras counterpart on
the same batch, interleaved in the same process (``benchmarks.common.time_ratio_row``).

    Conv2D            vs keras.layers.Conv2D            64×28×28×16 → 32 filters, 3×3, same
    MaxPooling2D      vs keras.layers.MaxPooling2D      64×28×28×32, 2×2
    AveragePooling2D  vs keras.layers.AveragePooling2D  64×28×28×32, 2×2
    L2Pooling2D       vs keras.layers.AveragePooling2D  64×28×28×32, 2×2 (goal ≤ 1.5: L2 pooling
                      is a square, an average pool and a root; its gradient one product)

Run: ``python -m benchmarks layers`` (all layer modules) or
``python -m benchmarks.bench_conv_pooling [--quick]`` (this module only).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import Row, markdown_table, time_ratio_row  # noqa: E402
from layers.conv import Conv2D  # noqa: E402
from layers.pooling import AveragePooling2D, L2Pooling2D, MaxPooling2D  # noqa: E402


def _train_step(layer: keras.layers.Layer, x: np.ndarray):
    """A compiled forward+backward step; calling it blocks until the gradients are computed."""
    inputs = tf.constant(x)
    layer(inputs)  # build

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = layer(inputs)
            loss = tf.reduce_sum(tf.square(y))
        grads = tape.gradient(loss, [inputs, *layer.trainable_variables])
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    return lambda: step().numpy()


def rows(quick: bool) -> list[Row]:
    batch = 16 if quick else 64
    repeats = 7 if quick else 101  # short steps: many samples keep the medians steady
    rng = np.random.default_rng(0)
    conv_x = rng.standard_normal((batch, 28, 28, 16)).astype("float32")
    pool_x = rng.standard_normal((batch, 28, 28, 32)).astype("float32")

    ours_conv = Conv2D(32, 3, padding="same", activation="relu")
    keras_conv = keras.layers.Conv2D(32, 3, padding="same", activation="relu")
    ours_conv.build(conv_x.shape)
    keras_conv.build(conv_x.shape)
    ours_conv.set_weights(keras_conv.get_weights())

    cases = [
        ("Conv2D 3×3 same, 28×28×16→32",
         ("deepline Conv2D", ours_conv, conv_x), ("keras Conv2D", keras_conv, conv_x), "<= 1.05"),
        ("MaxPooling2D 2×2, 28×28×32",
         ("deepline MaxPooling2D", MaxPooling2D(2), pool_x),
         ("keras MaxPooling2D", keras.layers.MaxPooling2D(2), pool_x), "<= 1.05"),
        ("AveragePooling2D 2×2, 28×28×32",
         ("deepline AveragePooling2D", AveragePooling2D(2), pool_x),
         ("keras AveragePooling2D", keras.layers.AveragePooling2D(2), pool_x), "<= 1.05"),
        ("L2Pooling2D 2×2, 28×28×32",
         ("deepline L2Pooling2D", L2Pooling2D(2), pool_x),
         ("keras AveragePooling2D", keras.layers.AveragePooling2D(2), pool_x), "<= 1.5"),
    ]
    out = []
    for name, (c_name, c_layer, c_x), (b_name, b_layer, b_x), goal in cases:
        out.append(
            time_ratio_row(
                f"train step: {name}, batch {batch}",
                (c_name, _train_step(c_layer, c_x)),
                (b_name, _train_step(b_layer, b_x)),
                goal,
                warmup=10,
                repeats=repeats,
            )
        )
    return out


if __name__ == "__main__":
    print(markdown_table("Conv and pooling layers: training step vs Keras",
                         rows(quick="--quick" in sys.argv)))
