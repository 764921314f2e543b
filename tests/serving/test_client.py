"""deepline-query without a server: request building, input loading, printing, error paths."""

import base64
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import types_pb2

from serving import client
from serving.query_inputs import InputError, cast_batch, load_images, load_json, load_numpy
from serving.transport import (
    ModelRef,
    SignatureInfo,
    classification_request,
    predict_request,
    regression_request,
    rest_classify_body,
    rest_predict_body,
)
from tests.ports import free_port

F32 = np.dtype("float32")
IMAGE_SIG = SignatureInfo(
    "tensorflow/serving/predict",
    inputs={"image": (F32, [None, 28, 28, 1])},
    outputs={"probabilities": (F32, [None, 10]), "classes": (np.dtype("int64"), [None])},
)
TEXT_SIG = SignatureInfo("tensorflow/serving/predict", inputs={"text": (np.dtype(object), [None])})
TWO_SIG = SignatureInfo(
    "tensorflow/serving/predict",
    inputs={"a": (F32, [None, 2]), "b": (np.dtype("int32"), [None])},
)


def test_signature_info_from_signature_def_proto():
    from tensorflow.core.protobuf import meta_graph_pb2

    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    info = sig.inputs["image"]
    info.dtype = types_pb2.DT_FLOAT
    for size in (-1, 28, 28, 1):
        info.tensor_shape.dim.add(size=size)
    sig.outputs["label"].dtype = types_pb2.DT_STRING
    sig.outputs["label"].tensor_shape.unknown_rank = True
    parsed = SignatureInfo.from_proto(sig)
    assert parsed.inputs == {"image": (F32, [None, 28, 28, 1])}
    assert parsed.outputs == {"label": (np.dtype(object), None)}


def _png(path, array, mode):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_png_becomes_raw_pixels_of_the_input_shape(tmp_path):
    pixels = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    batch = load_images([_png(tmp_path / "a.png", pixels, "L")], IMAGE_SIG)
    assert list(batch) == ["image"]
    assert batch["image"].shape == (1, 28, 28, 1) and batch["image"].dtype == np.float32
    np.testing.assert_array_equal(batch["image"][0, :, :, 0], pixels.astype(np.float32))


def test_rgb_jpeg_is_grayscaled_and_resized(tmp_path):
    rgb = np.zeros((56, 42, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601 luma L = 299/1000 * 255 = 76.2
    path = tmp_path / "red.jpg"
    Image.fromarray(rgb, mode="RGB").save(path, quality=100)
    batch = load_images([path, _png(tmp_path / "b.png", np.full((28, 28), 9, np.uint8), "L")],
                        IMAGE_SIG)
    assert batch["image"].shape == (2, 28, 28, 1)
    np.testing.assert_allclose(batch["image"][0], 76.0, atol=2.0)
    np.testing.assert_array_equal(batch["image"][1], 9.0)


def test_image_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_images([tmp_path / "missing.png"], IMAGE_SIG)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image"):
        load_images([tmp_path / "bad.png"], IMAGE_SIG)
    with pytest.raises(InputError, match="an image input needs"):
        load_images([tmp_path / "bad.png"], TEXT_SIG)
    with pytest.raises(InputError, match="--input_name"):
        load_images([tmp_path / "bad.png"], TWO_SIG)


def test_predict_request_from_png(tmp_path):
    pixels = np.random.RandomState(0).randint(0, 256, (28, 28)).astype(np.uint8)
    batch = load_images([_png(tmp_path / "a.png", pixels, "L")], IMAGE_SIG)
    request = predict_request(ModelRef("lenet5", version=3), batch)
    assert request.model_spec.name == "lenet5"
    assert request.model_spec.version.value == 3
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["image"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in request.inputs["image"].tensor_shape.dim] == [1, 28, 28, 1]
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["image"])[0, ..., 0], pixels)

    labelled = predict_request(ModelRef("m", label="stable"), batch, "other")
    assert labelled.model_spec.version_label == "stable"
    assert not labelled.model_spec.HasField("version")
    assert labelled.model_spec.signature_name == "other"
    with pytest.raises(ValueError, match="not both"):
        ModelRef("m", version=1, label="stable")


def test_numpy_inputs(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((28, 28, 1)))
    batch = load_numpy(tmp_path / "one.npy", IMAGE_SIG)
    assert batch["image"].shape == (1, 28, 28, 1) and batch["image"].dtype == np.float32
    np.savez(tmp_path / "two.npz", a=np.array([[1.5, 2.0]]), b=np.array([7]))
    batch = load_numpy(tmp_path / "two.npz", TWO_SIG)
    assert batch["a"].dtype == np.float32 and batch["b"].dtype == np.int32
    np.testing.assert_array_equal(batch["b"], [7])
    np.save(tmp_path / "wrong.npy", np.ones((2, 27, 28, 1)))
    with pytest.raises(InputError, match=r"shape \[2, 27, 28, 1\]; the model expects"):
        load_numpy(tmp_path / "wrong.npy", IMAGE_SIG)
    with pytest.raises(InputError, match="not found"):
        load_numpy(tmp_path / "nope.npy", IMAGE_SIG)


def test_json_inputs_in_every_accepted_form():
    rows = load_json('[[1.0, 2.0], [3.0, 4.0]]', SignatureInfo("p", {"x": (F32, [None, 2])}))
    np.testing.assert_array_equal(rows["x"], [[1, 2], [3, 4]])
    assert rows["x"].dtype == np.float32
    named = load_json('{"instances": [{"a": [1, 2], "b": 3}, {"a": [4, 5], "b": 6}]}', TWO_SIG)
    np.testing.assert_array_equal(named["a"], [[1, 2], [4, 5]])
    np.testing.assert_array_equal(named["b"], [3, 6])
    columns = load_json('{"inputs": {"a": [[0, 1]], "b": [2]}}', TWO_SIG)
    np.testing.assert_array_equal(columns["a"], [[0, 1]])
    encoded = base64.b64encode(b"\xff\x00raw").decode()
    text = load_json(json.dumps({"instances": ["hello", {"b64": encoded}]}), TEXT_SIG)
    assert text["text"].tolist() == ["hello", b"\xff\x00raw"]
    with pytest.raises(InputError, match="not valid JSON"):
        load_json("{oops", TWO_SIG)
    with pytest.raises(InputError, match=r"unknown input name\(s\) \['c'\]"):
        load_json('{"a": [[1, 2]], "c": [1]}', TWO_SIG)
    with pytest.raises(InputError, match=r"missing input\(s\) \['b'\]"):
        cast_batch({"a": [[1, 2]]}, TWO_SIG)


def test_json_from_file(tmp_path):
    (tmp_path / "req.json").write_text('{"instances": [[5.0, 6.0]]}')
    batch = load_json(f"@{tmp_path / 'req.json'}", SignatureInfo("p", {"x": (F32, [None, 2])}))
    np.testing.assert_array_equal(batch["x"], [[5.0, 6.0]])


def test_rest_bodies():
    single = rest_predict_body({"x": np.array([[0.0, 1.5]], dtype=np.float32)})
    assert single == {"signature_name": "serving_default", "instances": [[0.0, 1.5]]}
    several = rest_predict_body({"a": np.array([[1.0, 2.0]]), "b": np.array([3])}, "sig")
    assert several == {"signature_name": "sig", "instances": [{"a": [1.0, 2.0], "b": 3}]}
    text = rest_predict_body({"t": np.array(["hi", b"\x01"], dtype=object)})
    assert text["instances"] == ["hi", {"b64": "AQ=="}]

    body = rest_classify_body({"image": np.zeros((2, 2, 2, 1), dtype=np.float32)})
    assert body["signature_name"] == "classify" and len(body["examples"]) == 2
    assert body["examples"][0] == {"image": [0.0, 0.0, 0.0, 0.0]}
    # Floats must stay JSON floats (TF Serving maps JSON integers to int64_list).
    assert '"image": [0.0, 0.0, 0.0, 0.0]' in json.dumps(body)
    strings = rest_classify_body({"text": np.array(["abc"], dtype=object), "n": np.array([[2]])})
    assert strings["examples"] == [{"text": "abc", "n": [2]}]


def test_classification_and_regression_requests_use_the_example_layout():
    batch = {"image": np.arange(2 * 4, dtype=np.float32).reshape(2, 2, 2, 1)}
    request = classification_request(ModelRef("m"), batch)
    assert request.model_spec.signature_name == "classify"
    examples = request.input.example_list.examples
    assert len(examples) == 2
    assert list(examples[1].features.feature["image"].float_list.value) == [4.0, 5.0, 6.0, 7.0]
    regress = regression_request(ModelRef("m", version=2), {"t": np.array([b"x"], dtype=object)})
    assert regress.model_spec.signature_name == "regress"
    assert regress.model_spec.version.value == 2
    assert list(regress.input.example_list.examples[0].features.feature["t"].bytes_list.value) == [
        b"x"
    ]


def test_format_result_text_and_json():
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)
    text = client.format_result("predict", {"probabilities": probabilities, "classes": [1, 0]},
                                top_k=2)
    assert text == "[0] 1: 0.7000  2: 0.2000\n[1] 0: 0.5000  2: 0.3000"
    sigmoid = client.format_result("predict", {"probabilities": np.array([[0.25]])}, top_k=2)
    assert sigmoid == "[0] 0: 0.7500  1: 0.2500"
    classified = client.format_result("classify", [[("cat", 0.2), ("dog", 0.8)]], top_k=1)
    assert classified == "[0] dog: 0.8000"
    assert client.format_result("regress", [1.5, -2.0]) == "[0] 1.5\n[1] -2"
    plain = client.format_result("predict", {"outputs": np.array([[1.0, 2.0]])})
    assert json.loads(plain) == {"outputs": [[1.0, 2.0]]}
    as_json = client.format_result("predict", {"probabilities": probabilities}, fmt="json")
    np.testing.assert_allclose(json.loads(as_json)["probabilities"], probabilities)
    assert json.loads(client.format_result("classify", [[("a", 0.5)]], fmt="json")) == {
        "results": [[["a", 0.5]]]
    }


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_unreachable_server_is_a_clear_error(capsys, protocol):
    port = free_port()  # nothing listens on it
    code = client.main([
        "--protocol", protocol, "--server", f"127.0.0.1:{port}", "--rest", f"127.0.0.1:{port}",
        "--model_name", "lenet5", "--json", "[[1.0]]", "--timeout", "5",
    ])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot reach the") and f"127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_bad_command_lines_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        client.main(["--model_name", "m"])  # no input given
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        client.main(["--json", "[1]", "--model_version", "1", "--version_label", "x"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        client.main(["--json", "[1]", "--top_k", "0"])
    assert e.value.code == 2
    assert "--top_k must be >= 1; received 0" in capsys.readouterr().err


def test_importing_serving_and_the_client_does_not_load_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, serving, serving.client\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert callable(serving.client.main)\n"
        "print(serving.export_model.__module__)\n"  # lazy attribute resolves on use
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "serving.export"
