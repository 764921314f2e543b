"""The native REST front end (``serving.server._http_front`` + ``native_http``): the same answers
as the asyncio front end for every body, requests read in C merged into one batch-scheduler
task, and the C object's own contract."""

from __future__ import annotations

import concurrent.futures
import gc
import http.client
import json
import os
import select
import socket
import struct
import time

import pytest

from serving.server import native_http
from tests.serving.conftest import (
    http_request,
    make_base,
    read_http_response,
    start_batching_server,
    start_server,
)

pytestmark = pytest.mark.skipif(not native_http.available(),
                                reason="serving.server._http_front is not built")

PREDICT = "/v1/models/toy:predict"

# Bodies the C reader takes (dense numbers, a signature name before or after, odd whitespace,
# numbers off Clinger's fast path, out of float32 range) and bodies it must leave to the general
# path (other keys, ragged or empty lists, strings, bad JSON, a name on both sides).
BODIES = [
    b'{"instances": [[1, 2, 3]]}',
    b'{"instances": [[1.5, -2.25, 3e2], [0.1, 0.2, 0.3]]}',
    b' \r\n{ "signature_name" : "single" , "instances" :\t[[1,2,3]] } \n',
    b'{"instances": [[1, 2, 3]], "signature_name": "single"}',
    b'{"instances": [[0.30000000000000004, 1.0000000000000002, 123456789012345678]]}',
    b'{"instances": [[1e400, -1e400, 1e-400]]}',
    b'{"instances": [[3.4028235e38, 3.5e38, -0.0]]}',
    b'{"instances": [[16777217, 1, 2]]}',
    b'{"instances": [[1234567890123456789012, 1, 2]]}',
    b'{"instances": [[1, 2, 3]], "signature_name": "nope"}',
    b'{"instances": [[1, 2]]}',
    b'{"instances": [1, 2, 3]}',
    b'{"instances": [[1, 2, 3], [4, 5]]}',
    b'{"instances": [[]]}',
    b'{"instances": [["a", "b", "c"]]}',
    b'{"instances": [[1, 2, 3]]',
    b'{"instances": [[01, 2, 3]]}',
    b'{"signature_name": "single", "instances": [[1, 2, 3]], "signature_name": "single"}',
    b'{"inputs": [[1, 2, 3]]}',
    b'{"instances": [[1, 2, 3]], "x": 1}',
    b'{"instances": [{"x": [1, 2, 3]}]}',
    b'',
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, toy_builds):
    base = make_base(tmp_path_factory.mktemp("native"), "toy", toy_builds, [2])
    pair = {front: start_server(["--model_name=toy", f"--model_base_path={base}",
                                 f"--rest_api_front={front}"])
            for front in ("native", "asyncio")}
    yield pair
    for srv in pair.values():
        srv.stop()


def _post(port: int, path: str, body: bytes) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    answer = resp.status, resp.read()
    conn.close()
    return answer


@pytest.mark.parametrize("body", BODIES)
def test_every_body_gets_the_asyncio_front_ends_answer(servers, body):
    native = _post(servers["native"].rest_port, PREDICT, body)
    general = _post(servers["asyncio"].rest_port, PREDICT, body)
    assert native == general


def test_worked_answers(servers):
    port = servers["native"].rest_port
    assert _post(port, PREDICT, BODIES[0]) == (
        200, b'{"predictions": [{"total": 12.0, "y": [2.0, 4.0, 6.0]}]}')
    assert json.loads(_post(port, PREDICT, BODIES[2])[1]) == {"predictions": [[2.0, 4.0, 6.0]]}
    status, body = _post(port, "/v1/models/nope:predict", BODIES[0])
    assert status == 404 and "nope" in json.loads(body)["error"]


def test_concurrent_bodies_of_every_kind_get_their_own_answers(servers):
    """Requests arriving together form groups by target, signature, kind and shape; each still
    gets exactly the answer it gets alone."""
    port = servers["native"].rest_port
    paths = (PREDICT, "/v1/models/toy/versions/2:predict")
    jobs = [(path, body) for body in BODIES[:9] for path in paths]
    alone = [_post(servers["asyncio"].rest_port, path, body) for path, body in jobs]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        for _ in range(3):
            assert list(pool.map(lambda job: _post(port, *job), jobs)) == alone


def test_requests_read_together_run_as_one_task(tmp_path, toy_builds):
    srv = start_batching_server(
        tmp_path, toy_builds,
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 300000 }\n"
        "num_batch_threads { value: 1 }\n", "--rest_api_front=native")
    try:
        before = srv.batcher.batches_run
        socks = [socket.create_connection(("127.0.0.1", srv.rest_port), timeout=30)
                 for _ in range(5)]
        for k, sock in enumerate(socks):  # all sent before the batch timeout: 7 rows
            body = json.dumps({"signature_name": "single", "instances": [[k, 1, 0]] * (k % 2 + 1)})
            sock.sendall(http_request("POST", PREDICT, body.encode()))
        for k, sock in enumerate(socks):
            status, _, body = read_http_response(sock.makefile("rb"))
            assert status == 200
            assert json.loads(body) == {"predictions": [[float(k), 1.0, 0.0]] * (k % 2 + 1)}
            sock.close()
        assert srv.batcher.batches_run == before + 1  # at most 8 rows: one batch
        assert srv.metrics.batched_requests.value("toy") == 5  # requests, not tasks
        assert srv.metrics.request_count.value("toy", "OK") == 5
    finally:
        srv.stop()


def test_a_merged_task_over_max_batch_size_is_split(tmp_path, toy_builds):
    srv = start_batching_server(
        tmp_path, toy_builds,
        "max_batch_size { value: 2 }\nbatch_timeout_micros { value: 200000 }\n"
        "max_enqueued_batches { value: 100 }\n", "--rest_api_front=native")
    try:
        socks = [socket.create_connection(("127.0.0.1", srv.rest_port), timeout=30)
                 for _ in range(5)]
        for k, sock in enumerate(socks):
            body = json.dumps({"signature_name": "single", "instances": [[k, 0, 0]]})
            sock.sendall(http_request("POST", PREDICT, body.encode()))
        big = json.dumps({"signature_name": "single", "instances": [[1, 1, 1]] * 3}).encode()
        status, body = _post(srv.rest_port, PREDICT, big)  # larger than max_batch_size alone
        assert status == 400 and "larger than maximum input batch size 2" in body.decode()
        for k, sock in enumerate(socks):
            status, _, body = read_http_response(sock.makefile("rb"))
            assert (status, json.loads(body)) == (200, {"predictions": [[float(k), 0.0, 0.0]]})
            sock.close()
        assert srv.metrics.batched_requests.value("toy") == 5
    finally:
        srv.stop()


# -- the C object ---------------------------------------------------------------------------------
def _front(**kw):
    from serving.server import _http_front

    args = dict(host="127.0.0.1", port=0, max_body_bytes=1024, idle_timeout_s=0.0,
                fast_body_bytes=1024)
    args.update(kw)
    front = _http_front.Front(**args)
    front.start()
    return front


def _take(front, want: int, timeout: float = 10.0) -> list:
    items, deadline = [], time.monotonic() + timeout
    while len(items) < want and time.monotonic() < deadline:
        items += front.take()
        time.sleep(0.005)
    return items


def _assert_serves_a_new_connection(front, target: str) -> None:
    again = socket.create_connection(("127.0.0.1", front.port), timeout=10)
    again.sendall(http_request("GET", target))
    (_, conn, _, got, _), = _take(front, 1)
    assert got == target
    front.respond(conn, b"HTTP/1.1 200 OK\r\nContent-Length: ", b"ok")
    assert read_http_response(again.makefile("rb"))[::2] == (200, b"ok")
    again.close()


def test_front_hands_over_requests_and_writes_answers():
    front = _front()
    try:
        assert front.take() == []
        sock = socket.create_connection(("127.0.0.1", front.port), timeout=10)
        sock.sendall(http_request("GET", "/a?b")
                     + http_request("POST", "/p", b'{"instances": [[1.5, 2]]}'))
        (kind, conn, method, target, body), = _take(front, 1)
        assert (kind, method, target, body) == ("http", "GET", "/a?b", b"")
        assert _take(front, 1, 0.2) == []  # the pipelined request waits for this answer
        front.respond(conn, b"HTTP/1.1 200 OK\r\nContent-Length: ", b"hi")
        f = sock.makefile("rb")
        assert read_http_response(f)[::2] == (200, b"hi")
        (item,), = [_take(front, 1)]
        kind, target, name, value_kind, inner, conns, rows, values, bodies = item
        assert (kind, target, name, value_kind, inner, rows) == (
            "predict", "/p", b"", "f", (2,), (1,))
        assert values == struct.pack("=2d", 1.5, 2.0)
        front.respond_many(conns, b"HTTP/1.1 200 OK\r\nContent-Length: ", [b"ok"])
        assert read_http_response(f)[::2] == (200, b"ok")
        sock.close()
        with pytest.raises(ValueError, match="as many bodies"):
            front.respond_many(conns, b"", [])
    finally:
        front.close()
    front.respond(1, b"", b"")  # after close: nothing to answer, no crash


def test_front_refusals_and_closed_connections():
    front = _front(max_body_bytes=10)
    try:
        sock = socket.create_connection(("127.0.0.1", front.port), timeout=10)
        sock.sendall(b"POST /p HTTP/1.1\r\nContent-Length: 0011\r\n\r\n")
        (kind, conn, status, code, detail), = _take(front, 1)
        assert (kind, status, code, detail) == ("fail", 413, "too_large", "11")
        front.respond(conn, b"HTTP/1.1 413 X\r\nContent-Length: ", b"no", False, True)
        f = sock.makefile("rb")
        status, headers, _ = read_http_response(f)
        assert status == 413 and headers["connection"] == "close" and f.read() == b""
        sock.close()
        gone = socket.create_connection(("127.0.0.1", front.port), timeout=10)
        gone.sendall(http_request("GET", "/x"))
        (_, conn, *_), = _take(front, 1)
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        gone.close()  # reset: the connection is gone before its answer
        time.sleep(0.2)
        front.respond(conn, b"HTTP/1.1 200 OK\r\nContent-Length: ", b"late")  # a no-op
        _assert_serves_a_new_connection(front, "/y")
    finally:
        front.close()


def test_requests_take_cannot_hand_over_are_closed_not_left_waiting():
    """When take() fails (out of memory building its list), the connections of the requests it
    took are closed: the clients see EOF at once, instead of a busy connection that never
    answers, and the front goes on serving new ones."""
    testcapi = pytest.importorskip("_testcapi")
    front = _front()
    try:
        socks = [socket.create_connection(("127.0.0.1", front.port), timeout=10)
                 for _ in range(2)]
        socks[0].sendall(http_request("GET", "/a"))
        socks[1].sendall(http_request("POST", "/p", b'{"instances": [[1, 2]]}'))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # both queued, and the hand-over signalled
            time.sleep(0.05)
            if select.select([front.fileno()], [], [], 0)[0]:
                time.sleep(0.05)
                break
        take = front.take
        testcapi.set_nomemory(0)
        try:
            take()
        except MemoryError:
            failed = True
        else:
            failed = False
        finally:
            testcapi.remove_mem_hooks()
        assert failed, "take() did not run out of memory"
        for sock in socks:
            assert sock.recv(100) == b""  # closed, not waiting forever
            sock.close()
        _assert_serves_a_new_connection(front, "/b")
    finally:
        front.close()


def _threads_named(name: str) -> set[str]:
    """The ids of this process's threads called ``name``."""
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    found.add(tid)
        except OSError:
            pass  # the thread ended meanwhile
    return found


def test_the_io_thread_is_named_and_ends_with_close():
    """top -H, py-spy and perf show the I/O thread as deepline-http (other fronts may be
    running: their threads are told apart by id); close() joins it, a second close() is a
    no-op."""
    before = _threads_named("deepline-http")
    front = _front()
    ours = _threads_named("deepline-http") - before
    assert len(ours) == 1
    front.close()
    assert not ours & _threads_named("deepline-http")
    front.close()
    with pytest.raises(RuntimeError, match="already started or closed"):
        front.start()


def test_front_bad_arguments():
    from serving.server import _http_front

    with pytest.raises(OSError, match="cannot resolve"):
        _http_front.Front("no such host.invalid", 0, 10, 0.0, 10)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError, match="bind"):
            _http_front.Front("127.0.0.1", taken.getsockname()[1], 10, 0.0, 10)
    finally:
        taken.close()
    front = _front()
    with pytest.raises(RuntimeError, match="already started"):
        front.start()
    with pytest.raises(RuntimeError, match="already initialized"):
        front.__init__("127.0.0.1", 0, 10, 0.0, 10)
    front.close()


def test_a_front_that_never_opened_closes_no_one_elses_file():
    """A Front whose __init__ failed, or never ran, owns no descriptors: deleting it must not
    close fd 0 (what zeroed descriptor fields would name)."""
    from serving.server import _http_front

    saved = os.dup(0)  # fd 0 restored if the front closed it
    before = os.fstat(0)
    try:
        with pytest.raises(TypeError):
            _http_front.Front("127.0.0.1", "not a port", 10, 0.0, 10)
        bare = _http_front.Front.__new__(_http_front.Front)
        bare.close()
        del bare
        gc.collect()
        try:
            after = os.fstat(0)
        except OSError:
            after = None
        if after is None or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            os.dup2(saved, 0)
            pytest.fail("deleting a Front that never opened closed fd 0")
    finally:
        os.close(saved)
