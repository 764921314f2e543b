"""Convolution layers: ``Conv1D`` (incl. causal, the temporal ConvNet) and ``Conv2D``.

A convolution layer computes, for every output position and output filter f, the correlation of
the kernel with the input window (as Keras and every deep-learning library do — the kernel is
*not* flipped):

    y[i, f] = g( b[f] + Σ_{u} Σ_{c ∈ group(f)} x[i·s + u·d, c] · W[u, c, f] )

with stride s, dilation d, kernel offsets u ∈ {0..k−1} (per spatial axis), and activation g.
With ``groups = G`` the C input channels and the F filters are split into G groups; filter f sees
only the C/G channels of its group. Weight layout is Keras's: ``kernel`` has shape
``kernel_size + (C / groups, filters)``, ``bias`` has shape ``(filters,)``, so weights can be
copied with ``set_weights`` from ``keras.layers.Conv1D/Conv2D`` and back.
"""

from __future__ import annotations

import keras
from keras import ops

from layers import _conv_utils as cu

__all__ = ["Conv1D", "Conv2D"]


class _Conv(keras.layers.Layer):
    """Shared N-D convolution (rank = number of spatial axes). Use ``Conv1D``/``Conv2D``."""

    rank: int = 0
    paddings: tuple[str, ...] = cu.PADDINGS

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        rank = self.rank
        self.filters = cu.positive_int(filters, "filters")
        self.kernel_size = cu.normalize_tuple(kernel_size, rank, "kernel_size")
        self.strides = cu.normalize_tuple(strides, rank, "strides")
        self.padding = cu.normalize_padding(padding, self.paddings)
        self.data_format = cu.normalize_data_format(data_format)
        self.dilation_rate = cu.normalize_tuple(dilation_rate, rank, "dilation_rate")
        self.groups = cu.positive_int(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(
                f"`filters` must be divisible by `groups`; received filters={filters!r}, "
                f"groups={groups!r}"
            )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides` > 1 is not supported together with `dilation_rate` > 1; received "
                f"strides={strides!r}, dilation_rate={dilation_rate!r}"
            )
        if not isinstance(use_bias, bool):
            raise ValueError(f"`use_bias` must be a bool; received use_bias={use_bias!r}")
        self.use_bias = use_bias
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.InputSpec(min_ndim=rank + 2)
        self.supports_masking = False

    # -- shapes ---------------------------------------------------------------------------------
    def _channels(self, input_shape):
        return input_shape[cu.channel_axis(self.data_format)]

    def build(self, input_shape):
        cu.check_input_rank(
            type(self).__name__, input_shape, self.rank + 2,
            cu.layout_string(self.rank, self.data_format),
        )
        channels = self._channels(input_shape)
        if channels is None:
            raise ValueError(
                f"{type(self).__name__} needs a known channel dimension; "
                f"received input shape {tuple(input_shape)}"
            )
        if channels % self.groups:
            raise ValueError(
                f"The number of input channels must be divisible by `groups`; received "
                f"groups={self.groups} and input shape {tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        axis = cu.channel_axis(self.data_format)
        self.input_spec = keras.InputSpec(ndim=self.rank + 2, axes={axis: channels})

    def compute_output_shape(self, input_shape):
        cu.check_input_rank(
            type(self).__name__, input_shape, self.rank + 2,
            cu.layout_string(self.rank, self.data_format),
        )
        axes = cu.spatial_axes(self.rank, self.data_format)
        shape = list(input_shape)
        for i, axis in enumerate(axes):
            shape[axis] = cu.output_length(
                input_shape[axis], self.kernel_size[i], self.strides[i], self.padding,
                self.dilation_rate[i],
            )
        shape[cu.channel_axis(self.data_format)] = self.filters
        return tuple(shape)

    # -- maths ----------------------------------------------------------------------------------
    def call(self, inputs):
        padding = self.padding
        if padding == "causal":
            # Causal: y[t] depends on x[≤ t] only — pad d·(k−1) zeros at the start, then "valid".
            left = self.dilation_rate[0] * (self.kernel_size[0] - 1)
            time_axis = cu.spatial_axes(1, self.data_format)[0]
            pads = [[0, 0], [0, 0], [0, 0]]
            pads[time_axis] = [left, 0]
            inputs = ops.pad(inputs, pads)
            padding = "valid"
        channels_first = self.data_format == "channels_first"
        if channels_first:
            # TensorFlow's CPU convolution kernels accept only channels-last (NHWC) layouts, so
            # channels_first is computed as transpose → channels_last conv → transpose back.
            inputs = ops.moveaxis(inputs, 1, -1)
        outputs = ops.conv(
            inputs,
            self.kernel,
            strides=self.strides,
            padding=padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)  # broadcasts over (batch, spatial..., filters)
        if channels_first:
            outputs = ops.moveaxis(outputs, -1, 1)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "groups": self.groups,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="deepline")
class Conv1D(_Conv):
    """1D convolution (temporal ConvNet), numerically equal to ``keras.layers.Conv1D``.

    Formula (correlation, kernel not flipped), output step t, filter f::

        y[t, f] = g( b[f] + Σ_{u=0}^{k−1} Σ_c x[t·s + u·d − p_left, c] · W[u, c, f] )

    where x is zero outside [0, steps) and p_left is 0 for ``valid``, ⌊P/2⌋ for ``same`` and
    d·(k−1) for ``causal`` (so y[t] depends on x[0..t] only: no look-ahead, as needed by the
    temporal ConvNet / WaveNet-style stacks with growing ``dilation_rate``).

    Args:
        filters: number of output channels F (divisible by ``groups``).
        kernel_size: window length k (int or 1-tuple).
        strides: step s between windows (int or 1-tuple, default 1).
        padding: ``"valid"`` (no padding), ``"same"`` (zero padding, output length ⌈n/s⌉) or
            ``"causal"`` (d·(k−1) zeros on the left).
        data_format: ``"channels_last"`` (batch, steps, channels) or ``"channels_first"``
            (batch, channels, steps); ``None`` uses ``keras.config.image_data_format()``.
        dilation_rate: spacing d between kernel taps (``strides`` > 1 with d > 1 is an error).
        groups: split channels and filters into this many independent groups.
        activation: activation g (name or callable; ``None`` = identity).
        use_bias: add the bias b.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, bias_constraint: as in Keras.

    Input shape:
        3D ``(batch, steps, channels)`` (or ``(batch, channels, steps)`` for channels_first).

    Output shape:
        3D ``(batch, new_steps, filters)`` (or ``(batch, filters, new_steps)``), with
        new_steps = ⌊(n − d(k−1) − 1)/s⌋ + 1 for ``valid`` and ⌈n/s⌉ for ``same``/``causal``.

    Example:
        >>> import numpy as np
        >>> layer = Conv1D(1, 3, padding="same", use_bias=False)
        >>> layer.build((None, 6, 1))
        >>> layer.set_weights([np.array([1.0, 2.0, 1.0]).reshape(3, 1, 1)])
        >>> x = np.array([2, 3, 1, 3, 2, 1], "float32").reshape(1, 6, 1)
        >>> layer(x)[0, :, 0].numpy().tolist()
        [7.0, 9.0, 8.0, 9.0, 8.0, 4.0]
    """

    rank = 1
    paddings = cu.PADDINGS_CONV_1D


@keras.saving.register_keras_serializable(package="deepline")
class Conv2D(_Conv):
    """2D convolution, numerically equal to ``keras.layers.Conv2D`` with the same weights.

    Formula (correlation, kernel not flipped), output pixel (i, j), filter f::

        y[i, j, f] = g( b[f] + Σ_{u,v} Σ_c x[i·s₁ + u·d₁ − p_top, j·s₂ + v·d₂ − p_left, c]
                                         · W[u, v, c, f] )

    with x zero outside the image; p_top, p_left are 0 for ``valid`` and ⌊P/2⌋ for ``same``.

    Args:
        filters: number of output channels F (divisible by ``groups``).
        kernel_size: window (k₁, k₂) (int or 2-tuple).
        strides: steps (s₁, s₂) between windows (default 1).
        padding: ``"valid"`` or ``"same"`` (``"causal"`` is 1D only and raises ValueError).
        data_format: ``"channels_last"`` (batch, rows, cols, channels) or ``"channels_first"``
            (batch, channels, rows, cols); ``None`` uses ``keras.config.image_data_format()``.
        dilation_rate: spacing (d₁, d₂) between kernel taps.
        groups: split channels and filters into this many independent groups.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as in Keras.

    Input shape:
        4D ``(batch, rows, cols, channels)`` (or ``(batch, channels, rows, cols)``).

    Output shape:
        4D ``(batch, new_rows, new_cols, filters)`` (or channels first), each new size as for
        ``Conv1D``.

    Example:
        >>> import numpy as np
        >>> image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
        ...                   [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], "float32")
        >>> layer = Conv2D(1, 3, use_bias=False)
        >>> layer.build((None, 5, 5, 1))
        >>> layer.set_weights([np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], "float32")
        ...                    .reshape(3, 3, 1, 1)])
        >>> layer(image.reshape(1, 5, 5, 1))[0, :, :, 0].numpy().tolist()
        [[4.0, 3.0, 4.0], [2.0, 4.0, 3.0], [2.0, 3.0, 4.0]]
    """

    rank = 2
