"""Run a KerasTuner search over a pipeline: tuner choice, tuner directory, resume, results.

Tuner directory (KerasTuner's project dir) ``<workdir>/runs/<pipeline>/tune-<run>/``::

    tune.json                 the search's settings (tuner, objective, base config)
    oracle.json, tuner0.json  KerasTuner state (resume: overwrite=False reloads it)
    trial_<id>/trial.json     each trial's hyperparameters, metrics, status (+ worker.json)
    runs/<pipeline>/trial_<id>/   the trainer's run dir of each trial (config.yaml,
                              checkpoints/, tensorboard/ with HParams, metrics.json, plots/)
    tensorboard/              the HParams experiment config (domains + metrics)
    results.md, results.json  the trials table
    best.yaml                 the best trial's full config (accepted by deepline-train --config)

Rerunning the same command resumes: completed trials are kept (not rerun), an interrupted
trial is retried under its id from its last checkpoint, and the search continues up to
``max_trials``. This holds wherever the process died, also between KerasTuner's state files
(:mod:`pipelines.tuning.state`). A rerun with a different tuner/objective/base config is
refused (use another ``--run`` or ``--overwrite``); ``max_trials`` and result-neutral keys
(``verbose``, ``data_dir``, export and checkpoint settings) may change.

Memory: KerasTuner clears the Keras session before building each trial's model; the tuners
here also clear it after each trial, drop the trial's ``tf.custom_gradient`` registrations that
would pin its graphs (:mod:`pipelines.tuning.memory`) and collect garbage, so memory stays flat.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import pathlib
from collections.abc import Iterable
from typing import Any

import keras
import keras_tuner as kt

from pipelines.config import ConfigError, TrainConfig, config_changes, config_to_dict
from pipelines.rundir import write_json_atomic
from pipelines.spec import PipelineSpec
from pipelines.tuning import distributed, results, state
from pipelines.tuning.hypermodel import PipelineHyperModel
from pipelines.tuning.memory import TrialGradientJanitor
from pipelines.tuning.space import (
    fixed_hyperparameters,
    resolve_objective,
    validate_search_space,
)

__all__ = ["TUNERS", "SearchResult", "tune_dir_for", "build_tuner", "run_search"]


class _ProjectTuner:
    """Mixin for KerasTuner tuners: trial-aware fit, cleanup between trials, fast chief."""

    def run_trial(self, trial, *args, **kwargs):
        kwargs["tune_trial"] = trial  # the hypermodel names the trial's run directory after it
        return super().run_trial(trial, *args, **kwargs)

    def on_trial_begin(self, trial):
        self._janitor = TrialGradientJanitor()
        self._janitor.begin()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        keras.backend.clear_session()
        janitor = getattr(self, "_janitor", None)
        if janitor is not None:
            janitor.end()  # the trial's graphs pinned by tf.custom_gradient (see .memory)
        gc.collect()

    def reload(self):
        super().reload()
        if not self._is_worker():
            state.settle_finished_trials(self.oracle)  # trials that ended just before a crash

    def on_search_begin(self):
        if not self._is_worker():
            self.save()  # tuner0.json before any trial ends: a rerun after a crash reloads
        super().on_search_begin()

    def search(self, *fit_args, **fit_kwargs):
        if distributed.tuning_role() == "chief":
            if "verbose" in fit_kwargs:
                self.oracle.verbose = fit_kwargs["verbose"]
            self.save()
            distributed.serve_oracle(self.oracle)
            return
        super().search(*fit_args, **fit_kwargs)


class RandomSearch(_ProjectTuner, kt.RandomSearch):
    """``keras_tuner.RandomSearch`` running project trials."""


class BayesianOptimization(_ProjectTuner, kt.BayesianOptimization):
    """``keras_tuner.BayesianOptimization`` (Gaussian process) running project trials."""


class Hyperband(_ProjectTuner, kt.Hyperband):
    """``keras_tuner.Hyperband`` running project trials (continuations resume checkpoints)."""


#: ``--tuner`` name → tuner class.
TUNERS: dict[str, type] = {
    "hyperband": Hyperband,
    "bayesian": BayesianOptimization,
    "random": RandomSearch,
}


@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns (``rows``/``best_*`` are empty on a worker)."""

    tune_dir: pathlib.Path
    role: str
    objective: str
    direction: str
    rows: list[dict[str, Any]]
    table: str
    best_trial_id: str | None
    best_config: TrainConfig | None
    best_yaml: pathlib.Path | None
    tuner: Any = dataclasses.field(repr=False, default=None)


def tune_dir_for(workdir: str | os.PathLike, pipeline: str, run: str) -> pathlib.Path:
    """``<workdir>/runs/<pipeline>/tune-<run>/`` (absolute)."""
    return pathlib.Path(workdir).resolve() / "runs" / pipeline / f"tune-{run}"


def _settings(spec, config, tuner_name, objective, fixed, factor) -> dict[str, Any]:
    return {
        "pipeline": spec.name,
        "tuner": tuner_name,
        "hyperband_factor": factor if tuner_name == "hyperband" else None,
        "objective": objective.name,
        "direction": objective.direction,
        "fixed": dict(fixed.values),
        "config": config_to_dict(config),
    }


def _check_settings(tune_dir: pathlib.Path, settings: dict[str, Any]) -> None:
    path = tune_dir / "tune.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    diffs = []
    for key in ("pipeline", "tuner", "hyperband_factor", "objective", "direction", "fixed"):
        if previous.get(key) != json.loads(json.dumps(settings[key])):
            diffs.append(f"{key}: {previous.get(key)!r} → {settings[key]!r}")
    diffs += [f"config {change}"
              for change in config_changes(previous.get("config", {}), settings["config"])]
    if diffs:
        raise ConfigError(
            f"{tune_dir} holds a search with other settings ({'; '.join(diffs)}); rerun the "
            "same command to resume it, or pass --overwrite or another --run"
        )


def _write_hparams_experiment(tune_dir: pathlib.Path, hp, metrics: Iterable[str]) -> None:
    """The HParams experiment (hyperparameter domains + metric columns) for TensorBoard."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    from pipelines.tuning.hypermodel import hparams_of

    columns = []
    for name in metrics:
        group = "validation" if name.startswith("val_") else "train"
        tag = "epoch_" + (name[4:] if name.startswith("val_") else name)
        columns.append(hparams_api.Metric(tag, group=group, display_name=name))
    logdir = tune_dir / "runs"
    logdir.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(logdir))
    try:
        with writer.as_default():
            hparams_api.hparams_config(hparams=list(hparams_of(hp)), metrics=columns)
        writer.flush()
    finally:
        writer.close()


def build_tuner(tuner_name: str, hypermodel: PipelineHyperModel, objective, *,
                max_trials: int, tune_dir: pathlib.Path, seed: int, fixed,
                max_epochs: int | None = None, overwrite: bool = False,
                hyperband_factor: int = 3):
    """The KerasTuner tuner ``tuner_name`` over ``hypermodel`` in ``tune_dir`` (reloaded)."""
    if tuner_name not in TUNERS:
        raise ConfigError(
            f"unknown tuner {tuner_name!r}; valid choices: {', '.join(TUNERS)}"
        )
    common = dict(hypermodel=hypermodel, objective=objective, seed=seed,
                  hyperparameters=fixed, tune_new_entries=True, allow_new_entries=True,
                  directory=str(tune_dir.parent), project_name=tune_dir.name,
                  overwrite=overwrite)
    if tuner_name == "hyperband":
        tuner = Hyperband(max_epochs=int(max_epochs or hypermodel.config.epochs),
                          factor=hyperband_factor, **common)
        if distributed.tuning_role() != "worker":
            tuner.oracle.max_trials = int(max_trials)  # cap Hyperband's brackets at MAX_TRIALS
        return tuner
    return TUNERS[tuner_name](max_trials=int(max_trials), **common)


def run_search(spec: PipelineSpec, config: TrainConfig, *, tuner: str = "random",
               max_trials: int = 10, objective: str | None = None,
               workdir: str | os.PathLike = ".", set_keys: Iterable[str] = (),
               overwrite: bool = False, max_epochs: int | None = None,
               hyperband_factor: int = 3) -> SearchResult:
    """Search ``spec``'s space around ``config``; write the results; return them.

    Args:
        spec: the pipeline (its ``search_space`` declares the space).
        config: the base config; ``config.run`` names the tuner directory ``tune-<run>``.
        tuner: ``"hyperband"``, ``"bayesian"`` or ``"random"``.
        max_trials: the number of trials (Hyperband: a cap on its brackets' trials).
        objective: ``NAME`` or ``NAME:min|max`` (default: the pipeline's monitor).
        workdir: base directory of ``runs/``.
        set_keys: config keys the user set explicitly: same-named hyperparameters are fixed.
        overwrite: start the search afresh, deleting the tuner directory's previous state.
        max_epochs: Hyperband's largest epoch budget (default: ``config.epochs``).
        hyperband_factor: Hyperband's reduction factor (keep the best 1/factor per round).

    Raises ConfigError (incl. ``SearchSpaceError``) before any trial runs when the tuner name,
    the objective, the search space or a resumed directory's settings are wrong.
    """
    if tuner not in TUNERS:
        raise ConfigError(f"unknown tuner {tuner!r}; valid choices: {', '.join(TUNERS)}")
    if int(max_trials) < 1:
        raise ConfigError(f"max_trials must be >= 1, received {max_trials!r}")
    role = distributed.tuning_role()
    if tuner == "hyperband":
        max_epochs = int(max_epochs or config.epochs)
        if max_epochs < 1:
            raise ConfigError(f"max_epochs must be >= 1, received {max_epochs!r}")
        if int(hyperband_factor) < 2:
            raise ConfigError(f"hyperband_factor must be >= 2, received {hyperband_factor!r}")
    fixed = fixed_hyperparameters(spec, config, set_keys,
                                  max_epochs=max_epochs if tuner == "hyperband" else None)
    validate_search_space(spec, config, fixed)
    obj = resolve_objective(spec, config, objective)

    tune_dir = tune_dir_for(workdir, spec.name, config.run)
    settings = _settings(spec, config, tuner, obj, fixed, hyperband_factor)
    if role != "worker":
        if not overwrite:
            _check_settings(tune_dir, settings)
        elif tune_dir.exists():
            import shutil

            shutil.rmtree(tune_dir)
        tune_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(tune_dir / "tune.json", settings)
    hypermodel = PipelineHyperModel(spec, config, tune_dir, objective=obj.name,
                                    tuner_id=distributed.tuner_id())
    kt_tuner = build_tuner(tuner, hypermodel, obj, max_trials=max_trials, tune_dir=tune_dir,
                           seed=config.seed, fixed=fixed, max_epochs=max_epochs,
                           overwrite=False, hyperband_factor=hyperband_factor)
    if role != "worker":
        from pipelines.tuning.space import available_metrics

        _write_hparams_experiment(tune_dir, kt_tuner.oracle.get_space(),
                                  available_metrics(spec, config))
    with state.atomic_state_writes():
        kt_tuner.search(verbose=config.verbose)
    if role == "worker":
        return SearchResult(tune_dir, role, obj.name, obj.direction, [], "", None, None, None,
                            kt_tuner)

    oracle = kt_tuner.oracle
    rows = results.trial_rows(oracle, tune_dir)
    table = results.format_table(rows, obj.name)
    best = results.best_trial(oracle)
    # the run is named after the trial: a later, better trial is retrained in a run of its own
    best_cfg = (results.best_config(hypermodel, best, f"tune-{config.run}-best-{best.trial_id}")
                if best else None)
    paths = results.write_results(tune_dir, rows, objective=obj.name, direction=obj.direction,
                                  best=best_cfg, best_trial_id=best.trial_id if best else None)
    return SearchResult(tune_dir, role, obj.name, obj.direction, rows, table,
                        best.trial_id if best else None, best_cfg, paths.get("best_yaml"),
                        kt_tuner)
