"""ElmanRNNCell / ElmanRNN: NumPy reference, keras.layers.SimpleRNN equality, worked examples,
hand-written BPTT gradients, and the layers/ contract checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import ElmanRNN, ElmanRNNCell, _elman_recurrence
from tests.layers import checks

BATCH, TIME, DIM, UNITS = 3, 5, 4, 6
RNG = np.random.default_rng(1234)
X = RNG.standard_normal((BATCH, TIME, DIM)).astype("float32")
H0 = RNG.standard_normal((BATCH, UNITS)).astype("float32")
# Row 0: holes in the middle; row 1: leading masked steps (outputs zeros until the first used
# step, even with an initial state); row 2: everything used.
MASK = np.array([[1, 1, 0, 1, 0], [0, 0, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=bool)

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    None: lambda z: z,
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True))
    / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True),
}


def numpy_elman(x, kernel, recurrent_kernel, bias=None, *, activation="tanh", h0=None,
                mask=None, go_backwards=False, zero_output_for_mask=False,
                output_kernel=None, output_bias=None, output_activation=None):
    """Reference recurrence. Returns (outputs (B, T, ·) in processing order, h_T)."""
    g, g_y = ACTIVATIONS[activation], ACTIVATIONS[output_activation]
    x = x.astype(np.float64)
    batch, time = x.shape[:2]
    h = np.zeros((batch, kernel.shape[1])) if h0 is None else h0.astype(np.float64)
    mask = np.ones((batch, time), bool) if mask is None else mask
    steps = range(time - 1, -1, -1) if go_backwards else range(time)

    def project(state):
        if output_kernel is None:
            return state
        y = state @ output_kernel + (0.0 if output_bias is None else output_bias)
        return g_y(y)

    outputs, previous = [], None
    for t in steps:
        h_new = g(x[:, t] @ kernel + h @ recurrent_kernel + (0.0 if bias is None else bias))
        m = mask[:, t][:, None]
        h = np.where(m, h_new, h)
        y = project(h)
        if previous is None:
            previous = np.zeros_like(y)
        y = np.where(m, y, np.zeros_like(y) if zero_output_for_mask else previous)
        outputs.append(y)
        previous = y
    return np.stack(outputs, axis=1), h


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _pair(**kwargs):
    """An ElmanRNN and a SimpleRNN with the same (random, non-zero bias) weights."""
    reference = keras.layers.SimpleRNN(UNITS, bias_initializer="random_normal", **kwargs)
    layer = ElmanRNN(UNITS, **kwargs)
    reference.build(X.shape)
    layer.build(X.shape)
    layer.set_weights(reference.get_weights())
    return layer, reference


# A compact parametrization: every option appears, with and without a mask.
OPTIONS = [
    {},
    {"return_sequences": True},
    {"return_sequences": True, "return_state": True, "go_backwards": True},
    {"activation": "relu", "return_state": True},
    {"activation": "sigmoid", "use_bias": False, "return_sequences": True},
    {"activation": None, "go_backwards": True},
    {"activation": "elu", "return_sequences": True},  # generic (non-fused) path
    {"unroll": True, "return_sequences": True},  # generic unrolled path
    {"return_sequences": True, "zero_output_for_mask": True},
]


def _option_id(options):
    return ",".join(f"{k}={v}" for k, v in options.items()) or "default"


@pytest.mark.parametrize("options", OPTIONS, ids=_option_id)
@pytest.mark.parametrize("use_mask", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("use_initial_state", [False, True], ids=["h0=0", "h0"])
def test_matches_simple_rnn_and_numpy(options, use_mask, use_initial_state):
    layer, reference = _pair(**options)
    kwargs = {}
    if use_mask:
        kwargs["mask"] = MASK
    if use_initial_state:
        kwargs["initial_state"] = H0
    got, want = _as_list(layer(X, **kwargs)), _as_list(reference(X, **kwargs))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)

    weights = layer.get_weights()
    outputs, state = numpy_elman(
        X, weights[0], weights[1], weights[2] if layer.use_bias else None,
        activation=options.get("activation", "tanh"), h0=H0 if use_initial_state else None,
        mask=MASK if use_mask else None, go_backwards=options.get("go_backwards", False),
        zero_output_for_mask=options.get("zero_output_for_mask", False),
    )
    expected = outputs if options.get("return_sequences") else outputs[:, -1]
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5)
    if options.get("return_state"):
        np.testing.assert_allclose(got[1], state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_mask", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backward"])
def test_output_projection_matches_numpy_and_keras_rnn_with_cell(use_mask, go_backwards):
    kwargs = dict(output_units=2, output_activation="softmax", bias_initializer="random_normal",
                  output_bias_initializer="random_normal", return_sequences=True,
                  return_state=True, go_backwards=go_backwards)
    layer = ElmanRNN(UNITS, **kwargs)
    mask = MASK if use_mask else None
    out, state = layer(X, mask=mask, initial_state=H0)
    assert out.shape == (BATCH, TIME, 2) and state.shape == (BATCH, UNITS)
    w = layer.get_weights()
    assert [v.shape for v in w] == [(DIM, UNITS), (UNITS, UNITS), (UNITS,), (UNITS, 2), (2,)]
    ref_out, ref_state = numpy_elman(X, *w[:3], h0=H0, mask=mask, go_backwards=go_backwards,
                                     output_kernel=w[3], output_bias=w[4],
                                     output_activation="softmax")
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state, ref_state, rtol=1e-5, atol=1e-6)
    if use_mask:  # leading masked steps of row 1 output zeros, not softmax(b_y)
        first = 2 if not go_backwards else 1
        np.testing.assert_array_equal(np.asarray(out)[1, :first], 0.0)

    # The same cell inside the generic keras.layers.RNN loop gives the same numbers.
    cell = ElmanRNNCell(UNITS, output_units=2, output_activation="softmax")
    generic = keras.layers.RNN(cell, return_sequences=True, return_state=True,
                               go_backwards=go_backwards)
    generic.build(X.shape)
    generic.set_weights(w)
    g_out, g_state = generic(X, mask=mask, initial_state=H0)
    np.testing.assert_allclose(out, g_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state, g_state, rtol=1e-5, atol=1e-6)


def test_cell_in_keras_rnn_matches_simple_rnn_cell():
    reference = keras.layers.RNN(keras.layers.SimpleRNNCell(UNITS), return_sequences=True)
    layer = keras.layers.RNN(ElmanRNNCell(UNITS), return_sequences=True)
    reference.build(X.shape)
    layer.build(X.shape)
    layer.set_weights(reference.get_weights())
    np.testing.assert_allclose(layer(X, mask=MASK), reference(X, mask=MASK), rtol=1e-5, atol=1e-6)


def test_masking_layer_in_a_model_matches_simple_rnn():
    x = X.copy()
    x[0, 3:] = 0.0  # padded tail
    x[1, :2] = 0.0  # padded head

    def model(rnn):
        inputs = keras.Input((TIME, DIM))
        return keras.Model(inputs, rnn(keras.layers.Masking(0.0)(inputs)))

    layer, reference = _pair(return_sequences=True)
    np.testing.assert_allclose(model(layer)(x), model(reference)(x), rtol=1e-5, atol=1e-6)


def test_dynamic_length_and_padded_blocks(monkeypatch):
    """Time length unknown when tracing, and lengths that the loop block size does not divide."""
    layer, reference = _pair(return_sequences=True)
    inputs = keras.Input((None, DIM))
    dynamic = keras.Model(inputs, layer(inputs))
    for time in (1, 7, 13):
        x = RNG.standard_normal((2, time, DIM)).astype("float32")
        np.testing.assert_allclose(dynamic(x), reference(x), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(_elman_recurrence, "STEPS_PER_ITERATION", 3)  # T=5 → blocks of 3, pad 1
    fresh, _ = _pair(return_sequences=True)
    fresh.set_weights(reference.get_weights())
    np.testing.assert_allclose(fresh(X, mask=MASK), reference(X, mask=MASK), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [3, 5], ids=["batch3", "batch5"])
@pytest.mark.parametrize("chains", [1, 2], ids=["1chain", "2chains"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("time_dim", [TIME, None], ids=["static-T", "dynamic-T"])
def test_traced_gradients_with_unknown_batch(time_dim, return_sequences, chains, rows,
                                             monkeypatch):
    """Graph mode with unknown batch (and length): forward and hand-written backward trace. With
    2 default chains the graph holds both paths: a batch of 3 (< 2·2 rows) runs as one chain, a
    batch of 5 as 2 chains of 3 rows (one padded row)."""
    monkeypatch.setattr(_elman_recurrence, "default_chains", lambda batch, units: chains)
    layer, reference = _pair(return_sequences=return_sequences, go_backwards=True)
    signature = [tf.TensorSpec((None, time_dim, DIM)), tf.TensorSpec((None, time_dim), tf.bool)]
    x = np.concatenate([X, 0.5 * X[:2]])[:rows]
    mask = np.concatenate([MASK, MASK[1:]])[:rows]

    def traced(rnn):
        @tf.function(input_signature=signature)
        def run(x, mask):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.sin(rnn(x, mask=mask)))
            return loss, tape.gradient(loss, [x, *rnn.trainable_variables])
        return run(tf.constant(x), tf.constant(mask))

    (loss, grads), (want_loss, want_grads) = traced(layer), traced(reference)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for g, w in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch,units,chains", [
    (64, 256, 4),     # 2·16·256² = 2 MFLOP per chain step: 16 rows per chain
    (32, 256, 2), (128, 256, 8), (100, 256, 7),
    (16, 256, 2),     # one chain's worth of rows, but 2·MIN_CHAIN_ROWS: at least two chains
    (15, 256, 1),     # below 2·MIN_CHAIN_ROWS rows: one chain
    (4096, 256, 16),  # capped at MAX_CHAINS
    (None, 256, 4),   # unknown batch: sized for NOMINAL_BATCH = 64
    (None, 128, 2),
    (64, 128, 2),     # 64 rows per chain, still two chains
    (256, 128, 4),
    (64, 512, 2),     # 4 rows per chain < MIN_CHAIN_ROWS: two chains of 32 rows
    (64, 1024, 2), (8, 512, 1), (1, 256, 1),
])
def test_default_chains(batch, units, chains):
    assert _elman_recurrence.default_chains(batch, units) == chains


def test_compiled_loop_is_detected_under_xla_only():
    seen = {}

    def probe(where):
        seen[where] = _elman_recurrence.compiled_loop()
        return tf.constant(0.0)

    probe("eager")
    tf.function(lambda: probe("graph"))()
    tf.function(lambda: probe("xla"), jit_compile=True)()
    tf.function(lambda: tf.function(lambda: probe("nested"))(), jit_compile=True)()
    assert seen == {"eager": False, "graph": False, "xla": True, "nested": True}


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_loop_sizing_under_xla(jit_compile, monkeypatch):
    """Under XLA the layer's loop takes at most COMPILED_MAX_CHAINS chains and
    COMPILED_STEPS_PER_ITERATION steps per iteration; graph mode keeps ``default_chains``. The
    outputs match SimpleRNN either way."""
    monkeypatch.setattr(_elman_recurrence, "default_chains", lambda batch, units: 3)
    sizes = []
    chained = _elman_recurrence._chained_states

    def recording(*args, chains, steps_per_iteration, **kwargs):
        sizes.append((chains, steps_per_iteration))
        return chained(*args, chains=chains, steps_per_iteration=steps_per_iteration, **kwargs)

    monkeypatch.setattr(_elman_recurrence, "_chained_states", recording)
    layer, reference = _pair(return_sequences=True)
    out = tf.function(lambda x: layer(x), jit_compile=jit_compile)(tf.constant(X))
    np.testing.assert_allclose(out, reference(X), rtol=1e-5, atol=1e-5)
    expected = ((_elman_recurrence.COMPILED_MAX_CHAINS,
                 _elman_recurrence.COMPILED_STEPS_PER_ITERATION) if jit_compile else (3, None))
    assert sizes == [expected]


def _reference_states(z, h0, w, activation, mask, recurrent_mask):
    """Plain per-step loop, differentiated by autodiff: the reference for elman_states."""
    h, states = h0, []
    for t in range(z.shape[0]):
        hr = h if recurrent_mask is None else h * recurrent_mask
        h_new = activation(z[t] + hr @ w)
        h = h_new if mask is None else tf.where(mask[t], h_new, h)
        states.append(h)
    return tf.stack(states)


@pytest.mark.parametrize("chains,steps_per_iteration", [(1, None), (2, None), (3, 2), (5, None)],
                         ids=["1chain", "2chains-padded-row", "3chains-padded-time", "5chains"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("last_only", [False, True], ids=["states", "last"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask+rdropout"])
def test_parallel_chains_match_reference(chains, steps_per_iteration, activation, last_only,
                                         masked):
    """Cutting the batch of 5 into chains (zero-padded to a multiple of the chain count) gives
    the plain loop's states and gradients for z, h0 and W_h. Sigmoid makes padded rows non-zero
    (σ(0) = 0.5), which must still contribute nothing to ∂W_h."""
    rng = np.random.default_rng(7)
    time, batch, units = 5, 5, 4
    act = keras.activations.get(activation)
    z = tf.constant(rng.standard_normal((time, batch, units)), tf.float32)
    h0 = tf.constant(rng.standard_normal((batch, units)), tf.float32)
    w = tf.constant(rng.standard_normal((units, units)) * 0.5, tf.float32)
    mask = recurrent_mask = None
    if masked:
        mask = tf.constant(rng.random((time, batch, 1)) > 0.3)
        recurrent_mask = tf.constant((rng.random((batch, units)) > 0.4) / 0.6, tf.float32)
    r = tf.constant(rng.standard_normal((time, batch, units)), tf.float32)

    def loss_and_grads(states_fn):
        with tf.GradientTape() as tape:
            tape.watch([z, h0, w])
            states = states_fn()
            loss = tf.reduce_sum(tf.sin(states) * (r[-1] if last_only else r))
        return states, tape.gradient(loss, [z, h0, w])

    states, grads = loss_and_grads(lambda: _elman_recurrence.elman_states(
        z, h0, w, act, mask=mask, recurrent_mask=recurrent_mask, last_only=last_only,
        steps_per_iteration=steps_per_iteration, chains=chains))
    want, want_grads = loss_and_grads(lambda: (
        lambda s: s[-1] if last_only else s)(_reference_states(z, h0, w, act, mask,
                                                               recurrent_mask)))
    np.testing.assert_allclose(states, want, rtol=1e-5, atol=1e-6)
    for name, g, wg in zip(("z", "h0", "W_h"), grads, want_grads, strict=True):
        np.testing.assert_allclose(g, wg, rtol=1e-4, atol=1e-5, err_msg=name)


def test_worked_example_tanh_three_steps():
    # h_t = tanh(1.0 x_t + 0.5 h_{t-1} + 0.1), x = 0.5, 0, -1:
    # h_1 = tanh(0.6)                    = 0.5370495669980353
    # h_2 = tanh(0.5 · h_1 + 0.1)        = tanh(0.36852478) = 0.35270068229323925
    # h_3 = tanh(-1 + 0.5 · h_2 + 0.1)   = tanh(-0.72364966) = -0.6191648966884477
    layer = ElmanRNN(1, return_sequences=True)
    layer.build((1, 3, 1))
    layer.set_weights([np.array([[1.0]]), np.array([[0.5]]), np.array([0.1])])
    out = layer(np.array([[[0.5], [0.0], [-1.0]]], "float32"))
    np.testing.assert_allclose(np.asarray(out)[0, :, 0],
                               [0.5370495669980353, 0.35270068229323925, -0.6191648966884477],
                               rtol=1e-6)


def test_worked_example_relu_values_and_gradients():
    # h_t = relu(x_t + 2 h_{t-1} + 1), x = 1, -4, 1  →  h = 2, 1, 4 (all units active), L = h_3.
    # ∂L/∂W_x = x_3 + 2(x_2 + 2 x_1) = -3;  ∂L/∂W_h = h_2 + 2 h_1 = 5;  ∂L/∂b = 1 + 2 + 4 = 7;
    # ∂L/∂x = (W_h² W_x, W_h W_x, W_x) = (4, 2, 1).
    layer = ElmanRNN(1, activation="relu", return_sequences=True)
    layer.build((1, 3, 1))
    layer.set_weights([np.array([[1.0]]), np.array([[2.0]]), np.array([1.0])])
    x = tf.Variable([[[1.0], [-4.0], [1.0]]])
    with tf.GradientTape() as tape:
        out = layer(x)
        loss = out[0, -1, 0]
    np.testing.assert_array_equal(np.asarray(out)[0, :, 0], [2.0, 1.0, 4.0])
    g_x, g_kernel, g_recurrent, g_bias = tape.gradient(loss, [x, *layer.trainable_variables])
    np.testing.assert_allclose(np.asarray(g_x)[0, :, 0], [4.0, 2.0, 1.0])
    np.testing.assert_allclose([g_kernel[0, 0], g_recurrent[0, 0], g_bias[0]], [-3.0, 5.0, 7.0])


GRADIENT_CASES = [
    ({"return_sequences": True}, {}),
    ({"activation": "relu", "go_backwards": True, "return_sequences": True},
     {"mask": MASK, "initial_state": H0}),
    ({"activation": "sigmoid", "output_units": 3, "output_activation": "tanh",
      "bias_initializer": "random_normal", "output_bias_initializer": "random_normal"},
     {"mask": MASK}),
]


@pytest.mark.parametrize("options,call_kwargs", GRADIENT_CASES,
                         ids=["tanh", "relu-mask-back", "proj"])
def test_finite_difference_gradients(options, call_kwargs):
    call_kwargs = {k: (v.astype("float64") if v.dtype != bool else v)
                   for k, v in call_kwargs.items()}
    checks.check_finite_difference_gradients(
        lambda **kw: ElmanRNN(UNITS, **options, **kw), X, call_kwargs=call_kwargs, max_entries=12,
    )


@pytest.mark.parametrize("options,training", [
    ({"return_sequences": True, "go_backwards": True}, False),
    ({"activation": "relu", "return_state": True}, False),
    ({"return_sequences": True, "dropout": 0.3, "recurrent_dropout": 0.4, "seed": 7}, True),
])
@pytest.mark.parametrize("chains", [1, 3], ids=["1chain", "3chains"])
def test_gradients_match_simple_rnn_autodiff(options, training, chains, monkeypatch):
    monkeypatch.setattr(_elman_recurrence, "default_chains", lambda batch, units: chains)
    layer, reference = _pair(**options)
    x, h0 = tf.Variable(X), tf.Variable(H0)
    r = RNG.standard_normal((BATCH, TIME, UNITS)).astype("float32")

    def loss_and_grads(rnn):
        with tf.GradientTape() as tape:
            outs = _as_list(rnn(x, mask=MASK, initial_state=h0, training=training))
            loss = sum(tf.reduce_sum(tf.sin(o) * r[:, : o.shape[1]] if o.ndim == 3 else tf.sin(o))
                       for o in outs)
        return loss, tape.gradient(loss, [x, h0, *rnn.trainable_variables])

    loss, grads = loss_and_grads(layer)
    want_loss, want_grads = loss_and_grads(reference)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for g, w in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_stateful_across_calls_and_reset():
    x = RNG.standard_normal((BATCH, 2 * TIME, DIM)).astype("float32")
    layer, reference = _pair(stateful=True, return_sequences=True)
    first, second = layer(x[:, :TIME]), layer(x[:, TIME:])
    np.testing.assert_allclose(first, reference(x[:, :TIME]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second, reference(x[:, TIME:]), rtol=1e-5, atol=1e-6)
    # Two stateful halves equal one pass over the whole sequence.
    whole, _ = numpy_elman(x, *layer.get_weights())
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-5)
    layer.reset_states()
    np.testing.assert_allclose(layer(x[:, :TIME]), first, rtol=1e-6, atol=1e-7)
    layer.reset_state()
    np.testing.assert_array_equal(layer.states[0].numpy(), 0.0)


def test_dropout_training_flag_and_seed():
    plain, _ = _pair(return_sequences=True)
    drop = ElmanRNN(UNITS, dropout=0.5, recurrent_dropout=0.5, seed=11, return_sequences=True)
    drop.build(X.shape)
    drop.set_weights(plain.get_weights())
    inference = drop(X, training=False)
    np.testing.assert_allclose(inference, plain(X), rtol=1e-6)
    np.testing.assert_allclose(drop(X, training=False), inference, rtol=1e-6)
    trained = drop(X, training=True)
    assert np.abs(np.asarray(trained) - np.asarray(inference)).max() > 1e-3

    # Same seed → same masks in the same order: equal to SimpleRNN's dropout, call after call.
    twin = ElmanRNN(UNITS, dropout=0.5, recurrent_dropout=0.5, seed=11, return_sequences=True)
    reference = keras.layers.SimpleRNN(UNITS, dropout=0.5, recurrent_dropout=0.5, seed=11,
                                       return_sequences=True)
    for rnn in (twin, reference):
        rnn.build(X.shape)
        rnn.set_weights(plain.get_weights())
    for _ in range(2):
        a, b = twin(X, training=True), reference(X, training=True)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(a) - np.asarray(trained)).max() > 1e-3  # masks change per call


def test_compute_output_shape_matches_calls():
    for options in ({}, {"return_sequences": True}, {"return_state": True},
                    {"return_sequences": True, "return_state": True, "output_units": 2}):
        layer = ElmanRNN(UNITS, **options)
        shapes = layer.compute_output_shape((None, TIME, DIM))
        if not options.get("return_state"):
            shapes = [shapes]
        actual = [tuple(o.shape) for o in _as_list(layer(X))]
        assert [(BATCH, *s[1:]) for s in shapes] == actual
    assert ElmanRNN(UNITS).compute_output_shape((None, TIME, DIM)) == \
        keras.layers.SimpleRNN(UNITS).compute_output_shape((None, TIME, DIM))


def test_config_round_trip_keeps_every_argument():
    layer = ElmanRNN(UNITS, activation="relu", use_bias=False, dropout=0.25,
                     recurrent_dropout=0.125, return_sequences=True, return_state=True,
                     go_backwards=True, stateful=False, seed=5, output_units=3,
                     output_activation="sigmoid", kernel_regularizer="l2", name="elman")
    config = layer.get_config()
    clone = ElmanRNN.from_config(config)
    assert clone.get_config() == config
    for key, value in {"units": UNITS, "use_bias": False, "dropout": 0.25, "seed": 5,
                       "output_units": 3, "go_backwards": True, "return_state": True}.items():
        assert config[key] == value, key
    assert config["activation"] == "relu" and config["output_activation"] == "sigmoid"
    cell = ElmanRNNCell(UNITS, output_units=2, recurrent_dropout=0.5)
    assert ElmanRNNCell.from_config(cell.get_config()).get_config() == cell.get_config()
    assert keras.saving.get_registered_name(ElmanRNN) == "deepline>ElmanRNN"
    assert keras.saving.get_registered_name(ElmanRNNCell) == "deepline>ElmanRNNCell"


@pytest.mark.parametrize("argument,value", [
    ("units", 0), ("units", -3), ("units", 2.5), ("dropout", 1.0), ("dropout", -0.1),
    ("recurrent_dropout", 1.5), ("activation", "tanhh"), ("output_units", 0),
    ("output_activation", "nope"),
])
def test_bad_arguments(argument, value):
    kwargs = {} if argument == "units" else {"units": UNITS}
    checks.check_bad_argument(lambda **kw: ElmanRNN(**kw), argument, value, **kwargs)
    checks.check_bad_argument(lambda **kw: ElmanRNNCell(**kw), argument, value, **kwargs)


def test_wrong_input_rank_names_expected_rank_and_shape():
    with pytest.raises(ValueError, match=r"rank 3.*\(3, 4\)"):
        ElmanRNN(UNITS)(np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match=r"rank 2.*\(3, 5, 4\)"):
        ElmanRNNCell(UNITS).build((3, 5, 4))


def _contract_layer(**kwargs):
    return ElmanRNN(UNITS, return_sequences=True, output_units=2, **kwargs)


def test_keras_round_trip(tmp_path):
    checks.check_keras_round_trip(_contract_layer, X, tmp_path)


def test_saved_model_export(tmp_path):
    checks.check_saved_model_export(_contract_layer, X, tmp_path)


@pytest.mark.parametrize("chains", [1, 2], ids=["1chain", "2chains"])
def test_mixed_float16(chains, monkeypatch):
    monkeypatch.setattr(_elman_recurrence, "default_chains", lambda batch, units: chains)
    checks.check_mixed_float16(_contract_layer, X)


@pytest.mark.parametrize("chains", [1, 2], ids=["1chain", "2chains"])
def test_jit_compile(chains, monkeypatch):
    monkeypatch.setattr(_elman_recurrence, "default_chains", lambda batch, units: chains)
    checks.check_jit_compile(_contract_layer, X)


@pytest.mark.parametrize("chains", [1, 2], ids=["1chain", "2chains"])
def test_mirrored_strategy_fit(chains, monkeypatch):
    monkeypatch.setattr(_elman_recurrence, "default_chains", lambda batch, units: chains)
    checks.check_mirrored_fit(lambda **kw: ElmanRNN(UNITS, **kw), X[:2])


def test_mixed_float16_training_step_under_jit():
    """Fused path + hand-written gradient in float16 compiles with XLA and trains."""
    inputs = keras.Input((TIME, DIM))
    model = keras.Model(inputs, ElmanRNN(UNITS, dtype="mixed_float16", output_units=1)(inputs))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(X, np.ones((BATCH, 1), "float32"))
    assert np.isfinite(loss)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(model.get_weights(), before, strict=True))


def test_bidirectional_and_stacked_cells():
    layer = keras.layers.Bidirectional(ElmanRNN(UNITS, return_sequences=True))
    reference = keras.layers.Bidirectional(keras.layers.SimpleRNN(UNITS, return_sequences=True))
    layer.build(X.shape)
    reference.build(X.shape)
    layer.set_weights(reference.get_weights())
    np.testing.assert_allclose(layer(X, mask=MASK), reference(X, mask=MASK), rtol=1e-5, atol=1e-6)
    stacked = keras.layers.RNN([ElmanRNNCell(UNITS), ElmanRNNCell(3, output_units=2)])
    assert tuple(stacked(X).shape) == (BATCH, 2)
