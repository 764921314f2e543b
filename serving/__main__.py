"""``python -m serving`` / ``deepline-serve``: the embedded TF-Serving-compatible model server.

Takes ``tensorflow_model_server``'s flags (see ``serving/README.md`` or ``--help``)::

    python -m serving --model_name=mnist --model_base_path=$PWD/models/mnist \
        --port=8500 --rest_api_port=8501

Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 2 for a bad command line, 1 when the
configuration or the models cannot be loaded.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from serving.server.options import FlagError, parse_flags, usage


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in argv):
        print(usage())
        return 0
    try:
        options = parse_flags(argv)
    except FlagError as exc:
        print(f"ERROR: {exc}\n\n{usage()}", file=sys.stderr)
        return 2
    from serving.server import config as cfg

    try:  # fail fast on unreadable config files, before TensorFlow is imported
        if options.model_config_file:
            cfg.read_model_config_file(options.model_config_file)
        if options.enable_batching:
            cfg.read_batching_file(options.batching_parameters_file)
        cfg.read_monitoring_file(options.monitoring_config_file)
    except cfg.ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import tensorflow as tf

    if options.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(
            options.tensorflow_intra_op_parallelism)
    if options.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(
            options.tensorflow_inter_op_parallelism)
    from serving.server.config import ConfigError
    from serving.server.errors import ServingError
    from serving.server.server import ModelServer

    server = None
    try:
        server = ModelServer(options)
        server.start()
    except (ConfigError, ServingError, OSError) as exc:
        print(f"ERROR: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        if server is not None:
            server.stop()
        return 1

    def _stop(signum, frame):
        server._stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
