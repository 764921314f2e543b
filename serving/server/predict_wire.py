"""Dense Predict calls on the wire: serialized ``PredictRequest`` → NumPy inputs, and NumPy
outputs → serialized ``PredictResponse``\\ s, for the merged Predict path of the native gRPC front
end (``PredictionServicer.predict_many``).

:mod:`serving.server._predict_wire` (C, when built) reads and writes the protobuf wire format
itself: a request in the form clients write for dense numeric inputs (``tensor_content``, as
``tf.make_tensor_proto`` writes it) is read without building protobuf messages, its values left
in the request's bytes (a read-only NumPy view); the answers of a batch are written in one call.
Every other request, and every output the C writer does not write (strings), goes through
protobuf, with the same results: the inputs :func:`tensors.to_ndarray` decodes, and the bytes
``SerializeToString(deterministic=True)`` writes for the message
:func:`tensors.from_ndarray` fills (the general path serializes deterministically too, so both
paths answer a request with the same bytes).

On LeNet-5's 28×28 float32 images (the 2-core development VM) this takes reading a request
from about 16 µs to about 2.5 µs (0.5 µs of it in C), and writing an answer (10 probabilities and
a class) from about 20 µs to under 0.5 µs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from tensorflow_serving.apis import predict_pb2

from serving.server.tensors import enum_of, from_ndarray, numpy_dtype, to_ndarray

try:
    from serving.server import _predict_wire
except ImportError:  # no C compiler at install: protobuf reads and writes every call
    _predict_wire = None


class DenseRequest(NamedTuple):
    spec: bytes  # the request's model_spec, serialized (unchecked: ModelSpec.FromString it)
    output_filter: tuple[str, ...]
    inputs: dict[str, np.ndarray]


def read_request(raw: bytes) -> DenseRequest | None:
    """The model spec, output filter and inputs of a serialized ``PredictRequest``; None when
    it does not parse, has no ``model_spec`` or no inputs, or an input does not decode (the
    general path answers it, naming the error)."""
    if _predict_wire is not None:
        fields = _predict_wire.read_request(raw)
        if fields is not None:
            spec, output_filter, entries = fields
            inputs = {alias: np.ndarray(shape, numpy_dtype(dtype), raw, offset)
                      for alias, dtype, shape, offset in entries}
            if not inputs:
                return None
            if len(inputs) == len(entries):
                return DenseRequest(spec, output_filter, inputs)
            # an alias given twice: protobuf's map keeps the last one
    try:
        request = predict_pb2.PredictRequest.FromString(raw)
        if not request.HasField("model_spec") or not request.inputs:
            return None
        inputs = {k: to_ndarray(v, k) for k, v in request.inputs.items()}
    except Exception:  # noqa: BLE001 - the general path names the error
        return None
    return DenseRequest(request.model_spec.SerializeToString(deterministic=True),
                        tuple(request.output_filter), inputs)


def write_responses(spec: bytes, outputs: dict[str, np.ndarray], rows: list[int]) -> list[bytes]:
    """Serialized ``PredictResponse``\\ s for consecutive requests of ``rows[k]`` rows each of
    ``outputs`` (each with ``sum(rows)`` rows), with ``model_spec`` ``spec`` (serialized)."""
    if _predict_wire is not None and all(name and _c_writes(v) for name, v in outputs.items()):
        return _predict_wire.write_responses(
            spec, [(name.encode(), enum_of(v), np.ascontiguousarray(v))
                   for name, v in sorted(outputs.items(), key=lambda kv: kv[0].encode())], rows)
    responses, start = [], 0
    for n in rows:
        response = predict_pb2.PredictResponse()
        response.model_spec.MergeFromString(spec)
        for name, v in outputs.items():
            from_ndarray(v[start:start + n], response.outputs[name])
        responses.append(response.SerializeToString(deterministic=True))
        start += n
    return responses


def _c_writes(v: np.ndarray) -> bool:
    """Whether ``_predict_wire.write_responses`` writes ``v``'s values (what from_ndarray
    writes from them)."""
    return v.ndim >= 1 and v.dtype.kind in "biuf" and v.dtype.isnative and v.dtype.itemsize <= 8
