"""k-sparse autoencoder on MNIST, then logistic regression on its codes (Makhzani & Frey 2013).

Model (input: raw pixels ``image`` float32 [28, 28, 1] in 0–255)::

    Rescaling(1/255) → Flatten → KSparseAutoencoder(units=1000, k, alpha, tied weights)
    x ∈ [0,1]^784:  z = x W + b,  z' = supp_k(z),  x̂ = z' Wᵀ + b'      (training: k units)

trained on the mean squared reconstruction error (``loss = mse`` in [0, 1] pixel units) with the
paper's k schedule (:class:`layers.KSparseSchedule`: k decreases linearly from ``k_start`` to
``k`` over the first ``schedule_fraction`` of the epochs).

After training, :func:`evaluate` encodes the train and test images with ``alpha·k`` units
(``supp_{αk}``, the paper's encoding for classification), fits a logistic regression
(scikit-learn, multinomial, L2 with ``C = classifier_c``) on the train codes and reports on test::

    test_classification_error      1 − accuracy of the logistic regression on the αk codes
    test_reconstruction_mse        mean (x − x̂)² in [0, 1] pixel units, x̂ from the k largest
                                   (the trained objective; equals the trainer's ``test_loss``)
    active_units                   hidden units used by at least one test αk code (not dead)

and writes ``plots/filters.png`` (each hidden unit's 784 weights as a 28×28 image — the
paper's Figure 1) and ``plots/reconstructions.png`` (test inputs above their reconstructions).

Export: ``image`` (raw pixels) → ``reconstruction`` (float32 [28, 28, 1], 0–255 scale, from the
k largest) and ``code`` (float32 [units], the αk encoding), ``task=None``.

Entry points: ``deepline-train ksparse`` (the core trainer; :func:`evaluate_run` is the spec's
``evaluate`` hook, merged into ``metrics.json``) and the paper's sweep,
``deepline-train ksparse --sweep k=10,25,40,70`` (one run per k and a summary table of every
run's metrics in ``runs/ksparse/sweeps/``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Literal

import keras
import numpy as np

from layers import KSparseAutoencoder, KSparseSchedule
from pipelines.config import ConfigError, TrainConfig, option
from pipelines.spec import Datasets, PipelineSpec

__all__ = [
    "KSparseConfig",
    "ReconstructionAndCode",
    "build_model",
    "make_datasets",
    "build_export_model",
    "evaluate",
    "evaluate_run",
    "train",
    "SPEC",
]

IMAGE_SHAPE = (28, 28, 1)
INPUT_DIM = 28 * 28
MAX_PIXEL = 255.0


@dataclasses.dataclass(frozen=True)
class KSparseConfig(TrainConfig):
    """k-sparse autoencoder configuration (TrainConfig fields plus the model/classifier knobs)."""

    pipeline: str = option("ksparse", "pipeline name")
    dataset: Literal["mnist5k", "mnist"] = option("mnist5k", "MNIST dataset")
    epochs: int = option(30, "number of passes over the training split", min=1)
    batch_size: int = option(128, "GLOBAL batch size (split across replicas)", min=1)
    learning_rate: float = option(1e-3, "peak learning rate", min=0.0)
    lr_schedule: Literal["constant", "cosine", "onecycle"] = option(
        "constant", "learning-rate schedule over all training steps"
    )
    units: int = option(1000, "hidden units of the autoencoder", min=1)
    k: int = option(25, "units kept per example while training (top-k)", min=1)
    alpha: float = option(3.0, "inference/encoding keeps min(units, round(alpha*k)) units",
                          min=1.0)
    k_start: int | None = option(
        None, "k at the first epoch of the schedule (none = units; the paper: e.g. 100)", min=1
    )
    schedule_fraction: float = option(
        0.5, "fraction of training over which k decreases linearly to k", min=0.01, max=1.0
    )
    schedule_by: Literal["epoch", "step"] = option("epoch", "update k every epoch or step")
    tied_weights: bool = option(True, "decoder uses the transposed encoder weights")
    init_stddev: float = option(0.01, "stddev of the Gaussian initial weights (0 = Glorot)",
                                min=0.0)
    classifier_c: float = option(1.0, "inverse L2 strength of the logistic regression",
                                 min=1e-9)
    classifier_max_iter: int = option(500, "L-BFGS iterations of the logistic regression",
                                      min=1)
    plot_filters: int = option(100, "hidden units shown in plots/filters.png", min=1)
    shuffle_buffer: int = option(10_000, "shuffle buffer (examples)", min=1)
    data_dir: str | None = option(None, "TFDS data directory (default: $TFDS_DATA_DIR or ~)")

    def validate(self) -> None:
        super().validate()
        if self.k > self.units:
            raise ConfigError(
                f"config key 'k' must be <= units={self.units}, received {self.k!r}"
            )
        if self.k_start is not None and not self.k <= self.k_start <= self.units:
            raise ConfigError(
                f"config key 'k_start' must be between k={self.k} and units={self.units}, "
                f"received {self.k_start!r}"
            )


def search_space(hp) -> dict:
    """k-sparse autoencoder's KerasTuner search space → config overrides.

    ``k`` ∈ {10, 25, 40, 70} (the paper's values), ``alpha`` ∈ [1, 4] step 0.5 (encoding with
    αk units), ``learning_rate`` log-uniform in [1e-4, 1e-2]. The objective defaults to
    ``val_loss`` (reconstruction MSE); the logistic-regression error is computed after training
    by :func:`evaluate`, outside the tuner.
    """
    return {
        "k": hp.Choice("k", [10, 25, 40, 70], default=25),
        "alpha": hp.Float("alpha", 1.0, 4.0, step=0.5, default=3.0),
        "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3),
    }


# -- model -------------------------------------------------------------------------------------
def _hp(config: KSparseConfig, hp, name: str):
    """A hyperparameter value from ``hp`` when the tuner defined it, else from the config."""
    if hp is not None and name in getattr(hp, "values", {}):
        return hp.get(name)
    return getattr(config, name)


def _kernel_initializer(config: KSparseConfig):
    if config.init_stddev > 0:
        return keras.initializers.RandomNormal(stddev=config.init_stddev, seed=config.seed)
    return keras.initializers.GlorotUniform(seed=config.seed)


def build_model(config: KSparseConfig, hp=None) -> keras.Model:
    """``image`` (raw pixels) → reconstruction x̂ (flat, [0, 1] scale) of the k-sparse AE.

    ``hp`` may override ``units``, ``k``, ``alpha`` and ``tied_weights``.
    """
    units, k = int(_hp(config, hp, "units")), int(_hp(config, hp, "k"))
    if k > units:
        raise ValueError(f"k must be <= units={units}; received k={k!r}")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image", dtype="float32")
    x = keras.layers.Rescaling(1.0 / MAX_PIXEL, name="rescale")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    autoencoder = KSparseAutoencoder(
        units=units, k=k, alpha=float(_hp(config, hp, "alpha")),
        tied_weights=bool(_hp(config, hp, "tied_weights")),
        kernel_initializer=_kernel_initializer(config),
        name="autoencoder",
    )
    return keras.Model(inputs, autoencoder(x), name="ksparse")


def autoencoder_of(model: keras.Model) -> KSparseAutoencoder:
    """The :class:`KSparseAutoencoder` inside a model built by :func:`build_model`."""
    return model.get_layer("autoencoder")


class ReconstructionAndCode(keras.layers.Layer):
    """``x`` (flat, [0, 1]) → ``(x̂, code)``: reconstruction from k units, αk encoding."""

    def __init__(self, autoencoder: KSparseAutoencoder, **kwargs):
        super().__init__(**kwargs)
        self.autoencoder = autoencoder

    def call(self, x):
        return self.autoencoder(x), self.autoencoder.encode(x, training=False)

    def compute_output_shape(self, input_shape):
        return (input_shape, (input_shape[0], self.autoencoder.units))


def build_export_model(config: KSparseConfig, model: keras.Model) -> keras.Model:
    """``image`` (raw 0–255) → [``reconstruction`` (28, 28, 1) in 0–255, ``code`` (units,)]."""
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image", dtype="float32")
    x = keras.layers.Rescaling(1.0 / MAX_PIXEL, name="rescale")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    reconstruction, code = ReconstructionAndCode(autoencoder_of(model), name="autoencoder")(x)
    reconstruction = keras.layers.Rescaling(MAX_PIXEL, name="to_pixels")(reconstruction)
    reconstruction = keras.layers.Reshape(IMAGE_SHAPE, name="reconstruction")(reconstruction)
    code = keras.layers.Identity(name="code")(code)
    return keras.Model(inputs, [reconstruction, code], name="ksparse_export")


# -- data --------------------------------------------------------------------------------------
def _load_splits(config: KSparseConfig):
    from pipelines.data import load

    return load(config.dataset, data_dir=config.data_dir)


def make_datasets(config: KSparseConfig) -> Datasets:
    """Batched (GLOBAL batch size) splits of ``({"image": x}, x_flat / 255)`` — the target is
    the image itself, flattened to 784 values in [0, 1]."""
    import tensorflow as tf

    from pipelines.data import make_input_pipeline

    splits = _load_splits(config)

    def autoencode(image, label):
        return {"image": image}, tf.reshape(image, [INPUT_DIM]) / MAX_PIXEL

    train = splits.train
    if config.max_train_examples:
        train = train.take(config.max_train_examples)
    batch = config.batch_size
    train_ds = make_input_pipeline(train, global_batch_size=batch, training=True,
                                   seed=config.seed, shuffle_buffer=config.shuffle_buffer,
                                   map_fn=autoencode)
    val_ds = make_input_pipeline(splits.validation, global_batch_size=batch, training=False,
                                 map_fn=autoencode)
    test_ds = make_input_pipeline(splits.test, global_batch_size=batch, training=False,
                                  map_fn=autoencode)
    n_train = splits.info.num_examples.get("train", 0)
    if config.max_train_examples:
        n_train = min(n_train, config.max_train_examples)
    return Datasets(train_ds, val_ds, test_ds, info={
        "num_train_examples": n_train, "input_shape": IMAGE_SHAPE,
        "num_classes": splits.info.num_classes,
    })


def build_loss(config: KSparseConfig) -> keras.losses.Loss:
    return keras.losses.MeanSquaredError(name="mse")


def build_callbacks(config: KSparseConfig, model: keras.Model) -> list:
    return [KSparseSchedule(k=config.k, k_start=config.k_start,
                            fraction=config.schedule_fraction, by=config.schedule_by,
                            layer_name="ksparse")]


def export_kwargs(config: KSparseConfig, datasets: Datasets) -> dict:
    warm = np.zeros((1, *IMAGE_SHAPE), np.float32)
    warm[0, 7:21, 13:15, 0] = MAX_PIXEL  # a vertical stroke, like a "1"
    return {"task": None, "output_names": ["reconstruction", "code"],
            "warmup_inputs": {"image": warm}}


# -- evaluation: classifier on the codes, plots ------------------------------------------------
def _arrays(ds, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if limit:
        ds = ds.take(limit)
    images, labels = [], []
    for image, label in ds.batch(1024).as_numpy_iterator():
        images.append(image.reshape(len(image), INPUT_DIM))
        labels.append(label)
    return (np.concatenate(images).astype(np.float32) / MAX_PIXEL,
            np.concatenate(labels).astype(np.int64))


def _encode(autoencoder: KSparseAutoencoder, x: np.ndarray, training: bool) -> np.ndarray:
    parts = [keras.ops.convert_to_numpy(autoencoder.encode(x[i:i + 1024], training=training))
             for i in range(0, len(x), 1024)]
    return np.concatenate(parts).astype(np.float32)


def _decode(autoencoder: KSparseAutoencoder, code: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(autoencoder.decode(code)).astype(np.float32)


def evaluate(config: KSparseConfig, model: keras.Model, plots_dir: str | os.PathLike | None
             ) -> dict[str, float]:
    """Logistic regression on the αk codes, reconstruction errors, and the plots.

    Returns ``test_classification_error``, ``train_classification_error``,
    ``test_reconstruction_mse`` (k code) and ``active_units`` (αk codes); writes
    ``filters.png`` and ``reconstructions.png`` into ``plots_dir``.
    """
    from sklearn.linear_model import LogisticRegression

    autoencoder = autoencoder_of(model)
    splits = _load_splits(config)
    x_train, y_train = _arrays(splits.train, config.max_train_examples)
    x_test, y_test = _arrays(splits.test)
    code_train = _encode(autoencoder, x_train, training=False)
    code_test = _encode(autoencoder, x_test, training=False)
    classifier = LogisticRegression(C=config.classifier_c, max_iter=config.classifier_max_iter)
    classifier.fit(code_train, y_train)
    recon = _decode(autoencoder, _encode(autoencoder, x_test, training=True))
    metrics = {
        "test_classification_error": float(1.0 - classifier.score(code_test, y_test)),
        "train_classification_error": float(1.0 - classifier.score(code_train, y_train)),
        "test_reconstruction_mse": float(np.mean((x_test - recon) ** 2)),
        "active_units": float(np.count_nonzero((code_test != 0).any(axis=0))),
    }
    if plots_dir is not None:
        kernel = keras.ops.convert_to_numpy(autoencoder.kernel)
        plot_filters(kernel, pathlib.Path(plots_dir) / "filters.png", config.plot_filters,
                     title=f"k-sparse autoencoder filters (k={config.k}, {autoencoder.units} "
                           f"units)")
        plot_reconstructions(x_test[:10], recon[:10],
                             pathlib.Path(plots_dir) / "reconstructions.png",
                             title=f"test inputs (top), reconstructions (bottom) from "
                                   f"k={autoencoder.k} units")
    return metrics


def _grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile (n, h, w) images into one (rows·(h+1)−1, columns·(w+1)−1) array, NaN separators."""
    n, h, w = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan, np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = image
    return canvas


def plot_filters(kernel: np.ndarray, path: pathlib.Path, count: int = 100,
                 title: str = "filters") -> pathlib.Path:
    """Each hidden unit's weight vector ``W[:, j]`` (784) as a 28×28 image, each scaled to its
    own [min, max], in a square grid (the paper's Figure 1)."""
    from pipelines.plots import pyplot, save_figure

    plt = pyplot()

    filters = kernel.T[:count].reshape(-1, 28, 28)
    low = filters.min(axis=(1, 2), keepdims=True)
    span = filters.max(axis=(1, 2), keepdims=True) - low
    filters = (filters - low) / np.where(span > 0, span, 1.0)
    columns = int(np.ceil(np.sqrt(len(filters))))
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(_grid(filters, columns), cmap="gray", interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return save_figure(fig, path, dpi=100, bbox_inches="tight")


def plot_reconstructions(inputs: np.ndarray, reconstructions: np.ndarray, path: pathlib.Path,
                         title: str = "reconstructions") -> pathlib.Path:
    """Inputs (top row) above their reconstructions (bottom row), 28×28 each, [0, 1] scale."""
    from pipelines.plots import pyplot, save_figure

    plt = pyplot()

    n = len(inputs)
    pairs = np.concatenate([inputs.reshape(n, 28, 28),
                            np.clip(reconstructions.reshape(n, 28, 28), 0.0, 1.0)])
    fig, ax = plt.subplots(figsize=(max(4, n), 2.4))
    ax.imshow(_grid(pairs, n), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return save_figure(fig, path, dpi=100, bbox_inches="tight")


# -- entry points ------------------------------------------------------------------------------
def evaluate_run(config: KSparseConfig, model: keras.Model, run_dir: str | os.PathLike
                 ) -> dict[str, float]:
    """The spec's ``evaluate`` hook: :func:`evaluate` with plots into ``<run dir>/plots/``."""
    return evaluate(config, model, pathlib.Path(run_dir) / "plots")


def train(config: KSparseConfig, workdir: str | os.PathLike = ".", **kwargs):
    """:func:`pipelines.trainer.train` with this pipeline's spec (the classifier, metrics and
    plots come from its ``evaluate`` hook). Returns the TrainResult."""
    from pipelines.trainer import train as core_train

    return core_train(config, workdir, spec=SPEC, **kwargs)


SPEC = PipelineSpec(
    name="ksparse",
    config_class=KSparseConfig,
    build_model=build_model,
    make_datasets=make_datasets,
    build_loss=build_loss,
    build_callbacks=build_callbacks,
    export_model=build_export_model,
    evaluate=evaluate_run,
    export_kwargs=export_kwargs,
    search_space=search_space,
    monitor="val_loss",
    monitor_mode="min",
    description="k-sparse autoencoder on MNIST + logistic regression on its alpha*k codes",
)

