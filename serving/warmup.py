"""SavedModel warm-up records: ``assets.extra/tf_serving_warmup_requests``.

TensorFlow Serving replays these requests when it loads a version, before marking it
AVAILABLE, so the first real request does not pay for graph initialisation. The file is a
TFRecord of ``tensorflow.serving.PredictionLog`` protos; deepline writes one
``predict_log.request`` (a ``PredictRequest`` for ``serving_default``) per warm-up batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

__all__ = ["WARMUP_DIR", "WARMUP_FILE", "warmup_batches", "write_warmup", "read_warmup"]

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def _zeros(spec: tf.TensorSpec) -> np.ndarray:
    shape = [1 if d is None else d for d in spec.shape.as_list()]
    if spec.dtype == tf.string:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=spec.dtype.as_numpy_dtype)


def warmup_batches(input_specs: Mapping[str, tf.TensorSpec], warmup_inputs=None) -> list[dict]:
    """Normalise ``warmup_inputs`` into a list of ``{input name: np.ndarray}`` batches.

    ``warmup_inputs``: None (one batch of zeros — empty strings for string inputs — with every
    unknown dimension set to 1), an array (models with one input), a dict ``{name: array}``
    (one batch), or a list of such dicts/arrays (one request each). Arrays are cast to the
    input's dtype; names and ranks are checked against ``input_specs``.
    """
    names = list(input_specs)
    if warmup_inputs is None:
        return [{n: _zeros(s) for n, s in input_specs.items()}]
    if isinstance(warmup_inputs, Mapping) or not isinstance(warmup_inputs, Sequence):
        items = [warmup_inputs]
    elif warmup_inputs and all(isinstance(x, Mapping) for x in warmup_inputs):
        items = list(warmup_inputs)
    elif len(names) == 1:
        items = [warmup_inputs]  # a plain nested list: one array for the single input
    else:
        items = list(warmup_inputs)
    if not 1 <= len(items) <= MAX_WARMUP_RECORDS:
        raise ValueError(
            f"warmup_inputs must hold 1 to {MAX_WARMUP_RECORDS} batches (TF Serving reads at most "
            f"{MAX_WARMUP_RECORDS} warm-up records); received {len(items)}."
        )
    batches = []
    for item in items:
        if not isinstance(item, Mapping):
            if len(names) != 1:
                raise ValueError(
                    f"warmup_inputs must be dicts keyed by input names {names} for a model with "
                    f"several inputs; received {type(item).__name__}."
                )
            item = {names[0]: item}
        if set(item) != set(names):
            raise ValueError(
                f"warmup_inputs keys {sorted(item)} do not match the model's input names "
                f"{sorted(names)}."
            )
        batch = {}
        for name in names:
            spec = input_specs[name]
            if spec.dtype == tf.string:
                array = np.asarray(item[name], dtype=object)
            else:
                array = np.asarray(item[name]).astype(spec.dtype.as_numpy_dtype)
            if array.ndim != spec.shape.rank:
                raise ValueError(
                    f"warmup_inputs[{name!r}] has shape {array.shape}; expected a batch of rank "
                    f"{spec.shape.rank} matching {spec.shape}."
                )
            batch[name] = array
        batches.append(batch)
    return batches


def write_warmup(export_dir, model_name: str, batches, signature_name="serving_default"):
    """Write ``<export_dir>/assets.extra/tf_serving_warmup_requests``; return its path."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    directory = os.path.join(export_dir, WARMUP_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            for name, array in batch.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup(path) -> list:
    """Parse a warm-up file back into ``PredictionLog`` protos."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(os.fspath(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record)
        logs.append(log)
    return logs
