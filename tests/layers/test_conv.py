"""Conv1D / Conv2D: NumPy reference (direct loops), Keras equality, worked examples, contract."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from layers.conv import Conv1D, Conv2D
from tests.layers import checks

# ----------------------------------------------------------------------------------------------
# NumPy reference: explicit loops over output positions, kernel taps and channels.


def _pads(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int, int]:
    """(pad_before, pad_after, out_length) for one axis, computed from first principles."""
    k_eff = d * (k - 1) + 1
    if padding == "valid":
        return 0, 0, (n - k_eff) // s + 1
    if padding == "causal":
        return k_eff - 1, 0, (n - 1) // s + 1
    out = -(-n // s)
    total = max((out - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2, out


def reference_conv(x, kernel, bias, strides, padding, dilation, groups, data_format):
    """Correlation y[o, f] = b[f] + Σ_u Σ_{c ∈ group(f)} x[o·s + u·d − pad, c] W[u, c, f]."""
    rank = kernel.ndim - 2
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    batch, *spatial, channels = x.shape
    ksize = kernel.shape[:rank]
    filters = kernel.shape[-1]
    cin_g, fout_g = channels // groups, filters // groups
    geo = [_pads(spatial[i], ksize[i], strides[i], dilation[i], padding) for i in range(rank)]
    padded = np.pad(x, [(0, 0)] + [(b, a) for b, a, _ in geo] + [(0, 0)])
    out_shape = [o for _, _, o in geo]
    y = np.zeros([batch, *out_shape, filters], dtype=np.float64)
    for pos in itertools.product(*[range(o) for o in out_shape]):
        for taps in itertools.product(*[range(k) for k in ksize]):
            idx = tuple(pos[i] * strides[i] + taps[i] * dilation[i] for i in range(rank))
            window = padded[(slice(None), *idx)]  # (batch, channels)
            for f in range(filters):
                g = f // fout_g
                for c in range(cin_g):
                    y[(slice(None), *pos, f)] += (
                        window[:, g * cin_g + c] * kernel[(*taps, c, f)]
                    )
    if bias is not None:
        y += bias
    if data_format == "channels_first":
        y = np.moveaxis(y, -1, 1)
    return y


CASES = [
    # (cls, input shape (channels_last), kwargs)
    (Conv1D, (2, 9, 4), dict(filters=3, kernel_size=3)),
    (Conv1D, (2, 9, 4), dict(filters=3, kernel_size=3, padding="same", strides=2)),
    (Conv1D, (2, 9, 4), dict(filters=4, kernel_size=2, padding="causal", dilation_rate=3,
                             groups=2)),
    (Conv1D, (2, 8, 3), dict(filters=2, kernel_size=4, padding="causal", strides=3,
                             data_format="channels_first")),
    (Conv2D, (2, 6, 5, 2), dict(filters=3, kernel_size=(3, 2))),
    (Conv2D, (2, 7, 6, 4), dict(filters=2, kernel_size=3, padding="same", strides=(2, 3),
                                groups=2)),
    (Conv2D, (1, 7, 7, 3), dict(filters=2, kernel_size=(2, 3), padding="same",
                                dilation_rate=(2, 1), data_format="channels_first",
                                use_bias=False)),
]


def _input(shape, kwargs, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    if kwargs.get("data_format") == "channels_first":
        x = np.moveaxis(x, -1, 1).copy()
    return x


def _case_id(case):
    cls, _, kw = case
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_numpy_reference_and_keras(case):
    cls, shape, kwargs = case
    x = _input(shape, kwargs)
    layer = cls(bias_initializer="random_normal", **kwargs)
    y = keras.ops.convert_to_numpy(layer(x))
    weights = layer.get_weights()
    bias = weights[1] if len(weights) > 1 else None
    rank = 1 if cls is Conv1D else 2
    norm = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)  # noqa: E731
    want = reference_conv(
        x.astype(np.float64), weights[0].astype(np.float64), bias,
        norm(kwargs.get("strides", 1)), kwargs.get("padding", "valid"),
        norm(kwargs.get("dilation_rate", 1)), kwargs.get("groups", 1),
        kwargs.get("data_format", "channels_last"),
    )
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape(x.shape) == y.shape

    # Same weights in Keras's own layer give the same numbers (max abs diff ≤ 1e-5).
    # (TensorFlow's CPU kernels lack channels_first convolutions: compare those channels_last.)
    keras_kwargs = dict(kwargs, data_format="channels_last")
    x_last = np.moveaxis(x, 1, -1) if kwargs.get("data_format") == "channels_first" else x
    y_last = np.moveaxis(y, 1, -1) if kwargs.get("data_format") == "channels_first" else y
    keras_layer = getattr(keras.layers, cls.__name__)(**keras_kwargs)
    keras_layer.build(x_last.shape)
    keras_layer.set_weights(weights)
    assert np.max(np.abs(keras.ops.convert_to_numpy(keras_layer(x_last)) - y_last)) <= 1e-5
    # ... and weights go the other way too (same layout).
    ours = cls(**kwargs)
    ours.build(x.shape)
    ours.set_weights(keras_layer.get_weights())
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in keras_layer.get_weights()]


def test_activation_and_regularizer_as_in_keras():
    x = _input((2, 5, 5, 2), {})
    ours = Conv2D(3, 2, activation="relu", kernel_regularizer=keras.regularizers.L2(0.1))
    theirs = keras.layers.Conv2D(3, 2, activation="relu",
                                 kernel_regularizer=keras.regularizers.L2(0.1))
    theirs.build(x.shape)
    ours.build(x.shape)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)),
                               keras.ops.convert_to_numpy(theirs(x)), atol=1e-6)
    assert keras.ops.convert_to_numpy(ours(x)).min() >= 0.0
    np.testing.assert_allclose(float(sum(ours.losses)), float(sum(theirs.losses)), rtol=1e-6)


def test_causal_output_ignores_the_future():
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = _input((1, 10, 1), {})
    y = keras.ops.convert_to_numpy(layer(x))
    x2 = x.copy()
    x2[:, 6:] = 100.0  # change only steps ≥ 6
    y2 = keras.ops.convert_to_numpy(layer(x2))
    np.testing.assert_array_equal(y[:, :6], y2[:, :6])
    assert not np.allclose(y[:, 6:], y2[:, 6:])


# ----------------------------------------------------------------------------------------------
# Worked examples from the lecture notes.


def test_lecture_1d_example_same_padding():
    layer = Conv1D(1, 3, padding="same", use_bias=False)
    layer.build((None, 6, 1))
    layer.set_weights([np.array([1.0, 2.0, 1.0], "float32").reshape(3, 1, 1)])
    x = np.array([2, 3, 1, 3, 2, 1], "float32").reshape(1, 6, 1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x))[0, :, 0],
                                  [7, 9, 8, 9, 8, 4])


def test_lecture_2d_example_valid():
    image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
                      [0, 1, 1, 0, 0]], "float32")
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], "float32")
    layer = Conv2D(1, 3, use_bias=False)
    layer.build((None, 5, 5, 1))
    layer.set_weights([kernel.reshape(3, 3, 1, 1)])
    y = keras.ops.convert_to_numpy(layer(image.reshape(1, 5, 5, 1)))[0, :, :, 0]
    np.testing.assert_array_equal(y, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


# ----------------------------------------------------------------------------------------------
# Contract checks (shared helpers).

FACTORIES = {
    "Conv1D": (lambda **kw: Conv1D(2, 2, padding="causal", **kw),
               np.random.default_rng(1).standard_normal((2, 5, 2)).astype("float32")),
    "Conv2D": (lambda **kw: Conv2D(2, 2, padding="same", activation="tanh", **kw),
               np.random.default_rng(2).standard_normal((2, 4, 4, 2)).astype("float32")),
}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_finite_difference_gradients(name):
    make, x = FACTORIES[name]
    checks.check_finite_difference_gradients(make, x, max_entries=12)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_keras_round_trip(name, tmp_path):
    make, x = FACTORIES[name]
    checks.check_keras_round_trip(make, x, tmp_path)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_saved_model_export(name, tmp_path):
    make, x = FACTORIES[name]
    checks.check_saved_model_export(make, x, tmp_path)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_mixed_float16(name):
    make, x = FACTORIES[name]
    checks.check_mixed_float16(make, x)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_jit_compile(name):
    make, x = FACTORIES[name]
    checks.check_jit_compile(make, x)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_mirrored_fit(name):
    make, x = FACTORIES[name]
    checks.check_mirrored_fit(make, x)


def test_config_round_trip_keeps_every_argument():
    layer = Conv1D(4, 3, strides=1, padding="causal", dilation_rate=2, groups=2,
                   activation="relu", use_bias=False, kernel_regularizer="l2",
                   kernel_constraint="non_neg", data_format="channels_first")
    clone = Conv1D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert (clone.padding, clone.dilation_rate, clone.groups, clone.data_format) == (
        "causal", (2,), 2, "channels_first")
    assert clone.supports_masking is False


# ----------------------------------------------------------------------------------------------
# Bad arguments: ValueError naming the argument and the received value.

BAD_ARGUMENTS = [
    (Conv1D, "filters", 0),
    (Conv1D, "kernel_size", 0),
    (Conv2D, "kernel_size", (3, 3, 3)),
    (Conv2D, "strides", -1),
    (Conv1D, "padding", "full"),
    (Conv2D, "padding", "causal"),
    (Conv2D, "dilation_rate", 0),
    (Conv1D, "data_format", "NHWC"),
    (Conv2D, "groups", 0),
    (Conv2D, "use_bias", "yes"),
]


@pytest.mark.parametrize("cls, argument, value", BAD_ARGUMENTS,
                         ids=[f"{c.__name__}-{a}-{v}" for c, a, v in BAD_ARGUMENTS])
def test_bad_argument(cls, argument, value):
    kwargs = {"filters": 2, "kernel_size": 3}
    kwargs.pop(argument, None)
    checks.check_bad_argument(lambda **kw: cls(**kw), argument, value, **kwargs)


def test_incompatible_arguments():
    with pytest.raises(ValueError, match="groups=3"):
        Conv1D(4, 3, groups=3)
    with pytest.raises(ValueError, match="dilation_rate"):
        Conv2D(4, 3, strides=2, dilation_rate=2)


def test_wrong_input_rank_and_channels_at_build():
    with pytest.raises(ValueError, match=r"rank 3.*\(2, 4, 4, 1\)"):
        Conv1D(2, 3).build((2, 4, 4, 1))
    with pytest.raises(ValueError, match=r"rank 4.*\(2, 4, 1\)"):
        Conv2D(2, 3).build((2, 4, 1))
    with pytest.raises(ValueError, match="groups=2"):
        Conv2D(2, 3, groups=2).build((2, 4, 4, 3))
