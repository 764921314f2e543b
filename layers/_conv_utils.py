"""Argument validation and window arithmetic shared by the convolution and pooling layers.

Private module: the public layers live in ``layers.conv`` and ``layers.pooling``.

Window arithmetic (one spatial axis of length n, window k, stride s, dilation d):

* effective window  k_eff = d·(k − 1) + 1
* ``valid``:  out = ⌊(n − k_eff) / s⌋ + 1            (no padding)
* ``same``:   out = ⌈n / s⌉, total padding P = max((out − 1)·s + k_eff − n, 0),
              ⌊P/2⌋ cells before and ⌈P/2⌉ after (TensorFlow's and Keras's convention)
* ``causal``: out = n (stride 1), k_eff − 1 cells before, none after (1D convolution only)
"""

from __future__ import annotations

import math
import numbers

import keras

PADDINGS_CONV_1D = ("valid", "same", "causal")
PADDINGS = ("valid", "same")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def normalize_tuple(value, rank: int, name: str) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``rank`` ints, all ≥ 1) as a tuple of ``rank`` ints.

    Raises ValueError naming ``name`` and the received value otherwise.
    """
    if _is_int(value):
        values = (int(value),) * rank
    else:
        try:
            values = tuple(value)
        except TypeError:
            values = None
        if values is None or len(values) != rank or not all(_is_int(v) for v in values):
            raise ValueError(
                f"`{name}` must be a positive int or a tuple of {rank} positive ints; "
                f"received {name}={value!r}"
            )
        values = tuple(int(v) for v in values)
    if any(v < 1 for v in values):
        raise ValueError(f"`{name}` values must all be >= 1; received {name}={value!r}")
    return values


def normalize_padding(value, allowed: tuple[str, ...], name: str = "padding") -> str:
    """Lower-cased padding mode, checked against ``allowed``."""
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; "
            f"received {name}={value!r}"
        )
    return padding


def normalize_data_format(value) -> str:
    """``channels_last``/``channels_first``; ``None`` → ``keras.config.image_data_format()``."""
    if value is None:
        return keras.config.image_data_format()
    data_format = value.lower() if isinstance(value, str) else value
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be 'channels_last', 'channels_first' or None; "
            f"received data_format={value!r}"
        )
    return data_format


def positive_int(value, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}")
    return int(value)


def check_input_rank(layer_name: str, input_shape, expected_rank: int, layout: str) -> None:
    """Raise ValueError naming the expected rank and the received shape."""
    if len(input_shape) != expected_rank:
        raise ValueError(
            f"{layer_name} expects inputs of rank {expected_rank} ({layout}); "
            f"received input shape {tuple(input_shape)}"
        )


def output_length(n, k: int, stride: int, padding: str, dilation: int = 1):
    """Output length of one spatial axis (``None`` stays ``None``)."""
    if n is None:
        return None
    k_eff = dilation * (k - 1) + 1
    if padding == "valid":
        return max((n - k_eff) // stride + 1, 0)
    if padding == "same":
        return -(-n // stride)
    if padding == "causal":
        return -(-n // stride)
    raise ValueError(f"unknown padding {padding!r}")


def same_padding_amounts(n: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) zero cells that ``padding="same"`` adds to an axis of static length n."""
    k_eff = dilation * (k - 1) + 1
    out = math.ceil(n / stride)
    total = max((out - 1) * stride + k_eff - n, 0)
    return total // 2, total - total // 2


def spatial_axes(rank: int, data_format: str) -> list[int]:
    """Axes of the ``rank`` spatial dimensions of a (batch, ..., channels) tensor."""
    if data_format == "channels_last":
        return list(range(1, rank + 1))
    return list(range(2, rank + 2))


def channel_axis(data_format: str) -> int:
    return -1 if data_format == "channels_last" else 1


def layout_string(rank: int, data_format: str) -> str:
    spatial = {1: "steps", 2: "rows, cols", 3: "dim1, dim2, dim3"}[rank]
    if data_format == "channels_last":
        return f"batch, {spatial}, channels"
    return f"batch, channels, {spatial}"
