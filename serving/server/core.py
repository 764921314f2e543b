"""The protocol-independent request path shared by the gRPC and REST front ends.

``ServingCore`` resolves a model spec (name + version or label) to a loaded servable, validates
inputs against the signature, runs it (through the batch scheduler when batching is on, else
directly on the calling thread), and applies the output filter. Warm-up replays a version's
``assets.extra/tf_serving_warmup_requests`` through the same path before it is served.

:meth:`ServingCore.predict_async` is the same path for an event loop: the model runs in an
executor (batching off) or the batch scheduler resolves an asyncio future (batching on), so
nothing blocks the loop; only a call known to be quick, with no other predict in flight, runs on
the loop itself.
"""

from __future__ import annotations

import asyncio

import numpy as np

from serving.server import inference
from serving.server.batching import BatchScheduler
from serving.server.manager import ModelManager
from serving.server.metrics import Metrics
from serving.server.servable import Servable, Signature, input_values
from serving.server.tensors import to_ndarray

# What the event loop does itself: requests up to LOOP_REQUEST_BYTES are decoded there, outputs
# up to LOOP_OUTPUT_VALUES values encoded there; larger ones go to the executor so one big
# request never stalls the other connections.
LOOP_REQUEST_BYTES = 256 * 1024
LOOP_OUTPUT_VALUES = 65536

# With batching off, a model call runs on the event loop itself when it is the only predict in
# flight there and the signature's latest run, with at least as many input values, took at most
# INLINE_RUN_SECONDS: no other predict is waiting for the loop (a request arriving meanwhile
# waits at most about that long), and the call saves two thread hand-offs (measured on 2 cores,
# LeNet-5 at 1 client: p50 about 0.2 ms lower over gRPC, 0.3 ms over REST). Any other call goes
# to the executor.
INLINE_RUN_SECONDS = 0.002


async def encode_outputs(outputs: dict[str, np.ndarray], executor, encode, *args):
    """``encode(*args)`` on the loop for small ``outputs``, in ``executor`` for large ones."""
    if sum(v.size for v in outputs.values()) > LOOP_OUTPUT_VALUES:
        return await asyncio.get_running_loop().run_in_executor(executor, encode, *args)
    return encode(*args)


class ServingCore:
    def __init__(self, manager: ModelManager, metrics: Metrics,
                 batcher: BatchScheduler | None = None):
        self.manager = manager
        self.metrics = metrics
        self.batcher = batcher
        self._loop_predicts = 0  # unbatched predict_async calls in flight (one loop)

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        return self.manager.resolve(name, version, label)

    def resolve_spec(self, model_spec) -> Servable:
        """``tensorflow.serving.ModelSpec`` → Servable."""
        which = model_spec.WhichOneof("version_choice")
        version = model_spec.version.value if which == "version" else None
        label = model_spec.version_label if which == "version_label" else None
        return self.manager.resolve(model_spec.name, version, label)

    def run(self, servable: Servable, sig: Signature, inputs: dict[str, np.ndarray],
            timeout_s: float | None = None) -> dict[str, np.ndarray]:
        if self.batcher is not None:
            return self.batcher.run(servable, sig, inputs, timeout_s)
        return sig.run(inputs)

    @staticmethod
    def _checked(servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
                 output_filter) -> tuple[Signature, list[str]]:
        """The signature, after checking ``inputs`` against it; the output aliases to return."""
        sig = servable.signature(signature_name)
        sig.check_inputs(inputs)
        return sig, sig.check_output_filter(output_filter)

    def predict(self, servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
                output_filter=(), timeout_s: float | None = None):
        """Validated predict → (signature, {alias: array} in output-filter order)."""
        sig, wanted = self._checked(servable, signature_name, inputs, output_filter)
        outputs = self.run(servable, sig, inputs, timeout_s)
        return sig, {k: outputs[k] for k in wanted}

    async def predict_async(self, servable: Servable, signature_name: str,
                            inputs: dict[str, np.ndarray], output_filter=(),
                            timeout_s: float | None = None, executor=None,
                            gather_on_loop: bool = False, requests: int = 1):
        """:meth:`predict` for a coroutine; ``executor`` runs the model when batching is off.

        The model runs on the loop thread only when that stalls no other request and is known
        to be quick (see ``INLINE_RUN_SECONDS``); otherwise in ``executor``, or in the batch
        scheduler when batching is on (``gather_on_loop``: see
        :meth:`BatchScheduler.run_async`; for callers whose requests arrive on sockets the loop
        reads itself; ``requests``: how many clients' requests ``inputs`` merges, for the
        batching metrics).
        """
        sig, wanted = self._checked(servable, signature_name, inputs, output_filter)
        if self.batcher is not None:
            outputs = await self.batcher.run_async(servable, sig, inputs, timeout_s,
                                                   gather_on_loop, requests)
        else:
            outputs = await self._run_unbatched(sig, inputs, executor)
        return sig, {k: outputs[k] for k in wanted}

    async def _run_unbatched(self, sig: Signature, inputs: dict[str, np.ndarray], executor):
        """``sig.run(inputs)`` on the loop when alone and quick, else in ``executor``."""
        self._loop_predicts += 1
        try:
            if self._loop_predicts == 1 and sig.ran_quickly(input_values(inputs),
                                                            INLINE_RUN_SECONDS):
                return sig.run(inputs)
            return await asyncio.get_running_loop().run_in_executor(executor, sig.run, inputs)
        finally:
            self._loop_predicts -= 1

    def _runner(self, timeout_s):
        return lambda servable, sig, inputs: self.run(servable, sig, inputs, timeout_s)

    def classify(self, servable: Servable, signature_name: str, input_proto, result=None,
                 timeout_s: float | None = None):
        sig = inference.classification_signature(servable, signature_name)
        return sig, inference.classify(servable, sig, input_proto, self._runner(timeout_s), result)

    def regress(self, servable: Servable, signature_name: str, input_proto, result=None,
                timeout_s: float | None = None):
        sig = inference.regression_signature(servable, signature_name)
        return sig, inference.regress(servable, sig, input_proto, self._runner(timeout_s), result)

    def multi_inference(self, servable: Servable, request, response=None,
                        timeout_s: float | None = None):
        return inference.multi_inference(servable, request, self._runner(timeout_s), response)

    # -- warm-up ---------------------------------------------------------------------------------
    @staticmethod
    def warmup(servable: Servable) -> None:
        """Replay the version's warm-up records (PredictionLog) directly, without batching."""
        direct = lambda s, sig, inputs: sig.run(inputs)  # noqa: E731
        for log in servable.warmup_records():
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                req = log.predict_log.request
                sig = servable.signature(req.model_spec.signature_name)
                inputs = {k: to_ndarray(v, k) for k, v in req.inputs.items()}
                sig.check_inputs(inputs)
                sig.run(inputs)
            elif kind == "classify_log":
                req = log.classify_log.request
                sig = inference.classification_signature(servable, req.model_spec.signature_name)
                inference.classify(servable, sig, req.input, direct)
            elif kind == "regress_log":
                req = log.regress_log.request
                sig = inference.regression_signature(servable, req.model_spec.signature_name)
                inference.regress(servable, sig, req.input, direct)
            elif kind == "multi_inference_log":
                inference.multi_inference(servable, log.multi_inference_log.request, direct)
