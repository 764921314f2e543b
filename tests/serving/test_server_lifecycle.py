"""Model lifecycle: hot swap without failed requests, corrupt versions, policies, labels."""

from __future__ import annotations

import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2, prediction_service_pb2_grpc

from serving.server.config import ConfigError, VersionPolicy, read_model_config_file
from tests.serving.conftest import make_base, start_server


def _wait_for(cond, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return False


def _request(name="toy"):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = "single"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((1, 3), np.float32)))
    return req


def test_hot_swap_has_zero_failed_requests(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1])
    server = start_server(["--model_name=toy", f"--model_base_path={base}"], rest=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    seen, failures, stop = [], [], threading.Event()

    def client():
        req = _request()
        while not stop.is_set() and len(seen) < 20000:
            try:
                resp = stub.Predict(req, timeout=30)
                seen.append((resp.model_spec.version.value, resp.outputs["y"].float_val[0]))
            except grpc.RpcError as exc:  # pragma: no cover - the assertion reports it
                failures.append(exc.details())

    threads = [threading.Thread(target=client) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        assert _wait_for(lambda: len(seen) > 20)
        # publish version 2 atomically (copy aside, then rename), as export_model does
        shutil.copytree(toy_builds[2], os.path.join(base, ".tmp-2"))
        os.rename(os.path.join(base, ".tmp-2"), os.path.join(base, "2"))
        assert _wait_for(lambda: seen and seen[-1][0] == 2)
        n = len(seen)
        assert _wait_for(lambda: len(seen) > n + 20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        channel.close()
        states = server.manager.status("toy")
        server.stop()
    assert failures == []
    assert {v for v, _ in seen} == {1, 2}
    assert all(y == float(v) for v, y in seen)  # each version answers with its own weights
    assert [(s.version, s.state) for s in states] == [(2, "AVAILABLE"), (1, "END")]


def test_corrupt_version_is_reported_and_old_version_keeps_serving(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1])
    server = start_server(["--model_name=toy", f"--model_base_path={base}"])
    try:
        broken = os.path.join(base, "2")
        os.makedirs(broken)
        with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
            f.write(b"this is not a protobuf")
        assert _wait_for(lambda: 2 in {s.version for s in server.manager.status("toy")})
        states = {s.version: s for s in server.manager.status("toy")}
        assert states[2].state == "END" and states[2].error is not None
        assert "saved_model.pb" in states[2].error.message
        assert states[1].state == "AVAILABLE"
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        resp = stub.Predict(_request(), timeout=30)
        assert resp.model_spec.version.value == 1
        from tensorflow_serving.apis import model_service_pb2_grpc

        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"}), timeout=30)
        by_version = {s.version: s for s in status.model_version_status}
        assert by_version[2].state == get_model_status_pb2.ModelVersionStatus.END
        assert by_version[2].status.error_code != 0 and by_version[2].status.error_message
        channel.close()
        # a good version 3 then replaces version 1 (latest policy: the newest one)
        shutil.copytree(toy_builds[3], os.path.join(base, "3"))
        assert _wait_for(lambda: server.manager.resolve("toy").version == 3)
        assert _wait_for(lambda: {s.version: s.state for s in server.manager.status("toy")}.get(1)
                         == "END")
    finally:
        server.stop()


def test_version_policy_selection():
    assert VersionPolicy().select([1, 5, 3]) == {5}
    assert VersionPolicy("latest", num_versions=2).select([1, 5, 3]) == {3, 5}
    assert VersionPolicy("all").select([1, 2]) == {1, 2}
    assert VersionPolicy("specific", versions=(2, 9)).select([1, 2, 3]) == {2}
    assert VersionPolicy().select([]) == set()


def test_model_config_file_specific_policy_and_labels(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1, 2, 3])
    config = tmp_path / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "toy" base_path: "{base}" model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 3 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 3 }}
  }}
  config {{
    name: "other" base_path: "toy" model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 2 }} }}
  }}
}}""")
    models = read_model_config_file(str(config))
    assert [m.name for m in models] == ["toy", "other"]
    assert models[0].labels == (("canary", 3), ("stable", 1))
    assert models[1].base_path == base  # relative base paths resolve against the config file
    server = start_server([f"--model_config_file={config}"], rest=False)
    try:
        assert sorted(s.version for s in server.manager.status("toy")) == [1, 3]
        assert server.manager.resolve("toy", label="stable").version == 1
        assert server.manager.resolve("toy", label="canary").version == 3
        assert sorted(s.version for s in server.manager.status("other")) == [2, 3]
    finally:
        server.stop()


def test_label_on_unavailable_version_fails_unless_allowed(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1])
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "toy" base_path: "{base}" '
                      f'model_platform: "tensorflow" '
                      f'version_labels {{ key: "next" value: 2 }} }} }}')
    from serving.server.errors import ServingError

    with pytest.raises(ServingError, match="not currently available"):
        start_server([f"--model_config_file={config}"], rest=False).stop()
    server = start_server([f"--model_config_file={config}",
                           "--allow_version_labels_for_unavailable_models"], rest=False)
    try:
        from serving.server.errors import Code

        with pytest.raises(ServingError) as info:
            server.manager.resolve("toy", label="next")
        assert info.value.code == Code.NOT_FOUND
        assert info.value.message == "Servable not found for request: Specific(toy, 2)"
    finally:
        server.stop()


@pytest.mark.parametrize("text,fragment", [
    ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'tensorflow' } "
     "config { name: 'a' base_path: '/y' model_platform: 'tensorflow' } }",
     "Illegal to list model a multiple times in config list"),
    ("model_config_list { config { name: '../evil' base_path: '/x' } }", "model name"),
    ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'onnx' } }",
     "Model a requests unsupported platform onnx"),
    ("model_config_list { config { name: 'a' base_path: '/x' } }",  # TF Serving's own words
     "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
     "ModelServerConfig::model_platform."),
    ("model_config_list { config { name: 'a' base_path: '/x' model_type: TENSORFLOW "
     "model_platform: 'tensorflow' } }", "Illegal setting both"),
    ("model_config_list { config { name: 'a' model_platform: 'tensorflow' } }",
     "base_path is empty"),
    ("model_config_list { bogus: 1 }", "not a valid text proto"),
])
def test_bad_model_config_files(tmp_path, text, fragment):
    """Each refused with TF Serving's message where it has one (a config it refuses at start-up
    is refused here too)."""
    path = tmp_path / "bad.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        read_model_config_file(str(path))
    assert fragment in str(info.value)
