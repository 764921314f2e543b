"""REST JSON ⇄ tensors, following TF Serving's ``json_tensor.cc`` (formats and error messages).

Requests:

- row format ``{"instances": [...]}``: a list with one entry per example; entries are objects
  keyed by input name, or plain values/lists when the signature has a single input. The batch is
  the list; every entry must have the same shape.
- columnar format ``{"inputs": ...}``: an object keyed by input name (or a plain value/list for a
  single input); each value is the whole batched tensor.
- binary data for string tensors: ``{"b64": "<base64>"}``.
- ``"signature_name"`` selects the signature (default ``serving_default``).
- ``classify``/``regress``: ``{"examples": [{feature: value or list}, ...], "context": {...}}``;
  JSON integers → ``int64_list``, decimals → ``float_list``, strings or b64 → ``bytes_list``.

Responses: ``{"predictions": [...]}`` (row) or ``{"outputs": ...}`` (columnar), one object per
row/one key per output when there are several outputs. Floats are written as TF Serving writes them:
shortest of ``%g``/``%.9g`` that round-trips, a trailing ``.0`` on whole numbers, ``NaN``,
``Infinity`` and ``-Infinity`` as bare tokens. String outputs whose alias ends in ``_bytes`` are
written as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import struct

import numpy as np
import orjson
from tensorflow.core.example import example_pb2, feature_pb2

from serving.server.errors import invalid_argument
from serving.server.servable import TensorSig

try:  # the C reader for dense numeric arrays (setup.py builds it where a C compiler is found)
    from serving.server import _dense_json
except ImportError:  # pragma: no cover - installs without a compiler use the Python reader
    _dense_json = None

MAX_ERROR_VALUE_CHARS = 200
MAX_RANK = 64
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# -- parsing ------------------------------------------------------------------------------------
# Python's json messages → rapidjson's (``GetParseError_En``), which TF Serving reports.
_RAPIDJSON_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Extra data": "The document root must not be followed by other values.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}


def _open_bracket(text: str, pos: int) -> str:
    """The innermost ``[`` or ``{`` still open at ``text[pos]`` ("" at the top level)."""
    stack, in_string, escaped = [], False, False
    for c in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            stack.append(c)
        elif c in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _parse_error(exc: json.JSONDecodeError) -> str:
    """rapidjson's message for what Python's parser refused, with its offset."""
    if exc.msg == "Expecting ',' delimiter":
        msg = ("Missing a comma or '}' after an object member."
               if _open_bracket(exc.doc, exc.pos) == "{"
               else "Missing a comma or ']' after an array element.")
    elif exc.msg == "Expecting value" and not exc.doc.strip():
        msg = "The document is empty."
    else:
        msg = _RAPIDJSON_ERRORS.get(exc.msg, exc.msg)
    pos = exc.pos  # rapidjson's offset: where it stopped (Python names a string's start) and
    if exc.msg.startswith("Unterminated string"):  # an escape's backslash (Python its "u")
        pos = len(exc.doc)
    elif exc.msg == "Invalid \\uXXXX escape":
        pos -= 1
    return f"JSON Parse error: {msg} at offset: {pos}"


def parse_body(body: bytes) -> dict:
    """Parse a request body; errors are INVALID_ARGUMENT 'JSON Parse error: ...' with rapidjson's
    messages, as TF Serving gives them."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: "
                               f"{exc.start}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid_argument(_parse_error(exc)) from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: The document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_short(doc)} Is not object")
    return doc


def _short(value) -> str:
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError, TypeError):
        text = repr(value)
    if len(text) > MAX_ERROR_VALUE_CHARS:
        text = text[:MAX_ERROR_VALUE_CHARS] + "..."
    return text


def signature_name(doc: dict) -> str:
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {_short(doc)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name


def _json_type(v) -> str:
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, dict):
        return "Object"
    if isinstance(v, list):
        return "Array"
    if isinstance(v, str):
        return "String"
    return "Number"


def _is_b64(v) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def _decode_b64(v) -> bytes:
    if not _is_b64(v):
        raise invalid_argument(f"JSON Value: {_short(v)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(v["b64"], validate=True)
    except (binascii.Error, ValueError):
        try:  # TF Serving (absl) also accepts web-safe base64
            return base64.urlsafe_b64decode(v["b64"])
        except (binascii.Error, ValueError):
            raise invalid_argument("Unable to base64 decode") from None


def _dense_shape(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _type_error(v, sig: TensorSig):
    return invalid_argument(f"JSON Value: {_short(v)} Type: {_json_type(v)} is not of expected "
                            f"type: {sig.dtype_name}")


def _check_scalar(v, sig: TensorSig):
    """Validate one leaf against the dtype (TF Serving's AddValueToTensor); returns the value."""
    kind = sig.np_dtype.kind
    if sig.dtype_name == "string":
        if isinstance(v, str):
            return v.encode("utf-8")
        if isinstance(v, dict):
            return _decode_b64(v)
        raise _type_error(v, sig)
    if isinstance(v, dict):
        raise _type_error(v, sig)
    if kind == "b":
        if not isinstance(v, bool):
            raise _type_error(v, sig)
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _type_error(v, sig)
    if kind == "f":
        if isinstance(v, int):
            limit = 2**24 - 1 if sig.np_dtype.itemsize == 4 else 2**53 - 1
            if abs(v) > limit:
                raise invalid_argument(f"Cannot convert JSON value: {v} to {sig.dtype_name} "
                                       "without loss of precision.")
        elif np.isfinite(v) and abs(v) > float(np.finfo(sig.np_dtype).max):  # in float64
            raise invalid_argument(f"Cannot convert JSON value: {v} to {sig.dtype_name} "
                                   "without loss of precision.")
        return v
    # integer dtypes
    if not isinstance(v, int):
        raise _type_error(v, sig)
    info = np.iinfo(sig.np_dtype)
    if not info.min <= v <= info.max:
        raise _type_error(v, sig)
    return v


def _fill(value, level: int, shape: list[int], sig: TensorSig, out: list) -> None:
    """TF Serving's FillTensorProto: every leaf at depth == rank, every list of the right size."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(f"JSON Value: {_short(value)} found at incorrect level: "
                                   f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        out.append(_check_scalar(value, sig))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(f"Encountered list at unexpected size: {len(value)} at level: "
                               f"{level} expected size: {shape[level]}")
    for v in value:
        _fill(v, level + 1, shape, sig, out)


def _fast_array(value, sig: TensorSig, numbers_only: bool = False) -> np.ndarray | None:
    """Vectorized conversion for well-formed numeric data; None → use the validating path.
    ``numbers_only``: ``value`` is known to hold no ``true``/``false`` (the readers of
    :func:`fast_instances` take JSON numbers only)."""
    if sig.dtype_name == "string":
        return None
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError, RecursionError):
        return None
    kind = arr.dtype.kind
    want = sig.np_dtype.kind
    if want != "b" and kind in "fiu" and not numbers_only and _holds_bool(value):
        return None  # NumPy reads true as 1: the slow path names it (TF Serving refuses it)
    if want == "f" and kind == "f":
        with np.errstate(over="ignore"):  # an overflow is found below and named by the slow path
            out = arr.astype(sig.np_dtype)
        if not np.isfinite(out).all() and np.isfinite(arr).all():
            return None  # overflow: let the slow path name the value
        return out
    if want == "f" and kind in "iu":
        if arr.size and np.abs(arr).max() > (2**24 - 1 if sig.np_dtype.itemsize == 4
                                             else 2**53 - 1):
            return None
        return arr.astype(sig.np_dtype)
    if want in "iu" and kind in "iu":
        info = np.iinfo(sig.np_dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            return None
        return arr.astype(sig.np_dtype)
    if want == "b" and kind == "b":
        return arr
    return None


def _holds_bool(value) -> bool:
    """Whether a dense array of JSON scalars (nested lists, every list at one depth the same
    length: NumPy read it as numbers) holds a ``true`` or ``false``; one level at a time, at C
    speed."""
    level = value if isinstance(value, list) else [value]
    while level and isinstance(level[0], list):
        level = list(itertools.chain.from_iterable(level))
    return bool in set(map(type, level))


def value_to_array(value, sig: TensorSig) -> np.ndarray:
    """A JSON value (scalar or nested lists) → ndarray of the signature's dtype."""
    fast = _fast_array(value, sig)
    if fast is not None:
        return fast
    shape = _dense_shape(value)
    if len(shape) > MAX_RANK:
        raise invalid_argument(f"JSON Value nested {len(shape)} lists deep: tensors have at most "
                               f"{MAX_RANK} dimensions")
    out: list = []
    _fill(value, 0, shape, sig, out)
    if sig.dtype_name == "string":
        arr = np.empty(len(out), dtype=object)
        arr[:] = out
        return arr.reshape(shape)
    return np.asarray(out, dtype=sig.np_dtype).reshape(shape)


def _instances_to_inputs(instances: list, inputs: dict[str, TensorSig]) -> dict[str, np.ndarray]:
    first = instances[0]
    objects = isinstance(first, dict) and not _is_b64(first)
    if not objects and len(inputs) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as "
                               "multiple input tensors required as per tensorinfo_map")
    if not objects:
        name, sig = next(iter(inputs.items()))
        if any(isinstance(e, dict) and not _is_b64(e) for e in instances):
            idx = next(i for i, e in enumerate(instances) if isinstance(e, dict) and not _is_b64(e))
            raise invalid_argument(f"Expecting value/list but got object at item {idx} of input "
                                   "list")
        fast = _fast_array(instances, sig)
        if fast is not None and fast.ndim >= 1:
            return {name: fast}
        rows: list[np.ndarray] = []
        for i, e in enumerate(instances):
            rows.append(_instance_item(e, i, None, sig, rows))
        return {name: _stack(rows, sig)}
    names = set(inputs)
    columns: dict[str, list] = {n: [] for n in inputs}
    for i, elem in enumerate(instances):
        if not isinstance(elem, dict) or _is_b64(elem):
            raise invalid_argument(f"Expecting object but got list at item {i} of input list")
        for key, value in elem.items():
            if key not in inputs:
                raise invalid_argument(f"Failed to process element: {i} key: {key} of 'instances'"
                                       f" list. Error: INVALID_ARGUMENT: JSON object: does not "
                                       f"have named input: {key}")
            columns[key].append(_instance_item(value, i, key, inputs[key], columns[key]))
        if set(elem) != names:
            raise invalid_argument(f"Failed to process element: {i} of 'instances' list. JSON "
                                   f"object: {_short(elem)} must only have keys: "
                                   f"{','.join(sorted(names))}")
    return {n: _stack(rows, inputs[n]) for n, rows in columns.items()}


def _instance_item(value, index: int, key: str | None, sig: TensorSig, previous) -> np.ndarray:
    """Element ``index`` of ``instances`` (``key``: its input's name in a list of objects, None in
    a plain list) as an array, checked like TF Serving's ``AddInstanceItem``: the same number of
    values as the earlier elements (``previous``), then the same shape."""
    where = f"Failed to process element: {index}{'' if key is None else f' key: {key}'} of " \
            f"'instances' list. Error: INVALID_ARGUMENT: "
    try:
        arr = value_to_array(value, sig)
    except Exception as exc:
        msg = getattr(exc, "message", str(exc))
        raise invalid_argument(where + msg) from None
    if previous:
        want = previous[0]
        if arr.size != want.size:
            raise invalid_argument(f"{where}Expecting tensor size: {want.size} but got: "
                                   f"{arr.size}")
        if arr.shape != want.shape:
            raise invalid_argument(
                f"{where}Expecting shape [{','.join(map(str, want.shape))}] but got: "
                f"[{','.join(map(str, arr.shape))}]")
    return arr


def _stack(rows: list[np.ndarray], sig: TensorSig) -> np.ndarray:
    """The rows (one shape: :func:`_instance_item` checked them) as one batch."""
    if sig.dtype_name == "string":
        out = np.empty((len(rows),) + rows[0].shape, dtype=object)
        for i, r in enumerate(rows):
            if r.ndim == 0:
                out[i] = r.item()
            else:
                out[i, ...] = r
        return out
    return np.stack(rows)


def predict_inputs(doc: dict, inputs: dict[str, TensorSig]) -> tuple[dict[str, np.ndarray], str]:
    """Request document → ({alias: array}, "row" | "columnar")."""
    if not inputs:
        raise invalid_argument("Failed to get input map for signature")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument(f"JSON Value: {_short(doc)} Not formatted correctly expecting only "
                               "one of 'inputs' or 'instances' keys to exist ")
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid_argument(f"JSON Value: {_short(doc)} Excepting 'instances' to be an "
                                   "list/array")
        if not instances:
            raise invalid_argument(f"JSON Value: {_short(doc)} No values in 'instances' array")
        return _instances_to_inputs(instances, inputs), "row"
    if has_inputs:
        value = doc["inputs"]
        if not isinstance(value, dict) or _is_b64(value):
            if len(inputs) > 1:
                raise invalid_argument("inputs is a plain value/list, but expecting an object as "
                                       "multiple input tensors required as per tensorinfo_map")
            name, sig = next(iter(inputs.items()))
            return {name: value_to_array(value, sig)}, "columnar"
        out = {}
        for name, sig in inputs.items():
            if name not in value:
                raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
            out[name] = value_to_array(value[name], sig)
        return out, "columnar"
    raise invalid_argument("Missing 'inputs' or 'instances' key")


# -- fast path: {"instances": <dense numeric nested list>} -------------------------------------
# The body is split into the prefix/suffix around the array (matched exactly by these patterns),
# the array's bracket skeleton (checked against the one a dense tensor of the inferred shape has)
# and its numbers (one flat JSON list, so the JSON parser still validates every number). Any
# mismatch → None and the general path (which also produces the error messages) takes over.
_FAST_PREFIX = re.compile(
    rb'[ \t\r\n]*\{[ \t\r\n]*(?:"signature_name"[ \t\r\n]*:[ \t\r\n]*"([^"\\\x00-\x1f]*)"'
    rb'[ \t\r\n]*,[ \t\r\n]*)?"instances"[ \t\r\n]*:[ \t\r\n]*')
_FAST_SUFFIX = re.compile(
    rb'[ \t\r\n]*(?:,[ \t\r\n]*"signature_name"[ \t\r\n]*:[ \t\r\n]*"([^"\\\x00-\x1f]*)"'
    rb'[ \t\r\n]*)?\}[ \t\r\n]*')
_NUMERIC_CHARS = b"0123456789.eE+-"
_SPACE = b" \t\r\n"
_NUMERIC_TO_0 = bytes.maketrans(_NUMERIC_CHARS, b"0" * len(_NUMERIC_CHARS))
_BRACKETS_TO_SPACE = bytes.maketrans(b"[]", b"  ")
_MAX_FAST_RANK = 32
_LONG_NUMBER = b"0" * 20  # in the marks: a number of 20 characters or more


def _skeleton(shape: list[int]) -> bytes:
    inner = b"[" + b"," * (shape[-1] - 1) + b"]"
    for d in reversed(shape[:-1]):
        inner = b"[" + b",".join([inner] * d) + b"]"
    return inner


def _dense_skeleton_shape(skel: bytes) -> list[int] | None:
    """Shape of a dense nested list from its ``[`` ``,`` ``]`` skeleton, or None.

    Leaves are already removed, so ``[]`` stands for a one-element innermost list (the caller
    rules out empty lists).
    """
    rank = len(skel) - len(skel.lstrip(b"["))
    if rank == 0 or rank > _MAX_FAST_RANK:
        return None
    first_close = skel.find(b"]")
    sizes = [first_close - rank + 1]  # commas in the first innermost list + 1
    lengths = [first_close - rank + 2]  # length of the first subtree of height 1
    for height in range(2, rank + 1):
        end = skel.find(b"]" * height)
        if end < 0:
            return None
        length = end + height - (rank - height)
        d, rem = divmod(length - 1, lengths[-1] + 1)
        if rem or d < 1:
            return None
        sizes.append(d)
        lengths.append(length)
    shape = sizes[::-1]
    return shape if _skeleton(shape) == skel else None


def _flat_numbers(text: bytes, marks: bytes) -> list:
    """The numbers of ``text``, a comma-separated list of JSON numbers (``marks``: the same
    array with every number written as a run of ``0``), as Python ints and floats.

    ``orjson`` parses them several times faster than ``json`` (784 pixels: ~20 µs against
    ~150 µs) and to the same values, except that it reads an integer beyond 64 bits as a float and
    refuses numbers beyond the double range, where ``json`` keeps the exact int or gives
    ``inf``; a number of 20 characters or more, or a refusal, therefore takes ``json``. Raises
    ValueError when ``text`` is not such a list.
    """
    flat = b"[" + text + b"]"
    if _LONG_NUMBER not in marks:
        try:
            return orjson.loads(flat)
        except orjson.JSONDecodeError:
            pass
    return json.loads(flat)


def fast_instances(body: bytes) -> tuple[str, np.ndarray | list, tuple[int, ...]] | None:
    """``{"instances": <dense numeric list>[, "signature_name": "s"]}`` → (name, values, shape).

    ``values`` holds the leaves row-major: a flat int64 or float64 ndarray from the C reader
    (:mod:`serving.server._dense_json`, when built), else a flat list (ints for JSON integers,
    floats for decimals) from :func:`_python_dense_numbers`; ``np.asarray`` of either is the
    same array. ``shape`` is the dense shape. None when the body has any other form or is not
    valid JSON.
    """
    first = body.find(b"[")
    last = body.rfind(b"]")
    if first < 0 or last < first:
        return None
    pre = _FAST_PREFIX.fullmatch(body, 0, first)
    if pre is None:
        return None
    post = _FAST_SUFFIX.fullmatch(body, last + 1)
    if post is None or (pre.group(1) is not None and post.group(1) is not None):
        return None
    name = pre.group(1) if pre.group(1) is not None else (post.group(1) or b"")
    try:
        name = name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    array = body[first:last + 1]
    parsed = _dense_json.parse(array) if _dense_json is not None else None
    if parsed is not None:
        kind, raw, shape = parsed
        return name, np.frombuffer(raw, np.int64 if kind == "i" else np.float64), shape
    parsed = _python_dense_numbers(array)
    return None if parsed is None else (name, *parsed)


def _python_dense_numbers(array: bytes) -> tuple[list, tuple[int, ...]] | None:
    """(flat list of the numbers, dense shape) of a JSON array of nested numeric lists, or None.

    The reader for what the C reader leaves (numbers outside its exact fast path) and for
    installs without it; both give the same array wherever both answer.
    """
    marks = array.translate(_NUMERIC_TO_0, _SPACE)  # numbers → runs of "0", no whitespace
    skel = marks.translate(None, b"0")
    if skel.translate(None, b"[],"):
        return None  # strings, objects, literals
    shape = _dense_skeleton_shape(skel)
    if shape is None:
        return None
    if b"0[" in marks or b"]0" in marks or b"[]" in marks:
        return None  # a number outside its innermost brackets, or an empty list
    try:  # brackets → whitespace: one flat JSON list, whose parser validates every number
        values = _flat_numbers(array.translate(_BRACKETS_TO_SPACE), marks)
    except ValueError:
        return None
    n = 1
    for d in shape:
        n *= d
    if len(values) != n:
        return None
    return values, tuple(shape)


def fast_predict_inputs(fast, inputs: dict[str, TensorSig]) -> dict[str, np.ndarray] | None:
    """Inputs for a :func:`fast_instances` result on a single-input signature, else None.

    Same arrays as :func:`predict_inputs` gives for the parsed document (row format).
    """
    if len(inputs) != 1:
        return None
    _, values, shape = fast
    (alias, sig), = inputs.items()
    arr = _fast_array(values, sig, numbers_only=True)
    if arr is None:
        return None
    return {alias: arr.reshape(shape)}


# -- tf.Example from JSON -------------------------------------------------------------------------
def _add_feature_value(v, name: str, feature: feature_pb2.Feature) -> None:
    kind = feature.WhichOneof("kind")

    def need(k):
        if kind not in (None, k):
            kinds = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}
            raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: "
                                   f"{kinds[kind]}")

    if v is None or isinstance(v, list):
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: "
                               f"{_json_type(v)}")
    if isinstance(v, bool):
        need("int64_list")
        feature.int64_list.value.append(int(v))
    elif isinstance(v, dict):
        if not _is_b64(v):
            raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: "
                                   "Object")
        need("bytes_list")
        feature.bytes_list.value.append(_decode_b64(v))
    elif isinstance(v, str):
        need("bytes_list")
        feature.bytes_list.value.append(v.encode("utf-8"))
    elif isinstance(v, float):
        need("float_list")
        if np.isfinite(v) and abs(v) > float(np.finfo(np.float32).max):
            raise invalid_argument(f"Cannot convert JSON value: {v} to float without loss of "
                                   "precision.")
        feature.float_list.value.append(v)
    else:
        need("int64_list")
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(v)


def example_from_json(obj, example: example_pb2.Example) -> None:
    if not isinstance(obj, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {_json_type(obj)}")
    for name, content in obj.items():
        feature = example.features.feature[name]
        for v in content if isinstance(content, list) else [content]:
            _add_feature_value(v, name, feature)


def fill_input_from_json(doc: dict, input_proto) -> None:
    """``{"examples": [...], "context": {...}}`` → ``tensorflow.serving.Input``."""
    has_context = "context" in doc
    if has_context:
        example_from_json(doc["context"], input_proto.example_list_with_context.context)
    if "examples" not in doc:
        raise invalid_argument(f"JSON Value: {_short(doc)} When method is classify, key "
                               "'examples' is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {_short(doc)} Expecting 'examples' value to be an "
                               "list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {_short(doc)} 'examples' value is an empty array")
    target = (input_proto.example_list_with_context.examples if has_context
              else input_proto.example_list.examples)
    for e in examples:
        example_from_json(e, target.add())


# -- writing --------------------------------------------------------------------------------------
_SMALL = 64
_F32 = struct.Struct("f")


def _decimal(v: float, single: bool) -> str:
    """One finite value as TF Serving's WriteDecimal writes it (``%g`` if it round-trips)."""
    s = format(v, "g")
    back = _F32.unpack(_F32.pack(float(s)))[0] if single else float(s)
    if back != v:
        s = format(v, ".9g" if single else ".17g")
    return s if ("." in s or "e" in s) else s + ".0"


def _float_strings(arr: np.ndarray) -> np.ndarray:
    """TF Serving's WriteDecimal for every element: shortest round-tripping %g/%.9g (or %.17g).

    The C writer (``_dense_json.decimal_strings``, when built) formats float32/float64; the
    Python writer below gives the same strings, and serves other float types.
    """
    if _dense_json is not None and arr.dtype in (np.float32, np.float64):
        out = np.empty(arr.size, dtype=object)
        out[:] = _dense_json.decimal_strings(np.ascontiguousarray(arr))
        return out.reshape(arr.shape)
    return _python_float_strings(arr)


def _python_float_strings(arr: np.ndarray) -> np.ndarray:
    flat = arr.ravel()
    if flat.size <= _SMALL and arr.dtype in (np.float32, np.float64):
        single = arr.dtype == np.float32
        out = np.empty(flat.shape, dtype=object)
        out[:] = [_decimal(v, single) if v - v == 0 else
                  ("NaN" if v != v else ("Infinity" if v > 0 else "-Infinity"))
                  for v in flat.tolist()]
        return out.reshape(arr.shape)
    wide = flat.astype(np.float64)
    finite = np.isfinite(flat)
    out = np.empty(flat.shape, dtype=object)
    if finite.any():
        vals = wide[finite]
        short = np.char.mod("%g", vals)
        back = short.astype(arr.dtype)
        digits = 9 if arr.dtype.itemsize <= 4 else 17
        redo = back != flat[finite]
        short = short.astype(object)
        if redo.any():
            short[redo] = np.char.mod(f"%.{digits}g", vals[redo]).astype(object)
        strs = short.tolist()
        strs = [s if ("." in s or "e" in s) else s + ".0" for s in strs]
        out[finite] = strs
    if not finite.all():
        nf = flat[~finite]
        out[~finite] = np.where(np.isnan(nf), "NaN", np.where(nf > 0, "Infinity", "-Infinity"))
    return out.reshape(arr.shape)


def _leaf_strings(arr: np.ndarray, as_bytes: bool) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "f":
        return _float_strings(arr)
    if kind == "b":
        return np.where(arr, "true", "false").astype(object)
    if kind in "iu":
        return arr.astype(str).astype(object)
    # strings
    out = np.empty(arr.shape, dtype=object)
    flat_out = out.reshape(-1)
    for i, v in enumerate(arr.reshape(-1)):
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        if as_bytes:
            flat_out[i] = '{"b64": "' + base64.b64encode(b).decode("ascii") + '"}'
        else:
            flat_out[i] = json.dumps(b.decode("utf-8", "replace"), ensure_ascii=False)
    return out


def _nest(strs) -> str:
    if isinstance(strs, str):
        return strs
    if strs.ndim == 0:
        return strs.item()
    if strs.ndim == 1:
        return "[" + ", ".join(strs.tolist()) + "]"
    return "[" + ", ".join(_nest(s) for s in strs) + "]"


def tensor_json(name: str, arr: np.ndarray) -> str:
    as_bytes = (arr.dtype == object or arr.dtype.kind in "SU") and name.endswith("_bytes")
    return _nest(_leaf_strings(arr, as_bytes))


def predict_response(outputs: dict[str, np.ndarray], fmt: str) -> str:
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    if fmt == "columnar":
        if len(outputs) == 1:
            (name, arr), = outputs.items()
            return '{"outputs": ' + tensor_json(name, arr) + "}"
        body = ", ".join(json.dumps(k) + ": " + tensor_json(k, v) for k, v in outputs.items())
        return '{"outputs": {' + body + "}}"
    return predictions_json(predict_rows(outputs))


def predictions_json(rows: list[str]) -> str:
    """The row format's response body around the rows' JSON texts (from :func:`predict_rows`)."""
    return '{"predictions": [' + ", ".join(rows) + "]}"


def predict_rows(outputs: dict[str, np.ndarray]) -> list[str]:
    """The row format's ``predictions``, one JSON text per row of the outputs' 0th dimension."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    batch = None
    for name, arr in outputs.items():
        if arr.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if arr.shape[0] < 1:
            raise invalid_argument(f"Tensor name: {name} has invalid batch size: {arr.shape[0]}")
        if batch is not None and arr.shape[0] != batch:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: "
                                   f"{arr.shape[0]} expecting: {batch}")
        batch = arr.shape[0]
    if _dense_json is not None and all(_c_writes(arr) for arr in outputs.values()):
        keys = None if len(outputs) == 1 else [json.dumps(k) for k in outputs]
        return _dense_json.rows_json(keys, [np.ascontiguousarray(a) for a in outputs.values()])
    leaves = {}
    for name, arr in outputs.items():
        as_bytes = (arr.dtype == object or arr.dtype.kind in "SU") and name.endswith("_bytes")
        leaves[name] = _leaf_strings(arr, as_bytes)
    if len(outputs) == 1:
        (strs,) = leaves.values()
        rows = [_nest(strs[i]) for i in range(batch)]
    else:
        keys = {k: json.dumps(k) for k in leaves}
        rows = ["{" + ", ".join(keys[k] + ": " + _nest(s[i]) for k, s in leaves.items()) + "}"
                for i in range(batch)]
    return rows


def _c_writes(arr: np.ndarray) -> bool:
    """Whether ``_dense_json.rows_json`` writes ``arr``'s values (the Python writer's texts)."""
    dt = arr.dtype
    return dt.isnative and (dt.kind in "iub" or dt in (np.float32, np.float64))


def classification_json(result) -> str:
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for c in result.classifications:
        scores = _float_strings(np.asarray([x.score for x in c.classes], dtype=np.float32))
        pairs = [f"[{json.dumps(x.label, ensure_ascii=False)}, {s}]"
                 for x, s in zip(c.classes, scores.tolist(), strict=True)]
        rows.append("[" + ", ".join(pairs) + "]")
    return '{"results": [' + ", ".join(rows) + "]}"


def regression_json(result) -> str:
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    vals = _float_strings(np.asarray([r.value for r in result.regressions], dtype=np.float32))
    return '{"results": [' + ", ".join(vals.tolist()) + "]}"
