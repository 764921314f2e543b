"""Shared helpers for the pipelines-core tests (tiny LeNet-5 runs on a slice of mnist5k)."""

from __future__ import annotations

import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent


def tiny_config(data_dir, **overrides):
    """A LeNet-5 config that trains in seconds: 96 images, batch 32, 2 epochs, no augmentation."""
    from pipelines.lenet5 import SPEC

    values = dict(
        epochs=2, batch_size=32, max_train_examples=96, validation_steps=2, augment=False,
        lr_schedule="constant", learning_rate=3e-3, verbose=0, data_dir=str(data_dir),
        checkpoint_every_steps=2,
    )
    values.update(overrides)
    return SPEC.default_config(**values)


@pytest.fixture(scope="session")
def mnist5k_dir(tmp_path_factory):
    """A private TFDS data dir with mnist5k prepared (independent of ~/tensorflow_datasets)."""
    from pipelines import data

    path = tmp_path_factory.mktemp("tfds")
    data.load("mnist5k", data_dir=path)
    return path
