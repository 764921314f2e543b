"""Fixtures for the embedded server tests: exported test models and running servers.

Models (built once per session, copied where a test needs its own base path):

- ``toy`` (hand-built ``tf.Module``; version v multiplies by v) with signatures
  ``serving_default`` (x float [-1,3] → y = v·x [-1,3], total = v·Σx [-1]), ``single`` (→ y only),
  ``multi`` (a float [-1,2], b int64 [-1] → out = Σa + b), ``strings`` (s string [-1] → length,
  upper, upper_bytes), ``divide`` (x, d → q = x / d), ``classify`` (tf.Example with float
  feature x[3] → scores = softmax([-Σx, Σx]·v), classes "neg"/"pos") and ``regress``
  (→ outputs = v·Σx).
- ``clf``: a Keras classifier exported with ``serving.export.export_model`` (task
  classification, class names).

Servers start in-process on free localhost ports and are stopped at the end of their scope.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from serving.server import ModelServer, parse_flags
from tests.ports import free_port

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


class Toy(tf.Module):
    def __init__(self, version: int):
        super().__init__()
        self.v = tf.Variable(float(version), trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def default(self, x):
        return {"y": x * self.v, "total": tf.reduce_sum(x, axis=1) * self.v}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def single(self, x):
        return {"y": x * self.v}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None], tf.int64, name="b")])
    def multi(self, a, b):
        return {"out": tf.reduce_sum(a, axis=1) + tf.cast(b, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
    def strings(self, s):
        up = tf.strings.upper(s)
        return {"length": tf.strings.length(s), "upper": up, "upper_bytes": up}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"),
                                  tf.TensorSpec([None, 3], tf.float32, name="d")])
    def divide(self, x, d):
        return {"q": x / d}

    def _sum(self, serialized):
        feats = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([3], tf.float32)})
        return tf.reduce_sum(feats["x"], axis=1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        s = self._sum(inputs) * self.v
        scores = tf.nn.softmax(tf.stack([-s, s], axis=1))
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(s)[0], 1])
        return {"scores": scores, "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self._sum(inputs) * self.v}


def set_methods(path: str, methods: dict[str, str]) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    pb = os.path.join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        sm.ParseFromString(f.read())
    for key, method in methods.items():
        sm.meta_graphs[0].signature_def[key].method_name = method
    with open(pb, "wb") as f:
        f.write(sm.SerializeToString())
    fp = os.path.join(path, "fingerprint.pb")
    if os.path.exists(fp):
        os.remove(fp)


def save_toy(path: str, version: int) -> str:
    m = Toy(version)
    sigs = {"serving_default": m.default, "single": m.single, "multi": m.multi,
            "strings": m.strings, "divide": m.divide, "classify": m.classify,
            "regress": m.regress}
    tf.saved_model.save(m, path, signatures={k: f.get_concrete_function() for k, f in sigs.items()})
    set_methods(path, {"classify": CLASSIFY, "regress": REGRESS})
    return path


@pytest.fixture(scope="session")
def toy_builds(tmp_path_factory):
    """Pristine toy versions 1, 2 and 3 to copy from."""
    root = tmp_path_factory.mktemp("toy_builds")
    return {v: save_toy(str(root / str(v)), v) for v in (1, 2, 3)}


def make_base(root, name: str, toy_builds, versions) -> str:
    base = os.path.join(str(root), name)
    os.makedirs(base, exist_ok=True)
    for v in versions:
        shutil.copytree(toy_builds[v], os.path.join(base, str(v)))
    return base


@pytest.fixture(scope="session")
def clf_base(tmp_path_factory):
    """A Keras classifier exported with export_model → <root>/clf/1."""
    import keras

    from serving.export import export_model

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(4,), name="features")
    out = keras.layers.Dense(3, activation="softmax", name="probs")(inp)
    model = keras.Model(inp, out)
    root = tmp_path_factory.mktemp("exported")
    export_model(model, str(root), "clf", task="classification",
                 class_names=["setosa", "versicolor", "virginica"])
    return str(root / "clf"), model


def http_request(method: str, path: str, body: bytes = b"", headers: str = "",
                 version: str = "HTTP/1.1") -> bytes:
    """One raw HTTP request (Content-Length for bodies and every POST)."""
    head = f"{method} {path} {version}\r\nHost: x\r\n{headers}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def read_http_response(f) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.1 response read from file ``f``."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    body = f.read(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers, body


def start_server(args: list[str], rest: bool = True) -> ModelServer:
    argv = ["--port=0", "--file_system_poll_wait_seconds=1", *args]
    if rest:
        argv.append(f"--rest_api_port={free_port()}")
    return ModelServer(parse_flags(argv)).start()


def start_batching_server(root, toy_builds, parameters: str, *flags: str) -> ModelServer:
    """The toy model (version 1) under ``root`` with ``--enable_batching`` and the batching
    parameters text proto ``parameters``; ``flags`` are further server flags."""
    base = make_base(root, "toy", toy_builds, [1])
    params = pathlib.Path(root) / "batching.config"
    params.write_text(parameters)
    return start_server(["--model_name=toy", f"--model_base_path={base}", "--enable_batching",
                         f"--batching_parameters_file={params}", *flags])


@pytest.fixture(scope="module")
def main_server(tmp_path_factory, toy_builds, clf_base):
    """toy (versions 1 and 2, policy all, labels stable→1 canary→2) and clf, metrics on."""
    server = start_main_server(tmp_path_factory, toy_builds, clf_base)
    yield server
    server.stop()


def start_main_server(tmp_path_factory, toy_builds, clf_base, *flags: str) -> ModelServer:
    """The ``main_server`` fixture's server, with more ``flags``."""
    root = tmp_path_factory.mktemp("main_models")
    toy = make_base(root, "toy", toy_builds, [1, 2])
    config = root / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "toy"  base_path: "{toy}"  model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "clf"  base_path: "{clf_base[0]}"  model_platform: "tensorflow" }}
}}
""")
    monitoring = root / "monitoring.config"
    monitoring.write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }')
    return start_server([f"--model_config_file={config}",
                         f"--monitoring_config_file={monitoring}", *flags])


@pytest.fixture(scope="module")
def grpc_stubs(main_server):
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{main_server.grpc_port}")
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def np_close(a, b, tol=1e-5) -> bool:
    return np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                       atol=tol, rtol=tol)
