"""mnist5k / digits builders, the sequential view and the stratified split."""

import hashlib

import numpy as np
import pytest

from pipelines import data
from pipelines.data.images import read_mnist5k_csv


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def _arrays(ds):
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.asarray(ys)


def _hashes(images):
    return {hashlib.sha1(img.astype(np.uint8).tobytes()).hexdigest() for img in images}


def _check_stratified(splits, totals_per_class, fractions):
    seen = []
    for name, frac in zip(data.SPLITS, fractions, strict=True):
        x, y = _arrays(splits.split(name))
        assert len(y) == splits.info.num_examples[name]
        counts = np.bincount(y, minlength=10)
        expected = np.asarray(totals_per_class) * frac
        assert np.all(np.abs(counts - expected) < 1.0 + 1e-9), (name, counts, expected)
        seen.append(x)
    return seen


def test_mnist5k_splits_sizes_balance_and_range(data_dir):
    splits = data.load("mnist5k", data_dir=data_dir)
    info = splits.info
    assert info.num_examples == {"train": 4000, "validation": 500, "test": 500}
    assert info.feature_shape == (28, 28, 1) and info.num_classes == 10
    assert info.value_range == (0.0, 255.0)
    train, val, test = _check_stratified(splits, [500] * 10, (0.8, 0.1, 0.1))
    assert train.dtype == np.float32
    everything = np.concatenate([train, val, test])
    assert everything.shape == (5000, 28, 28, 1)
    assert everything.min() == 0.0 and everything.max() == 255.0
    assert np.all(everything == np.round(everything))  # raw integer pixels, not normalised
    # no overlap: every image of the source appears exactly once across splits
    h_train, h_val, h_test = _hashes(train), _hashes(val), _hashes(test)
    assert not (h_train & h_val) and not (h_train & h_test) and not (h_val & h_test)
    source_images, _ = read_mnist5k_csv()
    assert h_train | h_val | h_test == _hashes(source_images)


def test_mnist5k_labels_match_source_rows(data_dir):
    images, labels = read_mnist5k_csv()
    by_hash = {
        hashlib.sha1(img.tobytes()).hexdigest(): lab
        for img, lab in zip(images, labels, strict=True)
    }
    x, y = _arrays(data.load("mnist5k", data_dir=data_dir).test)
    for img, lab in zip(x, y, strict=True):
        assert by_hash[hashlib.sha1(img.astype(np.uint8).tobytes()).hexdigest()] == lab
    assert not np.all(np.diff(y) >= 0)  # the class-sorted source was shuffled


def test_mnist5k_deterministic_across_loads(data_dir, tmp_path):
    a = _arrays(data.load("mnist5k", data_dir=data_dir).validation)
    b = _arrays(data.load("mnist5k", data_dir=tmp_path).validation)  # fresh preparation
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_digits_splits(data_dir):
    from sklearn.datasets import load_digits

    splits = data.load("digits", data_dir=data_dir)
    assert splits.info.feature_shape == (8, 8, 1)
    assert sum(splits.info.num_examples.values()) == 1797
    per_class = np.bincount(load_digits().target)
    train, val, test = _check_stratified(splits, per_class, (0.8, 0.1, 0.1))
    everything = np.concatenate([train, val, test])
    assert everything.min() == 0.0 and everything.max() == 16.0
    total = len(_hashes(train)) + len(_hashes(val)) + len(_hashes(test))
    assert len(_hashes(train) | _hashes(val) | _hashes(test)) == total  # no image in two splits


def test_sequential_mnist_view(data_dir):
    images = data.load("mnist5k", data_dir=data_dir)
    seq = data.load("seq_mnist", data_dir=data_dir)
    assert seq.info.feature_shape == (28, 28)
    assert seq.info.task == "sequence_classification"
    (img, lab), (rows, lab2) = next(iter(zip(images.test, seq.test, strict=True)))
    np.testing.assert_array_equal(img.numpy()[5, :, 0], rows.numpy()[5])  # step 5 = row 5
    assert int(lab) == int(lab2)


def test_stratified_split_worked_example():
    labels = np.array([0] * 10 + [1] * 5)
    groups = data.stratified_split(labels, (0.6, 0.2, 0.2), seed=3)
    counts = [np.bincount(labels[g], minlength=2).tolist() for g in groups]
    assert counts == [[6, 3], [2, 1], [2, 1]]
    assert sorted(np.concatenate(groups).tolist()) == list(range(15))
    with pytest.raises(ValueError, match="sizes"):
        data.stratified_split(labels, (0.5, 0.2), seed=0)


def test_load_rejects_bad_names_and_options(data_dir):
    with pytest.raises(ValueError, match="nope"):
        data.load("nope")
    with pytest.raises(ValueError, match="bogus"):
        data.load("mnist5k", data_dir=data_dir, bogus=1)
