"""Catalog datasets: fail fast with a helpful DatasetUnavailableError, or use local files."""

import os
import shutil
import socket
import time

import numpy as np
import pytest

from pipelines import data
from pipelines.data import catalog


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return port


@pytest.mark.parametrize("name", ["mnist", "tiny_shakespeare"])
def test_unreachable_fails_fast_with_advice(tmp_path, name):
    url = f"http://127.0.0.1:{_closed_port()}/file"
    start = time.monotonic()
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.load(name, data_dir=tmp_path, probe_url=url)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # CLI maps it to exit code 2
    assert name in message and url in message
    assert os.path.join(str(tmp_path), "downloads", "manual") in message  # where to put files
    for fname in catalog.CATALOG[name]["files"]:
        assert fname in message
    offline = "mnist5k" if name == "mnist" else "text_file"
    assert offline in message  # which offline dataset to use instead


def test_silent_server_times_out_quickly(tmp_path):
    # A peer that accepts the TCP connection but never answers (like a blackholing proxy).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/x"
    try:
        start = time.monotonic()
        with pytest.raises(data.DatasetUnavailableError, match="mnist5k"):
            data.load("mnist", data_dir=tmp_path, probe_url=url, probe_timeout=1.0)
        assert time.monotonic() - start < 10
    finally:
        server.close()


def test_probe_url_from_environment(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/env"
    monkeypatch.setenv("DEEPLINE_CATALOG_PROBE", url)
    with pytest.raises(data.DatasetUnavailableError, match="/env"):
        data.load("tiny_shakespeare", data_dir=tmp_path)


def test_probe_reports_refusal_reason():
    reason = catalog.probe(f"http://127.0.0.1:{_closed_port()}/", timeout=2.0)
    assert reason is not None and "refused" in reason.lower()


def test_tiny_shakespeare_from_manual_dir(tmp_path):
    manual = tmp_path / "downloads" / "manual" / "tiny_shakespeare"
    manual.mkdir(parents=True)
    shutil.copy("/work/shared/data/tinyshakespeare.txt", manual / "input.txt")
    # Unreachable probe: proves the local file is used without any network attempt.
    splits = data.load(
        "tiny_shakespeare",
        data_dir=tmp_path,
        seq_length=200,
        probe_url=f"http://127.0.0.1:{_closed_port()}/",
    )
    chars = splits.info.extras["num_characters"]
    assert chars == {"train": 1003854, "validation": 55770, "test": 55770}  # TFDS's split
    x, y = next(iter(splits.validation))
    with open(manual / "input.txt", encoding="utf-8") as f:
        text = f.read()
    assert data.decode(x.numpy(), splits.info.vocabulary) == text[1003854 : 1003854 + 200]
    np.testing.assert_array_equal(x.numpy()[1:], y.numpy()[:-1])


def test_unknown_catalog_option(tmp_path):
    with pytest.raises(ValueError, match="seq_length"):
        data.load("mnist", data_dir=tmp_path, seq_length=3)
