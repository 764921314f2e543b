"""TFDS catalog datasets (``mnist``, ``tiny_shakespeare``) with an offline-first, fail-fast policy.

Order of attempts for ``load_catalog(name)``:

1. the dataset is already prepared in the TFDS data directory → load it (no network);
2. its original files were placed in the TFDS manual directory (default
   ``<data_dir>/downloads/manual/``, also accepted in ``<manual_dir>/<name>/``) → prepare from them
   (no network);
3. the download URL answers an HTTP ``HEAD`` request within ``probe_timeout`` seconds (DNS,
   connect and response together; a TCP connect alone is not trusted — proxies accept those)
   → let TFDS download;
4. otherwise raise :class:`DatasetUnavailableError` at once, with a message that says where to
   put the files and which offline dataset to use — instead of TFDS's ~200 s retry loop.

Files to place manually:

* ``mnist``: ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
  ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (from
  https://storage.googleapis.com/cvdf-datasets/mnist/).
* ``tiny_shakespeare``: ``input.txt`` (karpathy/char-rnn ``data/tinyshakespeare/input.txt``).

The probed URL can be overridden with ``$DEEPLINE_CATALOG_PROBE=<url>`` (or ``probe_url=``),
e.g. to test the offline path.

Splits: ``mnist`` validation is the last 10% of the TFDS train split (54,000/6,000/10,000);
``tiny_shakespeare`` uses TFDS's own 90/5/5 split by position.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

import tensorflow_datasets as tfds

from pipelines.data.core import DatasetUnavailableError, DataSplits, default_data_dir
from pipelines.data.images import builder_to_splits
from pipelines.data.text import read_text, split_text, text_splits

__all__ = ["CATALOG", "load_catalog", "probe"]

CATALOG = {
    "mnist": {
        "url": "https://storage.googleapis.com/cvdf-datasets/mnist/train-labels-idx1-ubyte.gz",
        "files": (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
        "offline": "mnist5k (5,000 real MNIST images, no download: --set dataset=mnist5k)",
    },
    "tiny_shakespeare": {
        "url": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
        "tinyshakespeare/input.txt",
        "files": ("input.txt",),
        "offline": "any local text file (pipelines: --set text_file=/path/to/file.txt)",
    },
}


def probe(url: str, timeout: float) -> str | None:
    """HTTP ``HEAD`` ``url``, bounded by ``timeout`` seconds in total (DNS included).

    Returns ``None`` when the server answers with a status below 400, else a short reason.
    The request runs in a daemon thread so a hanging DNS lookup or a silent peer cannot hold
    the caller longer than ``timeout``.
    """
    result: list[str | None] = []

    def attempt():
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                result.append(None)
        except urllib.error.HTTPError as err:
            result.append(f"HTTP {err.code} {err.reason}")
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            result.append(f"{type(reason).__name__}: {reason}")

    thread = threading.Thread(target=attempt, name=f"probe {url}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return f"no answer within {timeout:g} s"
    return result[0]


def _probe_url(name: str, probe_url: str | None) -> str:
    return probe_url or os.environ.get("DEEPLINE_CATALOG_PROBE") or CATALOG[name]["url"]


def _find_manual(name: str, manual_dir: str) -> str | None:
    """The directory holding all of ``name``'s files: ``manual_dir`` or ``manual_dir/name``."""
    for candidate in (manual_dir, os.path.join(manual_dir, name)):
        if all(os.path.isfile(os.path.join(candidate, f)) for f in CATALOG[name]["files"]):
            return candidate
    return None


def _local_mnist_builder(data_dir: str, folder: str):
    """TFDS's MNIST builder reading the four files from ``folder`` instead of downloading."""
    base = tfds.builder_cls("mnist")

    class LocalMnist(base, skip_registration=True):
        name = "mnist"

        def _split_generators(self, dl_manager):
            files = {
                key: os.path.join(folder, fname)
                for key, fname in zip(
                    ("train_data", "train_labels", "test_data", "test_labels"),
                    CATALOG["mnist"]["files"],
                    strict=True,
                )
            }
            paths = dl_manager.extract(files)
            return {
                "train": self._generate_examples(60000, paths["train_data"], paths["train_labels"]),
                "test": self._generate_examples(10000, paths["test_data"], paths["test_labels"]),
            }

    return LocalMnist(data_dir=data_dir)


def _unavailable(name, data_dir, manual_dir, url, reason) -> DatasetUnavailableError:
    files = ", ".join(CATALOG[name]["files"])
    return DatasetUnavailableError(
        f"dataset {name!r} is not prepared in {data_dir} and its download URL "
        f"{url} is unreachable ({reason}). To use it offline, place "
        f"{files} in {manual_dir} (or copy a prepared {os.path.join(data_dir, name)} from a "
        f"connected machine, e.g. after `tfds build {name}`), or use the offline dataset: "
        f"{CATALOG[name]['offline']}."
    )


def load_catalog(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    seq_length: int = 100,
    probe_url: str | None = None,
    probe_timeout: float = 3.0,
) -> DataSplits:
    """Load catalog dataset ``name`` (see the module docstring for the order of attempts).

    Raises:
        DatasetUnavailableError: not local and the download host is unreachable.
    """
    if name not in CATALOG:
        raise ValueError(f"name must be one of {sorted(CATALOG)}, received name={name!r}")
    data_dir = default_data_dir(data_dir)
    manual_dir = (
        os.fspath(manual_dir) if manual_dir else os.path.join(data_dir, "downloads", "manual")
    )
    builder = tfds.builder(name, data_dir=data_dir)

    if not builder.is_prepared():
        folder = _find_manual(name, manual_dir)
        if folder is not None and name == "tiny_shakespeare":
            return _shakespeare_splits(
                split_text(read_text(os.path.join(folder, "input.txt"))), seq_length
            )
        if folder is not None:
            builder = _local_mnist_builder(data_dir, folder)
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=folder, try_download_gcs=False
                )
            )
        else:
            url = _probe_url(name, probe_url)
            reason = probe(url, probe_timeout)
            if reason is not None:
                raise _unavailable(name, data_dir, manual_dir, url, reason)
            try:
                builder.download_and_prepare()
            except Exception as err:  # network died mid-way: same advice, original cause chained
                reason = f"download failed: {type(err).__name__}: {err}"
                raise _unavailable(name, data_dir, manual_dir, url, reason) from err

    if name == "tiny_shakespeare":
        texts = []
        for split in ("train", "validation", "test"):
            (example,) = builder.as_dataset(split=split).take(1).as_numpy_iterator()
            texts.append(example["text"].decode("utf-8"))
        return _shakespeare_splits(tuple(texts), seq_length)
    return builder_to_splits(
        builder,
        "mnist",
        (0.0, 255.0),
        "TFDS MNIST: 60,000 training images (first 90% train, last 10% validation) and the "
        "10,000 test images. Pixels are raw 0-255.",
        splits={"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
    )


def _shakespeare_splits(texts, seq_length: int) -> DataSplits:
    return text_splits(
        texts,
        seq_length=seq_length,
        name="tiny_shakespeare",
        description="Tiny Shakespeare (1,115,394 characters), TFDS split 90/5/5 by position; "
        "vocabulary from the training text with [UNK] at id 0; target = next character.",
    )
