"""Pooling family: NumPy references (explicit windows), Keras equality, lecture examples, border
and zero-window conventions, contract checks."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import pooling as P
from tests.layers import checks

# ----------------------------------------------------------------------------------------------
# NumPy references: enumerate every window explicitly and reduce its valid cells.


def _geometry(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(pad_before, out_length) of one axis."""
    if padding == "valid":
        return 0, (n - k) // s + 1
    out = -(-n // s)
    return max((out - 1) * s + k - n, 0) // 2, out


def _reduce(cells: np.ndarray, reduction: str, p: float | None, axes) -> np.ndarray:
    if reduction == "max":
        return cells.max(axis=axes)
    if reduction == "average":  # mean over the valid cells only (Keras's border convention)
        return cells.mean(axis=axes)
    return (np.abs(cells) ** p).sum(axis=axes) ** (1.0 / p)  # padded cells = zeros: skipped


def reference_pool(x, reduction, pool_size, strides, padding, data_format, p=None):
    rank = len(pool_size)
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    spatial = x.shape[1:-1]
    geo = [_geometry(spatial[i], pool_size[i], strides[i], padding) for i in range(rank)]
    out = np.zeros((x.shape[0], *[o for _, o in geo], x.shape[-1]))
    for pos in itertools.product(*[range(o) for _, o in geo]):
        index = []
        for i in range(rank):
            start = pos[i] * strides[i] - geo[i][0]
            index.append(slice(max(start, 0), min(start + pool_size[i], spatial[i])))
        cells = x[(slice(None), *index, slice(None))]
        out[(slice(None), *pos, slice(None))] = _reduce(cells, reduction, p,
                                                        tuple(range(1, rank + 1)))
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


def reference_feature_l2(x, k, s, padding, data_format):
    """h_j = sqrt(Σ_{c ∈ N(j)} x_c²) over groups of channels."""
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    before, out = _geometry(x.shape[-1], k, s, padding)
    groups = []
    for j in range(out):
        start = j * s - before
        cells = x[..., max(start, 0):min(start + k, x.shape[-1])]
        groups.append(np.sqrt((cells**2).sum(axis=-1)))
    h = np.stack(groups, axis=-1)
    return np.moveaxis(h, -1, 1) if data_format == "channels_first" else h


WINDOW_LAYERS = {  # reduction name → (1D class, 2D class, extra kwargs, p)
    "max": (P.MaxPooling1D, P.MaxPooling2D, {}, None),
    "average": (P.AveragePooling1D, P.AveragePooling2D, {}, None),
    "l2": (P.L2Pooling1D, P.L2Pooling2D, {}, 2.0),
    "lp1": (P.LpPooling1D, P.LpPooling2D, {"p": 1}, 1.0),
    "lp3": (P.LpPooling1D, P.LpPooling2D, {"p": 3.0}, 3.0),
}
WINDOW_CONFIGS = [  # (spatial shape, pool_size, strides, padding, data_format)
    ((7,), (3,), (1,), "valid", "channels_last"),
    ((7,), (2,), None, "same", "channels_first"),
    ((8,), (3,), (2,), "same", "channels_last"),
    ((5, 7), (2, 3), (1, 2), "valid", "channels_first"),
    ((5, 7), (3, 3), (2, 2), "same", "channels_last"),
    ((5, 6), (2, 2), None, "same", "channels_first"),
]


def _x(shape, data_format, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    return np.moveaxis(x, -1, 1).copy() if data_format == "channels_first" else x


@pytest.mark.parametrize("reduction", list(WINDOW_LAYERS))
@pytest.mark.parametrize("config", WINDOW_CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}"
                         f"-{c[4][9:]}")
def test_window_pooling_matches_numpy_reference(reduction, config):
    spatial, pool_size, strides, padding, data_format = config
    cls1, cls2, extra, p = WINDOW_LAYERS[reduction]
    cls = cls1 if len(spatial) == 1 else cls2
    x = _x((2, *spatial, 3), data_format)
    layer = cls(pool_size, strides=strides, padding=padding, data_format=data_format, **extra)
    y = keras.ops.convert_to_numpy(layer(x))
    want = reference_pool(x.astype(np.float64), "lp" if p else reduction, pool_size,
                          strides or pool_size, padding, data_format, p)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(x.shape) == y.shape
    if reduction in ("max", "average"):  # and exactly Keras's built-in, borders included
        builtin = getattr(keras.layers, cls.__name__)(pool_size, strides=strides,
                                                      padding=padding, data_format=data_format)
        assert np.max(np.abs(keras.ops.convert_to_numpy(builtin(x)) - y)) <= 1e-6


@pytest.mark.parametrize("pool_size, strides, padding, data_format", [
    (2, None, "valid", "channels_last"),
    (3, 1, "valid", "channels_first"),
    (3, 2, "same", "channels_last"),
    (2, 3, "same", "channels_first"),
])
def test_feature_l2_pooling_matches_numpy_reference(pool_size, strides, padding, data_format):
    x = _x((2, 3, 7), data_format)  # any rank ≥ 2: here (batch, steps, 7 channels)
    layer = P.FeatureL2Pooling(pool_size, strides=strides, padding=padding,
                               data_format=data_format)
    y = keras.ops.convert_to_numpy(layer(x))
    want = reference_feature_l2(x.astype(np.float64), pool_size, strides or pool_size, padding,
                                data_format)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(x.shape) == y.shape
    # rank 2 and rank 4 inputs too
    assert P.FeatureL2Pooling(2)(np.ones((3, 6), "float32")).shape == (3, 3)
    assert P.FeatureL2Pooling(2, data_format="channels_first")(
        np.ones((1, 6, 2, 2), "float32")).shape == (1, 3, 2, 2)


GLOBAL_LAYERS = [  # (class, rank, kwargs, numpy reduction)
    (P.GlobalMaxPooling1D, 1, {}, lambda v, a: v.max(axis=a)),
    (P.GlobalMaxPooling2D, 2, {}, lambda v, a: v.max(axis=a)),
    (P.GlobalAveragePooling1D, 1, {}, lambda v, a: v.mean(axis=a)),
    (P.GlobalAveragePooling2D, 2, {}, lambda v, a: v.mean(axis=a)),
    (P.GlobalL2Pooling1D, 1, {}, lambda v, a: np.sqrt((v**2).sum(axis=a))),
    (P.GlobalL2Pooling2D, 2, {}, lambda v, a: np.sqrt((v**2).sum(axis=a))),
    (P.GlobalLpPooling1D, 1, {"p": 3}, lambda v, a: (np.abs(v) ** 3).sum(axis=a) ** (1 / 3)),
    (P.GlobalLpPooling2D, 2, {"p": 1.5},
     lambda v, a: (np.abs(v) ** 1.5).sum(axis=a) ** (1 / 1.5)),
]


@pytest.mark.parametrize("cls, rank, kwargs, reduce", GLOBAL_LAYERS,
                         ids=[c[0].__name__ for c in GLOBAL_LAYERS])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_matches_numpy_reference(cls, rank, kwargs, reduce, data_format,
                                                keepdims):
    x = _x((2, *(4, 3)[:rank], 3), data_format)
    axes = tuple(range(1, rank + 1)) if data_format == "channels_last" else tuple(
        range(2, rank + 2))
    layer = cls(data_format=data_format, keepdims=keepdims, **kwargs)
    y = keras.ops.convert_to_numpy(layer(x))
    want = reduce(x.astype(np.float64), axes)
    if keepdims:
        want = np.expand_dims(want, axes)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(x.shape) == y.shape
    builtin_name = cls.__name__
    if hasattr(keras.layers, builtin_name):
        builtin = getattr(keras.layers, builtin_name)(data_format=data_format,
                                                      keepdims=keepdims)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(builtin(x)), y, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Worked examples (lecture notes) and conventions.

LECTURE_CONV_OUTPUT = np.array([7, 9, 8, 9, 8, 4], "float32").reshape(1, 6, 1)


def test_lecture_max_pooling():
    y = P.MaxPooling1D(3, strides=1, padding="valid")(LECTURE_CONV_OUTPUT)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y)[0, :, 0], [9, 9, 9, 9])


def test_lecture_average_pooling():
    y = P.AveragePooling1D(3, strides=1, padding="valid")(LECTURE_CONV_OUTPUT)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y)[0, :, 0], [8, 8.67, 8.33, 7],
                               atol=1e-2)


def test_border_convention_same_padding():
    """L2 with "same": padded cells are zeros → the true norm of the window's valid cells.
    Average with "same" divides by the valid cells (Keras), so avg × window ≠ window sum."""
    x = np.array([3, 4, 12], "float32").reshape(1, 3, 1)
    l2 = keras.ops.convert_to_numpy(P.L2Pooling1D(3, strides=1, padding="same")(x))[0, :, 0]
    np.testing.assert_allclose(l2, [5.0, 13.0, np.sqrt(16 + 144)], rtol=1e-6)
    avg = keras.ops.convert_to_numpy(
        P.AveragePooling1D(3, strides=1, padding="same")(x))[0, :, 0]
    np.testing.assert_allclose(avg, [3.5, 19 / 3, 8.0], rtol=1e-6)
    assert not np.allclose(avg * 3, [7.0, 19.0, 16.0])  # the window sums


def test_lp_approaches_max_for_large_p_and_survives_large_inputs():
    x = _x((2, 8, 8, 2), "channels_last", seed=3)
    max_abs = keras.ops.convert_to_numpy(P.MaxPooling2D(2)(np.abs(x)))
    lp = keras.ops.convert_to_numpy(P.LpPooling2D(2, p=64)(x))
    assert np.all(lp >= max_abs * (1 - 1e-5)) and np.all(lp <= max_abs * 4 ** (1 / 64) + 1e-6)
    np.testing.assert_allclose(lp, max_abs, rtol=0.03)
    # |x|^p would overflow float32 (1e3^64) or underflow (1e-3^64): the per-window rescaling
    # keeps it finite and exact, for 1D/"same" windows too
    big = keras.ops.convert_to_numpy(P.LpPooling2D(2, p=64)(x * 1000.0))
    np.testing.assert_allclose(big, lp * 1000.0, rtol=1e-5)
    small = keras.ops.convert_to_numpy(P.LpPooling2D(2, p=64)(x * 1e-3))
    np.testing.assert_allclose(small, lp * 1e-3, rtol=1e-5)
    x1 = x[:, 0]  # (batch, 8 steps, 2 channels)
    huge_p = keras.ops.convert_to_numpy(P.LpPooling1D(3, 2, "same", p=1000)(x1))
    np.testing.assert_allclose(
        huge_p, keras.ops.convert_to_numpy(P.MaxPooling1D(3, 2, "same")(np.abs(x1))), rtol=2e-3)


def test_l2_pooling_under_mixed_float16_does_not_overflow():
    x = np.array([[[300.0], [400.0]]], "float32")  # 300² overflows float16 (max 65504)
    y = P.L2Pooling1D(2, dtype="mixed_float16")(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert float(keras.ops.convert_to_numpy(y)[0, 0, 0]) == 500.0


NORM_LAYERS = [
    P.L2Pooling1D(2, padding="same"),
    P.L2Pooling2D(2),
    P.LpPooling1D(2, p=1),
    P.LpPooling1D(3, strides=1, p=1.5),
    P.LpPooling2D(2, p=3),
    P.FeatureL2Pooling(2),
    P.GlobalL2Pooling1D(),
    P.GlobalL2Pooling2D(),
    P.GlobalLpPooling2D(p=4),
]


@pytest.mark.parametrize("layer", NORM_LAYERS, ids=lambda layer: type(layer).__name__)
def test_zero_window_gives_zero_with_finite_gradient(layer):
    rank = getattr(layer, "rank", None) or 1
    shape = (2, 4, 2) if rank == 1 else (2, 4, 4, 2)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    x[0] = 0.0  # the first example: every window is all zeros
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = layer(xv)
        loss = tf.reduce_sum(y)
    grad = tape.gradient(loss, xv).numpy()
    assert np.all(np.isfinite(grad)), "NaN/Inf gradient"
    np.testing.assert_array_equal(grad[0], 0.0)
    assert np.max(np.abs(y.numpy()[0])) <= 1e-6
    assert np.any(grad[1] != 0.0)
    # the non-zero example still gets the analytic gradient: ∂‖w‖_p/∂x_i = (|x_i|/‖w‖_p)^(p-1)·sgn
    if isinstance(layer, P.GlobalL2Pooling2D):
        norms = np.sqrt((x[1] ** 2).sum(axis=(0, 1)))
        np.testing.assert_allclose(grad[1], x[1] / norms, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# L2 over tiling windows: the hand-written gradient equals autodiff of the plain formula.

@pytest.mark.parametrize("pool_size, strides, padding, data_format, shape, tiled", [
    ((2,), (2,), "valid", "channels_last", (3, 6, 2), (-1, 3, 2, 2)),
    ((3,), (3,), "same", "channels_first", (3, 2, 9), (-1, 2, 3, 3)),
    ((2, 2), (2, 2), "valid", "channels_last", (2, 4, 6, 3), (-1, 2, 2, 3, 2, 3)),
    ((3, 2), (3, 2), "same", "channels_first", (2, 3, 6, 4), (-1, 3, 2, 3, 2, 2)),
    ((2, 2), (1, 1), "valid", "channels_last", (2, 4, 4, 1), None),  # overlapping windows
    ((2, 2), (2, 2), "valid", "channels_last", (2, 5, 4, 1), None),  # 5 rows: one left over
    ((2, 2), (2, 2), "same", "channels_last", (2, 5, 4, 1), None),  # "same" pads a row
])
def test_l2_over_tiling_windows_has_the_autodiff_gradient(pool_size, strides, padding,
                                                          data_format, shape, tiled):
    from layers import _pool_math as pm

    x = np.random.default_rng(5).standard_normal(shape).astype("float32")
    x[0] = 0.0  # zero windows: gradient exactly 0 on both paths
    shapes = pm._tiled_shapes(tf.constant(x), pool_size, strides, data_format)
    assert (shapes and shapes[0]) == tiled
    upstream = np.random.default_rng(6).standard_normal(
        keras.ops.shape(pm.lp_window_norm(x, 2.0, pool_size, strides, padding, data_format)))
    xv = tf.Variable(x)
    with tf.GradientTape(persistent=True) as tape:
        fast = pm.lp_window_norm(xv, 2.0, pool_size, strides, padding, data_format)
        plain = pm.safe_root(pm.window_sum(keras.ops.square(xv), pool_size, strides, padding,
                                           data_format), 2)
        fast_loss = tf.reduce_sum(fast * upstream)
        plain_loss = tf.reduce_sum(plain * upstream)
    np.testing.assert_array_equal(fast.numpy(), plain.numpy())
    fast_grad, plain_grad = tape.gradient(fast_loss, xv), tape.gradient(plain_loss, xv)
    np.testing.assert_allclose(fast_grad.numpy(), plain_grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(fast_grad.numpy()[0], 0.0)


def test_feature_l2_pooling_over_tiling_groups_has_the_analytic_gradient():
    x = np.random.default_rng(7).standard_normal((3, 5, 6)).astype("float32")
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = P.FeatureL2Pooling(3)(xv)  # groups of 3 channels, stride 3: tiling
        loss = tf.reduce_sum(y)
    groups = x.reshape(3, 5, 2, 3)
    norms = np.sqrt((groups ** 2).sum(-1, keepdims=True))
    np.testing.assert_allclose(y.numpy(), norms[..., 0], rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, xv).numpy(),
                               (groups / norms).reshape(x.shape), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Contract checks for every public class (cheapest inputs).

_X1 = np.random.default_rng(1).standard_normal((2, 4, 2)).astype("float32")
_X2 = np.random.default_rng(2).standard_normal((2, 4, 4, 1)).astype("float32")

FACTORIES = {
    "MaxPooling1D": (lambda **kw: P.MaxPooling1D(2, **kw), _X1),
    "MaxPooling2D": (lambda **kw: P.MaxPooling2D(2, padding="same", **kw), _X2),
    "AveragePooling1D": (lambda **kw: P.AveragePooling1D(3, 1, "same", **kw), _X1),
    "AveragePooling2D": (lambda **kw: P.AveragePooling2D(2, **kw), _X2),
    "L2Pooling1D": (lambda **kw: P.L2Pooling1D(3, 1, "same", **kw), _X1),
    "L2Pooling2D": (lambda **kw: P.L2Pooling2D(2, **kw), _X2),
    "LpPooling1D": (lambda **kw: P.LpPooling1D(2, p=3, **kw), _X1),
    "LpPooling2D": (lambda **kw: P.LpPooling2D(3, 1, "same", p=1.5, **kw), _X2),
    "FeatureL2Pooling": (lambda **kw: P.FeatureL2Pooling(2, 1, **kw), _X1),
    "GlobalMaxPooling1D": (lambda **kw: P.GlobalMaxPooling1D(**kw), _X1),
    "GlobalMaxPooling2D": (lambda **kw: P.GlobalMaxPooling2D(keepdims=True, **kw), _X2),
    "GlobalAveragePooling1D": (lambda **kw: P.GlobalAveragePooling1D(**kw), _X1),
    "GlobalAveragePooling2D": (lambda **kw: P.GlobalAveragePooling2D(**kw), _X2),
    "GlobalL2Pooling1D": (lambda **kw: P.GlobalL2Pooling1D(**kw), _X1),
    "GlobalL2Pooling2D": (lambda **kw: P.GlobalL2Pooling2D(**kw), _X2),
    "GlobalLpPooling1D": (lambda **kw: P.GlobalLpPooling1D(p=2.5, **kw), _X1),
    "GlobalLpPooling2D": (lambda **kw: P.GlobalLpPooling2D(keepdims=True, p=3, **kw), _X2),
}


def test_every_public_class_is_covered():
    assert sorted(FACTORIES) == sorted(P.__all__)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_finite_difference_gradients(name):
    make, x = FACTORIES[name]
    checks.check_finite_difference_gradients(make, x, max_entries=12)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_keras_round_trip(name, tmp_path):
    make, x = FACTORIES[name]
    checks.check_keras_round_trip(make, x, tmp_path)
    assert make().supports_masking is False


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


def test_config_round_trip_keeps_p_and_defaults():
    layer = P.LpPooling2D((2, 3), strides=(1, 2), padding="same", p=3.5,
                          data_format="channels_first")
    clone = P.LpPooling2D.from_config(layer.get_config())
    assert (clone.pool_size, clone.strides, clone.padding, clone.p, clone.data_format) == (
        (2, 3), (1, 2), "same", 3.5, "channels_first")
    assert P.MaxPooling2D().get_config()["strides"] == (2, 2)  # strides default = pool_size
    assert "p" not in P.L2Pooling1D().get_config()


# ----------------------------------------------------------------------------------------------
# Bad arguments.

BAD_ARGUMENTS = [
    (P.MaxPooling1D, "pool_size", 0),
    (P.AveragePooling2D, "pool_size", (2, 2, 2)),
    (P.L2Pooling2D, "strides", 0),
    (P.MaxPooling2D, "padding", "causal"),
    (P.AveragePooling1D, "data_format", "NCW"),
    (P.LpPooling1D, "p", 0.5),
    (P.LpPooling2D, "p", float("inf")),
    (P.GlobalLpPooling1D, "p", 0),
    (P.GlobalMaxPooling2D, "keepdims", "yes"),
    (P.FeatureL2Pooling, "pool_size", -1),
    (P.FeatureL2Pooling, "padding", "full"),
    (P.GlobalL2Pooling2D, "data_format", "channels_middle"),
]


@pytest.mark.parametrize("cls, argument, value", BAD_ARGUMENTS,
                         ids=[f"{c.__name__}-{a}-{v}" for c, a, v in BAD_ARGUMENTS])
def test_bad_argument(cls, argument, value):
    checks.check_bad_argument(lambda **kw: cls(**kw), argument, value)


def test_wrong_input_rank_at_build():
    with pytest.raises(ValueError, match=r"rank 4.*\(2, 4, 1\)"):
        P.MaxPooling2D().build((2, 4, 1))
    with pytest.raises(ValueError, match=r"rank 3.*\(2, 4, 4, 1\)"):
        P.GlobalL2Pooling1D().build((2, 4, 4, 1))
    with pytest.raises(ValueError, match=r"rank >= 2.*\(4,\)"):
        P.FeatureL2Pooling().build((4,))
