"""Server-side batching: merging, padding to allowed sizes, queue-full, deadlines, errors."""

from __future__ import annotations

import json
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.server.batching import BatchScheduler
from serving.server.config import BatchingConfig, ConfigError, read_batching_file
from serving.server.errors import Code, ServingError
from tests.serving.conftest import http_request, read_http_response, start_batching_server


class FakeServable:
    name = "fake"


class RecordingSignature:
    """Doubles its input; records the batch shapes it was run with."""

    name = "serving_default"

    def __init__(self, fail=False):
        self.shapes = []
        self.fail = fail

    def run(self, inputs):
        self.shapes.append(inputs["x"].shape)
        if self.fail:
            raise ValueError("boom")
        return {"y": inputs["x"] * 2}


def _concurrently(fns):
    results = [None] * len(fns)

    def call(i):
        try:
            results[i] = fns[i]()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_merges_and_pads_to_allowed_batch_size():
    cfg = BatchingConfig(max_batch_size=8, batch_timeout_micros=300_000, num_batch_threads=1,
                         allowed_batch_sizes=(2, 4, 8))
    sched = BatchScheduler(cfg)
    sig, servable = RecordingSignature(), FakeServable()
    try:
        results = _concurrently([
            (lambda i=i: sched.run(servable, sig, {"x": np.full((1, 2), i, np.float32)}))
            for i in range(3)])
    finally:
        sched.stop()
    assert [r["y"].tolist() for r in results] == [[[0, 0]], [[2, 2]], [[4, 4]]]
    assert sig.shapes == [(4, 2)]  # 3 rows merged, padded to the next allowed size
    assert (sched.batches_run, sched.tasks_run) == (1, 3)


def test_incompatible_shapes_are_not_merged():
    sched = BatchScheduler(BatchingConfig(max_batch_size=8, batch_timeout_micros=200_000,
                                          num_batch_threads=1))
    sig = RecordingSignature()
    try:
        results = _concurrently([
            lambda: sched.run(FakeServable, sig, {"x": np.ones((1, 2), np.float32)}),
            lambda: sched.run(FakeServable, sig, {"x": np.ones((2, 3), np.float32)})])
    finally:
        sched.stop()
    assert sorted(sig.shapes) == [(1, 2), (2, 3)]
    assert results[0]["y"].shape == (1, 2) and results[1]["y"].shape == (2, 3)


def test_queue_full_is_unavailable_and_oversized_task_is_invalid():
    sched = BatchScheduler(BatchingConfig(max_batch_size=4, batch_timeout_micros=1_000_000,
                                          max_enqueued_batches=1, num_batch_threads=1))
    sig = RecordingSignature()
    try:
        first = threading.Thread(target=sched.run,
                                 args=(FakeServable, sig, {"x": np.ones((3, 1), np.float32)}))
        first.start()
        deadline = time.monotonic() + 10
        while not any(q.tasks for q in sched._queues.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ServingError) as info:
            sched.run(FakeServable, sig, {"x": np.ones((2, 1), np.float32)})
        assert info.value.code == Code.UNAVAILABLE
        assert "queue to which this task was submitted is full" in info.value.message
        with pytest.raises(ServingError) as info:
            sched.run(FakeServable, sig, {"x": np.ones((5, 1), np.float32)})
        assert info.value.code == Code.INVALID_ARGUMENT
        assert "Task size 5 is larger than maximum input batch size 4" in info.value.message
        first.join(timeout=10)
    finally:
        sched.stop()


def test_deadline_and_errors_reach_every_caller():
    sched = BatchScheduler(BatchingConfig(max_batch_size=4, batch_timeout_micros=2_000_000,
                                          num_batch_threads=1))
    try:
        with pytest.raises(ServingError) as info:
            sched.run(FakeServable, RecordingSignature(), {"x": np.ones((1, 1), np.float32)},
                      timeout_s=0.05)
        assert info.value.code == Code.DEADLINE_EXCEEDED
    finally:
        sched.stop()
    sched = BatchScheduler(BatchingConfig(max_batch_size=2, batch_timeout_micros=500_000,
                                          num_batch_threads=1))
    failing = RecordingSignature(fail=True)
    try:
        results = _concurrently([
            lambda: sched.run(FakeServable, failing, {"x": np.ones((1, 1), np.float32)})
            for _ in range(2)])
    finally:
        sched.stop()
    assert all(isinstance(r, ServingError) and r.code == Code.INVALID_ARGUMENT
               and "boom" in r.message for r in results)


def test_batching_parameters_file(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\n"
                    "max_enqueued_batches { value: 7 }\nnum_batch_threads { value: 2 }\n"
                    "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\n")
    assert read_batching_file(str(path)) == BatchingConfig(32, 1000, 7, 2, (8, 32))
    path.write_text("max_batch_size { value: 16 }\nallowed_batch_sizes: 8\n")
    with pytest.raises(ConfigError, match="last entry must equal max_batch_size"):
        read_batching_file(str(path))
    path.write_text("max_batch_size: 16\n")
    with pytest.raises(ConfigError, match="not a valid text proto"):
        read_batching_file(str(path))


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory, toy_builds):
    server = start_batching_server(
        tmp_path_factory.mktemp("batching"), toy_builds,
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000000 }\n"
        "max_enqueued_batches { value: 1 }\nnum_batch_threads { value: 1 }\n")
    yield server
    server.stop()


def _req(rows: np.ndarray):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.model_spec.signature_name = "single"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(rows))
    return req


def test_server_merges_concurrent_grpc_requests(batching_server):
    metrics = batching_server.metrics
    channel = grpc.insecure_channel(f"127.0.0.1:{batching_server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    before = (metrics.batch_size.count("toy"), metrics.batched_requests.value("toy"))
    rows = [np.full((1, 3), i, np.float32) for i in range(8)]
    results = _concurrently([lambda r=r: stub.Predict(_req(r), timeout=30) for r in rows])
    channel.close()
    assert [list(r.outputs["y"].float_val) for r in results] == [[float(i)] * 3
                                                                 for i in range(8)]
    batches = metrics.batch_size.count("toy") - before[0]
    requests = metrics.batched_requests.value("toy") - before[1]
    assert requests == 8
    assert batches < 8  # merged: 8 requests ran in fewer model executions
    assert metrics.batch_size.total("toy") >= 8


def _rest_predicts(port: int, rows: list[np.ndarray]) -> list:
    """One raw HTTP/1.1 connection per request; every request is written before any answer is
    read, so the server's event loop finds them waiting together."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in rows]
    try:
        for conn, r in zip(conns, rows, strict=True):
            body = json.dumps({"signature_name": "single", "instances": r.tolist()}).encode()
            conn.sendall(http_request("POST", "/v1/models/toy:predict", body))
        answers = []
        for conn in conns:
            status, _, body = read_http_response(conn.makefile("rb"))
            answers.append((status, json.loads(body)))
        return answers
    finally:
        for conn in conns:
            conn.close()


def test_server_merges_rest_and_grpc_requests_into_one_queue(batching_server):
    """REST requests (gathered on the event loop) and gRPC ones (which wake the batch thread)
    for one signature share its queue and its batches."""
    metrics = batching_server.metrics
    channel = grpc.insecure_channel(f"127.0.0.1:{batching_server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    before = (metrics.batch_size.count("toy"), metrics.batched_requests.value("toy"))
    rest_rows = [np.full((1, 3), i, np.float32) for i in range(4)]
    grpc_rows = [np.full((1, 3), 10 + i, np.float32) for i in range(4)]
    results = _concurrently(
        [lambda: _rest_predicts(batching_server.rest_port, rest_rows)]
        + [lambda r=r: stub.Predict(_req(r), timeout=30) for r in grpc_rows])
    channel.close()
    assert results[0] == [(200, {"predictions": [[float(i)] * 3]}) for i in range(4)]
    assert [list(r.outputs["y"].float_val) for r in results[1:]] == [
        [float(10 + i)] * 3 for i in range(4)]
    assert metrics.batched_requests.value("toy") - before[1] == 8
    assert metrics.batch_size.count("toy") - before[0] < 8


def test_server_queue_full_is_unavailable(batching_server):
    channel = grpc.insecure_channel(f"127.0.0.1:{batching_server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    waiting = stub.Predict.future(_req(np.ones((7, 3), np.float32)), timeout=30)
    sched = batching_server.batcher
    deadline = time.monotonic() + 10
    while not any(q.tasks for q in sched._queues.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_req(np.ones((2, 3), np.float32)), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "full" in info.value.details()
    assert len(waiting.result().outputs["y"].float_val) == 21
    channel.close()
