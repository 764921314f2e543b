"""deepline-query against the project's embedded model server serving an export_model version."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from serving import client
from serving.export import export_model
from tests.ports import free_port

CLASSES = ["zero", "one", "two", "three"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from serving.server import ModelServer, parse_flags

    base = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(2)
    image = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(image))
    model = keras.Model(image, keras.layers.Dense(4, activation="softmax")(x))
    export_model(model, base, "lenet5", task="classification", class_names=CLASSES)
    server = ModelServer(parse_flags([
        "--model_name=lenet5", f"--model_base_path={base / 'lenet5'}", "--port=0",
        f"--rest_api_port={free_port()}", "--file_system_poll_wait_seconds=0",
    ]))
    server.start()
    try:
        yield model, [f"--server=127.0.0.1:{server.grpc_port}",
                      f"--rest=127.0.0.1:{server.rest_port}", "--model_name=lenet5"]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    rng = np.random.RandomState(11)
    folder = tmp_path_factory.mktemp("digits")
    pixels = rng.randint(0, 256, (2, 28, 28)).astype(np.uint8)
    paths = []
    for i, p in enumerate(pixels):
        Image.fromarray(p, mode="L").save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return paths, pixels[..., None].astype("float32")


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_predict_and_classify_png_against_the_embedded_server(served, digits, capsys, protocol):
    model, args = served
    paths, pixels = digits
    expected = model.predict(pixels, verbose=0)

    assert client.main([*args, f"--protocol={protocol}", "--image", *paths, "--format=json"]) == 0
    result = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert result["classes"] == expected.argmax(-1).tolist()

    assert client.main([*args, f"--protocol={protocol}", "--image", *paths, "--classify",
                        "--top_k=2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    for line, row in zip(lines, expected, strict=True):
        best = np.argsort(-row, kind="stable")[:2]
        assert line.split()[1:] == [f"{CLASSES[best[0]]}:", f"{row[best[0]]:.4f}",
                                    f"{CLASSES[best[1]]}:", f"{row[best[1]]:.4f}"]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_missing_model_against_the_embedded_server(served, capsys, protocol):
    _, args = served
    code = client.main([*args, f"--protocol={protocol}", "--model_name=absent", "--json=[[1.0]]"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: model 'absent' not found")
    assert "Traceback" not in err
