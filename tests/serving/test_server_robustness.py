"""Hostile input never crashes or wedges the server: limits, slow clients, bad-request floods."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving.conftest import make_base, start_server

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, toy_builds):
    base = make_base(tmp_path_factory.mktemp("robust"), "toy", toy_builds, [1])
    server = start_server(["--model_name=toy", f"--model_base_path={base}",
                           f"--rest_api_max_body_bytes={LIMIT}",
                           f"--grpc_max_message_bytes={LIMIT}",
                           "--rest_api_idle_timeout_seconds=1"])
    yield server
    server.stop()


def _post(server, path, data: bytes, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    conn.request("POST", path, body=data, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, json.loads(body)


def _ok(server):
    status, body = _post(server, "/v1/models/toy:predict",
                         json.dumps({"instances": [[1, 2, 3]]}).encode())
    return status == 200 and body["predictions"][0]["total"] == 6.0


def test_rest_body_over_limit_is_413(small_server):
    big = json.dumps({"instances": [[1.0, 2.0, 3.0]] * 10000}).encode()
    assert len(big) > LIMIT
    status, body = _post(small_server, "/v1/models/toy:predict", big)
    assert status == 413 and str(LIMIT) in body["error"]
    assert _ok(small_server)


def test_chunked_body_is_accepted_and_limited(small_server):
    def chunked(payload: bytes, size=7):
        for i in range(0, len(payload), size):
            yield payload[i:i + size]

    conn = http.client.HTTPConnection("127.0.0.1", small_server.rest_port, timeout=30)
    payload = json.dumps({"instances": [[1, 2, 3]]}).encode()
    conn.request("POST", "/v1/models/toy:predict", body=chunked(payload), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["predictions"][0]["total"] == 6.0
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", small_server.rest_port, timeout=30)
    conn.request("POST", "/v1/models/toy:predict", body=chunked(b" " * (LIMIT + 10), 4096),
                 encode_chunked=True)
    assert conn.getresponse().status == 413
    conn.close()


def test_grpc_message_over_limit_is_resource_exhausted(small_server):
    channel = grpc.insecure_channel(f"127.0.0.1:{small_server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((10000, 3), np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = predict_pb2.PredictRequest()
    small.model_spec.name = "toy"
    small.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((2, 3), np.float32)))
    assert list(stub.Predict(small, timeout=30).outputs["total"].float_val) == [3.0, 3.0]
    channel.close()


def test_slow_client_is_disconnected(small_server):
    sock = socket.create_connection(("127.0.0.1", small_server.rest_port), timeout=10)
    sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n")  # never finishes
    start = time.monotonic()
    data = sock.recv(1024)  # the server closes the idle socket after ~1 s
    assert data == b"" or b"408" in data or b"400" in data
    assert time.monotonic() - start < 9
    sock.close()
    assert _ok(small_server)


def test_flood_of_bad_requests_while_good_ones_succeed(small_server):
    bad_bodies = [b"{", b"[]", b'{"instances": "x"}', b'{"instances": [[1, 2]]}',
                  b'{"instances": [[' + b"1," * 5000 + b"1]]}", b"\x00\xff" * 100,
                  b'{"instances": [' + b"[" * 2000 + b"]" * 2000 + b"]}"]
    failures = []

    def bad():
        for body in bad_bodies * 3:
            status, payload = _post(small_server, "/v1/models/toy:predict", body)
            if status not in (400, 413) or "error" not in payload:
                failures.append((status, payload))
            _post(small_server, "/v1/models/..%2F..%2Fetc:predict", b'{"instances": [1]}')

    def good():
        for _ in range(10):
            if not _ok(small_server):
                failures.append("good request failed")

    threads = [threading.Thread(target=bad) for _ in range(3)] + [threading.Thread(target=good)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert _ok(small_server)
