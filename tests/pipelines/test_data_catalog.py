"""Catalog datasets: fail fast with a helpful DatasetUnavailableError, or use local files."""

import os
import shutil
import socket
import time

import numpy as np
import pytest

from pipelines import data
from pipelines.data import catalog
from tests.shared_data import TINY_SHAKESPEARE


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
    shutil.copy(TINY_SHAKESPEARE, manual / "input.txt")
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


def _idx_images(path, n, rng):
    import gzip
    import struct

    pixels = np.zeros((n, 28, 28), np.uint8)
    pixels[:, 14, :] = rng.integers(0, 256, size=(n, 28))
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + pixels.tobytes())
    return pixels


def _idx_labels(path, n):
    import gzip
    import struct

    labels = (np.arange(n) % 10).astype(np.uint8)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.tobytes())


def test_mnist_from_manual_files(tmp_path, monkeypatch):
    # The four original IDX files (synthetic content, real format) placed in the manual dir.
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _idx_images(manual / "train-images-idx3-ubyte.gz", 60000, rng)
    _idx_labels(manual / "train-labels-idx1-ubyte.gz", 60000)
    test_pixels = _idx_images(manual / "t10k-images-idx3-ubyte.gz", 10000, rng)
    _idx_labels(manual / "t10k-labels-idx1-ubyte.gz", 10000)
    # Write only 50 examples per split (TFDS's own option) to keep the test fast.
    real_config = catalog.tfds.download.DownloadConfig

    def small_config(**kwargs):
        return real_config(max_examples_per_split=50, **kwargs)

    monkeypatch.setattr(catalog.tfds.download, "DownloadConfig", small_config)
    closed = f"http://127.0.0.1:{_closed_port()}/"  # no network: the local files must do
    splits = data.load("mnist", data_dir=tmp_path, probe_url=closed)
    assert splits.info.feature_shape == (28, 28, 1) and splits.info.value_range == (0.0, 255.0)
    test = list(splits.test.as_numpy_iterator())
    assert len(test) == 50
    rows = {row.tobytes() for row in test_pixels[:, 14, :]}
    for image, label in test:
        assert image.dtype == np.float32 and 0 <= label < 10
        assert image[14, :, 0].astype(np.uint8).tobytes() in rows  # the placed pixels, raw
    # Prepared now: a second load needs neither the files nor the network.
    for f in manual.iterdir():
        f.unlink()
    again = data.load("seq_mnist", source="mnist", data_dir=tmp_path, probe_url=closed)
    assert again.info.feature_shape == (28, 28)
