"""The one ``tf.data`` input pipeline used by every deepline training pipeline.

    ds ─► map(map_fn, AUTOTUNE) ─► cache ─► shuffle(seed, reshuffle each epoch; training only)
       ─► batch(GLOBAL batch size) ─► prefetch(AUTOTUNE)

Values are passed through unchanged unless ``map_fn`` changes them: image pixels stay raw
``float32`` in 0–255 (digits: 0–16), because deepline models normalise *inside* the model
(``keras.layers.Rescaling``) so that the exported SavedModel takes raw pixels.

Under ``tf.distribute`` the batch size given here is the *global* batch size; Keras's ``fit``
(and ``strategy.experimental_distribute_dataset``) splits each batch across the replicas.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = ["make_input_pipeline"]


def make_input_pipeline(
    ds: tf.data.Dataset,
    *,
    global_batch_size: int,
    training: bool,
    seed: int | None = None,
    cache: bool | str = True,
    shuffle_buffer: int = 10_000,
    map_fn: Callable | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batch an unbatched split for training or evaluation.

    Args:
        ds: an unbatched ``tf.data.Dataset`` (e.g. ``pipelines.data.load(...).train``).
        global_batch_size: examples per step summed over all replicas (positive int).
        training: shuffle (and reshuffle every epoch) when ``True``; keep order when ``False``.
        seed: shuffle seed; with a seed the order of every epoch is reproducible
            (epoch k of one run equals epoch k of another run). ``None`` → nondeterministic.
        cache: ``True`` caches in memory after ``map_fn``; a string caches to that file path;
            ``False`` disables caching.
        shuffle_buffer: shuffle buffer size (positive int); ≥ the split size gives a uniform
            shuffle. Ignored when ``training`` is ``False``.
        map_fn: optional per-example function ``(features, target) -> (features, target)``
            applied with ``num_parallel_calls=AUTOTUNE`` and deterministic order.
        drop_remainder: drop the last partial batch (use for static shapes, e.g. TPU/XLA).

    Returns:
        a dataset of batches of ``global_batch_size`` (the last one may be smaller unless
        ``drop_remainder``), prefetched with ``AUTOTUNE``.
    """
    if not isinstance(ds, tf.data.Dataset):
        raise ValueError(f"ds must be a tf.data.Dataset, received {type(ds).__name__}")
    if (
        isinstance(global_batch_size, bool)
        or not isinstance(global_batch_size, int)
        or (global_batch_size < 1)
    ):
        raise ValueError(
            "global_batch_size must be a positive int, "
            f"received global_batch_size={global_batch_size!r}"
        )
    if (
        isinstance(shuffle_buffer, bool)
        or not isinstance(shuffle_buffer, int)
        or shuffle_buffer < 1
    ):
        raise ValueError(
            f"shuffle_buffer must be a positive int, received shuffle_buffer={shuffle_buffer!r}"
        )
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"cache must be a bool or a file path string, received cache={cache!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, received seed={seed!r}")

    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache is True:
        ds = ds.cache()
    elif isinstance(cache, str):
        ds = ds.cache(cache)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(
        global_batch_size,
        drop_remainder=drop_remainder,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE)
