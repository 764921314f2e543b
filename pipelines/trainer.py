"""``train(config, workdir)``: the one training entry point behind the CLI, sweeps and tuner.

What a call does, in order:

1. picks the strategy (:func:`pipelines.strategy.select_strategy`: TF_CONFIG → multi-worker,
   several GPUs → mirrored, else default) and whether this process is the chief;
2. opens ``<workdir>/runs/<pipeline>/<run>/`` and writes the resolved ``config.yaml``;
3. builds datasets, model (``spec.build_model(config, hp)``), optimizer/schedule, loss and
   metrics under the strategy scope, with ``mixed_float16`` when the config asks for it;
4. restores the newest checkpoint of the run, if any (resume: counters, optimizer state, data
   position), then runs :class:`pipelines.distributed_loop.DistributedLoop` epoch by epoch —
   checkpoints every ``checkpoint_every_steps`` steps and at each epoch end, validation after
   every epoch, Keras callbacks (progress bar, TensorBoard, the pipeline's own);
5. evaluates the test split, writes ``metrics.json`` and ``plots/*.png``;
6. exports the trained weights (rebuilt in float32 outside the strategy) through
   ``serving.export.export_model`` to ``<export_dir>/<model_name>/<version>/`` — a new version,
   never an existing one; a rerun of an already finished run does not export again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from pipelines.checkpoints import TrainState
from pipelines.config import (
    ConfigError,
    TrainConfig,
    config_changes,
    config_to_dict,
    load_yaml,
    save_config,
)
from pipelines.distributed_loop import DistributedLoop
from pipelines.optimizers import build_optimizer
from pipelines.plots import plot_history
from pipelines.registry import get_spec
from pipelines.rundir import RunDir, write_json_atomic
from pipelines.spec import Datasets, PipelineSpec
from pipelines.strategy import is_chief, select_strategy, strategy_name, worker_index

__all__ = ["TrainResult", "train", "count_batches", "export_trained_model"]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    ``metrics``: final logs — ``loss`` and metric names (last epoch, train), ``val_*`` (last
    epoch), ``test_*`` (test split). ``history``: per-epoch logs. ``resumed_from_step``: the
    global step restored from a checkpoint (0 for a fresh run). ``model``: the trained model.
    """

    run_dir: pathlib.Path
    config: TrainConfig
    metrics: dict[str, float]
    history: list[dict[str, float]]
    global_step: int
    resumed_from_step: int
    steps_per_epoch: int
    export_path: pathlib.Path | None
    train_time_s: float
    model: Any = dataclasses.field(repr=False, default=None)


def count_batches(dataset: tf.data.Dataset) -> int:
    """Number of batches in one pass of a finite dataset (cardinality, or by iterating)."""
    n = int(dataset.cardinality())
    if n >= 0:
        return n
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("the training dataset is infinite; set steps_per_epoch in the config")
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda c, _: c + 1))


class _DtypePolicy:
    """Context manager: set the Keras global dtype policy, restore the previous one on exit."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.name)

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.previous)


def export_trained_model(spec: PipelineSpec, config: TrainConfig, model: keras.Model,
                         datasets: Datasets, workdir: str | os.PathLike, *, hp=None
                         ) -> pathlib.Path:
    """Rebuild the model in float32 outside any strategy, copy the weights, export it.

    Returns the new version directory ``<export_dir>/<model_name>/<version>/`` written by
    ``serving.export.export_model`` (atomic, never an existing version).
    """
    from serving.export import export_model

    with _DtypePolicy("float32"):
        clone = spec.build_model(config, hp)
    clone.set_weights(model.get_weights())
    target = spec.export_model(config, clone) if spec.export_model is not None else clone
    base = pathlib.Path(config.export_dir)
    if not base.is_absolute():
        base = pathlib.Path(workdir).resolve() / base
    kwargs = dict(spec.export_kwargs(config, datasets))
    return pathlib.Path(export_model(target, base, config.export_name, **kwargs))


def _tensorboard_callback(run_dir: RunDir) -> keras.callbacks.Callback:
    return keras.callbacks.TensorBoard(
        log_dir=str(run_dir.tensorboard), write_graph=False, profile_batch=0, update_freq="epoch"
    )


def _previous_export(run_dir: RunDir) -> pathlib.Path | None:
    try:
        data = json.loads(run_dir.metrics_json.read_text())
    except (OSError, ValueError):
        return None
    path = data.get("export_path")
    return pathlib.Path(path) if path and pathlib.Path(path).exists() else None


def train(config: TrainConfig, workdir: str | os.PathLike = ".", *, hp=None,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None,
          spec: PipelineSpec | None = None) -> TrainResult:
    """Train ``config.pipeline`` with ``config``; run files under ``<workdir>/runs/...``.

    Args:
        config: a validated config of the pipeline (``spec.config_class``).
        workdir: base directory of ``runs/`` and (relative ``export_dir``) ``models/``.
        hp: optional ``keras_tuner.HyperParameters`` passed to ``spec.build_model``.
        callbacks: extra Keras callbacks for the loop (in addition to the pipeline's).
        strategy: a strategy to use instead of :func:`select_strategy` (must be created first
            in the process for multi-worker).
        spec: the pipeline spec (default: looked up from ``config.pipeline``).
    """
    spec = spec or get_spec(config.pipeline)
    if not isinstance(config, spec.config_class):
        raise ValueError(
            f"config must be a {spec.config_class.__name__} for pipeline {spec.name!r}, "
            f"received {type(config).__name__}"
        )
    strategy = strategy or select_strategy()
    chief = is_chief(strategy)
    run_dir = RunDir.create(workdir, spec.name, config.run, chief=chief,
                            worker_index=worker_index(strategy))
    try:
        return _train(spec, config, workdir, run_dir, strategy, chief, hp, callbacks)
    finally:
        run_dir.cleanup()


def check_resumable(run_dir: RunDir, config: TrainConfig) -> None:
    """A run that has checkpoints resumes only with the config it was trained with; ``epochs``
    (train further) and the result-neutral keys (``verbose``, export and checkpoint settings, ...)
    may change. Otherwise ConfigError names the changed keys, before ``config.yaml`` or any
    checkpoint is touched."""
    if not run_dir.config_yaml.exists() or tf.train.latest_checkpoint(
            str(run_dir.checkpoints)) is None:
        return
    changes = config_changes(load_yaml(run_dir.config_yaml), config_to_dict(config),
                             allowed={"epochs"})
    if changes:
        raise ConfigError(
            f"run {run_dir.root} was trained with another config ({'; '.join(changes)}): rerun "
            "with its values to resume it, or start a new run with --run NAME"
        )


def _train(spec, config, workdir, run_dir, strategy, chief, hp, extra_callbacks) -> TrainResult:
    started = time.perf_counter()
    check_resumable(run_dir, config)
    if chief:
        save_config(config, run_dir.config_yaml)
    keras.utils.set_random_seed(config.seed)
    mixed = config.use_mixed_precision
    with _DtypePolicy("mixed_float16" if mixed else "float32"):
        datasets = spec.make_datasets(config)
        steps_per_epoch = count_batches(datasets.train)
        if config.steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
        if steps_per_epoch < 1:
            raise ValueError("the training split is empty: no batch to train on")
        total_steps = steps_per_epoch * config.epochs
        with strategy.scope():
            model = spec.build_model(config, hp)
            optimizer = build_optimizer(config, total_steps, steps_per_epoch,
                                        mixed_precision=mixed)
            optimizer.build(model.trainable_variables)
            model.compile(optimizer=optimizer)  # lets Keras callbacks see model.optimizer
            loop = DistributedLoop(strategy, model, optimizer, spec.build_loss(config),
                                   spec.build_metrics(config), jit_compile=config.jit_compile)
    state = TrainState(model, optimizer, read_dir=run_dir.checkpoints,
                       write_dir=run_dir.checkpoint_write_dir, max_to_keep=config.keep_checkpoints)
    state.restore_latest()
    resumed_from = int(state.global_step.numpy())
    finished_before = int(state.epoch.numpy()) >= config.epochs
    if finished_before and config.verbose and chief:
        print(f"[deepline] run {run_dir.root} already finished {int(state.epoch.numpy())} "
              f"epochs (global step {resumed_from}); use --run NAME for a new run", flush=True)
    elif resumed_from and config.verbose and chief:
        print(f"[deepline] resuming run {run_dir.root} at epoch {int(state.epoch.numpy()) + 1}, "
              f"step {int(state.step_in_epoch.numpy())} of {steps_per_epoch} "
              f"(global step {resumed_from})", flush=True)

    cb_list = list(spec.build_callbacks(config, model)) + list(extra_callbacks)
    if chief:
        cb_list.append(_tensorboard_callback(run_dir))
    callbacks = keras.callbacks.CallbackList(
        cb_list, add_history=True, add_progbar=bool(config.verbose) and chief, model=model,
        epochs=config.epochs, steps=steps_per_epoch, verbose=config.verbose,
    )

    every = config.checkpoint_every_steps

    def on_step_end(step_in_epoch: int) -> None:
        state.global_step.assign_add(1)
        state.step_in_epoch.assign(step_in_epoch)
        if int(state.global_step.numpy()) % every == 0 and step_in_epoch < steps_per_epoch:
            state.save()

    if resumed_from and not finished_before:
        loop.replay_epochs(datasets.train, int(state.epoch.numpy()))
    logs: dict[str, float] = {}
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(int(state.epoch.numpy()), config.epochs):
        epoch_start = time.perf_counter()
        start_step = int(state.step_in_epoch.numpy())
        callbacks.on_epoch_begin(epoch)
        logs = loop.train_epoch(datasets.train, epoch=epoch, steps=steps_per_epoch,
                                start_step=start_step, callbacks=callbacks,
                                on_step_end=on_step_end)
        if config.validation and datasets.validation is not None:
            logs.update(loop.evaluate(datasets.validation, steps=config.validation_steps,
                                      prefix="val_", callbacks=callbacks))
        state.epoch.assign(epoch + 1)
        state.step_in_epoch.assign(0)
        state.append_history({"epoch": epoch + 1, **logs,
                              "global_step": int(state.global_step.numpy()),
                              "time_s": time.perf_counter() - epoch_start})
        state.save()
        callbacks.on_epoch_end(epoch, logs)
        if chief:
            _write_metrics(run_dir, spec, config, state, logs, {}, steps_per_epoch, resumed_from,
                           None, started, strategy)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)

    history = state.history
    final = {k: v for k, v in (history[-1] if history else {}).items()
             if k not in ("epoch", "global_step", "time_s")}
    test_logs: dict[str, float] = {}
    if config.test and datasets.test is not None:
        test_logs = loop.evaluate(datasets.test, prefix="test_")
        if config.verbose and chief:
            print("[deepline] test: " + ", ".join(f"{k}={v:.4f}" for k, v in test_logs.items()),
                  flush=True)
    final.update(test_logs)

    export_path = None
    evaluation: dict = {}
    if chief and spec.evaluate is not None:
        evaluation = dict(spec.evaluate(config, model, run_dir.root))
        numeric = {k: float(v) for k, v in evaluation.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        final.update(numeric)
        test_logs.update({k: v for k, v in numeric.items() if k.startswith("test_")})
        if config.verbose:
            print(f"[deepline] {spec.name} evaluation: "
                  + ", ".join(f"{k}={v:.4f}" for k, v in numeric.items()), flush=True)
    if chief:
        plot_history(history, run_dir.plots)
        previous = _previous_export(run_dir) if finished_before else None
        if previous is not None:
            export_path = previous
        elif config.export:
            export_path = export_trained_model(spec, config, model, datasets, workdir, hp=hp)
            if config.verbose:
                print(f"[deepline] exported {export_path}", flush=True)
        _write_metrics(run_dir, spec, config, state, final, test_logs, steps_per_epoch,
                       resumed_from, export_path, started, strategy, evaluation)
    return TrainResult(
        run_dir=run_dir.root, config=config, metrics=final, history=history,
        global_step=int(state.global_step.numpy()), resumed_from_step=resumed_from,
        steps_per_epoch=steps_per_epoch, export_path=export_path,
        train_time_s=time.perf_counter() - started, model=model,
    )


def _write_metrics(run_dir, spec, config, state, metrics, test_logs, steps_per_epoch,
                   resumed_from, export_path, started, strategy, evaluation=None) -> None:
    write_json_atomic(run_dir.metrics_json, {
        "pipeline": spec.name,
        "run": config.run,
        "dataset": config.resolved_dataset,
        "metrics": metrics,
        "test": test_logs,
        "monitor": spec.monitor,
        "epochs_completed": int(state.epoch.numpy()),
        "global_step": int(state.global_step.numpy()),
        "steps_per_epoch": steps_per_epoch,
        "resumed_from_step": resumed_from,
        "num_replicas": int(strategy.num_replicas_in_sync),
        "strategy": strategy_name(strategy),
        "mixed_precision": bool(config.use_mixed_precision),
        "jit_compile": bool(config.jit_compile),
        "train_time_s": time.perf_counter() - started,
        "export_path": str(export_path) if export_path else None,
        "evaluation": evaluation or {},
        "history": state.history,
    })
