"""Talk to a TensorFlow Serving endpoint over gRPC or REST (used by ``deepline-query``).

Both transports expose the same three calls and raise ``QueryError`` (a one-line message, no
stack trace) for every failure a user can cause or meet: server unreachable, model or version
not found, bad request, timeout.

- ``signature(signature_name)`` → ``SignatureInfo`` (inputs/outputs: name → dtype, shape) read
  from the model metadata (gRPC ``GetModelMetadata`` / REST ``GET .../metadata``).
- ``predict(inputs, signature_name)`` → ``{output name: np.ndarray}`` (gRPC ``Predict`` with
  ``tf.make_tensor_proto`` / REST ``POST .../:predict`` in row format ``instances``).
- ``classify(batch, signature_name)`` → one ``[(label, score), ...]`` list per example
  (gRPC ``Classify`` / REST ``POST .../:classify``), the batch sent as ``tf.Example`` protos.
- ``regress(batch, signature_name)`` → one float per example (``Regress`` / ``:regress``).

REST URLs: ``http://HOST:PORT/v1/models/NAME[/versions/N | /labels/L][:predict|:classify]``.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "QueryError",
    "ModelRef",
    "SignatureInfo",
    "GrpcTransport",
    "RestTransport",
    "predict_request",
    "classification_request",
    "regression_request",
    "rest_predict_body",
    "rest_classify_body",
]


class QueryError(Exception):
    """A request failed; ``str(e)`` is the message to show the user."""


@dataclass(frozen=True)
class ModelRef:
    """Which servable to address: name plus optional version number or version label."""

    name: str
    version: int | None = None
    label: str | None = None

    def __post_init__(self):
        if self.version is not None and self.label is not None:
            raise ValueError(
                f"give a model version or a version label, not both; received "
                f"version={self.version!r}, label={self.label!r}."
            )

    def fill(self, model_spec, signature_name: str | None = None):
        """Fill a ``tensorflow.serving.ModelSpec`` proto."""
        model_spec.name = self.name
        if self.version is not None:
            model_spec.version.value = self.version
        if self.label is not None:
            model_spec.version_label = self.label
        if signature_name is not None:
            model_spec.signature_name = signature_name

    def rest_path(self) -> str:
        path = f"/v1/models/{urllib.request.quote(self.name, safe='')}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        elif self.label is not None:
            path += f"/labels/{urllib.request.quote(self.label, safe='')}"
        return path

    def describe(self) -> str:
        if self.version is not None:
            return f"model {self.name!r} version {self.version}"
        if self.label is not None:
            return f"model {self.name!r} label {self.label!r}"
        return f"model {self.name!r}"


@dataclass
class SignatureInfo:
    """A SignatureDef in NumPy terms. Shapes use None for unknown dimensions (-1 on the wire)."""

    method_name: str
    inputs: dict = field(default_factory=dict)  # name -> (np.dtype | object for strings, shape)
    outputs: dict = field(default_factory=dict)

    @classmethod
    def from_proto(cls, signature_def):
        import tensorflow as tf

        def convert(tensor_infos):
            out = {}
            for name, info in tensor_infos.items():
                dtype = tf.dtypes.as_dtype(info.dtype)
                np_dtype = np.dtype(object) if dtype == tf.string else np.dtype(
                    dtype.as_numpy_dtype
                )
                if info.tensor_shape.unknown_rank:
                    shape = None
                else:
                    shape = [None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
                out[name] = (np_dtype, shape)
            return out

        return cls(
            signature_def.method_name, convert(signature_def.inputs), convert(signature_def.outputs)
        )


def _select_signature(signature_defs, name: str, ref: ModelRef) -> SignatureInfo:
    if name not in signature_defs:
        available = sorted(k for k in signature_defs if not k.startswith("__"))
        raise QueryError(
            f"{ref.describe()} has no signature {name!r}; available signatures: {available}"
        )
    return SignatureInfo.from_proto(signature_defs[name])


# ----------------------------------------------------------------------------- request builders


def predict_request(ref: ModelRef, inputs: dict, signature_name="serving_default"):
    """``PredictRequest`` with one ``TensorProto`` (``tf.make_tensor_proto``) per named input."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    ref.fill(request.model_spec, signature_name)
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def classification_request(ref: ModelRef, batch: dict, signature_name="classify"):
    """``ClassificationRequest`` carrying one ``tf.Example`` per row of ``batch``."""
    from tensorflow_serving.apis import classification_pb2

    from serving.examples import make_examples

    request = classification_pb2.ClassificationRequest()
    ref.fill(request.model_spec, signature_name)
    request.input.example_list.examples.extend(make_examples(batch))
    return request


def regression_request(ref: ModelRef, batch: dict, signature_name="regress"):
    """``RegressionRequest`` carrying one ``tf.Example`` per row of ``batch``."""
    from tensorflow_serving.apis import regression_pb2

    from serving.examples import make_examples

    request = regression_pb2.RegressionRequest()
    ref.fill(request.model_spec, signature_name)
    request.input.example_list.examples.extend(make_examples(batch))
    return request


def _json_value(value):
    """NumPy → JSON-ready Python: bytes become ``{"b64": ...}`` as TF Serving's REST API wants."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_json_value(v) for v in value]
        return value.tolist()
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _rows(batch: dict):
    sizes = {name: np.shape(a)[0] if np.ndim(a) else None for name, a in batch.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise QueryError(f"every input needs the same batch size; received {sizes}")
    return next(iter(sizes.values()))


def rest_predict_body(batch: dict, signature_name="serving_default") -> dict:
    """Row-format body: ``{"signature_name": s, "instances": [...]}`` (named rows if >1 input)."""
    n = _rows(batch)
    if len(batch) == 1:
        (array,) = batch.values()
        instances = [_json_value(np.asarray(array)[i]) for i in range(n)]
    else:
        instances = [
            {name: _json_value(np.asarray(a)[i]) for name, a in batch.items()} for i in range(n)
        ]
    return {"signature_name": signature_name, "instances": instances}


def rest_classify_body(batch: dict, signature_name="classify") -> dict:
    """``{"signature_name": s, "examples": [{feature: value list}, ...]}`` (:classify, :regress).

    Float features are sent as JSON floats (``0.0``, never ``0``): TF Serving turns JSON integers
    into ``int64_list`` features, which a float feature would reject.
    """
    n = _rows(batch)
    examples = []
    for i in range(n):
        example = {}
        for name, array in batch.items():
            array = np.asarray(array)
            row = np.asarray(array[i], dtype=array.dtype)  # 0-d for scalar (e.g. string) rows
            if row.dtype.kind == "f":
                example[name] = [float(v) for v in row.ravel()]
            elif row.dtype.kind in "iub":
                example[name] = [int(v) for v in row.ravel()]
            else:
                values = [_json_value(v) for v in row.ravel()]
                example[name] = values[0] if row.ndim == 0 else values
        examples.append(example)
    return {"signature_name": signature_name, "examples": examples}


# ----------------------------------------------------------------------------- gRPC


class GrpcTransport:
    """``tensorflow.serving.PredictionService`` over gRPC (official stubs)."""

    def __init__(self, address: str, ref: ModelRef, timeout: float = 10.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.address, self.ref, self.timeout = address, ref, timeout
        options = [
            ("grpc.max_send_message_length", 256 << 20),
            ("grpc.max_receive_message_length", 256 << 20),
        ]
        self._channel = grpc.insecure_channel(address, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def close(self):
        self._channel.close()

    def _call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise QueryError(self._explain(e)) from None

    def _explain(self, e) -> str:
        import grpc

        code, details = e.code(), (e.details() or "").strip()
        if code == grpc.StatusCode.UNAVAILABLE:
            return f"cannot reach the gRPC server at {self.address} ({details or 'unavailable'})"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer from {self.address} within {self.timeout:g} s (--timeout)"
        if code == grpc.StatusCode.NOT_FOUND:
            return f"{self.ref.describe()} not found on {self.address}: {details}"
        return f"{code.name}: {details}"

    def signature(self, signature_name: str) -> SignatureInfo:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self.ref.fill(request.model_spec)
        response = self._call(self._stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return _select_signature(signature_map.signature_def, signature_name, self.ref)

    def predict(self, inputs: dict, signature_name="serving_default") -> dict:
        import tensorflow as tf

        request = predict_request(self.ref, inputs, signature_name)
        response = self._call(self._stub.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def classify(self, batch: dict, signature_name="classify") -> list:
        request = classification_request(self.ref, batch, signature_name)
        response = self._call(self._stub.Classify, request)
        return [
            [(c.label, float(c.score)) for c in classifications.classes]
            for classifications in response.result.classifications
        ]

    def regress(self, batch: dict, signature_name="regress") -> list:
        request = regression_request(self.ref, batch, signature_name)
        response = self._call(self._stub.Regress, request)
        return [float(r.value) for r in response.result.regressions]


# ----------------------------------------------------------------------------- REST


class RestTransport:
    """TF Serving's REST API with plain ``urllib`` (HTTP/1.1, JSON)."""

    def __init__(self, address: str, ref: ModelRef, timeout: float = 10.0):
        if "://" not in address:
            address = "http://" + address
        self.base, self.ref, self.timeout = address.rstrip("/"), ref, timeout

    def close(self):
        pass

    def _request(self, path: str, body: dict | None = None):
        url = self.base + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            raise QueryError(self._explain_http(e, url)) from None
        except TimeoutError:
            raise QueryError(
                f"no answer from {self.base} within {self.timeout:g} s (--timeout)"
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                raise QueryError(
                    f"no answer from {self.base} within {self.timeout:g} s (--timeout)"
                ) from None
            raise QueryError(f"cannot reach the REST server at {self.base} ({reason})") from None
        try:
            return json.loads(payload)
        except ValueError:
            raise QueryError(f"{url} answered with a body that is not JSON") from None

    def _explain_http(self, e, url) -> str:
        try:
            message = json.loads(e.read()).get("error", "")
        except (ValueError, AttributeError, OSError):
            message = ""
        message = message or e.reason
        if e.code == 404:
            return f"{self.ref.describe()} not found at {url} (HTTP 404): {message}"
        return f"HTTP {e.code} from {url}: {message}"

    def signature(self, signature_name: str) -> SignatureInfo:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        reply = self._request(self.ref.rest_path() + "/metadata")
        try:
            defs = reply["metadata"]["signature_def"]
            signature_map = json_format.ParseDict(
                defs, get_model_metadata_pb2.SignatureDefMap(), ignore_unknown_fields=True
            )
        except (KeyError, TypeError, json_format.ParseError) as e:
            raise QueryError(f"unexpected metadata reply from {self.base}: {e}") from None
        return _select_signature(signature_map.signature_def, signature_name, self.ref)

    def predict(self, inputs: dict, signature_name="serving_default") -> dict | list:
        """Returns ``{name: array}`` for named outputs, else the bare ``predictions`` array."""
        reply = self._request(self.ref.rest_path() + ":predict",
                              rest_predict_body(inputs, signature_name))
        return self.decode_predictions(reply)

    @staticmethod
    def decode_predictions(reply: dict):
        if "predictions" in reply:
            rows = reply["predictions"]
            if rows and all(isinstance(r, dict) for r in rows):
                return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
            return np.asarray(rows)
        if "outputs" in reply:
            outputs = reply["outputs"]
            if isinstance(outputs, dict):
                return {k: np.asarray(v) for k, v in outputs.items()}
            return np.asarray(outputs)
        raise QueryError(f"unexpected predict reply: keys {sorted(reply)}")

    def classify(self, batch: dict, signature_name="classify") -> list:
        reply = self._request(self.ref.rest_path() + ":classify",
                              rest_classify_body(batch, signature_name))
        if "results" not in reply:
            raise QueryError(f"unexpected classify reply: keys {sorted(reply)}")
        return [[(str(label), float(score)) for label, score in row] for row in reply["results"]]

    def regress(self, batch: dict, signature_name="regress") -> list:
        reply = self._request(self.ref.rest_path() + ":regress",
                              rest_classify_body(batch, signature_name))
        if "results" not in reply:
            raise QueryError(f"unexpected regress reply: keys {sorted(reply)}")
        return [float(v) for v in reply["results"]]
