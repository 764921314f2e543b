"""REST API conformance against TF Serving's documented behaviour (plain http.client)."""

from __future__ import annotations

import base64
import http.client
import json
import math

import numpy as np
import pytest

from tests.serving.conftest import np_close


@pytest.fixture(scope="module")
def rest(main_server):
    def call(method, path, body=None, raw=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", main_server.rest_port, timeout=30)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return resp.status, payload

    return call


# -- predict ---------------------------------------------------------------------------------------
def test_predict_row_format_multiple_outputs_gives_objects(rest):
    status, body = rest("POST", "/v1/models/toy/versions/1:predict",
                        {"instances": [[1, 2, 3], [4, 5, 6.5]]})
    assert status == 200
    assert body == {"predictions": [{"total": 6.0, "y": [1.0, 2.0, 3.0]},
                                    {"total": 15.5, "y": [4.0, 5.0, 6.5]}]}


def test_predict_latest_version_is_served_by_default(rest):
    status, body = rest("POST", "/v1/models/toy:predict",
                        {"signature_name": "single", "instances": [[1, 2, 3]]})
    assert status == 200
    assert body == {"predictions": [[2.0, 4.0, 6.0]]}  # version 2 multiplies by 2


def test_predict_columnar_format(rest):
    status, body = rest("POST", "/v1/models/toy/versions/1:predict",
                        {"inputs": {"x": [[1, 2, 3]]}})
    assert status == 200
    assert body == {"outputs": {"total": [6.0], "y": [[1.0, 2.0, 3.0]]}}
    status, body = rest("POST", "/v1/models/toy/versions/1:predict",
                        {"signature_name": "single", "inputs": [[0.5, 0.25, 0.125]]})
    assert body == {"outputs": [[0.5, 0.25, 0.125]]}


def test_predict_named_instances_with_two_inputs(rest):
    status, body = rest("POST", "/v1/models/toy:predict", {
        "signature_name": "multi",
        "instances": [{"a": [1.5, 2.5], "b": 10}, {"a": [0, 1], "b": -3}]})
    assert status == 200
    assert body == {"predictions": [14.0, -2.0]}


def test_predict_strings_b64_inputs_and_bytes_outputs(rest):
    status, body = rest("POST", "/v1/models/toy:predict", {
        "signature_name": "strings",
        "instances": ["abc", {"b64": base64.b64encode(b"xyz").decode()}]})
    assert status == 200
    assert body["predictions"][0] == {"length": 3, "upper": "ABC",
                                      "upper_bytes": {"b64": base64.b64encode(b"ABC").decode()}}
    assert body["predictions"][1]["upper"] == "XYZ"


def test_predict_writes_nan_and_infinity_like_tf_serving(rest):
    status, text = rest("POST", "/v1/models/toy:predict",
                        {"signature_name": "divide", "inputs": {"x": [[1, 0, -1]],
                                                                "d": [[0, 0, 0]]}})
    assert status == 200
    q = text["outputs"][0]
    assert q[0] == math.inf and math.isnan(q[1]) and q[2] == -math.inf


def test_predict_float_formatting_round_trips_float32(rest):
    status, body = rest("POST", "/v1/models/toy/versions/1:predict",
                        {"signature_name": "single", "instances": [[0.1, 1e-7, 3.4e38]]})
    assert status == 200
    got = np.asarray(body["predictions"][0], dtype=np.float32)
    assert got.tolist() == np.asarray([0.1, 1e-7, 3.4e38], dtype=np.float32).tolist()


def test_predict_by_label(rest):
    _, body1 = rest("POST", "/v1/models/toy/labels/stable:predict",
                    {"signature_name": "single", "instances": [[1, 1, 1]]})
    _, body2 = rest("POST", "/v1/models/toy/labels/canary:predict",
                    {"signature_name": "single", "instances": [[1, 1, 1]]})
    assert body1 == {"predictions": [[1.0, 1.0, 1.0]]}
    assert body2 == {"predictions": [[2.0, 2.0, 2.0]]}


def test_exported_keras_classifier_predict_and_classify(rest, clf_base):
    _, model = clf_base
    x = np.array([[0.1, -0.2, 0.3, 0.4], [1, 2, 3, 4]], dtype=np.float32)
    expected = model.predict(x, verbose=0)
    status, body = rest("POST", "/v1/models/clf:predict", {"instances": x.tolist()})
    assert status == 200
    preds = body["predictions"]
    assert np_close([p["probabilities"] for p in preds], expected)
    assert [p["classes"] for p in preds] == expected.argmax(axis=1).tolist()
    status, body = rest("POST", "/v1/models/clf:classify", {
        "signature_name": "classify",
        "examples": [{"features": row} for row in x.tolist()]})
    assert status == 200, body
    results = body["results"]
    assert [[label for label, _ in r] for r in results] == [
        ["setosa", "versicolor", "virginica"]] * 2
    assert np_close([[s for _, s in r] for r in results], expected)


def test_classify_and_regress_use_results_key(rest):
    status, body = rest("POST", "/v1/models/toy/versions/1:classify", {
        "signature_name": "classify", "examples": [{"x": [0.5, 0.25, 0.25]}]})
    assert status == 200
    (classes,) = body["results"]
    s = 1.0  # sum of x
    p_pos = 1 / (1 + math.exp(-2 * s))
    assert classes[0][0] == "neg" and classes[1][0] == "pos"
    assert abs(classes[1][1] - p_pos) < 1e-6 and abs(classes[0][1] - (1 - p_pos)) < 1e-6
    status, body = rest("POST", "/v1/models/toy/versions/2:regress", {
        "signature_name": "regress", "examples": [{"x": [1.0, 2.0, 3.5]}, {"x": [0.0, 0.0, 0.0]}]})
    assert status == 200
    assert body == {"results": [13.0, 0.0]}


def test_regress_with_context_merges_features(rest):
    status, body = rest("POST", "/v1/models/toy/versions/1:regress", {
        "signature_name": "regress", "context": {"x": [9.0, 9.0, 9.0]},
        "examples": [{"x": [1.0, 1.0, 1.0]}, {}]})
    assert status == 200
    assert body == {"results": [3.0, 27.0]}


# -- status and metadata -----------------------------------------------------------------------
def test_model_status_lists_versions(rest):
    status, body = rest("GET", "/v1/models/toy")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}
    status, body = rest("GET", "/v1/models/toy/versions/1")
    assert [v["version"] for v in body["model_version_status"]] == ["1"]
    # as in TF Serving, a label plays no part in model status: every version, known label or not
    for path in ("/v1/models/toy/labels/canary", "/v1/models/toy/labels/nolabel"):
        status, body = rest("GET", path)
        assert status == 200
        assert [v["version"] for v in body["model_version_status"]] == ["2", "1"]


def test_metadata_has_signature_defs(rest):
    status, body = rest("GET", "/v1/models/toy/versions/1/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "toy", "version": "1", "signature_name": ""}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert sigs["classify"]["method_name"] == "tensorflow/serving/classify"
    x = sigs["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in x["tensor_shape"]["dim"]] == ["-1", "3"]
    assert set(sigs["serving_default"]["outputs"]) == {"y", "total"}
    # fields left at their defaults are printed, as TF Serving's always_print_primitive_fields
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
                                 "unknown_rank": False}
    assert sigs["serving_default"]["defaults"] == {}


def test_model_names_and_labels_are_percent_decoded(rest):
    status, body = rest("GET", "/v1/models/t%6fy/versions/1")
    assert status == 200 and [v["version"] for v in body["model_version_status"]] == ["1"]
    status, body = rest("POST", "/v1/models/t%6fy/labels/st%61ble:predict",
                        {"signature_name": "single", "instances": [[1, 1, 1]]})
    assert (status, body) == (200, {"predictions": [[1.0, 1.0, 1.0]]})


def test_verb_and_metadata_are_matched_in_lower_case_only(rest):
    """TF Serving's route pattern ignores case but its dispatch does not."""
    status, body = rest("POST", "/v1/models/toy:PREDICT", {"instances": [[1, 2, 3]]})
    assert (status, body) == (400, {"error": "Malformed request: POST /v1/models/toy:PREDICT"})
    status, body = rest("GET", "/v1/models/toy/versions/1/METADATA")
    assert status == 200 and "model_version_status" in body  # model status, not metadata
    status, body = rest("POST", "/V1/MODELS/toy/versions/1:predict",
                        {"signature_name": "single", "instances": [[1, 2, 3]]})
    assert (status, body) == (200, {"predictions": [[1.0, 2.0, 3.0]]})


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,body,code,fragment", [
    ("/v1/models/nope:predict", {"instances": [1]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("/v1/models/toy/versions/9:predict", {"instances": [[1, 2, 3]]}, 404,
     "Servable not found for request: Specific(toy, 9)"),
    ("/v1/models/toy/labels/nolabel:predict", {"instances": [[1, 2, 3]]}, 400,
     "Unrecognized servable version label: nolabel"),
    ("/v1/models/nope/labels/stable:predict", {"instances": [[1, 2, 3]]}, 400,
     "Unrecognized servable version label: stable"),
    ("/v1/models/toy:predict", {"instances": [[1.5, 2, True]]}, 400,  # NumPy would read 1.0
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "true Type: True is not of expected type: float"),
    ("/v1/models/toy:predict", {"inputs": [[1, False, 3]]}, 400,
     "JSON Value: false Type: False is not of expected type: float"),
    ("/v1/models/toy:predict", {"signature_name": "multi",
                                "instances": [{"a": [1.0, True], "b": 1}]}, 400,
     "Failed to process element: 0 key: a of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON Value: true Type: True is not of expected type: float"),
    ("/v1/models/toy:predict", {"instances": [["a", 2, 3]]}, 400,
     'JSON Value: "a" Type: String is not of expected type: float'),
    ("/v1/models/toy:predict", {"instances": [[1, 2]]}, 400, "expects shape [-1,3]"),
    ("/v1/models/toy:predict", {"instances": [[1, 2, 3], [1, 2]]}, 400,  # (a plain list: no key)
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "tensor size: 3 but got: 2"),
    ("/v1/models/toy:predict", {"instances": [[[1, 2, 3]], [[1], [2], [3]]]}, 400,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "shape [1,3] but got: [3,1]"),
    ("/v1/models/toy:predict", {"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, 400,
     "expecting only one of 'inputs' or 'instances'"),
    ("/v1/models/toy:predict", {"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),
    ("/v1/models/toy:predict", {"instances": []}, 400, "No values in 'instances' array"),
    ("/v1/models/toy:predict", {"signature_name": "nosig", "instances": [1]}, 400,
     'Serving signature name: "nosig" not found in signature def'),
    ("/v1/models/toy:predict", {"signature_name": "multi", "inputs": {"a": [[1, 2]]}}, 400,
     "Missing named input: b in 'inputs' object."),
    ("/v1/models/toy:predict", {"signature_name": "multi", "instances": [[1, 2]]}, 400,
     "instances is a plain list, but expecting list of objects"),
    ("/v1/models/toy:predict", {"signature_name": "multi", "instances": [{"a": [1, 2], "b": 1.5}]},
     400, "is not of expected type: int64"),
    ("/v1/models/toy:classify", {"examples": [{"x": [1.0, 2.0, 3.0]}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify"),
    ("/v1/models/toy:classify", {"signature_name": "classify"}, 400,
     "key 'examples' is expected and was not found"),
    ("/v1/models/toy:classify", {"signature_name": "nosig", "examples": [{"x": [1.0]}]}, 400,
     "No signature was found with the name: nosig"),
    # the body is read before the model is looked up: its errors come first
    ("/v1/models/nope:regress", {"signature_name": "regress"}, 400,
     "key 'examples' is expected and was not found"),
    ("/v1/models/nope:predict", {"signature_name": 5, "instances": [1]}, 400,
     "'signature_name' key must be a string value."),
    ("/v1/models/toy/versions/99999999999999999999:predict", {"instances": [1]}, 400,
     "Failed to convert version"),
    ("/v1/models/toy:explode", {}, 400, "Malformed request: POST /v1/models/toy:explode"),
])
def test_errors_have_tf_serving_codes_and_messages(rest, path, body, code, fragment):
    status, payload = rest("POST", path, body)
    assert status == code, payload
    assert set(payload) == {"error"}
    assert fragment in payload["error"]


@pytest.mark.parametrize("raw,fragment", [  # rapidjson's messages, as TF Serving gives them
    (b"", "JSON Parse error: The document is empty"),
    (b"  ", "JSON Parse error: The document is empty. at offset: 2"),
    (b"{not json", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
    (b'{"instances": [1 2]}', "JSON Parse error: Missing a comma or ']' after an array "
                              "element. at offset: 17"),
    (b'{"a": "[", "b": 1 "c": 2}', "JSON Parse error: Missing a comma or '}' after an object "
                                   "member. at offset: 18"),
    (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b'{"a": 1} 2', "JSON Parse error: The document root must not be followed by other "
                    "values. at offset: 9"),
    (b'{"a": "b', "JSON Parse error: Missing a closing quotation mark in string. at offset: 8"),
    (b'{"a": "\\q"}', "JSON Parse error: Invalid escape character in string. at offset: 7"),
    (b"[1, 2]", "Is not object"),
    (b"\xff\xfe", "JSON Parse error"),
    (b"[" * 100000 + b"]" * 100000, "JSON Parse error"),
    (b'{"instances": ' + b"[" * 80 + b"1" + b"]" * 80 + b"}", "at most 64 dimensions"),
])
def test_malformed_bodies_are_400(rest, raw, fragment):
    status, payload = rest("POST", "/v1/models/toy:predict", raw=raw)
    assert status == 400
    assert fragment in payload["error"]


def test_get_errors(rest):
    assert rest("GET", "/v1/models/nope")[0] == 404
    status, payload = rest("GET", "/v1/models/nope")
    assert payload == {"error": "Could not find any versions of model nope"}
    status, payload = rest("GET", "/v1/models/toy/versions/7")
    assert (status, payload) == (404, {"error": "Could not find version 7 of model toy"})
    status, payload = rest("GET", "/v1/models/../../etc/passwd")
    assert status in (400, 404) and "error" in payload
    status, payload = rest("GET", "/v1/models/%2e%2e/metadata")
    assert status == 404 and "error" in payload
    assert rest("GET", "/nothing/here")[0] == 404
    assert rest("DELETE", "/v1/models/toy")[0] == 400


def test_oversized_body_is_413_and_server_keeps_serving(rest, main_server):
    conn = http.client.HTTPConnection("127.0.0.1", main_server.rest_port, timeout=30)
    conn.putrequest("POST", "/v1/models/toy:predict")
    conn.putheader("Content-Length", str(main_server.options.rest_api_max_body_bytes + 1))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert "exceeds the limit" in json.loads(resp.read())["error"]
    conn.close()
    assert rest("POST", "/v1/models/toy/versions/1:predict",
                {"instances": [[1, 1, 1]]})[0] == 200


def test_keep_alive_connection_serves_many_requests(main_server):
    conn = http.client.HTTPConnection("127.0.0.1", main_server.rest_port, timeout=30)
    body = json.dumps({"signature_name": "single", "instances": [[1, 2, 3]]})
    for _ in range(20):
        conn.request("POST", "/v1/models/toy/versions/1:predict", body=body)
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read()) == {"predictions": [[1.0, 2.0, 3.0]]}
    conn.close()


def test_abandoned_connection_does_not_block_others(rest, main_server):
    import socket

    stalled = socket.create_connection(("127.0.0.1", main_server.rest_port))
    stalled.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    try:
        assert rest("GET", "/v1/models/toy")[0] == 200
    finally:
        stalled.close()


def test_prometheus_metrics_endpoint(rest, main_server):
    rest("POST", "/v1/models/toy/versions/1:predict", {"instances": [[1, 1, 1]]})
    rest("POST", "/v1/models/nope:predict", {"instances": [[1, 1, 1]]})
    status, text = rest("GET", "/monitoring/prometheus/metrics")
    assert status == 200
    lines = text.splitlines()
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert "# TYPE :tensorflow:serving:request_latency histogram" in lines
    ok = [ln for ln in lines if ln.startswith(
        ':tensorflow:serving:request_count{model_name="toy",status="OK"}')]
    assert ok and float(ok[0].split()[-1]) >= 1
    assert any(ln.startswith(':tensorflow:serving:request_count{model_name="nope",'
                             'status="NOT_FOUND"}') for ln in lines)
    assert any(ln.startswith(':tensorflow:serving:request_latency_bucket{model_name="toy",'
                             'API="predict",entrypoint="REST",le=') for ln in lines)
