"""KSparse, KSparseAutoencoder, KSparseSchedule (Makhzani & Frey 2013) against NumPy references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import KSparse, KSparseAutoencoder, KSparseSchedule
from tests.layers import checks

# ----------------------------------------------------------------------------------- references


def np_top_k(z: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest entries of each row (last axis); ties: the lower index wins."""
    z = np.asarray(z)
    flat = z.reshape(-1, z.shape[-1])
    out = np.zeros_like(flat)
    for row, values in enumerate(flat):
        order = sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]
        out[row, order] = values[order]
    return out.reshape(z.shape)


def np_inference_k(k: int, alpha: float, units: int) -> int:
    return min(units, int(np.round(alpha * k)))


def np_autoencoder(x, kernel, bias, decoder_bias, k, decoder_kernel=None):
    z = np_top_k(x @ kernel + bias, k)
    decoder = kernel.T if decoder_kernel is None else decoder_kernel
    return z, z @ decoder + decoder_bias


def distinct_inputs(shape, seed=0, gap=0.5) -> np.ndarray:
    """Rows of shuffled, evenly spaced values: no (near) ties, so top-k is locally constant."""
    rng = np.random.default_rng(seed)
    rows, units = int(np.prod(shape[:-1])), shape[-1]
    base = (np.arange(units) - units / 2) * gap
    return np.stack([rng.permutation(base) for _ in range(rows)]).reshape(shape).astype("float32")


def ae_factory(**defaults):
    def make(**kwargs):
        return KSparseAutoencoder(**{**defaults, **kwargs})
    return make


def check_mixed_float16_int_state(make_layer, x, *, rtol=2e-2, atol=2e-2):
    """checks.check_mixed_float16, except that integer state (KSparse's int32 ``k``) stays int32:
    the shared check asserts *every* weight is float32."""
    reference = make_layer()
    ref_out = keras.ops.convert_to_numpy(reference(x))
    layer = make_layer(dtype="mixed_float16")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    for v in layer.weights:
        expected = "int32" if v.name == "k" else "float32"
        assert keras.backend.standardize_dtype(v.dtype) == expected, f"{v.path} is {v.dtype}"
    layer.set_weights(reference.get_weights())
    got = keras.ops.convert_to_numpy(layer(x)).astype(np.float32)
    np.testing.assert_allclose(got, ref_out, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------ KSparse: values


def test_worked_example_with_ties():
    x = np.array([[3.0, 5.0, 3.0, 3.0, -1.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0],
                  [-2.0, 4.0, 4.0, 1.0, 4.0]], dtype="float32")
    layer = KSparse(k=2, alpha=1.6)
    np.testing.assert_array_equal(
        layer(x, training=True),
        [[3, 5, 0, 0, 0], [0, 0, 0, 0, 0], [0, 4, 4, 0, 0]],
    )
    # inference keeps round(1.6 * 2) = 3 units
    np.testing.assert_array_equal(
        layer(x, training=False),
        [[3, 5, 3, 0, 0], [0, 0, 0, 0, 0], [0, 4, 4, 0, 4]],
    )
    assert layer.inference_k == 3
    # dropped units are +0 (not -0): the output is where(mask, z, 0)
    dropped = keras.ops.convert_to_numpy(layer(-np.ones((1, 5)), training=True))[0, 2:]
    assert not np.signbit(dropped).any()


@pytest.mark.parametrize("k,alpha", [(1, 1.0), (3, 1.0), (3, 2.5), (4, 3.0)])
def test_matches_numpy_reference_with_ties(k, alpha):
    rng = np.random.default_rng(k)
    x = rng.integers(-3, 4, size=(2, 5, 9)).astype("float32")  # many ties, rank-3 input
    layer = KSparse(k=k, alpha=alpha)
    np.testing.assert_array_equal(layer(x, training=True), np_top_k(x, k))
    np.testing.assert_array_equal(layer(x), np_top_k(x, np_inference_k(k, alpha, 9)))
    kept = (keras.ops.convert_to_numpy(layer(x + 10.0, training=True)) != 0).sum(-1)
    np.testing.assert_array_equal(kept, k)


@pytest.mark.parametrize("units,k", [(1000, 25), (1000, 500), (4096, 32), (64, 63)])
@pytest.mark.parametrize("jit", [False, True])
def test_ties_at_full_size_keep_the_lower_index(units, k, jit):
    """The unsorted top_k at the paper's sizes (other selection algorithms than the small rows
    above) still keeps, among equal values, the lower indices."""
    z = np.random.default_rng(units + k).integers(-3, 4, size=(32, units)).astype("float32")
    layer = KSparse(k=k)
    call = tf.function(lambda t: layer(t, training=True), jit_compile=jit)
    np.testing.assert_array_equal(call(tf.constant(z)).numpy(), np_top_k(z, k))


@pytest.mark.parametrize("k", [1, 7, 25, 99, 100])
def test_rank_mask_equals_the_top_k_mask(k):
    """JAX's path (ranks from a full sort, k a tensor) keeps the same units, ties included."""
    from layers.ksparse import rank_mask, top_k_mask

    z = np.random.default_rng(k).integers(-3, 4, size=(16, 100)).astype("float32")
    ranked = tf.function(rank_mask)(tf.constant(z), tf.constant(k))
    np.testing.assert_array_equal(ranked.numpy(), top_k_mask(tf.constant(z), k).numpy())
    np.testing.assert_array_equal(ranked.numpy(), np_top_k(z + 10.0, k) != 0)


def test_inference_k_is_capped_at_units_and_rounds_half_to_even():
    x = distinct_inputs((3, 6))
    np.testing.assert_array_equal(KSparse(k=4, alpha=2.0)(x), x)  # min(6, 8) = 6: identity
    assert KSparse(k=5, alpha=1.5).inference_k == 8  # 7.5 → 8 (half to even)
    layer = KSparse(k=5, alpha=1.3)
    layer.build((None, 6))
    assert layer.inference_k == 6


def test_gradient_is_upstream_on_kept_units_and_exactly_zero_elsewhere():
    x = tf.constant(np.random.default_rng(1).standard_normal((4, 12)).astype("float32"))
    upstream = tf.constant(np.random.default_rng(2).standard_normal((4, 12)).astype("float32"))
    layer = KSparse(k=3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * upstream)
    grad = tape.gradient(loss, x).numpy()
    kept = np_top_k(x.numpy(), 3) != 0
    np.testing.assert_array_equal(grad[kept], upstream.numpy()[kept])
    assert np.all(grad[~kept] == 0.0)
    assert kept.sum() == 4 * 3


def test_finite_difference_gradients():
    x = distinct_inputs((3, 7), seed=3)
    checks.check_finite_difference_gradients(lambda **kw: KSparse(k=3, **kw), x,
                                             call_kwargs={"training": True})


# ---------------------------------------------------------------------- KSparse: mutable k


def test_k_changes_between_calls_without_retracing():
    layer = KSparse(k=3, alpha=2.0)
    x = distinct_inputs((2, 10), seed=4)
    layer.build(x.shape)  # variables are created outside the traced function

    @tf.function
    def step(inputs):
        return layer(inputs, training=True), layer(inputs, training=False)

    for k in (3, 5, 1, 4):
        layer.k = k
        train, infer = step(tf.constant(x))
        np.testing.assert_array_equal(train, np_top_k(x, k))
        np.testing.assert_array_equal(infer, np_top_k(x, min(10, 2 * k)))
    assert step.experimental_get_tracing_count() == 1
    assert layer.k == 4 and layer.get_config()["k"] == 4


def test_k_setter_and_build_validation():
    layer = KSparse(k=3)
    layer.k = 12  # unbuilt: units unknown yet
    with pytest.raises(ValueError, match=r"k.*12"):
        layer(np.zeros((1, 5), "float32"))
    layer = KSparse(k=3)
    layer.build((None, 5))
    with pytest.raises(ValueError, match=r"k=6"):
        layer.k = 6
    with pytest.raises(ValueError, match=r"k=0"):
        layer.k = 0
    assert layer.k == 3


@pytest.mark.parametrize("argument,value", [("k", 0), ("k", -2), ("k", 2.5), ("alpha", 0.5),
                                            ("alpha", -1)])
def test_bad_arguments(argument, value):
    kwargs = {"k": 2, "alpha": 1.0}
    kwargs.pop(argument)
    checks.check_bad_argument(lambda **kw: KSparse(**kw), argument, value, **kwargs)


# ---------------------------------------------------------------- KSparse: contract checks


def test_keras_round_trip_and_saved_model(tmp_path):
    x = np.random.default_rng(5).standard_normal((3, 8)).astype("float32")
    make = lambda **kw: KSparse(k=3, alpha=2.0, **kw)  # noqa: E731
    checks.check_keras_round_trip(make, x, tmp_path)
    checks.check_saved_model_export(make, x, tmp_path)
    reloaded_layer = KSparse.from_config(make().get_config())
    assert (reloaded_layer.k, reloaded_layer.alpha) == (3, 2.0)


def test_mixed_float16_jit_and_mirrored():
    x = distinct_inputs((4, 8), seed=6)
    make = lambda **kw: KSparse(k=3, alpha=1.5, **kw)  # noqa: E731
    check_mixed_float16_int_state(make, x)
    checks.check_jit_compile(make, x)
    checks.check_mirrored_fit(make, x)


# --------------------------------------------------------------------------- autoencoder


@pytest.mark.parametrize("tied", [True, False])
def test_autoencoder_forward_and_loss_match_numpy(tied):
    rng = np.random.default_rng(7)
    x = rng.random((5, 6)).astype("float32")
    ae = KSparseAutoencoder(units=8, k=2, alpha=2.0, tied_weights=tied,
                            bias_initializer=keras.initializers.RandomNormal(seed=1))
    ae.build((None, 6))
    names = [v.name for v in ae.trainable_weights]
    assert names == (["kernel", "bias", "decoder_bias"] if tied
                     else ["kernel", "bias", "decoder_kernel", "decoder_bias"])
    weights = {v.name: keras.ops.convert_to_numpy(v) for v in ae.trainable_weights}
    w, b, b_dec = weights["kernel"], weights["bias"], weights["decoder_bias"]
    w_dec = weights.get("decoder_kernel")

    code, recon = np_autoencoder(x, w, b, b_dec, 2, w_dec)
    np.testing.assert_allclose(ae(x, training=True), recon, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ae.encode(x, training=True), code, rtol=1e-5, atol=1e-6)
    code4, _ = np_autoencoder(x, w, b, b_dec, 4, w_dec)  # encoding at inference: alpha·k = 4
    np.testing.assert_allclose(ae.encode(x), code4, rtol=1e-5, atol=1e-6)
    assert ((keras.ops.convert_to_numpy(ae.encode(x)) != 0).sum(-1) == 4).all()
    # the reconstruction uses k units in inference too
    np.testing.assert_allclose(ae(x), recon, rtol=1e-5, atol=1e-6)

    ae.compile(optimizer="sgd", loss="mse")
    np.testing.assert_allclose(ae.evaluate(x, x, verbose=0), np.mean((x - recon) ** 2),
                               rtol=1e-5)
    # fit(x) with no target reconstructs x
    before = ae.get_weights()
    loss = ae.train_on_batch(x)
    np.testing.assert_allclose(loss, np.mean((x - recon) ** 2), rtol=1e-5)
    assert not np.allclose(ae.get_weights()[0], before[0])


def test_autoencoder_gradient_matches_numpy_and_finite_differences():
    rng = np.random.default_rng(8)
    x = rng.random((4, 5)).astype("float32")
    ae = KSparseAutoencoder(units=6, k=2)
    ae.build((None, 5))
    w, b, b_dec = (keras.ops.convert_to_numpy(v) for v in ae.trainable_weights)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.reduce_sum((ae(x, training=True) - x) ** 2, -1))
    grads = [g.numpy() for g in tape.gradient(loss, ae.trainable_weights)]
    # hand-derived: r = x̂ − x; dL/dx̂ = 2r/n; dL/dz' = dL/dx̂ W; dL/dz = mask ⊙ dL/dz'
    z, recon = np_autoencoder(x, w, b, b_dec, 2)
    mask = z != 0
    d_recon = 2 * (recon - x) / len(x)
    d_z = mask * (d_recon @ w)
    np.testing.assert_allclose(grads[0], x.T @ d_z + d_recon.T @ z, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], d_z.sum(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[2], d_recon.sum(0), rtol=1e-4, atol=1e-6)
    checks.check_finite_difference_gradients(
        ae_factory(units=6, k=2, bias_initializer=keras.initializers.RandomNormal(seed=2)),
        x, call_kwargs={"training": True}, max_entries=10,
    )


def test_autoencoder_keras_round_trip_keeps_config_and_k(tmp_path):
    x = np.random.default_rng(9).random((4, 6)).astype("float32")
    for tied in (True, False):
        ae = KSparseAutoencoder(units=7, k=3, alpha=2.0, tied_weights=tied)
        ae(x)
        ae.k = 2
        path = tmp_path / f"ae_{tied}.keras"
        ae.save(path)
        reloaded = keras.saving.load_model(path)
        assert isinstance(reloaded, KSparseAutoencoder)
        assert reloaded.get_config() == ae.get_config()
        assert reloaded.k == 2 and reloaded.alpha == 2.0 and reloaded.tied_weights is tied
        np.testing.assert_array_equal(reloaded(x), ae(x))
        np.testing.assert_array_equal(reloaded(x, training=True), ae(x, training=True))
    clone = KSparseAutoencoder.from_config(ae.get_config())
    assert clone.get_config() == ae.get_config()
    checks.check_keras_round_trip(ae_factory(units=7, k=3), x, tmp_path)


def test_autoencoder_saved_model_export(tmp_path):
    x = np.random.default_rng(10).random((3, 6)).astype("float32")
    checks.check_saved_model_export(ae_factory(units=5, k=2, alpha=2.0), x, tmp_path)


def test_autoencoder_mixed_float16_jit_and_mirrored():
    x = np.random.default_rng(11).random((4, 6)).astype("float32")
    make = ae_factory(units=5, k=2, kernel_initializer=keras.initializers.GlorotUniform(seed=3))
    check_mixed_float16_int_state(make, x)
    checks.check_jit_compile(make, x)
    checks.check_mirrored_fit(make, x)


@pytest.mark.parametrize("argument,value", [("units", 0), ("k", 0), ("k", 9), ("alpha", 0.9),
                                            ("tied_weights", "yes")])
def test_autoencoder_bad_arguments(argument, value):
    kwargs = {"units": 8, "k": 2}
    kwargs.pop(argument, None)
    checks.check_bad_argument(ae_factory(), argument, value, **kwargs)


# ------------------------------------------------------------------------------ schedule


class _RecordK(keras.callbacks.Callback):
    def __init__(self, by="epoch"):
        super().__init__()
        self.by, self.values = by, []

    def on_epoch_end(self, epoch, logs=None):  # after the first step has built the model
        if self.by == "epoch":
            self.values.append(self.model.k)

    def on_train_batch_begin(self, batch, logs=None):
        if self.by == "step":
            self.values.append(self.model.k)


def test_schedule_values_per_epoch_and_step():
    x = np.random.default_rng(12).random((8, 4)).astype("float32")
    ae = KSparseAutoencoder(units=20, k=4)
    ae.compile(optimizer="sgd", loss="mse")
    record = _RecordK()
    # E = 8, D = round(0.5 · 8) = 4: k_e = 20 + (4 − 20)·min(1, e/4)
    ae.fit(x, x, epochs=8, batch_size=8, verbose=0,
           callbacks=[KSparseSchedule(k=4), record])  # k_start=None → units (20)
    assert record.values == [20, 16, 12, 8, 4, 4, 4, 4]
    assert ae.k == 4

    # by step: 2 epochs × 4 steps, fraction 1 → k over 8 steps from 10 to 2, rounded half-even
    record = _RecordK("step")
    ae.fit(x, x, epochs=2, batch_size=2, verbose=0,
           callbacks=[KSparseSchedule(k=2, k_start=10, fraction=1.0, by="step"), record])
    assert record.values == [10, 9, 8, 7, 6, 5, 4, 3]
    assert ae.k == 2  # on_train_end leaves the target k

    schedule = KSparseSchedule(k=25, k_start=100)
    assert [schedule.k_at(e, 10) for e in range(10)] == [100, 85, 70, 55, 40] + [25] * 5
    short = KSparseSchedule(k=25, k_start=100, fraction=0.2)  # D = 2; 62.5 rounds half to even
    assert [short.k_at(e, 10) for e in range(4)] == [100, 62, 25, 25]


def test_schedule_in_a_resumed_fit_uses_absolute_epochs():
    x = np.random.default_rng(13).random((4, 4)).astype("float32")
    ae = KSparseAutoencoder(units=10, k=2)
    ae.compile(optimizer="sgd", loss="mse")
    record = _RecordK()
    ae.fit(x, x, epochs=4, initial_epoch=1, verbose=0,
           callbacks=[KSparseSchedule(k=2, k_start=10), record])
    assert record.values == [6, 2, 2]


def test_schedule_bad_arguments_and_missing_layer():
    for argument, value, kwargs in [("k", 0, {}), ("k_start", 3, {"k": 5}),
                                    ("fraction", 0.0, {"k": 2}), ("fraction", 1.5, {"k": 2}),
                                    ("by", "batch", {"k": 2})]:
        checks.check_bad_argument(lambda **kw: KSparseSchedule(**kw), argument, value, **kwargs)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="no KSparse layer"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 2)), verbose=0, callbacks=[KSparseSchedule(1)])
    ae = KSparseAutoencoder(units=5, k=2)
    ae.build((None, 3))
    ae.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="k_start=9"):
        ae.fit(np.zeros((2, 3)), verbose=0, callbacks=[KSparseSchedule(2, k_start=9)])


def test_k_change_is_seen_by_an_xla_compiled_function():
    layer = KSparse(k=2)
    x = distinct_inputs((3, 9), seed=14)
    layer.build(x.shape)
    step = tf.function(lambda inputs: layer(inputs, training=True), jit_compile=True)
    for k in (2, 6, 3):
        layer.k = k
        np.testing.assert_array_equal(step(tf.constant(x)), np_top_k(x, k))


def test_schedule_under_mirrored_strategy_fit():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    x = np.random.default_rng(15).random((8, 5)).astype("float32")
    # ReductionToOneDevice: NCCL-free, and no collective instance keys shared with the
    # strategies other tests in this process created.
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        ae = KSparseAutoencoder(units=12, k=3)
        ae.compile(optimizer="sgd", loss="mse")
    record = _RecordK()
    ae.fit(x, x, epochs=2, batch_size=8, verbose=0,
           callbacks=[KSparseSchedule(k=3, k_start=9, fraction=1.0), record])
    assert record.values == [9, 6]  # D = 2: 9 → 6, then the target 3 when training ends
    assert ae.k == 3
    np.testing.assert_array_equal((keras.ops.convert_to_numpy(ae.encode(x, training=True)) != 0)
                                  .sum(-1), 3)
