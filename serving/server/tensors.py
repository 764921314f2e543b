"""``tensorflow.TensorProto`` ⇄ NumPy conversion for the gRPC front end.

Decoding accepts both encodings clients use: ``tensor_content`` (what ``tf.make_tensor_proto``
writes for numeric arrays) and the typed ``*_val`` fields (one value broadcasts to the whole
shape, as in TensorFlow). Encoding writes the typed ``*_val`` fields, as TF Serving's Predict does
(``Tensor::AsProtoField``), so clients reading ``response.outputs["y"].float_val`` directly work
as well as those calling ``tf.make_ndarray``.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.server.errors import invalid_argument

# DataType enum -> (numpy dtype, TensorProto value field)
_BY_ENUM: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
    types_pb2.DT_STRING: (np.dtype(object), "string_val"),
}
_BY_NUMPY = {dt: (enum, field) for enum, (dt, field) in _BY_ENUM.items()
             if enum not in (types_pb2.DT_STRING,)}


def dtype_name(enum: int) -> str:
    """TensorFlow's short name of a DataType enum (``DT_FLOAT`` → ``float``)."""
    try:
        return types_pb2.DataType.Name(enum)[3:].lower()
    except ValueError:
        return f"<unknown dtype {enum}>"


def numpy_dtype(enum: int) -> np.dtype:
    try:
        return _BY_ENUM[enum][0]
    except KeyError:
        raise invalid_argument(f"unsupported tensor dtype {dtype_name(enum)}") from None


def enum_of(array: np.ndarray) -> int:
    if array.dtype == object or array.dtype.kind in "SU":
        return types_pb2.DT_STRING
    try:
        return _BY_NUMPY[array.dtype][0]
    except KeyError:
        raise invalid_argument(f"unsupported output dtype {array.dtype}") from None


def shape_fits(shape: tuple[int, ...], static: tuple[int | None, ...] | None) -> bool:
    """Whether an array shape fits a static shape (None: unknown rank; a None dimension: any)."""
    if static is None:
        return True
    return len(shape) == len(static) and all(
        want is None or want == got for want, got in zip(static, shape, strict=True))


def to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """Decode a request TensorProto; malformed ones raise INVALID_ARGUMENT naming ``alias``."""
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"tensor parsing error: {alias} (unknown rank)")
    shape = tuple([d.size for d in proto.tensor_shape.dim])
    if shape and min(shape) < 0:
        raise invalid_argument(f"tensor parsing error: {alias} (negative dimension in {shape})")
    entry = _BY_ENUM.get(proto.dtype)
    if entry is None:
        raise invalid_argument(
            f"tensor parsing error: {alias} (unsupported dtype {dtype_name(proto.dtype)})")
    dt, field = entry
    n = math.prod(shape)
    content = proto.tensor_content  # (each read of the field copies its bytes)
    if content:
        if dt.kind == "O":
            raise invalid_argument(f"tensor parsing error: {alias} (string tensor_content)")
        if len(content) != n * dt.itemsize:
            raise invalid_argument(
                f"tensor parsing error: {alias} (tensor_content has "
                f"{len(content)} bytes, shape {list(shape)} of "
                f"{dtype_name(proto.dtype)} needs {n * dt.itemsize})")
        return np.frombuffer(content, dtype=dt).reshape(shape)
    values = getattr(proto, field)
    count = len(values)
    if dt.kind == "O":
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
    elif field == "half_val":
        arr = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        arr = np.asarray(values, dtype=dt)
    if count == n:
        return arr.reshape(shape)
    if count == 0 and n == 0:
        return arr.reshape(shape)
    if 0 < count < n:
        # TensorFlow semantics: the last value repeats to fill the shape.
        out = np.empty(n, dtype=dt)
        out[:count] = arr
        out[count:] = arr[-1]
        return out.reshape(shape)
    raise invalid_argument(
        f"tensor parsing error: {alias} ({count} values for shape {list(shape)})")


def from_ndarray(array: np.ndarray, proto: tensor_pb2.TensorProto | None = None):
    """Encode an output array as a TensorProto with typed ``*_val`` fields."""
    proto = proto if proto is not None else tensor_pb2.TensorProto()
    array = np.asarray(array)
    enum = enum_of(array)
    proto.dtype = enum
    dims = proto.tensor_shape.dim
    for s in array.shape:
        dims.add(size=int(s))
    flat = array.ravel()
    if enum == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
        return proto
    field = _BY_ENUM[enum][1]
    if field == "half_val":
        proto.half_val.extend(flat.view(np.uint16).tolist())
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto


def shape_proto(shape) -> tensor_shape_pb2.TensorShapeProto:
    p = tensor_shape_pb2.TensorShapeProto()
    for s in shape:
        p.dim.add(size=-1 if s is None else int(s))
    return p
