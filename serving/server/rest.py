"""REST front end: TF Serving's HTTP/JSON API on a threaded HTTP/1.1 keep-alive server.

Routes (``https://www.tensorflow.org/tfx/serving/api_rest``; case-insensitive like TF Serving):

- ``GET  /v1/models/{name}[/versions/{v} | /labels/{l}]`` — model status
- ``GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata`` — signature metadata
- ``POST /v1/models/{name}[/versions/{v} | /labels/{l}]:(predict|classify|regress)``
- ``GET  <prometheus path>`` — metrics, when enabled by ``--monitoring_config_file``

Errors are ``{"error": "<message>"}`` with TF Serving's HTTP status mapping (see
:mod:`serving.server.errors`); anything else under ``/v1/`` is ``400 Malformed request``, other
paths ``404``. Bodies above ``--rest_api_max_body_bytes`` get ``413`` without being read; sockets
idle or stalled longer than ``--rest_api_idle_timeout_seconds`` are closed.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, regression_pb2

from serving.server import json_codec
from serving.server.core import ServingCore
from serving.server.errors import Code, from_exception, invalid_argument
from serving.server.grpc_service import metadata_response, model_status_response

log = logging.getLogger("serving.server.rest")

_PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
_STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
_INT64_MAX = 2**63 - 1
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


def _version(text: str | None) -> int | None:
    if not text:
        return None
    v = int(text)
    if v > _INT64_MAX:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return v


class RestApi:
    """Request routing and handling, independent of the socket server (easy to test)."""

    def __init__(self, core: ServingCore, *, timeout_s: float, metrics_path: str | None):
        self.core = core
        self.timeout_s = timeout_s
        self.metrics_path = metrics_path

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
            if m:
                model, version, label, verb = m.group(1), m.group(2), m.group(3), m.group(4)
                api = verb.lower()
                doc = json_codec.parse_body(body)
                servable = self.core.resolve(model, _version(version), label)
                text = getattr(self, "_" + api)(servable, doc)
                return 200, "application/json", text
            m = _STATUS_RE.fullmatch(path) if method == "GET" else None
            if m:
                model, version, label, meta = m.groups()
                if not model:
                    raise invalid_argument("Missing model name in request.")
                if meta:
                    api = "get_model_metadata"
                    servable = self.core.resolve(model, _version(version), label)
                    return 200, "application/json", self._metadata(servable)
                api = "get_model_status"
                states = self.core.manager.status(model, _version(version), label)
                resp = model_status_response(states)
                return 200, "application/json", json_format.MessageToJson(
                    resp, preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True)
            raise invalid_argument(f"Malformed request: {method} {path}")
        except Exception as exc:  # noqa: BLE001 - every failure becomes {"error": ...}
            err = from_exception(exc)
            if err.code == Code.INTERNAL:
                log.exception("internal error on %s %s", method, path)
            status = err.code.name
            return err.http_status, "application/json", json.dumps({"error": err.message})
        finally:
            if model:
                self.core.metrics.record(model, api, "REST", status,
                                         (time.perf_counter() - start) * 1e6)

    # -- handlers --------------------------------------------------------------------------------
    def _predict(self, servable, doc) -> str:
        name = json_codec.signature_name(doc)
        key = name or "serving_default"
        sig = servable.signatures.get(key)
        if sig is None:
            raise invalid_argument(f'Serving signature name: "{key}" not found in signature def')
        inputs, fmt = json_codec.predict_inputs(doc, sig.inputs)
        _, outputs = self.core.predict(servable, name, inputs, (), self.timeout_s)
        return json_codec.predict_response(outputs, fmt)

    def _classify(self, servable, doc) -> str:
        name = json_codec.signature_name(doc)
        request = classification_pb2.ClassificationRequest()
        json_codec.fill_input_from_json(doc, request.input)
        _, result = self.core.classify(servable, name, request.input, None, self.timeout_s)
        return json_codec.classification_json(result)

    def _regress(self, servable, doc) -> str:
        name = json_codec.signature_name(doc)
        request = regression_pb2.RegressionRequest()
        json_codec.fill_input_from_json(doc, request.input)
        _, result = self.core.regress(servable, name, request.input, None, self.timeout_s)
        return json_codec.regression_json(result)

    @staticmethod
    def _metadata(servable) -> str:
        resp = metadata_response(servable, ["signature_def"])
        sdm = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sdm)
        spec = json_format.MessageToDict(resp.model_spec, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
        meta = json_format.MessageToDict(sdm, preserving_proto_field_name=True)
        return json.dumps({"model_spec": spec, "metadata": {"signature_def": meta}}, indent=1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "deepline-serving"
    sys_version = ""
    api: RestApi
    max_body: int

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, content_type: str, text: str, close: bool = False):
        # One write for status line, headers and body: fewer syscalls and no Nagle stalls.
        data = text.encode("utf-8")
        phrase = _PHRASES.get(status, "")
        head = (f"HTTP/1.1 {status} {phrase}\r\nServer: {self.server_version}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n")
        if close:
            head += "Connection: close\r\n"
            self.close_connection = True
        self.wfile.write(head.encode("latin-1") + b"\r\n" + data)

    def _error(self, status: int, message: str, close: bool = False):
        self._send(status, "application/json", json.dumps({"error": message}), close)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    self._error(400, "Malformed chunked request body", close=True)
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > self.max_body:
                    self._error(413, f"Request body exceeds the limit of {self.max_body} bytes "
                                     "(--rest_api_max_body_bytes)", close=True)
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self._error(400, f"Invalid Content-Length: {length!r}", close=True)
            return None
        if n > self.max_body:
            self._error(413, f"Request body of {n} bytes exceeds the limit of {self.max_body} "
                             "bytes (--rest_api_max_body_bytes)", close=True)
            return None
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            return None
        return data

    def _dispatch(self, method: str):
        body = self._read_body() if method == "POST" else b""
        if body is None:
            return
        status, ctype, text = self.api.handle(method, self.path, body)
        self._send(status, ctype, text)

    def do_GET(self):  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _malformed(self):
        self._read_body()
        self._error(400, f"Malformed request: {self.command} {self.path}")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _malformed


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    block_on_close = False


def create_rest_server(api: RestApi, *, address: str, port: int, max_body_bytes: int,
                       idle_timeout_s: float) -> RestServer:
    handler = type("DeeplineRestHandler", (_Handler,),
                   {"api": api, "max_body": max_body_bytes, "timeout": idle_timeout_s})
    cls = RestServer
    if ":" in address:
        cls = type("RestServer6", (RestServer,), {"address_family": socket.AF_INET6})
    return cls((address, port), handler)
