"""The native gRPC front end (``serving.server._grpc_front``, ``--grpc_front=native``): the same
answers as grpcio's server byte for byte, bursts of Predict calls merged into batch-scheduler
tasks with each call's own answer, the fallback where it is not built, and what it refuses.

The conformance suite (tests/serving/test_server_grpc.py) runs on both front ends."""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from serving.server import native_grpc
from serving.server.errors import Code, ServingError
from serving.server.grpc_service import PredictionServicer
from tests.serving.conftest import make_base, start_batching_server, start_main_server, start_server

native_only = pytest.mark.skipif(not native_grpc.available(),
                                 reason="serving.server._grpc_front is not built")


def _predict_request(x, *, name="toy", signature="", version=None, alias="x") -> bytes:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    req.inputs[alias].CopyFrom(tf.make_tensor_proto(np.asarray(x, np.float32)))
    return req.SerializeToString()


def _raw_call(port: int, method: str, message: bytes):
    """(code, details, response bytes or None) of one unary call with raw bytes."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            return grpc.StatusCode.OK, "", channel.unary_unary(method)(message, timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), exc.details(), None


@native_only
def test_native_and_grpcio_give_the_same_answers_byte_for_byte(tmp_path_factory, toy_builds,
                                                               clf_base):
    servers = {front: start_main_server(tmp_path_factory, toy_builds, clf_base,
                                        f"--grpc_front={front}")
               for front in ("native", "grpcio")}
    try:
        assert {s.grpc_front for s in servers.values()} == {"native", "grpcio"}
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name = "clf"
        classify.input.example_list.examples.add().features.feature[
            "features"].float_list.value.extend([1, 2, 3, 4])
        metadata = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata.model_spec.name = "toy"
        metadata.metadata_field.append("signature_def")
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "toy"
        predict = "/tensorflow.serving.PredictionService/Predict"
        calls = [
            (predict, _predict_request([[1, 2, 3]], version=1)),
            (predict, _predict_request([[1, 2, 3], [4, 5, 6]], signature="single")),
            (predict, _predict_request([[1, 2, 3]], name="nope")),
            (predict, _predict_request([[1, 2]])),
            (predict, b"\xff\xff"),
            ("/tensorflow.serving.PredictionService/Classify", classify.SerializeToString()),
            ("/tensorflow.serving.PredictionService/GetModelMetadata",
             metadata.SerializeToString()),
            ("/tensorflow.serving.ModelService/GetModelStatus", status.SerializeToString()),
            ("/tensorflow.serving.PredictionService/Unknown", b""),
        ]
        for method, message in calls:
            native, grpcio = (_raw_call(servers[f].grpc_port, method, message)
                              for f in ("native", "grpcio"))
            assert native == grpcio, (method, message)
        assert _raw_call(servers["native"].grpc_port, *calls[0])[0] == grpc.StatusCode.OK
    finally:
        for server in servers.values():
            server.stop()


@native_only
def test_a_burst_of_predicts_merges_into_tasks_of_max_batch_size(tmp_path, toy_builds):
    srv = start_batching_server(
        tmp_path, toy_builds,
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 0 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n",
        "--grpc_front=native")
    try:
        servicer = PredictionServicer(srv.core, None, gather_on_loop=True)
        messages = [_predict_request([[k, 1, 0]] * (k % 2 + 1), signature="single")
                    for k in range(6)]  # 1+2+1+2+1+2 rows: tasks of 3, 3 and 3 rows
        messages += [_predict_request([[1, 2, 3]], alias="nope"),  # the general path's error
                     b"\xff\xff",  # does not parse: the general path
                     _predict_request([[7, 7, 7]], name="nope"),  # unknown model: likewise
                     _predict_request([[5, 5, 5]])]  # serving_default: a group of its own
        tasks_before = srv.batcher.tasks_run
        answers = srv._loop.run(servicer.predict_many(messages, [None] * len(messages)))
        assert srv.batcher.tasks_run - tasks_before == 4  # three merged tasks and one single
        for k in range(6):  # (version 1's "single": y = x)
            resp = predict_pb2.PredictResponse.FromString(answers[k])
            assert resp.model_spec.signature_name == "single"
            assert np.array_equal(tf.make_ndarray(resp.outputs["y"]),
                                  np.array([[k, 1, 0]] * (k % 2 + 1), np.float32))
        assert answers[6:9] == [None, None, None]
        last = predict_pb2.PredictResponse.FromString(answers[9])
        assert list(last.outputs["total"].float_val) == [15.0]
        assert srv.metrics.batched_requests.value("toy") == 7  # requests, not tasks
        assert srv.metrics.request_count.value("toy", "OK") == 7
        for k in (*range(6), 9):  # byte for byte what each request gets alone
            alone = srv._loop.run(servicer.Predict(predict_pb2.PredictRequest.FromString(
                messages[k]), native_grpc.CallContext(None)))
            assert answers[k] == alone.SerializeToString(deterministic=True)  # as served
    finally:
        srv.stop()


@native_only
def test_a_merged_task_the_queue_refuses_fails_each_request_alike(tmp_path, toy_builds):
    srv = start_batching_server(
        tmp_path, toy_builds, "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 0 }\n",
        "--grpc_front=native")
    try:
        servicer = PredictionServicer(srv.core, None, gather_on_loop=True)
        srv.batcher.stop()  # every task now meets UNAVAILABLE, as each request would alone
        messages = [_predict_request([[k, 0, 0]]) for k in range(3)]
        answers = srv._loop.run(servicer.predict_many(messages, [None] * 3))
        assert all(isinstance(a, ServingError) and a.code == Code.UNAVAILABLE for a in answers)
    finally:
        srv.stop()


@native_only
def test_concurrent_predicts_through_the_front_end_are_batched(tmp_path, toy_builds):
    srv = start_batching_server(
        tmp_path, toy_builds,
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 100000 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n",
        "--grpc_front=native")
    try:
        async def burst():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as channel:
                call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
                return await asyncio.gather(*(
                    call(_predict_request([[k, 0, 1]], signature="single"), timeout=30)
                    for k in range(12)))

        batches_before = srv.batcher.batches_run
        for k, raw in enumerate(asyncio.run(burst())):
            out = tf.make_ndarray(predict_pb2.PredictResponse.FromString(raw).outputs["y"])
            assert np.array_equal(out, [[k, 0, 1]])
        assert srv.batcher.batches_run - batches_before < 12  # merged, by front end or batcher
        assert srv.metrics.request_count.value("toy", "OK") == 12
    finally:
        srv.stop()


def test_the_default_front_end_falls_back_to_grpcio_with_a_warning(tmp_path, toy_builds,
                                                                   monkeypatch, caplog):
    """--grpc_front=native (the default) where serving.server._grpc_front is not built."""
    monkeypatch.setattr(native_grpc, "_grpc_front", None)
    base = make_base(tmp_path, "toy", toy_builds, [1])
    with caplog.at_level("WARNING", logger="serving.server"):
        srv = start_server(["--model_name=toy", f"--model_base_path={base}"], rest=False)
    try:
        assert srv.grpc_front == "grpcio"
        assert "_grpc_front is not built; grpcio serves gRPC" in caplog.text
        code, _, raw = _raw_call(srv.grpc_port, "/tensorflow.serving.PredictionService/Predict",
                                 _predict_request([[1, 2, 3]]))
        assert code == grpc.StatusCode.OK
        assert list(predict_pb2.PredictResponse.FromString(raw).outputs["total"].float_val) == [
            6.0]
    finally:
        srv.stop()


@native_only
def test_a_connection_that_is_not_http2_is_closed_and_others_go_on(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1])
    srv = start_server(["--model_name=toy", f"--model_base_path={base}"], rest=False)
    try:
        with socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
            received = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                received += chunk
        assert received[3] == 4  # what it sent first: its SETTINGS frame (HTTP/2 type 4)
        code, _, _ = _raw_call(srv.grpc_port, "/tensorflow.serving.PredictionService/Predict",
                               _predict_request([[1, 2, 3]]))
        assert code == grpc.StatusCode.OK
    finally:
        srv.stop()


def test_decompress_reads_gzip_and_deflate_and_refuses_the_rest():
    text = b"x" * 1000
    assert native_grpc.decompress(gzip.compress(text), "gzip", 1000) == text
    assert native_grpc.decompress(zlib.compress(text), "deflate", 1000) == text
    with pytest.raises(native_grpc._Abort) as info:
        native_grpc.decompress(zlib.compress(text), "snappy", 1000)
    assert (info.value.code, info.value.details) == (
        grpc.StatusCode.UNIMPLEMENTED, "Compression algorithm 'snappy' is not supported")
    with pytest.raises(native_grpc._Abort) as info:
        native_grpc.decompress(gzip.compress(text), "gzip", 999)  # a bomb stops at the limit
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(native_grpc._Abort) as info:
        native_grpc.decompress(b"not gzip", "gzip", 1000)
    assert info.value.code == grpc.StatusCode.INTERNAL


def test_call_context_counts_down_the_client_deadline():
    assert native_grpc.CallContext(None).time_remaining() is None
    remaining = native_grpc.CallContext(5.0).time_remaining()
    assert 4.9 < remaining <= 5.0
    assert native_grpc.CallContext(0.0).time_remaining() == 0.0
