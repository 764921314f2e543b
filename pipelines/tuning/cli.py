"""``deepline-tune``: hyperparameter search with KerasTuner over a registered pipeline.

    deepline-tune [PIPELINE] [--tuner hyperband|bayesian|random] [--max-trials N]
                  [--objective NAME[:min|max]] [--config FILE.yaml] [--set KEY=VALUE ...]
                  [--run NAME] [--workdir DIR] [--max-epochs N] [--hyperband-factor F]
                  [--retrain-best]
                  [--overwrite] [--show-space]

The base config resolves like ``deepline-train`` (defaults → YAML → ``--set``); each trial
replaces the values its pipeline's ``search_space(hp)`` draws. A ``--set`` key that is also a
hyperparameter name pins that hyperparameter (``--set epochs=3`` → epochs is not searched).
The search lives in ``runs/<pipeline>/tune-<run>/``; rerunning the same command resumes it.
At the end it prints the trials table and writes ``results.md``, ``results.json`` and
``best.yaml`` (the best full config, for ``deepline-train PIPELINE --config best.yaml``);
``--retrain-best`` then trains that config with the normal trainer and exports it to models/.

Distributed: the same command with KERASTUNER_ORACLE_IP / _PORT / _TUNER_ID set (``chief`` for
the oracle, any other id for workers); see ``pipelines.tuning.distributed``.

Mistakes found before the first trial (unknown pipeline or tuner, bad config value, bad search
space, an objective the pipeline does not report) print one line ``deepline-tune: error: ...``
and exit with code 2; a trial that fails fatally exits with code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Sequence

from pipelines.config import ConfigError, parse_override

__all__ = ["main", "TUNER_NAMES"]

#: Valid ``--tuner`` values (kept here so ``--help`` does not import TensorFlow).
TUNER_NAMES = ("hyperband", "bayesian", "random")
PROG = "deepline-tune"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _parser() -> _Parser:
    from pipelines.registry import pipeline_names

    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", nargs="?", default="lenet5",
                   help=f"pipeline to tune: {', '.join(pipeline_names())} (default lenet5)")
    p.add_argument("--tuner", default="hyperband", choices=TUNER_NAMES,
                   help="search algorithm (default hyperband)")
    p.add_argument("--max-trials", type=_positive_int, default=10, metavar="N",
                   help="number of trials (Hyperband: cap on its trials; default 10)")
    p.add_argument("--objective", metavar="NAME[:min|max]",
                   help="metric to optimise (default: the pipeline's monitor, e.g. val_accuracy)")
    p.add_argument("--config", metavar="FILE", help="YAML file of base config values")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one base config value (repeatable); pins a same-named "
                        "hyperparameter")
    p.add_argument("--run", metavar="NAME",
                   help="search name: runs/<pipeline>/tune-<NAME>/ (default: the config's run)")
    p.add_argument("--workdir", default=".", metavar="DIR",
                   help="directory holding runs/ and models/ (default: current directory)")
    p.add_argument("--max-epochs", type=_positive_int, metavar="N",
                   help="Hyperband's largest epoch budget (default: the config's epochs)")
    p.add_argument("--hyperband-factor", type=_positive_int, default=3, metavar="F",
                   help="Hyperband's reduction factor: keep the best 1/F per round (default 3)")
    p.add_argument("--retrain-best", action="store_true",
                   help="train the best configuration with the normal trainer and export it")
    p.add_argument("--overwrite", action="store_true",
                   help="discard a previous search of the same name instead of resuming it")
    p.add_argument("--show-space", action="store_true",
                   help="print the search space (with pinned values) and exit")
    return p


def _set_keys(overrides: Sequence[str]) -> list[str]:
    """Config keys given with ``--set`` (these pin same-named hyperparameters)."""
    return [parse_override(text)[0] for text in overrides]


def _show_space(spec, config, fixed) -> str:
    from pipelines.tuning.space import apply_search_space

    hp = fixed.copy()
    apply_search_space(spec, config, hp)
    lines = [f"search space of {spec.name}:"]
    for p in hp.space:
        cfg = p.get_config()
        cfg.pop("name", None)
        cfg.pop("conditions", None)
        lines.append(f"  {p.name}: {type(p).__name__} "
                     + ", ".join(f"{k}={v!r}" for k, v in cfg.items() if v is not None))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the search, print the table. Returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    from pipelines.cli import build_config
    from pipelines.registry import get_spec
    from pipelines.tuning.distributed import tuning_role

    try:
        config = build_config(args.pipeline, config_path=args.config,
                              overrides=args.overrides, run=args.run)
        spec = get_spec(args.pipeline)
        role = tuning_role()
        set_keys = _set_keys(args.overrides)
        if args.show_space:
            from pipelines.tuning.space import fixed_hyperparameters

            max_epochs = (args.max_epochs or config.epochs) if args.tuner == "hyperband" else None
            fixed = fixed_hyperparameters(spec, config, set_keys, max_epochs=max_epochs)
            print(_show_space(spec, config, fixed))
            return 0
    except ConfigError as exc:
        parser.error(str(exc))

    import keras_tuner as kt

    from pipelines.data import DatasetUnavailableError
    from pipelines.tuning.search import run_search

    try:
        result = run_search(spec, config, tuner=args.tuner, max_trials=args.max_trials,
                            objective=args.objective, workdir=args.workdir,
                            set_keys=set_keys, overwrite=args.overwrite,
                            max_epochs=args.max_epochs,
                            hyperband_factor=args.hyperband_factor)
    except (ConfigError, DatasetUnavailableError) as exc:
        parser.error(str(exc))
    except kt.errors.FatalError as exc:
        sys.stderr.write(f"{PROG}: error: {' '.join(str(exc).split())}\n")
        return 1
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        # KerasTuner stops after max_consecutive_failed_trials; the last trial's traceback is
        # in its trial.json. Report the limit and the error line, not a Python traceback.
        lines = [line for line in str(exc).splitlines() if line.strip()]
        last = f"; last error: {lines[-1].strip()}" if len(lines) > 1 else ""
        sys.stderr.write(f"{PROG}: error: {lines[0].rstrip('.')}{last}\n")
        return 1
    if role == "worker":
        print(f"[deepline-tune] {os.environ.get('KERASTUNER_TUNER_ID')}: no trials left; "
              "worker done", flush=True)
        return 0
    print(f"\n{result.table}\n", flush=True)
    print(f"[deepline-tune] results: {result.tune_dir / 'results.md'}", flush=True)
    if result.best_yaml is None:
        sys.stderr.write(f"{PROG}: error: no trial completed in {result.tune_dir}\n")
        return 1
    print(f"[deepline-tune] best trial {result.best_trial_id}: {result.best_yaml}", flush=True)
    if args.retrain_best:
        from pipelines.trainer import train

        trained = train(result.best_config, args.workdir)
        print(f"[deepline-tune] retrained best config: {trained.run_dir} "
              + ", ".join(f"{k}={v:.4f}" for k, v in trained.metrics.items()), flush=True)
        if trained.export_path:
            print(f"[deepline-tune] exported {trained.export_path}", flush=True)
    return 0
