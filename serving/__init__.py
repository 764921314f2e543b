"""deepline serving: SavedModel export, a TF-Serving-compatible server, and clients.

This package stays light to import: TensorFlow is loaded only when a name that needs it is used.

- ``serving.export.export_model(model, base_path, model_name, ...)`` writes
  ``<base_path>/<model_name>/<version>/`` (a SavedModel TensorFlow Serving loads as is).
- ``serving.client`` is the ``deepline-query`` command (gRPC and REST requests).
- ``serving.examples`` builds and parses the ``tf.Example`` protos the ``classify`` and
  ``regress`` signatures take.
"""

__all__ = ["export_model"]


def __getattr__(name):
    # Lazy: `import serving` must not import TensorFlow.
    if name == "export_model":
        from serving.export import export_model

        return export_model
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
