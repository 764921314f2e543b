"""Serving benchmark: the embedded server (gRPC and REST) vs in-process inference, LeNet-5 size.

A LeNet-5-sized Keras classifier (28×28×1 raw pixels → Rescaling → Conv 6@5×5 → AvgPool →
Conv 16@5×5 → AvgPool → Dense 120 → Dense 84 → Dense 10 softmax; untrained weights) is exported
with ``serving.export.export_model``. Baselines call the same SavedModel's ``serving_default``
concrete function in this process at batch 1 and batch 32, the way the server calls it
(``serving.server.flat_call.FlatCall``, prebuilt input tensors).

Two servers run as separate processes (``python -m serving``), batching off and on, side by side,
both with the default REST and gRPC front ends (the native ones, where they are built) and
TensorFlow's default thread pools (batching on: ``BATCHING_PARAMETERS``, ``max_batch_size`` 32
and ``batch_timeout_micros`` 1000, the value TF Serving's batching guide suggests); beside them,
for informational rows, run servers with batching on and ``--rest_api_front=asyncio``, with
``--grpc_front=grpcio``, with ``batch_timeout_micros`` 0, and with one TensorFlow thread per pool
(``ONE_THREAD_FLAGS``).
The load generator is ``h2load`` (nghttp2's native load generator, ``benchmarks/h2load.py``): C,
one thread, about 10–60 µs of CPU per request, where asyncio clients in Python spend about
0.2 ms per gRPC call on the same two cores and so measure themselves too. Closed loop: each client
sends its next request when the previous answer arrives (gRPC: concurrent streams on one HTTP/2
connection, as calls sharing one channel; REST: one keep-alive HTTP/1.1 connection per client;
one image per request, the request built once), and every answer is checked (gRPC: the correct
answer's length; REST: HTTP 200). Each (protocol, batching, clients) load runs in slices that
alternate with the other loads and the in-process baselines, so drifts in machine load (a shared
2-core machine) hit candidates and baselines alike; throughput = answered requests / measured
seconds, latencies per request. Python clients (one process of asyncio clients: the official
``grpc.aio`` ``PredictionServiceStub``, raw asyncio HTTP/1.1) run in the same rounds for
informational rows: what a Python client sees.

Rows (ratio = candidate / baseline):

- ``1 client p50``: server p50 vs in-process batch-1 p50 + 1 ms (goal <= 1.0: the server adds at
  most 1 ms), both measured in alternating slices.
- ``32 clients batching``: throughput with batching on vs off, gRPC and REST (goal >= 1.5).
- ``32 clients vs in-process batch 32``: server images/s vs in-process batch-32 images/s,
  gRPC and REST (goal >= 0.5).
- ``REST vs gRPC``: REST throughput vs gRPC throughput at 32 clients, batching on (goal >= 0.7).
- informational rows (goal ``>= 0.0``): the Python clients against h2load (1-client p50 and
  32-client throughput, batching on); in-process batch-1 p50 after 1 ms idle vs back to back
  (the server idles between one client's requests, and an idle machine answers a call more
  slowly); in-process batch-32 p50 after ``BUSY_GAP_S`` of other Python work vs back to back
  (a batching server's batch follows its event loop's writes and reads, and the call is slower
  then); the server's flat call vs the public ``fn(image=...)`` at batch 1; in-process
  batch 1 vs 32; the ceiling of a do-nothing
  ``grpc.aio`` Predict server and of a do-nothing REST server (this package's default REST front
  end, no JSON) at 32 clients; 32-client REST throughput (batching on) with the native front end
  vs the asyncio one, and gRPC throughput with the native front end vs grpcio's (where the
  native ones are built); 32-client throughput with ``batch_timeout_micros`` 1000 vs 0; the
  server with ``ONE_THREAD_FLAGS``
  against the default one (REST, batching on: 32-client throughput, also against in-process
  batch 32; 1-client p50; CPU per image); every measured throughput with p50/p99;
  and, for gRPC and REST at 32 clients with batching on, the CPU time the server and h2load
  spend per answered image against the CPU time per image the ">= 0.5" goal leaves on this
  machine (``os.cpu_count()`` cores / (0.5 × in-process batch-32 images/s)): above 1.0, the goal
  is out of reach even with every core busy all the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import h2load
from benchmarks.common import Row
from serving.server import native_grpc, native_http

MODEL = "lenet5_bench"
# Server-side batching for the "batching on" runs (TF Serving's BatchingParameters text proto).
# batch_timeout_micros: 1 ms, the value TF Serving's batching guide suggests ("slightly above
# zero, e.g. 1 millisecond, tends to smooth out batch sizes"): 32 clients' requests arriving over
# a millisecond or so make one batch, where with 0 the first ones run as soon as the loop goes
# quiet. An informational server runs BATCHING_PARAMETERS_NO_WAIT (0) beside it.
BATCH_TIMEOUT_MICROS = 1000
_BATCHING = ("max_batch_size {{ value: 32 }}\nbatch_timeout_micros {{ value: {} }}\n"
             "max_enqueued_batches {{ value: 1000 }}\nnum_batch_threads {{ value: 1 }}\n")
BATCHING_PARAMETERS = _BATCHING.format(BATCH_TIMEOUT_MICROS)
BATCHING_PARAMETERS_NO_WAIT = _BATCHING.format(0)

# The tuned server of the informational rows: one intra-op and one inter-op thread. On a 2-core
# machine TensorFlow's default pools (a thread per core each) spin and hand work between threads
# that the front end and the load generator need (serving/README.md, Performance).
ONE_THREAD_FLAGS = ("--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1")

# Python work before each call of the "after other work" in-process baseline: about what a
# 2-core machine's event loop spends writing and reading 32 REST clients' requests between two
# batches (serving/README.md).
BUSY_GAP_S = 0.003


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far, from ``/proc``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_and_export(root: str) -> str:
    import keras

    from serving.export import export_model

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(28, 28, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(6, 5, padding="same", activation="tanh")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Conv2D(16, 5, activation="tanh")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(120, activation="tanh")(x)
    x = keras.layers.Dense(84, activation="tanh")(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    export_model(keras.Model(inp, out), root, MODEL, task="classification")
    return os.path.join(root, MODEL)


def _pixels(batch: int) -> np.ndarray:
    """Raw MNIST-like pixels: integer values 0..255 as float32 (what clients send)."""
    return np.random.default_rng(batch).integers(0, 256, (batch, 28, 28, 1)).astype(np.float32)


def python_work(seconds: float) -> None:
    """Plain interpreter work (small dicts and lists, no sleeping, no TensorFlow) for about
    ``seconds``."""
    scratch: dict[int, list[int]] = {}
    steps = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        scratch[steps % 64] = [steps, steps + 1, steps + 2]
        steps += 1


# -- in-process baseline ------------------------------------------------------------------------
class InProcess:
    """The exported ``serving_default`` called in this process (prebuilt input tensors), the way
    the server calls it (``FlatCall``: one graph run, no per-call argument binding), or with
    ``public=True`` as ``fn(image=...)``."""

    def __init__(self, base: str):
        import tensorflow as tf

        from serving.server.flat_call import FlatCall

        version = max(int(v) for v in os.listdir(base) if v.isdigit())
        self.fn = tf.saved_model.load(os.path.join(base, str(version))).signatures[
            "serving_default"]
        self.flat = FlatCall.of(self.fn)
        self.images = {b: tf.constant(_pixels(b)) for b in (1, 32)}
        self.shapes = {b: {"image": tuple(t.shape)} for b, t in self.images.items()}
        for b in (1, 32):
            for _ in range(20):
                self.call(b)
                self.call(b, public=True)

    def call(self, batch: int, public: bool = False) -> None:
        image = self.images[batch]
        if public:
            self.fn(image=image)["probabilities"].numpy()
        else:
            self.flat({"image": image}, self.shapes[batch])["probabilities"].numpy()

    def latencies(self, batch: int, seconds: float, idle_s: float = 0.0,
                  public: bool = False, busy_s: float = 0.0) -> list[float]:
        """Call latencies for ``seconds``; with ``idle_s``, the process sleeps that long before
        each call (as a server idles for a round trip between one client's requests); with
        ``busy_s``, it runs other Python work that long (as a batching server's event loop
        writes and reads its clients' requests between two batches)."""
        lat = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if idle_s:
                time.sleep(idle_s)
            if busy_s:
                python_work(busy_s)
            t = time.perf_counter()
            self.call(batch, public)
            lat.append(time.perf_counter() - t)
        return lat


# -- load generator -----------------------------------------------------------------------------
def _grpc_request_bytes(image: np.ndarray) -> bytes:
    """A serialized ``PredictRequest``, built once (``tensor_content``, as ``tf.make_tensor_proto``
    writes it) without TensorFlow calls in the client."""
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    tensor = req.inputs["image"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in image.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = image.astype(np.float32).tobytes()
    return req.SerializeToString()


PREDICT_METHOD = "tensorflow.serving.PredictionService/Predict"
REST_PREDICT_PATH = f"/v1/models/{MODEL}:predict"


def _rest_body(image: np.ndarray) -> bytes:
    """A REST ``:predict`` body in the row format: ``{"instances": [...]}``."""
    return json.dumps({"instances": image.tolist()}).encode()


def _rest_request_bytes(image: np.ndarray, port: int) -> bytes:
    body = _rest_body(image)
    head = (f"POST {REST_PREDICT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _grpc_clients(port: int, clients: int, start_at: float, stop_at: float) -> tuple:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest.FromString(_grpc_request_bytes(_pixels(1)))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    await stub.Predict(req, timeout=60, wait_for_ready=True)
    lat: list[float] = []
    errors: list[str] = []

    async def client():
        while True:
            t = time.perf_counter()
            if t >= stop_at:
                return
            try:
                await stub.Predict(req, timeout=30)
            except grpc.RpcError as exc:
                errors.append(f"{exc.code()}: {exc.details()}"[:200])
                continue
            if t >= start_at:
                lat.append(time.perf_counter() - t)

    await asyncio.gather(*(client() for _ in range(clients)))
    await channel.close()
    return lat, errors


async def _rest_clients(port: int, clients: int, start_at: float, stop_at: float) -> tuple:
    """Keep-alive HTTP/1.1 connections on raw asyncio streams (one per client, no pipelining)."""
    request = _rest_request_bytes(_pixels(1), port)
    lat: list[float] = []
    errors: list[str] = []

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                t = time.perf_counter()
                if t >= stop_at:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:150]!r}")
                    continue
                if t >= start_at:
                    lat.append(time.perf_counter() - t)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return lat, errors


def _generator_main(conn) -> None:
    """The load-generator process: runs each requested load with asyncio clients."""
    import grpc  # noqa: F401 - imported once, before any clock starts
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: F401

    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        protocol, port, clients, seconds, warmup = job
        runner = _grpc_clients if protocol == "grpc" else _rest_clients
        start_at = time.perf_counter() + warmup
        try:
            conn.send(asyncio.run(runner(port, clients, start_at, start_at + seconds)))
        except Exception as exc:  # noqa: BLE001 - reported by the parent
            conn.send(([], [f"load generator failed: {type(exc).__name__}: {exc}"[:300]]))


def summarize(lat: list[float], seconds: float) -> dict:
    lat = sorted(lat)
    return {"throughput": len(lat) / seconds, "p50_ms": lat[len(lat) // 2] * 1e3,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, "n": len(lat)}


class LoadGenerator:
    """Closed-loop load from one separate process of Python asyncio clients (started once): what
    a Python client sees (informational rows; the goal rows use ``H2LoadGenerator``).

    Each client sends its next request when the previous answer arrives; gRPC clients share one
    ``grpc.aio`` channel with the official ``PredictionServiceStub``, REST clients each keep a
    raw keep-alive HTTP/1.1 connection. Requests are built once. Its CPU per request (about
    0.2 ms per gRPC call) is taken from the server's two cores, so it is not the goal rows'
    load generator.
    """

    def __init__(self):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_generator_main, args=(child,), daemon=True)
        self._proc.start()
        if not self._conn.poll(300) or self._conn.recv() != "ready":
            self.close()
            raise RuntimeError("the load generator process did not start in 300 s")

    @property
    def pid(self) -> int:
        return self._proc.pid

    def latencies(self, protocol: str, port: int, clients: int, seconds: float,
                  warmup: float = 1.0) -> list[float]:
        self._conn.send((protocol, port, clients, seconds, warmup))
        if not self._conn.poll(seconds + warmup + 120):
            raise RuntimeError(f"the load generator did not finish {protocol} x {clients}")
        lat, errors = self._conn.recv()
        if errors:
            raise RuntimeError(f"{len(errors)} failed {protocol} requests at {clients} clients: "
                               f"{errors[0]}")
        if not lat:
            raise RuntimeError(f"no {protocol} request completed at {clients} clients")
        return lat

    def run(self, protocol: str, port: int, clients: int, seconds: float,
            warmup: float = 1.0) -> dict:
        return summarize(self.latencies(protocol, port, clients, seconds, warmup), seconds)

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def grpc_answer(port: int, request: bytes) -> bytes:
    """The serialized answer to one raw ``Predict`` call (no client-side protobuf decoding)."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return channel.unary_unary(f"/{PREDICT_METHOD}")(request, timeout=60,
                                                         wait_for_ready=True)


def rest_answer(port: int, body: bytes) -> bytes:
    """The body of the answer to one REST ``:predict``; ``RuntimeError`` unless HTTP 200."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", REST_PREDICT_PATH, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"REST :predict on port {port}: HTTP {response.status}: "
                           f"{answer[:200]!r}")
    return answer


class H2LoadGenerator:
    """Closed-loop load from ``h2load`` (``benchmarks/h2load.py``), the goal rows' load
    generator, with the same ``latencies``/``run`` calls as ``LoadGenerator``.

    The first load on a port fetches one answer (a raw gRPC call or one REST request) and checks
    it is a LeNet-5 answer (ten probabilities); every gRPC answer of every load must then have
    its length, every REST answer HTTP status 200 (``benchmarks/h2load.py``).
    """

    def __init__(self):
        h2load.h2load_path()  # fail before any server starts when h2load is missing
        image = _pixels(1)
        self._requests = {"grpc": _grpc_request_bytes(image),
                          "rest": _rest_body(image)}
        self._targets: dict[tuple[str, int], h2load.Target] = {}

    def target(self, protocol: str, port: int) -> h2load.Target:
        key = (protocol, port)
        if key not in self._targets:
            request = self._requests[protocol]
            if protocol == "grpc":
                from tensorflow_serving.apis import predict_pb2

                answer = grpc_answer(port, request)
                probs = predict_pb2.PredictResponse.FromString(answer).outputs["probabilities"]
                size = len(probs.float_val) or len(probs.tensor_content) // 4
                target = h2load.grpc_target(port, PREDICT_METHOD, request, len(answer))
            else:
                answer = rest_answer(port, request)
                size = len(json.loads(answer)["predictions"][0]["probabilities"])
                target = h2load.rest_target(port, REST_PREDICT_PATH, request)
            if size != 10:
                raise RuntimeError(f"{protocol} answer on port {port} has {size} "
                                   f"probabilities, not 10")
            self._targets[key] = target
        return self._targets[key]

    def load(self, protocol: str, port: int, clients: int, seconds: float,
             warmup: float = 1.0) -> h2load.LoadResult:
        return h2load.run(self.target(protocol, port), clients, seconds, warmup)

    def latencies(self, protocol: str, port: int, clients: int, seconds: float,
                  warmup: float = 1.0) -> list[float]:
        return self.load(protocol, port, clients, seconds, warmup).latencies

    def run(self, protocol: str, port: int, clients: int, seconds: float,
            warmup: float = 1.0) -> dict:
        return summarize(self.latencies(protocol, port, clients, seconds, warmup), seconds)


# -- do-nothing servers: the front ends' ceiling without a model ----------------------------------
def _noop_main(grpc_port: int, rest_port: int, ready, stop) -> None:
    """A ``grpc.aio`` Predict and a REST server (this package's default REST front end: the
    native one where it is built, else the asyncio one) that answer every request with a fixed
    LeNet-sized response, without decoding it or running a model."""
    import grpc
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.server.aio_http import AsyncHttpServer
    from serving.server.native_http import NativeHttpServer

    response = predict_pb2.PredictResponse()
    response.model_spec.name = MODEL
    probs = response.outputs["probabilities"]
    probs.dtype = types_pb2.DT_FLOAT
    probs.tensor_shape.dim.add(size=1)
    probs.tensor_shape.dim.add(size=10)
    probs.float_val.extend([0.1] * 10)
    classes = response.outputs["classes"]
    classes.dtype = types_pb2.DT_INT64
    classes.tensor_shape.dim.add(size=1)
    classes.int64_val.append(3)
    text = json.dumps({"predictions": [{"classes": 3, "probabilities": [0.1] * 10}]})

    class Noop(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):  # noqa: N802 - gRPC naming
            return response

    async def app(method, target, body):
        return 200, "application/json", text

    async def main():
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Noop(), server)
        server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
        loop = asyncio.get_running_loop()
        front = NativeHttpServer if native_http.available() else AsyncHttpServer
        http = front(app, loop, max_body_bytes=1 << 26, idle_timeout_s=60)
        await http.start("127.0.0.1", rest_port)
        ready.set()
        await loop.run_in_executor(None, stop.wait)
        await http.close()
        await server.stop(0)

    asyncio.run(main())


@contextlib.contextmanager
def noop_servers():
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    grpc_port, rest_port = _free_port(), _free_port()
    proc = ctx.Process(target=_noop_main, args=(grpc_port, rest_port, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(300):
            raise RuntimeError("the do-nothing servers did not start in 300 s")
        yield grpc_port, rest_port
    finally:
        stop.set()
        proc.join(timeout=20)
        if proc.is_alive():
            proc.terminate()
            proc.join()


@contextlib.contextmanager
def server_process(base: str, batching: bool, root: str, rest_front: str = "native",
                   extra_flags: tuple[str, ...] = (), name: str = "",
                   parameters: str = BATCHING_PARAMETERS):
    """A server on free ports; ``rest_front``: its ``--rest_api_front``; ``extra_flags``: more
    flags; ``name``: a suffix for its log's and batching file's names; ``parameters``: its
    batching parameters (with ``batching``)."""
    grpc_port, rest_port = _free_port(), _free_port()
    args = [sys.executable, "-m", "serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
            f"--model_name={MODEL}", f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=0", f"--rest_api_front={rest_front}", *extra_flags]
    if batching:
        params = os.path.join(root, f"batching{name}.config")
        with open(params, "w") as f:
            f.write(parameters)
        args += ["--enable_batching", f"--batching_parameters_file={params}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    log_path = os.path.join(root, f"server-batching-{'on' if batching else 'off'}-"
                                  f"{rest_front}{name}.log")
    log = open(log_path, "wb")  # a file, not a pipe nobody reads: the server never blocks on it
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        import http.client

        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                with open(log_path, "rb") as f:
                    raise RuntimeError(f"server exited: {f.read().decode()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=2)
                conn.request("GET", f"/v1/models/{MODEL}")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 120 s")
            time.sleep(0.2)
        yield grpc_port, rest_port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def interleaved_one_client(model: InProcess, gen: H2LoadGenerator, pygen: LoadGenerator,
                           ports: dict, seconds: float, rounds: int = 4) -> dict:
    """p50 of the in-process batch-1 call (back to back as the server calls it and as
    ``fn(image=...)``, and after 1 ms idle), of 1-client gRPC/REST from h2load, and of 1-client
    gRPC from the official ``grpc.aio`` stub, measured in alternation (``rounds`` slices each) so
    a change in machine load hits baselines and server alike."""
    lat: dict[str, list[float]] = {"inproc": [], "inproc_public": [], "inproc_idle": [],
                                   "grpc": [], "rest": [], "grpc_python": []}
    for _ in range(rounds):
        lat["inproc"] += model.latencies(1, seconds / rounds)
        lat["inproc_public"] += model.latencies(1, seconds / rounds, public=True)
        lat["inproc_idle"] += model.latencies(1, seconds / rounds, idle_s=0.001)
        for protocol, port in ports.items():
            lat[protocol] += gen.latencies(protocol, port, 1, seconds / rounds, warmup=0.2)
        lat["grpc_python"] += pygen.latencies("grpc", ports["grpc"], 1, seconds / rounds,
                                              warmup=0.2)
    return {k: statistics.median(v) * 1e3 for k, v in lat.items()}


def cpu_per_request(gen: H2LoadGenerator, protocol: str, port: int, server_pid: int,
                    seconds: float) -> float:
    """CPU µs that the server and h2load together spend per answered request, over one
    ``seconds`` load of 32 clients (every answered request counted, warm-up included)."""
    before = cpu_seconds(server_pid)
    result = gen.load(protocol, port, 32, seconds, warmup=0.0)
    return (cpu_seconds(server_pid) - before + result.cpu_seconds) / result.answered * 1e6


def measure(quick: bool) -> dict:
    """Every measurement; the two servers (batching off and on) run side by side and the loads
    alternate between them and the in-process baselines in ``rounds`` slices, so drifts in
    machine load hit candidates and baselines alike."""
    seconds = 2.0 if quick else 5.0
    rounds = 2 if quick else 3
    results: dict = {}
    with contextlib.ExitStack() as stack:
        gen = H2LoadGenerator()
        root = stack.enter_context(tempfile.TemporaryDirectory())
        pygen = stack.enter_context(LoadGenerator())
        base = build_and_export(root)
        model = InProcess(base)
        servers, pids = {}, {}
        for batching in (False, True):
            grpc_port, rest_port, pids[batching] = stack.enter_context(
                server_process(base, batching, root))
            servers[batching] = {"grpc": grpc_port, "rest": rest_port}
        asyncio_port = None  # the REST front end the default replaced, for comparison
        if native_http.available():
            _, asyncio_port, _ = stack.enter_context(
                server_process(base, True, root, rest_front="asyncio"))
        no_wait = stack.enter_context(server_process(
            base, True, root, name="-no-wait", parameters=BATCHING_PARAMETERS_NO_WAIT))
        grpcio_port = None  # the gRPC front end the default replaced, for comparison
        if native_grpc.available():
            grpcio_port, _, _ = stack.enter_context(server_process(
                base, True, root, extra_flags=("--grpc_front=grpcio",), name="-grpcio"))
        _, one_thread_port, one_thread_pid = stack.enter_context(
            server_process(base, True, root, extra_flags=ONE_THREAD_FLAGS, name="-one-thread"))
        results["one_client"] = interleaved_one_client(model, gen, pygen, servers[False],
                                                       seconds)
        print(f"[bench_serving] 1 client, interleaved p50 ms: {results['one_client']}",
              flush=True)
        lat: dict = {}
        for _ in range(rounds):
            for batch in (1, 32):  # the in-process baselines take their slices too
                lat.setdefault(("inproc", batch), []).extend(
                    model.latencies(batch, seconds / rounds))
            lat.setdefault(("inproc_busy", 32), []).extend(
                model.latencies(32, seconds / rounds, busy_s=BUSY_GAP_S))
            for clients in (1, 8, 32):
                for protocol in ("grpc", "rest"):
                    for batching in (False, True):
                        key = (protocol, batching, clients)
                        lat.setdefault(key, []).extend(gen.latencies(
                            protocol, servers[batching][protocol], clients, seconds / rounds,
                            warmup=0.5))
            if asyncio_port is not None:
                lat.setdefault(("rest_asyncio", True, 32), []).extend(gen.latencies(
                    "rest", asyncio_port, 32, seconds / rounds, warmup=0.5))
            if grpcio_port is not None:
                lat.setdefault(("grpc_grpcio", True, 32), []).extend(gen.latencies(
                    "grpc", grpcio_port, 32, seconds / rounds, warmup=0.5))
            for protocol, port in (("grpc", no_wait[0]), ("rest", no_wait[1])):
                lat.setdefault((f"{protocol}_no_wait", True, 32), []).extend(gen.latencies(
                    protocol, port, 32, seconds / rounds, warmup=0.5))
            for clients in (1, 32):
                lat.setdefault(("rest_one_thread", True, clients), []).extend(gen.latencies(
                    "rest", one_thread_port, clients, seconds / rounds, warmup=0.5))
            for protocol in ("grpc", "rest"):
                lat.setdefault(("python", protocol), []).extend(pygen.latencies(
                    protocol, servers[True][protocol], 32, seconds / rounds, warmup=0.5))
        results["inproc"] = {
            batch: {"p50_ms": statistics.median(lat[("inproc", batch)]) * 1e3,
                    "images_per_s": batch * len(lat[("inproc", batch)])
                    / sum(lat[("inproc", batch)])}
            for batch in (1, 32)}
        print(f"[bench_serving] in-process: {results['inproc']}", flush=True)
        results["inproc_busy_p50_ms"] = statistics.median(lat[("inproc_busy", 32)]) * 1e3
        for key, values in lat.items():
            if not key[0].startswith("inproc"):
                results[key] = summarize(values, seconds)
                print(f"[bench_serving] {key}: {results[key]}", flush=True)
        for protocol in ("grpc", "rest"):
            results[("cpu", protocol)] = cpu_per_request(gen, protocol, servers[True][protocol],
                                                         pids[True], seconds)
            print(f"[bench_serving] CPU µs per image, {protocol} x 32, batching on: "
                  f"{results[('cpu', protocol)]:.0f}", flush=True)
        results[("cpu", "rest_one_thread")] = cpu_per_request(gen, "rest", one_thread_port,
                                                              one_thread_pid, seconds)
        print(f"[bench_serving] CPU µs per image, REST x 32, batching on, one TensorFlow thread "
              f"per pool: {results[('cpu', 'rest_one_thread')]:.0f}", flush=True)
        with noop_servers() as (grpc_port, rest_port):
            for protocol, port in (("grpc", grpc_port), ("rest", rest_port)):
                results[("noop", protocol)] = gen.run(protocol, port, 32, seconds)
                print(f"[bench_serving] do-nothing {protocol}: {results[('noop', protocol)]}",
                      flush=True)
    return results


def rows(quick: bool) -> list[Row]:
    r = measure(quick)
    inproc = r["inproc"]
    one = r["one_client"]
    b32 = inproc[32]["images_per_s"]
    out = [
        Row("serving: 1 client gRPC p50 (batching off) vs in-process batch-1 p50 + 1 ms",
            "gRPC p50", "in-process p50 + 1 ms", one["grpc"], one["inproc"] + 1.0, "ms",
            "<= 1.0"),
        Row("serving: 1 client REST p50 (batching off) vs in-process batch-1 p50 + 1 ms",
            "REST p50", "in-process p50 + 1 ms", one["rest"], one["inproc"] + 1.0, "ms",
            "<= 1.0"),
        Row("serving: 32 clients gRPC throughput, batching on vs off",
            "batching on", "batching off", r[("grpc", True, 32)]["throughput"],
            r[("grpc", False, 32)]["throughput"], "img/s", ">= 1.5"),
        Row("serving: 32 clients REST throughput, batching on vs off",
            "batching on", "batching off", r[("rest", True, 32)]["throughput"],
            r[("rest", False, 32)]["throughput"], "img/s", ">= 1.5"),
        Row("serving: 32 clients gRPC (batching on) vs in-process batch 32",
            "server img/s", "in-process b32 img/s", r[("grpc", True, 32)]["throughput"],
            b32, "img/s", ">= 0.5"),
        Row("serving: 32 clients REST (batching on) vs in-process batch 32",
            "server img/s", "in-process b32 img/s", r[("rest", True, 32)]["throughput"],
            b32, "img/s", ">= 0.5"),
        Row("serving: 32 clients REST vs gRPC throughput (batching on)",
            "REST", "gRPC", r[("rest", True, 32)]["throughput"],
            r[("grpc", True, 32)]["throughput"], "img/s", ">= 0.7"),
        Row("serving (info): 1 client gRPC p50 (batching off), the official grpc.aio stub "
            "as client vs h2load", "grpc.aio stub p50", "h2load p50", one["grpc_python"],
            one["grpc"], "ms", ">= 0.0"),
        Row("serving (info): 32 clients gRPC throughput (batching on), Python clients (the "
            "official grpc.aio stub, one process) vs h2load", "Python clients", "h2load",
            r[("python", "grpc")]["throughput"], r[("grpc", True, 32)]["throughput"], "img/s",
            ">= 0.0"),
        Row("serving (info): 32 clients REST throughput (batching on), Python clients (asyncio "
            "HTTP/1.1, one process) vs h2load", "Python clients", "h2load",
            r[("python", "rest")]["throughput"], r[("rest", True, 32)]["throughput"], "img/s",
            ">= 0.0"),
        Row("serving (info): in-process batch-1 p50 after 1 ms idle vs back to back (a "
            "server's calls follow an idle round trip)", "after 1 ms idle", "back to back",
            one["inproc_idle"], one["inproc"], "ms", ">= 0.0"),
        Row(f"serving (info): in-process batch-32 p50 after {BUSY_GAP_S * 1e3:g} ms of other "
            "Python work vs back to back (a batching server's batches follow its event loop's "
            "writes and reads)", f"after {BUSY_GAP_S * 1e3:g} ms of work", "back to back",
            r["inproc_busy_p50_ms"], inproc[32]["p50_ms"], "ms", ">= 0.0"),
        Row("serving (info): in-process batch-1 p50, the server's call (FlatCall: one graph run) "
            "vs the public signature call fn(image=...)", "FlatCall", "fn(image=...)",
            one["inproc"], one["inproc_public"], "ms", ">= 0.0"),
        Row("serving (info): in-process batch 1 vs batch 32 throughput",
            "in-process b1 img/s", "in-process b32 img/s", inproc[1]["images_per_s"],
            b32, "img/s", ">= 0.0"),
        Row("serving (info): do-nothing grpc.aio Predict server (no model, no decoding), 32 "
            "clients, vs in-process batch 32", "do-nothing req/s", "in-process b32 img/s",
            r[("noop", "grpc")]["throughput"], b32, "req/s", ">= 0.0"),
        Row("serving (info): do-nothing REST server (the default front end, no model, no "
            "JSON), 32 clients,"
            " vs in-process batch 32", "do-nothing req/s", "in-process b32 img/s",
            r[("noop", "rest")]["throughput"], b32, "req/s", ">= 0.0"),
    ]
    if ("rest_asyncio", True, 32) in r:
        out.append(Row(
            "serving (info): 32 clients REST throughput (batching on), the native front end (C "
            "I/O thread, the default) vs --rest_api_front=asyncio (the event loop)",
            "native", "asyncio", r[("rest", True, 32)]["throughput"],
            r[("rest_asyncio", True, 32)]["throughput"], "img/s", ">= 0.0"))
    if ("grpc_grpcio", True, 32) in r:
        out.append(Row(
            "serving (info): 32 clients gRPC throughput (batching on), the native front end (C "
            "I/O thread with libnghttp2, the default) vs --grpc_front=grpcio (grpc.aio)",
            "native", "grpcio", r[("grpc", True, 32)]["throughput"],
            r[("grpc_grpcio", True, 32)]["throughput"], "img/s", ">= 0.0"))
    for protocol, label in (("grpc", "gRPC"), ("rest", "REST")):
        out.append(Row(
            f"serving (info): 32 clients {label} throughput (batching on), batch_timeout_micros "
            f"{BATCH_TIMEOUT_MICROS} (the benchmark's) vs 0", f"{BATCH_TIMEOUT_MICROS} µs",
            "0 µs", r[(protocol, True, 32)]["throughput"],
            r[(f"{protocol}_no_wait", True, 32)]["throughput"], "img/s", ">= 0.0"))
    one_thread = " ".join(ONE_THREAD_FLAGS)
    out += [
        Row(f"serving (info): 32 clients REST (batching on), server with {one_thread}, vs "
            "in-process batch 32", "server img/s", "in-process b32 img/s",
            r[("rest_one_thread", True, 32)]["throughput"], b32, "img/s", ">= 0.0"),
        Row(f"serving (info): 32 clients REST throughput (batching on), server with {one_thread}"
            " vs TensorFlow's default thread pools", "one thread per pool", "default pools",
            r[("rest_one_thread", True, 32)]["throughput"], r[("rest", True, 32)]["throughput"],
            "img/s", ">= 0.0"),
        Row(f"serving (info): 1 client REST p50 (batching on), server with {one_thread} vs "
            "TensorFlow's default thread pools", "one thread per pool", "default pools",
            r[("rest_one_thread", True, 1)]["p50_ms"], r[("rest", True, 1)]["p50_ms"], "ms",
            ">= 0.0"),
        Row(f"serving (info): CPU time per image, server + h2load, 32 clients REST (batching "
            f"on), server with {one_thread} vs TensorFlow's default thread pools",
            "one thread per pool", "default pools", r[("cpu", "rest_one_thread")],
            r[("cpu", "rest")], "µs", ">= 0.0"),
    ]
    budget = (os.cpu_count() or 1) / (0.5 * b32) * 1e6  # CPU µs per image at the >= 0.5 goal
    for protocol, label in (("grpc", "gRPC"), ("rest", "REST")):
        out.append(Row(
            f"serving (info): CPU time per image, server + h2load, 32 clients {label} "
            f"(batching on), vs the CPU time per image the >= 0.5 goal leaves "
            f"({os.cpu_count()} cores / (0.5 x in-process b32 img/s))", "server + h2load",
            "budget at the goal", r[("cpu", protocol)], budget, "µs", ">= 0.0"))
    for protocol in ("grpc", "rest"):
        for batching in (False, True):
            for clients in (1, 8, 32):
                m = r[(protocol, batching, clients)]
                out.append(Row(
                    f"serving (info): {protocol} {clients} clients, batching "
                    f"{'on' if batching else 'off'}: p99 vs p50 latency "
                    f"({m['throughput']:.0f} req/s)",
                    "p99", "p50", m["p99_ms"], m["p50_ms"], "ms", ">= 0.0"))
    return out


if __name__ == "__main__":
    from benchmarks.common import markdown_table

    print(markdown_table("Serving", rows(quick="--quick" in sys.argv)))
