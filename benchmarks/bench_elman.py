"""ElmanRNN vs keras.layers.SimpleRNN: one forward+backward training step (GradientTape).

Both layers get the same weights and the same input (batch 64, 100 steps, 64 features, 256 units
in the full run) and a ``tf.function``-compiled step computing the loss gradient with respect to
every weight (what a training step needs). Rows report ``ElmanRNN time / SimpleRNN time``
(the median over interleaved rounds of the two times in each round); the goal "ElmanRNN at
least 1.5x faster" is ``<= 0.667``.

Variants: plain graph mode for both (Keras's default on a CPU-only machine), XLA
(``jit_compile=True``) for both, ElmanRNN under XLA against SimpleRNN in graph mode; ElmanRNN with
its batch in parallel chains (the default) against ElmanRNN with one chain; and a bound: a program
doing only the matrix products any exact BPTT step needs (forward and backward recurrent chains
of ``(rows, units) @ (units, units)`` over the same row blocks, ``∂W_h``, ``x W_x``, ``∂W_x``)
against SimpleRNN. The bound shows how far below SimpleRNN this design can go on this machine.
Two information rows (no goal) repeat the graph-mode comparison at 128 units and at batch 16.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import Row, time_ratio_row
from layers import ElmanRNN, _elman_recurrence

GOAL = "<= 0.667"  # candidate time / baseline time, i.e. ElmanRNN >= 1.5x faster


def _train_step(layer, x, jit_compile: bool, chains: int | None = None):
    """The step, traced now; ``chains`` overrides ElmanRNN's ``default_chains`` while tracing."""
    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True)))
        grads = tape.gradient(loss, layer.trainable_variables)
        return loss, grads

    def run():
        loss, grads = step()
        return [g.numpy() for g in grads], loss.numpy()

    default = _elman_recurrence.default_chains
    if chains is not None:
        _elman_recurrence.default_chains = lambda batch, units: chains
    try:
        run()
    finally:
        _elman_recurrence.default_chains = default
    return run


def _matmul_bound(batch, steps, features, units):
    """Only the matrix products of one exact training step, in a graph-mode loop, with the batch
    in the same parallel row chains as ElmanRNN."""
    rng = np.random.default_rng(1)
    chains = _elman_recurrence.default_chains(batch, units)
    w = tf.constant(rng.standard_normal((units, units)) * 0.05, tf.float32)
    h0 = [tf.constant(rng.standard_normal((batch // chains, units)), tf.float32)
          for _ in range(chains)]
    states = tf.constant(rng.standard_normal((steps * batch, units)), tf.float32)
    x = tf.constant(rng.standard_normal((steps * batch, features)), tf.float32)
    w_x = tf.constant(rng.standard_normal((features, units)), tf.float32)

    @tf.function
    def products():
        h = h0
        for _ in tf.range(2 * steps):  # forward chains, then backward chains
            h = [tf.matmul(r, w) for r in h]
        d_w = tf.matmul(states, states, transpose_a=True)  # Σ h_{t-1}ᵀ dz_t
        d_wx = tf.matmul(x, states, transpose_a=True)  # Σ x_tᵀ dz_t
        z = tf.matmul(x, w_x)  # all x_t W_x
        return (*h, d_w, d_wx, z)

    return lambda: [t.numpy() for t in products()]


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
    # Parallel chains make ElmanRNN's step time more sensitive to other load on the machine than
    # SimpleRNN's, so the full run takes more samples to keep the medians steady.
    repeats, warmup = (5, 2) if quick else (31, 3)
    # (label, layer kwargs, ElmanRNN under XLA, SimpleRNN under XLA)
    variants = [
        ("last output, graph", {}, False, False),
        ("return_sequences, graph", {"return_sequences": True}, False, False),
        ("last output, XLA both", {}, True, True),
    ]
    if not quick:
        variants += [
            ("return_sequences, XLA both", {"return_sequences": True}, True, True),
            ("last output, ElmanRNN XLA vs SimpleRNN graph", {}, True, False),
        ]
    result = []
    for label, kwargs, jit_candidate, jit_baseline in variants:
        x, candidate, baseline = _pair(batch, steps, features, units, **kwargs)
        result.append(time_ratio_row(
            f"Elman train step ({label}, {size})",
            ("ElmanRNN", _train_step(candidate, x, jit_candidate)),
            ("keras SimpleRNN", _train_step(baseline, x, jit_baseline)),
            GOAL, warmup=warmup, repeats=repeats,
        ))
    x, candidate, _ = _pair(batch, steps, features, units)
    _, one_chain, _ = _pair(batch, steps, features, units)
    one_chain.set_weights(candidate.get_weights())
    result.append(time_ratio_row(
        f"ElmanRNN parallel chains ({_elman_recurrence.default_chains(batch, units)}) vs one "
        f"chain (last output, graph, {size})",
        ("parallel chains", _train_step(candidate, x, False)),
        ("one chain", _train_step(one_chain, x, False, chains=1)),
        "<= 1.0", warmup=warmup, repeats=repeats,
    ))
    if not quick:
        x, _, baseline = _pair(batch, steps, features, units)
        result.append(time_ratio_row(
            f"Bound: matmuls of an exact BPTT step vs SimpleRNN step (graph, {size})",
            ("matmuls only", _matmul_bound(batch, steps, features, units)),
            ("keras SimpleRNN", _train_step(baseline, x, False)),
            GOAL, warmup=warmup, repeats=repeats,
        ))
        # Other sizes, for information (the goal is stated at the size above). At 128 units the
        # step products are small enough that per-op costs of the graph runtime weigh as much as
        # the arithmetic; batch 64 and 128 units is the Elman tuner's default.
        for other_batch, other_units in ((64, 128), (16, 256)):
            x, candidate, baseline = _pair(other_batch, steps, features, other_units)
            chains = _elman_recurrence.default_chains(other_batch, other_units)
            result.append(time_ratio_row(
                f"Elman train step (info: last output, graph, b{other_batch} T{steps} "
                f"d{features} u{other_units}, {chains} chains)",
                ("ElmanRNN", _train_step(candidate, x, False)),
                ("keras SimpleRNN", _train_step(baseline, x, False)),
                ">= 0.0", warmup=warmup, repeats=repeats,
            ))
    return result


if __name__ == "__main__":
    import sys

    from benchmarks.common import markdown_table

    print(markdown_table("ElmanRNN", rows(quick="--quick" in sys.argv)))
