"""Command line: ``deepline-train`` / ``python -m pipelines`` and ``deepline-tune``.

    deepline-train [PIPELINE] [--config FILE.yaml] [--set KEY=VALUE ...] [--run NAME]
                   [--workdir DIR] [--sweep KEY=V1,V2,...] [--show-config]

PIPELINE defaults to ``lenet5``. The config is resolved as dataclass defaults → YAML file →
``--set`` overrides (typed by the field types) → validated → frozen; ``--run NAME`` is the same as
``--set run=NAME`` (rerunning the same command resumes the run ``default``). ``--sweep`` trains
once per value (run directory ``<run>-<key>-<value>`` each) and writes
``runs/<pipeline>/sweeps/<run>-<key>.{md,json}`` with every run's metrics.

Configuration mistakes (unknown pipeline, unknown key, bad value, unreadable YAML, dataset not
available offline) print ONE line ``deepline-train: error: ...`` to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import sys
import tempfile
import typing
from collections.abc import Sequence
from typing import Any

from pipelines.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_fields,
    parse_override,
    parse_value,
    resolve_config,
)
from pipelines.registry import get_spec, pipeline_names

__all__ = ["train_main", "tune_main", "main", "run_sweep", "build_config"]

DEFAULT_PIPELINE = "lenet5"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D401
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _parser(prog: str) -> _Parser:
    p = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", nargs="?", default=DEFAULT_PIPELINE,
                   help=f"pipeline to train: {', '.join(pipeline_names())} "
                        f"(default {DEFAULT_PIPELINE})")
    p.add_argument("--config", metavar="FILE", help="YAML file of config values")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--run", metavar="NAME", help="run name (runs/<pipeline>/<NAME>/); resumes")
    p.add_argument("--workdir", default=".", metavar="DIR",
                   help="directory holding runs/ and models/ (default: current directory)")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...",
                   help="train once per value of KEY and write a summary table")
    p.add_argument("--show-config", action="store_true",
                   help="print the resolved config (YAML) and the documented keys, then exit")
    return p


# Lines TensorFlow's native runtime prints on import before absl logging is set up (they
# ignore TF_CPP_MIN_LOG_LEVEL): noise in front of a one-line configuration error.
_NATIVE_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "cudart_stub.cc",
                 "cuda_platform.cc", "cuda_dnn.cc", "cuda_fft.cc", "cuda_blas.cc",
                 "computation_placer.cc", "oneDNN custom operations are on",
                 "This TensorFlow binary is optimized")


@contextlib.contextmanager
def _filtered_native_stderr():
    """Capture file descriptor 2 (native C++ logging) and replay it minus TF's import noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a test runner)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if not any(marker in line for marker in _NATIVE_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def build_config(pipeline: str, *, config_path: str | None = None,
                 overrides: Sequence[str] = (), run: str | None = None) -> TrainConfig:
    """Resolve the config of ``pipeline`` like the CLI does (raises ConfigError)."""
    with _filtered_native_stderr():
        spec = get_spec(pipeline)  # may import TensorFlow (pipeline modules, layers)
    overrides = list(overrides) + ([f"run={run}"] if run is not None else [])
    config = resolve_config(spec.config_class, yaml_path=config_path, overrides=overrides)
    if config.pipeline != spec.name:
        raise ConfigError(
            f"config key 'pipeline' is {config.pipeline!r} but the command trains {spec.name!r}"
        )
    return config


def _show_config(config: TrainConfig) -> str:
    import yaml

    from pipelines.config import config_to_dict

    lines = [yaml.safe_dump(config_to_dict(config), sort_keys=False).rstrip(), "", "# keys:"]
    for name, f in config_fields(type(config)).items():
        lines.append(f"#   {name}: {f.metadata.get('help', '')}")
    return "\n".join(lines)


def _parse_sweep(config: TrainConfig, text: str) -> tuple[str, list[Any]]:
    key, raw = parse_override(text)
    fields = config_fields(type(config))
    if key not in fields:
        # Reuse the one-line unknown-key message.
        apply_overrides(config, [f"{key}=0"])
    hints = typing.get_type_hints(type(config))
    tp = hints[key]
    if typing.get_origin(tp) is tuple:
        raise ConfigError(f"--sweep cannot sweep the list-valued key {key!r}")
    values = [parse_value(key, tp, v.strip()) for v in raw.split(",") if v.strip()]
    if not values:
        raise ConfigError(f"--sweep {text!r} lists no values")
    for v in values:  # validate each value up front: fail before the first run trains
        dataclasses.replace(config, **{key: v})
    return key, values


def _slug(value: Any) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(value))


def run_sweep(config: TrainConfig, key: str, values: Sequence[Any],
              workdir: str | os.PathLike = ".") -> dict[str, Any]:
    """Train once per value of ``key`` (own run directory each); write the summary table.

    Returns the summary ``{"key", "values", "runs": [{value, run, run_dir, metrics}], ...}``
    also written to ``runs/<pipeline>/sweeps/<run>-<key>.json`` and ``.md``.
    """
    from pipelines.rundir import write_json_atomic
    from pipelines.trainer import train

    rows = []
    for value in values:
        cfg = dataclasses.replace(config, **{key: value}, run=f"{config.run}-{key}-{_slug(value)}")
        result = train(cfg, workdir)
        rows.append({"value": value, "run": cfg.run, "run_dir": str(result.run_dir),
                     "global_step": result.global_step, "metrics": result.metrics,
                     "export_path": str(result.export_path) if result.export_path else None})
    summary = {"pipeline": config.pipeline, "key": key, "values": list(values), "runs": rows}
    out = pathlib.Path(workdir).resolve() / "runs" / config.pipeline / "sweeps"
    stem = f"{config.run}-{key}"
    write_json_atomic(out / f"{stem}.json", summary)
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row["metrics"] if k not in names)
    lines = [f"# sweep of `{key}` ({config.pipeline})", "",
             "| " + " | ".join([key, "run", *names]) + " |",
             "|" + "---|" * (2 + len(names))]
    for row in rows:
        cells = [str(row["value"]), row["run"]]
        cells += [f"{row['metrics'][n]:.4f}" if n in row["metrics"] else "" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return summary


def main(argv: Sequence[str] | None = None, prog: str = "deepline-train") -> int:
    """Parse ``argv``, resolve the config, train (or sweep). Returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        config = build_config(args.pipeline, config_path=args.config,
                              overrides=args.overrides, run=args.run)
        sweep = _parse_sweep(config, args.sweep) if args.sweep else None
    except ConfigError as exc:
        parser.error(str(exc))
    if args.show_config:
        print(_show_config(config))
        return 0
    from pipelines.data import DatasetUnavailableError
    from pipelines.trainer import train

    try:
        if sweep is not None:
            run_sweep(config, *sweep, workdir=args.workdir)
        else:
            train(config, args.workdir)
    except (ConfigError, DatasetUnavailableError) as exc:
        parser.error(str(exc))
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepline-train``."""
    sys.exit(main(sys.argv[1:] if argv is None else argv))


def tune_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepline-tune``: delegates to ``pipelines.tuning.cli.main(argv)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from pipelines.tuning.cli import main as tuning_main
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("pipelines.tuning"):
            sys.stderr.write(
                "deepline-tune: error: the tuning package pipelines.tuning is not installed "
                f"in this checkout ({exc.name} missing)\n"
            )
            sys.exit(2)
        raise
    sys.exit(tuning_main(argv))
