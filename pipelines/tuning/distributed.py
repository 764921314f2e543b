"""Distributed tuning: KerasTuner's chief/worker mode, driven by three environment variables.

Run the SAME ``deepline-tune`` command in every process, with::

    KERASTUNER_ORACLE_IP=<chief host>  KERASTUNER_ORACLE_PORT=<port>  KERASTUNER_TUNER_ID=<id>

* ``KERASTUNER_TUNER_ID=chief``: runs the oracle (a gRPC server on ``IP:PORT``) and no trials;
  when every worker has been told to stop it prints the results table and writes ``best.yaml``
  (and retrains the best configuration with ``--retrain-best``).
* any other id (``tuner0``, ``tuner1``, ...): a worker; asks the chief for trials, runs them with
  the project trainer and reports the metrics back; exits when the oracle has no more trials.

All processes share the tuner directory (``--workdir`` on a shared filesystem). None of the
three variables set → a single process runs oracle and trials.

:func:`serve_oracle` replaces KerasTuner's ``oracle_chief.start_server`` (same servicer) with a
short poll, so the chief exits within a fraction of a second of the last worker, not 20 s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from pipelines.config import ConfigError

__all__ = ["ENV_IP", "ENV_PORT", "ENV_TUNER_ID", "tuning_role", "tuner_id", "serve_oracle"]

ENV_IP = "KERASTUNER_ORACLE_IP"
ENV_PORT = "KERASTUNER_ORACLE_PORT"
ENV_TUNER_ID = "KERASTUNER_TUNER_ID"


def tuning_role(environ: Mapping[str, str] | None = None) -> str:
    """``"single"``, ``"chief"`` or ``"worker"`` from the environment (one-line ConfigError)."""
    env = os.environ if environ is None else environ
    present = [k for k in (ENV_IP, ENV_PORT, ENV_TUNER_ID) if env.get(k)]
    if not present:
        return "single"
    missing = [k for k in (ENV_IP, ENV_PORT, ENV_TUNER_ID) if not env.get(k)]
    if missing:
        raise ConfigError(
            f"distributed tuning needs {ENV_IP}, {ENV_PORT} and {ENV_TUNER_ID}; "
            f"set: {', '.join(present)}; missing: {', '.join(missing)}"
        )
    port = env[ENV_PORT]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{ENV_PORT} must be a TCP port number, received {port!r}")
    return "chief" if "chief" in env[ENV_TUNER_ID] else "worker"


def tuner_id(environ: Mapping[str, str] | None = None) -> str:
    """This process's tuner id (``tuner0`` when not distributed, like KerasTuner)."""
    env = os.environ if environ is None else environ
    return env.get(ENV_TUNER_ID) or "tuner0"


def serve_oracle(oracle, *, poll_s: float = 0.2, environ: Mapping[str, str] | None = None
                 ) -> None:
    """Serve ``oracle`` over gRPC on ``IP:PORT`` until the search is over.

    Over = a worker was answered STOPPED (no trials left) and no trial is running and no
    worker is still registered (KerasTuner's own exit rule).
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    env = os.environ if environ is None else environ
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{env[ENV_IP]}:{env[ENV_PORT]}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"cannot listen on {address} (port in use or bad address)")
    server.start()
    print(f"[deepline-tune] chief: oracle listening on {address}", flush=True)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_s)
    finally:
        server.stop(grace=1.0).wait(5.0)
