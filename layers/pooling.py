"""Pooling layers: max, average, L2 and general Lp pooling over windows, feature (channel-group)
L2 pooling, and their global variants.

One base class, ``_Pooling``, holds the whole family's argument handling and maths; the public
classes are thin subclasses fixing the rank (1D/2D), the reduction and — for the global
variants — that the window is the whole feature map:

    max:      h = max_{i ∈ window} x_i
    average:  h = (1/|window ∩ input|) Σ_{i ∈ window} x_i      (exactly Keras's, borders included)
    Lp:       h = (Σ_{i ∈ window} |x_i|^p)^(1/p),  p ≥ 1        (L2: p = 2, h = sqrt(Σ x_i²))

Border and zero-window conventions for L2/Lp (see ``layers/_pool_math.py`` and the README):
with ``padding="same"`` padded cells count as zeros, so the output is the true norm of the
valid cells of the window.  Where a whole window is zero the gradient is exactly 0 (never NaN):
for p = 2 the root is sqrt(s + 1e-30) (output 1e-15 at a zero window), for other p a select
returns exactly 0 there.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

from layers import _conv_utils as cu
from layers import _pool_math as pm

__all__ = [
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "L2Pooling1D",
    "L2Pooling2D",
    "LpPooling1D",
    "LpPooling2D",
    "FeatureL2Pooling",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalL2Pooling1D",
    "GlobalL2Pooling2D",
    "GlobalLpPooling1D",
    "GlobalLpPooling2D",
]

_REDUCTIONS = ("max", "average", "lp")


def _validate_p(p) -> float:
    if (
        not isinstance(p, numbers.Real)
        or isinstance(p, bool)
        or not math.isfinite(p)
        or p < 1
    ):
        raise ValueError(
            f"`p` must be a finite number >= 1 (use MaxPooling for p → ∞); received p={p!r}"
        )
    return float(p)


class _Pooling(keras.layers.Layer):
    """Base of every pooling layer here. Subclasses set ``rank`` (number of spatial axes, or
    ``None`` for FeatureL2Pooling), ``reduction`` ("max" / "average" / "lp") and ``is_global``.

    Windowed layers take ``pool_size, strides, padding, data_format``; global layers take
    ``data_format, keepdims``; Lp layers also take ``p``.
    """

    rank: int | None = None
    reduction: str = "max"
    is_global: bool = False
    fixed_p: float | None = None  # set by L2 layers; None means the layer takes ``p``

    def __init__(
        self,
        pool_size=None,
        strides=None,
        padding="valid",
        data_format=None,
        keepdims=False,
        p=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        assert self.reduction in _REDUCTIONS
        self.data_format = cu.normalize_data_format(data_format)
        if self.is_global:
            if not isinstance(keepdims, bool):
                raise ValueError(f"`keepdims` must be a bool; received keepdims={keepdims!r}")
            self.keepdims = keepdims
        else:
            rank = self.rank or 1
            self.pool_size = cu.normalize_tuple(pool_size, rank, "pool_size")
            self.strides = (
                self.pool_size if strides is None else cu.normalize_tuple(strides, rank, "strides")
            )
            self.padding = cu.normalize_padding(padding, cu.PADDINGS)
        if self.reduction == "lp":
            self.p = self.fixed_p if self.fixed_p is not None else _validate_p(p)
        self.supports_masking = False
        if self.rank is not None:
            self.input_spec = keras.InputSpec(ndim=self.rank + 2)
        else:
            self.input_spec = keras.InputSpec(min_ndim=2)

    # -- shapes ---------------------------------------------------------------------------------
    def _check_rank(self, input_shape):
        if self.rank is None:
            if len(input_shape) < 2:
                raise ValueError(
                    f"{type(self).__name__} expects inputs of rank >= 2 (batch, ..., channels); "
                    f"received input shape {tuple(input_shape)}"
                )
            return
        cu.check_input_rank(
            type(self).__name__, input_shape, self.rank + 2,
            cu.layout_string(self.rank, self.data_format),
        )

    def build(self, input_shape):
        self._check_rank(input_shape)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        shape = list(input_shape)
        if self.is_global:
            axes = cu.spatial_axes(self.rank, self.data_format)
            if self.keepdims:
                for axis in axes:
                    shape[axis] = 1
                return tuple(shape)
            return tuple(d for i, d in enumerate(shape) if i not in axes)
        axes = (
            [cu.channel_axis(self.data_format) % len(shape)]
            if self.rank is None
            else cu.spatial_axes(self.rank, self.data_format)
        )
        for i, axis in enumerate(axes):
            shape[axis] = cu.output_length(
                input_shape[axis], self.pool_size[i], self.strides[i], self.padding
            )
        return tuple(shape)

    # -- maths ----------------------------------------------------------------------------------
    def call(self, inputs):
        if self.is_global:
            return self._global_pool(inputs)
        if self.reduction == "max":
            return ops.max_pool(inputs, self.pool_size, self.strides, self.padding,
                                self.data_format)
        if self.reduction == "average":
            return ops.average_pool(inputs, self.pool_size, self.strides, self.padding,
                                    self.data_format)
        return pm.lp_window_norm(inputs, self.p, self.pool_size, self.strides, self.padding,
                                 self.data_format)

    def _global_pool(self, inputs):
        axes = cu.spatial_axes(self.rank, self.data_format)
        if self.reduction == "max":
            return ops.max(inputs, axis=axes, keepdims=self.keepdims)
        if self.reduction == "average":
            return ops.mean(inputs, axis=axes, keepdims=self.keepdims)
        return pm.lp_global_norm(inputs, self.p, axes, self.keepdims)

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        if self.is_global:
            config["keepdims"] = self.keepdims
        else:
            config.update(
                {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}
            )
        if self.reduction == "lp" and self.fixed_p is None:
            config["p"] = self.p
        return config


# ---------------------------------------------------------------------------------------------
# Windowed pooling. Shared docs:
_WINDOW_ARGS = """
    Args:
        pool_size: window size (int or {rank}-tuple of ints ≥ 1).
        strides: step between windows (int or {rank}-tuple); ``None`` (default) = ``pool_size``.
        padding: ``"valid"`` (windows inside the input only) or ``"same"`` (output size
            ⌈n / stride⌉; ⌊P/2⌋ padded cells before, the rest after, as in Keras).
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` uses
            ``keras.config.image_data_format()``.

    Input shape:
        {in_shape} (channels_last) or {in_shape_cf} (channels_first).

    Output shape:
        the same with each spatial size n replaced by ⌊(n − k)/s⌋ + 1 (``valid``) or
        ⌈n/s⌉ (``same``).
"""


def _window_doc(rank: int) -> str:
    if rank == 1:
        shapes = {"in_shape": "``(batch, steps, channels)``",
                  "in_shape_cf": "``(batch, channels, steps)``"}
    else:
        shapes = {"in_shape": "``(batch, rows, cols, channels)``",
                  "in_shape_cf": "``(batch, channels, rows, cols)``"}
    return _WINDOW_ARGS.format(rank=rank, **shapes)


def _lp_p_doc() -> str:
    return (
        "        p: the norm order, a finite number ≥ 1 (keyword; default 2). p = 1 sums |x|;\n"
        "            p → ∞ approaches max pooling of |x|.\n"
    )


class _MaxPooling(_Pooling):
    reduction = "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _AveragePooling(_Pooling):
    reduction = "average"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _L2Pooling(_Pooling):
    reduction = "lp"
    fixed_p = 2.0

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _LpPooling(_Pooling):
    reduction = "lp"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, p=2.0,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, p=p, **kwargs)


@keras.saving.register_keras_serializable(package="deepline")
class MaxPooling1D(_MaxPooling):
    __doc__ = """Max pooling over time windows, equal to ``keras.layers.MaxPooling1D``.

    Formula: h[t, c] = max_{u=0..k−1} x[t·s + u − p_left, c] (padded cells never win).
""" + _window_doc(1) + """
    Example:
        >>> import numpy as np
        >>> x = np.array([7, 9, 8, 9, 8, 4], "float32").reshape(1, 6, 1)
        >>> MaxPooling1D(3, strides=1)(x)[0, :, 0].numpy().tolist()
        [9.0, 9.0, 9.0, 9.0]
    """
    rank = 1


@keras.saving.register_keras_serializable(package="deepline")
class MaxPooling2D(_MaxPooling):
    __doc__ = """Max pooling over 2D windows, equal to ``keras.layers.MaxPooling2D``.

    Formula: h[i, j, c] = max_{u,v} x[i·s₁ + u − p_top, j·s₂ + v − p_left, c].
""" + _window_doc(2) + """
    Example:
        >>> import numpy as np
        >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
        >>> MaxPooling2D(2)(x)[0, :, :, 0].numpy().tolist()
        [[5.0, 7.0], [13.0, 15.0]]
    """
    rank = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


@keras.saving.register_keras_serializable(package="deepline")
class AveragePooling1D(_AveragePooling):
    __doc__ = """Average pooling over time windows, equal to ``keras.layers.AveragePooling1D``.

    Formula: h[t, c] = (1/m) Σ_{u} x[t·s + u − p_left, c] where m counts the window's cells that
    lie inside the input (with ``"same"`` the border windows divide by fewer than k — Keras's
    convention).
""" + _window_doc(1) + """
    Example:
        >>> import numpy as np
        >>> x = np.array([7, 9, 8, 9, 8, 4], "float32").reshape(1, 6, 1)
        >>> [round(float(v), 2) for v in AveragePooling1D(3, strides=1)(x)[0, :, 0]]
        [8.0, 8.67, 8.33, 7.0]
    """
    rank = 1


@keras.saving.register_keras_serializable(package="deepline")
class AveragePooling2D(_AveragePooling):
    __doc__ = """Average pooling over 2D windows, equal to ``keras.layers.AveragePooling2D``.

    Formula: h[i, j, c] = (1/m) Σ_{u,v} x[i·s₁ + u − p_top, j·s₂ + v − p_left, c], m = number of
    the window's cells inside the input.
""" + _window_doc(2) + """
    Example:
        >>> import numpy as np
        >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
        >>> AveragePooling2D(2)(x)[0, :, :, 0].numpy().tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    rank = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


@keras.saving.register_keras_serializable(package="deepline")
class L2Pooling1D(_L2Pooling):
    __doc__ = """L2 pooling over time windows: the Euclidean norm of each window.

    Formula: h[t, c] = sqrt( Σ_{u=0}^{k−1} x[t·s + u − p_left, c]² ), padded cells counting as
    0 (so a border output is the norm of the window's valid cells). Computed as
    sqrt(Σ x² + 1e-30): a window of zeros gives 1e-15 with gradient exactly 0.
""" + _window_doc(1) + """
    Example:
        >>> import numpy as np
        >>> x = np.array([3, 4, 0, 0, 1, 0], "float32").reshape(1, 6, 1)
        >>> [round(float(v), 6) for v in L2Pooling1D(2)(x)[0, :, 0]]
        [5.0, 0.0, 1.0]
    """
    rank = 1


@keras.saving.register_keras_serializable(package="deepline")
class L2Pooling2D(_L2Pooling):
    __doc__ = """L2 pooling over 2D windows: the Euclidean norm of each window.

    Formula: h[i, j, c] = sqrt( Σ_{u,v} x[i·s₁ + u − p_top, j·s₂ + v − p_left, c]² ), padded
    cells counting as 0; computed as sqrt(Σ x² + 1e-30), so a zero window gives 1e-15 with
    gradient exactly 0.
""" + _window_doc(2) + """
    Example:
        >>> import numpy as np
        >>> x = np.array([[3, 0], [0, 4]], "float32").reshape(1, 2, 2, 1)
        >>> L2Pooling2D(2)(x)[0, :, :, 0].numpy().tolist()
        [[5.0]]
    """
    rank = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


@keras.saving.register_keras_serializable(package="deepline")
class LpPooling1D(_LpPooling):
    __doc__ = """Lp pooling over time windows (p ≥ 1): the p-norm of each window.

    Formula: h[t, c] = ( Σ_{u=0}^{k−1} |x[t·s + u − p_left, c]|^p )^(1/p), padded cells
    counting as 0; p = 2 is L2 pooling, p → ∞ approaches max pooling of |x|. A zero window
    gives exactly 0 with gradient exactly 0 (p = 2: 1e-15, as L2Pooling1D).
""" + _window_doc(1).replace("\n    Input shape:", _lp_p_doc() + "\n    Input shape:") + """
    Example:
        >>> import numpy as np
        >>> x = np.array([1, -2, 2, 0], "float32").reshape(1, 4, 1)
        >>> [round(float(v), 4) for v in LpPooling1D(2, p=3)(x)[0, :, 0]]
        [2.0801, 2.0]
    """
    rank = 1


@keras.saving.register_keras_serializable(package="deepline")
class LpPooling2D(_LpPooling):
    __doc__ = """Lp pooling over 2D windows (p ≥ 1): the p-norm of each window.

    Formula: h[i, j, c] = ( Σ_{u,v} |x[i·s₁ + u − p_top, j·s₂ + v − p_left, c]|^p )^(1/p),
    padded cells counting as 0; p = 2 is L2 pooling, p → ∞ approaches max pooling of |x|.
""" + _window_doc(2).replace("\n    Input shape:", _lp_p_doc() + "\n    Input shape:") + """
    Example:
        >>> import numpy as np
        >>> x = np.array([[1, 1], [1, 1]], "float32").reshape(1, 2, 2, 1)
        >>> LpPooling2D(2, p=1)(x)[0, :, :, 0].numpy().tolist()
        [[4.0]]
    """
    rank = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 p=2.0, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, p=p, **kwargs)


@keras.saving.register_keras_serializable(package="deepline")
class FeatureL2Pooling(_Pooling):
    """L2 pooling over groups of neighbouring channels (feature maps), at every position.

    Formula: h_j = sqrt( Σ_{k ∈ N(j)} x_k² ), N(j) = channels {j·s − p_front, …, j·s − p_front
    + pool_size − 1}: groups of ``pool_size`` consecutive channels, one every ``strides``
    channels (non-overlapping groups by default). Padded channels (``"same"``) count as 0.
    Computed as sqrt(Σ x² + 1e-30): a group of zeros gives 1e-15 with gradient exactly 0.

    Args:
        pool_size: channels per group (int ≥ 1, default 2).
        strides: step between groups (int ≥ 1); ``None`` (default) = ``pool_size``.
        padding: ``"valid"`` (groups within the channels) or ``"same"``
            (⌈C / strides⌉ groups, zero channels padded as for spatial ``"same"``).
        data_format: where the channel axis is: ``"channels_last"`` (last axis) or
            ``"channels_first"`` (axis 1); ``None`` uses ``keras.config.image_data_format()``.

    Input shape:
        any rank ≥ 2: ``(batch, ..., channels)`` or ``(batch, channels, ...)``.

    Output shape:
        the same with C channels replaced by ⌊(C − pool_size)/strides⌋ + 1 (``valid``) or
        ⌈C/strides⌉ (``same``).

    Example:
        >>> import numpy as np
        >>> x = np.array([[3, 4, 0, 0, 6, 8]], "float32")
        >>> [round(float(v), 6) for v in FeatureL2Pooling(2)(x)[0]]
        [5.0, 0.0, 10.0]
    """

    rank = None
    reduction = "lp"
    fixed_p = 2.0

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)

    def call(self, inputs):
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(inputs, 1, -1) if channels_first else inputs
        channels = x.shape[-1]
        if channels is None:
            raise ValueError(
                "FeatureL2Pooling needs a known channel dimension; received input shape "
                f"{tuple(inputs.shape)}"
            )
        leading = ops.shape(x)[:-1]
        # Each position's channel vector becomes a length-C "sequence" pooled with a 1D window.
        flat = ops.reshape(x, (-1, channels, 1))
        h = pm.lp_window_norm(flat, 2.0, self.pool_size, self.strides, self.padding,
                              "channels_last")
        h = ops.reshape(h, tuple(leading) + (h.shape[1],))
        return ops.moveaxis(h, -1, 1) if channels_first else h


# ---------------------------------------------------------------------------------------------
# Global pooling: the window is the whole feature map.
_GLOBAL_ARGS = """
    Args:
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` uses
            ``keras.config.image_data_format()``.
        keepdims: keep the reduced spatial axes with length 1 (as Keras).{p}

    Input shape:
        {in_shape} (channels_last) or {in_shape_cf} (channels_first).

    Output shape:
        ``(batch, channels)``, or with ``keepdims=True`` the input shape with every spatial
        size set to 1.
"""


def _global_doc(rank: int, with_p: bool = False) -> str:
    p = (
        "\n        p: the norm order, a finite number ≥ 1 (keyword; default 2)." if with_p else ""
    )
    if rank == 1:
        return _GLOBAL_ARGS.format(p=p, in_shape="``(batch, steps, channels)``",
                                   in_shape_cf="``(batch, channels, steps)``")
    return _GLOBAL_ARGS.format(p=p, in_shape="``(batch, rows, cols, channels)``",
                               in_shape_cf="``(batch, channels, rows, cols)``")


class _GlobalPooling(_Pooling):
    is_global = True

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, **kwargs)


class _GlobalLpPooling(_GlobalPooling):
    reduction = "lp"

    def __init__(self, data_format=None, keepdims=False, p=2.0, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, p=p, **kwargs)


@keras.saving.register_keras_serializable(package="deepline")
class GlobalMaxPooling1D(_GlobalPooling):
    __doc__ = """Global max pooling over time, equal to ``keras.layers.GlobalMaxPooling1D``.

    Formula: h[c] = max_t x[t, c].
""" + _global_doc(1) + """
    Example:
        >>> import numpy as np
        >>> GlobalMaxPooling1D()(np.array([[[1.0], [3.0], [2.0]]])).numpy().tolist()
        [[3.0]]
    """
    rank = 1
    reduction = "max"


@keras.saving.register_keras_serializable(package="deepline")
class GlobalMaxPooling2D(_GlobalPooling):
    __doc__ = """Global max pooling over rows and cols, equal to
    ``keras.layers.GlobalMaxPooling2D``.

    Formula: h[c] = max_{i,j} x[i, j, c].
""" + _global_doc(2) + """
    Example:
        >>> import numpy as np
        >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
        >>> GlobalMaxPooling2D(keepdims=True)(x).shape
        TensorShape([1, 1, 1, 1])
    """
    rank = 2
    reduction = "max"


@keras.saving.register_keras_serializable(package="deepline")
class GlobalAveragePooling1D(_GlobalPooling):
    __doc__ = """Global average pooling over time, equal to
    ``keras.layers.GlobalAveragePooling1D`` (without masking).

    Formula: h[c] = (1/T) Σ_t x[t, c].
""" + _global_doc(1) + """
    Example:
        >>> import numpy as np
        >>> GlobalAveragePooling1D()(np.array([[[1.0], [3.0], [2.0]]])).numpy().tolist()
        [[2.0]]
    """
    rank = 1
    reduction = "average"


@keras.saving.register_keras_serializable(package="deepline")
class GlobalAveragePooling2D(_GlobalPooling):
    __doc__ = """Global average pooling over rows and cols, equal to
    ``keras.layers.GlobalAveragePooling2D``.

    Formula: h[c] = (1/(H·W)) Σ_{i,j} x[i, j, c].
""" + _global_doc(2) + """
    Example:
        >>> import numpy as np
        >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
        >>> GlobalAveragePooling2D()(x).numpy().tolist()
        [[1.5]]
    """
    rank = 2
    reduction = "average"


@keras.saving.register_keras_serializable(package="deepline")
class GlobalL2Pooling1D(_GlobalPooling):
    __doc__ = """Global L2 pooling over time: the Euclidean norm of each channel's sequence.

    Formula: h[c] = sqrt( Σ_t x[t, c]² + 1e-30 ); all-zero channels: 1e-15, gradient 0.
""" + _global_doc(1) + """
    Example:
        >>> import numpy as np
        >>> GlobalL2Pooling1D()(np.array([[[3.0], [4.0]]])).numpy().tolist()
        [[5.0]]
    """
    rank = 1
    reduction = "lp"
    fixed_p = 2.0


@keras.saving.register_keras_serializable(package="deepline")
class GlobalL2Pooling2D(_GlobalPooling):
    __doc__ = """Global L2 pooling over rows and cols: the Euclidean norm of each feature map.

    Formula: h[c] = sqrt( Σ_{i,j} x[i, j, c]² + 1e-30 ); all-zero maps: 1e-15, gradient 0.
""" + _global_doc(2) + """
    Example:
        >>> import numpy as np
        >>> x = np.array([[1.0, 1.0], [1.0, 1.0]]).reshape(1, 2, 2, 1)
        >>> GlobalL2Pooling2D()(x).numpy().tolist()
        [[2.0]]
    """
    rank = 2
    reduction = "lp"
    fixed_p = 2.0


@keras.saving.register_keras_serializable(package="deepline")
class GlobalLpPooling1D(_GlobalLpPooling):
    __doc__ = """Global Lp pooling over time (p ≥ 1): the p-norm of each channel's sequence.

    Formula: h[c] = ( Σ_t |x[t, c]|^p )^(1/p); all-zero channels give 0 with gradient 0.
""" + _global_doc(1, with_p=True) + """
    Example:
        >>> import numpy as np
        >>> GlobalLpPooling1D(p=1)(np.array([[[3.0], [-4.0]]])).numpy().tolist()
        [[7.0]]
    """
    rank = 1


@keras.saving.register_keras_serializable(package="deepline")
class GlobalLpPooling2D(_GlobalLpPooling):
    __doc__ = """Global Lp pooling over rows and cols (p ≥ 1): the p-norm of each feature map.

    Formula: h[c] = ( Σ_{i,j} |x[i, j, c]|^p )^(1/p); all-zero maps give 0 with gradient 0.
""" + _global_doc(2, with_p=True) + """
    Example:
        >>> import numpy as np
        >>> x = np.array([[2.0, 0.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)
        >>> GlobalLpPooling2D(p=3)(x).numpy().tolist()
        [[2.0]]
    """
    rank = 2
