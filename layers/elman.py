"""Elman (1990) simple recurrent network: ``ElmanRNNCell`` and the sequence layer ``ElmanRNN``.

The recurrence, with ``x_t`` of shape ``(batch, input_dim)`` and ``h_t`` of shape
``(batch, units)``::

    h_t = g(x_t W_x + h_{t-1} W_h + b)          # g = activation (tanh by default)
    y_t = g_y(h_t W_y + b_y)                    # only when output_units is set

``W_x`` is ``kernel`` ``(input_dim, units)``, ``W_h`` is ``recurrent_kernel`` ``(units, units)``
and ``b`` is ``bias`` ``(units,)``: the same names, shapes and order as
``keras.layers.SimpleRNN``, so weights copy across with ``set_weights(other.get_weights())``
(projection weights ``output_kernel`` ``(units, output_units)`` and ``output_bias``
``(output_units,)`` come after them). Without ``output_units`` the layer computes exactly what
``SimpleRNN`` computes.

``ElmanRNN`` runs the whole sequence through a fused path (``layers/_elman_recurrence.py``): all
``x_t W_x + b`` in one matmul, a loop holding only ``h_{t-1} W_h`` (several steps per iteration;
the batch cut into independent row blocks that the runtime advances in parallel, about 16 rows per
block at 256 units), and a hand-written backpropagation through time in one reverse loop;
masking, dropout, ``go_backwards``, ``initial_state`` and ``stateful`` stay on it. Options outside
that path (``unroll=True``, an activation other than tanh/relu/sigmoid/linear, whose derivative
is not a function of its output) use the generic Keras RNN loop with the same cell: same numbers
either way.
"""

from __future__ import annotations

import keras
from keras import activations, constraints, initializers, ops, regularizers

# Keras's own mixin that draws one dropout mask per sequence and reuses it at every step; a cell
# that is an instance of it gets its masks prepared by `keras.layers.RNN` before the loop (needed
# for dropout inside a symbolic loop). It has no public export in Keras 3.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from layers import _elman_recurrence

__all__ = ["ElmanRNNCell", "ElmanRNN"]


def _check_units(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a positive integer"
            f"{' or None' if allow_none else ''}, received {name}={value!r}."
        )
    return value


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a float in [0, 1), "
            f"received {name}={value!r}."
        )
    return float(value)


def _get_activation(name: str, value):
    if isinstance(value, str):
        try:
            return activations.get(value)
        except ValueError:
            raise ValueError(
                f"Invalid value for argument `{name}`: unknown activation, received "
                f"{name}={value!r}. Use a name from keras.activations (e.g. 'tanh', 'relu'), "
                "a callable, or None."
            ) from None
    if value is None or callable(value):
        return activations.get(value)
    raise ValueError(
        f"Invalid value for argument `{name}`: expected an activation name, a callable or None, "
        f"received {name}={value!r}."
    )


def _matmul_last_axis(x, kernel):
    """``x @ kernel`` over the last axis as one 2D matmul (a 3D @ 2D matmul would be a batched
    matmul whose kernel gradient is a stack of per-step products summed afterwards)."""
    if len(x.shape) == 2:
        return ops.matmul(x, kernel)
    leading = ops.shape(x)[:-1]
    y = ops.matmul(ops.reshape(x, (-1, ops.shape(x)[-1])), kernel)
    return ops.reshape(y, (*leading, ops.shape(kernel)[-1]))


@keras.saving.register_keras_serializable(package="deepline")
class ElmanRNNCell(keras.layers.Layer, DropoutRNNCell):
    """One step of the Elman recurrence, for ``ElmanRNN`` or ``keras.layers.RNN``.

    ``h_t = g(x_t W_x + h_{t-1} W_h + b)``; the step output is ``h_t``, or
    ``y_t = g_y(h_t W_y + b_y)`` when ``output_units`` is set. The state is always ``h_t``.

    Args:
        units: Positive integer, dimensionality of the hidden state ``h_t``.
        activation: ``g``; default ``"tanh"``. ``None`` means linear.
        use_bias: Whether to add ``b`` (and ``b_y`` for the projection). Default ``True``.
        kernel_initializer: Initializer for ``kernel`` ``W_x``. Default ``"glorot_uniform"``.
        recurrent_initializer: Initializer for ``recurrent_kernel`` ``W_h``.
            Default ``"orthogonal"``.
        bias_initializer: Initializer for ``bias`` ``b``. Default ``"zeros"``.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: Regularizers for those
            weights. Default ``None``.
        kernel_constraint, recurrent_constraint, bias_constraint: Constraints for those weights.
            Default ``None``.
        dropout: Fraction in ``[0, 1)`` of the input features dropped (one mask per sequence,
            as in Keras). Default 0.
        recurrent_dropout: Fraction in ``[0, 1)`` of ``h_{t-1}`` dropped before ``W_h`` (one mask
            per sequence). Default 0.
        seed: Seed for the dropout masks.
        output_units: ``None`` (default: no projection, the step output is ``h_t``) or a positive
            integer: size of the output projection ``y_t = g_y(h_t W_y + b_y)``.
        output_activation: ``g_y``; default ``None`` (linear).
        output_kernel_initializer: Initializer for ``output_kernel`` ``W_y``
            ``(units, output_units)``. Default ``"glorot_uniform"``.
        output_bias_initializer: Initializer for ``output_bias`` ``b_y``. Default ``"zeros"``.
        output_kernel_regularizer, output_bias_regularizer, output_kernel_constraint,
            output_bias_constraint: As for the other weights. Default ``None``.

    Call arguments:
        sequence: ``(batch, input_dim)``, the step input ``x_t``.
        states: ``[h_{t-1}]`` (or ``h_{t-1}``), each ``(batch, units)``.
        training: Whether dropout is applied.

    Returns:
        ``(output, [h_t])`` with output ``(batch, output_units or units)``.

    Example:

    >>> cell = ElmanRNNCell(4)
    >>> y = keras.layers.RNN(cell)(np.zeros((2, 7, 3), "float32"))   # (2, 4)
    """

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        output_units=None,
        output_activation=None,
        output_kernel_initializer="glorot_uniform",
        output_bias_initializer="zeros",
        output_kernel_regularizer=None,
        output_bias_regularizer=None,
        output_kernel_constraint=None,
        output_bias_constraint=None,
        **kwargs,
    ):
        self.units = _check_units("units", units)
        self.output_units = _check_units("output_units", output_units, allow_none=True)
        self.activation = _get_activation("activation", activation)
        self.output_activation = _get_activation("output_activation", output_activation)
        self.dropout = _check_rate("dropout", dropout)
        self.recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)
        super().__init__(**kwargs)
        self.use_bias = bool(use_bias)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.output_kernel_initializer = initializers.get(output_kernel_initializer)
        self.output_bias_initializer = initializers.get(output_bias_initializer)

        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.output_kernel_regularizer = regularizers.get(output_kernel_regularizer)
        self.output_bias_regularizer = regularizers.get(output_bias_regularizer)

        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.output_kernel_constraint = constraints.get(output_kernel_constraint)
        self.output_bias_constraint = constraints.get(output_bias_constraint)

        self.state_size = self.units
        self.output_size = self.output_units or self.units

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects step inputs of rank 2 (batch, input_dim), "
                f"received input shape {tuple(input_shape)}."
            )
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__} needs a known last (feature) dimension, received input "
                f"shape {tuple(input_shape)}."
            )
        self.kernel = self.add_weight(
            shape=(input_dim, self.units), name="kernel",
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), name="recurrent_kernel",
            initializer=self.recurrent_initializer, regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,), name="bias", initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint,
            )
        self.output_kernel = self.output_bias = None
        if self.output_units:
            self.output_kernel = self.add_weight(
                shape=(self.units, self.output_units), name="output_kernel",
                initializer=self.output_kernel_initializer,
                regularizer=self.output_kernel_regularizer,
                constraint=self.output_kernel_constraint,
            )
            if self.use_bias:
                self.output_bias = self.add_weight(
                    shape=(self.output_units,), name="output_bias",
                    initializer=self.output_bias_initializer,
                    regularizer=self.output_bias_regularizer,
                    constraint=self.output_bias_constraint,
                )

    def project(self, h):
        """``y = g_y(h W_y + b_y)`` on any leading shape (identity without ``output_units``)."""
        if not self.output_units:
            return h
        y = _matmul_last_axis(h, self.output_kernel)
        if self.output_bias is not None:
            y = ops.add(y, self.output_bias)
        return self.output_activation(y)

    def call(self, sequence, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        dp_mask = self.get_dropout_mask(sequence)
        rec_dp_mask = self.get_recurrent_dropout_mask(h_prev)
        if training and dp_mask is not None:
            sequence = sequence * dp_mask
        z = ops.matmul(sequence, self.kernel)
        if self.bias is not None:
            z = ops.add(z, self.bias)
        if training and rec_dp_mask is not None:
            h_prev = h_prev * rec_dp_mask
        h = self.activation(z + ops.matmul(h_prev, self.recurrent_kernel))
        new_states = [h] if isinstance(states, (list, tuple)) else h
        return self.project(h), new_states

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.state_size), dtype=self.compute_dtype)]

    def get_config(self):
        ser_i, ser_r, ser_c = (initializers.serialize, regularizers.serialize,
                               constraints.serialize)
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": ser_i(self.kernel_initializer),
            "recurrent_initializer": ser_i(self.recurrent_initializer),
            "bias_initializer": ser_i(self.bias_initializer),
            "kernel_regularizer": ser_r(self.kernel_regularizer),
            "recurrent_regularizer": ser_r(self.recurrent_regularizer),
            "bias_regularizer": ser_r(self.bias_regularizer),
            "kernel_constraint": ser_c(self.kernel_constraint),
            "recurrent_constraint": ser_c(self.recurrent_constraint),
            "bias_constraint": ser_c(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "output_units": self.output_units,
            "output_activation": activations.serialize(self.output_activation),
            "output_kernel_initializer": ser_i(self.output_kernel_initializer),
            "output_bias_initializer": ser_i(self.output_bias_initializer),
            "output_kernel_regularizer": ser_r(self.output_kernel_regularizer),
            "output_bias_regularizer": ser_r(self.output_bias_regularizer),
            "output_kernel_constraint": ser_c(self.output_kernel_constraint),
            "output_bias_constraint": ser_c(self.output_bias_constraint),
        }
        return {**super().get_config(), **config}


# Arguments of ElmanRNN that belong to its cell (everything else goes to keras.layers.RNN).
_CELL_ARGS = (
    "activation", "use_bias", "kernel_initializer", "recurrent_initializer", "bias_initializer",
    "kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
    "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout", "seed",
    "output_units", "output_activation", "output_kernel_initializer", "output_bias_initializer",
    "output_kernel_regularizer", "output_bias_regularizer", "output_kernel_constraint",
    "output_bias_constraint",
)


@keras.saving.register_keras_serializable(package="deepline")
class ElmanRNN(keras.layers.RNN):
    """Elman simple recurrent network over a whole sequence; a faster ``keras.layers.SimpleRNN``.

    For ``t = 1..T`` (reversed with ``go_backwards``), starting from ``h_0`` (zeros,
    ``initial_state`` or, with ``stateful=True``, the last state of the previous batch)::

        h_t = g(x_t W_x + h_{t-1} W_h + b)
        y_t = g_y(h_t W_y + b_y)      # only with output_units; otherwise y_t = h_t

    A masked step (``mask[:, t] == False``, from ``keras.layers.Masking`` or ``mask=``) keeps
    ``h_t = h_{t-1}`` and repeats the previous output (zeros before the first unmasked step, or
    zeros at masked steps with ``zero_output_for_mask=True``), exactly as Keras does.

    Args:
        units: Positive integer, size of the hidden state.
        activation, use_bias, *_initializer, *_regularizer, *_constraint, dropout,
            recurrent_dropout, seed, output_units, output_activation, output_*: as in
            ``ElmanRNNCell``. ``output_units=None`` (default) means no output projection.
        return_sequences: Return all outputs ``(batch, T, ·)`` instead of the last ``(batch, ·)``.
        return_state: Also return the last hidden state ``h_T`` ``(batch, units)``.
        go_backwards: Process the sequence in reverse (outputs in processing order).
        stateful: Carry the last state of each sample to the next batch (static batch size).
            ``reset_state()`` / ``reset_states()`` zero it.
        unroll: Use a Python-unrolled loop (short sequences only) instead of the fused loop.
        zero_output_for_mask: Output zeros at masked steps instead of repeating. Default False.
        activity_regularizer, name, dtype, ...: standard layer keyword arguments.

    Call arguments:
        sequences: ``(batch, timesteps, input_dim)``.
        initial_state: ``h_0`` ``(batch, units)`` (or a one-element list).
        mask: Boolean ``(batch, timesteps)``; True marks steps to use.
        training: Whether dropout is applied.

    Input shape:
        3D ``(batch, timesteps, input_dim)``.

    Output shape:
        ``(batch, timesteps, out)`` with ``return_sequences`` else ``(batch, out)``, where
        ``out = output_units or units``; with ``return_state`` a list ``[output, h_T]``,
        ``h_T`` of shape ``(batch, units)``.

    Example:

    >>> x = np.random.rand(32, 10, 8).astype("float32")
    >>> ElmanRNN(4)(x).shape
    (32, 4)
    >>> seq, h = ElmanRNN(4, return_sequences=True, return_state=True)(x)  # (32,10,4), (32,4)
    >>> ElmanRNN(16, output_units=3, output_activation="softmax", return_sequences=True)(x).shape
    (32, 10, 3)
    """

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        seed=None,
        output_units=None,
        output_activation=None,
        output_kernel_initializer="glorot_uniform",
        output_bias_initializer="zeros",
        output_kernel_regularizer=None,
        output_bias_regularizer=None,
        output_kernel_constraint=None,
        output_bias_constraint=None,
        **kwargs,
    ):
        cell_kwargs = {key: value for key, value in locals().items() if key in _CELL_ARGS}
        cell = ElmanRNNCell(
            units, **cell_kwargs, dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True), name="elman_rnn_cell",
        )
        super().__init__(
            cell, return_sequences=return_sequences, return_state=return_state,
            go_backwards=go_backwards, stateful=stateful, unroll=unroll,
            activity_regularizer=activity_regularizer, **kwargs,
        )
        self.supports_masking = True

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank 3 (batch, timesteps, input_dim), "
                f"received input shape {tuple(sequences_shape)}."
            )
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """The whole recurrence: fused path where it applies, Keras's generic loop otherwise.

        Fused path: ``Z = X W_x + b`` in one matmul, ``H`` from ``_elman_recurrence`` (hand-written
        BPTT), then the projection over all steps at once. Masked outputs follow Keras: a masked
        step repeats the previous output, which is ``y(h_t)`` once a step was used and zeros
        before (with ``zero_output_for_mask``: zeros at every masked step).
        """
        cell = self.cell
        if self.unroll or not _elman_recurrence.supports(cell.activation):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        dtype = sequences.dtype
        if training and cell.dropout > 0:
            sequences = sequences * ops.expand_dims(cell.get_dropout_mask(sequences[:, 0, :]), 1)
        recurrent_mask = None
        if training and cell.recurrent_dropout > 0:
            recurrent_mask = cell.get_recurrent_dropout_mask(h0)

        x = ops.transpose(sequences, (1, 0, 2))  # time-major (T, batch, input_dim)
        step_mask = None
        if mask is not None:
            step_mask = ops.expand_dims(ops.transpose(ops.cast(mask, "bool"), (1, 0)), -1)
        if self.go_backwards:
            x = ops.flip(x, axis=0)
            step_mask = None if step_mask is None else ops.flip(step_mask, axis=0)
        z = _matmul_last_axis(x, ops.cast(cell.kernel, dtype))
        if cell.bias is not None:
            z = z + ops.cast(cell.bias, dtype)
        states = _elman_recurrence.elman_states(
            z, ops.cast(h0, dtype), ops.cast(cell.recurrent_kernel, dtype), cell.activation,
            mask=step_mask, recurrent_mask=recurrent_mask, last_only=not self.return_sequences,
        )

        keep = None  # (T, batch, 1): where the output is y(h_t) rather than zeros
        if step_mask is not None:
            if self.zero_output_for_mask:
                keep = step_mask
            else:  # seen a used step so far
                keep = ops.cumsum(ops.cast(step_mask, "int32"), axis=0) > 0
        if self.return_sequences:
            last_state = states[-1]
            outputs = cell.project(states)
            if keep is not None:
                outputs = ops.where(keep, outputs, ops.zeros_like(outputs))
            outputs = ops.transpose(outputs, (1, 0, 2))
            last_output = outputs[:, -1]
        else:
            last_state = states
            last_output = cell.project(last_state)
            if keep is not None:
                last_output = ops.where(keep[-1], last_output, ops.zeros_like(last_output))
            outputs = last_output
        return last_output, outputs, [last_state]

    # SimpleRNN-style read-only views of the cell's hyper-parameters.
    @property
    def units(self):
        return self.cell.units

    @property
    def activation(self):
        return self.cell.activation

    @property
    def use_bias(self):
        return self.cell.use_bias

    @property
    def dropout(self):
        return self.cell.dropout

    @property
    def recurrent_dropout(self):
        return self.cell.recurrent_dropout

    @property
    def output_units(self):
        return self.cell.output_units

    def get_config(self):
        cell_config = self.cell.get_config()
        config = {key: cell_config[key] for key in ("units", *_CELL_ARGS)}
        config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        base_config = super().get_config()
        del base_config["cell"]
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
