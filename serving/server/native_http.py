"""The REST front end's connections on a native I/O thread (:mod:`serving.server._http_front`).

:class:`NativeHttpServer` has :class:`~serving.server.aio_http.AsyncHttpServer`'s interface and
HTTP/1.1 behaviour (keep-alive, pipelining, chunked bodies, ``Expect: 100-continue``, the size
limits and their errors, the idle timeout, ``HEAD``: see :mod:`serving.server.aio_http`), but
accepting, reading, parsing and writing happen on a thread of C that never takes the GIL. The
event loop only sees complete requests: it watches the front's eventfd and answers what
``take()`` hands over, through the same ``app`` coroutine and the same error messages
(:func:`~serving.server.aio_http.call_app`, :func:`~serving.server.aio_http.refusal`).

``:predict`` bodies of the form ``{"instances": <dense numeric array>}`` (the form
:func:`serving.server.json_codec.fast_instances` reads; up to ``fast_body_bytes``) have their
numbers read on that thread too, and a burst of them to one target reaches the loop as one group
(``predict_many``, :meth:`serving.server.rest.RestApi.predict_many_async`): the loop's work per
request is then a few microseconds instead of its whole HTTP and JSON path. On the 2-core
development VM, with 32 REST clients and batching on, LeNet-5's throughput rises from about 0.2
of in-process batch-32 inference with the asyncio front end to about 0.3 (serving/README.md,
Performance).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from serving.server.aio_http import App, call_app, refusal, response_head

log = logging.getLogger("serving.server.rest")

try:
    from serving.server import _http_front
except ImportError:  # not built (no C compiler, or not Linux): aio_http serves REST
    _http_front = None

# predict_many(target, signature name bytes, kind, inner shape, rows, values, bodies)
#   -> one (status, content type, text) per request
PredictMany = Callable[..., Awaitable[list[tuple[int, str, str]]]]


def available() -> bool:
    return _http_front is not None


class NativeHttpServer:
    """Listens on ``address:port`` and serves ``app`` (and ``predict_many``) on ``loop``."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop, *, max_body_bytes: int,
                 idle_timeout_s: float, predict_many: PredictMany | None = None,
                 fast_body_bytes: int = 0):
        if _http_front is None:
            raise RuntimeError("serving.server._http_front is not built")
        self.app = app
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.predict_many = predict_many
        self.fast_body_bytes = fast_body_bytes if predict_many is not None else -1
        self._front = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    async def start(self, address: str, port: int) -> int:
        self._front = _http_front.Front(address, port, self.max_body_bytes,
                                        float(self.idle_timeout_s or 0), self.fast_body_bytes)
        self.loop.add_reader(self._front.fileno(), self._ready)
        self._front.start()
        self.port = self._front.port
        return self.port

    async def close(self) -> None:
        front, self._front = self._front, None
        if front is None:
            return
        self.loop.remove_reader(front.fileno())
        front.close()  # requests still in flight answer into nothing

    # -- requests --------------------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ready(self) -> None:
        front = self._front
        if front is None:
            return
        for item in front.take():
            kind = item[0]
            if kind == "http":
                self._spawn(self._handle(front, *item[1:]))
            elif kind == "predict":
                self._spawn(self._predict_group(front, *item[1:]))
            else:  # "fail": the parser refused the request
                _, conn, status, code, detail = item
                text = json.dumps({"error": refusal(code, detail, self.max_body_bytes)})
                front.respond(conn, response_head(status, "application/json"),
                              text.encode(), False, True)

    async def _handle(self, front, conn: int, method: str, target: str, body: bytes) -> None:
        status, ctype, text = await call_app(self.app, method, target, body)
        front.respond(conn, response_head(status, ctype), text.encode("utf-8"), method == "HEAD")

    async def _predict_group(self, front, target: str, name: bytes, kind: str,
                             inner: tuple[int, ...], conns: tuple[int, ...],
                             rows: tuple[int, ...], values: bytes,
                             bodies: tuple[bytes, ...]) -> None:
        try:
            answers = await self.predict_many(target, name, kind, inner, rows, values, bodies)
        except Exception:  # noqa: BLE001 - last resort: each request on its own
            log.exception("REST group predict failed on %s", target)
            answers = [await call_app(self.app, "POST", target, b) for b in bodies]
        first_status, first_ctype, _ = answers[0]
        if all(a[0] == first_status and a[1] == first_ctype for a in answers):
            front.respond_many(conns, response_head(first_status, first_ctype),
                               [a[2].encode("utf-8") for a in answers])
            return
        for conn, (status, ctype, text) in zip(conns, answers, strict=True):
            front.respond(conn, response_head(status, ctype), text.encode("utf-8"))
