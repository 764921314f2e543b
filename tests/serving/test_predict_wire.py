"""The C reader and writer of dense Predict calls (serving/server/_predict_wire.c) against
protobuf: wherever the C reader answers, its inputs are those protobuf and tensors.to_ndarray
give, bit for bit; the C writer's responses are the bytes protobuf writes with
SerializeToString(deterministic=True); and serving.server.predict_wire gives the same answers
without the C code."""

from __future__ import annotations

import shutil
import sysconfig

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from serving.server import predict_wire
from serving.server.tensors import from_ndarray, to_ndarray

wire = predict_wire._predict_wire
needs_c = pytest.mark.skipif(wire is None, reason="C reader and writer not built")

NUMERIC = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8,
           np.uint16, np.uint32, np.uint64, np.bool_]


def test_the_c_code_is_built_where_a_compiler_is():
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): protobuf reads and writes alone")
    assert wire is not None, "setup.py did not build serving/server/_predict_wire.c"


def _values(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return (rng.standard_normal(shape) * 1000).astype(dtype)


def _spec(name="m", version=3, signature="serving_default") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    return spec


def _content(value: np.ndarray) -> tensor_pb2.TensorProto:
    """``value`` in tensor_content (tf.make_tensor_proto writes some dtypes in *_val fields)."""
    proto = tensor_pb2.TensorProto(dtype=tf.as_dtype(value.dtype).as_datatype_enum,
                                   tensor_content=value.tobytes())
    for size in value.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _request(inputs: dict, *, spec=None, output_filter=()) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(spec if spec is not None else _spec())
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(
            value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return request


def _expected(raw: bytes):
    """What protobuf and to_ndarray read: (spec bytes, output filter, {alias: array})."""
    request = predict_pb2.PredictRequest.FromString(raw)
    return (request.model_spec.SerializeToString(), tuple(request.output_filter),
            {k: to_ndarray(v, k) for k, v in request.inputs.items()})


def _assert_reads_as_protobuf(got: predict_wire.DenseRequest, raw: bytes) -> None:
    spec, output_filter, inputs = _expected(raw)
    assert model_pb2.ModelSpec.FromString(got.spec) == model_pb2.ModelSpec.FromString(spec)
    assert got.output_filter == output_filter
    assert got.inputs.keys() == inputs.keys()
    for alias, ref in inputs.items():
        value = got.inputs[alias]
        assert value.dtype == ref.dtype and value.shape == ref.shape
        assert value.tobytes() == ref.tobytes()  # bitwise: NaNs and -0.0 included


# -- reading ---------------------------------------------------------------------------------------
@needs_c
@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("shape", [(3,), (2, 5), (1, 28, 28, 1), (4, 1, 3)])
def test_the_c_reader_reads_tensor_content_as_protobuf_does(dtype, shape):
    raw = _request({"x": _content(_values(dtype, shape)),
                    "second": _content(_values(dtype, (2, *shape), seed=1))},
                   output_filter=["b", "é"]).SerializeToString()
    fields = wire.read_request(raw)
    assert fields is not None
    spec, output_filter, entries = fields
    assert spec == _spec().SerializeToString() and output_filter == ("b", "é")
    assert sorted(e[0] for e in entries) == ["second", "x"]
    _assert_reads_as_protobuf(predict_wire.read_request(raw), raw)
    for _, _, _, offset in entries:  # the values stay in the request's bytes: no copy
        assert 0 < offset < len(raw)


@needs_c
def test_a_worked_example_of_the_wire_format():
    # model_spec {name: "m"} and inputs {"x": float32 [2] tensor_content 1.0, 2.0}, by hand
    tensor = (b"\x08\x01"  # dtype DT_FLOAT
              b"\x12\x04\x12\x02\x08\x02"  # tensor_shape { dim { size: 2 } }
              b"\x22\x08" + np.array([1.0, 2.0], "<f4").tobytes())  # tensor_content
    entry = b"\x0a\x01x" + b"\x12" + bytes([len(tensor)]) + tensor
    raw = b"\x0a\x03\x0a\x01m" + b"\x12" + bytes([len(entry)]) + entry + b"\x1a\x01p"
    spec, output_filter, entries = wire.read_request(raw)
    assert spec == b"\x0a\x01m" and output_filter == ("p",)
    assert entries == (("x", types_pb2.DT_FLOAT, (2,), raw.index(b"\x00\x00\x80?")),)
    np.testing.assert_array_equal(predict_wire.read_request(raw).inputs["x"], [1.0, 2.0])


def _typed(value) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    proto.float_val.extend(value)
    return proto


def _with_dim_name() -> tensor_pb2.TensorProto:
    proto = tf.make_tensor_proto(np.arange(4, dtype=np.float32))
    proto.tensor_shape.dim[0].name = "n"
    return proto


@needs_c
@pytest.mark.parametrize("request_, why", [
    (_request({"x": _typed([1.0, 2.0])}), "typed float_val"),
    (_request({"x": tf.make_tensor_proto(np.array([b"a", b"b"]))}), "a string tensor"),
    (_request({"x": _with_dim_name()}), "a named dim"),
    (predict_pb2.PredictRequest(inputs={"x": tf.make_tensor_proto(np.arange(3.0))}),
     "no model_spec"),
])
def test_the_c_reader_leaves_other_forms_to_protobuf(request_, why):
    raw = request_.SerializeToString()
    assert wire.read_request(raw) is None, why
    got = predict_wire.read_request(raw)
    if request_.HasField("model_spec") and request_.inputs:
        _assert_reads_as_protobuf(got, raw)
    else:
        assert got is None


@needs_c
def test_a_request_without_inputs_is_left_to_the_general_path():
    raw = _request({}).SerializeToString()
    assert wire.read_request(raw) == (_spec().SerializeToString(), (), ())
    assert predict_wire.read_request(raw) is None  # its error: the general path's


@needs_c
def test_fields_the_c_reader_does_not_know_go_to_protobuf():
    request = _request({"x": np.arange(6, dtype=np.float32)})
    request.client_id = b"me"  # PredictRequest field 6
    raw = request.SerializeToString()
    assert wire.read_request(raw) is None
    _assert_reads_as_protobuf(predict_wire.read_request(raw), raw)


@needs_c
def test_an_alias_given_twice_keeps_the_last_as_protobuf_does():
    first = _request({"x": np.arange(4, dtype=np.float32)}).SerializeToString()
    second = _request({"x": np.arange(10, 14, dtype=np.float32)})
    second.ClearField("model_spec")
    raw = first + second.SerializeToString()  # concatenated messages merge: map keys repeat
    got = predict_wire.read_request(raw)
    np.testing.assert_array_equal(got.inputs["x"], [10, 11, 12, 13])
    _assert_reads_as_protobuf(got, raw)


@needs_c
def test_damaged_requests_read_as_protobuf_reads_them_or_not_at_all():
    """Truncations and byte flips of a valid request: where the C reader answers, protobuf reads
    the same inputs; where protobuf refuses the bytes, so does the C reader, or else protobuf
    refuses the model_spec it leaves to protobuf (the merged path parses it: the general path
    answers those requests)."""
    raw = _request({"image": _content(_values(np.float32, (2, 3, 3))),
                    "k": _content(_values(np.int64, (2,)))},
                   output_filter=["probabilities"]).SerializeToString()
    rng = np.random.default_rng(7)
    damaged = [raw[:n] for n in range(len(raw))]
    for _ in range(3000):
        b = bytearray(raw)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(len(b))] = rng.integers(256)
        damaged.append(bytes(b))
    answered = 0
    for case in damaged:
        fields = wire.read_request(case)
        try:
            expected = _expected(case)
        except Exception:  # noqa: BLE001 - protobuf or to_ndarray refuses it
            if fields is not None:
                with pytest.raises(DecodeError):
                    model_pb2.ModelSpec.FromString(fields[0])
            continue
        if fields is not None and fields[2]:
            answered += 1
            _assert_reads_as_protobuf(predict_wire.read_request(case), case)
            assert {e[0] for e in fields[2]} == expected[2].keys()
    assert answered > 100  # (flips inside tensor_content keep the form)


@needs_c
def test_the_c_reader_refuses_what_is_not_a_buffer():
    with pytest.raises(TypeError):
        wire.read_request("text")


def test_without_the_c_code_the_reader_gives_the_same_answers(monkeypatch):
    raws = [_request({"x": _content(_values(dtype, (2, 3)))},
                     output_filter=["y"]).SerializeToString()
            for dtype in NUMERIC]
    with_c = [predict_wire.read_request(raw) for raw in raws]
    monkeypatch.setattr(predict_wire, "_predict_wire", None)
    for raw, got in zip(raws, with_c, strict=True):
        alone = predict_wire.read_request(raw)
        _assert_reads_as_protobuf(alone, raw)
        assert predict_pb2.PredictRequest.FromString(raw).model_spec == \
            model_pb2.ModelSpec.FromString(got.spec)
    assert predict_wire.read_request(b"\xff\xff") is None


# -- writing ---------------------------------------------------------------------------------------
def _protobuf_responses(spec: model_pb2.ModelSpec, outputs: dict, rows: list[int]) -> list[bytes]:
    answers, start = [], 0
    for n in rows:
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec)
        for name, v in outputs.items():
            from_ndarray(v[start:start + n], response.outputs[name])
        answers.append(response.SerializeToString(deterministic=True))
        start += n
    return answers


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("inner", [(), (3,), (0,), (2, 4)])
def test_responses_are_the_bytes_protobuf_writes(dtype, inner):
    rows = [1, 2, 0, 3]
    values = _values(dtype, (sum(rows), *inner))
    outputs = {"zeta": values, "alpha": values[:, :1] if inner else values, "é": values}
    spec = _spec()
    got = predict_wire.write_responses(spec.SerializeToString(deterministic=True), outputs, rows)
    assert got == _protobuf_responses(spec, outputs, rows)
    parsed = predict_pb2.PredictResponse.FromString(got[1])
    np.testing.assert_array_equal(tf.make_ndarray(parsed.outputs["zeta"]), values[1:3])


def test_a_worked_example_of_a_response():
    outputs = {"classes": np.array([7, -1], np.int64), "p": np.array([[0.5], [1.0]], np.float32)}
    got = predict_wire.write_responses(b"\x0a\x01m", outputs, [1, 1])
    classes_7 = b"\x08\x09\x12\x04\x12\x02\x08\x01\x52\x01\x07"  # DT_INT64 [1] int64_val 7
    p_half = b"\x08\x01\x12\x08\x12\x02\x08\x01\x12\x02\x08\x01\x2a\x04" + \
        np.float32(0.5).tobytes()  # DT_FLOAT [1, 1] float_val 0.5
    classes = b"\x0a\x07classes\x12" + bytes([len(classes_7)]) + classes_7  # map entries
    p = b"\x0a\x01p\x12" + bytes([len(p_half)]) + p_half
    assert got[0] == (b"\x0a" + bytes([len(classes)]) + classes + b"\x0a" + bytes([len(p)]) + p +
                      b"\x12\x03\x0a\x01m")
    assert b"\x52\x0a" + b"\xff" * 9 + b"\x01" in got[1]  # -1: ten varint bytes


def test_a_nan_and_minus_zero_keep_their_bits():
    values = np.array([np.nan, -0.0, np.inf], np.float32).reshape(3, 1)
    got = predict_wire.write_responses(b"", {"y": values}, [3])
    parsed = predict_pb2.PredictResponse.FromString(got[0])
    assert np.array(parsed.outputs["y"].float_val, np.float32).tobytes() == values.tobytes()


def test_string_outputs_and_noncontiguous_values_are_written_too():
    strings = np.array([b"a", b"bc", b"d"], dtype=object)
    strided = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    outputs = {"s": strings, "v": strided}
    spec = _spec(version=None, signature="")
    got = predict_wire.write_responses(spec.SerializeToString(deterministic=True), outputs, [2, 1])
    assert got == _protobuf_responses(spec, outputs, [2, 1])


def test_without_the_c_code_the_writer_gives_the_same_bytes(monkeypatch):
    outputs = {"probabilities": _values(np.float32, (5, 10)), "classes": _values(np.int64, (5,))}
    spec = _spec().SerializeToString(deterministic=True)
    with_c = predict_wire.write_responses(spec, outputs, [2, 3])
    monkeypatch.setattr(predict_wire, "_predict_wire", None)
    assert predict_wire.write_responses(spec, outputs, [2, 3]) == with_c


@needs_c
@pytest.mark.parametrize("outputs, rows, message", [
    ([(b"y", types_pb2.DT_STRING, np.zeros(2))], [2], "dtype"),
    ([(b"", types_pb2.DT_FLOAT, np.zeros(2, np.float32))], [2], "no name"),
    ([(b"y", types_pb2.DT_FLOAT, np.zeros(2, np.float64))], [2], "itemsize"),
    ([(b"y", types_pb2.DT_FLOAT, np.zeros(3, np.float32))], [2], "rows"),
    ([(b"y", types_pb2.DT_FLOAT, np.float32(1))], [1], "rank"),
    ([(b"y", types_pb2.DT_FLOAT, np.zeros(2, np.float32))], [-1, 3], "negative"),
])
def test_the_c_writer_refuses_what_it_cannot_write(outputs, rows, message):
    with pytest.raises(ValueError, match=message):
        wire.write_responses(b"", outputs, rows)


@needs_c
def test_the_c_writer_needs_contiguous_values():
    strided = np.zeros((4, 4), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="not C-contiguous"):
        wire.write_responses(b"", [(b"y", types_pb2.DT_FLOAT, strided)], [4])
