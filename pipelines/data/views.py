"""Views over loaded datasets: sequential (row-by-row) MNIST.

Sequential MNIST reads a 28×28 image as a sequence of 28 time steps, each the 28 pixels of one
row (top to bottom): features ``float32 [28, 28]`` (time, pixels), target the digit label.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from pipelines.data.core import DataSplits

__all__ = ["sequential_view"]


def sequential_view(splits: DataSplits) -> DataSplits:
    """Image splits with features ``[H, W, 1]`` → sequence splits with features ``[H, W]``.

    Row ``t`` of the image is time step ``t``; pixel values are unchanged (raw 0–255 for MNIST).
    """
    shape = tuple(splits.info.feature_shape)
    if len(shape) != 3 or shape[-1] != 1:
        raise ValueError(
            f"sequential_view needs single-channel images [H, W, 1], received feature_shape={shape}"
        )
    rows, cols = shape[0], shape[1]

    def to_rows(image, label):
        return tf.reshape(image, (rows, cols)), label

    def view(ds):
        return ds.map(to_rows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    info = dataclasses.replace(
        splits.info,
        name=f"seq_{splits.info.name}",
        task="sequence_classification",
        feature_shape=(rows, cols),
        description=(
            f"Row-by-row view of {splits.info.name}: {rows} time steps of {cols} pixels. "
            + splits.info.description
        ),
    )
    return DataSplits(view(splits.train), view(splits.validation), view(splits.test), info)
