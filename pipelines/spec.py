"""PipelineSpec: what a pipeline module provides to the shared trainer, CLI and tuner.

A pipeline is a module (``pipelines/lenet5.py``, ``pipelines/ksparse.py``, ``pipelines/elman.py``)
with a module-level ``SPEC: PipelineSpec``. The trainer (:func:`pipelines.trainer.train`) owns
everything generic — strategy, distributed custom training loop, optimizer and schedule, mixed
precision, XLA, checkpoints/resume, TensorBoard, metrics.json, plots, export — and asks the spec
only for the pipeline-specific parts. Every hook is a PURE function of its arguments (no global
state), so the tuner can call them per trial.

Contract of the hooks (``C`` is the pipeline's :class:`~pipelines.config.TrainConfig` subclass):

``build_model(config: C, hp=None) -> keras.Model``
    A NEW, uncompiled functional Keras model whose inputs are named ``keras.Input(name=...)``
    tensors taking RAW data (pixels 0–255 as float32, text as tf.string, …): preprocessing lives
    inside the model, and training-only augmentation layers must be inactive when
    ``training=False``. ``hp`` is a ``keras_tuner.HyperParameters`` (or None → use the config).
    Called inside the strategy scope by the trainer.

``make_datasets(config: C) -> Datasets``
    ``tf.data`` pipelines already batched by the GLOBAL ``config.batch_size``; elements are
    ``(inputs, targets)`` or ``(inputs, targets, sample_weight)``; ``inputs`` is a dict keyed by
    the model's input names (or a single tensor for single-input models). ``train`` is one epoch
    (finite, not repeated; the trainer loops epochs and shards it across workers), shuffled with
    ``config.seed`` (``pipelines.data.make_input_pipeline`` does all of this). It must honour
    ``config.max_train_examples`` (take that many training examples before batching).
    ``validation``/``test`` may be None. Keep the module's top level free of TensorFlow/Keras
    imports (import them inside the hooks) so resolving a config stays instant.

``build_loss(config: C) -> keras.losses.Loss``
    The trainer sets its ``reduction`` to None to obtain per-example values, averages those over
    non-batch axes and divides the sum by the GLOBAL number of examples in the step.

``build_metrics(config: C) -> list[keras.metrics.Metric]``   (default: none)
    Fresh metric objects; logged as ``name`` (train), ``val_name`` and ``test_name``.

``build_callbacks(config: C, model) -> list[keras.callbacks.Callback]``   (default: none)
    Extra Keras callbacks run by the trainer's loop (e.g. ksparse's ``KSparseSchedule``).

``export_model(config: C, model) -> keras.Model``   (default: the trained model itself)
    The model to export (e.g. only the encoder), built from the trained model's layers.

``export_kwargs(config: C, datasets: Datasets) -> dict``   (default: {})
    Keyword arguments for ``serving.export.export_model``: ``task`` ("classification" /
    "regression" / None), ``class_names``, ``output_names``, ``warmup_inputs``.

``search_space(hp) -> dict``   (default: None → the pipeline cannot be tuned)
    Declares the pipeline's KerasTuner search space on ``hp`` (a
    ``keras_tuner.HyperParameters``: ``hp.Float``, ``hp.Int``, ``hp.Choice``, ``hp.Boolean``)
    and returns the config overrides drawn from it, ``{config_key: value}``; the tuner applies
    them with ``dataclasses.replace`` (so config validation applies) and builds/trains from the
    resulting config. Declared next to the pipeline's config dataclass.

``evaluate(config: C, model, run_dir: pathlib.Path) -> dict``   (default: none)
    Pipeline-specific evaluation run once by the trainer on the chief after the test split
    (e.g. ksparse's logistic regression on the codes, elman's samples and error plots): it may
    write files into ``run_dir`` (``plots/``, ``samples.txt``); numeric values it returns are
    merged into the run's metrics (``test_*`` ones into ``test`` too), and the whole dict is
    stored under ``"evaluation"`` in ``metrics.json``.

``monitor``: the metric name summarised by sweeps and tuners (e.g. ``"val_accuracy"``), and
``monitor_mode``: ``"max"`` or ``"min"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - typing only; keeps `import pipelines.spec` light.
    import keras
    import tensorflow as tf

    from pipelines.config import TrainConfig

__all__ = ["Datasets", "PipelineSpec"]


@dataclasses.dataclass(frozen=True)
class Datasets:
    """The splits a pipeline trains and evaluates on (each batched by the GLOBAL batch size).

    ``info`` carries facts the trainer/exporter may use: ``num_classes``, ``class_names``,
    ``num_train_examples``, ``input_shape``, ... (all optional).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None = None
    test: tf.data.Dataset | None = None
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _no_metrics(config: Any) -> list:
    return []


def _no_callbacks(config: Any, model: Any) -> list:
    return []


def _no_export_kwargs(config: Any, datasets: Datasets) -> dict:
    return {}


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """What one pipeline module provides (see the module docstring for each hook's contract)."""

    name: str
    config_class: type[TrainConfig]
    build_model: Callable[..., keras.Model]
    make_datasets: Callable[[Any], Datasets]
    build_loss: Callable[[Any], keras.losses.Loss]
    build_metrics: Callable[[Any], list] = _no_metrics
    build_callbacks: Callable[[Any, Any], list] = _no_callbacks
    export_model: Callable[[Any, Any], Any] | None = None
    export_kwargs: Callable[[Any, Datasets], dict] = _no_export_kwargs
    evaluate: Callable[[Any, Any, Any], dict] | None = None
    search_space: Callable[[Any], dict] | None = None
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"PipelineSpec name must be an identifier, received {self.name!r}")
        if self.monitor_mode not in ("min", "max"):
            raise ValueError(
                f"PipelineSpec monitor_mode must be 'min' or 'max', received {self.monitor_mode!r}"
            )
        for hook in ("build_model", "make_datasets", "build_loss", "build_metrics",
                     "build_callbacks", "export_kwargs"):
            if not callable(getattr(self, hook)):
                raise ValueError(f"PipelineSpec {hook} must be callable, received "
                                 f"{getattr(self, hook)!r}")

    def default_config(self, **overrides: Any) -> TrainConfig:
        """The pipeline's config with its defaults (and keyword overrides), validated."""
        return self.config_class(**overrides)
