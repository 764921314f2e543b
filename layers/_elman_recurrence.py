"""Fused Elman recurrence with hand-written backpropagation through time (keras.ops only).

Time-major notation: ``Z`` ``(T, batch, units)`` holds the hoisted input terms
``z̃_t = x_t W_x + b`` (one matmul for the whole sequence, done by the caller, differentiated by
autodiff). This module computes, for ``t = 1..T``::

    h_t = g(z̃_t + (h_{t-1} ⊙ r) W_h)        if m_t else h_{t-1}

(``r``: optional per-sequence recurrent dropout mask ``(batch, units)``; ``m_t``: optional step
mask ``(batch, 1)``) and returns ``H = [h_1..h_T]``. Its gradient is one reverse loop with a single
matmul per step, using the saved outputs for ``g'`` (``tanh' = 1 − h²``, ``relu' = [h > 0]``,
``sigmoid' = h(1 − h)``, ``linear' = 1``)::

    δ_t  = ∂L/∂h_t (from the output) + c_t                 (c_T = 0)
    dz_t = δ_t ⊙ g'_t ⊙ m_t
    c_{t-1} = (dz_t W_hᵀ) ⊙ r + δ_t ⊙ (1 − m_t)
    ∂L/∂z̃_t = dz_t,   ∂L/∂h_0 = c_0,   ∂L/∂W_h = Σ_t (h_{t-1} ⊙ r)ᵀ dz_t   (one big matmul)

so the reverse loop carries no per-step autodiff bookkeeping; ``∂L/∂W_x``, ``∂L/∂b`` and
``∂L/∂x`` follow from ``dZ`` through the caller's single matmul.

**Parallel chains.** Rows of the batch never interact in the recurrence, so the batch is cut into
``G`` blocks of ``n = ⌈batch / G⌉`` rows (zero-padded) and each block runs as its own chain of
small ``(n, units) @ (units, units)`` products inside the same loop body. A graph runtime
executes independent chains concurrently, one product per core, instead of splitting every
medium-sized product across threads, which costs more in synchronisation than it gains
(``default_chains`` picks ``G``; see ``benchmarks/bench_elman.py``; a loop that XLA compiles
takes at most ``COMPILED_MAX_CHAINS`` chains and shorter unrolled blocks). Padded rows start at
``h_0 = 0`` with ``z̃ = 0`` and get a zero upstream gradient, so they contribute exactly zero to
every gradient and are dropped from the outputs.
"""

from __future__ import annotations

import math

import keras
from keras import activations, ops


def _tanh_prime(h):
    return 1.0 - h * h


def _relu_prime(h):
    return ops.cast(ops.greater(h, 0), h.dtype)


def _sigmoid_prime(h):
    return h * (1.0 - h)


def _linear_prime(h):
    return ops.ones_like(h)


# Activations whose derivative is a function of their output, keyed by the Keras function.
_DERIVATIVE_FROM_OUTPUT = {
    activations.tanh: _tanh_prime,
    activations.relu: _relu_prime,
    activations.sigmoid: _sigmoid_prime,
    activations.linear: _linear_prime,
}


def supports(activation) -> bool:
    """Whether ``activation`` has a derivative computable from its output (the fused path)."""
    return activation in _DERIVATIVE_FROM_OUTPUT


# Time steps per loop iteration (with up to 4 chains; fewer with more chains, so the loop body
# holds about 4 × STEPS_PER_ITERATION products): the body holds the steps unrolled, which divides
# the per-iteration cost of the loop machinery (TensorArray reads/writes, loop control) on
# backends with an interpreted loop (TensorFlow without XLA) while keeping the graph small.
STEPS_PER_ITERATION = 20

# Chain sizing: one chain's step product ``(n, units) @ (units, units)`` costs 2·n·units² FLOPs.
# About 2 MFLOP runs well on one core; much larger products get split across threads by the
# runtime, much smaller ones are dominated by per-op overhead. A batch of at least
# 2·MIN_CHAIN_ROWS rows always gets two chains or more, so that a second core has a chain to run:
# with one chain it idles through most of the loop (measured on 2 cores, training steps at 64 to
# 1024 units and batch 16 to 64: two chains as fast as one or faster, by up to 19 %). Layers too
# wide for MIN_CHAIN_ROWS rows per chain at CHAIN_FLOPS get two chains of large products.
CHAIN_FLOPS = 2**21
MIN_CHAIN_ROWS = 8
MAX_CHAINS = 16
# Batch size assumed when choosing chains for a batch dimension unknown while tracing.
NOMINAL_BATCH = 64

# A loop compiled by XLA (TensorFlow inside ``jit_compile=True``; JAX always) has little
# per-iteration overhead to divide, and XLA's CPU runtime gains nothing from more than two
# independent chains. Measured on 2 cores, interleaved training steps at 256 units: TensorFlow
# XLA with 2 chains × 10 steps took 3–10 % less time than with 4 × 20 (five runs, batch 64, last
# output and return_sequences), 7 % less at batch 128 (8 × 10 before); JAX: 2 chains 0.68 of
# SimpleRNN's time against 0.75 with 4 (steps per iteration made no difference there).
COMPILED_STEPS_PER_ITERATION = 10
COMPILED_MAX_CHAINS = 2


def default_chains(batch: int | None, units: int) -> int:
    """``G``, the number of parallel chains for a ``(batch, units)`` state (see module doc)::

        G = 1                               if batch < 2 · MIN_CHAIN_ROWS
        rows = CHAIN_FLOPS // (2 · units²)
        G = 2                               if rows < MIN_CHAIN_ROWS (wide layers)
        G = clip(⌈batch / rows⌉, 2, MAX_CHAINS)   otherwise       (batch None → NOMINAL_BATCH)

    e.g. units 256 → 16 rows per chain: batch 64 → 4 chains, batch 128 → 8, batch 16 or 32 → 2;
    units 128 → 64 rows per chain: batch 16 to 128 → 2, batch 256 → 4; units ≥ 512 → 2; any
    batch below 16 → 1.
    """
    batch = NOMINAL_BATCH if batch is None else batch
    if batch < 2 * MIN_CHAIN_ROWS:
        return 1
    rows = CHAIN_FLOPS // (2 * units * units)
    if rows < MIN_CHAIN_ROWS:
        return 2
    return int(min(MAX_CHAINS, max(2, math.ceil(batch / rows))))


def compiled_loop() -> bool:
    """Whether the loop being traced now is compiled by XLA: always on JAX; on TensorFlow inside
    a ``jit_compile=True`` function (or any function nested in one)."""
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend != "tensorflow":
        return False
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def _steps_per_iteration(length, limit):
    """``k``: a divisor of a static ``length`` close to ``limit``, else ``limit`` (with padding)."""
    if length is None:
        return limit
    if length <= limit:
        return max(length, 1)
    for k in range(limit, (limit + 1) // 2 - 1, -1):
        if length % k == 0:
            return k
    return limit


def _scan(f, init, xs, reverse=False):
    """``ops.scan`` of ``f(carry, tuple(x[i] for x in xs))`` over the block indices ``i``.

    The loop scans over the block indices and slices each block out of ``xs`` in its body, so
    the inputs are never copied into per-iteration buffers (TensorFlow's scan unstacks its inputs
    into a TensorList, a full copy of each; a first-axis slice is a view), and any number of
    inputs may have a length unknown while tracing.
    """
    n = xs[0].shape[0]
    indices = ops.arange(ops.shape(xs[0])[0] if n is None else n)
    return ops.scan(lambda carry, i: f(carry, tuple(x[i] for x in xs)), init, indices,
                    reverse=reverse)


class _Layout:
    """Index bookkeeping between the time-major ``(T, batch, …)`` tensors of the caller and the
    loop's ``(T/k, k, G, n, …)`` blocks (time padded to a multiple of ``k``, batch to ``G·n``)."""

    def __init__(self, z, chains, steps_per_iteration):
        self.length = z.shape[0]
        self.batch = z.shape[1]
        self.chains = chains
        self.real_length = ops.shape(z)[0]
        self.real_batch = ops.shape(z)[1]
        limit = max(1, (steps_per_iteration * 4) // max(chains, 4))
        k = _steps_per_iteration(self.length, limit)
        self.k = k
        if self.length is not None:
            self.time_padding = (-self.length) % k
            self.n_blocks = (self.length + self.time_padding) // k
        else:
            self.time_padding = (-self.real_length) % k
            self.n_blocks = -1
        if self.batch is not None:
            self.rows = -(-self.batch // chains)
            self.batch_padding = self.rows * chains - self.batch
        else:
            self.rows = -1
            self.batch_padding = (-self.real_batch) % chains
        self.padded_time = not isinstance(self.time_padding, int) or self.time_padding > 0
        self.padded_batch = not isinstance(self.batch_padding, int) or self.batch_padding > 0

    def _pad(self, t, axis, amount, flag):
        if not flag:
            return t
        widths = [[0, 0]] * len(t.shape)
        widths[axis] = [0, amount]
        return ops.pad(t, widths, constant_values=True if t.dtype == "bool" else 0)

    def split_rows(self, t):
        """``(batch, …)`` → ``(G, n, …)``."""
        t = self._pad(t, 0, self.batch_padding, self.padded_batch)
        return ops.reshape(t, (self.chains, self.rows, *t.shape[1:]))

    def join_rows(self, t):
        """``(G, n, …)`` → ``(batch, …)``."""
        t = ops.reshape(t, (-1, *t.shape[2:]))
        return t[: self.real_batch] if self.padded_batch else t

    def blocked(self, t):
        """``(T, batch, …)`` → ``(T/k, k, G, n, …)``."""
        t = self._pad(t, 1, self.batch_padding, self.padded_batch)
        t = self._pad(t, 0, self.time_padding, self.padded_time)
        n_blocks = self.n_blocks if self.n_blocks > 0 else ops.shape(t)[0] // self.k
        rows = self.rows if self.rows > 0 else ops.shape(t)[1] // self.chains
        return ops.reshape(t, (n_blocks, self.k, self.chains, rows, *t.shape[2:]))

    def unblocked(self, t):
        """``(T/k, k, G, n, …)`` → ``(T, batch, …)``."""
        rows = self.rows if self.rows > 0 else ops.shape(t)[3]
        t = ops.reshape(t, (-1, self.chains * rows, *t.shape[4:]))
        if self.padded_time:
            t = t[: self.real_length]
        return t[:, : self.real_batch] if self.padded_batch else t


def elman_states(z, h0, recurrent_kernel, activation, mask=None, recurrent_mask=None,
                 last_only=False, steps_per_iteration=None, chains=None):
    """``H`` ``(T, batch, units)``: the hidden states for the hoisted inputs ``z`` (time-major).

    Args:
        z: ``(T, batch, units)``, ``x_t W_x + b`` for every step.
        h0: ``(batch, units)``, the initial state.
        recurrent_kernel: ``W_h`` ``(units, units)`` (a tensor in ``z``'s dtype).
        activation: a supported Keras activation (see ``supports``).
        mask: optional bool ``(T, batch, 1)``; False steps carry ``h_{t-1}``.
        recurrent_mask: optional ``(batch, units)`` dropout mask applied to ``h_{t-1}``.
        last_only: return only ``h_T`` ``(batch, units)``; the backward loop then starts from
            its gradient and skips adding per-step output gradients (all zero).
        steps_per_iteration: time steps unrolled in one loop iteration (default
            ``STEPS_PER_ITERATION``, or ``COMPILED_STEPS_PER_ITERATION`` in a loop XLA compiles;
            divided by ``chains / 4`` beyond 4 chains). When it does not
            divide ``T``, ``z`` is padded at the end with zeros: the extra states are dropped, and
            their gradient is exactly zero (their upstream gradient is zero and they come after
            every real step).
        chains: parallel chains ``G`` the batch is cut into (default ``default_chains``, at
            most ``COMPILED_MAX_CHAINS`` in a loop XLA compiles; with a batch size unknown while
            tracing, the graph holds both ``G`` chains and one chain,
            and a batch of fewer than ``2·G`` rows takes the single chain at run time).

    Differentiable in ``z``, ``h0`` and ``recurrent_kernel``; the masks are constants.
    """
    compiled = compiled_loop()
    if steps_per_iteration is None and compiled:
        steps_per_iteration = COMPILED_STEPS_PER_ITERATION
    options = dict(mask=mask, recurrent_mask=recurrent_mask, last_only=last_only,
                   steps_per_iteration=steps_per_iteration)
    if chains is not None:
        return _chained_states(z, h0, recurrent_kernel, activation, chains=chains, **options)
    chains = default_chains(z.shape[1], z.shape[-1])
    if compiled:
        chains = min(chains, COMPILED_MAX_CHAINS)
    if z.shape[1] is not None or chains == 1:
        return _chained_states(z, h0, recurrent_kernel, activation, chains=chains, **options)
    return ops.cond(
        ops.shape(z)[1] >= 2 * chains,
        lambda: _chained_states(z, h0, recurrent_kernel, activation, chains=chains, **options),
        lambda: _chained_states(z, h0, recurrent_kernel, activation, chains=1, **options),
    )


def _chained_states(z, h0, recurrent_kernel, activation, *, chains, mask, recurrent_mask,
                    last_only, steps_per_iteration):
    """``elman_states`` with the batch in exactly ``chains`` chains (at most one per row)."""
    derivative = _DERIVATIVE_FROM_OUTPUT[activation]
    units = z.shape[-1]
    if z.shape[1] is not None:
        chains = max(1, min(chains, z.shape[1]))
    lay = _Layout(z, chains, steps_per_iteration or STEPS_PER_ITERATION)
    k, g = lay.k, chains
    mask_blocks = None if mask is None else lay.blocked(mask)
    # Per-chain recurrent dropout masks, (n, units) each.
    r_chains = None if recurrent_mask is None else ops.unstack(lay.split_rows(recurrent_mask), g)

    def steps(block):
        """``(k, G, n, …)`` → ``[step][chain]`` tensors ``(n, …)`` (one unstack op)."""
        flat = ops.unstack(ops.reshape(block, (k * g, -1, *block.shape[3:])), k * g)
        return [flat[i * g:(i + 1) * g] for i in range(k)]

    def restack(items):
        """``[step][chain]`` → ``(k, G, n, …)``."""
        flat = ops.stack([t for step in items for t in step])
        return ops.reshape(flat, (k, g, -1, *flat.shape[2:]))

    @ops.custom_gradient
    def recurrence(z, h0, w):
        z_blocks = lay.blocked(z)
        h0_chains = lay.split_rows(h0)

        def forward_step(previous_block, inputs):
            z_k = steps(inputs[0])
            m_k = None if mask is None else steps(inputs[1])
            h = ops.unstack(previous_block[-1], g)
            block = []
            for i in range(k):
                new = []
                for j in range(g):
                    hr = h[j] if r_chains is None else h[j] * r_chains[j]
                    h_new = activation(z_k[i][j] + ops.matmul(hr, w))
                    new.append(h_new if m_k is None else ops.where(m_k[i][j], h_new, h[j]))
                h = new
                block.append(h)
            block = restack(block)
            return block, block

        xs = (z_blocks,) if mask is None else (z_blocks, mask_blocks)
        init = ops.concatenate([ops.zeros((k - 1, *ops.shape(h0_chains)), h0.dtype),
                                ops.expand_dims(h0_chains, 0)], axis=0)
        last_block, state_blocks = _scan(forward_step, init, xs)
        states = lay.unblocked(state_blocks)
        # Without time padding, h_T is the final carry (so the loss need not wait for the
        # stacked states) and its gradient can seed the backward carry directly.
        lean = last_only and not lay.padded_time

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            w_t = ops.transpose(w)

            def back_step(carry, inputs):
                c = ops.unstack(carry[0], g)
                g_prime = derivative(inputs[0])
                if mask is not None:
                    g_prime = ops.where(inputs[1], g_prime, ops.zeros_like(g_prime))
                gp_k = steps(g_prime)
                m_k = None if mask is None else steps(inputs[1])
                d_k = None if lean else steps(inputs[-1])
                dz_block = [None] * k
                for i in reversed(range(k)):
                    dz_step = []
                    for j in range(g):
                        delta = c[j] if d_k is None else d_k[i][j] + c[j]
                        dz = delta * gp_k[i][j]
                        c[j] = ops.matmul(dz, w_t)
                        if r_chains is not None:
                            c[j] = c[j] * r_chains[j]
                        if m_k is not None:
                            c[j] = c[j] + ops.where(m_k[i][j], ops.zeros_like(delta), delta)
                        dz_step.append(dz)
                    dz_block[i] = dz_step
                result = (ops.stack(c), restack(dz_block))
                return result, result

            back_xs = (state_blocks,) if mask is None else (state_blocks, mask_blocks)
            if lean:
                c_init = lay.split_rows(ops.reshape(upstream, ops.shape(h0)))
            else:
                if last_only:  # time-padded: place ∂L/∂h_T at step T of a zero sequence
                    upstream = ops.concatenate(
                        [ops.zeros_like(states[:-1]), ops.expand_dims(upstream, 0)], axis=0)
                upstream = ops.reshape(upstream, ops.shape(states))  # static shape where known
                back_xs = (*back_xs, lay.blocked(upstream))
                c_init = ops.zeros_like(h0_chains)
            init = (c_init, ops.zeros_like(state_blocks[0]))
            (dh0_chains, _), (_, dz_blocks) = _scan(back_step, init, back_xs, reverse=True)
            # ∂W_h over padded rows too (their dz is exactly zero), in the loop's layout.
            previous, first = state_blocks, h0_chains
            if recurrent_mask is not None:
                r = lay.split_rows(recurrent_mask)  # (G, n, units), broadcast over (T/k, k)
                previous, first = previous * r, first * r
            dz_all = ops.reshape(dz_blocks, (-1, units))
            previous = ops.reshape(previous, (-1, units))
            first = ops.reshape(first, (-1, units))
            n_first = ops.shape(first)[0]
            # Row t·G·n.. of ``previous`` is h_{t+1}: pair it with dz_{t+2}; h_0 pairs with dz_1.
            dw = (ops.matmul(ops.transpose(previous[:-n_first]), dz_all[n_first:])
                  + ops.matmul(ops.transpose(first), dz_all[:n_first]))
            return lay.unblocked(dz_blocks), lay.join_rows(dh0_chains), dw

        if not last_only:
            return states, grad
        return (lay.join_rows(last_block[-1]) if lean else states[-1]), grad

    return recurrence(z, h0, recurrent_kernel)
