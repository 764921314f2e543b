"""Character-level text data from any local file.

A text is split *by position* (as TFDS's ``tiny_shakespeare`` does): the first 90% of the
characters is train, the next 5% validation, the last 5% test. The vocabulary is the sorted set
of characters of the *training* text, preceded by the out-of-vocabulary token ``"[UNK]"`` at
id 0 — exactly ``keras.layers.StringLookup(vocabulary=chars).get_vocabulary()`` with its default
``num_oov_indices=1``, so a model can do the lookup inside itself on raw strings. Characters
of validation/test absent from the training text map to id 0.

Each split is cut into non-overlapping windows of ``seq_length + 1`` ids (stride
``seq_length``): features are ids ``[t, t + seq_length)``, the target is the same window shifted
by one (the next character at every step), both ``int32 [seq_length]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from pipelines.data.core import SPLITS, DataInfo, DataSplits

__all__ = [
    "OOV_TOKEN",
    "build_vocabulary",
    "decode",
    "encode",
    "load_text_file",
    "split_text",
    "text_splits",
]

OOV_TOKEN = "[UNK]"
TEXT_FRACTIONS = (0.9, 0.05, 0.05)


def split_text(text: str) -> tuple[str, str, str]:
    """Split by position 90/5/5 (same arithmetic as TFDS ``tiny_shakespeare``)."""
    i = int(len(text) * 0.9)
    train, rest = text[:i], text[i:]
    j = int(len(rest) * 0.5)
    return train, rest[:j], rest[j:]


def build_vocabulary(text: str) -> tuple[str, ...]:
    """``("[UNK]", *sorted(set(text)))``: token of every id, OOV first."""
    return (OOV_TOKEN, *sorted(set(text)))


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def encode(text: str, vocabulary: Sequence[str]) -> np.ndarray:
    """Characters → int32 ids under ``vocabulary`` (unknown characters → 0)."""
    chars = np.array([ord(c) for c in vocabulary[1:]], dtype=np.uint32)
    order = np.argsort(chars)
    sorted_chars = chars[order]
    codes = _codepoints(text)
    if len(sorted_chars) == 0:
        return np.zeros(len(codes), np.int32)
    pos = np.clip(np.searchsorted(sorted_chars, codes), 0, len(sorted_chars) - 1)
    found = sorted_chars[pos] == codes
    return np.where(found, order[pos] + 1, 0).astype(np.int32)


def decode(ids, vocabulary: Sequence[str]) -> str:
    """int ids → string (id 0 decodes to ``"[UNK]"``)."""
    return "".join(vocabulary[int(i)] for i in np.asarray(ids).ravel())


def _windows(ids: np.ndarray, seq_length: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    n = (len(ids) - 1) // seq_length
    if n < 1:
        raise ValueError(
            f"the {split} split has {len(ids)} characters, fewer than seq_length + 1 = "
            f"{seq_length + 1}: use a longer text or a smaller seq_length"
        )
    starts = np.arange(n) * seq_length
    idx = starts[:, None] + np.arange(seq_length + 1)[None, :]
    win = ids[idx]
    return win[:, :-1], win[:, 1:]


def text_splits(
    texts: Sequence[str], *, seq_length: int, name: str, description: str = ""
) -> DataSplits:
    """Three texts (train, validation, test) → windowed next-character :class:`DataSplits`."""
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 1:
        raise ValueError(f"seq_length must be a positive int, received seq_length={seq_length!r}")
    train_text = texts[0]
    if not train_text:
        raise ValueError(f"the training text of {name!r} is empty")
    vocabulary = build_vocabulary(train_text)
    datasets, counts = {}, {}
    for split, text in zip(SPLITS, texts, strict=True):
        x, y = _windows(encode(text, vocabulary), seq_length, split)
        datasets[split] = tf.data.Dataset.from_tensor_slices((x, y))
        counts[split] = int(len(x))
    info = DataInfo(
        name=name,
        task="next_step",
        feature_shape=(seq_length,),
        feature_dtype="int32",
        target_shape=(seq_length,),
        target_dtype="int32",
        num_classes=len(vocabulary),
        num_examples=counts,
        vocabulary=vocabulary,
        description=description
        or (
            "Character windows of a text split by position 90/5/5; vocabulary from the "
            "training text with [UNK] at id 0; target = next character."
        ),
        extras={"num_characters": {s: len(t) for s, t in zip(SPLITS, texts, strict=True)}},
    )
    return DataSplits(datasets["train"], datasets["validation"], datasets["test"], info)


def read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file; clear errors for a missing/empty/undecodable file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"text_file {path!r} does not exist or is not a file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"text_file {path!r} is not UTF-8 text: {err}") from None
    if not text:
        raise ValueError(f"text_file {path!r} is empty")
    return text


def load_text_file(path: str | os.PathLike | None, *, seq_length: int = 100) -> DataSplits:
    """Any local UTF-8 text file → next-character splits (90/5/5 by position)."""
    if path is None:
        raise ValueError(
            "a character dataset needs a local text file: pass path=... "
            "(pipelines: set text_file=/path/to/file.txt)"
        )
    text = read_text(path)
    return text_splits(
        split_text(text),
        seq_length=seq_length,
        name="text",
        description=(
            f"Characters of {os.fspath(path)} ({len(text)} chars) split by position 90/5/5; "
            "vocabulary from the training text with [UNK] at id 0; target = next character."
        ),
    )
