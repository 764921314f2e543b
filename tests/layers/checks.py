"""Contract checks every public layer passes (ARCHITECTURE.md, "layers/ contract").

Each check takes ``make_layer(**kwargs)`` — a factory building a *fresh* layer (extra kwargs such
as ``dtype`` are forwarded) — and a NumPy input batch. They return nothing and raise
AssertionError with a specific message on failure.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

LayerFactory = Callable[..., keras.layers.Layer]


def _functional_model(make_layer: LayerFactory, x: np.ndarray, **layer_kwargs) -> keras.Model:
    inputs = keras.Input(shape=x.shape[1:], batch_size=None, dtype=str(x.dtype))
    outputs = make_layer(**layer_kwargs)(inputs)
    return keras.Model(inputs, outputs)


def _as_numpy(value) -> np.ndarray:
    return keras.ops.convert_to_numpy(value)


def check_finite_difference_gradients(
    make_layer: LayerFactory,
    x: np.ndarray,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    max_entries: int = 24,
    seed: int = 0,
    call_kwargs: dict | None = None,
) -> None:
    """Autodiff gradients of L = Σ r ⊙ layer(x) against central differences, in float64.

    Checks ∂L/∂x and ∂L/∂w for every trainable weight w, on up to ``max_entries`` randomly chosen
    entries of each: (L(θ + ε e_i) − L(θ − ε e_i)) / 2ε.
    """
    call_kwargs = call_kwargs or {}
    rng = np.random.default_rng(seed)
    layer = make_layer(dtype="float64")
    x = tf.Variable(x.astype(np.float64))
    out = layer(x, **call_kwargs)
    r = tf.constant(rng.standard_normal(out.shape), dtype=tf.float64)

    def loss() -> tf.Tensor:
        return tf.reduce_sum(r * tf.cast(layer(x, **call_kwargs), tf.float64))

    params = [x, *layer.trainable_variables]
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, params)
    for p, g in zip(params, grads, strict=True):
        assert g is not None, f"no gradient reaches {p.name}"
        g = _as_numpy(g)
        flat_size = int(np.prod(p.shape))
        picks = rng.choice(flat_size, size=min(max_entries, flat_size), replace=False)
        original = _as_numpy(p).copy()
        for flat in picks:
            idx = np.unravel_index(flat, p.shape)
            plus, minus = original.copy(), original.copy()
            plus[idx] += eps
            minus[idx] -= eps
            p.assign(plus)
            l_plus = float(loss())
            p.assign(minus)
            l_minus = float(loss())
            p.assign(original)
            numeric = (l_plus - l_minus) / (2 * eps)
            np.testing.assert_allclose(
                g[idx], numeric, rtol=rtol, atol=atol,
                err_msg=f"gradient of {p.name} at {idx}: autodiff vs central difference",
            )


def check_keras_round_trip(make_layer: LayerFactory, x: np.ndarray, tmp_path) -> None:
    """`.keras` save → load (no custom_objects: the layer is registered) gives identical outputs,
    and ``from_config(get_config())`` rebuilds an equal config."""
    layer = make_layer()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config, "get_config/from_config round trip changed the config"

    model = _functional_model(make_layer, x)
    expected = _as_numpy(model(x))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_as_numpy(reloaded(x)), expected)


def check_saved_model_export(make_layer: LayerFactory, x: np.ndarray, tmp_path) -> None:
    """`model.export()` → `tf.saved_model.load` (plain TF, no project code) gives equal outputs."""
    model = _functional_model(make_layer, x)
    expected = _as_numpy(model(x))
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    got = reloaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def check_mixed_float16(make_layer: LayerFactory, x: np.ndarray, *, rtol: float = 2e-2,
                        atol: float = 2e-2) -> None:
    """Under the ``mixed_float16`` policy: float32 variables, float16 compute and output, and
    outputs close to the float32 layer with the same weights."""
    reference = make_layer()
    ref_out = _as_numpy(reference(x))
    layer = make_layer(dtype="mixed_float16")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16", f"output dtype {out.dtype}"
    for v in layer.weights:  # float state is float32; integer state (e.g. KSparse's k) is kept
        dtype = keras.backend.standardize_dtype(v.dtype)
        assert dtype == "float32" or "int" in dtype, f"{v.path} is {v.dtype}"
    layer.set_weights(reference.get_weights())
    np.testing.assert_allclose(_as_numpy(layer(x)).astype(np.float32), ref_out, rtol=rtol,
                               atol=atol)


def _target_for(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.zeros_like(_as_numpy(model(x)), dtype=np.float32)


def check_jit_compile(make_layer: LayerFactory, x: np.ndarray) -> None:
    """XLA (`jit_compile=True`) inference equals eager, and an XLA training step runs."""
    model = _functional_model(make_layer, x)
    eager = _as_numpy(model(x))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), eager, rtol=1e-5, atol=1e-5)
    loss = model.train_on_batch(x, _target_for(model, x))
    assert np.isfinite(loss), f"XLA training step gave loss {loss}"


def check_mirrored_fit(make_layer: LayerFactory, x: np.ndarray) -> None:
    """One `fit` step under MirroredStrategy on two logical CPUs changes the weights to the same
    values a single-device step gives (the batch is split across replicas, gradients summed)."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "tests/conftest.py must create two logical CPU devices"
    keras.utils.set_random_seed(0)
    single = _functional_model(make_layer, x)
    initial = single.get_weights()
    y = _target_for(single, x)
    single.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    single.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)

    # ReductionToOneDevice: the default collective all-reduce reuses instance keys, so a second
    # MirroredStrategy in one process fails ("Shape mismatch in the collective instance").
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    with strategy.scope():
        mirrored = _functional_model(make_layer, x)
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = mirrored.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    for got, want in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def check_bad_argument(make_layer: LayerFactory, argument: str, value, **kwargs) -> None:
    """Constructing with ``argument=value`` raises ValueError naming the argument and the value."""
    import pytest

    with pytest.raises(ValueError) as info:
        make_layer(**{argument: value}, **kwargs)
    message = str(info.value)
    assert argument in message, f"error {message!r} does not name {argument!r}"
    assert repr(value) in message or str(value) in message, (
        f"error {message!r} does not show the received value {value!r}"
    )
