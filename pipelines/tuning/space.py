"""Search spaces and objectives: from a pipeline's ``search_space(hp)`` to validated configs.

A pipeline declares its space next to its config (``PipelineSpec.search_space``)::

    def search_space(hp) -> dict:
        width = hp.Choice("width", [0.5, 1.0, 2.0])
        return {"learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log"),
                "conv_filters": (round(6 * width), round(16 * width))}

A trial's config is ``dataclasses.replace(base_config, **search_space(hp))``: every override is
typed and validated exactly like ``--set`` (a bad value raises :class:`SearchSpaceError`).
:func:`validate_search_space` tries the defaults and every extreme value of every
hyperparameter BEFORE the first trial runs, so a broken space fails at once.

Objectives name a metric the trainer reports: ``loss`` and each ``build_metrics`` name for the
training split, the same with ``val_`` for the validation split (when ``config.validation``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.config import ConfigError, TrainConfig, coerce_value, config_fields
from pipelines.spec import PipelineSpec

__all__ = [
    "SearchSpaceError",
    "apply_search_space",
    "hyperparameter_names",
    "fixed_hyperparameters",
    "validate_search_space",
    "available_metrics",
    "resolve_objective",
]

#: Metric-name fragments whose metrics are minimised when no direction is given.
_LOWER_IS_BETTER = ("loss", "error", "bits", "perplexity", "mse", "mae", "crossentropy")

#: Config keys a search space may not override (they name the run, not a hyperparameter).
_RESERVED = ("pipeline", "run")


class SearchSpaceError(ConfigError):
    """A search space that cannot be applied to the pipeline's config (one-line message)."""


def _require_space(spec: PipelineSpec):
    if spec.search_space is None:
        raise SearchSpaceError(
            f"pipeline {spec.name!r} declares no search space (PipelineSpec.search_space is None)"
        )
    if not callable(spec.search_space):
        raise SearchSpaceError(
            f"PipelineSpec.search_space of {spec.name!r} must be callable, received "
            f"{spec.search_space!r}"
        )
    return spec.search_space


def _describe_values(hp) -> str:
    values = {k: v for k, v in hp.values.items() if not str(k).startswith("tuner/")}
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def apply_search_space(spec: PipelineSpec, config: TrainConfig, hp) -> TrainConfig:
    """``config`` with the overrides ``spec.search_space(hp)`` returns (typed, validated).

    Declares the space on ``hp`` as a side effect (KerasTuner's usual ``build(hp)`` contract).
    Raises :class:`SearchSpaceError` naming the pipeline, the key and the hyperparameter values.
    """
    space_fn = _require_space(spec)
    try:
        overrides = space_fn(hp)
    except (ValueError, TypeError, KeyError) as exc:
        raise SearchSpaceError(f"search space of {spec.name!r} is invalid: {exc}") from None
    if not isinstance(overrides, Mapping):
        raise SearchSpaceError(
            f"search_space of {spec.name!r} must return a dict of config overrides, "
            f"received {type(overrides).__name__}"
        )
    cls = type(config)
    fields = config_fields(cls)
    unknown = [k for k in overrides if k not in fields or k in _RESERVED]
    if unknown:
        valid = ", ".join(k for k in fields if k not in _RESERVED)
        raise SearchSpaceError(
            f"search space of {spec.name!r} sets unknown config key(s) "
            f"{', '.join(map(repr, unknown))}; valid keys: {valid}"
        )
    hints = typing.get_type_hints(cls)
    try:
        changes = {k: coerce_value(k, hints[k], _plain(v)) for k, v in overrides.items()}
        return dataclasses.replace(config, **changes)
    except (ConfigError, TypeError, ValueError) as exc:
        raise SearchSpaceError(
            f"search space of {spec.name!r} gives an invalid config at "
            f"({_describe_values(hp)}): {exc}"
        ) from None


def _plain(value: Any) -> Any:
    """NumPy scalars (from some oracles) → Python scalars; lists/tuples element-wise."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def hyperparameter_names(spec: PipelineSpec, config: TrainConfig) -> list[str]:
    """Names of the hyperparameters the pipeline's space declares (with default values)."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    apply_search_space(spec, config, hp)
    return [p.name for p in hp.space]


def fixed_hyperparameters(spec: PipelineSpec, config: TrainConfig, keys: Iterable[str],
                          *, max_epochs: int | None = None):
    """A ``HyperParameters`` pinning the space's hyperparameters named in ``keys``.

    ``keys`` are config keys the user set explicitly (``--set epochs=2``): a hyperparameter of
    the same name is fixed to the config's value instead of being searched. ``max_epochs``
    (Hyperband) fixes ``epochs``: Hyperband assigns every trial its own epoch budget.
    """
    import keras_tuner as kt

    names = set(hyperparameter_names(spec, config))
    fixed = kt.HyperParameters()
    for key in keys:
        if key in names:
            value = getattr(config, key)
            if isinstance(value, tuple):
                raise SearchSpaceError(
                    f"cannot fix the list-valued hyperparameter {key!r} with --set"
                )
            fixed.Fixed(key, value)
    if max_epochs is not None and "epochs" in names and "epochs" not in fixed.values:
        fixed.Fixed("epochs", int(max_epochs))
    return fixed


def _extremes(p) -> list[Any]:
    kind = type(p).__name__
    if kind == "Choice":
        return list(p.values)
    if kind == "Boolean":
        return [True, False]
    if kind in ("Int", "Float"):
        return [p.min_value, p.max_value]
    return []


def validate_search_space(spec: PipelineSpec, config: TrainConfig, fixed=None) -> int:
    """Apply the space at its defaults and at each hyperparameter's extreme values.

    Every ``Choice`` value and both ends of every ``Int``/``Float`` range are tried one at a
    time (the others at their defaults); each must yield a valid config. Returns the number of
    configurations checked; raises :class:`SearchSpaceError` on the first bad one.
    """
    import keras_tuner as kt

    hp = fixed.copy() if fixed is not None else kt.HyperParameters()
    apply_search_space(spec, config, hp)
    defaults = dict(hp.values)
    checked = 1
    for p in list(hp.space):
        if type(p).__name__ == "Fixed":
            continue
        for value in _extremes(p):
            probe = hp.copy()
            probe.values = {**defaults, p.name: value}
            apply_search_space(spec, config, probe)
            checked += 1
    return checked


def available_metrics(spec: PipelineSpec, config: TrainConfig) -> list[str]:
    """Metric names the trainer reports per epoch: train names, then ``val_`` names."""
    names = ["loss"]
    for m in spec.build_metrics(config):
        name = getattr(m, "name", None)
        if name and name not in names:
            names.append(name)
    if config.validation:
        names += ["val_" + n for n in names]
    return names


def resolve_objective(spec: PipelineSpec, config: TrainConfig, text: str | None):
    """``keras_tuner.Objective`` for ``NAME`` or ``NAME:min|max`` (default: ``spec.monitor``).

    Without a direction: the spec's ``monitor_mode`` for its monitor, ``min`` for names
    containing ``loss``, ``error``, ``bits``, ``perplexity``, ``mse``, ``mae`` or
    ``crossentropy``, else ``max``. An objective the pipeline does not report
    raises :class:`SearchSpaceError` listing the available names.
    """
    import keras_tuner as kt

    if text is None or not str(text).strip():
        name, direction = spec.monitor, spec.monitor_mode
    else:
        name, _, direction = str(text).strip().partition(":")
        name = name.strip()
        direction = direction.strip().lower()
        if direction and direction not in ("min", "max"):
            raise SearchSpaceError(
                f"bad --objective {text!r}: direction must be 'min' or 'max', "
                f"received {direction!r}"
            )
        if not direction:
            if name == spec.monitor:
                direction = spec.monitor_mode
            else:
                direction = "min" if any(w in name for w in _LOWER_IS_BETTER) else "max"
    available = available_metrics(spec, config)
    if name not in available:
        hint = "" if config.validation else " (validation=false: no val_* metrics)"
        raise SearchSpaceError(
            f"objective {name!r} is not reported by {spec.name}; available: "
            f"{', '.join(available)}{hint}"
        )
    return kt.Objective(name, direction=direction)
