"""Command-line flags of ``tensorflow_model_server`` that the embedded server implements.

Parsing follows absl/TensorFlow flag syntax: ``--flag=value`` or ``--flag value`` (one or two
leading dashes), booleans as ``--flag``, ``--noflag`` or ``--flag=true|false|1|0``. An unknown
flag or a malformed value raises :class:`FlagError`; ``python -m serving`` prints it with the usage
and exits with status 2.

Flags marked *deepline extension* do not exist in TensorFlow Serving.
"""

from __future__ import annotations

import dataclasses
import os

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


class FlagError(ValueError):
    """Bad command line: unknown flag, missing or malformed value."""


@dataclasses.dataclass
class ServerOptions:
    """Resolved server options (names and defaults of ``tensorflow_model_server``'s flags)."""

    port: int = 8500
    rest_api_port: int = 0
    rest_api_num_threads: int = 0
    rest_api_timeout_in_ms: int = 30000
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True
    num_load_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    grpc_max_threads: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    # deepline extensions
    bind_address: str = "127.0.0.1"
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    grpc_max_message_bytes: int = 256 * 1024 * 1024
    rest_api_idle_timeout_seconds: float = 30.0
    rest_api_front: str = "native"
    grpc_front: str = "native"
    python_gc_freeze: bool = True

    def validate(self) -> ServerOptions:
        for name in ("port", "rest_api_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise FlagError(f"--{name} must be in [0, 65535], got {value}")
        if self.model_config_file and self.model_base_path:
            raise FlagError(
                "--model_config_file and --model_base_path are mutually exclusive; got both "
                f"({self.model_config_file!r}, {self.model_base_path!r})"
            )
        if not self.model_config_file and not self.model_base_path:
            raise FlagError("Both server_model_config and model_base_path are unset: pass "
                            "--model_base_path (with --model_name) or --model_config_file")
        if self.rest_api_num_threads < 0:
            raise FlagError(f"--rest_api_num_threads must be >= 0, got {self.rest_api_num_threads}")
        if self.file_system_poll_wait_seconds < 0:
            raise FlagError(f"--file_system_poll_wait_seconds must be >= 0, got "
                            f"{self.file_system_poll_wait_seconds}")
        for name in ("rest_api_timeout_in_ms", "rest_api_max_body_bytes", "grpc_max_message_bytes"):
            if getattr(self, name) <= 0:
                raise FlagError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.rest_api_front not in ("native", "asyncio"):
            raise FlagError(f"--rest_api_front must be native or asyncio, got "
                            f"{self.rest_api_front!r}")
        if self.grpc_front not in ("native", "grpcio"):
            raise FlagError(f"--grpc_front must be native or grpcio, got {self.grpc_front!r}")
        if self.batching_parameters_file and not self.enable_batching:
            raise FlagError("--batching_parameters_file requires --enable_batching")
        return self

    @property
    def rest_threads(self) -> int:
        return self.rest_api_num_threads or max(8, 4 * (os.cpu_count() or 1))

    @property
    def grpc_threads(self) -> int:
        return self.grpc_max_threads or max(8, 4 * (os.cpu_count() or 1))


_HELP = {
    "port": "TCP port for gRPC (PredictionService and ModelService).",
    "rest_api_port": "TCP port for the REST API; 0 (default) disables it.",
    "rest_api_num_threads": "Threads for the REST server's blocking work (model runs with "
                            "batching off, classify/regress, metadata); 0: max(8, 4 x CPUs). "
                            "Connections are served by one asyncio event loop.",
    "rest_api_timeout_in_ms": "Deadline for REST requests (waiting for a batch or a model).",
    "model_name": "Name of the model served with --model_base_path.",
    "model_base_path": "Directory holding integer version subdirectories of one SavedModel.",
    "model_config_file": "ModelServerConfig text proto (several models, version policies, labels).",
    "model_config_file_poll_wait_seconds": "Re-read --model_config_file every N s (0: never).",
    "file_system_poll_wait_seconds": "Poll model base paths for new versions every N s "
                                     "(0: only at start).",
    "enable_batching": "Merge concurrent requests into batches on the server.",
    "batching_parameters_file": "BatchingParameters text proto (max_batch_size, "
                                "batch_timeout_micros, ...).",
    "monitoring_config_file": "MonitoringConfig text proto; prometheus_config { enable: true } "
                              "serves metrics on the REST port.",
    "allow_version_labels_for_unavailable_models": "Allow labels on versions not yet loaded.",
    "enable_model_warmup": "Replay assets.extra/tf_serving_warmup_requests before serving a "
                           "version.",
    "num_load_threads": "Accepted for compatibility (versions load one at a time).",
    "max_num_load_retries": "Retries of a failed version load.",
    "load_retry_interval_micros": "Wait between load retries.",
    "grpc_max_threads": "Threads for gRPC calls' blocking work (model runs with batching off, "
                        "classify/regress, metadata, reloads); 0: max(8, 4 x CPUs). RPCs are "
                        "served by one asyncio event loop.",
    "tensorflow_intra_op_parallelism": "TensorFlow intra-op threads (0: TensorFlow's choice).",
    "tensorflow_inter_op_parallelism": "TensorFlow inter-op threads (0: TensorFlow's choice).",
    "bind_address": "deepline extension: address both servers listen on (default 127.0.0.1; "
                    "0.0.0.0 for all interfaces).",
    "rest_api_max_body_bytes": "deepline extension: largest accepted REST body (413 above).",
    "grpc_max_message_bytes": "deepline extension: largest gRPC message in either direction.",
    "rest_api_idle_timeout_seconds": "deepline extension: close REST connections idle or stalled "
                                     "this long.",
    "rest_api_front": "deepline extension: who serves REST connections: native (a C I/O "
                      "thread, the default where it is built; else asyncio) or asyncio (the "
                      "event loop).",
    "grpc_front": "deepline extension: who serves gRPC connections: native (HTTP/2 on a C I/O "
                  "thread with libnghttp2, the default where it is built; else grpcio) or "
                  "grpcio (grpcio's asyncio server).",
    "python_gc_freeze": "deepline extension: after model loads and unloads, move the objects "
                        "then alive out of Python's cyclic garbage collector (gc.freeze), so its "
                        "full collections skip them (with TensorFlow loaded, about 200 ms each, "
                        "every request waiting); --nopython_gc_freeze leaves the collector as "
                        "it is.",
}


def usage() -> str:
    lines = ["usage: python -m serving [--flag=value ...]", "", "Flags:"]
    for field in dataclasses.fields(ServerOptions):
        default = field.default
        kind = type(default).__name__
        lines.append(f"  --{field.name}={default!r} ({kind})")
        lines.append(f"      {_HELP.get(field.name, '')}")
    return "\n".join(lines)


def _convert(name: str, raw: str, kind: type):
    if kind is bool:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise FlagError(f"Illegal value '{raw}' specified for bool flag '{name}'")
    try:
        return kind(raw)
    except ValueError:
        raise FlagError(
            f"Illegal value '{raw}' specified for {kind.__name__} flag '{name}'"
        ) from None


def parse_flags(argv: list[str]) -> ServerOptions:
    """Parse ``tensorflow_model_server``-style flags into validated :class:`ServerOptions`."""
    kinds = {f.name: type(f.default) for f in dataclasses.fields(ServerOptions)}
    values: dict[str, object] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"Unexpected positional argument '{arg}' (flags are --name=value)")
        body = arg.lstrip("-")
        name, has_value, raw = body.partition("=")
        if name not in kinds and name.startswith("no") and name[2:] in kinds and not has_value:
            if kinds[name[2:]] is bool:
                values[name[2:]] = False
                continue
        if name not in kinds:
            raise FlagError(f"Unknown command line flag '{name}'")
        kind = kinds[name]
        if not has_value:
            if kind is bool:
                nxt = argv[i].lower() if i < len(argv) else ""
                if nxt in _TRUE | _FALSE and not nxt.startswith("-"):
                    raw = argv[i]
                    i += 1
                else:
                    values[name] = True
                    continue
            else:
                if i >= len(argv):
                    raise FlagError(f"Missing value for flag '{name}'")
                raw = argv[i]
                i += 1
        values[name] = _convert(name, raw, kind)
    return ServerOptions(**values).validate()
