"""The embedded TF-Serving-compatible model server (``python -m serving``).

One concept per module:

- :mod:`~serving.server.options` — ``tensorflow_model_server`` command-line flags
- :mod:`~serving.server.config` — model config / batching / monitoring text protos
- :mod:`~serving.server.protos` — config protos missing from the ``tensorflow-serving-api`` wheel
- :mod:`~serving.server.servable` — one loaded SavedModel version, signatures, validation
- :mod:`~serving.server.manager` — version discovery, policy, load-before-unload, labels, status
- :mod:`~serving.server.batching` — server-side dynamic batching
- :mod:`~serving.server.inference` — Classify / Regress / MultiInference on ``tf.Example``
- :mod:`~serving.server.core` — the protocol-independent request path
- :mod:`~serving.server.tensors` — TensorProto ⇄ NumPy
- :mod:`~serving.server.json_codec` — REST JSON ⇄ tensors
- :mod:`~serving.server.grpc_service` — PredictionService and ModelService servicers
- :mod:`~serving.server.rest` — the REST API
- :mod:`~serving.server.metrics` — Prometheus metrics
- :mod:`~serving.server.errors` — status codes and their gRPC/HTTP mapping
- :mod:`~serving.server.server` — :class:`ModelServer`, which assembles them
"""

from serving.server.options import FlagError, ServerOptions, parse_flags

__all__ = ["FlagError", "ModelServer", "ServerOptions", "parse_flags"]


def __getattr__(name):
    # ModelServer pulls in TensorFlow: import it lazily so flag parsing stays fast.
    if name == "ModelServer":
        from serving.server.server import ModelServer

        return ModelServer
    raise AttributeError(f"module 'serving.server' has no attribute {name!r}")
