"""The h2load load generator's wrapper: its parsers on worked examples, its answer check on every
way an answer can be wrong, and real loads against small local gRPC and HTTP/1.1 servers."""

from __future__ import annotations

import concurrent.futures
import shutil

import pytest

from benchmarks import h2load
from benchmarks.h2load import Summary, check, grpc_target, parse_log, parse_summary, rest_target

SUMMARY_TEXT = """\
finished in 2.50s, 4000.00 req/s, 1.20MB/s
requests: 10020 total, 10032 started, 10000 done, 10000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 10000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.93MB (3072000) total, 100.00KB (102400) headers (space savings 90.00%), 1.33MB (1390000) data
"""  # noqa: E501 - h2load's own line lengths


def test_parse_summary_reads_the_request_counts_and_the_data_bytes():
    assert parse_summary(SUMMARY_TEXT) == Summary(
        started=10032, done=10000, succeeded=10000, failed=0, errored=0, timeout=0,
        data_bytes=1390000)


def test_parse_summary_without_a_summary_says_so():
    with pytest.raises(ValueError, match="no h2load summary"):
        parse_summary("connect: Connection refused\n")


def test_parse_log_keeps_the_requests_that_started_in_the_window():
    # Start (µs since the epoch), status, µs to the end of the response. First start 1_000_000:
    # warm-up 0.5 s -> window [1_500_000, 2_500_000) for 1 s.
    log = ("1000000\t200\t900\n"      # warm-up
           "1499999\t200\t1000\n"     # warm-up, by 1 µs
           "1500000\t200\t1100\n"     # first in the window
           "2499999\t404\t1200\n"     # last in the window
           "2500000\t200\t1300\n"     # after the window
           "\n")
    latencies, statuses = parse_log(log, warmup_s=0.5, seconds=1.0)
    assert latencies == [0.0011, 0.0012]
    assert statuses == [200, 200, 200, 404, 200]


def test_parse_log_of_an_empty_log_is_empty():
    assert parse_log("", 0.5, 1.0) == ([], [])


def _summary(**changes) -> Summary:
    counts = dict(started=12, done=10, succeeded=10, failed=0, errored=0, timeout=0,
                  data_bytes=10 * 139)
    counts.update(changes)
    return Summary(**counts)


def test_check_accepts_answers_of_the_expected_length_and_part_of_the_ones_in_flight():
    check(_summary(), [200] * 10, 139, "load")
    check(_summary(data_bytes=10 * 139 + 70), [200] * 10, 139, "load")
    check(_summary(data_bytes=12 * 139), [200] * 10, 139, "load")


@pytest.mark.parametrize("changes, match", [
    ({"failed": 1}, "1 failed, 0 errored and 0 timed-out"),
    ({"errored": 2}, "0 failed, 2 errored"),
    ({"timeout": 3}, "3 timed-out"),
    ({"data_bytes": 10 * 139 - 1}, "1389 bytes of answers for 10 answered requests"),  # an error
    ({"data_bytes": 12 * 139 + 1}, "expected 139 bytes each"),  # answers too long
])
def test_check_names_what_was_wrong(changes, match):
    with pytest.raises(RuntimeError, match=match):
        check(_summary(**changes), [200] * 10, 139, "gRPC load")


def test_check_rejects_any_status_but_200_even_without_a_fixed_length():
    check(_summary(data_bytes=12345), [200] * 10, None, "REST load")
    with pytest.raises(RuntimeError, match="REST load: 2 answers with an HTTP status other "
                                           r"than 200 \(first 500\)"):
        check(_summary(data_bytes=12345), [200] * 8 + [500, 404], None, "REST load")


def test_grpc_target_frames_the_message_and_counts_the_prefix_in_the_answer_length():
    target = grpc_target(8500, "pkg.Service/Method", b"abc", 10)
    assert target.url == "http://127.0.0.1:8500/pkg.Service/Method"
    assert target.body == b"\x00\x00\x00\x00\x03abc"
    assert target.answer_bytes == 15
    assert "content-type: application/grpc" in target.headers and not target.http1


def test_a_missing_h2load_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="h2load is not on PATH.*nghttp2-client"):
        h2load.h2load_path()


needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None, reason=h2load.INSTALL_HINT)

ANSWER = b"0123456789"  # the raw gRPC answer: 10 bytes


@pytest.fixture(scope="module")
def grpc_port():
    """A gRPC server of raw bytes: ``test.Echo/Answer`` answers ``ANSWER``, or fails with
    INVALID_ARGUMENT when the request is ``b"bad"``."""
    import grpc

    from tests.ports import free_port

    def answer(request, context):
        if request == b"bad":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        return ANSWER

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Echo", {"Answer": grpc.unary_unary_rpc_method_handler(answer)})])
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield port
    server.stop(0)


@pytest.fixture(scope="module")
def rest_port():
    """This package's asyncio HTTP/1.1 server: ``POST /ok`` answers 200, any other path 404."""
    from serving.server.aio_http import AsyncHttpServer, EventLoopThread
    from tests.ports import free_port

    async def app(method, target, body):
        if target == "/ok":
            return 200, "application/json", '{"ok": true}'
        return 404, "application/json", '{"error": "no such path"}'

    loop_thread = EventLoopThread("test-h2load")
    server = AsyncHttpServer(app, loop_thread.loop, max_body_bytes=1 << 20, idle_timeout_s=60)
    port = loop_thread.run(server.start("127.0.0.1", free_port()))
    yield port
    loop_thread.run(server.close())
    loop_thread.stop()


@needs_h2load
@pytest.mark.parametrize("clients", [1, 4])
def test_a_grpc_load_answers_every_request_with_the_answer(grpc_port, clients):
    result = h2load.run(grpc_target(grpc_port, "test.Echo/Answer", b"hi", len(ANSWER)),
                        clients, seconds=0.4, warmup_s=0.2)
    assert len(result.latencies) > 10 and result.answered >= len(result.latencies)
    assert all(0 < latency < 1 for latency in result.latencies)
    assert result.cpu_seconds > 0


@needs_h2load
@pytest.mark.parametrize("method, request_bytes, answer_bytes", [
    ("test.Echo/Answer", b"bad", len(ANSWER)),  # a gRPC error (HTTP 200, grpc-status 3)
    ("test.Echo/Missing", b"hi", len(ANSWER)),  # UNIMPLEMENTED
    ("test.Echo/Answer", b"hi", len(ANSWER) + 1),  # not the answer expected
])
def test_a_grpc_load_that_gets_errors_or_other_answers_fails(grpc_port, method, request_bytes,
                                                              answer_bytes):
    target = grpc_target(grpc_port, method, request_bytes, answer_bytes)
    with pytest.raises(RuntimeError, match="bytes of answers"):
        h2load.run(target, 2, seconds=0.2, warmup_s=0.1)


@needs_h2load
def test_a_rest_load_answers_every_request_with_200(rest_port):
    result = h2load.run(rest_target(rest_port, "/ok", b"{}"), 4, seconds=0.4, warmup_s=0.2)
    assert len(result.latencies) > 10 and result.answered >= len(result.latencies)


@needs_h2load
def test_a_rest_load_that_gets_404_fails(rest_port):
    # h2load itself counts a 4xx answer as failed; check() reads its count.
    with pytest.raises(RuntimeError, match=r"h2load reports [1-9]\d* failed"):
        h2load.run(rest_target(rest_port, "/missing", b"{}"), 2, seconds=0.2, warmup_s=0.1)


@needs_h2load
def test_a_load_on_a_closed_port_fails():
    from tests.ports import free_port

    # h2load exits 0 with nothing started when the connection is refused.
    with pytest.raises(RuntimeError, match="no request answered in the measured window"):
        h2load.run(rest_target(free_port(), "/ok", b"{}"), 1, seconds=0.2, warmup_s=0.1)
