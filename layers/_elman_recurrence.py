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


def elman_states(z, h0, recurrent_kernel, activation, mask=None, recurrent_mask=None):
    """``H`` ``(T, batch, units)``: the hidden states for the hoisted inputs ``z`` (time-major).

    Args:
        z: ``(T, batch, units)``, ``x_t W_x + b`` for every step.
        h0: ``(batch, units)``, the initial state.
        recurrent_kernel: ``W_h`` ``(units, units)`` (a tensor in ``z``'s dtype).
        activation: a supported Keras activation (see ``supports``).
        mask: optional bool ``(T, batch, 1)``; False steps carry ``h_{t-1}``.
        recurrent_mask: optional ``(batch, units)`` dropout mask applied to ``h_{t-1}``.

    Differentiable in ``z``, ``h0`` and ``recurrent_kernel``; the masks are constants.
    """
    derivative = _DERIVATIVE_FROM_OUTPUT[activation]

    @ops.custom_gradient
    def recurrence(z, h0, w):
        def step(h_prev, inputs):
            hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
            if mask is None:
                h = activation(inputs + ops.matmul(hr, w))
            else:
                z_t, m_t = inputs
                h = ops.where(m_t, activation(z_t + ops.matmul(hr, w)), h_prev)
            return h, h

        xs = z if mask is None else (z, mask)
        _, states = ops.scan(step, h0, xs)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            w_t = ops.transpose(w)
            g_prime = derivative(states)
            if mask is not None:
                g_prime = ops.where(mask, g_prime, ops.zeros_like(g_prime))

            def back_step(carry, inputs):
                if mask is None:
                    d_out, gp = inputs
                else:
                    d_out, gp, m_t = inputs
                delta = d_out + carry
                dz = delta * gp
                back = ops.matmul(dz, w_t)
                if recurrent_mask is not None:
                    back = back * recurrent_mask
                if mask is not None:
                    back = back + ops.where(m_t, ops.zeros_like(delta), delta)
                return back, dz

            back_xs = (upstream, g_prime) if mask is None else (upstream, g_prime, mask)
            dh0, dz = ops.scan(back_step, ops.zeros_like(h0), back_xs, reverse=True)
            previous = ops.concatenate([ops.expand_dims(h0, 0), states[:-1]], axis=0)
            if recurrent_mask is not None:
                previous = previous * recurrent_mask
            units = ops.shape(w)[0]
            dw = ops.matmul(
                ops.transpose(ops.reshape(previous, (-1, units))), ops.reshape(dz, (-1, units))
            )
            return dz, dh0, dw

        return states, grad

    return recurrence(z, h0, recurrent_kernel)
