"""Search results: the trials table, ``results.{md,json}`` and the best config ``best.yaml``.

``best.yaml`` is a COMPLETE pipeline config (every key, as ``config.yaml`` of a run) holding the
best trial's values — Hyperband's best trial contributes the epochs it was trained for — with
``run: tune-<run>-best-<trial id>`` (each winner trains in its own run, so retraining the best
config after a longer search never resumes an earlier winner's run), ``export: true`` and
``test: true``, so::

    deepline-train lenet5 --config runs/lenet5/tune-<run>/best.yaml

trains (and exports) the winner exactly as a normal run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

from pipelines.config import TrainConfig, save_config
from pipelines.rundir import write_json_atomic

__all__ = ["trial_rows", "format_table", "best_trial", "best_config", "write_results"]


def _worker(tune_dir: pathlib.Path, trial_id: str) -> dict[str, Any]:
    try:
        return json.loads((tune_dir / f"trial_{trial_id}" / "worker.json").read_text())
    except (OSError, ValueError):
        return {}


def trial_rows(oracle, tune_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """One dict per trial, in trial-id order: id, status, score, hyperparameters, epochs, tuner."""
    tune_dir = pathlib.Path(tune_dir)
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        values = dict(trial.hyperparameters.values)
        score = trial.score
        info = _worker(tune_dir, trial_id)
        rows.append({
            "trial_id": trial_id,
            "status": str(trial.status),
            "score": None if score is None or math.isnan(float(score)) else float(score),
            "best_step": trial.best_step,
            "hyperparameters": {k: v for k, v in values.items() if not k.startswith("tuner/")},
            "epochs": values.get("tuner/epochs"),
            "continues": values.get("tuner/trial_id"),
            "tuner_id": info.get("tuner_id"),
            "rss_mb_at_start": info.get("rss_mb_at_start"),
            "message": _last_line(trial.message),
        })
    return rows


def _last_line(message: str | None) -> str | None:
    """The error line of a failed trial's traceback (None for a trial that did not fail)."""
    lines = [line for line in (message or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_table(rows: Sequence[dict[str, Any]], objective: str) -> str:
    """A Markdown table: trial, each hyperparameter, [tuner/epochs], objective, status, tuner."""
    with_epochs = any(row["epochs"] is not None for row in rows)
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row["hyperparameters"] if k not in names)
    if with_epochs:  # Hyperband: each trial's own budget replaces the pinned `epochs` value
        names = [n for n in names if n != "epochs"]
    header = ["trial", *names, *(["tuner/epochs"] if with_epochs else []), objective,
              "status", "tuner"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["trial_id"], *(_cell(row["hyperparameters"].get(n)) for n in names)]
        if with_epochs:
            cells.append(_cell(row["epochs"]))
        cells += [_cell(row["score"]), row["status"], _cell(row["tuner_id"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_trial(oracle):
    """The best COMPLETED trial (KerasTuner's ranking), or None."""
    best = oracle.get_best_trials(1)
    if best and str(best[0].status) == "COMPLETED":
        return best[0]
    return None


def best_config(hypermodel, trial, run: str) -> TrainConfig:
    """The full config of ``trial``: base config + its search-space values (+ its epochs)."""
    config = hypermodel.trial_config(trial.hyperparameters)
    changes: dict[str, Any] = {"run": run, "export": True, "test": True}
    epochs = trial.hyperparameters.values.get("tuner/epochs")
    if epochs:
        changes["epochs"] = int(epochs)
    return dataclasses.replace(config, **changes)


def write_results(tune_dir: str | pathlib.Path, rows: Sequence[dict[str, Any]], *,
                  objective: str, direction: str, best: TrainConfig | None,
                  best_trial_id: str | None) -> dict[str, pathlib.Path]:
    """Write ``results.md``, ``results.json`` and (when a trial completed) ``best.yaml``."""
    tune_dir = pathlib.Path(tune_dir)
    table = format_table(rows, objective)
    paths = {"results_md": tune_dir / "results.md", "results_json": tune_dir / "results.json"}
    tmp = paths["results_md"].with_suffix(".md.tmp")
    tmp.write_text(f"# tuning results ({objective}, {direction})\n\n{table}\n")
    tmp.replace(paths["results_md"])
    write_json_atomic(paths["results_json"], {
        "objective": objective, "direction": direction, "best_trial": best_trial_id,
        "trials": list(rows),
    })
    if best is not None:
        paths["best_yaml"] = save_config(best, tune_dir / "best.yaml")
    return paths
