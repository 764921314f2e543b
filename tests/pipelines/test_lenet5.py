"""LeNet-5 pipeline: model from the project's layers, augmentation, loss, schedule, accuracy."""

import math

import keras
import numpy as np
import pytest

import layers
from pipelines.augment import RandomAffine, bilinear_affine
from pipelines.lenet5 import SPEC, LeNet5Config, build_model
from pipelines.losses import SparseCategoricalCrossentropyWithSmoothing
from pipelines.optimizers import OneCycle, build_schedule
from tests.pipelines._helpers import mnist5k_dir  # noqa: F401


@pytest.mark.parametrize("pooling,cls", [("max", layers.MaxPooling2D),
                                         ("average", layers.AveragePooling2D),
                                         ("l2", layers.L2Pooling2D)])
def test_model_uses_project_layers(pooling, cls):
    model = build_model(LeNet5Config(pooling=pooling))
    assert [i.name for i in model.inputs] == ["image"]
    assert model.output_shape == (None, 10)
    kinds = [type(layer) for layer in model.layers]
    assert kinds.count(layers.Conv2D) == 2 and kinds.count(cls) == 2
    assert model.get_layer("c1").output.shape[1:] == (28, 28, 6)
    assert model.get_layer("s4").output.shape[1:] == (5, 5, 16)
    # LeNet-5 parameter count: c1 156, c3 2416, f5 48120, f6 10164, output 850.
    assert model.count_params() == 156 + 2416 + 48120 + 10164 + 850


def test_model_takes_raw_pixels_and_digits_are_resized():
    model = build_model(LeNet5Config(dataset="digits", augment=False))
    assert model.input_shape == (None, 8, 8, 1)
    probs = model(np.full((2, 8, 8, 1), 16.0, np.float32))
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, rtol=1e-5)
    base = build_model(LeNet5Config(augment=False))
    raw = np.random.default_rng(0).uniform(0, 255, (2, 28, 28, 1)).astype(np.float32)
    rescaled = keras.Model(base.inputs, base.get_layer("rescale").output)(raw)
    np.testing.assert_allclose(rescaled, raw / 255.0, rtol=1e-6)


def test_hp_overrides_config():
    class HP:  # the part of keras_tuner.HyperParameters that build_model reads
        values = {"pooling": "average", "conv_filters": [4, 8]}

        def get(self, name):
            return self.values[name]

    model = build_model(LeNet5Config(), HP())
    assert isinstance(model.get_layer("s2"), layers.AveragePooling2D)
    assert model.get_layer("c3").output.shape[-1] == 8


def test_random_affine_identity_and_inference():
    x = np.random.default_rng(1).uniform(0, 1, (4, 12, 12, 1)).astype(np.float32)
    np.testing.assert_allclose(RandomAffine(0.0, 0.0, 0.0)(x, training=True), x, atol=1e-6)
    np.testing.assert_array_equal(RandomAffine(30.0, 0.2, 0.2)(x, training=False), x)


def test_bilinear_affine_matches_keras_affine_transform():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (6, 28, 28, 2)).astype(np.float32)
    t = np.array([1, 0, 0, 0, 1, 0], np.float32) + rng.normal(0, 0.2, (6, 6)).astype(np.float32)
    t[:, 2] += rng.normal(0, 3, 6)
    t[:, 5] -= rng.normal(0, 3, 6)
    ref = keras.ops.image.affine_transform(
        x, np.concatenate([t, np.zeros((6, 2), np.float32)], 1), interpolation="bilinear",
        fill_mode="constant", fill_value=0.0)
    np.testing.assert_allclose(bilinear_affine(x, t), ref, atol=1e-3)
    # A pure integer shift by (dx, dy) = (2, -1): out[y, x] = in[y - 1, x + 2], zeros outside.
    shift = np.array([[1, 0, 2, 0, 1, -1]], np.float32)
    out = np.asarray(bilinear_affine(x[:1], shift))
    np.testing.assert_allclose(out[0, 1:, :-2], x[0, :-1, 2:], atol=1e-4)
    assert np.all(out[0, 0] == 0) and np.all(out[0, :, -2:] == 0)


def test_random_affine_moves_but_keeps_mass_of_centered_blob():
    x = np.zeros((8, 28, 28, 1), np.float32)
    x[:, 10:18, 12:16, 0] = 1.0
    y = np.asarray(RandomAffine(15.0, 0.0, 0.1, seed=3)(x, training=True))
    assert not np.allclose(y, x)
    # Rotation + shift of an interior blob preserve its mass (bilinear resampling).
    np.testing.assert_allclose(y.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)), rtol=0.03)
    with pytest.raises(ValueError, match="zoom must be < 1"):
        RandomAffine(0.0, 1.5, 0.0)


def test_smoothed_cross_entropy_worked_example():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    y = np.array([0, 2])
    eps = 0.3
    q = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    expected = -(q * np.log(p)).sum(-1)
    loss = SparseCategoricalCrossentropyWithSmoothing(eps, reduction=None)
    np.testing.assert_allclose(loss(y, p), expected, rtol=1e-5)
    mean = SparseCategoricalCrossentropyWithSmoothing(0.0)(y, p)
    np.testing.assert_allclose(mean, -(np.log(0.7) + np.log(0.8)) / 2, rtol=1e-5)


def test_one_cycle_and_cosine_schedules():
    s = OneCycle(1e-2, total_steps=100)
    np.testing.assert_allclose(float(s(0)), 1e-2 / 25, rtol=1e-5)
    np.testing.assert_allclose(float(s(30)), 1e-2, rtol=1e-5)
    np.testing.assert_allclose(float(s(65)), 1e-6 + (1e-2 - 1e-6) * 0.5, rtol=1e-4)
    np.testing.assert_allclose(float(s(100)), 1e-6, rtol=1e-3)
    cos = build_schedule(LeNet5Config(lr_schedule="cosine", learning_rate=0.1,
                                      warmup_epochs=1.0), total_steps=50, steps_per_epoch=10)
    np.testing.assert_allclose(float(cos(5)), 0.05, rtol=1e-5)  # halfway up the warm-up
    np.testing.assert_allclose(float(cos(10 + 20)), 0.1 * 0.5 * (1 + math.cos(math.pi / 2)),
                               atol=1e-6)
    assert build_schedule(LeNet5Config(lr_schedule="constant"), 10, 5) == pytest.approx(4e-3)


def test_config_rules():
    from pipelines.config import ConfigError

    with pytest.raises(ConfigError, match="conv_filters"):
        LeNet5Config(conv_filters=(6,))
    assert SPEC.default_config().export_name == "lenet5"
    assert SPEC.default_config(model_name="digits_v2").export_name == "digits_v2"


@pytest.mark.slow
def test_default_config_reaches_97_percent(tmp_path, mnist5k_dir):  # noqa: F811
    """`make train` defaults (30 epochs, augmentation, one-cycle) on mnist5k's held-out test."""
    from pipelines.trainer import train

    result = train(SPEC.default_config(data_dir=str(mnist5k_dir), verbose=0, export=False),
                   tmp_path)
    assert result.metrics["test_accuracy"] >= 0.97, result.metrics
    assert result.metrics["val_accuracy"] >= 0.97, result.metrics
