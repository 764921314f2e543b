"""A small HTTP/1.1 server on asyncio (stdlib only) for the REST front end.

One event loop (in its own thread, :class:`EventLoopThread`) serves every connection, so a
request costs a few buffer operations instead of a thread switch: the handler is a coroutine
``app(method, target, body) -> (status, content_type, text)`` that awaits model work done
elsewhere (an executor or the batch scheduler).

Per connection (:class:`_Connection`, an ``asyncio.Protocol``):

- keep-alive by default for HTTP/1.1, close for HTTP/1.0 unless ``Connection: keep-alive``;
  ``Connection: close`` closes after the response. Pipelined requests are answered in order;
  while one is handled, reading pauses once more than one maximal request is buffered.
- bodies by ``Content-Length`` or ``Transfer-Encoding: chunked``; above ``max_body_bytes`` →
  ``413`` and the connection closes (a declared length is refused before the body is read);
  a bad length or chunk size → ``400`` and close. ``Expect: 100-continue`` is honoured.
- a request line over 64 KiB → ``414``, a header block over 64 KiB or 100 fields → ``431``,
  a malformed request line or header → ``400``; each then closes.
- a connection idle (or stalled mid-request) longer than ``idle_timeout_s`` is closed; a request
  being processed is never cut off.
- ``HEAD`` answers get headers only. Errors are ``{"error": "..."}`` JSON bodies.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

log = logging.getLogger("serving.server.rest")

App = Callable[[str, str, bytes], Awaitable[tuple[int, str, str]]]

MAX_LINE = 65536
MAX_HEAD = 65536
MAX_HEADERS = 100
SERVER_NAME = "deepline-serving"
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@functools.lru_cache(maxsize=64)
def response_head(status: int, content_type: str) -> bytes:
    """Status line and headers up to ``Content-Length: `` (both front ends)."""
    return (f"HTTP/1.1 {status} {_PHRASES.get(status, '')}\r\nServer: {SERVER_NAME}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: ").encode("latin-1")


def response_bytes(status: int, content_type: str, text: str, *, close: bool = False,
                   head_only: bool = False) -> bytes:
    """Status line, headers and body in one buffer (one write, no Nagle stalls)."""
    data = text.encode("utf-8")
    head = response_head(status, content_type) + b"%d\r\n" % len(data)
    if close:
        head += b"Connection: close\r\n"
    head += b"\r\n"
    return head if head_only else head + data


# The error message for each way the HTTP parser refuses a request: code -> (detail, limit) ->
# text, where detail is the text the message names and limit --rest_api_max_body_bytes.
_REFUSALS: dict[str, Callable[[str, int], str]] = {
    "line": lambda detail, limit: "Request line too long",
    "head": lambda detail, limit: "Request header fields too large",
    "fields": lambda detail, limit: f"More than {MAX_HEADERS} header fields",
    "request_line": lambda detail, limit: f"Bad request line: {detail[:200]!r}",
    "version": lambda detail, limit: f"Unsupported HTTP version: {detail[:20]}",
    "header": lambda detail, limit: f"Malformed header line: {detail[:200]!r}",
    "transfer_encoding": lambda detail, limit: (
        f"Unsupported Transfer-Encoding: {detail.lower()[:100]}"),
    "content_length": lambda detail, limit: f"Invalid Content-Length: {detail!r}",
    "too_large": lambda detail, limit: (
        f"Request body of {int(detail)} bytes exceeds the limit of {limit} bytes "
        "(--rest_api_max_body_bytes)"),
    "chunks_too_large": lambda detail, limit: (
        f"Request body exceeds the limit of {limit} bytes (--rest_api_max_body_bytes)"),
    "chunked": lambda detail, limit: "Malformed chunked request body",
}


def refusal(code: str, detail: str = "", limit: int = 0) -> str:
    """The error message for a request the HTTP parser refuses (``code``, a key of
    ``_REFUSALS``; ``detail``: the text it names), the same from both front ends."""
    return _REFUSALS[code](detail, limit)


async def call_app(app: App, method: str, target: str, body: bytes) -> tuple[int, str, str]:
    """``app``'s answer to a GET or POST; ``400`` for other methods, ``500`` if it raises (both
    front ends)."""
    try:
        if method in ("GET", "POST"):
            return await app(method, target, body)
        return 400, "application/json", json.dumps(
            {"error": f"Malformed request: {method} {target}"})
    except Exception as exc:  # noqa: BLE001 - the app maps errors itself; last resort
        log.exception("REST handler failed on %s %s", method, target)
        return 500, "application/json", json.dumps({"error": f"{type(exc).__name__}: {exc}"})


def _error_bytes(status: int, message: str, close: bool = True) -> bytes:
    return response_bytes(status, "application/json", json.dumps({"error": message}), close=close)


class _Connection(asyncio.Protocol):
    """One client connection: incremental request parsing, one request in flight at a time."""

    def __init__(self, server: AsyncHttpServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a request is being handled
        self.closing = False
        self.last_activity = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._request: tuple | None = None  # parsed head waiting for its body
        self._chunks: list[bytes] | None = None
        self._chunk_total = 0
        self._continue_sent = False
        self.eof = False
        self.paused = False  # reading paused: too much pipelined input waits behind a request

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self._arm_timer()

    def connection_lost(self, exc):
        self.closing = True
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes):
        self.last_activity = time.monotonic()
        self.buf += data
        if not self.busy:
            self._advance()
        elif not self.paused and len(self.buf) > self.server.max_body_bytes + MAX_HEAD:
            self.paused = True  # a client pipelining without reading answers: stop buffering
            self.transport.pause_reading()

    def eof_received(self):
        self.eof = True
        if not self.busy:
            return False  # close now
        return True  # finish the request in flight, then close

    # -- idle timeout ----------------------------------------------------------------------------
    def _arm_timer(self):
        timeout = self.server.idle_timeout_s
        if timeout and timeout > 0 and not self.closing:
            when = self.last_activity + timeout
            self._timer = self.server.loop.call_at(
                self.server.loop.time() + max(when - time.monotonic(), 0.0), self._check_idle)

    def _check_idle(self):
        self._timer = None
        if self.closing:
            return
        if not self.busy and time.monotonic() - self.last_activity >= self.server.idle_timeout_s:
            log.debug("closing idle REST connection")
            self.closing = True
            self.transport.close()
            return
        if self.busy:
            self.last_activity = time.monotonic()
        self._arm_timer()

    # -- parsing ---------------------------------------------------------------------------------
    def _fail(self, status: int, message: str):
        self.closing = True
        self.transport.write(_error_bytes(status, message))
        self.transport.close()

    def _advance(self):
        """Parse as many complete requests as the buffer holds (stops while one is handled)."""
        try:
            while not self.busy and not self.closing:
                if self._request is None:
                    if not self._parse_head():
                        return
                body = self._read_body()
                if body is None:
                    return
                method, target, _, keep_alive = self._request
                self._request = None
                self._chunks = None
                self._continue_sent = False
                self.busy = True
                self.server.loop.create_task(self._handle(method, target, body, keep_alive))
        except _BadRequest as exc:
            self._fail(exc.status, exc.message)

    def _parse_head(self) -> bool:
        buf = self.buf
        # Tolerate blank lines between requests (RFC 9112 §2.2).
        while buf[:2] == b"\r\n":
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            line_end = buf.find(b"\r\n")
            if line_end < 0 and len(buf) > MAX_LINE:
                raise _BadRequest(414, refusal("line"))
            if len(buf) > MAX_HEAD:
                raise _BadRequest(431, refusal("head"))
            return False
        if end > MAX_HEAD:
            raise _BadRequest(431, refusal("head"))
        head = bytes(buf[:end]).decode("latin-1")
        del buf[:end + 4]
        lines = head.split("\r\n")
        if len(lines[0]) > MAX_LINE:
            raise _BadRequest(414, refusal("line"))
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _BadRequest(400, refusal("request_line", lines[0]))
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequest(505, refusal("version", version))
        if len(lines) - 1 > MAX_HEADERS:
            raise _BadRequest(431, refusal("fields"))
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, refusal("header", line))
            headers[name.lower()] = value.strip()
        conn = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            keep_alive = "keep-alive" in conn
        else:
            keep_alive = "close" not in conn
        self._request = (method, target, headers, keep_alive)
        te = headers.get("transfer-encoding", "").lower()
        if te:
            if te != "chunked":
                raise _BadRequest(501, refusal("transfer_encoding", te))
            self._chunks = []
            self._chunk_total = 0
        else:
            length = headers.get("content-length")
            if length is not None:
                try:
                    n = int(length)
                    if n < 0 or not length.isdigit():
                        raise ValueError
                except ValueError:
                    raise _BadRequest(400, refusal("content_length", length)) from None
                limit = self.server.max_body_bytes
                if n > limit:
                    raise _BadRequest(413, refusal("too_large", str(n), limit))
        if headers.get("expect", "").lower() == "100-continue" and not self._continue_sent:
            self._continue_sent = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _read_body(self) -> bytes | None:
        """The complete body, or None while more bytes are needed."""
        _, _, headers, _ = self._request
        if self._chunks is not None:
            return self._read_chunked()
        length = headers.get("content-length")
        n = int(length) if length is not None else 0
        if len(self.buf) < n:
            return None
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return body

    def _read_chunked(self) -> bytes | None:
        buf = self.buf
        limit = self.server.max_body_bytes
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                if len(buf) > 1024:
                    raise _BadRequest(400, refusal("chunked"))
                return None
            try:
                size = int(bytes(buf[:line_end]).split(b";")[0].strip() or b"x", 16)
                if size < 0:
                    raise ValueError
            except ValueError:
                raise _BadRequest(400, refusal("chunked")) from None
            if size == 0:
                # trailers end with an empty line
                end = buf.find(b"\r\n\r\n", line_end)
                if end == line_end:
                    del buf[:line_end + 4]
                elif end < 0:
                    if len(buf) > MAX_HEAD:
                        raise _BadRequest(431, refusal("head"))
                    return None
                else:
                    del buf[:end + 4]
                body = b"".join(self._chunks)
                self._chunks = None
                return body
            if self._chunk_total + size > limit:
                raise _BadRequest(413, refusal("chunks_too_large", limit=limit))
            start = line_end + 2
            if len(buf) < start + size + 2:
                return None
            if buf[start + size:start + size + 2] != b"\r\n":
                raise _BadRequest(400, refusal("chunked"))
            self._chunks.append(bytes(buf[start:start + size]))
            self._chunk_total += size
            del buf[:start + size + 2]

    # -- handling --------------------------------------------------------------------------------
    async def _handle(self, method: str, target: str, body: bytes, keep_alive: bool):
        status, ctype, text = await call_app(self.server.app, method, target, body)
        if self.closing:
            return
        close = not keep_alive or (self.eof and not self.buf)
        self.transport.write(response_bytes(status, ctype, text, close=close,
                                            head_only=method == "HEAD"))
        self.last_activity = time.monotonic()
        self.busy = False
        if close:
            self.closing = True
            self.transport.close()
            return
        if self.buf:
            self._advance()
        if (self.paused and not self.closing
                and len(self.buf) <= self.server.max_body_bytes + MAX_HEAD):
            self.paused = False
            self.transport.resume_reading()


class AsyncHttpServer:
    """Listens on ``address:port`` on ``loop`` and serves ``app``; see the module docstring."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop, *, max_body_bytes: int,
                 idle_timeout_s: float):
        self.app = app
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, address: str, port: int) -> int:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host=address, port=port, family=family,
            reuse_address=True, backlog=256)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.closing = True
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
            self._server = None


class EventLoopThread:
    """An asyncio event loop running in a daemon thread; ``run(coro)`` waits for a result."""

    def __init__(self, name: str = "deepline-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def run(self, coro, timeout: float | None = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
