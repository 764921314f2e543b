"""Serving benchmark: the embedded server (gRPC and REST) vs in-process inference, LeNet-5 size.

A LeNet-5-sized Keras classifier (28×28×1 raw pixels → Rescaling → Conv 6@5×5 → AvgPool →
Conv 16@5×5 → AvgPool → Dense 120 → Dense 84 → Dense 10 softmax; untrained weights) is exported
with ``serving.export.export_model``. Baselines call the same SavedModel's ``serving_default``
concrete function in this process at batch 1 and batch 32.

The server runs as a separate process (``python -m serving``), with batching off and on. The load
generator runs in worker processes (closed loop: each client sends its next request when the
previous answer arrives; gRPC stubs or keep-alive ``http.client`` connections on loopback), bounded
in time; throughput = answered requests / measured seconds, latencies per request.

Rows (ratio = candidate / baseline):

- ``1 client p50``: server p50 vs in-process batch-1 p50 + 1 ms (goal <= 1.0: the server adds at
  most 1 ms).
- ``32 clients batching``: throughput with batching on vs off (goal >= 1.5).
- ``32 clients vs in-process batch 32``: server images/s vs in-process batch-32 images/s
  (goal >= 0.5).
- ``REST vs gRPC``: REST throughput vs gRPC throughput at 32 clients, batching on (goal >= 0.7).
- informational rows (goal ``>= 0.0``) with every measured throughput and p50/p99.
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

from benchmarks.common import Row

MODEL = "lenet5_bench"
# Server-side batching for the "batching on" runs (TF Serving's BatchingParameters text proto).
BATCHING_PARAMETERS = ("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 0 }\n"
                       "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 1 }\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


# -- in-process baseline ------------------------------------------------------------------------
def in_process(base: str, seconds: float) -> dict:
    import tensorflow as tf

    version = max(int(v) for v in os.listdir(base) if v.isdigit())
    fn = tf.saved_model.load(os.path.join(base, str(version))).signatures["serving_default"]
    out = {}
    for batch in (1, 32):
        image = tf.constant(_pixels(batch))
        for _ in range(20):
            fn(image=image)["probabilities"].numpy()
        lat = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            fn(image=image)["probabilities"].numpy()
            lat.append(time.perf_counter() - t)
        out[batch] = {"p50_ms": statistics.median(lat) * 1e3,
                      "images_per_s": batch * len(lat) / sum(lat)}
    return out


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


def _rest_request_bytes(image: np.ndarray, port: int) -> bytes:
    body = json.dumps({"instances": image.tolist()}).encode()
    head = (f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
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


def _client_worker(protocol, port, clients, seconds, warmup, ready, go, results) -> None:
    """One load-generator process: ``clients`` closed-loop asyncio clients → ``results``."""
    if protocol == "grpc":  # import before the clock starts (tensorflow_serving pulls in TF)
        import grpc  # noqa: F401
        from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: F401
    runner = _grpc_clients if protocol == "grpc" else _rest_clients
    ready.release()
    go.wait(timeout=300)
    start_at = time.perf_counter() + warmup
    try:
        results.put(asyncio.run(runner(port, clients, start_at, start_at + seconds)))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        results.put(([], [f"load generator failed: {type(exc).__name__}: {exc}"[:300]]))


def load(protocol: str, port: int, clients: int, seconds: float, warmup: float = 1.0,
         processes: int = 1) -> dict:
    """Closed-loop load: ``clients`` asyncio clients in ``processes`` processes, started together.

    One asyncio process is enough: its per-request cost (~0.2 ms gRPC, ~0.05 ms REST) is below
    the server's, and a second process only takes CPU from the server on a 2-core machine.
    """
    procs = min(clients, processes)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_client_worker,
                           args=(protocol, port, n, seconds, warmup, ready, go, results),
                           daemon=True) for n in per]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 300
        started = 0
        while started < len(workers):
            if ready.acquire(timeout=0.5):
                started += 1
            elif any(not w.is_alive() for w in workers):
                raise RuntimeError("a load generator process died during start-up")
            elif time.monotonic() > deadline:
                raise RuntimeError("load generator processes did not start in 300 s")
        go.set()
        parts = [results.get(timeout=seconds + warmup + 120) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.terminate()
    lat = sorted(x for p, _ in parts for x in p)
    errors = [e for _, es in parts for e in es]
    if errors:
        raise RuntimeError(f"{len(errors)} failed {protocol} requests at {clients} clients: "
                           f"{errors[0]}")
    if not lat:
        raise RuntimeError(f"no {protocol} request completed at {clients} clients")
    return {"throughput": len(lat) / seconds, "p50_ms": lat[len(lat) // 2] * 1e3,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, "n": len(lat)}


@contextlib.contextmanager
def server_process(base: str, batching: bool, root: str):
    grpc_port, rest_port = _free_port(), _free_port()
    args = [sys.executable, "-m", "serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
            f"--model_name={MODEL}", f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=0"]
    if batching:
        params = os.path.join(root, "batching.config")
        with open(params, "w") as f:
            f.write(BATCHING_PARAMETERS)
        args += ["--enable_batching", f"--batching_parameters_file={params}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        import http.client

        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
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
        yield grpc_port, rest_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(quick: bool) -> dict:
    seconds = 2.0 if quick else 5.0
    results: dict = {}
    with tempfile.TemporaryDirectory() as root:
        base = build_and_export(root)
        results["inproc"] = in_process(base, seconds)
        for batching in (False, True):
            with server_process(base, batching, root) as (grpc_port, rest_port):
                for protocol, port in (("grpc", grpc_port), ("rest", rest_port)):
                    for clients in (1, 8, 32):
                        key = (protocol, batching, clients)
                        results[key] = load(protocol, port, clients, seconds)
                        print(f"[bench_serving] {key}: {results[key]}", flush=True)
    return results


def rows(quick: bool) -> list[Row]:
    r = measure(quick)
    inproc = r["inproc"]
    out = [
        Row("serving: 1 client gRPC p50 (batching off) vs in-process batch-1 p50 + 1 ms",
            "gRPC p50", "in-process p50 + 1 ms", r[("grpc", False, 1)]["p50_ms"],
            inproc[1]["p50_ms"] + 1.0, "ms", "<= 1.0"),
        Row("serving: 1 client REST p50 (batching off) vs in-process batch-1 p50 + 1 ms",
            "REST p50", "in-process p50 + 1 ms", r[("rest", False, 1)]["p50_ms"],
            inproc[1]["p50_ms"] + 1.0, "ms", "<= 1.0"),
        Row("serving: 32 clients gRPC throughput, batching on vs off",
            "batching on", "batching off", r[("grpc", True, 32)]["throughput"],
            r[("grpc", False, 32)]["throughput"], "img/s", ">= 1.5"),
        Row("serving: 32 clients gRPC (batching on) vs in-process batch 32",
            "server img/s", "in-process b32 img/s", r[("grpc", True, 32)]["throughput"],
            inproc[32]["images_per_s"], "img/s", ">= 0.5"),
        Row("serving: 32 clients REST vs gRPC throughput (batching on)",
            "REST", "gRPC", r[("rest", True, 32)]["throughput"],
            r[("grpc", True, 32)]["throughput"], "img/s", ">= 0.7"),
        Row("serving (info): in-process batch 1 vs batch 32 throughput",
            "in-process b1 img/s", "in-process b32 img/s", inproc[1]["images_per_s"],
            inproc[32]["images_per_s"], "img/s", ">= 0.0"),
    ]
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
