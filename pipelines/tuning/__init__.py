"""Hyperparameter tuning with KerasTuner: ``deepline-tune`` / ``make tune``.

Modules (one concept each):

* :mod:`pipelines.tuning.space` — a pipeline's ``search_space(hp)`` → validated trial configs;
  objectives and the metric names a pipeline reports.
* :mod:`pipelines.tuning.hypermodel` — ``PipelineHyperModel``: ``build`` from the spec, ``fit``
  with the project trainer (one run directory per trial), TensorBoard HParams per trial.
* :mod:`pipelines.tuning.search` — tuners (hyperband, bayesian, random), the tuner directory
  ``runs/<pipeline>/tune-<run>/``, resume, :func:`run_search`.
* :mod:`pipelines.tuning.results` — trials table, ``results.{md,json}``, ``best.yaml``.
* :mod:`pipelines.tuning.distributed` — KerasTuner chief/worker mode (KERASTUNER_* variables).
* :mod:`pipelines.tuning.cli` — the command line (``main(argv) -> int``).

Importing this package is light; TensorFlow and KerasTuner load with the submodules that need them.
"""
