"""The asyncio front ends: HTTP/1.1 details, concurrency on one event loop, async batching,
deadlines, and the JSON fast paths (same answers as the general path)."""

from __future__ import annotations

import asyncio
import concurrent.futures
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

from serving.server import json_codec, native_http
from serving.server.batching import BatchScheduler
from serving.server.config import BatchingConfig
from serving.server.errors import Code, ServingError
from serving.server.servable import TensorSig
from tests.serving.conftest import (
    http_request,
    make_base,
    read_http_response,
    start_batching_server,
    start_server,
)
from tests.serving.test_server_batching import FakeServable, RecordingSignature

PREDICT = "/v1/models/toy:predict"


# Every HTTP behaviour holds for both REST front ends: the C I/O thread (where built) and asyncio.
FRONTS = ["native", "asyncio"] if native_http.available() else ["asyncio"]


@pytest.fixture(scope="module", params=FRONTS)
def server(request, tmp_path_factory, toy_builds):
    base = make_base(tmp_path_factory.mktemp("aio"), "toy", toy_builds, [2])
    srv = start_server(["--model_name=toy", f"--model_base_path={base}",
                        "--rest_api_idle_timeout_seconds=1", "--rest_api_max_body_bytes=4096",
                        f"--rest_api_front={request.param}"])
    assert srv.rest_front == request.param
    yield srv
    srv.stop()


def _connect(server):
    sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
    return sock, sock.makefile("rb")


def _predict_body(row) -> bytes:
    return json.dumps({"signature_name": "single", "instances": [row]}).encode()


def test_the_default_front_end_falls_back_to_asyncio_with_a_warning(tmp_path, toy_builds,
                                                                    monkeypatch, caplog):
    """--rest_api_front=native (the default) where serving.server._http_front is not built."""
    monkeypatch.setattr(native_http, "_http_front", None)
    base = make_base(tmp_path, "toy", toy_builds, [2])
    with caplog.at_level("WARNING", logger="serving.server"):
        srv = start_server(["--model_name=toy", f"--model_base_path={base}"])
    try:
        assert srv.rest_front == "asyncio"
        assert "_http_front is not built; the asyncio front end serves REST" in caplog.text
        sock, f = _connect(srv)
        sock.sendall(http_request("POST", PREDICT, _predict_body([1, 2, 3])))
        status, _, body = read_http_response(f)
        assert (status, json.loads(body)) == (200, {"predictions": [[2.0, 4.0, 6.0]]})
        sock.close()
    finally:
        srv.stop()


# -- HTTP/1.1 --------------------------------------------------------------------------------------
def test_pipelined_requests_are_answered_in_order(server):
    sock, f = _connect(server)
    sock.sendall(http_request("POST", PREDICT, _predict_body([1, 2, 3]))
                 + http_request("GET", "/v1/models/toy")
                 + http_request("POST", PREDICT, _predict_body([0.5, 0, -1])))
    first, second, third = (read_http_response(f) for _ in range(3))
    assert first[0] == 200 and json.loads(first[2]) == {"predictions": [[2.0, 4.0, 6.0]]}
    assert second[0] == 200
    assert json.loads(second[2])["model_version_status"][0]["state"] == "AVAILABLE"
    assert third[0] == 200 and json.loads(third[2]) == {"predictions": [[1.0, 0.0, -2.0]]}
    sock.close()


def test_http10_closes_unless_keep_alive_and_connection_close_is_honoured(server):
    sock, f = _connect(server)
    sock.sendall(http_request("POST", PREDICT, _predict_body([1, 1, 1]), version="HTTP/1.0"))
    status, headers, body = read_http_response(f)
    assert status == 200 and headers["connection"] == "close"
    assert f.read() == b""  # closed by the server
    sock.close()
    sock, f = _connect(server)
    for _ in range(2):  # HTTP/1.0 keep-alive: the connection stays usable
        sock.sendall(http_request("POST", PREDICT, _predict_body([1, 1, 1]),
                              headers="Connection: keep-alive\r\n", version="HTTP/1.0"))
        assert json.loads(read_http_response(f)[2]) == {"predictions": [[2.0, 2.0, 2.0]]}
    sock.sendall(http_request("GET", "/v1/models/toy", headers="Connection: close\r\n"))
    assert read_http_response(f)[0] == 200
    assert f.read() == b""
    sock.close()


def test_expect_100_continue(server):
    sock, f = _connect(server)
    body = _predict_body([3, 2, 1])
    sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode())
    assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
    sock.sendall(body)
    status, _, payload = read_http_response(f)
    assert status == 200 and json.loads(payload) == {"predictions": [[6.0, 4.0, 2.0]]}
    sock.close()


@pytest.mark.parametrize("raw, status, fragment", [
    (b"GARBAGE\r\n\r\n", 400, "Bad request line"),
    (b"GET /v1/models/toy HTTP/2.0\r\n\r\n", 505, "HTTP/2.0"),
    (b"GET /v1/models/toy HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101))
     + b"\r\n", 431, "header fields"),
    (b"GET /v1/models/toy HTTP/1.1\r\nno colon here\r\n\r\n", 400, "Malformed header"),
    (b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400,
     "Invalid Content-Length"),
    (b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413, "4096"),
    (b"POST /v1/models/toy:predict HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "gzip"),
    (b"POST /v1/models/toy:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "chunked"),
])
def test_malformed_http_gets_an_error_and_close(server, raw, status, fragment):
    sock, f = _connect(server)
    sock.sendall(raw)
    got, headers, body = read_http_response(f)
    assert got == status and fragment in json.loads(body)["error"]
    assert headers["connection"] == "close" and f.read() == b""
    sock.close()


def test_head_and_other_methods(server):
    sock, f = _connect(server)
    sock.sendall(http_request("HEAD", "/v1/models/toy") + http_request("GET", "/v1/models/toy"))
    status_line = f.readline()
    head = {}
    while (line := f.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        head[name.lower()] = value.strip()
    assert status_line.startswith(b"HTTP/1.1 400") and int(head["content-length"]) > 0
    status, _, body = read_http_response(f)  # no HEAD body in between: the next answer parses
    assert status == 200 and b"AVAILABLE" in body
    sock.sendall(http_request("DELETE", PREDICT))
    status, _, body = read_http_response(f)
    assert status == 400 and json.loads(body) == {"error": f"Malformed request: DELETE {PREDICT}"}
    sock.close()


def test_query_string_is_ignored_and_the_executor_path_answers_the_same(server, monkeypatch):
    from serving.server import rest

    def ask():
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
        conn.request("POST", PREDICT + "?x=1", body=_predict_body([1, 2.5, 3]))
        resp = conn.getresponse()
        answer = resp.status, json.loads(resp.read())
        conn.close()
        return answer

    assert ask() == (200, {"predictions": [[2.0, 5.0, 6.0]]})
    monkeypatch.setattr(rest, "FAST_BODY_BYTES", 0)  # every body → handle() in the executor
    assert ask() == (200, {"predictions": [[2.0, 5.0, 6.0]]})


# -- concurrency on the event loop ----------------------------------------------------------------
def test_concurrent_rest_and_grpc_clients_get_their_own_answers(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    failures: list = []

    def rest_client(i):
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        for j in range(10):
            conn.request("POST", PREDICT, body=_predict_body([i, j, -i]))
            resp = conn.getresponse()
            got = json.loads(resp.read())
            if got != {"predictions": [[2.0 * i, 2.0 * j, -2.0 * i]]}:
                failures.append(("rest", i, j, got))
        conn.close()

    def grpc_client(i):
        for j in range(10):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "toy"
            req.model_spec.signature_name = "single"
            req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[i, j, 1]], np.float32)))
            got = list(stub.Predict(req, timeout=30).outputs["y"].float_val)
            if got != [2.0 * i, 2.0 * j, 2.0]:
                failures.append(("grpc", i, j, got))

    threads = [threading.Thread(target=fn, args=(i,)) for i in range(8)
               for fn in (rest_client, grpc_client)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    channel.close()
    assert failures == []


def test_idle_timeout_closes_idle_connections_only(server):
    sock, f = _connect(server)
    sock.sendall(http_request("GET", "/v1/models/toy"))
    assert read_http_response(f)[0] == 200
    start = time.monotonic()
    assert f.read() == b""  # idle after the answer → closed after ~1 s
    assert 0.5 < time.monotonic() - start < 9
    sock.close()


@pytest.fixture(scope="module", params=FRONTS)
def slow_batching_server(request, tmp_path_factory, toy_builds):
    """Batches wait up to 1.5 s for more requests: longer than the 1 s idle timeout."""
    srv = start_batching_server(
        tmp_path_factory.mktemp("aio_batching"), toy_builds,
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 1500000 }\n"
        "max_enqueued_batches { value: 4 }\nnum_batch_threads { value: 1 }\n",
        "--rest_api_idle_timeout_seconds=1", "--rest_api_timeout_in_ms=5000",
        f"--rest_api_front={request.param}")
    yield srv
    srv.stop()


def test_request_waiting_for_its_batch_outlives_the_idle_timeout(slow_batching_server):
    conn = http.client.HTTPConnection("127.0.0.1", slow_batching_server.rest_port, timeout=30)
    start = time.monotonic()
    conn.request("POST", PREDICT, body=_predict_body([1, 2, 3]))
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"predictions": [[1.0, 2.0, 3.0]]}
    assert time.monotonic() - start >= 1.4  # waited for the batch timeout, not cut off
    conn.close()


def test_rest_deadline_while_waiting_for_a_batch(tmp_path, toy_builds):
    srv = start_batching_server(
        tmp_path, toy_builds,
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 3000000 }\n",
        "--rest_api_timeout_in_ms=200")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=30)
        start = time.monotonic()
        conn.request("POST", PREDICT, body=_predict_body([1, 2, 3]))
        resp = conn.getresponse()
        assert resp.status == 504
        assert "Deadline exceeded" in json.loads(resp.read())["error"]
        assert time.monotonic() - start < 2.5
        assert srv.metrics.request_count.value("toy", "DEADLINE_EXCEEDED") == 1
        conn.close()
    finally:
        srv.stop()


def test_merged_batch_answers_rest_and_grpc_callers(slow_batching_server):
    """Four requests (two per protocol) fill one batch of 4 and each gets its own rows."""
    srv = slow_batching_server
    before = srv.metrics.batch_size.count("toy")
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    results: dict = {}

    def rest(i):
        conn = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=30)
        conn.request("POST", PREDICT, body=_predict_body([i, i, i]))
        results[i] = json.loads(conn.getresponse().read())["predictions"][0]
        conn.close()

    def grpc_call(i):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "toy"
        req.model_spec.signature_name = "single"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.full((1, 3), i, np.float32)))
        results[i] = list(stub.Predict(req, timeout=30).outputs["y"].float_val)

    start = time.monotonic()
    threads = [threading.Thread(target=fn, args=(i,))
               for fn, i in ((rest, 1), (rest, 2), (grpc_call, 3), (grpc_call, 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    channel.close()
    assert results == {i: [float(i)] * 3 for i in (1, 2, 3, 4)}
    assert srv.metrics.batch_size.count("toy") - before == 1  # one model run for all four
    assert time.monotonic() - start < 1.4  # a full batch does not wait for the timeout


# -- ServingCore.predict_async: where the model runs with batching off -----------------------------
class TimedSignature(RecordingSignature):
    """Doubles ``x``; records the thread of every run and reports ``seconds`` as its run time
    (``last_run``, as ``Signature.run`` does); a run of ``block_rows`` rows waits for
    ``release``."""

    def __init__(self, seconds: float, block_rows: int = 0):
        super().__init__()
        self.seconds = seconds
        self.block_rows = block_rows
        self.release = threading.Event()
        self.threads: list[str] = []
        self.last_run = None

    def signature(self, name):  # the servable's lookup
        return self

    def check_inputs(self, inputs):
        pass

    def ran_quickly(self, values, limit_s):
        from serving.server.servable import Signature

        return Signature.ran_quickly(self, values, limit_s)

    def check_output_filter(self, output_filter):
        return ["y"]

    def run(self, inputs):
        self.threads.append(threading.current_thread().name)
        if len(inputs["x"]) == self.block_rows:
            assert self.release.wait(10)
        self.last_run = (inputs["x"].size, self.seconds)
        return super().run(inputs)


def _predict_on_a_loop(sig, rows_per_call: list[int]) -> list[str]:
    """Sequential ``predict_async`` calls (batching off) on a fresh event loop in this thread;
    the threads the model ran on, ``"loop"`` for the loop's own."""
    from serving.server.core import ServingCore

    core = ServingCore(manager=None, metrics=None)

    async def scenario():
        loop_thread = threading.current_thread().name
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="executor") as pool:
            for rows in rows_per_call:
                x = np.full((rows, 2), rows, np.float32)
                _, out = await core.predict_async(sig, "serving_default", {"x": x}, (), None,
                                                  pool)
                np.testing.assert_array_equal(out["y"], 2 * x)
        return ["loop" if t == loop_thread else t.split("_")[0] for t in sig.threads]

    return asyncio.run(scenario())


def test_a_quick_model_alone_on_the_loop_runs_there():
    """Unknown run time → executor; then quick runs of no more values than the latest run → the
    loop; a larger request → executor (its time is unknown). Each run becomes the reference."""
    sig = TimedSignature(seconds=0.0005)
    assert _predict_on_a_loop(sig, [1, 1, 1, 3, 3, 2, 3]) == [
        "executor", "loop", "loop", "executor", "loop", "loop", "executor"]


def test_a_slow_model_always_runs_in_the_executor():
    from serving.server.core import INLINE_RUN_SECONDS

    sig = TimedSignature(seconds=INLINE_RUN_SECONDS * 1.5)
    assert _predict_on_a_loop(sig, [1, 1, 1]) == ["executor"] * 3


def test_a_quick_model_runs_in_the_executor_while_another_predict_is_in_flight():
    from serving.server.core import ServingCore

    sig = TimedSignature(seconds=0.0005, block_rows=4)
    core = ServingCore(manager=None, metrics=None)

    async def scenario():
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="executor") as pool:
            def predict(rows):
                return core.predict_async(sig, "serving_default",
                                          {"x": np.ones((rows, 2), np.float32)}, (), None, pool)

            await predict(1)  # → executor; now known to be quick
            await predict(1)  # alone → the loop
            blocked = asyncio.ensure_future(predict(4))  # more values → executor, waits there
            while len(sig.threads) < 3:
                await asyncio.sleep(0.001)
            await predict(1)  # quick, but another predict is in flight → executor
            loop.call_soon(sig.release.set)
            await blocked
            await predict(1)  # alone again → the loop
        return sig.threads

    threads = asyncio.run(scenario())
    assert [t.startswith("executor") for t in threads] == [True, False, True, True, False]


# -- BatchScheduler.run_async --------------------------------------------------------------------
def test_run_async_results_deadline_and_stop():
    sched = BatchScheduler(BatchingConfig(max_batch_size=4, batch_timeout_micros=300_000,
                                          num_batch_threads=1))
    sig, servable = RecordingSignature(), FakeServable()

    async def scenario():
        x = [np.full((1, 2), i, np.float32) for i in range(4)]
        outs = await asyncio.gather(*(sched.run_async(servable, sig, {"x": v}) for v in x))
        assert [o["y"].tolist() for o in outs] == [[[2.0 * i] * 2] for i in range(4)]
        assert sig.shapes == [(4, 2)]  # one batch, resolved together
        with pytest.raises(ServingError) as info:
            await sched.run_async(servable, sig, {"x": x[0]}, timeout_s=0.05)
        assert info.value.code == Code.DEADLINE_EXCEEDED
        await asyncio.sleep(0.4)
        assert sig.shapes == [(4, 2)]  # the expired task was skipped, not run

    try:
        asyncio.run(scenario())
    finally:
        sched.stop()


def test_stop_answers_queued_async_and_blocking_callers_unavailable():
    sched = BatchScheduler(BatchingConfig(max_batch_size=8, batch_timeout_micros=30_000_000,
                                          num_batch_threads=1))
    sig, servable = RecordingSignature(), FakeServable()
    blocking: list = []

    def blocking_caller():
        try:
            sched.run(servable, sig, {"x": np.ones((1, 2), np.float32)}, timeout_s=20)
        except ServingError as exc:
            blocking.append(exc.code)

    async def scenario():
        waiting = asyncio.ensure_future(
            sched.run_async(servable, sig, {"x": np.ones((1, 2), np.float32)}))
        t = threading.Thread(target=blocking_caller)
        t.start()
        while sum(len(q.tasks) for q in sched._queues.values()) < 2:
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, sched.stop)
        with pytest.raises(ServingError) as info:
            await asyncio.wait_for(waiting, 10)
        assert info.value.code == Code.UNAVAILABLE
        t.join(timeout=10)

    asyncio.run(scenario())
    assert blocking == [Code.UNAVAILABLE] and sig.shapes == []


# -- JSON fast paths -------------------------------------------------------------------------------
F32 = TensorSig("x", 1, (None, None))  # DT_FLOAT
I64 = TensorSig("x", 9, (None, None))  # DT_INT64


def _general(body: bytes, sig: TensorSig):
    doc = json_codec.parse_body(body)
    return json_codec.predict_inputs(doc, {"x": sig})[0]["x"]


@pytest.mark.parametrize("body", [
    b'{"instances": [[1, 2.5], [3e2, -4]]}',
    b'{"signature_name": "s", "instances": [[0.1, 2]]}',
    b' {"instances" : [ [1.0 , 2.0] ,\n [ 3.0, 4.0 ] ] , "signature_name":"t" } ',
    b'{"instances": [[255.0, 0.0], [17.0, 3.0]]}',
    b'{"instances": [[0.30000000000000004, 1e-7, 3.4028235e38, 1e-400]]}',
    b'{"instances": [[1e400, -1e400]]}',  # beyond double: inf, as the general path reads it
    b'{"instances": [[-0.12345678901234567, 1.2345678901234567e-05]]}',  # >= 20 characters
])
def test_fast_instances_equal_the_general_path(body):
    fast = json_codec.fast_instances(body)
    assert fast is not None
    assert fast[0] == json.loads(body).get("signature_name", "")
    got = json_codec.fast_predict_inputs(fast, {"x": F32})["x"]
    want = _general(body, F32)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_fast_numbers_equal_json_for_any_double_text():
    rng = np.random.default_rng(2)
    doubles = rng.standard_normal(300) * 10.0 ** rng.integers(-300, 300, 300)
    floats = (rng.standard_normal(300) * 10.0 ** rng.integers(-40, 38, 300)).astype(np.float32)
    texts = ([repr(float(v)) for v in doubles] + [f"{v:.9g}" for v in floats]
             + [str(int(v)) for v in rng.integers(-2**62, 2**62, 50)]
             + ["18446744073709551615", "18446744073709551616", "-9223372036854775809"])
    for text in texts:
        body = b'{"instances": [[%s, 1]]}' % text.encode()
        want = json.loads(body)["instances"][0]
        values, shape = json_codec._python_dense_numbers(b"[[%s, 1]]" % text.encode())
        assert shape == (1, 2) and values == want, text
        assert [type(v) for v in values] == [type(v) for v in want], text
        fast = json_codec.fast_instances(body)  # the C reader where built: the same array
        assert fast is not None and fast[2] == (1, 2), text
        got, ref = np.asarray(fast[1]), np.asarray(want)
        assert got.dtype == ref.dtype and got.tolist() == ref.tolist(), text


def test_float_text_is_not_accepted_as_integers():
    body = b'{"instances": [[1.0, 2.0]]}'
    fast = json_codec.fast_instances(body)
    assert np.asarray(fast[1]).dtype == np.float64 and list(fast[1]) == [1.0, 2.0]
    assert json_codec.fast_predict_inputs(fast, {"x": I64}) is None  # → general path, which:
    with pytest.raises(ServingError, match="is not of expected type: int64"):
        _general(body, I64)
    ints = json_codec.fast_instances(b'{"instances": [[1, -2]]}')
    assert json_codec.fast_predict_inputs(ints, {"x": I64})["x"].tolist() == [[1, -2]]


def test_integer_beyond_64_bits_is_left_to_the_general_path():
    body = b'{"instances": [[18446744073709551616, 1.5]]}'  # orjson alone would read a float
    fast = json_codec.fast_instances(body)
    assert fast[1][0] == 2**64 and type(fast[1][0]) is int
    assert json_codec.fast_predict_inputs(fast, {"x": F32}) is None
    with pytest.raises(ServingError, match="to float without loss of precision"):
        _general(body, F32)


@pytest.mark.parametrize("value,holds", [
    ([[[1.0], [True]], [[2.0], [3.0]]], True), ([[[1.0], [2.0]], [[2.0], [3.0]]], False),
    ([1, 2, False], True), ([], False), (True, True), (1.5, False), ([[1, 2], [3, 1]], False),
])
def test_holds_bool_looks_at_every_leaf(value, holds):
    assert json_codec._holds_bool(value) is holds
    if holds:  # and a float input refuses the array instead of reading true as 1.0
        assert json_codec._fast_array(value, F32) is None
        with pytest.raises(ServingError, match="is not of expected type: float"):
            json_codec.value_to_array(value, F32)


@pytest.mark.parametrize("body", [
    b'{"instances": [[1]2]}', b'{"instances": [1[,2],[3,4]]}', b'{"instances": [[1,2],[3]]}',
    b'{"instances": []}', b'{"instances": [[1],[]]}', b'{"instances": [1,,2]}',
    b'{"instances": [01]}', b'{"instances": [+1]}', b'{"instances": [.5]}',
    b'{"instances": [1 2]}', b'{"instances": [1], "instances": [2]}',
    b'{"signature_name": "a", "instances": [1], "signature_name": "b"}',
    b'{"instances": [true]}', b'{"instances": ["1"]}', b'{"inputs": [1]}',
    b'{"instances": [1], "x": 2}', b'{"signature_name": "a\nb", "instances": [1]}',
    b'\xef\xbb\xbf{"instances": [1]}', b'{"instances": [[1],[2]],}', b'{"instances": [-0.0]}',
])
def test_fast_instances_leaves_anything_else_to_the_general_path(body):
    fast = json_codec.fast_instances(body)
    if fast is not None:  # only "-0.0": valid, and its sign is kept
        assert body == b'{"instances": [-0.0]}'
        assert np.signbit(json_codec.fast_predict_inputs(fast, {"x": F32})["x"][0])


def test_fast_instances_random_dense_shapes():
    rng = np.random.default_rng(0)
    for _ in range(100):
        shape = tuple(int(d) for d in rng.integers(1, 4, rng.integers(1, 5)))
        a = rng.integers(-300, 300, shape) / 4
        body = json.dumps({"instances": a.tolist()}, indent=int(rng.integers(0, 2)) or None)
        fast = json_codec.fast_instances(body.encode())
        assert fast is not None and fast[2] == shape
        assert np.asarray(fast[1]).tolist() == a.ravel().tolist()


def test_small_float_output_formatting_equals_the_vectorized_path():
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        vals = np.concatenate([rng.standard_normal(40) * 10.0 ** rng.integers(-40, 38, 40),
                               [0.1, 1e-7, 3.4e38, 1.0, -0.0, 1e-45, 123456789.0, np.nan,
                                np.inf, -np.inf]]).astype(dtype)
        small = json_codec._python_float_strings(vals).tolist()  # ≤ 64 values: per value
        big = json_codec._python_float_strings(np.tile(vals, 2)).tolist()[:len(vals)]
        assert small == big
        assert json_codec._float_strings(vals).tolist() == small  # the C writer where built
    assert json_codec._float_strings(np.array([1.0, 0.1, np.nan], np.float32)).tolist() == [
        "1.0", "0.1", "NaN"]


def test_pipelined_input_beyond_one_request_pauses_reading():
    from serving.server.aio_http import MAX_HEAD, AsyncHttpServer, _Connection

    class Transport:
        paused = False
        written = b""

        def get_extra_info(self, name):
            return None

        def pause_reading(self):
            self.paused = True

        def resume_reading(self):
            self.paused = False

        def write(self, data):
            self.written += data

        def close(self):
            pass

    gate: list = []

    async def app(method, target, body):
        if not gate[0].done():
            await asyncio.wait_for(asyncio.shield(gate[0]), 10)
        return 200, "text/plain", "ok"

    async def scenario():
        loop = asyncio.get_running_loop()
        gate.append(loop.create_future())
        server = AsyncHttpServer(app, loop, max_body_bytes=100, idle_timeout_s=0)
        conn = _Connection(server)
        transport = Transport()
        conn.connection_made(transport)
        request = b"GET / HTTP/1.1\r\n\r\n"
        conn.data_received(request)  # handled: waits at the gate
        await asyncio.sleep(0)
        assert conn.busy and not transport.paused
        backlog = request * ((100 + MAX_HEAD) // len(request) + 1)
        conn.data_received(backlog)
        assert transport.paused  # more than one maximal request is waiting: stop reading
        gate[0].set_result(None)
        deadline = time.monotonic() + 20
        while (conn.busy or conn.buf) and time.monotonic() < deadline:
            await asyncio.sleep(0)
        assert not transport.paused and transport.written.count(b"HTTP/1.1 200 OK") == (
            1 + backlog.count(b"GET "))

    asyncio.run(scenario())
