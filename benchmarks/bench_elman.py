"""ElmanRNN vs keras.layers.SimpleRNN: one forward+backward training step (GradientTape).

Both layers get the same weights and the same input (batch 64, 100 steps, 64 features, 256 units
in the full run) and a ``tf.function``-compiled step computing the loss gradient with respect to
every weight (what a training step needs). Rows report ``ElmanRNN time / SimpleRNN time``
(medians of interleaved runs); the goal "ElmanRNN at least 1.5x faster" is ``<= 0.667``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import Row, time_ratio_row
from layers import ElmanRNN

GOAL = "<= 0.667"  # candidate time / baseline time, i.e. ElmanRNN >= 1.5x faster


def _train_step(layer, x, jit_compile: bool):
    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True)))
        grads = tape.gradient(loss, layer.trainable_variables)
        return loss, grads

    def run():
        loss, grads = step()
        return [g.numpy() for g in grads], loss.numpy()

    return run


def _pair(batch, steps, features, units, **layer_kwargs):
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, steps, features)),
                    dtype=tf.float32)
    baseline = keras.layers.SimpleRNN(units, **layer_kwargs)
    candidate = ElmanRNN(units, **layer_kwargs)
    baseline(x)
    candidate(x)
    candidate.set_weights(baseline.get_weights())
    return x, candidate, baseline


def rows(quick: bool) -> list[Row]:
    batch, steps, features, units = (64, 100, 64, 256) if not quick else (32, 50, 32, 128)
    size = f"b{batch} T{steps} d{features} u{units}"
    repeats, warmup = (5, 2) if quick else (15, 3)
    variants = [
        ("last output", {}, False),
        ("return_sequences", {"return_sequences": True}, False),
        ("last output, jit_compile", {}, True),
    ]
    if not quick:
        variants.append(("return_sequences, jit_compile", {"return_sequences": True}, True))
    result = []
    for label, kwargs, jit in variants:
        x, candidate, baseline = _pair(batch, steps, features, units, **kwargs)
        result.append(time_ratio_row(
            f"Elman train step ({label}, {size})",
            ("ElmanRNN", _train_step(candidate, x, jit)),
            ("keras SimpleRNN", _train_step(baseline, x, jit)),
            GOAL, warmup=warmup, repeats=repeats,
        ))
    return result


if __name__ == "__main__":
    import sys

    from benchmarks.common import markdown_table

    print(markdown_table("ElmanRNN", rows(quick="--quick" in sys.argv)))
