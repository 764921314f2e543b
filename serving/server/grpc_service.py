"""gRPC front end: ``tensorflow.serving.PredictionService`` and ``ModelService``.

Servicers built on the official ``tensorflow-serving-api`` stubs, so unchanged TF Serving clients
work. Failures abort the RPC with TF Serving's status code and message; every request is counted
in the Prometheus metrics (``entrypoint="GRPC"``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

import grpc
import numpy as np
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.server import predict_wire
from serving.server.core import LOOP_REQUEST_BYTES, ServingCore, encode_outputs
from serving.server.errors import Code, ServingError, from_exception, invalid_argument
from serving.server.tensors import from_ndarray, to_ndarray


def _fill_spec(spec, servable, signature_name: str) -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature_name


def model_status_response(states) -> get_model_status_pb2.GetModelStatusResponse:
    resp = get_model_status_pb2.GetModelStatusResponse()
    for st in states:
        mvs = resp.model_version_status.add()
        mvs.version = st.version
        mvs.state = get_model_status_pb2.ModelVersionStatus.State.Value(st.state)
        mvs.status.SetInParent()
        if st.error is not None:
            mvs.status.error_code = int(st.error.code)
            mvs.status.error_message = st.error.message
    return resp


def metadata_response(servable, fields) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata for ``fields`` of ``servable`` (a Servable, or a function that returns
    it, called at the first ``signature_def`` field: TF Serving checks the request, then each
    field in turn, so an unsupported first field is named before an unknown model)."""
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for f in fields:
        if f != "signature_def":
            raise invalid_argument(f"Metadata field {f} is not supported")
        if callable(servable):
            servable = servable()
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    resp.model_spec.name = servable.name
    resp.model_spec.version.value = servable.version
    sdm = get_model_metadata_pb2.SignatureDefMap()
    for k, v in servable.signature_defs.items():
        sdm.signature_def[k].CopyFrom(v)
    resp.metadata["signature_def"].Pack(sdm)
    return resp


def _spec(request):
    """The request's ``model_spec``; INVALID_ARGUMENT "Missing ModelSpec" when it has none, as
    from TF Serving's Predict, Classify, Regress, GetModelMetadata and GetModelStatus."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    return request.model_spec


def _model_of(request) -> str:
    spec = getattr(request, "model_spec", None)
    if spec is not None:
        return spec.name
    tasks = getattr(request, "tasks", None)
    return tasks[0].model_spec.name if tasks else ""


class _Base:
    """Runs each RPC as a coroutine on the server's event loop; blocking work → ``executor``."""

    def __init__(self, core: ServingCore, executor):
        self.core = core
        self.executor = executor

    async def _call(self, api: str, request, context, fn, *, blocking: bool = True):
        """``fn(request, timeout_s)`` (in the executor when ``blocking``, else awaited); errors
        abort the RPC with TF Serving's status; every call is counted in the metrics."""
        start = time.perf_counter()
        model = ""
        status = "CANCELLED"  # unless it finishes either way below
        err = None
        try:
            model = _model_of(request)
            timeout_s = context.time_remaining()
            if blocking:
                response = await asyncio.get_running_loop().run_in_executor(
                    self.executor, fn, request, timeout_s)
            else:
                response = await fn(request, timeout_s)
            status = "OK"
            return response
        except Exception as exc:  # noqa: BLE001 - mapped to a gRPC status
            err = from_exception(exc)
            status = err.code.name
        finally:
            self.core.metrics.record(model, api, "GRPC", status,
                                     (time.perf_counter() - start) * 1e6)
        await context.abort(err.grpc_code, err.message)


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    """``gather_on_loop``: requests reach the loop in bursts (the native front end), so with
    batching on the loop may run their batch itself (``BatchScheduler.run_async``); ``grpcio``
    hands the loop one call at a time, so its requests wake a batch thread instead."""

    def __init__(self, core: ServingCore, executor, *, gather_on_loop: bool = False):
        super().__init__(core, executor)
        self.gather_on_loop = gather_on_loop

    async def Predict(self, request, context):
        if request.ByteSize() > LOOP_REQUEST_BYTES:
            return await self._call("predict", request, context, self._predict)
        return await self._call("predict", request, context, self._predict_async,
                                blocking=False)

    def _predict(self, request, timeout_s):
        """The blocking Predict (large requests: decoded and encoded off the event loop)."""
        servable = self.core.resolve_spec(_spec(request))
        inputs = {k: to_ndarray(v, k) for k, v in request.inputs.items()}
        sig, outputs = self.core.predict(servable, request.model_spec.signature_name, inputs,
                                         request.output_filter, timeout_s)
        return self._response(servable, sig, outputs)

    async def _predict_async(self, request, timeout_s):
        servable = self.core.resolve_spec(_spec(request))
        inputs = {k: to_ndarray(v, k) for k, v in request.inputs.items()}
        sig, outputs = await self.core.predict_async(
            servable, request.model_spec.signature_name, inputs, request.output_filter,
            timeout_s, self.executor, gather_on_loop=self.gather_on_loop)
        return await encode_outputs(outputs, self.executor, self._response, servable, sig,
                                    outputs)

    # -- bursts from the native front end --------------------------------------------------------
    async def predict_many(self, messages: list[bytes],
                           timeouts: list[float | None]) -> list[bytes | ServingError | None]:
        """Answers to several serialized ``PredictRequest``s that arrived together (the native
        front end's burst): with batching on, requests with the same model spec and output
        filter whose inputs have the same names, dtypes and inner shapes merge into tasks of up
        to ``max_batch_size`` rows (one batch-scheduler task and one model output for all of
        them); :mod:`serving.server.predict_wire` reads them and writes their answers. Each
        answer is a serialized ``PredictResponse``, a ``ServingError`` that each request would
        have met as well (a deadline, a full queue), or None: that request takes the general
        path (:meth:`Predict`), as does every request where the merged path does not apply
        (batching off, a request that does not parse or resolve, a merged task failing
        otherwise), so its answer and error are exactly that path's."""
        answers: list = [None] * len(messages)
        if self.core.batcher is None:
            return answers
        groups: dict[tuple, list] = {}
        for k, raw in enumerate(messages):
            member = self._mergeable(raw)
            if member is not None:
                groups.setdefault(member[0], []).append((k, *member[1:]))
        merge_ranges = self.core.batcher.merge_ranges
        chunks = []
        for (spec, output_filter, _), members in groups.items():
            try:
                model_spec = model_pb2.ModelSpec.FromString(spec)
                servable = self.core.resolve_spec(model_spec)
            except Exception:  # noqa: BLE001 - the general path names the error
                continue
            chunks += [(servable, model_spec.signature_name, output_filter, members[first:last])
                       for first, last in merge_ranges([member[2] for member in members])]
        await asyncio.gather(*(self._predict_chunk(*chunk, answers, timeouts)
                               for chunk in chunks))
        return answers

    @staticmethod
    def _mergeable(raw: bytes):
        """(group key, inputs, rows) of a request the merged path takes, or None."""
        if len(raw) > LOOP_REQUEST_BYTES:
            return None
        request = predict_wire.read_request(raw)
        if request is None:
            return None
        inputs = request.inputs
        rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        if len(rows) != 1 or -1 in rows:
            return None
        layout = tuple(sorted((k, a.dtype, a.shape[1:]) for k, a in inputs.items()))
        return (request.spec, request.output_filter, layout), inputs, rows.pop()

    async def _predict_chunk(self, servable, signature_name: str, output_filter: tuple,
                             chunk: list, answers: list, timeouts: list) -> None:
        """Run ``chunk``'s requests ((index, inputs, rows) each) as one task; their answers go
        to ``answers``."""
        start = time.perf_counter()
        inputs = chunk[0][1]
        merged = inputs if len(chunk) == 1 else {
            alias: np.concatenate([member[1][alias] for member in chunk]) for alias in inputs}
        waits = [timeouts[member[0]] for member in chunk]
        timeout_s = None if None in waits else max(waits)
        rows = [member[2] for member in chunk]
        try:
            sig, outputs = await self.core.predict_async(
                servable, signature_name, merged, output_filter, timeout_s, self.executor,
                gather_on_loop=self.gather_on_loop, requests=len(chunk))
            if not outputs or any(v.ndim == 0 or v.shape[0] != sum(rows)
                                  for v in outputs.values()):
                return  # not one output row per input row: each request on its own
            spec = model_pb2.ModelSpec()
            _fill_spec(spec, servable, sig.name)
            responses = await encode_outputs(outputs, self.executor, predict_wire.write_responses,
                                             spec.SerializeToString(deterministic=True), outputs,
                                             rows)
        except ServingError as exc:
            if exc.code not in (Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE):
                return
            responses, status = [exc] * len(chunk), exc.code.name
        except Exception:  # noqa: BLE001 - the general path answers each request
            return
        else:
            status = "OK"
        for member, response in zip(chunk, responses, strict=True):
            answers[member[0]] = response
        self.core.metrics.record(servable.name, "predict", "GRPC", status,
                                 (time.perf_counter() - start) * 1e6, requests=len(chunk))

    @staticmethod
    def _response(servable, sig, outputs) -> predict_pb2.PredictResponse:
        resp = predict_pb2.PredictResponse()
        _fill_spec(resp.model_spec, servable, sig.name)
        for k, v in outputs.items():
            from_ndarray(v, resp.outputs[k])
        return resp

    async def Classify(self, request, context):
        return await self._call("classify", request, context, self._classify)

    def _classify(self, request, timeout_s):
        servable = self.core.resolve_spec(_spec(request))
        resp = classification_pb2.ClassificationResponse()
        sig, _ = self.core.classify(servable, request.model_spec.signature_name, request.input,
                                    resp.result, timeout_s)
        _fill_spec(resp.model_spec, servable, sig.name)
        return resp

    async def Regress(self, request, context):
        return await self._call("regress", request, context, self._regress)

    def _regress(self, request, timeout_s):
        servable = self.core.resolve_spec(_spec(request))
        resp = regression_pb2.RegressionResponse()
        sig, _ = self.core.regress(servable, request.model_spec.signature_name, request.input,
                                   resp.result, timeout_s)
        _fill_spec(resp.model_spec, servable, sig.name)
        return resp

    async def MultiInference(self, request, context):
        return await self._call("multi_inference", request, context, self._multi)

    def _multi(self, request, timeout_s):
        # TF Serving looks up the first task's model (with no task, a spec without a name)
        servable = self.core.resolve_spec(request.tasks[0].model_spec if request.tasks
                                          else model_pb2.ModelSpec())
        return self.core.multi_inference(servable, request, inference_pb2.MultiInferenceResponse(),
                                         timeout_s)

    async def GetModelMetadata(self, request, context):
        return await self._call("get_model_metadata", request, context, self._metadata)

    def _metadata(self, request, timeout_s):
        spec = _spec(request)
        return metadata_response(lambda: self.core.resolve_spec(spec),
                                 list(request.metadata_field))


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore, reload_config: Callable[[object], None], executor):
        super().__init__(core, executor)
        self._reload = reload_config

    async def GetModelStatus(self, request, context):
        return await self._call("get_model_status", request, context, self._status)

    def _status(self, request, timeout_s):
        spec = _spec(request)  # (its version label plays no part, as in TF Serving)
        states = self.core.manager.status(
            spec.name, spec.version.value if spec.HasField("version") else None)
        return model_status_response(states)

    async def HandleReloadConfigRequest(self, request, context):
        start = time.perf_counter()
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, self._reload,
                                                             request.config)
        except Exception as exc:  # noqa: BLE001
            err = from_exception(exc)
            if not isinstance(exc, ServingError) and err.code == Code.INTERNAL:
                err = ServingError(Code.INVALID_ARGUMENT, str(exc))
            self.core.metrics.record("", "reload_config", "GRPC", err.code.name,
                                     (time.perf_counter() - start) * 1e6)
            await context.abort(err.grpc_code, err.message)
        self.core.metrics.record("", "reload_config", "GRPC", "OK",
                                 (time.perf_counter() - start) * 1e6)
        resp = model_management_pb2.ReloadConfigResponse()
        resp.status.error_code = 0
        return resp


def unary_methods(service, servicer) -> dict[str, tuple[Callable, Callable]]:
    """Every unary method of ``service`` (a ServiceDescriptor) on ``servicer``, by gRPC path
    (``/package.Service/Method``) → (``handle(raw, context)`` coroutine, response serializer:
    deterministic, map entries sorted by key, the bytes the merged Predict path writes too).

    Each ``handle`` parses the request's bytes itself: a request that is not a valid protobuf
    message ends with ``INTERNAL``, as in TF Serving (gRPC C++ answers a request it cannot parse
    so), instead of ``grpcio``'s ``UNKNOWN`` "Unexpected <class 'DecodeError'>".
    """
    methods = {}
    for method in service.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        methods[f"/{service.full_name}/{method.name}"] = (
            _parsing(getattr(servicer, method.name), request_class),
            functools.partial(response_class.SerializeToString, deterministic=True))
    return methods


def serving_methods(core: ServingCore, reload_config, executor, *, gather_on_loop: bool = False
                    ) -> tuple[dict[str, tuple[Callable, Callable]], PredictionServicer]:
    """(:func:`unary_methods` of ``PredictionService`` and ``ModelService``, the
    ``PredictionServicer``; ``gather_on_loop``: see :class:`PredictionServicer`)."""
    predictions = PredictionServicer(core, executor, gather_on_loop=gather_on_loop)
    methods = {
        **unary_methods(prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
                        predictions),
        **unary_methods(model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
                        ModelServicer(core, reload_config, executor)),
    }
    return methods, predictions


def generic_handlers(methods: dict[str, tuple[Callable, Callable]]) -> list:
    """``grpcio`` handlers of ``methods`` (:func:`serving_methods`), one per service."""
    services: dict[str, dict] = {}
    for path, (handle, serialize) in methods.items():
        service, name = path[1:].split("/")
        services.setdefault(service, {})[name] = grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=None, response_serializer=serialize)
    return [grpc.method_handlers_generic_handler(service, handlers)
            for service, handlers in services.items()]


def _parsing(method, request_class):
    parse = request_class.FromString

    async def handle(raw: bytes, context):
        try:
            request = parse(raw)
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INTERNAL, str(exc))
        return await method(request, context)

    return handle


async def start_grpc_server(core: ServingCore, reload_config, executor, *, address: str,
                            port: int, max_message_bytes: int,
                            max_concurrent_rpcs: int) -> tuple[grpc.aio.Server, int]:
    """Build and start the ``grpc.aio`` server on the running loop; → (server, bound port)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
    methods, _ = serving_methods(core, reload_config, executor)
    server.add_generic_rpc_handlers(generic_handlers(methods))
    host = f"[{address}]" if ":" in address else address
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"could not bind gRPC port {port} on {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"could not bind gRPC port {port} on {address}")
    await server.start()
    return server, bound
