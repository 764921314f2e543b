"""gRPC on a native I/O thread: ``--grpc_front=native`` (the default where it is built).

:mod:`serving.server._grpc_front` (C, libnghttp2) accepts gRPC's HTTP/2 connections on a thread of
its own that never takes the GIL: the HTTP/2 framing, HPACK, flow control and the gRPC message
framing never run Python. The event loop takes complete unary calls in bursts (its eventfd
becomes readable) and runs each as a coroutine of the same servicers ``grpcio`` serves
(:func:`serving.server.grpc_service.serving_methods`), with a context that offers what they use
of ``grpc.aio``'s (``time_remaining``, ``abort``). What ``grpcio``'s server answers is answered
the same way: an unknown method is UNIMPLEMENTED "Method not found!", an exception a servicer
lets through UNKNOWN "Unexpected <class ...>: ...", messages compressed with ``gzip`` or
``deflate`` are decompressed (another encoding is UNIMPLEMENTED), a message over the size limit
is RESOURCE_EXHAUSTED "Received message larger than max (N vs. M)".

Why: ``grpc.aio`` costs the event loop about 300 µs of CPU per call on a 2-core machine even in a
do-nothing server (``serving/README.md``, Performance); here a call costs the loop its own
servicer's work. And since a burst of calls reaches the loop together, with batching on a burst's
Predict calls merge into batch-scheduler tasks (``predict_many``:
``PredictionServicer.predict_many``), whose batch the loop gathers and runs itself, as for REST
(``PredictionServicer(gather_on_loop=True)``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable

import grpc

try:
    from serving.server import _grpc_front
except ImportError:  # no C compiler or no libnghttp2 headers at install: grpcio serves gRPC
    _grpc_front = None

log = logging.getLogger("serving.server")

UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
INTERNAL = grpc.StatusCode.INTERNAL.value[0]
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]

Methods = dict[str, tuple[Callable, Callable]]
# (serialized PredictRequests, their timeouts) → per request: a serialized PredictResponse, an
# error with a grpc_code and message, or None (the general path answers it)
PredictMany = Callable[[list[bytes], list[float | None]], Awaitable[list]]
PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"


def available() -> bool:
    return _grpc_front is not None


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


class CallContext:
    """What the servicers use of ``grpc.aio.ServicerContext``."""

    __slots__ = ("_deadline",)

    def __init__(self, timeout_s: float | None):
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    async def abort(self, code: grpc.StatusCode, details: str = ""):
        raise _Abort(code, details)


def decompress(message: bytes, encoding: str, limit: int) -> bytes:
    """A compressed message's bytes (``gzip`` or ``deflate``, as gRPC names them); ``_Abort``
    for another encoding or a message over ``limit`` bytes once decompressed."""
    if encoding not in ("gzip", "deflate"):
        raise _Abort(grpc.StatusCode.UNIMPLEMENTED,
                     f"Compression algorithm '{encoding or 'identity'}' is not supported")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(message, limit + 1)
    except zlib.error as exc:
        raise _Abort(grpc.StatusCode.INTERNAL, f"Failed to decompress the message: {exc}") \
            from None
    if len(out) > limit:
        raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"Received message larger than max (more than {limit} vs. {limit})")
    return out


class NativeGrpcServer:
    """Serves ``methods`` (gRPC path → (``handle(raw, context)``, serializer)) on ``loop``."""

    def __init__(self, methods: Methods, loop: asyncio.AbstractEventLoop, *,
                 max_message_bytes: int, predict_many: PredictMany | None = None):
        if _grpc_front is None:
            raise RuntimeError("serving.server._grpc_front is not built")
        self.methods = methods
        self.loop = loop
        self.max_message_bytes = max_message_bytes
        self.predict_many = predict_many
        self._front = None
        self._tasks: set[asyncio.Task] = set()
        self._answers: list[tuple] = []  # written at the end of the loop's iteration
        self.port = 0

    async def start(self, address: str, port: int) -> int:
        self._front = _grpc_front.Front(address, port, self.max_message_bytes)
        self.loop.add_reader(self._front.fileno(), self._ready)
        self._front.start()
        self.port = self._front.port
        return self.port

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking calls; wait up to ``grace_s`` for those in flight, then close."""
        front, self._front = self._front, None
        if front is None:
            return
        self.loop.remove_reader(front.fileno())
        unavailable = grpc.StatusCode.UNAVAILABLE.value[0]
        front.respond_all([(conn, stream, unavailable, "Server is shutting down", None)
                           for conn, stream, *_ in front.take()])  # arrived, never started
        if self._tasks and grace_s:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        self._flush(front)
        front.close()  # GOAWAY; calls still in flight answer into nothing

    def _ready(self) -> None:
        front = self._front
        if front is None:
            return
        predicts = []
        for call in front.take():
            if call[2] == PREDICT_PATH and call[4] is None and self.predict_many is not None:
                predicts.append(call)
            else:
                self._spawn(self._call(front, *call))
        if predicts:
            self._spawn(self._predicts(front, predicts))

    def _spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _predicts(self, front, calls: list[tuple]) -> None:
        """A burst's Predict calls: ``predict_many`` answers those it merges, the others take
        the general path one by one."""
        try:
            answers = await self.predict_many([c[3] for c in calls], [c[5] for c in calls])
        except Exception:  # noqa: BLE001 - last resort: each call on its own
            log.exception("gRPC Predict burst failed")
            answers = [None] * len(calls)
        alone = []
        for call, answer in zip(calls, answers, strict=True):
            if answer is None:
                alone.append(call)
            elif isinstance(answer, bytes):
                self._answer(front, (call[0], call[1], 0, "", answer))
            else:
                self._answer(front, (call[0], call[1], answer.grpc_code.value[0],
                                     answer.message, None))
        if alone:
            await asyncio.gather(*(self._call(front, *call) for call in alone))

    def _answer(self, front, answer: tuple) -> None:
        """Queue ``answer`` (``respond``'s arguments); the answers that calls finishing in one
        iteration of the loop give (a batch's, say) go out together, each connection's in one
        write, once the iteration is over."""
        if not self._answers:
            self.loop.call_soon(self._flush, front)
        self._answers.append(answer)

    def _flush(self, front) -> None:
        answers, self._answers = self._answers, []
        if answers:
            front.respond_all(answers)

    async def _call(self, front, conn: int, stream: int, path: str, message: bytes,
                    encoding: str | None, timeout_s: float | None) -> None:
        method = self.methods.get(path)
        if method is None:
            self._answer(front, (conn, stream, UNIMPLEMENTED, "Method not found!", None))
            return
        handle, serialize = method
        try:
            if encoding is not None:
                message = decompress(message, encoding, self.max_message_bytes)
            answer = serialize(await handle(message, CallContext(timeout_s)))
        except _Abort as exc:
            self._answer(front, (conn, stream, exc.code.value[0], exc.details, None))
            return
        except Exception as exc:  # noqa: BLE001 - what grpc.aio answers for an escaped error
            log.exception("gRPC %s failed", path)
            self._answer(front, (conn, stream, UNKNOWN, f"Unexpected {type(exc)}: {exc}", None))
            return
        if len(answer) > self.max_message_bytes:
            self._answer(front, (conn, stream, RESOURCE_EXHAUSTED,
                                 f"Sent message larger than max ({len(answer)} vs. "
                                 f"{self.max_message_bytes})", None))
            return
        self._answer(front, (conn, stream, 0, "", answer))
