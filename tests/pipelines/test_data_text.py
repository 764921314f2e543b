"""Character text datasets: 90/5/5 by position, vocabulary from train, next-char windows."""

import numpy as np
import pytest

from pipelines import data
from pipelines.data.text import OOV_TOKEN, split_text
from tests.shared_data import TINY_SHAKESPEARE as SHAKESPEARE


def _write(tmp_path, text):
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_split_by_position_worked_example():
    text = "".join(chr(ord("a") + i % 26) for i in range(200))
    train, val, test = split_text(text)
    assert (len(train), len(val), len(test)) == (180, 10, 10)
    assert train + val + test == text


def test_small_file_windows_vocabulary_round_trip(tmp_path):
    text = "abcab cab\n" * 40  # 400 characters
    splits = data.load("text", path=_write(tmp_path, text), seq_length=8)
    info = splits.info
    assert info.vocabulary == (OOV_TOKEN, "\n", " ", "a", "b", "c")
    assert info.num_classes == 6 and info.task == "next_step"
    assert info.num_examples == {"train": 44, "validation": 2, "test": 2}  # (360-1)//8 etc.
    windows = [(x.numpy(), y.numpy()) for x, y in splits.train]
    feats = np.concatenate([x for x, _ in windows])
    assert data.decode(feats, info.vocabulary) == text[: 44 * 8]  # round trip, in order
    for x, y in windows:
        np.testing.assert_array_equal(x[1:], y[:-1])  # target = next character
    np.testing.assert_array_equal(data.encode("cab", info.vocabulary), [5, 3, 4])


def test_characters_unseen_in_training_map_to_oov(tmp_path):
    text = "ab" * 95 + "Z" * 20  # the Zs fall into validation/test only
    splits = data.load("text", path=_write(tmp_path, text), seq_length=4)
    assert "Z" not in splits.info.vocabulary
    test_ids = np.concatenate([x.numpy() for x, _ in splits.test])
    assert np.all(test_ids == 0)
    assert data.decode([0], splits.info.vocabulary) == OOV_TOKEN


def test_tinyshakespeare_file():
    splits = data.load("text", path=SHAKESPEARE, seq_length=100)
    info = splits.info
    assert info.extras["num_characters"] == {"train": 1003854, "validation": 55770, "test": 55770}
    assert info.vocab_size == 66  # 65 distinct characters + [UNK]
    assert info.num_examples["train"] == (1003854 - 1) // 100
    x, y = next(iter(splits.train))
    assert data.decode(x.numpy(), info.vocabulary).startswith("First Citizen:\nBefore we proceed")
    assert x.dtype.name == "int32" and x.shape == (100,)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="text_file"):
        data.load("text")
    with pytest.raises(ValueError, match="does not exist"):
        data.load("text", path=tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="empty"):
        data.load("text", path=_write(tmp_path, ""))
    with pytest.raises(ValueError, match="seq_length"):
        data.load("text", path=_write(tmp_path, "x" * 100), seq_length=50)
    with pytest.raises(ValueError, match="seq_length"):
        data.load("text", path=_write(tmp_path, "x" * 100), seq_length=0)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa" * 10)
    with pytest.raises(ValueError, match="UTF-8"):
        data.load("text", path=bad)
