"""FlatCall (one AtomicFunction.call_flat per request) against the public ``fn(**feeds)``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from serving.examples import make_examples
from serving.server.errors import Code, ServingError
from serving.server.flat_call import FlatCall
from serving.server.servable import Servable

RNG = np.random.default_rng(0)


def _feeds_for(fn, batch: int = 3) -> dict[str, tf.Tensor]:
    feeds = {}
    for name, param in fn.function_type.parameters.items():
        spec = param.type_constraint
        shape = [batch if d is None else d for d in spec.shape.as_list()]
        if spec.dtype == tf.string:
            value = np.array([f"w{i}".encode() for i in range(int(np.prod(shape)))],
                             object).reshape(shape)
        elif spec.dtype.is_integer:
            value = RNG.integers(0, 9, shape).astype(spec.dtype.as_numpy_dtype)
        else:
            value = RNG.standard_normal(shape).astype(spec.dtype.as_numpy_dtype)
        feeds[name] = tf.constant(value, dtype=spec.dtype)
    return feeds


def _assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype
        np.testing.assert_array_equal(got[k].numpy(), v.numpy())


def _numpy_shapes(feeds):
    return {k: tuple(v.shape) for k, v in feeds.items()}


def test_equals_the_public_call_on_every_toy_signature(toy_builds):
    loaded = tf.saved_model.load(toy_builds[2])
    sigs = dict(loaded.signatures)
    assert set(sigs) == {"serving_default", "single", "multi", "strings", "divide", "classify",
                         "regress"}
    for key, fn in sigs.items():
        flat = FlatCall.of(fn)
        assert flat is not None, key
        if key in ("classify", "regress"):
            feeds = _examples_feed()
        else:
            feeds = _feeds_for(fn)
        _assert_same(flat(feeds, _numpy_shapes(feeds)), fn(**feeds))


def _examples_feed() -> dict[str, tf.Tensor]:
    rows = RNG.standard_normal((4, 3)).astype(np.float32)
    serialized = [e.SerializeToString() for e in make_examples({"x": rows})]
    return {"inputs": tf.constant(serialized)}


def test_inputs_go_in_the_function_order_not_the_feed_order(tmp_path):
    class M(tf.Module):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="zeta"),
                                      tf.TensorSpec([None], tf.int64, name="alpha"),
                                      tf.TensorSpec(None, tf.string, name="m-id")])
        def f(self, zeta, alpha, m_id):
            return {"z_out": zeta * self.v, "a_out": alpha + 1, "s": tf.strings.upper(m_id)}

    m = M()
    tf.saved_model.save(m, str(tmp_path), signatures={"serving_default": m.f})
    fn = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    flat = FlatCall.of(fn)
    assert flat.order == ["alpha", "m_id", "zeta"] and flat.outputs == ["a_out", "s", "z_out"]
    feeds = {"zeta": tf.constant([[1.0, 2.0]]), "alpha": tf.constant([5], tf.int64),
             "m_id": tf.constant([[b"ab", b"c"]])}  # unknown rank: any shape fits
    got = flat(feeds, _numpy_shapes(feeds))
    _assert_same(got, fn(**feeds))
    assert got["z_out"].numpy().tolist() == [[2.0, 4.0]] and got["a_out"].numpy().tolist() == [6]


def test_shapes_that_do_not_fit_and_gradient_tapes_take_the_public_call(toy_builds):
    fn = tf.saved_model.load(toy_builds[1]).signatures["serving_default"]
    flat = FlatCall.of(fn)
    good = {"x": tf.constant(np.ones((2, 3), np.float32))}
    assert flat(good, {"x": (2, 3)}) is not None
    assert flat({"x": tf.constant(np.ones((2, 4), np.float32))}, {"x": (2, 4)}) is None
    assert flat({"x": tf.constant(np.ones((3,), np.float32))}, {"x": (3,)}) is None
    assert flat({"y": good["x"]}, {"y": (2, 3)}) is None
    with tf.GradientTape() as tape:
        tape.watch(good["x"])
        assert flat(good, {"x": (2, 3)}) is None


def test_signature_run_falls_back_to_the_public_call_for_unfit_shapes(toy_builds):
    servable = Servable.load("toy", 1, toy_builds[1])
    sig = servable.signatures["serving_default"]
    assert sig._flat_call is not None
    out = sig.run({"x": np.array([[1, 2, 3]], np.float32)})
    assert out["y"].tolist() == [[1, 2, 3]] and out["total"].tolist() == [6]
    # Unchecked inputs (the request paths check shapes first) behave as with fn(**feeds): the
    # loaded function itself does not check static shapes, its ops fail or not.
    wide = np.ones((1, 4), np.float32)
    want = servable._loaded.signatures["serving_default"](x=tf.constant(wide))
    got = sig.run({"x": wide})
    assert got["y"].shape == tuple(want["y"].shape) == (1, 4)
    assert got["total"].tolist() == want["total"].numpy().tolist() == [4.0]
    with pytest.raises(ServingError) as info:
        sig.run({"x": np.ones((3,), np.float32)})
    assert info.value.code == Code.INVALID_ARGUMENT and "reduction dimension" in str(info.value)


def test_exported_keras_classifier(clf_base):
    base, model = clf_base
    servable = Servable.load("clf", 1, os.path.join(base, "1"))
    features = RNG.standard_normal((5, 4)).astype(np.float32)
    for key in ("serving_default", "classify"):
        sig = servable.signatures[key]
        assert sig._flat_call is not None, key
    out = servable.signatures["serving_default"].run({"features": features})
    np.testing.assert_allclose(out["probabilities"], model(features).numpy(), rtol=1e-6)
    assert out["classes"].tolist() == np.argmax(out["probabilities"], axis=1).tolist()


def test_other_callables_get_no_flat_call():
    assert FlatCall.of(lambda **kw: kw) is None
    assert FlatCall.of(object()) is None

    @tf.function
    def positional(x):
        return {"y": x}

    assert FlatCall.of(positional.get_concrete_function(tf.TensorSpec([None], tf.float32))) \
        is None  # a positional parameter: fn(**feeds) binds it differently
