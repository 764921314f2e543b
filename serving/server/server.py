"""``ModelServer``: the embedded TF-Serving-compatible server assembled from its parts.

::

    from serving.server import ModelServer, parse_flags
    server = ModelServer(parse_flags(["--model_name=mnist", "--model_base_path=/models/mnist",
                                      "--port=0", "--rest_api_port=0"]))
    server.start()            # loads every model (synchronously), then listens
    server.grpc_port, server.rest_port   # the bound ports (0 → a free port)
    ...
    server.stop()

``start`` loads the configured models before opening the ports (like ``tensorflow_model_server``).
Both APIs' requests run on one asyncio event loop in one thread: a request waiting for the model
holds no thread. Their connections are served by native I/O threads where ``setup.py`` built
them (:mod:`~serving.server.native_grpc` with libnghttp2 for gRPC,
:mod:`~serving.server.native_http` for REST; ``--grpc_front``, ``--rest_api_front``), else on the
loop itself (``grpc.aio``, :mod:`~serving.server.aio_http`). Blocking work — model runs with
batching off, classify/regress/multi-inference, status, metadata, config reloads — goes to two
thread pools (``--grpc_max_threads``, ``--rest_api_num_threads``); with batching on, the batch
scheduler's threads run the model and resolve the waiting requests (for requests that reach the
loop in bursts, REST's and the native gRPC front end's, the loop runs quick batches of them
itself).
After ``start``,
a polling thread then watches base paths for new versions every
``--file_system_poll_wait_seconds`` and, with ``--model_config_file_poll_wait_seconds``, the
config file for changes. After every load and unload the manager freezes the objects then alive
out of the garbage collector's way (:mod:`~serving.server.heap`, ``--python_gc_freeze``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from serving.server import config as cfg
from serving.server import native_grpc, native_http
from serving.server.aio_http import AsyncHttpServer, EventLoopThread
from serving.server.batching import BatchScheduler
from serving.server.core import ServingCore
from serving.server.errors import invalid_argument
from serving.server.grpc_service import serving_methods, start_grpc_server
from serving.server.heap import HEAP
from serving.server.manager import ModelManager
from serving.server.metrics import Metrics
from serving.server.options import ServerOptions
from serving.server.rest import FAST_BODY_BYTES, RestApi

log = logging.getLogger("serving.server")


class ModelServer:
    def __init__(self, options: ServerOptions):
        self.options = options
        self.metrics = Metrics()
        self.batching = (cfg.read_batching_file(options.batching_parameters_file)
                         if options.enable_batching else None)
        self.monitoring = cfg.read_monitoring_file(options.monitoring_config_file)
        self.batcher = BatchScheduler(self.batching, self.metrics) if self.batching else None
        self.manager = ModelManager(
            warmup=ServingCore.warmup if options.enable_model_warmup else None,
            on_unload=self.batcher.drop if self.batcher else None,
            heap=HEAP if options.python_gc_freeze else None,
            allow_labels_for_unavailable=options.allow_version_labels_for_unavailable_models,
            max_load_retries=options.max_num_load_retries,
            load_retry_interval_s=options.load_retry_interval_micros / 1e6)
        self.core = ServingCore(self.manager, self.metrics, self.batcher)
        self._grpc = None
        self._rest: AsyncHttpServer | native_http.NativeHttpServer | None = None
        self._loop: EventLoopThread | None = None
        self._executors: list[ThreadPoolExecutor] = []
        self._config_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._config_mtime = None
        self.grpc_port = 0
        self.rest_port = 0
        self.rest_front = ""  # "native" or "asyncio" once the REST server runs
        self.grpc_front = ""  # "native" or "grpcio" once the gRPC server runs

    # -- configuration ---------------------------------------------------------------------------
    def initial_models(self) -> list[cfg.ModelConfig]:
        o = self.options
        if o.model_config_file:
            self._config_mtime = _mtime(o.model_config_file)
            return cfg.read_model_config_file(o.model_config_file)
        return [cfg.ModelConfig(name=cfg.validate_model_name(o.model_name),
                                base_path=os.path.abspath(o.model_base_path))]

    def reload_config(self, server_config) -> None:
        """Apply a ``ModelServerConfig`` proto (HandleReloadConfigRequest), as TF Serving does:
        only a ``model_config_list`` (an empty request is INVALID_ARGUMENT, not "no models"),
        absolute base paths, labels checked before anything changes (see
        :meth:`ModelManager.set_config`)."""
        if server_config.WhichOneof("config") != "model_config_list":
            raise invalid_argument("ServerModelConfig type not supported by "
                                   "HandleReloadConfigRequest. Only ModelConfigList is currently "
                                   "supported")
        models = cfg.models_from_server_config(server_config)
        self.manager.set_config(models, reload=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> ModelServer:
        o = self.options
        self.manager.set_config(self.initial_models())
        self._loop = EventLoopThread("deepline-server-loop")
        grpc_pool = self._pool(o.grpc_threads, "deepline-grpc-worker")
        self._grpc, self.grpc_port = self._loop.run(self._grpc_server(grpc_pool))
        log.info("Running gRPC ModelServer at %s:%d (%s connections) ...", o.bind_address,
                 self.grpc_port, self.grpc_front)
        if o.rest_api_port > 0:
            api = RestApi(self.core, timeout_s=o.rest_api_timeout_in_ms / 1000.0,
                          metrics_path=(self.monitoring.prometheus_path
                                        if self.monitoring.prometheus_enabled else None),
                          executor=self._pool(o.rest_threads, "deepline-rest-worker"))
            self._rest = self._rest_server(api)
            self.rest_port = self._loop.run(self._rest.start(o.bind_address, o.rest_api_port))
            log.info("Exporting HTTP/REST API at:%s:%d (%s connections) ...", o.bind_address,
                     self.rest_port, self.rest_front)
        self.manager.start_polling(o.file_system_poll_wait_seconds)
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(target=self._watch_config,
                                                   name="deepline-config-poller", daemon=True)
            self._config_thread.start()
        return self

    async def _grpc_server(self, pool: ThreadPoolExecutor):
        """The gRPC server ``--grpc_front`` asks for (grpcio where native is not built), started
        on the loop → (server, bound port)."""
        o = self.options
        if o.grpc_front == "native":
            if native_grpc.available():
                self.grpc_front = "native"
                methods, predicts = serving_methods(self.core, self.reload_config, pool,
                                                    gather_on_loop=True)
                server = native_grpc.NativeGrpcServer(
                    methods, asyncio.get_running_loop(), predict_many=predicts.predict_many,
                    max_message_bytes=o.grpc_max_message_bytes)
                try:
                    return server, await server.start(o.bind_address, o.port)
                except OSError as exc:
                    raise OSError(f"could not bind gRPC port {o.port} on {o.bind_address}: "
                                  f"{exc}") from None
            log.warning("--grpc_front=native: serving.server._grpc_front is not built; grpcio "
                        "serves gRPC")
        self.grpc_front = "grpcio"
        return await start_grpc_server(
            self.core, self.reload_config, pool, address=o.bind_address, port=o.port,
            max_message_bytes=o.grpc_max_message_bytes,
            max_concurrent_rpcs=max(1024, 4 * o.grpc_threads))

    def _rest_server(self, api: RestApi):
        """The REST front end ``--rest_api_front`` asks for (asyncio where native is not
        built)."""
        o = self.options
        limits = dict(max_body_bytes=o.rest_api_max_body_bytes,
                      idle_timeout_s=o.rest_api_idle_timeout_seconds)
        if o.rest_api_front == "native":
            if native_http.available():
                self.rest_front = "native"
                return native_http.NativeHttpServer(api.handle_async, self._loop.loop, **limits,
                                                    predict_many=api.predict_many_async,
                                                    fast_body_bytes=FAST_BODY_BYTES)
            log.warning("--rest_api_front=native: serving.server._http_front is not built; "
                        "the asyncio front end serves REST")
        self.rest_front = "asyncio"
        return AsyncHttpServer(api.handle_async, self._loop.loop, **limits)

    def _pool(self, threads: int, name: str) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._executors.append(pool)
        return pool

    def _watch_config(self) -> None:
        path = self.options.model_config_file
        while not self._stop.wait(self.options.model_config_file_poll_wait_seconds):
            mtime = _mtime(path)
            if mtime is None or mtime == self._config_mtime:
                continue
            self._config_mtime = mtime
            try:
                self.manager.set_config(cfg.read_model_config_file(path))
                log.info("reloaded --model_config_file %s", path)
            except Exception as exc:  # noqa: BLE001 - keep serving the previous config
                log.error("could not apply --model_config_file %s: %s", path, exc)

    def wait(self) -> None:
        """Block until ``stop`` (or Ctrl-C in the caller)."""
        while not self._stop.wait(1.0):
            pass

    def stop(self, grace_s: float = 2.0) -> None:
        self._stop.set()
        self.manager.stop()
        if self._loop is not None:
            for what, closing in (("REST", self._rest and self._rest.close()),
                                  ("gRPC", self._grpc and self._grpc.stop(grace_s))):
                if closing is None:
                    continue
                try:
                    self._loop.run(closing, timeout=grace_s + 5)
                except Exception:  # noqa: BLE001 - shutting down regardless
                    log.exception("stopping the %s server failed", what)
            self._rest = self._grpc = None
            self._loop.stop()
            self._loop = None
        for pool in self._executors:
            pool.shutdown(wait=False, cancel_futures=True)
        self._executors = []
        if self.batcher is not None:
            self.batcher.stop()
        if self._config_thread is not None:
            self._config_thread.join(timeout=5)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _mtime(path: str):
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return None
