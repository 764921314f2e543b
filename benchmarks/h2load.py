"""Closed-loop load from ``h2load`` (nghttp2's native HTTP/2 and HTTP/1.1 load generator).

A load generator written in Python costs more CPU per request than a fast server: on the 2-core
VM, asyncio clients with the official ``grpc.aio`` stub spend about 0.2 ms of CPU per gRPC call
on the cores the server needs, so a benchmark driven by them measures the clients as well as the
server (with them, 32-client gRPC throughput was 0.76–0.77 of h2load's in three runs).
``h2load`` is C, event-driven and runs on one thread; it spends 10–60 µs per request here.

One ``h2load`` run is one load: gRPC clients are ``clients`` concurrent streams on one HTTP/2
connection (``-c 1 -m clients``: ``clients`` calls sharing one channel), REST clients are
``clients`` keep-alive HTTP/1.1 connections without pipelining (``--h1 -c clients -m 1``). Each
client sends its next request when the previous answer arrives, the same prebuilt request every
time. Latencies come from h2load's per-request log (``--log-file``: start time in µs since the
epoch, HTTP status, µs until the end of the response); requests that started during the warm-up
or after the measured window are dropped, so throughput = requests started in the window and
answered / window seconds.

Every answer is checked, not just counted:

- h2load's summary must report no failed, errored or timed-out request;
- every logged HTTP status must be 200;
- REST reports every error with an HTTP status other than 200, so for REST that is the check
  (the JSON of a correct answer has no fixed length: batched and unbatched calls round the
  probabilities differently in their last digits);
- gRPC reports an error with HTTP 200 and ``grpc-status`` in trailers, with no message, so the
  DATA bytes h2load received must be ``answered x`` the length of the one correct answer
  (fetched beforehand; a protobuf message of ten floats has one length whatever their values):
  a gRPC error, or an answer of any other length, breaks that equality. Requests still in flight
  when h2load stops may add part of an answer, so the bound is
  ``answered x length <= data bytes <= started x length``.
"""

from __future__ import annotations

import dataclasses
import re
import resource
import shutil
import subprocess
import tempfile

INSTALL_HINT = ("h2load is not on PATH: `make bench` installs it with apt-get where it can "
                "(Debian/Ubuntu package nghttp2-client; macOS: brew install nghttp2)")

_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout")
_DATA = re.compile(r"traffic: .*\((\d+)\) data")


@dataclasses.dataclass(frozen=True)
class Target:
    """What one load sends, and the length of the body of the one correct answer (``None``: the
    protocol reports errors by HTTP status and answers have no fixed length)."""

    url: str
    body: bytes
    headers: tuple[str, ...]
    http1: bool
    answer_bytes: int | None


@dataclasses.dataclass(frozen=True)
class Summary:
    """The counts of h2load's summary (``requests:`` and ``traffic:`` lines)."""

    started: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    data_bytes: int


@dataclasses.dataclass(frozen=True)
class LoadResult:
    latencies: list[float]  # seconds, requests that started in the measured window
    answered: int  # every answered request of the run, warm-up included
    cpu_seconds: float  # h2load's own user + system CPU


def grpc_target(port: int, method: str, request: bytes, answer_bytes: int) -> Target:
    """A unary gRPC call: ``request`` is the serialized message; ``answer_bytes`` the length of
    the serialized answer (both without the 5-byte gRPC message prefix)."""
    framed = b"\x00" + len(request).to_bytes(4, "big") + request
    return Target(f"http://127.0.0.1:{port}/{method}", framed,
                  ("content-type: application/grpc", "te: trailers"), False, answer_bytes + 5)


def rest_target(port: int, path: str, body: bytes) -> Target:
    """An HTTP/1.1 ``POST path`` with a JSON body, checked by HTTP status."""
    return Target(f"http://127.0.0.1:{port}{path}", body, ("content-type: application/json",),
                  True, None)


def parse_summary(text: str) -> Summary:
    """The counts from h2load's standard output; ``ValueError`` if it has no summary."""
    requests, data = _REQUESTS.search(text), _DATA.search(text)
    if requests is None or data is None:
        raise ValueError(f"no h2load summary in its output: {text[-500:]!r}")
    _, started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    return Summary(started, done, succeeded, failed, errored, timeout, int(data.group(1)))


def parse_log(text: str, warmup_s: float, seconds: float) -> tuple[list[float], list[int]]:
    """Latencies (s) of the requests that started within ``[first start + warmup_s, + seconds)``,
    and every logged HTTP status, from h2load's ``--log-file`` (tab-separated: start µs since the
    epoch, status, µs to the end of the response)."""
    rows = [[int(field) for field in line.split("\t")[:3]]
            for line in text.splitlines() if line.strip()]
    if not rows:
        return [], []
    begin = min(start for start, _, _ in rows) + warmup_s * 1e6
    end = begin + seconds * 1e6
    latencies = [micros / 1e6 for start, _, micros in rows if begin <= start < end]
    return latencies, [status for _, status, _ in rows]


def check(summary: Summary, statuses: list[int], answer_bytes: int | None, what: str) -> None:
    """``RuntimeError`` naming ``what`` unless every answer was a correct one (module docstring)."""
    if summary.failed or summary.errored or summary.timeout:
        raise RuntimeError(f"{what}: h2load reports {summary.failed} failed, {summary.errored} "
                           f"errored and {summary.timeout} timed-out requests")
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{what}: {len(bad)} answers with an HTTP status other than 200 "
                           f"(first {bad[0]})")
    if answer_bytes is None:
        return
    low, high = summary.done * answer_bytes, summary.started * answer_bytes
    if not low <= summary.data_bytes <= high:
        raise RuntimeError(
            f"{what}: {summary.data_bytes} bytes of answers for {summary.done} answered "
            f"requests, expected {answer_bytes} bytes each ({low}..{high}): some answers were "
            f"errors or not the expected answer")


def h2load_path() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


def run(target: Target, clients: int, seconds: float, warmup_s: float) -> LoadResult:
    """One closed-loop load of ``clients`` for ``warmup_s + seconds`` (plus 0.5 s for the last
    answers of the window to arrive), checked (``check``)."""
    what = f"h2load {'HTTP/1.1' if target.http1 else 'gRPC'} x {clients} on {target.url}"
    with tempfile.TemporaryDirectory() as tmp:
        body_path, log_path = f"{tmp}/body", f"{tmp}/log"
        with open(body_path, "wb") as f:
            f.write(target.body)
        args = [h2load_path(), "-t", "1", "-D", f"{round((warmup_s + seconds + 0.5) * 1000)}ms",
                f"--log-file={log_path}", "-d", body_path]
        args += ["--h1", "-c", str(clients), "-m", "1"] if target.http1 else [
            "-c", "1", "-m", str(clients)]
        for header in target.headers:
            args += ["-H", header]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(args + [target.url], capture_output=True, text=True,
                              timeout=warmup_s + seconds + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} exited with {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout)[-500:]}")
        with open(log_path) as f:
            latencies, statuses = parse_log(f.read(), warmup_s, seconds)
    summary = parse_summary(proc.stdout)
    check(summary, statuses, target.answer_bytes, what)
    if not latencies:
        raise RuntimeError(f"{what}: no request answered in the measured window")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return LoadResult(latencies, summary.done, cpu)
