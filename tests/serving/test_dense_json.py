"""The C reader and writer for dense numeric JSON (serving/server/_dense_json.c) against the
Python ones: wherever the C code answers, its result is the Python code's, bit for bit; and the
server's fast path gives the same arrays without the C reader."""

from __future__ import annotations

import json
import shutil
import sysconfig

import numpy as np
import pytest

from serving.server import json_codec

dense_json = json_codec._dense_json


def test_the_c_reader_is_built_where_a_compiler_is():
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the Python reader serves alone")
    assert dense_json is not None, "setup.py did not build serving/server/_dense_json.c"


needs_c = pytest.mark.skipif(dense_json is None, reason="C reader not built")


def _c(array: bytes):
    parsed = dense_json.parse(array)
    if parsed is None:
        return None
    kind, raw, shape = parsed
    return np.frombuffer(raw, np.int64 if kind == "i" else np.float64), shape


def _same(c, py) -> None:
    values, shape = c
    ref = np.asarray(py[0])
    assert shape == py[1]
    assert values.dtype == ref.dtype, (values.dtype, ref.dtype)
    assert values.tobytes() == ref.tobytes()  # bitwise: -0.0 and every rounding included


@needs_c
@pytest.mark.parametrize("array, kind, values, shape", [
    (b"[1, 2]", "i", [1, 2], (2,)),
    (b"[[1], [2]]", "i", [1, 2], (2, 1)),
    (b" [ [ 1 ,\t2 ]\r\n, [3,4] ] ", "i", [1, 2, 3, 4], (2, 2)),
    (b"[-0]", "i", [0], (1,)),
    (b"[123456789012345678, -5]", "i", [123456789012345678, -5], (2,)),
    (b"[255.0, 0.5, 1e2, 2E-3, 7e+1]", "f", [255.0, 0.5, 100.0, 0.002, 70.0], (5,)),
    (b"[-0, 0.5]", "f", [0.0, 0.5], (2,)),  # the integer literal -0 is int 0: +0.0
    (b"[-0.0]", "f", [-0.0], (1,)),
    (b"[0.1, 0.30000000000000004, 1e22, 1e-22]", "f",
     [0.1, 0.30000000000000004, 1e22, 1e-22], (4,)),
    (b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[7]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "i", [7], (1,) * 32),
])
def test_worked_examples(array, kind, values, shape):
    got_kind, raw, got_shape = dense_json.parse(array)
    got = np.frombuffer(raw, np.int64 if got_kind == "i" else np.float64)
    assert (got_kind, got.tolist(), got_shape) == (kind, values, shape)
    assert np.signbit(got[0]) == array.startswith(b"[-0.0")


@needs_c
def test_negative_zero_keeps_its_sign_only_as_a_decimal():
    _, raw, _ = dense_json.parse(b"[-0.0, -0e3, -0, 0.5]")
    assert np.signbit(np.frombuffer(raw, np.float64)).tolist() == [True, True, False, False]


@needs_c
@pytest.mark.parametrize("array", [
    # not a dense numeric JSON array
    b"[]", b"[[]]", b"[[1], []]", b"[1,]", b"[,1]", b"[1,,2]", b"[1 2]", b"[[1]2]", b"[1[2]]",
    b"[[1], [2, 3]]", b"[[1, 2], [3]]", b"[[1], 2]", b"[1, [2]]", b"[1]]", b"[[1]", b"[1] [2]",
    b"[1] x", b"1", b"[01]", b"[+1]", b"[.5]", b"[1.]", b"[1e]", b"[1e+]", b"[--1]", b"[-]",
    b"[NaN]", b"[Infinity]", b"[true]", b'["1"]', b"[{}]", b"[1\x0b]", b"[1\xa0]",
    b"[" * 33 + b"1" + b"]" * 33,  # deeper than 32
    # integer literals of 19 digits or more: NumPy's type for them depends on their neighbours
    b"[1234567890123456789]", b"[9223372036854775808, 1]", b"[18446744073709551616, 1.5]",
])
def test_what_it_leaves_to_the_python_reader(array):
    assert dense_json.parse(array) is None


@needs_c
@pytest.mark.parametrize("array", [
    b"[1e23]", b"[1e-23]", b"[0.30000000000000004]", b"[1.2345678901234567890]", b"[5e-324]",
    b"[1e400, -1e400, 1e-400, -0e400]", b"[2.2250738585072011e-308]", b"[9007199254740993.0]",
    b"[9007199254740993, 0.5]", b"[123456789012345678, 0.5]", b"[0.1e-30, 123.456e+25]",
])
def test_numbers_beyond_the_fast_path_are_read_by_cpython_rules(array):
    _same(_c(array), json_codec._python_dense_numbers(array))


def _number_text(rng) -> str:
    kind = rng.integers(0, 10)
    if kind == 0:
        return str(int(rng.integers(-2**62, 2**62)) >> int(rng.integers(0, 62)))
    if kind == 1:
        return str(int(rng.integers(0, 256)))
    if kind == 2:
        return f"{int(rng.integers(0, 256))}.0"
    if kind == 3:
        return repr(float(rng.standard_normal() * 10.0 ** rng.integers(-30, 30)))
    if kind == 4:
        return f"{np.float32(rng.standard_normal() * 10.0 ** rng.integers(-30, 30)):.9g}"
    if kind == 5:
        digits = "".join(rng.choice(list("0123456789"), int(rng.integers(1, 22))))
        return str(int(digits))  # up to 21 digits: int64 and beyond
    if kind == 6:
        return rng.choice(["0", "-0", "0.0", "-0.0", "0e5", "-0E-5", "1e22", "1e23", "1e-22",
                           "9007199254740992", "9007199254740993", "0.000001", "5e-324"])
    if kind == 7:
        mantissa = "".join(rng.choice(list("0123456789"), int(rng.integers(1, 12))))
        frac = "".join(rng.choice(list("0123456789"), int(rng.integers(1, 12))))
        exp = rng.choice(["", f"e{int(rng.integers(-25, 25))}", f"E+{int(rng.integers(0, 25))}"])
        sign = rng.choice(["", "-"])
        return f"{sign}{int(mantissa)}.{frac}{exp}"
    if kind == 8:
        return rng.choice(["01", "+1", ".5", "1.", "1e", "--1", "NaN", "true", '"1"', "1 2", ""])
    return str(float(rng.integers(-10**6, 10**6)) / 8)


def _random_array(rng) -> bytes:
    shape = tuple(int(d) for d in rng.integers(1, 4, rng.integers(1, 5)))
    n = int(np.prod(shape))
    uniform = rng.integers(0, 3)  # all integers / all simple decimals / mixed
    texts = []
    for _ in range(n):
        if uniform == 0:
            texts.append(str(int(rng.integers(-300, 300))))
        elif uniform == 1:
            texts.append(f"{int(rng.integers(0, 256))}.{int(rng.integers(0, 100))}")
        else:
            texts.append(_number_text(rng))
    space = ["", " ", "\n", "\t ", "\r\n"]

    def nest(level: int, flat: list) -> str:
        if level == len(shape) - 1:
            return "[" + ("," + rng.choice(space)).join(flat) + "]"
        step = len(flat) // shape[level]
        return "[" + ",".join(rng.choice(space) + nest(level + 1, flat[i * step:(i + 1) * step])
                              for i in range(shape[level])) + "]"

    text = nest(0, texts)
    if rng.random() < 0.15:  # a structural fault: a bracket or comma removed or added
        pos = int(rng.integers(0, len(text)))
        text = text[:pos] + rng.choice(["", "[", "]", ","]) + text[pos + 1:]
    return text.encode()


@needs_c
def test_random_arrays_equal_the_python_reader():
    rng = np.random.default_rng(7)
    answered = valid = 0
    for _ in range(4000):
        array = _random_array(rng)
        c, py = _c(array), json_codec._python_dense_numbers(array)
        if py is not None:
            valid += 1
        if c is None:
            continue
        answered += 1
        assert py is not None, array  # the C reader accepts nothing the Python reader refuses
        _same(c, py)
        assert np.asarray(py[0]).tolist() == np.ravel(json.loads(array)).tolist()
    assert valid > 2000 and answered > 0.6 * valid, (answered, valid)  # not vacuous


@needs_c
def test_every_float32_text_and_pixel_image_takes_the_c_reader():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1, 28, 28, 1))
    for values in (image, image.astype(np.float32), image / 255.0):
        array = json.dumps(values.tolist()).encode()
        _same(_c(array), json_codec._python_dense_numbers(array))
    floats = (rng.standard_normal(2000) * 10.0 ** rng.integers(-6, 6, 2000)).astype(np.float32)
    array = ("[" + ", ".join(f"{v:.9g}" for v in floats) + "]").encode()
    c = _c(array)
    assert c is not None
    _same(c, json_codec._python_dense_numbers(array))
    np.testing.assert_array_equal(c[0].astype(np.float32), floats)


def test_fast_instances_without_the_c_reader_gives_the_same_arrays(monkeypatch):
    rng = np.random.default_rng(11)
    bodies = [b'{"instances": ' + _random_array(rng) + b"}" for _ in range(300)]
    with_c = [json_codec.fast_instances(b) for b in bodies]
    monkeypatch.setattr(json_codec, "_dense_json", None)
    answered = 0
    for body, c in zip(bodies, with_c, strict=True):
        py = json_codec.fast_instances(body)
        assert (c is None) == (py is None), body
        if py is not None:
            answered += 1
            assert c[0] == py[0] and c[2] == py[2]
            got, ref = np.asarray(c[1]), np.asarray(py[1])
            assert got.dtype == ref.dtype
            if ref.dtype == object:  # integers beyond 64 bits: both took the Python reader
                assert got.tolist() == ref.tolist()
            else:
                assert got.tobytes() == ref.tobytes()
    assert answered > 150


@needs_c
def test_decimal_strings_equal_the_python_writer():
    rng = np.random.default_rng(13)
    special = [0.0, -0.0, 1.0, 0.1, 1e-5, 1e16, 1e17, 123456789.0, 2.0**-149, 2.0**-126,
               np.finfo(np.float32).max, np.nan, np.inf, -np.inf]
    for dtype in (np.float32, np.float64):
        info = np.finfo(dtype)
        with np.errstate(over="ignore"):  # float32 overflows to inf: written as "Infinity"
            normal = (rng.standard_normal(3000) * 10.0 ** rng.integers(-40, 38, 3000))
            vals = np.concatenate([
                normal.astype(dtype),
                rng.integers(-10**6, 10**6, 500).astype(dtype),  # whole: "%g" or ".0" added
                np.frombuffer(rng.bytes(2000 * info.bits // 8), dtype),  # any bit pattern
                np.array(special + [info.tiny, info.smallest_subnormal], dtype),
            ])
        got = dense_json.decimal_strings(vals)
        with np.errstate(invalid="ignore"):  # signalling NaNs among the bit patterns
            assert got == json_codec._python_float_strings(vals).tolist()
    assert dense_json.decimal_strings(np.array([0.1, 1 / 3], np.float32)) == [
        "0.1", "0.333333343"]
    assert dense_json.decimal_strings(np.array([1 / 3, 5.0], np.float64)) == [
        "0.33333333333333331", "5.0"]


@needs_c
def test_decimal_strings_refuse_other_types():
    with pytest.raises(TypeError, match="float32 or float64"):
        dense_json.decimal_strings(np.array([1], np.int32))
    with pytest.raises(TypeError, match="float32 or float64"):
        dense_json.decimal_strings(np.array([1], np.float16))


def _python_rows(outputs, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(json_codec, "_dense_json", None)
        return json_codec.predict_rows(outputs)


@needs_c
def test_rows_json_equals_the_python_writer(monkeypatch):
    rng = np.random.default_rng(17)
    wide = np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max], np.int64)
    cases = [
        {"probabilities": rng.random((32, 10)).astype(np.float32),
         "classes": rng.integers(0, 10, 32)},  # LeNet-5's outputs
        {"y": rng.standard_normal(5)},  # one value per row
        {"y": rng.standard_normal((3, 2, 4)).astype(np.float32)},  # nested lists
        {"y": np.array([[np.nan, np.inf], [-np.inf, -0.0]], np.float32)},
        {"i8": np.array([-128, 127], np.int8), "u64": np.array([0, 2**64 - 1], np.uint64),
         "b": np.array([[True, False], [False, True]]), "i16": np.array([-7, 300], np.int16)},
        {"i64": wide, "u8": np.array([0, 1, 200, 255], np.uint8)},
        {"x": rng.standard_normal((4, 6))[:, ::2]},  # not contiguous
        {"x": np.zeros((2, 0)), "y": np.ones((2, 1, 0, 3), np.float32)},  # empty rows
        {'"quoted" \u00e9': np.arange(3, dtype=np.int32), "z": np.arange(3, dtype=np.uint16)},
    ]
    for outputs in cases:
        got = json_codec.predict_rows(outputs)
        assert got == _python_rows(outputs, monkeypatch), outputs
        for row in got:
            json.loads(row)
    assert json_codec.predict_rows({"p": np.array([[0.5, 0.25]], np.float32),
                                    "c": np.array([0])}) == ['{"p": [0.5, 0.25], "c": 0}']


@needs_c
def test_rows_json_leaves_other_types_to_python(monkeypatch):
    for outputs in ({"s": np.array([b"a", b"b"], object), "n": np.arange(2)},
                    {"h": np.array([1.5], np.float16)},
                    {"big": np.array([1.0, 2.0], ">f8")}):
        assert json_codec.predict_rows(outputs) == _python_rows(outputs, monkeypatch)
    with pytest.raises(TypeError, match="numeric or bool arrays"):
        dense_json.rows_json(None, [np.array([1.5], np.float16)])
    with pytest.raises(ValueError, match="one length in their 0th dimension"):
        dense_json.rows_json(['"a"', '"b"'], [np.arange(2), np.arange(3)])
    with pytest.raises(ValueError, match="one key per array"):
        dense_json.rows_json(None, [np.arange(2), np.arange(2)])
