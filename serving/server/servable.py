"""One loaded SavedModel version: its signatures, input validation and direct execution.

A :class:`Servable` wraps ``tf.saved_model.load(path)`` and the ``SignatureDef`` map read from
``saved_model.pb`` (used for metadata, dtypes and shapes, and the ``method_name`` Classify and
Regress check). :meth:`Signature.run` calls the signature's concrete function directly with
prebuilt tensors (one traced graph per signature; nothing is retraced per request), through
:class:`~serving.server.flat_call.FlatCall` where that applies, and returns NumPy arrays.

Input validation follows TF Serving's ``predict_util.cc`` (same messages): input count and names,
then dtype and static shape of each input against the ``SignatureDef``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import threading
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.server import tensors
from serving.server.errors import Code, ServingError, failed_precondition, invalid_argument
from serving.server.flat_call import FlatCall

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


@dataclasses.dataclass(frozen=True)
class TensorSig:
    """A signature input or output: alias, DataType enum and static shape (None = unknown)."""

    alias: str
    dtype: int
    shape: tuple[int | None, ...] | None

    @functools.cached_property  # per-request checks read these: computed once per signature
    def np_dtype(self) -> np.dtype:
        return tensors.numpy_dtype(self.dtype)

    @functools.cached_property
    def dtype_name(self) -> str:
        return tensors.dtype_name(self.dtype)

    def shape_str(self) -> str:
        if self.shape is None:
            return "[?]"
        return "[" + ",".join("-1" if s is None else str(s) for s in self.shape) + "]"


def _tensor_sig(alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSig:
    if info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorSig(alias, int(info.dtype), shape)


class Signature:
    """A named signature: ``inputs``/``outputs`` (sorted by alias) and the callable function."""

    def __init__(self, name: str, definition: meta_graph_pb2.SignatureDef, fn):
        self.name = name
        self.definition = definition
        self.method_name = definition.method_name
        self.inputs = {k: _tensor_sig(k, definition.inputs[k]) for k in sorted(definition.inputs)}
        self.outputs = {k: _tensor_sig(k, definition.outputs[k])
                        for k in sorted(definition.outputs)}
        self._fn = fn
        self._flat_call = FlatCall.of(fn)
        self._arg_index = {k: i for i, k in enumerate(self.inputs)}
        # (input values, seconds) of the latest completed run; one tuple, replaced atomically.
        self.last_run: tuple[int, float] | None = None

    # -- validation ------------------------------------------------------------------------------
    def check_input_names(self, names) -> None:
        names = set(names)
        expected = set(self.inputs)
        if len(names) != len(expected):
            extra, missing = sorted(names - expected), sorted(expected - names)
            raise invalid_argument(
                f"input size does not match signature: {len(names)}!={len(expected)} "
                f"len({{{','.join(sorted(names))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(extra)}}}. Missing but required: "
                f"{{{','.join(missing)}}}.")
        for alias in sorted(names):
            if alias not in self.inputs:
                raise invalid_argument(
                    f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                    f"in the set {{{','.join(sorted(expected))}}}.")

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Names, dtypes and static shapes against the SignatureDef (INVALID_ARGUMENT)."""
        self.check_input_names(inputs)
        for alias, array in inputs.items():
            sig = self.inputs[alias]
            want = sig.np_dtype
            got = array.dtype
            is_str = got.kind in "OSU"
            ok = (got == want) or (want.kind == "O" and is_str)
            if not ok:
                got_name = ("string" if is_str
                            else tensors.dtype_name(tensors.enum_of(array)))
                raise invalid_argument(
                    f"Expects arg[{self._arg_index[alias]}] to be {sig.dtype_name} but {got_name} "
                    f"is provided")
            if not tensors.shape_fits(array.shape, sig.shape):
                raise invalid_argument(
                    f"input '{alias}' has shape [{','.join(map(str, array.shape))}] but the "
                    f"signature '{self.name}' expects shape {sig.shape_str()} (-1: any size)")

    def check_output_filter(self, output_filter) -> list[str]:
        seen: list[str] = []
        for alias in output_filter:
            if alias not in self.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be "
                    f"in the set {{{','.join(self.outputs)}}}.")
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen or list(self.outputs)

    # -- execution -------------------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the concrete function on validated inputs; returns every output as NumPy."""
        start = time.perf_counter()
        feeds = {}
        for alias, array in inputs.items():
            if array.dtype.kind in "SU":
                array = array.astype(object)
            feeds[alias] = tf.constant(array, dtype=tf.dtypes.as_dtype(self.inputs[alias].dtype))
        try:
            result = None
            if self._flat_call is not None:
                result = self._flat_call(feeds, {k: a.shape for k, a in inputs.items()})
            if result is None:
                result = self._fn(**feeds)
        except tf.errors.OpError as exc:
            raise ServingError(Code(exc.error_code), op_error_message(exc.message)) from None
        except (ValueError, TypeError) as exc:
            raise invalid_argument(str(exc)) from None
        outputs = {k: v.numpy() for k, v in result.items()}
        self.last_run = (input_values(inputs), time.perf_counter() - start)
        return outputs

    def ran_quickly(self, values: int, limit_s: float) -> bool:
        """Whether the latest run had at least ``values`` input values and took at most
        ``limit_s`` seconds (so a run on ``values`` values is expected to be that quick)."""
        last = self.last_run
        return last is not None and last[1] <= limit_s and values <= last[0]


_EAGER_HEAD = re.compile(r"\AGraph execution error:\n\nDetected at node .*?\n"
                         r"(?:<stack traces unavailable>|Node: '[^'\n]*')\n", re.DOTALL)
_EAGER_TAIL = re.compile(r" \[Op:[^\]\n]*\]\Z")


def op_error_message(message: str) -> str:
    """A kernel's error as TF Serving's C++ session reports it: without the wrapping TensorFlow's
    Python adds to an eager function call ("Graph execution error: ... Detected at node ...
    <stack traces unavailable>" before the kernel's message, " [Op:__inference_...]" after it).
    Anything else is returned as it is."""
    heads = list(_EAGER_HEAD.finditer(message))
    if not heads:
        return message
    return _EAGER_TAIL.sub("", message[heads[-1].end():])


def input_values(inputs: dict[str, np.ndarray]) -> int:
    """The number of values in a request's input arrays."""
    return sum(a.size for a in inputs.values())


class Servable:
    """A loaded version of a model. ``signatures`` maps signature keys to :class:`Signature`."""

    def __init__(self, name: str, version: int, path: str, loaded, signature_defs):
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded  # keeps variables alive
        self.signature_defs = signature_defs  # name -> SignatureDef (all, for metadata)
        self.signatures: dict[str, Signature] = {}
        for key, fn in loaded.signatures.items():
            if key in signature_defs:
                self.signatures[key] = Signature(key, signature_defs[key], fn)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, name: str, version: int, path: str) -> Servable:
        """Load ``path`` (a SavedModel dir with the ``serve`` tag); raises ServingError."""
        pb = os.path.join(path, "saved_model.pb")
        if not os.path.isfile(pb):
            raise ServingError(
                Code.NOT_FOUND,
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                f"{path}")
        try:
            sm = saved_model_pb2.SavedModel()
            with open(pb, "rb") as f:
                sm.ParseFromString(f.read())
        except Exception as exc:  # noqa: BLE001 - any parse failure is a data loss
            raise ServingError(Code.DATA_LOSS, f"Can't parse {pb} as binary proto: {exc}") from None
        metas = [m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags]
        if not metas:
            raise ServingError(
                Code.NOT_FOUND,
                f"Could not find meta graph def matching supplied tags: {{ serve }}. To inspect "
                f"available tag-sets in the SavedModel, please use the SavedModel CLI: "
                f"`saved_model_cli` (path: {path})")
        defs = dict(metas[0].signature_def)
        try:
            loaded = tf.saved_model.load(path, tags=["serve"])
        except Exception as exc:  # noqa: BLE001 - surface any load failure in model status
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            code = Code(exc.error_code) if isinstance(exc, tf.errors.OpError) else Code.UNKNOWN
            raise ServingError(code, f"Failed to load SavedModel at {path}: {message}") from None
        return cls(name, version, path, loaded, defs)

    def signature(self, name: str) -> Signature:
        key = name or DEFAULT_SIGNATURE
        sig = self.signatures.get(key)
        if sig is None:
            raise failed_precondition(f'Serving signature key "{key}" not found.')
        return sig

    def warmup_records(self) -> list:
        """PredictionLog records from ``assets.extra/tf_serving_warmup_requests`` (≤ 1000)."""
        from tensorflow_serving.apis import prediction_log_pb2

        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return []
        records = []
        for raw in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS + 1):
            log = prediction_log_pb2.PredictionLog()
            log.ParseFromString(raw.numpy())
            records.append(log)
        if len(records) > MAX_WARMUP_RECORDS:
            raise invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
        return records
