"""deepline-query end to end: a real exported SavedModel behind the official gRPC protos and a
stdlib HTTP handler speaking TF Serving's REST API (a minimal stand-in, independent of the
project's server, so the client is tested against the wire format itself)."""

import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import client
from serving.examples import make_example
from serving.export import export_model

CLASSES = ["zero", "one", "two"]


class Servables:
    """model name → (signature defs from saved_model.pb, loaded SavedModel); version 1 only."""

    def __init__(self, paths):
        self.models = {}
        for name, path in paths.items():
            proto = saved_model_pb2.SavedModel()
            proto.ParseFromString((path / "saved_model.pb").read_bytes())
            self.models[name] = (proto.meta_graphs[0].signature_def,
                                 tf.saved_model.load(str(path)))

    def get(self, name, version=None):
        if name not in self.models or version not in (None, 1):
            return None
        return self.models[name]

    @staticmethod
    def run(loaded, signature, **inputs):
        return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, servables):
        self.servables = servables

    def _get(self, spec, context):
        version = spec.version.value if spec.HasField("version") else None
        found = self.servables.get(spec.name, version)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Servable not found for request: Latest({spec.name})")
        return found

    def GetModelMetadata(self, request, context):
        defs, _ = self._get(request.model_spec, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.metadata["signature_def"].Pack(get_model_metadata_pb2.SignatureDefMap(
            signature_def={k: v for k, v in defs.items() if not k.startswith("__")}))
        return response

    def Predict(self, request, context):
        _, loaded = self._get(request.model_spec, context)
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        out = Servables.run(loaded, request.model_spec.signature_name or "serving_default",
                            **inputs)
        response = predict_pb2.PredictResponse()
        for k, v in out.items():
            response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
        return response

    def _examples(self, request):
        return tf.constant([e.SerializeToString() for e in request.input.example_list.examples])

    def Classify(self, request, context):
        _, loaded = self._get(request.model_spec, context)
        signature = request.model_spec.signature_name
        out = Servables.run(loaded, signature, inputs=self._examples(request))
        response = classification_pb2.ClassificationResponse()
        for labels, scores in zip(out["classes"], out["scores"], strict=True):
            c = response.result.classifications.add()
            for label, score in zip(labels, scores, strict=True):
                c.classes.add(label=label.decode(), score=float(score))
        return response

    def Regress(self, request, context):
        _, loaded = self._get(request.model_spec, context)
        signature = request.model_spec.signature_name
        out = Servables.run(loaded, signature, inputs=self._examples(request))
        response = regression_pb2.RegressionResponse()
        for value in out["outputs"]:
            response.result.regressions.add(value=float(value))
        return response


def make_handler(servables):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _resolve(self):
            path, _, verb = self.path.partition(":")
            parts = path.strip("/").split("/")  # v1 models NAME [versions N] [metadata]
            version = int(parts[4]) if len(parts) > 4 and parts[3] == "versions" else None
            found = servables.get(parts[2], version)
            if found is None:
                self._reply(404, {"error": f"Servable not found for request: Latest({parts[2]})"})
            return found, parts, verb

        def do_GET(self):
            found, parts, _ = self._resolve()
            if found is not None and parts[-1] == "metadata":
                defs = get_model_metadata_pb2.SignatureDefMap(
                    signature_def={k: v for k, v in found[0].items() if not k.startswith("__")})
                self._reply(200, {"model_spec": {"name": parts[2]},
                                  "metadata": {"signature_def": json_format.MessageToDict(defs)}})

        def do_POST(self):
            found, _, verb = self._resolve()
            if found is None:
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            loaded = found[1]
            if verb == "predict":
                (name,) = loaded.signatures[body["signature_name"]].structured_input_signature[1]
                out = Servables.run(loaded, body["signature_name"],
                                    **{name: tf.constant(body["instances"], tf.float32)})
                rows = [{k: v[i].tolist() for k, v in out.items()}
                        for i in range(len(body["instances"]))]
                return self._reply(200, {"predictions": rows})
            serialized = tf.constant(
                [make_example({k: np.asarray(v) for k, v in ex.items()}).SerializeToString()
                 for ex in body["examples"]])
            out = Servables.run(loaded, body["signature_name"], inputs=serialized)
            if verb == "classify":
                results = [[[lab.decode(), float(s)] for lab, s in zip(ls, ss, strict=True)]
                           for ls, ss in zip(out["classes"], out["scores"], strict=True)]
            else:
                results = out["outputs"].tolist()
            self._reply(200, {"results": results})

    return Handler


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    image = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(image))
    classifier = keras.Model(image, keras.layers.Dense(3, activation="softmax")(x))
    features = keras.Input((3,), name="features")
    regressor = keras.Model(features, keras.layers.Dense(1)(features))
    paths = {
        "lenet5": export_model(classifier, base, "lenet5", task="classification",
                               class_names=CLASSES),
        "reg": export_model(regressor, base, "reg", task="regression"),
    }
    servables = Servables(paths)
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        Servicer(servables), grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(servables))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "args": ["--server", f"127.0.0.1:{grpc_port}",
                     "--rest", f"127.0.0.1:{http.server_address[1]}", "--timeout", "30"],
            "classifier": classifier, "regressor": regressor, "base": base,
        }
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=10)
        grpc_server.stop(grace=None).wait(timeout=10)


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    pixels = np.random.RandomState(3).randint(0, 256, (28, 28)).astype(np.uint8)
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(pixels, mode="L").save(path)
    return path, pixels


def _expected(endpoint, pixels):
    return endpoint["classifier"].predict(pixels[None, :, :, None].astype("float32"), verbose=0)[0]


def _top(probabilities, k=3):
    order = np.argsort(-probabilities, kind="stable")[:k]
    return "[0] " + "  ".join(f"{c}: {probabilities[c]:.4f}" for c in order)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_predict_from_png(endpoint, digit_png, capsys, protocol):
    path, pixels = digit_png
    code = client.main([*endpoint["args"], "--protocol", protocol, "--model_name", "lenet5",
                        "--image", str(path), "--top_k", "3"])
    out = capsys.readouterr().out.strip()
    assert code == 0
    assert out == _top(_expected(endpoint, pixels))


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_classify_from_png(endpoint, digit_png, capsys, protocol):
    path, pixels = digit_png
    code = client.main([*endpoint["args"], "--protocol", protocol, "--model_name", "lenet5",
                        "--image", str(path), str(path), "--classify", "--format", "json"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 2
    expected = _expected(endpoint, pixels)
    for row in results:
        assert [label for label, _ in row] == CLASSES
        np.testing.assert_allclose([s for _, s in row], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_regress_from_json(endpoint, capsys, protocol):
    code = client.main([*endpoint["args"], "--protocol", protocol, "--model_name", "reg",
                        "--json", '{"instances": [[1, 2, 3], [0, 0, 1]]}', "--regress",
                        "--format", "json"])
    assert code == 0
    values = json.loads(capsys.readouterr().out)["results"]
    expected = endpoint["regressor"].predict(np.array([[1, 2, 3], [0, 0, 1]], "float32"),
                                             verbose=0)[:, 0]
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_predict_from_npy_json_output(endpoint, tmp_path, capsys):
    batch = np.random.RandomState(4).randint(0, 256, (2, 28, 28, 1)).astype("float32")
    np.save(tmp_path / "batch.npy", batch)
    code = client.main([*endpoint["args"], "--model_name", "lenet5", "--npy",
                        str(tmp_path / "batch.npy"), "--format", "json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    expected = endpoint["classifier"].predict(batch, verbose=0)
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert result["classes"] == expected.argmax(-1).tolist()


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_unknown_model_and_version(endpoint, capsys, protocol):
    base = [*endpoint["args"], "--protocol", protocol, "--json", "[[1.0, 2.0, 3.0]]"]
    assert client.main([*base, "--model_name", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model 'nope' not found") and "Traceback" not in err
    assert client.main([*base, "--model_name", "reg", "--model_version", "9"]) == 1
    assert capsys.readouterr().err.startswith("error: model 'reg' version 9 not found")


def test_unknown_signature_and_bad_input(endpoint, capsys):
    args = [*endpoint["args"], "--model_name", "reg"]
    assert client.main([*args, "--json", "[[1.0]]", "--signature_name", "nope"]) == 1
    err = capsys.readouterr().err
    assert "has no signature 'nope'" in err and "serving_default" in err
    assert client.main([*args, "--json", "[[1.0]]"]) == 2
    assert "the model expects ['batch', 3]" in capsys.readouterr().err
