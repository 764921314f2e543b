"""Model, batching and monitoring configuration: TF Serving's text protos → frozen dataclasses.

- ``--model_config_file``: a ``ModelServerConfig`` text proto
  (``tensorflow_serving.config.model_server_config_pb2``) with a ``model_config_list``::

      model_config_list {
        config {
          name: "mnist"  base_path: "/models/mnist"  model_platform: "tensorflow"
          model_version_policy { specific { versions: 1 versions: 2 } }
          version_labels { key: "stable" value: 1 }
          version_labels { key: "canary" value: 2 }
        }
      }

- ``--batching_parameters_file``: a ``BatchingParameters`` text proto (``max_batch_size { value:
  32 }``, ``batch_timeout_micros``, ``max_enqueued_batches``, ``num_batch_threads``,
  ``allowed_batch_sizes``).
- ``--monitoring_config_file``: a ``MonitoringConfig`` text proto
  (``prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }``).
"""

from __future__ import annotations

import dataclasses
import os
import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.server.protos import BatchingParameters, MonitoringConfig

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class ConfigError(ValueError):
    """A configuration file or value that cannot be used (the message names it)."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which on-disk versions to serve: ``latest`` N (default 1), ``all``, or ``specific``."""

    kind: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: list[int]) -> set[int]:
        """The aspired versions among those on disk."""
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "specific":
            return set(self.versions) & set(on_disk)
        return set(sorted(on_disk)[-self.num_versions:]) if on_disk else set()


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: name, base path (holding integer version dirs), policy, labels."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: tuple[tuple[str, int], ...] = ()
    platform: str = "tensorflow"


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching parameters (TF Serving's defaults)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = 0  # 0: number of CPUs
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self):
        if self.max_batch_size <= 0:
            raise ConfigError(f"max_batch_size must be > 0, got {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"batch_timeout_micros must be >= 0, got "
                              f"{self.batch_timeout_micros}")
        if self.max_enqueued_batches <= 0:
            raise ConfigError(f"max_enqueued_batches must be > 0, got {self.max_enqueued_batches}")
        if self.num_batch_threads < 0:
            raise ConfigError(f"num_batch_threads must be >= 0, got {self.num_batch_threads}")
        sizes = self.allowed_batch_sizes
        if sizes:
            if list(sizes) != sorted(set(sizes)) or sizes[0] <= 0:
                raise ConfigError(f"allowed_batch_sizes must be positive and strictly "
                                  f"increasing, got {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                raise ConfigError(
                    f"allowed_batch_sizes: last entry must equal max_batch_size; "
                    f"got {sizes[-1]} vs max_batch_size {self.max_batch_size}")

    @property
    def threads(self) -> int:
        return self.num_batch_threads or (os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class MonitoringSettings:
    prometheus_enabled: bool = False
    prometheus_path: str = "/monitoring/prometheus/metrics"


def _read_text_proto(path: str, message, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path!r}: {exc.strerror}") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(f"{what} {path!r} is not a valid text proto: {exc}") from None


def validate_model_name(name: str) -> str:
    if not name or not _NAME_RE.match(name) or name in (".", ".."):
        raise ConfigError(f"model name must match [A-Za-z0-9_.-]+ and not be '.' or '..', "
                          f"got {name!r}")
    return name


def _platform(cfg) -> str:
    """The model's platform, by TF Serving's rules (``GetPlatform``): ``model_platform``, or the
    deprecated ``model_type`` (TENSORFLOW = 1), never both, never neither."""
    if cfg.model_type:
        if cfg.model_platform:
            raise ConfigError("Illegal setting both ModelServerConfig::model_type (deprecated) "
                              "and ModelServerConfig::model_platform.")
        if cfg.model_type != 1:
            raise ConfigError(f"ModelServerConfig::model_type choice {cfg.model_type} not "
                              "supported.")
        return "tensorflow"
    if not cfg.model_platform:
        raise ConfigError("Illegal setting neither ModelServerConfig::model_type (deprecated) "
                          "nor ModelServerConfig::model_platform.")
    return cfg.model_platform


def _model_from_proto(cfg, config_dir: str) -> ModelConfig:
    name = validate_model_name(cfg.name)
    if not cfg.base_path:
        raise ConfigError(f"model {name!r}: base_path is empty")
    platform = _platform(cfg)
    if platform != "tensorflow":
        raise ConfigError(f"Model {name} requests unsupported platform {platform}")
    base = cfg.base_path
    if not os.path.isabs(base):
        base = os.path.join(config_dir, base)
    which = cfg.model_version_policy.WhichOneof("policy_choice")
    if which == "all":
        policy = VersionPolicy("all")
    elif which == "specific":
        versions = tuple(int(v) for v in cfg.model_version_policy.specific.versions)
        if not versions:
            raise ConfigError(f"model {name!r}: specific version policy lists no versions")
        policy = VersionPolicy("specific", versions=versions)
    elif which == "latest":
        n = cfg.model_version_policy.latest.num_versions or 1
        if n < 0:
            raise ConfigError(f"model {name!r}: latest.num_versions must be > 0, got {n}")
        policy = VersionPolicy("latest", num_versions=n)
    else:
        policy = VersionPolicy()
    labels = tuple(sorted((str(k), int(v)) for k, v in cfg.version_labels.items()))
    return ModelConfig(name=name, base_path=os.path.abspath(base), policy=policy, labels=labels)


def models_from_server_config(config, config_dir: str | None = None) -> list[ModelConfig]:
    """``ModelServerConfig`` proto → list of ModelConfig (duplicates and bad values rejected with
    TF Serving's messages). ``config_dir``: the config file's directory, against which relative
    base paths resolve (a deepline extension); ``None`` (a HandleReloadConfigRequest): every base
    path must be absolute, as TF Serving requires."""
    which = config.WhichOneof("config")
    if which == "custom_model_config":
        raise ConfigError("custom_model_config is not supported; use model_config_list")
    entries = config.model_config_list.config
    seen = set()
    for c in entries:
        if c.name in seen:
            raise ConfigError(f"Illegal to list model {c.name} multiple times in config list")
        seen.add(c.name)
    if config_dir is None:
        for c in entries:
            if c.base_path and not os.path.isabs(c.base_path):
                raise ConfigError(f"Expected model {c.name} to have an absolute path or URI; "
                                  f"got base_path()={c.base_path}")
    return [_model_from_proto(c, config_dir or ".") for c in entries]


def read_model_config_file(path: str) -> list[ModelConfig]:
    proto = _read_text_proto(path, model_server_config_pb2.ModelServerConfig(),
                             "--model_config_file")
    return models_from_server_config(proto, os.path.dirname(os.path.abspath(path)))


def read_batching_file(path: str | None) -> BatchingConfig:
    if not path:
        return BatchingConfig()
    p = _read_text_proto(path, BatchingParameters(), "--batching_parameters_file")
    kwargs = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                 "num_batch_threads"):
        if p.HasField(name):
            kwargs[name] = int(getattr(p, name).value)
    if p.allowed_batch_sizes:
        kwargs["allowed_batch_sizes"] = tuple(int(s) for s in p.allowed_batch_sizes)
    try:
        return BatchingConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"--batching_parameters_file {path!r}: {exc}") from None


def read_monitoring_file(path: str | None) -> MonitoringSettings:
    if not path:
        return MonitoringSettings()
    p = _read_text_proto(path, MonitoringConfig(), "--monitoring_config_file")
    prom = p.prometheus_config
    route = prom.path or MonitoringSettings.prometheus_path
    if not route.startswith("/"):
        raise ConfigError(f"prometheus_config.path must start with '/', got {route!r}")
    return MonitoringSettings(prometheus_enabled=bool(prom.enable), prometheus_path=route)
