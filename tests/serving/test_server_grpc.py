"""gRPC conformance with the official tensorflow-serving-api stubs, on both gRPC front ends: the
native one (C I/O thread with libnghttp2, where built) and grpcio's server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.server import native_grpc
from tests.serving.conftest import np_close, start_main_server

FRONTS = ["native", "grpcio"] if native_grpc.available() else ["grpcio"]


@pytest.fixture(scope="module", params=FRONTS)
def main_server(request, tmp_path_factory, toy_builds, clf_base):
    """conftest's ``main_server`` with ``--grpc_front`` set to each front end in turn."""
    server = start_main_server(tmp_path_factory, toy_builds, clf_base,
                               f"--grpc_front={request.param}")
    assert server.grpc_front == request.param
    yield server
    server.stop()


def _predict(stub, inputs, *, name="toy", version=None, label=None, signature="",
             output_filter=()):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    req.model_spec.signature_name = signature
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    req.output_filter.extend(output_filter)
    return stub.Predict(req, timeout=30)


def _error(fn):
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details()


def test_predict_returns_typed_fields_and_model_spec(grpc_stubs):
    pred, _ = grpc_stubs
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    resp = _predict(pred, {"x": x}, version=1)
    assert resp.model_spec.name == "toy" and resp.model_spec.version.value == 1
    assert resp.model_spec.signature_name == "serving_default"
    assert list(resp.outputs["total"].float_val) == [6.0, 15.0]  # AsProtoField, like TF Serving
    assert np_close(tf.make_ndarray(resp.outputs["y"]), x)
    assert [d.size for d in resp.outputs["y"].tensor_shape.dim] == [2, 3]


def test_predict_latest_label_and_output_filter(grpc_stubs):
    pred, _ = grpc_stubs
    x = np.ones((1, 3), np.float32)
    latest = _predict(pred, {"x": x}, output_filter=["total"])
    assert list(latest.outputs) == ["total"] and latest.model_spec.version.value == 2
    assert list(latest.outputs["total"].float_val) == [6.0]
    stable = _predict(pred, {"x": x}, label="stable", output_filter=["total"])
    assert stable.model_spec.version.value == 1
    assert list(stable.outputs["total"].float_val) == [3.0]


def test_predict_accepts_typed_value_fields(grpc_stubs):
    pred, _ = grpc_stubs
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.model_spec.signature_name = "multi"
    a = req.inputs["a"]
    a.dtype = tf.float32.as_datatype_enum
    a.tensor_shape.dim.add(size=2)
    a.tensor_shape.dim.add(size=2)
    a.float_val.extend([1, 2, 3, 4])
    b = req.inputs["b"]
    b.dtype = tf.int64.as_datatype_enum
    b.tensor_shape.dim.add(size=2)
    b.int64_val.append(7)  # one value broadcasts, as in TensorFlow
    resp = pred.Predict(req, timeout=30)
    assert list(resp.outputs["out"].float_val) == [10.0, 14.0]


def test_predict_strings(grpc_stubs):
    pred, _ = grpc_stubs
    resp = _predict(pred, {"s": np.array([b"ab", b"xyz"], dtype=object)}, signature="strings")
    assert list(resp.outputs["upper"].string_val) == [b"AB", b"XYZ"]
    assert list(resp.outputs["length"].int_val) == [2, 3]


@pytest.mark.parametrize("kwargs,code,fragment", [
    (dict(name="nope"), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    (dict(version=5), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(toy, 5)"),
    (dict(label="zzz"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: zzz"),
    (dict(label=""), grpc.StatusCode.INVALID_ARGUMENT,  # the oneof is set: not "latest"
     "Unrecognized servable version label: "),
    (dict(name="nope", label="stable"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: stable"),
    (dict(name=""), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    (dict(signature="nosig"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nosig" not found.'),
    (dict(output_filter=["bogus"]), grpc.StatusCode.INVALID_ARGUMENT,
     "output tensor alias not found in signature: bogus"),
    (dict(output_filter=["y", "y"]), grpc.StatusCode.INVALID_ARGUMENT,
     "duplicate output tensor alias: y"),
])
def test_predict_spec_errors(grpc_stubs, kwargs, code, fragment):
    pred, _ = grpc_stubs
    got_code, details = _error(lambda: _predict(pred, {"x": np.ones((1, 3), np.float32)},
                                                **kwargs))
    assert got_code == code
    assert fragment in details


@pytest.mark.parametrize("method,request_class", [
    ("Predict", predict_pb2.PredictRequest),
    ("Classify", classification_pb2.ClassificationRequest),
    ("Regress", regression_pb2.RegressionRequest),
    ("GetModelMetadata", get_model_metadata_pb2.GetModelMetadataRequest),
])
def test_a_request_without_model_spec_is_invalid_argument(grpc_stubs, method, request_class):
    """TF Serving's "Missing ModelSpec" (not NOT_FOUND for a model called "")."""
    pred, _ = grpc_stubs
    request = request_class()
    if method == "GetModelMetadata":
        request.metadata_field.append("signature_def")
    code, details = _error(lambda: getattr(pred, method)(request, timeout=30))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


@pytest.mark.parametrize("inputs,fragment", [
    ({"x": np.ones((1, 3), np.int64)}, "Expects arg[0] to be float but int64 is provided"),
    ({"x": np.ones((1, 4), np.float32)}, "expects shape [-1,3]"),
    ({"x": np.ones((3,), np.float32)}, "expects shape [-1,3]"),
    ({}, "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. "
         "Missing but required: {x}."),
    ({"z": np.ones((1, 3), np.float32)}, "input tensor alias not found in signature: z. "
                                         "Inputs expected to be in the set {x}."),
])
def test_predict_input_errors_are_invalid_argument(grpc_stubs, inputs, fragment):
    pred, _ = grpc_stubs
    code, details = _error(lambda: _predict(pred, inputs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details


def test_kernel_errors_read_as_from_tf_servings_session(grpc_stubs):
    """The kernel's own message, without the wrapping of TensorFlow's Python eager call."""
    pred, _ = grpc_stubs
    code, details = _error(lambda: _predict(pred, {"a": np.ones((2, 2), np.float32),
                                                   "b": np.ones((3,), np.int64)},
                                            signature="multi"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "Incompatible shapes: [3] vs. [2]\n\t [[{{node add}}]]"


def test_op_error_message_strips_only_the_eager_wrapping():
    from serving.server.servable import op_error_message

    kernel = "ConcatOp : Dimension 0 in both shapes must be equal\n\t [[{{node concat}}]]"
    assert op_error_message(
        "Graph execution error:\n\nDetected at node concat defined at (most recent call "
        "last):\n<stack traces unavailable>\n" + kernel + " [Op:__inference_fn_114]") == kernel
    assert op_error_message(
        "Graph execution error:\n\nDetected at node 'concat' defined at (most recent call "
        "last):\n  File \"m.py\", line 3, in f\nNode: 'concat'\n" + kernel
        + " [Op:__inference_fn_7]") == kernel
    assert op_error_message(kernel) == kernel
    assert op_error_message("Graph execution error: something else") == (
        "Graph execution error: something else")


def test_malformed_tensor_proto_is_invalid_argument(grpc_stubs):
    pred, _ = grpc_stubs
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    t = req.inputs["x"]
    t.dtype = tf.float32.as_datatype_enum
    t.tensor_shape.dim.add(size=2)
    t.tensor_shape.dim.add(size=3)
    t.tensor_content = b"\x00" * 7
    code, details = _error(lambda: pred.Predict(req, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensor parsing error: x" in details


@pytest.mark.parametrize("method", [
    "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.PredictionService/Classify",
    "/tensorflow.serving.PredictionService/GetModelMetadata",
    "/tensorflow.serving.ModelService/GetModelStatus",
])
def test_unparseable_request_message_is_internal(main_server, grpc_stubs, method):
    # gRPC C++ (so TF Serving) answers a request it cannot parse with INTERNAL; grpcio's
    # default would be UNKNOWN "Unexpected <class 'DecodeError'>"
    with grpc.insecure_channel(f"127.0.0.1:{main_server.grpc_port}") as channel:
        call = channel.unary_unary(method)  # raw bytes in and out
        code, details = _error(lambda: call(b"\xff\xff\xff\xff", timeout=30))
    assert code == grpc.StatusCode.INTERNAL
    assert "Error parsing message with type 'tensorflow.serving." in details
    pred, _ = grpc_stubs  # the server goes on serving
    out = _predict(pred, {"x": np.ones((1, 3), np.float32)})
    assert out.model_spec.name == "toy"


def test_unknown_method_is_unimplemented(main_server):
    with grpc.insecure_channel(f"127.0.0.1:{main_server.grpc_port}") as channel:
        for method in ("/tensorflow.serving.PredictionService/Nope", "/no.Such/Service"):
            call = channel.unary_unary(method)
            assert _error(lambda c=call: c(b"", timeout=30)) == (
                grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_requests_are_answered(main_server, compression):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    x = np.arange(300, dtype=np.float32).reshape(100, 3)  # compressible enough to be compressed
    with grpc.insecure_channel(f"127.0.0.1:{main_server.grpc_port}",
                               compression=compression) as channel:
        resp = _predict(prediction_service_pb2_grpc.PredictionServiceStub(channel), {"x": x},
                        version=1)
    assert np_close(tf.make_ndarray(resp.outputs["y"]), x)
    assert np_close(resp.outputs["total"].float_val, x.sum(axis=1))


def test_messages_larger_than_the_flow_control_windows_go_through(main_server):
    """An 8.4 MB request and its 8.4 MB answer: many HTTP/2 windows each way (the native front
    end grants 1 MiB per stream and 16 MiB per connection; HTTP/2's default is 64 KiB)."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    x = np.random.default_rng(0).random((700_000, 3), dtype=np.float32)
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{main_server.grpc_port}", options=options) as channel:
        resp = _predict(prediction_service_pb2_grpc.PredictionServiceStub(channel), {"x": x},
                        version=1, output_filter=["y"])
    assert np.array_equal(tf.make_ndarray(resp.outputs["y"]), x)


def test_concurrent_calls_on_one_channel_each_get_their_own_answer(grpc_stubs):
    pred, _ = grpc_stubs
    futures = []
    for k in range(48):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "toy"
        req.model_spec.version.value = 1
        if k % 8 == 7:  # a bad request among good ones: its own error, nobody else's
            req.inputs["nope"].CopyFrom(tf.make_tensor_proto(np.ones((1, 3), np.float32)))
        else:
            req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.full((1, 3), k, np.float32)))
        futures.append(pred.Predict.future(req, timeout=30))
    for k, future in enumerate(futures):
        if k % 8 == 7:
            assert future.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "nope" in future.details()
        else:
            assert list(future.result().outputs["total"].float_val) == [3.0 * k]


def _examples(req, rows, key="x"):
    for r in rows:
        ex = req.input.example_list.examples.add()
        ex.features.feature[key].float_list.value.extend(r)


def test_classify_and_regress(grpc_stubs):
    pred, _ = grpc_stubs
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "toy"
    req.model_spec.version.value = 1
    req.model_spec.signature_name = "classify"
    _examples(req, [[0.5, 0.25, 0.25], [-1, 0, 0]])
    resp = pred.Classify(req, timeout=30)
    assert resp.model_spec.version.value == 1
    first = resp.result.classifications[0].classes
    assert [c.label for c in first] == ["neg", "pos"]
    assert abs(first[1].score - 1 / (1 + np.exp(-2.0))) < 1e-6
    assert resp.result.classifications[1].classes[0].score > 0.5

    rreq = regression_pb2.RegressionRequest()
    rreq.model_spec.name = "toy"
    rreq.model_spec.signature_name = "regress"
    _examples(rreq, [[1, 2, 3]])
    rresp = pred.Regress(rreq, timeout=30)
    assert [r.value for r in rresp.result.regressions] == [12.0]  # version 2: 2 * 6


def test_classify_errors(grpc_stubs):
    pred, _ = grpc_stubs
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "toy"
    req.model_spec.signature_name = "classify"
    code, details = _error(lambda: pred.Classify(req, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Input is empty" in details
    req.model_spec.signature_name = "regress"
    _examples(req, [[1, 2, 3]])
    code, details = _error(lambda: pred.Classify(req, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expected classification signature method_name" in details
    req.model_spec.signature_name = "nosig"  # INVALID_ARGUMENT here, unlike Predict's
    code, details = _error(lambda: pred.Classify(req, timeout=30))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "No signature was found with the name: nosig")
    rreq = regression_pb2.RegressionRequest()
    rreq.model_spec.name = "toy"
    rreq.model_spec.signature_name = "nosig"
    _examples(rreq, [[1, 2, 3]])
    code, details = _error(lambda: pred.Regress(rreq, timeout=30))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "No signature was found with the name: nosig")


def test_multi_inference(grpc_stubs):
    pred, _ = grpc_stubs
    req = inference_pb2.MultiInferenceRequest()
    for sig, method in (("classify", "tensorflow/serving/classify"),
                        ("regress", "tensorflow/serving/regress")):
        task = req.tasks.add()
        task.model_spec.name = "toy"
        task.model_spec.version.value = 1
        task.model_spec.signature_name = sig
        task.method_name = method
    ex = req.input.example_list.examples.add()
    ex.features.feature["x"].float_list.value.extend([1, 1, 1])
    resp = pred.MultiInference(req, timeout=30)
    assert len(resp.results) == 2
    assert [c.label for c in resp.results[0].classification_result.classifications[0].classes] \
        == ["neg", "pos"]
    assert resp.results[1].regression_result.regressions[0].value == 3.0
    dup = inference_pb2.MultiInferenceRequest()
    dup.CopyFrom(req)
    dup.tasks[1].model_spec.signature_name = "classify"
    dup.tasks[1].method_name = "tensorflow/serving/classify"
    code, details = _error(lambda: pred.MultiInference(dup, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Duplicate evaluation of signature: classify" in details


def _multi_error(pred, req, edit):
    bad = inference_pb2.MultiInferenceRequest()
    bad.CopyFrom(req)
    edit(bad)
    return _error(lambda: pred.MultiInference(bad, timeout=30))


def test_multi_inference_errors_are_tf_servings(grpc_stubs):
    pred, _ = grpc_stubs
    req = inference_pb2.MultiInferenceRequest()
    for sig in ("classify", "regress"):
        task = req.tasks.add()
        task.model_spec.name = "toy"
        task.model_spec.signature_name = sig
        task.method_name = f"tensorflow/serving/{sig}"
    req.input.example_list.examples.add().features.feature["x"].float_list.value.extend([1, 1, 1])
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert _multi_error(pred, req, lambda r: r.ClearField("tasks")) == (
        invalid, "ModelSpec has no name specified.")
    assert _multi_error(pred, req, lambda r: setattr(r.tasks[1].model_spec, "name", "")) == (
        invalid, "Found ModelSpec with an empty model name.")
    assert _multi_error(pred, req, lambda r: setattr(r.tasks[1].model_spec, "signature_name",
                                                     "nosig")) == (
        invalid, "Requested signature not found in model graph: nosig")
    assert _multi_error(pred, req, lambda r: setattr(r.tasks[1], "method_name",
                                                     "tensorflow/serving/predict")) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "Unsupported signature method_name: tensorflow/serving/predict")


def test_get_model_metadata(grpc_stubs):
    pred, _ = grpc_stubs
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "toy"
    req.metadata_field.append("signature_def")
    resp = pred.GetModelMetadata(req, timeout=30)
    assert resp.model_spec.version.value == 2
    sdm = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sdm)
    assert sdm.signature_def["regress"].method_name == "tensorflow/serving/regress"
    assert sdm.signature_def["multi"].inputs["b"].dtype == tf.int64.as_datatype_enum
    bad = get_model_metadata_pb2.GetModelMetadataRequest()
    bad.model_spec.name = "toy"
    bad.metadata_field.append("weights")
    code, details = _error(lambda: pred.GetModelMetadata(bad, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "weights" in details
    bad.model_spec.name = "ghost"  # the request is checked before the model is looked up
    assert _error(lambda: pred.GetModelMetadata(bad, timeout=30)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Metadata field weights is not supported")
    bad.ClearField("metadata_field")
    assert _error(lambda: pred.GetModelMetadata(bad, timeout=30)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field")


def test_get_model_status(grpc_stubs):
    _, models = grpc_stubs
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "toy"
    resp = models.GetModelStatus(req, timeout=30)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in resp.model_version_status] == [
        (2, available), (1, available)]
    req.model_spec.version_label = "stable"  # a label plays no part in model status
    resp = models.GetModelStatus(req, timeout=30)
    assert [s.version for s in resp.model_version_status] == [2, 1]
    req.model_spec.version_label = "zzz"
    assert [s.version for s in models.GetModelStatus(req, timeout=30).model_version_status] \
        == [2, 1]
    req.model_spec.name = "ghost"
    code, details = _error(lambda: models.GetModelStatus(req, timeout=30))
    assert code == grpc.StatusCode.NOT_FOUND
    assert details == "Could not find any versions of model ghost"
    assert _error(lambda: models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(),
                                                timeout=30)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def _model_config(req, name: str, base: str, **labels):
    cfg = req.config.model_config_list.config.add()
    cfg.name, cfg.base_path, cfg.model_platform = name, base, "tensorflow"
    for key, version in labels.items():
        cfg.version_labels[key] = version
    return cfg


def test_reload_config_swaps_models(main_server, grpc_stubs, clf_base):
    """Last in this module: replaces the configured models."""
    pred, models = grpc_stubs
    # As in TF Serving, a label may only name a version available *before* the reload: a label
    # on a model the same reload adds is refused, and nothing changes.
    req = model_management_pb2.ReloadConfigRequest()
    _model_config(req, "clf2", clf_base[0], prod=1)
    code, details = _error(lambda: models.HandleReloadConfigRequest(req, timeout=120))
    assert (code, details) == (grpc.StatusCode.FAILED_PRECONDITION,
                               "Request to assign label to version 1 of model clf2, which is not "
                               "currently available for inference")
    assert _predict(pred, {"x": np.ones((1, 3), np.float32)}).model_spec.name == "toy"
    req = model_management_pb2.ReloadConfigRequest()
    _model_config(req, "clf2", clf_base[0])
    resp = models.HandleReloadConfigRequest(req, timeout=120)
    assert resp.status.error_code == 0
    req = model_management_pb2.ReloadConfigRequest()
    _model_config(req, "clf2", clf_base[0], prod=1)
    assert models.HandleReloadConfigRequest(req, timeout=120).status.error_code == 0
    x = np.zeros((1, 4), np.float32)
    out = _predict(pred, {"features": x}, name="clf2", label="prod")
    assert out.model_spec.name == "clf2" and out.model_spec.version.value == 1
    code, _ = _error(lambda: _predict(pred, {"x": np.ones((1, 3), np.float32)}))
    assert code == grpc.StatusCode.NOT_FOUND  # toy is no longer configured
    bad = model_management_pb2.ReloadConfigRequest()
    _model_config(bad, "clf2", clf_base[0], prod=42)
    code, details = _error(lambda: models.HandleReloadConfigRequest(bad, timeout=120))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "version 42" in details and "not currently available" in details


def test_reload_config_refusals_change_nothing(tmp_path, toy_builds):
    """TF Serving's answers to reload requests it refuses; the models served stay."""
    from tests.serving.conftest import make_base, start_server

    toy = make_base(tmp_path, "toy", toy_builds, [1])
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    server = start_server(["--model_name=toy", f"--model_base_path={toy}",
                           "--max_num_load_retries=0"], rest=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        pred = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        reload = lambda req: _error(  # noqa: E731
            lambda: models.HandleReloadConfigRequest(req, timeout=120))
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        # an empty request is not "serve nothing"
        assert reload(model_management_pb2.ReloadConfigRequest()) == (
            invalid, "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                     "ModelConfigList is currently supported")
        req = model_management_pb2.ReloadConfigRequest()
        _model_config(req, "toy", "models/toy")
        assert reload(req) == (invalid, "Expected model toy to have an absolute path or URI; "
                                        "got base_path()=models/toy")
        req = model_management_pb2.ReloadConfigRequest()
        _model_config(req, "toy", toy).ClearField("model_platform")
        assert reload(req) == (invalid, "Illegal setting neither ModelServerConfig::model_type "
                                        "(deprecated) nor ModelServerConfig::model_platform.")
        req = model_management_pb2.ReloadConfigRequest()
        _model_config(req, "toy", toy)
        _model_config(req, "toy", toy)
        assert reload(req) == (invalid, "Illegal to list model toy multiple times in config list")
        out = _predict(pred, {"x": np.ones((1, 3), np.float32)})
        assert out.model_spec.version.value == 1  # still served after every refusal
        # a model the reload adds that cannot load: UNKNOWN, with the rest applied
        req = model_management_pb2.ReloadConfigRequest()
        _model_config(req, "toy", toy)
        _model_config(req, "broken", str(tmp_path / "broken"))
        code, details = reload(req)
        assert code == grpc.StatusCode.UNKNOWN
        assert details.startswith("1 model(s) did not become available: {{name: broken "
                                  "version: 1} due to error: ")
        assert _predict(pred, {"x": np.ones((1, 3), np.float32)}).model_spec.name == "toy"
    finally:
        channel.close()
        server.stop()

