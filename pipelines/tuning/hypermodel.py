"""``PipelineHyperModel``: a KerasTuner HyperModel whose trials run the project trainer.

``build(hp)`` = ``spec.build_model(apply_search_space(spec, config, hp))`` — the same model
builder as ``deepline-train``. ``fit(hp, model, ...)`` runs :func:`pipelines.trainer.train` on the
trial's config (same tf.data pipelines, strategy, distributed loop, optimizer and schedule,
checkpoints) in its own run directory ``<tune dir>/runs/<pipeline>/trial_<id>/`` and returns a
``keras.callbacks.History`` of the per-epoch logs (KerasTuner then takes the best epoch of the
objective). Batch size and epochs come from the trial's config (``search_space`` may tune them);
Hyperband's ``epochs``/``initial_epoch`` fit arguments override the epochs, and a Hyperband
trial that continues an earlier one starts from a copy of that trial's checkpoint (weights,
optimizer state, counters), so it trains only epochs ``initial_epoch+1 … epochs``.

A trial interrupted by a crash or ``kill -9`` is retried by the reloaded oracle under the same
id and resumes from its last checkpoint. Each trial writes TensorBoard HParams
(``<run>/tensorboard``: the session's hyperparameters next to its train/validation scalars) and
``trial_<id>/worker.json`` (which tuner ran it, and the process RSS when it started).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import socket
import time
from collections.abc import Sequence
from typing import Any

import keras
import keras_tuner as kt

from pipelines.config import TrainConfig
from pipelines.rundir import write_json_atomic
from pipelines.spec import PipelineSpec
from pipelines.tuning.memory import rss_mb
from pipelines.tuning.space import SearchSpaceError, apply_search_space

__all__ = ["PipelineHyperModel", "HParamsLogger", "hparams_of"]

_NOT_METRICS = ("epoch", "global_step", "time_s")


def hparams_of(hp) -> dict:
    """TensorBoard HParams ``{HParam(name, domain): value}`` of a trial's hyperparameters."""
    from keras_tuner.src.engine import tuner_utils
    from tensorboard.plugins.hparams import api as hparams_api

    return tuner_utils.convert_hyperparams_to_hparams(hp, hparams_api)


class HParamsLogger(keras.callbacks.Callback):
    """Writes one TensorBoard HParams session (hyperparameters + end status) to ``logdir``.

    Put it in the run's TensorBoard directory (the parent of ``train/`` and ``validation/``) so
    the HParams dashboard pairs the trial's hyperparameters with its ``epoch_*`` scalars. The
    writer is closed at the end of training (nothing stays open across trials).
    """

    def __init__(self, logdir: str | os.PathLike, hparams: dict, trial_id: str | None = None):
        super().__init__()
        self.logdir = str(logdir)
        self.hparams = dict(hparams)
        self.trial_id = trial_id

    def _write(self, fn) -> None:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(self.logdir)
        try:
            with writer.as_default():
                fn()
            writer.flush()
        finally:
            writer.close()

    def on_train_begin(self, logs=None):
        from tensorboard.plugins.hparams import api as hparams_api

        self._write(lambda: hparams_api.hparams(self.hparams, trial_id=self.trial_id))

    def on_train_end(self, logs=None):
        import tensorflow as tf
        from tensorboard.plugins.hparams import api_pb2, summary

        raw = summary.session_end_pb(api_pb2.STATUS_SUCCESS).SerializeToString()
        self._write(lambda: tf.summary.experimental.write_raw_pb(raw, step=0))


class PipelineHyperModel(kt.HyperModel):
    """Builds and trains one pipeline's trials from its :class:`PipelineSpec`.

    Args:
        spec: the pipeline spec (``search_space`` must be set).
        config: the base config (defaults → YAML → ``--set``); each trial overrides it.
        tune_dir: the tuner's project directory ``runs/<pipeline>/tune-<run>/``; trial runs
            live under ``<tune_dir>/runs/<pipeline>/trial_<id>/``.
        objective: the objective's metric name (checked against each trial's logs).
        tuner_id: the id of this tuner process (``KERASTUNER_TUNER_ID``), for logs.
    """

    def __init__(self, spec: PipelineSpec, config: TrainConfig, tune_dir: str | os.PathLike,
                 *, objective: str, tuner_id: str = "tuner0"):
        super().__init__(name=spec.name, tunable=True)
        self.spec = spec
        self.config = config
        self.tune_dir = pathlib.Path(tune_dir)
        self.objective = objective
        self.tuner_id = tuner_id

    # -- configs ----------------------------------------------------------------------------
    def trial_config(self, hp) -> TrainConfig:
        """The base config with this trial's search-space overrides (validated)."""
        return apply_search_space(self.spec, self.config, hp)

    def trial_run_dir(self, trial_id: str) -> pathlib.Path:
        return self.tune_dir / "runs" / self.spec.name / f"trial_{trial_id}"

    def _config_or_fatal(self, hp) -> TrainConfig:
        try:
            return self.trial_config(hp)
        except SearchSpaceError as exc:
            # Fatal: a broken space must stop the search, not be retried trial after trial.
            raise kt.errors.FatalValueError(str(exc)) from None

    # -- KerasTuner hooks -------------------------------------------------------------------
    def build(self, hp):
        """A new model of the trial's config (the pipeline's own ``build_model``)."""
        return self.spec.build_model(self._config_or_fatal(hp))

    def fit(self, hp, model, *args, tune_trial=None, epochs: int | None = None,
            initial_epoch: int = 0, callbacks: Sequence[keras.callbacks.Callback] = (),
            **kwargs) -> keras.callbacks.History:
        """Train the trial with :func:`pipelines.trainer.train`; return its epoch History.

        ``model`` (built by the tuner) is not trained: the trainer builds its own copy under
        its strategy scope and mixed-precision policy. ``callbacks`` (KerasTuner's trial
        callbacks, e.g. its best-epoch checkpoint) run inside the trainer's loop.
        """
        from pipelines.trainer import train

        del model, args, kwargs
        trial_id = str(getattr(tune_trial, "trial_id", None) or "adhoc")
        config = self._config_or_fatal(hp)
        overrides: dict[str, Any] = {"run": f"trial_{trial_id}", "export": False, "test": False}
        if epochs is not None:
            overrides["epochs"] = int(epochs)
        config = dataclasses.replace(config, **overrides)
        run_dir = self.trial_run_dir(trial_id)
        parent = hp.values.get("tuner/trial_id")
        if parent and initial_epoch:
            self._continue_from(str(parent), run_dir)
        self._write_worker_info(trial_id)
        print(f"[deepline-tune] {self.tuner_id}: trial {trial_id} starts: "
              + _describe_trial(hp, config.epochs, initial_epoch, parent), flush=True)
        hparams_logger = HParamsLogger(run_dir / "tensorboard", hparams_of(hp), trial_id)
        result = train(config, self.tune_dir, spec=self.spec,
                       callbacks=[*callbacks, hparams_logger])
        rows = [h for h in result.history if h.get("epoch", 0) > initial_epoch]
        rows = rows or result.history[-1:]
        result.model = None
        history = keras.callbacks.History()
        history.history = {}
        for row in rows:
            for key, value in row.items():
                if key not in _NOT_METRICS:
                    history.history.setdefault(key, []).append(float(value))
        if self.objective not in history.history:
            raise kt.errors.FatalValueError(
                f"objective {self.objective!r} is not reported by {self.spec.name}; available: "
                f"{', '.join(history.history) or 'nothing (no epoch ran)'}"
            )
        best = history.history[self.objective]
        print(f"[deepline-tune] {self.tuner_id}: trial {trial_id} done: {self.objective}="
              f"{best[-1]:.4f} (last epoch)", flush=True)
        return history

    # -- helpers ----------------------------------------------------------------------------
    def _continue_from(self, parent_id: str, run_dir: pathlib.Path) -> None:
        """Seed a Hyperband continuation with the parent trial's newest checkpoint."""
        import tensorflow as tf

        target = run_dir / "checkpoints"
        if tf.train.latest_checkpoint(str(target)):
            return  # this trial already has its own checkpoint (resumed after a crash)
        source = self.trial_run_dir(parent_id) / "checkpoints"
        if tf.train.latest_checkpoint(str(source)):
            shutil.copytree(source, target, dirs_exist_ok=True)

    def _write_worker_info(self, trial_id: str) -> None:
        write_json_atomic(self.tune_dir / f"trial_{trial_id}" / "worker.json", {
            "tuner_id": self.tuner_id, "host": socket.gethostname(), "pid": os.getpid(),
            "rss_mb_at_start": round(rss_mb(), 1), "started": time.time(),
        })


def _describe_trial(hp, epochs: int, initial_epoch: int, parent: str | None) -> str:
    """``name=value, ...`` of the trial's hyperparameters, ``epochs`` being what it trains.

    Under Hyperband the ``epochs`` hyperparameter is fixed at the largest budget while
    ``tuner/epochs`` is the trial's own; a continuation also names the trial it resumes.
    """
    values = {k: v for k, v in hp.values.items() if not str(k).startswith("tuner/")}
    values["epochs"] = epochs
    text = ", ".join(f"{k}={v}" for k, v in values.items())
    if parent and initial_epoch:
        text += f" (continues trial {parent} from epoch {initial_epoch})"
    return text
