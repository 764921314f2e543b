"""Shared data types of ``pipelines.data``: the split container, its metadata, the error class.

Every loader in the package returns a :class:`DataSplits`: three *unbatched* ``tf.data.Dataset``
objects of ``(features, target)`` pairs plus a :class:`DataInfo` that describes them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "DataInfo",
    "DataSplits",
    "DatasetUnavailableError",
    "SPLITS",
    "default_data_dir",
    "stratified_split",
]

SPLITS = ("train", "validation", "test")


class DatasetUnavailableError(ValueError):
    """A dataset cannot be obtained on this machine (no local files and no network).

    The message says how to place the files locally or which offline dataset to use instead.
    The CLI turns it into exit code 2.
    """


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a :class:`DataSplits` holds.

    Attributes:
        name: dataset name (e.g. ``"mnist5k"``; the row view of it is ``"seq_mnist5k"``).
        task: ``"classification"`` (one integer label per example),
            ``"sequence_classification"`` (a sequence in, one label out),
            ``"next_step"`` (a sequence in, the next element at every step out: language
            modelling and the Elman prediction tasks).
        feature_shape: shape of one example's features (no batch axis).
        feature_dtype: dtype name of the features (``"float32"`` or ``"int32"``).
        target_shape: shape of one example's target (``()`` for a class label).
        target_dtype: dtype name of the target.
        num_classes: number of classes (or vocabulary size for next-character targets);
            ``None`` for vector targets (temporal XOR bits, letter feature vectors).
        num_examples: examples per split, e.g. ``{"train": 4000, "validation": 500, "test": 500}``.
        value_range: ``(low, high)`` of raw feature values (pixels: ``(0, 255)``), or ``None``.
        vocabulary: for character data, the token of every id (``vocabulary[0]`` is the
            out-of-vocabulary token ``"[UNK]"``, as in ``keras.layers.StringLookup``);
            for letter tasks, the letters; ``None`` otherwise.
        description: one paragraph on provenance and splitting.
        extras: task-specific arrays or values for analysis (e.g. word-onset flags per split).
    """

    name: str
    task: str
    feature_shape: tuple[int, ...]
    feature_dtype: str
    target_shape: tuple[int, ...]
    target_dtype: str
    num_classes: int | None
    num_examples: Mapping[str, int]
    value_range: tuple[float, float] | None = None
    vocabulary: tuple[str, ...] | None = None
    description: str = ""
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def vocab_size(self) -> int | None:
        """``len(vocabulary)`` or ``None``."""
        return None if self.vocabulary is None else len(self.vocabulary)


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """Train/validation/test splits: unbatched ``tf.data.Dataset`` of ``(features, target)``."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    info: DataInfo

    def split(self, name: str) -> tf.data.Dataset:
        """The split called ``name`` (one of ``"train"``, ``"validation"``, ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, received split={name!r}")
        return getattr(self, name)

    def __iter__(self):
        return iter((self.train, self.validation, self.test))


def default_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """The TFDS data directory: ``data_dir`` if given, else ``$TFDS_DATA_DIR``, else
    ``~/tensorflow_datasets`` (TFDS's own default)."""
    if data_dir is not None:
        return os.fspath(data_dir)
    env = os.environ.get("TFDS_DATA_DIR")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    sizes: Sequence[float],
    seed: int,
) -> list[np.ndarray]:
    """Split example indices into groups with the class proportions of the whole.

    ``sizes`` are fractions summing to 1 (e.g. ``(0.8, 0.1, 0.1)``). For every class with
    ``n_c`` examples, group ``s`` gets ``floor(n_c * sizes[s])`` examples plus one of the
    remaining ones in order of largest remainder, so each group's count of every class is within
    ±1 of ``n_c * sizes[s]``. Indices are drawn after a shuffle by ``np.random.default_rng(seed)``
    (sources sorted by class are mixed), and each returned group is shuffled again.

    Returns:
        one int64 index array per group; together they partition ``range(len(labels))``.
    """
    labels = np.asarray(labels)
    fractions = np.asarray(sizes, dtype=np.float64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, received shape {labels.shape}")
    if fractions.ndim != 1 or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"sizes must be non-negative fractions summing to 1, received {sizes}")
    rng = np.random.default_rng(seed)
    groups: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        exact = len(idx) * fractions
        counts = np.floor(exact).astype(np.int64)
        leftover = len(idx) - counts.sum()
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:leftover]] += 1
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for g in range(len(fractions)):
            groups[g].append(idx[bounds[g] : bounds[g + 1]])
    out = []
    for parts in groups:
        merged = np.concatenate(parts) if parts else np.zeros((0,), np.int64)
        out.append(merged[rng.permutation(len(merged))].astype(np.int64))
    return out
