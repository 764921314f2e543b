"""Typed, frozen training configuration: dataclass defaults → YAML file → ``--set`` overrides.

Every pipeline declares one frozen dataclass that subclasses :class:`TrainConfig` (the fields
every pipeline shares) and adds its own fields. A configuration is resolved in this order::

    defaults of the dataclass  →  optional YAML mapping (--config f.yaml)  →  --set key=value ...

Each value is converted from its field's type annotation (``int``, ``float``, ``bool``, ``str``,
``Literal[...]`` choices, ``X | None`` optionals, ``tuple[T, ...]`` lists written ``a,b,c``),
then the whole config is validated in ``__post_init__`` (so ``dataclasses.replace`` re-validates)
and is frozen. Anything wrong raises :class:`ConfigError` (a ``ValueError``) whose message is
ONE line naming the key, the received value and the valid keys/choices; the CLI prints it and
exits with code 2.

Example::

    @dataclasses.dataclass(frozen=True)
    class LeNet5Config(TrainConfig):
        pipeline: str = "lenet5"
        dataset: Literal["mnist5k", "digits", "mnist"] = "mnist5k"
        pooling: Literal["max", "average", "l2"] = option("max", "pooling layer type")

    cfg = resolve_config(LeNet5Config, yaml_path=None, overrides=["epochs=3", "pooling=l2"])
    cfg.epochs           # 3
    config_to_dict(cfg)  # plain dict, written to <run dir>/config.yaml
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "TrainConfig",
    "option",
    "config_fields",
    "parse_value",
    "coerce_value",
    "config_from_dict",
    "apply_overrides",
    "parse_override",
    "load_yaml",
    "resolve_config",
    "config_to_dict",
    "save_config",
    "load_config",
]

C = TypeVar("C", bound="TrainConfig")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_NONE = {"none", "null", "~", ""}


class ConfigError(ValueError):
    """A configuration problem; ``str(error)`` is a single line meant for the user."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def option(default: Any, help: str = "", *, min: float | None = None, max: float | None = None):
    """A dataclass field with a help text and optional inclusive numeric bounds.

    ``min``/``max`` are checked by :meth:`TrainConfig.validate`; ``help`` is shown by
    ``deepline-train PIPELINE --show-config``.
    """
    return dataclasses.field(default=default, metadata={"help": help, "min": min, "max": max})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fields every pipeline has. Subclass it (frozen) to add pipeline-specific fields.

    ``batch_size`` is the GLOBAL batch size: under a distribution strategy with N replicas each
    replica sees ``batch_size / N`` examples per step.
    """

    pipeline: str = option("", "registered pipeline name (lenet5, ksparse, elman)")
    dataset: str = option("", "dataset name (choices depend on the pipeline)")
    run: str = option(
        "default",
        "run name: runs/<pipeline>/<run>/; rerunning the same name resumes it",
    )
    epochs: int = option(10, "number of passes over the training split", min=1)
    batch_size: int = option(128, "GLOBAL batch size (split across replicas)", min=1)
    learning_rate: float = option(1e-3, "peak learning rate", min=0.0)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = option("adam", "optimizer")
    weight_decay: float = option(0.0, "decoupled weight decay (adamw) / L2 decay", min=0.0)
    lr_schedule: Literal["constant", "cosine", "onecycle"] = option(
        "cosine", "learning-rate schedule over all training steps"
    )
    warmup_epochs: float = option(0.0, "linear warm-up length in epochs (cosine)", min=0.0)
    seed: int = option(42, "random seed (weights, shuffling, augmentation)")
    mixed_precision: Literal["auto", "on", "off"] = option(
        "auto", "mixed_float16 compute; auto = on when a GPU is present"
    )
    jit_compile: bool = option(False, "compile the per-replica step with XLA")
    steps_per_epoch: int | None = option(None, "cap on training steps per epoch", min=1)
    validation_steps: int | None = option(None, "cap on validation steps per epoch", min=1)
    max_train_examples: int | None = option(
        None, "use only the first N training examples (quick experiments)", min=1
    )
    validation: bool = option(True, "evaluate the validation split after every epoch")
    test: bool = option(True, "evaluate the test split once training ends")
    checkpoint_every_steps: int = option(100, "save a resumable checkpoint every N steps", min=1)
    keep_checkpoints: int = option(2, "number of checkpoints kept", min=1)
    model_name: str = option("", "export name: models/<model_name>/<version>/ (default: pipeline)")
    export: bool = option(True, "export a SavedModel when training finishes")
    export_dir: str = option("models", "export base path (relative to the work directory)")
    verbose: int = option(1, "0 = silent, 1 = progress bar, 2 = one line per epoch", min=0, max=2)

    def __post_init__(self) -> None:
        self.validate()

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Check types, ``Literal`` choices and ``option(min=, max=)`` bounds of every field.

        Subclasses that add cross-field rules override this and call ``super().validate()``.
        """
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            checked = coerce_value(f.name, hints[f.name], value)
            if checked != value or type(checked) is not type(value):
                # Normalise (e.g. list -> tuple, int -> float) without breaking frozenness.
                object.__setattr__(self, f.name, checked)
                value = checked
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if lo is not None and value < lo:
                    raise ConfigError(f"config key {f.name!r} must be >= {lo}, received {value!r}")
                if hi is not None and value > hi:
                    raise ConfigError(f"config key {f.name!r} must be <= {hi}, received {value!r}")
        if not self.run or any(sep in self.run for sep in ("/", "\\")) or self.run in {".", ".."}:
            raise ConfigError(
                f"config key 'run' must be a plain directory name, received {self.run!r}"
            )

    @property
    def export_name(self) -> str:
        """The model name used for export: ``model_name`` or, when empty, the pipeline name."""
        return self.model_name or self.pipeline

    @property
    def resolved_dataset(self) -> str:
        """The dataset a run uses: ``dataset``, or the pipeline's default where that is empty."""
        return self.dataset

    @property
    def use_mixed_precision(self) -> bool:
        """``mixed_precision`` resolved: ``auto`` is on exactly when TensorFlow sees a GPU."""
        if self.mixed_precision == "auto":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        return self.mixed_precision == "on"


# -- field introspection and typed parsing ---------------------------------------------------
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_fields(cls: type[TrainConfig]) -> dict[str, dataclasses.Field]:
    """Field name → ``dataclasses.Field`` of a config class (declaration order)."""
    return {f.name: f for f in dataclasses.fields(cls)}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"comma-separated list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def parse_value(key: str, tp: Any, text: str) -> Any:
    """Convert the command-line text of ``--set key=text`` to a value of type ``tp``."""
    return coerce_value(key, tp, text, from_text=True)


def coerce_value(key: str, tp: Any, value: Any, *, from_text: bool = False) -> Any:
    """Convert/check ``value`` against the annotation ``tp``; raise a one-line ConfigError.

    Accepts YAML-typed values (``3`` for a float, a list for a tuple) and strings (from
    ``--set``): ``"none"``/``"null"`` for optionals, ``true/false/yes/no/on/off/1/0`` for bools,
    ``"a,b,c"`` for tuples.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad() -> ConfigError:
        return ConfigError(
            f"bad value for config key {key!r}: {value!r} (expected {_describe(tp)})"
        )

    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE
                             and type(None) in args and str not in args):
            if type(None) in args:
                return None
            raise bad()
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(key, arg, value, from_text=from_text)
            except ConfigError as exc:
                errors.append(exc)
        raise bad()
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
            if isinstance(value, str) and not isinstance(choice, str):
                try:
                    if coerce_value(key, type(choice), value, from_text=True) == choice:
                        return choice
                except ConfigError:
                    pass
        raise ConfigError(
            f"bad value for config key {key!r}: {value!r}; valid choices: "
            + ", ".join(str(c) for c in args)
        )
    if origin is tuple:
        item_tp = args[0] if args else str
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            raise bad()
        return tuple(coerce_value(key, item_tp, p, from_text=isinstance(p, str)) for p in parts)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                try:
                    as_float = float(value)
                except ValueError:
                    raise bad() from None
                if as_float.is_integer():
                    return int(as_float)
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        if from_text:
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    # Any other annotation: accept as is.
    return value


# -- building a config -----------------------------------------------------------------------
def _unknown_key(cls: type[TrainConfig], key: str) -> ConfigError:
    pipeline = getattr(cls, "pipeline", "") or cls.__name__
    return ConfigError(
        f"unknown config key {key!r} for pipeline {pipeline!r}; valid keys: "
        + ", ".join(config_fields(cls))
    )


def config_from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build ``cls`` from a mapping (e.g. parsed YAML); unknown keys raise ConfigError."""
    fields = config_fields(cls)
    hints = _type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key(cls, key)
        kwargs[key] = coerce_value(key, hints[key], value)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def parse_override(text: str) -> tuple[str, str]:
    """Split ``key=value`` (the value may contain further ``=``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"bad --set {text!r}: expected key=value")
    return key, value


def apply_overrides(config: C, overrides: Iterable[str]) -> C:
    """Return a new validated config with each ``key=value`` string applied in order."""
    cls = type(config)
    fields = config_fields(cls)
    hints = _type_hints(cls)
    changes: dict[str, Any] = {}
    for text in overrides:
        key, raw = parse_override(text)
        if key not in fields:
            raise _unknown_key(cls, key)
        changes[key] = parse_value(key, hints[key], raw)
    try:
        return dataclasses.replace(config, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or non-mapping content raises ConfigError."""
    p = pathlib.Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping of key: value, got {type(data).__name__}"
        )
    return data


def resolve_config(
    cls: type[C],
    *,
    yaml_path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
) -> C:
    """Defaults of ``cls`` → ``base`` mapping → YAML file → ``key=value`` overrides → frozen."""
    values: dict[str, Any] = dict(base or {})
    if yaml_path is not None:
        values.update(load_yaml(yaml_path))
    config = config_from_dict(cls, values)
    return apply_overrides(config, overrides)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain-Python dict (tuples become lists) suitable for YAML/JSON."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


#: Config keys that do not change what a run computes: a resumed run or search may change them.
RESULT_NEUTRAL_KEYS = frozenset({
    "verbose", "export", "export_dir", "model_name", "test", "data_dir",
    "checkpoint_every_steps", "keep_checkpoints",
})


def config_changes(saved: dict[str, Any], new: dict[str, Any], *,
                   allowed: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """``"key: old → new"`` for every key of both plain config dicts whose values differ,
    except :data:`RESULT_NEUTRAL_KEYS` and ``allowed`` (values compared as JSON: tuple = list)."""
    saved, new = json.loads(json.dumps(saved)), json.loads(json.dumps(new))
    return [f"{key}: {saved[key]!r} → {new[key]!r}"
            for key in sorted(saved.keys() & new.keys())
            if key not in RESULT_NEUTRAL_KEYS and key not in allowed and saved[key] != new[key]]


def save_config(config: TrainConfig, path: str | os.PathLike) -> pathlib.Path:
    """Write the resolved config as YAML (atomically: temp file + rename)."""
    from pipelines.rundir import write_text_atomic

    return write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def load_config(cls: type[C], path: str | os.PathLike) -> C:
    """Read a config.yaml written by :func:`save_config` back into ``cls``."""
    return config_from_dict(cls, load_yaml(path))
