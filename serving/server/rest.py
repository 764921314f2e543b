"""REST front end: TF Serving's HTTP/JSON API, served by :mod:`serving.server.aio_http`.

Routes (``https://www.tensorflow.org/tfx/serving/api_rest``; matched without regard to case like
TF Serving's, except the verb and ``metadata``, which its dispatch compares exactly: ``:PREDICT``
is a malformed request and ``/METADATA`` model status; model names and labels are
percent-decoded):

- ``GET  /v1/models/{name}[/versions/{v} | /labels/{l}]`` — model status
- ``GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata`` — signature metadata
- ``POST /v1/models/{name}[/versions/{v} | /labels/{l}]:(predict|classify|regress)``
- ``GET  <prometheus path>`` — metrics, when enabled by ``--monitoring_config_file``

Errors are ``{"error": "<message>"}`` with TF Serving's HTTP status mapping (see
:mod:`serving.server.errors`); anything else under ``/v1/`` is ``400 Malformed request``, other
paths ``404``. Bodies above ``--rest_api_max_body_bytes`` get ``413`` without being read; sockets
idle or stalled longer than ``--rest_api_idle_timeout_seconds`` are closed.

:meth:`RestApi.handle_async` is what the event loop calls. ``:predict`` with a body up to
``FAST_BODY_BYTES`` runs on the loop: JSON decoding (with a fast path for plain numeric
``instances``), validation and encoding there, the model in the executor or the batch scheduler
(awaited, so the loop keeps serving other connections; with batching, the loop runs a batch of
the requests it has read itself, see ``BatchScheduler.run_async(gather_on_loop=True)``).
Everything else — larger bodies, classify/regress, status, metadata, metrics — runs the
synchronous :meth:`RestApi.handle` in the executor. Both paths give the same answers and errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from urllib.parse import unquote

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, regression_pb2

from serving.server import json_codec
from serving.server.core import LOOP_REQUEST_BYTES, ServingCore, encode_outputs
from serving.server.errors import Code, ServingError, from_exception, invalid_argument
from serving.server.grpc_service import metadata_response, model_status_response

log = logging.getLogger("serving.server.rest")

_PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
_STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
_INT64_MAX = 2**63 - 1
FAST_BODY_BYTES = LOOP_REQUEST_BYTES  # larger :predict bodies are decoded in the executor
_ROUTE_CACHE_SIZE = 1024


def _model_parts(m: re.Match) -> tuple[str, str | None, str | None]:
    """(model name, version text, label) of a route match; the name and the label are
    percent-decoded, as TF Serving does (``DecodeArg``)."""
    model, version, label = m.group(1, 2, 3)
    return (unquote(model) if model else model), version, (unquote(label) if label else None)


def _version(text: str | None) -> int | None:
    if not text:
        return None
    v = int(text)
    if v > _INT64_MAX:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return v


class RestApi:
    """Request routing and handling, independent of the socket server (easy to test)."""

    def __init__(self, core: ServingCore, *, timeout_s: float, metrics_path: str | None,
                 executor=None):
        self.core = core
        self.timeout_s = timeout_s
        self.metrics_path = metrics_path
        self.executor = executor  # blocking work of handle_async (None: the loop's default)
        self._routes: dict[str, tuple | None] = {}

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str, str]:
        """→ (HTTP status, content type, body text)."""
        path = path.split("?", 1)[0]
        if self.metrics_path and path == self.metrics_path and method == "GET":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.core.metrics.render()
        if not path.lower().startswith("/v1/"):
            return 404, "application/json", json.dumps(
                {"error": f"Not found: {method} {path} (the REST API is under /v1/models)"})
        start = time.perf_counter()
        model, api, status = "", "unknown", "OK"
        try:
            m = _PREDICT_RE.fullmatch(path) if method == "POST" else None
            if m and m.group(4) in ("classify", "regress", "predict"):  # (the verb's case
                # counts: TF Serving's route pattern ignores it, its dispatch does not)
                (model, version, label), api = _model_parts(m), m.group(4)
                # TF Serving reads the body (for classify and regress, all of it) before it
                # looks up the model, so a bad body is named before an unknown model
                doc = json_codec.parse_body(body)
                name = json_codec.signature_name(doc)
                if api == "predict":
                    servable = self.core.resolve(model, _version(version), label)
                    return 200, "application/json", self._predict(servable, doc)
                request = (classification_pb2.ClassificationRequest() if api == "classify"
                           else regression_pb2.RegressionRequest())
                json_codec.fill_input_from_json(doc, request.input)
                servable = self.core.resolve(model, _version(version), label)
                text = getattr(self, "_" + api)(servable, name, request.input)
                return 200, "application/json", text
            m = _STATUS_RE.fullmatch(path) if method == "GET" else None
            if m:
                model, version, label = _model_parts(m)
                if not model:
                    raise invalid_argument("Missing model name in request.")
                if m.group(4) == "metadata":  # (any other case is model status, as there)
                    api = "get_model_metadata"
                    servable = self.core.resolve(model, _version(version), label)
                    return 200, "application/json", self._metadata(servable)
                api = "get_model_status"
                states = self.core.manager.status(model, _version(version))
                resp = model_status_response(states)
                return 200, "application/json", json_format.MessageToJson(
                    resp, preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True)
            raise invalid_argument(f"Malformed request: {method} {path}")
        except Exception as exc:  # noqa: BLE001 - every failure becomes {"error": ...}
            status, response = _error_response(exc, method, path)
            return response
        finally:
            if model:
                self.core.metrics.record(model, api, "REST", status,
                                         (time.perf_counter() - start) * 1e6)

    # -- event-loop entry point -----------------------------------------------------------------
    async def handle_async(self, method: str, target: str, body: bytes) -> tuple[int, str, str]:
        """Like :meth:`handle`, without blocking the event loop (see the module docstring)."""
        if method == "POST" and len(body) <= FAST_BODY_BYTES:
            route = self._predict_route(target)
            if route is not None:
                return await self._predict_async(route, body)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.handle, method, target, body)

    def _predict_route(self, target: str) -> tuple | None:
        """(model, version text, label) of a ``:predict`` path, else None (cached per path)."""
        path = target.split("?", 1)[0]
        try:
            return self._routes[path]
        except KeyError:
            pass
        m = _PREDICT_RE.fullmatch(path)
        route = _model_parts(m) if m and m.group(4) == "predict" else None
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[path] = route
        return route

    async def _predict_async(self, route: tuple, body: bytes) -> tuple[int, str, str]:
        start = time.perf_counter()
        model, version, label = route
        status = "OK"
        try:
            fast = json_codec.fast_instances(body)
            doc = json_codec.parse_body(body) if fast is None else None
            if doc is not None:
                json_codec.signature_name(doc)  # (checked before the model is looked up)
            servable = self.core.resolve(model, _version(version), label)
            inputs = None
            if fast is not None:
                name = fast[0]
                sig = self._signature(servable, name)
                inputs = json_codec.fast_predict_inputs(fast, sig.inputs)
                fmt = "row"
                if inputs is None:
                    doc = json_codec.parse_body(body)
            if inputs is None:
                name, inputs, fmt = self._document_inputs(servable, doc)
            _, outputs = await self.core.predict_async(servable, name, inputs, (),
                                                       self.timeout_s, self.executor,
                                                       gather_on_loop=True)
            text = await encode_outputs(outputs, self.executor, json_codec.predict_response,
                                        outputs, fmt)
            return 200, "application/json", text
        except Exception as exc:  # noqa: BLE001 - every failure becomes {"error": ...}
            status, response = _error_response(exc, "POST", f"/v1/models/{model}:predict")
            return response
        finally:
            self.core.metrics.record(model, "predict", "REST", status,
                                     (time.perf_counter() - start) * 1e6)

    # -- groups from the native front end -------------------------------------------------------
    async def predict_many_async(self, target: str, name: bytes, kind: str,
                                 inner: tuple[int, ...], rows: tuple[int, ...], values: bytes,
                                 bodies: tuple[bytes, ...]) -> list[tuple[int, str, str]]:
        """The answers to several ``:predict`` requests to ``target`` whose bodies the native
        front end read (``serving.server._http_front``: one signature ``name``, numbers of one
        ``kind`` concatenated in ``values``, ``rows[k]`` rows of shape ``inner`` in request k),
        one (HTTP status, content type, body text) per request, the same as
        :meth:`handle_async` gives each body.

        With batching on, consecutive requests merge into tasks of up to ``max_batch_size`` rows
        (one batch-scheduler task, one output encoding for all of them); with batching off each
        runs alone, as it would from its own body. Where the merged path does not apply, or a
        merged task fails with anything but a deadline or a full queue (which each request would
        have met too), the requests take :meth:`handle_async` one by one, so answers and errors
        are exactly the general path's.
        """
        route = self._predict_route(target)
        merged = None
        if route is not None:
            try:
                merged = self._merged_inputs(route, name.decode("utf-8"), kind, inner, rows,
                                             values)
            except Exception:  # noqa: BLE001 - the general path names the error per request
                merged = None
        answers: list = [None] * len(rows)
        if merged is None:
            await self._one_by_one(target, bodies, answers, 0, len(rows))
            return answers
        servable, name, alias, arr = merged
        offsets = [0]
        for n in rows:
            offsets.append(offsets[-1] + n)
        await asyncio.gather(*(self._predict_chunk(route[0], servable, name, alias, arr, offsets,
                                                   first, last, target, bodies, answers)
                               for first, last in self._chunks(rows)))
        return answers

    def _merged_inputs(self, route: tuple, name: str, kind: str, inner: tuple[int, ...],
                       rows: tuple[int, ...], values: bytes):
        """(servable, signature name, input alias, all rows as one array), or None."""
        model, version, label = route
        servable = self.core.resolve(model, _version(version), label)
        sig = self._signature(servable, name)
        flat = np.frombuffer(values, np.int64 if kind == "i" else np.float64)
        if kind == "f" and not np.isfinite(flat).all():
            return None  # fast_predict_inputs tells an overflow from an infinity per array only
        inputs = json_codec.fast_predict_inputs((name, flat, (sum(rows), *inner)), sig.inputs)
        if inputs is None:
            return None
        (alias, arr), = inputs.items()
        return servable, name, alias, arr

    def _chunks(self, rows: tuple[int, ...]) -> list[tuple[int, int]]:
        """[first, last) request ranges run together: consecutive requests up to
        ``max_batch_size`` rows with batching on, else each request alone."""
        batcher = self.core.batcher
        if batcher is None:
            return [(k, k + 1) for k in range(len(rows))]
        return batcher.merge_ranges(rows)

    async def _predict_chunk(self, model: str, servable, name: str, alias: str, arr, offsets,
                             first: int, last: int, target: str, bodies, answers: list) -> None:
        start = time.perf_counter()
        lo, hi = offsets[first], offsets[last]
        try:
            _, outputs = await self.core.predict_async(
                servable, name, {alias: arr[lo:hi]}, (), self.timeout_s, self.executor,
                gather_on_loop=True, requests=last - first)
            if not outputs or any(v.ndim == 0 or v.shape[0] != hi - lo
                                  for v in outputs.values()):
                raise ValueError("outputs are not one row per input row")
            texts = await encode_outputs(outputs, self.executor, json_codec.predict_rows, outputs)
        except ServingError as exc:
            if exc.code not in (Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE):
                await self._one_by_one(target, bodies, answers, first, last)
                return
            status, response = _error_response(exc, "POST", f"/v1/models/{model}:predict")
            answers[first:last] = [response] * (last - first)
        except Exception:  # noqa: BLE001 - the general path answers each request
            await self._one_by_one(target, bodies, answers, first, last)
            return
        else:
            status = "OK"
            for k in range(first, last):
                rows = texts[offsets[k] - lo:offsets[k + 1] - lo]
                answers[k] = (200, "application/json", json_codec.predictions_json(rows))
        self.core.metrics.record(model, "predict", "REST", status,
                                 (time.perf_counter() - start) * 1e6, requests=last - first)

    async def _one_by_one(self, target: str, bodies, answers: list, first: int,
                          last: int) -> None:
        answers[first:last] = await asyncio.gather(*(self.handle_async("POST", target, body)
                                                     for body in bodies[first:last]))

    @staticmethod
    def _signature(servable, name: str):
        key = name or "serving_default"
        sig = servable.signatures.get(key)
        if sig is None:
            raise invalid_argument(f'Serving signature name: "{key}" not found in signature def')
        return sig

    def _document_inputs(self, servable, doc) -> tuple[str, dict, str]:
        """(signature name, input arrays, "row" or "columnar") of a parsed ``:predict`` body."""
        name = json_codec.signature_name(doc)
        inputs, fmt = json_codec.predict_inputs(doc, self._signature(servable, name).inputs)
        return name, inputs, fmt

    # -- handlers --------------------------------------------------------------------------------
    def _predict(self, servable, doc) -> str:
        name, inputs, fmt = self._document_inputs(servable, doc)
        _, outputs = self.core.predict(servable, name, inputs, (), self.timeout_s)
        return json_codec.predict_response(outputs, fmt)

    def _classify(self, servable, name: str, input_proto) -> str:
        _, result = self.core.classify(servable, name, input_proto, None, self.timeout_s)
        return json_codec.classification_json(result)

    def _regress(self, servable, name: str, input_proto) -> str:
        _, result = self.core.regress(servable, name, input_proto, None, self.timeout_s)
        return json_codec.regression_json(result)

    @staticmethod
    def _metadata(servable) -> str:
        resp = metadata_response(servable, ["signature_def"])
        sdm = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sdm)
        spec = json_format.MessageToDict(resp.model_spec, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
        meta = json_format.MessageToDict(sdm, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
        return json.dumps({"model_spec": spec, "metadata": {"signature_def": meta}}, indent=1)


def _error_response(exc: BaseException, method: str, path: str) -> tuple[str, tuple]:
    """(status name for metrics, (HTTP status, content type, ``{"error": ...}``))."""
    err = from_exception(exc)
    if err.code == Code.INTERNAL:
        log.error("internal error on %s %s", method, path, exc_info=exc)
    return err.code.name, (err.http_status, "application/json",
                           json.dumps({"error": err.message}))
