"""The metrics registry: a merged task's requests, recorded at once, count as each one alone."""

from __future__ import annotations

from serving.server.metrics import Metrics


def test_recording_n_requests_at_once_renders_as_n_records():
    alone, at_once = Metrics(), Metrics()
    for _ in range(3):
        alone.record("m", "predict", "GRPC", "OK", 150.0)
    alone.record("m", "predict", "GRPC", "UNAVAILABLE", 20.0)
    at_once.record("m", "predict", "GRPC", "OK", 150.0, requests=3)
    at_once.record("m", "predict", "GRPC", "UNAVAILABLE", 20.0)
    assert at_once.render() == alone.render()
    assert at_once.request_count.value("m", "OK") == 3
    assert at_once.request_latency.count("m", "predict", "GRPC") == 4
    assert at_once.request_latency.total("m", "predict", "GRPC") == 470.0
    text = at_once.render()
    # buckets 10 * 1.8**k µs: 20 µs is in the one up to 32.4, the three 150 µs in the one up to
    # 188.96 (cumulative counts)
    assert ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",' \
           'entrypoint="GRPC",le="188.95680000000002"} 4' in text
    assert ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",' \
           'entrypoint="GRPC",le="104.976"} 1' in text
