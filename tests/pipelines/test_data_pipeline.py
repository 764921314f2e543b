"""make_input_pipeline: global batch size, seeded determinism, reshuffling, validation."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines.data import make_input_pipeline


def _ds(n=50):
    x = np.arange(n, dtype=np.float32).reshape(n, 1) * 255.0 / n
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n, dtype=np.int64)))


def _epoch(ds):
    return np.concatenate([y.numpy() for _, y in ds])


def test_batches_by_global_batch_size():
    batches = list(make_input_pipeline(_ds(50), global_batch_size=16, training=False))
    assert [int(y.shape[0]) for _, y in batches] == [16, 16, 16, 2]
    assert batches[0][0].shape == (16, 1)
    dropped = list(
        make_input_pipeline(
            _ds(50), global_batch_size=16, training=True, seed=0, drop_remainder=True
        )
    )
    assert [int(y.shape[0]) for _, y in dropped] == [16, 16, 16]


def test_evaluation_keeps_order_and_raw_values():
    ds = make_input_pipeline(_ds(20), global_batch_size=8, training=False)
    np.testing.assert_array_equal(_epoch(ds), np.arange(20))
    x = np.concatenate([x.numpy() for x, _ in ds])
    assert x.max() == pytest.approx(255.0 * 19 / 20)  # no normalisation


def test_seed_makes_order_deterministic_and_epochs_differ():
    a = make_input_pipeline(_ds(), global_batch_size=10, training=True, seed=7)
    b = make_input_pipeline(_ds(), global_batch_size=10, training=True, seed=7)
    a1, a2 = _epoch(a), _epoch(a)
    b1, b2 = _epoch(b), _epoch(b)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # reshuffled each epoch
    assert not np.array_equal(a1, np.arange(50))
    assert sorted(a1.tolist()) == list(range(50))  # a permutation: nothing lost or repeated
    c = make_input_pipeline(_ds(), global_batch_size=10, training=True, seed=8)
    assert not np.array_equal(_epoch(c), a1)


def test_map_fn_applied_before_cache():

    def double(x, y):
        return x * 2.0, y

    ds = make_input_pipeline(_ds(4), global_batch_size=4, training=False, map_fn=double)
    x = next(iter(ds))[0].numpy().ravel()
    np.testing.assert_allclose(x, np.arange(4) * 255.0 / 4 * 2.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"global_batch_size": 0}, "global_batch_size"),
        ({"global_batch_size": 2.5}, "global_batch_size"),
        ({"global_batch_size": 4, "shuffle_buffer": 0}, "shuffle_buffer"),
        ({"global_batch_size": 4, "seed": "x"}, "seed"),
        ({"global_batch_size": 4, "cache": 3}, "cache"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_input_pipeline(_ds(), training=True, **kwargs)
    with pytest.raises(ValueError, match="ds"):
        make_input_pipeline([1, 2], global_batch_size=2, training=False)
