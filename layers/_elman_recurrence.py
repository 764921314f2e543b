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
"""

from __future__ import annotations

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


# Time steps per loop iteration: the loop body holds this many steps unrolled, which divides the
# per-iteration cost of the loop machinery (TensorArray reads/writes, loop control) on backends
# with an interpreted loop (TensorFlow without XLA) while keeping the graph small.
STEPS_PER_ITERATION = 20


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
    """``ops.scan`` over a tuple ``xs``; packs it into one tensor when the loop length is not
    static (Keras's TensorFlow ``scan`` cannot check several inputs of unknown length)."""
    if len(xs) == 1 or xs[0].shape[0] is not None:
        return ops.scan(lambda c, x: f(c, x), init, xs, reverse=reverse)
    dtype = xs[0].dtype
    sizes = [x.shape[-1] for x in xs]
    kinds = [x.dtype for x in xs]
    packed = ops.concatenate([ops.cast(x, dtype) for x in xs], axis=-1)
    splits = [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)]

    def unpacked(carry, p):
        parts = ops.split(p, splits, axis=-1)
        parts = [ops.cast(q, kind) if kind == "bool" else q
                 for q, kind in zip(parts, kinds, strict=True)]
        return f(carry, tuple(parts))

    return ops.scan(unpacked, init, packed, reverse=reverse)


def elman_states(z, h0, recurrent_kernel, activation, mask=None, recurrent_mask=None,
                 last_only=False, steps_per_iteration=None):
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
            ``STEPS_PER_ITERATION``). When it does not divide ``T``, ``z`` is padded at the end
            with zeros: the extra states are dropped, and their gradient is exactly zero (their
            upstream gradient is zero and they come after every real step).

    Differentiable in ``z``, ``h0`` and ``recurrent_kernel``; the masks are constants.
    """
    derivative = _DERIVATIVE_FROM_OUTPUT[activation]
    length = z.shape[0]
    k = _steps_per_iteration(length, steps_per_iteration or STEPS_PER_ITERATION)
    real_length = ops.shape(z)[0]
    padding = (-length) % k if length is not None else (-real_length) % k
    padded = not isinstance(padding, int) or padding > 0
    n_blocks = (length + padding) // k if length is not None else -1

    def blocked(t):
        """(T, ...) → (T/k, k, ...), zero/True-padded at the end (static T/k when T is)."""
        if padded:
            pad_value = True if t.dtype == "bool" else 0
            t = ops.pad(t, [[0, padding]] + [[0, 0]] * (len(t.shape) - 1),
                        constant_values=pad_value)
        return ops.reshape(t, (n_blocks, k, *ops.shape(t)[1:]))

    def unblocked(t):
        t = ops.reshape(t, (-1, *ops.shape(t)[2:]))
        return t[:real_length] if padded else t

    mask_blocks = None if mask is None else blocked(mask)

    @ops.custom_gradient
    def recurrence(z, h0, w):
        def forward_step(previous_block, inputs):
            z_k = ops.unstack(inputs[0], k)
            m_k = None if mask is None else ops.unstack(inputs[1], k)
            h = previous_block[-1]
            block = []
            for i in range(k):
                hr = h if recurrent_mask is None else h * recurrent_mask
                h_new = activation(z_k[i] + ops.matmul(hr, w))
                h = h_new if m_k is None else ops.where(m_k[i], h_new, h)
                block.append(h)
            block = ops.stack(block)
            return block, block

        z_blocks = blocked(z)
        xs = (z_blocks,) if mask is None else (z_blocks, mask_blocks)
        init = ops.concatenate([ops.zeros((k - 1, *ops.shape(h0)), h0.dtype),
                                ops.expand_dims(h0, 0)], axis=0)
        _, state_blocks = _scan(forward_step, init, xs)
        states = unblocked(state_blocks)
        # Without padding, the gradient of h_T can seed the backward carry directly.
        lean = last_only and not padded

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            w_t = ops.transpose(w)
            g_prime = derivative(state_blocks)
            if mask is not None:
                g_prime = ops.where(mask_blocks, g_prime, ops.zeros_like(g_prime))

            def back_step(carry, inputs):
                c, _ = carry
                gp_k = ops.unstack(inputs[0], k)
                m_k = None if mask is None else ops.unstack(inputs[1], k)
                d_k = None if lean else ops.unstack(inputs[-1], k)
                dz_block = [None] * k
                for i in reversed(range(k)):
                    delta = c if d_k is None else d_k[i] + c
                    dz = delta * gp_k[i]
                    c = ops.matmul(dz, w_t)
                    if recurrent_mask is not None:
                        c = c * recurrent_mask
                    if m_k is not None:
                        c = c + ops.where(m_k[i], ops.zeros_like(delta), delta)
                    dz_block[i] = dz
                result = (c, ops.stack(dz_block))
                return result, result

            back_xs = (g_prime,) if mask is None else (g_prime, mask_blocks)
            if lean:
                c_init = ops.reshape(upstream, ops.shape(h0))
            else:
                if last_only:  # padded: place ∂L/∂h_T at step T of a zero sequence
                    upstream = ops.concatenate(
                        [ops.zeros_like(states[:-1]), ops.expand_dims(upstream, 0)], axis=0)
                upstream = ops.reshape(upstream, ops.shape(states))  # static shape where known
                back_xs = (*back_xs, blocked(upstream))
                c_init = ops.zeros_like(h0)
            init = (c_init, ops.zeros_like(state_blocks[0]))
            (dh0, _), (_, dz_blocks) = _scan(back_step, init, back_xs, reverse=True)
            dz = unblocked(dz_blocks)
            previous, first = states[:-1], h0  # h_{t-1} for t ≥ 2 and t = 1
            if recurrent_mask is not None:
                previous, first = previous * recurrent_mask, first * recurrent_mask
            dw = ops.einsum("tbi,tbj->ij", previous, dz[1:]) + ops.einsum("bi,bj->ij", first, dz[0])
            return dz, dh0, dw

        return (states[-1] if last_only else states), grad

    return recurrence(z, h0, recurrent_kernel)
