"""Elman (1990) tasks follow their generating rules."""

import re

import numpy as np
import pytest

from pipelines import data
from pipelines.data import elman_tasks as et


def _stream(ds):
    """Rebuild the continuous stream from non-overlapping next-step windows."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate([xs[0][:1]] + list(ys))[1:], xs, ys


def test_xor_stream_rule():
    bits = et.xor_stream(100, np.random.default_rng(0))
    triplets = bits.reshape(-1, 3)
    np.testing.assert_array_equal(triplets[:, 2], triplets[:, 0] ^ triplets[:, 1])
    assert set(np.unique(triplets[:, :2])) == {0, 1}


def test_temporal_xor_dataset():
    splits = data.load("temporal_xor", seed=3, seq_length=12, num_sequences=(20, 5, 5))
    info = splits.info
    assert info.feature_shape == (12, 1) and info.num_examples["train"] == 20
    np.testing.assert_array_equal(info.extras["predictable"], np.arange(12) % 3 == 1)
    for x, y in splits.train.as_numpy_iterator():
        x, y = x[:, 0], y[:, 0]
        np.testing.assert_array_equal(x[1:], y[:-1])  # target = next bit
        # at predictable steps t (t % 3 == 1) the target is x[t-1] XOR x[t]
        t = np.flatnonzero(info.extras["predictable"])
        np.testing.assert_array_equal(y[t], np.logical_xor(x[t - 1], x[t]))
        np.testing.assert_array_equal(x[2::3], np.logical_xor(x[0::3], x[1::3]))
    with pytest.raises(ValueError, match="multiple of 3"):
        data.load("temporal_xor", seq_length=10)


def test_letter_features_are_the_papers_table():
    assert et.LETTER_FEATURES["b"] == (1, 0, 1, 0, 0, 1)
    assert et.LETTER_FEATURES["u"] == (0, 1, 0, 1, 1, 1)
    vectors = {tuple(v) for v in et.LETTER_FEATURES.values()}
    assert len(vectors) == 6  # all distinct


def test_letter_stream_expansion():
    stream = et.letter_stream(200, np.random.default_rng(1))
    assert re.fullmatch(r"(ba|dii|guuu)+", stream)
    assert {"ba", "dii", "guuu"} <= set(re.findall(r"ba|dii|guuu", stream))


def test_letter_sequences_dataset():
    splits = data.load("letter_sequences", seed=0, seq_length=12, num_sequences=(10, 3, 3))
    table = {v: k for k, v in et.LETTER_FEATURES.items()}
    letters = splits.info.extras["letters"]["train"]
    joined = ""
    for i, (x, y) in enumerate(splits.train.as_numpy_iterator()):
        decoded = "".join(table[tuple(int(b) for b in row)] for row in x)
        assert decoded == "".join(letters[i, :-1])
        target = "".join(table[tuple(int(b) for b in row)] for row in y)
        assert target == "".join(letters[i, 1:])  # target = next letter's vector
        joined += decoded
    # the stream starts at a consonant and every consonant is expanded by the rule
    trimmed = re.sub(r"(b|d|g)[aiu]*$", "", joined)
    assert re.fullmatch(r"(ba|dii|guuu)+", trimmed)


def test_word_stream_onsets():
    letters, onset, words = et.word_stream(300, np.random.default_rng(2))
    assert len(letters) == 300 == len(onset) and onset[0]
    starts = np.flatnonzero(onset)
    pieces = [letters[a:b] for a, b in zip(starts, list(starts[1:]) + [300], strict=True)]
    assert pieces[:-1] == words[: len(pieces) - 1]  # onsets cut the stream into the words
    assert set(words) <= set(et.LEXICON)


def test_word_boundary_dataset_and_determinism():
    a = data.load("word_boundary", seed=5, seq_length=20, num_sequences=(8, 2, 2))
    b = data.load("word_boundary", seed=5, seq_length=20, num_sequences=(8, 2, 2))
    c = data.load("word_boundary", seed=6, seq_length=20, num_sequences=(8, 2, 2))
    vocab = a.info.vocabulary
    onsets = a.info.extras["target_onset"]["train"]
    assert onsets.shape == (8, 20)
    xa = [x for x, _ in a.train.as_numpy_iterator()]
    xb = [x for x, _ in b.train.as_numpy_iterator()]
    xc = [x for x, _ in c.train.as_numpy_iterator()]
    np.testing.assert_array_equal(np.stack(xa), np.stack(xb))
    assert not np.array_equal(np.stack(xa), np.stack(xc))
    pairs = list(a.train.as_numpy_iterator())
    # Windows are consecutive: rebuild the stream (letters 1..N) and its onset flags.
    stream = "".join(vocab[i] for _, y in pairs for i in y)
    flags = np.concatenate(list(onsets))
    starts = np.flatnonzero(flags)
    pieces = [stream[s:e] for s, e in zip(starts[:-1], starts[1:], strict=True)]
    assert len(pieces) > 20 and set(pieces) <= set(et.LEXICON)  # onsets cut out lexicon words
    for x, y in pairs:
        np.testing.assert_array_equal(x[1:], y[:-1])


def test_elman_bad_arguments():
    with pytest.raises(ValueError, match="num_sequences"):
        data.load("word_boundary", num_sequences=(1, 2))
    with pytest.raises(ValueError, match="seq_length"):
        data.load("letter_sequences", seq_length=0)
    with pytest.raises(ValueError, match="vocab"):
        data.load("word_boundary", vocab=3)
